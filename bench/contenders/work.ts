/**
 * The work the hand-built contenders (the Express route and the bare node:http server) do per request, shared so
 * the two differ only in their HTTP stack. It is the same work the pack does on the hot path, written the way a
 * careful small server would:
 *
 * WeChat → CXone: check `signature` (sha1 over the sorted Token, timestamp, nonce; constant-time compare), refuse a
 *   DOCTYPE, parse the XML (fast-xml-parser), in safe mode check `msg_signature` over the ciphertext, decrypt
 *   (AES-256-CBC, WeChat's layout, AppID check) and parse the inner XML, map to a DFO create-message body, POST it
 *   with the bearer token (a new token once on 401), and answer `success` once CXone took it (2xx) or 502 so WeChat
 *   retries.
 * CXone → WeChat: check the bearer JWT (HS256, issuer, audience, subject, expiry; constant-time compare), parse
 *   the JSON, map to a custom-service text message, POST it with the access_token (a new token once on
 *   40001/40014/42001), and answer CXone with the reply's idOnExternalPlatform once WeChat took it, or 502.
 *
 * They answer after forwarding: with no store of their own, that is the only way they lose nothing (a failure is
 * answered with an error and the platform sends again). `ackFirst` answers before forwarding instead (faster, but
 * a message the far side refuses is gone): a variant for comparison, not the default.
 */
import { createDecipheriv, createHash, createHmac, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import { XMLParser } from 'fast-xml-parser';
import { CXONE, DFO_BASE_PATH, WECHAT, handBuiltJwtKey } from '../common';

export interface WorkOptions {
  /** The far side's base URL, e.g. http://127.0.0.1:4000. */
  farUrl: string;
  ackFirst?: boolean;
}

export interface Answer {
  status: number;
  body: string;
  contentType?: string;
}

const parser = new XMLParser({
  processEntities: false,
  htmlEntities: false,
  parseTagValue: false,
  ignoreAttributes: true,
  ignoreDeclaration: true,
  trimValues: true,
  cdataPropName: false,
});

const AES_KEY = Buffer.from(WECHAT.encodingAESKey + '=', 'base64');
const JWT_KEY = handBuiltJwtKey();

function sha1(parts: string[]): string {
  return createHash('sha1').update(parts.sort().join('')).digest('hex');
}

function sameHex(a: unknown, b: string): boolean {
  return typeof a === 'string' && a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

function parseXml(text: string): Record<string, unknown> | null {
  if (text.includes('<!')) {
    // Only CDATA may start with "<!": a DOCTYPE or ENTITY declaration is refused.
    if (/<!(?!\[CDATA\[)/.test(text)) return null;
  }
  try {
    const doc = parser.parse(text) as { xml?: unknown };
    return doc && typeof doc.xml === 'object' && doc.xml ? (doc.xml as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function decrypt(encrypt: string): string | null {
  try {
    const d = createDecipheriv('aes-256-cbc', AES_KEY, AES_KEY.subarray(0, 16));
    d.setAutoPadding(false);
    const plain = Buffer.concat([d.update(encrypt, 'base64'), d.final()]);
    const pad = plain[plain.length - 1];
    if (pad < 1 || pad > 32) return null;
    const content = plain.subarray(16, plain.length - pad);
    const len = content.readUInt32BE(0);
    if (len > content.length - 4) return null;
    const appId = content.subarray(4 + len).toString('utf8');
    if (appId !== WECHAT.appId) return null;
    return content.subarray(4, 4 + len).toString('utf8');
  } catch {
    return null;
  }
}

function text(v: unknown): string {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '';
}

/** Verifies our HS256 bearer token. */
function verifyJwt(header: string | undefined): boolean {
  const m = /^Bearer ([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(header ?? '');
  if (!m) return false;
  const expected = createHmac('sha256', JWT_KEY).update(`${m[1]}.${m[2]}`).digest();
  const got = Buffer.from(m[3], 'base64url');
  if (got.length !== expected.length || !timingSafeEqual(got, expected)) return false;
  try {
    const h = JSON.parse(Buffer.from(m[1], 'base64url').toString('utf8')) as { alg?: string };
    if (h.alg !== 'HS256') return false;
    const c = JSON.parse(Buffer.from(m[2], 'base64url').toString('utf8')) as Record<string, unknown>;
    const now = Date.now() / 1000;
    return (
      c.iss === 'urn:bench:box' &&
      c.aud === 'urn:bench:box:' + CXONE.boxClientId &&
      c.sub === CXONE.boxClientId &&
      typeof c.exp === 'number' &&
      c.exp + 5 > now
    );
  } catch {
    return false;
  }
}

interface Reply {
  status: number;
  text: string;
}

export class Work {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 256 });
  private readonly far: URL;
  private dfoToken = '';
  private wxToken = '';
  private dfoTokenFetch: Promise<string> | null = null;
  private wxTokenFetch: Promise<string> | null = null;

  constructor(private readonly o: WorkOptions) {
    this.far = new URL(o.farUrl);
  }

  private request(
    method: string,
    path: string,
    headers: Record<string, string>,
    body?: string,
  ): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: this.far.hostname,
          port: this.far.port,
          method,
          path,
          agent: this.agent,
          headers:
            body !== undefined ? { ...headers, 'Content-Length': String(Buffer.byteLength(body)) } : headers,
          timeout: 15_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end(body);
    });
  }

  // ---- tokens (one fetch at a time) ----------------------------------------------------------------------------

  private dfoTokenNow(): Promise<string> {
    if (this.dfoToken) return Promise.resolve(this.dfoToken);
    this.dfoTokenFetch ??= this.request(
      'POST',
      '/auth/token',
      {
        'Content-Type': 'application/x-www-form-urlencoded',
        Authorization: 'Basic ' + Buffer.from(`${CXONE.clientId}:${CXONE.clientSecret}`).toString('base64'),
      },
      new URLSearchParams({
        grant_type: 'password',
        username: CXONE.accessKeyId,
        password: CXONE.accessKeySecret,
      }).toString(),
    )
      .then((r) => {
        const t = (JSON.parse(r.text) as { access_token?: string }).access_token;
        if (r.status !== 200 || !t) throw new Error(`token: HTTP ${r.status}`);
        this.dfoToken = t;
        return t;
      })
      .finally(() => {
        this.dfoTokenFetch = null;
      });
    return this.dfoTokenFetch;
  }

  private wxTokenNow(): Promise<string> {
    if (this.wxToken) return Promise.resolve(this.wxToken);
    this.wxTokenFetch ??= this.request(
      'POST',
      '/cgi-bin/stable_token',
      { 'Content-Type': 'application/json' },
      JSON.stringify({ grant_type: 'client_credential', appid: WECHAT.appId, secret: WECHAT.appSecret }),
    )
      .then((r) => {
        const t = (JSON.parse(r.text) as { access_token?: string }).access_token;
        if (!t) throw new Error('no access_token');
        this.wxToken = t;
        return t;
      })
      .finally(() => {
        this.wxTokenFetch = null;
      });
    return this.wxTokenFetch;
  }

  /** Fetches both tokens before the server takes traffic. */
  async init(direction: 'wechat' | 'cxone'): Promise<void> {
    if (direction === 'wechat') await this.dfoTokenNow();
    else await this.wxTokenNow();
  }

  // ---- WeChat → CXone ------------------------------------------------------------------------------------------

  /** A push; `query` as received, `body` the raw XML. */
  async wechatPush(query: URLSearchParams, body: string): Promise<Answer> {
    const timestamp = query.get('timestamp') ?? '';
    const nonce = query.get('nonce') ?? '';
    if (!timestamp || !nonce || !sameHex(query.get('signature'), sha1([WECHAT.token, timestamp, nonce]))) {
      return { status: 401, body: '' };
    }
    let fields = parseXml(body);
    if (!fields) return { status: 400, body: 'malformed XML' };
    if (query.get('encrypt_type') === 'aes') {
      const encrypt = text(fields.Encrypt);
      if (!encrypt || !sameHex(query.get('msg_signature'), sha1([WECHAT.token, timestamp, nonce, encrypt]))) {
        return { status: 401, body: '' };
      }
      const inner = decrypt(encrypt);
      if (inner === null) return { status: 400, body: 'cannot decrypt' };
      fields = parseXml(inner);
      if (!fields) return { status: 400, body: 'malformed XML' };
    }
    const openid = text(fields.FromUserName);
    const msgId = text(fields.MsgId);
    if (!openid || !msgId || !text(fields.MsgType)) return { status: 400, body: 'missing fields' };
    const created = Number(text(fields.CreateTime)) * 1000 || Date.now();
    const dfoBody = JSON.stringify({
      idOnExternalPlatform: `wechat:${text(fields.ToUserName)}:${msgId}`,
      direction: 'inbound',
      createdAtWithMilliseconds: new Date(created).toISOString(),
      thread: { idOnExternalPlatform: openid, threadName: `WeChat ${openid}` },
      messageContent: {
        type: 'TEXT',
        payload: { text: text(fields.Content) || `[${text(fields.MsgType)}]` },
      },
      authorEndUserIdentity: { idOnExternalPlatform: openid },
    });
    const forward = this.toDfo(dfoBody);
    if (this.o.ackFirst) {
      forward.catch(() => undefined);
      return { status: 200, body: 'success' };
    }
    const ok = await forward.catch(() => false);
    return ok ? { status: 200, body: 'success' } : { status: 502, body: 'CXone did not take the message' };
  }

  private async toDfo(body: string): Promise<boolean> {
    const path = `${DFO_BASE_PATH}/channels/${encodeURIComponent(CXONE.channelId)}/messages`;
    for (let attempt = 0; attempt < 2; attempt++) {
      const token = await this.dfoTokenNow();
      const r = await this.request(
        'POST',
        path,
        { 'Content-Type': 'application/json', Accept: 'application/json', Authorization: `Bearer ${token}` },
        body,
      );
      if (r.status === 401 && attempt === 0) {
        if (this.dfoToken === token) this.dfoToken = '';
        continue;
      }
      return r.status >= 200 && r.status < 300;
    }
    return false;
  }

  // ---- CXone → WeChat ------------------------------------------------------------------------------------------

  /** An agent reply (DFO 3.0 format); `body` parsed already (Express) or raw (bare). */
  async cxoneReply(authorization: string | undefined, body: unknown): Promise<Answer> {
    if (!verifyJwt(authorization)) {
      return { status: 401, body: '{"error":"invalid_token"}', contentType: 'application/json' };
    }
    let b: Record<string, unknown>;
    try {
      const v = typeof body === 'string' ? (JSON.parse(body) as unknown) : body;
      if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
      b = v as Record<string, unknown>;
    } catch {
      return { status: 400, body: '{"error":"invalid_request"}', contentType: 'application/json' };
    }
    const thread = b.thread as { idOnExternalPlatform?: unknown } | undefined;
    const recipients = Array.isArray(b.endUserRecipients)
      ? (b.endUserRecipients as { idOnExternalPlatform?: unknown }[])
      : [];
    const openid = text(thread?.idOnExternalPlatform) || text(recipients[0]?.idOnExternalPlatform);
    const content = b.messageContent as { payload?: { text?: unknown } } | undefined;
    const message = text(content?.payload?.text);
    if (!openid || !message) {
      return { status: 400, body: '{"error":"invalid_request"}', contentType: 'application/json' };
    }
    const id = `wx-${
      text(b.id) ||
      createHash('sha1')
        .update(openid + message)
        .digest('hex')
    }`;
    const created = new Date().toISOString();
    const answer = JSON.stringify({
      message: { idOnExternalPlatform: id, createdAtWithMilliseconds: created, url: '' },
      thread: { idOnExternalPlatform: openid },
    });
    const forward = this.toWechat(
      JSON.stringify({ touser: openid, msgtype: 'text', text: { content: message } }),
    );
    if (this.o.ackFirst) {
      forward.catch(() => undefined);
      return { status: 200, body: answer, contentType: 'application/json' };
    }
    const ok = await forward.catch(() => false);
    return ok
      ? { status: 200, body: answer, contentType: 'application/json' }
      : { status: 502, body: '{"error":"wechat_refused"}', contentType: 'application/json' };
  }

  private async toWechat(body: string): Promise<boolean> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const token = await this.wxTokenNow();
      const r = await this.request(
        'POST',
        `/cgi-bin/message/custom/send?access_token=${encodeURIComponent(token)}`,
        { 'Content-Type': 'application/json' },
        body,
      );
      if (r.status !== 200) return false;
      const code = (JSON.parse(r.text) as { errcode?: number }).errcode ?? 0;
      if ((code === 40001 || code === 40014 || code === 42001) && attempt === 0) {
        if (this.wxToken === token) this.wxToken = '';
        continue;
      }
      return code === 0;
    }
    return false;
  }

  close(): void {
    this.agent.destroy();
  }
}
