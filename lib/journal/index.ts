/**
 * The inbound journal: closes the window between an `-in` node acknowledging a platform (WeChat's `success`,
 * CXone's 200) and the `-out` node's outbox accepting the message.
 *
 *   -in node:   const ref = await journal.append(stableId, data)   // durable; null: a duplicate, emit nothing
 *               answer the platform; send msg with msg._wxcx = { journal: ref }
 *   -out node:  await outbox.enqueue(...); completeJournal(runtime, msg)   // the message is safe in the outbox
 *   restart:    journal.start(onReplay) emits every entry not completed by a run that is gone
 *
 * An outbox on the file store may instead hold the entry (`holdJournal`): the entry is then the job's durable
 * record, completed when the job ends rather than when it is enqueued, and the outbox writes no job of its own
 * (ADR 0018). While held, an entry is neither completed by anyone else nor replayed by a journal that starts
 * meanwhile (a redeploy); after a restart nothing holds it, so it is replayed and the flow enqueues it again.
 *
 * Entries expire after `maxAgeMs` and are replayed at most `maxReplays` times (a flow that never delivers a
 * message, e.g. one that filters it out, must not get it back forever). The journal also dedupes: `append` of an
 * id seen within `dedupeMs` (pending or completed) returns null, so the `-in` node can use it as its dedupe and
 * there is no window between "marked as seen" and "journaled".
 *
 * Backends: memory (dedupe only; nothing to replay after a restart), file (one process: every entry not written
 * by this journal instance is from a run that is gone, replayed at start), Redis (several instances: an entry is
 * replayed only when the instance that wrote it stopped renewing its heartbeat; one instance replays it).
 */
import { randomBytes } from 'node:crypto';
import { decodeJson, encodeJson } from '../outbox/codec';
import { backendOf, handlePrefix, retainStore } from '../store/open';
import type { RedisStore } from '../store/redis';
import { deferred, type Store } from '../store/types';

export interface JournalEntry<D = unknown> {
  /** The id given to append (stable: the platform's message id). */
  id: string;
  /** Epoch ms when it was journaled. */
  at: number;
  data: D;
  /** How many times it was replayed before this one. */
  replays: number;
}

export interface JournalOptions {
  /** The object that identifies the runtime (`runtimeOf(RED)` in nodes/store.ts): completions are looked up there. */
  runtime: object;
  /** The journal's name in the store: account prefix and node id, e.g. `wxcx:wechat:<appId>:in:<nodeId>`. */
  name: string;
  store?: Store;
  /** Entries older than this are dropped instead of replayed, ms (default 24 h). */
  maxAgeMs?: number;
  /** At most this many replays per entry (default 3). */
  maxReplays?: number;
  /** How long an id is remembered after completion for dedupe, ms (default 1 h). */
  dedupeMs?: number;
  /** Redis: heartbeat interval, ms (default 5 s); an instance silent for 4 intervals is gone. */
  heartbeatMs?: number;
  /** Redis: how often to look for entries of instances that are gone, ms (default 15 s). */
  sweepMs?: number;
}

export interface JournalStats {
  /** Entries this journal wrote (or replayed) that are not completed yet. */
  pending: number;
  appended: number;
  completed: number;
  replayed: number;
  /** Entries given up (too old, or replayed too often). */
  dropped: number;
  lastError?: { at: number; message: string };
}

export type ReplayHandler<D> = (entry: JournalEntry<D>, ref: string) => void;

interface Stored<D> {
  at: number;
  data?: D;
  owner: string;
  replays: number;
}

/** Where entries live: one implementation over a Store (memory, file), one over Redis structures. */
interface Backend {
  /** Writes the entry unless the id was seen within dedupeMs; false when it was. */
  add(id: string, json: string, dedupeMs: number, maxAgeMs: number): Promise<boolean>;
  /**
   * Overwrites a pending entry if it still holds `expected` (owner and replays change on replay); false when it
   * is gone or another instance changed it first.
   */
  update(id: string, expected: string, json: string): Promise<boolean>;
  /** Removes a pending entry, keeping its id for dedupe. */
  remove(id: string, dedupeMs: number): Promise<void>;
  list(): Promise<[string, string][]>;
  setAlive(instance: string, ttlMs: number): Promise<void>;
  isAlive(instance: string): Promise<boolean>;
}

const TOMBSTONE = '-';

class StoreBackend implements Backend {
  constructor(
    private readonly store: Promise<Store>,
    private readonly base: string,
  ) {}
  async add(id: string, json: string): Promise<boolean> {
    return (await this.store).setIfAbsent(`${this.base}e:${id}`, json, Infinity);
  }
  async update(id: string, expected: string, json: string): Promise<boolean> {
    const s = await this.store;
    const cur = await s.get(`${this.base}e:${id}`);
    if (cur !== expected) return false;
    await s.set(`${this.base}e:${id}`, json);
    return true;
  }
  async remove(id: string, dedupeMs: number): Promise<void> {
    const s = await this.store;
    // Deferrable (`Store.deferWrites`): a completion goes to disk with the next acknowledged entry.
    await deferred(s, () => s.set(`${this.base}e:${id}`, TOMBSTONE, Math.max(1, dedupeMs)));
  }
  async list(): Promise<[string, string][]> {
    const p = `${this.base}e:`;
    const all = await (await this.store).scan(p);
    return all.filter(([, v]) => v !== TOMBSTONE).map(([k, v]) => [k.slice(p.length), v]);
  }
  async setAlive(instance: string, ttlMs: number): Promise<void> {
    await (await this.store).set(`${this.base}alive:${instance}`, '1', ttlMs);
  }
  async isAlive(instance: string): Promise<boolean> {
    return (await (await this.store).get(`${this.base}alive:${instance}`)) !== undefined;
  }
}

const ADD = `
if not redis.call('SET', ARGV[1] .. 'seen:' .. ARGV[2], '1', 'NX', 'PX', ARGV[4]) then return 0 end
redis.call('HSET', ARGV[1] .. 'entries', ARGV[2], ARGV[3])
return 1
`;
const UPDATE = `
if redis.call('HGET', ARGV[1] .. 'entries', ARGV[2]) ~= ARGV[3] then return 0 end
redis.call('HSET', ARGV[1] .. 'entries', ARGV[2], ARGV[4])
return 1
`;
const REMOVE = `
redis.call('HDEL', ARGV[1] .. 'entries', ARGV[2])
redis.call('PEXPIRE', ARGV[1] .. 'seen:' .. ARGV[2], ARGV[3])
return 1
`;

interface JournalScripts {
  wxcxJrAdd(...a: (string | number)[]): Promise<number>;
  wxcxJrUpdate(...a: (string | number)[]): Promise<number>;
  wxcxJrRemove(...a: (string | number)[]): Promise<number>;
}
const defined = new WeakSet<object>();

/**
 * Redis: pending entries in one hash (`<base>entries`, small: only what is in flight), dedupe in `<base>seen:<id>`
 * keys, so the periodic sweep reads the pending entries only and never scans the keyspace.
 */
class RedisBackend implements Backend {
  private readonly plain: StoreBackend;
  constructor(
    private readonly store: Promise<RedisStore>,
    private readonly base: string,
    plain: Promise<Store>,
  ) {
    this.plain = new StoreBackend(plain, base);
  }
  private async r(): Promise<{ s: RedisStore; sc: JournalScripts; b: string }> {
    const s = await this.store;
    if (!defined.has(s.client)) {
      s.client.defineCommand('wxcxJrAdd', { numberOfKeys: 0, lua: ADD });
      s.client.defineCommand('wxcxJrUpdate', { numberOfKeys: 0, lua: UPDATE });
      s.client.defineCommand('wxcxJrRemove', { numberOfKeys: 0, lua: REMOVE });
      defined.add(s.client);
    }
    return { s, sc: s.client as unknown as JournalScripts, b: s.key(this.base) };
  }
  async add(id: string, json: string, dedupeMs: number, maxAgeMs: number): Promise<boolean> {
    const { s, sc, b } = await this.r();
    // The dedupe mark outlives a pending entry for as long as it could be replayed.
    const ttl = Math.max(1, Math.ceil(Math.max(dedupeMs, maxAgeMs)));
    return (await s.run('journal a message', () => sc.wxcxJrAdd(b, id, json, ttl))) === 1;
  }
  async update(id: string, expected: string, json: string): Promise<boolean> {
    const { s, sc, b } = await this.r();
    return (await s.run('update the journal', () => sc.wxcxJrUpdate(b, id, expected, json))) === 1;
  }
  async remove(id: string, dedupeMs: number): Promise<void> {
    const { s, sc, b } = await this.r();
    await s.run('complete a journal entry', () => sc.wxcxJrRemove(b, id, Math.max(1, Math.ceil(dedupeMs))));
  }
  async list(): Promise<[string, string][]> {
    const { s, b } = await this.r();
    const all = await s.run('read the journal', () => s.client.hgetall(b + 'entries'));
    return Object.entries(all);
  }
  setAlive(instance: string, ttlMs: number): Promise<void> {
    return this.plain.setAlive(instance, ttlMs);
  }
  isAlive(instance: string): Promise<boolean> {
    return this.plain.isAlive(instance);
  }
}

/** Per runtime: open journals by name, for `completeJournal`. */
const registries = new WeakMap<object, Map<string, Journal<unknown>>>();

/**
 * Per runtime, by journal name: the ids of the entries an outbox job holds. Outside the journal instances, so that
 * the journal a redeploy starts sees what the outbox (which outlives the redeploy) still holds.
 */
const holds = new WeakMap<object, Map<string, Set<string>>>();

function heldIds(runtime: object, name: string): Set<string> {
  let byName = holds.get(runtime);
  if (!byName) {
    byName = new Map();
    holds.set(runtime, byName);
  }
  let ids = byName.get(name);
  if (!ids) {
    ids = new Set();
    byName.set(name, ids);
  }
  return ids;
}

function isHeld(runtime: object, name: string, id: string): boolean {
  return holds.get(runtime)?.get(name)?.has(id) ?? false;
}

/**
 * The journal a message's reference (or the reference itself) names in `runtime`, with the entry's id; no journal
 * while an outbox job holds the entry (only that job may complete it, and nobody may hold it again).
 */
function journalOf(
  runtime: object,
  msgOrRef: unknown,
): { j: Journal<unknown> | undefined; id: string } | null {
  const r = parseRef(typeof msgOrRef === 'string' ? msgOrRef : journalRefOf(msgOrRef));
  if (!r) return null;
  if (isHeld(runtime, r.name, r.id)) return { j: undefined, id: r.id };
  return { j: registries.get(runtime)?.get(r.name), id: r.id };
}

/** What an outbox gets for an entry it holds (`holdJournal`). */
export interface JournalHold {
  /** When the entry was journaled (epoch ms): the job counts its age from then. */
  at: number;
  /** True when this run replayed the entry (a restart): an attempt state an earlier run recorded may exist. */
  replayed: boolean;
  /** Completes the entry (the job ended) and lets go of it; false when the store could not write. Never throws. */
  complete(): Promise<boolean>;
  /** Lets go of the entry without completing it (it is replayed after a restart). */
  release(): void;
}

const REF_TAG = 'wxcx-j1';

export function makeRef(name: string, id: string): string {
  return `${REF_TAG}|${encodeURIComponent(name)}|${encodeURIComponent(id)}`;
}

export function parseRef(ref: unknown): { name: string; id: string } | null {
  if (typeof ref !== 'string') return null;
  const parts = ref.split('|');
  if (parts.length !== 3 || parts[0] !== REF_TAG) return null;
  try {
    return { name: decodeURIComponent(parts[1]), id: decodeURIComponent(parts[2]) };
  } catch {
    return null;
  }
}

/** The journal reference a message carries (`msg._wxcx.journal`), if any. */
export function journalRefOf(msg: unknown): string | undefined {
  const w = (msg as { _wxcx?: { journal?: unknown } } | null | undefined)?._wxcx;
  return w && typeof w.journal === 'string' ? w.journal : undefined;
}

/**
 * Marks the journal entry a message carries as complete: its message is safe downstream (an outbox accepted
 * it, or it was refused for good). No-op for a message without a reference. Never throws; resolves false when
 * the entry could not be completed (it will then be replayed after a restart, which downstream dedupe absorbs).
 */
export async function completeJournal(runtime: object, msgOrRef: unknown): Promise<boolean> {
  // Held by an outbox job (no journal then): that job completes it when it ends (a second -out node on the same
  // msg, or a repeat).
  const found = journalOf(runtime, msgOrRef);
  return found?.j ? found.j.completeId(found.id) : false;
}

/**
 * For an outbox on a durable in-process store: makes the entry `msgOrRef` carries the durable record of the job
 * about to be enqueued, so the outbox need not write one. Null (write the job as usual) when the message has no
 * reference, its journal is not open here or is not on the file store, the entry is held already (a second
 * `-out` node on one msg), or the journal keeps entries for less than `maxAgeMs` (the job could outlive it).
 */
export function holdJournal(runtime: object, msgOrRef: unknown, maxAgeMs: number): JournalHold | null {
  const found = journalOf(runtime, msgOrRef);
  return found?.j ? found.j.holdId(found.id, maxAgeMs) : null;
}

export class Journal<D = unknown> {
  readonly name: string;
  readonly instance = randomBytes(6).toString('hex');
  private readonly runtime: object;
  private readonly store: Store | undefined;
  private retained: Store | null = null;
  private readonly backend: Backend | null;
  private readonly multi: boolean;
  private readonly maxAgeMs: number;
  private readonly maxReplays: number;
  private readonly dedupeMs: number;
  private readonly heartbeatMs: number;
  private readonly sweepMs: number;
  private readonly memSeen = new Map<string, number>();
  private readonly mine = new Set<string>();
  /** Entries this journal replayed and nobody completed or held yet: what a hold resets (`holdId`). */
  private readonly replayed = new Map<string, { json: string; rec: Stored<D> }>();
  private onReplay: ReplayHandler<D> | null = null;
  private timers: NodeJS.Timeout[] = [];
  private sweeping: Promise<void> | null = null;
  private stopped = false;
  private counts = { appended: 0, completed: 0, replayed: 0, dropped: 0 };
  private lastError?: { at: number; message: string };

  constructor(opts: JournalOptions) {
    if (!opts || !opts.runtime || typeof opts.name !== 'string' || !opts.name)
      throw new Error('a journal needs a runtime and a name');
    this.name = opts.name;
    this.runtime = opts.runtime;
    this.maxAgeMs = opts.maxAgeMs ?? 24 * 3600_000;
    this.maxReplays = opts.maxReplays ?? 3;
    this.dedupeMs = opts.dedupeMs ?? 3600_000;
    this.heartbeatMs = opts.heartbeatMs ?? 5000;
    this.sweepMs = opts.sweepMs ?? 15_000;
    const store = opts.store;
    this.store = store;
    const base = `${opts.name}:`;
    if (!store || store.kind === 'memory') {
      this.backend = null;
      this.multi = false;
    } else if (store.kind === 'redis') {
      // Raw backend plus the handle's prefix: the journal keeps working while its config node is replaced.
      this.backend = new RedisBackend(
        backendOf(store) as Promise<RedisStore>,
        handlePrefix(store) + base,
        backendOf(store),
      );
      this.multi = true;
    } else {
      this.backend = new StoreBackend(backendOf(store), handlePrefix(store) + base);
      this.multi = false;
    }
    let reg = registries.get(this.runtime);
    if (!reg) {
      reg = new Map();
      registries.set(this.runtime, reg);
    }
    reg.set(this.name, this as Journal<unknown>);
  }

  private noteError(err: unknown): void {
    const m = err instanceof Error ? err.message : String(err);
    this.lastError = { at: Date.now(), message: m.length > 300 ? m.slice(0, 300) + '…' : m };
  }

  /**
   * Journals `data` under `id` and resolves once it is durable, with the reference to put in
   * `msg._wxcx.journal`; null when `id` was journaled within the dedupe window (a duplicate: emit nothing).
   * Rejects when the store cannot write: do not acknowledge the platform then (it will retry).
   */
  async append(id: string, data: D): Promise<string | null> {
    if (typeof id !== 'string' || !id) throw new Error('a journal entry needs an id');
    if (!this.backend && this.store) {
      // Memory store: dedupe in the runtime's store, so it survives a redeploy; nothing else to keep.
      if (!(await this.store.setIfAbsent(`${this.name}:seen:${id}`, '1', this.dedupeMs))) return null;
      this.counts.appended++;
      return makeRef(this.name, id);
    }
    if (!this.backend) {
      const now = Date.now();
      for (const [k, until] of this.memSeen) {
        if (until > now && this.memSeen.size < 1_000_000) break;
        this.memSeen.delete(k);
      }
      const until = this.memSeen.get(id);
      if (until !== undefined && until > now) return null;
      this.memSeen.set(id, now + this.dedupeMs);
      this.counts.appended++;
      return makeRef(this.name, id);
    }
    const rec: Stored<D> = { at: Date.now(), data, owner: this.instance, replays: 0 };
    // Marked as ours before the write (a sweep running meanwhile must not take it for a gone run's entry), but
    // unmarked only if it was not ours already: a duplicate of our own pending entry leaves that entry ours.
    const had = this.mine.has(id);
    this.mine.add(id);
    let ok: boolean;
    try {
      ok = await this.backend.add(id, encodeJson(rec), this.dedupeMs, this.maxAgeMs);
    } catch (err) {
      if (!had) this.mine.delete(id);
      this.noteError(err);
      throw err;
    }
    if (!ok) {
      if (!had) this.mine.delete(id);
      return null;
    }
    this.counts.appended++;
    return makeRef(this.name, id);
  }

  /** Completes by reference (what `completeJournal` calls). */
  async complete(ref: string): Promise<boolean> {
    const r = parseRef(ref);
    if (!r || r.name !== this.name) return false;
    return this.completeId(r.id);
  }

  async completeId(id: string): Promise<boolean> {
    if (!this.backend) {
      this.counts.completed++;
      return true;
    }
    this.replayed.delete(id);
    try {
      await this.backend.remove(id, this.dedupeMs);
      if (this.mine.delete(id)) this.counts.completed++;
      return true;
    } catch (err) {
      this.noteError(err);
      return false;
    }
  }

  /**
   * Holds a pending entry of this journal for an outbox job (see `holdJournal`); null when it cannot: not the file
   * store, not pending here, held already, or kept for less than `maxAgeMs`.
   */
  holdId(id: string, maxAgeMs: number): JournalHold | null {
    const backend = this.backend;
    if (!backend || this.multi || this.stopped || maxAgeMs > this.maxAgeMs || !this.mine.has(id)) return null;
    const held = heldIds(this.runtime, this.name);
    if (held.has(id)) return null;
    held.add(id);
    const rep = this.replayed.get(id);
    if (rep) {
      // Replayed after a restart and in an outbox again: the replay limit is for flows that never get an entry to
      // an outbox, not for a delivery that several restarts interrupt (the outbox's own limits apply to it).
      this.replayed.delete(id);
      backend
        .update(id, rep.json, encodeJson({ ...rep.rec, replays: 0 }))
        .catch((err: unknown) => this.noteError(err));
    }
    let open = true;
    return {
      at: rep ? rep.rec.at : Date.now(),
      replayed: !!rep,
      complete: async () => {
        if (!open) return false;
        open = false;
        // Through the journal open under this name now (after a redeploy, the new one, on the store as it is now).
        const cur = registries.get(this.runtime)?.get(this.name);
        const j = cur?.backend && !cur.multi ? cur : this;
        const done = await j.completeId(id);
        // Appended by the journal a redeploy replaced: counted by the one open now.
        if (j !== this && this.mine.delete(id) && done) j.counts.completed++;
        held.delete(id);
        return done;
      },
      release: () => {
        if (!open) return;
        open = false;
        held.delete(id);
      },
    };
  }

  /**
   * Starts replaying: at once for entries of runs that are gone, then (Redis) periodically for entries of
   * instances that stopped. `onReplay` gets each entry and its reference; emit it like a new message. Resolves
   * when the first replay is done (never rejects): an `-in` node holds back new messages until then, so what a
   * dead run acknowledged goes ahead of what the customer sent after the restart.
   */
  start(onReplay: ReplayHandler<D>): Promise<void> {
    this.onReplay = onReplay;
    this.stopped = false;
    if (!this.backend) return Promise.resolve();
    // Keep the backend open while this journal works, even after its config node closed.
    if (!this.retained && this.store) this.retained = retainStore(this.store);
    const backend = this.backend;
    if (this.multi) {
      const beat = (): void => {
        backend.setAlive(this.instance, this.heartbeatMs * 4).catch((err: unknown) => this.noteError(err));
      };
      beat();
      this.timers.push(setInterval(beat, this.heartbeatMs));
      this.timers.push(setInterval(() => void this.sweep(), this.sweepMs));
    }
    return this.sweep();
  }

  /** Looks for entries to replay now (also what start does); resolves when done. */
  sweep(): Promise<void> {
    if (!this.sweeping) {
      this.sweeping = this.doSweep()
        .catch((err: unknown) => this.noteError(err))
        .finally(() => {
          this.sweeping = null;
        });
    }
    return this.sweeping;
  }

  private async doSweep(): Promise<void> {
    const backend = this.backend;
    if (!backend || this.stopped) return;
    const entries: { id: string; json: string; rec: Stored<D> }[] = [];
    for (const [id, json] of await backend.list()) {
      try {
        entries.push({ id, json, rec: decodeJson<Stored<D>>(json) });
      } catch {
        await backend.remove(id, this.dedupeMs);
        this.counts.dropped++;
      }
    }
    entries.sort((a, b) => a.rec.at - b.rec.at);
    const alive = new Map<string, boolean>();
    for (const { id, json, rec } of entries) {
      if (this.stopped || !this.onReplay) return;
      if (rec.owner === this.instance) continue;
      // An outbox job of this process holds it: the job, not the flow, takes it from here (a redeploy).
      if (isHeld(this.runtime, this.name, id)) continue;
      if (Date.now() - rec.at > this.maxAgeMs || rec.replays >= this.maxReplays) {
        await backend.remove(id, this.dedupeMs);
        this.counts.dropped++;
        this.noteError(
          `journal ${this.name}: gave up on entry ${id} (${rec.replays} replays, ${Math.round((Date.now() - rec.at) / 1000)} s old): ` +
            `the flow never handed it to an outbox`,
        );
        continue;
      }
      if (this.multi) {
        let a = alive.get(rec.owner);
        if (a === undefined) {
          a = await backend.isAlive(rec.owner);
          alive.set(rec.owner, a);
        }
        if (a) continue;
      }
      const next: Stored<D> = { ...rec, owner: this.instance, replays: rec.replays + 1 };
      const nextJson = encodeJson(next);
      // Compare-and-set: only if nobody completed it or took it over since we read it (one replay, one instance).
      if (!(await backend.update(id, json, nextJson))) continue;
      this.mine.add(id);
      if (!this.multi) this.replayed.set(id, { json: nextJson, rec: next });
      this.counts.replayed++;
      try {
        this.onReplay({ id, at: rec.at, data: rec.data as D, replays: rec.replays }, makeRef(this.name, id));
      } catch (err) {
        this.noteError(err);
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.onReplay = null;
    this.replayed.clear();
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.sweeping) await this.sweeping;
    const reg = registries.get(this.runtime);
    if (reg?.get(this.name) === this) reg.delete(this.name);
    const r = this.retained;
    this.retained = null;
    if (r && r !== this.store) await r.close();
  }

  stats(): JournalStats {
    const s: JournalStats = {
      pending: this.backend ? this.mine.size : 0,
      ...this.counts,
    };
    if (this.lastError) s.lastError = { ...this.lastError };
    return s;
  }
}

export function createJournal<D = unknown>(opts: JournalOptions): Journal<D> {
  return new Journal<D>(opts);
}
