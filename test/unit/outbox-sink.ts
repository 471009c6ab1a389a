/** The far side for the outbox crash tests: a loopback HTTP server that records every delivery attempt. */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  id: string;
  key: string;
  n: number;
  attempts: number;
  interrupted: boolean;
  pid: number;
}

export type Answer = { status: number; retryAfter?: number };

export class Sink {
  readonly received: Received[] = [];
  /**
   * Decides the answer to an attempt (default 200; status 0: no answer at all). `seen` counts earlier attempts
   * of the same id.
   */
  answer: (r: Received, seen: number) => Answer = () => ({ status: 200 });
  private readonly server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let rec: Received;
      try {
        rec = JSON.parse(Buffer.concat(chunks).toString()) as Received;
      } catch {
        res.writeHead(400).end();
        return;
      }
      const seen = this.counts.get(rec.id) ?? 0;
      this.counts.set(rec.id, seen + 1);
      const a = this.answer(rec, seen);
      if (a.status === 0) return; // never answer: the attempt hangs until its caller gives up or dies
      if (a.status === 200) this.received.push(rec);
      res
        .writeHead(a.status, a.retryAfter !== undefined ? { 'retry-after': String(a.retryAfter) } : {})
        .end();
    });
  });
  private readonly counts = new Map<string, number>();

  async start(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/deliver`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** Ids delivered (200) more than once. */
  duplicates(): string[] {
    const c = new Map<string, number>();
    for (const r of this.received) c.set(r.id, (c.get(r.id) ?? 0) + 1);
    return [...c].filter(([, n]) => n > 1).map(([id]) => id);
  }

  /** Conversations whose deliveries (repeats of the same message collapsed) are not in enqueue order. */
  outOfOrder(): string[] {
    const byKey = new Map<string, number[]>();
    for (const r of this.received) {
      const l = byKey.get(r.key) ?? [];
      if (l[l.length - 1] !== r.n) l.push(r.n);
      byKey.set(r.key, l);
    }
    const bad: string[] = [];
    for (const [k, l] of byKey) if (l.some((n, i) => i > 0 && n < l[i - 1])) bad.push(k);
    return bad;
  }
}
