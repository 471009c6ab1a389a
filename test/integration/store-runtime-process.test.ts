/**
 * Per-runtime state in a real red.js, where every node module gets its own `RED` (and its own `RED.nodes` and
 * `RED.settings`): wechat-config and cxone-dfo-config on the default file store share ONE open store, the health
 * endpoint lists the nodes of both modules, and a full redeploy closes and reopens the store cleanly; a second
 * Node-RED on the same user directory is refused the store with the catalog's explanation.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startNodeRed, type NodeRedProcess } from '../harness/process';

const flows = (label: string): Record<string, unknown>[] => [
  { id: 'tab', type: 'tab', label },
  { id: 'wc', type: 'wechat-config', name: 'Acme', appId: 'wx2c2769f8efd9abc2' },
  {
    id: 'cc',
    type: 'cxone-dfo-config',
    name: 'Tenant',
    authIssuer: 'http://127.0.0.1:9',
    apiBase: 'http://127.0.0.1:9',
  },
  { id: 'wi', type: 'wechat-in', z: 'tab', wechat: 'wc', path: '/wechat/rt', wires: [[]] },
  { id: 'ci', type: 'cxone-dfo-in', z: 'tab', cxone: 'cc', path: '/cxone/rt', wires: [[]] },
];
const credentials = {
  wc: { appSecret: 'app-secret-runtime-test', token: 'tok', encodingAESKey: '' },
  cc: { boxClientId: 'box', boxClientSecret: 'box-secret-runtime-test' },
};

/** The health snapshot once `ok` holds for it (the flows may still be starting), or the last one. */
async function health(nr: NodeRedProcess, ok: (h: any) => boolean = () => true): Promise<any> {
  const t0 = Date.now();
  for (;;) {
    const res = await fetch(`${nr.url}/wechat-cxone/health`);
    const h = res.status === 200 || res.status === 503 ? await res.json() : { status: res.status, nodes: [] };
    if (ok(h) || Date.now() - t0 > 10_000) return h;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const onFile = (h: any, id: string): boolean =>
  h.nodes?.find((n: any) => n.id === id)?.figures?.store?.connected === true;

describe('per-runtime state across node modules (red.js)', function () {
  this.timeout(60_000);
  let nr: NodeRedProcess | undefined;
  after(async () => {
    await nr?.stop();
    if (nr) fs.rmSync(nr.userDir, { recursive: true, force: true });
  });

  it('wechat-config and cxone-dfo-config on the default file store share one store; health lists both', async () => {
    nr = await startNodeRed({ flows: flows('one'), credentials });
    const h = await health(nr, (x) => onFile(x, 'wc') && onFile(x, 'cc'));
    const byId = new Map<string, any>(h.nodes.map((n: any) => [n.id, n]));
    assert.deepEqual(byId.get('wc')?.figures.store, { kind: 'file', connected: true });
    assert.deepEqual(byId.get('cc')?.figures.store, { kind: 'file', connected: true });
    assert.equal(h.status, 'ok', JSON.stringify(h));
    assert.doesNotMatch(nr.logs(), /already open|could not be served|path-taken/i);
    assert.ok(fs.existsSync(path.join(nr.userDir, 'wechat-cxone', 'default', 'lock')));

    // A full redeploy closes the store (the last config node let go) and reopens it; both nodes use it again.
    await nr.deploy(flows('two'), credentials);
    const h2 = await health(nr, (x) => x.nodes.length === 4 && onFile(x, 'wc') && onFile(x, 'cc'));
    const ids = h2.nodes.map((n: any) => n.id).sort();
    assert.deepEqual(ids, ['cc', 'ci', 'wc', 'wi']);
    for (const id of ['wc', 'cc']) {
      assert.deepEqual(
        h2.nodes.find((n: any) => n.id === id).figures.store,
        { kind: 'file', connected: true },
        id,
      );
    }
    assert.doesNotMatch(nr.logs(), /already open/i);
  });

  it("a second Node-RED on the same user directory is refused the file store, in the catalog's words", async function () {
    assert.ok(nr, 'the first test started a Node-RED');
    const second = await startNodeRed({ userDir: nr.userDir });
    try {
      const line = await second.waitForLog(
        /\[wechat-config:Acme\] The file store in .* is in use by process \d+ on [^\n]*/,
      );
      assert.match(line, new RegExp(`process ${nr.child.pid} on `));
      assert.match(second.logs(), /choose the Redis store for several instances/);
      const res = await fetch(`${second.url}/wechat-cxone/health`);
      assert.equal(res.status, 503);
      // The first one is not disturbed.
      const h = await health(nr);
      assert.equal(h.status, 'ok');
    } finally {
      await second.stop();
    }
  });
});
