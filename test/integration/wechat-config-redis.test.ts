/**
 * Several Node-RED instances of one account share one access token through a real Redis (127.0.0.1:6379): two API
 * clients on two Redis connections (two "instances") cause one token fetch for hundreds of concurrent sends, and a
 * token one instance replaced after a 40001 is picked up by the other without a second fetch. Keys live under a
 * unique prefix per run and are removed afterwards.
 */
import * as assert from 'node:assert/strict';
import { RedisStore } from '../../lib/store/redis';
import { WechatApi } from '../../lib/wechat/api/client';
import { WechatApiSim } from '../../sandbox/sim/wechat/api';
import { cleanup, REDIS_URL, uniquePrefix } from './store-redis-helpers';

describe('the WeChat access token shared through Redis by two instances', function () {
  this.timeout(30_000);
  const prefix = uniquePrefix('wechat-token');
  let sim: WechatApiSim;
  let stores: RedisStore[] = [];
  let apis: WechatApi[] = [];

  beforeEach(async () => {
    sim = new WechatApiSim();
    await sim.start();
    stores = [
      await RedisStore.open({ url: REDIS_URL, keyPrefix: prefix }),
      await RedisStore.open({ url: REDIS_URL, keyPrefix: prefix }),
    ];
    apis = stores.map(
      (store) =>
        new WechatApi({
          appId: sim.appId,
          appSecret: () => sim.appSecret,
          apiBase: sim.url,
          store,
          timeoutMs: 15_000,
          retryBaseMs: 5,
        }),
    );
  });
  afterEach(async () => {
    for (const a of apis) a.close();
    for (const s of stores) await s.close();
    await sim.stop();
    await cleanup(prefix);
  });

  it('fetches one token for 2 × 250 concurrent sends on two Redis connections', async () => {
    const users = Array.from({ length: 500 }, (_, i) => `oRedis${String(i).padStart(22, '0')}`);
    for (const u of users) sim.onUserMessage(u);
    await Promise.all(
      users.map((u, i) => apis[i % 2].sendCustom({ touser: u, msgtype: 'text', text: { content: 'hi' } })),
    );
    assert.equal(sim.fetches.stable, 1);
    assert.equal(apis[0].tokens.fetches + apis[1].tokens.fetches, 1);
    assert.equal(sim.inbox.length, 500);
    const raw = await stores[1].get(`wxcx:wechat:${sim.appId}:token`);
    assert.ok(raw && JSON.parse(raw).t === sim.currentStableToken);
  });

  it('after a 40001, the instance that refetched shares the new token; the other does not fetch again', async () => {
    const [a, b] = apis;
    const user = 'oRedisUser000000000000000001';
    sim.onUserMessage(user);
    const first = await a.tokens.get();
    assert.equal(await b.tokens.get(), first);
    sim.revokeTokens();
    await a.sendCustom({ touser: user, msgtype: 'text', text: { content: 'a' } });
    assert.equal(sim.fetches.stable, 2);
    // b still holds the old token in memory: WeChat says 40001, b finds the new one in Redis and uses it.
    await b.sendCustom({ touser: user, msgtype: 'text', text: { content: 'b' } });
    assert.equal(sim.fetches.stable, 2, 'no third fetch');
    assert.equal(sim.calls.filter((c) => c.errcode === 40001).length, 2);
    assert.equal(sim.inbox.length, 2);
  });
});
