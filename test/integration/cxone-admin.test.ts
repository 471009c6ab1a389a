/**
 * The Action / Reconnect / Remove pages served by cxone-dfo-in (lib/cxone/admin/pages.ts) in a real Node-RED
 * runtime, over real HTTP, with the CXone simulator behind them: one-time token → session → list → create (with
 * the icon) → remove → back, and what must be refused (a reused token, a missing CSRF token, another origin,
 * a dangerous backUrl).
 */
import * as assert from 'node:assert/strict';
import { loadFlow, startHelper, stopHelper, type TestRuntime } from '../harness/helper';
import { safeBackUrl } from '../../lib/cxone/admin/pages';
import { decodeJwtPayload } from '../../lib/cxone/dfo/jwt';
import { CxoneSimulator } from '../../sandbox/sim/cxone';

const BACK = 'https://na1.nice-incontact.com/dfo/points-of-contact';

describe('CXone admin pages (Action / Reconnect / Remove URLs)', function () {
  this.timeout(20_000);
  let sim: CxoneSimulator;
  let rt: TestRuntime;
  let box: string;

  before(() => startHelper());
  after(() => stopHelper());
  beforeEach(async () => {
    sim = new CxoneSimulator({ channels: ['chat_other'] });
    await sim.start();
    sim.dfo.addChannel({ id: 'chat_mine', channelIntegrationId: 'int-1', idOnExternalPlatform: 'gh_mine' });
    const s = sim.integration();
    rt = await loadFlow(
      [
        { id: 'tab', type: 'tab' },
        {
          id: 'cc',
          type: 'cxone-dfo-config',
          authIssuer: s.authIssuer,
          apiBase: '',
          channelIntegrationId: 'int-1',
        },
        { id: 'ci', type: 'cxone-dfo-in', z: 'tab', cxone: 'cc', path: '/integration/box', wires: [[]] },
      ],
      { cc: { ...s.credentials, boxClientId: 'box', boxClientSecret: 'boxsecret', jwtSecret: '' } },
    );
    box = `${rt.url}/integration/box`;
  });
  afterEach(async () => {
    await rt.close();
    await sim.stop();
  });

  /** Opens the page as CXone does; returns the session cookie and the answer. */
  async function open(
    mode: 'action' | 'reconnect' | 'remove',
    q: Record<string, string> = {},
  ): Promise<{ res: Response; cookie?: string; token: string }> {
    const token = q.token ?? sim.dfo.issueOneTimeToken({ brandId: 1234, userId: 5678 });
    const params = new URLSearchParams({ userId: '5678', brandId: '1234', token, backUrl: BACK, ...q });
    const res = await fetch(`${box}/${mode}?${params.toString()}`, { redirect: 'manual' });
    const set = res.headers.get('set-cookie') ?? '';
    const m = /wxcx_admin=([^;]*)/.exec(set);
    return { res, cookie: m ? `wxcx_admin=${m[1]}` : undefined, token };
  }

  async function page(cookie: string): Promise<{ html: string; csrf: string; res: Response }> {
    const res = await fetch(`${box}/admin`, { headers: { cookie } });
    const html = await res.text();
    const csrf = /<meta name="csrf-token" content="([^"]+)">/.exec(html)?.[1] ?? '';
    return { html, csrf, res };
  }

  function api(
    cookie: string,
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ) {
    return fetch(`${box}/admin/api/${path}`, {
      method,
      headers: {
        cookie,
        ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  it('full round: one-time token → session cookie → list → create with icon → remove → back to CXone', async () => {
    const { res, cookie, token } = await open('action');
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), 'admin');
    const set = res.headers.get('set-cookie')!;
    assert.match(set, /HttpOnly/);
    assert.match(set, /SameSite=Lax/);
    assert.match(set, /Path=\/integration\/box\/admin/);
    assert.match(res.headers.get('content-security-policy')!, /script-src 'self'/);
    assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
    // The exchange: numbers for brand and user, purpose channel-integration, no Authorization header needed.
    const v = sim.dfo.oneTimeVerifications[0];
    assert.deepEqual(v.body, { brandId: 1234, userId: 5678, token, purpose: 'channel-integration' });
    assert.equal(v.status, 200);

    const { html, csrf, res: pres } = await page(cookie!);
    assert.equal(pres.status, 200);
    assert.ok(csrf.length >= 32);
    assert.match(pres.headers.get('content-security-policy')!, /default-src 'none'/);
    assert.ok(
      !/<script>(?!<\/script>)/.test(
        html.replace(/<script type="application\/json"[^>]*>[\s\S]*?<\/script>/, ''),
      ),
      'no inline script',
    );
    assert.match(html, /<script src="admin\/app\.js"><\/script>/);
    assert.match(html, /Ada Admin/);
    assert.match(html, /href="admin\/back"/);
    for (const t of sim.dfo.requests.map((r) => r.bearer).filter(Boolean))
      assert.ok(!html.includes(t!), 'no token in the page');

    const js = await fetch(`${box}/admin/app.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type')!, /javascript/);

    const list1 = (await (await api(cookie!, 'GET', 'channels')).json()) as any;
    assert.deepEqual(
      list1.channels.map((c: any) => c.id),
      ['chat_mine'],
      'only this integration’s channels',
    );

    const created = await api(
      cookie!,
      'POST',
      'channels',
      { name: 'WeChat Acme', idOnExternalPlatform: 'gh_0123456789ab', externalPlatformIcon: 'wechat' },
      { 'X-CSRF-Token': csrf, Origin: rt.url },
    );
    assert.equal(created.status, 200);
    const ch = ((await created.json()) as any).channel;
    const stored = sim.dfo.channels.get(ch.id)!;
    assert.equal(stored.externalPlatformIcon, 'wechat');
    assert.equal(stored.channelIntegrationId, 'int-1');
    assert.equal(stored.idOnExternalPlatform, 'gh_0123456789ab');
    assert.equal(stored.realExternalPlatformId, 'custom');
    assert.equal(stored.isPrivate, true);
    assert.equal(stored.hasTreeStructure, false);
    // The admin's token was used, not the integration's.
    const post = sim.dfo.requests.find((r) => r.method === 'POST' && r.path === '/dfo/3.0/channels')!;
    assert.equal(decodeJwtPayload(post.bearer)?.brandId, 1234);

    const list2 = (await (await api(cookie!, 'GET', 'channels')).json()) as any;
    assert.deepEqual(list2.channels.map((c: any) => c.id).sort(), ['chat_mine', ch.id].sort());

    const removed = await api(cookie!, 'DELETE', `channels/${encodeURIComponent(ch.id)}`, undefined, {
      'X-CSRF-Token': csrf,
    });
    assert.equal(removed.status, 200);
    assert.ok(!sim.dfo.channels.has(ch.id));

    const back = await fetch(`${box}/admin/back`, { headers: { cookie: cookie! }, redirect: 'manual' });
    assert.equal(back.status, 303);
    assert.equal(back.headers.get('location'), BACK);
    assert.match(back.headers.get('set-cookie')!, /Max-Age=0/);
    // The session is over.
    assert.equal((await api(cookie!, 'GET', 'channels')).status, 401);
  });

  it('refuses changes without the CSRF token or from another origin, and channels of other integrations', async () => {
    const { cookie } = await open('action');
    const { csrf } = await page(cookie!);
    const body = { idOnExternalPlatform: 'gh_x' };
    assert.equal((await api(cookie!, 'POST', 'channels', body)).status, 403);
    assert.equal(
      (await api(cookie!, 'POST', 'channels', body, { 'X-CSRF-Token': 'x'.repeat(32) })).status,
      403,
    );
    assert.equal(
      (await api(cookie!, 'POST', 'channels', body, { 'X-CSRF-Token': csrf, Origin: 'https://evil.example' }))
        .status,
      403,
    );
    assert.equal((await api(cookie!, 'DELETE', 'channels/chat_mine')).status, 403);
    const other = await api(cookie!, 'DELETE', 'channels/chat_other', undefined, { 'X-CSRF-Token': csrf });
    assert.equal(other.status, 404);
    assert.ok(sim.dfo.channels.has('chat_other'));
    assert.ok(sim.dfo.channels.has('chat_mine'));
    assert.equal(
      sim.dfo.requests.filter((r) => r.method !== 'GET' && r.path.startsWith('/dfo/3.0/channels')).length,
      0,
    );
    // Without a session nothing is served.
    assert.equal((await api('wxcx_admin=' + 'A'.repeat(43), 'GET', 'channels')).status, 401);
    assert.equal((await fetch(`${box}/admin`)).status, 401);
  });

  it('a form CXone would reject is answered with the fields, before calling CXone', async () => {
    const { cookie } = await open('action');
    const { csrf } = await page(cookie!);
    const r = await api(
      cookie!,
      'POST',
      'channels',
      { idOnExternalPlatform: '', externalPlatformIcon: 'nope' },
      { 'X-CSRF-Token': csrf },
    );
    assert.equal(r.status, 400);
    const j = (await r.json()) as any;
    assert.deepEqual(j.problems.map((p: any) => p.field).sort(), [
      'externalPlatformIcon',
      'idOnExternalPlatform',
    ]);
    assert.ok(!sim.dfo.requests.some((x) => x.method === 'POST' && x.path === '/dfo/3.0/channels'));
  });

  it('a one-time token works once: the second visit gets an error page and no session', async () => {
    const first = await open('action');
    assert.equal(first.res.status, 303);
    const again = await open('action', { token: first.token });
    assert.equal(again.res.status, 403);
    assert.equal(again.cookie, undefined);
    const html = await again.res.text();
    assert.match(html, /one-time token is invalid, expired or already used/);
    assert.match(html, new RegExp(`href="${BACK.replace(/[/.]/g, '\\$&')}"`), 'a way back');
  });

  it('never offers a way back to a javascript:, data: or foreign http URL', async () => {
    for (const bad of [
      'javascript:alert(1)',
      'data:text/html,<b>x</b>',
      'http://evil.example/x',
      '//evil.example',
      'https://u:p@evil.example/',
    ]) {
      const { res, cookie } = await open('action', { backUrl: bad });
      assert.equal(res.status, 303, bad);
      const { html } = await page(cookie!);
      assert.ok(!html.includes('admin/back'), `no back link for ${bad}`);
      const back = await fetch(`${box}/admin/back`, { headers: { cookie: cookie! }, redirect: 'manual' });
      assert.equal(back.status, 404, bad);
      assert.equal(back.headers.get('location'), null);
    }
    assert.equal(
      safeBackUrl('https://na1.nice-incontact.com/x?y=1', null),
      'https://na1.nice-incontact.com/x?y=1',
    );
    assert.equal(safeBackUrl('http://127.0.0.1:1880/x', 'http://127.0.0.1:1880'), 'http://127.0.0.1:1880/x');
    assert.equal(safeBackUrl('http://127.0.0.1:1881/x', 'http://127.0.0.1:1880'), undefined);
    assert.equal(safeBackUrl('JAVASCRIPT:alert(1)', null), undefined);
    assert.equal(safeBackUrl('https://x.example/\u0000', null), undefined);
  });

  it('Reconnect and Remove open the same page in their mode; a link without CXone’s parameters is refused', async () => {
    for (const mode of ['reconnect', 'remove'] as const) {
      const { res, cookie } = await open(mode);
      assert.equal(res.status, 303);
      const { html } = await page(cookie!);
      assert.match(html, new RegExp(`data-mode="${mode}"`));
    }
    const bare = await fetch(`${box}/action`, { redirect: 'manual' });
    assert.equal(bare.status, 400);
    const nonNumeric = await fetch(`${box}/action?userId=x&brandId=1&token=t`, { redirect: 'manual' });
    assert.equal(nonNumeric.status, 400);
    assert.equal(sim.dfo.oneTimeVerifications.length, 2);
  });

  it('an admin token CXone no longer accepts ends the session', async () => {
    const { cookie } = await open('action');
    sim.dfo.expireTokens();
    const r = await api(cookie!, 'GET', 'channels');
    assert.equal(r.status, 401);
    assert.equal((await api(cookie!, 'GET', 'channels')).status, 401);
  });
});
