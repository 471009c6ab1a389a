/** The memory backend: one process, nothing survives a restart. For tests and for users who ask for it. */
import { Sweeper } from './sweep';
import type { Store } from './types';

interface Item {
  value: string;
  expires: number; // epoch ms, Infinity for none
}

export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  private readonly items = new Map<string, Item>();
  /** Drops expired items as changes go on, so a long-running process does not grow without bound. */
  private readonly sweeper = new Sweeper(this.items, (key) => void this.items.delete(key));

  private live(key: string, now = Date.now()): Item | undefined {
    const it = this.items.get(key);
    if (!it) return undefined;
    if (it.expires <= now) {
      this.items.delete(key);
      this.step();
      return undefined;
    }
    return it;
  }

  /** After every change, so that the sweep's cursor never holds on to a table the Map has left (lib/store/sweep.ts). */
  private step(): void {
    this.sweeper.step(Date.now());
  }

  setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    if (this.live(key)) return Promise.resolve(false);
    this.items.set(key, { value, expires: Date.now() + ttlMs });
    this.step();
    return Promise.resolve(true);
  }

  get(key: string): Promise<string | undefined> {
    return Promise.resolve(this.live(key)?.value);
  }

  set(key: string, value: string, ttlMs?: number): Promise<void> {
    this.items.set(key, { value, expires: ttlMs === undefined ? Infinity : Date.now() + ttlMs });
    this.step();
    return Promise.resolve();
  }

  delete(key: string): Promise<void> {
    if (this.items.delete(key)) this.step();
    return Promise.resolve();
  }

  deleteIfEquals(key: string, expected: string): Promise<boolean> {
    const it = this.live(key);
    if (!it || it.value !== expected) return Promise.resolve(false);
    this.items.delete(key);
    this.step();
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
    this.sweeper.reset(); // the sweep's pass is done too
    return Promise.resolve(out);
  }

  /** Items held, expired ones not yet dropped included (tests). */
  get size(): number {
    return this.items.size;
  }

  close(): Promise<void> {
    this.items.clear();
    this.sweeper.reset();
    return Promise.resolve();
  }
}
