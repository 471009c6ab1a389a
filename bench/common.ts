/**
 * What every part of the benchmark shares: the (made-up) account secrets every contender and the far side are
 * configured with, the paths, and the request generators that play WeChat's server and CXone.
 *
 * Every generated request is one a real platform could send: a WeChat push signed with the webhook Token (and in
 * safe mode encrypted with the EncodingAESKey and signed again over the ciphertext), a CXone agent reply with a
 * bearer token. Each carries a new message id, and the senders are spread over many users (conversations), as on a
 * real account.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { encryptRaw, aesKeyOf } from '../lib/wechat/crypto';
import { plainSignature, msgSignature } from '../lib/wechat/signature';

/** The WeChat Official Account every contender serves. None of these is a real secret. */
export const WECHAT = {
  appId: 'wxb3c4d5e6f7a8b9c0',
  appSecret: 'be9c1d2e3f4a5b6c7d8e9f0a1b2c3d4e',
  token: 'benchWebhookToken2024',
  encodingAESKey: 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG',
  originalId: 'gh_be0c4a1d2e3f',
};

/** The CXone BYOC integration: what we present to CXone, and what CXone presents to our box. */
export const CXONE = {
  clientId: 'bench-app',
  clientSecret: 'bench-app-secret-0123456789',
  accessKeyId: 'BENCHKEYID0123456789',
  accessKeySecret: 'bench-access-key-secret-0123456789abcdef',
  channelId: 'chat_bench-5d1ed0c1-8bbd-4c4b-8f0f-6f1f3bd6d1a1',
  boxClientId: 'cxone-bench-client',
  boxClientSecret: 'cxone-bench-client-secret-0123456789',
  jwtSecret: 'bench-jwt-secret-0123456789abcdef0123456789',
};

/** Where the contenders listen (relative to their HTTP root). */
export const WECHAT_PATH = '/wechat/webhook';
export const BOX_PATH = '/integration/box';
/** The DFO 3.0 base below the far side's URL. */
export const DFO_BASE_PATH = '/dfo/3.0';

/** Conversations the generated traffic is spread over (one WeChat user each). */
export const USERS = 5000;

export type Direction = 'wechat' | 'cxone';
export type PushMode = 'plain' | 'safe';

export interface GeneratedRequest {
  method: 'POST';
  path: string;
  headers: Record<string, string>;
  body: string;
}

/** The openid of user `n` (28 characters, like WeChat's). */
export function openidOf(n: number): string {
  return ('oBnch' + (n % USERS).toString(36).padStart(6, '0') + 'xKfcMiXLneG3fO4').slice(0, 28);
}

const AES_KEY = aesKeyOf(WECHAT.encodingAESKey);

/**
 * Generates WeChat pushes: a text message from user `seq % USERS` with MsgId `base + seq`. `base` keeps the ids of
 * one run apart from those of another run against the same store.
 */
export class PushGenerator {
  private seq = 0;
  readonly base: bigint;

  constructor(
    readonly mode: PushMode,
    readonly path = WECHAT_PATH,
    base?: bigint,
  ) {
    this.base = base ?? BigInt(Date.now()) * 1000n + BigInt(Math.floor(Math.random() * 1000)) * 1_000_000n;
  }

  next(): GeneratedRequest {
    const n = this.seq++;
    const now = Math.floor(Date.now() / 1000);
    const openid = openidOf(n);
    const inner =
      `<xml><ToUserName><![CDATA[${WECHAT.originalId}]]></ToUserName>` +
      `<FromUserName><![CDATA[${openid}]]></FromUserName>` +
      `<CreateTime>${now}</CreateTime><MsgType><![CDATA[text]]></MsgType>` +
      `<Content><![CDATA[你好，我的订单 #${n} 还没有到，能帮我查一下吗？]]></Content>` +
      `<MsgId>${(this.base + BigInt(n)).toString()}</MsgId></xml>`;
    const timestamp = String(now);
    const nonce = String(randomBytes(4).readUInt32BE(0));
    const signature = plainSignature(WECHAT.token, timestamp, nonce);
    let query = `signature=${signature}&timestamp=${timestamp}&nonce=${nonce}&openid=${openid}`;
    let body = inner;
    if (this.mode === 'safe') {
      const encrypt = encryptRaw(AES_KEY, inner, WECHAT.appId);
      query += `&encrypt_type=aes&msg_signature=${msgSignature(WECHAT.token, timestamp, nonce, encrypt)}`;
      body =
        `<xml><ToUserName><![CDATA[${WECHAT.originalId}]]></ToUserName>` +
        `<Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`;
    }
    return {
      method: 'POST',
      path: `${this.path}?${query}`,
      headers: { 'Content-Type': 'text/xml' },
      body,
    };
  }

  get count(): number {
    return this.seq;
  }
}

/** Generates CXone agent replies in the DFO 3.0 format (`POST {box}/2.0/channel/{channelId}/outbound`). */
export class ReplyGenerator {
  private seq = 0;
  private readonly prefix: string;

  constructor(
    private readonly bearer: () => string,
    readonly path = BOX_PATH,
  ) {
    this.prefix = randomBytes(6).toString('hex');
  }

  next(): GeneratedRequest {
    const n = this.seq++;
    const openid = openidOf(n);
    const recipient = {
      idOnExternalPlatform: openid,
      name: 'WeChat user',
      isPrimary: true,
      isPrivate: false,
    };
    const body = {
      id: `${this.prefix}-${n.toString(16).padStart(8, '0')}-4c4b-8f0f-6f1f3bd6d1a1`,
      brand: { id: 1234, tenantId: '11eb660f-4c6d-34a0-8733-0242ac110002', businessUnitId: 4597359 },
      thread: { idOnExternalPlatform: openid },
      messageContent: { type: 'TEXT', payload: { text: `您好，订单 #${n} 已经发货，预计明天送达。` } },
      attachments: [],
      authorUser: { id: 5678, firstName: 'Ada', surname: 'Agent' },
      endUserRecipients: [recipient],
      replyToMessage: { idOnExternalPlatform: '' },
      isReplyToSpecificMessage: false,
    };
    return {
      method: 'POST',
      path: `${this.path}/2.0/channel/${encodeURIComponent(CXONE.channelId)}/outbound`,
      headers: {
        'Content-Type': 'application/json',
        Accept: 'application/json',
        Authorization: `Bearer ${this.bearer()}`,
      },
      body: JSON.stringify(body),
    };
  }

  get count(): number {
    return this.seq;
  }
}

// ---- The bearer tokens of the hand-built contenders ------------------------------------------------------------

/** The HS256 key the hand-built contenders sign and check their bearer tokens with. */
export function handBuiltJwtKey(): Buffer {
  return createHash('sha256').update(CXONE.jwtSecret, 'utf8').digest();
}

function b64url(b: Buffer | string): string {
  return Buffer.from(b).toString('base64url');
}

/**
 * A token like the one a hand-built box issues from its token endpoint: HS256 with issuer, audience, subject,
 * expiry (what the pack's box checks too). The driver presents it to the hand-built contenders.
 */
export function handBuiltToken(ttlS = 3600): string {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64url(
    JSON.stringify({
      iss: 'urn:bench:box',
      aud: 'urn:bench:box:' + CXONE.boxClientId,
      sub: CXONE.boxClientId,
      iat: now,
      exp: now + ttlS,
      jti: randomBytes(8).toString('hex'),
    }),
  );
  const sig = createHmac('sha256', handBuiltJwtKey()).update(`${header}.${payload}`).digest();
  return `${header}.${payload}.${b64url(sig)}`;
}
