/**
 * Replays of WeChat pushes: within the dedupe window a replay is answered "success" and dropped; the optional
 * time window of wechat-in (`timestampWindow`, seconds, off by default because WeChat documents none) refuses a
 * correctly signed push whose timestamp is too far from this server's clock, so a push captured and replayed
 * after the dedupe has forgotten it is refused too. In a real runtime, over real HTTP.
 */
import * as assert from 'node:assert/strict';
import { helper, loadFlow, startHelper, stopHelper, type TestRuntime } from '../harness/helper';
import { send, sleep, textPush, wxPush, type WxAccount, type WxMode } from './requests';

const ACCT: WxAccount = {
  appId: 'wx5ec00000000000a7',
  gh: 'gh_5ec0000000a7',
  token: 'secReplayToken-c41e9a',
  aesKey: 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG',
};
const OPENID = 'oSecReplay000000000000000001';

describe('security: replayed pushes and the optional time window (wechat-in)', function () {
  this.timeout(20_000);
  let rt: TestRuntime | undefined;
  const got: any[] = [];
  before(() => startHelper());
  after(() => stopHelper());
  afterEach(async () => {
    await rt?.close();
    rt = undefined;
    got.length = 0;
  });

  async function load(timestampWindow?: number, encryptedOnly?: boolean): Promise<string> {
    rt = await loadFlow(
      [
        { id: 'tab', type: 'tab' },
        {
          id: 'wc',
          type: 'wechat-config',
          appId: ACCT.appId,
          apiBase: 'http://127.0.0.1:9',
          store: 'memory',
        },
        {
          id: 'wi',
          type: 'wechat-in',
          z: 'tab',
          wechat: 'wc',
          path: '/sec/replay',
          ...(timestampWindow === undefined ? {} : { timestampWindow }),
          ...(encryptedOnly === undefined ? {} : { encryptedOnly }),
          wires: [['out']],
        },
        { id: 'out', type: 'helper', z: 'tab' },
      ],
      { wc: { appSecret: 'secReplayAppSecret-19', token: ACCT.token, encodingAESKey: ACCT.aesKey! } },
    );
    rt.getNode('out').on('input', (m: any) => got.push(m));
    return `${rt.url}/sec/replay`;
  }

  const post = (url: string, mode: WxMode, xml: string, timestamp?: number) => {
    const r = wxPush(ACCT, mode, xml, timestamp === undefined ? {} : { timestamp: String(timestamp) });
    return send(`${url}?${r.query}`, { body: r.body, headers: { 'Content-Type': 'text/xml' } });
  };

  const now = (): number => Math.floor(Date.now() / 1000);

  it('answers a replay of a push (new signature, same MsgId) "success" and emits it once, in every mode', async () => {
    const url = await load();
    for (const mode of ['plain', 'compat', 'safe'] as WxMode[]) {
      const xml = textPush(ACCT, OPENID, `once ${mode}`, `7700000000000000${mode.length}`);
      for (let i = 0; i < 3; i++) {
        const a = await post(url, mode, xml);
        assert.equal(a.status, 200);
        assert.equal(a.text, 'success');
      }
    }
    await sleep(100);
    assert.deepEqual(
      got.map((m) => m.payload.text),
      ['once plain', 'once compat', 'once safe'],
    );
  });

  it('is off by default: a correctly signed push of two days ago is taken (WeChat documents no window)', async () => {
    const url = await load();
    const a = await post(
      url,
      'safe',
      textPush(ACCT, OPENID, 'old but fine', '7700000000000101'),
      now() - 2 * 86400,
    );
    assert.equal(a.status, 200);
    await sleep(100);
    assert.equal(got.length, 1);
  });

  it('with a window, refuses (401, no body, nothing emitted) a push signed too far from our clock, either way', async () => {
    const url = await load(300);
    const warnsBefore = helper._NodePrototype.warn.getCalls().length;
    for (const [what, ts] of [
      ['an hour old', now() - 3600],
      ['from the future', now() + 3600],
      ['at 0', 0],
    ] as [string, number][]) {
      for (const mode of ['plain', 'safe'] as WxMode[]) {
        const a = await post(
          url,
          mode,
          textPush(ACCT, OPENID, `late ${what}`, `77000000${ts}`.slice(0, 19)),
          ts,
        );
        assert.equal(a.status, 401, `${mode}, ${what}`);
        assert.equal(a.text, '');
      }
    }
    // A push within the window is taken, and one that was refused stays refused when replayed with a new nonce.
    const ok = await post(url, 'plain', textPush(ACCT, OPENID, 'in time', '7700000000000201'), now() - 200);
    assert.equal(ok.status, 200);
    await sleep(100);
    assert.deepEqual(
      got.map((m) => m.payload.text),
      ['in time'],
    );
    const warns = helper._NodePrototype.warn
      .getCalls()
      .slice(warnsBefore)
      .map((c: any) => String(c.args[0]));
    // The helper runtime's RED._ gives the catalog key; red.js gives the words of nodes/locales.
    assert.ok(
      warns.some((w: string) => /wechat-in\.errors\.timestamp|outside the time window/.test(w)),
      `the node says what to check: ${JSON.stringify(warns)}`,
    );
  });

  it('checks the window only after the signature: a forged old push is the same 401 as any forged one', async () => {
    const url = await load(300);
    const r = wxPush(ACCT, 'plain', textPush(ACCT, OPENID, 'forged', '7700000000000301'), {
      timestamp: String(now() - 3600),
    });
    const q = new URLSearchParams(r.query);
    q.set('signature', '0'.repeat(40));
    const warnsBefore = helper._NodePrototype.warn.getCalls().length;
    const a = await send(`${url}?${q.toString()}`, { body: r.body, headers: { 'Content-Type': 'text/xml' } });
    assert.equal(a.status, 401);
    assert.equal(helper._NodePrototype.warn.getCalls().length, warnsBefore, 'no warning for a forged push');
    assert.equal(got.length, 0);
  });

  it('"Encrypted only" refuses plain pushes (401, no body, nothing emitted) and takes compatible and safe ones', async () => {
    const url = await load(undefined, true);
    const warnsBefore = helper._NodePrototype.warn.getCalls().length;
    const plain = await post(url, 'plain', textPush(ACCT, OPENID, 'plain body', '7700000000000401'));
    assert.equal(plain.status, 401);
    assert.equal(plain.text, '');
    for (const mode of ['compat', 'safe'] as WxMode[]) {
      const a = await post(
        url,
        mode,
        textPush(ACCT, OPENID, `sealed ${mode}`, `770000000000050${mode.length}`),
      );
      assert.equal(a.status, 200, mode);
    }
    await sleep(100);
    assert.deepEqual(
      got.map((m) => m.payload.text),
      ['sealed compat', 'sealed safe'],
    );
    const warns = helper._NodePrototype.warn
      .getCalls()
      .slice(warnsBefore)
      .map((c: any) => String(c.args[0]));
    assert.ok(
      warns.some((w: string) => /wechat-in\.errors\.plain|plain-mode push/.test(w)),
      `the node says what to check: ${JSON.stringify(warns)}`,
    );
  });

  it('"Encrypted only" is off by default: the same plain push is taken', async () => {
    const url = await load();
    const a = await post(url, 'plain', textPush(ACCT, OPENID, 'plain is fine', '7700000000000601'));
    assert.equal(a.status, 200);
    await sleep(100);
    assert.equal(got.length, 1);
  });
});
