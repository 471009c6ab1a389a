/**
 * A child process for the two-process Redis tests (not a test file itself).
 *
 *   node store-redis-child.js dedupe <prefix> <count>   → races setIfAbsent on d0…d<count-1>; prints "won <i>"
 */
import { RedisStore } from '../../lib/store/redis';
import { REDIS_URL } from './store-redis-helpers';

async function main(): Promise<void> {
  const [mode, prefix, countArg] = process.argv.slice(2);
  const store = await RedisStore.open({ url: REDIS_URL, keyPrefix: prefix });
  process.stdout.write('ready\n');
  if (mode === 'dedupe') {
    // Start together: wait for the go file written by the parent.
    await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
    process.stdin.destroy();
    const count = Number(countArg);
    // Each process takes the keys in its own random order, so the two collide all over the range.
    const order = Array.from({ length: count }, (_, i) => i).sort(() => Math.random() - 0.5);
    await Promise.all(
      order.map(async (i) => {
        if (await store.setIfAbsent(`d${i}`, String(process.pid), 60_000)) process.stdout.write(`won ${i}\n`);
      }),
    );
    process.stdout.write('finished\n');
  }
  await store.close();
}

main().catch((err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.message : err) + '\n');
  process.exit(1);
});
