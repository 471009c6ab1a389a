/**
 * The in-process outbox engine, used with the memory store (nothing persisted) and the file store (every step
 * persisted through a `LocalPersistence` before it counts). One engine per queue name and store in a runtime:
 * `createOutbox` hands out handles, so the node that replaces a closed one on redeploy gets the same queue, and an
 * attempt still in flight during the redeploy reports to the new node.
 *
 * Scheduling: one FIFO per ordering key (the conversation). A key is attempted one job at a time, head first; a
 * head waiting for its retry holds back the jobs behind it. Keys that are due wait in a ready set (insertion
 * order, so keys take turns) and at most `concurrency` keys are attempted at once.
 */
import type { DeliveryError } from '../conversation';
import { resolvePolicy, retryDelay } from './backoff';
import type { JournalHold } from '../journal';
import type {
  Attempt,
  AttemptOutcome,
  EnqueueInput,
  OutboxJob,
  OutboxPolicy,
  OutboxResult,
  OutboxStats,
} from './types';

/** A job as the engine keeps it. */
export interface LocalJob<P = unknown> extends OutboxJob<P> {
  /** Enqueue order across restarts (FIFO per key is by `seq`). */
  seq: number;
  /** Epoch ms before which the job is not attempted. */
  nextAt: number;
  /** True while an attempt is recorded as started and not finished (persisted before the attempt). */
  inFlight?: boolean;
  /** The inbound journal reference given to `enqueue` (see `EnqueueInput.journal`). */
  journal?: string;
  /** The journal entry that is this job's durable record, when the persistence holds one (never persisted). */
  hold?: JournalHold;
}

/** Where a durable engine records each step; every promise resolves once the step is durable. */
export interface LocalPersistence<P = unknown> {
  /** Jobs not finished by an earlier run, any order. */
  load(): Promise<LocalJob<P>[]>;
  /**
   * Records a new job unless its id was accepted within `dedupeMs`; false when it was. A job whose inbound journal
   * entry can stand for it (`maxAgeMs`: how long the job may live) gets `hold` set instead of a record.
   */
  add(job: LocalJob<P>, dedupeMs: number, maxAgeMs: number): Promise<boolean>;
  /** Records that an attempt starts (attempts already incremented, `inFlight` set). */
  begin(job: LocalJob<P>): Promise<void>;
  /** Records the retry schedule (`nextAt`, `lastError`). */
  reschedule(job: LocalJob<P>): Promise<void>;
  /** Removes the job, remembering its id for `dedupeMs` (0: not at all). */
  finish(job: LocalJob<P>, dedupeMs: number): Promise<void>;
}

export interface LocalOutboxOptions<P = unknown> {
  name: string;
  policy?: Partial<OutboxPolicy>;
  persistence?: LocalPersistence<P>;
  /** Randomness for the jitter (tests). */
  random?: () => number;
  /** How long `stop()` waits for attempts in flight, ms (default 10 s, below Node-RED's 15 s close timeout). */
  stopTimeoutMs?: number;
  /** Most ids remembered for dedupe without persistence (oldest forgotten first; default 1,000,000). */
  maxRemembered?: number;
}

interface Attached<P> {
  owner: object;
  attempt: Attempt<P>;
  onResult: (r: OutboxResult<P>) => void;
}

const MAX_TIMER = 2 ** 31 - 1;
/** Attempts started per turn of the event loop (see `pump`). */
const START_PER_TURN = 8;

export function errorText(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return m.length > 300 ? m.slice(0, 300) + '…' : m;
}

function isOutcome(o: unknown): o is AttemptOutcome {
  if (!o || typeof o !== 'object') return false;
  const k = (o as { kind?: unknown }).kind;
  if (k === 'delivered') return true;
  if (k !== 'retry' && k !== 'failed') return false;
  const e = (o as { error?: unknown }).error;
  return !!e && typeof e === 'object' && typeof (e as DeliveryError).message === 'string';
}

/**
 * Calls `attempt` for `job` and turns whatever happens into an outcome (both engines): no attempt function (the
 * outbox was stopped), no outcome within `timeoutMs`, something that is not an outcome, or an exception are all
 * retryable.
 */
export async function runAttempt<P>(
  attempt: Attempt<P> | undefined,
  job: OutboxJob<P>,
  timeoutMs: number,
): Promise<AttemptOutcome> {
  if (!attempt) {
    return { kind: 'retry', error: { code: 'stopped', message: 'the outbox was stopped', retryable: true } };
  }
  let timer: NodeJS.Timeout | undefined;
  try {
    const r = await Promise.race([
      attempt(job),
      new Promise<AttemptOutcome>((resolve) => {
        timer = setTimeout(
          () =>
            resolve({
              kind: 'retry',
              error: { code: 'timeout', message: `no outcome within ${timeoutMs} ms`, retryable: true },
            }),
          timeoutMs,
        );
      }),
    ]);
    if (!isOutcome(r)) {
      return {
        kind: 'retry',
        error: { code: 'internal', message: 'the attempt returned no outcome', retryable: true },
      };
    }
    return r;
  } catch (err) {
    return { kind: 'retry', error: { code: 'exception', message: errorText(err), retryable: true } };
  } finally {
    clearTimeout(timer);
  }
}

/** What the attempt function gets: the job's public fields (payload by reference, not copied). */
function publicJob<P>(j: LocalJob<P>): OutboxJob<P> {
  const o: OutboxJob<P> = {
    id: j.id,
    key: j.key,
    payload: j.payload,
    attempts: j.attempts,
    enqueuedAt: j.enqueuedAt,
  };
  if (j.lastError) o.lastError = j.lastError;
  if (j.interrupted) o.interrupted = true;
  return o;
}

export class LocalOutboxEngine<P = unknown> {
  readonly name: string;
  policy: Required<OutboxPolicy>;
  private readonly persistence?: LocalPersistence<P>;
  private readonly random: () => number;
  private readonly stopTimeoutMs: number;
  private readonly maxRemembered: number;

  private readonly queues = new Map<string, LocalJob<P>[]>();
  private readonly ids = new Set<string>(); // ids of unfinished jobs, and of adds being persisted
  private readonly seen = new Map<string, number>(); // memory dedupe: id → forget after (epoch ms)
  private readonly ready = new Set<string>();
  /** Ids of unfinished jobs whose source will not enqueue them again (`release`): no dedupe mark when they end. */
  private readonly released = new Set<string>();
  private readonly busy = new Set<string>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly inFlight = new Set<Promise<void>>();
  private attached: Attached<P> | null = null;
  private loaded: Promise<void> | null;
  private loadError: Error | null = null;
  private seq: number;
  private depth = 0;
  private counts = { delivered: 0, dead: 0, retries: 0 };
  private lastError?: { at: number; message: string };

  constructor(opts: LocalOutboxOptions<P>) {
    this.name = opts.name;
    this.policy = resolvePolicy(opts.policy);
    this.persistence = opts.persistence;
    this.random = opts.random ?? Math.random;
    this.stopTimeoutMs = opts.stopTimeoutMs ?? 10_000;
    this.maxRemembered = opts.maxRemembered ?? 1_000_000;
    this.seq = Date.now() * 1000;
    this.loaded = this.persistence ? this.load(this.persistence) : null;
  }

  /** Takes a new policy (a redeployed node with changed settings); applies to the next attempts. */
  setPolicy(p: Partial<OutboxPolicy>): void {
    this.policy = resolvePolicy(p);
    this.pump();
  }

  private async load(persistence: LocalPersistence<P>): Promise<void> {
    try {
      const jobs = await persistence.load();
      jobs.sort((a, b) => a.seq - b.seq);
      for (const j of jobs) {
        if (this.ids.has(j.id)) continue;
        if (j.inFlight) {
          // Started before the process stopped; its outcome was never recorded.
          j.inFlight = false;
          j.interrupted = true;
        }
        this.insert(j);
        if (j.seq >= this.seq) this.seq = j.seq + 1;
      }
    } catch (err) {
      this.loadError = new Error(
        `outbox "${this.name}" could not read its persisted jobs: ${errorText(err)}`,
      );
      this.noteError(this.loadError.message);
    } finally {
      this.loaded = null;
    }
    for (const key of this.queues.keys()) this.schedule(key);
    this.pump();
  }

  private insert(j: LocalJob<P>): void {
    this.ids.add(j.id);
    let q = this.queues.get(j.key);
    if (!q) {
      q = [];
      this.queues.set(j.key, q);
    }
    q.push(j);
    this.depth++;
    if (q.length === 1) this.schedule(j.key);
  }

  private remember(id: string): boolean {
    const now = Date.now();
    // Insertion order is expiry order (one dedupe window), so expired ids are at the front.
    for (const [k, until] of this.seen) {
      if (until > now && this.seen.size < this.maxRemembered) break;
      this.seen.delete(k);
    }
    const until = this.seen.get(id);
    if (until !== undefined && until > now) return false;
    this.seen.set(id, now + (this.policy.dedupeMs ?? 0));
    return true;
  }

  enqueue(input: EnqueueInput<P>): Promise<boolean> {
    if (!input || typeof input.id !== 'string' || !input.id)
      return Promise.reject(new Error('outbox job has no id'));
    if (typeof input.key !== 'string' || !input.key)
      return Promise.reject(new Error('outbox job has no ordering key'));
    if (this.loadError) return Promise.reject(this.loadError);
    const now = Date.now();
    const job: LocalJob<P> = {
      id: input.id,
      key: input.key,
      payload: input.payload,
      attempts: 0,
      enqueuedAt: now,
      seq: this.seq++,
      nextAt: now,
    };
    if (typeof input.journal === 'string') job.journal = input.journal;
    if (!this.persistence) {
      if (this.ids.has(job.id) || !this.remember(job.id)) return Promise.resolve(false);
      this.insert(job);
      this.pump();
      return Promise.resolve(true);
    }
    return this.enqueuePersisted(job, this.persistence);
  }

  private async enqueuePersisted(job: LocalJob<P>, persistence: LocalPersistence<P>): Promise<boolean> {
    if (this.loaded) await this.loaded;
    if (this.loadError) throw this.loadError;
    if (this.ids.has(job.id)) return false;
    this.ids.add(job.id);
    let ok: boolean;
    try {
      ok = await persistence.add(job, this.policy.dedupeMs, this.policy.maxAgeMs);
    } catch (err) {
      this.ids.delete(job.id);
      throw err;
    }
    this.ids.delete(job.id);
    if (!ok) return false;
    this.insert(job);
    this.pump();
    return true;
  }

  release(id: string): void {
    if (this.ids.has(id)) this.released.add(id);
  }

  attach(owner: object, attempt: Attempt<P>, onResult: (r: OutboxResult<P>) => void): void {
    this.attached = { owner, attempt, onResult };
    for (const key of this.queues.keys()) this.schedule(key);
    this.pump();
  }

  async detach(owner: object): Promise<void> {
    if (this.attached?.owner !== owner) return;
    this.attached = null;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    const pending = [...this.inFlight];
    if (!pending.length) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled(pending),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.stopTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  /** Puts the key's head in the ready set when due, or sets a timer for when it will be. */
  private schedule(key: string): void {
    if (this.busy.has(key) || this.timers.has(key)) return;
    const q = this.queues.get(key);
    if (!q || !q.length) return;
    const wait = q[0].nextAt - Date.now();
    if (wait <= 0) {
      this.ready.add(key);
      return;
    }
    if (!this.attached) return; // re-scheduled on attach
    const t = setTimeout(
      () => {
        this.timers.delete(key);
        this.schedule(key);
        this.pump();
      },
      Math.min(wait, MAX_TIMER),
    );
    this.timers.set(key, t);
  }

  private pumpLater = false;
  private startedThisTurn = 0;

  private nextTurn(): void {
    if (this.pumpLater) return;
    this.pumpLater = true;
    setImmediate(() => {
      this.pumpLater = false;
      this.startedThisTurn = 0;
      this.pump();
    });
  }

  /**
   * Starts attempts for ready conversations, up to `concurrency` at once, at most START_PER_TURN per turn of the
   * event loop (then again on the next turn). Started all at once, 64 attempts went out together, their answers
   * came back together, and each such burst held the event loop for tens of milliseconds: the acknowledgements of
   * the `-in` nodes waited behind it.
   *
   * Under saturation this gives acknowledgements priority: with turns of ~30 ms full of incoming requests, 8 starts
   * a turn carry a few hundred deliveries a second, and the rest of the backlog (on disk with the file store) goes
   * out once the burst ends. Acknowledging is where a push stops being at risk (WeChat gives up after its retries),
   * so that is the right way round. Tried and measured (docs/performance.md): one more start per job enqueued in the
   * turn, so that deliveries keep pace; acknowledgements fell by a fifth and delivered/s did not rise (the CPU is
   * the limit either way).
   */
  private pump(): void {
    if (!this.attached || this.loaded) return;
    const limit = this.policy.concurrency;
    for (const key of this.ready) {
      if (this.busy.size >= limit) break;
      if (this.startedThisTurn >= START_PER_TURN) {
        this.nextTurn();
        break;
      }
      // The budget is per turn: reset it on the next one (also when nothing more is waiting then).
      if (this.startedThisTurn++ === 0) this.nextTurn();
      this.ready.delete(key);
      const q = this.queues.get(key);
      if (!q || !q.length || this.busy.has(key)) continue;
      this.busy.add(key);
      const p: Promise<void> = this.run(q[0]).then(
        () => this.settle(key, p),
        (err: unknown) => {
          this.noteError(`outbox "${this.name}": ${errorText(err)}`);
          this.settle(key, p);
        },
      );
      this.inFlight.add(p);
    }
  }

  private settle(key: string, p: Promise<void>): void {
    this.inFlight.delete(p);
    this.busy.delete(key);
    this.schedule(key);
    this.pump();
  }

  private noteError(message: string): void {
    this.lastError = { at: Date.now(), message };
  }

  private async run(job: LocalJob<P>): Promise<void> {
    const policy = this.policy;
    const now = Date.now();
    if (now - job.enqueuedAt > policy.maxAgeMs) {
      await this.end(job, 'dead', 'expired', expiredOutcome(job, policy.maxAgeMs));
      return;
    }
    if (job.attempts >= policy.maxAttempts) {
      // Only after attempts interrupted by a stop: the outcome of the last one is unknown.
      await this.end(job, 'dead', 'attempts', {
        kind: 'retry',
        error: job.lastError ?? {
          code: 'interrupted',
          message: `no outcome recorded for ${job.attempts} attempts (the process stopped during them)`,
          retryable: true,
        },
      });
      return;
    }
    job.attempts++;
    job.inFlight = true;
    if (this.persistence) {
      try {
        await this.persistence.begin(job);
      } catch (err) {
        job.attempts--;
        job.inFlight = false;
        job.nextAt = Date.now() + retryDelay(1, policy, this.random);
        throw err;
      }
    }
    const outcome = await this.callAttempt(job);
    job.inFlight = false;
    job.interrupted = false;
    if (outcome.kind === 'delivered') {
      await this.end(job, 'delivered', 'delivered', outcome);
      return;
    }
    this.noteError(`${String(outcome.error.code)}: ${outcome.error.message}`);
    if (outcome.kind === 'failed') {
      await this.end(job, 'dead', 'refused', outcome);
      return;
    }
    this.counts.retries++;
    job.lastError = outcome.error;
    if (job.attempts >= policy.maxAttempts) {
      await this.end(job, 'dead', 'attempts', outcome);
      return;
    }
    const delay = retryDelay(job.attempts, policy, this.random, outcome.retryAfterMs);
    const at = Date.now() + delay;
    if (at - job.enqueuedAt > policy.maxAgeMs) {
      await this.end(job, 'dead', 'expired', outcome);
      return;
    }
    job.nextAt = at;
    if (this.persistence) {
      try {
        await this.persistence.reschedule(job);
      } catch (err) {
        this.noteError(`outbox "${this.name}" could not record the retry of ${job.id}: ${errorText(err)}`);
      }
    }
  }

  private callAttempt(job: LocalJob<P>): Promise<AttemptOutcome> {
    return runAttempt(this.attached?.attempt, publicJob(job), this.policy.attemptTimeoutMs);
  }

  private async end(
    job: LocalJob<P>,
    status: 'delivered' | 'dead',
    reason: NonNullable<OutboxResult['reason']>,
    outcome: AttemptOutcome,
  ): Promise<void> {
    const released = this.released.delete(job.id);
    if (released) this.seen.delete(job.id);
    if (this.persistence) {
      try {
        await this.persistence.finish(job, released ? 0 : this.policy.dedupeMs);
      } catch (err) {
        // The outcome stands: trying again now would send twice. The record on disk still says "in flight", so
        // after a restart the job is attempted once more, flagged interrupted (at-least-once).
        this.noteError(`outbox "${this.name}" could not record the end of ${job.id}: ${errorText(err)}`);
      }
    }
    const q = this.queues.get(job.key);
    if (q && q[0] === job) q.shift();
    if (q && !q.length) this.queues.delete(job.key);
    this.ids.delete(job.id);
    this.depth--;
    if (status === 'delivered') this.counts.delivered++;
    else this.counts.dead++;
    const onResult = this.attached?.onResult;
    if (!onResult) return;
    try {
      onResult({ job: publicJob(job), status, outcome, reason });
    } catch (err) {
      this.noteError(`outbox "${this.name}" result handler failed: ${errorText(err)}`);
    }
  }

  /** `retrying` and the oldest job need a pass over every conversation: done at most every STATS_SCAN_MS. */
  private scanned: { at: number; depth: number; retrying: number; oldest: number } | null = null;

  /**
   * Cheap enough to call per message (nodes draw their status from it): depth, in-flight and the counters are
   * live; `retrying` and `oldestAgeMs` come from a scan of the conversations at most STATS_SCAN_MS old (a scan
   * is O(conversations), which per message made a backlog of thousands quadratic).
   */
  stats(): OutboxStats {
    const now = Date.now();
    let sc = this.scanned;
    if (!sc || now - sc.at >= STATS_SCAN_MS || now < sc.at || (sc.depth === 0) !== (this.depth === 0)) {
      let retrying = 0;
      let oldest = Infinity;
      for (const [key, q] of this.queues) {
        const head = q[0];
        if (!head) continue;
        if (head.enqueuedAt < oldest) oldest = head.enqueuedAt;
        if (head.attempts > 0 && !this.busy.has(key)) retrying++;
      }
      sc = this.scanned = { at: now, depth: this.depth, retrying, oldest };
    }
    const retrying = this.depth === 0 ? 0 : sc.retrying;
    const oldest = this.depth === 0 ? Infinity : sc.oldest;
    const s: OutboxStats = {
      depth: this.depth,
      retrying,
      delivered: this.counts.delivered,
      dead: this.counts.dead,
      retries: this.counts.retries,
      inFlight: this.busy.size,
      oldestAgeMs: oldest === Infinity ? 0 : Math.max(0, Date.now() - oldest),
    };
    if (this.lastError) s.lastError = { ...this.lastError };
    return s;
  }
}

/** How stale `retrying` and `oldestAgeMs` of `stats()` may be, ms. */
const STATS_SCAN_MS = 250;

function expiredOutcome(job: LocalJob<unknown>, maxAgeMs: number): AttemptOutcome {
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
