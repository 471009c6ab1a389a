/**
 * Which store a config node uses: the backend chosen in the editor (docs/contract.md, "Store properties").
 *
 *   store      "file" (default) | "memory" | "redis"
 *   redisUrl   redis://host:port[/db] or rediss://…   (default redis://127.0.0.1:6379)
 *   keyPrefix  put in front of every key (default none)
 *   credentials.redisPassword
 *
 * A flow saved before these properties existed has no `store`: it gets the file store when Node-RED has a user
 * directory (`<userDir>/wechat-cxone/default/`), memory otherwise (the test helper, embedded runtimes without
 * one). Backends are shared per runtime and closed with the last config node that uses them (lib/store/open.ts);
 * this module registers that close on the config node itself, so config nodes need no close code of their own.
 */
import * as path from 'node:path';
import {
  adminHealthHandler,
  HEALTH_ADMIN_PATH,
  HEALTH_BASE_PATH,
  HEALTH_PERMISSION,
  publicHealthRoutes,
} from '../lib/health/http';
import {
  healthRegistry,
  type HealthFigures,
  type HealthRegistry,
  type HealthReporter,
} from '../lib/health/registry';
import type { Claim } from '../lib/http/registry';
import { completeJournal, type Journal, type JournalEntry } from '../lib/journal';
import { openStore, type StoreHandle, type StoreSpec } from '../lib/store/open';
import { FileStoreError, StoreLockedError } from '../lib/store/file';
import { RedisStore, RedisStoreError } from '../lib/store/redis';
import type { Store } from '../lib/store/types';
import { registryOf } from './shared';
import type { Node, NodeAPI, NodeDef, NodeMessage } from './types';

export const STORE_KINDS = ['file', 'memory', 'redis'] as const;
export type StoreKindSetting = (typeof STORE_KINDS)[number];
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
/** The file store's directory below the user directory. */
export const FILE_STORE_DIR = path.join('wechat-cxone', 'default');

export interface StoreConfigDef extends NodeDef {
  store?: string;
  redisUrl?: string;
  keyPrefix?: string;
}

/** The backend a config node's properties describe (pure: for tests and the editor's preview). */
export function storeSpecFor(
  def: StoreConfigDef,
  creds: { redisPassword?: string } | undefined,
  userDir: string | undefined,
): StoreSpec {
  const keyPrefix = typeof def.keyPrefix === 'string' ? def.keyPrefix.trim() : '';
  const kind = STORE_KINDS.includes(def.store as StoreKindSetting)
    ? (def.store as StoreKindSetting)
    : undefined;
  if (kind === 'redis') {
    const url =
      typeof def.redisUrl === 'string' && def.redisUrl.trim() ? def.redisUrl.trim() : DEFAULT_REDIS_URL;
    return { kind: 'redis', url, password: creds?.redisPassword || undefined, keyPrefix };
  }
  if (kind === 'memory' || !userDir) return { kind: 'memory', keyPrefix };
  return { kind: 'file', dir: path.join(userDir, FILE_STORE_DIR), keyPrefix };
}

/**
 * The object that identifies one Node-RED runtime, for per-runtime state (open stores, journals, health).
 *
 * NOT `RED.nodes` or `RED.settings`: Node-RED builds a fresh `RED` for every node module, with its own `nodes` and
 * `settings` objects (@node-red/registry/lib/util.js `createNodeApi`, Node-RED 4.1 and 5), so wechat-config.js and
 * cxone-dfo-config.js would look like two runtimes and open one store directory twice. `RED.httpNode` is the
 * runtime's express app, the same object for every module and new with every runtime (also in
 * node-red-node-test-helper); `RED.events` (a process-wide singleton) is the fallback for embedders without one.
 */
export function runtimeOf(RED: Pick<NodeAPI, 'httpNode' | 'events' | 'util'>): object {
  const key = (RED.httpNode as object | undefined) ?? RED.events ?? RED.util;
  if (!key) throw new Error('this Node-RED runtime offers no object to keep per-runtime state on');
  return key;
}

export function storeForConfig(RED: NodeAPI, node: Node<object>, def: NodeDef): Store {
  const userDir =
    typeof RED.settings.userDir === 'string' && RED.settings.userDir ? RED.settings.userDir : undefined;
  const creds = (node.credentials ?? {}) as { redisPassword?: string };
  const spec = storeSpecFor(def, creds, userDir);
  const handle: StoreHandle = openStore(runtimeOf(RED), spec, {
    onWarning: (m) => node.warn(m),
  });
  const health = healthFor(RED, node, () => ({ store: storeFigures(handle) }));
  handle.backend().catch((err: unknown) => {
    const m = storeOpenMessage(RED, node.type, err);
    health.error(m);
    node.error(m);
  });
  node.on('close', (_removed: boolean, done: () => void) => {
    handle.close().then(
      () => done(),
      () => done(),
    );
  });
  return handle;
}

/**
 * Why the store could not be opened, in the user's language: from the config node's catalog
 * (`<type>.store.errors.*`, the same keys in wechat-config and cxone-dfo-config). Never the Redis URL or password.
 */
export function storeOpenMessage(RED: Pick<NodeAPI, '_'>, type: string, err: unknown): string {
  const t = (key: string, subs: Record<string, unknown>): string =>
    RED._(`${type}.store.errors.${key}`, subs);
  if (err instanceof StoreLockedError) {
    if (err.here) return t('locked-here', { dir: err.dir });
    return t('locked', { dir: err.dir, pid: err.holder.pid ?? '?', host: err.holder.host ?? '?' });
  }
  if (err instanceof FileStoreError) return t(`file-${err.reason}`, { dir: err.dir, code: err.code });
  if (err instanceof RedisStoreError && err.open) {
    return t(`redis-${err.open.reason}`, { where: err.open.where, detail: err.open.detail });
  }
  return t('other', { error: err instanceof Error ? err.message : String(err) });
}

/** The store part of a config node's health figures. */
export function storeFigures(handle: StoreHandle): NonNullable<HealthFigures['store']> {
  const out: NonNullable<HealthFigures['store']> = { kind: handle.kind };
  if (handle.openError) {
    out.connected = false;
    out.error = handle.openError.message;
    return out;
  }
  const b = handle.openBackend;
  if (!b) return out; // still opening
  if (b instanceof RedisStore) {
    const st = b.state;
    out.connected = st.connected;
    if (!st.connected && st.lastError) out.error = st.lastError.message;
  } else {
    out.connected = true;
  }
  return out;
}

/** Per runtime: the claim of the public health path, and whether the admin route is mounted. */
const healthMounts = new WeakMap<object, { claim: Claim | null; admin: boolean }>();

function mountHealth(RED: NodeAPI, registry: HealthRegistry): void {
  const runtime = runtimeOf(RED);
  let m = healthMounts.get(runtime);
  if (m) return;
  m = { claim: null, admin: false };
  healthMounts.set(runtime, m);
  const mounts = m;
  const settings = RED.settings as { wechatCxone?: { publicHealth?: boolean } };
  registry.onUsage = (inUse) => {
    if (inUse && !mounts.claim && settings.wechatCxone?.publicHealth !== false) {
      const reg = registryOf(RED);
      if (!reg) return;
      try {
        mounts.claim = reg.claim({
          owner: 'wechat-cxone:health',
          label: 'wechat-cxone health endpoint',
          basePath: HEALTH_BASE_PATH,
          routes: publicHealthRoutes(registry),
        });
      } catch (err) {
        RED.log.warn(
          `wechat-cxone: the health endpoint could not be served: ${err instanceof Error ? err.message : String(err)}`,
        );
      }
    } else if (!inUse && mounts.claim) {
      mounts.claim.release();
      mounts.claim = null;
    }
  };
  if (!mounts.admin && RED.httpAdmin && RED.settings.httpAdminRoot !== false) {
    RED.httpAdmin.get(
      HEALTH_ADMIN_PATH,
      RED.auth.needsPermission(HEALTH_PERMISSION),
      adminHealthHandler(registry),
    );
    mounts.admin = true;
  }
}

/**
 * Reports a node's health figures. `collect` is called whenever the health endpoint is read (keep it cheap: return
 * `outbox.stats()`, `journal.stats()`, token age …); `reporter.error(message)` records the node's last error (a
 * message already free of secrets). Released automatically when the node closes.
 */
export function healthFor(RED: NodeAPI, node: Node<object>, collect?: () => HealthFigures): HealthReporter {
  const registry = healthRegistry(runtimeOf(RED));
  mountHealth(RED, registry);
  const rep = registry.register({ id: node.id, type: node.type, name: node.name }, collect);
  node.on('close', (_removed: boolean, done: () => void) => {
    rep.release();
    done();
  });
  return rep;
}

/**
 * For `-out` nodes: marks the inbound journal entry `msg` carries (`msg._wxcx.journal`) as complete, once the
 * outbox accepted the message (or it was refused for good). Never throws; no-op without a reference.
 */
export function journalDone(RED: NodeAPI, msg: NodeMessage): Promise<boolean> {
  return completeJournal(runtimeOf(RED), msg);
}

/**
 * For `-in` nodes: once the flows have started, emits again the entries of `journal` that a run that is gone
 * acknowledged but never handed to an outbox (`replay` turns an entry into its message; `after` runs after each),
 * and holds new messages back until then, so that a conversation's replayed messages go first. Returns the
 * function that emits a new message. A send that throws is reported to `onError`, not thrown.
 */
export function replayJournal<D>(
  RED: Pick<NodeAPI, 'events'>,
  node: Node<object>,
  journal: Journal<D>,
  opts: {
    replay: (entry: JournalEntry<D>, ref: string) => NodeMessage;
    after: () => void;
    onError: (err: unknown) => void;
  },
): (msg: NodeMessage) => void {
  let held: NodeMessage[] | null = [];
  const sendSafely = (m: NodeMessage): void => {
    try {
      node.send(m);
    } catch (err) {
      opts.onError(err);
    }
  };
  whenFlowsStarted(RED, node, () => {
    void journal
      .start((entry, ref) => {
        sendSafely(opts.replay(entry, ref));
        opts.after();
      })
      .then(() => {
        const h = held ?? [];
        held = null;
        for (const m of h) sendSafely(m);
      });
  });
  return (msg) => {
    if (held) held.push(msg);
    else node.send(msg);
  };
}

/**
 * Runs `fn` once the flows have started (Node-RED's `flows:started` event), so a message sent from it reaches
 * nodes created after this one (Node-RED drops a message to a node that does not exist yet). For replays from
 * the journal. Without an events API (embedders), it runs on the next tick. Released on close.
 */
export function whenFlowsStarted(RED: Pick<NodeAPI, 'events'>, node: Node<object>, fn: () => void): void {
  let ran = false;
  let closed = false;
  let fallback: NodeJS.Timeout | undefined;
  const run = (): void => {
    if (ran || closed) return;
    ran = true;
    if (fallback) clearTimeout(fallback);
    RED.events?.removeListener('flows:started', run);
    fn();
  };
  if (RED.events) {
    RED.events.on('flows:started', run);
    // Should the event never come (an embedder's runtime), the flows have long been built after this.
    fallback = setTimeout(run, FLOWS_STARTED_FALLBACK_MS);
  } else setImmediate(run);
  node.on('close', (_removed: boolean, done: () => void) => {
    closed = true;
    if (fallback) clearTimeout(fallback);
    RED.events?.removeListener('flows:started', run);
    done();
  });
}

/** How long `whenFlowsStarted` waits for Node-RED's event before it runs anyway, ms. */
const FLOWS_STARTED_FALLBACK_MS = 15_000;
