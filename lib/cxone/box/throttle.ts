/**
 * Failure throttling for the token endpoint: a sliding window of failure times per key (a client id, a remote
 * address). When a key has `limit` failures inside the last `windowMs`, further requests for it are refused until
 * the oldest of those failures leaves the window. No timers: old entries are pruned when touched, and the number of
 * keys is bounded (the least recently failed key is dropped first), so a flood of made-up client ids cannot grow
 * memory without bound.
 */
export interface ThrottleOptions {
  /** Failures allowed inside the window. */
  limit: number;
  windowMs: number;
  /** Most keys tracked at once (default 10 000). */
  maxKeys?: number;
  now?: () => number;
}

export class FailureThrottle {
  private readonly hits = new Map<string, number[]>();
  private readonly maxKeys: number;
  private readonly now: () => number;

  constructor(private readonly opts: ThrottleOptions) {
    this.maxKeys = opts.maxKeys ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  private live(key: string, now: number): number[] {
    const list = this.hits.get(key);
    if (!list) return [];
    const from = now - this.opts.windowMs;
    let i = 0;
    while (i < list.length && list[i] <= from) i++;
    if (i > 0) list.splice(0, i);
    if (list.length === 0) this.hits.delete(key);
    return list;
  }

  /** Milliseconds until `key` may try again; 0 when it is not throttled. */
  retryAfterMs(key: string): number {
    const now = this.now();
    const list = this.live(key, now);
    if (list.length < this.opts.limit) return 0;
    // The (length - limit + 1)-th newest failure must leave the window before one more is allowed.
    const oldestThatCounts = list[list.length - this.opts.limit];
    return Math.max(1, oldestThatCounts + this.opts.windowMs - now);
  }

  /** Records a failure for `key`. */
  fail(key: string): void {
    const now = this.now();
    const list = this.live(key, now);
    if (list.length === 0) {
      if (this.hits.size >= this.maxKeys) {
        const first = this.hits.keys().next();
        if (!first.done) this.hits.delete(first.value);
      }
      this.hits.set(key, [now]);
      return;
    }
    list.push(now);
    // Keep only what can matter; a key hammered for hours holds `limit` entries, not thousands.
    if (list.length > this.opts.limit) list.splice(0, list.length - this.opts.limit);
    // Move to the end of the Map's order: the least recently failed key is evicted first.
    this.hits.delete(key);
    this.hits.set(key, list);
  }

  /** Forgets `key` (after a success, for instance). */
  clear(key: string): void {
    this.hits.delete(key);
  }

  /** How many keys are tracked (for tests). */
  get size(): number {
    return this.hits.size;
  }
}
