/**
 * WeChat's request signatures: sha1 over the lexicographically sorted parts, concatenated, as lower-case hex.
 *
 * - URL verification and every push: `signature = sha1(sort([token, timestamp, nonce]).join(''))`.
 * - Encrypted pushes (compatible and safe mode) and encrypted replies:
 *   `msg_signature = sha1(sort([token, timestamp, nonce, Encrypt]).join(''))`.
 *
 * Comparisons run in constant time. Nothing here logs or throws with a secret in the message.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

/** sha1 hex of the sorted, concatenated parts (JavaScript's default sort: by UTF-16 code units, as WeChat's SDKs). */
export function sha1Signature(...parts: string[]): string {
  const sorted = parts.map((p) => String(p)).sort();
  return createHash('sha1').update(sorted.join(''), 'utf8').digest('hex');
}

/** The 3-part `signature` of URL verification and of every push. */
export function plainSignature(token: string, timestamp: string, nonce: string): string {
  return sha1Signature(token, timestamp, nonce);
}

/** The 4-part `msg_signature` over the ciphertext of an encrypted push or reply. */
export function msgSignature(token: string, timestamp: string, nonce: string, encrypt: string): string {
  return sha1Signature(token, timestamp, nonce, encrypt);
}

/**
 * Compares a received hex signature with the expected one in constant time. Case-insensitive (some proxies
 * upper-case nothing, but a hand-made client might); false for anything that is not 40 hex digits.
 */
export function signatureMatches(received: unknown, expected: string): boolean {
  if (typeof received !== 'string' || received.length !== expected.length) return false;
  if (!/^[0-9a-fA-F]+$/.test(received)) return false;
  return timingSafeEqual(Buffer.from(received.toLowerCase(), 'latin1'), Buffer.from(expected, 'latin1'));
}

/** Whether `signature` in a query belongs to the token (GET verification and every POST). */
export function verifyPlainSignature(
  token: string,
  q: { signature?: string | null; timestamp?: string | null; nonce?: string | null },
): boolean {
  if (!token || !q.timestamp || !q.nonce || !q.signature) return false;
  return signatureMatches(q.signature, plainSignature(token, q.timestamp, q.nonce));
}

/** Whether `msg_signature` belongs to the token and this ciphertext. */
export function verifyMsgSignature(
  token: string,
  q: { msg_signature?: string | null; timestamp?: string | null; nonce?: string | null },
  encrypt: string,
): boolean {
  if (!token || !q.timestamp || !q.nonce || !q.msg_signature || !encrypt) return false;
  return signatureMatches(q.msg_signature, msgSignature(token, q.timestamp, q.nonce, encrypt));
}
