/** Retry timing shared by every outbox backend. */
import type { OutboxPolicy } from './types';

export const DEFAULT_POLICY: Required<OutboxPolicy> = {
  maxAttempts: 8,
  maxAgeMs: 24 * 60 * 60 * 1000,
  baseDelayMs: 1000,
  maxDelayMs: 5 * 60 * 1000,
  concurrency: 256,
  attemptTimeoutMs: 60 * 1000,
  dedupeMs: 24 * 60 * 60 * 1000,
  leaseMs: 30 * 1000,
};

/** The policy with defaults filled in and nonsense (negative, NaN, zero concurrency) replaced by defaults. */
export function resolvePolicy(p: Partial<OutboxPolicy> | undefined): Required<OutboxPolicy> {
  const out = { ...DEFAULT_POLICY };
  if (!p) return out;
  for (const k of Object.keys(DEFAULT_POLICY) as (keyof OutboxPolicy)[]) {
    const v = p[k];
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0) out[k] = v;
  }
  out.maxAttempts = Math.max(1, Math.floor(out.maxAttempts));
  out.concurrency = Math.max(1, Math.floor(out.concurrency));
  out.leaseMs = Math.max(100, out.leaseMs);
  return out;
}

/**
 * Delay before the next attempt after `attempts` attempts: "equal jitter", a uniform draw in [cap/2, cap) where
 * cap = min(maxDelay, base·2^(attempts-1)), never less than the far side's Retry-After.
 *
 * Not "full jitter" ([0, cap)): that spreads retries just as well, but its draws can all be near zero, so a few
 * seconds of outage could use up every attempt of some unlucky conversation and dead-letter it. With half of each
 * step fixed, the attempts of the default policy (8, base 1 s) span at least 63.5 s, so an outage shorter than
 * that never dead-letters a message.
 */
export function retryDelay(
  attempts: number,
  policy: Pick<OutboxPolicy, 'baseDelayMs' | 'maxDelayMs'>,
  random: () => number = Math.random,
  retryAfterMs?: number,
): number {
  const exp = Math.min(30, Math.max(0, attempts - 1));
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** exp);
  const jittered = Math.floor(cap / 2 + random() * (cap / 2));
  const floor =
    typeof retryAfterMs === 'number' && Number.isFinite(retryAfterMs) && retryAfterMs > 0 ? retryAfterMs : 0;
  return Math.max(jittered, Math.ceil(floor));
}

/** The shortest time `maxAttempts` attempts can span (no Retry-After): how long an outage the policy rides out. */
export function minRetrySpan(
  policy: Pick<OutboxPolicy, 'baseDelayMs' | 'maxDelayMs' | 'maxAttempts'>,
): number {
  let total = 0;
  for (let n = 1; n < policy.maxAttempts; n++) total += retryDelay(n, policy, () => 0);
  return total;
}
