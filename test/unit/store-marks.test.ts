/**
 * Dedupe marks kept compactly (lib/store/marks.ts) and in the file store: a key set to `-` with a lifetime is a
 * fingerprint and an expiry, read back as `-`, refused by setIfAbsent, kept across reopen and compaction, never
 * listed by scan, and small in memory.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileStore } from '../../lib/store/file';
import { fingerprint, MarkSet } from '../../lib/store/marks';
import { collect, settledMemory } from './heap';

describe('dedupe marks', function () {
  this.timeout(60_000);
  const dirs: string[] = [];
  const tmp = (): string => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'wxcx-marks-'));
    dirs.push(d);
    return d;
  };
  after(function () {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  describe('MarkSet', function () {
    it('has what it was given until it expires; delete and re-add work; other keys are not marked', function () {
      const m = new MarkSet();
      const now = 1_800_000_000_000;
      m.add('a', now + 60_000, now);
      m.add('b', now + 1_000, now);
      assert.equal(m.has('a', now), true);
      assert.equal(m.has('b', now + 999), true);
      assert.equal(m.has('b', now + 1_001), false, 'expired');
      assert.equal(m.has('c', now), false);
      assert.equal(m.delete('a'), true);
      assert.equal(m.delete('a'), false);
      assert.equal(m.has('a', now), false);
      m.add('a', now + 5_000, now);
      assert.equal(m.has('a', now), true);
      m.add('a', now + 500, now); // a later set replaces the expiry
      assert.equal(m.has('a', now + 2_000), false);
    });

    it('holds 300,000 marks exactly through growth, reuses expired slots, and shrinks when they are swept', function () {
      const m = new MarkSet();
      const now = 1_800_000_000_000;
      for (let i = 0; i < 300_000; i++) m.add(`k${i}`, now + (i % 2 ? 3_600_000 : 10_000), now);
      assert.equal(m.size, 300_000);
      for (let i = 0; i < 300_000; i += 997) assert.equal(m.has(`k${i}`, now), true, `k${i}`);
      assert.equal(m.has('k300000', now), false);
      assert.ok(m.bytes <= 300_000 * 12 * 4, `${m.bytes} bytes`);
      const later = now + 60_000;
      // Half have expired: new marks take their slots without the table growing.
      const bytes = m.bytes;
      for (let i = 0; i < 100_000; i++) m.add(`n${i}`, later + 3_600_000, later);
      assert.equal(m.bytes, bytes);
      for (let i = 1; i < 300_000; i += 2000) assert.equal(m.has(`k${i}`, later), true);
      for (let i = 0; i < 300_000; i += 2000) assert.equal(m.has(`k${i}`, later), false);
      for (let i = 0; i < 100_000; i += 999) assert.equal(m.has(`n${i}`, later), true);
      m.sweep(now + 7_200_000);
      assert.equal(m.size, 0);
      assert.ok(m.bytes < bytes);
    });

    it("keeps a large table in blocks below glibc's mmap threshold (128 KiB)", function () {
      const m = new MarkSet();
      const now = 1_800_000_000_000;
      for (let i = 0; i < 300_000; i++) m.add(`k${i}`, now + 3_600_000, now);
      assert.ok(m.bytes > 4 * 1024 * 1024, `${m.bytes} bytes`);
      assert.ok(m.largestBlock <= 96 * 1024, `largest block ${m.largestBlock} bytes`);
      // Every slot of every block is reachable: each mark is found, and the walk yields each once.
      let n = 0;
      for (const [, , exp] of m.entries(now)) n += exp === Math.ceil((now + 3_600_000) / 1000) * 1000 ? 1 : 0;
      assert.equal(n, 300_000);
    });

    it('entries() yields each mark live at the call once, while marks are added and deleted and the table grows', function () {
      const m = new MarkSet();
      const now = Date.now();
      const key = new Map<string, string>();
      const fp = (k: string): string => {
        const [hi, lo] = fingerprint(k);
        const f = `${hi}:${lo}`;
        key.set(f, k);
        return f;
      };
      for (let i = 0; i < 20_000; i++) m.add(`k${i}`, now + 60_000, now);
      for (let i = 0; i < 20_000; i++) fp(`k${i}`);
      const seen = new Map<string, number>();
      let n = 0;
      let added = 0;
      let deleted = 0;
      const bytes = m.bytes;
      for (const [hi, lo] of m.entries(now)) {
        seen.set(`${hi}:${lo}`, (seen.get(`${hi}:${lo}`) ?? 0) + 1);
        n++;
        // Meanwhile: new marks (the table grows past its first size) and deletes of marks walked or not yet.
        if (added < 30_000) m.add(`more${++added}`, now + 60_000, now);
        if (n % 10 === 0 && m.delete(`k${n}`)) deleted++;
        fp(`more${added}`);
      }
      assert.ok(m.bytes > bytes, 'the table grew during the walk');
      for (const [f, count] of seen) {
        assert.equal(count, 1, `${key.get(f)} yielded ${count} times`);
        assert.ok(key.has(f), 'a mark nobody set');
      }
      for (let i = 0; i < 20_000; i++) {
        if (i % 10 === 0 && i > 0) continue; // deleted meanwhile: yielded or not
        assert.ok(seen.has(fp(`k${i}`)), `k${i} was live at the call and not yielded`);
      }
      assert.ok(deleted > 100, `${deleted} deleted`);
      assert.equal(m.size, 20_000 + added - deleted, 'the table itself kept every change');
      for (let i = 1; i <= added; i += 97) assert.equal(m.has(`more${i}`, now), true);
    });
  });

  describe('in the file store', function () {
    it('a key set to "-" with a lifetime reads back as "-", blocks setIfAbsent, is not scanned, and can be deleted', async function () {
      const s = await FileStore.open(tmp());
      try {
        await s.set('j:1', JSON.stringify({ job: 1 }));
        await s.set('j:1', '-', 60_000);
        await s.set('j:2', '-'); // no lifetime: an ordinary value
        assert.equal(s.markCount, 1);
        assert.equal(await s.get('j:1'), '-');
        assert.equal(await s.setIfAbsent('j:1', 'again', 60_000), false);
        assert.deepEqual(await s.scan('j:'), [['j:2', '-']]);
        assert.equal(await s.deleteIfEquals('j:1', 'x'), false);
        assert.equal(await s.deleteIfEquals('j:1', '-'), true);
        assert.equal(await s.get('j:1'), undefined);
        await s.set('j:3', '-', 60_000);
        await s.delete('j:3');
        assert.equal(await s.setIfAbsent('j:3', 'new', 60_000), true);
        assert.equal(await s.get('j:3'), 'new');
        await s.set('j:3', '-', 1); // expires at once (to the second)
        await new Promise((r) => setTimeout(r, 1_100));
        assert.equal(await s.get('j:3'), undefined);
      } finally {
        await s.close();
      }
    });

    it('a key is a value or a mark, never both: each change of one into the other holds, also after reopen', async function () {
      const dir = tmp();
      const a = await FileStore.open(dir);
      await a.set('k', 'v1'); // a value
      await a.set('k', '-', 60_000); // now a mark
      assert.equal(a.markCount, 1);
      await a.set('k', 'v2'); // a value again: the mark is gone
      assert.equal(a.markCount, 0);
      assert.equal(await a.get('k'), 'v2');
      await a.delete('k');
      assert.equal(await a.get('k'), undefined);
      assert.equal(await a.setIfAbsent('k', 'v3', 60_000), true);
      // A mark that expired but is still in the table: setIfAbsent takes the key, and the key then behaves as a
      // value (deleted, it is absent; it can be marked again).
      await a.set('x', '-', 1);
      await new Promise((r) => setTimeout(r, 1_100));
      assert.equal(await a.setIfAbsent('x', 'new', 60_000), true);
      assert.equal(await a.get('x'), 'new');
      await a.delete('x');
      assert.equal(await a.get('x'), undefined);
      await a.set('x', '-', 60_000);
      assert.equal(await a.get('x'), '-');
      await a.close();
      const b = await FileStore.open(dir);
      try {
        assert.equal(await b.get('k'), 'v3');
        assert.equal(await b.get('x'), '-');
        assert.equal(b.markCount, 1);
        await b.delete('k');
        assert.equal(await b.setIfAbsent('k', 'v4', 60_000), true);
        assert.equal(await b.setIfAbsent('x', 'no', 60_000), false);
      } finally {
        await b.close();
      }
    });

    it('keeps marks across reopen and through compaction (by fingerprint), and drops expired ones', async function () {
      const dir = tmp();
      const a = await FileStore.open(dir, { compactMinBytes: 100_000 });
      for (let i = 0; i < 3_000; i++) await a.set(`e:${i}`, '-', 3_600_000);
      await a.set('short', '-', 1_000);
      // Enough overwrites to compact: the marks are then written by fingerprint.
      for (let i = 0; i < 2_000; i++) await a.set('busy', 'x'.repeat(200) + i);
      assert.ok(a.compactions >= 1, 'compacted');
      await a.close();
      const log = fs.readFileSync(path.join(dir, 'data.log'), 'utf8');
      assert.match(log, /^[0-9a-f]{8}M\d+:[0-9a-f]{16}$/m);
      // A mark's expiry is rounded up to the second: "short" (1 s) is gone at the latest 2 s after it was set.
      await new Promise((r) => setTimeout(r, 2_100));
      const b = await FileStore.open(dir);
      try {
        for (let i = 0; i < 3_000; i += 7) assert.equal(await b.get(`e:${i}`), '-', `e:${i}`);
        assert.equal(await b.setIfAbsent('e:42', 'x', 1_000), false);
        assert.equal(await b.get('short'), undefined);
        assert.equal(await b.get('e:3000'), undefined);
      } finally {
        await b.close();
      }
    });

    it('costs a few dozen bytes of memory a mark, not hundreds', async function () {
      // No compaction meanwhile (the 200,000 records would start one): its snapshot would count as the marks' memory.
      const s = await FileStore.open(tmp(), { compactMinBytes: 1e12 });
      try {
        collect();
        const before = process.memoryUsage();
        const n = 200_000;
        let writes: Promise<void>[] = [];
        for (let i = 0; i < n; i++)
          writes.push(
            s.set(
              `wxcx:wechat:wx1234567890abcdef:in:0123456789abcdef:e:oABCDEFGHIJKLMNOPQRSTUVWXYZ0:${1e15 + i}`,
              '-',
              3_600_000,
            ),
          );
        await Promise.all(writes);
        writes = [];
        // The write loop lets go of its last batch (one buffer of every record) once its turn ends.
        const perMark = ((await settledMemory()) - before.heapUsed - before.arrayBuffers) / n;
        assert.equal(s.markCount, n);
        assert.ok(perMark < 60, `${perMark.toFixed(1)} bytes a mark`);
      } finally {
        await s.close();
      }
    });
  });
});
