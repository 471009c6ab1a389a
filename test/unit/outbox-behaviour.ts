/** What every outbox backend must do (memory, file, Redis); run by each backend's test file. Not a test itself. */
import * as assert from 'node:assert/strict';
import { createOutbox, type CreateOutboxOptions } from '../../lib/outbox';
import type { AttemptOutcome, Outbox, OutboxJob, OutboxResult } from '../../lib/outbox/types';
import type { Store } from '../../lib/store/types';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function until(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

export const retry = (code: string | number = 500, retryAfterMs?: number): AttemptOutcome => ({
  kind: 'retry',
  error: { code, message: `far side said ${code}`, retryable: true },
  ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
});

export const fast = { baseDelayMs: 5, maxDelayMs: 20, maxAttempts: 5, maxAgeMs: 60_000, concurrency: 4 };

/**
 * The shared behaviour. `store()` gives the store for each test (undefined: a private memory queue); every test
 * uses a queue name of its own.
 */
export function outboxBehaviour(
  store: () => Store | undefined,
  extra: Partial<CreateOutboxOptions> = {},
): void {
  let n = 0;
  const open: Outbox<any>[] = [];
  afterEach(async function () {
    for (const o of open.splice(0)) await o.stop();
  });
  function mk<P = unknown>(o: Partial<CreateOutboxOptions>): Outbox<P> {
    const ob = createOutbox<P>({ name: `t${n++}`, store: store(), ...extra, ...o });
    open.push(ob);
    return ob;
  }

  it('delivers every job once, in enqueue order per conversation, one attempt at a time per conversation', async function () {
    const outbox = mk<{ n: number }>({ policy: fast });
    const seen = new Map<string, number[]>();
    const running = new Set<string>();
    let overlap = false;
    const results: OutboxResult<{ n: number }>[] = [];
    outbox.start(
      async (job) => {
        if (running.has(job.key)) overlap = true;
        running.add(job.key);
        await sleep(Math.random() * 3);
        running.delete(job.key);
        const l = seen.get(job.key) ?? [];
        l.push(job.payload.n);
        seen.set(job.key, l);
        return { kind: 'delivered', messageId: `m${job.payload.n}` };
      },
      (r) => results.push(r),
    );
    const N = 300;
    for (let n = 0; n < N; n++) {
      assert.equal(await outbox.enqueue({ id: `id${n}`, key: `conv${n % 7}`, payload: { n } }), true);
    }
    await until(() => results.length === N, 10_000, 'all results');
    assert.equal(overlap, false, 'two attempts of one conversation overlapped');
    for (const [key, ns] of seen) {
      const k = Number(key.slice(4));
      const expected = Array.from({ length: N }, (_, i) => i).filter((i) => i % 7 === k);
      assert.deepEqual(ns, expected, `order of ${key}`);
    }
    assert.ok(results.every((r) => r.status === 'delivered' && r.reason === 'delivered'));
    assert.equal(new Set(results.map((r) => r.job.id)).size, N);
    await until(() => outbox.stats().depth === 0, 2000, 'depth 0');
    const s = outbox.stats();
    assert.equal(s.delivered, N);
    assert.equal(s.dead, 0);
    await outbox.stop();
  });

  it('attempts at most `concurrency` conversations at once', async function () {
    const outbox = mk({ policy: { ...fast, concurrency: 3 } });
    let now = 0;
    let max = 0;
    let done = 0;
    outbox.start(
      async () => {
        now++;
        max = Math.max(max, now);
        await sleep(5);
        now--;
        return { kind: 'delivered' };
      },
      () => done++,
    );
    // All at once: enqueued one by one, a durable store's enqueue (a few ms where its writes wait for company)
    // could take longer than an attempt, and never three would be due together.
    await Promise.all(
      Array.from({ length: 30 }, (_, i) => outbox.enqueue({ id: `i${i}`, key: `k${i}`, payload: i })),
    );
    await until(() => done === 30);
    assert.equal(max, 3);
    await outbox.stop();
  });

  it('ignores a second enqueue of the same id, before and after delivery', async function () {
    const outbox = mk({ policy: fast });
    const attempts: string[] = [];
    let done = 0;
    outbox.start(
      (job) => {
        attempts.push(job.id);
        return Promise.resolve({ kind: 'delivered' });
      },
      () => done++,
    );
    const [a, b] = await Promise.all([
      outbox.enqueue({ id: 'x', key: 'k', payload: 1 }),
      outbox.enqueue({ id: 'x', key: 'k', payload: 1 }),
    ]);
    assert.deepEqual([a, b], [true, false]);
    await until(() => done === 1);
    assert.equal(await outbox.enqueue({ id: 'x', key: 'k', payload: 1 }), false);
    await sleep(20);
    assert.deepEqual(attempts, ['x']);
    await outbox.stop();
  });

  it('refuses a job without id or key', async function () {
    const outbox = mk({});
    await assert.rejects(outbox.enqueue({ id: '', key: 'k', payload: 1 }), /no id/);
    await assert.rejects(outbox.enqueue({ id: 'a', key: '', payload: 1 }), /ordering key/);
  });

  it('retries a retryable outcome with growing delays and delivers; the job carries attempts and the last error', async function () {
    const outbox = mk({
      policy: { ...fast, baseDelayMs: 20, maxDelayMs: 1000 },
      random: () => 0.999,
    });
    const times: number[] = [];
    const jobs: OutboxJob[] = [];
    let result: OutboxResult | undefined;
    outbox.start(
      (job) => {
        times.push(Date.now());
        jobs.push({ ...job });
        return Promise.resolve(job.attempts < 4 ? retry(503) : { kind: 'delivered', messageId: 'ok' });
      },
      (r) => (result = r),
    );
    await outbox.enqueue({ id: 'a', key: 'k', payload: 'p' });
    await until(() => !!result);
    assert.equal(result!.status, 'delivered');
    assert.equal(result!.job.attempts, 4);
    assert.deepEqual(
      jobs.map((j) => j.attempts),
      [1, 2, 3, 4],
    );
    assert.equal(jobs[0].lastError, undefined);
    assert.equal(jobs[1].lastError?.code, 503);
    // random() ≈ 1: delays ≈ 20, 40, 80 ms
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    assert.ok(gaps[0] >= 18 && gaps[1] >= 38 && gaps[2] >= 78, `gaps ${gaps.join(',')}`);
    const s = outbox.stats();
    assert.equal(s.retries, 3);
    assert.equal(s.delivered, 1);
    assert.match(s.lastError!.message, /503/);
    await outbox.stop();
  });

  it('waits at least the Retry-After the far side asked for', async function () {
    const outbox = mk({ policy: { ...fast, baseDelayMs: 1 }, random: () => 0 });
    const times: number[] = [];
    let done = false;
    outbox.start(
      (job) => {
        times.push(Date.now());
        return Promise.resolve(job.attempts === 1 ? retry(429, 150) : { kind: 'delivered' });
      },
      () => (done = true),
    );
    await outbox.enqueue({ id: 'a', key: 'k', payload: 1 });
    await until(() => done);
    assert.ok(times[1] - times[0] >= 148, `retried after ${times[1] - times[0]} ms`);
    await outbox.stop();
  });

  it('dead-letters after maxAttempts with the last error and reason "attempts"', async function () {
    const outbox = mk({ policy: { ...fast, maxAttempts: 3 } });
    let result: OutboxResult | undefined;
    let calls = 0;
    outbox.start(
      () => {
        calls++;
        return Promise.resolve(retry(-1));
      },
      (r) => (result = r),
    );
    await outbox.enqueue({ id: 'a', key: 'k', payload: 1 });
    await until(() => !!result);
    assert.equal(calls, 3);
    assert.equal(result!.status, 'dead');
    assert.equal(result!.reason, 'attempts');
    assert.equal(result!.outcome.kind, 'retry');
    assert.equal((result!.outcome as { error: { code: number } }).error.code, -1);
    assert.equal(outbox.stats().dead, 1);
    await outbox.stop();
  });

  it('dead-letters a refused-for-good outcome at once, and moves on to the next job of the conversation', async function () {
    const outbox = mk({ policy: fast });
    const results: OutboxResult[] = [];
    outbox.start(
      (job) =>
        Promise.resolve(
          job.id === 'bad'
            ? { kind: 'failed', error: { code: 45015, message: 'outside the 48 h window', retryable: false } }
            : { kind: 'delivered' },
        ),
      (r) => results.push(r),
    );
    await outbox.enqueue({ id: 'bad', key: 'k', payload: 1 });
    await outbox.enqueue({ id: 'good', key: 'k', payload: 2 });
    await until(() => results.length === 2);
    assert.deepEqual(
      results.map((r) => [r.job.id, r.status, r.reason, r.job.attempts]),
      [
        ['bad', 'dead', 'refused', 1],
        ['good', 'delivered', 'delivered', 1],
      ],
    );
    await outbox.stop();
  });

  it('gives up with reason "expired" when the next retry would fall after maxAgeMs', async function () {
    const outbox = mk({
      policy: { ...fast, maxAgeMs: 100, maxAttempts: 100, baseDelayMs: 40, maxDelayMs: 40 },
      random: () => 1,
    });
    let result: OutboxResult | undefined;
    let calls = 0;
    outbox.start(
      () => {
        calls++;
        return Promise.resolve(retry(500));
      },
      (r) => (result = r),
    );
    const t0 = Date.now();
    await outbox.enqueue({ id: 'a', key: 'k', payload: 1 });
    await until(() => !!result);
    assert.equal(result!.reason, 'expired');
    assert.ok(calls >= 2 && calls <= 4, `calls ${calls}`);
    assert.ok(Date.now() - t0 < 200);
    await outbox.stop();
  });

  it('a retrying head holds back its own conversation but not the others', async function () {
    const outbox = mk({
      policy: { ...fast, baseDelayMs: 80, maxDelayMs: 80 },
      random: () => 1,
    });
    const order: string[] = [];
    let first = true;
    outbox.start(
      (job) => {
        order.push(job.id);
        if (job.id === 'a1' && first) {
          first = false;
          return Promise.resolve(retry());
        }
        return Promise.resolve({ kind: 'delivered' });
      },
      () => undefined,
    );
    await outbox.enqueue({ id: 'a1', key: 'A', payload: 1 });
    await outbox.enqueue({ id: 'a2', key: 'A', payload: 2 });
    await outbox.enqueue({ id: 'b1', key: 'B', payload: 3 });
    await until(() => order.length === 4);
    assert.deepEqual(order.indexOf('b1') < order.lastIndexOf('a1'), true);
    assert.ok(order.lastIndexOf('a1') < order.indexOf('a2'), `order ${order.join(',')}`);
    await outbox.stop();
  });

  it('treats a throwing attempt and a hanging attempt as retryable (timeout) and carries on', async function () {
    const outbox = mk({ policy: { ...fast, attemptTimeoutMs: 50 } });
    const errors: unknown[] = [];
    let result: OutboxResult | undefined;
    outbox.start(
      (job) => {
        if (job.attempts === 1) throw new Error('boom');
        if (job.attempts === 2) return new Promise<AttemptOutcome>(() => undefined);
        errors.push(job.lastError?.code);
        return Promise.resolve({ kind: 'delivered' });
      },
      (r) => (result = r),
    );
    await outbox.enqueue({ id: 'a', key: 'k', payload: 1 });
    await until(() => !!result, 2000);
    assert.equal(result!.status, 'delivered');
    assert.deepEqual(errors, ['timeout']);
    await outbox.stop();
  });

  it('reports depth, retrying, in-flight and the age of the oldest job', async function () {
    const outbox = mk({
      policy: { ...fast, baseDelayMs: 10_000, maxDelayMs: 10_000 },
      random: () => 1,
    });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    outbox.start(
      async (job) => {
        if (job.key === 'slow') {
          await gate;
          return { kind: 'delivered' };
        }
        return retry(502);
      },
      () => undefined,
    );
    await outbox.enqueue({ id: 'a', key: 'slow', payload: 1 });
    await outbox.enqueue({ id: 'b', key: 'fail', payload: 1 });
    await outbox.enqueue({ id: 'c', key: 'fail', payload: 1 });
    await until(() => outbox.stats().retries === 1);
    await sleep(5);
    // Shared figures of a Redis queue are as of its last poll.
    await until(
      () => outbox.stats().depth === 3 && outbox.stats().retrying === 1,
      2000,
      'depth 3, retrying 1',
    );
    const s = outbox.stats();
    assert.equal(s.inFlight, 1);
    if (s.oldestAgeMs !== undefined) assert.ok(s.oldestAgeMs >= 5);
    release();
    await until(() => outbox.stats().depth === 2);
    await outbox.stop();
  });
}
