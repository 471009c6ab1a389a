/**
 * The WXBizMsgCrypt scheme of WeChat's compatible and safe modes (docs/protocol/wechat.md §4).
 *
 * - key = base64(EncodingAESKey + "=") (32 bytes), IV = key[0:16], AES-256-CBC.
 * - plaintext = 16 random bytes ‖ uint32 big-endian byte length of the message ‖ message (UTF-8) ‖ AppID.
 * - PKCS#7 padding to a multiple of **32** bytes (pad value 1..32). Node's own padding only knows 16-byte blocks
 *   and throws "bad decrypt" for a pad above 16, so padding is added and removed here, with auto-padding off.
 * - msg_signature = sha1(sort([token, timestamp, nonce, Encrypt])).
 *
 * Errors are `WechatCryptoError` with a code and a message that never contains the key, the token or the
 * plaintext.
 */
import { createCipheriv, createDecipheriv, randomBytes, timingSafeEqual } from 'node:crypto';
import { msgSignature, signatureMatches } from './signature';

export type CryptoErrorCode = 'key' | 'signature' | 'ciphertext' | 'padding' | 'layout' | 'appid';

export class WechatCryptoError extends Error {
  constructor(
    readonly code: CryptoErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'WechatCryptoError';
  }
}

const BLOCK = 32;
const KEY_RE = /^[A-Za-z0-9+/]{43}$/;
const B64_RE = /^[A-Za-z0-9+/]+={0,2}$/;

/** Whether a string has the shape of an EncodingAESKey (43 base64 characters). */
export function isEncodingAESKey(s: unknown): s is string {
  return typeof s === 'string' && KEY_RE.test(s);
}

/** The 32-byte AES key of an EncodingAESKey. Lenient about the 2 unused bits of the last character, as WeChat is. */
export function aesKeyOf(encodingAESKey: string): Buffer {
  if (!isEncodingAESKey(encodingAESKey)) {
    throw new WechatCryptoError('key', 'the EncodingAESKey must be 43 characters of A-Z, a-z, 0-9, + and /');
  }
  const key = Buffer.from(encodingAESKey + '=', 'base64');
  if (key.length !== 32) throw new WechatCryptoError('key', 'the EncodingAESKey does not decode to 32 bytes');
  return key;
}

/** PKCS#7 padding to a multiple of 32 bytes (1..32 bytes of value n). */
export function pad32(buf: Buffer): Buffer {
  const n = BLOCK - (buf.length % BLOCK);
  return Buffer.concat([buf, Buffer.alloc(n, n)]);
}

/** Removes 32-byte PKCS#7 padding; throws when the padding is not well formed. */
export function unpad32(buf: Buffer): Buffer {
  if (buf.length === 0) throw new WechatCryptoError('padding', 'the decrypted message is empty');
  const n = buf[buf.length - 1];
  if (n < 1 || n > BLOCK || n > buf.length) {
    throw new WechatCryptoError('padding', 'the decrypted message has invalid padding');
  }
  for (let i = buf.length - n; i < buf.length; i++) {
    if (buf[i] !== n) throw new WechatCryptoError('padding', 'the decrypted message has invalid padding');
  }
  return buf.subarray(0, buf.length - n);
}

export interface Decrypted {
  /** The message bytes (UTF-8 XML for pushes). */
  message: Buffer;
  /** The AppID (receiveId) found after the message. */
  appId: string;
  /** The 16 random bytes in front. */
  random: Buffer;
}

/** AES-256-CBC decryption of an `Encrypt` value with 32-byte PKCS#7 padding; no AppID check. */
export function decryptRaw(aesKey: Buffer, encrypt: string): Decrypted {
  const text = String(encrypt ?? '').trim();
  if (!text || !B64_RE.test(text)) throw new WechatCryptoError('ciphertext', 'Encrypt is not base64');
  const data = Buffer.from(text, 'base64');
  if (data.length < BLOCK || data.length % 16 !== 0) {
    throw new WechatCryptoError('ciphertext', 'Encrypt has a length that AES-CBC cannot have produced');
  }
  let plain: Buffer;
  try {
    const d = createDecipheriv('aes-256-cbc', aesKey, aesKey.subarray(0, 16));
    d.setAutoPadding(false);
    plain = Buffer.concat([d.update(data), d.final()]);
  } catch {
    throw new WechatCryptoError('ciphertext', 'Encrypt could not be decrypted');
  }
  const body = unpad32(plain);
  if (body.length < 20) throw new WechatCryptoError('layout', 'the decrypted message is too short');
  const len = body.readUInt32BE(16);
  if (20 + len > body.length) {
    throw new WechatCryptoError(
      'layout',
      'the decrypted message length does not fit (wrong EncodingAESKey?)',
    );
  }
  return {
    random: body.subarray(0, 16),
    message: body.subarray(20, 20 + len),
    appId: body.subarray(20 + len).toString('utf8'),
  };
}

/** AES-256-CBC encryption into an `Encrypt` value (base64), with 16 random bytes unless given. */
export function encryptRaw(aesKey: Buffer, message: Buffer | string, appId: string, random?: Buffer): string {
  const msg = typeof message === 'string' ? Buffer.from(message, 'utf8') : message;
  const rnd = random ?? randomBytes(16);
  if (rnd.length !== 16) throw new WechatCryptoError('layout', 'the random prefix must be 16 bytes');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(msg.length, 0);
  const plain = pad32(Buffer.concat([rnd, len, msg, Buffer.from(appId, 'utf8')]));
  const c = createCipheriv('aes-256-cbc', aesKey, aesKey.subarray(0, 16));
  c.setAutoPadding(false);
  return Buffer.concat([c.update(plain), c.final()]).toString('base64');
}

function sameString(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

export interface EncryptedEnvelope {
  encrypt: string;
  msgSignature: string;
  timestamp: string;
  nonce: string;
}

/**
 * One account's message crypto: verify + decrypt pushes, encrypt + sign replies. Holds the key only in memory;
 * `toJSON`/inspection shows nothing secret.
 */
export class WXBizMsgCrypt {
  readonly #token: string;
  readonly #key: Buffer;
  readonly appId: string;

  constructor(token: string, encodingAESKey: string, appId: string) {
    if (!token) throw new WechatCryptoError('key', 'the Token is empty');
    this.#token = token;
    this.#key = aesKeyOf(encodingAESKey);
    this.appId = appId;
  }

  /**
   * Verifies `msg_signature` over the ciphertext (before anything is decrypted), decrypts, and checks that the
   * AppID inside is this account's. Returns the message bytes.
   */
  decryptMessage(sig: string, timestamp: string, nonce: string, encrypt: string): Buffer {
    if (!signatureMatches(sig, msgSignature(this.#token, timestamp, nonce, encrypt))) {
      throw new WechatCryptoError('signature', 'msg_signature does not match');
    }
    return this.decrypt(encrypt);
  }

  /** Decrypts and checks the AppID (no signature check: callers verify first). */
  decrypt(encrypt: string): Buffer {
    const d = decryptRaw(this.#key, encrypt);
    if (!sameString(d.appId, this.appId)) {
      throw new WechatCryptoError('appid', 'the message was encrypted for another AppID');
    }
    return d.message;
  }

  encrypt(message: Buffer | string, random?: Buffer): string {
    return encryptRaw(this.#key, message, this.appId, random);
  }

  /** Encrypts and signs a reply; timestamp and nonce default to fresh values. */
  encryptReply(
    message: Buffer | string,
    timestamp?: string,
    nonce?: string,
    random?: Buffer,
  ): EncryptedEnvelope {
    const ts = timestamp ?? String(Math.floor(Date.now() / 1000));
    const n = nonce ?? String(randomBytes(4).readUInt32BE(0));
    const encrypt = this.encrypt(message, random);
    return { encrypt, msgSignature: msgSignature(this.#token, ts, n, encrypt), timestamp: ts, nonce: n };
  }

  /** The 4-part signature with this account's token. */
  sign(timestamp: string, nonce: string, encrypt: string): string {
    return msgSignature(this.#token, timestamp, nonce, encrypt);
  }

  toJSON(): Record<string, string> {
    return { appId: this.appId };
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `WXBizMsgCrypt { appId: ${JSON.stringify(this.appId)} }`;
  }
}
