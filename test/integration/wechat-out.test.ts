/**
 * wechat-out in a real Node-RED runtime (node-red-node-test-helper), sending to the WeChat simulator over real
 * HTTP: delivered on output 1, refusals (45015, 45047, 40164, bad input) on output 2 with words an agent
 * understands and a Catch-able error, transient failures retried by the outbox until delivered, media uploaded
 * once, typing, raw bodies, one token for many sends, a passive reply first when wechat-in holds the push, and no
 * secret in any status, error or output.
 */
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { helper, loadFlow, startHelper, stopHelper, type TestRuntime } from '../harness/helper';
import { WechatSimulator } from '../../sandbox/sim/wechat';

const OPENID = 'oyORnuP8q7ou2gfYjqLzSIWZf0rs';
const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(3000, 9)]);

function reply(text: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    direction: 'outbound',
    channel: 'cxone',
    account: 'chat_1',
    conversationId: OPENID,
    messageId: 'reply-' + Math.random().toString(36).slice(2),
    timestamp: Date.now(),
    from: { id: 'agent-7', name: 'Agent' },
    type: 'text',
    text,
    ...over,
  };
}

async function until(cond: () => boolean, ms = 8000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 15));
  }
}

function statusesOf(id: string): any[] {
  return helper._NodePrototype.status
    .getCalls()
    .filter((c: any) => c.thisValue?.id === id)
    .map((c: any) => c.args[0]);
}

function logged(id: string, method: 'error' | 'warn' | 'log'): string[] {
  return helper._NodePrototype[method]
    .getCalls()
    .filter((c: any) => c.thisValue?.id === id)
    .map((c: any) => (typeof c.args[0] === 'string' ? c.args[0] : JSON.stringify(c.args[0])));
}

interface Captured {
  ok: any[];
  failed: any[];
  caught: any[];
}

describe('wechat-out in a Node-RED runtime, against the WeChat simulator', function () {
  this.timeout(30_000);
  let sim: WechatSimulator;
  let rt: TestRuntime | undefined;

  before(() => startHelper());
  after(() => stopHelper());
  beforeEach(async () => {
    sim = new WechatSimulator({ followers: [OPENID] });
    await sim.start();
    sim.userWrote(OPENID);
  });
  afterEach(async () => {
    await rt?.close();
    rt = undefined;
    await sim.stop();
  });

  function flow(
    outProps: Record<string, unknown> = {},
    cfg: Record<string, unknown> = {},
  ): Record<string, unknown>[] {
    return [
      { id: 'tab', type: 'tab', label: 'wechat' },
      { id: 'wc', type: 'wechat-config', name: 'Acme', appId: sim.appId, apiBase: sim.url, ...cfg },
      {
        id: 'wo',
        type: 'wechat-out',
        z: 'tab',
        name: 'to wechat',
        wechat: 'wc',
        wires: [['ok'], ['failed']],
        ...outProps,
      },
      { id: 'ok', type: 'helper', z: 'tab' },
      { id: 'failed', type: 'helper', z: 'tab' },
      { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', type: 'helper', z: 'tab' },
    ];
  }

  async function start(
    outProps: Record<string, unknown> = {},
    secret = sim.appSecret,
    cfg: Record<string, unknown> = {},
  ): Promise<Captured> {
    rt = await loadFlow(flow(outProps, cfg), { wc: { appSecret: secret } });
    const c: Captured = { ok: [], failed: [], caught: [] };
    rt.getNode('ok').on('input', (m: any) => c.ok.push(m));
    rt.getNode('failed').on('input', (m: any) => c.failed.push(m));
    rt.getNode('caught').on('input', (m: any) => c.caught.push(m));
    return c;
  }

  it('delivers an agent reply on output 1 with msg.delivery, passing msg.cxone and other properties through', async () => {
    const c = await start();
    const cxone = { channelId: 'chat_1', idOnExternalPlatform: 'ext-1', threadId: OPENID };
    rt!.getNode('wo').receive({ payload: reply('您好，订单已发货'), cxone, topic: 'T' });
    await until(() => c.ok.length === 1, 8000, 'delivery');
    const m = c.ok[0];
    assert.deepEqual(m.delivery, { status: 'delivered', attempts: 1 });
    assert.deepEqual(m.cxone, cxone);
    assert.equal(m.topic, 'T');
    assert.deepEqual(sim.api.sentTo(OPENID), [
      { touser: OPENID, msgtype: 'text', text: { content: '您好，订单已发货' } },
    ]);
    assert.equal(statusesOf('wo').at(-1).fill, 'green');
    assert.equal(c.failed.length, 0);
  });

  it('a burst of 100 replies redraws the status a few times a second, not per message, and ends on "delivered"', async () => {
    const c = await start();
    const users = Array.from(
      { length: 20 },
      (_, i) => `oyORnuP8q7ou2gfYjqLzSIWZf${String(i).padStart(3, '0')}`,
    );
    for (const u of users) sim.userWrote(u);
    const before = statusesOf('wo').length;
    const t0 = Date.now();
    for (let i = 0; i < 100; i++)
      rt!
        .getNode('wo')
        .receive({ payload: reply(`reply ${i}`, { conversationId: users[i % users.length] }) });
    await until(() => c.ok.length === 100, 20_000, '100 delivered');
    await new Promise((r) => setTimeout(r, 600));
    const drawn = statusesOf('wo').slice(before);
    const seconds = (Date.now() - t0) / 1000;
    assert.ok(drawn.length <= 6 * Math.ceil(seconds) + 2, `${drawn.length} redraws in ${seconds} s`);
    assert.ok(
      drawn.some((s) => s.fill === 'blue'),
      'the queue was shown',
    );
    assert.equal(drawn.at(-1).fill, 'green');
    assert.equal(drawn.at(-1).text, 'wechat-out.status.delivered');
    assert.equal(c.failed.length, 0);
  });

  it('delivers `concurrency` conversations at once, no more; the default carries 256', async () => {
    const users = Array.from(
      { length: 300 },
      (_, i) => `oyORnuP8q7ou2gfYjqLzSIW${String(i).padStart(5, '0')}`,
    );
    for (const u of users) sim.userWrote(u);
    let c = await start({ concurrency: 4 });
    sim.api.inject({ kind: 'delay', delayMs: 150, count: 20, path: '/cgi-bin/message/custom/send' });
    for (let i = 0; i < 20; i++)
      rt!.getNode('wo').receive({ payload: reply(`reply ${i}`, { conversationId: users[i] }) });
    await until(() => c.ok.length === 20, 20_000, '20 delivered');
    assert.equal(sim.api.maxDelayed, 4, 'four conversations at once');
    await rt!.close();

    sim.api.maxDelayed = 0;
    c = await start();
    sim.api.inject({ kind: 'delay', delayMs: 400, count: 300, path: '/cgi-bin/message/custom/send' });
    for (const u of users) rt!.getNode('wo').receive({ payload: reply('hello', { conversationId: u }) });
    await until(() => c.ok.length === 300, 20_000, '300 delivered');
    assert.ok(
      sim.api.maxDelayed > 64 && sim.api.maxDelayed <= 256,
      `${sim.api.maxDelayed} at once (default 256)`,
    );
    assert.equal(c.failed.length, 0);
  });

  it('45015 (no message in 48 hours): output 2, words an agent understands, retryable false, Catch-able, yellow status', async () => {
    const c = await start();
    const stranger = 'oStranger0000000000000000000';
    sim.api.onUserEvent(stranger, 'subscribe');
    sim.api.advance(120_000);
    rt!.getNode('wo').receive({
      payload: reply('hello?', { conversationId: stranger }),
      cxone: { idOnExternalPlatform: 'x' },
    });
    await until(() => c.failed.length === 1 && c.caught.length === 1, 8000, 'failure');
    const d = c.failed[0].delivery;
    assert.equal(d.status, 'failed');
    assert.equal(d.error.code, 45015);
    assert.equal(d.error.retryable, false);
    assert.match(
      d.error.message,
      /^WeChat refused the message: the customer has not written in the last 48 hours/,
    );
    assert.equal(d.attempts, 1);
    assert.deepEqual(c.failed[0].cxone, { idOnExternalPlatform: 'x' });
    assert.match(c.caught[0].error.message, /48 hours/);
    const st = statusesOf('wo').at(-1);
    assert.equal(st.fill, 'yellow');
    assert.equal(st.text, 'wechat-out.status.user-unreachable');
    assert.equal(sim.api.callsTo('/cgi-bin/message/custom/send').length, 1, 'not retried');
  });

  it('45047 (five replies used up): the sixth reply fails on output 2, not retried', async () => {
    const c = await start();
    for (let i = 1; i <= 6; i++) rt!.getNode('wo').receive({ payload: reply(`reply ${i}`) });
    await until(() => c.ok.length + c.failed.length === 6, 10_000, 'six results');
    assert.equal(c.ok.length, 5);
    assert.equal(c.failed.length, 1);
    const d = c.failed[0].delivery;
    assert.equal(d.error.code, 45047);
    assert.equal(d.error.retryable, false);
    assert.match(d.error.message, /five replies allowed per customer message are used up/);
    assert.equal(c.failed[0].payload.text, 'reply 6', 'in order: the sixth is the one refused');
    assert.equal(c.caught.length, 1);
  });

  it('retries WeChat busy (-1) and HTTP 500 through the outbox until delivered', async () => {
    const c = await start();
    // More failures than the client's own retries (3 tries per attempt): the outbox must try again later.
    sim.api.inject({ kind: 'busy', count: 3, path: '/cgi-bin/message/custom/send' });
    sim.api.inject({ kind: 'status', status: 500, count: 2, path: '/cgi-bin/message/custom/send' });
    rt!.getNode('wo').receive({ payload: reply('eventually') });
    await until(() => c.ok.length === 1, 15_000, 'delivery after retries');
    assert.equal(c.ok[0].delivery.status, 'delivered');
    assert.equal(c.ok[0].delivery.attempts, 2);
    assert.deepEqual(
      sim.api.callsTo('/cgi-bin/message/custom/send').map((x) => x.errcode ?? x.status),
      [-1, -1, -1, 500, 500, 0],
    );
    assert.ok(statusesOf('wo').some((s) => s.fill === 'yellow' && s.text === 'wechat-out.status.retrying'));
    assert.equal(c.failed.length, 0);
    assert.equal(sim.api.sentTo(OPENID).length, 1, 'sent exactly once');
  });

  it('dead-letters a message WeChat keeps failing after maxAttempts, on output 2 with the last error', async () => {
    const c = await start({ maxAttempts: 2 });
    sim.api.inject({ kind: 'status', status: 502, count: 100, path: '/cgi-bin/message/custom/send' });
    rt!.getNode('wo').receive({ payload: reply('never'), cxone: { idOnExternalPlatform: 'ext-9' } });
    await until(() => c.failed.length === 1, 15_000, 'dead letter');
    const d = c.failed[0].delivery;
    assert.equal(d.status, 'failed');
    assert.equal(d.attempts, 2);
    assert.equal(d.error.code, 502);
    assert.equal(d.error.message, 'wechat-out.errors.gave-up');
    assert.deepEqual(c.failed[0].cxone, { idOnExternalPlatform: 'ext-9' });
    assert.equal(c.caught.length, 1);
    sim.api.clearInjections();
  });

  it('uploads an attachment once: two replies with the same image URL make one upload', async () => {
    const files = http.createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'image/jpeg' });
      res.end(JPEG);
    });
    await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(files.address() as AddressInfo).port}/photo.jpg`;
    try {
      // The file is on loopback over http: allowed by the config's "Local URLs" (refused by default).
      const c = await start({}, sim.appSecret, { allowPrivateNetwork: true });
      const att = [{ url, name: 'photo.jpg', mimeType: 'image/jpeg' }];
      rt!.getNode('wo').receive({ payload: reply('first', { attachments: att }) });
      rt!.getNode('wo').receive({ payload: reply('', { type: 'image', attachments: att }) });
      await until(() => c.ok.length === 2, 8000, 'two deliveries');
      assert.equal(sim.api.uploads, 1);
      assert.deepEqual(
        sim.api.sentTo(OPENID).map((b) => b.msgtype),
        ['text', 'image', 'image'],
      );
    } finally {
      files.closeAllConnections();
      await new Promise<void>((r) => files.close(() => r()));
    }
  });

  it('sends a raw msgmenu from msg.wechatMessage and a template from msg.payload.wechat', async () => {
    sim.api.addTemplate('TPL_ORDER');
    const c = await start();
    const menu = {
      msgtype: 'msgmenu',
      msgmenu: { head_content: 'Satisfied?', list: [{ id: '101', content: 'Yes' }], tail_content: '' },
    };
    rt!.getNode('wo').receive({ payload: reply(''), wechatMessage: menu });
    rt!
      .getNode('wo')
      .receive({ payload: reply('', { wechat: { template_id: 'TPL_ORDER', data: { k: { value: 'v' } } } }) });
    await until(() => c.ok.length === 2, 8000, 'two deliveries');
    assert.equal(sim.api.sentTo(OPENID)[0].msgtype, 'msgmenu');
    assert.equal(sim.api.templates.length, 1);
    assert.match(c.ok[1].delivery.messageId, /^\d{19}$/);
  });

  it('turns typing on through custom/typing', async () => {
    const c = await start();
    rt!.getNode('wo').receive({ payload: reply('', { type: 'typing', typing: true }) });
    await until(() => c.ok.length === 1, 8000, 'typing');
    assert.deepEqual(
      sim.api.typing.map((t) => [t.touser, t.command]),
      [[OPENID, 'Typing']],
    );
  });

  it('does not raise an error when WeChat refuses typing (no exchange in 30 s), but reports it on output 2', async () => {
    const c = await start();
    sim.api.advance(60_000);
    rt!.getNode('wo').receive({ payload: reply('', { type: 'typing', typing: true }) });
    await until(() => c.failed.length === 1, 8000, 'typing refusal');
    assert.equal(c.failed[0].delivery.error.code, 45080);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(c.caught.length, 0);
  });

  it('refuses a message without an openid on output 2 and through done(err), sending nothing', async () => {
    const c = await start();
    rt!.getNode('wo').receive({ payload: reply('x', { conversationId: '' }) });
    await until(() => c.failed.length === 1 && c.caught.length === 1, 5000, 'refusal');
    assert.equal(c.failed[0].delivery.error.code, 'no-recipient');
    assert.equal(c.failed[0].delivery.attempts, 0);
    assert.match(c.caught[0].error.message, /wechat-out\.errors\.bad-message$/);
    assert.equal(sim.api.callsTo('/cgi-bin/message/custom/send').length, 0);
  });

  it('sends an agent reply that arrives twice only once', async () => {
    const c = await start();
    const p = reply('only once');
    rt!.getNode('wo').receive({ payload: p });
    rt!.getNode('wo').receive({ payload: { ...p } });
    await until(() => c.ok.length === 1, 8000, 'delivery');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(sim.api.sentTo(OPENID).length, 1);
    assert.ok(logged('wo', 'warn').includes('wechat-out.warn.duplicate'));
  });

  it('fetches one token for 300 replies to 300 users', async () => {
    const c = await start();
    const users = Array.from({ length: 300 }, (_, i) => `oMany${String(i).padStart(23, '0')}`);
    for (const u of users) sim.userWrote(u);
    for (const u of users) rt!.getNode('wo').receive({ payload: reply('hi', { conversationId: u }) });
    await until(() => c.ok.length === 300, 20_000, '300 deliveries');
    assert.equal(sim.api.fetches.stable, 1);
    assert.equal(c.failed.length, 0);
  });

  it('fails with the IP-whitelist words (40164) and never shows the AppSecret or the token anywhere', async () => {
    sim.api.setIpWhitelisted(false);
    const c = await start();
    rt!.getNode('wo').receive({ payload: reply('x') });
    await until(() => c.failed.length === 1, 8000, 'failure');
    const d = c.failed[0].delivery;
    assert.equal(d.error.code, 40164);
    assert.match(d.error.message, /IP is not on the account's IP whitelist/);
    sim.api.setIpWhitelisted(true);
    await new Promise((r) => setTimeout(r, 3100)); // a configuration failure is held 3 s before asking again
    rt!.getNode('wo').receive({ payload: reply('y') });
    await until(() => c.ok.length === 1, 15_000, 'delivery after whitelisting');
    const token = sim.api.currentStableToken!;
    const everything = JSON.stringify([
      statusesOf('wo'),
      statusesOf('wc'),
      logged('wo', 'error'),
      logged('wo', 'warn'),
      logged('wc', 'error'),
      logged('wc', 'warn'),
      c.failed.map((m) => m.delivery),
      c.ok.map((m) => m.delivery),
      c.caught.map((m) => m.error),
    ]);
    assert.ok(!everything.includes(sim.appSecret), 'no AppSecret');
    assert.ok(!everything.includes(token), 'no access token');
    assert.ok(!everything.includes('access_token'), 'no URL with a token');
  });

  it('shows its outbox and the account token on the health endpoint, without the token itself', async () => {
    const c = await start();
    rt!.getNode('wo').receive({ payload: reply('counted') });
    await until(() => c.ok.length === 1, 8000, 'delivery');
    const res = await helper.request().get('/wechat-cxone/health');
    assert.equal(res.status, 200);
    const nodes: any[] = res.body.nodes;
    const wo = nodes.find((n) => n.id === 'wo');
    const wc = nodes.find((n) => n.id === 'wc');
    assert.equal(wo.figures.outbox.delivered, 1);
    assert.equal(wo.figures.counters.delivered, 1);
    assert.equal(wc.figures.token.refreshes, 1);
    assert.ok(wc.figures.token.expiresInMs > 7_000_000);
    assert.ok(!res.text.includes(sim.api.currentStableToken!));
    assert.ok(!res.text.includes(sim.appSecret));
  });

  it('without an account configured: red status, and every message fails Catch-ably', async () => {
    rt = await loadFlow(
      [
        { id: 'tab', type: 'tab', label: 'wechat' },
        { id: 'wo', type: 'wechat-out', z: 'tab', wires: [[], []] },
        { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
        { id: 'caught', type: 'helper', z: 'tab' },
      ],
      {},
    );
    const caught: any[] = [];
    rt.getNode('caught').on('input', (m: any) => caught.push(m));
    assert.equal(statusesOf('wo').at(-1).fill, 'red');
    rt.getNode('wo').receive({ payload: reply('x') });
    await until(() => caught.length === 1, 3000, 'error');
    assert.match(caught[0].error.message, /wechat-out\.errors\.no-config$/);
  });

  it('answers with a passive reply first when wechat-in holds the push (no customer-service call)', async () => {
    const acct = sim.account();
    rt = await loadFlow(
      [
        { id: 'wc', type: 'wechat-config', appId: acct.appId, apiBase: acct.apiBase },
        {
          id: 'wi',
          type: 'wechat-in',
          wechat: 'wc',
          path: '/wechat/webhook',
          replyTimeout: 3000,
          wires: [['wo']],
        },
        { id: 'wo', type: 'wechat-out', wechat: 'wc', wires: [['ok'], ['failed']] },
        { id: 'ok', type: 'helper' },
        { id: 'failed', type: 'helper' },
      ],
      { wc: acct.credentials },
    );
    const ok: any[] = [];
    rt.getNode('ok').on('input', (m: any) => ok.push(m));
    const echo = 'echo 回声';
    const rec = await sim.push.push(
      `${rt.url}/wechat/webhook`,
      sim.push.text('oPassive00000000000000000000', echo),
    );
    assert.deepEqual(rec.problems, []);
    assert.equal(rec.reply?.fields.MsgType, 'text');
    assert.equal(rec.reply?.fields.Content, echo);
    await until(() => ok.length === 1, 3000, 'delivered');
    assert.equal(ok[0].delivery.status, 'delivered');
    assert.equal(sim.api.callsTo('/cgi-bin/message/custom/send').length, 0);
    assert.equal(sim.api.fetches.stable, 0, 'no token needed');
  });
});
