/**
 * The outbox on Redis, for several Node-RED instances sharing one queue. Every state change is one Lua script,
 * atomic on the server; an instance claims a *conversation* (not a job) with a lease, so the jobs of one
 * conversation are attempted one at a time, in order, by whichever instance holds its lease.
 *
 * Keys, under `<store prefix><queue name>:`
 *   jobs        hash   id → job JSON (id, key, payload, enqueuedAt), written once
 *   att         hash   id → attempts started (incremented by the claim, i.e. before the attempt)
 *   err         hash   id → last error JSON
 *   fly         hash   id → lease token while an attempt is in flight (left behind by a crashed instance:
 *                      the next claim reports the job as `interrupted`)
 *   q:<key>     list   job ids of one conversation, in enqueue order
 *   ready       zset   conversation → when its head is due (conversations with jobs and no lease)
 *   leased      zset   conversation → lease expiry
 *   owner       hash   conversation → lease token
 *   seen:<id>   string dedupe of job ids (PX = dedupe window)
 *
 * A lease is renewed while the attempt runs; when an instance dies its leases expire and the next claim (by any
 * instance) puts those conversations back in `ready`. A completion with a lost lease still removes the job it
 * delivered, but leaves the new holder's lease alone; a retry with a lost lease is dropped (the new holder owns
 * the job now). Not for Redis Cluster: the scripts touch per-conversation keys they build themselves.
 */
import { hostname } from 'node:os';
import type { RedisStore } from '../store/redis';
import { resolvePolicy, retryDelay } from './backoff';
import { decodeJson, encodeJson } from './codec';
import { errorText, runAttempt } from './local';
import type { Attempt, AttemptOutcome, OutboxJob, OutboxPolicy, OutboxResult, OutboxStats } from './types';
import type { DeliveryError } from '../conversation';

const ENQUEUE = `
local base = ARGV[1]
if redis.call('HEXISTS', base .. 'jobs', ARGV[2]) == 1 then return 0 end
if not redis.call('SET', base .. 'seen:' .. ARGV[2], '1', 'NX', 'PX', ARGV[6]) then return 0 end
redis.call('HSET', base .. 'jobs', ARGV[2], ARGV[4])
local n = redis.call('RPUSH', base .. 'q:' .. ARGV[3], ARGV[2])
if n == 1 and not redis.call('ZSCORE', base .. 'leased', ARGV[3]) then
  redis.call('ZADD', base .. 'ready', 'NX', ARGV[5], ARGV[3])
end
return 1
`;

// ARGV: base, now, leaseMs, max, token → { nextDue, depth, retrying, [key, id, job, attempts, err, interrupted]… }
const CLAIM = `
local base = ARGV[1]
local now = tonumber(ARGV[2])
local exp = redis.call('ZRANGEBYSCORE', base .. 'leased', '-inf', now, 'LIMIT', 0, 200)
for _, k in ipairs(exp) do
  redis.call('ZREM', base .. 'leased', k)
  redis.call('HDEL', base .. 'owner', k)
  if redis.call('LLEN', base .. 'q:' .. k) > 0 then redis.call('ZADD', base .. 'ready', now, k) end
end
local out = {}
local max = tonumber(ARGV[4])
if max > 0 then
  local keys = redis.call('ZRANGEBYSCORE', base .. 'ready', '-inf', now, 'LIMIT', 0, max)
  for _, k in ipairs(keys) do
    redis.call('ZREM', base .. 'ready', k)
    local q = base .. 'q:' .. k
    local id = redis.call('LINDEX', q, 0)
    while id and redis.call('HEXISTS', base .. 'jobs', id) == 0 do
      redis.call('LPOP', q)
      id = redis.call('LINDEX', q, 0)
    end
    if id then
      local job = redis.call('HGET', base .. 'jobs', id)
      local att = redis.call('HINCRBY', base .. 'att', id, 1)
      local err = redis.call('HGET', base .. 'err', id) or ''
      local prev = redis.call('HGET', base .. 'fly', id)
      redis.call('HSET', base .. 'fly', id, ARGV[5])
      redis.call('ZADD', base .. 'leased', now + tonumber(ARGV[3]), k)
      redis.call('HSET', base .. 'owner', k, ARGV[5])
      table.insert(out, k)
      table.insert(out, id)
      table.insert(out, job)
      table.insert(out, att)
      table.insert(out, err)
      table.insert(out, prev and '1' or '')
    end
  end
end
local first = redis.call('ZRANGE', base .. 'ready', 0, 0, 'WITHSCORES')
local nextDue = first[2] or ''
local depth = redis.call('HLEN', base .. 'jobs')
local retrying = redis.call('ZCOUNT', base .. 'ready', '(' .. now, '+inf')
local head = { nextDue, depth, retrying }
for _, v in ipairs(out) do table.insert(head, v) end
return head
`;

// ARGV: base, key, id, token, now → 1 when this call removed the job
const COMPLETE = `
local base = ARGV[1]
local q = base .. 'q:' .. ARGV[2]
local had = redis.call('HDEL', base .. 'jobs', ARGV[3])
redis.call('LREM', q, 1, ARGV[3])
redis.call('HDEL', base .. 'att', ARGV[3])
redis.call('HDEL', base .. 'err', ARGV[3])
redis.call('HDEL', base .. 'fly', ARGV[3])
if redis.call('HGET', base .. 'owner', ARGV[2]) == ARGV[4] then
  redis.call('HDEL', base .. 'owner', ARGV[2])
  redis.call('ZREM', base .. 'leased', ARGV[2])
  if redis.call('LLEN', q) > 0 then redis.call('ZADD', base .. 'ready', ARGV[5], ARGV[2]) end
end
return had
`;

// ARGV: base, key, id, token, nextAt, errJson → 1 when the lease was still ours
const RETRY = `
local base = ARGV[1]
if redis.call('HGET', base .. 'owner', ARGV[2]) ~= ARGV[4] then return 0 end
redis.call('HSET', base .. 'err', ARGV[3], ARGV[6])
redis.call('HDEL', base .. 'fly', ARGV[3])
redis.call('HDEL', base .. 'owner', ARGV[2])
redis.call('ZREM', base .. 'leased', ARGV[2])
redis.call('ZADD', base .. 'ready', ARGV[5], ARGV[2])
return 1
`;

// ARGV: base, expiry, token, key… → how many leases were still ours
const RENEW = `
local base = ARGV[1]
local n = 0
for i = 4, #ARGV do
  if redis.call('HGET', base .. 'owner', ARGV[i]) == ARGV[3] then
    redis.call('ZADD', base .. 'leased', 'XX', ARGV[2], ARGV[i])
    n = n + 1
  end
end
return n
`;

interface Scripts {
  wxcxObEnqueue(...a: (string | number)[]): Promise<number>;
  wxcxObClaim(...a: (string | number)[]): Promise<string[]>;
  wxcxObComplete(...a: (string | number)[]): Promise<number>;
  wxcxObRetry(...a: (string | number)[]): Promise<number>;
  wxcxObRenew(...a: (string | number)[]): Promise<number>;
}

const defined = new WeakSet<object>();

function scripts(store: RedisStore): Scripts {
  const c = store.client;
  if (!defined.has(c)) {
    c.defineCommand('wxcxObEnqueue', { numberOfKeys: 0, lua: ENQUEUE });
    c.defineCommand('wxcxObClaim', { numberOfKeys: 0, lua: CLAIM });
    c.defineCommand('wxcxObComplete', { numberOfKeys: 0, lua: COMPLETE });
    c.defineCommand('wxcxObRetry', { numberOfKeys: 0, lua: RETRY });
    c.defineCommand('wxcxObRenew', { numberOfKeys: 0, lua: RENEW });
    defined.add(c);
  }
  return c as unknown as Scripts;
}

interface Claimed<P> {
  key: string;
  job: OutboxJob<P>;
}

export interface RedisOutboxOptions {
  name: string;
  policy?: Partial<OutboxPolicy>;
  random?: () => number;
  stopTimeoutMs?: number;
  /** How often an idle instance looks for work others enqueued or retries that became due, ms (default 250). */
  pollMs?: number;
}

export class RedisOutboxEngine<P = unknown> {
  readonly name: string;
  policy: Required<OutboxPolicy>;
  private readonly random: () => number;
  private readonly stopTimeoutMs: number;
  private readonly pollMs: number;
  private readonly token = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 10)}`;
  private store: RedisStore | null = null;
  private storeError: Error | null = null;
  private readonly ready: Promise<void>;
  private base = '';
  private attached: {
    owner: object;
    attempt: Attempt<P>;
    onResult: (r: OutboxResult<P>) => void;
  } | null = null;
  private readonly inFlight = new Map<string, Promise<void>>(); // conversation → attempt
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private kicked = false;
  private renewTimer: NodeJS.Timeout | null = null;
  private counts = { delivered: 0, dead: 0, retries: 0 };
  private shared = { depth: 0, retrying: 0 };
  private lastError?: { at: number; message: string };

  constructor(store: Promise<RedisStore>, keyPrefix: string, opts: RedisOutboxOptions) {
    this.name = opts.name;
    this.policy = resolvePolicy(opts.policy);
    this.random = opts.random ?? Math.random;
    this.stopTimeoutMs = opts.stopTimeoutMs ?? 10_000;
    this.pollMs = opts.pollMs ?? 250;
    this.ready = store.then(
      (s) => {
        this.store = s;
        this.base = s.key(keyPrefix + opts.name + ':');
        scripts(s);
      },
      (err: unknown) => {
        this.storeError = err instanceof Error ? err : new Error(String(err));
      },
    );
  }

  setPolicy(p: Partial<OutboxPolicy>): void {
    this.policy = resolvePolicy(p);
  }

  private noteError(message: string): void {
    this.lastError = { at: Date.now(), message };
  }

  private async s(): Promise<{ store: RedisStore; sc: Scripts }> {
    await this.ready;
    if (!this.store) throw this.storeError ?? new Error('the Redis store is not open');
    return { store: this.store, sc: scripts(this.store) };
  }

  async enqueue(input: Pick<OutboxJob<P>, 'id' | 'key' | 'payload'>): Promise<boolean> {
    if (!input || typeof input.id !== 'string' || !input.id) throw new Error('outbox job has no id');
    if (typeof input.key !== 'string' || !input.key) throw new Error('outbox job has no ordering key');
    const { store, sc } = await this.s();
    const now = Date.now();
    const json = encodeJson({ id: input.id, key: input.key, payload: input.payload, enqueuedAt: now });
    const r = await store.run('accept a message into the outbox', () =>
      sc.wxcxObEnqueue(
        this.base,
        input.id,
        input.key,
        json,
        now,
        Math.max(1, Math.ceil(this.policy.dedupeMs)),
      ),
    );
    if (r === 1) this.kick();
    return r === 1;
  }

  attach(owner: object, attempt: Attempt<P>, onResult: (r: OutboxResult<P>) => void): void {
    this.attached = { owner, attempt, onResult };
    if (!this.loop) this.loop = this.run();
    if (!this.renewTimer) {
      this.renewTimer = setInterval(
        () => void this.renew(),
        Math.max(50, Math.floor(this.policy.leaseMs / 3)),
      );
    }
    this.kick();
  }

  async detach(owner: object): Promise<void> {
    if (this.attached?.owner !== owner) return;
    this.attached = null;
    this.kick();
    const loop = this.loop;
    const pending = [...this.inFlight.values()];
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([loop, ...pending]),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.stopTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!this.attached && this.inFlight.size === 0 && this.renewTimer) {
      clearInterval(this.renewTimer);
      this.renewTimer = null;
    }
  }

  private kick(): void {
    this.kicked = true;
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private sleep(ms: number): Promise<void> {
    if (this.kicked) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (this.attached) {
      this.kicked = false;
      let wait = this.pollMs;
      try {
        const free = this.policy.concurrency - this.inFlight.size;
        const { store, sc } = await this.s();
        const now = Date.now();
        const r = await store.run('claim outbox work', () =>
          sc.wxcxObClaim(this.base, now, Math.ceil(this.policy.leaseMs), Math.max(0, free), this.token),
        );
        failures = 0;
        const nextDue = r[0] ? Number(r[0]) : NaN;
        this.shared = { depth: Number(r[1]) || 0, retrying: Number(r[2]) || 0 };
        const claimed: Claimed<P>[] = [];
        for (let i = 3; i + 5 < r.length; i += 6) {
          try {
            const j = decodeJson<{ id: string; key: string; payload: P; enqueuedAt: number }>(r[i + 2]);
            const job: OutboxJob<P> = {
              id: r[i + 1],
              key: r[i],
              payload: j.payload,
              attempts: Number(r[i + 3]),
              enqueuedAt: Number(j.enqueuedAt),
            };
            if (r[i + 4]) job.lastError = decodeJson<DeliveryError>(r[i + 4]);
            if (r[i + 5]) job.interrupted = true;
            claimed.push({ key: r[i], job });
          } catch (err) {
            this.noteError(`outbox "${this.name}": a queued job could not be read: ${errorText(err)}`);
          }
        }
        for (const c of claimed) {
          const p = this.attemptOne(c).catch((err: unknown) =>
            this.noteError(`outbox "${this.name}": ${errorText(err)}`),
          );
          this.inFlight.set(c.key, p);
          void p.finally(() => {
            if (this.inFlight.get(c.key) === p) this.inFlight.delete(c.key);
            this.kick();
          });
        }
        // Sleep until the next retry is due or the poll interval is up; a finished attempt or a local enqueue
        // wakes the loop early. With no free slot, only a finished attempt can give work a place.
        if (Number.isFinite(nextDue)) wait = Math.min(wait, Math.max(0, nextDue - Date.now()));
        if (this.policy.concurrency - this.inFlight.size <= 0) wait = this.pollMs;
      } catch (err) {
        failures++;
        this.noteError(errorText(err));
        wait = Math.min(5000, 100 * 2 ** Math.min(failures, 6));
      }
      if (!this.attached) break;
      await this.sleep(wait);
    }
    this.loop = null;
  }

  private async renew(): Promise<void> {
    const keys = [...this.inFlight.keys()];
    if (!keys.length || !this.store) return;
    const { store, sc } = await this.s();
    try {
      await store.run('renew outbox leases', () =>
        sc.wxcxObRenew(this.base, Date.now() + Math.ceil(this.policy.leaseMs), this.token, ...keys),
      );
    } catch (err) {
      this.noteError(errorText(err));
    }
  }

  private async attemptOne(c: Claimed<P>): Promise<void> {
    const policy = this.policy;
    const job = c.job;
    if (Date.now() - job.enqueuedAt > policy.maxAgeMs) {
      await this.end(c, 'dead', 'expired', expired(job, policy.maxAgeMs));
      return;
    }
    if (job.attempts > policy.maxAttempts) {
      await this.end(c, 'dead', 'attempts', {
        kind: 'retry',
        error: job.lastError ?? {
          code: 'interrupted',
          message: `no outcome recorded for ${job.attempts - 1} attempts (the process stopped during them)`,
          retryable: true,
        },
      });
      return;
    }
    const outcome = await this.call(job);
    if (outcome.kind === 'delivered') {
      await this.end(c, 'delivered', 'delivered', outcome);
      return;
    }
    this.noteError(`${String(outcome.error.code)}: ${outcome.error.message}`);
    if (outcome.kind === 'failed') {
      await this.end(c, 'dead', 'refused', outcome);
      return;
    }
    this.counts.retries++;
    if (job.attempts >= policy.maxAttempts) {
      await this.end(c, 'dead', 'attempts', outcome);
      return;
    }
    const at = Date.now() + retryDelay(job.attempts, policy, this.random, outcome.retryAfterMs);
    if (at - job.enqueuedAt > policy.maxAgeMs) {
      await this.end(c, 'dead', 'expired', outcome);
      return;
    }
    const { store, sc } = await this.s();
    await store.run('schedule an outbox retry', () =>
      sc.wxcxObRetry(this.base, c.key, job.id, this.token, at, encodeJson(outcome.error)),
    );
  }

  private call(job: OutboxJob<P>): Promise<AttemptOutcome> {
    return runAttempt(this.attached?.attempt, job, this.policy.attemptTimeoutMs);
  }

  private async end(
    c: Claimed<P>,
    status: 'delivered' | 'dead',
    reason: NonNullable<OutboxResult['reason']>,
    outcome: AttemptOutcome,
  ): Promise<void> {
    const { store, sc } = await this.s();
    const removed = await store.run('finish an outbox job', () =>
      sc.wxcxObComplete(this.base, c.key, c.job.id, this.token, Date.now()),
    );
    if (removed !== 1) return; // another instance finished it after our lease expired
    if (status === 'delivered') this.counts.delivered++;
    else this.counts.dead++;
    const onResult = this.attached?.onResult;
    if (!onResult) return;
    try {
      onResult({ job: c.job, status, outcome, reason });
    } catch (err) {
      this.noteError(`outbox "${this.name}" result handler failed: ${errorText(err)}`);
    }
  }

  /** Depth and retrying are the shared queue's (as of the last poll); the counters are this instance's. */
  stats(): OutboxStats {
    const s: OutboxStats = {
      depth: this.shared.depth,
      retrying: this.shared.retrying,
      delivered: this.counts.delivered,
      dead: this.counts.dead,
      retries: this.counts.retries,
      inFlight: this.inFlight.size,
    };
    if (this.lastError) s.lastError = { ...this.lastError };
    return s;
  }
}

function expired(job: OutboxJob<unknown>, maxAgeMs: number): AttemptOutcome {
  if (job.lastError) return { kind: 'retry', error: job.lastError };
  return {
    kind: 'failed',
    error: {
      code: 'expired',
      message: `not delivered within ${Math.round(maxAgeMs / 1000)} s of being accepted`,
      retryable: false,
    },
  };
}
