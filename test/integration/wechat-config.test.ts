/**
 * wechat-config in a real Node-RED runtime (node-red-node-test-helper) against the WeChat simulator over real HTTP:
 * the "test connection" admin route (deployed values, unsaved values from the dialog, the saved-password
 * placeholder, WeChat's refusals in words, no secret in the answer), the field checks at start, the API client it
 * owns (shared token in the store, classic mode), and media download for wechat-in's media links.
 */
import * as assert from 'node:assert/strict';
import { helper, loadFlow, startHelper, stopHelper, type TestRuntime } from '../harness/helper';
import { WechatSimulator } from '../../sandbox/sim/wechat';

const OPENID = 'oyORnuP8q7ou2gfYjqLzSIWZf0rs';
const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(5000, 4)]);

function warnings(id: string): string[] {
  return helper._NodePrototype.warn
    .getCalls()
    .filter((c: any) => c.thisValue?.id === id)
    .map((c: any) => String(c.args[0]));
}

async function until(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 15));
  }
}

describe('wechat-config in a Node-RED runtime, against the WeChat simulator', function () {
  this.timeout(20_000);
  let sim: WechatSimulator;
  let rt: TestRuntime | undefined;

  before(() => startHelper());
  after(() => stopHelper());
  beforeEach(async () => {
    sim = new WechatSimulator({ followers: [OPENID] });
    await sim.start();
  });
  afterEach(async () => {
    await rt?.close();
    rt = undefined;
    await sim.stop();
  });

  const config = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
    id: 'wc',
    type: 'wechat-config',
    name: 'Acme',
    appId: sim.appId,
    apiBase: sim.url,
    ...over,
  });

  async function test(
    id: string,
    body: Record<string, unknown> = {},
  ): Promise<{ status: number; body: any; text: string }> {
    const res = await helper
      .request()
      .post(`/wechat-config/${id}/test`)
      .send(body)
      .set('Content-Type', 'application/json');
    return { status: res.status, body: res.body, text: res.text };
  }

  describe('test connection (admin route)', () => {
    it("tests the deployed account's values and says how long the token lives", async () => {
      rt = await loadFlow([config()], { wc: { appSecret: sim.appSecret } });
      const r = await test('wc');
      assert.equal(r.status, 200);
      assert.equal(r.body.ok, true);
      assert.equal(r.body.mode, 'stable');
      assert.equal(r.body.expiresIn, 7200);
      assert.equal(r.body.host, sim.url);
      assert.equal(sim.api.fetches.stable, 1);
    });

    it('reports 40164 in words (the IP whitelist) in English and Chinese, with the code', async () => {
      sim.api.setIpWhitelisted(false);
      rt = await loadFlow([config()], { wc: { appSecret: sim.appSecret } });
      const r = await test('wc');
      assert.equal(r.status, 200);
      assert.equal(r.body.ok, false);
      assert.equal(r.body.code, 40164);
      assert.match(r.body.reason, /this server's IP is not on the account's IP whitelist/);
      assert.match(r.body.reason, /Settings and Development → Basic Configuration → IP whitelist/);
      assert.match(r.body.reasonZh, /IP 白名单/);
    });

    it('tests unsaved values from the dialog (a node not deployed yet), and never echoes the secret', async () => {
      rt = await loadFlow([], {});
      const ok = await test('new-node-id', { appId: sim.appId, apiBase: sim.url, appSecret: sim.appSecret });
      assert.equal(ok.body.ok, true);
      const wrong = 'typed-wrong-secret-4242';
      const bad = await test('new-node-id', { appId: sim.appId, apiBase: sim.url, appSecret: wrong });
      assert.equal(bad.body.ok, false);
      assert.equal(bad.body.code, 40125);
      assert.match(bad.body.reason, /AppSecret is not valid/);
      assert.ok(!bad.text.includes(wrong));
      assert.ok(!ok.text.includes(sim.appSecret));
    });

    it('uses the saved AppSecret when the dialog shows the saved-password placeholder, and the typed one otherwise', async () => {
      rt = await loadFlow([config()], { wc: { appSecret: sim.appSecret } });
      const saved = await test('wc', { appId: sim.appId, apiBase: sim.url, appSecret: '__PWRD__' });
      assert.equal(saved.body.ok, true);
      const typed = await test('wc', { appId: sim.appId, apiBase: sim.url, appSecret: 'not-the-saved-one' });
      assert.equal(typed.body.ok, false);
      assert.equal(typed.body.code, 40125);
    });

    it('tests the classic token endpoint when chosen, and explains a wrong AppID', async () => {
      rt = await loadFlow([config({ tokenMode: 'classic' })], { wc: { appSecret: sim.appSecret } });
      const r = await test('wc');
      assert.equal(r.body.ok, true);
      assert.equal(r.body.mode, 'classic');
      assert.equal(sim.api.fetches.token, 1);
      // The deployed node adopts the classic token the test fetched (WeChat just made it the current one).
      await rt
        .getNode('wc')
        .api.sendCustom({ touser: OPENID, msgtype: 'text', text: { content: 'x' } })
        .catch(() => undefined);
      assert.equal(sim.api.fetches.token, 1);
      const wrong = await test('wc', { appId: 'wx0000000000000000' });
      assert.equal(wrong.body.code, 40013);
      assert.match(wrong.body.reason, /AppID is not valid/);
    });

    it('refuses to test without a valid AppID, API host or AppSecret (400), calling nothing', async () => {
      rt = await loadFlow([], {});
      const a = await test('x', { appId: 'nope', apiBase: sim.url, appSecret: 's' });
      assert.equal(a.status, 400);
      assert.equal(a.body.code, 'bad-appid');
      const b = await test('x', { appId: sim.appId, apiBase: 'ftp://x', appSecret: 's' });
      assert.equal(b.body.code, 'bad-apibase');
      const c = await test('x', { appId: sim.appId, apiBase: sim.url });
      assert.equal(c.body.code, 'no-secret');
      assert.equal(sim.api.calls.length, 0);
    });

    it('reports an unreachable host as such (no errcode)', async () => {
      rt = await loadFlow([], {});
      const r = await test('x', { appId: sim.appId, apiBase: 'http://127.0.0.1:9', appSecret: 's' });
      assert.equal(r.body.ok, false);
      assert.equal(typeof r.body.code, 'string');
      assert.match(r.body.reason, /refused|reached|resolved/);
    });
  });

  describe('at start', () => {
    it('warns about an AppID that is not wx + 16 hex and an EncodingAESKey that is not 43 characters', async () => {
      rt = await loadFlow([config({ appId: 'wx123' })], {
        wc: { appSecret: 's', encodingAESKey: 'tooShort' },
      });
      const w = warnings('wc');
      assert.ok(w.includes('wechat-config.warn.appId'), w.join('\n'));
      assert.ok(w.includes('wechat-config.warn.encodingAESKey'));
      assert.ok(!w.join('\n').includes('tooShort'), 'the key itself is not shown');
    });

    it('accepts a valid account without warnings', async () => {
      rt = await loadFlow([config()], {
        wc: { appSecret: sim.appSecret, encodingAESKey: sim.account().credentials.encodingAESKey },
      });
      assert.deepEqual(warnings('wc'), []);
    });
  });

  describe('the API client it owns', () => {
    it('keeps the token in its store under the account key, shared with every user of the account', async () => {
      rt = await loadFlow([config()], { wc: { appSecret: sim.appSecret } });
      const wc = rt.getNode('wc');
      const t = await wc.api.tokens.get();
      const raw = await wc.store.get(`wxcx:wechat:${sim.appId}:token`);
      assert.equal(JSON.parse(raw).t, t);
      assert.equal(wc.api, wc.api, 'one client per node');
    });

    it("downloads media for wechat-in's media links: a pushed image is served from the simulator through config.api", async () => {
      const acct = sim.account();
      rt = await loadFlow(
        [
          { id: 'tab', type: 'tab', label: 'wechat' },
          { ...config(), appId: acct.appId },
          { id: 'wi', type: 'wechat-in', z: 'tab', wechat: 'wc', path: '/wechat/webhook', wires: [['got']] },
          { id: 'got', type: 'helper', z: 'tab' },
        ],
        { wc: acct.credentials },
      );
      const got: any[] = [];
      rt.getNode('got').on('input', (m: any) => got.push(m));
      const mediaId = sim.api.addMedia(JPEG, { type: 'image', contentType: 'image/jpeg' });
      await sim.push.push(`${rt.url}/wechat/webhook`, sim.push.image(OPENID, mediaId));
      await until(() => got.length === 1, 5000, 'the image message');
      const url: string = got[0].payload.attachments[0].url;
      assert.ok(url.startsWith(rt.url), url);
      const res = await fetch(url);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'image/jpeg');
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(JPEG));
      assert.equal(sim.api.callsTo('/cgi-bin/media/get').length, 1);
    });

    it('gives an expired media id (40007) as an error wechat-in can tell apart', async () => {
      rt = await loadFlow([config()], { wc: { appSecret: sim.appSecret } });
      await assert.rejects(rt.getNode('wc').api.getMedia('gone'), (e: any) => e.errcode === 40007);
    });
  });
});
