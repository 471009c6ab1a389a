/**
 * Whether Node-RED would write a debug or trace line anywhere. `node.debug()` and `node.trace()` cost an `Error`
 * with its stack (Node-RED makes one for every log call, written or not) plus whatever builds the text, so the
 * per-message ones ask first.
 */
import type { NodeAPI } from './types';

const RANK: Record<string, number> = { fatal: 10, error: 20, warn: 30, info: 40, debug: 50, trace: 60 };

/**
 * True when a log handler configured in `settings.logging` takes `level`. Without a `logging` block (a test runtime,
 * a settings file that predates it) it answers true: nothing is lost, it only costs what it did before.
 */
export function logsAt(RED: Pick<NodeAPI, 'settings'>, level: 'debug' | 'trace'): boolean {
  let logging: unknown;
  try {
    logging = (RED.settings as { logging?: unknown }).logging;
  } catch {
    return true;
  }
  if (logging === undefined || logging === null || typeof logging !== 'object') return true;
  for (const handler of Object.values(logging as Record<string, unknown>)) {
    const name = (handler as { level?: unknown } | null)?.level;
    // Node-RED reads an absent or unknown level as "info".
    const rank = typeof name === 'string' && RANK[name] !== undefined ? RANK[name] : RANK.info;
    if (rank >= RANK[level]) return true;
  }
  return false;
}
