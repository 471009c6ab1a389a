/**
 * cxone-dfo-in in a Node-RED started like a user starts it (red.js, default settings: the editor's JSON and form
 * body parsers sit in front of every endpoint on the same root), called by the CXone simulator's box caller.
 * Without the route registry's pre-hook those parsers would eat the token request and the reply bodies, and answer
 * malformed JSON with an HTML error page of their own.
 */
import * as assert from 'node:assert/strict';
import WebSocket from 'ws';
import { CxoneBoxCaller } from '../../sandbox/sim/cxone/box-caller';
import { fixture } from '../harness/paths';
import { startNodeRed, type NodeRedProcess } from '../harness/process';

const creds = JSON.parse(fixture('cxone', 'box-token-request.json')) as Record<string, string>;
const OPENID = 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o';
const CHANNEL = 'chat_5d1ed0c1-8bbd-4c4b-8f0f-6f1f3bd6d1a1';

const flows = [
  { id: 'tab', type: 'tab', label: 'box' },
  {
    id: 'cc',
    type: 'cxone-dfo-config',
    z: '',
    name: 'Tenant',
    authIssuer: 'https://cxone.niceincontact.com',
    apiBase: '',
  },
  {
    id: 'ci',
    type: 'cxone-dfo-in',
    z: 'tab',
    name: 'box',
    cxone: 'cc',
    path: '/integration/box',
    wires: [['fn']],
  },
  {
    id: 'fn',
    type: 'function',
    z: 'tab',
    name: 'one line',
    func: 'msg.payload = "EMITTED " + JSON.stringify({ payload: msg.payload, cxone: msg.cxone });\nreturn msg;',
    outputs: 1,
    wires: [['dbg']],
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
const credentials = {
  cc: { boxClientId: creds.client_id, boxClientSecret: creds.client_secret, jwtSecret: '' },
};

describe('cxone-dfo-in in a Node-RED started with default settings', function () {
  this.timeout(60_000);
  let nr: NodeRedProcess;
  let cx: CxoneBoxCaller;
  before(async () => {
    nr = await startNodeRed({
      flows,
      credentials,
      // Default settings, with the log at debug level so the logged bodies can be checked.
      settings: { logging: { console: { level: 'debug', metrics: false, audit: false } } },
    });
    cx = new CxoneBoxCaller({
      boxUrl: `${nr.url}/integration/box`,
      clientId: creds.client_id,
      clientSecret: creds.client_secret,
      channelId: CHANNEL,
    });
  });
  after(async () => {
    cx?.stop();
    await nr?.stop();
  });

  /** The messages the flow emitted so far (the function node puts each on one log line). */
  const emitted = (): any[] => [...nr.logs().matchAll(/EMITTED (\{.*\})$/gm)].map((m) => JSON.parse(m[1]));

  it('issues tokens for JSON and form requests that the editor parsers would have consumed', async () => {
    for (const style of ['json', 'form', 'basic'] as const) {
      const a = await cx.fetchToken(style);
      assert.equal(a.status, 200, style);
      assert.equal((a.body as any).token_type, 'Bearer');
    }
  });

  it('answers malformed JSON with its own 400 JSON, not the editor parser HTML page', async () => {
    const res = await fetch(`${nr.url}/integration/box/1.0/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"client_id":',
    });
    assert.equal(res.status, 400);
    assert.match(String(res.headers.get('content-type')), /^application\/json/);
    assert.equal(((await res.json()) as any).error, 'invalid_request');
  });

  it('runs the 401 → token → retry dance and emits both reply formats', async () => {
    cx.token = undefined;
    cx.clearRecords();
    cx.dfo3 = false;
    const legacy = await cx.sendReply({ threadId: OPENID, text: 'legacy 回复' });
    cx.dfo3 = true;
    const dfo3 = await cx.sendReply({
      threadId: OPENID,
      body: JSON.parse(fixture('cxone', 'box-dfo3-outbound.json')),
    });
    assert.equal(legacy.status, 200);
    assert.equal(dfo3.status, 200);
    assert.deepEqual(
      cx.calls.map((c) => c.status),
      [401, 200, 200, 200],
    );
    await nr.waitForLog(/EMITTED .*您好/, 5000);
    const got = emitted();
    assert.equal(got.length, 2);
    assert.equal(got[0].payload.text, 'legacy 回复');
    assert.equal(got[0].payload.messageId, (legacy.body as any).idOnExternalPlatform);
    assert.equal(got[1].cxone.format, 'dfo3');
    assert.equal(got[1].payload.messageId, (dfo3.body as any).message.idOnExternalPlatform);
    assert.equal(got[1].payload.account, CHANNEL);
  });

  it('answers a malformed reply 400 after authentication, and typing 204', async () => {
    const h = { 'Content-Type': 'application/json', Authorization: `Bearer ${cx.token}` };
    const bad = await fetch(`${nr.url}/integration/box/2.0/channel/${CHANNEL}/outbound`, {
      method: 'POST',
      headers: h,
      body: '{"thread":{',
    });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as any).error, 'invalid_request');
    assert.equal((await cx.senderAction(OPENID, true)).status, 204);
    await nr.waitForLog(/EMITTED .*"typing":true/, 5000);
  });

  it('shows the last reply and its counts in the node status (as the editor receives it)', async () => {
    // The editor learns node status over its comms websocket; status messages are retained, so subscribing now
    // returns the latest. Redrawn at most once a second, so wait for the last draw.
    await new Promise((r) => setTimeout(r, 1200));
    const ws = new WebSocket(`${nr.url.replace(/^http/, 'ws')}/comms`);
    try {
      const status = await new Promise<any>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no status over comms')), 5000);
        ws.on('open', () => ws.send(JSON.stringify({ subscribe: 'status/#' })));
        ws.on('message', (data) => {
          const list = JSON.parse((data as Buffer).toString('utf8')) as { topic: string; data: any }[];
          for (const m of Array.isArray(list) ? list : [list])
            if (m.topic === 'status/ci') {
              clearTimeout(t);
              resolve(m.data);
            }
        });
        ws.on('error', reject);
      });
      assert.equal(status.fill, 'green');
      // Replies: 2; tokens: 3 + 1 from the earlier tests; rejected: the malformed token request and reply only
      // (the 401 that opens each token dance is not a rejection).
      assert.match(status.text, /^last reply .+ · 2 replies · 4 tokens · 2 rejected$/);
    } finally {
      ws.close();
    }
  });

  it('logs the reply bodies at debug level, and never a secret or a token', () => {
    assert.match(nr.logs(), /\[debug\] \[cxone-dfo-in:box\] dfo3-reply \/2\.0\/channel\/.*body: \{/);
    const logs = nr.logs();
    for (const s of [creds.client_secret, cx.token as string])
      assert.ok(!logs.includes(s), 'a secret was logged');
  });
});
