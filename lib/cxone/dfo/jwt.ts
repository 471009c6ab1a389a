/**
 * Reading claims from CXone's tokens without verifying them: they are CXone's tokens, issued to us over TLS by the
 * token endpoint we chose, and we only read the tenant id and the expiry from them (CXone's "Getting Started"
 * tells API users to base64url-decode the access token for `tenantId`).
 */

/** The payload of a JWT as an object, or null when the value is not a readable JWT. */
export function decodeJwtPayload(token: unknown): Record<string, unknown> | null {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3 || !parts[1] || parts[1].length > 64 * 1024) return null;
  try {
    const json = Buffer.from(parts[1], 'base64url').toString('utf8');
    const v = JSON.parse(json) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** `tenantId` from the id_token, else from the access token (docs/protocol/cxone.md §a.2). */
export function tenantIdOf(idToken: unknown, accessToken: unknown): string | undefined {
  for (const t of [idToken, accessToken]) {
    const c = decodeJwtPayload(t);
    const v = c?.tenantId;
    if (typeof v === 'string' && v.trim()) return v.trim();
  }
  return undefined;
}

/** `exp` of a JWT as epoch ms, or undefined. */
export function expiryOf(token: unknown): number | undefined {
  const exp = decodeJwtPayload(token)?.exp;
  return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined;
}
