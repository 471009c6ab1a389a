/**
 * wechat-in in a Node-RED started like a user starts it (red.js, default settings: the editor's JSON and form body
 * parsers sit in front of every endpoint on the same root), pushed to by the WeChat simulator over real HTTP.
 * Proves the webhook where users run it: verification, all three modes, refusals, dedupe, "success" before a
 * flow that blocks Node-RED for seconds, the status the editor shows, and no secret in the log.
 */
import * as assert from 'node:assert/strict';
import WebSocket from 'ws';
import { WechatPushSimulator } from '../../sandbox/sim/wechat/push';
import { startNodeRed, type NodeRedProcess } from '../harness/process';

const APP_ID = 'wx2c2769f8efd9abc2';
const GH = 'gh_10f6c3c3ac5a';
const TOKEN = 'process-test-token-71c2';
const AES_KEY = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG';
const APP_SECRET = 'process-test-app-secret-55aa';
const OPENID = 'oyORnuP8q7ou2gfYjqLzSIWZf0rs';

const flows = [
  { id: 'tab', type: 'tab', label: 'wechat' },
  { id: 'wc', type: 'wechat-config', z: '', name: 'Acme', appId: APP_ID, apiBase: 'http://127.0.0.1:9' },
  {
    id: 'wi',
    type: 'wechat-in',
    z: 'tab',
    name: 'hook',
    wechat: 'wc',
    path: '/wechat/webhook',
    replyTimeout: 0,
    wires: [['fn', 'busy']],
  },
  {
    id: 'fn',
    type: 'function',
    z: 'tab',
    name: 'one line',
    func: 'msg.payload = "EMITTED " + JSON.stringify({ payload: msg.payload, wechat: msg.wechat });\nreturn msg;',
    outputs: 1,
    wires: [['dbg']],
  },
  {
    id: 'busy',
    type: 'function',
    z: 'tab',
    name: 'blocks Node-RED',
    func:
      'if (msg.payload.text === "block") { const t = Date.now(); while (Date.now() - t < 6000) {} ' +
      'node.warn("UNBLOCKED"); }\nreturn null;',
    outputs: 1,
    wires: [[]],
  },
  {
    id: 'dbg',
    type: 'debug',
    z: 'tab',
    name: 'capture',
    active: true,
    tosidebar: false,
    console: true,
    complete: 'payload',
    wires: [],
  },
];
const credentials = { wc: { appSecret: APP_SECRET, token: TOKEN, encodingAESKey: AES_KEY } };

describe('wechat-in in a Node-RED started with default settings', function () {
  this.timeout(90_000);
  let nr: NodeRedProcess;
  let sim: WechatPushSimulator;
  let hook: string;
  before(async () => {
    nr = await startNodeRed({
      flows,
      credentials,
      settings: { logging: { console: { level: 'debug', metrics: false, audit: false } } },
    });
    hook = `${nr.url}/wechat/webhook`;
    sim = new WechatPushSimulator({
      account: { appId: APP_ID, originalId: GH, token: TOKEN, encodingAESKey: AES_KEY, mode: 'safe' },
    });
  });
  after(async () => {
    sim?.close();
    await nr?.stop();
  });

  const emitted = (): any[] => [...nr.logs().matchAll(/EMITTED (\{.*\})$/gm)].map((m) => JSON.parse(m[1]));

  it('answers URL verification with the echostr, and a forged one with 401', async () => {
    const ok = await sim.verifyUrl(hook, { echostr: '5927782489442352469' });
    assert.equal(ok.status, 200);
    assert.equal(ok.body, '5927782489442352469');
    const bad = await sim.verifyUrl(hook, { tamper: 'signature' });
    assert.equal(bad.status, 401);
    assert.equal(bad.body, '');
  });

  it('takes pushes in plain, compatible and safe mode, each emitted once as a conversation message', async () => {
    for (const mode of ['plain', 'compat', 'safe'] as const) {
      const rec = await sim.push(hook, sim.text(OPENID, `hello ${mode}`), { mode });
      assert.equal(rec.attempts[0].body, 'success', mode);
      await nr.waitForLog(new RegExp(`EMITTED .*hello ${mode}`), 5000);
    }
    const got = emitted();
    assert.deepEqual(
      got.map((g) => [g.payload.text, g.wechat.mode, g.payload.account, g.payload.conversationId]),
      [
        ['hello plain', 'plain', GH, OPENID],
        ['hello compat', 'compat', GH, OPENID],
        ['hello safe', 'safe', GH, OPENID],
      ],
    );
  });

  it('refuses JSON and form bodies (415) although the editor parsers run first, and emits nothing', async () => {
    const before = emitted().length;
    for (const ct of ['application/json', 'application/x-www-form-urlencoded']) {
      const b = sim.buildRequest(sim.text(OPENID, 'x'), { mode: 'plain' });
      const res = await fetch(`${hook}?${new URLSearchParams(b.query).toString()}`, {
        method: 'POST',
        headers: { 'Content-Type': ct },
        body: ct === 'application/json' ? '{"ToUserName":"gh"}' : 'ToUserName=gh',
      });
      assert.equal(res.status, 415, ct);
      assert.doesNotMatch(await res.text(), /<html|<!DOCTYPE/i);
    }
    const doctype = sim.buildRequest(sim.text(OPENID, 'x'), { mode: 'plain' });
    const res = await fetch(`${hook}?${new URLSearchParams(doctype.query).toString()}`, {
      method: 'POST',
      headers: { 'Content-Type': 'text/xml' },
      body: '<!DOCTYPE a [<!ENTITY b "c">]><xml>&b;</xml>',
    });
    assert.equal(res.status, 400);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(emitted().length, before);
  });

  it('emits a push that WeChat retried four times at once exactly once', async () => {
    const rec = await sim.push(hook, sim.text(OPENID, 'retried'), { concurrent: true });
    assert.equal(rec.attempts.length, 4);
    assert.ok(rec.attempts.every((a) => a.body === 'success'));
    await nr.waitForLog(/EMITTED .*retried/, 5000);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(emitted().filter((g) => g.payload.text === 'retried').length, 1);
  });

  it('answers "success" at once even when the flow then blocks Node-RED for 6 seconds', async () => {
    const rec = await sim.push(hook, sim.text(OPENID, 'block'), { retries: 0 });
    assert.equal(rec.attempts[0].body, 'success');
    assert.ok(!rec.attempts[0].timedOut);
    assert.ok(rec.attempts[0].ms < 1500, `took ${rec.attempts[0].ms} ms`);
    await nr.waitForLog(/UNBLOCKED/, 15_000);
  });

  it('shows "listening on …" with the counts in the status the editor receives', async () => {
    await sim.push(hook, sim.text(OPENID, 'x'), { tamper: 'signature', retries: 0 });
    await new Promise((r) => setTimeout(r, 600));
    const ws = new WebSocket(`${nr.url.replace(/^http/, 'ws')}/comms`);
    try {
      const status = await new Promise<any>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no status over comms')), 5000);
        ws.on('open', () => ws.send(JSON.stringify({ subscribe: 'status/#' })));
        ws.on('message', (data) => {
          const list = JSON.parse((data as Buffer).toString('utf8')) as { topic: string; data: any }[];
          for (const m of Array.isArray(list) ? list : [list])
            if (m.topic === 'status/wi') {
              clearTimeout(t);
              resolve(m.data);
            }
        });
        ws.on('error', reject);
      });
      assert.equal(status.fill, 'green');
      // received: 3 modes + 1 (retried four times) + 1 (block); rejected: the forged verification, 2 × 415,
      // the DOCTYPE (400) and the forged push.
      assert.equal(status.text, 'listening on /wechat/webhook · 5 received, 5 rejected');
    } finally {
      ws.close();
    }
  });

  it('logs pushes at debug level, and never the Token, EncodingAESKey or AppSecret', () => {
    const logs = nr.logs();
    assert.match(logs, /\[debug\] \[wechat-in:hook\] received a safe push: text/);
    for (const s of [TOKEN, AES_KEY, APP_SECRET]) assert.ok(!logs.includes(s), 'a secret was logged');
  });
});
