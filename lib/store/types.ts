/**
 * One store interface behind dedupe, token caches, the outbox and conversation state. Backends: memory, file
 * (the default: survives a restart and a SIGKILL), Redis (several Node-RED instances).
 *
 * Every operation is atomic with respect to every other process that shares the same backend.
 */
export interface Store {
  readonly kind: 'memory' | 'file' | 'redis';
  /**
   * Sets `key` only when absent; true when this call set it (dedupe: Redis `SET NX PX`). `ttlMs` may be
   * `Infinity` for a key that never expires.
   */
  setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean>;
  get(key: string): Promise<string | undefined>;
  /** Sets `key`; with `ttlMs` it expires after that many milliseconds. */
  set(key: string, value: string, ttlMs?: number): Promise<void>;
  delete(key: string): Promise<void>;
  /** Deletes `key` only when its value is still `expected`; true when it did. */
  deleteIfEquals(key: string, expected: string): Promise<boolean>;
  /**
   * A lock all instances respect, held for at most `ttlMs`. Resolves to a release function, or null when someone
   * else holds it.
   */
  tryLock(key: string, ttlMs: number): Promise<(() => Promise<void>) | null>;
  /**
   * Every live key that starts with `prefix`, with its value, in no particular order. For recovery at start and
   * for admin pages, not for hot paths (on Redis it is a SCAN of the keyspace).
   */
  scan(prefix: string): Promise<[string, string][]>;
  /** Releases connections and flushes what is pending; the store is not used afterwards. */
  close(): Promise<void>;
  /**
   * Optional (the file store): runs `fn` with the writes it makes deferrable, i.e. allowed to wait a few
   * milliseconds for another write to go to disk with. They are still durable when their promises resolve. For
   * steps nobody acknowledges a platform on; see `FileStore.deferWrites`.
   */
  deferWrites?<T>(fn: () => T): T;
}

/** Runs `fn` with the writes it makes on `store` deferrable where the store supports it (`Store.deferWrites`). */
export function deferred<T>(store: Store, fn: () => T): T {
  return store.deferWrites ? store.deferWrites(fn) : fn();
}

/** Every write on a durable store is durable (on disk, or acknowledged by Redis) when its promise resolves. */
export type StoreKind = Store['kind'];
