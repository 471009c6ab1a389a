/**
 * HTTP to WeChat's API hosts: axios with keep-alive agents and explicit timeouts; every status is classified here.
 *
 * - Host failover happens ONLY when a host gave no answer at all (refused, reset, DNS, TLS, timeout): api →
 *   api2 → sh → sz → hk. An errcode or an HTTP status is an answer and is never retried on another host.
 * - Transient answers (errcode -1, HTTP 5xx/429) and network failures are retried a few times with exponential
 *   back-off and jitter before the call fails; the caller (the outbox) decides about later attempts.
 * - Errors are built from safe parts only: the API path (never the URL: it carries `access_token=`), the host's
 *   origin, codes and words. The axios error object is never kept or logged.
 */
import { setMaxListeners } from 'node:events';
import * as http from 'node:http';
import * as https from 'node:https';
import type { Readable } from 'node:stream';
import axios, { type AxiosInstance } from 'axios';
import { leanRequest } from '../../http/lean';
import { cleanErrmsg, describeErrcode, WECHAT_ERRORS, type Lang } from './errors';

export const OFFICIAL_HOSTS = [
  'https://api.weixin.qq.com',
  'https://api2.weixin.qq.com',
  'https://sh.api.weixin.qq.com',
  'https://sz.api.weixin.qq.com',
  'https://hk.api.weixin.qq.com',
] as const;

/** What went wrong, broadly. */
export type FailureKind =
  /** WeChat answered with a non-zero errcode. */
  | 'errcode'
  /** No answer: refused, reset, DNS, TLS. */
  | 'network'
  /** No answer in time. */
  | 'timeout'
  /** An HTTP status other than 2xx, without an errcode. */
  | 'http'
  /** A 2xx answer we could not read (not JSON, too large, missing fields). */
  | 'bad-response'
  /** The call was abandoned because the node closed. */
  | 'aborted'
  /** Something we refused before calling (bad input, unsupported file). */
  | 'local';

export interface WechatApiErrorInit {
  kind: FailureKind;
  api: string;
  errcode?: number;
  status?: number;
  /** Our short code for non-errcode failures ('ECONNREFUSED', 'timeout', 'too-large', …). */
  code?: string;
  reason: string;
  retryable: boolean;
  retryAfterMs?: number;
  host?: string;
}

/** A failed WeChat call, safe to show: no URL, no token, no secret, no axios internals. */
export class WechatApiError extends Error {
  readonly kind: FailureKind;
  /** The API path, e.g. `/cgi-bin/message/custom/send`. */
  readonly api: string;
  readonly errcode?: number;
  readonly status?: number;
  /** Words an agent or admin understands, without the code. */
  readonly reason: string;
  /** Whether trying again later may succeed without anyone acting. */
  readonly retryable: boolean;
  readonly retryAfterMs?: number;
  /** Origin of the host that answered (or was tried last). */
  readonly host?: string;
  private readonly ownCode?: string;

  constructor(init: WechatApiErrorInit) {
    const code = init.errcode ?? init.status ?? init.code ?? init.kind;
    super(`WeChat ${init.api}: ${init.reason} (${code})`);
    this.name = 'WechatApiError';
    this.kind = init.kind;
    this.api = init.api;
    this.errcode = init.errcode;
    this.status = init.status;
    this.reason = init.reason;
    this.retryable = init.retryable;
    this.retryAfterMs = init.retryAfterMs;
    this.host = init.host;
    this.ownCode = init.code;
  }

  /** The code for `msg.delivery.error.code`: WeChat's errcode, the HTTP status, or ours. */
  get code(): string | number {
    return this.errcode ?? this.status ?? this.ownCode ?? this.kind;
  }

  /** The same failure in Chinese words (errcodes only; other kinds keep their English reason). */
  reasonIn(lang: Lang): string {
    if (lang === 'en' || this.errcode === undefined) return this.reason;
    return describeErrcode(this.errcode, undefined, 'zh');
  }

  /** For JSON.stringify (debug output): only the safe fields. */
  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      message: this.message,
      code: this.code,
      kind: this.kind,
      retryable: this.retryable,
    };
  }
}

/** Makes a WechatApiError from an errcode answer. */
export function errcodeError(api: string, errcode: number, errmsg: unknown, host?: string): WechatApiError {
  const info = WECHAT_ERRORS[errcode];
  return new WechatApiError({
    kind: 'errcode',
    api,
    errcode,
    reason: describeErrcode(errcode, cleanErrmsg(errmsg)),
    retryable: info?.retryable ?? false,
    retryAfterMs: info?.retryAfterMs,
    host,
  });
}

export interface WechatHttpOptions {
  /** The first host, e.g. `https://api.weixin.qq.com` (or a simulator). */
  apiBase: string;
  /**
   * Hosts tried in turn when a host does not answer. Default: when `apiBase` is one of WeChat's hosts, the other
   * official hosts (api, api2, sh, sz, hk); otherwise none.
   */
  fallbackBases?: string[];
  /** Per request, ms (default 10 s). */
  timeoutMs?: number;
  /** Transient retries per call after the first try (default 2). */
  retries?: number;
  /** First back-off, ms (default 300); doubles per retry, with jitter, up to `retryMaxMs` (default 3 s). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Largest answer accepted, bytes (default 16 MB). */
  maxContentLength?: number;
  /** How long a fallback host that worked stays preferred, ms (default 60 s); then the first host is tried again. */
  stickyMs?: number;
}

export interface HttpRequest {
  method: 'GET' | 'POST';
  /** The API path, e.g. `/cgi-bin/message/custom/send`. */
  path: string;
  /** Query parameters (may include `access_token`; never shown anywhere). */
  query?: Record<string, string>;
  /** A JSON body (sent as UTF-8, not \u-escaped). */
  json?: unknown;
  /** A raw body with its content type (multipart upload). */
  body?: { data: Buffer; contentType: string };
  timeoutMs?: number;
  /** `json` (default): parse and check errcode. `stream`: a binary answer unless it is JSON (media/get). */
  expect?: 'json' | 'stream';
  /** Retries for transient failures (default: the client's). 0 for calls that must not repeat. */
  retries?: number;
  /** Abandons the call (e.g. the HTTP client waiting for a media download went away). */
  signal?: AbortSignal;
}

export interface JsonAnswer {
  kind: 'json';
  data: Record<string, unknown>;
  /** The body as text (for fields beyond 2^53, such as template msgid). */
  text: string;
  host: string;
}

export interface StreamAnswer {
  kind: 'stream';
  stream: Readable;
  headers: Record<string, string>;
  host: string;
}

export type HttpAnswer = JsonAnswer | StreamAnswer;

const NETWORK_WORDS: Record<string, string> = {
  ECONNREFUSED: 'the WeChat API host refused the connection',
  ECONNRESET: 'the connection to the WeChat API host was reset',
  ENOTFOUND: 'the WeChat API host name could not be resolved',
  EAI_AGAIN: 'the WeChat API host name could not be resolved (DNS busy)',
  EHOSTUNREACH: 'the WeChat API host is unreachable',
  ENETUNREACH: 'the network is unreachable',
  EPIPE: 'the connection to the WeChat API host broke',
  ERR_SOCKET_CONNECTION_TIMEOUT: 'connecting to the WeChat API host timed out',
};

/** A random delay for retry `n` (0-based): half fixed, half random, capped. */
export function backoffDelay(n: number, baseMs: number, maxMs: number, random = Math.random): number {
  const d = Math.min(maxMs, baseMs * 2 ** n);
  return Math.round(d / 2 + random() * (d / 2));
}

function normaliseBase(u: string): string {
  return u.trim().replace(/\/+$/, '');
}

/** The default failover list for `apiBase`. */
export function defaultFallbacks(apiBase: string): string[] {
  const base = normaliseBase(apiBase);
  if (!(OFFICIAL_HOSTS as readonly string[]).includes(base)) return [];
  return OFFICIAL_HOSTS.filter((h) => h !== base);
}

function originOf(base: string): string {
  try {
    return new URL(base).origin;
  } catch {
    return 'invalid-url';
  }
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** One account's HTTP connection to WeChat. */
export class WechatHttp {
  readonly bases: string[];
  private readonly ax: AxiosInstance;
  private readonly maxContentLength: number;
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly stickyMs: number;
  private preferred = 0;
  private preferredUntil = 0;
  private readonly abort = new AbortController();
  /** Counts for status and tests. */
  readonly stats = { calls: 0, failovers: 0, retries: 0 };

  constructor(opts: WechatHttpOptions) {
    // Every request in flight listens on the one abort signal (close() ends them all).
    setMaxListeners(0, this.abort.signal);
    const first = normaliseBase(opts.apiBase);
    const rest = (opts.fallbackBases ?? defaultFallbacks(first))
      .map(normaliseBase)
      .filter((b) => b && b !== first);
    this.bases = [first, ...rest];
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.retries = opts.retries ?? 2;
    this.retryBaseMs = opts.retryBaseMs ?? 300;
    this.retryMaxMs = opts.retryMaxMs ?? 3_000;
    this.stickyMs = opts.stickyMs ?? 60_000;
    // The outbox's `concurrency` (at most 1024) is the limit, not the agent; idle sockets close after 60 s.
    const agentOpts = { keepAlive: true, maxSockets: 1024, maxFreeSockets: 1024, timeout: 60_000 };
    this.httpAgent = new http.Agent(agentOpts);
    this.httpsAgent = new https.Agent(agentOpts);
    const max = opts.maxContentLength ?? 16 * 1024 * 1024;
    this.maxContentLength = max;
    this.ax = axios.create({
      httpAgent: this.httpAgent,
      httpsAgent: this.httpsAgent,
      proxy: false,
      maxRedirects: 0,
      maxContentLength: max,
      maxBodyLength: 32 * 1024 * 1024,
      validateStatus: () => true,
      transitional: { clarifyTimeoutError: true, silentJSONParsing: true, forcedJSONParsing: false },
      decompress: true,
    });
  }

  /** Aborts calls in flight and releases the sockets. */
  close(): void {
    this.abort.abort();
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }

  get closed(): boolean {
    return this.abort.signal.aborted;
  }

  /** The host tried first now: a fallback that worked recently, else the first. */
  private startIndex(): number {
    if (this.preferred !== 0 && Date.now() >= this.preferredUntil) this.preferred = 0;
    return this.preferred;
  }

  async request(req: HttpRequest): Promise<HttpAnswer> {
    const retries = req.retries ?? this.retries;
    let last: WechatApiError | undefined;
    for (let n = 0; n <= retries; n++) {
      if (n > 0) {
        this.stats.retries++;
        await sleep(backoffDelay(n - 1, this.retryBaseMs, this.retryMaxMs), this.abort.signal);
      }
      if (this.closed || req.signal?.aborted) throw this.abortedError(req.path);
      try {
        return await this.acrossHosts(req);
      } catch (err) {
        if (!(err instanceof WechatApiError)) throw err;
        last = err;
        // Only transient failures are tried again: -1, 5xx, 429, no answer. An errcode with a wait (45011) is
        // left to the outbox, which can wait a minute without holding a request open.
        const transient =
          err.kind === 'network' ||
          err.kind === 'timeout' ||
          (err.kind === 'http' && err.retryable) ||
          (err.kind === 'errcode' && err.errcode === -1);
        if (!transient) throw err;
      }
    }
    throw last ?? this.abortedError(req.path);
  }

  /** One try, moving to the next host only while hosts give no answer. */
  private async acrossHosts(req: HttpRequest): Promise<HttpAnswer> {
    const start = this.startIndex();
    let last: WechatApiError | undefined;
    for (let i = 0; i < this.bases.length; i++) {
      const idx = (start + i) % this.bases.length;
      const base = this.bases[idx];
      if (i > 0) this.stats.failovers++;
      try {
        const res = await this.once(base, req);
        // A fallback host that answered stays first for a while; the first host is tried again afterwards.
        this.preferred = idx;
        if (idx !== 0) this.preferredUntil = Date.now() + this.stickyMs;
        return this.classify(res, req, base);
      } catch (err) {
        if (
          err instanceof WechatApiError &&
          (err.kind === 'network' || err.kind === 'timeout') &&
          !this.closed &&
          !req.signal?.aborted
        ) {
          last = err;
          continue;
        }
        throw err;
      }
    }
    throw last ?? this.abortedError(req.path);
  }

  /**
   * One call to one host. JSON calls go through the lean client (lib/http/lean.ts, ADR 0011); streams (media/get)
   * through axios.
   */
  private async once(base: string, req: HttpRequest): Promise<RawAnswer> {
    this.stats.calls++;
    const url = base + req.path;
    const headers: Record<string, string> = { Accept: 'application/json, */*' };
    let data: unknown;
    if (req.json !== undefined) {
      data = Buffer.from(JSON.stringify(req.json), 'utf8');
      headers['Content-Type'] = 'application/json; charset=utf-8';
    } else if (req.body) {
      data = req.body.data;
      headers['Content-Type'] = req.body.contentType;
    }
    try {
      const signal = req.signal ? AbortSignal.any([this.abort.signal, req.signal]) : this.abort.signal;
      if (req.expect !== 'stream') {
        let u = url;
        if (req.query) {
          const q = new URLSearchParams(req.query).toString();
          if (q) u += (u.includes('?') ? '&' : '?') + q;
        }
        headers['User-Agent'] = 'node-red-wechat-cxone';
        const res = await leanRequest({
          method: req.method,
          url: u,
          headers,
          body: data as Buffer | undefined,
          timeoutMs: req.timeoutMs ?? this.timeoutMs,
          maxResponseBytes: this.maxContentLength,
          agents: { http: this.httpAgent, https: this.httpsAgent },
          signal,
        });
        return { status: res.status, headers: res.headers, data: res.body };
      }
      return await this.ax.request({
        method: req.method,
        url,
        params: req.query,
        data,
        headers,
        timeout: req.timeoutMs ?? this.timeoutMs,
        responseType: req.expect === 'stream' ? 'stream' : 'arraybuffer',
        signal,
      });
    } catch (err) {
      if (req.signal?.aborted) throw this.abortedError(req.path);
      throw this.transportError(err, req.path, base);
    }
  }

  /** Turns an axios failure into a safe error. Reads only `code`; never the message, config or request. */
  private transportError(err: unknown, api: string, base: string): WechatApiError {
    const host = originOf(base);
    const code = (err as { code?: unknown } | null)?.code;
    const c = typeof code === 'string' ? code : '';
    if (this.closed || c === 'ERR_CANCELED') return this.abortedError(api);
    if (c === 'ETIMEDOUT' || c === 'ECONNABORTED')
      return new WechatApiError({
        kind: 'timeout',
        api,
        code: 'timeout',
        reason: 'the WeChat API host did not answer in time',
        retryable: true,
        host,
      });
    if (c === 'ERR_BAD_RESPONSE' || c === 'ERR_FR_MAX_CONTENT_LENGTH_EXCEEDED' || c === 'ERR_BAD_REQUEST')
      return new WechatApiError({
        kind: 'bad-response',
        api,
        code: 'bad-response',
        reason: 'the answer from WeChat could not be read (too large or malformed)',
        retryable: false,
        host,
      });
    return new WechatApiError({
      kind: 'network',
      api,
      code: c || 'network',
      reason: NETWORK_WORDS[c] ?? 'the WeChat API host could not be reached',
      retryable: true,
      host,
    });
  }

  private abortedError(api: string): WechatApiError {
    return new WechatApiError({
      kind: 'aborted',
      api,
      code: 'aborted',
      reason: 'the call was abandoned because the node stopped',
      retryable: true,
    });
  }

  private async classify(res: RawAnswer, req: HttpRequest, base: string): Promise<HttpAnswer> {
    const host = originOf(base);
    const headers = flatHeaders(res.headers);
    const ctype = (headers['content-type'] ?? '').toLowerCase();
    let body: Buffer;
    if (req.expect === 'stream') {
      const stream = res.data as Readable;
      // media/get answers errors (and video) as JSON with HTTP 200; a binary answer is passed on as a stream.
      const looksJson = ctype.includes('json') || ctype.startsWith('text/plain');
      if (res.status >= 200 && res.status < 300 && !looksJson)
        return { kind: 'stream', stream, headers, host };
      body = await readBounded(stream, 1024 * 1024).catch(() => Buffer.alloc(0));
    } else {
      body = Buffer.isBuffer(res.data) ? res.data : Buffer.from(res.data as ArrayBuffer);
    }
    const text = body.toString('utf8');
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    const obj =
      parsed && typeof parsed === 'object' && !Array.isArray(parsed)
        ? (parsed as Record<string, unknown>)
        : undefined;
    const errcode = obj && typeof obj.errcode === 'number' ? obj.errcode : undefined;
    if (errcode !== undefined && errcode !== 0) throw errcodeError(req.path, errcode, obj?.errmsg, host);
    if (res.status < 200 || res.status >= 300) {
      const transient = res.status >= 500 || res.status === 429;
      const ra = Number(headers['retry-after']);
      throw new WechatApiError({
        kind: 'http',
        api: req.path,
        status: res.status,
        reason: transient
          ? `the WeChat API host answered HTTP ${res.status}; it will be tried again`
          : `the WeChat API host answered HTTP ${res.status}`,
        retryable: transient,
        retryAfterMs: Number.isFinite(ra) && ra > 0 ? Math.min(ra * 1000, 10 * 60_000) : undefined,
        host,
      });
    }
    if (!obj)
      throw new WechatApiError({
        kind: 'bad-response',
        api: req.path,
        code: 'bad-response',
        reason: 'WeChat answered with something that is not JSON',
        retryable: true,
        host,
      });
    return { kind: 'json', data: obj, text, host };
  }
}

/** An answer as either client gives it: a Buffer (JSON calls) or a stream (media/get). */
interface RawAnswer {
  status: number;
  headers: Record<string, unknown>;
  data: unknown;
}

function flatHeaders(h: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h ?? {})) {
    if (v === undefined || v === null) continue;
    if (Array.isArray(v)) out[k.toLowerCase()] = v.map((x) => String(x as string | number)).join(', ');
    else if (typeof v === 'string' || typeof v === 'number') out[k.toLowerCase()] = String(v);
  }
  return out;
}

/** Reads a stream to a Buffer, failing beyond `max` bytes. */
export function readBounded(stream: Readable, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        stream.destroy();
        reject(new Error(`larger than ${max} bytes`));
        return;
      }
      chunks.push(c);
    });
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', () => reject(new Error('the stream failed')));
  });
}
