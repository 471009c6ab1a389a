/**
 * The expiry sweep of the in-process stores (lib/store/sweep.ts), run against the memory and the file store: a few
 * entries per change, and a cursor that never keeps deleted entries alive. Not a test file itself.
 */
import * as assert from 'node:assert/strict';
import { SWEEP_STEP } from '../../lib/store/sweep';
import type { Store } from '../../lib/store/types';
import { settledMemory } from './heap';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `make` gives a fresh store and how many entries it holds, expired ones not yet dropped included. */
export function sweepBehaviour(make: () => Promise<{ store: Store; size: () => number }>): void {
  it('drops expired entries a few per write while writes go on, never all in one pass', async function () {
    const { store: s, size } = await make();
    const n = 3000;
    await Promise.all(Array.from({ length: n }, (_, i) => s.set(`old${i}`, `x${i}`, 300)));
    const before = size();
    await sleep(350);
    let writes = 0;
    for (; writes < 10; writes++) await s.set(`new${writes}`, 'y', 60_000);
    // Each write looked at SWEEP_STEP entries at most: 10 writes cannot have dropped them all.
    assert.ok(size() >= before + 10 - 10 * SWEEP_STEP, `${size()} entries after 10 writes, ${before} before`);
    assert.ok(size() < before + 10, 'the sweep has begun');
    while (size() > writes && writes < n) await s.set(`new${writes++}`, 'y', 60_000);
    assert.equal(size(), writes, 'every expired entry gone, every live one kept');
    assert.ok(writes <= n / SWEEP_STEP + 20, `${writes} writes for one pass`);
    assert.equal(await s.get('old1'), undefined);
    assert.equal(await s.get(`new${writes - 1}`), 'y');
  });

  // A Map iterator holds the table its Map had when it last moved: a cursor left behind while the Map shrank kept every
  // deleted entry alive (28.9 MB in the fuzz test's store after its keys were deleted).
  it('lets go of the memory of what it deletes: by delete, by a scan past expired entries', async function () {
    this.timeout(120_000);
    const { store: s, size } = await make();
    const n = 60_000;
    // 400 bytes a value, its own string: 24 MB that must go.
    const fill = async (ttlMs: number): Promise<void> => {
      for (let i = 0; i < n; i += 1000)
        await Promise.all(
          Array.from({ length: 1000 }, (_, j) => s.set(`k${i + j}`, `${i + j}:${'v'.repeat(400)}`, ttlMs)),
        );
    };
    const base = await settledMemory();
    await fill(60_000);
    const full = await settledMemory();
    assert.ok(full - base > 20e6, `${((full - base) / 1e6).toFixed(1)} MB held by ${n} entries`);
    for (let i = 0; i < n; i += 1000)
      await Promise.all(Array.from({ length: 1000 }, (_, j) => s.delete(`k${i + j}`)));
    assert.equal(size(), 0);
    const deleted = await settledMemory();
    assert.ok(
      deleted - base < 4e6,
      `${((deleted - base) / 1e6).toFixed(1)} MB still held after deleting everything`,
    );

    await fill(200);
    await sleep(250);
    assert.deepEqual(await s.scan(''), []);
    assert.equal(size(), 0);
    const scanned = await settledMemory();
    console.log(
      `      held: ${((full - base) / 1e6).toFixed(1)} MB full, ${((deleted - base) / 1e6).toFixed(1)} MB after the ` +
        `deletes, ${((scanned - base) / 1e6).toFixed(1)} MB after the scan`,
    );
    assert.ok(
      scanned - base < 4e6,
      `${((scanned - base) / 1e6).toFixed(1)} MB still held after a scan dropped everything`,
    );
  });
}
