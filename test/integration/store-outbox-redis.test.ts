/**
 * The outbox on the real Redis: the shared behaviour, then several processes on one queue: drained once and in
 * order per conversation by two workers, and a killed worker's conversation taken over when its lease expires.
 */
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { createOutbox } from '../../lib/outbox';
import { RedisStore } from '../../lib/store/redis';
import { outboxBehaviour, until } from '../unit/outbox-behaviour';
import { Sink } from '../unit/outbox-sink';
import { spawnChild } from '../unit/store-proc';
import { cleanup, countKeys, REDIS_URL, uniquePrefix } from './store-redis-helpers';

describe('outbox (Redis)', function () {
  this.timeout(60_000);
  const prefix = uniquePrefix('outbox');
  let store: RedisStore;
  before(async function () {
    store = await RedisStore.open({ url: REDIS_URL, keyPrefix: prefix });
  });
  after(async function () {
    await store.close();
    await cleanup(prefix);
    assert.equal(await countKeys(prefix), 0, 'the tests left keys behind');
  });

  describe('shared behaviour', function () {
    outboxBehaviour(() => store, { pollMs: 20 });
  });

  it('keeps queued jobs in Redis for the next engine, with attempts counted and the id remembered', async function () {
    const other = await RedisStore.open({ url: REDIS_URL, keyPrefix: prefix });
    const a = createOutbox({ name: 'persist', store: other, pollMs: 20 });
    assert.equal(await a.enqueue({ id: 'j1', key: 'k', payload: { b: Buffer.from('hi') } }), true);
    await other.close();
    const b = createOutbox<{ b: Buffer }>({ name: 'persist', store, pollMs: 20 });
    let got: Buffer | undefined;
    b.start(
      (job) => {
        got = job.payload.b;
        return Promise.resolve({ kind: 'delivered' });
      },
      () => undefined,
    );
    await until(() => !!got);
    assert.equal(got!.toString(), 'hi');
    assert.equal(await b.enqueue({ id: 'j1', key: 'k', payload: { b: Buffer.alloc(0) } }), false);
    await b.stop();
  });

  it('two worker processes drain one queue: every message once, in order per conversation', async function () {
    const sink = new Sink();
    sink.answer = (r, seen) => (seen === 0 && r.n % 17 === 0 ? { status: 503 } : { status: 200 });
    const url = await sink.start();
    const p = `${prefix}two:`;
    const script = path.join(__dirname, '..', 'unit', 'outbox-child.js');
    const N = 1500;
    try {
      const a = spawnChild(script, [`redis:${p}`, url, 'produce', String(N), '30']);
      const b = spawnChild(script, [`redis:${p}`, url, 'resume', '0', '0']);
      await a.waitFor((l) => l.includes('produced'), 30_000);
      await until(() => new Set(sink.received.map((r) => r.id)).size === N, 30_000, 'all delivered');
      await a.waitFor((l) => l.includes('idle'));
      a.proc.kill();
      b.proc.kill();
      await Promise.all([a.exited, b.exited]);
      const byPid = new Map<number, number>();
      for (const r of sink.received) byPid.set(r.pid, (byPid.get(r.pid) ?? 0) + 1);
      console.log(
        `      ${N} messages, deliveries per process: ${[...byPid.values()].join(' + ')}, duplicates ${sink.duplicates().length}`,
      );
      assert.equal(a.lines.filter((l) => l.startsWith('acc ')).length, N);
      assert.deepEqual(sink.duplicates(), []);
      assert.deepEqual(sink.outOfOrder(), []);
      assert.equal(byPid.size, 2, 'both workers took part');
      const ends = [...a.lines, ...b.lines].filter((l) => l.startsWith('end '));
      assert.equal(ends.length, N, 'one result per message, across both processes');
    } finally {
      await sink.stop();
    }
  });

  it("a killed worker's conversation is taken over when its lease expires, flagged interrupted, then in order", async function () {
    const sink = new Sink();
    let hung = 0;
    // The first attempt of m0 never gets an answer: its worker is killed while it waits.
    sink.answer = (r) => (r.id === 'm0' && !r.interrupted ? (hung++, { status: 0 }) : { status: 200 });
    const url = await sink.start();
    const p = `${prefix}lease:`;
    const script = path.join(__dirname, '..', 'unit', 'outbox-child.js');
    try {
      const a = spawnChild(script, [`redis:${p}`, url, 'produce', '20', '1', '1500']);
      await a.waitFor((l) => l.includes('produced'));
      await until(() => hung === 1, 10_000, 'the first attempt to hang');
      a.proc.kill('SIGKILL');
      await a.exited;
      const t0 = Date.now();
      const b = spawnChild(script, [`redis:${p}`, url, 'resume', '0', '0', '1500']);
      await until(() => sink.received.length === 20, 20_000, 'all 20 delivered by the second worker');
      const took = Date.now() - t0;
      b.proc.kill();
      await b.exited;
      assert.equal(sink.received[0].id, 'm0');
      assert.equal(sink.received[0].interrupted, true);
      assert.equal(sink.received[0].attempts, 2);
      assert.deepEqual(
        sink.received.map((r) => r.n),
        Array.from({ length: 20 }, (_, i) => i),
      );
      assert.ok(took >= 500, `taken over after ${took} ms: only once the lease had expired`);
      console.log(`      taken over ${took} ms after the kill (lease 1500 ms)`);
    } finally {
      await sink.stop();
    }
  });
});
