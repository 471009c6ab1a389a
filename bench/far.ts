/**
 * The far side of every contender, in its own process: a fake CXone (token endpoint, discovery, DFO 3.0 create
 * message / status / typing) and a fake WeChat API (stable_token / token, custom/send, custom/typing) on one
 * loopback port. It checks what the real platforms check on the hot path (the bearer token or access_token, the
 * shape of the body), counts what arrives, and answers at once or after a delay set by the driver.
 *
 * Unlike the simulators in sandbox/sim (which record every request for tests), it keeps only counters and the set
 * of message ids seen, so it stays cheap and flat over a million messages and never limits what it measures.
 *
 * Run by the driver with `fork()`; controlled over the IPC channel:
 *   {cmd:'stats'} → counters   {cmd:'reset'}   {cmd:'delay', ms}   {cmd:'stop'}
 */
import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import { CXONE, WECHAT, DFO_BASE_PATH } from './common';

export interface FarStats {
  at: number;
  dfo: {
    messages: number;
    unique: number;
    statuses: number;
    typing: number;
    tokens: number;
    unauthorized: number;
    rejected: number;
  };
  wechat: { sends: number; typing: number; tokens: number; invalidToken: number; rejected: number };
  delayMs: number;
}

const MAX_BODY = 1024 * 1024;

function b64url(s: string): string {
  return Buffer.from(s).toString('base64url');
}

/** A JWT-shaped access token carrying the tenant id (the pack reads it when it discovers the API base). */
const DFO_TOKEN = [
  b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT' })),
  b64url(JSON.stringify({ tenantId: '11eb660f-4c6d-34a0-8733-0242ac110002', sub: 'bench', iat: 0 })),
  randomBytes(32).toString('base64url'),
].join('.');
const WX_TOKEN = randomBytes(48).toString('base64url');

let delayMs = 0;
let stats: FarStats = fresh();
let ids = new Set<string>();

function fresh(): FarStats {
  return {
    at: Date.now(),
    dfo: { messages: 0, unique: 0, statuses: 0, typing: 0, tokens: 0, unauthorized: 0, rejected: 0 },
    wechat: { sends: 0, typing: 0, tokens: 0, invalidToken: 0, rejected: 0 },
    delayMs,
  };
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const headers: Record<string, string> = { 'Content-Length': String(Buffer.byteLength(text)) };
  if (typeof body !== 'string') headers['Content-Type'] = 'application/json; charset=utf-8';
  if (delayMs > 0) {
    setTimeout(() => {
      if (!res.destroyed) {
        res.writeHead(status, headers);
        res.end(text);
      }
    }, delayMs);
    return;
  }
  res.writeHead(status, headers);
  res.end(text);
}

function isObj(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

function str(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0;
}

function json(raw: Buffer): Record<string, unknown> | null {
  try {
    const v = JSON.parse(raw.toString('utf8')) as unknown;
    return isObj(v) ? v : null;
  } catch {
    return null;
  }
}

function dfo(req: http.IncomingMessage, res: http.ServerResponse, path: string, raw: Buffer): void {
  const sub = path.slice(DFO_BASE_PATH.length);
  if (req.headers.authorization !== `Bearer ${DFO_TOKEN}`) {
    stats.dfo.unauthorized++;
    send(res, 401, { errors: [{ field: null, message: 'Unauthorized: invalid or expired token' }] });
    return;
  }
  let m: RegExpExecArray | null;
  if (req.method === 'POST' && (m = /^\/channels\/([^/]+)\/messages$/.exec(sub))) {
    const b = json(raw);
    const thread = b && isObj(b.thread) ? b.thread : null;
    const content = b && isObj(b.messageContent) ? b.messageContent : null;
    const payload = content && isObj(content.payload) ? content.payload : null;
    const author = b && isObj(b.authorEndUserIdentity) ? b.authorEndUserIdentity : null;
    if (
      !b ||
      decodeURIComponent(m[1]) !== CXONE.channelId ||
      !str(b.idOnExternalPlatform) ||
      (b.direction !== 'inbound' && b.direction !== 'outbound') ||
      !thread ||
      !str(thread.idOnExternalPlatform) ||
      !payload ||
      typeof payload.text !== 'string' ||
      !author ||
      !str(author.idOnExternalPlatform)
    ) {
      stats.dfo.rejected++;
      send(res, 400, { errors: [{ message: 'The body does not describe a message.' }] });
      return;
    }
    stats.dfo.messages++;
    if (!ids.has(b.idOnExternalPlatform)) {
      ids.add(b.idOnExternalPlatform);
      stats.dfo.unique++;
    }
    const id = `bench-${stats.dfo.messages}`;
    send(res, 200, {
      consumerContact: {
        id: `contact-${thread.idOnExternalPlatform}`,
        threadId: `t-${thread.idOnExternalPlatform}`,
      },
      message: {
        id,
        idOnExternalPlatform: b.idOnExternalPlatform,
        threadId: `t-${thread.idOnExternalPlatform}`,
        threadIdOnExternalPlatform: thread.idOnExternalPlatform,
        direction: b.direction,
      },
    });
    return;
  }
  if (req.method === 'PUT' && /^\/channels\/[^/]+\/messages\/[^/]+\/status$/.test(sub)) {
    stats.dfo.statuses++;
    send(res, 200, {});
    return;
  }
  if (req.method === 'POST' && /^\/channels\/[^/]+\/threads\/[^/]+\/sender-actions$/.test(sub)) {
    stats.dfo.typing++;
    send(res, 200, {});
    return;
  }
  send(res, 404, { errors: [{ message: 'not found' }] });
}

function dfoToken(req: http.IncomingMessage, res: http.ServerResponse, raw: Buffer): void {
  const basic = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  const dec = basic ? Buffer.from(basic[1], 'base64').toString('utf8') : '';
  const form = new URLSearchParams(raw.toString('utf8'));
  const un = (s: string): string => decodeURIComponent(s.replace(/\+/g, ' '));
  const i = dec.indexOf(':');
  const id = i >= 0 ? un(dec.slice(0, i)) : '';
  const secret = i >= 0 ? un(dec.slice(i + 1)) : '';
  if (id !== CXONE.clientId || secret !== CXONE.clientSecret) {
    send(res, 401, { error: 'invalid_client' });
    return;
  }
  if (form.get('username') !== CXONE.accessKeyId || form.get('password') !== CXONE.accessKeySecret) {
    send(res, 400, { error: 'invalid_grant' });
    return;
  }
  stats.dfo.tokens++;
  send(res, 200, { access_token: DFO_TOKEN, token_type: 'Bearer', expires_in: 3600 });
}

function wechat(req: http.IncomingMessage, res: http.ServerResponse, url: URL, raw: Buffer): void {
  const path = url.pathname;
  if (path === '/cgi-bin/stable_token' || path === '/cgi-bin/token') {
    const q =
      req.method === 'POST'
        ? (json(raw) ?? {})
        : { appid: url.searchParams.get('appid'), secret: url.searchParams.get('secret') };
    if (q.appid !== WECHAT.appId || q.secret !== WECHAT.appSecret) {
      send(res, 200, { errcode: 40125, errmsg: 'invalid appsecret' });
      return;
    }
    stats.wechat.tokens++;
    send(res, 200, { access_token: WX_TOKEN, expires_in: 7200 });
    return;
  }
  if (url.searchParams.get('access_token') !== WX_TOKEN) {
    stats.wechat.invalidToken++;
    send(res, 200, { errcode: 40001, errmsg: 'invalid credential, access_token is invalid or not latest' });
    return;
  }
  const b = json(raw);
  if (path === '/cgi-bin/message/custom/send' && req.method === 'POST') {
    const text = b && isObj(b.text) ? b.text : null;
    if (!b || !str(b.touser) || b.msgtype !== 'text' || !text || !str(text.content)) {
      stats.wechat.rejected++;
      send(res, 200, { errcode: 44002, errmsg: 'empty post data' });
      return;
    }
    stats.wechat.sends++;
    send(res, 200, { errcode: 0, errmsg: 'ok' });
    return;
  }
  if (path === '/cgi-bin/message/custom/typing' && req.method === 'POST') {
    stats.wechat.typing++;
    send(res, 200, { errcode: 0, errmsg: 'ok' });
    return;
  }
  send(res, 404, { errcode: 404, errmsg: 'not found' });
}

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (c: Buffer) => {
    size += c.length;
    if (size > MAX_BODY) {
      req.destroy();
      return;
    }
    chunks.push(c);
  });
  req.on('end', () => {
    const raw = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', 'http://far');
    const path = url.pathname;
    if (path === '/.well-known/openid-configuration') {
      send(res, 200, {
        issuer: `http://${req.headers.host}`,
        token_endpoint: `http://${req.headers.host}/auth/token`,
      });
    } else if (path === '/.well-known/cxone-configuration') {
      send(res, 200, { api_endpoint: `http://${req.headers.host}` });
    } else if (path === '/auth/token' && req.method === 'POST') {
      dfoToken(req, res, raw);
    } else if (path.startsWith(DFO_BASE_PATH + '/')) {
      dfo(req, res, path, raw);
    } else if (path.startsWith('/cgi-bin/')) {
      wechat(req, res, url, raw);
    } else {
      send(res, 404, 'not found');
    }
  });
});
server.keepAliveTimeout = 60_000;
server.headersTimeout = 65_000;

process.on('message', (m: { cmd?: string; ms?: number; id?: number }) => {
  const reply = (data: unknown): void => {
    process.send?.({ id: m.id, data });
  };
  switch (m.cmd) {
    case 'stats':
      reply({ ...stats, at: Date.now(), delayMs });
      break;
    case 'reset':
      stats = fresh();
      ids = new Set();
      reply(true);
      break;
    case 'delay':
      delayMs = Math.max(0, Number(m.ms) || 0);
      reply(delayMs);
      break;
    case 'stop':
      server.close();
      server.closeAllConnections();
      reply(true);
      setTimeout(() => process.exit(0), 50);
      break;
    default:
      reply(null);
  }
});

server.listen(0, '127.0.0.1', () => {
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  process.send?.({ ready: true, port });
});
