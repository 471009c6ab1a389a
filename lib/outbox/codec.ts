/**
 * JSON for persisted jobs and journal entries: Buffers travel as base64 (`{"$wxcxBuffer":"…"}`) and come back as
 * Buffers. A value plain JSON cannot take (a cycle, a BigInt, an `http in` node's msg.req/msg.res) does not fail
 * the message: the second pass drops cycles and event emitters (sockets, requests, responses) and turns BigInts
 * into strings. Functions and symbols are dropped, as JSON does.
 */
import { EventEmitter } from 'node:events';

const TAG = '$wxcxBuffer';

function bufferReplacer(this: Record<string, unknown>, k: string, v: unknown): unknown {
  const orig = this[k];
  if (Buffer.isBuffer(orig)) return { [TAG]: orig.toString('base64') };
  if (orig instanceof Uint8Array) return { [TAG]: Buffer.from(orig).toString('base64') };
  return v;
}

/**
 * What plain JSON.stringify writes for a Buffer (its toJSON) or a typed array (its indices), and what an object
 * can only rarely hold otherwise: when the fast pass wrote one, the value is encoded again with the replacer.
 */
const NEEDS_REPLACER = /\{"type":"Buffer","data":\[|\{"0":/;

export function encodeJson(value: unknown): string {
  try {
    // A replacer function makes JSON.stringify several times slower, and almost no message holds a Buffer: try
    // without one first (bench: this encode ran three times per message, 4 % of the pack's CPU).
    const fast = JSON.stringify(value);
    if (fast === undefined || !NEEDS_REPLACER.test(fast)) return fast;
    return JSON.stringify(value, bufferReplacer);
  } catch {
    const seen = new WeakSet<object>();
    return JSON.stringify(value, function (this: Record<string, unknown>, k: string, v: unknown) {
      const orig = this[k];
      if (Buffer.isBuffer(orig) || orig instanceof Uint8Array) return bufferReplacer.call(this, k, v);
      if (typeof v === 'bigint') return v.toString();
      if (orig instanceof EventEmitter) return undefined;
      if (v && typeof v === 'object') {
        if (seen.has(v)) return undefined;
        seen.add(v);
      }
      return v;
    });
  }
}

export function decodeJson<T = unknown>(text: string): T {
  return JSON.parse(text, (_k, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      const b = o[TAG];
      if (typeof b === 'string' && Object.keys(o).length === 1) return Buffer.from(b, 'base64');
    }
    return v;
  }) as T;
}
