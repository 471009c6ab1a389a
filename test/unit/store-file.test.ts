/**
 * The file backend: the shared store behaviour, then durability with real processes killed by SIGKILL, torn and
 * damaged records, compaction, group commit and the one-process lock.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileStore, LOG_FLAGS, StoreLockedError } from '../../lib/store/file';
import { storeConformance } from './store-conformance';
import { sweepBehaviour } from './store-sweep';
import { spawnChild, type Child } from './store-proc';

const tmpDirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'wxcx-fstore-'));
  tmpDirs.push(d);
  return d;
}

function child(dir: string, mode: string, count?: number): Child {
  return spawnChild(path.join(__dirname, 'store-child.js'), [dir, mode, String(count ?? '')]);
}

/** Calls `f` at every write and writev the process makes (the log's batches), until the returned function is called. */
function onLogWrite(f: () => void): () => void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fsMod = require('node:fs') as typeof fs;
  const orig = { write: fsMod.write, writev: fsMod.writev };
  const spy =
    (g: (...a: unknown[]) => void) =>
    (...args: unknown[]): void => {
      f();
      g(...args);
    };
  (fsMod as { write: unknown }).write = spy(orig.write as (...a: unknown[]) => void);
  (fsMod as { writev: unknown }).writev = spy(orig.writev as (...a: unknown[]) => void);
  return () => Object.assign(fsMod, orig);
}

describe('store: file', function () {
  this.timeout(60_000);
  const open: FileStore[] = [];
  afterEach(async function () {
    for (const s of open.splice(0)) await s.close();
  });
  after(function () {
    for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
  });

  describe('shared behaviour', function () {
    storeConformance(async () => {
      const s = await FileStore.open(tmpDir());
      open.push(s);
      return { store: s, key: (k: string) => k };
    });
  });

  it('keeps everything across close and reopen: values, deletes, expiry times', async function () {
    const dir = tmpDir();
    const a = await FileStore.open(dir);
    await a.set('k1', 'v1');
    await a.set('k2', 'v2', 60_000);
    await a.set('gone', 'x');
    await a.delete('gone');
    await a.set('short', 'x', 50);
    assert.equal(await a.setIfAbsent('once', '1', Infinity), true);
    await a.close();
    await new Promise((r) => setTimeout(r, 80));
    const b = await FileStore.open(dir);
    open.push(b);
    assert.equal(await b.get('k1'), 'v1');
    assert.equal(await b.get('k2'), 'v2');
    assert.equal(await b.get('gone'), undefined);
    assert.equal(await b.get('short'), undefined);
    assert.equal(await b.setIfAbsent('once', '2', Infinity), false);
  });

  for (const mode of ['write', 'write-deferred'])
    it(`SIGKILL mid-stream${mode === 'write' ? '' : ' (half the writes deferred)'}: every acknowledged write and delete is there after reopen, and the store is usable`, async function () {
      const dir = tmpDir();
      const c = child(dir, mode, 1_000_000);
      await c.waitFor((l) => l.filter((x) => x.startsWith('set ')).length >= 3000);
      c.proc.kill('SIGKILL');
      const { signal } = await c.exited;
      assert.equal(signal, 'SIGKILL');
      const acked = c.lines.filter((l) => l.startsWith('set ')).map((l) => Number(l.slice(4)));
      const deleted = new Set(c.lines.filter((l) => l.startsWith('del ')).map((l) => Number(l.slice(4))));
      assert.ok(acked.length >= 3000);

      const warnings: string[] = [];
      const s = await FileStore.open(dir, { onWarning: (m) => warnings.push(m) });
      open.push(s);
      let missing = 0;
      for (const i of acked) {
        const v = await s.get(`k${i}`);
        if (deleted.has(i)) assert.equal(v, undefined, `k${i} was deleted and acknowledged`);
        else if (i % 10 === 0 && v === undefined)
          continue; // its delete was under way: it may have landed
        else if (v !== `v${i}`) missing++;
      }
      assert.equal(missing, 0, `${missing} acknowledged writes lost`);
      // Usable: write, close, reopen.
      await s.set('after', 'crash');
      await s.close();
      open.pop();
      const again = await FileStore.open(dir);
      open.push(again);
      assert.equal(await again.get('after'), 'crash');
      console.log(
        `      acknowledged ${acked.length} writes and ${deleted.size} deletes before SIGKILL; warnings: ${warnings.length}`,
      );
    });

  /** Every key's last acknowledged value (or the one after it) is found after reopening `dir`. */
  async function assertLastAcknowledged(dir: string, lines: string[]): Promise<void> {
    const last = new Map<string, number>();
    for (const l of lines) {
      const m = /^set (c\d+) (\d+)$/.exec(l);
      if (m) last.set(m[1], Number(m[2]));
    }
    const s = await FileStore.open(dir);
    open.push(s);
    for (const [k, n] of last) {
      const v = await s.get(k);
      assert.ok(v, `${k} missing`);
      const got = Number(/^n(\d+)-/.exec(v)![1]);
      // The write after the last acknowledged one may have reached the disk too; never an older one.
      assert.ok(got === n || got === n + 50, `${k}: acknowledged n${n}, found n${got}`);
    }
    assert.equal(fs.existsSync(path.join(dir, 'data.log.compact')), false);
  }

  it('SIGKILL while compacting over and over: reopen finds the last acknowledged value of every key', async function () {
    const dir = tmpDir();
    const c = child(dir, 'compact');
    await c.waitFor((l) => l.length >= 1500);
    c.proc.kill('SIGKILL');
    await c.exited;
    await assertLastAcknowledged(dir, c.lines);
    assert.ok(fs.statSync(path.join(dir, 'data.log')).size < 200_000, 'the log was compacted');
  });

  it('SIGKILL while writes go to both files (before, during and after the rename): nothing acknowledged is lost', async function () {
    // The child reports the phase after each write; killed the n-th time it saw "both" and some writes later,
    // each run stops somewhere in the window between the take-over and the switch. "compact-slow" holds the rename
    // back for 100 ms (a kill before it: the old log is read), "compact" does not (mostly after it: the new one).
    for (const [mode, nth, after] of [
      ['compact-slow', 1, 0],
      ['compact-slow', 2, 3],
      ['compact-slow', 1, 20],
      ['compact', 1, 0],
      ['compact', 2, 1],
      ['compact', 3, 4],
    ] as const) {
      const dir = tmpDir();
      const c = child(dir, mode);
      let seen = 0;
      let at = -1;
      await c.waitFor((l) => {
        for (let i = at + 1; i < l.length; i++) if (l[i] === 'phase both' && ++seen === nth) at = i;
        return at >= 0 && l.length > at + after;
      });
      c.proc.kill('SIGKILL');
      await c.exited;
      assert.ok(c.lines.includes('phase both'), 'the kill came while writing to both files');
      await assertLastAcknowledged(dir, c.lines);
      for (const s of open.splice(0)) await s.close();
    }
  });

  it('cuts off a torn last record and stays usable', async function () {
    const dir = tmpDir();
    const a = await FileStore.open(dir);
    await a.set('a', '1');
    await a.set('b', '2');
    await a.close();
    fs.appendFileSync(path.join(dir, 'data.log'), '1234abcd["s","c","3"');
    const warnings: string[] = [];
    const b = await FileStore.open(dir, { onWarning: (m) => warnings.push(m) });
    assert.equal(await b.get('a'), '1');
    assert.equal(await b.get('b'), '2');
    assert.equal(await b.get('c'), undefined);
    assert.match(warnings.join(), /incomplete last record/);
    await b.set('d', '4');
    await b.close();
    const c = await FileStore.open(dir);
    open.push(c);
    assert.equal(await c.get('d'), '4');
    assert.equal(await c.get('b'), '2');
  });

  it('skips a damaged record in the middle with a warning and keeps the rest', async function () {
    const dir = tmpDir();
    const a = await FileStore.open(dir);
    for (let i = 0; i < 5; i++) await a.set(`k${i}`, `v${i}`);
    await a.close();
    const file = path.join(dir, 'data.log');
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    lines[2] = lines[2].replace('v2', 'XX');
    fs.writeFileSync(file, lines.join('\n'));
    const warnings: string[] = [];
    const b = await FileStore.open(dir, { onWarning: (m) => warnings.push(m) });
    open.push(b);
    assert.match(warnings.join(), /skipped 1 damaged record/);
    assert.equal(await b.get('k2'), undefined);
    assert.equal(await b.get('k4'), 'v4');
  });

  it('writes compact records, JSON ones for line breaks and lone surrogates, and reads both (and the first version)', async function () {
    const dir = tmpDir();
    const a = await FileStore.open(dir);
    const json = JSON.stringify({ text: 'say "hi"', n: 1, nested: { q: '"' } });
    const odd = {
      'multi\nline': 'a\r\nb',
      plain: json,
      surrogate: 'x\ud800y',
      'key:with:colons': 'v:1:2',
      中文键: '值 👍🏽',
      empty: '',
    };
    for (const [k, v] of Object.entries(odd)) await a.set(k, v, k === 'plain' ? 60_000 : undefined);
    await a.set('gone', '1');
    await a.delete('gone');
    await a.close();
    const lines = fs.readFileSync(path.join(dir, 'data.log'), 'utf8').trim().split('\n');
    // The JSON value is written as it is (no escaped quotes), with its expiry and key length.
    const plain = lines.find((l) => l.slice(8).startsWith('S') && l.includes(':5:plain'));
    assert.ok(plain, lines.join('\n'));
    assert.ok(plain.endsWith(':5:plain' + json), plain);
    assert.ok(lines.some((l) => l.slice(8) === 'Dgone'));
    assert.equal(
      lines.filter((l) => l.slice(8).startsWith('[')).length,
      2,
      'line break and lone surrogate as JSON',
    );
    // A log of the first version (JSON records only) is still read.
    const v1 = path.join(tmpDir(), 'data.log');
    const { crc32 } = await import('node:zlib');
    const rec = (r: unknown[]): string => {
      const j = JSON.stringify(r);
      return (crc32(j) >>> 0).toString(16).padStart(8, '0') + j + '\n';
    };
    fs.writeFileSync(v1, rec(['s', 'old', json, 0]) + rec(['s', 'x', '1', 0]) + rec(['d', 'x']));
    const c = await FileStore.open(path.dirname(v1));
    open.push(c);
    assert.equal(await c.get('old'), json);
    assert.equal(await c.get('x'), undefined);
    const b = await FileStore.open(dir);
    open.push(b);
    for (const [k, v] of Object.entries(odd)) assert.equal(await b.get(k), v, k);
    assert.equal(await b.get('gone'), undefined);
  });

  it('writes large values (CJK, emoji, line breaks, lone surrogates) as records that read back exactly: get, scan, compare, compaction, reopen', async function () {
    const dir = tmpDir();
    const a = await FileStore.open(dir, { compactMinBytes: 30_000 });
    const big = (tag: string): Record<string, string> => ({
      [`${tag}:ascii`]: JSON.stringify({ tag, text: 'a'.repeat(400) }),
      [`${tag}:中文`]: JSON.stringify({
        tag,
        text: '你好，我的订单还没有到'.repeat(40),
        emoji: '👍🏽'.repeat(30),
      }),
      [`${tag}:break`]: 'line\n'.repeat(100), // written in JSON form
      [`${tag}:lone`]: 'x\udc00'.repeat(200), // the same
      [`${tag}:small`]: 'v'.repeat(255),
    });
    const want = { ...big('one'), ...big('two') };
    for (const [k, v] of Object.entries(want)) await a.set(k, v);
    for (const [k, v] of Object.entries(want)) assert.equal(await a.get(k), v, k);
    assert.deepEqual(new Map(await a.scan('one:')), new Map(Object.entries(big('one'))));
    assert.equal(await a.deleteIfEquals('two:中文', 'other'), false);
    assert.equal(await a.deleteIfEquals('two:中文', want['two:中文']), true);
    delete want['two:中文'];
    // The compact form: checksum, then the body, the value as it is.
    const { crc32 } = await import('node:zlib');
    const body = `S0:${'one:中文'.length}:one:中文${want['one:中文']}`;
    const line = (crc32(body) >>> 0).toString(16).padStart(8, '0') + body;
    assert.ok(fs.readFileSync(path.join(dir, 'data.log'), 'utf8').split('\n').includes(line));
    // Overwritten until compactions run: what a compaction rewrites must still read back.
    for (let i = 0; i < 60; i++) await a.set('churn', `${i}:${'z'.repeat(2000)}`);
    assert.ok(a.compactions >= 1, `${a.compactions} compactions`);
    for (const [k, v] of Object.entries(want)) assert.equal(await a.get(k), v, k);
    await a.close();
    const b = await FileStore.open(dir);
    open.push(b);
    for (const [k, v] of Object.entries(want)) assert.equal(await b.get(k), v, k);
    assert.equal(await b.get('two:中文'), undefined);
    assert.match((await b.get('churn'))!, /^59:z{2000}$/);
  });

  it("reads and writes in pieces below glibc's mmap threshold: 400 KB records, a 6 MB log, a torn record across read pieces", async function () {
    const dir = tmpDir();
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const fsMod = require('node:fs') as typeof fs;
    const orig = { write: fsMod.write, writev: fsMod.writev };
    let largest = 0;
    let written = 0;
    (fsMod as { write: unknown }).write = (fd: number, buf: Buffer, ...rest: unknown[]) => {
      if (Buffer.isBuffer(buf)) largest = Math.max(largest, buf.length);
      return (orig.write as (...a: unknown[]) => void)(fd, buf, ...rest);
    };
    (fsMod as { writev: unknown }).writev = (fd: number, bufs: Buffer[], ...rest: unknown[]) => {
      for (const b of bufs) largest = Math.max(largest, b.length);
      written += bufs.reduce((n, b) => n + b.length, 0);
      return (orig.writev as (...a: unknown[]) => void)(fd, bufs, ...rest);
    };
    // Emoji (two characters, four bytes) after 0–3 ASCII characters: a piece boundary falls on every position of a
    // surrogate pair; CJK: three bytes a character.
    const want = new Map<string, string>();
    for (let p = 0; p < 4; p++) want.set(`emoji${p}`, 'x'.repeat(p) + '😀'.repeat(100_000));
    want.set('cjk', '你好，我的订单还没有到'.repeat(12_000));
    let a: FileStore;
    try {
      a = await FileStore.open(dir, { compactMinBytes: 3_000_000 });
      await Promise.all([...want].map(([k, v]) => a.set(k, v))); // one batch of about 2 MB
      for (let i = 0; a.compactions < 1 && i < 200; i++) await a.set('churn', `${i}:${'z'.repeat(100_000)}`);
      assert.ok(a.compactions >= 1, 'compacted');
      await a.set('after', 'compaction');
      for (const [k, v] of want) assert.equal(await a.get(k), v, k);
      await a.close();
    } finally {
      Object.assign(fsMod, orig);
    }
    assert.ok(written > 6_000_000, `${written} bytes written`);
    assert.ok(largest > 0 && largest <= 48 * 1024, `largest write ${largest} bytes`);
    // A torn last record of 300 KB: it spans several of recovery's read pieces.
    const file = path.join(dir, 'data.log');
    const before = fs.statSync(file).size;
    fs.appendFileSync(file, '1234abcdS0:5:torn' + '😀'.repeat(75_000));
    const warnings: string[] = [];
    const b = await FileStore.open(dir, { onWarning: (m) => warnings.push(m) });
    open.push(b);
    assert.match(warnings.join(), /incomplete last record \(300017 bytes\)/);
    assert.equal(fs.statSync(file).size, before);
    for (const [k, v] of want) assert.equal(await b.get(k), v, k);
    assert.equal(await b.get('after'), 'compaction');
    assert.equal(await b.get('torn'), undefined);
    await b.set('next', 'one');
    await b.close();
    const c = await FileStore.open(dir);
    open.push(c);
    assert.equal(await c.get('next'), 'one');
    assert.equal((await c.get('emoji3'))!.length, 200_003);
  });

  describe('expiry sweep', function () {
    // No compaction meanwhile: its snapshot would count as memory held.
    sweepBehaviour(async () => {
      const s = await FileStore.open(tmpDir(), { compactMinBytes: 1e12 });
      open.push(s);
      return { store: s, size: () => s.size };
    });
  });

  it('compacts: many overwrites leave a small log with the same content', async function () {
    const dir = tmpDir();
    const a = await FileStore.open(dir, { compactMinBytes: 50_000 });
    for (let i = 0; i < 3000; i++) await a.set(`k${i % 20}`, `value-${i}-${'y'.repeat(50)}`);
    const size = a.logSize;
    assert.ok(size < 60_000, `log is ${size} bytes`);
    await a.close();
    const b = await FileStore.open(dir);
    open.push(b);
    assert.equal(b.size, 20);
    assert.match((await b.get('k19'))!, /^value-2999-/);
  });

  it('compacts in the background: writes and deletes made meanwhile all land, and the state after reopen is exact', async function () {
    const dir = tmpDir();
    const a = await FileStore.open(dir, { compactMinBytes: 1_000_000 });
    const want = new Map<string, string>();
    const big = 'v'.repeat(400);
    // A large live set (8 MB), then overwrites until the log is twice that: a compaction with a long snapshot.
    for (let round = 0; a.compactions === 0 && round < 20; round++) {
      const writes: Promise<void>[] = [];
      for (let i = 0; i < 20_000; i++) {
        const k = `k${i}`;
        const v = `${round}-${i}-${big}`;
        want.set(k, v);
        writes.push(a.set(k, v));
        if (i % 7 === 0 && round > 0) {
          want.delete(`k${i + 1}`);
          writes.push(a.delete(`k${i + 1}`));
          i++;
        }
      }
      await Promise.all(writes);
    }
    // More changes while one is running (a compaction starts as soon as the log is large enough).
    const during: Promise<void>[] = [];
    for (let i = 0; i < 2_000; i++) {
      want.set(`late${i}`, `x${i}`);
      during.push(a.set(`late${i}`, `x${i}`));
      want.set(`k${i * 3}`, `changed${i}`);
      during.push(a.set(`k${i * 3}`, `changed${i}`));
    }
    await Promise.all(during);
    // On a slow machine the compaction those writes ran alongside may still be finishing: let it.
    for (let t = 0; a.compactions === 0 && t < 200; t++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(a.compactions >= 1, 'a compaction ran');
    await a.close();
    assert.equal(fs.existsSync(path.join(dir, 'data.log.compact')), false);
    const b = await FileStore.open(dir);
    open.push(b);
    assert.equal(b.size, want.size);
    for (const [k, v] of want) assert.equal(await b.get(k), v, k);
  });

  it('gives up a compaction whose rename fails: writes go on to the old log, which keeps everything', async function () {
    const dir = tmpDir();
    const warnings: string[] = [];
    const a = await FileStore.open(dir, {
      compactMinBytes: 20_000,
      renameDelayMs: 300,
      onWarning: (m) => warnings.push(m),
    });
    const want = new Map<string, string>();
    const put = async (k: string, v: string): Promise<void> => {
      await a.set(k, v);
      want.set(k, v);
    };
    for (let n = 0; a.compactionPhase !== 'both'; n++) {
      assert.ok(n < 5_000, 'a compaction reached the phase where writes go to both files');
      await put(`k${n % 40}`, `n${n}-${'x'.repeat(200)}`);
    }
    // The new file disappears before its rename: the rename fails, and the writes meanwhile must not be lost.
    fs.rmSync(path.join(dir, 'data.log.compact'));
    for (let n = 0; n < 40; n++) await put(`late${n}`, `v${n}`);
    await new Promise((r) => setTimeout(r, 400));
    for (let n = 40; n < 80; n++) await put(`late${n}`, `v${n}`);
    assert.ok(
      warnings.some((w) => /compaction failed \(ENOENT\)/.test(w)),
      `warned: ${warnings.join(' | ')}`,
    );
    await a.close();
    const b = await FileStore.open(dir);
    open.push(b);
    for (const [k, v] of want) assert.equal(await b.get(k), v, k);
    assert.equal(fs.existsSync(path.join(dir, 'data.log.compact')), false);
  });

  it('keeps its directory and log to the owner (0700 / 0600), also after compaction', async function () {
    const dir = path.join(tmpDir(), 'store');
    const a = await FileStore.open(dir, { compactMinBytes: 20_000 });
    open.push(a);
    for (let i = 0; i < 1000; i++) await a.set(`k${i % 5}`, `token-${i}-${'z'.repeat(40)}`);
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    const files = fs.readdirSync(dir);
    assert.ok(files.length > 0);
    for (const f of files) assert.equal(fs.statSync(path.join(dir, f)).mode & 0o077, 0, f);
  });

  it('group commit: 5,000 concurrent writes resolve only when durable, batched into far fewer syncs', async function () {
    const dir = tmpDir();
    const s = await FileStore.open(dir);
    open.push(s);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const fsMod = require('node:fs') as typeof fs;
    const orig = { fdatasync: fsMod.fdatasync, write: fsMod.write, writev: fsMod.writev };
    let syncs = 0;
    let writes = 0;
    (fsMod as { fdatasync: unknown }).fdatasync = (...args: unknown[]) => {
      syncs++;
      return (orig.fdatasync as (...a: unknown[]) => void)(...args);
    };
    (fsMod as { write: unknown }).write = (...args: unknown[]) => {
      writes++;
      return (orig.write as (...a: unknown[]) => void)(...args);
    };
    (fsMod as { writev: unknown }).writev = (...args: unknown[]) => {
      writes++;
      return (orig.writev as (...a: unknown[]) => void)(...args);
    };
    try {
      const t0 = Date.now();
      await Promise.all(Array.from({ length: 5000 }, (_, i) => s.set(`k${i}`, `v${i}`)));
      const ms = Date.now() - t0;
      // With O_DSYNC (Linux, macOS) each write is durable when it returns; without, a write then fdatasync.
      const durable = typeof LOG_FLAGS === 'number' ? writes : syncs;
      assert.ok(durable >= 1 && durable < 100, `${durable} durable writes for 5000 writes`);
      if (typeof LOG_FLAGS === 'number') assert.equal(syncs, 0, 'no fdatasync needed with O_DSYNC');
      console.log(`      5000 writes: ${writes} write and ${syncs} fdatasync calls, ${ms} ms`);
    } finally {
      Object.assign(fsMod, orig);
    }
    const lines = fs.readFileSync(path.join(dir, 'data.log'), 'utf8').trim().split('\n');
    assert.equal(lines.length, 5000);
  });

  it('group commit over time: a write after a quiet spell goes at once; what follows waits groupCommitMs from its start and goes in one batch', async function () {
    const dir = tmpDir();
    const G = 1000;
    const s = await FileStore.open(dir, { groupCommitMs: G });
    open.push(s);
    const batches: number[] = [];
    const restore = onLogWrite(() => batches.push(performance.now()));
    try {
      const t0 = performance.now();
      await s.set('a', '1');
      const first = performance.now() - t0;
      // Changes made one after another while the group waits, as a message's next steps and other messages are.
      const later: Promise<void>[] = [];
      for (let i = 0; i < 10; i++) {
        later.push(s.set(`b${i}`, String(i)));
        await new Promise((r) => setTimeout(r, 10));
      }
      await Promise.all(later);
      const all = performance.now() - t0;
      assert.equal(batches.length, 2, `two batches, not one per change (${batches.length})`);
      assert.ok(first < G && first < all, `the first write did not wait for the group (${first} ms)`);
      assert.ok(
        batches[1] - batches[0] >= G - 5,
        `the second batch began ${batches[1] - batches[0]} ms after the first`,
      );
    } finally {
      restore();
    }
    await s.close();
    open.splice(open.indexOf(s), 1);
    const again = await FileStore.open(dir);
    open.push(again);
    assert.equal(await again.get('a'), '1');
    for (let i = 0; i < 10; i++) assert.equal(await again.get(`b${i}`), String(i));
  });

  it('deferred writes wait up to deferMs for a write that is not, go to disk with it, and resolve only once durable', async function () {
    const dir = tmpDir();
    const D = 1000;
    const s = await FileStore.open(dir, { deferMs: D });
    open.push(s);
    let batches = 0;
    const restore = onLogWrite(() => batches++);
    try {
      // Alone: it waits for company, then goes by itself.
      let t0 = performance.now();
      await s.deferWrites(() => s.set('alone', '1'));
      const alone = performance.now() - t0;
      assert.ok(alone >= D - 5, `a deferred write alone waited ${alone} ms`);
      assert.equal(batches, 1);
      // Deferred ones made over a while, then one that is not: all in one batch, at once.
      batches = 0;
      t0 = performance.now();
      const deferredOnes: Promise<unknown>[] = [];
      for (let i = 0; i < 5; i++) {
        deferredOnes.push(s.deferWrites(() => s.set(`d${i}`, String(i))));
        deferredOnes.push(s.deferWrites(() => s.setIfAbsent(`m${i}`, '-', 60_000)));
        await new Promise((r) => setTimeout(r, 20));
      }
      deferredOnes.push(s.deferWrites(() => s.delete('alone')));
      let deferredDone = false;
      void Promise.all(deferredOnes).then(() => (deferredDone = true));
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(deferredDone, false, 'nothing deferred resolved before it was written');
      assert.equal(await s.get('d0'), '0', 'a deferred change is visible at once');
      await s.set('urgent', 'now');
      await Promise.all(deferredOnes);
      const took = performance.now() - t0;
      assert.equal(
        batches,
        1,
        `one batch for the deferred writes and the one that took them along (${batches})`,
      );
      assert.ok(took < D, `they went with the urgent write (${took} ms), not after deferMs`);
    } finally {
      restore();
    }
    // Close flushes what waits at once.
    const last = s.deferWrites(() => s.set('last', 'x'));
    const t1 = performance.now();
    await s.close();
    await last;
    assert.ok(performance.now() - t1 < D, 'close did not wait deferMs');
    open.splice(open.indexOf(s), 1);
    const again = await FileStore.open(dir);
    open.push(again);
    assert.equal(await again.get('alone'), undefined);
    assert.equal(await again.get('urgent'), 'now');
    assert.equal(await again.get('last'), 'x');
    for (let i = 0; i < 5; i++) {
      assert.equal(await again.get(`d${i}`), String(i));
      assert.equal(await again.setIfAbsent(`m${i}`, '-', 60_000), false);
    }
  });

  it('writes its log through an O_DSYNC descriptor (Linux), also after a compaction replaced the file', async function () {
    if (process.platform !== 'linux') this.skip();
    const dir = tmpDir();
    const s = await FileStore.open(dir, { compactMinBytes: 20_000 });
    open.push(s);
    const logFlags = (): number[] => {
      const log = fs.realpathSync(path.join(dir, 'data.log'));
      const out: number[] = [];
      for (const fd of fs.readdirSync('/proc/self/fd')) {
        let target = '';
        try {
          target = fs.readlinkSync(`/proc/self/fd/${fd}`);
        } catch {
          continue;
        }
        if (target !== log) continue;
        const m = /^flags:\s+([0-7]+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
        if (m) out.push(parseInt(m[1], 8));
      }
      return out;
    };
    await s.set('a', '1');
    let flags = logFlags();
    assert.equal(flags.length, 1, 'one descriptor on the log');
    assert.ok(flags[0] & fs.constants.O_DSYNC, `flags ${flags[0].toString(8)} have O_DSYNC`);
    assert.ok(flags[0] & fs.constants.O_APPEND, 'and O_APPEND');
    for (let i = 0; i < 1000 && s.compactions === 0; i++)
      await s.set(`k${i % 5}`, `v-${i}-${'z'.repeat(40)}`);
    assert.ok(s.compactions >= 1, 'compacted');
    await s.set('b', '2');
    flags = logFlags();
    assert.equal(flags.length, 1, 'one descriptor on the (new) log');
    assert.ok(
      flags[0] & fs.constants.O_DSYNC,
      `after compaction: flags ${flags[0].toString(8)} have O_DSYNC`,
    );
  });

  it('refuses a second open of one directory in this process', async function () {
    const dir = tmpDir();
    const a = await FileStore.open(dir);
    open.push(a);
    await assert.rejects(
      FileStore.open(dir),
      (err: Error) => err instanceof StoreLockedError && /already open/.test(err.message),
    );
  });

  it('refuses a directory another live process holds, naming it; takes it over once that process is killed', async function () {
    const dir = tmpDir();
    const c = child(dir, 'hold');
    await c.waitFor((l) => l.includes('open'));
    await assert.rejects(FileStore.open(dir), (err: Error) => {
      assert.ok(err instanceof StoreLockedError);
      assert.match(err.message, new RegExp(`in use by process ${c.proc.pid}`));
      assert.match(err.message, /Redis/);
      return true;
    });
    c.proc.kill('SIGKILL');
    await c.exited;
    const s = await FileStore.open(dir);
    open.push(s);
    await s.set('mine', 'now');
  });

  it('says clearly when the directory cannot be used', async function () {
    const dir = tmpDir();
    const file = path.join(dir, 'not-a-dir');
    fs.writeFileSync(file, 'x');
    await assert.rejects(FileStore.open(path.join(file, 'sub')), /ENOTDIR|not a directory/i);
  });

  it('rejects use after close', async function () {
    const s = await FileStore.open(tmpDir());
    await s.close();
    await assert.rejects(s.set('a', '1'), /closed/);
  });
});
