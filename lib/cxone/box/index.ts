/** The integration box: what CXone calls (token endpoint, replies, typing, recipient validation). */
import { createHash } from 'node:crypto';

export * from './box';
export { readJsonObject, jsonDepth, type JsonObject } from './json';
export { issueToken, verifyToken, signingKey, tokenAudience, TOKEN_ISSUER, type BoxSecrets } from './tokens';
export type { BoxEmission, CxoneInbound, ReplyFormat } from './replies';
export { OPENID_RE } from './replies';

/**
 * The store key prefix of one CXone integration: by account (a hash of the access key id) so that instances sharing
 * a Redis with the same account share dedupe; by config node id when no access key is set.
 */
export function cxoneKeyPrefix(configId: string, accessKeyId?: string): string {
  const acct = accessKeyId
    ? 'ak-' + createHash('sha256').update(accessKeyId, 'utf8').digest('hex').slice(0, 16)
    : 'cfg-' + configId;
  return `wxcx:cxone:${acct}:`;
}
