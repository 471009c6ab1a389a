/**
 * The inbound journal: dedupe by id, completion through the reference a message carries, replay after a restart
 * (bounded in count and age), and the whole "acknowledge → outbox" window surviving a SIGKILL.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  completeJournal,
  createJournal,
  journalRefOf,
  makeRef,
  parseRef,
  type JournalEntry,
} from '../../lib/journal';
import { createOutbox, type OutboxResult } from '../../lib/outbox';
import { FileStore } from '../../lib/store/file';
import { MemoryStore } from '../../lib/store/memory';
import { Sink } from './outbox-sink';
import { until } from './outbox-behaviour';
import { spawnChild } from './store-proc';

interface Data {
  text: string;
  raw?: Buffer;
}

describe('journal', function () {
  this.timeout(60_000);
  const dirs: string[] = [];
  const tmp = (): string => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'wxcx-jr-'));
    dirs.push(d);
    return d;
  };
  after(function () {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it('references are plain strings that survive a message clone and name the journal and entry', function () {
    const ref = makeRef('wxcx:wechat:wx1:in:n1', 'MsgId|1234567890123456789');
    assert.equal(typeof ref, 'string');
    assert.deepEqual(parseRef(JSON.parse(JSON.stringify(ref))), {
      name: 'wxcx:wechat:wx1:in:n1',
      id: 'MsgId|1234567890123456789',
    });
    assert.equal(parseRef('something else'), null);
    assert.equal(parseRef(42), null);
    assert.equal(journalRefOf({ _wxcx: { journal: ref } }), ref);
    assert.equal(journalRefOf({ payload: 1 }), undefined);
  });

  describe('on the memory store', function () {
    it('dedupes ids and keeps nothing to replay', async function () {
      const runtime = {};
      const j = createJournal<Data>({ runtime, name: 'in', store: new MemoryStore() });
      const ref = await j.append('m1', { text: 'hi' });
      assert.ok(ref);
      assert.equal(await j.append('m1', { text: 'hi' }), null, 'a second push of the same message');
      assert.equal(await completeJournal(runtime, { _wxcx: { journal: ref } }), true);
      assert.equal(await j.append('m1', { text: 'hi' }), null, 'still remembered after completion');
      const replayed: string[] = [];
      void j.start((e) => replayed.push(e.id));
      await j.sweep();
      assert.deepEqual(replayed, []);
      assert.equal(j.stats().appended, 1);
      await j.stop();
    });

    it('remembers ids across a redeploy (a new journal on the same memory store)', async function () {
      const store = new MemoryStore();
      const a = createJournal<Data>({ runtime: {}, name: 'in', store });
      assert.ok(await a.append('m1', { text: 'hi' }));
      await a.stop();
      const b = createJournal<Data>({ runtime: {}, name: 'in', store });
      assert.equal(await b.append('m1', { text: 'hi' }), null);
      assert.ok(await b.append('m2', { text: 'hi' }));
    });
  });

  describe('on the file store', function () {
    it('a duplicate of a pending entry leaves it pending (and counted once when completed)', async function () {
      const s = await FileStore.open(tmp());
      const j = createJournal<Data>({ runtime: {}, name: 'in', store: s });
      const ref = await j.append('d', { text: 'once' });
      assert.ok(ref);
      assert.equal(await j.append('d', { text: 'once' }), null);
      assert.equal(j.stats().pending, 1);
      assert.equal(await j.complete(ref), true);
      assert.deepEqual([j.stats().pending, j.stats().completed], [0, 1]);
      await j.stop();
      await s.close();
    });

    describe("an entry held as an outbox job's record (ADR 0018)", function () {
      interface P {
        n: number;
      }
      const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
      /** A journal and an outbox on one file store in one runtime, as wechat-in and cxone-dfo-out have them. */
      async function pipeline(
        dir: string,
        attempt: (n: number) => 'delivered' | 'retry' | 'hang' | Promise<'delivered'>,
        opts: { name?: string; journalMaxAgeMs?: number; outboxMaxAgeMs?: number } = {},
      ) {
        const store = await FileStore.open(dir);
        const runtime = {};
        const journal = createJournal<P>({ runtime, name: 'in', store, maxAgeMs: opts.journalMaxAgeMs });
        const outbox = createOutbox<P>({
          name: opts.name ?? 'out',
          store,
          runtime,
          policy: { baseDelayMs: 60_000, maxDelayMs: 60_000, maxAgeMs: opts.outboxMaxAgeMs },
          stopTimeoutMs: 100,
        });
        const results: OutboxResult<P>[] = [];
        const attempts: { n: number; attempts: number; interrupted: boolean }[] = [];
        outbox.start(
          async (job) => {
            attempts.push({ n: job.payload.n, attempts: job.attempts, interrupted: !!job.interrupted });
            const a = await attempt(job.payload.n);
            if (a === 'hang') return new Promise(() => undefined);
            return a === 'delivered'
              ? { kind: 'delivered' }
              : { kind: 'retry', error: { code: 'x', message: 'far side down', retryable: true } };
          },
          (r) => results.push(r),
        );
        const replays: string[] = [];
        await journal.start((entry, ref) => {
          replays.push(ref);
          void outbox.enqueue({ id: entry.id, key: 'k', payload: entry.data, journal: ref });
        });
        const close = async (): Promise<void> => {
          await journal.stop();
          await outbox.stop();
          await store.close();
        };
        return { store, runtime, journal, outbox, results, attempts, replays, close };
      }

      it('writes no job record, keeps the entry pending until the job ends, then completes it', async function () {
        const dir = tmp();
        let open: () => void = () => undefined;
        const gate = new Promise<'delivered'>((r) => (open = () => r('delivered')));
        const p = await pipeline(dir, () => gate);
        const ref = await p.journal.append('m1', { n: 1 });
        assert.ok(ref);
        assert.equal(await p.outbox.enqueue({ id: 'm1', key: 'k', payload: { n: 1 }, journal: ref }), true);
        // What an -out node does next: a no-op while the job holds the entry.
        assert.equal(await completeJournal(p.runtime, ref), false);
        await until(() => p.attempts.length === 1, 5000, 'the first attempt');
        await wait(30);
        assert.deepEqual(await p.store.scan('out:j:'), []);
        assert.equal((await p.store.scan('out:a:')).length, 1, 'the attempt state is written');
        assert.equal(p.journal.stats().pending, 1);
        assert.equal((await p.store.scan('in:e:')).length, 1);
        open();
        await until(() => p.results.length === 1, 5000, 'the delivery');
        assert.equal(p.results[0].status, 'delivered');
        await until(() => p.journal.stats().pending === 0, 5000, 'the entry completed');
        await wait(30);
        assert.deepEqual(await p.store.scan('in:e:'), [], 'the entry is a tombstone (a dedupe mark) now');
        assert.deepEqual(await p.store.scan('out:a:'), [], 'the attempt state is gone');
        assert.deepEqual(await p.store.scan('out:j:'), []);
        await p.close();
      });

      it('after a restart the replayed entry is held again with the attempts the run before made', async function () {
        const dir = tmp();
        const p1 = await pipeline(dir, () => 'retry');
        const ref = await p1.journal.append('m1', { n: 1 });
        assert.ok(ref);
        await p1.outbox.enqueue({ id: 'm1', key: 'k', payload: { n: 1 }, journal: ref });
        await until(() => p1.attempts.length === 1, 5000, 'the first attempt');
        await wait(30); // its retry time on disk
        await p1.close(); // the restart

        const p2 = await pipeline(dir, () => 'delivered');
        assert.equal(p2.replays.length, 1);
        // The retry time recorded by the first run (a minute away) still holds: no attempt yet.
        await wait(100);
        assert.equal(p2.attempts.length, 0);
        assert.equal(p2.outbox.stats().depth, 1);
        assert.equal(p2.outbox.stats().retrying, 1);
        // The replay limit does not count restarts once the entry is in an outbox again.
        const stored = (await p2.store.scan('in:e:')).map(([, v]) => JSON.parse(v) as { replays: number });
        assert.deepEqual(
          stored.map((e) => e.replays),
          [0],
        );
        assert.deepEqual(await p2.store.scan('out:j:'), []);
        await p2.close();
      });

      it('a journal started meanwhile (a redeploy) does not replay a held entry, and replays one not held', async function () {
        const dir = tmp();
        const p = await pipeline(dir, () => 'hang');
        const held = await p.journal.append('held', { n: 1 });
        const loose = await p.journal.append('loose', { n: 2 });
        assert.ok(held && loose);
        await p.outbox.enqueue({ id: 'held', key: 'k', payload: { n: 1 }, journal: held });
        await p.journal.stop();
        const again: string[] = [];
        const j2 = createJournal<P>({ runtime: p.runtime, name: 'in', store: p.store });
        await j2.start((entry) => again.push(entry.id));
        assert.deepEqual(again, ['loose']);
        await j2.stop();
        await p.close();
      });

      it('a second outbox on the same msg writes its own job, and only the holder completes the entry', async function () {
        const dir = tmp();
        const p = await pipeline(dir, () => 'hang');
        const second = createOutbox<P>({
          name: 'out2',
          store: p.store,
          runtime: p.runtime,
          stopTimeoutMs: 100,
        });
        second.start(
          () => new Promise(() => undefined),
          () => undefined,
        );
        const ref = await p.journal.append('m1', { n: 1 });
        assert.ok(ref);
        await p.outbox.enqueue({ id: 'm1', key: 'k', payload: { n: 1 }, journal: ref });
        await second.enqueue({ id: 'm1', key: 'k', payload: { n: 1 }, journal: ref });
        assert.equal(await completeJournal(p.runtime, ref), false);
        assert.equal(p.journal.stats().pending, 1, 'still held by the first job');
        assert.deepEqual(await p.store.scan('out:j:'), []);
        assert.equal((await p.store.scan('out2:j:')).length, 1, "the second job's own record");
        await second.stop();
        await p.close();
      });

      it("a job that may outlive the entry (outbox maxAge above the journal's) is written as a job", async function () {
        const dir = tmp();
        const p = await pipeline(dir, () => 'hang', { journalMaxAgeMs: 3600_000, outboxMaxAgeMs: 7200_000 });
        const ref = await p.journal.append('m1', { n: 1 });
        assert.ok(ref);
        await p.outbox.enqueue({ id: 'm1', key: 'k', payload: { n: 1 }, journal: ref });
        assert.equal((await p.store.scan('out:j:')).length, 1);
        assert.equal(await completeJournal(p.runtime, ref), true, 'not held: completed as before');
        await p.close();
      });
    });

    it('after a restart, replays exactly the entries never completed, with their data, oldest first', async function () {
      const dir = tmp();
      const s1 = await FileStore.open(dir);
      const j1 = createJournal<Data>({ runtime: {}, name: 'in', store: s1 });
      const r1 = await j1.append('a', { text: 'first', raw: Buffer.from([1, 2, 3]) });
      const r2 = await j1.append('b', { text: 'second' });
      const r3 = await j1.append('c', { text: 'third' });
      assert.ok(r1 && r2 && r3);
      assert.equal(await j1.complete(r2), true);
      assert.equal(j1.stats().pending, 2);
      await j1.stop();
      await s1.close(); // the "crash": a and c were acknowledged, never handed to an outbox

      const s2 = await FileStore.open(dir);
      const runtime = {};
      const j2 = createJournal<Data>({ runtime, name: 'in', store: s2 });
      const replayed: JournalEntry<Data>[] = [];
      const refs: string[] = [];
      // start() resolves once the first replay is done (the -in nodes hold new messages until then).
      await j2.start((e, ref) => {
        replayed.push(e);
        refs.push(ref);
      });
      assert.deepEqual(
        replayed.map((e) => [e.id, e.data.text, e.replays]),
        [
          ['a', 'first', 0],
          ['c', 'third', 0],
        ],
      );
      assert.ok(Buffer.isBuffer(replayed[0].data.raw));
      assert.deepEqual([...replayed[0].data.raw], [1, 2, 3]);
      // The replayed messages are completed the normal way, by the reference they carry.
      for (const ref of refs) assert.equal(await completeJournal(runtime, { _wxcx: { journal: ref } }), true);
      assert.equal(await j2.append('a', { text: 'again' }), null, 'ids stay remembered');
      await j2.stop();
      await s2.close();

      const s3 = await FileStore.open(dir);
      const j3 = createJournal<Data>({ runtime: {}, name: 'in', store: s3 });
      const again: string[] = [];
      void j3.start((e) => again.push(e.id));
      await j3.sweep();
      assert.deepEqual(again, [], 'nothing left to replay');
      await j3.stop();
      await s3.close();
    });

    it('gives up on an entry replayed maxReplays times (a flow that never delivers it)', async function () {
      const dir = tmp();
      let s = await FileStore.open(dir);
      const j0 = createJournal<Data>({ runtime: {}, name: 'in', store: s, maxReplays: 2 });
      await j0.append('filtered', { text: 'x' });
      await j0.stop();
      await s.close();
      const seen: number[] = [];
      for (let run = 0; run < 4; run++) {
        s = await FileStore.open(dir);
        const j = createJournal<Data>({ runtime: {}, name: 'in', store: s, maxReplays: 2 });
        void j.start((e) => seen.push(e.replays));
        await j.sweep();
        if (run === 2) assert.equal(j.stats().dropped, 1);
        await j.stop();
        await s.close();
      }
      assert.deepEqual(seen, [0, 1]);
    });

    it('drops entries older than maxAgeMs instead of replaying them', async function () {
      const dir = tmp();
      let s = await FileStore.open(dir);
      const j0 = createJournal<Data>({ runtime: {}, name: 'in', store: s, maxAgeMs: 50 });
      await j0.append('old', { text: 'x' });
      await j0.stop();
      await s.close();
      await new Promise((r) => setTimeout(r, 80));
      s = await FileStore.open(dir);
      const j = createJournal<Data>({ runtime: {}, name: 'in', store: s, maxAgeMs: 50 });
      const seen: string[] = [];
      void j.start((e) => seen.push(e.id));
      await j.sweep();
      assert.deepEqual(seen, []);
      assert.equal(j.stats().dropped, 1);
      assert.match(j.stats().lastError!.message, /gave up on entry old/);
      await j.stop();
      await s.close();
    });

    it('completeJournal ignores messages without a reference, and references of journals not open', async function () {
      assert.equal(await completeJournal({}, { payload: 1 }), false);
      assert.equal(await completeJournal({}, { _wxcx: { journal: makeRef('nope', 'x') } }), false);
    });

    for (const hold of [false, true]) {
      it(`SIGKILL between acknowledge and outbox${hold ? ", the journal entry as the job's record" : ''}: every acknowledged push is delivered after restart, once per id`, async function () {
        const dir = tmp();
        const sink = new Sink();
        const sinkUrl = await sink.start();
        const script = path.join(__dirname, 'journal-child.js');
        const agent = new http.Agent({ keepAlive: true, maxSockets: 20 });
        const push = (port: number, body: object): Promise<number> =>
          new Promise((resolve) => {
            const req = http.request(
              { host: '127.0.0.1', port, path: '/push', method: 'POST', agent },
              (res) => {
                res.resume();
                res.on('end', () => resolve(res.statusCode ?? 0));
              },
            );
            req.on('error', () => resolve(0)); // the process was killed under this request
            req.end(JSON.stringify(body));
          });
        try {
          const first = spawnChild(script, hold ? [dir, sinkUrl, 'hold'] : [dir, sinkUrl]);
          await first.waitFor((l) => l.some((x) => x.startsWith('port ')));
          const port = Number(first.lines.find((x) => x.startsWith('port '))!.slice(5));
          const acked = new Set<string>();
          const N = 1500;
          let next = 0;
          let killed = false;
          const worker = async (): Promise<void> => {
            while (next < N && !killed) {
              const n = next++;
              const body = { id: `w${n}`, key: `u${n % 10}`, n };
              // WeChat pushes some messages twice: both must end in one delivery.
              const status = await push(port, body);
              if (status === 200) acked.add(body.id);
              if (n % 7 === 0 && !killed && (await push(port, body)) === 200) acked.add(body.id);
              if (acked.size >= 500 && !killed) {
                killed = true;
                first.proc.kill('SIGKILL');
              }
            }
          };
          await Promise.all(Array.from({ length: 20 }, worker));
          await first.exited;
          const deliveredBefore = new Set(sink.received.map((r) => r.id)).size;

          const second = spawnChild(script, hold ? [dir, sinkUrl, 'hold'] : [dir, sinkUrl]);
          await second.waitFor((l) => l.some((x) => x.startsWith('port ')));
          await until(
            () => [...acked].every((id) => sink.received.some((r) => r.id === id)),
            30_000,
            'every acknowledged push delivered',
          );
          const replays = second.lines.filter((l) => l.startsWith('replay ')).length;
          if (hold) {
            // Replayed pushes journaled but never acknowledged are delivered too; then the ends are written.
            const replayed = second.lines.filter((l) => l.startsWith('replay ')).map((l) => l.slice(7));
            await until(
              () => replayed.every((id) => sink.received.some((r) => r.id === id)),
              30_000,
              'every replayed push delivered',
            );
            await new Promise((r) => setTimeout(r, 500));
          }
          second.proc.kill();
          await second.exited;
          const lost = [...acked].filter((id) => !sink.received.some((r) => r.id === id));
          console.log(
            `      ${acked.size} pushes acknowledged before SIGKILL, ${deliveredBefore} delivered by then; ` +
              `${replays} replayed from the journal after restart; delivered twice: ${sink.duplicates().length}; lost ${lost.length}`,
          );
          assert.equal(lost.length, 0);
          assert.ok(replays > 0, 'the kill left acknowledged messages that only the journal had');
          // No order assertion here: the pushes of one user race each other (20 senders, a random delay before the
          // outbox), and a message recovered from the journal joins its conversation after those accepted earlier.
          assert.ok(sink.duplicates().length <= 8, 'only attempts in flight at the kill can repeat');
          if (hold) {
            // What the first run recorded of a held job's attempt comes back with the replay.
            for (const id of sink.duplicates()) {
              assert.ok(
                sink.received.some((r) => r.id === id && r.interrupted),
                `${id} was delivered twice without being flagged interrupted`,
              );
            }
            // Every held job ended: no job record was written, and no attempt state is left.
            const store = await FileStore.open(dir);
            try {
              assert.deepEqual(await store.scan('out:j:'), [], 'no job record, not even a tombstone');
              // Attempt states left: only those a kill orphaned (its entry's completion on disk, not yet the
              // state's removal), of pushes delivered once, by the first run; their TTL removes them.
              const left = (await store.scan('out:a:')).map(([k]) => k.slice('out:a:'.length));
              const firstPid = first.proc.pid;
              for (const id of left) {
                const got = sink.received.filter((r) => r.id === id);
                assert.ok(
                  got.length === 1 && got[0].pid === firstPid && !second.lines.includes(`replay ${id}`),
                  `the attempt state of ${id} was left behind`,
                );
              }
              assert.ok(left.length <= 64, `${left.length} attempt states orphaned by the kill`);
              assert.deepEqual(
                (await store.scan('in:e:')).filter(([, v]) => v !== '-'),
                [],
                'every journal entry completed',
              );
            } finally {
              await store.close();
            }
          }
        } finally {
          agent.destroy();
          await sink.stop();
        }
      });
    }
  });
});
