/**
 * `openStore`: the store a config node asked for, shared within one runtime.
 *
 * One backend per (kind, location) per runtime: every config node that names the same directory or the same
 * Redis server gets a handle on one FileStore / one connection. Handles are reference-counted; the backend closes
 * when the last handle closes (a full redeploy closes and reopens it; a partial one keeps it open). The memory
 * backend is one MemoryStore per runtime that lives as long as the runtime, so even it survives a redeploy.
 *
 * Opening is asynchronous but config nodes are built synchronously, so a handle is usable at once: its operations
 * wait for the backend, and reject with the open error (clear, no secrets) when it could not be opened.
 */
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { FileStore } from './file';
import { MemoryStore } from './memory';
import { RedisStore } from './redis';
import type { Store } from './types';

export type StoreSpec =
  | { kind: 'memory'; keyPrefix?: string }
  | { kind: 'file'; dir: string; keyPrefix?: string }
  | {
      kind: 'redis';
      url?: string;
      password?: string;
      keyPrefix?: string;
      connectTimeoutMs?: number;
      commandTimeoutMs?: number;
    };

export interface OpenStoreOptions {
  /** Told about recovery warnings and open failures (already free of secrets). */
  onWarning?: (message: string) => void;
}

interface Shared {
  location: string;
  kind: Store['kind'];
  promise: Promise<Store>;
  refs: number;
  /** Set once the last handle released it. */
  closing: Promise<void> | null;
  /** The backend, once open. */
  store?: Store;
  error?: Error;
}

/** Per runtime: open backends by location. */
const runtimes = new WeakMap<object, Map<string, Shared>>();
/** Per runtime: the memory store. */
const memories = new WeakMap<object, MemoryStore>();

function locationOf(spec: StoreSpec): string {
  switch (spec.kind) {
    case 'memory':
      return 'memory';
    case 'file':
      return 'file:' + path.resolve(spec.dir);
    case 'redis': {
      const pw = spec.password ? createHash('sha256').update(spec.password).digest('hex').slice(0, 16) : '';
      return `redis:${spec.url || 'redis://127.0.0.1:6379'}#${pw}`;
    }
  }
}

/**
 * A handle on a shared backend: the Store interface with the handle's key prefix, `close()` releases the handle.
 * `retain()` takes another handle on the same backend (the outbox and journal hold one while they work).
 */
export class StoreHandle implements Store {
  readonly kind: Store['kind'];
  readonly keyPrefix: string;
  private released = false;

  constructor(
    private readonly runtime: object,
    private readonly shared: Shared,
    keyPrefix: string,
  ) {
    this.kind = shared.kind;
    this.keyPrefix = keyPrefix;
  }

  /** Identity of the backend (same object for every handle on it, new after it was closed and reopened). */
  get backendId(): object {
    return this.shared;
  }

  /** Resolves with the backend once open; rejects with the open error. */
  backend(): Promise<Store> {
    return this.shared.promise;
  }

  /** The backend when it is already open (synchronous access for health figures). */
  get openBackend(): Store | undefined {
    return this.shared.store;
  }

  /** Why the backend could not be opened, when it could not. */
  get openError(): Error | undefined {
    return this.shared.error;
  }

  retain(): StoreHandle {
    this.shared.refs++;
    return new StoreHandle(this.runtime, this.shared, this.keyPrefix);
  }

  private k(key: string): string {
    return this.keyPrefix + key;
  }

  private async b(): Promise<Store> {
    if (this.released) throw new Error('this store handle was closed');
    return this.shared.promise;
  }

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    return (await this.b()).setIfAbsent(this.k(key), value, ttlMs);
  }
  async get(key: string): Promise<string | undefined> {
    return (await this.b()).get(this.k(key));
  }
  async set(key: string, value: string, ttlMs?: number): Promise<void> {
    return (await this.b()).set(this.k(key), value, ttlMs);
  }
  async delete(key: string): Promise<void> {
    return (await this.b()).delete(this.k(key));
  }
  async deleteIfEquals(key: string, expected: string): Promise<boolean> {
    return (await this.b()).deleteIfEquals(this.k(key), expected);
  }
  async tryLock(key: string, ttlMs: number): Promise<(() => Promise<void>) | null> {
    return (await this.b()).tryLock(this.k(key), ttlMs);
  }
  async scan(prefix: string): Promise<[string, string][]> {
    const list = await (await this.b()).scan(this.k(prefix));
    const n = this.keyPrefix.length;
    return n ? list.map(([k, v]) => [k.slice(n), v]) : list;
  }

  /** Releases this handle; the backend closes when the last handle on it is released. */
  async close(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await releaseShared(this.runtime, this.shared);
  }
}

async function releaseShared(runtime: object, shared: Shared): Promise<void> {
  shared.refs--;
  if (shared.refs > 0 || shared.kind === 'memory') return;
  const map = runtimes.get(runtime);
  shared.closing = shared.promise.then(
    (s) => s.close(),
    () => undefined,
  );
  await shared.closing;
  if (map?.get(shared.location) === shared) map.delete(shared.location);
}

async function openBackend(spec: StoreSpec, opts: OpenStoreOptions): Promise<Store> {
  switch (spec.kind) {
    case 'memory':
      return new MemoryStore();
    case 'file':
      return FileStore.open(spec.dir, { onWarning: opts.onWarning });
    case 'redis':
      return RedisStore.open({
        url: spec.url,
        password: spec.password,
        connectTimeoutMs: spec.connectTimeoutMs,
        commandTimeoutMs: spec.commandTimeoutMs,
      });
  }
}

/**
 * A handle on the backend `spec` names, shared per `runtime` (any object that lives as long as the Node-RED
 * runtime and is shared by all its node modules: `runtimeOf(RED)` in nodes/store.ts, not `RED.nodes`, which is
 * per module). The key prefix is per handle: handles with different prefixes share the backend.
 */
export function openStore(runtime: object, spec: StoreSpec, opts: OpenStoreOptions = {}): StoreHandle {
  let map = runtimes.get(runtime);
  if (!map) {
    map = new Map();
    runtimes.set(runtime, map);
  }
  const location = locationOf(spec);
  const shared = map.get(location);
  if (shared && !shared.closing) {
    shared.refs++;
    return new StoreHandle(runtime, shared, spec.keyPrefix ?? '');
  }
  const previous = shared?.closing ?? Promise.resolve();
  let mem: MemoryStore | undefined;
  if (spec.kind === 'memory') {
    mem = memories.get(runtime);
    if (!mem) {
      mem = new MemoryStore();
      memories.set(runtime, mem);
    }
  }
  const entry: Shared = {
    location,
    kind: spec.kind,
    refs: 1,
    closing: null,
    promise: mem ? Promise.resolve(mem) : previous.then(() => openBackend(spec, opts)), // a directory is reopened only after it was closed
  };
  if (mem) entry.store = mem;
  entry.promise.then(
    (s) => {
      entry.store = s;
    },
    (err: unknown) => {
      entry.error = err instanceof Error ? err : new Error(String(err));
      opts.onWarning?.(entry.error.message);
      // A failed open is not kept: the next open (a redeploy after the user fixed things) tries again.
      if (map.get(location) === entry) map.delete(location);
    },
  );
  map.set(location, entry);
  return new StoreHandle(runtime, entry, spec.keyPrefix ?? '');
}

/** Another handle on the same backend when `store` is a handle; the store itself (and a no-op) otherwise. */
export function retainStore(store: Store): Store {
  return store instanceof StoreHandle ? store.retain() : store;
}

/** A stable object that identifies the backend a store writes to (for per-backend registries). */
export function backendIdentity(store: Store): object {
  return store instanceof StoreHandle ? store.backendId : store;
}

/** The key prefix a handle adds ('' for a bare store). */
export function handlePrefix(store: Store): string {
  return store instanceof StoreHandle ? store.keyPrefix : '';
}

/** The backend behind a handle (or the store itself), once open. */
export async function backendOf(store: Store): Promise<Store> {
  return store instanceof StoreHandle ? store.backend() : store;
}
