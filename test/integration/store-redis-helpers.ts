/** Shared by the Redis store tests: a unique key prefix per run and removal of every key under it. */
import Redis from 'ioredis';

export const REDIS_URL = process.env.WXCX_REDIS_URL || 'redis://127.0.0.1:6379';

export function uniquePrefix(what: string): string {
  return `wxcx-test:${what}:${process.pid}:${Date.now().toString(36)}:${Math.random().toString(36).slice(2, 8)}:`;
}

/** Deletes every key that starts with `prefix` (never FLUSHALL/FLUSHDB). */
export async function cleanup(prefix: string): Promise<number> {
  const c = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await c.connect();
  let n = 0;
  let cursor = '0';
  const match = prefix.replace(/[*?[\]\\]/g, (ch) => '\\' + ch) + '*';
  do {
    const [next, keys] = await c.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    cursor = next;
    if (keys.length) n += await c.del(...keys);
  } while (cursor !== '0');
  await c.quit();
  return n;
}

/** How many keys start with `prefix` now. */
export async function countKeys(prefix: string): Promise<number> {
  const c = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await c.connect();
  let n = 0;
  let cursor = '0';
  const match = prefix.replace(/[*?[\]\\]/g, (ch) => '\\' + ch) + '*';
  do {
    const [next, keys] = await c.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    cursor = next;
    n += keys.length;
  } while (cursor !== '0');
  await c.quit();
  return n;
}
