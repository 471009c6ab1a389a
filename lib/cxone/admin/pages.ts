/**
 * The Action, Reconnect and Remove URLs of a BYOC integration (docs/protocol/cxone.md §g.6): pages CXone opens in
 * the admin's browser as `GET {box}/action?userId&brandId&token&backUrl`. cxone-dfo-in serves them on its claim;
 * this file only builds the route table (`adminPageRoutes`).
 *
 * 1. The one-time token is exchanged at once (`POST {dfo}/one-time-token/verification`, purpose
 *    `channel-integration`). The CXone access token it yields never reaches the browser: it is kept in a
 *    server-side session (memory, at most 30 minutes and never past the token's own `exp`) keyed by an
 *    unguessable id in an HttpOnly cookie scoped to `{box}/admin`. The browser is sent on (303) to `{box}/admin`,
 *    so the one-time token leaves the address bar and the history.
 * 2. `{box}/admin` lists the integration's channels and lets the admin create one (with `externalPlatformIcon`)
 *    or remove one, through JSON calls that need the session cookie AND a per-session CSRF token in a header
 *    (and, when the browser sends one, an Origin equal to ours). With https the cookie is `SameSite=None; Secure;
 *    Partitioned`, so the page also works if CXone shows it in a frame; over plain http (local tests) it is Lax.
 * 3. "Back" goes to `backUrl` only when it is an https URL without credentials, or on our own origin: never a
 *    `javascript:` or `data:` URL, never an open redirect.
 *
 * Every answer carries a strict CSP (scripts and styles from our own path only), no-store, nosniff and
 * no-referrer.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { RouteContext, RouteDef } from '../../http/registry';
import { sendBytes, sendJson } from '../../http/respond';
import type { DfoIntegration } from '../dfo';
import { DfoError } from '../dfo/errors';
import { expiryOf } from '../dfo/jwt';
import { ADMIN_CSS, ADMIN_JS, type AdminLang, pickLang, renderError, renderPage, STRINGS } from './assets';
import { CHANNEL_ICONS, newChannelBody, ofIntegration, summarize } from './channels';

/** What the pages need from the cxone-dfo-config node. */
export interface AdminPageSource {
  /** The BYOC integration's id in CXone (channels are filtered to it and created with it). */
  channelIntegrationId?: string;
  /** The integration's DFO client (its DFO base is where the one-time token is exchanged). */
  dfo(): DfoIntegration | null;
}

export interface AdminPageOptions {
  /** Longest session, ms (default 30 min). */
  sessionTtlMs?: number;
  /** Most sessions kept at once (default 200; the oldest goes first). */
  maxSessions?: number;
  log?: { debug(m: string): void; warn(m: string): void };
}

type Mode = 'action' | 'reconnect' | 'remove';

interface Session {
  id: string;
  csrf: string;
  accessToken: string;
  apiBase: string;
  expires: number;
  created: number;
  mode: Mode;
  backUrl?: string;
  user: string;
  brand: string;
}

export const SESSION_COOKIE = 'wxcx_admin';

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  // CXone may show the page in a frame of its own UI (not documented either way); nobody else may.
  "frame-ancestors 'self' https://*.niceincontact.com https://*.nice-incontact.com https://*.nicecxone.com https://*.nicecxone-gov.com",
].join('; ');

const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': CSP,
  'Cache-Control': 'no-store',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

/** Whether the request came over https (directly, or as a proxy in front says). */
function isHttps(ctx: RouteContext): boolean {
  const enc = (ctx.req.socket as { encrypted?: boolean }).encrypted === true;
  const xf = String(ctx.headers['x-forwarded-proto'] ?? '')
    .split(',')[0]
    .trim()
    .toLowerCase();
  return enc || xf === 'https';
}

function ownOrigin(ctx: RouteContext): string | null {
  const host = ctx.headers.host;
  if (!host || !/^[A-Za-z0-9.[\]:-]+$/.test(host)) return null;
  return `${isHttps(ctx) ? 'https' : 'http'}://${host.toLowerCase()}`;
}

/**
 * The URL "back" may go to: an absolute https URL without credentials, or a URL on our own origin. Anything else
 * (javascript:, data:, http elsewhere, protocol-relative tricks, over-long) is refused.
 */
export function safeBackUrl(raw: string | null | undefined, origin: string | null): string | undefined {
  if (!raw || raw.length > 2048) return undefined;
  if (/[\u0000-\u001f\u007f\\]/.test(raw)) return undefined;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return undefined;
  }
  if (u.username || u.password) return undefined;
  if (u.protocol === 'https:') return u.toString();
  if (origin && u.protocol === 'http:' && u.origin.toLowerCase() === origin) return u.toString();
  return undefined;
}

function cookieOf(headers: IncomingHttpHeaders, name: string): string | undefined {
  const raw = headers.cookie;
  if (!raw) return undefined;
  for (const part of raw.split(';')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    if (part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Base of the claim (e.g. `/integration/box`) from a request to one of its routes. */
function claimBase(ctx: RouteContext): string {
  const full = ctx.fullPath;
  const sub = ctx.subPath;
  if (sub && full.toLowerCase().endsWith(sub.toLowerCase()))
    return full.slice(0, full.length - sub.length) || '/';
  return full;
}

function html(ctx: RouteContext, status: number, body: string, extra: Record<string, string> = {}): void {
  sendBytes(ctx.res, status, body, 'text/html; charset=utf-8', { ...SECURITY_HEADERS, ...extra });
}

function json(ctx: RouteContext, status: number, value: unknown, extra: Record<string, string> = {}): void {
  sendJson(ctx.res, status, value, { ...SECURITY_HEADERS, ...extra });
}

function parseJsonBody(ctx: RouteContext): Record<string, unknown> | null {
  if (ctx.parsedBody && typeof ctx.parsedBody === 'object') return ctx.parsedBody as Record<string, unknown>;
  if (!ctx.rawBody || !ctx.rawBody.length) return {};
  try {
    const v = JSON.parse(ctx.rawBody.toString('utf8')) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function idNumber(v: string | null): number | undefined {
  if (!v || !/^-?\d{1,15}$/.test(v)) return undefined;
  return Number(v);
}

export function adminPageRoutes(src: AdminPageSource, opts: AdminPageOptions = {}): RouteDef[] {
  const ttl = opts.sessionTtlMs ?? 30 * 60_000;
  const max = opts.maxSessions ?? 200;
  const log = opts.log;
  const sessions = new Map<string, Session>();

  const prune = (): void => {
    const now = Date.now();
    for (const [k, s] of sessions) if (s.expires <= now) sessions.delete(k);
    while (sessions.size >= max) {
      const oldest = sessions.keys().next().value;
      if (oldest === undefined) break;
      sessions.delete(oldest);
    }
  };

  const cookieHeader = (ctx: RouteContext, value: string, maxAgeS: number): string => {
    const path = `${claimBase(ctx).replace(/\/+$/, '')}/admin`;
    const attrs = [
      `${SESSION_COOKIE}=${value}`,
      `Path=${path}`,
      'HttpOnly',
      `Max-Age=${Math.max(0, maxAgeS)}`,
    ];
    if (isHttps(ctx)) attrs.push('Secure', 'SameSite=None', 'Partitioned');
    else attrs.push('SameSite=Lax');
    return attrs.join('; ');
  };

  const sessionOf = (ctx: RouteContext): Session | undefined => {
    const id = cookieOf(ctx.headers, SESSION_COOKIE);
    if (!id || !/^[A-Za-z0-9_-]{43}$/.test(id)) return undefined;
    const s = sessions.get(id);
    if (!s) return undefined;
    if (s.expires <= Date.now()) {
      sessions.delete(id);
      return undefined;
    }
    return s;
  };

  const langOf = (ctx: RouteContext): AdminLang => pickLang(ctx.headers['accept-language']);

  const entry =
    (mode: Mode) =>
    async (ctx: RouteContext): Promise<void> => {
      const lang = langOf(ctx);
      const q = ctx.query;
      const origin = ownOrigin(ctx);
      const backUrl = safeBackUrl(q.get('backUrl'), origin);
      const fail = (status: number, message: string): void =>
        html(ctx, status, renderError(lang, message, backUrl));
      const token = q.get('token') ?? '';
      const brandId = idNumber(q.get('brandId'));
      const userId = idNumber(q.get('userId'));
      if (!token || token.length > 2048 || brandId === undefined || userId === undefined) {
        fail(
          400,
          lang === 'zh'
            ? '链接缺少 CXone 的参数（userId、brandId、token）。'
            : 'The link lacks CXone’s parameters (userId, brandId, token).',
        );
        return;
      }
      const integration = src.dfo();
      if (!integration) {
        fail(
          503,
          lang === 'zh'
            ? '集成尚未配置（cxone-dfo-config）。'
            : 'The integration is not configured (cxone-dfo-config).',
        );
        return;
      }
      let apiBase: string;
      let verified;
      try {
        apiBase = await integration.client.apiBase();
        verified = await integration.client.verifyOneTimeToken({ brandId, userId, token }, { base: apiBase });
      } catch (err) {
        const e = err instanceof DfoError ? err : null;
        log?.warn(
          `CXone admin page: the one-time token exchange failed: ${e ? e.message : 'internal error'}`,
        );
        fail(e && e.status && e.status < 500 ? 403 : 502, e ? e.message : 'internal error');
        return;
      }
      prune();
      const id = randomBytes(32).toString('base64url');
      const exp = expiryOf(verified.accessToken);
      const expires = Math.min(Date.now() + ttl, exp ? exp - 30_000 : Infinity);
      if (expires <= Date.now()) {
        fail(403, STRINGS[lang].expired);
        return;
      }
      const u = verified.user;
      const b = verified.brand;
      const name = [u.firstName, u.surname].filter((x) => typeof x === 'string' && x).join(' ');
      sessions.set(id, {
        id,
        csrf: randomBytes(24).toString('base64url'),
        accessToken: verified.accessToken,
        apiBase,
        expires,
        created: Date.now(),
        mode,
        backUrl,
        user: name || (typeof u.emailAddress === 'string' ? u.emailAddress : '') || String(userId),
        brand: (typeof b.friendlyName === 'string' && b.friendlyName) || String(brandId),
      });
      ctx.res.writeHead(303, {
        ...SECURITY_HEADERS,
        Location: 'admin',
        'Set-Cookie': cookieHeader(ctx, id, Math.floor((expires - Date.now()) / 1000)),
        'Content-Length': '0',
      });
      ctx.res.end();
    };

  const page = (ctx: RouteContext): void => {
    const lang = langOf(ctx);
    const s = sessionOf(ctx);
    if (!s) {
      html(ctx, 401, renderError(lang, STRINGS[lang].expired));
      return;
    }
    html(
      ctx,
      200,
      renderPage({
        lang,
        mode: s.mode,
        csrf: s.csrf,
        user: s.user,
        brand: s.brand,
        channelIntegrationId: src.channelIntegrationId ?? '',
        hasBack: !!s.backUrl,
        icons: CHANNEL_ICONS,
      }),
    );
  };

  /** The session of an API call; for changes also the CSRF header and the Origin. Answers and returns null otherwise. */
  const apiSession = (ctx: RouteContext, changes: boolean): Session | null => {
    const s = sessionOf(ctx);
    if (!s) {
      json(ctx, 401, { error: STRINGS[langOf(ctx)].expired });
      return null;
    }
    if (changes) {
      const sent = String(ctx.headers['x-csrf-token'] ?? '');
      const origin = ctx.headers.origin;
      if (!sent || !sameSecret(sent, s.csrf) || (origin && origin.toLowerCase() !== ownOrigin(ctx))) {
        json(ctx, 403, { error: 'forbidden' });
        return null;
      }
    }
    return s;
  };

  const apiError = (ctx: RouteContext, s: Session, err: unknown): void => {
    if (err instanceof DfoError) {
      if (err.status === 401) {
        sessions.delete(s.id);
        json(ctx, 401, { error: STRINGS[langOf(ctx)].expired });
        return;
      }
      const status = err.status === 400 || err.status === 403 || err.status === 404 ? err.status : 502;
      json(ctx, status, { error: err.message, fields: err.fields });
      return;
    }
    log?.warn('CXone admin page: internal error');
    json(ctx, 500, { error: 'internal error' });
  };

  const dfoOf = (ctx: RouteContext): DfoIntegration | null => {
    const i = src.dfo();
    if (!i) json(ctx, 503, { error: 'The integration is not configured (cxone-dfo-config).' });
    return i;
  };

  const list = async (ctx: RouteContext): Promise<void> => {
    const s = apiSession(ctx, false);
    if (!s) return;
    const i = dfoOf(ctx);
    if (!i) return;
    try {
      const all = await i.client.listChannels({ bearer: s.accessToken, base: s.apiBase });
      json(ctx, 200, {
        channels: ofIntegration(all, src.channelIntegrationId),
        filtered: !!src.channelIntegrationId,
      });
    } catch (err) {
      apiError(ctx, s, err);
    }
  };

  const create = async (ctx: RouteContext): Promise<void> => {
    const s = apiSession(ctx, true);
    if (!s) return;
    const i = dfoOf(ctx);
    if (!i) return;
    const body = parseJsonBody(ctx);
    if (!body) {
      json(ctx, 400, { error: 'the body must be a JSON object' });
      return;
    }
    const built = newChannelBody(body, { channelIntegrationId: src.channelIntegrationId });
    if (!built.ok) {
      json(ctx, 400, {
        error: built.problems.map((p) => `${p.field}: ${p.message}`).join('; '),
        problems: built.problems,
      });
      return;
    }
    try {
      const ch = await i.client.createChannel(built.channel, { bearer: s.accessToken, base: s.apiBase });
      json(ctx, 200, { channel: summarize(ch) });
    } catch (err) {
      apiError(ctx, s, err);
    }
  };

  const remove = async (ctx: RouteContext): Promise<void> => {
    const s = apiSession(ctx, true);
    if (!s) return;
    const i = dfoOf(ctx);
    if (!i) return;
    const id = ctx.params.channelId ?? '';
    try {
      if (src.channelIntegrationId) {
        // Only this integration's channels may be removed from its page.
        const all = await i.client.listChannels({ bearer: s.accessToken, base: s.apiBase });
        const mine = ofIntegration(all, src.channelIntegrationId).some((c) => c.id === id);
        if (!mine) {
          json(ctx, 404, { error: `channel ${id.slice(0, 100)} is not a channel of this integration` });
          return;
        }
      }
      await i.client.deleteChannel(id, { bearer: s.accessToken, base: s.apiBase });
      json(ctx, 200, { removed: id });
    } catch (err) {
      apiError(ctx, s, err);
    }
  };

  const back = (ctx: RouteContext): void => {
    const s = sessionOf(ctx);
    const lang = langOf(ctx);
    if (!s || !s.backUrl) {
      html(ctx, 404, renderError(lang, STRINGS[lang].expired));
      return;
    }
    sessions.delete(s.id);
    ctx.res.writeHead(303, {
      ...SECURITY_HEADERS,
      Location: s.backUrl,
      'Set-Cookie': cookieHeader(ctx, '', 0),
      'Content-Length': '0',
    });
    ctx.res.end();
  };

  const asset =
    (body: string, type: string) =>
    (ctx: RouteContext): void =>
      sendBytes(ctx.res, 200, body, type, { ...SECURITY_HEADERS, 'Cache-Control': 'no-cache' });

  return [
    { method: 'GET', pattern: '/action', handler: entry('action') },
    { method: 'GET', pattern: '/reconnect', handler: entry('reconnect') },
    { method: 'GET', pattern: '/remove', handler: entry('remove') },
    { method: 'GET', pattern: '/admin', handler: page },
    { method: 'GET', pattern: '/admin/app.js', handler: asset(ADMIN_JS, 'text/javascript; charset=utf-8') },
    { method: 'GET', pattern: '/admin/app.css', handler: asset(ADMIN_CSS, 'text/css; charset=utf-8') },
    { method: 'GET', pattern: '/admin/back', handler: back },
    { method: 'GET', pattern: '/admin/api/channels', handler: list },
    { method: 'POST', pattern: '/admin/api/channels', bodyLimit: 16 * 1024, handler: create },
    { method: 'DELETE', pattern: '/admin/api/channels/:channelId', handler: remove },
  ];
}
