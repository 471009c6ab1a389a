/**
 * Reading request bodies ourselves: raw bytes (signatures and logs need them), a hard byte limit enforced
 * before the body is buffered whole, and a time limit against slow senders.
 */
import type { IncomingMessage } from 'node:http';

/** An error that carries the HTTP status the client should see. Its message is safe to show the client. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export interface ReadBodyOptions {
  /** Largest body accepted, in bytes. */
  limit: number;
  /** Longest time to wait for the whole body, in milliseconds. */
  timeoutMs?: number;
}

/**
 * Reads the body of `req` into one Buffer. Refuses with 413 as soon as the declared Content-Length or the bytes
 * received exceed the limit (the rest is never buffered), 408 when the body does not arrive in time, 415 for a
 * Content-Encoding we do not decode, 400 when the client aborts.
 */
export function readBody(req: IncomingMessage, opts: ReadBodyOptions): Promise<Buffer> {
  const { limit } = opts;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise<Buffer>((resolve, reject) => {
    const encoding = String(req.headers['content-encoding'] ?? 'identity').toLowerCase();
    if (encoding !== 'identity') {
      reject(new HttpError(415, `Content-Encoding "${encoding.slice(0, 20)}" is not accepted`));
      return;
    }
    const declared = req.headers['content-length'];
    if (declared !== undefined) {
      const n = Number(declared);
      if (!Number.isSafeInteger(n) || n < 0) {
        reject(new HttpError(400, 'invalid Content-Length'));
        return;
      }
      if (n > limit) {
        reject(new HttpError(413, `request body larger than ${limit} bytes`, { Connection: 'close' }));
        return;
      }
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (err: Error | null, buf?: Buffer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.removeListener('data', onData);
      req.removeListener('end', onEnd);
      req.removeListener('error', onError);
      req.removeListener('aborted', onAborted);
      if (err) {
        // Stop reading what is left; the answer says Connection: close so the socket is not reused.
        req.pause();
        reject(err);
      } else resolve(buf as Buffer);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        finish(new HttpError(413, `request body larger than ${limit} bytes`, { Connection: 'close' }));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => finish(null, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    const onError = (): void => finish(new HttpError(400, 'request body could not be read'));
    const onAborted = (): void => finish(new HttpError(400, 'request aborted'));
    const timer = setTimeout(
      () => finish(new HttpError(408, 'request body not received in time', { Connection: 'close' })),
      timeoutMs,
    );
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

/** The media type of a request, lower-case, without parameters ('' when absent). */
export function mediaType(req: IncomingMessage): string {
  const ct = req.headers['content-type'];
  if (!ct) return '';
  return ct.split(';', 1)[0].trim().toLowerCase();
}
