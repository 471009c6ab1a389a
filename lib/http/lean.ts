/**
 * One HTTP(S) request, nothing more: the hot path of both `-out` nodes (a DFO create-message, a WeChat
 * custom/send) and of the token calls. axios stays for what needs its features (streams, proxies, redirects that
 * must be checked); for a small JSON call its config merging, interceptor chain and adapter cost about as much CPU
 * as the rest of the delivery together (bench: 17 % of the pack's CPU per WeChat push; ADR 0011).
 *
 * What it does: a keep-alive agent of the caller's, a Content-Length body, one deadline for the whole exchange,
 * a bounded answer (decompressed when a server compresses it unasked), cancellation by an AbortSignal. What it
 * does not: follow redirects (neither client ever did: `maxRedirects: 0`), proxies, cookies.
 *
 * Errors are `LeanHttpError` with a `code` only (ETIMEDOUT, ERR_CANCELED, ERR_FR_MAX_CONTENT_LENGTH_EXCEEDED,
 * ERR_BAD_RESPONSE, or the socket's own code such as ECONNREFUSED): the same codes axios used, so the callers'
 * classification is unchanged. The message never holds the URL, a header or the body (tokens travel there).
 */
import * as http from 'node:http';
import * as https from 'node:https';
import * as zlib from 'node:zlib';

export interface LeanRequest {
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** Deadline for the whole exchange, ms. */
  timeoutMs: number;
  /** Largest answer accepted (after decompression), bytes. */
  maxResponseBytes: number;
  agents: { http: http.Agent; https: https.Agent };
  signal?: AbortSignal;
}

export interface LeanResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export class LeanHttpError extends Error {
  constructor(readonly code: string) {
    super(`HTTP request failed (${code})`);
    this.name = 'LeanHttpError';
  }
}

function decompress(body: Buffer, encoding: string, max: number): Buffer {
  const opts = { maxOutputLength: max };
  switch (encoding) {
    case 'gzip':
    case 'x-gzip':
      return zlib.gunzipSync(body, opts);
    case 'deflate':
      return zlib.inflateSync(body, opts);
    case 'br':
      return zlib.brotliDecompressSync(body, opts);
    default:
      throw new LeanHttpError('ERR_BAD_RESPONSE');
  }
}

export function leanRequest(o: LeanRequest): Promise<LeanResponse> {
  return new Promise<LeanResponse>((resolve, reject) => {
    if (o.signal?.aborted) {
      reject(new LeanHttpError('ERR_CANCELED'));
      return;
    }
    let url: URL;
    try {
      url = new URL(o.url);
    } catch {
      reject(new LeanHttpError('ERR_INVALID_URL'));
      return;
    }
    const secure = url.protocol === 'https:';
    if (!secure && url.protocol !== 'http:') {
      reject(new LeanHttpError('ERR_BAD_REQUEST'));
      return;
    }
    const body = typeof o.body === 'string' ? Buffer.from(o.body, 'utf8') : o.body;
    const headers: Record<string, string | number> = { ...o.headers };
    if (body) headers['Content-Length'] = body.length;
    let done = false;
    const finish = (err: LeanHttpError | null, res?: LeanResponse): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      if (err) {
        req.destroy();
        reject(err);
      } else resolve(res as LeanResponse);
    };
    const onAbort = (): void => finish(new LeanHttpError('ERR_CANCELED'));
    const req = (secure ? https : http).request(
      {
        protocol: url.protocol,
        hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
        port: url.port || undefined,
        path: url.pathname + url.search,
        method: o.method,
        headers,
        agent: secure ? o.agents.https : o.agents.http,
      },
      (res) => {
        const enc = String(res.headers['content-encoding'] ?? '')
          .trim()
          .toLowerCase();
        const parts: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > o.maxResponseBytes) {
            finish(new LeanHttpError('ERR_FR_MAX_CONTENT_LENGTH_EXCEEDED'));
            return;
          }
          parts.push(c);
        });
        res.on('end', () => {
          let data = parts.length === 1 ? parts[0] : Buffer.concat(parts, size);
          if (enc && enc !== 'identity') {
            try {
              data = decompress(data, enc, o.maxResponseBytes);
            } catch (err) {
              const code = (err as { code?: string }).code;
              finish(
                new LeanHttpError(
                  code === 'ERR_BUFFER_TOO_LARGE' ? 'ERR_FR_MAX_CONTENT_LENGTH_EXCEEDED' : 'ERR_BAD_RESPONSE',
                ),
              );
              return;
            }
          }
          finish(null, { status: res.statusCode ?? 0, headers: res.headers, body: data });
        });
        res.on('error', () => finish(new LeanHttpError('ECONNRESET')));
        res.on('aborted', () => finish(new LeanHttpError('ECONNRESET')));
      },
    );
    const timer = setTimeout(() => finish(new LeanHttpError('ETIMEDOUT')), o.timeoutMs);
    o.signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (err: NodeJS.ErrnoException) => {
      const code =
        typeof err.code === 'string' && /^[A-Z0-9_]{2,40}$/.test(err.code) ? err.code : 'ERR_NETWORK';
      finish(new LeanHttpError(code));
    });
    req.end(body);
  });
}
