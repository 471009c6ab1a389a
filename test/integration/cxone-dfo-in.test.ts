/**
 * cxone-dfo-in in a real Node-RED runtime (node-red-node-test-helper, its httpNode served on loopback), called by
 * the CXone simulator's box caller over real HTTP: the token dance, both reply formats, typing, validation,
 * dedupe through the config node's store, status, secrets kept out of logs, and release on close.
 */
import * as assert from 'node:assert/strict';
import { CxoneBoxCaller } from '../../sandbox/sim/cxone/box-caller';
import { fixture } from '../harness/paths';
import { helper, loadFlow, startHelper, stopHelper, type TestRuntime } from '../harness/helper';

const creds = JSON.parse(fixture('cxone', 'box-token-request.json')) as Record<string, string>;
const OPENID = 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o';
const CHANNEL = 'chat_5d1ed0c1-8bbd-4c4b-8f0f-6f1f3bd6d1a1';
const JWT_SECRET = 'jwt-signing-secret-for-tests-0123456789';

const flow = (path = '/integration/box'): Record<string, unknown>[] => [
  {
    id: 'cc',
    type: 'cxone-dfo-config',
    name: 'Tenant',
    authIssuer: 'https://cxone.niceincontact.com',
    apiBase: '',
  },
  { id: 'ci', type: 'cxone-dfo-in', name: 'box', cxone: 'cc', path, wires: [['out']] },
  { id: 'out', type: 'helper' },
];
const credentials = {
  cc: {
    clientId: 'app-id',
    clientSecret: 'app-secret-value',
    accessKeyId: 'AKID====',
    accessKeySecret: 'access-key-secret-value',
    boxClientId: creds.client_id,
    boxClientSecret: creds.client_secret,
    jwtSecret: JWT_SECRET,
  },
};

function statusesOf(id: string): any[] {
  return helper._NodePrototype.status
    .getCalls()
    .filter((c: any) => c.thisValue?.id === id)
    .map((c: any) => c.args[0]);
}

/** Collects what the helper node receives. */
function collect(rt: TestRuntime): any[] {
  const got: any[] = [];
  rt.getNode('out').on('input', (msg: any) => got.push(msg));
  return got;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('cxone-dfo-in in a Node-RED runtime', function () {
  this.timeout(30_000);
  // Nodes see the log at debug level, so what they would write there is checked too.
  before(() => startHelper({ logging: { console: { level: 'debug' } } }));
  after(() => stopHelper());
  let rt: TestRuntime | undefined;
  let cx: CxoneBoxCaller | undefined;
  afterEach(async () => {
    cx?.stop();
    cx = undefined;
    await rt?.close();
    rt = undefined;
  });

  const caller = (rt: TestRuntime, dfo3 = false): CxoneBoxCaller =>
    new CxoneBoxCaller({
      boxUrl: `${rt.url}/integration/box`,
      clientId: creds.client_id,
      clientSecret: creds.client_secret,
      channelId: CHANNEL,
      dfo3,
    });

  it('CXone gets a token after its first 401 and the DFO 3.0 reply comes out as a conversation message', async () => {
    rt = await loadFlow(flow(), credentials);
    const got = collect(rt);
    cx = caller(rt, true);
    const body = JSON.parse(fixture('cxone', 'box-dfo3-outbound.json'));
    const a = await cx.sendReply({ threadId: OPENID, body });
    assert.equal(a.status, 200);
    assert.deepEqual(
      cx.calls.map((c) => c.status),
      [401, 200, 200],
      'reply without token → 401 → token → reply',
    );
    assert.equal(got.length, 1);
    const msg = got[0];
    const ans = a.body as any;
    assert.equal(msg.payload.direction, 'outbound');
    assert.equal(msg.payload.channel, 'cxone');
    assert.equal(msg.payload.account, CHANNEL);
    assert.equal(msg.payload.conversationId, OPENID);
    assert.equal(msg.payload.type, 'text');
    assert.equal(msg.payload.text, body.messageContent.payload.text);
    assert.equal(msg.payload.messageId, ans.message.idOnExternalPlatform);
    assert.equal(msg.cxone.idOnExternalPlatform, ans.message.idOnExternalPlatform);
    assert.equal(msg.cxone.channelId, CHANNEL);
    assert.equal(msg.cxone.format, 'dfo3');
    assert.deepEqual(msg.cxone.body, body);
  });

  it('serves legacy replies, typing and recipient validation on one token', async () => {
    rt = await loadFlow(flow(), credentials);
    const got = collect(rt);
    cx = caller(rt, false);
    const reply = await cx.sendReply({ threadId: OPENID, text: '稍等，我查一下。' });
    assert.equal(reply.status, 200);
    assert.match((reply.body as any).idOnExternalPlatform, /^wx-out-/);
    assert.equal((await cx.senderAction(OPENID, true)).status, 204);
    assert.equal((await cx.validateRecipients([OPENID])).status, 200);
    const bad = await cx.validateRecipients(['not an openid']);
    assert.equal(bad.status, 400);
    assert.equal((bad.body as any).errorCode, 'outboundValidationFailed');
    assert.equal(cx.tokenFetches, 1);
    assert.deepEqual(
      got.map((m) => m.payload.type),
      ['text', 'typing'],
    );
    assert.equal(got[0].cxone.format, 'legacy');
    assert.equal(got[1].payload.typing, true);
  });

  it('emits a reply CXone retries (same message id) once, with the config node store', async () => {
    rt = await loadFlow(flow(), credentials);
    const got = collect(rt);
    cx = caller(rt, true);
    const a = await cx.sendReply({ threadId: OPENID, text: 'once', messageId: 'cx-retry-1' });
    const b = await cx.sendReply({ threadId: OPENID, text: 'once', messageId: 'cx-retry-1' });
    assert.deepEqual(b.body, a.body);
    assert.equal(got.length, 1);
  });

  it('accepts only tokens it issued: a token signed with the jwtSecret works, another key gets 401', async () => {
    rt = await loadFlow(flow(), credentials);
    cx = caller(rt, true);
    await cx.sendReply({ threadId: OPENID, text: 'x' });
    const good = cx.token as string;
    const parts = good.split('.');
    cx.token = `${parts[0]}.${parts[1]}.${Buffer.from('forged').toString('base64url')}`;
    cx.clearRecords();
    const a = await cx.sendReply({ threadId: OPENID, text: 'y' });
    assert.equal(a.status, 200);
    assert.deepEqual(
      cx.calls.map((c) => c.status),
      [401, 200, 200],
    );
  });

  it('shows listening, then tokens, replies and refusals in its status', async () => {
    rt = await loadFlow(flow(), credentials);
    const first = statusesOf('ci').at(-1);
    assert.equal(first.fill, 'green');
    assert.match(first.text, /listening/);
    cx = caller(rt, true);
    await cx.sendReply({ threadId: OPENID, text: 'x' });
    await sleep(1300);
    const s = statusesOf('ci').at(-1);
    assert.equal(s.fill, 'green');
    assert.match(s.text, /last-reply/);
  });

  it('without box credentials: says so in status, and refuses every token request', async () => {
    rt = await loadFlow(flow(), { cc: { ...credentials.cc, boxClientId: '', boxClientSecret: '' } });
    const s = statusesOf('ci').at(-1);
    assert.equal(s.fill, 'yellow');
    assert.match(s.text, /no-credentials/);
    cx = caller(rt, true);
    const a = await cx.sendReply({ threadId: OPENID, text: 'x' });
    assert.equal(a.status, 401);
    assert.equal((a.body as any).error, 'invalid_client');
  });

  it('never puts the client secret, jwtSecret or an issued token in logs or status, even at debug level', async () => {
    rt = await loadFlow(flow(), credentials);
    cx = caller(rt, true);
    await cx.sendReply({ threadId: OPENID, text: 'hello' });
    await cx.fetchToken('form');
    await cx.fetchToken('basic');
    const wrong = new CxoneBoxCaller({
      boxUrl: `${rt.url}/integration/box`,
      clientId: creds.client_id,
      clientSecret: 'wrong-secret-guess',
    });
    await wrong.sendReply({ threadId: OPENID, text: 'x' });
    wrong.stop();
    await sleep(1200);
    const token = cx.token as string;
    const logs = JSON.stringify(helper.log().args);
    const statuses = JSON.stringify(statusesOf('ci'));
    // (The helper's RED._ returns bare keys; the process test checks the logged body itself.)
    assert.ok(logs.includes('cxone-dfo-in.log.body'), 'the reply body was handed to the debug log');
    for (const secret of [
      creds.client_secret,
      JWT_SECRET,
      token,
      'wrong-secret-guess',
      'access-key-secret-value',
    ]) {
      assert.ok(!logs.includes(secret), `a secret in the logs`);
      assert.ok(!statuses.includes(secret), `a secret in the status`);
    }
  });

  it('releases its path on close: the box answers 404 afterwards', async () => {
    rt = await loadFlow(flow('/box-close'), credentials);
    const url = `${rt.url}/box-close/1.0/token`;
    const before = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(creds),
    });
    assert.equal(before.status, 200);
    await helper.unload();
    const after = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(creds),
    });
    assert.equal(after.status, 404);
  });

  it('serves the admin page routes without a bearer token (answered by the admin part of the pack)', async () => {
    rt = await loadFlow(flow(), credentials);
    const res = await fetch(
      `${rt.url}/integration/box/action?userId=5678&brandId=1234&token=t&backUrl=https%3A%2F%2Fexample.com`,
      { redirect: 'manual' },
    );
    assert.notEqual(res.status, 401);
    assert.notEqual(res.status, 404);
  });
});
