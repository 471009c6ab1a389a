/**
 * HTTP to CXone: one axios instance per integration with keep-alive agents, explicit timeouts and size limits,
 * no proxy unless configured, statuses classified by us (`validateStatus` accepts everything) and bodies kept as
 * text so an HTML error page or an empty 204 never throws inside axios. The agents are destroyed on close.
 *
 * Never log an axios error or its `config`: they hold the Authorization header and the request body.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import axios, { type AxiosInstance, type AxiosRequestConfig, type AxiosResponse } from 'axios';
import { leanRequest, type LeanRequest } from '../../http/lean';
import { DfoError } from './errors';

export interface DfoHttpOptions {
  /** Per-request timeout, ms (default 15 s). */
  timeoutMs?: number;
  /** Largest response accepted, bytes (default 4 MiB). */
  maxResponseBytes?: number;
  /** Largest request body, bytes (default 64 MiB: base64 attachment uploads). */
  maxRequestBytes?: number;
  /** Sockets per host (default 64). */
  maxSockets?: number;
  /** An explicit proxy for axios; none by default (environment variables are not honoured). */
  proxy?: AxiosRequestConfig['proxy'];
}

export interface DfoHttp {
  readonly axios: AxiosInstance;
  readonly timeoutMs: number;
  /** The keep-alive agents (shared by axios and the lean path). */
  readonly agents: LeanRequest['agents'];
  readonly maxResponseBytes: number;
  /** An explicit proxy is configured: every call goes through axios. */
  readonly proxied: boolean;
  /** Destroys the keep-alive sockets. */
  close(): void;
}

export function createDfoHttp(opts: DfoHttpOptions = {}): DfoHttp {
  // As many sockets as an outbox may attempt conversations at once (its `concurrency`, at most 1024; the outbox is
  // the limit, not the agent), all kept when free: with fewer kept than used, every burst closed and reopened
  // connections (TLS handshakes against CXone). Idle ones close after the timeout.
  const maxSockets = opts.maxSockets ?? 1024;
  const httpAgent = new http.Agent({
    keepAlive: true,
    maxSockets,
    maxFreeSockets: maxSockets,
    timeout: 60_000,
  });
  const httpsAgent = new https.Agent({
    keepAlive: true,
    maxSockets,
    maxFreeSockets: maxSockets,
    timeout: 60_000,
  });
  const maxResponseBytes = opts.maxResponseBytes ?? 4 * 1024 * 1024;
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const instance = axios.create({
    timeout: timeoutMs,
    httpAgent,
    httpsAgent,
    proxy: opts.proxy ?? false,
    maxRedirects: 0,
    maxContentLength: maxResponseBytes,
    maxBodyLength: opts.maxRequestBytes ?? 64 * 1024 * 1024,
    validateStatus: () => true,
    responseType: 'text',
    transformResponse: [(d: unknown) => d],
    headers: { Accept: 'application/json', 'User-Agent': 'node-red-wechat-cxone' },
  });
  return {
    axios: instance,
    timeoutMs,
    agents: { http: httpAgent, https: httpsAgent },
    maxResponseBytes,
    proxied: !!opts.proxy,
    close: () => {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}

/** The host of a URL for messages (never the path's ids or the query). */
export function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return 'an invalid address';
  }
}

/** Origin and path of a URL, without query or fragment: safe for debug logs. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    return u.origin + u.pathname;
  } catch {
    return '(invalid URL)';
  }
}

/** Retry-After as delay-seconds or an HTTP date; undefined when absent or unreadable. Capped at 1 hour. */
export function parseRetryAfter(value: unknown, now = Date.now()): number | undefined {
  const v: unknown = Array.isArray(value) ? (value as unknown[])[0] : value;
  if (typeof v !== 'string' && typeof v !== 'number') return undefined;
  const s = String(v).trim();
  if (!s) return undefined;
  let ms: number | undefined;
  if (/^\d+(\.\d+)?$/.test(s)) ms = Math.round(Number(s) * 1000);
  else {
    const t = Date.parse(s);
    if (!Number.isNaN(t)) ms = Math.max(0, t - now);
  }
  if (ms === undefined || !Number.isFinite(ms)) return undefined;
  return Math.min(ms, 3600_000);
}

/** Parses a text body as JSON; undefined for an empty body, the text itself when it is not JSON. */
export function parseBody(data: unknown): unknown {
  if (typeof data !== 'string') return data;
  const t = data.trim();
  if (!t) return undefined;
  try {
    return JSON.parse(t) as unknown;
  } catch {
    return data;
  }
}

/** Turns what axios threw (no response at all) into a DfoError, from safe parts only. */
export function networkError(err: unknown, url: string, timeoutMs: number): DfoError {
  const code =
    err && typeof err === 'object' && typeof (err as { code?: unknown }).code === 'string'
      ? (err as { code: string }).code
      : 'ERROR';
  const host = hostOf(url);
  if (code === 'ECONNABORTED' || code === 'ETIMEDOUT') {
    return new DfoError({
      key: 'timeout',
      subs: { host, seconds: Math.round(timeoutMs / 100) / 10 },
      code: 'timeout',
      retryable: true,
    });
  }
  if (code === 'ERR_BAD_RESPONSE' || code === 'ERR_FR_MAX_CONTENT_LENGTH_EXCEEDED') {
    return new DfoError({
      key: 'bad-response',
      subs: { what: 'call', reason: 'the answer is larger than allowed' },
      code: 'too-large',
      retryable: false,
    });
  }
  const reason = /^[A-Z0-9_]{2,40}$/.test(code) ? code : 'network error';
  return new DfoError({ key: 'network', subs: { host, reason }, code: 'network', retryable: true });
}

/** What `request` needs of a call; the answer's body is text. */
export interface DfoRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  url: string;
  /** The body, already serialised (JSON or a form). */
  data?: string;
  headers?: Record<string, string>;
  timeout?: number;
}

export interface DfoAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  data: string;
}

/**
 * One request; never throws for an HTTP status, throws a DfoError when no answer came. Through the lean client
 * (lib/http/lean.ts, ADR 0011) unless a proxy is configured, then through axios.
 */
export async function request(h: DfoHttp, config: DfoRequest): Promise<DfoAnswer> {
  const timeout = Number(config.timeout ?? h.timeoutMs);
  try {
    if (h.proxied) {
      const res: AxiosResponse<string> = await h.axios.request<string>(config);
      return { status: res.status, headers: res.headers as DfoAnswer['headers'], data: res.data };
    }
    const res = await leanRequest({
      method: config.method,
      url: config.url,
      headers: { Accept: 'application/json', 'User-Agent': 'node-red-wechat-cxone', ...config.headers },
      body: config.data,
      timeoutMs: timeout,
      maxResponseBytes: h.maxResponseBytes,
      agents: h.agents,
    });
    return { status: res.status, headers: res.headers, data: res.body.toString('utf8') };
  } catch (err) {
    throw networkError(err, config.url, timeout);
  }
}
