/**
 * Temporary media: uploads (`/cgi-bin/media/upload`, multipart field `media`) with a cache so the same file is
 * not uploaded twice, and downloads (`/cgi-bin/media/get`) for the media links wechat-in gives CXone.
 *
 * Cache: `wxcx:wechat:<appId>:media:<type>:sha256:<hash of the bytes>` and `…:url:<hash of the URL>` → media_id,
 * in the account's store (shared by instances), kept 60 hours (WeChat deletes temporary media after 3 days).
 */
import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import axios, { type AxiosInstance } from 'axios';
import { checkUrl, guardedLookup, OutboundRefused, type OutboundPolicy } from '../../http/outbound-guard';
import type { Store } from '../../store/types';
import { readBounded, WechatApiError, type HttpAnswer, type HttpRequest } from './http';

export type MediaType = 'image' | 'voice' | 'video' | 'thumb';

/** Largest file per type that is sent to WeChat (its own limits; bigger files are refused before uploading). */
export const MEDIA_LIMITS: Readonly<Record<MediaType, number>> = {
  image: 10 * 1024 * 1024,
  voice: 2 * 1024 * 1024,
  video: 10 * 1024 * 1024,
  thumb: 64 * 1024,
};

/** Formats WeChat accepts per type (docs/protocol/wechat.md §10.1). */
const ACCEPTED: Readonly<Record<MediaType, readonly string[]>> = {
  image: ['image/jpeg', 'image/png', 'image/gif', 'image/bmp'],
  voice: ['audio/amr', 'audio/mpeg', 'audio/mp3'],
  video: ['video/mp4'],
  thumb: ['image/jpeg'],
};

const EXT_TYPES: Record<string, string> = {
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.png': 'image/png',
  '.gif': 'image/gif',
  '.bmp': 'image/bmp',
  '.webp': 'image/webp',
  '.amr': 'audio/amr',
  '.mp3': 'audio/mpeg',
  '.ogg': 'audio/ogg',
  '.wav': 'audio/wav',
  '.m4a': 'audio/mp4',
  '.mp4': 'video/mp4',
  '.mov': 'video/quicktime',
  '.pdf': 'application/pdf',
  '.txt': 'text/plain',
};

const TYPE_EXT: Record<string, string> = {
  'image/jpeg': '.jpg',
  'image/png': '.png',
  'image/gif': '.gif',
  'image/bmp': '.bmp',
  'audio/amr': '.amr',
  'audio/mpeg': '.mp3',
  'audio/mp3': '.mp3',
  'video/mp4': '.mp4',
};

/** The MIME type from the bytes' first few bytes, when they tell. */
export function sniffType(b: Buffer | undefined): string | undefined {
  if (!b || b.length < 4) return undefined;
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'image/jpeg';
  if (b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])))
    return 'image/png';
  if (b.subarray(0, 4).toString('latin1') === 'GIF8') return 'image/gif';
  if (b.subarray(0, 2).toString('latin1') === 'BM') return 'image/bmp';
  if (b.subarray(0, 5).toString('latin1') === '#!AMR') return 'audio/amr';
  if (b.subarray(0, 3).toString('latin1') === 'ID3' || (b[0] === 0xff && [0xfb, 0xf3, 0xf2].includes(b[1])))
    return 'audio/mpeg';
  if (b.length >= 12 && b.subarray(4, 8).toString('latin1') === 'ftyp') return 'video/mp4';
  if (b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WEBP')
    return 'image/webp';
  if (b.subarray(0, 5).toString('latin1') === '%PDF-') return 'application/pdf';
  return undefined;
}

function baseMime(t: string | undefined): string | undefined {
  const m = t?.split(';')[0].trim().toLowerCase();
  if (!m || m === 'application/octet-stream' || m === 'binary/octet-stream') return undefined;
  return m === 'image/jpg' ? 'image/jpeg' : m === 'audio/mp3' ? 'audio/mpeg' : m;
}

/** The best MIME type from what is known: declared type, the bytes, the file name. */
export function resolveContentType(declared?: string, name?: string, bytes?: Buffer): string | undefined {
  const ext = name ? path.extname(name.split('?')[0]).toLowerCase() : '';
  return sniffType(bytes) ?? baseMime(declared) ?? EXT_TYPES[ext];
}

/** Which WeChat message type can carry a file of this MIME type; undefined when none can. */
export function mediaTypeFor(contentType: string | undefined): Exclude<MediaType, 'thumb'> | undefined {
  const m = baseMime(contentType);
  if (!m) return undefined;
  if (ACCEPTED.image.includes(m)) return 'image';
  if (ACCEPTED.voice.includes(m)) return 'voice';
  if (ACCEPTED.video.includes(m)) return 'video';
  return undefined;
}

/** A file to upload: its bytes, or a URL to fetch them from. */
export interface MediaSource {
  data?: Buffer;
  url?: string;
  filename?: string;
  contentType?: string;
}

export interface UploadResult {
  mediaId: string;
  type: MediaType;
  /** True when the media_id came from the cache (no upload). */
  cached: boolean;
  /** The cache entries that now point at this media_id (to forget them when WeChat says 40007). */
  cacheKeys: { key: string; value: string }[];
}

/** What `getMedia` returns: the file as a stream, or, for video, WeChat's download URL. */
export type MediaDownload =
  | { kind: 'file'; stream: Readable; contentType: string; filename: string; contentLength?: number }
  | { kind: 'video'; videoUrl: string };

export interface MediaServiceOptions {
  appId: string;
  store: Store;
  /** Makes a call with the access token (WechatApi.call). */
  call: (req: HttpRequest) => Promise<HttpAnswer>;
  /** How long a media_id is reused, ms (default 60 h; WeChat keeps temporary media 3 days). */
  cacheTtlMs?: number;
  /** Timeout for fetching a file from a URL, ms (default 30 s). */
  fetchTimeoutMs?: number;
  /** Timeout for an upload, ms (default 60 s). */
  uploadTimeoutMs?: number;
  /** Which attachment URLs may be fetched (default: https, public addresses, any host). */
  outbound?: OutboundPolicy;
}

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/** A file name safe for a multipart header and a Content-Disposition. */
export function safeFilename(name: string | undefined, contentType: string | undefined): string {
  let n = (name ?? '').split(/[\\/]/).pop() ?? '';
  n = n
    .split('?')[0]
    .replace(/[^\w.\-()\u4e00-\u9fff ]+/g, '_')
    .slice(-100);
  const ext = contentType ? TYPE_EXT[baseMime(contentType) ?? ''] : undefined;
  if (!n || n.startsWith('.')) n = 'media' + (ext ?? '');
  else if (!path.extname(n) && ext) n += ext;
  return n;
}

/** The multipart body WeChat expects: one part named `media` with filename and content type. */
export function multipartBody(
  file: Buffer,
  filename: string,
  contentType: string,
): { data: Buffer; contentType: string } {
  const boundary = '----wxcx' + randomBytes(12).toString('hex');
  const head = Buffer.from(
    `--${boundary}\r\n` +
      `Content-Disposition: form-data; name="media"; filename="${filename.replace(/"/g, '')}"; filelength=${file.length}\r\n` +
      `Content-Type: ${contentType}\r\n\r\n`,
    'utf8',
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`, 'utf8');
  return {
    data: Buffer.concat([head, file, tail]),
    contentType: `multipart/form-data; boundary=${boundary}`,
  };
}

/** `Content-Disposition: attachment; filename="MEDIA_ID.jpg"` → `MEDIA_ID.jpg`. */
export function filenameFromDisposition(cd: string | undefined): string | undefined {
  if (!cd) return undefined;
  const star = /filename\*\s*=\s*(?:UTF-8'')?([^;]+)/i.exec(cd);
  if (star) {
    try {
      return decodeURIComponent(star[1].trim().replace(/^"|"$/g, ''));
    } catch {
      /* fall through */
    }
  }
  const m = /filename\s*=\s*("([^"]*)"|[^;]+)/i.exec(cd);
  return m ? (m[2] ?? m[1]).trim() : undefined;
}

export class MediaService {
  /** Uploads made (not answered from the cache). */
  uploads = 0;
  private readonly o: Required<MediaServiceOptions>;
  private readonly inflight = new Map<string, Promise<UploadResult>>();
  private readonly fetcher: AxiosInstance;
  private readonly agents: { http: http.Agent; https: https.Agent };

  constructor(opts: MediaServiceOptions) {
    this.o = {
      cacheTtlMs: 60 * 60 * 60_000,
      fetchTimeoutMs: 30_000,
      uploadTimeoutMs: 60_000,
      outbound: {},
      ...opts,
    };
    this.agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };
    this.fetcher = axios.create({
      httpAgent: this.agents.http,
      httpsAgent: this.agents.https,
      proxy: false,
      maxRedirects: 3,
      maxBodyLength: 1024,
      validateStatus: () => true,
      responseType: 'arraybuffer',
    });
  }

  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  private hashKey(type: MediaType, data: Buffer): string {
    return `wxcx:wechat:${this.o.appId}:media:${type}:sha256:${sha(data)}`;
  }

  /** A URL's entry holds `<type>:<media_id>`, so a repeated URL is answered without downloading it again. */
  private urlKey(url: string): string {
    return `wxcx:wechat:${this.o.appId}:media:url:${sha(url)}`;
  }

  /**
   * Uploads `src` as temporary media of `type` (or answers from the cache). `type` may be left out to choose it
   * from the file: image, voice or video. Throws a WechatApiError (kind `local`) for a file no WeChat message can
   * carry, with code `unsupported-type` (the caller may send a link instead) or `too-large`.
   */
  async upload(src: MediaSource, type?: MediaType): Promise<UploadResult> {
    // A URL already uploaded answers without fetching anything.
    const urlKey = src.url && !src.data ? this.urlKey(src.url) : undefined;
    if (urlKey) {
      const hit = await this.o.store.get(urlKey);
      const i = hit ? hit.indexOf(':') : -1;
      const hitType = i > 0 ? (hit!.slice(0, i) as MediaType) : undefined;
      if (hit && hitType && (!type || type === hitType) && MEDIA_LIMITS[hitType])
        return {
          mediaId: hit.slice(i + 1),
          type: hitType,
          cached: true,
          cacheKeys: [{ key: urlKey, value: hit }],
        };
    }
    const file = src.data ? { data: src.data, contentType: src.contentType } : await this.fetchUrl(src);
    const contentType = resolveContentType(
      src.contentType ?? file.contentType,
      src.filename ?? src.url,
      file.data,
    );
    const t: MediaType | undefined = type ?? mediaTypeFor(contentType);
    if (!t || (contentType && !ACCEPTED[t].includes(contentType)))
      throw new WechatApiError({
        kind: 'local',
        api: '/cgi-bin/media/upload',
        code: 'unsupported-type',
        reason: `WeChat cannot send a ${contentType ?? 'file of unknown type'} as ${t ? `a ${t}` : 'a message'} (images: JPG, PNG, GIF; voice: AMR, MP3; video: MP4)`,
        retryable: false,
      });
    if (file.data.length > MEDIA_LIMITS[t])
      throw new WechatApiError({
        kind: 'local',
        api: '/cgi-bin/media/upload',
        code: 'too-large',
        reason: `the ${t} is ${formatBytes(file.data.length)}, more than WeChat's ${formatBytes(MEDIA_LIMITS[t])} limit`,
        retryable: false,
      });
    if (file.data.length === 0)
      throw new WechatApiError({
        kind: 'local',
        api: '/cgi-bin/media/upload',
        code: 'empty-file',
        reason: 'the file is empty',
        retryable: false,
      });
    const hashKey = this.hashKey(t, file.data);
    const remember = async (mediaId: string, cached: boolean): Promise<UploadResult> => {
      const keys = [{ key: hashKey, value: mediaId }];
      if (urlKey) keys.push({ key: urlKey, value: `${t}:${mediaId}` });
      for (const k of keys) await this.o.store.set(k.key, k.value, this.o.cacheTtlMs);
      return { mediaId, type: t, cached, cacheKeys: keys };
    };
    // The same bytes uploading right now (a burst of sends with one file) share that upload.
    const running = this.inflight.get(hashKey);
    if (running) return running.then((r) => remember(r.mediaId, true));
    const p = (async (): Promise<UploadResult> => {
      const hit = await this.o.store.get(hashKey);
      if (hit) return remember(hit, true);
      const name = safeFilename(src.filename ?? src.url, contentType);
      const mediaId = await this.uploadBytes(file.data, t, name, contentType ?? 'application/octet-stream');
      return remember(mediaId, false);
    })().finally(() => this.inflight.delete(hashKey));
    this.inflight.set(hashKey, p);
    return p;
  }

  /** Forgets cache entries (after WeChat answered 40007 for their media_id), only while they still hold it. */
  async forget(keys: { key: string; value: string }[]): Promise<void> {
    for (const k of keys) await this.o.store.deleteIfEquals(k.key, k.value);
  }

  /** One upload, no cache. */
  async uploadBytes(data: Buffer, type: MediaType, filename: string, contentType: string): Promise<string> {
    this.uploads++;
    const ans = await this.o.call({
      method: 'POST',
      path: '/cgi-bin/media/upload',
      query: { type },
      body: multipartBody(data, filename, contentType),
      timeoutMs: this.o.uploadTimeoutMs,
    });
    const d = ans.kind === 'json' ? ans.data : {};
    const id = d.media_id ?? d.thumb_media_id;
    if (typeof id !== 'string' || !id)
      throw new WechatApiError({
        kind: 'bad-response',
        api: '/cgi-bin/media/upload',
        code: 'bad-response',
        reason: 'WeChat answered the upload without a media_id',
        retryable: true,
      });
    return id;
  }

  /**
   * Fetches a file from a URL under the outbound rules (lib/http/outbound-guard.ts: https only, public addresses
   * only, the allowed hosts; each redirect checked again and the checked address is the one connected to), bounded
   * by the largest media size and the fetch timeout.
   */
  private async fetchUrl(src: MediaSource): Promise<{ data: Buffer; contentType?: string }> {
    const api = 'attachment URL';
    const policy = this.o.outbound;
    const refused = (reason: string): WechatApiError =>
      new WechatApiError({
        kind: 'local',
        api,
        code: 'refused-url',
        reason: `the attachment URL is not fetched: ${reason}`,
        retryable: false,
      });
    let current = String(src.url ?? '');
    let res;
    for (let hop = 0; ; hop++) {
      let u: URL;
      try {
        u = checkUrl(current, policy);
      } catch (err) {
        if (!current || !/^[a-z][a-z0-9+.-]*:/i.test(current))
          throw new WechatApiError({
            kind: 'local',
            api,
            code: 'bad-url',
            reason: 'the attachment has no valid URL',
            retryable: false,
          });
        throw refused(err instanceof OutboundRefused ? err.message : 'refused');
      }
      const host = u.host;
      try {
        res = await this.fetcher.get<ArrayBuffer>(u.toString(), {
          timeout: this.o.fetchTimeoutMs,
          maxContentLength: MEDIA_LIMITS.video + 1,
          maxRedirects: 0,
          lookup: guardedLookup(policy) as never,
        });
      } catch (err) {
        const rawCode = (err as { code?: unknown } | null)?.code;
        const code = typeof rawCode === 'string' ? rawCode : 'network';
        if (code === 'EWXCXPRIVATE') throw refused(`${u.hostname} resolves to a non-public address`);
        const tooBig = code === 'ERR_BAD_RESPONSE' || code === 'ERR_FR_MAX_CONTENT_LENGTH_EXCEEDED';
        throw new WechatApiError({
          kind: tooBig ? 'local' : code === 'ECONNABORTED' || code === 'ETIMEDOUT' ? 'timeout' : 'network',
          api,
          code: tooBig ? 'too-large' : code,
          reason: tooBig
            ? `the attachment at ${host} is larger than WeChat accepts`
            : `the attachment could not be downloaded from ${host}`,
          retryable: !tooBig,
        });
      }
      const loc: unknown = res.headers.location;
      if (res.status >= 300 && res.status < 400 && typeof loc === 'string' && loc) {
        if (hop >= 3) throw refused(`too many redirects from ${host}`);
        try {
          current = new URL(loc, u).toString();
        } catch {
          throw refused(`an invalid redirect from ${host}`);
        }
        continue;
      }
      if (res.status < 200 || res.status >= 300)
        throw new WechatApiError({
          kind: 'http',
          api,
          status: res.status,
          reason: `the attachment could not be downloaded from ${host} (HTTP ${res.status})`,
          retryable: res.status >= 500 || res.status === 429,
        });
      break;
    }
    const ct = res.headers['content-type'];
    return { data: Buffer.from(res.data), contentType: typeof ct === 'string' ? ct : undefined };
  }

  /**
   * Downloads temporary media by its media_id (e.g. from a user's image, voice or video message).
   * Files come back as a stream with their type and name; video comes back as WeChat's `video_url`.
   * WeChat's errors (JSON with HTTP 200, such as 40007 for an expired id) are thrown as WechatApiError.
   */
  async get(mediaId: string, opts: { signal?: AbortSignal } = {}): Promise<MediaDownload> {
    if (typeof mediaId !== 'string' || !/^[\w\-]{1,256}$/.test(mediaId))
      throw new WechatApiError({
        kind: 'local',
        api: '/cgi-bin/media/get',
        code: 'bad-media-id',
        reason: 'the media id is not valid',
        retryable: false,
      });
    const ans = await this.o.call({
      method: 'GET',
      path: '/cgi-bin/media/get',
      query: { media_id: mediaId },
      expect: 'stream',
      timeoutMs: this.o.fetchTimeoutMs,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    if (ans.kind === 'json') {
      const url = ans.data.video_url ?? ans.data.down_url;
      if (typeof url === 'string' && url) return { kind: 'video', videoUrl: url };
      throw new WechatApiError({
        kind: 'bad-response',
        api: '/cgi-bin/media/get',
        code: 'bad-response',
        reason: 'WeChat answered the media request without the file',
        retryable: false,
      });
    }
    const ct = baseMime(ans.headers['content-type']) ?? 'application/octet-stream';
    const len = Number(ans.headers['content-length']);
    const name = filenameFromDisposition(ans.headers['content-disposition']);
    return {
      kind: 'file',
      stream: ans.stream,
      contentType: ct,
      filename: safeFilename(name ?? mediaId, ct),
      ...(Number.isFinite(len) && len >= 0 ? { contentLength: len } : {}),
    };
  }

  /** `get` read into memory, bounded (default 20 MB). */
  async getBuffer(
    mediaId: string,
    maxBytes = 20 * 1024 * 1024,
  ): Promise<
    | { kind: 'file'; data: Buffer; contentType: string; filename: string }
    | { kind: 'video'; videoUrl: string }
  > {
    const d = await this.get(mediaId);
    if (d.kind === 'video') return d;
    let data: Buffer;
    try {
      data = await readBounded(d.stream, maxBytes);
    } catch {
      throw new WechatApiError({
        kind: 'local',
        api: '/cgi-bin/media/get',
        code: 'too-large',
        reason: `the media is larger than ${formatBytes(maxBytes)} or the download broke off`,
        retryable: false,
      });
    }
    return { kind: 'file', data, contentType: d.contentType, filename: d.filename };
  }
}

function formatBytes(n: number): string {
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1).replace(/\.0$/, '')} MB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KB`;
  return `${n} bytes`;
}
