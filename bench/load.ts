/**
 * Load generators.
 *
 * - `saturate`: autocannon with a fixed number of connections, as fast as the contender answers (throughput). Each
 *   request comes from a generator (new message id, fresh signature or bearer).
 * - `paced`: an open-loop generator at a steady rate (one request every 1000/rate ms, not bursts at the start of
 *   each second as autocannon's rate limit does), timing each answer from the moment its request was sent, with
 *   microsecond resolution. The latency figures come from here.
 */
import * as http from 'node:http';
import autocannon from 'autocannon';
import type { GeneratedRequest } from './common';

export interface Generator {
  next(): GeneratedRequest;
}

export interface SaturateResult {
  durationS: number;
  /** Answers with a 2xx status. */
  acked: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  latencyMs: { p50: number; p99: number; max: number };
}

export async function saturate(
  url: string,
  gen: Generator,
  o: { connections: number; durationS: number },
): Promise<SaturateResult> {
  const started = process.hrtime.bigint();
  const r = await autocannon({
    url,
    connections: o.connections,
    duration: o.durationS,
    timeout: 20,
    requests: [
      {
        setupRequest: (req: any) => {
          const g = gen.next();
          req.method = g.method;
          req.path = g.path;
          req.headers = g.headers;
          req.body = g.body;
          return req;
        },
      },
    ],
  });
  const durationS = Number(process.hrtime.bigint() - started) / 1e9;
  return {
    durationS: Math.min(durationS, r.duration || durationS),
    acked: r['2xx'],
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    latencyMs: { p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max },
  };
}

export interface PacedResult {
  rate: number;
  sent: number;
  acked: number;
  failed: number;
  /** Achieved send rate, per second. */
  achievedRate: number;
  /** Latency of acknowledged requests, ms. */
  latencyMs: { p50: number; p90: number; p99: number; p999: number; max: number };
  /** Statuses other than 2xx, by status or error code (ECONNRESET, TIMEOUT …). */
  statuses: Record<string, number>;
  /** With `trace`: each measured request's send time (epoch ms) and latency (ms, NaN when it failed). */
  trace?: Array<[number, number]>;
  /** The measured latencies, sorted (ms): for percentiles over several trials together. Not for JSON. */
  sorted?: Float64Array;
}

/** The p-th percentile of sorted latencies (nearest rank). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/**
 * Sends `rate` requests per second for `warmS + durationS` seconds; latencies of the requests sent during the last
 * `durationS` seconds are kept.
 */
export async function paced(
  url: string,
  gen: Generator,
  o: { rate: number; durationS: number; warmS: number; timeoutMs?: number; trace?: boolean },
): Promise<PacedResult> {
  const target = new URL(url);
  // FIFO reuse keeps every socket busy at this rate, so none sits idle long enough for the server's keep-alive timeout
  // to close it just as a request goes out on it (which would count as a failure of the contender).
  const agent = new http.Agent({ keepAlive: true, maxSockets: 512, maxFreeSockets: 512, scheduling: 'fifo' });
  const interval = 1000 / o.rate;
  const total = Math.round(o.rate * (o.warmS + o.durationS));
  const measureFrom = Math.round(o.rate * o.warmS);
  const latencies = new Float64Array(total - measureFrom);
  const trace: Array<[number, number]> | undefined = o.trace ? [] : undefined;
  let kept = 0;
  let sent = 0;
  let acked = 0;
  let failed = 0;
  let outstanding = 0;
  const statuses: Record<string, number> = {};
  const t0 = performance.now();
  let measureStart = 0;
  let measureEnd = 0;

  await new Promise<void>((resolve) => {
    const fire = (i: number): void => {
      const g = gen.next();
      const body = Buffer.from(g.body, 'utf8');
      const began = performance.now();
      if (i === measureFrom) measureStart = began;
      outstanding++;
      const done = (status: number | string): void => {
        const ms = performance.now() - began;
        outstanding--;
        if (trace && i >= measureFrom) {
          const ok = typeof status === 'number' && status >= 200 && status < 300;
          trace.push([performance.timeOrigin + began, ok ? ms : NaN]);
        }
        if (typeof status === 'number' && status >= 200 && status < 300) {
          acked++;
          if (i >= measureFrom) latencies[kept++] = ms;
        } else {
          failed++;
          statuses[String(status)] = (statuses[String(status)] ?? 0) + 1;
        }
        if (sent >= total && outstanding === 0) resolve();
      };
      const req = http.request(
        {
          host: target.hostname,
          port: target.port,
          method: g.method,
          path: g.path,
          agent,
          headers: { ...g.headers, 'Content-Length': String(body.length) },
          timeout: o.timeoutMs ?? 30_000,
        },
        (res) => {
          res.resume();
          res.on('end', () => done(res.statusCode ?? 0));
          res.on('error', (err: NodeJS.ErrnoException) => done(err.code ?? 'error'));
        },
      );
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
      req.on('error', (err: NodeJS.ErrnoException) => done(err.code ?? 'error'));
      req.end(body);
    };
    const tick = (): void => {
      const due = Math.min(total, Math.floor((performance.now() - t0) / interval) + 1);
      while (sent < due) fire(sent++);
      if (sent < total)
        setTimeout(tick, Math.max(0, Math.min(interval, t0 + sent * interval - performance.now())));
      else measureEnd = performance.now();
    };
    tick();
  });
  agent.destroy();
  const sorted = latencies.subarray(0, kept).sort();
  const spanS = (measureEnd - measureStart) / 1000;
  return {
    rate: o.rate,
    sent,
    acked,
    failed,
    achievedRate: spanS > 0 ? (total - measureFrom) / spanS : 0,
    latencyMs: {
      p50: percentile(sorted, 50),
      p90: percentile(sorted, 90),
      p99: percentile(sorted, 99),
      p999: percentile(sorted, 99.9),
      max: sorted.length ? sorted[sorted.length - 1] : NaN,
    },
    statuses,
    trace,
    sorted,
  };
}
