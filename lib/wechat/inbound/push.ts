/**
 * Opening a push from WeChat's server: URL verification (GET) and message/event pushes (POST) in plain,
 * compatible and safe mode (docs/protocol/wechat.md §2–4).
 *
 * Order of checks for a POST, so nothing is parsed or decrypted for an unauthenticated sender beyond the
 * envelope: signature (3-part) → outer XML (limits, no DOCTYPE) → for encrypted pushes msg_signature (4-part,
 * over the Encrypt value) → decrypt → AppID → inner XML → required fields.
 *
 * Every failure is a `PushError` with the HTTP status to answer and a short reason that is safe to log and to
 * show (never a secret, never the body).
 */
import { WXBizMsgCrypt, WechatCryptoError } from '../crypto';
import { verifyMsgSignature, verifyPlainSignature } from '../signature';
import { parseWechatXml, XmlError, type XmlLimits, type XmlObject } from '../xml';
import { missingFields, str } from './normalize';

export type PushMode = 'plain' | 'compat' | 'safe';

export interface PushSecrets {
  /** The webhook Token. */
  token: string;
  /** 43 characters; empty or undefined when the account runs in plain mode. */
  encodingAESKey?: string;
  appId: string;
}

export type PushErrorCode =
  | 'signature'
  | 'timestamp'
  | 'plain'
  | 'appid'
  | 'xml'
  | 'content-type'
  | 'fields'
  | 'encrypt'
  | 'no-key'
  | 'bad-key'
  | 'not-configured';

export class PushError extends Error {
  constructor(
    readonly status: number,
    readonly code: PushErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'PushError';
  }
  /** Whether the answer carries no body (authentication failures say nothing). */
  get silent(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

export interface OpenedPush {
  mode: PushMode;
  /** The message fields (decrypted in compatible and safe mode), WeChat's names, string values. */
  fields: XmlObject;
  /** The message XML as received (plain) or as decrypted. */
  xml: string;
  /** The query as sent. */
  query: Record<string, string>;
  /** Whether the fields came from the decrypted copy. */
  decrypted: boolean;
}

/** The query as a plain object (first value of each name). */
export function queryObject(q: URLSearchParams): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of q) if (!(k in out)) out[k] = v;
  return out;
}

/**
 * URL verification: the `echostr` to answer when the signature belongs to the token, otherwise null.
 * Official Accounts never encrypt `echostr`, in any mode.
 */
export function verifyUrl(token: string, q: URLSearchParams): string | null {
  const ok = verifyPlainSignature(token, {
    signature: q.get('signature'),
    timestamp: q.get('timestamp'),
    nonce: q.get('nonce'),
  });
  if (!ok) return null;
  return q.get('echostr');
}

function xmlFailure(err: unknown): PushError {
  if (err instanceof XmlError) return new PushError(err.status, 'xml', err.message);
  return new PushError(400, 'xml', 'the body is not well-formed XML');
}

/** Opens a POST push. Throws PushError. */
export function openPush(
  secrets: PushSecrets,
  q: URLSearchParams,
  body: Buffer | string,
  limits: XmlLimits = {},
): OpenedPush {
  if (!secrets.token) throw new PushError(500, 'not-configured', 'the account has no Token configured');
  const query = queryObject(q);
  if (
    !verifyPlainSignature(secrets.token, {
      signature: query.signature,
      timestamp: query.timestamp,
      nonce: query.nonce,
    })
  ) {
    throw new PushError(401, 'signature', 'the signature does not match the Token');
  }
  let outer: XmlObject;
  try {
    outer = parseWechatXml(body, limits);
  } catch (err) {
    throw xmlFailure(err);
  }
  const encryptType = (query.encrypt_type ?? '').toLowerCase();
  if (encryptType && encryptType !== 'aes' && encryptType !== 'raw') {
    throw new PushError(400, 'encrypt', 'encrypt_type must be "aes" or "raw"');
  }
  const encrypt = str(outer, 'Encrypt');
  const encrypted =
    encryptType === 'aes' || (encryptType === '' && encrypt !== undefined && !!query.msg_signature);

  if (!encrypted) {
    const xml = typeof body === 'string' ? body : body.toString('utf8');
    return finish({ mode: 'plain', fields: outer, xml, query, decrypted: false });
  }

  if (!encrypt || !encrypt.trim())
    throw new PushError(400, 'encrypt', 'the encrypted push has no Encrypt value');
  if (!verifyMsgSignature(secrets.token, query, encrypt.trim())) {
    throw new PushError(401, 'signature', 'msg_signature does not match the Token and the Encrypt value');
  }
  const compat = Object.keys(outer).some((k) => k !== 'ToUserName' && k !== 'Encrypt');
  const mode: PushMode = compat ? 'compat' : 'safe';
  if (!secrets.encodingAESKey) {
    if (compat) {
      // Compatible mode carries the message in plain beside the ciphertext; with no key, use that copy.
      const fields = { ...outer };
      delete fields.Encrypt;
      const xml = typeof body === 'string' ? body : body.toString('utf8');
      return finish({ mode, fields, xml, query, decrypted: false });
    }
    throw new PushError(
      500,
      'no-key',
      'the push is encrypted (safe mode) but the account has no EncodingAESKey configured',
    );
  }
  let crypt: WXBizMsgCrypt;
  try {
    crypt = new WXBizMsgCrypt(secrets.token, secrets.encodingAESKey, secrets.appId);
  } catch {
    throw new PushError(500, 'bad-key', 'the configured EncodingAESKey is not 43 base64 characters');
  }
  let inner: Buffer;
  try {
    inner = crypt.decrypt(encrypt.trim());
  } catch (err) {
    if (err instanceof WechatCryptoError && err.code === 'appid') {
      throw new PushError(401, 'appid', 'the push was encrypted for another AppID');
    }
    throw new PushError(
      400,
      'encrypt',
      'the Encrypt value could not be decrypted with the configured EncodingAESKey',
    );
  }
  let fields: XmlObject;
  try {
    fields = parseWechatXml(inner, limits);
  } catch (err) {
    throw xmlFailure(err);
  }
  return finish({ mode, fields, xml: inner.toString('utf8'), query, decrypted: true });
}

function finish(p: OpenedPush): OpenedPush {
  const missing = missingFields(p.fields);
  if (missing) throw new PushError(400, 'fields', missing);
  return p;
}
