/** What the six node adapters share: claiming HTTP routes through the registry, and naming nodes in messages. */
import { routeRegistry, type Claim, type RouteDef, type RouteRegistry } from '../lib/http/registry';
import { DEFAULT_POLICY, type OutboxPolicy } from '../lib/outbox';
import { encodeJson, JsonText } from '../lib/outbox/codec';
import type { OutboxPolicyDef } from './defs';
import type { Node, NodeAPI, NodeMessage } from './types';

export const PALETTE_CATEGORY = 'wechat cxone';

/** A node's name for messages: its name, else its type and id. */
export function nodeLabel(node: Pick<Node, 'type' | 'id' | 'name'>): string {
  return node.name ? `${node.type} "${node.name}"` : `${node.type} ${node.id}`;
}

/** The runtime's route registry; null when Node-RED serves no HTTP endpoints (`httpNodeRoot: false`). */
export function registryOf(RED: NodeAPI): RouteRegistry | null {
  if (RED.settings.httpNodeRoot === false || !RED.httpNode) return null;
  return routeRegistry(RED.httpNode, RED.httpAdmin, RED.settings);
}

export interface ClaimForNodeOptions {
  /** i18n key prefix of the node's catalog, e.g. 'wechat-in'. */
  ns: string;
  /** Called when the claim becomes active (after a conflict clears, too). */
  onActive?: (fullPath: string) => void;
}

/**
 * Claims `basePath` for `node`. The node's status follows the claim: green "listening on …" while it serves the
 * path, red with the holder's name while another node holds it. Returns null (status and error already set)
 * when the path is invalid or Node-RED serves no endpoints.
 */
export function claimForNode(
  RED: NodeAPI,
  node: Node,
  basePath: string,
  routes: RouteDef[],
  opts: ClaimForNodeOptions,
): Claim | null {
  const reg = registryOf(RED);
  if (!reg) {
    node.status({ fill: 'red', shape: 'ring', text: RED._(`${opts.ns}.status.no-http`) });
    node.error(RED._(`${opts.ns}.errors.no-http`));
    return null;
  }
  try {
    return reg.claim({
      owner: node.id,
      label: nodeLabel(node),
      basePath,
      routes,
      onState: (s) => {
        if (s.active) {
          node.status({
            fill: 'green',
            shape: 'dot',
            text: RED._(`${opts.ns}.status.listening`, { path: s.fullPath }),
          });
          opts.onActive?.(s.fullPath);
        } else {
          node.status({
            fill: 'red',
            shape: 'ring',
            text: RED._(`${opts.ns}.status.path-taken`, { path: s.fullPath }),
          });
          node.error(RED._(`${opts.ns}.errors.path-taken`, { path: s.fullPath, holder: s.heldBy ?? '?' }));
        }
      },
      onError: (err) => node.error(RED._(`${opts.ns}.errors.handler`, { error: safeMessage(err) })),
    });
  } catch (err) {
    node.status({ fill: 'red', shape: 'ring', text: RED._(`${opts.ns}.status.bad-path`) });
    node.error(RED._(`${opts.ns}.errors.bad-path`, { error: safeMessage(err) }));
    return null;
  }
}

/** An error's message for logs, without a stack and bounded in length. Callers redact secrets themselves. */
export function safeMessage(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return m.length > 500 ? m.slice(0, 500) + '…' : m;
}

/**
 * A JSON-safe copy of `msg` for an outbox job, without the payload's bytes: no req/res, no Buffers, no functions,
 * no cycles; kept as its JSON text (`JsonText`: the job's record takes the text as it is, and it is parsed only
 * when the msg is needed after a restart or a redeploy). If it cannot be made, `_msgid` and `topic` with
 * `fallback` (used by both `-out` nodes).
 */
export function plainCopy(msg: NodeMessage, fallback: Record<string, unknown> = {}): JsonText {
  // Fast pass (a replacer function makes JSON.stringify several times slower): nearly every msg has no req/res,
  // no Buffer and no cycle. A Buffer shows as its toJSON form; a cycle throws; either takes the careful pass.
  if (msg.req === undefined && msg.res === undefined) {
    try {
      const text = JSON.stringify(msg);
      if (!text.includes('{"type":"Buffer","data":[')) return new JsonText(text);
    } catch {
      /* a cycle or a BigInt: the careful pass below */
    }
  }
  const seen = new WeakSet<object>();
  try {
    return new JsonText(
      JSON.stringify(msg, function (this: unknown, key: string, value: unknown) {
        if (this === msg && (key === 'req' || key === 'res')) return undefined;
        if (value && typeof value === 'object') {
          const v = value as { type?: unknown; data?: unknown };
          if (v.type === 'Buffer' && Array.isArray(v.data)) return undefined;
          if (seen.has(value)) return undefined;
          seen.add(value);
        }
        return typeof value === 'function' ? undefined : value;
      }),
    );
  } catch {
    // The careful encoder: a topic that plain JSON refuses must not fail the message here either.
    return new JsonText(encodeJson({ _msgid: msg._msgid, topic: msg.topic, ...fallback }));
  }
}

/** The msg an outbox job kept: its text parsed (a job of this run), or the object a stored record gave back. */
export function keptMsg(kept: unknown): NodeMessage | undefined {
  if (kept instanceof JsonText) {
    try {
      return kept.value<NodeMessage>();
    } catch {
      return undefined;
    }
  }
  return kept && typeof kept === 'object' ? (kept as NodeMessage) : undefined;
}

/** A number property from the editor within [min, max], else `def`. */
export function numberIn(v: unknown, def: number, min: number, max: number): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isFinite(n) ? Math.min(max, Math.max(min, n)) : def;
}

/** The outbox policy an `-out` node's properties ask for, out-of-range values clamped. */
export function outboxPolicyOf(def: OutboxPolicyDef): Partial<OutboxPolicy> {
  return {
    maxAttempts: Math.round(numberIn(def.maxAttempts, DEFAULT_POLICY.maxAttempts, 1, 100)),
    maxAgeMs: numberIn(def.maxAge, 1440, 1, 7 * 1440) * 60_000,
    concurrency: Math.round(numberIn(def.concurrency, DEFAULT_POLICY.concurrency, 1, 1024)),
  };
}
