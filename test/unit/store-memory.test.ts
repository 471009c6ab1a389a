/** The memory backend against the shared store behaviour. */
import * as assert from 'node:assert/strict';
import { MemoryStore } from '../../lib/store/memory';
import { storeConformance } from './store-conformance';
import { sweepBehaviour } from './store-sweep';

describe('store: memory', function () {
  storeConformance(() => Promise.resolve({ store: new MemoryStore(), key: (k: string) => k }));

  it('drops expired items when a scan passes them, so an idle store does not hold them', async function () {
    const s = new MemoryStore();
    for (let i = 0; i < 100; i++) await s.set(`old${i}`, 'x', 20);
    await s.set('keep', 'y', 60_000);
    await s.set('other:keep', 'z');
    assert.equal(s.size, 102);
    await new Promise((r) => setTimeout(r, 40));
    assert.deepEqual(await s.scan('other:'), [['other:keep', 'z']]);
    assert.equal(s.size, 2, 'the expired items are gone, whatever the prefix');
    assert.equal(await s.get('keep'), 'y');
  });

  describe('expiry sweep', function () {
    sweepBehaviour(() => {
      const s = new MemoryStore();
      return Promise.resolve({ store: s, size: () => s.size });
    });
  });
});
