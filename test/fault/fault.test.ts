/**
 * The fault-injection suite (issue 6; plan in test/fault/README.md): real red.js processes running the bridge,
 * the WeChat and CXone simulators as the far sides, a round-robin proxy as the load balancer, real Redis for the
 * two-instance case. Each scenario streams messages both ways while something breaks, then asserts: every
 * acknowledged message reached the far side, none twice (CXone by idOnExternalPlatform, WeChat by send), in order
 * per conversation, dead letters only where the far side refused for good. The counts are printed.
 *
 * Size: full on the Node-RED 4.1 pass, 0.4 on the Node-RED 5 pass (WXCX_FAULT_SCALE overrides); the whole suite
 * is bounded to a few minutes.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { DEFAULT_POLICY } from '../../lib/outbox/backoff';
import { cleanup, REDIS_URL, uniquePrefix } from '../integration/store-redis-helpers';
import {
  assertReport,
  attachBox,
  baseline,
  bridgeFlow,
  CXONE_CREATE,
  deliveries,
  cxone429,
  cxone500,
  drain,
  Ledger,
  openidOf,
  printReport,
  pushStream,
  repliesInFlight,
  replyStream,
  report,
  RoundRobinProxy,
  scaled,
  SCALE,
  sleep,
  startBridge,
  startFar,
  stopFar,
  type Far,
  WECHAT_SEND,
  wechatBusy,
  type NodeRedProcess,
} from './rig';

/** A gap between messages for a stream whose size is `scaled`: as long as it is at full size (scale ≤ 1). */
const paced = (ms: number): number => Math.round(ms / Math.min(1, SCALE));

describe('fault injection (real processes; counts printed)', function () {
  this.timeout(600_000);

  describe('one Node-RED on the file store', function () {
    let far: Far;
    let nr: NodeRedProcess;
    let proxy: RoundRobinProxy;
    const processes: NodeRedProcess[] = [];

    before(async function () {
      this.timeout(60_000);
      // Users of S3 who follow the account but never wrote: WeChat refuses replies to them for good (45015).
      far = await startFar([1, 2, 3].map((i) => openidOf('S3', `mute${i}`)));
      nr = await startBridge(far, { store: 'file' });
      processes.push(nr);
      proxy = new RoundRobinProxy([nr.port]);
      await proxy.start();
      attachBox(far, proxy.url);
    });
    after(async function () {
      await proxy?.stop();
      for (const p of processes) {
        await p.stop();
        fs.rmSync(p.userDir, { recursive: true, force: true });
      }
      await stopFar(far);
    });

    it('CXone down for 10 s, then back: pushes stay acknowledged, the outbox drains, nothing lost or doubled', async function () {
      const ledger = new Ledger('S1');
      const startedAt = Date.now();
      const base = await baseline(far, [nr]);
      let downAt = 0;
      await pushStream(far, proxy.url, ledger, {
        convs: 20,
        perConv: scaled(40),
        gapMs: 250,
        onPush: (count) => {
          if (count === 60) {
            downAt = Date.now();
            far.cx.dfo.down(10_000);
          }
        },
      });
      await drain(far, [nr], ledger, 60_000);
      const r = await report('CXone down for 10 s, then back', far, [nr], ledger, { startedAt, base });
      printReport(r);
      assertReport(r);
      if (!downAt) throw new Error('the outage was never injected');
      if (r.retries === 0) throw new Error('no retries: the outage did not bite');
    });

    it('bursts of 429 (Retry-After) and 500 from CXone, and refusals for good (400) dead-lettered with their reason', async function () {
      const ledger = new Ledger('S2');
      const startedAt = Date.now();
      const base = await baseline(far, [nr]);
      const refusals = 5;
      await pushStream(far, proxy.url, ledger, {
        convs: 25,
        perConv: scaled(32),
        gapMs: 100,
        onPush: (count) => {
          // Every ~1.5 s of stream: 1.5 s of 429 (Retry-After: 1) or of 500, alternately.
          if (count % 400 === 50) cxone429(far, 1500);
          if (count % 400 === 250) cxone500(far, 1500);
          if (count === 150)
            far.cxFaults.refuse(refusals, {
              match: CXONE_CREATE,
              status: 400,
              body: { errors: [{ field: 'messageContent', message: 'fault suite: refused for good' }] },
            });
        },
      });
      await drain(far, [nr], ledger, 90_000);
      const r = await report('CXone 429/500 bursts, 400 refusals', far, [nr], ledger, {
        startedAt,
        base,
        injected: { action: 'message', code: '400', count: far.cxFaults.refusalsGiven },
      });
      printReport(r);
      assertReport(r);
    });

    it('bursts of errcode -1 (system busy) from WeChat; replies to users who never wrote are refused for good (45015)', async function () {
      const ledger = new Ledger('S3');
      const startedAt = Date.now();
      const base = await baseline(far, [nr]);
      await replyStream(far, proxy.url, ledger, {
        convs: scaled(120),
        perConv: 5,
        gapMs: 50,
        neverWrote: 3,
        onReply: (count) => {
          if (count % 150 === 10) wechatBusy(far, 1500);
        },
      });
      await drain(far, [nr], ledger, 90_000);
      const r = await report('WeChat -1 bursts', far, [nr], ledger, { startedAt, base });
      printReport(r);
      assertReport(r);
      if (!r.dead['send:45015'])
        throw new Error('the replies to users who never wrote were not dead-lettered');
    });

    it('every WeChat push delivered four times at once: each message emitted and created once', async function () {
      const ledger = new Ledger('S4');
      const startedAt = Date.now();
      const base = await baseline(far, [nr]);
      const before = far.cx.dfo.createRequests.length;
      await pushStream(far, proxy.url, ledger, { convs: 25, perConv: scaled(32), copies: 4 });
      await drain(far, [nr], ledger, 60_000);
      const r = await report('every push four times, concurrently', far, [nr], ledger, {
        startedAt,
        base,
      });
      printReport(r);
      assertReport(r);
      // The copies never got past wechat-in's journal: CXone saw one create per message, not even a repeat.
      const creates = far.cx.dfo.createRequests
        .slice(before)
        .filter((c) => c.status === 200 || c.status === 409);
      if (r.cxoneRepeats !== 0) throw new Error(`${r.cxoneRepeats} repeated creates reached CXone`);
      if (creates.length !== r.inbound.delivered) throw new Error('creates and deliveries differ');
    });

    it('SIGKILL in the middle of a stream, restart on the same user directory: journal replays, outbox reloads', async function () {
      const ledger = new Ledger('S5');
      const startedAt = Date.now();
      const base = await baseline(far, [nr]);
      const killAt: number[] = [];
      const atKill = { pushes: 0, replies: 0 };
      const killAndRestart = async (): Promise<void> => {
        killAt.push(Date.now());
        atKill.pushes = ledger.pushes.length;
        atKill.replies = ledger.replies.length;
        await nr.stop('SIGKILL');
        // The same user directory: file store, flows and credentials as they were.
        const next = await startBridge(far, { store: 'file' }, nr.userDir);
        processes.push(next);
        nr = next;
        proxy.setBackends([nr.port]);
      };
      // Both streams run for about 5 s; the kill comes 2 s in, in the middle of both.
      const restart = sleep(2000).then(killAndRestart);
      const perConv = scaled(50);
      const convs = scaled(60);
      await Promise.all([
        // The gap grows as the stream shrinks (scale < 1), so the stream lasts about 4 s at every scale.
        pushStream(far, proxy.url, ledger, { convs: 20, perConv, gapMs: paced(80), retryDelayMs: 2000 }),
        // 4 replies per user: a reply repeated after the kill (see below) must not use up WeChat's 5-reply quota.
        replyStream(far, proxy.url, ledger, { convs, perConv: 4, gapMs: 900 }),
      ]);
      await restart;
      await drain(far, [nr], ledger, 90_000);
      const r = await report('SIGKILL mid-stream and restart', far, processes, ledger, {
        startedAt,
        base,
        killAt,
      });
      printReport(r);
      console.log(
        `  (the kill came after ${atKill.pushes} of ${20 * perConv + convs} pushes and ${atKill.replies} of ${convs * 4} replies)`,
      );
      // A WeChat send in flight at the kill may be repeated (no idempotency key; ADR 0006): at most the outbox's
      // concurrency (256 by default) per kill. Likewise a delivery status between wechat-out and cxone-dfo-out's outbox.
      assertReport(r, {
        wechatDuplicates: DEFAULT_POLICY.concurrency,
        statusesMissing: DEFAULT_POLICY.concurrency,
      });
      if (killAt.length !== 1) throw new Error('the kill was never injected');
      if (
        !(atKill.pushes > 0 && atKill.pushes < 20 * perConv) ||
        !(atKill.replies > 0 && atKill.replies < convs * 4)
      )
        throw new Error(`the kill was not in the middle of both streams: ${JSON.stringify(atKill)}`);
      if (r.tokenFetches.wechat !== 1 || r.tokenFetches.cxone !== 1)
        throw new Error(`tokens fetched again after the restart: ${JSON.stringify(r.tokenFetches)}`);
    });
  });

  describe('two Node-RED instances on one Redis behind a round-robin proxy', function () {
    let far: Far;
    let a: NodeRedProcess;
    let b: NodeRedProcess;
    let proxy: RoundRobinProxy;
    const prefix = uniquePrefix('fault');

    before(async function () {
      this.timeout(60_000);
      far = await startFar();
      const store = { store: 'redis' as const, redisUrl: REDIS_URL, keyPrefix: prefix };
      bridgeFlow(far, store);
      [a, b] = await Promise.all([startBridge(far, store), startBridge(far, store)]);
      proxy = new RoundRobinProxy([a.port, b.port]);
      await proxy.start();
      attachBox(far, proxy.url);
    });
    after(async function () {
      await proxy?.stop();
      for (const p of [a, b]) {
        if (!p) continue;
        await p.stop();
        fs.rmSync(p.userDir, { recursive: true, force: true });
      }
      await stopFar(far);
      await cleanup(prefix);
    });

    it('duplicate pushes on both instances emitted once, one token each side, the queue drained once, one instance killed', async function () {
      const ledger = new Ledger('S6');
      const startedAt = Date.now();
      const base = await baseline(far, [a, b]);
      const killAt: number[] = [];
      const atKill = { pushes: 0, replies: 0 };
      // Both streams run for about 6 s; instance A is killed 2.5 s in and not restarted. The proxy is not told:
      // like a balancer, it moves a connection A refuses to B.
      // From 2 s in, both far sides answer 3 s late for a while: when A dies it has calls in flight and holds
      // the leases of their conversations, which B must take over once they expire (30 s).
      const slowDown = sleep(2000).then(() => {
        far.cxFaults.slow(4000, 3000, CXONE_CREATE);
        far.wxFaults.slow(4000, 3000, WECHAT_SEND);
      });
      let deadAt = 0;
      const kill = sleep(2500).then(async () => {
        killAt.push(Date.now());
        atKill.pushes = ledger.pushes.length;
        atKill.replies = ledger.replies.length;
        await a.stop('SIGKILL');
        deadAt = Date.now();
      });
      const perConv = scaled(40);
      const convs = scaled(40);
      await Promise.all([
        pushStream(far, proxy.url, ledger, { convs: 20, perConv, gapMs: paced(120), copies: 2 }),
        replyStream(far, proxy.url, ledger, { convs, perConv: 4, gapMs: 1200 }),
      ]);
      await Promise.all([slowDown, kill]);
      // The dead instance's conversations wait for its leases (30 s) and its journal entries for its heartbeat
      // to lapse (20 s) and the next sweep (15 s).
      await drain(far, [b], ledger, 120_000);
      await sleep(500);
      const r = await report('two instances on one Redis, one killed', far, [a, b], ledger, {
        startedAt,
        killAt,
        base,
      });
      printReport(r);
      const late = deliveries(far, ledger);
      const takenOver = [...late.inbound, ...late.outbound].filter((x) => x.at - killAt[0] > 25_000).length;
      console.log(
        `  (messages delivered more than 25 s after the kill, i.e. after B took over A's leases: ${takenOver})`,
      );
      console.log(
        `  (A was killed after ${atKill.pushes} of ${20 * perConv + convs} pushes and ${atKill.replies} of ${convs * 4} ` +
          `replies; connections A refused afterwards, moved to B by the proxy: ${proxy.refused})`,
      );
      // Replies may go twice only if they were in flight at the kill (at least once, ADR 0006); how many were
      // depends on the machine's speed (a fixed bound of 16 failed once in CI, with 23).
      const inFlight = repliesInFlight(far, ledger, killAt[0], deadAt);
      console.log(`  (agent replies in flight to WeChat at the kill: ${inFlight.size})`);
      const unexplained = r.outbound.duplicated.filter((m) => !inFlight.has(m));
      assert.deepEqual(unexplained, [], 'agent replies sent twice that were not in flight at the kill');
      assertReport(r, { wechatDuplicates: inFlight.size, statusesMissing: 16 });
      if (
        !(atKill.pushes > 0 && atKill.pushes < 20 * perConv) ||
        !(atKill.replies > 0 && atKill.replies < convs * 4)
      )
        throw new Error(`the kill was not in the middle of both streams: ${JSON.stringify(atKill)}`);
      if (takenOver === 0) throw new Error('A held no conversation when it died: nothing was taken over');
      if (r.tokenFetches.wechat !== 1 || r.tokenFetches.cxone !== 1)
        throw new Error(`the instances did not share one token: ${JSON.stringify(r.tokenFetches)}`);
    });
  });
});
