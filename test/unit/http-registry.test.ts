/**
 * The route registry against real HTTP: an Express app laid out as Node-RED lays out its own (the editor's app
 * with its JSON and form body parsers mounted first, the node app after it, both on one root).
 */
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import express from 'express';
import bodyParser from 'body-parser';
import {
  routeRegistry,
  type RouteContext,
  type RouteRegistry,
  normalizeBasePath,
} from '../../lib/http/registry';

interface Rig {
  url: string;
  reg: RouteRegistry;
  admin: express.Express;
  /**
   * Paths that reached the outermost app's own middleware (mounted there first, as red.js's `httpAdminAuth`),
   * the editor's app past its body parsers, and the node app.
   */
  seen: { top: string[]; admin: string[]; node: string[] };
  close(): Promise<void>;
}

/**
 * Node-RED's layout: `app.use(adminRoot, admin)`, then `httpNodeAuth` when set (`between`), then
 * `app.use(nodeRoot, httpNode)`.
 */
async function rig(
  opts: {
    nodeRoot?: string;
    adminRoot?: string;
    withAdmin?: boolean;
    between?: express.RequestHandler;
    settings?: {
      httpNodeAuth?: unknown;
      httpAuth?: unknown;
      httpAdminAuth?: unknown;
      httpAdminMiddleware?: unknown;
    };
    /** Express's `trust proxy` on the outermost app. */
    trustProxy?: boolean;
  } = {},
): Promise<Rig> {
  const nodeRoot = opts.nodeRoot ?? '/';
  const adminRoot = opts.adminRoot ?? '/';
  const seen: Rig['seen'] = { top: [], admin: [], node: [] };
  const app = express();
  if (opts.trustProxy) app.set('trust proxy', true);
  app.use((req, _res, next) => {
    seen.top.push(req.originalUrl);
    next();
  });
  const admin = express();
  admin.use(bodyParser.json({ limit: '5mb' }));
  admin.use(bodyParser.urlencoded({ limit: '5mb', extended: true }));
  admin.use((req, _res, next) => {
    seen.admin.push(req.originalUrl);
    next();
  });
  admin.post('/flows', (req, res) => {
    res.json({ adminSaw: req.body });
  });
  const httpNode = express();
  httpNode.use((req, _res, next) => {
    seen.node.push(req.originalUrl);
    next();
  });
  if (opts.withAdmin !== false) app.use(adminRoot, admin);
  if (opts.between) app.use(nodeRoot, opts.between);
  app.use(nodeRoot, httpNode);
  const reg = routeRegistry(httpNode, opts.withAdmin === false ? null : admin, {
    httpNodeRoot: nodeRoot,
    ...opts.settings,
  });
  const server = http.createServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    reg,
    admin,
    seen,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function echo(ctx: RouteContext): void {
  const raw = ctx.rawBody;
  ctx.res.writeHead(200, { 'Content-Type': 'application/json' });
  ctx.res.end(
    JSON.stringify({
      raw: raw ? raw.toString('utf8') : null,
      sha256: raw ? createHash('sha256').update(raw).digest('hex') : null,
      preParsed: ctx.parsedBody !== undefined,
      params: ctx.params,
      query: [...ctx.query.entries()],
      subPath: ctx.subPath,
      fullPath: ctx.fullPath,
    }),
  );
}

/** Sends a request with full control over headers and body chunks (fetch adds its own Content-Length). */
function rawRequest(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; chunks?: (Buffer | string)[]; delayMs?: number },
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'POST', headers: opts.headers }, (res) => {
      const bufs: Buffer[] = [];
      res.on('data', (b: Buffer) => bufs.push(b));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(bufs).toString() }),
      );
    });
    req.on('error', (e: NodeJS.ErrnoException) => {
      // The server may answer and close before we finish writing a refused body.
      if (e.code === 'ECONNRESET' || e.code === 'EPIPE') return;
      reject(e);
    });
    const chunks = opts.chunks ?? [];
    let i = 0;
    const writeNext = (): void => {
      if (i >= chunks.length) {
        req.end();
        return;
      }
      req.write(chunks[i++]);
      if (opts.delayMs) setTimeout(writeNext, opts.delayMs);
      else writeNext();
    };
    writeNext();
  });
}

describe('route registry (lib/http/registry)', function () {
  let r: Rig;
  afterEach(async () => {
    await r?.close();
  });

  it('normalises base paths and refuses ones URLs cannot carry', () => {
    assert.equal(normalizeBasePath('wechat//webhook/'), '/wechat/webhook');
    assert.equal(normalizeBasePath('/'), '/');
    assert.throws(() => normalizeBasePath('/a b'), /cannot appear/);
    assert.throws(() => normalizeBasePath('/a/../b'), /\.\./);
  });

  it('dispatches to the owner with raw bytes, params and the exact query, and 404s what nobody owns', async () => {
    r = await rig();
    r.reg.claim({
      owner: 'n1',
      label: 'n1',
      basePath: '/hook',
      routes: [
        { method: 'POST', pattern: '', handler: echo },
        { method: 'POST', pattern: '/1.0/posts/:postId/messages', handler: echo },
      ],
    });
    const xml = '<xml><Content><![CDATA[你好 😀 ]]]]><![CDATA[>]]></Content></xml>';
    let res = await fetch(`${r.url}/hook?signature=a%2Bb&timestamp=1&nonce=2`, {
      method: 'POST',
      headers: { 'Content-Type': 'text/xml' },
      body: xml,
    });
    assert.equal(res.status, 200);
    let j = (await res.json()) as any;
    assert.equal(j.raw, xml);
    assert.deepEqual(j.query, [
      ['signature', 'a+b'],
      ['timestamp', '1'],
      ['nonce', '2'],
    ]);
    res = await fetch(`${r.url}/HOOK/1.0/posts/p%2F1/messages`, { method: 'POST', body: '{}' });
    j = (await res.json()) as any;
    assert.deepEqual(j.params, { postId: 'p/1' });
    assert.equal(j.subPath, '/1.0/posts/p%2F1/messages');
    res = await fetch(`${r.url}/hook/other`, { method: 'POST', body: 'x' });
    assert.equal(res.status, 404);
    res = await fetch(`${r.url}/nobody`, { method: 'POST', body: 'x' });
    assert.equal(res.status, 404);
  });

  it('keeps JSON and form bytes intact although the editor parsers run first on the same root', async () => {
    r = await rig();
    r.reg.claim({
      owner: 'n1',
      label: 'n1',
      basePath: '/box',
      routes: [{ method: 'POST', pattern: '/1.0/token', handler: echo }],
    });
    const json = '{ "grant_type":"client_credentials",\n "client_id":"a" }';
    let res = await fetch(`${r.url}/box/1.0/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: json,
    });
    let j = (await res.json()) as any;
    assert.equal(j.raw, json, 'JSON bytes reach the route unparsed, whitespace and all');
    assert.equal(j.preParsed, false);
    const form = 'grant_type=client_credentials&client_id=a%20b';
    res = await fetch(`${r.url}/box/1.0/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: form,
    });
    j = (await res.json()) as any;
    assert.equal(j.raw, form);
    // The editor's own routes still get their parsed bodies.
    res = await fetch(`${r.url}/flows`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"a":1}',
    });
    assert.deepEqual(await res.json(), { adminSaw: { a: 1 } });
  });

  it('without the pre-hook the editor parser would have eaten the bytes (the fallback hands over its result)', async () => {
    r = await rig();
    // Put the editor's parsers back in front of our hook, as if the hook could not be placed.
    const stack = (r.admin as any)._router.stack as { name: string }[];
    const hook = stack.findIndex((l) => l.name === 'preHook' || l.name === 'bound preHook' || l.name === '');
    const idx = stack.findIndex((l) => l.name === 'jsonParser');
    assert.ok(idx > hook && hook >= 0, 'the hook sits ahead of the JSON parser');
    const [layer] = stack.splice(hook, 1);
    stack.push(layer);
    r.reg.claim({
      owner: 'n1',
      label: 'n1',
      basePath: '/box',
      routes: [{ method: 'POST', pattern: '', handler: echo }],
    });
    const res = await fetch(`${r.url}/box`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"a":1}',
    });
    const j = (await res.json()) as any;
    assert.equal(j.raw, null);
    assert.equal(j.preParsed, true);
  });

  it('serves a route from the pre-hook once one of its requests passed the editor app untouched', async () => {
    r = await rig();
    r.reg.claim({
      owner: 'n1',
      label: 'n1',
      basePath: '/hook',
      routes: [
        { method: 'POST', pattern: '', handler: echo },
        { method: 'GET', pattern: '/media/:token', handler: echo },
      ],
    });
    const json = '{"a": 1}';
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${r.url}/hook?x=${i}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: json,
      });
      const j = (await res.json()) as any;
      assert.equal(j.raw, json, 'raw bytes');
      assert.deepEqual(j.query, [['x', String(i)]]);
      assert.equal(j.fullPath, '/hook');
      const m = await fetch(`${r.url}/hook/media/t${i}`);
      assert.deepEqual(((await m.json()) as any).params, { token: `t${i}` });
    }
    let res = await fetch(`${r.url}/hook`, { method: 'PUT', body: 'x' });
    assert.equal(res.status, 405, 'a method the path does not take still gets its 405');
    res = await fetch(`${r.url}/nobody`, { method: 'POST', body: 'x' });
    assert.equal(res.status, 404);
    const expected = ['/hook?x=0', '/hook/media/t0', '/hook', '/nobody'];
    assert.deepEqual(r.seen.admin, expected, 'the first of each route, and what is not ours, go on');
    assert.deepEqual(r.seen.node, expected);
    // Served from the front: ahead of everything in the outermost app, Express's own set-up included.
    assert.deepEqual(r.seen.top, ['/hook?x=0', '/hook/media/t0', '/hook', '/nobody']);
  });

  it('serves from the front of the outermost app only when nothing there or in the editor app applies to node endpoints', async () => {
    const cases: { name: string; opts: Parameters<typeof rig>[0]; front: boolean }[] = [
      { name: 'default settings', opts: {}, front: true },
      {
        name: 'httpAdminAuth',
        opts: { settings: { httpAdminAuth: { user: 'u', pass: 'p' } } },
        front: false,
      },
      {
        name: 'httpAdminMiddleware',
        opts: { settings: { httpAdminMiddleware: () => undefined } },
        front: false,
      },
      { name: 'trust proxy', opts: { trustProxy: true }, front: false },
    ];
    for (const c of cases) {
      r = await rig(c.opts);
      r.reg.claim({
        owner: 'n1',
        label: 'n1',
        basePath: '/hook',
        routes: [{ method: 'POST', pattern: '', handler: echo }],
      });
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`${r.url}/hook?i=${i}`, { method: 'POST', body: 'x' });
        assert.equal(((await res.json()) as any).raw, 'x', c.name);
      }
      assert.deepEqual(
        r.seen.top,
        c.front ? ['/hook?i=0'] : ['/hook?i=0', '/hook?i=1', '/hook?i=2'],
        `${c.name}: what reached the outermost app's middleware`,
      );
      assert.deepEqual(r.seen.admin, ['/hook?i=0'], `${c.name}: the pre-hook still serves the learned route`);
      await r.close();
    }
    r = await rig();
  });

  it('never takes requests from an admin route on the same path, even one added later', async () => {
    r = await rig();
    r.reg.claim({
      owner: 'n1',
      label: 'n1',
      basePath: '/hook',
      routes: [
        { method: 'GET', pattern: '/status', handler: echo },
        { method: 'POST', pattern: '', handler: echo },
      ],
    });
    r.admin.get('/hook/status', (_req, res) => {
      res.json({ admin: true });
    });
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${r.url}/hook/status`);
      assert.deepEqual(await res.json(), { admin: true }, 'the admin route keeps its path');
    }
    // POST /hook is learned as ours …
    for (let i = 0; i < 2; i++) await fetch(`${r.url}/hook`, { method: 'POST', body: 'x' });
    assert.deepEqual(r.seen.node, ['/hook']);
    // … until an admin route appears in front of it.
    r.admin.post('/hook', (_req, res) => {
      res.json({ admin: 'late' });
    });
    const res = await fetch(`${r.url}/hook`, { method: 'POST', body: 'x' });
    assert.deepEqual(await res.json(), { admin: 'late' });
  });

  it('with httpNodeAuth (or httpAuth) set, requests go the whole way, through the auth between the apps', async () => {
    for (const settings of [
      { httpNodeAuth: { user: 'u', pass: 'p' } },
      { httpAuth: { user: 'u', pass: 'p' } },
    ]) {
      r = await rig({
        settings,
        between: (req, res, next) => {
          if (req.headers.authorization === 'Basic ' + Buffer.from('u:p').toString('base64')) next();
          else res.status(401).end();
        },
      });
      r.reg.claim({
        owner: 'n1',
        label: 'n1',
        basePath: '/hook',
        routes: [{ method: 'POST', pattern: '', handler: echo }],
      });
      const json = '{"a": 1}';
      let res = await fetch(`${r.url}/hook`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: json,
      });
      assert.equal(res.status, 401, 'the node endpoints are behind the auth');
      res = await fetch(`${r.url}/hook`, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          Authorization: 'Basic ' + Buffer.from('u:p').toString('base64'),
        },
        body: json,
      });
      assert.equal(((await res.json()) as any).raw, json, 'raw bytes, read ahead of the editor parsers');
      assert.deepEqual(r.seen.node, ['/hook']);
      await r.close();
    }
    r = await rig();
  });

  it('honours httpNodeRoot: full paths, and requests outside the root are not ours', async () => {
    r = await rig({ nodeRoot: '/api/' });
    const states: any[] = [];
    r.reg.claim({
      owner: 'n1',
      label: 'n1',
      basePath: 'wechat',
      routes: [{ method: 'POST', pattern: '', handler: echo }],
      onState: (s) => states.push(s),
    });
    assert.deepEqual(states[0], {
      active: true,
      path: '/wechat',
      fullPath: '/api/wechat',
      heldBy: undefined,
    });
    assert.equal(r.reg.fullPath('/x/'), '/api/x');
    let res = await fetch(`${r.url}/api/wechat`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '[1]',
    });
    const j = (await res.json()) as any;
    assert.equal(j.raw, '[1]');
    assert.equal(j.fullPath, '/api/wechat');
    res = await fetch(`${r.url}/wechat`, { method: 'POST', body: '[1]' });
    assert.equal(res.status, 404);
  });

  it('two claims on one path: the second waits with the holder named, and takes over on release', async () => {
    r = await rig();
    const s1: any[] = [];
    const s2: any[] = [];
    const answer = (who: string) => (ctx: RouteContext) => {
      ctx.res.end(who);
    };
    const c1 = r.reg.claim({
      owner: 'a',
      label: 'wechat-in "A"',
      basePath: '/p',
      routes: [{ method: 'GET', pattern: '', handler: answer('A') }],
      onState: (s) => s1.push(s),
    });
    const c2 = r.reg.claim({
      owner: 'b',
      label: 'wechat-in "B"',
      basePath: '/P/',
      routes: [{ method: 'GET', pattern: '', handler: answer('B') }],
      onState: (s) => s2.push(s),
    });
    assert.equal(c1.state.active, true);
    assert.equal(c2.state.active, false);
    assert.equal(s2[0].heldBy, 'wechat-in "A"');
    assert.equal(await (await fetch(`${r.url}/p`)).text(), 'A');
    c1.release();
    assert.equal(s2.at(-1).active, true);
    assert.equal(await (await fetch(`${r.url}/p`)).text(), 'B');
    c2.release();
    assert.equal((await fetch(`${r.url}/p`)).status, 404);
    assert.deepEqual(r.reg.list(), []);
  });

  it('answers 405 with Allow for a method the path does not take', async () => {
    r = await rig();
    r.reg.claim({
      owner: 'n',
      label: 'n',
      basePath: '/p',
      routes: [
        { method: 'GET', pattern: '', handler: echo },
        { method: 'POST', pattern: '', handler: echo },
      ],
    });
    const res = await fetch(`${r.url}/p`, { method: 'DELETE' });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'GET, POST');
  });

  it('refuses a body over the route limit by its Content-Length, before reading it', async () => {
    r = await rig();
    let called = false;
    r.reg.claim({
      owner: 'n',
      label: 'n',
      basePath: '/p',
      routes: [{ method: 'POST', pattern: '', bodyLimit: 100, handler: () => void (called = true) }],
    });
    const res = await rawRequest(`${r.url}/p`, {
      headers: { 'Content-Type': 'application/json', 'Content-Length': '1000000' },
      chunks: ['{"a":'],
    });
    assert.equal(res.status, 413);
    assert.equal(called, false);
  });

  it('stops reading a chunked body as soon as it passes the limit', async () => {
    r = await rig({ withAdmin: false });
    let called = false;
    r.reg.claim({
      owner: 'n',
      label: 'n',
      basePath: '/p',
      routes: [{ method: 'POST', pattern: '', bodyLimit: 1000, handler: () => void (called = true) }],
    });
    const chunk = Buffer.alloc(600, 0x61);
    const res = await rawRequest(`${r.url}/p`, {
      headers: { 'Content-Type': 'text/xml', 'Transfer-Encoding': 'chunked' },
      chunks: [chunk, chunk, chunk, chunk],
      delayMs: 5,
    });
    assert.equal(res.status, 413);
    assert.equal(called, false);
  });

  it('gives up on a body that does not arrive in time (408)', async () => {
    r = await rig();
    r.reg.claim({
      owner: 'n',
      label: 'n',
      basePath: '/p',
      routes: [{ method: 'POST', pattern: '', bodyTimeoutMs: 100, handler: echo }],
    });
    const res = await rawRequest(`${r.url}/p`, {
      headers: { 'Content-Type': 'text/xml', 'Content-Length': '10' },
      chunks: ['<xml>'],
      delayMs: 400,
    });
    assert.equal(res.status, 408);
  });

  it('answers 500 without details when a handler throws, and tells the owner', async () => {
    r = await rig();
    const errors: unknown[] = [];
    r.reg.claim({
      owner: 'n',
      label: 'n',
      basePath: '/p',
      routes: [
        {
          method: 'POST',
          pattern: '',
          handler: () => {
            throw new Error('secret-ish detail');
          },
        },
      ],
      onError: (e) => errors.push(e),
    });
    const res = await fetch(`${r.url}/p`, { method: 'POST', body: 'x' });
    assert.equal(res.status, 500);
    assert.equal(await res.text(), 'internal error');
    assert.equal(errors.length, 1);
  });

  it('mounts one dispatcher per runtime however many nodes claim', async () => {
    r = await rig();
    const httpNode = express();
    const a = routeRegistry(httpNode, null, {});
    const b = routeRegistry(httpNode, null, {});
    assert.equal(a, b);
    const layers = ((httpNode as any)._router.stack as { handle: unknown }[]).filter(
      (l) => l.handle === a.dispatcher,
    );
    assert.equal(layers.length, 1);
  });
});
