/** The in-process outbox without persistence: ordering, concurrency, retry timing, dead letters, dedupe, stats. */
import * as assert from 'node:assert/strict';
import { createOutbox, minRetrySpan, retryDelay, resolvePolicy } from '../../lib/outbox';
import type { Attempt } from '../../lib/outbox/types';
import { MemoryStore } from '../../lib/store/memory';
import { fast, outboxBehaviour, sleep, until } from './outbox-behaviour';

describe('outbox (memory)', function () {
  describe('shared behaviour', function () {
    outboxBehaviour(() => undefined);
  });

  it('stop waits for the attempt in flight; queued jobs wait in the store for the next start on the same name', async function () {
    const store = new MemoryStore();
    const a = createOutbox({ name: 'q', store, policy: fast });
    let finishedInFlight = false;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    a.start(
      async () => {
        await gate;
        finishedInFlight = true;
        return { kind: 'delivered' };
      },
      () => undefined,
    );
    await a.enqueue({ id: '1', key: 'k', payload: 1 });
    await a.enqueue({ id: '2', key: 'k', payload: 2 });
    await sleep(5);
    const stopping = a.stop();
    setTimeout(release, 20);
    await stopping;
    assert.equal(finishedInFlight, true);
    assert.equal(a.stats().depth, 1);

    const b = createOutbox({ name: 'q', store, policy: fast });
    const got: string[] = [];
    b.start(
      (job) => {
        got.push(job.id);
        return Promise.resolve({ kind: 'delivered' });
      },
      () => undefined,
    );
    await until(() => got.length === 1);
    assert.deepEqual(got, ['2']);
    assert.equal(await b.enqueue({ id: '1', key: 'k', payload: 1 }), false, 'id 1 is remembered');
    await b.stop();
    // Another name on the same store is another queue.
    const c = createOutbox({ name: 'other', store });
    assert.equal(await c.enqueue({ id: '1', key: 'k', payload: 1 }), true);
  });

  describe('attempts started per turn of the event loop', function () {
    const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
    const hang: Attempt<number> = () => new Promise(() => undefined);

    it('a backlog is started 8 at a time, a turn apart, not in one burst', async function () {
      const o = createOutbox<number>({
        name: 'burst',
        policy: { ...fast, concurrency: 100 },
        stopTimeoutMs: 10,
      });
      for (let i = 0; i < 40; i++) await o.enqueue({ id: `b${i}`, key: `k${i}`, payload: i });
      await turn(); // a backlog from earlier turns (a restart, a redeploy, answers coming back together)
      let started = 0;
      o.start(
        (job) => {
          started++;
          return hang(job);
        },
        () => undefined,
      );
      assert.equal(started, 8, 'the first turn');
      await turn();
      assert.equal(started, 16, 'the next turn');
      await until(() => started === 40);
      await o.stop();
    });

    it('jobs enqueued in a busy turn start 8 in it, the rest in the turns after; the concurrency holds', async function () {
      const o = createOutbox<number>({
        name: 'pace',
        policy: { ...fast, concurrency: 100 },
        stopTimeoutMs: 10,
      });
      let started = 0;
      o.start(
        (job) => {
          started++;
          return hang(job);
        },
        () => undefined,
      );
      await turn();
      // 50 jobs in one turn (a saturated poll phase): acknowledgements first, 8 deliveries go out in it.
      await Promise.all(
        Array.from({ length: 50 }, (_, i) => o.enqueue({ id: `p${i}`, key: `k${i}`, payload: i })),
      );
      assert.equal(started, 8);
      await Promise.all(
        Array.from({ length: 80 }, (_, i) => o.enqueue({ id: `q${i}`, key: `j${i}`, payload: i })),
      );
      await until(() => started === 100);
      await turn();
      await turn();
      assert.equal(started, 100, 'no more than the concurrency');
      await o.stop();
    });
  });

  it('a late stop() of a replaced handle does not stop the new one', async function () {
    const store = new MemoryStore();
    const a = createOutbox({ name: 'q', store, policy: fast });
    a.start(
      () => Promise.resolve({ kind: 'delivered' }),
      () => undefined,
    );
    const b = createOutbox({ name: 'q', store, policy: fast });
    let done = 0;
    b.start(
      () => Promise.resolve({ kind: 'delivered' }),
      () => done++,
    );
    await a.stop();
    await b.enqueue({ id: 'x', key: 'k', payload: 1 });
    await until(() => done === 1);
    await b.stop();
  });

  it('enqueue does not attempt before start, and start picks up what was accepted', async function () {
    const outbox = createOutbox({ name: 't', policy: fast });
    await outbox.enqueue({ id: 'a', key: 'k', payload: 1 });
    await sleep(10);
    assert.equal(outbox.stats().depth, 1);
    let done = 0;
    const attempt: Attempt = () => Promise.resolve({ kind: 'delivered' });
    outbox.start(attempt, () => done++);
    await until(() => done === 1);
    await outbox.stop();
  });

  it('stats() stays cheap with a backlog: 10,000 calls over 10,000 waiting conversations in well under a second', async function () {
    const outbox = createOutbox({ name: 't', policy: fast });
    const N = 10_000;
    for (let i = 0; i < N; i++) await outbox.enqueue({ id: `s${i}`, key: `c${i}`, payload: i });
    const t0 = Date.now();
    let depth = 0;
    for (let i = 0; i < N; i++) depth += outbox.stats().depth;
    const ms = Date.now() - t0;
    assert.equal(depth, N * N);
    assert.ok(ms < 1000, `${N} stats() calls took ${ms} ms`);
    assert.ok((outbox.stats().oldestAgeMs ?? -1) >= 0);
    await outbox.stop();
  });

  it('keeps up: 20,000 jobs over 500 conversations in well under two seconds', async function () {
    const outbox = createOutbox({ name: 't', policy: { ...fast, concurrency: 64 } });
    let done = 0;
    outbox.start(
      () => Promise.resolve({ kind: 'delivered' }),
      () => done++,
    );
    const t0 = Date.now();
    const N = 20_000;
    const ps: Promise<boolean>[] = [];
    for (let i = 0; i < N; i++) ps.push(outbox.enqueue({ id: `i${i}`, key: `c${i % 500}`, payload: i }));
    await Promise.all(ps);
    await until(() => done === N, 5000);
    const ms = Date.now() - t0;
    assert.ok(ms < 2000, `${N} jobs took ${ms} ms`);
    await outbox.stop();
  });
});

describe('retry timing', function () {
  it('draws the delay uniformly in [cap/2, cap), cap = base·2^(n-1) capped at maxDelay (equal jitter)', function () {
    const p = { baseDelayMs: 100, maxDelayMs: 1000 };
    assert.equal(
      retryDelay(1, p, () => 0.5),
      75,
    );
    assert.equal(
      retryDelay(3, p, () => 0.5),
      300,
    );
    assert.equal(
      retryDelay(10, p, () => 0.999),
      999,
    );
    assert.equal(
      retryDelay(1, p, () => 0),
      50,
    );
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const d = retryDelay(4, p);
      assert.ok(d >= 400 && d < 800, String(d));
      seen.add(Math.floor(d / 100));
    }
    assert.deepEqual([...seen].sort(), [4, 5, 6, 7], 'spread over the whole upper half');
  });

  it('the default policy rides out an outage of a minute: 8 attempts span at least 63.5 s', function () {
    assert.equal(minRetrySpan(resolvePolicy({})), 63_500);
    // Whatever the draws, the sum of the delays between 8 attempts is at least that.
    for (let i = 0; i < 100; i++) {
      let total = 0;
      for (let n = 1; n < 8; n++) total += retryDelay(n, resolvePolicy({}));
      assert.ok(total >= 63_500, String(total));
    }
  });

  it('never goes below Retry-After, even above maxDelay', function () {
    const p = { baseDelayMs: 100, maxDelayMs: 1000 };
    assert.equal(
      retryDelay(1, p, () => 0, 5000),
      5000,
    );
    assert.equal(
      retryDelay(5, p, () => 0.9, 10),
      950,
    );
  });

  it('fills in defaults and ignores nonsense in a policy', function () {
    const p = resolvePolicy({ maxAttempts: -3, concurrency: 0, baseDelayMs: NaN, maxDelayMs: 7 });
    assert.equal(p.maxAttempts, 8);
    assert.equal(p.concurrency, 1);
    assert.equal(p.baseDelayMs, 1000);
    assert.equal(p.maxDelayMs, 7);
  });
});
