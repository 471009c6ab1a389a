/**
 * Signed, expiring links to inbound media (images, voice, video a WeChat user sent), so that whoever receives
 * the conversation message (CXone, an agent's browser) can fetch the file without WeChat credentials.
 *
 * - The link is `{publicBase}{httpNodeRoot}{path}/media/{token}`, served by the same wechat-in claim.
 * - token = "v1." + base64url(JSON {m: mediaId, k: kind, e: expiry (unix s)}) + "." + base64url(HMAC-SHA256).
 * - The HMAC key is derived (HKDF-SHA256) from the account's secrets (AppSecret, Token, EncodingAESKey) with the
 *   AppID as salt: every Node-RED instance serving the same account verifies every other's links, and a link
 *   dies when the secrets are rotated. The key never leaves the process.
 * - Serving streams from WeChat's `media/get` (video: from the `video_url` it answers with): nothing is buffered
 *   whole; Content-Type and Content-Disposition are set; a forged token gets 403, an expired one 410.
 */
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { checkUrl, guardedLookup, type OutboundPolicy } from '../../http/outbound-guard';
import type { MediaKind, MediaRef } from './normalize';

/** WeChat keeps temporary media for 3 days; links live as long by default. */
export const DEFAULT_MEDIA_LINK_TTL_MS = 3 * 24 * 3600 * 1000;

const KINDS: ReadonlySet<string> = new Set<MediaKind>(['image', 'voice', 'video', 'shortvideo', 'thumb']);

export interface MediaKeySecrets {
  appId: string;
  appSecret?: string;
  token?: string;
  encodingAESKey?: string;
}

/** The link-signing key of an account; null when the account has no secret to derive it from. */
export function mediaLinkKey(s: MediaKeySecrets): Buffer | null {
  const parts = [s.appSecret ?? '', s.token ?? '', s.encodingAESKey ?? ''];
  if (!parts.some((p) => p.length > 0)) return null;
  const ikm = Buffer.from(parts.join('\u0000'), 'utf8');
  return Buffer.from(
    hkdfSync('sha256', ikm, Buffer.from(s.appId, 'utf8'), 'wxcx wechat-in media link v1', 32),
  );
}

function b64url(buf: Buffer): string {
  return buf.toString('base64url');
}

function mac(key: Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

export interface MediaClaims {
  mediaId: string;
  kind: MediaKind;
  /** Expiry, unix seconds. */
  exp: number;
}

/** A signed token for one media id, valid until `exp` (unix seconds). */
export function signMediaToken(key: Buffer, claims: MediaClaims): string {
  const body =
    'v1.' + b64url(Buffer.from(JSON.stringify({ m: claims.mediaId, k: claims.kind, e: claims.exp })));
  return body + '.' + b64url(mac(key, body));
}

export type MediaTokenCheck =
  { ok: true; claims: MediaClaims } | { ok: false; reason: 'malformed' | 'forged' | 'expired' };

/** Verifies a token: signature first (constant time), then expiry. */
export function verifyMediaToken(
  key: Buffer,
  token: string,
  nowSec = Math.floor(Date.now() / 1000),
): MediaTokenCheck {
  if (typeof token !== 'string' || token.length > 2048) return { ok: false, reason: 'malformed' };
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== 'v1' || !/^[A-Za-z0-9_-]+$/.test(parts[1] + parts[2])) {
    return { ok: false, reason: 'malformed' };
  }
  // Compared as the canonical base64url text, not as decoded bytes: a decoder ignores the unused low bits of the
  // last character, so several spellings decode to one MAC, and a link must have exactly one.
  const expected = Buffer.from(b64url(mac(key, parts[0] + '.' + parts[1])), 'latin1');
  const got = Buffer.from(parts[2], 'latin1');
  if (got.length !== expected.length || !timingSafeEqual(got, expected))
    return { ok: false, reason: 'forged' };
  let c: { m?: unknown; k?: unknown; e?: unknown };
  try {
    c = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')) as typeof c;
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  if (
    typeof c.m !== 'string' ||
    !c.m ||
    typeof c.k !== 'string' ||
    !KINDS.has(c.k) ||
    typeof c.e !== 'number'
  ) {
    return { ok: false, reason: 'malformed' };
  }
  if (c.e < nowSec) return { ok: false, reason: 'expired' };
  return { ok: true, claims: { mediaId: c.m, kind: c.k as MediaKind, exp: c.e } };
}

/**
 * The public base URL (scheme://host[:port]) a push arrived at: `X-Forwarded-Proto`/`X-Forwarded-Host` when a
 * proxy set them, else the Host header. WeChat reached us there, so whoever receives the link can too.
 */
export function publicBaseOf(headers: IncomingMessage['headers'], secure: boolean): string | undefined {
  const first = (v: string | string[] | undefined): string | undefined =>
    (Array.isArray(v) ? v[0] : v)?.split(',')[0]?.trim() || undefined;
  const host = first(headers['x-forwarded-host']) ?? first(headers.host);
  if (!host || !/^[A-Za-z0-9.\-_:[\]]+$/.test(host)) return undefined;
  const proto = first(headers['x-forwarded-proto'])?.toLowerCase();
  const scheme = proto === 'https' || proto === 'http' ? proto : secure ? 'https' : 'http';
  return `${scheme}://${host}`;
}

/** Builds the media link of a reference, or undefined. */
export function mediaLink(
  key: Buffer,
  ref: Pick<MediaRef, 'mediaId' | 'kind'>,
  base: string,
  fullPath: string,
  ttlMs: number,
  nowMs = Date.now(),
): string {
  const token = signMediaToken(key, {
    mediaId: ref.mediaId,
    kind: ref.kind,
    exp: Math.floor((nowMs + ttlMs) / 1000),
  });
  return `${base.replace(/\/+$/, '')}${fullPath.replace(/\/+$/, '')}/media/${token}`;
}

// ---------------------------------------------------------------------------------------------------------
// Serving

/**
 * What a media download gives (the shape of `WechatApi.getMedia` in lib/wechat/api): a byte stream with what
 * WeChat said about it, or, for video, the URL WeChat answers with.
 */
export type MediaDownload =
  | {
      kind: 'file';
      stream: Readable | NodeJS.ReadableStream;
      contentType?: string;
      filename?: string;
      contentLength?: number;
    }
  | { kind: 'video'; videoUrl: string };

/** Downloads one media id from WeChat (`media/get`), provided by the account's API client. */
export type MediaFetcher = (mediaId: string, opts?: { signal?: AbortSignal }) => Promise<MediaDownload>;

/** errcodes that mean "this media is gone" (expired after 3 days, or never existed). */
const GONE = new Set([40007, 46001]);

function safeFilename(name: string): string {
  return name.replace(/[^\w.\-]+/g, '_').slice(0, 120) || 'media';
}

function contentDisposition(filename: string): string {
  const ascii = safeFilename(filename);
  return `inline; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename).slice(0, 400)}`;
}

const EXT: Record<string, string> = {
  'image/jpeg': 'jpg',
  'image/png': 'png',
  'image/gif': 'gif',
  'audio/amr': 'amr',
  'audio/mpeg': 'mp3',
  'audio/speex': 'spx',
  'video/mp4': 'mp4',
};

function defaultName(kind: MediaKind, contentType: string | undefined): string {
  const ext = contentType ? EXT[contentType.split(';')[0].trim().toLowerCase()] : undefined;
  return `${kind === 'shortvideo' ? 'video' : kind}.${ext ?? (kind === 'voice' ? 'amr' : kind.includes('video') ? 'mp4' : 'jpg')}`;
}

export interface ServeMediaOptions {
  /** Longest time to wait for WeChat to start answering (default 20 s). */
  timeoutMs?: number;
  /** Longest pause in the middle of a transfer before it is cut (default 30 s). */
  idleTimeoutMs?: number;
  /** Largest file streamed (bytes); beyond it the transfer is cut. Default 64 MiB. */
  maxBytes?: number;
  /** Told about failures, with safe words only. */
  onError?: (reason: string) => void;
  /**
   * Rules for the video_url WeChat answers with (and each redirect from it): public addresses and the allowed hosts
   * only, unless the policy allows private networks. http:// is accepted there: WeChat documents video downloads
   * over http. Default: the guard's defaults.
   */
  outbound?: OutboundPolicy;
  /** An origin trusted as the API host itself (the configured apiBase): its URLs are fetched without the rules. */
  trustedOrigin?: string;
}

/**
 * Answers one media request: streams what the fetcher gives to `res`. Answers 410 when WeChat says the media is
 * gone, 502 when WeChat cannot be reached or answers with an error, 504 on timeout.
 */
export async function serveMedia(
  res: ServerResponse,
  claims: MediaClaims,
  fetcher: MediaFetcher,
  opts: ServeMediaOptions = {},
  head = false,
): Promise<void> {
  const ac = new AbortController();
  const timeoutMs = opts.timeoutMs ?? 20_000;
  let timedOut = false;
  let clientGone = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort();
  }, timeoutMs);
  res.once('close', () => {
    if (!res.writableFinished) clientGone = true;
    ac.abort();
  });
  let dl: MediaDownload;
  try {
    dl = await fetcher(claims.mediaId, { signal: ac.signal });
  } catch (err) {
    clearTimeout(timer);
    if (clientGone) return;
    const errcode = (err as { errcode?: unknown })?.errcode;
    if (typeof errcode === 'number' && GONE.has(errcode)) {
      plain(res, 410, 'the media has expired on WeChat (temporary media lives 3 days)');
      return;
    }
    const reason = timedOut ? 'WeChat did not send the media in time' : 'WeChat did not provide the media';
    opts.onError?.(`${reason}${typeof errcode === 'number' ? ` (${errcode})` : ''}`);
    plain(res, timedOut ? 504 : 502, reason);
    return;
  }
  try {
    if (dl.kind === 'video') {
      const up = await getFollowing(dl.videoUrl, ac.signal, 3, opts);
      clearTimeout(timer);
      if ((up.statusCode ?? 0) < 200 || (up.statusCode ?? 0) >= 300) {
        up.resume();
        opts.onError?.(`the video download answered HTTP ${up.statusCode}`);
        plain(res, 502, 'the video could not be downloaded from WeChat');
        return;
      }
      const ct = String(up.headers['content-type'] ?? 'video/mp4');
      const len = Number(up.headers['content-length']);
      await pipeTo(
        res,
        up,
        ct,
        defaultName(claims.kind, ct),
        Number.isFinite(len) ? len : undefined,
        opts,
        head,
      );
      return;
    }
    clearTimeout(timer);
    const ct = dl.contentType ?? 'application/octet-stream';
    const name = dl.filename ?? defaultName(claims.kind, ct);
    const stream =
      dl.stream instanceof Readable ? dl.stream : Readable.from(dl.stream as AsyncIterable<Buffer>);
    await pipeTo(res, stream, ct, name, dl.contentLength, opts, head);
  } catch {
    if (clientGone) return;
    if (!res.headersSent) {
      const reason = timedOut ? 'WeChat did not send the media in time' : 'the media transfer failed';
      opts.onError?.(reason);
      plain(res, timedOut ? 504 : 502, reason);
    } else {
      opts.onError?.('the media transfer broke off');
      res.destroy();
    }
  } finally {
    clearTimeout(timer);
  }
}

function plain(res: ServerResponse, status: number, text: string): void {
  if (res.headersSent) return;
  const body = Buffer.from(text, 'utf8');
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': String(body.length),
    'Cache-Control': 'no-store',
  });
  res.end(body);
}

function pipeTo(
  res: ServerResponse,
  src: Readable,
  contentType: string,
  filename: string,
  length: number | undefined,
  opts: ServeMediaOptions,
  head: boolean,
): Promise<void> {
  const max = opts.maxBytes ?? 64 * 1024 * 1024;
  return new Promise<void>((resolve, reject) => {
    const headers: Record<string, string> = {
      'Content-Type': contentType,
      'Content-Disposition': contentDisposition(filename),
      'Cache-Control': 'private, max-age=3600',
      'X-Content-Type-Options': 'nosniff',
    };
    if (length !== undefined && length >= 0) headers['Content-Length'] = String(length);
    res.writeHead(200, headers);
    if (head) {
      src.destroy();
      res.end();
      resolve();
      return;
    }
    let sent = 0;
    const idleMs = opts.idleTimeoutMs ?? 30_000;
    let idle = setTimeout(stall, idleMs);
    function stall(): void {
      src.destroy();
      res.destroy();
      reject(new Error('stalled'));
    }
    const done = (): void => clearTimeout(idle);
    src.on('data', (chunk: Buffer) => {
      clearTimeout(idle);
      idle = setTimeout(stall, idleMs);
      sent += chunk.length;
      if (sent > max) {
        done();
        src.destroy();
        res.destroy();
        reject(new Error('too large'));
        return;
      }
      if (!res.write(chunk)) {
        src.pause();
        res.once('drain', () => src.resume());
      }
    });
    src.once('end', () => {
      done();
      res.end();
      resolve();
    });
    src.once('error', (e) => {
      done();
      res.destroy();
      reject(e);
    });
    res.once('close', () => {
      done();
      if (!res.writableFinished) src.destroy();
      resolve();
    });
  });
}

/** GET with up to `redirects` redirects, each checked against the outbound rules (see `ServeMediaOptions`). */
function getFollowing(
  url: string,
  signal: AbortSignal,
  redirects: number,
  rules: Pick<ServeMediaOptions, 'outbound' | 'trustedOrigin'>,
): Promise<IncomingMessage> {
  return new Promise<IncomingMessage>((resolve, reject) => {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      reject(new Error('invalid video_url'));
      return;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      reject(new Error('video_url is not http(s)'));
      return;
    }
    const trusted = !!rules.trustedOrigin && u.origin === rules.trustedOrigin;
    const policy: OutboundPolicy = { ...(rules.outbound ?? {}), allowHttp: true };
    if (!trusted) {
      try {
        checkUrl(u.toString(), policy);
      } catch (err) {
        reject(err instanceof Error ? err : new Error('video_url refused'));
        return;
      }
    }
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.get(u, { signal, ...(trusted ? {} : { lookup: guardedLookup(policy) }) }, (r) => {
      const loc = r.headers.location;
      if (r.statusCode && r.statusCode >= 300 && r.statusCode < 400 && loc && redirects > 0) {
        r.resume();
        let next: string;
        try {
          next = new URL(loc, u).toString();
        } catch {
          reject(new Error('invalid redirect'));
          return;
        }
        getFollowing(next, signal, redirects - 1, rules).then(resolve, reject);
        return;
      }
      resolve(r);
    });
    req.on('error', reject);
  });
}
