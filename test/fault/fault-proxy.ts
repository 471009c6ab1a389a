/**
 * An HTTP proxy in front of a far side (the WeChat or CXone simulator) that injects failures by TIME, as real
 * outages and throttling happen: "for the next 1.5 s every matching call gets 429 with Retry-After: 1". (The
 * simulators' own injections count calls, and with an outbox backing off, a count of failures is used up by
 * retries alone and says little about how long the far side was unhappy.) Also refusals for good, counted
 * exactly: "the next 5 matching calls get 400", so the suite knows how many dead letters it is owed.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FaultRule {
  /** Matched against `METHOD /path` (no query), e.g. /^POST \/dfo\/3\.0\/channels\/[^/]+\/messages$/. */
  match: RegExp;
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

interface Burst extends FaultRule {
  until: number;
}
interface Refusal extends FaultRule {
  remaining: number;
}

export class FaultProxy {
  private server: http.Server | null = null;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  private bursts: Burst[] = [];
  private refusals: Refusal[] = [];
  private slows: { until: number; delayMs: number; match: RegExp }[] = [];
  /** Calls held back by a slow window. */
  delayed = 0;
  /** Calls answered by a burst, and refusals given, by status. */
  readonly injected = new Map<number, number>();
  refusalsGiven = 0;
  forwarded = 0;
  /**
   * Every call, with when its request was complete here and when its answer was (undefined: never, e.g. the
   * caller died first). A call held by a slow window is forwarded even if its caller has died meanwhile, as a far
   * side that has taken a request carries it out: what was in flight at a kill can be told from this log.
   */
  readonly calls: { key: string; body: Buffer; at: number; answeredAt?: number }[] = [];
  port = 0;

  constructor(private readonly target: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<string> {
    const server = http.createServer((req, res) => void this.handle(req, res));
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    return this.url;
  }

  /** Every matching call for `ms` gets the rule's answer. */
  burst(ms: number, rule: FaultRule): void {
    this.bursts.push({ ...rule, until: Date.now() + ms });
  }

  /** For `ms`, every matching call is forwarded only after `delayMs` (a slow far side; calls pile up in flight). */
  slow(ms: number, delayMs: number, match: RegExp): void {
    this.slows.push({ until: Date.now() + ms, delayMs, match });
  }

  /** The next `n` matching calls get the rule's answer (before any burst). */
  refuse(n: number, rule: FaultRule): void {
    this.refusals.push({ ...rule, remaining: n });
  }

  get pendingRefusals(): number {
    return this.refusals.reduce((s, r) => s + r.remaining, 0);
  }

  private answer(res: http.ServerResponse, r: FaultRule): void {
    const text = typeof r.body === 'string' ? r.body : JSON.stringify(r.body);
    res.writeHead(r.status, {
      'Content-Type': typeof r.body === 'string' ? 'text/html' : 'application/json',
      'Content-Length': String(Buffer.byteLength(text)),
      ...r.headers,
    });
    res.end(text);
    this.injected.set(r.status, (this.injected.get(r.status) ?? 0) + 1);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const key = `${req.method ?? 'GET'} ${(req.url ?? '/').split('?')[0]}`;
    const call: (typeof this.calls)[number] = { key, body, at: Date.now() };
    this.calls.push(call);
    res.on('finish', () => (call.answeredAt = Date.now()));
    const refusal = this.refusals.find((r) => r.remaining > 0 && r.match.test(key));
    if (refusal) {
      refusal.remaining--;
      this.refusalsGiven++;
      this.answer(res, refusal);
      return;
    }
    const now = Date.now();
    this.bursts = this.bursts.filter((b) => b.until > now);
    const burst = this.bursts.find((b) => b.match.test(key));
    if (burst) {
      this.answer(res, burst);
      return;
    }
    this.slows = this.slows.filter((w) => w.until > now);
    const slow = this.slows.find((w) => w.match.test(key));
    if (slow) {
      this.delayed++;
      await new Promise((r) => setTimeout(r, slow.delayMs));
    }
    this.forwarded++;
    const target = new URL(req.url ?? '/', this.target);
    const headers = { ...req.headers, host: target.host };
    const up = http.request(target, { method: req.method, headers, agent: this.agent }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    // The far side reset the connection (it is "down"): reset ours too, as a network would.
    up.on('error', () => req.socket.destroy());
    up.end(body);
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    this.agent.destroy();
    if (s) {
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  }
}
