/**
 * `createOutbox`: the outbox for a queue name on a store. The `-out` nodes call it once per node:
 *
 *   const outbox = createOutbox<MyPayload>({ name: `wxcx:wechat:${appId}:out:${node.id}`, store: config.store });
 *   outbox.start(attempt, (r) => { ...output 1 or 2... });
 *   await outbox.enqueue({ id, key: conversationId, payload });   // durable now; then done()
 *   node.on('close', (_removed, done) => { void outbox.stop().then(() => done()); });
 *
 * The store decides the engine: memory → in-process, nothing persisted; file → in-process, every step persisted
 * in the file store before it counts; Redis → shared by every instance on that Redis (lib/outbox/redis.ts). One
 * engine per (backend, queue name) in a process, so a redeployed node finds its queue, including attempts that
 * were still in flight during the redeploy.
 */
import { backendIdentity, backendOf, handlePrefix, StoreHandle } from '../store/open';
import type { RedisStore } from '../store/redis';
import type { Store } from '../store/types';
import { LocalOutboxEngine } from './local';
import { StorePersistence } from './persist';
import { RedisOutboxEngine } from './redis';
import type { Attempt, EnqueueInput, Outbox, OutboxPolicy, OutboxResult, OutboxStats } from './types';

export type {
  Attempt,
  AttemptOutcome,
  EnqueueInput,
  Outbox,
  OutboxJob,
  OutboxPolicy,
  OutboxResult,
  OutboxStats,
} from './types';
export { DEFAULT_POLICY, minRetrySpan, resolvePolicy, retryDelay } from './backoff';

export interface CreateOutboxOptions {
  /**
   * The queue's name within the store: the same name on the same store is the same queue (after a redeploy, a
   * restart, or on another instance sharing the Redis). Use the account prefix and the node id, e.g.
   * `wxcx:wechat:<appId>:out:<nodeId>`.
   */
  name: string;
  /** The config node's store; absent: a private memory queue (tests). */
  store?: Store;
  policy?: Partial<OutboxPolicy>;
  /** Randomness for the jitter (tests). */
  random?: () => number;
  /** How long `stop()` waits for attempts in flight, ms (default 10 s). */
  stopTimeoutMs?: number;
  /** Redis: how often an idle instance polls for work, ms (default 250). */
  pollMs?: number;
  /**
   * The runtime whose inbound journals a job's `journal` reference names (`runtimeOf(RED)`): with it, the file
   * store's outbox holds their entries instead of writing jobs (ADR 0018). The first handle's runtime counts.
   */
  runtime?: object;
}

/** What a handle drives: the in-process engine or the Redis one. */
interface Engine<P> {
  enqueue(job: EnqueueInput<P>): Promise<boolean>;
  release?(id: string): void;
  attach(owner: object, attempt: Attempt<P>, onResult: (r: OutboxResult<P>) => void): void;
  detach(owner: object): Promise<void>;
  stats(): OutboxStats;
  setPolicy(p: Partial<OutboxPolicy>): void;
}

/** A handle on an engine: `stop` only detaches this handle's own `start`. */
class OutboxHandle<P> implements Outbox<P> {
  private retained: Store | null = null;
  constructor(
    private readonly engine: Engine<P>,
    private readonly store: Store | undefined,
  ) {}
  enqueue(job: EnqueueInput<P>): Promise<boolean> {
    return this.engine.enqueue(job);
  }
  release(id: string): void {
    this.engine.release?.(id);
  }
  start(attempt: Attempt<P>, onResult: (r: OutboxResult<P>) => void): void {
    // Keep the backend open while this outbox works, even after its config node closed.
    if (!this.retained && this.store instanceof StoreHandle) this.retained = this.store.retain();
    this.engine.attach(this, attempt, onResult);
  }
  async stop(): Promise<void> {
    await this.engine.detach(this);
    const r = this.retained;
    this.retained = null;
    if (r) await r.close();
  }
  stats(): OutboxStats {
    return this.engine.stats();
  }
}

/** Engines by backend, then by full queue name. */
const engines = new WeakMap<object, Map<string, Engine<unknown>>>();

function newEngine<P>(opts: CreateOutboxOptions, store: Store | undefined, fullName: string): Engine<P> {
  const common = {
    name: opts.name,
    policy: opts.policy,
    random: opts.random,
    stopTimeoutMs: opts.stopTimeoutMs,
  };
  if (!store || store.kind === 'memory') return new LocalOutboxEngine<P>(common);
  if (store.kind === 'file') {
    return new LocalOutboxEngine<P>({
      ...common,
      persistence: new StorePersistence<P>(backendOf(store), fullName, opts.runtime),
    });
  }
  return new RedisOutboxEngine<P>(backendOf(store) as Promise<RedisStore>, handlePrefix(store), {
    ...common,
    pollMs: opts.pollMs,
  });
}

export function createOutbox<P = unknown>(opts: CreateOutboxOptions): Outbox<P> {
  if (!opts || typeof opts.name !== 'string' || !opts.name)
    throw new Error('createOutbox needs a queue name');
  const store = opts.store;
  if (!store) return new OutboxHandle<P>(newEngine<P>(opts, undefined, opts.name), undefined);
  const identity = backendIdentity(store);
  const fullName = handlePrefix(store) + opts.name;
  let byName = engines.get(identity);
  if (!byName) {
    byName = new Map();
    engines.set(identity, byName);
  }
  let engine = byName.get(fullName) as Engine<P> | undefined;
  if (!engine) {
    engine = newEngine<P>(opts, store, fullName);
    byName.set(fullName, engine);
  } else if (opts.policy) {
    engine.setPolicy(opts.policy);
  }
  return new OutboxHandle<P>(engine, store);
}
