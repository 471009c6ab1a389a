/**
 * The Redis backend: for several Node-RED instances behind a load balancer. Dedupe is `SET NX PX`, a conditional
 * delete and lock release are one Lua script each (atomic on the server), every key carries the configured prefix.
 * The outbox and the journal keep their own structures (lists, sorted sets, hashes) next to these keys through
 * `client` and `key()`; see lib/outbox/redis.ts and lib/journal/.
 *
 * Connection: opened eagerly with a bounded wait; an unreachable server is a clear error at open. After that
 * ioredis reconnects on its own (backoff up to 2 s); commands issued while disconnected wait in its offline queue
 * and fail after `commandTimeoutMs`, so nothing hangs. `state` says whether the connection is up, for the health
 * figures. Error messages name the server as host:port and never include the URL (it may carry a password).
 */
import Redis from 'ioredis';
import type { Store } from './types';

export interface RedisStoreOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS). Default `redis://127.0.0.1:6379`. */
  url?: string;
  /** Overrides the URL's password (the editor keeps it as a credential). */
  password?: string;
  /** Put in front of every key, e.g. `prod:` (default none). */
  keyPrefix?: string;
  /** How long open() waits for the server, ms (default 5000). */
  connectTimeoutMs?: number;
  /** A command that gets no answer within this is failed, ms (default 5000). */
  commandTimeoutMs?: number;
}

export class RedisStoreError extends Error {
  constructor(
    message: string,
    readonly code?: string,
    /** Why opening failed: a bad URL, a refused password, or no answer; with host:port (never the URL). */
    readonly open?: { reason: 'url' | 'auth' | 'unreachable'; where: string; detail: string },
  ) {
    super(message);
    this.name = 'RedisStoreError';
  }
}

const DEL_IF_EQUALS = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/** host:port (and db) of a Redis URL, safe to show: never the user or password. */
export function redisWhere(url: string): string {
  try {
    const u = new URL(url);
    const db = u.pathname && u.pathname !== '/' ? u.pathname : '';
    return `${u.hostname || '127.0.0.1'}:${u.port || '6379'}${db}`;
  } catch {
    return 'the configured server';
  }
}

/** An error's message with anything URL-like removed (a URL may carry a password). */
function safeRedisMessage(err: unknown): { message: string; code?: string } {
  const e = err as { message?: unknown; code?: unknown };
  let m = typeof e?.message === 'string' ? e.message : String(err);
  m = m.replace(/rediss?:\/\/\S*/gi, '<url>');
  if (m.length > 200) m = m.slice(0, 200) + '…';
  return { message: m, code: typeof e?.code === 'string' ? e.code : undefined };
}

function ttlArg(ttlMs: number): number | null {
  if (ttlMs === Infinity) return null;
  return Math.max(1, Math.ceil(ttlMs));
}

export class RedisStore implements Store {
  readonly kind = 'redis' as const;
  /** The ioredis client (for the outbox and journal engines of this pack). */
  readonly client: Redis;
  readonly prefix: string;
  /** host:port/db, safe to show. */
  readonly where: string;
  private closed = false;
  private up = false;
  private lastErr: { at: number; message: string } | undefined;

  private constructor(client: Redis, prefix: string, where: string) {
    this.client = client;
    this.prefix = prefix;
    this.where = where;
    client.on('ready', () => {
      this.up = true;
    });
    client.on('close', () => {
      this.up = false;
    });
    client.on('error', (err: unknown) => {
      // Without a listener ioredis prints every reconnect failure; keep the last one for the health figures.
      this.lastErr = { at: Date.now(), message: safeRedisMessage(err).message };
    });
    client.defineCommand('wxcxDelIfEquals', { numberOfKeys: 1, lua: DEL_IF_EQUALS });
  }

  static async open(opts: RedisStoreOptions = {}): Promise<RedisStore> {
    const url = opts.url || 'redis://127.0.0.1:6379';
    const where = redisWhere(url);
    let parsed: URL;
    try {
      parsed = new URL(url);
      if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new Error('protocol');
    } catch {
      throw new RedisStoreError(
        'the Redis URL is not valid: use redis://host:port[/db] or rediss://host:port[/db]',
        undefined,
        { reason: 'url', where, detail: '' },
      );
    }
    const connectTimeout = opts.connectTimeoutMs ?? 5000;
    const client = new Redis(url, {
      lazyConnect: true,
      connectTimeout,
      commandTimeout: opts.commandTimeoutMs ?? 5000,
      maxRetriesPerRequest: 2,
      enableOfflineQueue: true,
      retryStrategy: (times: number) => Math.min(100 * times, 2000),
      ...(opts.password ? { password: opts.password } : {}),
    });
    const store = new RedisStore(client, opts.keyPrefix ?? '', where);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        client.connect(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${connectTimeout} ms`)),
            connectTimeout,
          );
        }),
      ]);
      await client.ping();
    } catch (err) {
      client.disconnect();
      // A refused AUTH arrives as an 'error' event while connect() waits on: prefer what the server said.
      const said = store.lastErr?.message;
      const { message: m0, code } = safeRedisMessage(err);
      const message = said ?? m0;
      const auth = /NOAUTH|WRONGPASS|invalid password|invalid username/i.test(message);
      const hint = auth ? 'check the Redis password' : 'check that Redis runs there and the URL is right';
      throw new RedisStoreError(`cannot reach Redis at ${where} (${message}): ${hint}`, code, {
        reason: auth ? 'auth' : 'unreachable',
        where,
        detail: message,
      });
    } finally {
      clearTimeout(timer);
    }
    return store;
  }

  /** The server key for a store key. */
  key(k: string): string {
    return this.prefix + k;
  }

  /** Whether the connection is up now, and the last connection error. */
  get state(): { connected: boolean; lastError?: { at: number; message: string } } {
    return {
      connected: this.up && !this.closed,
      ...(this.lastErr ? { lastError: { ...this.lastErr } } : {}),
    };
  }

  /** Runs a command, turning failures into a RedisStoreError that names the server and not the URL. */
  async run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new RedisStoreError(`the Redis store (${this.where}) is closed`);
    try {
      return await fn();
    } catch (err) {
      const { message, code } = safeRedisMessage(err);
      throw new RedisStoreError(`Redis at ${this.where} failed to ${what}: ${message}`, code);
    }
  }

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    const ttl = ttlArg(ttlMs);
    const r = await this.run('set a key', () =>
      ttl === null
        ? this.client.set(this.key(key), value, 'NX')
        : this.client.set(this.key(key), value, 'PX', ttl, 'NX'),
    );
    return r === 'OK';
  }

  async get(key: string): Promise<string | undefined> {
    const v = await this.run('read a key', () => this.client.get(this.key(key)));
    return v ?? undefined;
  }

  async set(key: string, value: string, ttlMs?: number): Promise<void> {
    const ttl = ttlMs === undefined ? null : ttlArg(ttlMs);
    await this.run('set a key', () =>
      ttl === null ? this.client.set(this.key(key), value) : this.client.set(this.key(key), value, 'PX', ttl),
    );
  }

  async delete(key: string): Promise<void> {
    await this.run('delete a key', () => this.client.del(this.key(key)));
  }

  async deleteIfEquals(key: string, expected: string): Promise<boolean> {
    const n = await this.run('delete a key', () =>
      (this.client as unknown as { wxcxDelIfEquals(k: string, v: string): Promise<number> }).wxcxDelIfEquals(
        this.key(key),
        expected,
      ),
    );
    return n === 1;
  }

  async tryLock(key: string, ttlMs: number): Promise<(() => Promise<void>) | null> {
    const token = `${process.pid}:${Math.random().toString(36).slice(2)}:${Date.now()}`;
    if (!(await this.setIfAbsent(key, token, ttlMs))) return null;
    return async () => {
      if (this.closed) return;
      await this.deleteIfEquals(key, token);
    };
  }

  async scan(prefix: string): Promise<[string, string][]> {
    const match = this.key(prefix).replace(/[*?[\]\\]/g, (c) => '\\' + c) + '*';
    const keys = new Set<string>();
    let cursor = '0';
    do {
      const [next, batch] = await this.run('list keys', () =>
        this.client.scan(cursor, 'MATCH', match, 'COUNT', 1000),
      );
      cursor = next;
      for (const k of batch) keys.add(k);
    } while (cursor !== '0');
    const list = [...keys];
    const out: [string, string][] = [];
    for (let i = 0; i < list.length; i += 500) {
      const part = list.slice(i, i + 500);
      const vals = await this.run('read keys', () => this.client.mget(...part));
      part.forEach((k, j) => {
        const v = vals[j];
        if (typeof v === 'string') out.push([k.slice(this.prefix.length), v]);
      });
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}
