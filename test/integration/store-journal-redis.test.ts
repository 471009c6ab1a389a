/**
 * The journal on the real Redis, as several instances use it: one of two instances journals a push delivered to
 * both; a live instance's entries are left alone; a stopped instance's entries are replayed once, by one of the
 * instances still running, after its heartbeat lapsed.
 */
import * as assert from 'node:assert/strict';
import { createJournal, type Journal } from '../../lib/journal';
import { RedisStore } from '../../lib/store/redis';
import { until } from '../unit/outbox-behaviour';
import { cleanup, countKeys, REDIS_URL, uniquePrefix } from './store-redis-helpers';

describe('journal (Redis)', function () {
  this.timeout(30_000);
  const prefix = uniquePrefix('journal');
  const stores: RedisStore[] = [];
  const journals: Journal<unknown>[] = [];
  const instance = async (
    name: string,
    opts: { heartbeatMs?: number; sweepMs?: number } = {},
  ): Promise<Journal<{ n: number }>> => {
    // Each instance has its own connection, as separate processes would.
    const s = await RedisStore.open({ url: REDIS_URL, keyPrefix: prefix });
    stores.push(s);
    const j = createJournal<{ n: number }>({
      runtime: {},
      name,
      store: s,
      heartbeatMs: 100,
      sweepMs: 100,
      ...opts,
    });
    journals.push(j as Journal<unknown>);
    return j;
  };
  afterEach(async function () {
    for (const j of journals.splice(0)) await j.stop();
    for (const s of stores.splice(0)) await s.close();
  });
  after(async function () {
    await cleanup(prefix);
    assert.equal(await countKeys(prefix), 0);
  });

  it('a push delivered to two instances at once is journaled by one of them', async function () {
    const a = await instance('dup');
    const b = await instance('dup');
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).append(`m${i >> 1}`, { n: i >> 1 })),
    );
    assert.equal(results.filter((r) => r !== null).length, 100);
  });

  it("leaves a live instance's pending entries alone, and replays a stopped instance's entries once", async function () {
    const a = await instance('takeover');
    const b = await instance('takeover');
    const c = await instance('takeover');
    const got: { by: string; id: string }[] = [];
    void a.start(() => assert.fail('a replays nothing of its own'));
    void b.start((e) => got.push({ by: 'b', id: e.id }));
    void c.start((e) => got.push({ by: 'c', id: e.id }));
    for (let i = 0; i < 20; i++) await a.append(`e${i}`, { n: i });
    await new Promise((r) => setTimeout(r, 600)); // several sweeps of b and c while a is alive
    assert.equal(got.length, 0, 'entries of a live instance are not replayed');
    await a.stop(); // its heartbeat stops: after 4 intervals it counts as gone
    await until(() => got.length === 20, 10_000, 'all 20 replayed');
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(got.length, 20, 'each entry replayed once');
    assert.deepEqual(new Set(got.map((g) => g.id)).size, 20);
    console.log(
      `      replayed by b: ${got.filter((g) => g.by === 'b').length}, by c: ${got.filter((g) => g.by === 'c').length}`,
    );
  });

  it('completing a replayed entry ends it for every instance', async function () {
    const a = await instance('complete');
    await a.append('x', { n: 1 });
    await a.stop();
    const b = await instance('complete');
    let ref = '';
    void b.start((_e, r) => (ref = r));
    await until(() => !!ref, 5000);
    assert.equal(await b.complete(ref), true);
    const c = await instance('complete');
    let replayed = false;
    void c.start(() => (replayed = true));
    await c.sweep();
    assert.equal(replayed, false);
    assert.equal(await c.append('x', { n: 1 }), null, 'the id is still remembered');
  });
});
