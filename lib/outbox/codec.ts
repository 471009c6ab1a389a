/**
 * JSON for persisted jobs and journal entries: Buffers travel as base64 (`{"$wxcxBuffer":"…"}`) and come back as
 * Buffers. A value plain JSON cannot take (a cycle, a BigInt, an `http in` node's msg.req/msg.res) does not fail
 * the message: the second pass drops cycles and event emitters (sockets, requests, responses) and turns BigInts
 * into strings. Functions and symbols are dropped, as JSON does.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';

const TAG = '$wxcxBuffer';

/**
 * A value already encoded, kept as its JSON text: one string in memory instead of an object tree, and written by
 * `encodeJson` as it is instead of being parsed and encoded again (the msg copy an `-out` node keeps with its
 * outbox job: a stringify and a parse a message, and a tree that lived as long as the delivery). The record is the
 * same JSON as with the object in its place, so records written before and after decode alike. Elsewhere
 * (`JSON.stringify`, a debug view) it stands for its value.
 */
export class JsonText {
  constructor(readonly text: string) {}

  /** The value, parsed (a new object each call). */
  value<T = unknown>(): T {
    return JSON.parse(this.text) as T;
  }

  toJSON(): unknown {
    if (!slots) return this.value();
    const token = `${SLOT}${slots.length}`;
    slots.push(this.text);
    return token;
  }
}

/** The texts of the encode under way, in the order JSON.stringify met them; null outside `encodeJson`. */
let slots: string[] | null = null;
/** Stands for a slot in the output until it is spliced in; the random part keeps a string value from forging it. */
const SLOT = `\u0000wxcx-json-${randomBytes(6).toString('hex')}:`;

/** `JSON.stringify`, with the JsonText values met left as placeholders and their texts collected for `splice`. */
function stringifyCollecting(
  value: unknown,
  replacer?: (this: Record<string, unknown>, k: string, v: unknown) => unknown,
): { out: string; texts: string[] } {
  const texts: string[] = [];
  const outer = slots;
  slots = texts;
  try {
    return { out: JSON.stringify(value, replacer), texts };
  } finally {
    slots = outer;
  }
}

/** The output of `stringifyCollecting` with the JsonText values' texts in their places. */
function splice({ out, texts }: { out: string; texts: string[] }): string {
  if (!texts.length || out === undefined) return out;
  const parts: string[] = [];
  let from = 0;
  for (let i = 0; i < texts.length; i++) {
    const token = JSON.stringify(`${SLOT}${i}`);
    const at = out.indexOf(token, from);
    if (at < 0) throw new Error('an encoded part went missing'); // cannot happen: each slot is written once
    parts.push(out.slice(from, at), texts[i]);
    from = at + token.length;
  }
  parts.push(out.slice(from));
  return parts.join('');
}

/** `JSON.stringify` with the JsonText values' texts in their places. */
function stringifyWith(
  value: unknown,
  replacer?: (this: Record<string, unknown>, k: string, v: unknown) => unknown,
): string {
  return splice(stringifyCollecting(value, replacer));
}

function bufferReplacer(this: Record<string, unknown>, k: string, v: unknown): unknown {
  const orig = this[k];
  if (Buffer.isBuffer(orig)) return { [TAG]: orig.toString('base64') };
  if (orig instanceof Uint8Array) return { [TAG]: Buffer.from(orig).toString('base64') };
  return v;
}

/**
 * What plain JSON.stringify writes for a Buffer (its toJSON) or a typed array (its indices), and what an object
 * can only rarely hold otherwise: when the fast pass wrote one, the value is encoded again with the replacer.
 */
const NEEDS_REPLACER = /\{"type":"Buffer","data":\[|\{"0":/;

export function encodeJson(value: unknown): string {
  try {
    // A replacer function makes JSON.stringify several times slower, and almost no message holds a Buffer: try
    // without one first (bench: this encode ran three times per message, 4 % of the pack's CPU).
    // The test looks at the output before the JsonText values' texts are spliced in: they are encoded already (the
    // replacer would not change them), and the msg copy's text was looked at when it was made.
    const fast = stringifyCollecting(value);
    if (fast.out === undefined || !NEEDS_REPLACER.test(fast.out)) return splice(fast);
    return stringifyWith(value, bufferReplacer);
  } catch {
    const seen = new WeakSet<object>();
    return stringifyWith(value, function (this: Record<string, unknown>, k: string, v: unknown) {
      const orig = this[k];
      if (Buffer.isBuffer(orig) || orig instanceof Uint8Array) return bufferReplacer.call(this, k, v);
      if (typeof v === 'bigint') return v.toString();
      if (orig instanceof EventEmitter) return undefined;
      if (v && typeof v === 'object') {
        if (seen.has(v)) return undefined;
        seen.add(v);
      }
      return v;
    });
  }
}

export function decodeJson<T = unknown>(text: string): T {
  return JSON.parse(text, (_k, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      const b = o[TAG];
      if (typeof b === 'string' && Object.keys(o).length === 1) return Buffer.from(b, 'base64');
    }
    return v;
  }) as T;
}
