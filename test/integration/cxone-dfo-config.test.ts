/**
 * cxone-dfo-config in a Node-RED runtime: its editor routes on RED.httpAdmin ("test connection", channel list /
 * create / remove) against the CXone simulator, with saved and unsaved credentials, and its own DFO client.
 */
import * as assert from 'node:assert/strict';
import { helper, loadFlow, startHelper, stopHelper, type TestRuntime } from '../harness/helper';
import { CxoneSimulator } from '../../sandbox/sim/cxone';

describe('cxone-dfo-config: test connection and channel admin from the editor', function () {
  this.timeout(20_000);
  let sim: CxoneSimulator;
  let rt: TestRuntime;

  before(() => startHelper());
  after(() => stopHelper());
  beforeEach(async () => {
    sim = new CxoneSimulator({ channels: ['chat_other'] });
    await sim.start();
    const s = sim.integration();
    rt = await loadFlow(
      [
        {
          id: 'cc',
          type: 'cxone-dfo-config',
          authIssuer: s.authIssuer,
          apiBase: '',
          channelIntegrationId: 'int-1',
        },
      ],
      { cc: s.credentials },
    );
  });
  afterEach(async () => {
    await rt.close();
    await sim.stop();
  });

  const PW = '__PWRD__';
  const unchanged = { clientId: PW, clientSecret: PW, accessKeyId: PW, accessKeySecret: PW };

  function post(path: string, body: unknown): Promise<any> {
    return helper.request().post(path).set('Content-Type', 'application/json').send(body);
  }

  it('tests the deployed credentials: token, discovered API base, channels, without touching the running token', async () => {
    const r = await post('/cxone-dfo-config/cc/test', { credentials: unchanged });
    assert.equal(r.status, 200);
    assert.equal(r.body.ok, true, JSON.stringify(r.body));
    assert.equal(r.body.tenantId, sim.dfo.opts.tenantId);
    assert.equal(r.body.apiBase, `${sim.url}/dfo/3.0`);
    assert.equal(r.body.apiBaseSource, 'discovered');
    assert.deepEqual(r.body.channels, []);
    assert.deepEqual(
      r.body.steps.map((s: any) => [s.step, s.ok]),
      [
        ['token', true],
        ['discovery', true],
        ['channels', true],
      ],
    );
    assert.equal(r.headers['cache-control'], 'no-store');
    const cc = rt.getNode('cc');
    assert.equal(cc.dfo().auth.counters.tokenFetches, 0, 'the running integration kept its own (no) token');
    const c = sim.integration().credentials;
    assert.ok(!JSON.stringify(r.body).includes(c.accessKeySecret));
  });

  it('tests the dialog’s unsaved values: a wrong secret is reported in words at the token step', async () => {
    const r = await post('/cxone-dfo-config/cc/test', {
      authIssuer: sim.url,
      credentials: { ...unchanged, clientSecret: 'typed-but-wrong' },
    });
    assert.equal(r.status, 200);
    assert.equal(r.body.ok, false);
    assert.equal(r.body.step, 'token');
    assert.match(r.body.error, /Client ID and Client secret/);
    assert.ok(!JSON.stringify(r.body).includes('typed-but-wrong'));
    const sent = sim.dfo.tokenRequests.at(-1)!;
    assert.equal(
      sent.authorization,
      'Basic ' + Buffer.from(`${sim.integration().credentials.clientId}:typed-but-wrong`).toString('base64'),
    );
  });

  it('tests a node not deployed yet with everything from the dialog; says which credential is missing', async () => {
    const c = sim.integration().credentials;
    const ok = await post('/cxone-dfo-config/new-node-1/test', {
      authIssuer: sim.url,
      apiBase: sim.dfo.apiBase,
      credentials: c,
    });
    assert.equal(ok.body.ok, true);
    assert.equal(ok.body.apiBaseSource, 'configured');
    const missing = await post('/cxone-dfo-config/new-node-2/test', {
      authIssuer: sim.url,
      credentials: { ...c, accessKeySecret: '' },
    });
    assert.equal(missing.body.ok, false);
    assert.equal(missing.body.step, 'credentials');
    assert.match(missing.body.error, /Access key secret/);
    const badUrl = await post('/cxone-dfo-config/cc/test', {
      authIssuer: 'javascript:alert(1)',
      credentials: unchanged,
    });
    assert.equal(badUrl.status, 400);
  });

  it('creates a channel with the wechat icon, lists it, and removes it: no Postman needed', async () => {
    const created = await post('/cxone-dfo-config/cc/channels', {
      credentials: unchanged,
      channel: { name: 'WeChat Acme', idOnExternalPlatform: 'gh_0123456789ab' },
    });
    assert.equal(created.status, 200);
    assert.equal(created.body.ok, true, JSON.stringify(created.body));
    const id = created.body.channel.id as string;
    const stored = sim.dfo.channels.get(id)!;
    assert.equal(stored.externalPlatformIcon, 'wechat');
    assert.equal(stored.channelIntegrationId, 'int-1');
    assert.equal(stored.name, 'WeChat Acme');
    const list = await post('/cxone-dfo-config/cc/channels/list', { credentials: unchanged });
    assert.deepEqual(
      list.body.channels.map((c: any) => c.id),
      [id],
      'only the integration’s channels',
    );
    // A channel of another integration is not removed from here.
    const other = await post('/cxone-dfo-config/cc/channels/chat_other/delete', { credentials: unchanged });
    assert.equal(other.body.ok, false);
    assert.ok(sim.dfo.channels.has('chat_other'));
    const removed = await post(`/cxone-dfo-config/cc/channels/${encodeURIComponent(id)}/delete`, {
      credentials: unchanged,
    });
    assert.equal(removed.body.ok, true);
    assert.ok(!sim.dfo.channels.has(id));
  });

  it('a channel form without the account id or integration id is refused with the fields', async () => {
    const r = await post('/cxone-dfo-config/cc/channels', {
      credentials: unchanged,
      channelIntegrationId: '',
      channel: { name: 'x' },
    });
    assert.equal(r.body.ok, false);
    assert.deepEqual(r.body.problems.map((p: any) => p.field).sort(), [
      'channelIntegrationId',
      'idOnExternalPlatform',
    ]);
    assert.ok(!sim.dfo.requests.some((x) => x.method === 'POST' && x.path === '/dfo/3.0/channels'));
  });

  it('a CXone 400 on channel creation is passed on with the fields CXone named', async () => {
    sim.dfo.failNext(1, 400, {
      match: /^\/channels$/,
      body: { errors: [{ field: 'name', message: 'This value is already used.' }] },
    });
    const r = await post('/cxone-dfo-config/cc/channels', {
      credentials: unchanged,
      channel: { idOnExternalPlatform: 'gh_1' },
    });
    assert.equal(r.status, 400);
    assert.equal(r.body.ok, false);
    assert.match(r.body.error, /name: This value is already used\./);
  });
});
