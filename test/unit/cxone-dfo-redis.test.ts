/**
 * The CXone token shared through a real Redis (127.0.0.1:6379) by two "instances" (two connections, two
 * DfoAuth objects): one fetch between them, and a 401 seen by one instance never throws away a newer token.
 */
import * as assert from 'node:assert/strict';
import { RedisStore } from '../../lib/store/redis';
import { createDfoIntegration, type DfoIntegration } from '../../lib/cxone/dfo';
import { CxoneSimulator } from '../../sandbox/sim/cxone';
import { cleanup, countKeys, REDIS_URL, uniquePrefix } from '../integration/store-redis-helpers';

describe('CXone token across instances sharing a Redis', function () {
  this.timeout(20_000);
  let sim: CxoneSimulator;
  let prefix: string;
  const stores: RedisStore[] = [];
  const open: DfoIntegration[] = [];

  beforeEach(async () => {
    sim = new CxoneSimulator({ channels: ['chat_1'] });
    await sim.start();
    prefix = uniquePrefix('cxone-dfo');
  });
  afterEach(async () => {
    for (const i of open.splice(0)) i.close();
    for (const s of stores.splice(0)) await s.close();
    await sim.stop();
    await cleanup(prefix);
  });

  async function instance(): Promise<DfoIntegration> {
    const store = await RedisStore.open({ url: REDIS_URL, keyPrefix: prefix });
    stores.push(store);
    const i = createDfoIntegration({ ...sim.integration(), store });
    open.push(i);
    return i;
  }

  it('two instances fetch one token between them, and both use it', async () => {
    const a = await instance();
    const b = await instance();
    const tokens = await Promise.all(
      Array.from({ length: 100 }, (_, n) => (n % 2 ? a : b).auth.token().then((t) => t.accessToken)),
    );
    assert.equal(new Set(tokens).size, 1);
    assert.equal(sim.dfo.tokenFetches, 1);
    assert.equal(a.auth.counters.tokenFetches + b.auth.counters.tokenFetches, 1);
    assert.ok(
      (await countKeys(`${prefix}${a.auth.keyPrefix}:token`)) === 1,
      'the token is under the account key',
    );
  });

  it('a stale 401 from one instance does not delete the token the other just fetched', async () => {
    const a = await instance();
    const b = await instance();
    const old = (await a.auth.token()).accessToken;
    sim.dfo.expireTokens();
    // b meets the 401 first and replaces the token.
    await b.client.createMessage('chat_1', {
      idOnExternalPlatform: 'r-1',
      direction: 'inbound',
      createdAtWithMilliseconds: '2024-05-01T08:30:12.000Z',
      thread: { idOnExternalPlatform: 'o1' },
      messageContent: { type: 'TEXT', payload: { text: 'x' } },
      authorEndUserIdentity: { idOnExternalPlatform: 'o1' },
    });
    assert.equal(sim.dfo.tokenFetches, 2);
    const fresh = (await b.auth.token()).accessToken;
    // a now reports its old token as refused: only its local copy goes, the stored (fresh) one stays.
    await a.auth.invalidate(old);
    assert.equal((await a.auth.token()).accessToken, fresh);
    assert.equal(sim.dfo.tokenFetches, 2);
  });
});
