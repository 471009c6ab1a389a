/**
 * Every route the pack adds to Node-RED's admin API (`RED.httpAdmin`) is behind `RED.auth.needsPermission`.
 *
 * The list is not written down here: it is read from a test-helper runtime in which all six node types are loaded
 * (whatever routes the nodes register, now or later, are found), and then each of those routes is called on a
 * real red.js with admin authentication: anonymous → 401, a read-only user → 401 for anything that changes or
 * calls out (POST), an administrator → through. The helper's admin app also must have no catch-all middleware of
 * ours (a `use()` would sit in front of every route, permission or not).
 */
import * as assert from 'node:assert/strict';
import { helper, loadFlow, startHelper, stopHelper } from '../harness/helper';
import { startNodeRed, type NodeRedProcess } from '../harness/process';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const bcrypt = require('bcryptjs') as { hashSync(s: string, rounds: number): string };

const PASSWORD = 'sec-admin-password-4f1d';

interface Route {
  method: string;
  path: string;
}

const flow = (): Record<string, unknown>[] => [
  { id: 'tab', type: 'tab', label: 't' },
  {
    id: 'wc',
    type: 'wechat-config',
    z: '',
    appId: 'wx5ec0000000000002',
    apiBase: 'http://127.0.0.1:9',
    store: 'memory',
  },
  { id: 'wi', type: 'wechat-in', z: 'tab', wechat: 'wc', path: '/a/wx', wires: [[]] },
  { id: 'wo', type: 'wechat-out', z: 'tab', wechat: 'wc', wires: [[], []] },
  {
    id: 'cc',
    type: 'cxone-dfo-config',
    z: '',
    authIssuer: 'http://127.0.0.1:9',
    apiBase: 'http://127.0.0.1:9/dfo/3.0',
    store: 'memory',
  },
  { id: 'ci', type: 'cxone-dfo-in', z: 'tab', cxone: 'cc', path: '/a/box', wires: [[]] },
  { id: 'co', type: 'cxone-dfo-out', z: 'tab', cxone: 'cc', channelId: 'chat_1', wires: [[], []] },
];
const creds = {
  wc: { appSecret: 'sec-admin-appsecret-77', token: 'sec-admin-token-77', encodingAESKey: '' },
  cc: {
    clientId: 'sec-admin-cid',
    clientSecret: 'sec-admin-csecret-88',
    accessKeyId: 'sec-admin-akid',
    accessKeySecret: 'sec-admin-aksecret-99',
    boxClientId: 'box',
    boxClientSecret: 'sec-admin-boxsecret-11',
    jwtSecret: '',
  },
};

/** The routes on an Express app's router (Express 4 `_router`, Express 5 `router`), and its bare middlewares. */
function routesOf(app: any): { routes: Route[]; uses: string[] } {
  const stack: any[] = app?._router?.stack ?? app?.router?.stack ?? [];
  const routes: Route[] = [];
  const uses: string[] = [];
  for (const layer of stack) {
    if (layer.route) {
      for (const m of Object.keys(layer.route.methods ?? {})) {
        if (m !== '_all') routes.push({ method: m.toUpperCase(), path: String(layer.route.path) });
      }
    } else uses.push(String(layer.name ?? 'anonymous'));
  }
  return { routes, uses };
}

async function login(url: string, user: string, scope = '*'): Promise<string> {
  const res = await fetch(`${url}/auth/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      client_id: 'node-red-editor',
      grant_type: 'password',
      scope,
      username: user,
      password: PASSWORD,
    }),
  });
  assert.equal(res.status, 200, `login as ${user}`);
  return ((await res.json()) as { access_token: string }).access_token;
}

describe('security: every admin route of the pack needs a permission', function () {
  this.timeout(60_000);
  let found: Route[] = [];
  let nr: NodeRedProcess;

  before(async () => {
    await startHelper();
    const rt = await loadFlow(flow(), creds);
    const { routes, uses } = routesOf(helper._httpAdmin);
    found = routes;
    // The helper's admin app starts with its own JSON and form parsers; ours adds only the route registry's
    // pre-hook (it reads the raw body of our httpNode routes ahead of those parsers) and its front hook (the
    // outermost app's first layer, ADR 0016); both answer only the registry's own claimed node routes, never an
    // admin path. Anything else would be a bare `use()` in front of every admin route.
    assert.deepEqual(
      uses.filter((u) => !/^(query|expressInit|jsonParser|urlencodedParser|preHook|frontHook)$/.test(u)),
      [],
      'no catch-all admin middleware',
    );
    await rt.close();
    await stopHelper();
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
      flows: flow(),
      credentials: creds,
    });
  });
  after(async () => {
    await nr?.stop();
  });

  const concrete = (p: string): string =>
    p
      .replace(/:id\b/g, 'cc')
      .replace(/:(\w+)/g, 'x')
      .replace(/\/\*$/, '/x');
  const call = (r: Route, token?: string): Promise<Response> =>
    fetch(`${nr.url}${concrete(r.path)}`, {
      method: r.method,
      headers: {
        'Content-Type': 'application/json',
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
      },
      body: r.method === 'GET' || r.method === 'HEAD' ? undefined : '{}',
    });

  it('finds the admin routes the nodes register (test connection, channels, health)', () => {
    const names = found.map((r) => `${r.method} ${r.path}`);
    console.log(`      admin routes of the pack: ${names.join(', ')}`);
    assert.ok(found.length >= 3, names.join(', '));
    assert.ok(names.some((n) => n.includes('/wechat-config/')));
    assert.ok(names.some((n) => n.includes('/cxone-dfo-config/')));
  });

  it('answers every one of them 401 without a token', async () => {
    for (const r of found) {
      const res = await call(r);
      assert.equal(res.status, 401, `${r.method} ${r.path}`);
    }
  });

  it('answers a read-only user 401 on every POST route; lets it read what is read-only', async () => {
    const viewer = await login(nr.url, 'viewer', 'read');
    for (const r of found) {
      const res = await call(r, viewer);
      if (r.method === 'GET') assert.notEqual(res.status, 401, `${r.method} ${r.path} is readable`);
      else assert.equal(res.status, 401, `${r.method} ${r.path} refuses a read-only user`);
    }
  });

  it('lets an administrator through, with an answer that names no secret', async () => {
    const admin = await login(nr.url, 'admin');
    for (const r of found) {
      const res = await call(r, admin);
      assert.notEqual(res.status, 401, `${r.method} ${r.path}`);
      assert.ok(res.status < 500 || res.status === 503, `${r.method} ${r.path} → ${res.status}`);
      const text = await res.text();
      for (const s of [
        creds.wc.appSecret,
        creds.cc.clientSecret,
        creds.cc.accessKeySecret,
        creds.cc.boxClientSecret,
      ])
        assert.ok(!text.includes(s), `${r.method} ${r.path} answer has no secret`);
    }
  });
});
