/**
 * wechat-config's "test connection" admin route in a Node-RED started like a user starts it (red.js) with admin
 * authentication on: no token or a read-only user gets 401 (the route sits behind `wechat-config.write`), an admin
 * gets WeChat's answer in words from the real message catalogs, and the AppSecret appears nowhere in the log.
 */
import * as assert from 'node:assert/strict';
import { startNodeRed, type NodeRedProcess } from '../harness/process';
import { WechatSimulator } from '../../sandbox/sim/wechat';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const bcrypt = require('bcryptjs') as { hashSync(s: string, rounds: number): string };

const PASSWORD = 'editor-pass-8c1f';

async function login(url: string, username: string, scope = '*'): Promise<string> {
  const res = await fetch(`${url}/auth/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      client_id: 'node-red-admin',
      grant_type: 'password',
      scope,
      username,
      password: PASSWORD,
    }).toString(),
  });
  assert.equal(res.status, 200, `login as ${username}`);
  return ((await res.json()) as { access_token: string }).access_token;
}

describe('wechat-config test connection in red.js with admin authentication', function () {
  this.timeout(60_000);
  let sim: WechatSimulator;
  let nr: NodeRedProcess;

  before(async () => {
    sim = new WechatSimulator();
    await sim.start();
    const hash = bcrypt.hashSync(PASSWORD, 8);
    nr = await startNodeRed({
      settings: {
        adminAuth: {
          type: 'credentials',
          users: [
            { username: 'admin', password: hash, permissions: '*' },
            { username: 'viewer', password: hash, permissions: 'read' },
          ],
        },
      },
      flows: [{ id: 'wc', type: 'wechat-config', name: 'Acme', appId: sim.appId, apiBase: sim.url }],
      credentials: { wc: { appSecret: sim.appSecret } },
    });
  });
  after(async () => {
    await nr?.stop();
    await sim?.stop();
  });

  const post = (token?: string, body: Record<string, unknown> = {}): Promise<Response> =>
    fetch(`${nr.url}/wechat-config/wc/test`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
      },
      body: JSON.stringify(body),
    });

  it('answers 401 without a token and to a read-only user, calling WeChat for neither', async () => {
    assert.equal((await post()).status, 401);
    const viewer = await login(nr.url, 'viewer', 'read');
    assert.equal((await post(viewer)).status, 401);
    assert.equal(sim.api.fetches.stable, 0);
  });

  it("tests an admin's request against WeChat and explains 40164 in words", async () => {
    const admin = await login(nr.url, 'admin');
    const ok = await post(admin);
    assert.equal(ok.status, 200);
    assert.equal(((await ok.json()) as { ok: boolean }).ok, true);

    sim.api.setIpWhitelisted(false);
    const r = await post(admin);
    const body = (await r.json()) as Record<string, unknown>;
    assert.equal(body.ok, false);
    assert.equal(body.code, 40164);
    assert.match(String(body.reason), /this server's IP is not on the account's IP whitelist/);
    sim.api.setIpWhitelisted(true);
  });

  it('answers a missing AppSecret from the real catalog', async () => {
    const admin = await login(nr.url, 'admin');
    const r = await post(admin, { appId: sim.appId, apiBase: sim.url, appSecret: '' });
    // An empty typed secret means "the saved one": the deployed node has one, so this succeeds…
    assert.equal(r.status, 200);
    // …while a node that is not deployed has none.
    const res = await fetch(`${nr.url}/wechat-config/not-deployed/test`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${admin}` },
      body: JSON.stringify({ appId: sim.appId, apiBase: sim.url }),
    });
    assert.equal(res.status, 400);
    const body = (await res.json()) as Record<string, unknown>;
    assert.equal(body.code, 'no-secret');
    assert.equal(body.reason, 'Enter the AppSecret first.');
  });

  it('never writes the AppSecret or a token to the log', () => {
    const log = nr.logs();
    assert.ok(!log.includes(sim.appSecret));
    const token = sim.api.currentStableToken;
    assert.ok(token && !log.includes(token));
  });
});
