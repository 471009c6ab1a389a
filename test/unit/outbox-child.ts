/**
 * A child process for the outbox crash tests (not a test file itself): an outbox on a file store (or Redis)
 * delivering to an HTTP sink the parent runs, printing what it accepted and what ended.
 *
 *   node outbox-child.js <file:dir | redis:prefix> <sinkUrl> produce <count> <keys> [leaseMs]
 *   node outbox-child.js <file:dir | redis:prefix> <sinkUrl> resume 0 0 [leaseMs]
 *
 * Prints "acc <id>" when enqueue resolved, "end <id> <status> <attempts>" for each result, "idle" whenever the
 * queue is empty after having had work. The sink's answer decides the outcome: 200 delivered, 429/5xx retry
 * (Retry-After honoured), 400 failed.
 */
import * as http from 'node:http';
import { createOutbox } from '../../lib/outbox';
import type { AttemptOutcome, OutboxJob } from '../../lib/outbox/types';
import { FileStore } from '../../lib/store/file';
import { RedisStore } from '../../lib/store/redis';
import type { Store } from '../../lib/store/types';

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function post(url: string, body: string): Promise<{ status: number; retryAfter?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: 'POST', agent, headers: { 'content-type': 'application/json' }, timeout: 5000 },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: res.headers['retry-after'],
          }),
        );
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(body);
  });
}

async function main(): Promise<void> {
  const [where, sink, mode, countArg, keysArg, leaseArg] = process.argv.slice(2);
  let store: Store;
  if (where.startsWith('file:')) store = await FileStore.open(where.slice(5));
  else
    store = await RedisStore.open({
      url: process.env.WXCX_REDIS_URL || 'redis://127.0.0.1:6379',
      keyPrefix: where.slice(6),
    });
  const outbox = createOutbox<{ n: number }>({
    name: 'q',
    store,
    policy: {
      concurrency: 8,
      baseDelayMs: 10,
      maxDelayMs: 50,
      maxAttempts: 50,
      leaseMs: Number(leaseArg) || 30_000,
    },
    pollMs: 50,
  });
  const attempt = async (job: OutboxJob<{ n: number }>): Promise<AttemptOutcome> => {
    const r = await post(
      sink,
      JSON.stringify({
        id: job.id,
        key: job.key,
        n: job.payload.n,
        attempts: job.attempts,
        interrupted: !!job.interrupted,
        pid: process.pid,
      }),
    );
    if (r.status === 200) return { kind: 'delivered' };
    if (r.status === 400)
      return { kind: 'failed', error: { code: 400, message: 'refused', retryable: false } };
    return {
      kind: 'retry',
      error: { code: r.status, message: `sink said ${r.status}`, retryable: true },
      ...(r.retryAfter ? { retryAfterMs: Number(r.retryAfter) * 1000 } : {}),
    };
  };
  let hadWork = false;
  outbox.start(attempt, (r) => {
    process.stdout.write(`end ${r.job.id} ${r.status} ${r.job.attempts}\n`);
  });
  setInterval(() => {
    const s = outbox.stats();
    if (s.depth > 0) hadWork = true;
    else if (hadWork || mode === 'resume') process.stdout.write('idle\n');
  }, 100);
  process.stdout.write('ready\n');
  if (mode === 'produce') {
    const count = Number(countArg);
    const keys = Number(keysArg);
    for (let i = 0; i < count; i += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, count - i) }, async (_, j) => {
          const n = i + j;
          if (await outbox.enqueue({ id: `m${n}`, key: `c${n % keys}`, payload: { n } }))
            process.stdout.write(`acc m${n}\n`);
        }),
      );
    }
    process.stdout.write('produced\n');
  }
}

main().catch((err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.message : err) + '\n');
  process.exit(1);
});
