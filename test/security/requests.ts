/**
 * Request builders and a bare HTTP client for the security tests: WeChat pushes signed and encrypted the way
 * WeChat does it (written here independently of lib/wechat), box tokens genuine and forged, and a client that sends
 * exactly the bytes it is given (odd headers, truncated bodies, bodies streamed past a limit).
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as net from 'node:net';
import jwt from 'jsonwebtoken';

// ---------------------------------------------------------------------------------------------------------
// WeChat

export interface WxAccount {
  appId: string;
  /** The account's original id (gh_…), ToUserName of its pushes. */
  gh: string;
  token: string;
  /** 43 characters, or undefined for an account in plain mode. */
  aesKey?: string;
}

export type WxMode = 'plain' | 'compat' | 'safe';

export function sha1Sorted(...parts: string[]): string {
  return createHash('sha1').update(parts.map(String).sort().join(''), 'utf8').digest('hex');
}

function cdata(s: string): string {
  return '<![CDATA[' + s.split(']]>').join(']]]]><![CDATA[>') + ']]>';
}

/** `<xml>` with each field in CDATA (numbers as text, as WeChat writes CreateTime and MsgId). */
export function wxXml(fields: [string, string | number][]): string {
  return (
    '<xml>' +
    fields.map(([k, v]) => `<${k}>${typeof v === 'number' ? String(v) : cdata(v)}</${k}>`).join('') +
    '</xml>'
  );
}

/** A text message push. */
export function textPush(
  a: WxAccount,
  openid: string,
  text: string,
  msgId: string,
  createTime = Math.floor(Date.now() / 1000),
): string {
  return wxXml([
    ['ToUserName', a.gh],
    ['FromUserName', openid],
    ['CreateTime', createTime],
    ['MsgType', 'text'],
    ['Content', text],
    ['MsgId', msgId],
  ]);
}

/** WeChat's message encryption: AES-256-CBC over random(16) + length(4, BE) + msg + appId, PKCS#7 to 32 bytes. */
export function wxEncrypt(a: WxAccount, msg: string | Buffer, appId = a.appId): string {
  if (!a.aesKey) throw new Error('the account has no EncodingAESKey');
  const key = Buffer.from(a.aesKey + '=', 'base64');
  const body = Buffer.isBuffer(msg) ? msg : Buffer.from(msg, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length, 0);
  const plain = Buffer.concat([randomBytes(16), len, body, Buffer.from(appId, 'utf8')]);
  const pad = 32 - (plain.length % 32);
  const padded = Buffer.concat([plain, Buffer.alloc(pad, pad)]);
  const c = createCipheriv('aes-256-cbc', key, key.subarray(0, 16));
  c.setAutoPadding(false);
  return Buffer.concat([c.update(padded), c.final()]).toString('base64');
}

export interface WxRequest {
  /** Query string (without '?'). */
  query: string;
  body: Buffer;
}

export interface PushOptions {
  timestamp?: string;
  nonce?: string;
  /** Encrypt for this AppID instead of the account's. */
  appId?: string;
  openid?: string;
}

/** A signed push of `xml` in `mode` (compat and safe: encrypted, with msg_signature). */
export function wxPush(a: WxAccount, mode: WxMode, xml: string | Buffer, o: PushOptions = {}): WxRequest {
  const timestamp = o.timestamp ?? String(Math.floor(Date.now() / 1000));
  const nonce = o.nonce ?? String(randomBytes(4).readUInt32BE(0));
  const q = new URLSearchParams({
    signature: sha1Sorted(a.token, timestamp, nonce),
    timestamp,
    nonce,
    openid: o.openid ?? 'oSecUser0000000000000000001',
  });
  const xmlBuf = Buffer.isBuffer(xml) ? xml : Buffer.from(xml, 'utf8');
  if (mode === 'plain') return { query: q.toString(), body: xmlBuf };
  const encrypt = wxEncrypt(a, xmlBuf, o.appId);
  q.set('encrypt_type', 'aes');
  q.set('msg_signature', sha1Sorted(a.token, timestamp, nonce, encrypt));
  let body: string;
  if (mode === 'safe') {
    body = `<xml><ToUserName>${cdata(a.gh)}</ToUserName><Encrypt>${cdata(encrypt)}</Encrypt></xml>`;
  } else {
    // Compatible mode: the message in plain and, beside it, encrypted.
    const s = xmlBuf.toString('utf8');
    body = s.replace(/<\/xml>\s*$/, `<Encrypt>${cdata(encrypt)}</Encrypt></xml>`);
  }
  return { query: q.toString(), body: Buffer.from(body, 'utf8') };
}

/** URL verification query. */
export function wxVerifyQuery(token: string, echostr: string): string {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = String(randomBytes(4).readUInt32BE(0));
  return new URLSearchParams({
    signature: sha1Sorted(token, timestamp, nonce),
    timestamp,
    nonce,
    echostr,
  }).toString();
}

// ---------------------------------------------------------------------------------------------------------
// The box's tokens

export const BOX_ISSUER = 'urn:wxcx:cxone-dfo-in';

export function boxAudience(clientId: string): string {
  return 'urn:wxcx:box:' + createHash('sha256').update(clientId, 'utf8').digest('hex').slice(0, 24);
}

function b64url(v: unknown): string {
  return Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
}

/** Tokens the box must refuse, each with what is wrong with it. */
export function forgedBoxTokens(clientId: string, validToken: string): { what: string; token: string }[] {
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iat: now,
    exp: now + 600,
    jti: 'f0r9ed',
    iss: BOX_ISSUER,
    aud: boxAudience(clientId),
    sub: clientId,
  };
  const otherKey = randomBytes(32);
  const [h, p] = validToken.split('.');
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
  const keyPair = (() => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { generateKeyPairSync } = require('node:crypto') as typeof import('node:crypto');
    return generateKeyPairSync('rsa', { modulusLength: 2048 });
  })();
  return [
    { what: 'alg none, no signature', token: `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims)}.` },
    {
      what: 'alg none with the genuine payload',
      token: `${b64url({ alg: 'none', typ: 'JWT' })}.${p}.`,
    },
    { what: 'HS256 with another key', token: jwt.sign(claims, otherKey, { algorithm: 'HS256' }) },
    {
      what: 'HS512 with another key',
      token: jwt.sign(claims, otherKey, { algorithm: 'HS512' }),
    },
    {
      what: 'RS256 with a key of its own',
      token: jwt.sign(claims, keyPair.privateKey, { algorithm: 'RS256' }),
    },
    {
      what: 'the genuine token with its payload changed (longer expiry)',
      token: `${h}.${b64url({ ...payload, exp: now + 10 * 365 * 86400 })}.${validToken.split('.')[2]}`,
    },
    {
      what: 'the genuine token with its header changed to HS384',
      token: `${b64url({ alg: 'HS384', typ: 'JWT' })}.${p}.${validToken.split('.')[2]}`,
    },
    { what: 'the genuine token without its signature', token: `${h}.${p}.` },
    { what: 'two parts only', token: `${h}.${p}` },
    { what: 'garbage', token: 'not-a-token' },
  ];
}

// ---------------------------------------------------------------------------------------------------------
// HTTP

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
  /** Milliseconds from sending to the answer. */
  ms: number;
}

export interface SendOptions {
  method?: string;
  headers?: Record<string, string | string[]>;
  body?: Buffer | string;
  /** Send the body in these pieces (chunked unless a Content-Length header is given). */
  chunks?: (Buffer | string)[];
  agent?: http.Agent;
  timeoutMs?: number;
  /**
   * Told when a kept-alive connection was closed by the server just as this request went out on it (the known
   * race of keep-alive; Node's docs advise a retry): the request is then sent again once, on a new connection.
   */
  onReusedReset?: (history: string[]) => void;
  /** A label kept on the socket, so a failure can name the request that used the socket before. */
  label?: string;
}

const socketHistory = new WeakMap<object, string[]>();
/** What went over a socket before (labels), for diagnostics. */
export function historyOf(req: http.ClientRequest): string[] {
  return (req.socket && socketHistory.get(req.socket)) ?? [];
}

/** One request; resolves with the answer (any status), rejects on a network failure or timeout. */
export function send(url: string, o: SendOptions = {}): Promise<Answer> {
  const t0 = Date.now();
  return new Promise<Answer>((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: o.method ?? (o.body !== undefined || o.chunks ? 'POST' : 'GET'),
        headers: o.headers,
        agent: o.agent,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          const body = Buffer.concat(parts);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            text: body.toString('utf8'),
            ms: Date.now() - t0,
          });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(o.timeoutMs ?? 15_000, () => req.destroy(new Error(`no answer from ${url} in time`)));
    req.on('socket', (sock) => {
      const h = socketHistory.get(sock) ?? [];
      h.push(`${o.label ?? url}${req.reusedSocket ? ' (reused)' : ''}`);
      if (h.length > 4) h.shift();
      socketHistory.set(sock, h);
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (o.label) err.message += ` [socket history: ${historyOf(req).join(' | ')}]`;
      if (o.onReusedReset && req.reusedSocket && err.code === 'ECONNRESET') {
        o.onReusedReset(historyOf(req));
        send(url, { ...o, agent: undefined, onReusedReset: undefined }).then(
          resolve,
          (e: NodeJS.ErrnoException) => {
            e.message = `after a retry on a new connection: ${e.message}`;
            reject(e);
          },
        );
        return;
      }
      reject(err);
    });
    if (o.chunks) {
      for (const c of o.chunks) req.write(c);
      req.end();
    } else req.end(o.body);
  });
}

export interface RawAnswer {
  /** The status line's code, if an answer came. */
  status?: number;
  /** Everything received. */
  text: string;
  /** The server closed the connection. */
  closed: boolean;
  /** The wait ran out first: no final answer, and the server had not closed the connection. */
  timedOut: boolean;
}

/**
 * Writes `bytes` on a fresh TCP connection, then (optionally) half-closes it, and collects what comes back until
 * the server closes or `waitMs` passes.
 */
export function rawRequest(
  port: number,
  bytes: Buffer | string,
  o: { halfClose?: boolean; waitMs?: number; host?: string } = {},
): Promise<RawAnswer> {
  return new Promise<RawAnswer>((resolve) => {
    const sock = net.connect(port, o.host ?? '127.0.0.1');
    const got: Buffer[] = [];
    let closed = false;
    let timedOut = false;
    const finish = (): void => {
      clearTimeout(timer);
      sock.destroy();
      const text = Buffer.concat(got).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ status: m ? Number(m[1]) : undefined, text, closed, timedOut });
    };
    const timer = setTimeout(() => {
      timedOut = true;
      finish();
    }, o.waitMs ?? 3000);
    sock.on('data', (c: Buffer) => {
      got.push(c);
      // Done as soon as a final answer (not "100 Continue") has arrived whole: a kept-alive connection would
      // otherwise hold the caller until the timer.
      if (finalAnswerComplete(Buffer.concat(got).toString('latin1'))) finish();
    });
    sock.on('end', () => {
      closed = true;
      finish();
    });
    sock.on('error', () => {
      closed = true;
      finish();
    });
    sock.on('connect', () => {
      sock.write(bytes);
      if (o.halfClose) sock.end();
    });
  });
}

/** Whether `text` (the bytes a server sent on one connection) holds a complete answer with a status of 200 or more. */
function finalAnswerComplete(text: string): boolean {
  let at = 0;
  for (;;) {
    const head = text.indexOf('\r\n\r\n', at);
    if (head < 0) return false;
    const block = text.slice(at, head);
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(block);
    if (!status) return false;
    const bodyAt = head + 4;
    if (Number(status[1]) < 200) {
      at = bodyAt; // an interim answer: the final one follows
      continue;
    }
    const len = /\r\ncontent-length:\s*(\d+)/i.exec(block);
    if (len) return text.length - bodyAt >= Number(len[1]);
    if (/\r\ntransfer-encoding:\s*chunked/i.test(block)) return text.includes('\r\n0\r\n\r\n', bodyAt - 2);
    return false; // the body ends when the server closes
  }
}

export function portOf(url: string): number {
  return Number(new URL(url).port);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
