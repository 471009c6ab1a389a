/**
 * cxone-dfo-out in a real Node-RED runtime (node-red-node-test-helper), calling the CXone simulator over real HTTP:
 * customer messages, the duplicate that never becomes a second message, 400/401/429/500 handling, delivery status,
 * typing, attachments by link and by upload, and two integrations side by side.
 */
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { helper, loadFlow, startHelper, stopHelper, type TestRuntime } from '../harness/helper';
import { CxoneSimulator } from '../../sandbox/sim/cxone';

const OPENID = 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o';
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
);

function textMessage(
  messageId: string,
  text = '你好，我想查询订单',
  openid = OPENID,
): Record<string, unknown> {
  return {
    direction: 'inbound',
    channel: 'wechat',
    account: 'gh_0123456789ab',
    conversationId: openid,
    messageId,
    timestamp: 1714552212000,
    from: { id: openid },
    to: { id: 'gh_0123456789ab' },
    type: 'text',
    text,
  };
}

interface Captured {
  ok: any[];
  failed: any[];
  caught: any[];
}

/** Waits until `cond` holds (polling), or fails after `ms`. */
async function until(cond: () => boolean, ms = 8000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('cxone-dfo-out in a Node-RED runtime, against the CXone simulator', function () {
  this.timeout(30_000);
  let sim: CxoneSimulator;
  let rt: TestRuntime | undefined;
  let media: http.Server;
  let mediaUrl = '';
  const mediaHits: string[] = [];

  before(async () => {
    await startHelper();
    media = http.createServer((req, res) => {
      mediaHits.push(req.url ?? '');
      if (req.url === '/missing.jpg') {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'Content-Type': 'image/png', 'Content-Length': String(PNG.length) });
      res.end(PNG);
    });
    await new Promise<void>((r) => media.listen(0, '127.0.0.1', r));
    mediaUrl = `http://127.0.0.1:${(media.address() as AddressInfo).port}`;
  });
  after(async () => {
    await stopHelper();
    media.closeAllConnections();
    await new Promise<void>((r) => media.close(() => r()));
  });
  beforeEach(async () => {
    sim = new CxoneSimulator({ channels: ['chat_1', 'chat_2'] });
    await sim.start();
    mediaHits.length = 0;
  });
  afterEach(async () => {
    await rt?.close();
    rt = undefined;
    await sim.stop();
  });

  async function load(
    outProps: Record<string, unknown> = {},
    extra: { flow?: Record<string, unknown>[]; creds?: Record<string, Record<string, string>> } = {},
  ): Promise<Captured> {
    const s = sim.integration();
    const flow = [
      { id: 'tab', type: 'tab', label: 'out' },
      { id: 'cc', type: 'cxone-dfo-config', name: 'Tenant', authIssuer: s.authIssuer, apiBase: '' },
      {
        id: 'co',
        type: 'cxone-dfo-out',
        z: 'tab',
        cxone: 'cc',
        channelId: 'chat_1',
        wires: [['ok'], ['failed']],
        ...outProps,
      },
      { id: 'ok', type: 'helper', z: 'tab' },
      { id: 'failed', type: 'helper', z: 'tab' },
      { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', type: 'helper', z: 'tab' },
      ...(extra.flow ?? []).map((n) => (n.type === 'cxone-dfo-config' ? n : { z: 'tab', ...n })),
    ];
    rt = await loadFlow(flow, { cc: s.credentials, ...(extra.creds ?? {}) });
    const c: Captured = { ok: [], failed: [], caught: [] };
    rt.getNode('ok').on('input', (m: any) => c.ok.push(m));
    rt.getNode('failed').on('input', (m: any) => c.failed.push(m));
    rt.getNode('caught').on('input', (m: any) => c.caught.push(m));
    return c;
  }

  it('creates the customer message with a stable idOnExternalPlatform and passes every other property through', async () => {
    const c = await load();
    rt!
      .getNode('co')
      .receive({ payload: textMessage('23456789012345678'), topic: 't1', wechat: { MsgId: 'x' } });
    await until(() => c.ok.length === 1, 8000, 'output 1');
    const out = c.ok[0];
    assert.equal(out.topic, 't1');
    assert.deepEqual(out.wechat, { MsgId: 'x' });
    assert.equal(out.delivery.status, 'delivered');
    assert.equal(out.delivery.attempts, 1);
    assert.equal(out.delivery.idOnExternalPlatform, 'wechat:gh_0123456789ab:23456789012345678');
    const m = sim.dfo.findMessage('chat_1', 'wechat:gh_0123456789ab:23456789012345678');
    assert.ok(m);
    assert.equal(out.delivery.messageId, m.id);
    const body = m.body as any;
    assert.equal(body.direction, 'inbound');
    assert.equal(body.createdAtWithMilliseconds, '2024-05-01T08:30:12.000Z');
    assert.equal(body.thread.idOnExternalPlatform, OPENID);
    assert.equal(body.authorEndUserIdentity.idOnExternalPlatform, OPENID);
    assert.deepEqual(body.messageContent, { type: 'TEXT', payload: { text: '你好，我想查询订单' } });
    assert.equal(c.failed.length, 0);
    // The token came from the password grant, the DFO base from discovery.
    assert.equal(sim.dfo.tokenFetches, 1);
    assert.ok(sim.dfo.requests.some((r) => r.path === '/.well-known/cxone-configuration'));
  });

  it('a burst of 200 messages redraws the status a few times, not per message, and ends on the last outcome', async () => {
    const c = await load();
    const statuses = (): any[] =>
      helper._NodePrototype.status
        .getCalls()
        .filter((x: any) => x.thisValue.id === 'co')
        .map((x: any) => x.args[0]);
    const before = statuses().length;
    const t0 = Date.now();
    for (let i = 0; i < 200; i++)
      rt!
        .getNode('co')
        .receive({ payload: textMessage(`burst-${i}`, `hello ${i}`, `${OPENID.slice(0, -3)}${i}`) });
    await until(() => c.ok.length === 200, 20_000, '200 delivered');
    await new Promise((r) => setTimeout(r, 700));
    const drawn = statuses().slice(before);
    const seconds = (Date.now() - t0) / 1000;
    assert.ok(drawn.length <= 2 * Math.ceil(seconds / 0.5) + 2, `${drawn.length} redraws in ${seconds} s`);
    assert.ok(
      drawn.some((s) => s.fill === 'blue' && /status\.sending/.test(s.text)),
      'the queue was shown',
    );
    assert.deepEqual(drawn.at(-1), {
      fill: 'green',
      shape: 'dot',
      text: 'cxone-dfo-out.status.delivered-message',
    });
  });

  it('delivers `concurrency` conversations at once, no more; the default carries 256', async () => {
    let c = await load({ concurrency: 3 });
    // The token first, so that only deliveries are slowed.
    rt!.getNode('co').receive({ payload: textMessage('par-warm') });
    await until(() => c.ok.length === 1);
    sim.dfo.slow(150);
    for (let i = 0; i < 12; i++)
      rt!
        .getNode('co')
        .receive({ payload: textMessage(`par-${i}`, `hello ${i}`, `${OPENID.slice(0, -3)}${i}`) });
    await until(() => c.ok.length === 13, 20_000, '12 delivered');
    assert.equal(sim.dfo.maxInFlight, 3, 'three conversations at once');
    await rt!.close();

    sim.dfo.slow(0);
    sim.dfo.maxInFlight = 0;
    c = await load();
    rt!.getNode('co').receive({ payload: textMessage('par-warm2') });
    await until(() => c.ok.length === 1);
    sim.dfo.slow(400);
    for (let i = 0; i < 300; i++)
      rt!
        .getNode('co')
        .receive({ payload: textMessage(`pard-${i}`, `hi ${i}`, `oPar${String(i).padStart(24, '0')}`) });
    await until(() => c.ok.length === 301, 20_000, '300 delivered');
    assert.ok(
      sim.dfo.maxInFlight > 64 && sim.dfo.maxInFlight <= 256,
      `${sim.dfo.maxInFlight} at once (default 256)`,
    );
    assert.equal(c.failed.length, 0);
  });

  it('closing the flow releases its connections to CXone', async () => {
    const c = await load();
    rt!.getNode('co').receive({ payload: textMessage('close-1') });
    await until(() => c.ok.length === 1);
    assert.ok(sim.dfo.connections > 0, 'keep-alive connections while running');
    await rt!.close();
    rt = undefined;
    await until(() => sim.dfo.connections === 0, 3000, 'connections closed');
  });

  it('the same message twice is one CXone message, also from two nodes (CXone answers 409, counted delivered)', async () => {
    const c = await load(
      {},
      {
        flow: [
          { id: 'co2', type: 'cxone-dfo-out', cxone: 'cc', channelId: 'chat_1', wires: [['ok'], ['failed']] },
        ],
      },
    );
    const co = rt!.getNode('co');
    co.receive({ payload: textMessage('111') });
    co.receive({ payload: textMessage('111') });
    await until(() => c.ok.length === 1);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(c.ok.length, 1, 'the repeat in one node is not sent again');
    rt!.getNode('co2').receive({ payload: textMessage('111') });
    await until(() => c.ok.length === 2);
    assert.equal(c.ok[1].delivery.status, 'delivered');
    assert.equal(c.ok[1].delivery.duplicate, true);
    assert.equal(sim.dfo.messages('chat_1').length, 1);
    assert.equal(sim.dfo.createRequests.filter((r) => r.status === 409).length, 1);
  });

  it('a 400 fails for good on output 2, naming the rejected fields, not retried, and a Catch node sees it', async () => {
    const c = await load();
    sim.dfo.failNext(1, 400, {
      body: { errors: [{ field: 'messageContent.payload.text', message: 'This value is too long.' }] },
      match: /messages$/,
    });
    rt!.getNode('co').receive({ payload: textMessage('400-1'), topic: 'keep' });
    await until(() => c.failed.length === 1);
    const d = c.failed[0].delivery;
    assert.equal(d.status, 'failed');
    assert.equal(d.error.retryable, false);
    assert.equal(d.error.code, 400);
    assert.match(d.error.message, /messageContent\.payload\.text: This value is too long\./);
    assert.deepEqual(d.error.fields, [
      { field: 'messageContent.payload.text', message: 'This value is too long.' },
    ]);
    assert.equal(d.attempts, 1);
    assert.equal(c.failed[0].topic, 'keep');
    await until(() => c.caught.length === 1, 3000, 'catch');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(
      sim.dfo.requests.filter((r) => r.path === '/dfo/3.0/channels/chat_1/messages').length,
      1,
      'never retried',
    );
    assert.equal(c.ok.length, 0);
  });

  it('a 500 is retried and then delivered', async () => {
    const c = await load();
    sim.dfo.failNext(1, 500, { match: /messages$/ });
    rt!.getNode('co').receive({ payload: textMessage('500-1') });
    await until(() => c.ok.length === 1, 8000);
    assert.equal(c.ok[0].delivery.attempts, 2);
    assert.equal(sim.dfo.messages('chat_1').length, 1);
  });

  it('gives up after maxAttempts with the last error on output 2; its figures are on the health endpoint', async () => {
    const c = await load({ maxAttempts: 2 });
    sim.dfo.failNext(5, 503, { match: /messages$/ });
    rt!.getNode('co').receive({ payload: textMessage('503-x') });
    await until(() => c.failed.length === 1, 8000);
    const d = c.failed[0].delivery;
    assert.equal(d.attempts, 2);
    assert.equal(d.error.code, 503);
    assert.equal(d.error.retryable, true);
    assert.match(d.error.message, /503/);
    const h = (await (await fetch(`${rt!.url}/wechat-cxone/health`)).json()) as any;
    const me = h.nodes.find((n: any) => n.id === 'co');
    assert.ok(me, JSON.stringify(h));
    assert.equal(me.figures.outbox.dead, 1);
    assert.equal(me.figures.counters.failed, 1);
    assert.equal(me.figures.token.refreshes, 1);
    assert.ok(!JSON.stringify(h).includes(sim.integration().credentials.accessKeySecret));
  });

  it('a 429 waits for Retry-After before the next try', async () => {
    const c = await load();
    sim.dfo.failNext(1, 429, { retryAfter: 2, match: /messages$/ });
    const t0 = Date.now();
    rt!.getNode('co').receive({ payload: textMessage('429-1') });
    await until(() => c.ok.length === 1, 10_000);
    const tries = sim.dfo.requests.filter((r) => r.path === '/dfo/3.0/channels/chat_1/messages');
    assert.equal(tries.length, 2);
    assert.ok(tries[1].at - tries[0].at >= 1900, `second try after ${tries[1].at - tries[0].at} ms`);
    assert.ok(Date.now() - t0 >= 1900);
    assert.equal(c.ok[0].delivery.attempts, 2);
  });

  it('a 401 gets a fresh token once and the message is delivered', async () => {
    const c = await load();
    const co = rt!.getNode('co');
    co.receive({ payload: textMessage('a1') });
    await until(() => c.ok.length === 1);
    sim.dfo.expireTokens();
    co.receive({ payload: textMessage('a2') });
    await until(() => c.ok.length === 2);
    assert.equal(c.ok[1].delivery.attempts, 1, 'the refresh happens inside one attempt');
    assert.equal(sim.dfo.tokenFetches, 2);
  });

  it('1000 concurrent messages make one token fetch', async function () {
    this.timeout(60_000);
    const c = await load();
    const co = rt!.getNode('co');
    for (let i = 0; i < 1000; i++) co.receive({ payload: textMessage(`bulk-${i}`, 'hi', `o${i % 100}`) });
    await until(() => c.ok.length === 1000, 45_000, '1000 deliveries');
    assert.equal(sim.dfo.tokenFetches, 1);
    assert.equal(sim.dfo.messages('chat_1').length, 1000);
    assert.equal(c.failed.length, 0);
  });

  it('reports an agent reply’s delivery status (delivered, failed with the reason) from wechat-out’s result', async () => {
    const c = await load();
    sim.dfo.recordOutbound('chat_1', OPENID, { idOnExternalPlatform: 'wx-out-1', text: '您好' });
    const co = rt!.getNode('co');
    const reply = {
      direction: 'outbound',
      channel: 'cxone',
      conversationId: OPENID,
      messageId: 'wx-out-1',
      type: 'text',
    };
    co.receive({
      payload: reply,
      cxone: { channelId: 'chat_1', idOnExternalPlatform: 'wx-out-1' },
      delivery: {
        status: 'failed',
        error: {
          code: 45015,
          message: 'WeChat refused the reply: the user has not written in the last 48 hours',
          retryable: false,
        },
      },
    });
    await until(() => c.ok.length === 1);
    assert.equal(c.ok[0].delivery.status, 'delivered');
    assert.equal(c.ok[0].delivery.action, 'status');
    assert.equal(c.ok[0].delivery.reported, 'failed');
    co.receive({
      payload: reply,
      cxone: { channelId: 'chat_1', idOnExternalPlatform: 'wx-out-1' },
      delivery: { status: 'delivered', messageId: 'wx-msg-9' },
    });
    await until(() => c.ok.length === 2);
    const m = sim.dfo.findMessage('chat_1', 'wx-out-1')!;
    assert.deepEqual(
      m.statuses.map((s) => s.status),
      ['failed', 'delivered'],
    );
    assert.match(m.statuses[0].reason!, /48 hours \(45015\)/);
    assert.equal(sim.dfo.messages('chat_1').length, 1, 'no customer message was created');
    // An unknown reply id is a 404: tried a few times (CXone may not have read the box's answer yet), then refused.
    co.receive({
      payload: reply,
      cxone: { channelId: 'chat_1', idOnExternalPlatform: 'wx-out-unknown' },
      delivery: { status: 'delivered' },
    });
    await until(() => c.failed.length === 1);
    assert.equal(c.failed[0].delivery.error.code, 404);
  });

  it('ignores wechat-out’s result for an agent’s typing (nothing to report to CXone), without an error', async () => {
    const c = await load();
    rt!.getNode('co').receive({
      payload: { type: 'typing', typing: true, conversationId: OPENID, channel: 'cxone', messageId: 'x' },
      cxone: { format: 'sender-action', channelId: 'chat_1', threadId: OPENID, action: 'isTypingOn' },
      delivery: { status: 'delivered', attempts: 1 },
    });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(c.ok.length + c.failed.length + c.caught.length, 0);
    assert.equal(sim.dfo.requests.filter((r) => r.path.startsWith('/dfo/3.0/channels')).length, 0);
  });

  it('sends typing on and off as sender actions; msg.action overrides', async () => {
    const c = await load();
    const co = rt!.getNode('co');
    co.receive({ payload: { type: 'typing', typing: true, conversationId: OPENID } });
    await until(() => c.ok.length === 1);
    co.receive({ payload: { type: 'typing', typing: false, conversationId: OPENID }, channelId: 'chat_2' });
    await until(() => c.ok.length === 2);
    co.receive({ action: 'typing', payload: textMessage('not-a-message') });
    await until(() => c.ok.length === 3);
    assert.deepEqual(
      sim.dfo.senderActions.map((a) => [a.channelId, a.threadId, a.action]),
      [
        ['chat_1', OPENID, 'isTypingOn'],
        ['chat_2', OPENID, 'isTypingOff'],
        ['chat_1', OPENID, 'isTypingOn'],
      ],
    );
    assert.equal(sim.dfo.messages().length, 0);
  });

  it('attachments by link: a public URL is passed as it is, and CXone can open it', async () => {
    const c = await load({ attachmentMode: 'link' });
    const msg = {
      ...textMessage('img-1'),
      type: 'image',
      text: undefined,
      attachments: [{ url: `${mediaUrl}/photo.png`, mimeType: 'image/png', name: 'photo.png' }],
    };
    rt!.getNode('co').receive({ payload: msg });
    await until(() => c.ok.length === 1);
    const m = sim.dfo.findMessage('chat_1', 'wechat:gh_0123456789ab:img-1')!;
    assert.equal(m.text, '[image]');
    assert.deepEqual(
      m.attachments.map((a) => [a.friendlyName, a.url]),
      [['photo.png', `${mediaUrl}/photo.png`]],
    );
    assert.deepEqual(m.attachments[0].fetched, { status: 200, bytes: PNG.length, contentType: 'image/png' });
    assert.equal(sim.dfo.uploads.size, 0);
  });

  it('attachments by upload: fetched with limits, uploaded to /attachments/temporary, the returned URL in the message', async () => {
    const c = await load({ attachmentMode: 'upload', allowPrivateNetwork: true });
    const co = rt!.getNode('co');
    co.receive({
      payload: {
        ...textMessage('img-2'),
        type: 'image',
        text: undefined,
        attachments: [
          { url: `${mediaUrl}/photo.png`, mediaId: 'MEDIA1', mimeType: 'image/png', name: 'photo.png' },
        ],
      },
    });
    // Bytes handed over in the msg are uploaded without a fetch.
    co.receive({
      payload: {
        ...textMessage('file-3'),
        type: 'file',
        text: undefined,
        attachments: [{ data: PNG, mimeType: 'image/png', name: 'scan.png' }],
      },
    });
    await until(() => c.ok.length === 2);
    assert.equal(mediaHits.length, 1);
    assert.equal(sim.dfo.uploads.size, 2);
    for (const u of sim.dfo.uploads.values()) {
      assert.deepEqual(u.data, PNG);
      assert.equal(u.mimeType, 'image/png');
    }
    const m2 = sim.dfo.findMessage('chat_1', 'wechat:gh_0123456789ab:img-2')!;
    assert.match(m2.attachments[0].url, /\/files\/temporary\//);
    assert.deepEqual(m2.attachments[0].fetched, { status: 200, bytes: PNG.length, contentType: 'image/png' });
    const m3 = sim.dfo.findMessage('chat_1', 'wechat:gh_0123456789ab:file-3')!;
    assert.equal(m3.text, '[file: scan.png]');
  });

  it('an attachment that cannot be had is left out with a note; private addresses are refused unless allowed', async () => {
    const c = await load({ attachmentMode: 'upload' });
    rt!.getNode('co').receive({
      payload: {
        ...textMessage('img-4'),
        type: 'image',
        text: undefined,
        attachments: [{ url: `${mediaUrl}/photo.png`, name: 'photo.png' }],
      },
    });
    await until(() => c.ok.length === 1);
    assert.equal(mediaHits.length, 0, 'a loopback URL is not fetched by default');
    const m = sim.dfo.findMessage('chat_1', 'wechat:gh_0123456789ab:img-4')!;
    assert.equal(m.attachments.length, 0);
    assert.match(m.text, /^\[image\]\n\[photo\.png could not be forwarded: /);
    assert.equal(c.ok[0].delivery.warnings.length, 1);
  });

  it('forwards the listed events as notes and drops the others without output', async () => {
    const c = await load({ forwardEvents: 'subscribe' });
    const co = rt!.getNode('co');
    const ev = (name: string, id: string, key?: string): Record<string, unknown> => ({
      ...textMessage(id),
      type: 'event',
      text: undefined,
      event: { name, key },
    });
    co.receive({ payload: ev('LOCATION', 'wxevt-1') });
    co.receive({ payload: ev('subscribe', 'wxevt-2', 'qrscene_42') });
    await until(() => c.ok.length === 1);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(c.ok.length, 1);
    const list = sim.dfo.messages('chat_1');
    assert.equal(list.length, 1);
    assert.equal(list[0].text, '[event: the user followed the Official Account by scanning QR code 42]');
    assert.equal(list[0].idOnExternalPlatform, 'wechat:gh_0123456789ab:wxevt-2');
  });

  it('refuses what it cannot send: not a conversation message, no channel; on output 2 and to Catch', async () => {
    const c = await load({ channelId: '' });
    const co = rt!.getNode('co');
    co.receive({ payload: 'hello' });
    co.receive({ payload: { conversationId: OPENID, type: 'text' }, channelId: 'chat_1' });
    co.receive({ payload: textMessage('no-channel') });
    await until(() => c.failed.length === 3);
    await until(() => c.caught.length === 3, 3000, 'catch');
    assert.equal(c.failed[0].delivery.error.code, 'no-channel');
    assert.equal(c.failed[1].delivery.error.code, 'invalid');
    assert.equal(c.failed[2].delivery.error.code, 'no-channel');
    assert.equal(sim.dfo.createRequests.length, 0);
  });

  it('wrong application credentials fail for good in words, and no secret reaches a log, a status or the output', async () => {
    const s = sim.integration();
    const c = await load({}, { creds: { cc: { ...s.credentials, clientSecret: 'WRONG-app-secret-123' } } });
    rt!.getNode('co').receive({ payload: textMessage('auth-1') });
    await until(() => c.failed.length === 1);
    const d = c.failed[0].delivery;
    assert.equal(d.error.code, 'invalid_client');
    assert.equal(d.error.retryable, false);
    assert.match(d.error.message, /Client ID and Client secret/);
    const secrets = ['WRONG-app-secret-123', s.credentials.accessKeySecret, s.credentials.accessKeyId];
    const logs = JSON.stringify(helper.log().args);
    const statuses = JSON.stringify(helper._NodePrototype.status.getCalls().map((x: any) => x.args[0]));
    for (const secret of secrets) {
      assert.ok(!logs.includes(secret), 'not in the log');
      assert.ok(!statuses.includes(secret), 'not in a status');
      assert.ok(!JSON.stringify(c.failed[0]).includes(secret), 'not in the msg');
    }
  });

  it('two integrations side by side keep their own credentials, tokens and caches', async () => {
    await sim.stop();
    sim = new CxoneSimulator({
      channels: ['chat_1', 'chat_2'],
      accessKeys: [
        { id: 'TENANTA====', secret: 'SECRETA====' },
        { id: 'TENANTB====', secret: 'SECRETB====' },
      ],
    });
    await sim.start();
    const s = sim.integration();
    const c = await load(
      { channelId: 'chat_1' },
      {
        flow: [
          { id: 'cc2', type: 'cxone-dfo-config', name: 'B', authIssuer: s.authIssuer, apiBase: '' },
          {
            id: 'co2',
            type: 'cxone-dfo-out',
            cxone: 'cc2',
            channelId: 'chat_2',
            wires: [['ok'], ['failed']],
          },
        ],
        creds: {
          cc: { ...s.credentials, accessKeyId: 'TENANTA====', accessKeySecret: 'SECRETA====' },
          cc2: { ...s.credentials, accessKeyId: 'TENANTB====', accessKeySecret: 'SECRETB====' },
        },
      },
    );
    rt!.getNode('co').receive({ payload: textMessage('side-a') });
    rt!.getNode('co2').receive({ payload: textMessage('side-b') });
    await until(() => c.ok.length === 2);
    const issuedTo = new Map(sim.dfo.tokenRequests.map((r) => [r.issued, r.form.username]));
    assert.equal(sim.dfo.tokenFetches, 2);
    const bearerOf = (channel: string): string | undefined =>
      sim.dfo.requests.find((r) => r.path === `/dfo/3.0/channels/${channel}/messages`)?.bearer;
    assert.equal(issuedTo.get(bearerOf('chat_1')), 'TENANTA====');
    assert.equal(issuedTo.get(bearerOf('chat_2')), 'TENANTB====');
    const a = rt!.getNode('cc').dfo();
    const b = rt!.getNode('cc2').dfo();
    assert.notEqual(a.auth.keyPrefix, b.auth.keyPrefix);
    assert.notEqual(a.http, b.http);
    // A 401 for one does not throw away the other's token.
    sim.dfo.revokeToken((await a.auth.token()).accessToken);
    rt!.getNode('co').receive({ payload: textMessage('side-a2') });
    rt!.getNode('co2').receive({ payload: textMessage('side-b2') });
    await until(() => c.ok.length === 4);
    assert.equal(sim.dfo.tokenFetches, 3);
    assert.deepEqual(sim.dfo.tokenRequests.map((r) => r.form.username).sort(), [
      'TENANTA====',
      'TENANTA====',
      'TENANTB====',
    ]);
  });
});
