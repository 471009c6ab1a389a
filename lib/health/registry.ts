/**
 * Health figures per runtime: nodes register what a monitor should see (outbox queue depth and retries, dead
 * letters, journal backlog, token age, store connection, last error), the endpoints read a snapshot.
 *
 * Pull, not push: a node registers a `collect()` that returns its figures when someone asks, so nothing is
 * computed on the message path. Errors are pushed (`reporter.error(message)`) because they happen once.
 * Several registrations for one node id (a config node's store and its token cache) are merged.
 */
import type { JournalStats } from '../journal';
import type { OutboxStats } from '../outbox/types';

export type HealthStatus = 'ok' | 'degraded' | 'down';

export interface HealthFigures {
  outbox?: OutboxStats;
  journal?: JournalStats;
  /** The platform access token this node (a config node) holds. */
  token?: { ageMs?: number; expiresInMs?: number; refreshes?: number; failures?: number };
  /** The store behind a config node. */
  store?: { kind: string; connected?: boolean; error?: string };
  /** Any other numeric figures (received, rejected, duplicates …), by name. */
  counters?: Record<string, number>;
  /** Forces a status (e.g. 'down' when the node cannot work at all). */
  status?: HealthStatus;
}

export interface NodeHealth {
  id: string;
  type: string;
  name?: string;
  status: HealthStatus;
  figures: HealthFigures;
  lastError?: { at: number; message: string };
}

export interface HealthSnapshot {
  status: HealthStatus;
  /** ISO time of the snapshot. */
  time: string;
  uptimeSec: number;
  nodes: NodeHealth[];
}

export interface HealthReporter {
  /** Records the node's last error (a message already free of secrets). */
  error(err: unknown): void;
  /** Stops reporting (call on close). */
  release(): void;
}

interface Registration {
  node: { id: string; type: string; name?: string };
  collect?: () => HealthFigures;
  lastError?: { at: number; message: string };
  released: boolean;
}

/** An error recorded less than this long ago makes a node "degraded". */
export const RECENT_ERROR_MS = 5 * 60 * 1000;

const RANK: Record<HealthStatus, number> = { ok: 0, degraded: 1, down: 2 };

function worst(a: HealthStatus, b: HealthStatus): HealthStatus {
  return RANK[a] >= RANK[b] ? a : b;
}

function text(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return m.length > 300 ? m.slice(0, 300) + '…' : m;
}

export class HealthRegistry {
  private readonly regs = new Set<Registration>();
  private readonly started = Date.now();
  /** Told when the first registration arrives and when the last one leaves (the endpoints follow). */
  onUsage?: (inUse: boolean) => void;

  register(node: { id: string; type: string; name?: string }, collect?: () => HealthFigures): HealthReporter {
    const reg: Registration = {
      node: { id: node.id, type: node.type, name: node.name },
      collect,
      released: false,
    };
    this.regs.add(reg);
    if (this.regs.size === 1) this.onUsage?.(true);
    return {
      error: (err: unknown) => {
        reg.lastError = { at: Date.now(), message: text(err) };
      },
      release: () => {
        if (reg.released) return;
        reg.released = true;
        this.regs.delete(reg);
        if (this.regs.size === 0) this.onUsage?.(false);
      },
    };
  }

  get size(): number {
    return this.regs.size;
  }

  snapshot(now = Date.now()): HealthSnapshot {
    const byId = new Map<string, NodeHealth>();
    for (const reg of this.regs) {
      let figures: HealthFigures = {};
      let collectError: string | undefined;
      try {
        figures = reg.collect?.() ?? {};
      } catch (err) {
        collectError = `health figures unavailable: ${text(err)}`;
      }
      let n = byId.get(reg.node.id);
      if (!n) {
        n = { id: reg.node.id, type: reg.node.type, status: 'ok', figures: {} };
        if (reg.node.name) n.name = reg.node.name;
        byId.set(reg.node.id, n);
      }
      n.figures = { ...n.figures, ...figures };
      if (figures.counters) n.figures.counters = { ...n.figures.counters, ...figures.counters };
      const errors = [
        reg.lastError,
        figures.outbox?.lastError,
        figures.journal?.lastError,
        collectError ? { at: now, message: collectError } : undefined,
      ].filter((e): e is { at: number; message: string } => !!e);
      for (const e of errors) if (!n.lastError || e.at > n.lastError.at) n.lastError = e;
    }
    let overall: HealthStatus = 'ok';
    const nodes = [...byId.values()];
    for (const n of nodes) {
      let s: HealthStatus = 'ok';
      const f = n.figures;
      if (f.store && (f.store.connected === false || f.store.error)) s = worst(s, 'down');
      if (f.outbox && f.outbox.retrying > 0) s = worst(s, 'degraded');
      if (n.lastError && now - n.lastError.at < RECENT_ERROR_MS) s = worst(s, 'degraded');
      if (f.status) s = worst(s, f.status);
      n.status = s;
      overall = worst(overall, s);
    }
    nodes.sort((a, b) => (a.type === b.type ? a.id.localeCompare(b.id) : a.type.localeCompare(b.type)));
    return {
      status: overall,
      time: new Date(now).toISOString(),
      uptimeSec: Math.round((now - this.started) / 1000),
      nodes,
    };
  }
}

const registries = new WeakMap<object, HealthRegistry>();

/** The registry of one runtime (any object that lives as long as the runtime and is shared by its node modules: `runtimeOf(RED)`, nodes/store.ts). */
export function healthRegistry(runtime: object): HealthRegistry {
  let r = registries.get(runtime);
  if (!r) {
    r = new HealthRegistry();
    registries.set(runtime, r);
  }
  return r;
}

/** The snapshot a public endpoint shows: figures and statuses, no error texts. */
export function publicView(s: HealthSnapshot): HealthSnapshot {
  return {
    ...s,
    nodes: s.nodes.map((n) => {
      const figures: HealthFigures = { ...n.figures };
      if (figures.outbox) {
        const { lastError: _e, ...rest } = figures.outbox;
        figures.outbox = rest;
      }
      if (figures.journal) {
        const { lastError: _e, ...rest } = figures.journal;
        figures.journal = rest;
      }
      if (figures.store) {
        const { error: _e, ...rest } = figures.store;
        figures.store = rest;
      }
      const out: NodeHealth = { id: n.id, type: n.type, status: n.status, figures };
      if (n.name) out.name = n.name;
      if (n.lastError) out.lastError = { at: n.lastError.at, message: '(see the admin endpoint)' };
      return out;
    }),
  };
}

function esc(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** The snapshot as Prometheus text exposition (version 0.0.4). */
export function prometheusText(s: HealthSnapshot): string {
  const lines: string[] = [];
  const metric = (
    name: string,
    help: string,
    type: 'gauge' | 'counter',
    rows: [NodeHealth, number | undefined][],
  ): void => {
    const present = rows.filter(
      (r): r is [NodeHealth, number] => typeof r[1] === 'number' && Number.isFinite(r[1]),
    );
    if (!present.length) return;
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [n, v] of present) {
      lines.push(`${name}{node="${esc(n.id)}",type="${esc(n.type)}",name="${esc(n.name ?? '')}"} ${v}`);
    }
  };
  const rank = { ok: 0, degraded: 1, down: 2 };
  lines.push(
    '# HELP wxcx_up Overall status: 0 ok, 1 degraded, 2 down',
    '# TYPE wxcx_up gauge',
    `wxcx_up ${rank[s.status]}`,
  );
  const N = s.nodes;
  metric(
    'wxcx_node_status',
    'Node status: 0 ok, 1 degraded, 2 down',
    'gauge',
    N.map((n) => [n, rank[n.status]]),
  );
  metric(
    'wxcx_outbox_depth',
    'Messages accepted and not yet finished',
    'gauge',
    N.map((n) => [n, n.figures.outbox?.depth]),
  );
  metric(
    'wxcx_outbox_retrying',
    'Messages waiting for a retry',
    'gauge',
    N.map((n) => [n, n.figures.outbox?.retrying]),
  );
  metric(
    'wxcx_outbox_in_flight',
    'Attempts in progress',
    'gauge',
    N.map((n) => [n, n.figures.outbox?.inFlight]),
  );
  metric(
    'wxcx_outbox_oldest_age_seconds',
    'Age of the oldest unfinished message',
    'gauge',
    N.map((n) => [
      n,
      n.figures.outbox?.oldestAgeMs === undefined ? undefined : n.figures.outbox.oldestAgeMs / 1000,
    ]),
  );
  metric(
    'wxcx_outbox_delivered_total',
    'Messages delivered',
    'counter',
    N.map((n) => [n, n.figures.outbox?.delivered]),
  );
  metric(
    'wxcx_outbox_dead_total',
    'Messages dead-lettered',
    'counter',
    N.map((n) => [n, n.figures.outbox?.dead]),
  );
  metric(
    'wxcx_outbox_retries_total',
    'Retries scheduled',
    'counter',
    N.map((n) => [n, n.figures.outbox?.retries]),
  );
  metric(
    'wxcx_journal_pending',
    'Acknowledged messages not yet accepted by an outbox',
    'gauge',
    N.map((n) => [n, n.figures.journal?.pending]),
  );
  metric(
    'wxcx_journal_replayed_total',
    'Messages replayed from the journal',
    'counter',
    N.map((n) => [n, n.figures.journal?.replayed]),
  );
  metric(
    'wxcx_journal_dropped_total',
    'Journal entries given up',
    'counter',
    N.map((n) => [n, n.figures.journal?.dropped]),
  );
  metric(
    'wxcx_token_age_seconds',
    'Age of the access token held',
    'gauge',
    N.map((n) => [n, n.figures.token?.ageMs === undefined ? undefined : n.figures.token.ageMs / 1000]),
  );
  metric(
    'wxcx_store_connected',
    'Store reachable: 1 yes, 0 no',
    'gauge',
    N.map((n) => [
      n,
      n.figures.store ? (n.figures.store.connected === false || n.figures.store.error ? 0 : 1) : undefined,
    ]),
  );
  metric(
    'wxcx_last_error_timestamp_seconds',
    'When the node last reported an error',
    'gauge',
    N.map((n) => [n, n.lastError ? Math.floor(n.lastError.at / 1000) : undefined]),
  );
  const counterNames = new Set<string>();
  for (const n of N) for (const k of Object.keys(n.figures.counters ?? {})) counterNames.add(k);
  for (const k of [...counterNames].sort()) {
    const name = `wxcx_${k.replace(/[^a-zA-Z0-9_]/g, '_')}`;
    metric(
      name,
      `Counter "${k}" reported by the node`,
      'gauge',
      N.map((n) => [n, n.figures.counters?.[k]]),
    );
  }
  return lines.join('\n') + '\n';
}
