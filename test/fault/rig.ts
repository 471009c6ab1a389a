/**
 * The fault-injection rig: the far sides (the WeChat and CXone simulators of sandbox/sim, in the test process),
 * the bridge flow deployed into real red.js processes (test/harness/process.ts), a round-robin proxy in front of
 * them, the pushers (WeChat pushing customer messages, signed, safe mode) and the repliers (CXone calling the
 * box with agent replies, token dance included), a ledger of what was acknowledged, and the tally of what reached
 * the far sides: delivered, duplicates, out of order, dead letters by reason. See test/fault/README.md.
 */
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { CxoneSimulator } from '../../sandbox/sim/cxone';
import { WechatSimulator } from '../../sandbox/sim/wechat';
import { startNodeRed, type NodeRedProcess } from '../harness/process';
import { nodeRedPackage } from '../harness/runtime';
import { FaultProxy } from './fault-proxy';
import { RoundRobinProxy } from './proxy';

/**
 * Size of the suite: 1 on the Node-RED 4.1 pass; 0.4 on the Node-RED 5 pass (same scenarios, fewer messages, to
 * keep `npm test` within its budget); `WXCX_FAULT_SCALE` overrides.
 */
export const SCALE =
  Number(process.env.WXCX_FAULT_SCALE) > 0
    ? Number(process.env.WXCX_FAULT_SCALE)
    : nodeRedPackage === 'node-red-5'
      ? 0.4
      : 1;

export const scaled = (n: number, min = 4): number => Math.max(min, Math.round(n * SCALE));

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export const CHANNEL = 'chat_fault-suite-channel';
const BOX_CLIENT = { clientId: 'fault-box-client', clientSecret: 'fault-box-secret-0123456789' };
const JWT_SECRET = 'fault-suite-jwt-secret-0123456789abcdef';

// ---- far sides ----------------------------------------------------------------------------------------------

export interface Far {
  wx: WechatSimulator;
  cx: CxoneSimulator;
  /** What Node-RED calls instead of the simulators: time-based failure injection (fault-proxy.ts). */
  wxFaults: FaultProxy;
  cxFaults: FaultProxy;
}

/** `followers`: users who follow the account but never wrote (WeChat refuses replies to them: 45015). */
export async function startFar(followers: string[] = []): Promise<Far> {
  const wx = new WechatSimulator({ mode: 'safe', followers });
  const cx = new CxoneSimulator({ channels: [CHANNEL] });
  await Promise.all([wx.start(), cx.start()]);
  const wxFaults = new FaultProxy(wx.url);
  const cxFaults = new FaultProxy(cx.url);
  await Promise.all([wxFaults.start(), cxFaults.start()]);
  return { wx, cx, wxFaults, cxFaults };
}

export async function stopFar(far: Far | undefined): Promise<void> {
  if (!far) return;
  await Promise.all([far.wxFaults.stop(), far.cxFaults.stop()]);
  await Promise.all([far.wx.stop(), far.cx.stop()]);
}

/** CXone's create-message call, as the fault proxies see it. */
export const CXONE_CREATE = /^POST \/dfo\/3\.0\/channels\/[^/]+\/messages$/;
/** WeChat's customer-service send. */
export const WECHAT_SEND = /^POST \/cgi-bin\/message\/custom\/send$/;

/** CXone throttling for `ms`: 429 with Retry-After (s). */
export function cxone429(far: Far, ms: number, retryAfterS = 1): void {
  far.cxFaults.burst(ms, {
    match: CXONE_CREATE,
    status: 429,
    body: { errors: [{ message: 'Too Many Requests' }] },
    headers: { 'Retry-After': String(retryAfterS) },
  });
}

/** CXone failing for `ms`: 500. */
export function cxone500(far: Far, ms: number): void {
  far.cxFaults.burst(ms, {
    match: CXONE_CREATE,
    status: 500,
    body: { errors: [{ message: 'Internal Server Error' }] },
  });
}

/** WeChat busy for `ms`: errcode -1 (HTTP 200, as WeChat answers it). */
export function wechatBusy(far: Far, ms: number): void {
  far.wxFaults.burst(ms, { match: WECHAT_SEND, status: 200, body: { errcode: -1, errmsg: 'system error' } });
}

// ---- the bridge flow ----------------------------------------------------------------------------------------

export type StoreChoice = { store: 'file' } | { store: 'redis'; redisUrl: string; keyPrefix: string };

/**
 * The bridge of examples/, with fixed node ids (instances sharing Redis must run the same flow): customer
 * messages wechat-in → cxone-dfo-out; agent replies cxone-dfo-in → wechat-out → cxone-dfo-out (delivery status);
 * every second output (dead letters) also into a function node that logs `DEAD {json}`.
 */
export function bridgeFlow(
  far: Far,
  store: StoreChoice,
): { flows: Record<string, unknown>[]; credentials: Record<string, Record<string, string>> } {
  const acct = { ...far.wx.account(), apiBase: far.wxFaults.url };
  const integ = {
    ...far.cx.integration(false),
    authIssuer: far.cxFaults.url,
    apiBase: far.cx.dfo.apiBase.replace(far.cx.url, far.cxFaults.url),
  };
  const st = store.store === 'redis' ? store : { store: 'file' };
  const flows = [
    { id: 'ftab', type: 'tab', label: 'fault suite bridge' },
    {
      id: 'fwc',
      type: 'wechat-config',
      name: 'fault account',
      appId: acct.appId,
      apiBase: acct.apiBase,
      ...st,
    },
    {
      id: 'fcc',
      type: 'cxone-dfo-config',
      name: 'fault integration',
      authIssuer: integ.authIssuer,
      apiBase: integ.apiBase,
      ...st,
    },
    {
      id: 'fwi',
      type: 'wechat-in',
      z: 'ftab',
      name: 'WeChat user writes',
      wechat: 'fwc',
      path: '/wechat',
      wires: [['fco']],
    },
    {
      id: 'fco',
      type: 'cxone-dfo-out',
      z: 'ftab',
      name: 'to the CXone agent',
      cxone: 'fcc',
      channelId: CHANNEL,
      wires: [[], ['fdead']],
    },
    {
      id: 'fci',
      type: 'cxone-dfo-in',
      z: 'ftab',
      name: 'agent replies',
      cxone: 'fcc',
      path: '/box',
      wires: [['fwo']],
    },
    {
      id: 'fwo',
      type: 'wechat-out',
      z: 'ftab',
      name: 'to the WeChat user',
      wechat: 'fwc',
      wires: [['fcs'], ['fcs', 'fdead']],
    },
    {
      id: 'fcs',
      type: 'cxone-dfo-out',
      z: 'ftab',
      name: 'tell CXone',
      cxone: 'fcc',
      channelId: CHANNEL,
      wires: [[], ['fdead']],
    },
    {
      id: 'fdead',
      type: 'function',
      z: 'ftab',
      name: 'dead letters',
      func:
        'const d = msg.delivery || {}; const e = d.error || {};\n' +
        'const p = msg.payload || {};\n' +
        'node.warn("DEAD " + JSON.stringify({ code: String(e.code), retryable: !!e.retryable, action: d.action || "send", ' +
        'text: typeof p.text === "string" ? p.text : "", attempts: d.attempts }));\n' +
        'return null;',
      outputs: 0,
      wires: [],
    },
  ];
  const credentials: Record<string, Record<string, string>> = {
    fwc: { ...acct.credentials },
    fcc: {
      ...integ.credentials,
      boxClientId: BOX_CLIENT.clientId,
      boxClientSecret: BOX_CLIENT.clientSecret,
      jwtSecret: JWT_SECRET,
    },
  };
  return { flows, credentials };
}

export async function startBridge(far: Far, store: StoreChoice, userDir?: string): Promise<NodeRedProcess> {
  const { flows, credentials } = bridgeFlow(far, store);
  const nr = await startNodeRed({
    flows,
    credentials,
    userDir,
    maxLogChars: 4_000_000,
    startTimeoutMs: 30_000,
  });
  await waitForPath(nr, '/wechat');
  return nr;
}

/** Waits until the flows serve `path` (the webhook answers something other than 404). */
async function waitForPath(nr: NodeRedProcess, path: string): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const r = await fetch(`${nr.url}${path}`).catch(() => null);
    if (r && r.status !== 404) return;
    if (Date.now() - t0 > 20_000) throw new Error(`${path} not served:\n${nr.logs().slice(-3000)}`);
    await sleep(100);
  }
}

// ---- ledger: what the platforms handed over and got acknowledged ---------------------------------------------

export interface Sent {
  marker: string;
  conv: string;
  n: number;
  acked: boolean;
  ackAt?: number;
  /** Calls it took until the platform's message was acknowledged (CXone retries a reply it got no 200 for). */
  tries?: number;
  /** An agent reply's idOnExternalPlatform, as the box answered it. */
  ext?: string;
  /** Expected to be refused for good by the far side (and dead-lettered), with this code. */
  refusal?: string;
}

export class Ledger {
  readonly pushes: Sent[] = [];
  readonly replies: Sent[] = [];
  constructor(readonly tag: string) {}

  /** `[tag] c<conv> #<n>`: what every text carries, so the far sides' records can be matched. */
  marker(conv: string, n: number): string {
    return `[${this.tag}] ${conv} #${n}`;
  }

  parse(text: string): { conv: string; n: number } | null {
    const m = /^\[([^\]]+)\] (\S+) #(\d+)/.exec(text);
    return m && m[1] === this.tag ? { conv: m[2], n: Number(m[3]) } : null;
  }
}

/** A 28-character openid for a conversation of a scenario. */
export function openidOf(tag: string, conv: string): string {
  const base = `o${tag}${conv}`.replace(/[^A-Za-z0-9_-]/g, '_');
  return (base + 'x'.repeat(28)).slice(0, 28);
}

// ---- pushers (WeChat → wechat-in) ----------------------------------------------------------------------------

export interface PushStreamOptions {
  /** Conversations (users), each pushing its messages one after another. */
  convs: number;
  perConv: number;
  /** Pause between two pushes of one user, ms. */
  gapMs?: number;
  /** Every push delivered this many times at once (WeChat's retries arriving together). */
  copies?: number;
  /** Pause before WeChat's retry of a failed push, ms (default 1500; WeChat waits ~5 s). */
  retryDelayMs?: number;
  /** Conversation name prefix (default 'in'). */
  prefix?: string;
  /** Called before each push (fault injection at a point of the stream). */
  onPush?: (count: number) => void | Promise<void>;
}

export async function pushStream(far: Far, url: string, ledger: Ledger, o: PushStreamOptions): Promise<void> {
  let count = 0;
  const copies = o.copies ?? 1;
  const user = async (c: number): Promise<void> => {
    const conv = `${o.prefix ?? 'in'}${c}`;
    const openid = openidOf(ledger.tag, conv);
    for (let n = 1; n <= o.perConv; n++) {
      await o.onPush?.(++count);
      const marker = ledger.marker(conv, n);
      const entry: Sent = { marker, conv, n, acked: false };
      ledger.pushes.push(entry);
      const rec = await far.wx.push.push(`${url}/wechat`, far.wx.push.text(openid, marker), {
        concurrent: copies > 1,
        retries: copies > 1 ? copies - 1 : 3,
        retryDelayMs: o.retryDelayMs ?? 1500,
        timeoutMs: 5000,
      });
      if (rec.acknowledged) {
        entry.acked = true;
        entry.ackAt = Date.now();
      } else if (copies > 1) {
        // All copies failed at once (a dead instance): WeChat retries later, one at a time.
        await sleep(o.retryDelayMs ?? 1500);
        const again = await far.wx.push.push(`${url}/wechat`, rec.xml, {
          retries: 2,
          retryDelayMs: o.retryDelayMs ?? 1500,
          timeoutMs: 5000,
        });
        if (again.acknowledged) {
          entry.acked = true;
          entry.ackAt = Date.now();
        }
      }
      if (o.gapMs) await sleep(o.gapMs);
    }
  };
  await Promise.all(Array.from({ length: o.convs }, (_, i) => user(i + 1)));
}

// ---- repliers (CXone → cxone-dfo-in) -------------------------------------------------------------------------

export function attachBox(far: Far, url: string): void {
  far.cx.attachBox({ boxUrl: `${url}/box`, ...BOX_CLIENT, channelId: CHANNEL, dfo3: true, timeoutMs: 8000 });
}

export interface ReplyStreamOptions {
  convs: number;
  /** Replies per conversation (at most 5: WeChat allows 5 replies per user message). */
  perConv: number;
  gapMs?: number;
  /** Conversations whose user never wrote: every reply is refused for good by WeChat (45015). */
  neverWrote?: number;
  onReply?: (count: number) => void | Promise<void>;
}

/**
 * Each conversation's user writes once (through the webhook: a push, in the ledger too), then the agent sends
 * `perConv` replies one after another. CXone retries a reply the box did not answer 200 (up to 10 times).
 */
export async function replyStream(
  far: Far,
  url: string,
  ledger: Ledger,
  o: ReplyStreamOptions,
): Promise<void> {
  assert.ok(o.perConv <= 5, 'WeChat allows 5 replies per user message');
  let count = 0;
  const conversation = async (c: number, wrote: boolean): Promise<void> => {
    const conv = wrote ? `out${c}` : `mute${c}`;
    const openid = openidOf(ledger.tag, conv);
    if (wrote) {
      const marker = ledger.marker(conv, 0);
      const entry: Sent = { marker, conv, n: 0, acked: false };
      ledger.pushes.push(entry);
      const rec = await far.wx.push.push(`${url}/wechat`, far.wx.push.text(openid, marker), {
        retries: 3,
        retryDelayMs: 1500,
      });
      entry.acked = rec.acknowledged;
      entry.ackAt = Date.now();
      if (!rec.acknowledged) return; // the user's window is not known to be open
    }
    const messageIdBase = randomBytes(6).toString('hex');
    for (let n = 1; n <= o.perConv; n++) {
      await o.onReply?.(++count);
      const marker = ledger.marker(conv, n);
      const entry: Sent = { marker, conv, n, acked: false, refusal: wrote ? undefined : '45015' };
      ledger.replies.push(entry);
      for (let attempt = 0; attempt < 10 && !entry.acked; attempt++) {
        const r = await far.cx
          .agentReply({ threadId: openid, text: marker, messageId: `${messageIdBase}-${n}` })
          .catch(() => null);
        entry.tries = attempt + 1;
        if (r?.answer.status === 200) {
          entry.acked = true;
          entry.ackAt = Date.now();
          entry.ext = r.message?.idOnExternalPlatform;
        } else await sleep(500 + attempt * 500);
      }
      if (o.gapMs) await sleep(o.gapMs);
    }
  };
  await Promise.all([
    ...Array.from({ length: o.convs }, (_, i) => conversation(i + 1, true)),
    ...Array.from({ length: o.neverWrote ?? 0 }, (_, i) => conversation(i + 1, false)),
  ]);
}

// ---- the tally -----------------------------------------------------------------------------------------------

export interface DeadLetter {
  code: string;
  retryable: boolean;
  action: string;
  text: string;
}

export function deadLetters(nrs: NodeRedProcess[], ledger: Ledger): DeadLetter[] {
  const out: DeadLetter[] = [];
  for (const nr of nrs)
    for (const m of nr.logs().matchAll(/DEAD (\{.*\})\s*$/gm)) {
      const d = JSON.parse(m[1]) as DeadLetter;
      if (ledger.parse(d.text)) out.push(d);
    }
  return out;
}

export interface Tally {
  sent: number;
  acknowledged: number;
  delivered: number;
  duplicates: number;
  /** The markers delivered more than once. */
  duplicated: string[];
  outOfOrder: number;
  /** Out of order because a journal replay after a kill joined its conversation late (allowed, ADR 0006). */
  reorderedByReplay: number;
  missing: string[];
  /** Delivered although never acknowledged (the platform retried it later, or we took it and died). */
  unacknowledgedDelivered: number;
}

function tallyOf(
  sent: Sent[],
  deliveries: { marker: string; conv: string; n: number; at: number }[],
  killAt: number[],
  dead: Set<string>,
): Tally {
  const count = new Map<string, number>();
  for (const d of deliveries) count.set(d.marker, (count.get(d.marker) ?? 0) + 1);
  const byMarker = new Map(sent.map((s) => [s.marker, s]));
  const acked = sent.filter((s) => s.acked);
  const missing = acked.filter((s) => !count.has(s.marker) && !dead.has(s.marker)).map((s) => s.marker);
  let duplicates = 0;
  for (const c of count.values()) duplicates += c - 1;
  // Order: per conversation, by first delivery; a message delivered after a later one of its conversation is
  // out of order, unless a kill explains it (ADR 0006): it was acknowledged before the kill and delivered after
  // it (replayed from the journal), or it waited 10 s or more between acknowledgement and delivery after a kill
  // (a dead instance's journal entry, replayed by the other instance once the dead one's heartbeat lapsed).
  const firsts = new Map<string, { n: number; at: number; marker: string }[]>();
  const seen = new Set<string>();
  for (const d of deliveries) {
    if (seen.has(d.marker)) continue;
    seen.add(d.marker);
    let l = firsts.get(d.conv);
    if (!l) firsts.set(d.conv, (l = []));
    l.push({ n: d.n, at: d.at, marker: d.marker });
  }
  let outOfOrder = 0;
  let reorderedByReplay = 0;
  for (const l of firsts.values()) {
    let max = -1;
    for (const d of l) {
      if (d.n < max) {
        const s = byMarker.get(d.marker);
        const ack = s?.ackAt ?? Infinity;
        const replayed = killAt.some((k) => d.at >= k && (ack <= k + 200 || d.at - ack >= 10_000));
        if (replayed) reorderedByReplay++;
        else outOfOrder++;
      }
      max = Math.max(max, d.n);
    }
  }
  return {
    sent: sent.length,
    acknowledged: acked.length,
    delivered: seen.size,
    duplicates,
    duplicated: [...count].filter(([, c]) => c > 1).map(([m]) => m),
    outOfOrder,
    reorderedByReplay,
    missing,
    unacknowledgedDelivered: [...seen].filter((m) => !byMarker.get(m)?.acked).length,
  };
}

export interface Report {
  scenario: string;
  inbound: Tally;
  outbound: Tally;
  /** CXone creates refused as duplicates of an idOnExternalPlatform it had (repeats absorbed by CXone). */
  cxoneRepeats: number;
  /**
   * Agent replies delivered to WeChat whose delivery status never reached CXone. The status travels from
   * wechat-out's output to cxone-dfo-out's outbox like any message, but it is not journaled: a kill between the two
   * loses it (ADR 0006). The reply itself is delivered.
   */
  statusesMissing: number;
  /** Agent replies CXone had to send to the box more than once (no 200 the first time: a kill, a dead instance). */
  repliesRetried: number;
  statuses: number;
  dead: Record<string, number>;
  unexpectedDead: DeadLetter[];
  retries: number;
  replays: number;
  tokenFetches: { wechat: number; cxone: number };
  seconds: number;
}

/** Figures at the start of a scenario, so the report shows what the scenario itself did. */
export interface Baseline {
  statuses: number;
  /** Outbox retries and journal replays per process id. */
  perPid: Map<number, { retries: number; replays: number }>;
}

export async function baseline(far: Far, nrs: NodeRedProcess[]): Promise<Baseline> {
  const perPid = new Map<number, { retries: number; replays: number }>();
  for (const nr of nrs) {
    const h = await healthSums([nr]);
    if (nr.child.pid) perPid.set(nr.child.pid, { retries: h.retries, replays: h.replays });
  }
  return { statuses: far.cx.dfo.statuses.length, perPid };
}

/** Health figures of every node of every instance, summed by figure. */
export async function healthSums(
  nrs: NodeRedProcess[],
): Promise<{ retries: number; replays: number; depth: number; dead: number; pending: number }> {
  const sum = { retries: 0, replays: 0, depth: 0, dead: 0, pending: 0 };
  for (const nr of nrs) {
    if (nr.child.exitCode !== null || nr.child.signalCode !== null) continue;
    const r = await fetch(`${nr.url}/wechat-cxone/health`).catch(() => null);
    if (!r) continue;
    const h = (await r.json()) as { nodes: { figures: Record<string, any> }[] };
    for (const n of h.nodes) {
      const f = n.figures;
      sum.retries += f.outbox?.retries ?? 0;
      sum.depth += f.outbox?.depth ?? 0;
      sum.dead += f.outbox?.dead ?? 0;
      sum.replays += f.journal?.replayed ?? 0;
      sum.pending += f.journal?.pending ?? 0;
    }
  }
  return sum;
}

/** What reached the far sides for this ledger's scenario. */
export function deliveries(far: Far, ledger: Ledger) {
  const inbound: { marker: string; conv: string; n: number; at: number }[] = [];
  let cxoneRepeats = 0;
  for (const r of far.cx.dfo.createRequests) {
    const body = r.body as { messageContent?: { payload?: { text?: unknown } } };
    const text = body?.messageContent?.payload?.text;
    const p = typeof text === 'string' ? ledger.parse(text) : null;
    if (!p) continue;
    if (r.status === 200) inbound.push({ marker: ledger.marker(p.conv, p.n), ...p, at: r.at });
    else if (r.status === 409) cxoneRepeats++;
  }
  const outbound: { marker: string; conv: string; n: number; at: number }[] = [];
  for (const m of far.wx.api.inbox) {
    const p = replyOf(ledger, m.body);
    if (p) outbound.push({ marker: ledger.marker(p.conv, p.n), ...p, at: m.at });
  }
  return { inbound, outbound, cxoneRepeats };
}

/**
 * The ledger's agent replies that were in flight to WeChat around a kill: their call had reached the far side by
 * the time the killed process was gone (`deadAt`), and its answer came no earlier than 200 ms before the kill began
 * (`killAt`: an answer just before it may not have been recorded). Only these may be sent twice: the killed
 * instance cannot know whether they were carried out, and the one that takes over its conversation sends them again.
 */
export function repliesInFlight(far: Far, ledger: Ledger, killAt: number, deadAt: number): Set<string> {
  const out = new Set<string>();
  for (const c of far.wxFaults.calls) {
    if (!WECHAT_SEND.test(c.key) || c.at > deadAt) continue;
    if (c.answeredAt !== undefined && c.answeredAt < killAt - 200) continue;
    let body: unknown;
    try {
      body = JSON.parse(c.body.toString('utf8'));
    } catch {
      continue; // not JSON: not a message of ours
    }
    const p = replyOf(ledger, body);
    if (p) out.add(ledger.marker(p.conv, p.n));
  }
  return out;
}

/** The ledger's reply a customer-service send (its JSON body) carries, if any. */
function replyOf(ledger: Ledger, body: unknown): { conv: string; n: number } | null {
  const content = (body as { text?: { content?: unknown } } | null)?.text?.content;
  return typeof content === 'string' ? ledger.parse(content) : null;
}

/** Waits until every queue is empty on the instances still running and the far sides stopped changing. */
export async function drain(
  far: Far,
  nrs: NodeRedProcess[],
  ledger: Ledger,
  timeoutMs: number,
): Promise<void> {
  const t0 = Date.now();
  let last = '';
  let stableSince = Date.now();
  for (;;) {
    const h = await healthSums(nrs);
    const d = deliveries(far, ledger);
    const sig = `${d.inbound.length}/${d.outbound.length}/${far.cx.dfo.statuses.length}/${h.depth}/${h.pending}`;
    if (sig !== last) {
      last = sig;
      stableSince = Date.now();
    }
    const owed =
      ledger.pushes.filter((s) => s.acked).length +
      ledger.replies.filter((s) => s.acked && !s.refusal).length;
    const dead = deadLetters(nrs, ledger).filter((x) => x.action !== 'status').length;
    if (
      h.depth === 0 &&
      h.pending === 0 &&
      d.inbound.length + d.outbound.length + dead >= owed &&
      Date.now() - stableSince > 1500
    )
      return;
    if (Date.now() - t0 > timeoutMs) return;
    await sleep(250);
  }
}

export async function report(
  scenario: string,
  far: Far,
  nrs: NodeRedProcess[],
  ledger: Ledger,
  o: {
    killAt?: number[];
    startedAt: number;
    base?: Baseline;
    /** Refusals for good injected at the far side: that many dead letters of that action and code are owed. */
    injected?: { action: string; code: string; count: number };
  },
): Promise<Report> {
  const dead = deadLetters(nrs, ledger);
  const deadMarkers = new Set(dead.map((d) => d.text));
  const d = deliveries(far, ledger);
  const killAt = o.killAt ?? [];
  let retries = 0;
  let replays = 0;
  for (const nr of nrs) {
    // A killed instance's figures died with it: only what the living ones report is counted.
    if (nr.child.exitCode !== null || nr.child.signalCode !== null) continue;
    const h = await healthSums([nr]);
    const b = nr.child.pid ? o.base?.perPid.get(nr.child.pid) : undefined;
    retries += h.retries - (b?.retries ?? 0);
    replays += h.replays - (b?.replays ?? 0);
  }
  const byCode: Record<string, number> = {};
  for (const x of dead) {
    const k = `${x.action}:${x.code}`;
    byCode[k] = (byCode[k] ?? 0) + 1;
  }
  const expected = new Map(ledger.replies.filter((r) => r.refusal).map((r) => [r.marker, r.refusal]));
  let injectedLeft = o.injected?.count ?? 0;
  const unexpectedDead = dead.filter((x) => {
    if (expected.get(x.text) === x.code && !x.retryable) return false;
    const inj = o.injected;
    if (inj && x.action === inj.action && x.code === inj.code && !x.retryable && injectedLeft > 0) {
      // One of the refusals CXone was told to give; the message is then owed as a dead letter, not a delivery.
      injectedLeft--;
      const s = ledger.pushes.find((p) => p.marker === x.text);
      if (s) s.refusal = x.code;
      return false;
    }
    return true;
  });
  if (injectedLeft > 0) {
    unexpectedDead.push({
      code: 'missing',
      retryable: false,
      action: o.injected?.action ?? '',
      text: `${injectedLeft} injected refusals did not end as dead letters`,
    });
  }
  const api = far.wx.api.fetches;
  return {
    scenario,
    inbound: tallyOf(
      ledger.pushes.filter((p) => !p.refusal),
      d.inbound,
      killAt,
      deadMarkers,
    ),
    outbound: tallyOf(
      ledger.replies.filter((r) => !r.refusal),
      d.outbound,
      killAt,
      deadMarkers,
    ),
    cxoneRepeats: d.cxoneRepeats,
    statusesMissing: (() => {
      const reported = new Set(far.cx.dfo.statuses.map((x) => x.messageId));
      const delivered = new Set(d.outbound.map((x) => x.marker));
      return ledger.replies.filter((x) => x.ext && delivered.has(x.marker) && !reported.has(x.ext)).length;
    })(),
    repliesRetried: ledger.replies.filter((x) => (x.tries ?? 1) > 1).length,
    statuses: far.cx.dfo.statuses.length - (o.base?.statuses ?? 0),
    dead: byCode,
    unexpectedDead,
    retries,
    replays,
    tokenFetches: {
      wechat: api.token + api.stable,
      cxone: far.cx.dfo.tokenFetches,
    },
    seconds: Math.round((Date.now() - o.startedAt) / 100) / 10,
  };
}

export function printReport(r: Report): void {
  const t = (x: Tally): string =>
    `sent ${x.sent}, acknowledged ${x.acknowledged}, delivered ${x.delivered}, duplicates ${x.duplicates}, ` +
    `out of order ${x.outOfOrder} (+${x.reorderedByReplay} joined late after a replay), missing ${x.missing.length}`;
  const lines = [
    `  ┌ fault scenario: ${r.scenario} (${r.seconds} s, scale ${SCALE})`,
    `  │ WeChat → CXone : ${t(r.inbound)}; repeats CXone recognised by idOnExternalPlatform ${r.cxoneRepeats}`,
    `  │ CXone → WeChat : ${t(r.outbound)}; delivery statuses reported ${r.statuses} (missing ${r.statusesMissing}); replies CXone sent again ${r.repliesRetried}`,
    `  │ dead letters   : ${
      Object.entries(r.dead)
        .map(([k, v]) => `${k} ×${v}`)
        .join(', ') || 'none'
    }${r.unexpectedDead.length ? ` — UNEXPECTED ${r.unexpectedDead.length}` : ''}`,
    `  └ retries ${r.retries}, journal replays ${r.replays}, access-token fetches since the far sides started: WeChat ${r.tokenFetches.wechat}, CXone ${r.tokenFetches.cxone}`,
  ];
  console.log(lines.join('\n'));
}

/** The assertions every scenario makes (the limits that differ are parameters). */
export function assertReport(
  r: Report,
  o: { wechatDuplicates?: number; statusesMissing?: number; minAcknowledged?: number } = {},
): void {
  const ctx = JSON.stringify({ ...r, inbound: { ...r.inbound, missing: r.inbound.missing.slice(0, 10) } });
  assert.deepEqual(r.inbound.missing, [], `acknowledged customer messages missing at CXone: ${ctx}`);
  assert.deepEqual(r.outbound.missing, [], `acknowledged agent replies missing at WeChat: ${ctx}`);
  assert.equal(r.inbound.duplicates, 0, `a customer message created twice at CXone: ${ctx}`);
  assert.ok(
    r.outbound.duplicates <= (o.wechatDuplicates ?? 0),
    `agent replies sent twice to WeChat: ${r.outbound.duplicates} > ${o.wechatDuplicates ?? 0}: ${ctx}`,
  );
  assert.equal(r.inbound.outOfOrder, 0, `customer messages out of order: ${ctx}`);
  assert.equal(r.outbound.outOfOrder, 0, `agent replies out of order: ${ctx}`);
  assert.deepEqual(r.unexpectedDead, [], `dead letters the far side did not ask for: ${ctx}`);
  assert.ok(
    r.statusesMissing <= (o.statusesMissing ?? 0),
    `delivery statuses never reported: ${r.statusesMissing} > ${o.statusesMissing ?? 0}: ${ctx}`,
  );
  if (o.minAcknowledged !== undefined)
    assert.ok(r.inbound.acknowledged >= o.minAcknowledged, `too few acknowledged: ${ctx}`);
}

export { RoundRobinProxy };
export type { NodeRedProcess };
export { startNodeRed };
