/**
 * Media for CXone: `attachments [{friendlyName, url}]` whose URL CXone can open (docs/protocol/cxone.md §c).
 *
 * Mode "upload" (the default): the bytes (given, or fetched from the attachment's URL with size and time limits)
 * go to `POST /attachments/temporary`, and the URL it returns goes in the message. Mode "link": a public http(s)
 * URL is passed as it is; bytes, and URLs that carry an `access_token` (a WeChat media URL would leak our token),
 * are uploaded anyway.
 *
 * An attachment that cannot be had for good (404 at the source, too large, no URL) does not stop the message:
 * it is left out and named in a note the agent reads. A passing failure (network, 5xx) is worth a retry, until
 * the caller says to degrade instead (after a few attempts).
 */
import type { AxiosResponse } from 'axios';
import { checkUrl, guardedLookup, OutboundRefused, type OutboundPolicy } from '../../http/outbound-guard';
import type { DfoClient } from './client';
import { DfoError } from './errors';
import { type DfoHttp, hostOf, networkError } from './http';
import type { PendingAttachment } from './mapping';

export type AttachmentMode = 'upload' | 'link';

export interface AttachmentOptions {
  mode: AttachmentMode;
  /** Largest attachment fetched and uploaded, bytes (default 20 MiB). */
  maxBytes?: number;
  /** Time allowed to fetch one attachment, ms (default 30 s). */
  fetchTimeoutMs?: number;
  /** Leave out attachments that fail for a passing reason too, instead of asking for a retry. */
  degrade?: boolean;
  /** Which URLs may be fetched (default: https, public addresses only). */
  policy?: OutboundPolicy;
}

export interface ResolvedAttachments {
  attachments: { friendlyName: string; url: string }[];
  /** One line per attachment left out, for the agent. */
  notes: string[];
}

export const DEFAULT_MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024;

/** A URL CXone can be given as it is: http(s), and no access token in it. */
function isPublicLink(url: string): boolean {
  return /^https?:\/\//i.test(url) && !/access_token=/i.test(url);
}

/** GET the bytes of an attachment URL with limits, through the outbound guard (each redirect checked too). */
export async function fetchAttachment(
  http: DfoHttp,
  url: string,
  name: string,
  opts: { maxBytes: number; timeoutMs: number; policy?: OutboundPolicy },
): Promise<{ data: Buffer; mimeType?: string }> {
  const policy = opts.policy ?? {};
  const refused = (reason: string): DfoError =>
    new DfoError({
      key: 'attachment-fetch',
      subs: { name, host: hostOf(url), reason: reason.slice(0, 160) },
      code: 'attachment-refused',
      retryable: false,
    });
  let current = url;
  let res: AxiosResponse<ArrayBuffer> | undefined;
  for (let hop = 0; hop <= 3; hop++) {
    try {
      checkUrl(current, policy);
    } catch (err) {
      throw refused(err instanceof OutboundRefused ? err.message : 'refused');
    }
    try {
      res = await http.axios.request<ArrayBuffer>({
        method: 'GET',
        url: current,
        responseType: 'arraybuffer',
        transformResponse: [(d: unknown) => d],
        maxContentLength: opts.maxBytes,
        maxRedirects: 0,
        timeout: opts.timeoutMs,
        headers: { Accept: '*/*' },
        lookup: guardedLookup(policy) as never,
      });
    } catch (err) {
      const code = (err as { code?: unknown })?.code;
      if (code === 'ERR_BAD_RESPONSE' || code === 'ERR_FR_MAX_CONTENT_LENGTH_EXCEEDED') {
        throw new DfoError({
          key: 'attachment-too-large',
          subs: { name, limit: opts.maxBytes },
          code: 'attachment-too-large',
          retryable: false,
        });
      }
      if (code === 'EWXCXPRIVATE') throw refused((err as Error).message);
      const e = networkError(err, current, opts.timeoutMs);
      throw new DfoError({
        key: 'attachment-fetch',
        subs: { name, host: hostOf(current), reason: String(e.code) },
        code: 'attachment',
        retryable: true,
      });
    }
    const loc: unknown = res.headers.location;
    if (res.status >= 300 && res.status < 400 && typeof loc === 'string' && loc) {
      try {
        current = new URL(loc, current).toString();
      } catch {
        throw refused('invalid redirect');
      }
      continue;
    }
    break;
  }
  if (!res || (res.status >= 300 && res.status < 400)) throw refused('too many redirects');
  if (res.status < 200 || res.status >= 300) {
    throw new DfoError({
      key: 'attachment-fetch',
      subs: { name, host: hostOf(current), reason: `HTTP ${res.status}` },
      status: res.status,
      code: 'attachment',
      retryable: res.status === 429 || res.status >= 500 || res.status === 408,
    });
  }
  const data = Buffer.from(res.data);
  if (data.length > opts.maxBytes) {
    throw new DfoError({
      key: 'attachment-too-large',
      subs: { name, limit: opts.maxBytes },
      code: 'attachment-too-large',
      retryable: false,
    });
  }
  const ct = res.headers['content-type'];
  return { data, mimeType: typeof ct === 'string' ? ct.split(';')[0].trim() : undefined };
}

/**
 * Makes each pending attachment into `{friendlyName, url}`. Throws a retryable DfoError for a passing failure
 * (unless `degrade`), or a DfoError from CXone's upload (401/400 …) as classified by the client.
 */
export async function resolveAttachments(
  client: DfoClient,
  http: DfoHttp,
  pending: PendingAttachment[],
  opts: AttachmentOptions,
  cache?: Map<number, { friendlyName: string; url: string }>,
): Promise<ResolvedAttachments> {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_ATTACHMENT_BYTES;
  const out: ResolvedAttachments = { attachments: [], notes: [] };
  for (let i = 0; i < pending.length; i++) {
    const p = pending[i];
    const name = p.friendlyName;
    const hit = cache?.get(i);
    if (hit) {
      out.attachments.push(hit);
      continue;
    }
    if (opts.mode === 'link' && p.url && isPublicLink(p.url) && !toBuffer(p.data)) {
      out.attachments.push({ friendlyName: name, url: p.url });
      continue;
    }
    try {
      let data = toBuffer(p.data);
      let mimeType = p.mimeType;
      if (!data) {
        if (!p.url) {
          throw new DfoError({
            key: 'attachment-missing',
            subs: { name },
            code: 'attachment',
            retryable: false,
          });
        }
        const got = await fetchAttachment(http, p.url, name, {
          maxBytes,
          timeoutMs: opts.fetchTimeoutMs ?? 30_000,
          policy: opts.policy,
        });
        data = got.data;
        mimeType = mimeType || got.mimeType;
      }
      if (data.length > maxBytes) {
        throw new DfoError({
          key: 'attachment-too-large',
          subs: { name, limit: maxBytes },
          code: 'attachment-too-large',
          retryable: false,
        });
      }
      const up = await client.uploadAttachment(data, mimeType || 'application/octet-stream');
      const item = { friendlyName: name, url: up.url };
      cache?.set(i, item);
      out.attachments.push(item);
    } catch (err) {
      if (!(err instanceof DfoError)) throw err;
      const attachmentProblem = err.key.startsWith('attachment');
      if (attachmentProblem && (!err.retryable || opts.degrade)) {
        out.notes.push(`[${name} could not be forwarded: ${noteReason(err)}]`);
        continue;
      }
      if (!attachmentProblem && opts.degrade && err.retryable) {
        out.notes.push(`[${name} could not be forwarded: the upload to CXone failed]`);
        continue;
      }
      throw err;
    }
  }
  return out;
}

/** Bytes as given, or as a persistent outbox may hand them back (base64 text, a JSON-serialised Buffer). */
export function toBuffer(v: unknown): Buffer | undefined {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof Uint8Array) return Buffer.from(v);
  if (typeof v === 'string' && v) return Buffer.from(v, 'base64');
  if (v && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer') {
    const d = (v as { data?: unknown }).data;
    if (Array.isArray(d)) return Buffer.from(d as number[]);
  }
  return undefined;
}

function noteReason(err: DfoError): string {
  if (err.key === 'attachment-too-large') return `larger than ${err.subs.limit} bytes`;
  if (err.key === 'attachment-missing') return 'no URL to fetch it from';
  return String(err.subs.reason ?? 'fetch failed');
}
