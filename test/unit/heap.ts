/** The heap as tests measure it: after forced garbage collections, without starting mocha with --expose-gc. */
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

let gc: (() => void) | null = null;

/** A forced garbage collection. */
export function collect(): void {
  if (!gc) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  }
  gc();
}

/**
 * Heap and array buffers in use once what is dead is gone: V8 frees the memory of dead buffers on a background thread
 * after a collection, so this collects, waits for that, and collects again.
 */
export async function settledMemory(): Promise<number> {
  await new Promise((r) => setImmediate(r));
  collect();
  await new Promise((r) => setTimeout(r, 200));
  collect();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}
