/**
 * Two Node-RED instances (red.js, default settings) serving one Official Account behind a load balancer, sharing a
 * real Redis store: WeChat's retries of one push land on both instances at once and the message is emitted exactly
 * once in total; a media link made by one instance is served by the other.
 */
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { WechatSimulator } from '../../sandbox/sim/wechat';
import { startNodeRed, type NodeRedProcess } from '../harness/process';
import { cleanup, countKeys, REDIS_URL, uniquePrefix } from './store-redis-helpers';

const OPENID = 'oRedisUser00000000000000001';

describe('wechat-in on two Node-RED instances sharing Redis', function () {
  this.timeout(120_000);
  const prefix = uniquePrefix('wechat-in');
  let sim: WechatSimulator;
  let a: NodeRedProcess;
  let b: NodeRedProcess;

  const flows = (name: string): unknown[] => {
    const acct = sim.account();
    return [
      { id: 'tab', type: 'tab', label: 'wechat' },
      {
        id: 'wc',
        type: 'wechat-config',
        z: '',
        name: 'Acme',
        appId: acct.appId,
        apiBase: acct.apiBase,
        store: 'redis',
        redisUrl: REDIS_URL,
        keyPrefix: prefix,
      },
      { id: 'wi', type: 'wechat-in', z: 'tab', name, wechat: 'wc', path: '/wechat/webhook', wires: [['fn']] },
      {
        id: 'fn',
        type: 'function',
        z: 'tab',
        name: 'one line',
        func: 'msg.payload = "EMITTED " + JSON.stringify(msg.payload);\nreturn msg;',
        outputs: 1,
        wires: [['dbg']],
      },
      {
        id: 'dbg',
        type: 'debug',
        z: 'tab',
        active: true,
        tosidebar: false,
        console: true,
        complete: 'payload',
        wires: [],
      },
    ];
  };

  before(async () => {
    sim = new WechatSimulator({ followers: [OPENID], mode: 'safe' });
    await sim.start();
    const credentials = { wc: sim.account().credentials };
    [a, b] = await Promise.all([
      startNodeRed({ flows: flows('A'), credentials }),
      startNodeRed({ flows: flows('B'), credentials }),
    ]);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await sim?.stop();
    await cleanup(prefix);
  });

  const emitted = (nr: NodeRedProcess): any[] =>
    [...nr.logs().matchAll(/EMITTED (\{.*\})$/gm)].map((m) => JSON.parse(m[1]));

  it('a push retried on both instances at once (2 + 2 concurrent requests) is emitted exactly once', async () => {
    for (const xml of [
      sim.push.text(OPENID, 'balanced'),
      sim.push.event(OPENID, 'CLICK', [['EventKey', 'MENU_BALANCED']]),
    ]) {
      const req = sim.push.buildRequest(xml);
      const qs = new URLSearchParams(req.query).toString();
      const post = (nr: NodeRedProcess): Promise<string> =>
        fetch(`${nr.url}/wechat/webhook?${qs}`, {
          method: 'POST',
          headers: { 'Content-Type': 'text/xml' },
          body: req.body,
        }).then((r) => r.text());
      const answers = await Promise.all([post(a), post(b), post(a), post(b)]);
      assert.deepEqual(answers, ['success', 'success', 'success', 'success']);
    }
    await new Promise((r) => setTimeout(r, 1000));
    const all = [...emitted(a), ...emitted(b)];
    assert.equal(all.filter((m) => m.text === 'balanced').length, 1);
    assert.equal(all.filter((m) => m.event?.key === 'MENU_BALANCED').length, 1);
    assert.ok((await countKeys(prefix)) >= 2, 'the dedupe keys live in Redis under the test prefix');
  });

  it('a media link made by one instance is served by the other', async () => {
    const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47]), randomBytes(5000)]);
    const id = sim.api.addMedia(png, { type: 'image', contentType: 'image/png' });
    const rec = await sim.push.push(`${a.url}/wechat/webhook`, sim.push.image(OPENID, id));
    assert.equal(rec.attempts[0].body, 'success');
    await a.waitForLog(new RegExp(`EMITTED .*${id}`), 5000);
    const msg = emitted(a).find((m) => m.attachments?.[0]?.mediaId === id);
    const link = new URL(msg.attachments[0].url);
    assert.equal(link.origin, a.url);
    const onB = await fetch(`${b.url}${link.pathname}`);
    assert.equal(onB.status, 200);
    assert.equal(onB.headers.get('content-type'), 'image/png');
    assert.deepEqual(Buffer.from(await onB.arrayBuffer()), png);
  });
});
