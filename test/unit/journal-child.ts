/**
 * A child process for the journal crash test (not a test file itself): a miniature `wechat-in → -out` pipeline
 * on one file store. POST /push {id,key,n} is journaled, then acknowledged ("success"), then handed (after a
 * random delay, like a slow flow) to a file-backed outbox that delivers to the parent's sink; the journal entry
 * is completed once the outbox accepted the message. At start the journal replays what a killed run left.
 * With `hold`, the outbox is given the runtime and each job its journal reference, as the `-out` nodes do: the
 * journal entry is then the job's record (ADR 0018), completed when the job ends.
 *
 *   node journal-child.js <dir> <sinkUrl> [hold]      prints "port <n>", "replay <id>"
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { completeJournal, createJournal } from '../../lib/journal';
import { createOutbox } from '../../lib/outbox';
import { FileStore } from '../../lib/store/file';

interface Push {
  id: string;
  key: string;
  n: number;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
function post(url: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function main(): Promise<void> {
  const [dir, sink, mode] = process.argv.slice(2);
  const hold = mode === 'hold';
  const runtime = {};
  const store = await FileStore.open(dir);
  const journal = createJournal<Push>({ runtime, name: 'in', store });
  const outbox = createOutbox<Push>({
    name: 'out',
    store,
    policy: { concurrency: 8, baseDelayMs: 10, maxDelayMs: 50 },
    runtime: hold ? runtime : undefined,
  });
  outbox.start(
    async (job) => {
      const status = await post(
        sink,
        JSON.stringify({
          ...job.payload,
          attempts: job.attempts,
          interrupted: !!job.interrupted,
          pid: process.pid,
        }),
      );
      return status === 200
        ? { kind: 'delivered' }
        : { kind: 'retry', error: { code: status, message: 'sink', retryable: true } };
    },
    () => undefined,
  );
  const downstream = async (p: Push, ref: string): Promise<void> => {
    await outbox.enqueue({ id: p.id, key: p.key, payload: p, journal: hold ? ref : undefined });
    // Held (with `hold`): a no-op; the job completes the entry when it ends.
    await completeJournal(runtime, { payload: p, _wxcx: { journal: ref } });
  };
  void journal.start((entry, ref) => {
    process.stdout.write(`replay ${entry.id}\n`);
    void downstream(entry.data, ref);
  });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const p = JSON.parse(Buffer.concat(chunks).toString()) as Push;
      journal.append(p.id, p).then(
        (ref) => {
          res.end('success'); // acknowledged only once the journal has it on disk
          if (!ref) return; // a duplicate push
          setTimeout(() => void downstream(p, ref), Math.random() * 20);
        },
        () => {
          res.writeHead(500).end();
        },
      );
    });
  });
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`port ${(server.address() as AddressInfo).port}\n`);
  });
}

main().catch((err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.message : err) + '\n');
  process.exit(1);
});
