/** What every Store backend must do, run against each one (memory, file, Redis). Not a test file itself. */
import * as assert from 'node:assert/strict';
import type { Store } from '../../lib/store/types';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Registers the shared behaviour tests; `make` gives a fresh store whose keys do not clash with other runs. */
export function storeConformance(make: () => Promise<{ store: Store; key: (k: string) => string }>): void {
  let store: Store;
  let key: (k: string) => string;
  beforeEach(async function () {
    ({ store, key } = await make());
  });

  it('setIfAbsent sets only once, also when 50 callers race for one key', async function () {
    assert.equal(await store.setIfAbsent(key('a'), '1', 10_000), true);
    assert.equal(await store.setIfAbsent(key('a'), '2', 10_000), false);
    assert.equal(await store.get(key('a')), '1');
    const wins = await Promise.all(
      Array.from({ length: 50 }, (_, i) => store.setIfAbsent(key('race'), String(i), 10_000)),
    );
    assert.equal(wins.filter(Boolean).length, 1);
  });

  it('setIfAbsent frees the key when its time is up; Infinity never expires', async function () {
    assert.equal(await store.setIfAbsent(key('t'), '1', 60), true);
    assert.equal(await store.setIfAbsent(key('forever'), '1', Infinity), true);
    await sleep(120);
    assert.equal(await store.get(key('t')), undefined);
    assert.equal(await store.setIfAbsent(key('t'), '2', 10_000), true);
    assert.equal(await store.get(key('forever')), '1');
  });

  it('get, set (with and without ttl) and delete', async function () {
    assert.equal(await store.get(key('none')), undefined);
    await store.set(key('s'), 'hello 你好 "quoted"\nline');
    assert.equal(await store.get(key('s')), 'hello 你好 "quoted"\nline');
    await store.set(key('s'), 'again');
    assert.equal(await store.get(key('s')), 'again');
    await store.set(key('e'), 'x', 60);
    assert.equal(await store.get(key('e')), 'x');
    await sleep(120);
    assert.equal(await store.get(key('e')), undefined);
    await store.delete(key('s'));
    assert.equal(await store.get(key('s')), undefined);
    await store.delete(key('never-there'));
  });

  it('deleteIfEquals deletes only the expected value', async function () {
    await store.set(key('tok'), 'old');
    assert.equal(await store.deleteIfEquals(key('tok'), 'other'), false);
    assert.equal(await store.get(key('tok')), 'old');
    assert.equal(await store.deleteIfEquals(key('tok'), 'old'), true);
    assert.equal(await store.get(key('tok')), undefined);
    assert.equal(await store.deleteIfEquals(key('tok'), 'old'), false);
  });

  it('tryLock admits one holder; release and expiry free it; a stale release does not free a new holder', async function () {
    const r1 = await store.tryLock(key('lock'), 10_000);
    assert.ok(r1);
    assert.equal(await store.tryLock(key('lock'), 10_000), null);
    await r1();
    const r2 = await store.tryLock(key('lock'), 80);
    assert.ok(r2);
    await sleep(150);
    const r3 = await store.tryLock(key('lock'), 10_000);
    assert.ok(r3, 'the expired lock can be taken');
    await r2(); // r2's lock had expired: releasing it must not release r3
    assert.equal(await store.tryLock(key('lock'), 10_000), null);
    await r3();
  });

  it('scan lists live keys under a prefix', async function () {
    await store.set(key('p:1'), 'a');
    await store.set(key('p:2'), 'b');
    await store.set(key('p:3'), 'c', 50);
    await store.set(key('q:1'), 'z');
    await sleep(100);
    const got = (await store.scan(key('p:'))).sort();
    assert.deepEqual(got, [
      [key('p:1'), 'a'],
      [key('p:2'), 'b'],
    ]);
  });
}
