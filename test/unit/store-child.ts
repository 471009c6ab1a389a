/**
 * A child process for the file store's crash tests (not a test file itself). Opens a FileStore and writes,
 * printing one line per acknowledged operation, until it is killed.
 *
 *   node store-child.js <dir> <mode> [count]
 *   mode "write":   keys k0…k<count-1> set to "v<i>" (64 at a time); every 10th key, once acknowledged, is deleted
 *                   again (prints "set <i>" and "del <i>" on acknowledgement)
 *   mode "write-deferred": the same, with the odd keys' writes and deletes deferrable (`deferWrites`)
 *   mode "compact": overwrites 50 keys over and over with a tiny compaction threshold (prints "set <key> <n>", and
 *                   "phase <snapshot|both|none>" when the compaction's phase after a write differs from the last)
 *   mode "compact-slow": the same, each compaction waiting 100 ms before its rename (writes go to both files then)
 *   mode "hold":    opens the store, prints "open", and waits
 */
import { FileStore } from '../../lib/store/file';

async function main(): Promise<void> {
  const [dir, mode, countArg] = process.argv.slice(2);
  const count = Number(countArg ?? 100000);
  const compact = mode === 'compact' || mode === 'compact-slow';
  const store = await FileStore.open(dir, {
    compactMinBytes: compact ? 20_000 : undefined,
    renameDelayMs: mode === 'compact-slow' ? 100 : undefined,
  });
  process.stdout.write('open\n');
  if (mode === 'hold') {
    setInterval(() => undefined, 1000);
    return;
  }
  if (compact) {
    let phase = 'none';
    for (let n = 0; ; n++) {
      const key = `c${n % 50}`;
      await store.set(key, `n${n}-${'x'.repeat(100)}`);
      process.stdout.write(`set ${key} ${n}\n`);
      const now = store.compactionPhase ?? 'none';
      if (now !== phase) process.stdout.write(`phase ${(phase = now)}\n`);
    }
  }
  let next = 0;
  const maybeDeferred = <T>(i: number, fn: () => T): T =>
    mode === 'write-deferred' && i % 2 === 1 ? store.deferWrites(fn) : fn();
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      await maybeDeferred(i, () => store.set(`k${i}`, `v${i}`));
      process.stdout.write(`set ${i}\n`);
      if (i % 10 === 0) {
        await maybeDeferred(i + 1, () => store.delete(`k${i}`));
        process.stdout.write(`del ${i}\n`);
      }
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  process.stdout.write('finished\n');
}

main().catch((err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.message : err) + '\n');
  process.exit(1);
});
