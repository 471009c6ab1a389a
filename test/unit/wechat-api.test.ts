/**
 * The WeChat API client against the WeChat API simulator over real HTTP: access token (single flight, shared store,
 * invalidation only of the failing token, refresh ahead), host failover on network failures only, retries of
 * transient failures, and errors in words without secrets.
 */
import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import { MemoryStore } from '../../lib/store/memory';
import { WechatApi, type WechatApiOptions } from '../../lib/wechat/api/client';
import { describeErrcode, WECHAT_ERRORS } from '../../lib/wechat/api/errors';
import { backoffDelay, defaultFallbacks, WechatApiError, WechatHttp } from '../../lib/wechat/api/http';
import { WechatApiSim } from '../../sandbox/sim/wechat/api';

const OPENID = 'oUser000000000000000000000001';

/** A port nothing listens on (connection refused). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('WeChat API client (against the simulator)', function () {
  this.timeout(20_000);
  let sim: WechatApiSim;
  const apis: WechatApi[] = [];

  function makeApi(over: Partial<WechatApiOptions> = {}): WechatApi {
    const api = new WechatApi({
      appId: sim.appId,
      appSecret: () => sim.appSecret,
      apiBase: sim.url,
      store: new MemoryStore(),
      retryBaseMs: 5,
      retryMaxMs: 20,
      timeoutMs: 2_000,
      ...over,
    });
    apis.push(api);
    return api;
  }

  beforeEach(async () => {
    sim = new WechatApiSim({ followers: [OPENID] });
    await sim.start();
    sim.onUserMessage(OPENID);
  });
  afterEach(async () => {
    for (const a of apis.splice(0)) a.close();
    await sim.stop();
  });

  describe('error words', () => {
    it('describes 45015, 45047 and 40164 in words an agent or admin can act on, in English and Chinese', () => {
      assert.match(describeErrcode(45015), /not written in the last 48 hours/);
      assert.match(describeErrcode(45047), /five replies/);
      assert.match(describeErrcode(40164), /IP is not on the account's IP whitelist/);
      assert.match(describeErrcode(45015, undefined, 'zh'), /48 小时/);
      assert.equal(WECHAT_ERRORS[45015].retryable, false);
      assert.equal(WECHAT_ERRORS[-1].retryable, true);
    });

    it("quotes WeChat's errmsg for an unknown code, without its hint and without any URL query", () => {
      const s = describeErrcode(
        99999,
        'weird thing happened https://x.example/a?access_token=SECRET hint: [abc]',
      );
      assert.ok(!s.includes('hint'));
      assert.ok(!s.includes('SECRET'));
      assert.match(s, /weird thing happened/);
    });

    it('backs off exponentially with jitter, capped', () => {
      assert.equal(
        backoffDelay(0, 100, 1000, () => 0),
        50,
      );
      assert.equal(
        backoffDelay(0, 100, 1000, () => 1),
        100,
      );
      assert.equal(
        backoffDelay(3, 100, 1000, () => 1),
        800,
      );
      assert.equal(
        backoffDelay(10, 100, 1000, () => 1),
        1000,
      );
    });

    it('fails over across the official hosts only when apiBase is one of them', () => {
      assert.deepEqual(defaultFallbacks('https://api.weixin.qq.com/'), [
        'https://api2.weixin.qq.com',
        'https://sh.api.weixin.qq.com',
        'https://sz.api.weixin.qq.com',
        'https://hk.api.weixin.qq.com',
      ]);
      assert.deepEqual(defaultFallbacks('http://127.0.0.1:1234'), []);
    });
  });

  describe('access token', () => {
    it('fetches one token for 1000 concurrent sends (stable_token by default)', async () => {
      // The simulator shares this process's event loop: allow for a slow machine so no send times out and repeats.
      const api = makeApi({ timeoutMs: 15_000 });
      const users = Array.from({ length: 1000 }, (_, i) => `oUser${String(i).padStart(24, '0')}`);
      for (const u of users) sim.onUserMessage(u);
      await Promise.all(
        users.map((u) => api.sendCustom({ touser: u, msgtype: 'text', text: { content: 'hello' } })),
      );
      assert.equal(sim.fetches.stable, 1);
      assert.equal(sim.fetches.token, 0);
      assert.equal(api.tokens.fetches, 1);
      assert.equal(sim.inbox.length, 1000);
    });

    it('shares one fetch between two instances on one store (the lock), and both use the stored token', async () => {
      const store = new MemoryStore();
      const a = makeApi({ store });
      const b = makeApi({ store });
      const [ta, tb] = await Promise.all([a.tokens.get(), b.tokens.get()]);
      assert.equal(ta, tb);
      assert.equal(sim.fetches.stable, 1);
      const raw = await store.get(`wxcx:wechat:${sim.appId}:token`);
      assert.ok(raw && JSON.parse(raw).t === ta, 'the token lives in the store under the account key');
    });

    it('uses the classic /cgi-bin/token when asked', async () => {
      const api = makeApi({ tokenMode: 'classic' });
      await api.sendCustom({ touser: OPENID, msgtype: 'text', text: { content: 'hi' } });
      assert.equal(sim.fetches.token, 1);
      assert.equal(sim.fetches.stable, 0);
    });

    it('on 40001 from two concurrent sends, fetches once, deleting the stored token only while it is the failing one', async () => {
      const store = new MemoryStore();
      const api = makeApi({ store });
      const old = await api.tokens.get();
      sim.revokeTokens(); // someone force-refreshed: the cached token now gets 40001
      const body = { touser: OPENID, msgtype: 'text' as const, text: { content: 'after revoke' } };
      await Promise.all([api.sendCustom(body), api.sendCustom(body)]);
      assert.equal(sim.fetches.stable, 2, 'one fetch at start, one after the 40001s');
      const failed = sim.calls.filter((c) => c.errcode === 40001);
      assert.equal(failed.length, 2);
      assert.equal(sim.sentTo(OPENID).length, 2);
      const now = JSON.parse((await store.get(`wxcx:wechat:${sim.appId}:token`))!).t;
      assert.notEqual(now, old);
      // A late report of the old token's failure must not remove the new one.
      await api.tokens.replace(old);
      assert.equal(JSON.parse((await store.get(`wxcx:wechat:${sim.appId}:token`))!).t, now);
      assert.equal(sim.fetches.stable, 2);
    });

    it('retries once after a token error and gives up if the new token fails too', async () => {
      const api = makeApi();
      await api.tokens.get();
      sim.inject({ kind: 'errcode', errcode: 40001, count: 2, path: '/cgi-bin/message/custom/send' });
      await assert.rejects(
        api.sendCustom({ touser: OPENID, msgtype: 'text', text: { content: 'x' } }),
        (e: WechatApiError) => e.errcode === 40001,
      );
      assert.equal(sim.callsTo('/cgi-bin/message/custom/send').length, 2, 'exactly one retry');
    });

    it('refreshes ahead of expiry in the background and keeps answering with the valid token meanwhile', async () => {
      const api = makeApi({ token: { now: () => sim.now() } });
      const first = await api.tokens.get();
      sim.advance((7200 - 200) * 1000); // inside the last 5 minutes
      const during = await api.tokens.get();
      assert.equal(during, first, 'the still-valid token is used without waiting');
      for (let i = 0; i < 50 && sim.fetches.stable < 2; i++) await new Promise((r) => setTimeout(r, 10));
      await new Promise((r) => setTimeout(r, 20));
      const after = await api.tokens.get();
      assert.notEqual(after, first);
      assert.equal(sim.fetches.stable, 2);
    });

    it('refetches after expiry (42001 is never met by a manager with the same clock)', async () => {
      const api = makeApi({ token: { now: () => sim.now() } });
      await api.sendCustom({ touser: OPENID, msgtype: 'text', text: { content: 'a' } });
      sim.advance(7300 * 1000);
      sim.onUserMessage(OPENID);
      await api.sendCustom({ touser: OPENID, msgtype: 'text', text: { content: 'b' } });
      assert.equal(sim.fetches.stable, 2);
      assert.equal(sim.calls.filter((c) => c.errcode === 42001).length, 0);
    });

    it('explains a wrong AppSecret, an IP not on the whitelist and a wrong AppID in words, holding the failure briefly', async () => {
      const bad = makeApi({ appSecret: () => 'wrong-secret-0123456789' });
      await assert.rejects(
        bad.tokens.get(),
        (e: WechatApiError) => e.errcode === 40125 && /AppSecret/.test(e.message),
      );
      await assert.rejects(bad.tokens.get(), (e: WechatApiError) => e.errcode === 40125);
      assert.equal(sim.fetches.stable, 1, 'a configuration failure is not refetched at once');

      const classic = makeApi({ appSecret: () => 'wrong-secret-0123456789', tokenMode: 'classic' });
      await assert.rejects(
        classic.tokens.get(),
        (e: WechatApiError) => e.errcode === 40001 && /AppSecret is wrong/.test(e.reason),
      );

      const wrongId = makeApi({ appId: 'wx0000000000000000' });
      await assert.rejects(
        wrongId.tokens.get(),
        (e: WechatApiError) => e.errcode === 40013 && /AppID/.test(e.message),
      );

      sim.setIpWhitelisted(false);
      const api = makeApi();
      const r = await api.testConnection();
      assert.equal(r.ok, false);
      assert.equal(r.code, 40164);
      assert.match(r.message!, /this server's IP is not on the account's IP whitelist/);
      assert.match(r.messageZh!, /白名单/);
    });

    it('never shows the AppSecret or a token in errors, their JSON or their stack', async () => {
      const api = makeApi();
      const token = await api.tokens.get();
      sim.inject({ kind: 'errcode', errcode: 45015, path: '/cgi-bin/message/custom/send' });
      const err = await api.sendCustom({ touser: OPENID, msgtype: 'text', text: { content: 'x' } }).then(
        () => null,
        (e: unknown) => e as WechatApiError,
      );
      assert.ok(err instanceof WechatApiError);
      const all = [err.message, err.stack ?? '', JSON.stringify(err), String(err), err.reason].join('\n');
      assert.ok(!all.includes(token), 'no token');
      assert.ok(!all.includes(sim.appSecret), 'no secret');
      assert.ok(!all.includes('access_token='), 'no URL with the token');
      const bad = makeApi({ appSecret: () => 'S3CRET-that-must-not-leak', tokenMode: 'classic' });
      const e2 = await bad.tokens.get().then(
        () => null,
        (e: unknown) => e as Error,
      );
      assert.ok(e2);
      assert.ok(![e2.message, e2.stack, JSON.stringify(e2)].join('\n').includes('S3CRET-that-must-not-leak'));
      // Network failure on a token fetch carrying the secret in the query
      const port = await closedPort();
      const net2 = makeApi({
        apiBase: `http://127.0.0.1:${port}`,
        appSecret: () => 'S3CRET-2',
        tokenMode: 'classic',
        retries: 0,
      });
      const e3 = await net2.tokens.get().then(
        () => null,
        (e: unknown) => e as Error,
      );
      assert.ok(e3 instanceof WechatApiError && e3.kind === 'network');
      assert.ok(![e3.message, e3.stack, JSON.stringify(e3)].join('\n').includes('S3CRET-2'));
    });
  });

  describe('hosts, failover and retries', () => {
    it('fails over to the next host when the first refuses connections, and stays there for a while', async () => {
      const port = await closedPort();
      const api2 = await sim.startHost('api2');
      const api = makeApi({ apiBase: `http://127.0.0.1:${port}`, fallbackBases: [api2] });
      await api.sendCustom({ touser: OPENID, msgtype: 'text', text: { content: 'via api2' } });
      assert.equal(sim.sentTo(OPENID).length, 1);
      assert.ok(sim.calls.every((c) => c.host === 'api2'));
      assert.ok(api.http.stats.failovers >= 1);
      const before = api.http.stats.failovers;
      await api.sendCustom({ touser: OPENID, msgtype: 'text', text: { content: 'again' } });
      assert.equal(api.http.stats.failovers, before, 'the working host is tried first');
    });

    it('fails over when a host resets the connection, then returns to the first host after the sticky period', async () => {
      await sim.startHost('api2');
      const api = makeApi({ fallbackBases: [sim.urlOf('api2')], stickyMs: 0 });
      await api.tokens.get();
      sim.inject({ kind: 'reset', host: 'api', path: '/cgi-bin/message/custom/send' });
      await api.sendCustom({ touser: OPENID, msgtype: 'text', text: { content: 'x' } });
      const sends = sim.callsTo('/cgi-bin/message/custom/send');
      assert.deepEqual(
        sends.map((c) => [c.host, c.status]),
        [
          ['api', 'reset'],
          ['api2', 200],
        ],
      );
      await api.sendCustom({ touser: OPENID, msgtype: 'text', text: { content: 'y' } });
      assert.equal(sim.callsTo('/cgi-bin/message/custom/send').at(-1)!.host, 'api');
    });

    it('does NOT fail over on an errcode answer (45015 is the same on every host)', async () => {
      await sim.startHost('api2');
      const api = makeApi({ fallbackBases: [sim.urlOf('api2')] });
      sim.inject({ kind: 'errcode', errcode: 45015, path: '/cgi-bin/message/custom/send' });
      await assert.rejects(
        api.sendCustom({ touser: OPENID, msgtype: 'text', text: { content: 'x' } }),
        (e: WechatApiError) => e.errcode === 45015 && e.retryable === false,
      );
      assert.equal(sim.calls.filter((c) => c.host === 'api2').length, 0);
      assert.equal(sim.callsTo('/cgi-bin/message/custom/send').length, 1, 'and no retry');
    });

    it('does not fail over on HTTP 500 either, but retries it on the same host with back-off', async () => {
      await sim.startHost('api2');
      const api = makeApi({ fallbackBases: [sim.urlOf('api2')] });
      await api.tokens.get();
      sim.inject({ kind: 'status', status: 500, count: 2, path: '/cgi-bin/message/custom/send' });
      await api.sendCustom({ touser: OPENID, msgtype: 'text', text: { content: 'x' } });
      const sends = sim.callsTo('/cgi-bin/message/custom/send');
      assert.deepEqual(
        sends.map((c) => [c.host, c.status]),
        [
          ['api', 500],
          ['api', 500],
          ['api', 200],
        ],
      );
      assert.equal(api.http.stats.retries, 2);
    });

    it('retries errcode -1 (system busy) with back-off and succeeds', async () => {
      const api = makeApi();
      sim.inject({ kind: 'busy', count: 2, path: '/cgi-bin/message/custom/send' });
      await api.sendCustom({ touser: OPENID, msgtype: 'text', text: { content: 'x' } });
      assert.deepEqual(
        sim.callsTo('/cgi-bin/message/custom/send').map((c) => c.errcode),
        [-1, -1, 0],
      );
    });

    it('gives up after its retries with a retryable error when WeChat stays busy', async () => {
      const api = makeApi({ retries: 1 });
      sim.inject({ kind: 'busy', count: 5, path: '/cgi-bin/message/custom/send' });
      await assert.rejects(
        api.sendCustom({ touser: OPENID, msgtype: 'text', text: { content: 'x' } }),
        (e: WechatApiError) => e.errcode === -1 && e.retryable,
      );
      assert.equal(sim.callsTo('/cgi-bin/message/custom/send').length, 2);
    });

    it('treats a host that does not answer in time as unreachable and moves on', async () => {
      await sim.startHost('api2');
      const api = makeApi({ fallbackBases: [sim.urlOf('api2')], timeoutMs: 200 });
      await api.tokens.get();
      sim.inject({ kind: 'delay', delayMs: 1000, host: 'api', path: '/cgi-bin/message/custom/send' });
      await api.sendCustom({ touser: OPENID, msgtype: 'text', text: { content: 'x' } });
      assert.equal(sim.sentTo(OPENID).length, 1);
      assert.equal(sim.inbox[0].host, 'api2');
    });

    it('reports no host reachable as a retryable network error naming the cause', async () => {
      const p1 = await closedPort();
      const p2 = await closedPort();
      const http = new WechatHttp({
        apiBase: `http://127.0.0.1:${p1}`,
        fallbackBases: [`http://127.0.0.1:${p2}`],
        retries: 1,
        retryBaseMs: 1,
      });
      try {
        await assert.rejects(
          http.request({ method: 'GET', path: '/cgi-bin/x' }),
          (e: WechatApiError) => e.kind === 'network' && e.retryable && /refused/.test(e.reason),
        );
        assert.equal(http.stats.calls, 4, 'two hosts, two tries each');
      } finally {
        http.close();
      }
    });

    it('reads a 2xx answer that is not JSON as a bad response, and a 404 as a non-retryable HTTP error', async () => {
      const api = makeApi();
      await assert.rejects(
        api.http.request({ method: 'GET', path: '/nope' }),
        (e: WechatApiError) => e.kind === 'http' && e.status === 404 && !e.retryable,
      );
    });
  });

  describe('template and typing', () => {
    it('sends a template message and returns its msgid as a string beyond 2^53', async () => {
      sim.addTemplate('TPL1');
      const api = makeApi();
      const id = await api.sendTemplate({ touser: OPENID, template_id: 'TPL1', data: { k: { value: 'v' } } });
      assert.ok(id && /^\d{19}$/.test(id));
      assert.ok(BigInt(id) > BigInt(Number.MAX_SAFE_INTEGER));
      assert.equal(sim.templates.length, 1);
    });

    it('turns typing on and off', async () => {
      const api = makeApi();
      await api.typing(OPENID, true);
      await api.typing(OPENID, false);
      assert.deepEqual(
        sim.typing.map((t) => t.command),
        ['Typing', 'CancelTyping'],
      );
    });
  });
});
