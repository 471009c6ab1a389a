/**
 * The token request CXone sends to `{box}/1.0/token`: OAuth 2.0 client credentials (RFC 6749 §4.4), with the client
 * authenticated by a JSON body (what CXone is seen to send), a form body, or HTTP Basic (RFC 6749 §2.3.1).
 * Nothing here logs: the request carries the client secret.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { readJsonObject, type BodySource } from './json';

export interface TokenRequest {
  /** `grant_type` as sent; undefined when the request has none. */
  grantType?: string;
  clientId?: string;
  clientSecret?: string;
  /** How the client authenticated. */
  via: 'basic' | 'body' | 'none';
}

/** A token request we cannot read; `error` is the OAuth error code to answer with (RFC 6749 §5.2). */
export class TokenRequestError extends Error {
  constructor(
    readonly status: 400 | 401,
    readonly error: 'invalid_request' | 'invalid_client',
    readonly description: string,
  ) {
    super(description);
    this.name = 'TokenRequestError';
  }
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;
}

/** The `application/x-www-form-urlencoded` decoding of one component, or the text itself if it is not valid. */
function formDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/**
 * Reads `Authorization: Basic …`. Returns undefined when the header is absent or another scheme. RFC 6749 asks
 * clients to form-encode id and secret before base64; many do not, so both readings are returned and the caller
 * accepts either (see `credentialsMatch`).
 */
export function readBasic(
  header: string | undefined,
): { id: string; secret: string; idDecoded: string; secretDecoded: string } | undefined {
  if (!header) return undefined;
  const m = /^\s*basic\s+([A-Za-z0-9+/=._~-]+)\s*$/i.exec(header);
  if (!m) return undefined;
  const text = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon < 0) throw new TokenRequestError(401, 'invalid_client', 'malformed Basic credentials');
  const id = text.slice(0, colon);
  const secret = text.slice(colon + 1);
  return { id, secret, idDecoded: formDecode(id), secretDecoded: formDecode(secret) };
}

/** The fields of a token request body: JSON (by content type or by shape), else form-encoded. */
function readBodyFields(src: BodySource, contentType: string): Record<string, unknown> {
  if (src.rawBody === undefined) {
    const v = src.parsedBody;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
    if (typeof v === 'string') return readBodyFields({ rawBody: Buffer.from(v, 'utf8') }, contentType);
    return {};
  }
  const text = src.rawBody.toString('utf8').trim();
  if (text === '') return {};
  const looksJson = text.startsWith('{');
  if (contentType === 'application/json' || contentType.endsWith('+json') || looksJson) {
    try {
      return readJsonObject(src);
    } catch (err) {
      throw new TokenRequestError(400, 'invalid_request', (err as Error).message);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of new URLSearchParams(text)) {
    // RFC 6749 §3.2: parameters must not be repeated.
    if (k in out) throw new TokenRequestError(400, 'invalid_request', `parameter "${k}" is repeated`);
    out[k] = v;
  }
  return out;
}

export interface ParsedTokenRequest extends TokenRequest {
  /** Other readings of the Basic id/secret (form-decoded), tried as well when comparing. */
  alternates?: { clientId: string; clientSecret: string };
}

/** Parses a token request. Throws `TokenRequestError` for one that cannot be read. */
export function parseTokenRequest(
  src: BodySource,
  headers: IncomingHttpHeaders,
  contentType: string,
): ParsedTokenRequest {
  const fields = readBodyFields(src, contentType);
  const grantType = str(fields.grant_type);
  const bodyId = str(fields.client_id);
  const bodySecret = str(fields.client_secret);
  const basic = readBasic(typeof headers.authorization === 'string' ? headers.authorization : undefined);
  if (basic) {
    // RFC 6749 §2.3: a client must not use more than one authentication method in a request.
    if (bodySecret !== undefined)
      throw new TokenRequestError(
        400,
        'invalid_request',
        'send the client secret either in the body or with Basic, not both',
      );
    if (bodyId !== undefined && bodyId !== basic.id && bodyId !== basic.idDecoded)
      throw new TokenRequestError(
        400,
        'invalid_request',
        'client_id in the body differs from the Basic credentials',
      );
    const alt =
      basic.idDecoded !== basic.id || basic.secretDecoded !== basic.secret
        ? { clientId: basic.idDecoded, clientSecret: basic.secretDecoded }
        : undefined;
    return { grantType, clientId: basic.id, clientSecret: basic.secret, via: 'basic', alternates: alt };
  }
  if (bodyId !== undefined || bodySecret !== undefined)
    return { grantType, clientId: bodyId, clientSecret: bodySecret, via: 'body' };
  return { grantType, via: 'none' };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/**
 * Whether `id`/`secret` are the expected ones, in time that depends on neither: both sides are hashed to equal
 * length first, both comparisons always run, and the results are combined without short-circuiting.
 */
export function credentialsMatch(
  expected: { clientId: string; clientSecret: string },
  given: { clientId?: string; clientSecret?: string },
): boolean {
  if (!expected.clientId || !expected.clientSecret) return false;
  const idOk = timingSafeEqual(digest(expected.clientId), digest(given.clientId ?? '')) ? 1 : 0;
  const secretOk = timingSafeEqual(digest(expected.clientSecret), digest(given.clientSecret ?? '')) ? 1 : 0;
  const present = given.clientId !== undefined && given.clientSecret !== undefined ? 1 : 0;
  return (idOk & secretOk & present) === 1;
}

/** `credentialsMatch` over every reading of the request (a Basic header may be form-encoded or not). */
export function requestAuthenticates(
  expected: { clientId: string; clientSecret: string },
  req: ParsedTokenRequest,
): boolean {
  const first = credentialsMatch(expected, req);
  const second = req.alternates ? credentialsMatch(expected, req.alternates) : false;
  return first || second;
}
