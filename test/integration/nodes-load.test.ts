/** All six node types in a real Node-RED runtime (node-red-node-test-helper): they load, claim, and let go. */
import * as assert from 'node:assert/strict';
import { helper, loadFlow, startHelper, stopHelper, type TestRuntime } from '../harness/helper';

function statusesOf(id: string): any[] {
  const spy = helper._NodePrototype.status;
  return spy
    .getCalls()
    .filter((c: any) => c.thisValue?.id === id)
    .map((c: any) => c.args[0]);
}

const wechatConfig = {
  id: 'wc',
  type: 'wechat-config',
  name: 'Acme',
  appId: 'wx2c2769f8efd9abc2',
  apiBase: 'https://api.weixin.qq.com',
};
const cxoneConfig = {
  id: 'cc',
  type: 'cxone-dfo-config',
  name: 'Tenant',
  authIssuer: 'https://cxone.niceincontact.com',
  apiBase: '',
};

describe('the six node types in a runtime', function () {
  this.timeout(20_000);
  before(() => startHelper());
  after(() => stopHelper());
  let rt: TestRuntime | undefined;
  afterEach(async () => {
    await rt?.close();
    rt = undefined;
  });

  it('loads all six with their properties and credentials', async () => {
    const flow = [
      wechatConfig,
      cxoneConfig,
      { id: 'wi', type: 'wechat-in', name: 'in', wechat: 'wc', path: '/wechat/webhook', wires: [[]] },
      { id: 'wo', type: 'wechat-out', wechat: 'wc', wires: [[]] },
      { id: 'ci', type: 'cxone-dfo-in', cxone: 'cc', path: '/integration/box', wires: [[]] },
      { id: 'co', type: 'cxone-dfo-out', cxone: 'cc', channelId: 'chat_1', wires: [[]] },
    ];
    const creds = {
      wc: {
        appSecret: 's3cret',
        token: 'tok',
        encodingAESKey: 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG',
      },
      cc: {
        clientId: 'cid',
        clientSecret: 'csec',
        accessKeyId: 'akid',
        accessKeySecret: 'aksec',
        boxClientId: 'box',
        boxClientSecret: 'boxsec',
        jwtSecret: 'jwt',
      },
    };
    rt = await loadFlow(flow, creds);
    for (const n of flow) assert.ok(rt.getNode(n.id), `${n.type} ${n.id} is running`);
    const wc = rt.getNode('wc');
    assert.equal(wc.appId, 'wx2c2769f8efd9abc2');
    assert.equal(wc.credentials.appSecret, 's3cret');
    assert.equal(wc.credentials.encodingAESKey, 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG');
    const cc = rt.getNode('cc');
    assert.equal(cc.authIssuer, 'https://cxone.niceincontact.com');
    assert.equal(cc.credentials.boxClientId, 'box');
    assert.equal(cc.credentials.jwtSecret, 'jwt');
    assert.equal(statusesOf('wi').at(-1)?.fill, 'green');
    assert.equal(statusesOf('ci').at(-1)?.fill, 'green');
    // Both endpoints answer on the runtime's httpNode over real HTTP.
    const res = await fetch(`${rt.url}/integration/box/1.0/token`, { method: 'POST', body: '{}' });
    assert.notEqual(res.status, 404);
    const res2 = await fetch(`${rt.url}/wechat/webhook`);
    assert.notEqual(res2.status, 404);
  });

  it('turns the second node that claims a path red, naming the holder', async () => {
    rt = await loadFlow([
      wechatConfig,
      { id: 'a', type: 'wechat-in', name: 'first', wechat: 'wc', path: '/same', wires: [[]] },
      { id: 'b', type: 'wechat-in', name: 'second', wechat: 'wc', path: '/same/', wires: [[]] },
    ]);
    const a = statusesOf('a').at(-1);
    const b = statusesOf('b').at(-1);
    assert.equal(a.fill, 'green');
    assert.equal(b.fill, 'red');
    const errors = helper._NodePrototype.error.getCalls().filter((c: any) => c.thisValue?.id === 'b');
    assert.ok(
      errors.some((c: any) => String(c.args[0]).includes('wechat-in.errors.path-taken')),
      'an error is raised',
    );
  });

  it('leaves no handler behind when the flow is unloaded', async () => {
    rt = await loadFlow([
      wechatConfig,
      { id: 'a', type: 'wechat-in', wechat: 'wc', path: '/gone', wires: [[]] },
    ]);
    assert.notEqual((await fetch(`${rt.url}/gone`)).status, 404);
    const server = rt.server;
    await helper.unload();
    // The server still routes to the same httpNode app; the path now has no owner.
    const res = await fetch(`http://127.0.0.1:${(server.address() as any).port}/gone`);
    assert.equal(res.status, 404);
  });

  it('without a config node, says so in status and does not claim', async () => {
    rt = await loadFlow([{ id: 'x', type: 'wechat-in', path: '/noconf', wires: [[]] }]);
    assert.equal(statusesOf('x').at(-1)?.fill, 'red');
    assert.equal((await fetch(`${rt.url}/noconf`)).status, 404);
  });
});
