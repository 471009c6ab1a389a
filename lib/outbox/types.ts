/**
 * The outbox both `-out` nodes deliver through: a message is persisted before it is attempted, retried with
 * backoff and jitter (honouring Retry-After), kept in order per conversation, and ends delivered or dead-lettered.
 *
 * The protocol code supplies one function, `Attempt`, that tries a job once and classifies the outcome; the outbox
 * owns persistence, ordering, timing and the end of each job.
 */
import type { DeliveryError } from '../conversation';

export interface OutboxJob<P = unknown> {
  /** Stable id: enqueueing the same id twice is a no-op (a retried input cannot make a second send). */
  id: string;
  /** Ordering key: jobs with one key are attempted one at a time, in enqueue order (the conversation). */
  key: string;
  /** JSON-serialisable; Buffers are kept (as base64 in persistent backends). */
  payload: P;
  /** Attempts made so far (0 before the first). */
  attempts: number;
  /** Epoch ms when it was accepted. */
  enqueuedAt: number;
  /** The error of the previous attempt, when there was one. */
  lastError?: DeliveryError;
  /**
   * True when an earlier attempt was started but its outcome was never recorded (the process stopped during
   * it): the far side may already have the message. With an idempotency key (CXone `idOnExternalPlatform`) that
   * is harmless; without one (WeChat) a repeat is possible. See docs/adr (nothing lost).
   */
  interrupted?: boolean;
}

export type AttemptOutcome =
  | { kind: 'delivered'; messageId?: string; detail?: unknown }
  /** Worth trying again: network, timeout, 5xx, 429, WeChat -1 … */
  | { kind: 'retry'; error: DeliveryError; retryAfterMs?: number }
  /** Refused for good: never retried, dead-lettered at once. */
  | { kind: 'failed'; error: DeliveryError; detail?: unknown };

export type Attempt<P = unknown> = (job: OutboxJob<P>) => Promise<AttemptOutcome>;

export interface OutboxPolicy {
  /** Give up after this many attempts (default 8). */
  maxAttempts: number;
  /** Give up when the job is older than this, ms (default 24 h). */
  maxAgeMs: number;
  /** First retry delay, ms (default 1 s); doubles each time, with equal jitter (backoff.ts). */
  baseDelayMs: number;
  /** Longest delay between attempts, ms (default 5 min). */
  maxDelayMs: number;
  /** Conversations attempted at once (default 64). */
  concurrency: number;
  /** An attempt taking longer than this counts as a retryable timeout, ms (default 60 s). */
  attemptTimeoutMs?: number;
  /** How long an accepted id is remembered so that enqueueing it again is a no-op, ms (default 24 h). */
  dedupeMs?: number;
  /** Redis: how long a claim on a conversation lasts without renewal, ms (default 30 s). */
  leaseMs?: number;
}

export interface OutboxResult<P = unknown> {
  job: OutboxJob<P>;
  /** 'delivered', or 'dead' (refused for good, or out of attempts/time). */
  status: 'delivered' | 'dead';
  /**
   * The last outcome. For 'dead' it is `failed` (refused for good), or the last `retry` when the outbox gave up,
   * or a synthetic `failed` with code 'expired' when the job aged out before an attempt.
   */
  outcome: AttemptOutcome;
  /** Why it ended: delivered, refused (a `failed` outcome), attempts (maxAttempts reached), expired (maxAgeMs). */
  reason?: 'delivered' | 'refused' | 'attempts' | 'expired';
}

export interface OutboxStats {
  /** Jobs accepted and not yet finished. */
  depth: number;
  /** Jobs waiting for a retry. */
  retrying: number;
  delivered: number;
  dead: number;
  retries: number;
  lastError?: { at: number; message: string };
  /** Attempts in progress. */
  inFlight?: number;
  /** Age of the oldest job not yet finished, ms (0 when empty). */
  oldestAgeMs?: number;
}

/** What `enqueue` takes. */
export type EnqueueInput<P = unknown> = Pick<OutboxJob<P>, 'id' | 'key' | 'payload'> & {
  /**
   * The inbound journal reference the message carries (`msg._wxcx.journal`), if any. The in-process engine on the
   * file store then holds that entry as the job's durable record instead of writing the job (ADR 0018): the entry
   * is completed when the job ends, and `completeJournal` leaves it alone meanwhile. Other engines ignore it.
   */
  journal?: string;
};

export interface Outbox<P = unknown> {
  /**
   * Persists the job and schedules it. Resolves once the job is durable (true), or false when a job with that id
   * was already accepted.
   */
  enqueue(job: EnqueueInput<P>): Promise<boolean>;
  /**
   * Says that the job's source has durably recorded that the job is here (the inbound journal completed its
   * entry), so nothing will enqueue it again: when it ends, its id need not be remembered for the dedupe window.
   * In-process engines then keep no mark (memory: a mark per message for 24 h was most of the heap over a long
   * run); the Redis one ignores it (its marks live in Redis). Without it, ids are remembered for `dedupeMs`.
   */
  release(id: string): void;
  /** Starts delivering (also jobs persisted by an earlier run) with `attempt`; results go to `onResult`. */
  start(attempt: Attempt<P>, onResult: (r: OutboxResult<P>) => void): void;
  /** Stops taking new attempts and waits for those in flight (bounded); persisted jobs stay for the next start. */
  stop(): Promise<void>;
  stats(): OutboxStats;
}
