/**
 * A local stand-in for WeChat's Official Account API (api.weixin.qq.com) over real HTTP on 127.0.0.1: what the
 * pack calls (docs/protocol/wechat.md §8–12). Used by the tests and by the sandbox.
 *
 * - `/cgi-bin/token` (GET; each fetch replaces the previous token, which keeps working 5 minutes) and
 *   `/cgi-bin/stable_token` (POST JSON; the same token until 5 minutes before expiry; `force_refresh` replaces it
 *   at once, at most once per 30 s); expires_in 7200; every fetch counted. Wrong secret → 40001 on /token,
 *   40125 on stable_token; wrong AppID → 40013; an IP whitelist switch → 40164.
 * - `/cgi-bin/message/custom/send`: access_token checked (41001 missing, 40001 unknown or replaced, 42001
 *   expired); the 48-hour window after a user message with 5 replies (3 in 1 minute after a menu click, a follow or
 *   a scan) → 45015 / 45047; unknown openid 40003; unfollowed 45015; "receive messages" off 48002; text over 2048
 *   bytes 45002; empty text 44004; unknown media_id 40007; more than one news article 45008.
 * - `/cgi-bin/message/custom/typing` (45080 without an exchange in the last 30 s, 45081 while typing, 45072),
 *   `/cgi-bin/message/template/send` (40037 unknown template, 43004 not following; msgid beyond 2^53).
 * - `/cgi-bin/media/upload` (multipart field `media`; type, format and size checked) and `/cgi-bin/media/get`
 *   (the bytes with Content-Type and Content-disposition; video → JSON `video_url`; errors as JSON with HTTP 200).
 * - Failure injection for the next N calls: errcode -1 (system busy), any errcode, an HTTP status, a connection
 *   reset, a delay. Several listeners ("hosts") can share one state, so failover from "api" to "api2" is real.
 * - Every call is recorded (`calls`), and every message that got through is in `inbox`.
 */
import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface WechatApiSimOptions {
  appId?: string;
  appSecret?: string;
  /** Token lifetime, s (default 7200). */
  tokenTtlSec?: number;
  /** Text limit, bytes (default 2048). */
  textLimitBytes?: number;
  /** Openids that follow the account from the start (they still need to write before they can be answered). */
  followers?: string[];
  /** Template ids that exist. */
  templates?: string[];
  /** Answer every unknown openid with 40003 (default true); false treats unknown openids as followers. */
  strictOpenids?: boolean;
}

export type InjectionKind = 'busy' | 'errcode' | 'status' | 'reset' | 'delay';

export interface Injection {
  kind: InjectionKind;
  /** How many calls it applies to (default 1). */
  count?: number;
  /** Only calls whose path starts with this (e.g. '/cgi-bin/message/custom/send'). */
  path?: string;
  /** Only calls to this host label ('api', 'api2', …). */
  host?: string;
  /** For 'errcode'. */
  errcode?: number;
  errmsg?: string;
  /** For 'status' (default 500). */
  status?: number;
  /** For 'delay': wait this long, then answer normally (default 2000). */
  delayMs?: number;
}

export interface CallRecord {
  at: number;
  host: string;
  method: string;
  path: string;
  query: Record<string, string>;
  /** Parsed JSON body, when there was one. */
  json?: unknown;
  /** What an upload carried. */
  upload?: { type: string; filename?: string; contentType?: string; size: number };
  /** What was answered: an errcode (0 for success), an HTTP status, or 'reset'. */
  errcode?: number;
  status: number | 'reset';
  /** The injection that shaped the answer. */
  injected?: InjectionKind;
}

export interface InboxMessage {
  at: number;
  host: string;
  body: Record<string, unknown>;
}

interface UserState {
  followed: boolean;
  receive: boolean;
  /** Grants to send: 5 per 48 h after a user message, 3 per minute after click/follow/scan. */
  grants: { kind: 'message' | 'event'; until: number; remaining: number }[];
  lastExchange: number;
  typingUntil: number;
}

interface MediaItem {
  type: string;
  data: Buffer;
  contentType: string;
  filename: string;
  createdAt: number;
}

interface Listener {
  label: string;
  server: http.Server;
  sockets: Set<Socket>;
  url: string;
}

const H48 = 48 * 60 * 60_000;
const MEDIA_TTL = 3 * 24 * 60 * 60_000;
const MEDIA_LIMITS: Record<string, { max: number; types: string[]; err: number }> = {
  image: { max: 10 * 1024 * 1024, types: ['image/jpeg', 'image/png', 'image/gif', 'image/bmp'], err: 40009 },
  voice: { max: 2 * 1024 * 1024, types: ['audio/amr', 'audio/mpeg', 'audio/mp3'], err: 40010 },
  video: { max: 10 * 1024 * 1024, types: ['video/mp4'], err: 40011 },
  thumb: { max: 64 * 1024, types: ['image/jpeg'], err: 40012 },
};
const CUSTOM_TYPES = new Set([
  'text',
  'image',
  'voice',
  'video',
  'music',
  'news',
  'mpnews',
  'mpnewsarticle',
  'msgmenu',
  'wxcard',
  'miniprogrampage',
]);
const ERRMSG: Record<number, string> = {
  [-1]: 'system error',
  0: 'ok',
  40001: 'invalid credential, access_token is invalid or not latest',
  40002: 'invalid grant_type',
  40003: 'invalid openid',
  40004: 'invalid media type',
  40005: 'invalid file type',
  40007: 'invalid media_id',
  40008: 'invalid message type',
  40009: 'invalid image size',
  40010: 'invalid voice size',
  40011: 'invalid video size',
  40012: 'invalid thumb size',
  40013: 'invalid appid',
  40037: 'invalid template_id',
  40125: 'invalid appsecret',
  40164: 'invalid ip 127.0.0.1 ipv6 ::ffff:127.0.0.1, not in whitelist',
  41001: 'access_token missing',
  41005: 'media data missing',
  42001: 'access_token expired',
  43004: 'require subscribe',
  44002: 'empty post data',
  44004: 'empty content',
  45002: 'content size out of limit',
  45008: 'article size out of limit',
  45015: 'response out of time limit or subscription is canceled',
  45047: 'out of response count limit',
  45072: 'invalid command',
  45080: 'need sending message to user, or recving message from user in the last 30 seconds before typing',
  45081: 'you are already typing',
  47001: 'data format error',
  47003: 'argument invalid!',
  48002: 'user block receive message',
};

const rid = (): string => randomBytes(4).toString('hex') + '-' + randomBytes(4).toString('hex');
const newToken = (): string =>
  // Real tokens are ~136–160 characters of [A-Za-z0-9_-]
  randomBytes(102).toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const newMediaId = (): string =>
  randomBytes(48).toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

/** A minimal multipart/form-data reader: the parts' headers and bytes. */
export function parseMultipart(
  body: Buffer,
  contentType: string,
): { name?: string; filename?: string; contentType?: string; data: Buffer }[] {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  if (!m) return [];
  const boundary = Buffer.from('--' + (m[1] ?? m[2]).trim());
  const parts: { name?: string; filename?: string; contentType?: string; data: Buffer }[] = [];
  let pos = body.indexOf(boundary);
  while (pos >= 0) {
    const start = pos + boundary.length;
    if (body.subarray(start, start + 2).toString() === '--') break;
    const headEnd = body.indexOf('\r\n\r\n', start);
    if (headEnd < 0) break;
    const next = body.indexOf(boundary, headEnd + 4);
    if (next < 0) break;
    const head = body.subarray(start, headEnd).toString('utf8');
    const data = body.subarray(headEnd + 4, next - 2); // minus the CRLF before the boundary
    const cd = /content-disposition:([^\r\n]*)/i.exec(head)?.[1] ?? '';
    parts.push({
      name: /\bname="([^"]*)"/i.exec(cd)?.[1],
      filename: /\bfilename="([^"]*)"/i.exec(cd)?.[1],
      contentType: /content-type:\s*([^\r\n]*)/i.exec(head)?.[1]?.trim(),
      data,
    });
    pos = next;
  }
  return parts;
}

export class WechatApiSim {
  readonly appId: string;
  readonly appSecret: string;
  /** Every call, oldest first (the last 20,000). */
  readonly calls: CallRecord[] = [];
  /** Messages WeChat accepted, oldest first. */
  readonly inbox: InboxMessage[] = [];
  /** Template messages accepted. */
  readonly templates: InboxMessage[] = [];
  /** Typing commands accepted. */
  readonly typing: { at: number; touser: string; command: string }[] = [];
  /** Token fetches answered (successful or not), by endpoint. */
  readonly fetches = { token: 0, stable: 0, issued: 0 };
  uploads = 0;
  ipWhitelisted = true;

  private readonly opts: Required<Omit<WechatApiSimOptions, 'followers' | 'templates'>>;
  private readonly templateIds: Set<string>;
  private readonly users = new Map<string, UserState>();
  private readonly media = new Map<string, MediaItem>();
  private readonly listeners = new Map<string, Listener>();
  private injections: (Injection & { remaining: number })[] = [];
  private delayed = 0;
  /** The most calls held by a 'delay' injection at once so far (how many the client keeps in flight). */
  maxDelayed = 0;
  private offset = 0;
  private stable?: { t: string; exp: number; forcedAt: number };
  /** Classic tokens: the current one and the previous one (valid 5 more minutes). */
  private classic: { t: string; exp: number }[] = [];
  private msgid = 2702600966117900288n;

  constructor(opts: WechatApiSimOptions = {}) {
    this.appId = opts.appId ?? 'wx2c2769f8efd9abc2';
    this.appSecret = opts.appSecret ?? randomBytes(16).toString('hex');
    this.opts = {
      appId: this.appId,
      appSecret: this.appSecret,
      tokenTtlSec: opts.tokenTtlSec ?? 7200,
      textLimitBytes: opts.textLimitBytes ?? 2048,
      strictOpenids: opts.strictOpenids ?? true,
    };
    this.templateIds = new Set(opts.templates ?? []);
    for (const o of opts.followers ?? []) this.user(o);
  }

  // ---- time -------------------------------------------------------------------------------------------------

  now(): number {
    return Date.now() + this.offset;
  }

  /** Moves the simulator's clock forward (tokens, windows, quotas, media expiry). */
  advance(ms: number): void {
    this.offset += ms;
  }

  // ---- hosts ------------------------------------------------------------------------------------------------

  /** The first host's URL ("api"). */
  get url(): string {
    return this.listeners.get('api')?.url ?? '';
  }

  urlOf(label: string): string {
    const l = this.listeners.get(label);
    if (!l) throw new Error(`no host ${label}`);
    return l.url;
  }

  /** Starts the first host ("api"). */
  async start(port = 0): Promise<string> {
    return this.startHost('api', port);
  }

  /** Starts another listener that shares this simulator's state (e.g. "api2"), on `port` (0: any free port). */
  async startHost(label: string, port = 0): Promise<string> {
    if (this.listeners.has(label)) return this.urlOf(label);
    const sockets = new Set<Socket>();
    const server = http.createServer((req, res) => {
      this.handle(label, req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
    server.keepAliveTimeout = 5_000;
    server.on('connection', (s: Socket) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    this.listeners.set(label, { label, server, sockets, url });
    return url;
  }

  /** Stops one host: its port then refuses connections. */
  async stopHost(label: string): Promise<void> {
    const l = this.listeners.get(label);
    if (!l) return;
    this.listeners.delete(label);
    for (const s of l.sockets) s.destroy();
    await new Promise<void>((resolve) => l.server.close(() => resolve()));
  }

  async stop(): Promise<void> {
    for (const label of [...this.listeners.keys()]) await this.stopHost(label);
  }

  // ---- knobs for tests and the sandbox ------------------------------------------------------------------------

  /** Shapes the next calls' answers. */
  inject(i: Injection): void {
    this.injections.push({ ...i, remaining: i.count ?? 1 });
  }

  clearInjections(): void {
    this.injections = [];
  }

  /** The user wrote to the account: 5 replies within 48 hours (replacing the previous quota). */
  onUserMessage(openid: string): void {
    const u = this.user(openid);
    u.followed = true;
    const now = this.now();
    // A new message renews the quota to 5 (it does not add up); grants from recent events stay.
    u.grants = u.grants.filter((g) => g.kind === 'event' && g.until > now);
    u.grants.push({ kind: 'message', until: now + H48, remaining: 5 });
    u.lastExchange = now;
  }

  /** A follow, a scan, or a menu click (click / scancode_push / scancode_waitmsg): 3 replies within 1 minute. */
  onUserEvent(openid: string, event: 'subscribe' | 'unsubscribe' | 'scan' | 'click'): void {
    const u = this.user(openid);
    const now = this.now();
    if (event === 'unsubscribe') {
      u.followed = false;
      u.grants = [];
      return;
    }
    u.followed = true;
    u.grants.push({ kind: 'event', until: now + 60_000, remaining: 3 });
    u.lastExchange = now;
  }

  /** The user switched "receive messages" off (48002) or on. */
  setReceive(openid: string, on: boolean): void {
    this.user(openid).receive = on;
  }

  addTemplate(id: string): void {
    this.templateIds.add(id);
  }

  /** The IP whitelist: false answers 40164 on the token endpoints. */
  setIpWhitelisted(on: boolean): void {
    this.ipWhitelisted = on;
  }

  /** Another party force-refreshed the stable token (or fetched a classic one): current tokens stop working. */
  revokeTokens(): void {
    if (this.stable)
      this.stable = { t: newToken(), exp: this.now() + this.opts.tokenTtlSec * 1000, forcedAt: 0 };
    this.classic = [];
  }

  /** The current stable token (to make it fail in tests). */
  get currentStableToken(): string | undefined {
    return this.stable?.t;
  }

  /** Puts a file in WeChat's media store as a user's message would (returns its media_id). */
  addMedia(data: Buffer, opts: { type?: string; contentType?: string; filename?: string } = {}): string {
    const id = newMediaId();
    const contentType = opts.contentType ?? 'image/jpeg';
    this.media.set(id, {
      type: opts.type ?? contentType.split('/')[0].replace('audio', 'voice'),
      data,
      contentType,
      filename: opts.filename ?? `${id}.${contentType.split('/')[1] ?? 'bin'}`,
      createdAt: this.now(),
    });
    return id;
  }

  /** A stored media item (as uploaded). */
  mediaOf(id: string): MediaItem | undefined {
    return this.media.get(id);
  }

  /** Messages that reached `openid`. */
  sentTo(openid: string): Record<string, unknown>[] {
    return this.inbox.filter((m) => m.body.touser === openid).map((m) => m.body);
  }

  /** Calls to `path` (all hosts, or one). */
  callsTo(path: string, host?: string): CallRecord[] {
    return this.calls.filter((c) => c.path === path && (!host || c.host === host));
  }

  /** Replies left for `openid` now. */
  quotaOf(openid: string): number {
    const now = this.now();
    return (this.users.get(openid)?.grants ?? [])
      .filter((g) => g.until > now)
      .reduce((n, g) => n + g.remaining, 0);
  }

  // ---- HTTP -------------------------------------------------------------------------------------------------

  private user(openid: string): UserState {
    let u = this.users.get(openid);
    if (!u) {
      u = { followed: true, receive: true, grants: [], lastExchange: 0, typingUntil: 0 };
      this.users.set(openid, u);
    }
    return u;
  }

  private record(r: CallRecord): void {
    this.calls.push(r);
    if (this.calls.length > 20_000) this.calls.splice(0, this.calls.length - 20_000);
  }

  private takeInjection(host: string, path: string): Injection | undefined {
    const i = this.injections.find(
      (x) => x.remaining > 0 && (!x.host || x.host === host) && (!x.path || path.startsWith(x.path)),
    );
    if (!i) return undefined;
    i.remaining--;
    this.injections = this.injections.filter((x) => x.remaining > 0);
    return i;
  }

  private async handle(host: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', 'http://sim');
    const path = u.pathname;
    const query = Object.fromEntries(u.searchParams);
    const body = await readBody(req, 25 * 1024 * 1024).catch(() => undefined);
    const rec: CallRecord = { at: this.now(), host, method: req.method ?? 'GET', path, query, status: 200 };
    const ctype = String(req.headers['content-type'] ?? '');
    if (body && body.length && !ctype.startsWith('multipart/')) {
      try {
        rec.json = JSON.parse(body.toString('utf8'));
      } catch {
        /* recorded without json */
      }
    }

    const inj = path.startsWith('/sim/') ? undefined : this.takeInjection(host, path);
    if (inj) {
      rec.injected = inj.kind;
      if (inj.kind === 'reset') {
        rec.status = 'reset';
        this.record(rec);
        req.socket.destroy();
        return;
      }
      if (inj.kind === 'delay') {
        this.maxDelayed = Math.max(this.maxDelayed, ++this.delayed);
        await new Promise((r) => setTimeout(r, inj.delayMs ?? 2000));
        this.delayed--;
      }
      if (inj.kind === 'status') {
        rec.status = inj.status ?? 500;
        this.record(rec);
        res.writeHead(rec.status, { 'Content-Type': 'text/html' });
        res.end('<html><body>Server Error</body></html>');
        return;
      }
      if (inj.kind === 'busy' || inj.kind === 'errcode') {
        const code = inj.kind === 'busy' ? -1 : (inj.errcode ?? -1);
        return this.err(res, rec, code, inj.errmsg);
      }
    }

    if (!body) return this.err(res, rec, 44002);
    switch (path) {
      case '/cgi-bin/token':
        return this.classicToken(res, rec, query);
      case '/cgi-bin/stable_token':
        return this.stableToken(res, rec, rec.json);
      case '/cgi-bin/message/custom/send':
        return this.withToken(res, rec, query, () => this.customSend(res, rec, host));
      case '/cgi-bin/message/custom/typing':
        return this.withToken(res, rec, query, () => this.customTyping(res, rec));
      case '/cgi-bin/message/template/send':
        return this.withToken(res, rec, query, () => this.templateSend(res, rec, host));
      case '/cgi-bin/media/upload':
        return this.withToken(res, rec, query, () => this.mediaUpload(res, rec, body, ctype));
      case '/cgi-bin/media/get':
        return this.withToken(res, rec, query, () => this.mediaGet(res, rec, query));
      default:
        if (path.startsWith('/sim/video/'))
          return this.videoDownload(res, rec, path.slice('/sim/video/'.length));
        rec.status = 404;
        this.record(rec);
        res.writeHead(404, { 'Content-Type': 'text/html' });
        res.end('<html><body>404 Not Found</body></html>');
    }
  }

  private ok(res: http.ServerResponse, rec: CallRecord, data: Record<string, unknown> | string): void {
    rec.errcode = 0;
    this.record(rec);
    res.writeHead(200, { 'Content-Type': 'application/json; encoding=utf-8' });
    res.end(typeof data === 'string' ? data : JSON.stringify(data));
  }

  private err(
    res: http.ServerResponse,
    rec: CallRecord,
    errcode: number,
    errmsg?: string,
    contentType = 'application/json; encoding=utf-8',
  ): void {
    rec.errcode = errcode;
    this.record(rec);
    res.writeHead(200, { 'Content-Type': contentType });
    res.end(JSON.stringify({ errcode, errmsg: `${errmsg ?? ERRMSG[errcode] ?? 'error'} rid: ${rid()}` }));
  }

  // ---- tokens -----------------------------------------------------------------------------------------------

  private classicToken(res: http.ServerResponse, rec: CallRecord, q: Record<string, string>): void {
    this.fetches.token++;
    if (rec.method !== 'GET') return this.err(res, rec, 43002, 'require GET method');
    if (q.grant_type !== 'client_credential') return this.err(res, rec, 40002);
    if (q.appid !== this.appId) return this.err(res, rec, 40013);
    if (q.secret !== this.appSecret)
      return this.err(res, rec, 40001, 'invalid credential, access_token is invalid or not latest');
    if (!this.ipWhitelisted) return this.err(res, rec, 40164);
    const now = this.now();
    const t = { t: newToken(), exp: now + this.opts.tokenTtlSec * 1000 };
    // The previous token keeps working for 5 minutes.
    this.classic = [
      t,
      ...this.classic.slice(0, 1).map((p) => ({ t: p.t, exp: Math.min(p.exp, now + 5 * 60_000) })),
    ];
    this.fetches.issued++;
    this.ok(res, rec, { access_token: t.t, expires_in: this.opts.tokenTtlSec });
  }

  private stableToken(res: http.ServerResponse, rec: CallRecord, json: unknown): void {
    this.fetches.stable++;
    if (rec.method !== 'POST') return this.err(res, rec, 43002, 'require POST method');
    const b = (json && typeof json === 'object' ? json : {}) as Record<string, unknown>;
    if (json === undefined) return this.err(res, rec, 47001);
    if (b.grant_type !== 'client_credential') return this.err(res, rec, 40002);
    if (b.appid !== this.appId) return this.err(res, rec, 40013);
    if (b.secret !== this.appSecret) return this.err(res, rec, 40125);
    if (!this.ipWhitelisted) return this.err(res, rec, 40164);
    const now = this.now();
    const ttl = this.opts.tokenTtlSec * 1000;
    const s = this.stable;
    const force = b.force_refresh === true;
    if (!s || now >= s.exp - 5 * 60_000 || (force && now - s.forcedAt >= 30_000)) {
      this.stable = { t: newToken(), exp: now + ttl, forcedAt: force ? now : (s?.forcedAt ?? 0) };
      this.fetches.issued++;
    }
    const cur = this.stable!;
    this.ok(res, rec, { access_token: cur.t, expires_in: Math.max(1, Math.round((cur.exp - now) / 1000)) });
  }

  private tokenState(t: string | undefined): 0 | 41001 | 40001 | 42001 {
    if (!t) return 41001;
    const now = this.now();
    const all = [...(this.stable ? [this.stable] : []), ...this.classic];
    const hit = all.find((x) => x.t === t);
    if (!hit) return 40001;
    return now < hit.exp ? 0 : 42001;
  }

  private withToken(
    res: http.ServerResponse,
    rec: CallRecord,
    q: Record<string, string>,
    next: () => void,
  ): void {
    const s = this.tokenState(q.access_token);
    if (s !== 0) return this.err(res, rec, s);
    next();
  }

  // ---- messages ---------------------------------------------------------------------------------------------

  private customSend(res: http.ServerResponse, rec: CallRecord, host: string): void {
    const b = rec.json as Record<string, unknown> | undefined;
    if (!b || typeof b !== 'object') return this.err(res, rec, 47001);
    const touser = b.touser;
    if (typeof touser !== 'string' || !touser) return this.err(res, rec, 40003);
    if (!this.users.has(touser) && this.opts.strictOpenids) return this.err(res, rec, 40003);
    const t = typeof b.msgtype === 'string' ? b.msgtype : '';
    if (!CUSTOM_TYPES.has(t)) return this.err(res, rec, 40008);
    const inner = b[t] as Record<string, unknown> | undefined;
    if (!inner || typeof inner !== 'object') return this.err(res, rec, 47001);
    if (t === 'text') {
      const c = inner.content;
      if (typeof c !== 'string' || !c.trim()) return this.err(res, rec, 44004);
      if (Buffer.byteLength(c, 'utf8') > this.opts.textLimitBytes) return this.err(res, rec, 45002);
    }
    if (t === 'image' || t === 'voice' || t === 'video') {
      const m = this.media.get(typeof inner.media_id === 'string' ? inner.media_id : '');
      if (!m || this.now() - m.createdAt > MEDIA_TTL) return this.err(res, rec, 40007);
    }
    if (t === 'news') {
      const arts = (inner as { articles?: unknown }).articles;
      if (!Array.isArray(arts) || arts.length === 0) return this.err(res, rec, 47001);
      if (arts.length > 1) return this.err(res, rec, 45008);
    }
    const u = this.user(touser);
    if (!u.receive) return this.err(res, rec, 48002);
    if (!u.followed) return this.err(res, rec, 45015);
    const now = this.now();
    const live = u.grants.filter((g) => g.until > now);
    const g = live.filter((x) => x.remaining > 0).sort((a, b2) => a.until - b2.until)[0];
    if (!g) return this.err(res, rec, live.length ? 45047 : 45015);
    g.remaining--;
    u.lastExchange = now;
    u.typingUntil = 0; // a message ends typing
    this.inbox.push({ at: now, host, body: b });
    this.ok(res, rec, { errcode: 0, errmsg: 'ok' });
  }

  private customTyping(res: http.ServerResponse, rec: CallRecord): void {
    const b = rec.json as Record<string, unknown> | undefined;
    if (!b || typeof b !== 'object') return this.err(res, rec, 47001);
    const touser = typeof b.touser === 'string' ? b.touser : '';
    if (!this.users.has(touser) && this.opts.strictOpenids) return this.err(res, rec, 40003);
    const cmd = b.command;
    if (cmd !== 'Typing' && cmd !== 'CancelTyping') return this.err(res, rec, 45072);
    const u = this.user(touser);
    const now = this.now();
    if (cmd === 'Typing') {
      if (now - u.lastExchange > 30_000) return this.err(res, rec, 45080);
      if (now < u.typingUntil) return this.err(res, rec, 45081);
      u.typingUntil = now + 15_000;
    } else {
      u.typingUntil = 0;
    }
    this.typing.push({ at: now, touser, command: cmd });
    this.ok(res, rec, { errcode: 0, errmsg: 'ok' });
  }

  private templateSend(res: http.ServerResponse, rec: CallRecord, host: string): void {
    const b = rec.json as Record<string, unknown> | undefined;
    if (!b || typeof b !== 'object') return this.err(res, rec, 47001);
    const touser = typeof b.touser === 'string' ? b.touser : '';
    if (!this.users.has(touser) && this.opts.strictOpenids) return this.err(res, rec, 40003);
    if (typeof b.template_id !== 'string' || !this.templateIds.has(b.template_id))
      return this.err(res, rec, 40037);
    if (!b.data || typeof b.data !== 'object') return this.err(res, rec, 47003);
    const u = this.user(touser);
    if (!u.followed) return this.err(res, rec, 43004);
    this.templates.push({ at: this.now(), host, body: b });
    this.msgid += 1n;
    // msgid beyond 2^53, written as a JSON number as WeChat does.
    this.ok(res, rec, `{"errcode":0,"errmsg":"ok","msgid":${this.msgid.toString()}}`);
  }

  // ---- media ------------------------------------------------------------------------------------------------

  private mediaUpload(res: http.ServerResponse, rec: CallRecord, body: Buffer, ctype: string): void {
    const type = rec.query.type;
    const lim = MEDIA_LIMITS[type];
    if (!lim) return this.err(res, rec, 40004);
    const part = parseMultipart(body, ctype).find((p) => p.name === 'media');
    rec.upload = {
      type,
      filename: part?.filename,
      contentType: part?.contentType,
      size: part?.data.length ?? 0,
    };
    if (!part || !part.filename || part.data.length === 0) return this.err(res, rec, 41005);
    const ct = (part.contentType ?? '').split(';')[0].trim().toLowerCase();
    if (!lim.types.includes(ct)) return this.err(res, rec, 40005);
    if (part.data.length > lim.max) return this.err(res, rec, lim.err);
    this.uploads++;
    const id = newMediaId();
    this.media.set(id, {
      type,
      data: Buffer.from(part.data),
      contentType: ct,
      filename: part.filename,
      createdAt: this.now(),
    });
    const created = Math.floor(this.now() / 1000);
    this.ok(
      res,
      rec,
      type === 'thumb'
        ? { type, thumb_media_id: id, created_at: created }
        : { type, media_id: id, created_at: created },
    );
  }

  private mediaGet(res: http.ServerResponse, rec: CallRecord, q: Record<string, string>): void {
    const m = this.media.get(q.media_id ?? '');
    // Errors from media/get come as JSON with HTTP 200 and a text/plain content type.
    if (!m || this.now() - m.createdAt > MEDIA_TTL) return this.err(res, rec, 40007, undefined, 'text/plain');
    if (m.type === 'video') {
      const base = this.listeners.get(rec.host)?.url ?? this.url;
      return this.ok(res, rec, { video_url: `${base}/sim/video/${q.media_id}` });
    }
    rec.errcode = 0;
    this.record(rec);
    const ext = m.filename.includes('.') ? m.filename.slice(m.filename.lastIndexOf('.')) : '';
    res.writeHead(200, {
      'Content-Type': m.contentType,
      'Content-disposition': `attachment; filename="${q.media_id}${ext}"`,
      'Cache-Control': 'no-cache, must-revalidate',
      'Content-Length': String(m.data.length),
    });
    res.end(m.data);
  }

  private videoDownload(res: http.ServerResponse, rec: CallRecord, id: string): void {
    const m = this.media.get(id);
    rec.status = m ? 200 : 404;
    this.record(rec);
    if (!m) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { 'Content-Type': m.contentType, 'Content-Length': String(m.data.length) });
    res.end(m.data);
  }
}

function readBody(req: http.IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > max) {
        reject(new Error('too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
