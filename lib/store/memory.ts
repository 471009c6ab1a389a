/** The memory backend: one process, nothing survives a restart. For tests and for users who ask for it. */
import type { Store } from './types';

interface Item {
  value: string;
  expires: number; // epoch ms, Infinity for none
}

export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  private readonly items = new Map<string, Item>();
  private sweeps = 0;

  private live(key: string, now = Date.now()): Item | undefined {
    const it = this.items.get(key);
    if (!it) return undefined;
    if (it.expires <= now) {
      this.items.delete(key);
      return undefined;
    }
    return it;
  }

  /** Drops expired items now and then so a long-running process does not grow without bound. */
  private maybeSweep(): void {
    if (++this.sweeps < 1024) return;
    this.sweeps = 0;
    const now = Date.now();
    for (const [k, it] of this.items) if (it.expires <= now) this.items.delete(k);
  }

  setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    this.maybeSweep();
    if (this.live(key)) return Promise.resolve(false);
    this.items.set(key, { value, expires: Date.now() + ttlMs });
    return Promise.resolve(true);
  }

  get(key: string): Promise<string | undefined> {
    return Promise.resolve(this.live(key)?.value);
  }

  set(key: string, value: string, ttlMs?: number): Promise<void> {
    this.maybeSweep();
    this.items.set(key, { value, expires: ttlMs === undefined ? Infinity : Date.now() + ttlMs });
    return Promise.resolve();
  }

  delete(key: string): Promise<void> {
    this.items.delete(key);
    return Promise.resolve();
  }

  deleteIfEquals(key: string, expected: string): Promise<boolean> {
    const it = this.live(key);
    if (!it || it.value !== expected) return Promise.resolve(false);
    this.items.delete(key);
    return Promise.resolve(true);
  }

  async tryLock(key: string, ttlMs: number): Promise<(() => Promise<void>) | null> {
    const token = `${process.pid}:${Math.random().toString(36).slice(2)}`;
    if (!(await this.setIfAbsent(key, token, ttlMs))) return null;
    return async () => {
      await this.deleteIfEquals(key, token);
    };
  }

  scan(prefix: string): Promise<[string, string][]> {
    const now = Date.now();
    const out: [string, string][] = [];
    for (const [k, it] of this.items) {
      // A pass over everything anyway: expired items go now (an idle store would otherwise hold them until its
      // next writes start a sweep).
      if (it.expires <= now) this.items.delete(k);
      else if (k.startsWith(prefix)) out.push([k, it.value]);
    }
    return Promise.resolve(out);
  }

  /** Items held, expired ones not yet dropped included (tests). */
  get size(): number {
    return this.items.size;
  }

  close(): Promise<void> {
    this.items.clear();
    return Promise.resolve();
  }
}
