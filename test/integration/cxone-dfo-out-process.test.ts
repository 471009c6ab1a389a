/**
 * cxone-dfo-out in a Node-RED started like a user starts it (red.js, default settings, so the config's store is
 * the file store): a message reaches the CXone simulator; a message queued while CXone is failing survives a
 * restart of Node-RED and is delivered afterwards, exactly once, with the original msg on the output.
 */
import * as assert from 'node:assert/strict';
import { startNodeRed, type NodeRedProcess } from '../harness/process';
import { CxoneSimulator } from '../../sandbox/sim/cxone';

const OPENID = 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o';

function flows(sim: CxoneSimulator): unknown[] {
  const s = sim.integration();
  return [
    { id: 'tab', type: 'tab', label: 'out' },
    { id: 'cc', type: 'cxone-dfo-config', z: '', name: 'Tenant', authIssuer: s.authIssuer, apiBase: '' },
    {
      id: 'feed',
      type: 'http in',
      z: 'tab',
      url: '/feed',
      method: 'post',
      wires: [['co', 'ack']],
    },
    { id: 'ack', type: 'http response', z: 'tab', statusCode: '202', wires: [] },
    {
      id: 'co',
      type: 'cxone-dfo-out',
      z: 'tab',
      cxone: 'cc',
      channelId: 'chat_1',
      wires: [['line'], ['line']],
    },
    {
      id: 'line',
      type: 'function',
      z: 'tab',
      func: 'node.warn("RESULT " + JSON.stringify({ text: msg.payload && msg.payload.text, hasReq: !!msg.req, delivery: msg.delivery })); return null;',
      outputs: 1,
      wires: [[]],
    },
  ];
}

describe('cxone-dfo-out in a Node-RED started with red.js (file store)', function () {
  this.timeout(90_000);
  let sim: CxoneSimulator;
  let nr: NodeRedProcess | undefined;

  beforeEach(async () => {
    sim = new CxoneSimulator({ channels: ['chat_1'] });
    await sim.start();
  });
  afterEach(async () => {
    await nr?.stop();
    nr = undefined;
    await sim.stop();
  });

  const results = (p: NodeRedProcess): any[] =>
    [...p.logs().matchAll(/RESULT (\{.*\})\s*$/gm)].map((m) => JSON.parse(m[1]));

  async function feed(p: NodeRedProcess, id: string): Promise<void> {
    const res = await fetch(`${p.url}/feed`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        direction: 'inbound',
        channel: 'wechat',
        account: 'gh_0123456789ab',
        conversationId: OPENID,
        messageId: id,
        timestamp: 1714552212000,
        from: { id: OPENID },
        type: 'text',
        text: 'hello ' + id,
      }),
    });
    assert.equal(res.status, 202);
  }

  it('delivers a message; one queued while CXone fails survives a restart and is delivered once', async () => {
    const f = flows(sim);
    const s = sim.integration();
    nr = await startNodeRed({ flows: f, credentials: { cc: s.credentials } });
    const userDir = nr.userDir;
    await feed(nr, 'p-1');
    await nr.waitForLog(/RESULT .*"delivered"/, 15_000);
    assert.ok(sim.dfo.findMessage('chat_1', 'wechat:gh_0123456789ab:p-1'));

    // CXone starts failing; the message waits in the outbox (on disk).
    sim.dfo.failNext(1000, 503, { match: /messages$/ });
    await feed(nr, 'p-2');
    const t0 = Date.now();
    while (sim.dfo.requests.filter((r) => r.status === 503).length < 1) {
      if (Date.now() - t0 > 10_000) throw new Error('no attempt was made');
      await new Promise((r) => setTimeout(r, 50));
    }
    await nr.stop();
    nr = undefined;
    assert.equal(sim.dfo.findMessage('chat_1', 'wechat:gh_0123456789ab:p-2'), undefined);

    sim.dfo.clearInjections();
    nr = await startNodeRed({ userDir, flows: f, credentials: { cc: s.credentials } });
    await nr.waitForLog(/RESULT .*"delivered"/, 30_000);
    const got = results(nr);
    assert.equal(got.length, 1);
    assert.equal(got[0].delivery.idOnExternalPlatform, 'wechat:gh_0123456789ab:p-2');
    assert.equal(got[0].text, 'hello p-2', 'the msg kept with the job comes out after the restart');
    assert.equal(got[0].hasReq, false, 'without the HTTP request it came with');
    assert.ok(got[0].delivery.attempts >= 2);
    assert.ok(sim.dfo.findMessage('chat_1', 'wechat:gh_0123456789ab:p-2'));
    assert.equal(sim.dfo.messages('chat_1').length, 2, 'nothing twice');
  });
});
