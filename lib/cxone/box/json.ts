/**
 * Reading the JSON bodies CXone sends to the box: from the raw bytes the route registry captured, or (when a body
 * parser ahead of us consumed the stream, see docs/adr/0002-route-registry.md) from the value it produced. Nesting
 * is limited before anything is built, so a body of a million `[` costs one linear scan and a clear 400.
 */
import { HttpError } from '../../http/body';

export const DEFAULT_MAX_DEPTH = 32;

/** A JSON object as read from a request: never an array, never null. */
export type JsonObject = Record<string, unknown>;

export interface BodySource {
  rawBody?: Buffer;
  parsedBody?: unknown;
}

/**
 * The deepest nesting of `[` / `{` in `text`, outside strings. Stops counting (returns `limit + 1`) as soon as
 * the limit is passed.
 */
export function jsonDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
      continue;
    }
    if (c === 34) inString = true;
    else if (c === 123 /* { */ || c === 91 /* [ */) {
      depth++;
      if (depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 125 /* } */ || c === 93 /* ] */) depth--;
  }
  return max;
}

/** The nesting depth of an already built value (for bodies another parser produced). */
export function valueDepth(v: unknown, limit = Infinity, level = 0): number {
  if (v === null || typeof v !== 'object') return level;
  if (level + 1 > limit) return level + 1;
  let max = level + 1;
  for (const child of Array.isArray(v) ? v : Object.values(v)) {
    const d = valueDepth(child, limit, level + 1);
    if (d > max) max = d;
    if (max > limit) return max;
  }
  return max;
}

function isObject(v: unknown): v is JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * The request body as a JSON object. An empty body is `{}`. Throws `HttpError(400)` with a message safe to show
 * the caller for bytes that are not UTF-8 JSON, JSON that is not an object, or nesting deeper than `maxDepth`.
 */
export function readJsonObject(src: BodySource, maxDepth = DEFAULT_MAX_DEPTH): JsonObject {
  if (src.rawBody === undefined) {
    const v = src.parsedBody;
    if (v === undefined || v === null) return {};
    // body-parser gives `{}` for a body it did not parse; a string would be a text parser's result.
    if (typeof v === 'string') return readJsonObject({ rawBody: Buffer.from(v, 'utf8') }, maxDepth);
    if (!isObject(v)) throw new HttpError(400, 'the request body must be a JSON object');
    if (valueDepth(v, maxDepth) > maxDepth)
      throw new HttpError(400, `the request body is nested deeper than ${maxDepth} levels`);
    return v;
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(src.rawBody);
  } catch {
    throw new HttpError(400, 'the request body is not UTF-8 text');
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.trim() === '') return {};
  if (jsonDepth(text, maxDepth) > maxDepth)
    throw new HttpError(400, `the request body is nested deeper than ${maxDepth} levels`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    // V8's own message may quote the input (a client secret, say): keep only the position it names.
    const at = err instanceof Error ? /at position (\d+)/.exec(err.message) : null;
    throw new HttpError(
      400,
      at
        ? `the request body is not valid JSON (error at character ${at[1]})`
        : 'the request body is not valid JSON',
    );
  }
  if (!isObject(v)) throw new HttpError(400, 'the request body must be a JSON object');
  return v;
}
