/**
 * A Node-RED started the way users start it (red.js, a user directory, default settings: the editor and the node
 * endpoints on one port and root), with the pack in its node_modules. Real HTTP, real editor body parsers.
 */
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { buildRoot, fixturesDir } from '../harness/paths';
import { startNodeRed, type NodeRedProcess } from '../harness/process';

const probeDir = path.join(fixturesDir, 'probe-node');
const env = { WXCX_BUILD_ROOT: buildRoot };

const configs = [
  { id: 'tab', type: 'tab', label: 'test' },
  {
    id: 'wc',
    type: 'wechat-config',
    z: '',
    name: 'Acme',
    appId: 'wx2c2769f8efd9abc2',
    apiBase: 'https://api.weixin.qq.com',
  },
  {
    id: 'cc',
    type: 'cxone-dfo-config',
    z: '',
    name: 'Tenant',
    authIssuer: 'https://cxone.niceincontact.com',
    apiBase: '',
  },
];

function probe(id: string, p: string, limit = 1024): Record<string, unknown> {
  return { id, type: 'wxcx-probe', z: 'tab', path: p, limit, wires: [] };
}

async function post(url: string, body: string, contentType: string): Promise<{ status: number; json: any }> {
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': contentType }, body });
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json };
}

describe('in a Node-RED started like a user starts it', function () {
  this.timeout(60_000);

  describe('default settings (editor and endpoints on "/")', () => {
    let nr: NodeRedProcess;
    before(async () => {
      nr = await startNodeRed({
        settings: { nodesDir: [probeDir] },
        env,
        flows: [
          ...configs,
          probe('p1', '/probe'),
          { id: 'wi', type: 'wechat-in', z: 'tab', wechat: 'wc', path: '/wechat/webhook', wires: [[]] },
          { id: 'ci', type: 'cxone-dfo-in', z: 'tab', cxone: 'cc', path: '/integration/box', wires: [[]] },
        ],
      });
    });
    after(async () => {
      await nr?.stop();
    });

    it('loads the pack: the Admin API lists all six types, loaded, with no error', async () => {
      const res = await fetch(`${nr.url}/nodes`, { headers: { Accept: 'application/json' } });
      assert.equal(res.status, 200);
      const sets = (await res.json()) as any[];
      const ours = sets.filter((s) => s.module === '@wxcx/node-red-wechat-cxone');
      assert.equal(ours.length, 6, JSON.stringify(sets.map((s) => s.id)));
      for (const s of ours) {
        assert.equal(s.err, undefined, `${s.id}: ${s.err}`);
        assert.equal(s.enabled, true);
      }
      assert.deepEqual(ours.flatMap((s) => s.types).sort(), [
        'cxone-dfo-config',
        'cxone-dfo-in',
        'cxone-dfo-out',
        'wechat-config',
        'wechat-in',
        'wechat-out',
      ]);
    });

    it('serves the editor and the help and catalogs of every type', async () => {
      assert.equal((await fetch(`${nr.url}/`)).status, 200);
      const html = await (await fetch(`${nr.url}/nodes`, { headers: { Accept: 'text/html' } })).text();
      for (const t of [
        'wechat-config',
        'wechat-in',
        'wechat-out',
        'cxone-dfo-config',
        'cxone-dfo-in',
        'cxone-dfo-out',
      ]) {
        assert.ok(html.includes(`data-template-name="${t}"`), `${t} has an edit dialog`);
        assert.ok(html.includes(`data-help-name="${t}"`), `${t} has help`);
      }
      for (const lang of ['en-US', 'zh-CN']) {
        const res = await fetch(`${nr.url}/locales/@wxcx/node-red-wechat-cxone/wechat-in?lng=${lang}`);
        assert.equal(res.status, 200);
        const cat = (await res.json()) as any;
        assert.ok(cat['wechat-in']?.status?.listening, `${lang} catalog served`);
      }
      const icon = await fetch(`${nr.url}/icons/@wxcx/node-red-wechat-cxone/wxcx-wechat.svg`);
      assert.equal(icon.status, 200);
    });

    it('hands our routes the raw JSON and form bytes although the editor parsers come first', async () => {
      const json = '{"b": 1,   "a": [1, 2] }';
      let r = await post(`${nr.url}/probe`, json, 'application/json');
      assert.equal(r.status, 200);
      assert.equal(r.json.preParsed, false);
      assert.equal(r.json.sha256, createHash('sha256').update(json).digest('hex'));
      const form = 'grant_type=client_credentials&client_id=x%2By';
      r = await post(`${nr.url}/probe`, form, 'application/x-www-form-urlencoded');
      assert.equal(Buffer.from(r.json.raw, 'base64').toString(), form);
      // Malformed JSON is ours to judge, not the editor's (which would answer with an HTML error page).
      r = await post(`${nr.url}/probe`, '{"a":', 'application/json');
      assert.equal(r.status, 200);
      assert.equal(Buffer.from(r.json.raw, 'base64').toString(), '{"a":');
    });

    it('enforces the route limit on JSON bodies the editor would have accepted up to 5 MB', async () => {
      const big = JSON.stringify({ x: 'a'.repeat(5000) });
      const r = await post(`${nr.url}/probe`, big, 'application/json');
      assert.equal(r.status, 413);
    });

    it('keeps the editor working: its own routes still parse JSON', async () => {
      const res = await fetch(`${nr.url}/settings`, { headers: { Accept: 'application/json' } });
      assert.equal(res.status, 200);
      const s = (await res.json()) as any;
      assert.equal(s.httpNodeRoot, '/');
    });

    it('a redeploy moves the endpoint and leaves nothing on the old path; a path nobody owns is 404', async () => {
      await nr.deploy([...configs, probe('p1', '/moved')]);
      assert.equal((await post(`${nr.url}/probe`, '{}', 'application/json')).status, 404);
      assert.equal((await post(`${nr.url}/moved`, '{}', 'application/json')).status, 200);
      assert.equal(
        (await fetch(`${nr.url}/wechat/webhook`)).status,
        404,
        'the removed wechat-in left nothing behind',
      );
      assert.equal((await post(`${nr.url}/never-claimed`, 'x', 'text/plain')).status, 404);
    });

    it('two nodes on one path: the second is reported, and takes over when the first is removed', async () => {
      await nr.deploy([
        ...configs,
        { id: 'w1', type: 'wechat-in', z: 'tab', name: 'first', wechat: 'wc', path: '/dup', wires: [[]] },
        { id: 'w2', type: 'wechat-in', z: 'tab', name: 'second', wechat: 'wc', path: '/dup', wires: [[]] },
      ]);
      await nr.waitForLog(/\[wechat-in:second\].*\/dup.*wechat-in "first"/, 5000);
      assert.notEqual((await fetch(`${nr.url}/dup`)).status, 404);
    });
  });

  describe('httpNodeRoot "/api" (endpoints under a root of their own)', () => {
    let nr: NodeRedProcess;
    before(async () => {
      nr = await startNodeRed({
        settings: { nodesDir: [probeDir], httpNodeRoot: '/api' },
        env,
        flows: [...configs, probe('p1', '/probe')],
      });
    });
    after(async () => {
      await nr?.stop();
    });

    it('serves under the root and reports the full path', async () => {
      const r = await post(`${nr.url}/api/probe?x=1`, '{"a":1}', 'application/json');
      assert.equal(r.status, 200);
      assert.equal(r.json.fullPath, '/api/probe');
      assert.equal(Buffer.from(r.json.raw, 'base64').toString(), '{"a":1}');
      assert.equal((await post(`${nr.url}/probe`, '{}', 'application/json')).status, 404);
    });
  });
});
