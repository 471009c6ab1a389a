/**
 * Persistence of the in-process engine on a store (the file store): one key per job,
 * `<name>:j:<id>` → the job as JSON, written once when it is accepted, then a tombstone `-` kept for the dedupe
 * window so the same id enqueued again (a journal replay after a crash) is recognised; and, once it was attempted,
 * `<name>:a:<id>` → its attempt state (attempts, in flight, next try, last error), small, rewritten per attempt
 * instead of the whole job (the payload holds the message and its copy: encoding it again per attempt was a
 * tenth of the pack's CPU per message). Each step is a single store write, so it is atomic, and durable when its
 * promise resolves; `finish` writes the tombstone and drops the attempt state in one batch (should only the first
 * reach the disk, a state without a job is ignored at load).
 *
 * A job whose message came through an inbound journal on the file store has no `j:` record: the journal entry is
 * its durable record (`holdJournal`, ADR 0018). It is completed when the job ends, so after a crash the journal
 * replays the message, the flow enqueues it again, and the attempt state the crashed run recorded (written with a
 * marker, `{"h":1,…}`, that `load` leaves for that moment, and a TTL for states nobody comes back for) gives it
 * back its attempts, its retry time and its `interrupted` flag. Four records a message instead of six (two of them
 * the small attempt state), and the job's JSON (the DFO body and the msg copy) not written at all.
 */
import { holdJournal } from '../journal';
import { deferred, type Store } from '../store/types';
import { decodeJson, encodeJson } from './codec';
import type { LocalJob, LocalPersistence } from './local';

const TOMBSTONE = '-';
/** How long the attempt state of a held job is kept at most: longer than any job may live (`maxAge` ≤ 7 days). */
const HELD_STATE_TTL_MS = 8 * 24 * 3600_000;
const HELD_MARK = '{"h":1';

/** The attempt state of a job, as `a:<id>` holds it. */
interface AttemptState {
  /** 1: the state of a job held by its journal entry (first, so that `load` sees it at the start). */
  h?: 1;
  n: number;
  t: number;
  f?: 1;
  i?: 1;
  e?: LocalJob['lastError'];
}

export class StorePersistence<P = unknown> implements LocalPersistence<P> {
  private readonly prefix: string;
  private readonly statePrefix: string;

  /** `store`: the backend (not a handle that may be released); `name`: the queue's full name (with prefixes). */
  constructor(
    private readonly store: Promise<Store>,
    name: string,
    /** The runtime whose journals may hold jobs' records (see `holdJournal`); none: every job is written. */
    private readonly runtime?: object,
  ) {
    this.prefix = `${name}:j:`;
    this.statePrefix = `${name}:a:`;
  }

  private encodeState(job: LocalJob<P>): string {
    const st: AttemptState = job.hold
      ? { h: 1, n: job.attempts, t: job.nextAt }
      : { n: job.attempts, t: job.nextAt };
    if (job.inFlight) st.f = 1;
    if (job.interrupted) st.i = 1;
    if (job.lastError) st.e = job.lastError;
    return JSON.stringify(st);
  }

  private encode(job: LocalJob<P>): string {
    const rec: Record<string, unknown> = {
      id: job.id,
      key: job.key,
      payload: job.payload,
      attempts: job.attempts,
      enqueuedAt: job.enqueuedAt,
      seq: job.seq,
      nextAt: job.nextAt,
    };
    if (job.lastError) rec.lastError = job.lastError;
    if (job.inFlight) rec.inFlight = true;
    if (job.interrupted) rec.interrupted = true;
    return encodeJson(rec);
  }

  async load(): Promise<LocalJob<P>[]> {
    const s = await this.store;
    const out: LocalJob<P>[] = [];
    const states = new Map<string, string>();
    for (const [k, v] of await s.scan(this.statePrefix)) {
      // A held job's state waits for its journal's replay (`add`); its TTL removes it if none comes.
      if (!v.startsWith(HELD_MARK)) states.set(k.slice(this.statePrefix.length), v);
    }
    for (const [k, v] of await s.scan(this.prefix)) {
      if (v === TOMBSTONE) continue;
      try {
        const j = decodeJson<LocalJob<P>>(v);
        if (typeof j.id !== 'string' || typeof j.key !== 'string' || typeof j.seq !== 'number') continue;
        const id = k.slice(this.prefix.length);
        const st = states.get(id);
        states.delete(id);
        if (st) applyState(j, st);
        out.push(j);
      } catch {
        /* a record that does not parse cannot be attempted; skip it */
      }
    }
    // States whose job is finished (a crash between the tombstone and the state's removal): drop them.
    for (const id of states.keys()) await s.delete(this.statePrefix + id).catch(() => undefined);
    return out;
  }

  // Every step is a deferrable write (`Store.deferWrites`): nobody acknowledges a platform on it, so on the file
  // store it goes to disk with the next write that someone does wait for (an inbound journal entry), within a few
  // milliseconds. Each promise still resolves only once its step is durable.

  async add(job: LocalJob<P>, _dedupeMs: number, maxAgeMs: number): Promise<boolean> {
    const s = await this.store;
    const hold = this.runtime && job.journal ? holdJournal(this.runtime, job.journal, maxAgeMs) : null;
    if (hold) {
      job.hold = hold;
      if (hold.at < job.enqueuedAt) job.enqueuedAt = hold.at;
      if (hold.replayed) {
        // After a restart: what the run before recorded of this job's attempts, if it made any.
        let st: string | undefined;
        try {
          st = await s.get(this.statePrefix + job.id);
        } catch (err) {
          hold.release(); // not enqueued: the entry stays open for a replay
          throw err;
        }
        if (st) {
          applyState(job, st);
          if (job.inFlight) {
            job.inFlight = undefined;
            job.interrupted = true;
          }
        }
      }
      return true;
    }
    const value = this.encode(job);
    return deferred(s, () => s.setIfAbsent(this.prefix + job.id, value, Infinity));
  }

  async begin(job: LocalJob<P>): Promise<void> {
    await this.writeState(job);
  }

  async reschedule(job: LocalJob<P>): Promise<void> {
    await this.writeState(job);
  }

  private async writeState(job: LocalJob<P>): Promise<void> {
    const s = await this.store;
    const value = this.encodeState(job);
    const ttl = job.hold ? HELD_STATE_TTL_MS : undefined;
    await deferred(s, () => s.set(this.statePrefix + job.id, value, ttl));
  }

  async finish(job: LocalJob<P>, dedupeMs: number): Promise<void> {
    const s = await this.store;
    if (job.hold) {
      // The entry first: should only it reach the disk, the state is an orphan its TTL removes; should neither,
      // the journal replays the message and the state flags the repeat as interrupted.
      if (!(await job.hold.complete())) throw new Error('its journal entry could not be completed');
      if (job.attempts > 0 || job.lastError) await deferred(s, () => s.delete(this.statePrefix + job.id));
      return;
    }
    // Both in one write of the file store, the tombstone first. A released job (its source will not enqueue it
    // again) is simply removed.
    const [mark, state] = deferred(s, () => [
      dedupeMs > 0 ? s.set(this.prefix + job.id, TOMBSTONE, dedupeMs) : s.delete(this.prefix + job.id),
      job.attempts > 0 || job.lastError ? s.delete(this.statePrefix + job.id) : undefined,
    ]);
    await Promise.all([mark, state]);
  }
}

/** Puts a job's recorded attempt state over the state it was accepted with; a state that does not parse is ignored. */
function applyState(job: LocalJob<unknown>, text: string): void {
  let st: Partial<AttemptState>;
  try {
    st = JSON.parse(text) as Partial<AttemptState>;
  } catch {
    return;
  }
  if (typeof st.n === 'number' && st.n >= job.attempts) job.attempts = st.n;
  if (typeof st.t === 'number') job.nextAt = st.t;
  job.inFlight = st.f === 1 || undefined;
  job.interrupted = st.i === 1 || job.interrupted || undefined;
  if (st.e && typeof st.e === 'object') job.lastError = st.e;
}
