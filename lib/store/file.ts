/**
 * The file backend: one directory in the Node-RED user directory (`<userDir>/wechat-cxone/<name>/`), the pack's
 * default. State lives in memory; every change is appended to `data.log` and the call resolves only once the
 * record is on disk (a write through an O_DSYNC descriptor, or write + fdatasync; see LOG_FLAGS), so a SIGKILL or a
 * crash never loses an acknowledged write.
 *
 * - Group commit: changes made while a write is in progress are written and synced together, so a burst of
 *   small writes costs one durable write per batch, never one per write, and nothing resolves before it.
 * - Records: one line each, `<crc32 as 8 hex><body>\n`. The body is `S<expiresAt>:<key length>:<key><value>` (set;
 *   expiresAt 0 means no expiry) or `D<key>` (delete); a key or value with a line break is written as JSON instead,
 *   `["s",key,value,expiresAt]` or `["d",key]` (the only form of the first version, still read). Every operation is
 *   logged as an idempotent set or delete.
 * - Recovery: the log is replayed at open. A torn last record (the process died while writing it) is cut off;
 *   a damaged record in the middle is skipped with a warning and the log is rewritten at once.
 * - Compaction: when the log is both larger than 32 MiB and twice the live data, the live state is written to
 *   `data.log.compact` in the background, in chunks, while writes go on to `data.log` as before (each batch also
 *   kept as the compaction's tail, which the background work appends after the snapshot). Then one batch of the
 *   write loop adds the rest of the tail and syncs both files; from then on every batch is written and synced to
 *   both, so a crash at any point leaves a log that holds every acknowledged write, whichever file the name points
 *   to. Meanwhile the new file is renamed over `data.log` (atomic) and the directory synced; then the loop writes to
 *   the new file alone. Replaying the new log gives the state the old one gives: the snapshot holds every change
 *   made before it started (and some made during it), and the tail repeats every change logged since, in order
 *   (every record is an idempotent set or delete). No write waits for the rewrite or the rename: acknowledgements
 *   waited up to tens of milliseconds for them before (at 500 msg/s, the p99 went from about 12 ms to about 45 ms).
 * - Reads and writes go in pieces below glibc's mmap threshold (64 KiB read, 16 K characters written, one `writev` per
 *   batch), so that no freed block makes malloc keep memory for good (ADR 0014).
 * - One process per directory: `lock` holds the owner's pid, host and a heartbeat (its mtime, touched every
 *   10 s). A second process is refused with a clear error; a lock whose owner is gone (dead pid on this host, or
 *   no heartbeat for 60 s) is taken over. Several instances need the Redis backend.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { fingerprintHex, MarkSet, parseFingerprintHex } from './marks';
import { Sweeper } from './sweep';
import type { Store } from './types';

const LOG = 'data.log';
const LOCK = 'lock';
const COMPACT_MIN_BYTES = 32 * 1024 * 1024; // replayed at open in about 0.25 s
const HEARTBEAT_MS = 10_000;
const STALE_LOCK_MS = 60_000;

interface Item {
  value: string;
  expires: number; // epoch ms; Infinity for none
}

/** Set, delete, and a dedupe mark known by its key's fingerprint only (written by compaction). */
type Rec = ['s', string, string, number] | ['d', string] | ['m', number, number, number];

/** The value of a dedupe mark: a key set to it with a lifetime is kept in the MarkSet, not as an entry. */
const MARK = '-';
/** What a mark adds to the live data (the size of its record), for the compaction threshold. */
const MARK_BYTES = 40;
/** A background compaction encodes records for at most this long before it lets the event loop run, ms. */
const SLICE_MS = 1;
/** ... and writes them to its new file in chunks of about this many characters. */
const CHUNK_CHARS = 256 * 1024;
/**
 * What the store reads or writes at once is cut into pieces of at most this many characters (48 KiB of UTF-8) or
 * bytes: each a block below glibc's mmap threshold (128 KiB). Larger blocks (the log read whole at open, a
 * compaction's 256 K characters as one Buffer) were mmapped, and freeing one raises the threshold to its size for the
 * rest of the process; blocks that size then come from malloc's heap, and the holes they leave are kept. The
 * soak's RSS grew a quarter while V8's heap stayed flat (ADR 0014).
 */
const PIECE_CHARS = 16 * 1024;
const READ_BYTES = 64 * 1024;
/** A compaction's background work stops catching up with the tail once less than this is left. */
const TAKEOVER_CHARS = 64 * 1024;
/**
 * Group commit over time: off by default (ADR 0015: less CPU at a steady rate, a worse acknowledgement p99 in most
 * paired runs). See `FileStoreOptions.groupCommitMs`.
 */
const GROUP_COMMIT_MS = 0;
const GROUP_FULL_CHARS = 64 * 1024;
/**
 * How long a deferrable write (`deferWrites`) may wait for company: a write that is not deferrable (an inbound
 * journal entry, which an acknowledgement waits for) takes it along at once. See `FileStoreOptions.deferMs`.
 */
const DEFER_MS = 5;

/** A compaction in progress: its new file (`data.log.compact`) and where it stands. */
interface Compaction {
  /** The new file; -1 until it is open. */
  fd: number;
  /** Batches logged since the snapshot began and not yet written to the new file, in order. */
  tail: string[];
  tailChars: number;
  /** Bytes written to the new file. */
  bytes: number;
  /** Snapshot and most of the tail written and synced: the write loop takes over. */
  ready: boolean;
  /** The new file holds everything logged; every batch goes to both files. */
  dual: boolean;
  /** The rename over the log and the directory sync, once begun. */
  swap: Promise<void> | null;
  /** Renamed and synced: the loop switches to the new file between two batches. */
  swapped: boolean;
  /** Writing or renaming the new file failed: the loop gives it up between two batches. */
  failed: NodeJS.ErrnoException | null;
  /** The background part (snapshot and catching up). */
  done: Promise<void>;
}

export interface FileStoreOptions {
  /** Compact when the log exceeds this many bytes (and twice the live data). Default 32 MiB. */
  compactMinBytes?: number;
  /**
   * Group commit over time, ms (default 0: none): after a batch is on disk, the next one starts no sooner than this
   * after it began (unless 64 K characters wait already), so that what the batch before set off (a message's next
   * step) and other messages' changes go to disk together; the first write after a quiet spell goes at once. Each
   * durable write is a system call that, on a virtual machine, also notifies the host's disk: 2 ms took the file
   * store's CPU per message at a steady 500 msg/s from 964 to 570 µs (`bench/store-path.ts`) and the pack's by about
   * a fifth, but the acknowledgements' p99 was worse with it in 8 of 12 paired bench runs (ADR 0015): not the default.
   */
  groupCommitMs?: number;
  /**
   * The longest a deferrable write (made inside `deferWrites`: the outbox's steps, a journal entry's completion)
   * waits for a write that is not, to go to disk with it, ms (default 5; 0: not at all). Every write still resolves
   * only once it is on disk; only when is different. See `deferWrites`.
   */
  deferMs?: number;
  /** Called with what recovery found (torn records cut off, damaged records skipped). */
  onWarning?: (message: string) => void;
  /** Tests: a compaction waits this long before renaming its new file over the log (writes go to both meanwhile). */
  renameDelayMs?: number;
}

/** Thrown when another live process holds the directory (or this process has it open already: `here`). */
export class StoreLockedError extends Error {
  constructor(
    message: string,
    readonly holder: { pid?: number; host?: string },
    readonly dir = '',
    readonly here = false,
  ) {
    super(message);
    this.name = 'StoreLockedError';
  }
}

/** The directory, its lock file or its log could not be created or read (`reason`, and the errno `code`). */
export class FileStoreError extends Error {
  constructor(
    message: string,
    readonly reason: 'mkdir' | 'lockfile' | 'read',
    readonly dir: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'FileStoreError';
  }
}

/** Directories opened by this process (a second open in one process is refused like one from another process). */
const openHere = new Set<string>();

/**
 * Whether a string can go into a record as it is: no line break (a record is one line) and no lone surrogate
 * (UTF-8 cannot carry one; JSON escapes it).
 */
function oneLine(s: string): boolean {
  return (
    s.indexOf('\n') < 0 && s.indexOf('\r') < 0 && (s as string & { isWellFormed(): boolean }).isWellFormed()
  );
}

function encode(rec: Rec): string {
  // Compact form when key and value hold no line break: `S<expires>:<key length>:<key><value>` and `D<key>`. The
  // values are mostly JSON themselves; writing them inside a JSON array escaped every quote of them again.
  let body: string;
  if (rec[0] === 'm') body = `M${rec[3]}:${fingerprintHex(rec[1], rec[2])}`;
  else if (rec[0] === 's' && oneLine(rec[1]) && oneLine(rec[2]))
    body = `S${rec[3]}:${rec[1].length}:${rec[1]}${rec[2]}`;
  else if (rec[0] === 'd' && oneLine(rec[1])) body = `D${rec[1]}`;
  else body = JSON.stringify(rec);
  return (crc32(body) >>> 0).toString(16).padStart(8, '0') + body + '\n';
}

function decodeCompact(body: string): Rec | null {
  if (body[0] === 'D') return ['d', body.slice(1)];
  if (body[0] === 'M') {
    const at = body.indexOf(':');
    const expires = Number(body.slice(1, at));
    const fp = at > 0 ? parseFingerprintHex(body.slice(at + 1)) : null;
    return fp && Number.isSafeInteger(expires) && expires > 0 ? ['m', fp[0], fp[1], expires] : null;
  }
  const a = body.indexOf(':');
  const b = a < 0 ? -1 : body.indexOf(':', a + 1);
  if (b < 0) return null;
  const expires = Number(body.slice(1, a));
  const keyLen = Number(body.slice(a + 1, b));
  if (!Number.isSafeInteger(expires) || !Number.isSafeInteger(keyLen) || keyLen < 0) return null;
  if (b + 1 + keyLen > body.length) return null;
  return ['s', body.slice(b + 1, b + 1 + keyLen), body.slice(b + 1 + keyLen), expires];
}

function decode(line: string): Rec | null {
  if (line.length < 10) return null;
  const json = line.slice(8);
  const sum = parseInt(line.slice(0, 8), 16);
  if (!/^[0-9a-f]{8}$/.test(line.slice(0, 8)) || crc32(json) >>> 0 !== sum) return null;
  if (json[0] === 'S' || json[0] === 'D' || json[0] === 'M') return decodeCompact(json);
  try {
    const r = JSON.parse(json) as unknown;
    if (!Array.isArray(r)) return null;
    if (r[0] === 's' && r.length === 4 && typeof r[1] === 'string' && typeof r[2] === 'string') {
      return ['s', r[1], r[2], typeof r[3] === 'number' ? r[3] : 0];
    }
    if (r[0] === 'd' && r.length === 2 && typeof r[1] === 'string') return ['d', r[1]];
    return null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class FileStore implements Store {
  readonly kind = 'file' as const;
  readonly dir: string;
  private readonly logPath: string;
  private readonly lockPath: string;
  private readonly items = new Map<string, Item>();
  /** Dedupe marks (a key set to `-` with a lifetime): fingerprints and expiry, not entries (lib/store/marks.ts). */
  private readonly marks = new MarkSet();
  private marksSweptAt = Date.now();
  private readonly compactMinBytes: number;
  private readonly warn: (m: string) => void;
  private readonly renameDelayMs: number;
  private readonly groupCommitMs: number;
  private readonly deferMs: number;
  /** True while `deferWrites` runs its function: the writes it makes are deferrable. */
  private deferring = false;
  /** Whether `buf` holds a write that is not deferrable (the next batch goes at once). */
  private urgent = false;
  /** When the oldest deferrable write in `buf` was made (performance.now()), 0 when there is none. */
  private deferredSince = 0;
  /** Ends the flush loop's wait for company early (a write that is not deferrable came, or close). */
  private wake: (() => void) | null = null;
  /** Characters in `buf`. */
  private bufChars = 0;
  private fd = -1;
  /** Whether `fd` was opened with O_DSYNC (see LOG_FLAGS). */
  private fdDsync = DSYNC;
  private logBytes = 0;
  private liveBytes = 0;
  private buf: string[] = [];
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private flushing: Promise<void> | null = null;
  /** A compaction in progress (see startCompaction). */
  private compaction: Compaction | null = null;
  private broken: Error | null = null;
  private closed = false;
  private heartbeat: NodeJS.Timeout | null = null;
  /** Drops expired entries as changes go on (see step). */
  private readonly sweeper = new Sweeper(this.items, (key) => this.drop(key));
  /** True while the log is read at open (see `apply`). */
  private loading = false;
  private readonly lockNonce = Math.random().toString(36).slice(2);

  private constructor(dir: string, opts: FileStoreOptions) {
    this.dir = path.resolve(dir);
    this.logPath = path.join(this.dir, LOG);
    this.lockPath = path.join(this.dir, LOCK);
    this.compactMinBytes = opts.compactMinBytes ?? COMPACT_MIN_BYTES;
    this.warn = opts.onWarning ?? (() => undefined);
    this.renameDelayMs = opts.renameDelayMs ?? 0;
    this.groupCommitMs = Math.max(0, opts.groupCommitMs ?? GROUP_COMMIT_MS);
    this.deferMs = Math.max(0, opts.deferMs ?? DEFER_MS);
  }

  /**
   * Runs `fn` with the writes it makes deferrable: each still resolves only once it is on disk, but it may wait up
   * to `deferMs` for another write to go to disk with, and a write that is not deferrable takes it along at once.
   * At a steady rate nearly every step of a message was a durable write of its own (a system call and, on a virtual
   * machine, a flush by the host); the steps nobody answers a platform on (the outbox's job, its attempts and its
   * end, the journal entry's completion) now ride with the next acknowledgement's write instead. Order is kept: the
   * log is written in the order the changes were made, and a change is applied (visible to `get`) at once.
   */
  deferWrites<T>(fn: () => T): T {
    const was = this.deferring;
    this.deferring = true;
    try {
      return fn();
    } finally {
      this.deferring = was;
    }
  }

  /** Opens (creating) the store in `dir`: takes the lock, replays the log. */
  static async open(dir: string, opts: FileStoreOptions = {}): Promise<FileStore> {
    const s = new FileStore(dir, opts);
    try {
      // Owner only: the log holds access tokens and message content in plain text.
      await fsp.mkdir(s.dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new FileStoreError(
        `cannot create the file store directory ${s.dir} (${code}): check the path and that Node-RED may write there`,
        'mkdir',
        s.dir,
        code,
      );
    }
    s.lock();
    try {
      await s.recover();
      s.fd = openLog(s.logPath);
      s.heartbeat = setInterval(() => {
        const now = new Date();
        fs.utimes(s.lockPath, now, now, () => undefined);
      }, HEARTBEAT_MS);
      s.heartbeat.unref();
    } catch (err) {
      s.unlock();
      throw err;
    }
    return s;
  }

  private lock(): void {
    if (openHere.has(this.dir)) {
      throw new StoreLockedError(
        `the file store in ${this.dir} is already open in this process; one store directory serves one Node-RED runtime`,
        { pid: process.pid, host: os.hostname() },
        this.dir,
        true,
      );
    }
    const mine = JSON.stringify({
      pid: process.pid,
      host: os.hostname(),
      nonce: this.lockNonce,
      at: Date.now(),
    });
    for (let tries = 0; tries < 3; tries++) {
      try {
        fs.writeFileSync(this.lockPath, mine, { flag: 'wx', mode: 0o600 });
        if (fs.readFileSync(this.lockPath, 'utf8') !== mine) continue;
        openHere.add(this.dir);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          const code = (err as NodeJS.ErrnoException).code ?? 'error';
          throw new FileStoreError(
            `cannot create the lock file of the file store in ${this.dir} (${code}): check that Node-RED may write there`,
            'lockfile',
            this.dir,
            code,
          );
        }
      }
      let holder: { pid?: number; host?: string } = {};
      let mtime = 0;
      try {
        holder = JSON.parse(fs.readFileSync(this.lockPath, 'utf8')) as typeof holder;
        mtime = fs.statSync(this.lockPath).mtimeMs;
      } catch {
        /* unreadable or just removed: treat as stale */
      }
      const sameHost = holder.host === os.hostname();
      const pidAlive =
        typeof holder.pid === 'number' && holder.pid !== process.pid ? alive(holder.pid) : false;
      const fresh = Date.now() - mtime < STALE_LOCK_MS;
      // On this host a dead pid frees the lock at once; elsewhere only a missing heartbeat does.
      const held = fresh && (sameHost ? pidAlive : true);
      if (held) {
        throw new StoreLockedError(
          `the file store in ${this.dir} is in use by process ${holder.pid ?? '?'} on ${holder.host ?? '?'}: ` +
            `a file store serves one Node-RED process; give each instance its own user directory, or use the ` +
            `Redis store for several instances (if that process is gone, delete ${this.lockPath})`,
          holder,
          this.dir,
        );
      }
      try {
        fs.unlinkSync(this.lockPath);
      } catch {
        /* someone else took it over first; try again */
      }
    }
    throw new StoreLockedError(`could not take the lock of the file store in ${this.dir}`, {}, this.dir);
  }

  private unlock(): void {
    openHere.delete(this.dir);
    try {
      const cur = fs.readFileSync(this.lockPath, 'utf8');
      if (cur.includes(`"nonce":"${this.lockNonce}"`)) fs.unlinkSync(this.lockPath);
    } catch {
      /* already gone */
    }
  }

  private async recover(): Promise<void> {
    await fsp.rm(path.join(this.dir, LOG + '.compact'), { force: true });
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(this.logPath, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw this.readError(err);
    }
    this.loading = true;
    let size = 0; // bytes read
    let goodEnd = 0; // the end of the last record read whole
    let damaged = 0;
    let badEnd = -1; // the end of the last line read, when it could not be decoded
    try {
      // Read in pieces (below the mmap threshold, see PIECE_CHARS); a record cut by a piece's end is kept in
      // `carry` until its newline comes.
      const piece = Buffer.allocUnsafeSlow(READ_BYTES);
      let carry: Buffer[] = [];
      for (;;) {
        let n: number;
        try {
          ({ bytesRead: n } = await fh.read(piece, 0, READ_BYTES, size));
        } catch (err) {
          throw this.readError(err);
        }
        if (n === 0) break;
        const got = piece.subarray(0, n);
        let pos = 0;
        for (let nl = got.indexOf(10); nl >= 0; nl = got.indexOf(10, pos)) {
          let text: string;
          if (carry.length) {
            carry.push(got.subarray(pos, nl));
            text = Buffer.concat(carry).toString('utf8');
            carry = [];
          } else {
            text = got.toString('utf8', pos, nl);
          }
          const end = size + nl + 1;
          if (badEnd >= 0) damaged++; // a line that could not be decoded, and more after it: damaged
          badEnd = -1;
          const rec = decode(text);
          if (rec) {
            this.apply(rec);
            goodEnd = end;
          } else {
            badEnd = end;
          }
          pos = nl + 1;
        }
        if (pos < n) carry.push(Buffer.from(got.subarray(pos))); // a copy: the piece is read into again
        size += n;
      }
    } finally {
      await fh.close().catch(() => undefined);
      this.loading = false;
    }
    const now = Date.now();
    for (const [k, it] of this.items) if (it.expires <= now) this.drop(k);
    // A last record without its newline, or a damaged last line: the process died while writing it. Cut off.
    const torn = size > goodEnd;
    if (torn) {
      if (badEnd >= 0 && badEnd < size) damaged++; // a damaged line followed by a torn record
      this.warn(`file store ${this.dir}: cut off an incomplete last record (${size - goodEnd} bytes)`);
      await fsp.truncate(this.logPath, goodEnd);
    }
    this.logBytes = torn ? goodEnd : size;
    if (damaged) {
      this.warn(`file store ${this.dir}: skipped ${damaged} damaged record(s) in the middle of the log`);
      await this.rewrite();
    } else if (this.needsCompaction()) {
      await this.rewrite();
    }
  }

  private readError(err: unknown): FileStoreError {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    return new FileStoreError(
      `cannot read the file store log ${this.logPath} (${code})`,
      'read',
      this.dir,
      code,
    );
  }

  /** `unmarked`: the caller knows the key has no mark (it just looked). */
  private apply(rec: Rec, unmarked = false): void {
    if (rec[0] === 'm') {
      this.marks.addFp(rec[1], rec[2], rec[3]);
      return;
    }
    if (rec[0] === 's' && rec[2] === MARK && rec[3] > 0) {
      this.drop(rec[1]);
      this.marks.add(rec[1], rec[3]);
      return;
    }
    // A key is either an entry or a mark, never both: a key that is an entry has no mark to remove (and its
    // fingerprint need not be computed). While the log is read, a compaction's marks may come after an entry of the
    // same key (its mark was set meanwhile; the tail sets it again), so there every mark is looked for.
    if (this.marks.size && !unmarked && (this.loading || !this.items.has(rec[1]))) this.marks.delete(rec[1]);
    if (rec[0] === 's') {
      // Replaced in place (a Map keeps the position of a key that is set again), so that a compaction's snapshot,
      // which walks the entries, does not meet the same key again and again.
      const old = this.items.get(rec[1]);
      if (old) this.liveBytes -= rec[1].length + old.value.length + 32;
      const it = { value: rec[2], expires: rec[3] > 0 ? rec[3] : Infinity };
      this.items.set(rec[1], it);
      this.liveBytes += rec[1].length + rec[2].length + 32;
    } else {
      this.drop(rec[1]);
    }
  }

  private drop(key: string): void {
    const old = this.items.get(key);
    if (!old) return;
    this.items.delete(key);
    this.liveBytes -= key.length + old.value.length + 32;
  }

  private needsCompaction(): boolean {
    const live = this.liveBytes + this.marks.size * MARK_BYTES;
    return this.logBytes > this.compactMinBytes && this.logBytes > 2 * live;
  }

  /** Writes the live state to a new log and renames it over the old one. Runs only inside the flush loop. */
  private async rewrite(): Promise<void> {
    const tmp = this.logPath + '.compact';
    const now = Date.now();
    const lines: string[] = [];
    for (const [k, it] of this.items) {
      if (it.expires <= now) continue;
      lines.push(encode(['s', k, it.value, it.expires === Infinity ? 0 : it.expires]));
    }
    for (const [hi, lo, expires] of this.marks.entries(now)) lines.push(encode(['m', hi, lo, expires]));
    const fh = await fsp.open(tmp, 'w', 0o600);
    let bytes = 0;
    try {
      for (let i = 0; i < lines.length; i += 2048) {
        const chunk = utf8Pieces([lines.slice(i, i + 2048).join('')]);
        bytes += byteCount(chunk);
        await writeAll(fh.fd, chunk);
      }
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, this.logPath);
    await this.syncDir();
    if (this.fd >= 0) {
      const old = this.fd;
      this.fd = openLog(this.logPath);
      this.fdDsync = DSYNC;
      fs.closeSync(old);
    }
    this.logBytes = bytes;
  }

  private async syncDir(): Promise<void> {
    let dh: fsp.FileHandle | undefined;
    try {
      dh = await fsp.open(this.dir, 'r');
      await dh.sync();
    } catch {
      /* some filesystems cannot sync a directory; the rename is still atomic */
    } finally {
      await dh?.close();
    }
  }

  /** Appends a record; resolves when it is on disk. */
  private log(rec: Rec): Promise<void> {
    if (this.broken) return Promise.reject(this.broken);
    const line = encode(rec);
    this.buf.push(line);
    this.bufChars += line.length;
    if (!this.deferring || this.deferMs === 0) {
      this.urgent = true;
      this.wake?.();
    } else if (this.deferredSince === 0) this.deferredSince = performance.now();
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.flushing) this.flushing = this.flushLoop();
    return p;
  }

  /**
   * How long `buf` should still wait for company, ms: while it holds deferrable writes only, until the oldest of
   * them has waited `deferMs`; 0 when it should go now (a write that is not deferrable, a full buffer, close).
   */
  private companyWait(): number {
    if (!this.buf.length || this.urgent || this.closed || this.bufChars >= GROUP_FULL_CHARS) return 0;
    return Math.max(0, this.deferredSince + this.deferMs - performance.now());
  }

  /** Waits `ms`, or less when a write that is not deferrable comes or the store closes (see `log`). */
  private waitForCompany(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
      const timer = setTimeout(done, Math.ceil(ms));
      this.wake = done;
    });
  }

  private async flushLoop(): Promise<void> {
    // Let every change made in this turn of the event loop join the first batch.
    await new Promise<void>((r) => setImmediate(r));
    while (!this.broken) {
      // Decided and taken without a pause in between: what is logged during an await joins the decision after it.
      const company = this.companyWait();
      if (company > 0) {
        await this.waitForCompany(company);
        continue;
      }
      const c = this.compaction;
      if (c?.failed) {
        this.abandonCompaction(c);
        continue;
      }
      if (c?.swapped) {
        this.switchToCompacted(c);
        continue;
      }
      // The snapshot is written: this batch also brings the new file up to date and makes it durable.
      const takeOver = c !== null && c.ready && !c.dual;
      if (!this.buf.length && !takeOver) break;
      const data = this.buf.join('');
      const waiters = this.waiters;
      const startedAt = performance.now();
      this.buf = [];
      this.bufChars = 0;
      this.waiters = [];
      this.urgent = false;
      this.deferredSince = 0;
      const bytes = utf8Pieces([data]);
      let extra: Buffer[] | null = null;
      if (c && (c.dual || takeOver)) {
        extra = takeOver ? utf8Pieces([...c.tail, data]) : bytes;
        c.tail = [];
        c.tailChars = 0;
      } else if (c && data) {
        c.tail.push(data);
        c.tailChars += data.length;
      }
      const [logged, copied] = await Promise.allSettled([
        data ? writeAndSync(this.fd, bytes, this.fdDsync) : Promise.resolve(),
        extra && c ? writeAndSync(c.fd, extra, false) : Promise.resolve(),
      ]);
      // The new file failing before its rename began only ends the compaction; after, it is where the log is.
      const copyFailed = copied.status === 'rejected';
      const err: unknown =
        logged.status === 'rejected' ? logged.reason : copyFailed && c?.swap ? copied.reason : null;
      if (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'error';
        this.broken = new Error(
          `the file store in ${this.dir} could not write to disk (${code}): free disk space or fix the ` +
            `permissions, then redeploy or restart Node-RED`,
        );
        for (const w of [...waiters, ...this.waiters]) w.reject(this.broken);
        this.waiters = [];
        this.buf = [];
        this.bufChars = 0;
        this.urgent = false;
        this.deferredSince = 0;
        break;
      }
      this.logBytes += byteCount(bytes);
      if (c && copyFailed) c.failed = copied.reason as NodeJS.ErrnoException;
      else if (c && extra) {
        c.bytes += byteCount(extra);
        if (takeOver) {
          c.dual = true;
          c.swap = this.swapIn(c);
        }
      }
      for (const w of waiters) w.resolve();
      if (!this.compaction && this.needsCompaction()) this.startCompaction();
      // Group commit: what the resolved changes set off, and what else comes meanwhile, joins the next batch.
      const wait = startedAt + this.groupCommitMs - performance.now();
      if (wait > 0 && !this.closed && this.bufChars < GROUP_FULL_CHARS) {
        await new Promise<void>((r) => setTimeout(r, Math.ceil(wait)));
      }
    }
    this.flushing = null;
  }

  /**
   * Starts a compaction. In the background: the live state is written to `data.log.compact` (in slices), then
   * what was logged meanwhile (the tail), until little is left; synced. Then the write loop takes over: its next
   * batch goes to the log and, after the rest of the tail, to the new file, both synced in parallel; from then on
   * every batch goes to both, so either file holds everything acknowledged. The new file is renamed over the log
   * and the directory synced meanwhile, in the background; once that is done, the loop writes to the new file
   * alone. No batch waits for more than its own two parallel syncs (it waited for the whole swap before, the
   * acknowledgements' latency tail), and a crash at any point leaves a log with every acknowledged write.
   */
  private startCompaction(): void {
    const tmp = this.logPath + '.compact';
    const c: Compaction = {
      fd: -1,
      tail: [],
      tailChars: 0,
      bytes: 0,
      ready: false,
      dual: false,
      swap: null,
      swapped: false,
      failed: null,
      done: Promise.resolve(),
    };
    this.compaction = c;
    c.done = (async () => {
      try {
        c.fd = await new Promise<number>((resolve, reject) =>
          fs.open(tmp, 'w', 0o600, (err, fd) => (err ? reject(err) : resolve(fd))),
        );
        let lines: string[] = [];
        let size = 0;
        let now = Date.now();
        const put = async (text: string): Promise<void> => {
          const chunk = utf8Pieces([text]);
          c.bytes += byteCount(chunk);
          await writeAll(c.fd, chunk); // the event loop runs meanwhile: writes go on, and into the tail
          if (this.closed) throw new Error('closed');
        };
        // Encoded for at most SLICE_MS at a time, then the event loop runs: encoding 256 KiB of records without a
        // break put the p99 of the acknowledgements at 500 msg/s from 13 ms to 37 ms. Written in larger chunks,
        // so that the snapshot does not take one round trip to the thread pool per slice.
        const write = async (): Promise<void> => {
          const text = lines.join('');
          lines = [];
          size = 0;
          await put(text);
        };
        let sliceStart = performance.now();
        let count = 0;
        const due = (): boolean =>
          size >= CHUNK_CHARS || ((++count & 31) === 0 && performance.now() - sliceStart >= SLICE_MS);
        const pause = async (): Promise<void> => {
          if (size >= CHUNK_CHARS) await write();
          else await new Promise<void>((r) => setImmediate(r));
          if (this.closed) throw new Error('closed');
          sliceStart = performance.now();
          now = Date.now();
        };
        // Entries changed meanwhile may be visited again at the end (a key deleted and set again moves there):
        // stop after as many as there were. Every entry not visited by then was changed since, so it is in the tail.
        let left = this.items.size;
        for (const [k, it] of this.items) {
          if (left-- <= 0) break;
          if (it.expires <= now) continue;
          const line = encode(['s', k, it.value, it.expires === Infinity ? 0 : it.expires]);
          lines.push(line);
          size += line.length;
          if (due()) await pause();
        }
        // The marks: from a copy of their table taken now (changes made meanwhile are in the tail).
        for (const [hi, lo, expires] of this.marks.entries(now)) {
          const line = encode(['m', hi, lo, expires]);
          lines.push(line);
          size += line.length;
          if (due()) await pause();
        }
        await write();
        // Catch up with the tail (in order: the loop only appends to it), sync, and catch up once more, so that
        // the batch that takes over has little to add.
        const catchUp = async (): Promise<void> => {
          for (let rounds = 0; c.tailChars > TAKEOVER_CHARS && rounds < 16; rounds++) {
            const text = c.tail.join('');
            c.tail = [];
            c.tailChars = 0;
            await put(text);
          }
        };
        await catchUp();
        await datasync(c.fd);
        if (this.closed) throw new Error('closed');
        await catchUp();
        c.ready = true;
        if (!this.flushing) this.flushing = this.flushLoop();
      } catch (err) {
        await this.discardCompaction(c);
        if (!this.closed)
          this.warn(
            `file store ${this.dir}: compaction failed (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
          );
      }
    })();
  }

  /** Puts the new file in place of the log (it holds everything logged, and gets every batch meanwhile). */
  private async swapIn(c: Compaction): Promise<void> {
    if (this.renameDelayMs) await new Promise((r) => setTimeout(r, this.renameDelayMs));
    try {
      await fsp.rename(this.logPath + '.compact', this.logPath);
    } catch (err) {
      c.failed = err as NodeJS.ErrnoException; // the old log is still the log
      if (!this.flushing && !this.closed) this.flushing = this.flushLoop();
      return;
    }
    await this.syncDir();
    c.swapped = true;
    if (!this.flushing && !this.closed) this.flushing = this.flushLoop();
  }

  /** Between two batches: the renamed new file becomes the log. */
  private switchToCompacted(c: Compaction): void {
    const old = this.fd;
    // The renamed new file, opened again for appends with O_DSYNC (everything written to it is synced already);
    // failing that, or without O_DSYNC, written through the descriptor we have and synced after each batch.
    this.fd = c.fd;
    this.fdDsync = false;
    if (DSYNC) {
      try {
        this.fd = openLog(this.logPath);
        this.fdDsync = true;
        fs.close(c.fd, () => undefined);
      } catch {
        this.fd = c.fd;
      }
    }
    fs.close(old, () => undefined);
    this.logBytes = c.bytes;
    this.compaction = null;
    this.compactions++;
  }

  /** Between two batches: gives up a compaction whose new file could not be written or renamed. */
  private abandonCompaction(c: Compaction): void {
    void this.discardCompaction(c);
    this.warn(`file store ${this.dir}: compaction failed (${c.failed?.code ?? 'error'})`);
  }

  /** Forgets a compaction and removes its new file: the log stays as it is. */
  private async discardCompaction(c: Compaction): Promise<void> {
    if (this.compaction === c) this.compaction = null;
    if (c.fd >= 0) fs.closeSync(c.fd);
    c.fd = -1;
    await fsp.rm(this.logPath + '.compact', { force: true }).catch(() => undefined);
  }

  private live(key: string, now = Date.now()): Item | undefined {
    const it = this.items.get(key);
    if (!it) return undefined;
    if (it.expires <= now) {
      this.drop(key);
      this.step();
      return undefined;
    }
    return it;
  }

  /**
   * Drops expired entries as changes go on, a few per change; taken after every change, so that the cursor never
   * holds on to a table the Map has left (lib/store/sweep.ts).
   */
  private step(): void {
    const now = Date.now();
    this.sweeper.step(now);
    // Expired marks make room for new ones as they are met; a full pass once a minute returns the rest.
    if (now - this.marksSweptAt >= 60_000) {
      this.marksSweptAt = now;
      this.marks.sweep(now);
    }
  }

  /** Whether the key holds a live dedupe mark. */
  private marked(key: string): boolean {
    return this.marks.size > 0 && this.marks.has(key);
  }

  private check(): Error | null {
    if (this.closed) return new Error(`the file store in ${this.dir} is closed`);
    return this.broken;
  }

  private put(key: string, value: string, ttlMs?: number, unmarked = false): Promise<void> {
    const expires = ttlMs === undefined || ttlMs === Infinity ? Infinity : Date.now() + Math.max(0, ttlMs);
    this.apply(['s', key, value, expires === Infinity ? 0 : expires], unmarked);
    return this.log(['s', key, value, expires === Infinity ? 0 : expires]);
  }

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    const e = this.check();
    if (e) throw e;
    if (this.live(key) || this.marked(key)) return false;
    const done = this.put(key, value, ttlMs, true);
    this.step();
    await done;
    return true;
  }

  get(key: string): Promise<string | undefined> {
    const e = this.check();
    if (e) return Promise.reject(e);
    const it = this.live(key);
    return Promise.resolve(it ? it.value : this.marked(key) ? MARK : undefined);
  }

  set(key: string, value: string, ttlMs?: number): Promise<void> {
    const e = this.check();
    if (e) return Promise.reject(e);
    const done = this.put(key, value, ttlMs);
    this.step();
    return done;
  }

  delete(key: string): Promise<void> {
    const e = this.check();
    if (e) return Promise.reject(e);
    if (!this.items.has(key) && !this.marked(key)) return Promise.resolve();
    this.apply(['d', key]);
    this.step();
    return this.log(['d', key]);
  }

  async deleteIfEquals(key: string, expected: string): Promise<boolean> {
    const e = this.check();
    if (e) throw e;
    const it = this.live(key);
    const value = it ? it.value : this.marked(key) ? MARK : undefined;
    if (value === undefined || value !== expected) return false;
    this.apply(['d', key]);
    this.step();
    await this.log(['d', key]);
    return true;
  }

  async tryLock(key: string, ttlMs: number): Promise<(() => Promise<void>) | null> {
    const token = `${process.pid}:${Math.random().toString(36).slice(2)}`;
    if (!(await this.setIfAbsent(key, token, ttlMs))) return null;
    return async () => {
      if (this.closed) return;
      await this.deleteIfEquals(key, token);
    };
  }

  scan(prefix: string): Promise<[string, string][]> {
    const e = this.check();
    if (e) return Promise.reject(e);
    const now = Date.now();
    const out: [string, string][] = [];
    for (const [k, it] of this.items) {
      if (it.expires <= now)
        this.drop(k); // expired: gone from memory now (the log forgets it when compacted)
      else if (k.startsWith(prefix)) out.push([k, it.value]);
    }
    this.sweeper.reset(); // the sweep's pass is done too
    return Promise.resolve(out);
  }

  /** Background compactions completed since open (tests and health). */
  compactions = 0;

  /**
   * Where a compaction stands (tests and health): writing its snapshot, writing every batch to both files (until
   * the new one is renamed over the log and the switch is made), or none.
   */
  get compactionPhase(): 'snapshot' | 'both' | null {
    const c = this.compaction;
    return !c ? null : c.dual ? 'both' : 'snapshot';
  }

  /** Bytes in the log now (tests and health). */
  get logSize(): number {
    return this.logBytes;
  }

  /** Live keys, dedupe marks included (tests and health). */
  get size(): number {
    return this.items.size + this.marks.size;
  }

  /** Dedupe marks held (tests and health). */
  get markCount(): number {
    return this.marks.size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.wake?.();
    while (this.flushing) await this.flushing;
    if (this.compaction) {
      const c = this.compaction;
      await c.done;
      if (c.swap) await c.swap;
      if (c.swapped && !c.failed) {
        // Renamed: the new file is the log.
        this.switchToCompacted(c);
      } else if (this.compaction === c) {
        await this.discardCompaction(c);
      }
    }
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.fd >= 0) {
      try {
        fs.closeSync(this.fd);
      } catch {
        /* already closed */
      }
      this.fd = -1;
    }
    this.items.clear();
    this.sweeper.reset();
    this.marks.clear();
    this.unlock();
  }
}

/**
 * The log is opened with O_DSYNC where the platform has it (Linux, macOS, not Windows): a write returns once its
 * data is on disk, as a write followed by fdatasync would, in one trip to the thread pool instead of two (a batch's
 * durability was two queued operations, each with its own callback on the event loop). The compaction's new file
 * is written without it (its snapshot goes out in large chunks, then one sync) and synced after each batch it gets;
 * once it is the log, it is opened again with it.
 */
const { O_APPEND, O_CREAT, O_DSYNC, O_WRONLY } = fs.constants;
const DSYNC = typeof O_DSYNC === 'number' && O_DSYNC > 0;
export const LOG_FLAGS: number | string = DSYNC ? O_WRONLY | O_CREAT | O_APPEND | O_DSYNC : 'a';

/** Opens the log for appending (owner only: it holds access tokens and message content in plain text). */
function openLog(logPath: string): number {
  return fs.openSync(logPath, LOG_FLAGS, 0o600);
}

function datasync(fd: number): Promise<void> {
  return new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

/** `texts` in UTF-8, in Buffers of at most PIECE_CHARS characters each (a surrogate pair is never cut). */
function utf8Pieces(texts: readonly string[]): Buffer[] {
  const out: Buffer[] = [];
  for (const text of texts) {
    for (let i = 0; i < text.length;) {
      let end = Math.min(text.length, i + PIECE_CHARS);
      const last = text.charCodeAt(end - 1);
      if (end < text.length && last >= 0xd800 && last <= 0xdbff) end--; // a high surrogate: its pair goes with it
      out.push(Buffer.from(i === 0 && end === text.length ? text : text.slice(i, end), 'utf8'));
      i = end;
    }
  }
  return out;
}

function byteCount(bufs: readonly Buffer[]): number {
  let n = 0;
  for (const b of bufs) n += b.length;
  return n;
}

/** Writes `data` and resolves once it is on disk (on a descriptor opened with O_DSYNC, the writes alone do that). */
async function writeAndSync(fd: number, data: Buffer[], dsync: boolean): Promise<void> {
  if (byteCount(data)) await writeAll(fd, data);
  if (!dsync) await datasync(fd);
}

/** Writes the pieces in order, in one `writev` unless the system writes less (then the rest). */
async function writeAll(fd: number, data: Buffer[]): Promise<void> {
  let bufs = data.filter((b) => b.length > 0);
  while (bufs.length) {
    let n = await new Promise<number>((resolve, reject) =>
      fs.writev(fd, bufs, null, (err, written) => (err ? reject(err) : resolve(written))),
    );
    if (n <= 0) throw Object.assign(new Error('the disk took no bytes'), { code: 'EIO' });
    let i = 0;
    while (i < bufs.length && n >= bufs[i].length) n -= bufs[i++].length;
    bufs = bufs.slice(i);
    if (n > 0) bufs[0] = bufs[0].subarray(n);
  }
}
