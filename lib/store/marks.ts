/**
 * Dedupe marks, kept compactly: "this key was seen, until then". The journal and the outbox remember every message
 * id for their dedupe windows by setting its key to `-` with a lifetime; in a Map that costs the key string, an
 * entry and an object (about 250 bytes a mark, 0.65 KB of heap per message with both windows). Here a mark is a
 * 64-bit fingerprint of the key (SHA-256, so ids an attacker chooses cannot be made to collide) and an expiry in
 * seconds, in three typed arrays of an open-addressing table: 12 bytes a slot, 16 to 40 bytes a mark.
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

export class MarkSet {
  private hi = new Uint32Array(0);
  private lo = new Uint32Array(0);
  /** Expiry in epoch seconds (≥ 2); EMPTY or DELETED for a free slot. */
  private exp = new Uint32Array(0);
  private mask = 0;
  /** Slots not EMPTY (live, expired, deleted): what the probe sequences run through. */
  private used = 0;
  private live = 0;

  constructor(capacity = MIN_CAPACITY) {
    this.reset(capacity);
  }

  /** An empty table of at least `capacity` slots (a power of two). */
  private reset(capacity: number): void {
    let cap = MIN_CAPACITY;
    while (cap < capacity) cap *= 2;
    this.hi = new Uint32Array(cap);
    this.lo = new Uint32Array(cap);
    this.exp = new Uint32Array(cap);
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
    return this.exp.length * 12;
  }

  private find(hi: number, lo: number): number {
    const { mask } = this;
    for (let i = (lo ^ hi) & mask, n = 0; n <= mask; i = (i + 1) & mask, n++) {
      const e = this.exp[i];
      if (e === EMPTY) return -1;
      if (e !== DELETED && this.lo[i] === lo && this.hi[i] === hi) return i;
    }
    return -1;
  }

  /** Whether the key is marked and its mark has not expired at `nowMs`. */
  has(key: string, nowMs = Date.now()): boolean {
    const [hi, lo] = fingerprint(key);
    return this.hasFp(hi, lo, nowMs);
  }

  hasFp(hi: number, lo: number, nowMs = Date.now()): boolean {
    const i = this.find(hi, lo);
    return i >= 0 && this.exp[i] * 1000 > nowMs;
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
      this.exp[found] = sec;
      return;
    }
    if ((this.used + 1) * 4 > this.exp.length * 3) this.rehash(nowMs);
    const { mask } = this;
    const nowSec = Math.floor(nowMs / 1000);
    for (let i = (lo ^ hi) & mask; ; i = (i + 1) & mask) {
      const e = this.exp[i];
      // A free slot, or one whose mark has expired: reused (the key was not found, so it is not further on).
      if (e === EMPTY || e === DELETED || e <= nowSec) {
        if (e === EMPTY) this.used++;
        else if (e !== DELETED) this.live--; // an expired mark is dropped here
        this.hi[i] = hi;
        this.lo[i] = lo;
        this.exp[i] = sec;
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
    this.exp[i] = DELETED;
    this.live--;
    return true;
  }

  /**
   * Live marks at `nowMs`: fingerprint halves and expiry (ms). Walks a copy of the table taken when called, so
   * the marks may change while a compaction writes them out chunk by chunk.
   */
  *entries(nowMs = Date.now()): Generator<[number, number, number]> {
    const nowSec = nowMs / 1000;
    const hi = this.hi.slice();
    const lo = this.lo.slice();
    const exp = this.exp.slice();
    for (let i = 0; i < exp.length; i++) {
      const e = exp[i];
      if (e > DELETED && e > nowSec) yield [hi[i], lo[i], e * 1000];
    }
  }

  /** Drops expired and deleted slots, growing or shrinking the table to keep it a quarter to a half full. */
  private rehash(nowMs: number): void {
    const nowSec = nowMs / 1000;
    const { hi, lo, exp } = this;
    let live = 0;
    for (let i = 0; i < exp.length; i++) if (exp[i] > DELETED && exp[i] > nowSec) live++;
    this.reset(live * 2 + 2);
    for (let i = 0; i < exp.length; i++) {
      const e = exp[i];
      if (e <= DELETED || e <= nowSec) continue;
      for (let j = (lo[i] ^ hi[i]) & this.mask; ; j = (j + 1) & this.mask) {
        if (this.exp[j] === EMPTY) {
          this.hi[j] = hi[i];
          this.lo[j] = lo[i];
          this.exp[j] = e;
          this.used++;
          this.live++;
          break;
        }
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
