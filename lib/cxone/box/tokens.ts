/**
 * The tokens the box issues to CXone and checks on every other call: JWTs signed with HS256 (pinned on both
 * sides: a token naming any other algorithm, `none` included, is refused), with issuer, audience, subject (the box
 * client id), expiry and a unique id. See docs/adr/0004-box-tokens-and-throttling.md and docs/cxone-box.md.
 */
import { createHash, createHmac, createSecretKey, randomUUID, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';

export const TOKEN_ALGORITHM = 'HS256' as const;
export const TOKEN_ISSUER = 'urn:wxcx:cxone-dfo-in';
/** Default lifetime of an issued token, seconds. */
export const DEFAULT_TOKEN_TTL_S = 3600;
/** Clock skew tolerated when checking `exp`/`nbf`/`iat`, seconds. */
export const CLOCK_TOLERANCE_S = 5;
/** Longest Authorization value looked at; a JWT of ours is about 300 characters. */
export const MAX_TOKEN_LENGTH = 4096;

const KEY_LABEL = 'wxcx/cxone-dfo-in/token-signing-key/v1';

export interface BoxSecrets {
  /** The client id CXone presents (`boxClientId`). */
  clientId: string;
  /** The client secret CXone presents (`boxClientSecret`). */
  clientSecret: string;
  /** `jwtSecret`: the signing key material; empty means "derive it from the client secret". */
  jwtSecret?: string;
}

/**
 * The HS256 key: HMAC-SHA256 over a fixed label, keyed with `jwtSecret` when set, else with the box client secret.
 * Always 32 bytes whatever the input, so a short `jwtSecret` does not make a short key; changing the client secret
 * (when `jwtSecret` is empty) or `jwtSecret` invalidates every token issued before.
 */
export function signingKey(s: BoxSecrets): Buffer {
  const material = s.jwtSecret ? s.jwtSecret : s.clientSecret;
  if (!material) throw new Error('no signing key: the box client secret and jwtSecret are both empty');
  return createHmac('sha256', material).update(KEY_LABEL).digest();
}

/** Signing keys as KeyObjects, per secrets object (gone with it), with the material they were made from. */
const keyObjects = new WeakMap<BoxSecrets, { material: string; key: KeyObject }>();

/**
 * `signingKey` as a KeyObject, made once per secrets object. Given a Buffer, jsonwebtoken first tries to read it as
 * a public key (which throws) and only then makes a secret key, on every call: that cost more than the rest of a
 * reply's handling together.
 */
export function signingKeyObject(s: BoxSecrets): KeyObject {
  const material = s.jwtSecret ? s.jwtSecret : s.clientSecret;
  const hit = keyObjects.get(s);
  if (hit && hit.material === material) return hit.key;
  const key = createSecretKey(signingKey(s));
  keyObjects.set(s, { material, key });
  return key;
}

/** The audience of our tokens: this box as seen by this client id (a changed client id invalidates tokens). */
export function tokenAudience(clientId: string): string {
  return 'urn:wxcx:box:' + createHash('sha256').update(clientId, 'utf8').digest('hex').slice(0, 24);
}

export interface IssuedToken {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
}

export function issueToken(s: BoxSecrets, ttlS = DEFAULT_TOKEN_TTL_S, nowS?: number): IssuedToken {
  const iat = nowS ?? Math.floor(Date.now() / 1000);
  const token = jwt.sign({ iat, exp: iat + ttlS, jti: randomUUID() }, signingKeyObject(s), {
    algorithm: TOKEN_ALGORITHM,
    issuer: TOKEN_ISSUER,
    audience: tokenAudience(s.clientId),
    subject: s.clientId,
    header: { alg: TOKEN_ALGORITHM, typ: 'JWT' },
  });
  return { access_token: token, token_type: 'Bearer', expires_in: ttlS };
}

/** Why a bearer token was refused (for counters and debug logs; never contains the token). */
export type TokenProblem = 'missing' | 'malformed' | 'expired' | 'invalid' | 'not-configured';

export type VerifyResult = { ok: true; claims: jwt.JwtPayload } | { ok: false; problem: TokenProblem };

/** The token in an `Authorization: Bearer …` header (RFC 6750 §2.1), or why there is none. */
export function bearerToken(
  header: string | string[] | undefined,
): { token: string } | { problem: TokenProblem } {
  if (header === undefined || header === '') return { problem: 'missing' };
  if (Array.isArray(header) || header.length > MAX_TOKEN_LENGTH + 16) return { problem: 'malformed' };
  const m = /^\s*bearer\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(header);
  if (!m) return /^\s*bearer\b/i.test(header) ? { problem: 'malformed' } : { problem: 'missing' };
  return { token: m[1] };
}

/** Checks a token we are shown: our key, HS256 only, our issuer and audience, subject = the box client id, not expired. */
export function verifyToken(token: string, s: BoxSecrets, nowS?: number): VerifyResult {
  if (!s.clientId || !s.clientSecret) return { ok: false, problem: 'not-configured' };
  if (token.split('.').length !== 3) return { ok: false, problem: 'malformed' };
  try {
    const claims = jwt.verify(token, signingKeyObject(s), {
      algorithms: [TOKEN_ALGORITHM],
      issuer: TOKEN_ISSUER,
      audience: tokenAudience(s.clientId),
      subject: s.clientId,
      clockTolerance: CLOCK_TOLERANCE_S,
      clockTimestamp: nowS,
      complete: false,
    });
    if (typeof claims === 'string' || typeof claims.exp !== 'number' || typeof claims.jti !== 'string')
      return { ok: false, problem: 'invalid' };
    return { ok: true, claims };
  } catch (err) {
    if (err instanceof jwt.TokenExpiredError) return { ok: false, problem: 'expired' };
    if (err instanceof jwt.JsonWebTokenError && /malformed|invalid token|Unexpected token/i.test(err.message))
      return { ok: false, problem: 'malformed' };
    return { ok: false, problem: 'invalid' };
  }
}
