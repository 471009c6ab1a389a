/**
 * The benchmark driver: `npm run bench` (or `node <build>/bench/run.js`). Not part of the unit tests.
 *
 * In one run, for each scenario (WeChat → CXone plain, WeChat → CXone safe mode, CXone → WeChat), it starts every
 * contender in its own process on loopback next to one far side (fake CXone + fake WeChat API, bench/far.ts):
 *
 *   (a)  the pack (default store: file) and (a') the pack with the memory store
 *   (b)  the same bridge hand-wired from Node-RED core nodes
 *   (c)  an Express route and (d) a bare node:http server doing the same work (bench/contenders/work.ts)
 *
 * and measures, interleaving the contenders round by round so that a slow moment of the machine does not land on
 * one of them only:
 *
 *   - acknowledged/s: 2xx answers per second under saturation (autocannon, fixed connections), far side at once;
 *   - delivered/s: messages that reached the far side in the same window, counted there;
 *   - CPU time per acknowledged message (the contender process's own user+system time);
 *   - acknowledgement latency p50/p99 at a steady 500 msg/s while the far side answers in 300 ms;
 *   - peak RSS, and RSS after GC at start and end;
 *   - nothing lost: after the load, everything acknowledged has reached the far side.
 *
 * Then the token test (1,000 concurrent sends through the pack's WeChat and CXone clients against the simulators,
 * token fetches counted by the simulators), the ratios to (b), (c), (d), PASS/FAIL per target, and
 * bench/results/latest.json + latest.md.
 *
 * `--soak` runs the RSS test instead: 1,000,000 messages through the pack (see docs/performance.md).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  BOX_PATH,
  CXONE,
  PushGenerator,
  ReplyGenerator,
  handBuiltToken,
  openidOf,
  type Direction,
  type PushMode,
} from './common';
import { cleanRedis, cleanUserDir, startNodeRed, type StoreKind } from './contenders/node-red';
import type { FarStats } from './far';
import { paced, percentile, saturate, type Generator, type PacedResult } from './load';
import { start, type Child, type MemInfo } from './proc';
import { createDfoIntegration } from '../lib/cxone/dfo';
import { WechatApi } from '../lib/wechat/api/client';
import { FileStore } from '../lib/store/file';

// ---- options ----------------------------------------------------------------------------------------------------

interface Options {
  quick: boolean;
  soak: number;
  soakRate: number;
  scenarios: string[];
  contenders: string[];
  durationS: number;
  warmS: number;
  rounds: number;
  connections: number;
  rate: number;
  latencyS: number;
  latencyRounds: number;
  farDelayMs: number;
  token: boolean;
  cpuProf: boolean;
  nodeArgs: string[];
  childLogs?: string;
  /** Another build of the package (its dist directory) run as the contender `pack-baseline`. */
  baseline?: string;
  render: boolean;
  out: string;
}

const HELP = `npm run bench -- [options]

  --quick                 short run (about 6 minutes): 1 round of 5 s, one latency trial of 8 s
  --soak [N]              the RSS test only: N messages (default 1000000) through the pack, RSS after GC
                          at start and after every tenth (takes a while: N / rate seconds, 42 min for 1M)
  --soak-rate N           steady rate of the soak, msg/s (default 400); --contenders pack-memory soaks
                          the memory store instead
  --scenarios a,b         wechat-plain, wechat-safe, cxone (default all)
  --contenders a,b        pack, pack-memory, pack-redis, pack-baseline, core, express, bare, express-ackfirst,
                          bare-ackfirst
                          (default pack, pack-memory, core, express, bare)
  --duration S            seconds per throughput trial (default 10)
  --rounds N              throughput rounds, contenders interleaved (default 3)
  --connections N         autocannon connections (default 64)
  --rate N                steady rate of the latency test, msg/s (default 500)
  --latency-duration S    seconds of the latency test after 3 s of warm-up (default 20)
  --latency-rounds N      latency trials per contender, contenders interleaved; the percentiles are taken over
                          all their requests together (default 3; 1 with --quick)
  --far-delay MS          far side's answer time in the latency test (default 300)
  --no-token              skip the token test
  --baseline DIR          also run another build of the pack as the contender pack-baseline (file store),
                          interleaved with the others: an A/B of two builds in one run. DIR is a dist directory
                          inside the checkout, so that it finds node_modules, e.g. from an earlier commit:
                          git stash; node scripts/build.js --outDir .cache/dist-base --no-check; git stash pop
  --cpu-prof              write CPU profiles of the pack contenders to bench/results/prof/
  --node-args "A B"       more node options for the pack contenders (e.g. "--trace-gc")
  --child-logs DIR        append what each contender prints to DIR/<contender>-<scenario>.log, and write each
                          latency-test request's send time and latency to DIR/<contender>-<scenario>.latency.tsv
  --out DIR               where latest.json and latest.md go (default bench/results)
  --render                run nothing: rewrite latest.md/json's targets from latest.json and the last soak.json
                          (after a soak run that came after the throughput run)
`;

function parseArgs(argv: string[]): Options {
  const has = (f: string): boolean => argv.includes(f);
  const val = (f: string): string | undefined => {
    const i = argv.indexOf(f);
    return i >= 0 && argv[i + 1] && !argv[i + 1].startsWith('--') ? argv[i + 1] : undefined;
  };
  if (has('--help') || has('-h')) {
    console.log(HELP);
    process.exit(0);
  }
  const quick = has('--quick');
  const num = (f: string, d: number): number => {
    const v = val(f);
    const n = v === undefined ? NaN : Number(v);
    return Number.isFinite(n) && n > 0 ? n : d;
  };
  const list = (f: string, d: string[]): string[] =>
    val(f)
      ? String(val(f))
          .split(',')
          .map((s) => s.trim())
      : d;
  return {
    quick,
    soak: has('--soak') ? num('--soak', 1_000_000) : 0,
    soakRate: num('--soak-rate', 400),
    scenarios: list('--scenarios', ['wechat-plain', 'wechat-safe', 'cxone']),
    contenders: [
      ...list('--contenders', ['pack', 'pack-memory', 'core', 'express', 'bare']),
      ...(val('--baseline') && !list('--contenders', []).includes('pack-baseline') ? ['pack-baseline'] : []),
    ],
    durationS: num('--duration', quick ? 5 : 10),
    warmS: quick ? 2 : 3,
    rounds: num('--rounds', quick ? 1 : 3),
    connections: num('--connections', 64),
    rate: num('--rate', 500),
    latencyS: num('--latency-duration', quick ? 8 : 20),
    latencyRounds: num('--latency-rounds', quick ? 1 : 3),
    farDelayMs: num('--far-delay', 300),
    token: !has('--no-token'),
    cpuProf: has('--cpu-prof'),
    // Not through val(): the value itself starts with "--".
    nodeArgs: has('--node-args')
      ? (argv[argv.indexOf('--node-args') + 1] ?? '').split(' ').filter(Boolean)
      : [],
    childLogs: val('--child-logs') ? path.resolve(String(val('--child-logs'))) : undefined,
    baseline: val('--baseline') ? path.resolve(String(val('--baseline'))) : undefined,
    render: has('--render'),
    out: path.resolve(val('--out') ?? path.join(repoRoot(), 'bench', 'results')),
  };
}

function repoRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'tsconfig.json')))
      return dir;
    if (path.dirname(dir) === dir) return process.cwd();
  }
}

// ---- scenarios and contenders -----------------------------------------------------------------------------------

interface Scenario {
  id: string;
  title: string;
  direction: Direction;
  mode: PushMode;
}

const SCENARIOS: Record<string, Scenario> = {
  'wechat-plain': {
    id: 'wechat-plain',
    title: 'WeChat → CXone, plain mode',
    direction: 'wechat',
    mode: 'plain',
  },
  'wechat-safe': {
    id: 'wechat-safe',
    title: 'WeChat → CXone, safe mode (AES)',
    direction: 'wechat',
    mode: 'safe',
  },
  cxone: { id: 'cxone', title: 'CXone → WeChat', direction: 'cxone', mode: 'plain' },
};

interface ContenderDef {
  id: string;
  label: string;
  kind: 'pack' | 'core' | 'express' | 'bare';
  store?: StoreKind;
  ackFirst?: boolean;
  /** Runs the build given with --baseline. */
  baseline?: boolean;
}

const CONTENDERS: Record<string, ContenderDef> = {
  pack: { id: 'pack', label: '(a) pack, file store (default)', kind: 'pack', store: 'default' },
  'pack-memory': { id: 'pack-memory', label: "(a') pack, memory store", kind: 'pack', store: 'memory' },
  'pack-redis': { id: 'pack-redis', label: "(a'') pack, Redis store", kind: 'pack', store: 'redis' },
  'pack-baseline': {
    id: 'pack-baseline',
    label: '(a₀) pack, baseline build, file store',
    kind: 'pack',
    store: 'default',
    baseline: true,
  },
  core: { id: 'core', label: '(b) core nodes', kind: 'core' },
  express: { id: 'express', label: '(c) Express route', kind: 'express' },
  bare: { id: 'bare', label: '(d) bare node:http', kind: 'bare' },
  'express-ackfirst': {
    id: 'express-ackfirst',
    label: "(c') Express, answers before forwarding",
    kind: 'express',
    ackFirst: true,
  },
  'bare-ackfirst': {
    id: 'bare-ackfirst',
    label: "(d') node:http, answers before forwarding",
    kind: 'bare',
    ackFirst: true,
  },
};

interface Running {
  def: ContenderDef;
  child: Child;
  userDir?: string;
  redisPrefix?: string;
  gen: Generator;
  startMem?: MemInfo;
  endMem?: MemInfo;
  peakRssKiB: number;
}

// ---- the far side -----------------------------------------------------------------------------------------------

class Far {
  constructor(readonly child: Child) {}
  stats(): Promise<FarStats> {
    return this.child.ask<FarStats>({ cmd: 'stats' });
  }
  delay(ms: number): Promise<unknown> {
    return this.child.ask({ cmd: 'delay', ms });
  }
  reset(): Promise<unknown> {
    return this.child.ask({ cmd: 'reset' });
  }
  async delivered(direction: Direction): Promise<number> {
    const s = await this.stats();
    return direction === 'wechat' ? s.dfo.messages : s.wechat.sends;
  }
  async stop(): Promise<void> {
    await this.child.ask({ cmd: 'stop' }).catch(() => undefined);
    await this.child.stop();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until `target` messages arrived at the far side since `from`, or nothing arrived for `quietMs`, or
 * `timeoutMs` passed. Returns the count since `from`.
 */
async function drain(
  far: Far,
  direction: Direction,
  from: number,
  target: number,
  timeoutMs = 120_000,
  quietMs = 3000,
): Promise<number> {
  return (await drainTimed(far, direction, from, target, timeoutMs, quietMs)).count;
}

/** `drain`, also saying when the last message arrived (performance.now(), ±50 ms). */
async function drainTimed(
  far: Far,
  direction: Direction,
  from: number,
  target: number,
  timeoutMs = 120_000,
  quietMs = 3000,
): Promise<{ count: number; lastAt: number }> {
  const t0 = Date.now();
  let last = -1;
  let lastChange = Date.now();
  let lastAt = performance.now();
  for (;;) {
    const n = (await far.delivered(direction)) - from;
    if (n !== last) lastAt = performance.now();
    if (n >= target) return { count: n, lastAt };
    if (n !== last) {
      last = n;
      lastChange = Date.now();
    } else if (Date.now() - lastChange > quietMs) return { count: n, lastAt };
    if (Date.now() - t0 > timeoutMs) return { count: n, lastAt };
    await sleep(50);
  }
}

/** Samples the RSS of the running contenders every 250 ms while `during` runs; keeps each one's peak. */
async function sampled<T>(running: Running[], during: Promise<T>): Promise<T> {
  let stop = false;
  const loop = (async () => {
    while (!stop) {
      for (const r of running) r.peakRssKiB = Math.max(r.peakRssKiB, r.child.rss().rssKiB);
      await sleep(250);
    }
  })();
  try {
    return await during;
  } finally {
    stop = true;
    await loop;
  }
}

// ---- starting contenders ----------------------------------------------------------------------------------------

async function boxToken(url: string): Promise<string> {
  const res = await fetch(`${url}${BOX_PATH}/1.0/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      grant_type: 'client_credentials',
      client_id: CXONE.boxClientId,
      client_secret: CXONE.boxClientSecret,
    }),
  });
  const b = (await res.json()) as { access_token?: string };
  if (res.status !== 200 || !b.access_token)
    throw new Error(`the pack's box refused a token (${res.status})`);
  return b.access_token;
}

function logFileOf(o: Options, def: ContenderDef, sc: Scenario): string | undefined {
  if (!o.childLogs) return undefined;
  fs.mkdirSync(o.childLogs, { recursive: true });
  return path.join(o.childLogs, `${def.id}-${sc.id}.log`);
}

async function startContender(def: ContenderDef, sc: Scenario, farUrl: string, o: Options): Promise<Running> {
  const name = `${def.id}/${sc.id}`;
  let child: Child;
  let userDir: string | undefined;
  let redisPrefix: string | undefined;
  if (def.kind === 'pack' || def.kind === 'core') {
    const profDir = path.join(o.out, 'prof');
    if (o.cpuProf && def.kind === 'pack') fs.mkdirSync(profDir, { recursive: true });
    const r = await startNodeRed(
      {
        kind: def.kind,
        direction: sc.direction,
        mode: sc.mode,
        store: def.store,
        build: def.baseline ? o.baseline : undefined,
      },
      {
        farUrl,
        name,
        execArgv: [
          ...(o.cpuProf && def.kind === 'pack'
            ? [
                '--cpu-prof',
                `--cpu-prof-dir=${profDir}`,
                `--cpu-prof-name=${def.id}-${sc.id}-${Date.now()}.cpuprofile`,
              ]
            : []),
          ...(def.kind === 'pack' ? o.nodeArgs : []),
        ],
        logFile: logFileOf(o, def, sc),
      },
    );
    child = r.child;
    userDir = r.userDir;
    redisPrefix = r.redisPrefix;
  } else {
    const args = ['--stack', def.kind, '--direction', sc.direction, '--far', farUrl];
    if (def.ackFirst) args.push('--ack-first');
    child = await start({
      name,
      script: path.join(__dirname, 'contenders', 'server.js'),
      args,
      agent: true,
      logFile: logFileOf(o, def, sc),
    });
  }
  let gen: Generator;
  if (sc.direction === 'wechat') gen = new PushGenerator(sc.mode);
  else {
    const bearer = def.kind === 'pack' ? await boxToken(child.url) : handBuiltToken();
    gen = new ReplyGenerator(() => bearer);
  }
  return { def, child, userDir, redisPrefix, gen, peakRssKiB: 0 };
}

/** One request through the contender, answered 2xx (retried while the contender gets its token). */
async function probe(r: Running): Promise<void> {
  const t0 = Date.now();
  let last = '';
  while (Date.now() - t0 < 20_000) {
    const g = r.gen.next();
    try {
      const res = await fetch(r.child.url + g.path, {
        method: g.method,
        headers: g.headers,
        body: g.body,
        signal: AbortSignal.timeout(5000),
      });
      const text = await res.text();
      if (res.status >= 200 && res.status < 300) return;
      last = `${res.status} ${text.slice(0, 200)}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await sleep(250);
  }
  throw new Error(
    `${r.child.name} does not answer a valid request with 2xx (last: ${last})\n${r.child.logs().slice(-3000)}`,
  );
}

// ---- trials -------------------------------------------------------------------------------------------------------

/** The kernel's share of the CPU a contender used between two readings (NaN when the agent did not say). */
function sysShare(m0: MemInfo, m1: MemInfo): number {
  const cpu = m1.cpuMs - m0.cpuMs;
  return m0.sysMs === undefined || m1.sysMs === undefined || cpu <= 0 ? NaN : (m1.sysMs - m0.sysMs) / cpu;
}

interface ThroughputTrial {
  round: number;
  /** Of the CPU, the share spent in the kernel. */
  sysShare: number;
  durationS: number;
  acked: number;
  ackedPerS: number;
  deliveredInWindow: number;
  /** Delivered during the load window, per second of the window. */
  deliveredInWindowPerS: number;
  /** Sustained: delivered of what was acknowledged in the window, per second until the last one arrived. */
  deliveredPerS: number;
  /** Delivered once the contender had drained (since the start of the window). */
  deliveredTotal: number;
  lost: number;
  non2xx: number;
  errors: number;
  cpuUsPerMsg: number;
  latencyMs: { p50: number; p99: number; max: number };
}

async function throughputTrial(
  r: Running,
  sc: Scenario,
  far: Far,
  o: Options,
  round: number,
): Promise<ThroughputTrial> {
  await far.delay(0);
  // Warm-up (JIT, sockets, token), then let whatever it queued reach the far side.
  const w0 = await far.delivered(sc.direction);
  const warm = await saturate(r.child.url, r.gen, { connections: o.connections, durationS: o.warmS });
  await drain(far, sc.direction, w0, warm.acked, 60_000);

  const f0 = await far.delivered(sc.direction);
  const m0 = await r.child.mem(false);
  const t0 = performance.now();
  const res = await sampled(
    [r],
    saturate(r.child.url, r.gen, { connections: o.connections, durationS: o.durationS }),
  );
  const f1 = await far.delivered(sc.direction);
  const drained = await drainTimed(far, sc.direction, f0, res.acked, 300_000);
  const total = drained.count;
  const m1 = await r.child.mem(false);
  const acked = res.acked;
  return {
    round,
    durationS: res.durationS,
    acked,
    ackedPerS: acked / res.durationS,
    deliveredInWindow: f1 - f0,
    deliveredInWindowPerS: (f1 - f0) / res.durationS,
    // Everything acknowledged in the window, over the time until the last of it arrived.
    deliveredPerS: total / Math.max(res.durationS, (drained.lastAt - t0) / 1000),
    deliveredTotal: total,
    lost: Math.max(0, acked - total),
    non2xx: res.non2xx,
    errors: res.errors + res.timeouts,
    // CPU from the start of the window to the end of the drain: all the work for these messages.
    cpuUsPerMsg: acked > 0 ? ((m1.cpuMs - m0.cpuMs) * 1000) / acked : NaN,
    sysShare: sysShare(m0, m1),
    latencyMs: res.latencyMs,
  };
}

interface LatencyTrial extends PacedResult {
  farDelayMs: number;
  /** The contender's CPU (user + system) from the start of the paced load to the end of its drain, per request. */
  cpuUsPerMsg: number;
  /** Of that CPU, the share spent in the kernel. */
  sysShare: number;
  deliveredPerSDuring: number;
  lost: number;
  /**
   * Of the trials combined (`combineLatency`): each trial's own figures. `latencyMs` is then taken over the requests
   * of all of them together, CPU and delivered/s are the trials' medians, the counts their sums.
   */
  rounds?: Array<{ p50: number; p99: number; max: number; cpuUsPerMsg: number }>;
}

/**
 * One result from several latency trials of a contender. The percentiles are over all their requests together: one
 * 20 s trial's p99 moves a lot with how many of V8's major collections fall into it (the same build's p99 ranged
 * from 7 to 45 ms between trials on one machine), so several trials, interleaved with the other contenders', make
 * the figure less a matter of luck.
 */
function combineLatency(ts: LatencyTrial[]): LatencyTrial {
  if (ts.length === 1) return { ...ts[0], sorted: undefined };
  const all = new Float64Array(ts.reduce((a, t) => a + (t.sorted?.length ?? 0), 0));
  let at = 0;
  for (const t of ts) {
    if (t.sorted) all.set(t.sorted, at);
    at += t.sorted?.length ?? 0;
  }
  all.sort();
  const statuses: Record<string, number> = {};
  for (const t of ts) for (const [k, v] of Object.entries(t.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  const sum = (f: (t: LatencyTrial) => number): number => ts.reduce((a, t) => a + f(t), 0);
  return {
    rate: ts[0].rate,
    farDelayMs: ts[0].farDelayMs,
    sent: sum((t) => t.sent),
    acked: sum((t) => t.acked),
    failed: sum((t) => t.failed),
    lost: sum((t) => t.lost),
    statuses,
    achievedRate: median(ts.map((t) => t.achievedRate)),
    cpuUsPerMsg: median(ts.map((t) => t.cpuUsPerMsg)),
    sysShare: median(ts.map((t) => t.sysShare)),
    deliveredPerSDuring: median(ts.map((t) => t.deliveredPerSDuring)),
    latencyMs: {
      p50: percentile(all, 50),
      p90: percentile(all, 90),
      p99: percentile(all, 99),
      p999: percentile(all, 99.9),
      max: all.length ? all[all.length - 1] : NaN,
    },
    rounds: ts.map((t) => ({
      p50: t.latencyMs.p50,
      p99: t.latencyMs.p99,
      max: t.latencyMs.max,
      cpuUsPerMsg: t.cpuUsPerMsg,
    })),
  };
}

async function latencyTrial(r: Running, sc: Scenario, far: Far, o: Options): Promise<LatencyTrial> {
  await far.delay(o.farDelayMs);
  // A full collection first, in every contender alike: the trial before (a saturating one) leaves a heap of
  // hundreds of MB of garbage, and the first major collection of the steady rate would pay for it in this trial.
  await r.child.mem(true);
  const f0 = await far.delivered(sc.direction);
  const m0 = await r.child.mem(false);
  const t0 = Date.now();
  const res = await sampled(
    [r],
    paced(r.child.url, r.gen, { rate: o.rate, durationS: o.latencyS, warmS: 3, trace: !!o.childLogs }),
  );
  if (o.childLogs && res.trace) {
    const origin = (await r.child.mem()).timeOrigin ?? 0;
    const lines = res.trace.map(([at, ms]) => `${(at - origin).toFixed(1)}\t${ms.toFixed(2)}`);
    // Every trial of the contender in one file (their send times follow each other).
    const file = path.join(o.childLogs, `${r.def.id}-${sc.id}.latency.tsv`);
    if (!fs.existsSync(file))
      fs.writeFileSync(file, `# send time (ms since the contender's process started)\tlatency (ms)\n`);
    fs.appendFileSync(file, `${lines.join('\n')}\n`);
    delete res.trace;
  }
  const spanS = (Date.now() - t0) / 1000;
  const f1 = await far.delivered(sc.direction);
  await far.delay(0);
  const total = await drain(far, sc.direction, f0, res.acked, 300_000);
  const m1 = await r.child.mem(false);
  return {
    ...res,
    farDelayMs: o.farDelayMs,
    // Includes the warm-up's requests: paced() counts them in `sent` too.
    cpuUsPerMsg: res.sent > 0 ? ((m1.cpuMs - m0.cpuMs) * 1000) / res.sent : NaN,
    sysShare: sysShare(m0, m1),
    deliveredPerSDuring: (f1 - f0) / spanS,
    lost: Math.max(0, res.acked - total),
  };
}

// ---- results ----------------------------------------------------------------------------------------------------

interface ContenderResult {
  id: string;
  label: string;
  trials: ThroughputTrial[];
  ackedPerS: number;
  deliveredPerS: number;
  deliveredInWindowPerS: number;
  cpuUsPerMsg: number;
  /** Of the CPU in the throughput trials, the share spent in the kernel (median). */
  sysShare?: number;
  lost: number;
  errors: number;
  latency?: LatencyTrial;
  peakRssMB: number;
  rssAfterGcStartMB?: number;
  rssAfterGcEndMB?: number;
  heapUsedEndMB?: number;
}

interface ScenarioResult {
  id: string;
  title: string;
  contenders: ContenderResult[];
}

/** The kernel's share of a CPU figure: ` (sys 38 %)`; nothing when not measured (results of older runs). */
function sysText(share: number | undefined): string {
  return share !== undefined && Number.isFinite(share) ? ` (sys ${Math.round(share * 100)} %)` : '';
}

/** Each latency trial's p99, when there were several: ` (12.3, 8.1, 25.0)`. */
function roundsText(l: LatencyTrial): string {
  return l.rounds && l.rounds.length > 1 ? ` (${l.rounds.map((r) => fmt(r.p99, 1)).join(', ')})` : '';
}

function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const mb = (b: number): number => b / (1024 * 1024);

async function runScenario(sc: Scenario, far: Far, o: Options): Promise<ScenarioResult> {
  console.log(`\n== ${sc.title} ==`);
  const running: Running[] = [];
  try {
    for (const id of o.contenders) {
      const def = CONTENDERS[id];
      if (!def) throw new Error(`unknown contender "${id}"`);
      if (def.baseline && !o.baseline) throw new Error(`${id} runs the build given with --baseline DIR`);
      process.stdout.write(`  starting ${def.label} … `);
      const r = await startContender(def, sc, far.child.url, o);
      running.push(r);
      await probe(r);
      r.startMem = await r.child.mem(true);
      console.log(
        `pid ${r.child.pid}, port ${r.child.port}, RSS after GC ${mb(r.startMem.memory.rss).toFixed(0)} MB`,
      );
    }
    const trials = new Map<string, ThroughputTrial[]>(running.map((r) => [r.def.id, []]));
    for (let round = 0; round < o.rounds; round++) {
      // Rotate the order each round, so no contender always runs first or last.
      const order = running.map((_, i) => running[(i + round) % running.length]);
      for (const r of order) {
        const t = await throughputTrial(r, sc, far, o, round);
        trials.get(r.def.id)?.push(t);
        console.log(
          `  round ${round + 1}/${o.rounds} ${r.def.label.padEnd(40)} acked ${t.ackedPerS.toFixed(0).padStart(6)}/s` +
            `  delivered ${t.deliveredPerS.toFixed(0).padStart(6)}/s (in window ${t.deliveredInWindowPerS.toFixed(0)}/s)  CPU ${t.cpuUsPerMsg.toFixed(0).padStart(5)} µs/msg${sysText(t.sysShare)}` +
            (t.lost ? `  LOST ${t.lost}` : '') +
            (t.non2xx + t.errors ? `  non-2xx ${t.non2xx} errors ${t.errors}` : ''),
        );
      }
    }
    const latencyTrials = new Map<string, LatencyTrial[]>(running.map((r) => [r.def.id, []]));
    for (let round = 0; round < o.latencyRounds; round++) {
      const order = running.map((_, i) => running[(i + round) % running.length]);
      for (const r of order) {
        const l = await latencyTrial(r, sc, far, o);
        latencyTrials.get(r.def.id)?.push(l);
        console.log(
          `  latency ${o.latencyRounds > 1 ? `${round + 1}/${o.latencyRounds} ` : ''}${r.def.label.padEnd(40)} ${l.rate}/s, far ${l.farDelayMs} ms: p50 ${l.latencyMs.p50.toFixed(1)} ms` +
            `  p99 ${l.latencyMs.p99.toFixed(1)} ms  max ${l.latencyMs.max.toFixed(0)} ms` +
            `  delivered ${l.deliveredPerSDuring.toFixed(0)}/s  CPU ${l.cpuUsPerMsg.toFixed(0)} µs/msg${sysText(l.sysShare)}` +
            (l.failed ? `  failed ${l.failed} ${JSON.stringify(l.statuses)}` : '') +
            (l.lost ? `  LOST ${l.lost}` : ''),
        );
      }
    }
    const latency = new Map<string, LatencyTrial>();
    for (const [id, ts] of latencyTrials) if (ts.length) latency.set(id, combineLatency(ts));
    const out: ContenderResult[] = [];
    for (const r of running) {
      r.endMem = await r.child.mem(true);
      const ts = trials.get(r.def.id) ?? [];
      out.push({
        id: r.def.id,
        label: r.def.label,
        trials: ts,
        ackedPerS: median(ts.map((t) => t.ackedPerS)),
        deliveredPerS: median(ts.map((t) => t.deliveredPerS)),
        deliveredInWindowPerS: median(ts.map((t) => t.deliveredInWindowPerS)),
        cpuUsPerMsg: median(ts.map((t) => t.cpuUsPerMsg)),
        sysShare: median(ts.map((t) => t.sysShare)),
        lost: ts.reduce((a, t) => a + t.lost, 0) + (latency.get(r.def.id)?.lost ?? 0),
        errors: ts.reduce((a, t) => a + t.errors + t.non2xx, 0),
        latency: latency.get(r.def.id),
        peakRssMB: Math.max(r.peakRssKiB, r.child.rss().hwmKiB) / 1024,
        rssAfterGcStartMB: r.startMem ? mb(r.startMem.memory.rss) : undefined,
        rssAfterGcEndMB: mb(r.endMem.memory.rss),
        heapUsedEndMB: mb(r.endMem.memory.heapUsed),
      });
    }
    return { id: sc.id, title: sc.title, contenders: out };
  } finally {
    for (const r of running) await stopContender(r);
  }
}

// ---- token test -------------------------------------------------------------------------------------------------

interface TokenResult {
  sends: number;
  wechat: { tokenFetches: number; delivered: number; refused: number; ms: number };
  cxone: { tokenFetches: number; delivered: number; refused: number; ms: number };
  store: string;
}

async function tokenTest(n = 1000): Promise<TokenResult> {
  console.log(`\n== Token: ${n} concurrent sends through the pack's clients, against the simulators ==`);
  const sims = await start({ name: 'simulators', script: path.join(__dirname, 'sims.js') });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxcx-bench-token-'));
  const store = await FileStore.open(dir);
  try {
    type Info = {
      wechat: { appId: string; apiBase: string; credentials: { appSecret: string } };
      cxone: {
        authIssuer: string;
        apiBase: string;
        credentials: { clientId: string; clientSecret: string; accessKeyId: string; accessKeySecret: string };
      };
    };
    const info = await sims.ask<Info>({ cmd: 'info' });
    // WeChat allows 5 replies per user within 48 hours of the user's message: n/5 users wrote.
    const users = Array.from({ length: Math.ceil(n / 5) }, (_, i) => openidOf(i));
    await sims.ask({ cmd: 'open', openids: users });
    const api = new WechatApi({
      appId: info.wechat.appId,
      appSecret: () => info.wechat.credentials.appSecret,
      apiBase: info.wechat.apiBase,
      store,
    });
    let t0 = Date.now();
    const wx = await Promise.allSettled(
      Array.from({ length: n }, (_, i) =>
        api.sendCustom({ touser: users[i % users.length], msgtype: 'text', text: { content: `reply ${i}` } }),
      ),
    );
    const wxMs = Date.now() - t0;
    api.close();
    const dfo = createDfoIntegration({
      authIssuer: info.cxone.authIssuer,
      apiBase: info.cxone.apiBase,
      credentials: info.cxone.credentials,
      store,
    });
    t0 = Date.now();
    const now = Date.now();
    const cx = await Promise.allSettled(
      Array.from({ length: n }, (_, i) =>
        dfo.client.createMessage(CXONE.channelId, {
          idOnExternalPlatform: `wechat:bench:${now}-${i}`,
          direction: 'inbound',
          createdAtWithMilliseconds: new Date().toISOString(),
          thread: { idOnExternalPlatform: openidOf(i) },
          messageContent: { type: 'TEXT', payload: { text: `message ${i}` } },
          authorEndUserIdentity: { idOnExternalPlatform: openidOf(i) },
        }),
      ),
    );
    const cxMs = Date.now() - t0;
    dfo.close();
    const c = await sims.ask<{
      wechatTokenFetches: number;
      wechatSends: number;
      wechatRefused: number;
      cxoneTokenFetches: number;
      cxoneMessages: number;
      cxoneRefused: number;
    }>({ cmd: 'counts' });
    const result: TokenResult = {
      sends: n,
      wechat: {
        tokenFetches: c.wechatTokenFetches,
        delivered: wx.filter((x) => x.status === 'fulfilled').length,
        refused: c.wechatRefused,
        ms: wxMs,
      },
      cxone: {
        tokenFetches: c.cxoneTokenFetches,
        delivered: cx.filter((x) => x.status === 'fulfilled').length,
        refused: c.cxoneRefused,
        ms: cxMs,
      },
      store: 'file',
    };
    console.log(
      `  WeChat: ${result.wechat.delivered}/${n} sent in ${wxMs} ms, ${result.wechat.tokenFetches} token fetch(es)\n` +
        `  CXone:  ${result.cxone.delivered}/${n} sent in ${cxMs} ms, ${result.cxone.tokenFetches} token fetch(es)`,
    );
    return result;
  } finally {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
    await sims.ask({ cmd: 'stop' }).catch(() => undefined);
    await sims.stop();
  }
}

// ---- soak ---------------------------------------------------------------------------------------------------------

interface SoakPoint {
  messages: number;
  rssAfterGcMB: number;
  heapUsedMB: number;
  /** V8's heap as committed (what of the RSS is V8's, used or not); absent in soaks before 2026-11-22 05:00. */
  heapTotalMB?: number;
  externalMB: number;
  /** Size of the file store's log (the default store), MB; 0 for other stores. */
  storeLogMB: number;
  at: string;
}

interface SoakResult {
  date: string;
  messages: number;
  store: string;
  rate: number;
  checkpoints: SoakPoint[];
  startRssMB: number;
  endRssMB: number;
  growth: number;
  startHeapMB: number;
  endHeapMB: number;
  lost: number;
  ackedPerS: number;
  minutes: number;
}

function storeLogMB(userDir: string | undefined): number {
  if (!userDir) return 0;
  try {
    return mb(fs.statSync(path.join(userDir, 'wechat-cxone', 'default', 'data.log')).size);
  } catch {
    return 0;
  }
}

/**
 * `--soak N`: N messages through the pack (WeChat → CXone, plain), sent at a steady rate the pack sustains
 * (`--soak-rate`, default 400 msg/s) in ten chunks; after each chunk, once everything reached the far side, RSS
 * after GC. The reference point is after a warm-up of the same traffic (JIT, sockets, store log, allocator).
 */
async function soak(far: Far, o: Options): Promise<SoakResult> {
  const sc = SCENARIOS['wechat-plain'];
  const def =
    CONTENDERS[
      o.contenders.length === 1 && CONTENDERS[o.contenders[0]]?.kind === 'pack' ? o.contenders[0] : 'pack'
    ];
  console.log(
    `\n== Soak: ${o.soak.toLocaleString('en')} messages through ${def.label}, ${sc.title}, ${o.soakRate} msg/s ==`,
  );
  const r = await startContender(def, sc, far.child.url, o);
  try {
    await probe(r);
    const warmN = Math.min(20_000, Math.max(1000, Math.round(o.soak / 50)));
    const w0 = await far.delivered('wechat');
    await steady(r, warmN, o.soakRate);
    await drain(far, 'wechat', w0, warmN, 300_000);
    const checkpoints: SoakPoint[] = [];
    const point = async (messages: number): Promise<void> => {
      const m = await r.child.mem(true);
      const p: SoakPoint = {
        messages,
        rssAfterGcMB: mb(m.memory.rss),
        heapUsedMB: mb(m.memory.heapUsed),
        heapTotalMB: mb(m.memory.heapTotal),
        externalMB: mb(m.memory.external),
        storeLogMB: storeLogMB(r.userDir),
        at: new Date().toISOString(),
      };
      checkpoints.push(p);
      console.log(
        `  ${messages.toLocaleString('en').padStart(10)} messages: RSS after GC ${p.rssAfterGcMB.toFixed(1)} MB, ` +
          `heap ${p.heapUsedMB.toFixed(1)} of ${p.heapTotalMB?.toFixed(1)} MB, store log ${p.storeLogMB.toFixed(1)} MB`,
      );
    };
    await point(0);
    const chunk = Math.max(1000, Math.round(o.soak / 10));
    let done = 0;
    let lost = 0;
    const t0 = Date.now();
    while (done < o.soak) {
      const n = Math.min(chunk, o.soak - done);
      const f0 = await far.delivered('wechat');
      const acked = await steady(r, n, o.soakRate);
      const got = await drain(far, 'wechat', f0, acked, 600_000);
      lost += Math.max(0, acked - got) + (n - acked);
      done += n;
      await point(done);
    }
    const elapsed = (Date.now() - t0) / 1000;
    const first = checkpoints[0];
    const last = checkpoints[checkpoints.length - 1];
    return {
      date: new Date().toISOString(),
      messages: o.soak,
      store: def.store ?? 'default',
      rate: o.soakRate,
      checkpoints,
      startRssMB: first.rssAfterGcMB,
      endRssMB: last.rssAfterGcMB,
      growth: last.rssAfterGcMB / first.rssAfterGcMB - 1,
      startHeapMB: first.heapUsedMB,
      endHeapMB: last.heapUsedMB,
      lost,
      ackedPerS: o.soak / elapsed,
      minutes: elapsed / 60,
    };
  } finally {
    await stopContender(r);
  }
}

/** Stops a contender and removes what it left: its user directory, its Redis keys. */
async function stopContender(r: Running): Promise<void> {
  await r.child.stop().catch(() => undefined);
  if (r.userDir) cleanUserDir(r.userDir);
  if (r.redisPrefix) {
    const n = await cleanRedis(r.redisPrefix).catch((err: unknown) => {
      console.warn(
        `could not delete the Redis keys ${r.redisPrefix}*: ${err instanceof Error ? err.message : String(err)}`,
      );
      return 0;
    });
    console.log(`  deleted ${n} Redis keys of ${r.child.name}`);
  }
}

/** Sends `amount` requests at `rate` per second (autocannon's rate limit); resolves to how many were answered 2xx. */
async function steady(r: Running, amount: number, rate: number): Promise<number> {
  const autocannon = (await import('autocannon')).default;
  const res = await autocannon({
    url: r.child.url,
    connections: 32,
    amount,
    overallRate: rate,
    timeout: 20,
    requests: [
      {
        setupRequest: (req: any) => {
          const g = r.gen.next();
          req.method = g.method;
          req.path = g.path;
          req.headers = g.headers;
          req.body = g.body;
          return req;
        },
      },
    ],
  });
  return res['2xx'];
}

// ---- report -------------------------------------------------------------------------------------------------------

interface Target {
  scenario?: string;
  name: string;
  wanted: string;
  measured: string;
  pass: boolean | null;
}

function fmt(n: number | undefined, digits = 0): string {
  return n === undefined || !Number.isFinite(n) ? '–' : n.toFixed(digits);
}

function ratio(a: number, b: number): string {
  return Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '–';
}

type TrialMetric = 'ackedPerS' | 'deliveredPerS' | 'cpuUsPerMsg';

/**
 * `a ÷ b` for a throughput figure, paired by round: each round runs every contender back to back, so the two
 * trials of a round saw the same machine; the median of the rounds' ratios, and their range. On a shared machine
 * whose speed drifts by tens of percent between minutes, this says more than the ratio of the two medians.
 */
function pairedRatio(
  a: Pick<ContenderResult, 'trials'>,
  b: Pick<ContenderResult, 'trials'>,
  metric: TrialMetric,
): { median: number; min: number; max: number; rounds: number } {
  const rs: number[] = [];
  for (const t of a.trials) {
    const u = b.trials.find((x) => x.round === t.round);
    if (u && u[metric] > 0 && Number.isFinite(t[metric])) rs.push(t[metric] / u[metric]);
  }
  if (!rs.length) return { median: NaN, min: NaN, max: NaN, rounds: 0 };
  return { median: median(rs), min: Math.min(...rs), max: Math.max(...rs), rounds: rs.length };
}

/** A paired ratio as `1.23×`, with the rounds' range when there were several: `1.23× (1.10–1.31)`. */
function pairedText(r: ReturnType<typeof pairedRatio>): string {
  if (!r.rounds) return '–';
  return r.rounds > 1
    ? `${r.median.toFixed(2)}× (${r.min.toFixed(2)}–${r.max.toFixed(2)})`
    : `${r.median.toFixed(2)}×`;
}

function targetsOf(
  results: ScenarioResult[],
  token: TokenResult | undefined,
  soakR: SoakResult | undefined,
): Target[] {
  const t: Target[] = [];
  for (const s of results) {
    const pack = s.contenders.find((c) => c.id === 'pack');
    const core = s.contenders.find((c) => c.id === 'core');
    const express = s.contenders.find((c) => c.id === 'express');
    if (!pack) continue;
    const vs = (c: ContenderResult, name: string, metric: TrialMetric, wanted: string, min: number): void => {
      const r = pairedRatio(pack, c, metric);
      t.push({ scenario: s.title, name, wanted, measured: pairedText(r), pass: r.median >= min });
    };
    if (core) {
      vs(core, 'acknowledged/s vs core nodes', 'ackedPerS', '≥ 1.5×', 1.5);
      vs(core, 'delivered/s vs core nodes', 'deliveredPerS', '≥ 2×', 2);
    }
    if (express) vs(express, 'acknowledged/s vs Express', 'ackedPerS', '≥ 0.90×', 0.9);
    if (pack.latency) {
      const p99 = pack.latency.latencyMs.p99;
      t.push({
        scenario: s.title,
        name: `ack p99 at ${pack.latency.rate} msg/s, far side ${pack.latency.farDelayMs} ms`,
        wanted: '< 20 ms',
        measured: `${p99.toFixed(1)} ms${roundsText(pack.latency)}`,
        pass: p99 < 20 && pack.latency.failed === 0,
      });
    }
    t.push({
      scenario: s.title,
      name: 'nothing lost (acknowledged = arrived)',
      wanted: '0 lost',
      measured: `${pack.lost} lost`,
      pass: pack.lost === 0,
    });
  }
  if (token) {
    t.push({
      name: `token fetches for ${token.sends} concurrent WeChat sends`,
      wanted: '1',
      measured: `${token.wechat.tokenFetches} (${token.wechat.delivered} sent)`,
      pass: token.wechat.tokenFetches === 1 && token.wechat.delivered === token.sends,
    });
    t.push({
      name: `token fetches for ${token.sends} concurrent CXone sends`,
      wanted: '1',
      measured: `${token.cxone.tokenFetches} (${token.cxone.delivered} sent)`,
      pass: token.cxone.tokenFetches === 1 && token.cxone.delivered === token.sends,
    });
  }
  t.push({
    name: 'RSS after 1,000,000 messages (after GC) vs start',
    wanted: '≤ +10%',
    measured: soakR
      ? `${soakR.startRssMB.toFixed(1)} → ${soakR.endRssMB.toFixed(1)} MB (${soakR.growth >= 0 ? '+' : ''}${(
          soakR.growth * 100
        ).toFixed(1)}%) after ${soakR.messages.toLocaleString('en')} (soak run of ${soakR.date.slice(0, 16)})`
      : 'not run (npm run bench -- --soak)',
    pass: soakR ? soakR.growth <= 0.1 && soakR.messages >= 1_000_000 : null,
  });
  return t;
}

function markdown(
  o: Options,
  env: Record<string, unknown>,
  results: ScenarioResult[],
  token: TokenResult | undefined,
  soakR: SoakResult | undefined,
  targets: Target[],
): string {
  const L: string[] = [];
  L.push(
    `Run ${String(env.date)} on ${String(env.cpus)} × ${String(env.cpuModel)}, ${String(env.node)}, Node-RED ${String(env.nodeRed)}; load average ${String(env.loadBefore)} before, ${String(env.loadAfter)} after.` +
      (env.busy
        ? ' **The machine was busy with other work when the run started: the figures are noisy.**'
        : ''),
  );
  if (results.length) {
    L.push(
      `Throughput: ${o.rounds} round(s) of ${o.durationS} s per contender (the table: medians), ${o.connections} connections, far side answering at once. ` +
        `Latency: ${o.rate} msg/s for ${o.latencyS} s after 3 s of warm-up, far side answering in ${o.farDelayMs} ms` +
        ((o.latencyRounds ?? 1) > 1
          ? `; ${o.latencyRounds} trials per contender, interleaved, the percentiles over all their requests together (each trial's p99 in brackets).`
          : '.'),
    );
  }
  for (const s of results) {
    L.push('', `### ${s.title}`, '');
    L.push(
      '| contender | acked/s | delivered/s | delivered/s in window | CPU µs/msg | ack p50 / p99 (ms) | delivered/s, far 300 ms | CPU µs/msg at 500/s | peak RSS (MB) | RSS after GC, start → end (MB) | lost |',
    );
    L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const c of s.contenders) {
      const l = c.latency;
      L.push(
        `| ${c.label} | ${fmt(c.ackedPerS)} | ${fmt(c.deliveredPerS)} | ${fmt(c.deliveredInWindowPerS)} | ${fmt(c.cpuUsPerMsg)}${sysText(c.sysShare)} | ` +
          `${l ? `${fmt(l.latencyMs.p50, 1)} / ${fmt(l.latencyMs.p99, 1)}${roundsText(l)}${l.failed ? ` (${l.failed} failed)` : ''}` : '–'} | ` +
          `${l ? fmt(l.deliveredPerSDuring) : '–'} | ${l ? `${fmt(l.cpuUsPerMsg)}${sysText(l.sysShare)}` : '–'} | ${fmt(c.peakRssMB)} | ${fmt(c.rssAfterGcStartMB)} → ${fmt(c.rssAfterGcEndMB)} | ${c.lost} |`,
      );
    }
    const pack = s.contenders.find((c) => c.id === 'pack');
    const others = s.contenders.filter((c) => c.id !== 'pack' && !c.id.startsWith('pack'));
    const variants = s.contenders.filter((c) => c.id.startsWith('pack'));
    if (pack && others.length) {
      L.push(
        '',
        'Ratios (pack with its default store ÷ contender; for CPU, p99 and RSS lower is better). Throughput and CPU: ' +
          'the median of the rounds’ ratios (each round runs every contender back to back), the range over rounds in ' +
          `brackets; p99: ${pack.latency?.rounds ? 'over all latency trials together' : 'one trial each'}; RSS: one process each.`,
        '',
      );
      L.push('| pack ÷ | acked/s | delivered/s | CPU/msg | ack p99 | peak RSS |');
      L.push('|---|---:|---:|---:|---:|---:|');
      for (const c of others) {
        L.push(
          `| ${c.label} | ${pairedText(pairedRatio(pack, c, 'ackedPerS'))} | ${pairedText(pairedRatio(pack, c, 'deliveredPerS'))} | ${pairedText(pairedRatio(pack, c, 'cpuUsPerMsg'))} | ${ratio(pack.latency?.latencyMs.p99 ?? NaN, c.latency?.latencyMs.p99 ?? NaN)} | ${ratio(pack.peakRssMB, c.peakRssMB)} |`,
        );
      }
      for (const v of variants.filter((c) => c.id !== 'pack')) {
        const core = s.contenders.find((c) => c.id === 'core');
        const express = s.contenders.find((c) => c.id === 'express');
        L.push(
          '',
          `${v.label}: acked/s ${core ? pairedText(pairedRatio(v, core, 'ackedPerS')) : '–'} core nodes, ` +
            `${express ? pairedText(pairedRatio(v, express, 'ackedPerS')) : '–'} Express; ` +
            `delivered/s ${core ? pairedText(pairedRatio(v, core, 'deliveredPerS')) : '–'} core nodes; ` +
            `CPU/msg ${pairedText(pairedRatio(v, pack, 'cpuUsPerMsg'))} of the default pack's.`,
        );
      }
    }
  }
  if (token) {
    L.push(
      '',
      `### Token fetches for ${token.sends} concurrent sends (pack's clients, file store, against the simulators)`,
      '',
    );
    L.push('| client | token fetches | sent | time (ms) |', '|---|---:|---:|---:|');
    L.push(
      `| WeChat (wechat-config's WechatApi) | ${token.wechat.tokenFetches} | ${token.wechat.delivered} | ${token.wechat.ms} |`,
    );
    L.push(
      `| CXone (cxone-dfo-config's DFO client) | ${token.cxone.tokenFetches} | ${token.cxone.delivered} | ${token.cxone.ms} |`,
    );
  }
  if (soakR) {
    L.push(
      '',
      `### Soak: ${soakR.messages.toLocaleString('en')} messages through the pack (${soakR.store} store), ` +
        `${soakR.rate} msg/s, ${soakR.minutes.toFixed(0)} min, run of ${soakR.date.slice(0, 16)}`,
      '',
    );
    L.push(
      '| messages | RSS after GC (MB) | heap used (MB) | heap committed (MB) | external (MB) | file store log (MB) |',
      '|---:|---:|---:|---:|---:|---:|',
    );
    for (const c of soakR.checkpoints)
      L.push(
        `| ${c.messages.toLocaleString('en')} | ${c.rssAfterGcMB.toFixed(1)} | ${c.heapUsedMB.toFixed(1)} | ` +
          `${c.heapTotalMB === undefined ? '–' : c.heapTotalMB.toFixed(1)} | ${c.externalMB.toFixed(1)} | ` +
          `${c.storeLogMB.toFixed(1)} |`,
      );
    if (soakR.lost) L.push('', `${soakR.lost} message(s) acknowledged but not delivered.`);
  }
  L.push('', '### Targets', '');
  L.push('| scenario | target | wanted | measured | result |', '|---|---|---|---|---|');
  for (const x of targets)
    L.push(
      `| ${x.scenario ?? 'all'} | ${x.name} | ${x.wanted} | ${x.measured} | ${x.pass === null ? 'not run' : x.pass ? 'PASS' : 'FAIL'} |`,
    );
  return L.join('\n') + '\n';
}

// ---- main ---------------------------------------------------------------------------------------------------------

/** `--render`: the targets and the table of latest.json again, with the RSS target from the last soak.json. */
function render(o: Options): void {
  const latest = JSON.parse(fs.readFileSync(path.join(o.out, 'latest.json'), 'utf8')) as {
    env: Record<string, unknown>;
    results: ScenarioResult[];
    token?: TokenResult;
  };
  const soakR = (JSON.parse(fs.readFileSync(path.join(o.out, 'soak.json'), 'utf8')) as { soak?: SoakResult })
    .soak;
  const runOpts = latest.env.options as Options;
  const targets = targetsOf(latest.results, latest.token, soakR);
  const md = markdown(runOpts, latest.env, latest.results, latest.token, soakR, targets);
  fs.writeFileSync(
    path.join(o.out, 'latest.json'),
    JSON.stringify({ ...latest, soak: soakR, targets }, null, 2) + '\n',
  );
  fs.writeFileSync(path.join(o.out, 'latest.md'), md);
  console.log(md);
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  if (o.render) {
    render(o);
    return;
  }
  const nodeRedPkg = process.env.WXCX_NODE_RED || 'node-red';
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodeRedVersion = (require(`${nodeRedPkg}/package.json`) as { version: string }).version;
  const env: Record<string, unknown> = {
    date: new Date().toISOString(),
    node: process.version,
    nodeRed: nodeRedVersion,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? '?',
    loadBefore: os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' '),
    options: o,
  };
  console.log(
    `bench: ${String(env.cpus)} CPU(s), ${process.version}, Node-RED ${nodeRedVersion}, load average ${String(env.loadBefore)}`,
  );
  if (os.loadavg()[0] > os.cpus().length * 0.5) {
    env.busy = true;
    console.log(
      `warning: the machine is busy (load ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} CPUs) before the run: ` +
        'rates and latencies will move with it (CPU per message less so); run on an idle machine for figures to quote',
    );
  }
  const far = new Far(await start({ name: 'far side', script: path.join(__dirname, 'far.js') }));
  const results: ScenarioResult[] = [];
  let token: TokenResult | undefined;
  let soakR: SoakResult | undefined;
  try {
    if (o.soak) {
      soakR = await soak(far, o);
    } else {
      for (const id of o.scenarios) {
        const sc = SCENARIOS[id];
        if (!sc) throw new Error(`unknown scenario "${id}"`);
        results.push(await runScenario(sc, far, o));
      }
      if (o.token) token = await tokenTest();
      // The RSS target comes from the last soak run (a separate mode: it takes a while).
      try {
        soakR = (JSON.parse(fs.readFileSync(path.join(o.out, 'soak.json'), 'utf8')) as { soak?: SoakResult })
          .soak;
      } catch {
        soakR = undefined;
      }
    }
  } finally {
    await far.stop();
  }
  env.loadAfter = os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  const targets = targetsOf(results, token, soakR);
  const md = markdown(o, env, results, token, soakR, targets);
  console.log('\n' + md);
  fs.mkdirSync(o.out, { recursive: true });
  const base = o.soak ? 'soak' : 'latest';
  fs.writeFileSync(
    path.join(o.out, `${base}.json`),
    JSON.stringify({ env, results, token, soak: soakR, targets }, null, 2) + '\n',
  );
  fs.writeFileSync(path.join(o.out, `${base}.md`), md);
  console.log(`written: ${path.join(o.out, `${base}.json`)} and ${base}.md`);
  const failed = targets.filter((x) => x.pass === false).length;
  if (failed) console.log(`${failed} target(s) missed`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(1);
});
