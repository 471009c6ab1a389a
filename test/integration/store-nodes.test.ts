/**
 * The store and health endpoints in a real Node-RED runtime (node-red-node-test-helper, real HTTP): the backend
 * picked from the config node's properties, released on close; the public and admin health endpoints.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { helper, loadFlow, startHelper, stopHelper, type TestRuntime } from '../harness/helper';
import { cleanup, REDIS_URL, uniquePrefix } from './store-redis-helpers';

const wechatConfig = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  id: 'wc',
  type: 'wechat-config',
  name: 'Acme',
  appId: 'wx2c2769f8efd9abc2',
  apiBase: 'https://api.weixin.qq.com',
  ...extra,
});
const creds = { wc: { appSecret: 's3cret-app', token: 'tok', encodingAESKey: '' } };

async function getJson(url: string): Promise<{ status: number; body: any; text: string }> {
  const res = await fetch(url);
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, body, text };
}

async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe('store and health in a runtime', function () {
  this.timeout(30_000);
  let rt: TestRuntime | undefined;
  afterEach(async () => {
    await rt?.close();
    rt = undefined;
  });

  describe('without a user directory', function () {
    before(() => startHelper());
    after(() => stopHelper());

    it('a config node without store properties gets the memory store; the health endpoint lists it', async function () {
      rt = await loadFlow([wechatConfig()], creds);
      const cfg = rt.getNode('wc');
      assert.equal(cfg.store.kind, 'memory');
      const h = await getJson(`${rt.url}/wechat-cxone/health`);
      assert.equal(h.status, 200);
      assert.equal(h.body.status, 'ok');
      const node = h.body.nodes.find((n: any) => n.id === 'wc');
      assert.equal(node.type, 'wechat-config');
      assert.deepEqual(node.figures.store, { kind: 'memory', connected: true });
      const m = await fetch(`${rt.url}/wechat-cxone/health/metrics`);
      assert.match(m.headers.get('content-type')!, /text\/plain; version=0\.0\.4/);
      assert.match(await m.text(), /^wxcx_store_connected\{node="wc",type="wechat-config",name="Acme"\} 1$/m);
    });

    it('the health path is free again once the last node closed', async function () {
      rt = await loadFlow([wechatConfig()], creds);
      assert.equal((await fetch(`${rt.url}/wechat-cxone/health`)).status, 200);
      await rt.close();
      rt = await loadFlow([], {});
      assert.equal((await fetch(`${rt.url}/wechat-cxone/health`)).status, 404);
    });

    it('an unreachable Redis makes the runtime "down" (503); the admin endpoint says why, without the password', async function () {
      const port = await closedPort();
      rt = await loadFlow(
        [wechatConfig({ store: 'redis', redisUrl: `redis://127.0.0.1:${port}`, keyPrefix: 'x:' })],
        { wc: { ...creds.wc, redisPassword: 'r3dis-pw' } },
      );
      const cfg = rt.getNode('wc');
      assert.equal(cfg.store.kind, 'redis');
      await assert.rejects(cfg.store.get('k'), /cannot reach Redis at 127\.0\.0\.1:\d+/);
      const pub = await getJson(`${rt.url}/wechat-cxone/health`);
      assert.equal(pub.status, 503);
      assert.equal(pub.body.status, 'down');
      assert.doesNotMatch(pub.text, /cannot reach|r3dis-pw/);
      const admin = await helper.request().get('/wechat-cxone/health').expect(503);
      const text = JSON.stringify(admin.body);
      assert.match(text, /cannot reach Redis at 127\.0\.0\.1/);
      assert.doesNotMatch(text, /r3dis-pw/);
      const prom = await helper.request().get('/wechat-cxone/health?format=prometheus').expect(200);
      assert.match(prom.text, /^wxcx_up 2$/m);
    });

    it('a Redis store on the real server, with the key prefix from the editor', async function () {
      const prefix = uniquePrefix('nodes');
      try {
        rt = await loadFlow(
          [wechatConfig({ store: 'redis', redisUrl: REDIS_URL, keyPrefix: prefix })],
          creds,
        );
        const cfg = rt.getNode('wc');
        assert.equal(await cfg.store.setIfAbsent('wxcx:wechat:dedupe:1', '1', 10_000), true);
        assert.equal(await cfg.store.setIfAbsent('wxcx:wechat:dedupe:1', '1', 10_000), false);
        const h = await getJson(`${rt.url}/wechat-cxone/health`);
        assert.deepEqual(h.body.nodes.find((n: any) => n.id === 'wc').figures.store, {
          kind: 'redis',
          connected: true,
        });
      } finally {
        await rt?.close();
        rt = undefined;
        await cleanup(prefix);
      }
    });
  });

  describe('with a user directory', function () {
    const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxcx-nodes-'));
    before(() => startHelper({ userDir }));
    after(async () => {
      await stopHelper();
      fs.rmSync(userDir, { recursive: true, force: true });
    });

    it('a config node without store properties gets the file store in <userDir>/wechat-cxone/default, released on close', async function () {
      rt = await loadFlow([wechatConfig()], creds);
      const cfg = rt.getNode('wc');
      assert.equal(cfg.store.kind, 'file');
      await cfg.store.set('k', 'v');
      const dir = path.join(userDir, 'wechat-cxone', 'default');
      assert.ok(fs.existsSync(path.join(dir, 'data.log')));
      assert.ok(fs.existsSync(path.join(dir, 'lock')));
      await rt.close();
      rt = undefined;
      assert.equal(
        fs.existsSync(path.join(dir, 'lock')),
        false,
        'the lock is released with the last config node',
      );
      rt = await loadFlow([wechatConfig()], creds);
      assert.equal(await rt.getNode('wc').store.get('k'), 'v', 'a redeploy finds the data');
    });

    it('store "memory" chosen in the editor wins over the default', async function () {
      rt = await loadFlow([wechatConfig({ store: 'memory' })], creds);
      assert.equal(rt.getNode('wc').store.kind, 'memory');
    });
  });
});
