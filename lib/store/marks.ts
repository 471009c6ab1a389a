/**
 * Dedupe marks, kept compactly: "this key was seen, until then". The journal and the outbox remember every message
 * id for their dedupe windows by setting its key to `-` with a lifetime; in a Map that costs the key string, an
 * entry and an object (about 250 bytes a mark, 0.65 KB of heap per message with both windows). Here a mark is a
 * 64-bit fingerprint of the key (SHA-256, so ids an attacker chooses cannot be made to collide) and an expiry in
 * seconds, in an open-addressing table kept in segments of 96 KiB: 12 bytes a slot, 16 to 40 bytes a mark.
 *
 * A fingerprint stands for its key: two keys with the same 64 bits would count as one (odds about 1 in 10^13 for a
 * million marks). Expiry is rounded up to the second.
 */
import * as crypto from 'node:crypto';

const EMPTY = 0;
const DELETED = 1;
const MIN_CAPACITY = 1024;

/** One-shot hashing (Node 20.12+): no Hash object per call, a third of the time of `createHash` for a short key. */
const oneShot = (crypto as { hash?: (alg: string, data: string, enc: 'hex') => string }).hash;

/** The two 32-bit halves of a key's fingerprint (the first 8 bytes of its SHA-256). */
export function fingerprint(key: string): [number, number] {
  if (oneShot) {
    const h = oneShot('sha256', key, 'hex');
    return [parseInt(h.slice(0, 8), 16), parseInt(h.slice(8, 16), 16)];
  }
  const d = crypto.createHash('sha256').update(key).digest();
  return [d.readUInt32BE(0), d.readUInt32BE(4)];
}

/** A fingerprint as 16 hex digits (how the file store logs a mark it only knows by fingerprint). */
export function fingerprintHex(hi: number, lo: number): string {
  return hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');
}

export function parseFingerprintHex(hex: string): [number, number] | null {
  if (!/^[0-9a-f]{16}$/.test(hex)) return null;
  return [parseInt(hex.slice(0, 8), 16), parseInt(hex.slice(8), 16)];
}

/**
 * Slots a segment of the table holds. A segment is one Uint32Array of three words a slot (fingerprint halves,
 * expiry): 96 KiB, below glibc's default mmap threshold (128 KiB). A table in one piece was three arrays of up to
 * several MB, allocated again at every growth and copied at every compaction: each such block freed raises glibc's
 * mmap threshold to its size, after which blocks that size come from the heap and leave holes there that malloc
 * keeps (the soak's RSS grew while V8's heap stayed flat; ADR 0014).
 */
const SEG_BITS = 13;
const SEG_SLOTS = 1 << SEG_BITS;
const SEG_MASK = SEG_SLOTS - 1;

export class MarkSet {
  /** The table: slot i is at word (i & SEG_MASK) * 3 of segment i >>> SEG_BITS: hi, lo, expiry. */
  private segs: Uint32Array[] = [];
  /** Slots in all (a power of two). */
  private cap = 0;
  private mask = 0;
  /** Slots not EMPTY (live, expired, deleted): what the probe sequences run through. */
  private used = 0;
  private live = 0;

  constructor(capacity = MIN_CAPACITY) {
    this.reset(capacity);
  }

  /** An empty table of at least `capacity` slots (a power of two). Expiry in epoch seconds (≥ 2), or EMPTY or DELETED. */
  private reset(capacity: number): void {
    let cap = MIN_CAPACITY;
    while (cap < capacity) cap *= 2;
    const segs: Uint32Array[] = [];
    for (let left = cap; left > 0; left -= SEG_SLOTS)
      segs.push(new Uint32Array(Math.min(left, SEG_SLOTS) * 3));
    this.segs = segs;
    this.cap = cap;
    this.mask = cap - 1;
    this.used = 0;
    this.live = 0;
  }

  /** Marks (live or expired but not yet swept). */
  get size(): number {
    return this.live;
  }

  /** Bytes of the table. */
  get bytes(): number {
    return this.cap * 12;
  }

  /** The largest single block of the table, in bytes (segments stay below glibc's mmap threshold). */
  get largestBlock(): number {
    return Math.min(this.cap, SEG_SLOTS) * 12;
  }

  /** Word index of slot i's fingerprint in its segment (expiry at +2). */
  private find(hi: number, lo: number): number {
    const { mask, segs } = this;
    for (let i = (lo ^ hi) & mask, n = 0; n <= mask; i = (i + 1) & mask, n++) {
      const s = segs[i >>> SEG_BITS];
      const w = (i & SEG_MASK) * 3;
      const e = s[w + 2];
      if (e === EMPTY) return -1;
      if (e !== DELETED && s[w + 1] === lo && s[w] === hi) return i;
    }
    return -1;
  }

  private expAt(i: number): number {
    return this.segs[i >>> SEG_BITS][(i & SEG_MASK) * 3 + 2];
  }

  private setExp(i: number, sec: number): void {
    this.segs[i >>> SEG_BITS][(i & SEG_MASK) * 3 + 2] = sec;
  }

  /** Whether the key is marked and its mark has not expired at `nowMs`. */
  has(key: string, nowMs = Date.now()): boolean {
    const [hi, lo] = fingerprint(key);
    return this.hasFp(hi, lo, nowMs);
  }

  hasFp(hi: number, lo: number, nowMs = Date.now()): boolean {
    const i = this.find(hi, lo);
    return i >= 0 && this.expAt(i) * 1000 > nowMs;
  }

  /** Marks the key until `expiresMs` (replacing an earlier mark of it). */
  add(key: string, expiresMs: number, nowMs = Date.now()): void {
    const [hi, lo] = fingerprint(key);
    this.addFp(hi, lo, expiresMs, nowMs);
  }

  addFp(hi: number, lo: number, expiresMs: number, nowMs = Date.now()): void {
    const sec = Math.max(2, Math.min(0xffffffff, Math.ceil(expiresMs / 1000)));
    const found = this.find(hi, lo);
    if (found >= 0) {
      this.setExp(found, sec);
      return;
    }
    if ((this.used + 1) * 4 > this.cap * 3) this.rehash(nowMs);
    const nowSec = Math.floor(nowMs / 1000);
    this.place(hi, lo, sec, nowSec);
  }

  /** Puts a mark the table does not hold into the first free or expired slot of its probe sequence. */
  private place(hi: number, lo: number, sec: number, nowSec: number): void {
    const { mask, segs } = this;
    for (let i = (lo ^ hi) & mask; ; i = (i + 1) & mask) {
      const s = segs[i >>> SEG_BITS];
      const w = (i & SEG_MASK) * 3;
      const e = s[w + 2];
      // A free slot, or one whose mark has expired: reused (the key was not found, so it is not further on).
      if (e === EMPTY || e === DELETED || e <= nowSec) {
        if (e === EMPTY) this.used++;
        else if (e !== DELETED) this.live--; // an expired mark is dropped here
        s[w] = hi;
        s[w + 1] = lo;
        s[w + 2] = sec;
        this.live++;
        return;
      }
    }
  }

  /** Removes the key's mark; true when there was one. */
  delete(key: string): boolean {
    const [hi, lo] = fingerprint(key);
    const i = this.find(hi, lo);
    if (i < 0) return false;
    this.setExp(i, DELETED);
    this.live--;
    return true;
  }

  /**
   * Live marks at `nowMs`: fingerprint halves and expiry (ms), for a compaction that writes them out chunk by chunk
   * while the marks go on changing. It walks the table it was called on, not a copy (a copy was one more
   * multi-MB allocation per compaction): a growth or sweep meanwhile builds a new table and leaves the walked one
   * as it was. In place, a mark may be added, re-timed, deleted or its expired slot reused while the walk runs; the
   * walk then yields it as it finds it, or not. Each such change is logged after the walk began, so the compaction's
   * tail, replayed after what the walk wrote, sets it right. Every mark live at the call and not changed since is
   * yielded exactly once.
   */
  *entries(nowMs = Date.now()): Generator<[number, number, number]> {
    const nowSec = nowMs / 1000;
    for (const s of this.segs) {
      for (let w = 0; w < s.length; w += 3) {
        const e = s[w + 2];
        if (e > DELETED && e > nowSec) yield [s[w], s[w + 1], e * 1000];
      }
    }
  }

  /** Drops expired and deleted slots, growing or shrinking the table to keep it a quarter to a half full. */
  private rehash(nowMs: number): void {
    const nowSec = nowMs / 1000;
    const old = this.segs;
    let live = 0;
    for (const s of old) for (let w = 2; w < s.length; w += 3) if (s[w] > DELETED && s[w] > nowSec) live++;
    this.reset(live * 2 + 2);
    for (const s of old) {
      for (let w = 0; w < s.length; w += 3) {
        const e = s[w + 2];
        if (e > DELETED && e > nowSec) this.place(s[w], s[w + 1], e, 0);
      }
    }
  }

  /** Removes expired marks now (a full pass; for sweeps). */
  sweep(nowMs = Date.now()): void {
    this.rehash(nowMs);
  }

  clear(): void {
    this.reset(MIN_CAPACITY);
  }
}
