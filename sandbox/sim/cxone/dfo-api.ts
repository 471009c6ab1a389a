/**
 * A local stand-in for CXone's platform side, over real HTTP on 127.0.0.1: what the pack calls when it talks to
 * CXone (docs/protocol/cxone.md §a–f, h). Used by the tests and by the sandbox.
 *
 * - `/.well-known/openid-configuration`, `/auth/token` (password grant, form-encoded, the application as HTTP
 *   Basic; errors `invalid_client` 401, `invalid_grant` / `unsupported_grant_type` / `invalid_request` 400),
 *   `/.well-known/cxone-configuration?tenantId=` (api_endpoint = this simulator).
 * - `/dfo/3.0/…`: create message (required fields checked, `{errors:[{field,message}]}` on 400, duplicates of
 *   idOnExternalPlatform answered as configured: 409 by default), temporary attachments (served back at the URL
 *   it returns), message status, sender actions, channels (list/create/delete), one-time-token verification.
 * - Bearer tokens are JWT-looking (HS256 with a secret of the simulator) carrying `tenantId`; an expired, revoked
 *   or forged one gets 401.
 * - Failure injection: down for a while (connections reset), the next N calls answered with a status (429 with
 *   Retry-After, 500 …), slow answers.
 * - An "agent console": every message by channel and thread, inbound (from the pack) and outbound (agent replies
 *   recorded through `recordOutbound`, which the box caller uses), with delivery statuses and typing.
 */
import { createSecretKey, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import jwt from 'jsonwebtoken';

export interface SimAccessKey {
  id: string;
  secret: string;
}

export interface CxoneDfoSimOptions {
  /** The registered application (HTTP Basic at the token endpoint). */
  clientId?: string;
  clientSecret?: string;
  /** API users' access keys accepted by the password grant. */
  accessKeys?: SimAccessKey[];
  tenantId?: string;
  /** Lifetime of the tokens issued, s (default 3600). */
  tokenTtlSec?: number;
  /** What a second create-message with a known idOnExternalPlatform gets (default '409'). */
  duplicates?: '409' | '400' | 'idempotent';
  /** Serve the openid-configuration document (default true; false answers 404, to test the fallback). */
  openidConfiguration?: boolean;
  /** Put tenantId in the id_token (default true) and in the access token (default true). */
  tenantInIdToken?: boolean;
  tenantInAccessToken?: boolean;
  /** Channels that exist from the start (ids). */
  channels?: string[];
  /** Fetch attachment URLs of created messages, as an agent's browser would (default true). */
  fetchAttachments?: boolean;
  /** Largest decoded temporary attachment, bytes (default 30 MiB). */
  maxAttachmentBytes?: number;
}

export interface TokenRequestRecord {
  at: number;
  contentType: string;
  authorization?: string;
  form: Record<string, string>;
  status: number;
  /** The access token issued (successful requests). */
  issued?: string;
}

export interface RequestRecord {
  at: number;
  method: string;
  path: string;
  status: number;
  bearer?: string;
}

export interface ConsoleAttachment {
  friendlyName: string;
  url: string;
  /** What fetching the URL gave (when fetchAttachments is on). */
  fetched?: { status: number; bytes: number; contentType?: string } | { error: string };
}

export interface ConsoleMessage {
  /** DFO's id. */
  id: string;
  idOnExternalPlatform: string;
  direction: 'inbound' | 'outbound';
  channelId: string;
  threadId: string;
  text: string;
  createdAtWithMilliseconds: string;
  receivedAt: number;
  author?: Record<string, unknown>;
  attachments: ConsoleAttachment[];
  /** Delivery statuses reported for outbound messages, oldest first. */
  statuses: { status: string; updatedAt: string; reason?: string; at: number }[];
  body?: unknown;
}

export interface SenderActionRecord {
  at: number;
  channelId: string;
  threadId: string;
  action: string;
}

export interface StatusRecord {
  at: number;
  channelId: string;
  messageId: string;
  body: Record<string, unknown>;
}

interface Injection {
  remaining: number;
  status: number;
  retryAfter?: string;
  body?: unknown;
  match?: RegExp;
}

export const EXTERNAL_PLATFORM_ICONS = [
  'amazon',
  'apple',
  'apple-apps',
  'apple-imessage',
  'co-browsing',
  'contact-form',
  'email',
  'facebook',
  'facebook-dm',
  'facebook-messenger',
  'forum',
  'google',
  'google-dm',
  'google-maps',
  'google-play',
  'google-search',
  'instagram',
  'instagram-dm',
  'kakao-talk',
  'kik',
  'line-message',
  'linkedin',
  'listening',
  'livechat',
  'livechat-contact-form',
  'ok-ru',
  'pinterest',
  'rcs',
  'rss',
  'slack',
  'sms',
  'snapchat',
  'tango',
  'telegram',
  'tumblr',
  'twitter',
  'twitter-dm',
  'viber',
  'vkontakte',
  'vkontakte-dm',
  'voice',
  'wechat',
  'whatsapp',
  'youtube',
];

const CONTENT_TYPES = new Set([
  'TEXT',
  'PLUGIN',
  'QUICK_REPLIES',
  'LIST_PICKER',
  'RICH_LINK',
  'ADAPTIVE_CARD',
]);

type Json = Record<string, unknown>;

function isObj(v: unknown): v is Json {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

function nonEmpty(v: unknown): v is string {
  return typeof v === 'string' && v.trim().length > 0;
}

class Answer {
  constructor(
    readonly status: number,
    readonly body?: unknown,
    readonly headers: Record<string, string> = {},
  ) {}
}

function errors(status: number, list: { field?: string; message: string }[]): Answer {
  return new Answer(status, {
    errors: list.map((e) => ({ field: e.field ?? null, message: e.message, parameters: {} })),
    uid: randomUUID(),
  });
}

export class CxoneDfoSim {
  readonly opts: Required<Omit<CxoneDfoSimOptions, 'channels'>>;
  private server: http.Server | null = null;
  private readonly sockets = new Set<Socket>();
  private base = '';
  private readonly secret: KeyObject = createSecretKey(randomBytes(32));
  private readonly verified = new Map<string, Json>();
  /** Tokens carry the generation they were issued in; expireTokens() starts a new one and refuses the older. */
  private generation = 0;
  private revokedBelow = 0;
  private readonly revoked = new Set<string>();
  private downUntil = 0;
  private slowMs = 0;
  private active = 0;
  /** The most requests answered at once so far (with `slow()`, how many the client keeps in flight). */
  maxInFlight = 0;
  private readonly injections: Injection[] = [];
  private readonly oneTimeTokens = new Map<string, { brandId: number; userId: number; exp: number }>();

  // Records (tests read these).
  readonly tokenRequests: TokenRequestRecord[] = [];
  readonly requests: RequestRecord[] = [];
  readonly statuses: StatusRecord[] = [];
  readonly senderActions: SenderActionRecord[] = [];
  readonly createRequests: { at: number; channelId: string; body: unknown; status: number }[] = [];
  readonly uploads = new Map<string, { mimeType: string; data: Buffer; at: number }>();
  readonly channels = new Map<string, Json>();
  readonly oneTimeVerifications: { at: number; body: unknown; status: number }[] = [];
  /** Messages by channel, then by thread. */
  private readonly console = new Map<string, Map<string, ConsoleMessage[]>>();
  private readonly byExternalId = new Map<string, ConsoleMessage>();
  private listeners = new Set<(e: { kind: string; channelId?: string; threadId?: string }) => void>();

  constructor(opts: CxoneDfoSimOptions = {}) {
    this.opts = {
      clientId: opts.clientId ?? 'sim-client-id',
      clientSecret: opts.clientSecret ?? 'sim-client-secret',
      accessKeys: opts.accessKeys ?? [{ id: 'SIMACCESSKEYID====', secret: 'SIMACCESSKEYSECRET====' }],
      tenantId: opts.tenantId ?? '11eb660f-4c6d-34a0-8733-0242ac110002',
      tokenTtlSec: opts.tokenTtlSec ?? 3600,
      duplicates: opts.duplicates ?? '409',
      openidConfiguration: opts.openidConfiguration ?? true,
      tenantInIdToken: opts.tenantInIdToken ?? true,
      tenantInAccessToken: opts.tenantInAccessToken ?? true,
      fetchAttachments: opts.fetchAttachments ?? true,
      maxAttachmentBytes: opts.maxAttachmentBytes ?? 30 * 1024 * 1024,
    };
    for (const id of opts.channels ?? []) this.addChannel({ id });
  }

  /** The simulator's base URL (also the auth issuer), e.g. http://127.0.0.1:41234. */
  get url(): string {
    return this.base;
  }

  /** The DFO 3.0 base the discovery points at. */
  get apiBase(): string {
    return `${this.base}/dfo/3.0`;
  }

  /** Connections open to the simulator now (keep-alive sockets of its clients included). */
  get connections(): number {
    return this.sockets.size;
  }

  get tokenFetches(): number {
    return this.tokenRequests.filter((r) => r.status === 200).length;
  }

  async start(port = 0): Promise<string> {
    if (this.server) return this.base;
    const server = http.createServer((req, res) => void this.handle(req, res));
    server.on('connection', (s: Socket) => {
      if (Date.now() < this.downUntil) {
        s.destroy();
        return;
      }
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    this.server = server;
    this.base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return this.base;
  }

  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = null;
    for (const sock of this.sockets) sock.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  // --- Failure injection ------------------------------------------------------------------------------------

  /** Resets every connection (open and new) for `ms`. */
  down(ms: number): void {
    this.downUntil = Date.now() + ms;
    for (const sock of this.sockets) sock.destroy();
  }

  /** The next `n` DFO API calls (matching `match`, a path regexp, when given) are answered with `status`. */
  failNext(
    n: number,
    status: number,
    opts: { retryAfter?: string | number; body?: unknown; match?: RegExp } = {},
  ): void {
    this.injections.push({
      remaining: n,
      status,
      retryAfter: opts.retryAfter === undefined ? undefined : String(opts.retryAfter),
      body: opts.body,
      match: opts.match,
    });
  }

  /** Every answer waits `ms` first (0 to stop). */
  slow(ms: number): void {
    this.slowMs = ms;
  }

  /** Every token issued so far stops working (as if CXone rotated its keys or the tokens expired). */
  expireTokens(): void {
    // A counter, not the clock: a token issued in the same millisecond as this call must still be a fresh one.
    this.generation++;
    this.revokedBelow = this.generation;
  }

  revokeToken(token: string): void {
    this.revoked.add(token);
  }

  clearInjections(): void {
    this.injections.length = 0;
    this.downUntil = 0;
    this.slowMs = 0;
  }

  // --- Data set-up --------------------------------------------------------------------------------------------

  addChannel(ch: Partial<Json> & { id: string }): Json {
    const full: Json = {
      idOnExternalPlatform: ch.id,
      realExternalPlatformId: 'custom',
      name: ch.id,
      externalPlatformAvatar: '',
      externalPlatformIcon: 'wechat',
      channelIntegrationId: 'sim-integration',
      hasReply: true,
      hasTreeStructure: false,
      isPrivate: true,
      isHidden: false,
      hasAbilityToSendFiles: true,
      hasMultipleThreadsPerEndUser: false,
      canSendSenderActions: true,
      isTrackingMessageDeliveryStatus: true,
      ...ch,
    };
    this.channels.set(ch.id, full);
    return full;
  }

  /** A one-time token as CXone puts in the admin page's URL, valid once for 5 minutes. */
  issueOneTimeToken(q: { brandId: number; userId: number }): string {
    const t = randomBytes(12).toString('hex');
    this.oneTimeTokens.set(t, { brandId: q.brandId, userId: q.userId, exp: Date.now() + 300_000 });
    return t;
  }

  /** A bearer token as the password grant would give (for tests that need one directly). */
  issueAccessToken(extra: Json = {}): string {
    return this.sign({ sub: 'user:sim', tenantId: this.opts.tenantId, ...extra }, this.opts.tokenTtlSec);
  }

  // --- The agent console --------------------------------------------------------------------------------------

  /** Records an agent reply (the box caller does, after the box answered with its idOnExternalPlatform). */
  recordOutbound(
    channelId: string,
    threadId: string,
    m: { idOnExternalPlatform: string; text: string; attachments?: { friendlyName: string; url: string }[] },
  ): ConsoleMessage {
    const msg: ConsoleMessage = {
      id: randomUUID(),
      idOnExternalPlatform: m.idOnExternalPlatform,
      direction: 'outbound',
      channelId,
      threadId,
      text: m.text,
      createdAtWithMilliseconds: new Date().toISOString(),
      receivedAt: Date.now(),
      attachments: (m.attachments ?? []).map((a) => ({ ...a })),
      statuses: [],
    };
    this.push(msg);
    return msg;
  }

  /** Every thread with its messages, oldest first. */
  threads(channelId?: string): { channelId: string; threadId: string; messages: ConsoleMessage[] }[] {
    const out: { channelId: string; threadId: string; messages: ConsoleMessage[] }[] = [];
    for (const [c, threads] of this.console) {
      if (channelId && c !== channelId) continue;
      for (const [t, messages] of threads) out.push({ channelId: c, threadId: t, messages: [...messages] });
    }
    return out;
  }

  /** Messages of one channel (and thread), oldest first. */
  messages(channelId?: string, threadId?: string): ConsoleMessage[] {
    return this.threads(channelId)
      .filter((t) => !threadId || t.threadId === threadId)
      .flatMap((t) => t.messages)
      .sort((a, b) => a.receivedAt - b.receivedAt);
  }

  findMessage(channelId: string, idOnExternalPlatform: string): ConsoleMessage | undefined {
    return this.byExternalId.get(`${channelId}\n${idOnExternalPlatform}`);
  }

  /** Told about every change of the console (the sandbox page refreshes on it). */
  onChange(cb: (e: { kind: string; channelId?: string; threadId?: string }) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  private emit(kind: string, channelId?: string, threadId?: string): void {
    for (const l of this.listeners) {
      try {
        l({ kind, channelId, threadId });
      } catch {
        /* a listener's problem */
      }
    }
  }

  private push(m: ConsoleMessage): void {
    let threads = this.console.get(m.channelId);
    if (!threads) this.console.set(m.channelId, (threads = new Map()));
    let list = threads.get(m.threadId);
    if (!list) threads.set(m.threadId, (list = []));
    list.push(m);
    this.byExternalId.set(`${m.channelId}\n${m.idOnExternalPlatform}`, m);
    this.emit('message', m.channelId, m.threadId);
  }

  // --- Tokens -------------------------------------------------------------------------------------------------

  private sign(claims: Json, ttlSec: number): string {
    return jwt.sign({ ...claims, gen: this.generation, jti: randomUUID() }, this.secret, {
      algorithm: 'HS256',
      expiresIn: ttlSec,
      issuer: this.base,
      audience: 'inContact Evolve@inContact.com',
    });
  }

  /** Checks a bearer; returns its claims or null. */
  private bearer(req: http.IncomingMessage): { token: string; claims: Json } | null {
    const h = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(h);
    if (!m) return null;
    try {
      let claims = this.verified.get(m[1]);
      if (!claims || (typeof claims.exp === 'number' && claims.exp * 1000 <= Date.now())) {
        claims = jwt.verify(m[1], this.secret, { algorithms: ['HS256'] }) as Json;
        if (this.verified.size > 1000) this.verified.clear();
        this.verified.set(m[1], claims);
      }
      if (this.revoked.has(m[1])) return null;
      if (typeof claims.gen === 'number' && claims.gen < this.revokedBelow) return null;
      return { token: m[1], claims };
    } catch {
      return null;
    }
  }

  // --- HTTP ---------------------------------------------------------------------------------------------------

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (Date.now() < this.downUntil) {
      req.socket.destroy();
      return;
    }
    const u = new URL(req.url ?? '/', 'http://sim');
    const path = u.pathname;
    let body: Buffer;
    try {
      body = await readAll(req, 64 * 1024 * 1024);
    } catch {
      this.send(res, new Answer(413, { errors: [{ message: 'Request entity too large' }] }));
      return;
    }
    if (this.slowMs) {
      this.maxInFlight = Math.max(this.maxInFlight, ++this.active);
      await new Promise((r) => setTimeout(r, this.slowMs));
      this.active--;
    }
    if (Date.now() < this.downUntil) {
      req.socket.destroy();
      return;
    }
    let answer: Answer;
    try {
      answer = await this.route(req, u, body);
    } catch {
      answer = new Answer(500, { errors: [{ message: 'Internal Server Error' }] });
    }
    const rec: RequestRecord = { at: Date.now(), method: req.method ?? 'GET', path, status: answer.status };
    const b = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    if (b) rec.bearer = b[1];
    this.requests.push(rec);
    if (this.requests.length > 10_000) this.requests.splice(0, 5_000);
    this.send(res, answer);
  }

  private send(res: http.ServerResponse, a: Answer): void {
    if (a.body instanceof Buffer) {
      res.writeHead(a.status, { 'Content-Length': String(a.body.length), ...a.headers });
      res.end(a.body);
      return;
    }
    if (a.body === undefined) {
      res.writeHead(a.status, { 'Content-Length': '0', ...a.headers });
      res.end();
      return;
    }
    const text = Buffer.from(JSON.stringify(a.body), 'utf8');
    res.writeHead(a.status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': String(text.length),
      ...a.headers,
    });
    res.end(text);
  }

  private route(req: http.IncomingMessage, u: URL, raw: Buffer): Answer | Promise<Answer> {
    const method = req.method ?? 'GET';
    const path = u.pathname;
    if (method === 'GET' && path === '/.well-known/openid-configuration') {
      if (!this.opts.openidConfiguration) return new Answer(404, { message: 'Not Found' });
      return new Answer(200, {
        issuer: this.base,
        authorization_endpoint: `${this.base}/auth/authorize`,
        token_endpoint: `${this.base}/auth/token`,
        jwks_uri: `${this.base}/auth/jwks`,
        token_endpoint_auth_methods_supported: ['client_secret_basic'],
        grant_types_supported: ['password', 'refresh_token', 'authorization_code'],
      });
    }
    if (method === 'POST' && path === '/auth/token') return this.token(req, raw);
    if (method === 'GET' && path === '/.well-known/cxone-configuration') {
      const t = u.searchParams.get('tenantId');
      if (t !== this.opts.tenantId) return new Answer(404, { message: 'Tenant not found' });
      return new Answer(200, {
        private: false,
        area: 'na1',
        cluster: 'SIM1',
        domain: '127.0.0.1',
        acdDomain: '127.0.0.1',
        uhDomain: '127.0.0.1',
        ui_endpoint: this.base,
        auth_endpoint: this.base,
        api_endpoint: this.base,
        tenantId: this.opts.tenantId,
      });
    }
    const tmp = /^\/files\/temporary\/([A-Za-z0-9-]+)$/.exec(path);
    if (method === 'GET' && tmp) {
      const f = this.uploads.get(tmp[1]);
      if (!f) return new Answer(404, { message: 'Not Found' });
      return new Answer(200, f.data, { 'Content-Type': f.mimeType });
    }
    if (!path.startsWith('/dfo/3.0/')) return new Answer(404, { message: 'Not Found' });
    const sub = path.slice('/dfo/3.0'.length);

    // Injected failures come before authentication, as a gateway's would.
    const inj = this.injections.find((i) => i.remaining > 0 && (!i.match || i.match.test(sub)));
    if (inj) {
      inj.remaining--;
      const headers: Record<string, string> = {};
      if (inj.retryAfter !== undefined) headers['Retry-After'] = inj.retryAfter;
      return new Answer(
        inj.status,
        inj.body ?? {
          errors: [{ message: inj.status === 429 ? 'Too Many Requests' : 'Internal Server Error' }],
        },
        headers,
      );
    }

    if (method === 'POST' && sub === '/one-time-token/verification') return this.verifyOneTime(raw);

    const who = this.bearer(req);
    if (!who)
      return new Answer(401, {
        errors: [{ field: null, message: 'Unauthorized: invalid or expired token' }],
      });

    const parse = (): Json | Answer => {
      const ct = String(req.headers['content-type'] ?? '');
      if (!/application\/json/i.test(ct))
        return errors(415, [{ message: 'Content-Type must be application/json' }]);
      try {
        const v = JSON.parse(raw.toString('utf8')) as unknown;
        if (!isObj(v)) return errors(400, [{ message: 'The body must be a JSON object' }]);
        return v;
      } catch {
        return errors(400, [{ message: 'Malformed JSON' }]);
      }
    };

    let m: RegExpExecArray | null;
    if ((m = /^\/channels\/([^/]+)\/messages$/.exec(sub)) && method === 'POST') {
      const b = parse();
      return b instanceof Answer ? b : this.createMessage(decodeURIComponent(m[1]), b);
    }
    if ((m = /^\/channels\/([^/]+)\/messages\/([^/]+)\/status$/.exec(sub)) && method === 'PUT') {
      const b = parse();
      return b instanceof Answer ? b : this.status(decodeURIComponent(m[1]), decodeURIComponent(m[2]), b);
    }
    if ((m = /^\/channels\/([^/]+)\/threads\/([^/]+)\/sender-actions$/.exec(sub)) && method === 'POST') {
      const b = parse();
      return b instanceof Answer
        ? b
        : this.senderAction(decodeURIComponent(m[1]), decodeURIComponent(m[2]), b);
    }
    if (sub === '/attachments/temporary' && method === 'POST') {
      const b = parse();
      return b instanceof Answer ? b : this.upload(b);
    }
    if (sub === '/channels' && method === 'GET') {
      const ids = [...u.searchParams.entries()].filter(([k]) => k === 'id[]' || k === 'id').map(([, v]) => v);
      const list = [...this.channels.values()].filter((c) => !ids.length || ids.includes(String(c.id)));
      return new Answer(200, list);
    }
    if (sub === '/channels' && method === 'POST') {
      const b = parse();
      return b instanceof Answer ? b : this.createChannel(b);
    }
    if ((m = /^\/channels\/([^/]+)$/.exec(sub)) && method === 'DELETE') {
      const id = decodeURIComponent(m[1]);
      if (!this.channels.delete(id))
        return errors(404, [{ field: 'channelId', message: 'Channel not found' }]);
      this.emit('channel', id);
      return new Answer(204);
    }
    return new Answer(404, { errors: [{ message: 'Not Found' }] });
  }

  private token(req: http.IncomingMessage, raw: Buffer): Answer {
    const ct = String(req.headers['content-type'] ?? '');
    const form: Record<string, string> = {};
    const isForm = /^application\/x-www-form-urlencoded/i.test(ct);
    if (isForm) for (const [k, v] of new URLSearchParams(raw.toString('utf8'))) form[k] = v;
    const record = (a: Answer): Answer => {
      const issued = a.status === 200 && isObj(a.body) ? a.body.access_token : undefined;
      this.tokenRequests.push({
        at: Date.now(),
        contentType: ct,
        authorization: req.headers.authorization,
        form,
        status: a.status,
        issued: typeof issued === 'string' ? issued : undefined,
      });
      return a;
    };
    if (Date.now() < this.downUntil) return record(new Answer(503, { error: 'temporarily_unavailable' }));
    const inj = this.injections.find((i) => i.remaining > 0 && i.match && i.match.test('/auth/token'));
    if (inj) {
      inj.remaining--;
      const headers: Record<string, string> = {};
      if (inj.retryAfter !== undefined) headers['Retry-After'] = inj.retryAfter;
      return record(new Answer(inj.status, inj.body ?? { error: 'server_error' }, headers));
    }
    if (!isForm)
      return record(new Answer(400, { error: 'invalid_request', error_description: 'form body required' }));
    const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(req.headers.authorization ?? '');
    let id = '';
    let secret = '';
    if (basic) {
      const dec = Buffer.from(basic[1], 'base64').toString('utf8');
      const i = dec.indexOf(':');
      const un = (s: string): string => {
        try {
          return decodeURIComponent(s.replace(/\+/g, ' '));
        } catch {
          return s;
        }
      };
      if (i >= 0) {
        id = un(dec.slice(0, i));
        secret = un(dec.slice(i + 1));
      }
    }
    if (id !== this.opts.clientId || secret !== this.opts.clientSecret) {
      return record(
        new Answer(
          401,
          { error: 'invalid_client', error_description: 'Client authentication failed' },
          { 'WWW-Authenticate': 'Basic realm="cxone"' },
        ),
      );
    }
    if (form.grant_type !== 'password') return record(new Answer(400, { error: 'unsupported_grant_type' }));
    const key = this.opts.accessKeys.find((k) => k.id === form.username && k.secret === form.password);
    if (!key) {
      return record(new Answer(400, { error: 'invalid_grant', error_description: 'Invalid access key' }));
    }
    const ttl = this.opts.tokenTtlSec;
    const common: Json = {
      sub: 'user:11eb660f-4fdf-02d0-8f28-0242ac110002',
      icBUId: -721488662,
      icClusterId: 'SIM1',
      tenant: 'sim_tenant',
      name: 'api-user@example.com',
    };
    const access = this.sign(
      {
        ...common,
        ...(this.opts.tenantInAccessToken ? { tenantId: this.opts.tenantId } : {}),
        role: { legacyId: 'Administrator' },
      },
      ttl,
    );
    const idToken = this.sign(
      {
        ...common,
        ...(this.opts.tenantInIdToken ? { tenantId: this.opts.tenantId } : {}),
        userId: '11eb660f-4fdf-02d0-8f28-0242ac110002',
        icDomain: '127.0.0.1',
      },
      ttl,
    );
    return record(
      new Answer(200, {
        access_token: access,
        token_type: 'Bearer',
        expires_in: ttl,
        refresh_token: this.sign({ kind: 'refresh' }, ttl * 2),
        id_token: idToken,
        issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      }),
    );
  }

  private async createMessage(channelId: string, b: Json): Promise<Answer> {
    const record = (a: Answer): Answer => {
      this.createRequests.push({ at: Date.now(), channelId, body: b, status: a.status });
      return a;
    };
    const ch = this.channels.get(channelId);
    if (!ch) return record(errors(404, [{ field: 'channelId', message: `Channel ${channelId} not found` }]));
    const errs: { field: string; message: string }[] = [];
    const blank = 'This value should not be blank.';
    if (!nonEmpty(b.idOnExternalPlatform)) errs.push({ field: 'idOnExternalPlatform', message: blank });
    if (b.direction !== 'inbound' && b.direction !== 'outbound') {
      errs.push({ field: 'direction', message: 'The value you selected is not a valid choice.' });
    }
    const created = b.createdAtWithMilliseconds;
    if (
      !nonEmpty(created) ||
      Number.isNaN(Date.parse(created)) ||
      !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}/.test(created)
    ) {
      errs.push({
        field: 'createdAtWithMilliseconds',
        message: 'This value is not a valid datetime with milliseconds.',
      });
    }
    if (!isObj(b.thread) || !nonEmpty(b.thread.idOnExternalPlatform)) {
      errs.push({ field: 'thread.idOnExternalPlatform', message: blank });
    }
    const mc = b.messageContent;
    if (!isObj(mc)) errs.push({ field: 'messageContent', message: blank });
    else {
      if (!CONTENT_TYPES.has(String(mc.type))) {
        errs.push({ field: 'messageContent.type', message: 'The value you selected is not a valid choice.' });
      }
      if (!isObj(mc.payload)) errs.push({ field: 'messageContent.payload', message: blank });
      else if (mc.type === 'TEXT' && mc.payload.text !== undefined && typeof mc.payload.text !== 'string') {
        errs.push({ field: 'messageContent.payload.text', message: 'This value should be of type string.' });
      }
    }
    if (!isObj(b.authorEndUserIdentity) || !nonEmpty(b.authorEndUserIdentity.idOnExternalPlatform)) {
      errs.push({ field: 'authorEndUserIdentity.idOnExternalPlatform', message: blank });
    }
    const atts = b.attachments;
    if (atts !== undefined) {
      if (!Array.isArray(atts))
        errs.push({ field: 'attachments', message: 'This value should be of type array.' });
      else
        atts.forEach((a, i) => {
          if (!isObj(a) || !nonEmpty(a.friendlyName)) {
            errs.push({ field: `attachments[${i}].friendlyName`, message: blank });
          }
          if (!isObj(a) || !nonEmpty(a.url) || !/^https?:\/\//.test(a.url)) {
            errs.push({ field: `attachments[${i}].url`, message: 'This value is not a valid URL.' });
          }
        });
    }
    if (errs.length) return record(errors(400, errs));
    const extId = String(b.idOnExternalPlatform);
    const threadId = String((b.thread as Json).idOnExternalPlatform);
    const existing = this.findMessage(channelId, extId);
    if (existing) {
      if (this.opts.duplicates === 'idempotent') return record(new Answer(200, this.messageAnswer(existing)));
      return record(
        errors(this.opts.duplicates === '400' ? 400 : 409, [
          {
            field: 'idOnExternalPlatform',
            message: 'Message with this idOnExternalPlatform already exists.',
          },
        ]),
      );
    }
    const payload = (mc as Json).payload as Json;
    const msg: ConsoleMessage = {
      id: randomUUID(),
      idOnExternalPlatform: extId,
      direction: b.direction as 'inbound' | 'outbound',
      channelId,
      threadId,
      text: typeof payload.text === 'string' ? payload.text : '',
      createdAtWithMilliseconds: String(created),
      receivedAt: Date.now(),
      author: b.authorEndUserIdentity as Json,
      attachments: (Array.isArray(atts) ? atts : []).map((a) => ({
        friendlyName: String((a as Json).friendlyName),
        url: String((a as Json).url),
      })),
      statuses: [],
      body: b,
    };
    if (this.opts.fetchAttachments) {
      for (const a of msg.attachments) a.fetched = await fetchForAgent(a.url);
    }
    this.push(msg);
    return record(new Answer(200, this.messageAnswer(msg)));
  }

  private messageAnswer(m: ConsoleMessage): Json {
    const contactId = `sim-contact-${m.channelId}-${m.threadId}`;
    return {
      consumerContact: {
        id: contactId,
        contactId,
        threadId: `sim-thread-${m.threadId}`,
        threadIdOnExternalPlatform: m.threadId,
        channelId: m.channelId,
        direction: 'inbound',
        status: 'new',
      },
      message: {
        id: m.id,
        idOnExternalPlatform: m.idOnExternalPlatform,
        threadId: `sim-thread-${m.threadId}`,
        threadIdOnExternalPlatform: m.threadId,
        direction: m.direction,
        messageContent: { type: 'TEXT', text: m.text, payload: { text: m.text } },
        attachments: m.attachments.map((a) => ({ friendlyName: a.friendlyName, url: a.url })),
        createdAtWithMilliseconds: m.createdAtWithMilliseconds,
      },
    };
  }

  private status(channelId: string, messageId: string, b: Json): Answer {
    const errs: { field: string; message: string }[] = [];
    if (!['delivered', 'seen', 'failed'].includes(String(b.status))) {
      errs.push({ field: 'status', message: 'The value you selected is not a valid choice.' });
    }
    if (!nonEmpty(b.updatedAt) || Number.isNaN(Date.parse(b.updatedAt))) {
      errs.push({ field: 'updatedAt', message: 'This value is not a valid datetime.' });
    }
    if (b.reason !== undefined && typeof b.reason !== 'string') {
      errs.push({ field: 'reason', message: 'This value should be of type string.' });
    }
    const known = Object.keys(b).filter((k) => !['status', 'updatedAt', 'reason'].includes(k));
    for (const k of known) errs.push({ field: k, message: 'This field was not expected.' });
    if (errs.length) return errors(400, errs);
    if (!this.channels.has(channelId))
      return errors(404, [{ field: 'channelId', message: 'Channel not found' }]);
    const m = this.findMessage(channelId, messageId);
    if (!m) return errors(404, [{ field: 'messageId', message: 'Message not found' }]);
    this.statuses.push({ at: Date.now(), channelId, messageId, body: b });
    m.statuses.push({
      status: String(b.status),
      updatedAt: String(b.updatedAt),
      reason: typeof b.reason === 'string' ? b.reason : undefined,
      at: Date.now(),
    });
    this.emit('status', channelId, m.threadId);
    return new Answer(200, {});
  }

  private senderAction(channelId: string, threadId: string, b: Json): Answer {
    if (b.action !== 'isTypingOn' && b.action !== 'isTypingOff') {
      return errors(400, [{ field: 'action', message: 'The value you selected is not a valid choice.' }]);
    }
    if (!this.channels.has(channelId))
      return errors(404, [{ field: 'channelId', message: 'Channel not found' }]);
    this.senderActions.push({ at: Date.now(), channelId, threadId, action: b.action });
    this.emit('typing', channelId, threadId);
    return new Answer(204);
  }

  private upload(b: Json): Answer {
    const errs: { field: string; message: string }[] = [];
    if (!nonEmpty(b.mimeType) || !/^[\w.+-]+\/[\w.+-]+$/.test(b.mimeType)) {
      errs.push({ field: 'mimeType', message: 'This value is not a valid mime type.' });
    }
    if (!nonEmpty(b.content) || !/^[A-Za-z0-9+/]+={0,2}$/.test(b.content)) {
      errs.push({ field: 'content', message: 'This value should be a base64 encoded file.' });
    }
    if (errs.length) return errors(400, errs);
    const data = Buffer.from(String(b.content), 'base64');
    if (data.length > this.opts.maxAttachmentBytes) {
      return errors(400, [
        { field: 'content', message: `The file is larger than ${this.opts.maxAttachmentBytes} bytes.` },
      ]);
    }
    const id = randomUUID();
    this.uploads.set(id, { mimeType: String(b.mimeType), data, at: Date.now() });
    return new Answer(200, {
      id,
      url: `${this.base}/files/temporary/${id}`,
      expireAt: new Date(Date.now() + 3600_000).toISOString(),
    });
  }

  private createChannel(b: Json): Answer {
    const errs: { field: string; message: string }[] = [];
    const blank = 'This value should not be blank.';
    for (const k of [
      'id',
      'idOnExternalPlatform',
      'channelIntegrationId',
      'realExternalPlatformId',
      'name',
    ]) {
      if (!nonEmpty(b[k])) errs.push({ field: k, message: blank });
    }
    for (const k of ['isPrivate', 'hasTreeStructure']) {
      if (typeof b[k] !== 'boolean') errs.push({ field: k, message: 'This value should be of type bool.' });
    }
    if (
      b.externalPlatformIcon !== undefined &&
      !EXTERNAL_PLATFORM_ICONS.includes(b.externalPlatformIcon as string)
    ) {
      errs.push({ field: 'externalPlatformIcon', message: 'The value you selected is not a valid choice.' });
    }
    if (errs.length) return errors(400, errs);
    const ch = this.addChannel(b as Json & { id: string });
    this.emit('channel', String(b.id));
    return new Answer(200, ch);
  }

  private verifyOneTime(raw: Buffer): Answer {
    let b: unknown;
    try {
      b = JSON.parse(raw.toString('utf8'));
    } catch {
      b = undefined;
    }
    const rec = (a: Answer): Answer => {
      this.oneTimeVerifications.push({ at: Date.now(), body: b, status: a.status });
      return a;
    };
    if (!isObj(b)) return rec(errors(400, [{ message: 'Malformed JSON' }]));
    const errs: { field: string; message: string }[] = [];
    if (typeof b.brandId !== 'number')
      errs.push({ field: 'brandId', message: 'This value should be of type int.' });
    if (typeof b.userId !== 'number')
      errs.push({ field: 'userId', message: 'This value should be of type int.' });
    if (!['login', 'channel-integration', 'custom-component-login'].includes(String(b.purpose))) {
      errs.push({ field: 'purpose', message: 'The value you selected is not a valid choice.' });
    }
    if (!nonEmpty(b.token)) errs.push({ field: 'token', message: 'This value should not be blank.' });
    if (errs.length) return rec(errors(400, errs));
    const t = this.oneTimeTokens.get(String(b.token));
    if (!t || t.exp < Date.now() || t.brandId !== b.brandId || t.userId !== b.userId) {
      return rec(
        errors(401, [{ field: 'token', message: 'The one-time token is invalid, expired or already used.' }]),
      );
    }
    this.oneTimeTokens.delete(String(b.token));
    return rec(
      new Answer(200, {
        brand: {
          id: t.brandId,
          friendlyName: 'Simulated Brand',
          timezone: 'Asia/Shanghai',
          brandHash: 'sim',
          tenantId: this.opts.tenantId,
        },
        user: {
          id: t.userId,
          emailAddress: 'admin@example.com',
          loginUsername: 'admin@example.com',
          firstName: 'Ada',
          surname: 'Admin',
          isBotUser: false,
          isSurveyUser: false,
        },
        accessToken: this.sign(
          { sub: `user:${t.userId}`, tenantId: this.opts.tenantId, brandId: t.brandId },
          600,
        ),
      }),
    );
  }
}

function readAll(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
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

/** What an agent's browser would get from an attachment URL. */
async function fetchForAgent(url: string): Promise<ConsoleAttachment['fetched']> {
  try {
    const ac = new AbortController();
    const t = setTimeout(() => ac.abort(), 5000);
    const res = await fetch(url, { signal: ac.signal, redirect: 'follow' });
    const buf = Buffer.from(await res.arrayBuffer());
    clearTimeout(t);
    return {
      status: res.status,
      bytes: buf.length,
      contentType: res.headers.get('content-type') ?? undefined,
    };
  } catch (err) {
    return { error: (err as Error).name || 'fetch failed' };
  }
}
