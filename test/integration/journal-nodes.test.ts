/**
 * The inbound journal in wechat-in and cxone-dfo-in (node-red-node-test-helper with a user directory, so the
 * default file store; real HTTP from the simulators): the emitted msg carries `msg._wxcx.journal`; a platform's
 * retry is answered and not emitted; a message not handed to an outbox before the runtime went away is emitted
 * again by the next runtime (once), one that an -out node's outbox accepted is not; a store that cannot write
 * means no acknowledgement (WeChat gets 500, CXone 503) so the platform retries.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseRef } from '../../lib/journal';
import { CxoneBoxCaller } from '../../sandbox/sim/cxone/box-caller';
import { WechatPushSimulator } from '../../sandbox/sim/wechat/push';
import { loadFlow, startHelper, stopHelper, type TestRuntime } from '../harness/helper';

const APP_ID = 'wxabb8e5e80f591861';
const ACCOUNT = {
  appId: APP_ID,
  originalId: 'gh_b4f0e22ae50e',
  token: 'journal-token-9f3c',
  encodingAESKey: 'h7ZycbpEh2vNdfkYulfw9pG95HjLYwmrKBFeqIktff6',
  mode: 'safe' as const,
};
const OPENID = 'oJqxQwYRyZMXFTc8sipB5TSe6Vw4';
const CHANNEL = 'chat_journal-test';
const BOX = { clientId: 'box-client', clientSecret: 'box-client-secret-journal' };

const nodes = (
  store: Record<string, unknown> = {},
  outWires: string[] = ['sink'],
): Record<string, unknown>[] => [
  {
    id: 'wc',
    type: 'wechat-config',
    name: 'Acme',
    appId: APP_ID,
    apiBase: 'http://127.0.0.1:9',
    ...store,
  },
  {
    id: 'cc',
    type: 'cxone-dfo-config',
    name: 'Tenant',
    authIssuer: 'http://127.0.0.1:9',
    apiBase: 'http://127.0.0.1:9',
    ...store,
  },
  { id: 'wi', type: 'wechat-in', wechat: 'wc', path: '/wechat/j', wires: [outWires] },
  { id: 'ci', type: 'cxone-dfo-in', cxone: 'cc', path: '/cxone/j', wires: [outWires] },
  { id: 'sink', type: 'helper' },
];
const credentials = {
  wc: { appSecret: 'app-secret-journal', token: ACCOUNT.token, encodingAESKey: ACCOUNT.encodingAESKey },
  cc: {
    boxClientId: BOX.clientId,
    boxClientSecret: BOX.clientSecret,
    jwtSecret: 'jwt-secret-journal-0123456789',
  },
};

function collect(rt: TestRuntime, id = 'sink'): any[] {
  const got: any[] = [];
  rt.getNode(id).on('input', (msg: any) => got.push(msg));
  return got;
}

/** The id the box answered a reply with (legacy: top level; DFO 3.0: under `message`). */
function answeredId(body: unknown): string | undefined {
  const b = body as { idOnExternalPlatform?: string; message?: { idOnExternalPlatform?: string } };
  return b?.message?.idOnExternalPlatform ?? b?.idOnExternalPlatform;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await sleep(20);
  }
}

async function health(rt: TestRuntime, id: string): Promise<any> {
  const h = (await (await fetch(`${rt.url}/wechat-cxone/health`)).json()) as { nodes: any[] };
  return h.nodes.find((n) => n.id === id);
}

describe('the inbound journal in wechat-in and cxone-dfo-in', function () {
  this.timeout(30_000);
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxcx-journal-'));
  let rt: TestRuntime | undefined;
  let push: WechatPushSimulator;
  before(() => startHelper({ userDir }));
  after(async () => {
    await stopHelper();
    fs.rmSync(userDir, { recursive: true, force: true });
  });
  beforeEach(() => {
    push = new WechatPushSimulator({ account: ACCOUNT });
  });
  afterEach(async () => {
    push.close();
    await rt?.close();
    rt = undefined;
  });

  const caller = (r: TestRuntime): CxoneBoxCaller =>
    new CxoneBoxCaller({ boxUrl: `${r.url}/cxone/j`, ...BOX, channelId: CHANNEL, dfo3: true });

  it('journals before answering, emits once with msg._wxcx.journal, and replays what no outbox took after a restart', async () => {
    rt = await loadFlow(nodes(), credentials);
    let got = collect(rt);
    const rec = await push.push(`${rt.url}/wechat/j`, push.text(OPENID, 'journaled push'));
    assert.equal(rec.attempts[0].body, 'success');
    const cx = caller(rt);
    const reply = await cx.sendReply({ threadId: OPENID, text: 'journaled reply', messageId: 'cx-msg-1' });
    assert.equal(reply.status, 200);
    const replyId = answeredId(reply.body);
    await until(() => got.length === 2);

    const pushMsg = got.find((m) => m.wechat);
    const replyMsg = got.find((m) => m.cxone);
    const pushRef = parseRef(pushMsg._wxcx?.journal);
    const replyRef = parseRef(replyMsg._wxcx?.journal);
    assert.equal(pushRef?.name, `wxcx:wechat:${APP_ID}:in:wi`);
    assert.match(pushRef?.id ?? '', /^m[0-9a-f]{40}$/);
    assert.match(replyRef?.name ?? '', /^wxcx:cxone:cfg-cc:in:ci$/);
    assert.equal(replyRef?.id, replyId);

    // The platforms' retries: answered as before, nothing emitted.
    const again = await push.push(`${rt.url}/wechat/j`, rec.xml);
    assert.equal(again.attempts[0].body, 'success');
    const replyAgain = await cx.sendReply({
      threadId: OPENID,
      text: 'journaled reply',
      messageId: 'cx-msg-1',
    });
    assert.equal(answeredId(replyAgain.body), replyId);
    await sleep(200);
    assert.equal(got.length, 2);
    assert.equal((await health(rt, 'wi')).figures.journal.pending, 1);
    assert.equal((await health(rt, 'ci')).figures.counters.duplicates, 1);
    cx.stop();

    // The runtime goes away before any outbox accepted them (the sink never completes the entries) …
    await rt.close();
    rt = await loadFlow(nodes(), credentials);
    got = collect(rt);
    // … and the next one emits both again, with the same references.
    await until(() => got.length === 2);
    assert.deepEqual(got.find((m) => m.wechat)?._wxcx, pushMsg._wxcx);
    assert.equal(got.find((m) => m.wechat)?.payload.text, 'journaled push');
    assert.deepEqual(got.find((m) => m.cxone)?._wxcx, replyMsg._wxcx);
    assert.equal(got.find((m) => m.cxone)?.payload.text, 'journaled reply');
    assert.equal((await health(rt, 'wi')).figures.journal.replayed, 1);
    await sleep(300);
    assert.equal(got.length, 2, 'each replayed once');
  });

  it('an entry an -out node accepted into its outbox is complete: not replayed by the next runtime', async () => {
    // wechat-out accepts the push's msg into its outbox (the API is unreachable: the send stays queued).
    // Other node ids than the first test's: its entries (still pending) are not this test's business.
    const flow = (): Record<string, unknown>[] => [
      ...nodes().filter((n) => n.id === 'wc' || n.id === 'sink'),
      { id: 'wi2', type: 'wechat-in', wechat: 'wc', path: '/wechat/j', wires: [['wo', 'sink']] },
      { id: 'wo', type: 'wechat-out', wechat: 'wc', wires: [[], []] },
    ];
    rt = await loadFlow(flow(), credentials);
    const rec = await push.push(`${rt.url}/wechat/j`, push.text(OPENID, 'into the outbox'));
    assert.equal(rec.attempts[0].body, 'success');
    const t0 = Date.now();
    for (;;) {
      const h = await health(rt, 'wi2');
      if (h.figures.journal.completed === 1) break;
      if (Date.now() - t0 > 5000) assert.fail(`journal not completed: ${JSON.stringify(h.figures.journal)}`);
      await sleep(50);
    }
    assert.equal((await health(rt, 'wi2')).figures.journal.pending, 0);
    await rt.close();
    rt = await loadFlow(flow(), credentials);
    const got = collect(rt);
    await sleep(500);
    assert.equal(got.length, 0);
    assert.equal((await health(rt, 'wi2')).figures.journal.replayed, 0);
  });

  it("an agent reply queued in wechat-out holds its journal entry as the job's record, across a restart", async () => {
    // cxone-dfo-in → wechat-out, the WeChat API unreachable: the send stays queued. Its id is stable (CXone's
    // message id), so the outbox holds the journal entry instead of writing the job (ADR 0018).
    const flow = (): Record<string, unknown>[] => [
      ...nodes().filter((n) => n.id === 'wc' || n.id === 'cc'),
      { id: 'ci3', type: 'cxone-dfo-in', cxone: 'cc', path: '/cxone/j', wires: [['wo3']] },
      { id: 'wo3', type: 'wechat-out', wechat: 'wc', wires: [[], []] },
    ];
    const log = path.join(userDir, 'wechat-cxone', 'default', 'data.log');
    rt = await loadFlow(flow(), credentials);
    const cx = caller(rt);
    const reply = await cx.sendReply({ threadId: OPENID, text: 'held reply', messageId: 'cx-held-1' });
    assert.equal(reply.status, 200);
    cx.stop();
    const t0 = Date.now();
    while ((await health(rt, 'wo3')).figures.outbox.depth !== 1) {
      if (Date.now() - t0 > 5000) assert.fail('the send was not queued');
      await sleep(50);
    }
    await sleep(200);
    const j = (await health(rt, 'ci3')).figures.journal;
    assert.deepEqual([j.pending, j.completed], [1, 0], 'the entry stays open while the job lives');
    const text = fs.readFileSync(log, 'latin1');
    assert.ok(text.includes(':out:wo3:a:'), "the job's attempt state is written");
    assert.ok(!text.includes(':out:wo3:j:'), 'no job record');

    // A restart: the entry is replayed into the flow and held again by the same job id.
    await rt.close();
    rt = await loadFlow(flow(), credentials);
    const t1 = Date.now();
    for (;;) {
      const h = await health(rt, 'ci3');
      const o = await health(rt, 'wo3');
      if (h.figures.journal.replayed === 1 && o.figures.outbox.depth === 1) break;
      if (Date.now() - t1 > 5000) assert.fail(`not replayed: ${JSON.stringify([h.figures, o.figures])}`);
      await sleep(50);
    }
    assert.equal((await health(rt, 'ci3')).figures.journal.pending, 1);
    assert.ok(!fs.readFileSync(log, 'latin1').includes(':out:wo3:j:'), 'still no job record');
  });

  it('a store that cannot write means no acknowledgement: WeChat gets 500, CXone 503, nothing emitted', async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    rt = await loadFlow(nodes({ store: 'redis', redisUrl: `redis://127.0.0.1:${port}` }), credentials);
    const got = collect(rt);
    const rec = await push.push(`${rt.url}/wechat/j`, push.text(OPENID, 'no store'), { retries: 0 });
    assert.equal(rec.attempts[0].status, 500);
    const cx = caller(rt);
    const reply = await cx.sendReply({ threadId: OPENID, text: 'no store', messageId: 'cx-msg-2' });
    assert.equal(reply.status, 503);
    assert.equal(reply.headers['retry-after'], '1');
    cx.stop();
    await sleep(200);
    assert.equal(got.length, 0);
  });
});
