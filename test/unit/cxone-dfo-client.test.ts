/**
 * lib/cxone/dfo against the CXone simulator over real HTTP on loopback: discovery, the password grant, the token
 * cache (single flight, refresh, 401), every DFO call and how its failures are classified.
 */
import * as assert from 'node:assert/strict';
import { MemoryStore } from '../../lib/store/memory';
import {
  accountKey,
  createDfoIntegration,
  DfoError,
  decodeJwtPayload,
  parseRetryAfter,
  type CreateMessageBody,
  type DfoIntegration,
} from '../../lib/cxone/dfo';
import { CxoneSimulator } from '../../sandbox/sim/cxone';

function body(id: string, thread = 'oUser1'): CreateMessageBody {
  return {
    idOnExternalPlatform: id,
    direction: 'inbound',
    createdAtWithMilliseconds: '2024-05-01T08:30:12.000Z',
    thread: { idOnExternalPlatform: thread },
    messageContent: { type: 'TEXT', payload: { text: 'hello ' + id } },
    authorEndUserIdentity: { idOnExternalPlatform: thread },
  };
}

describe('CXone DFO client (lib/cxone/dfo) against the simulator', function () {
  this.timeout(20_000);
  let sim: CxoneSimulator;
  const open: DfoIntegration[] = [];
  const debug: string[] = [];
  const log = { debug: (m: string) => debug.push(m), warn: (m: string) => debug.push(m) };

  function integration(
    over: {
      discover?: boolean;
      creds?: Partial<ReturnType<CxoneSimulator['integration']>['credentials']>;
      store?: MemoryStore;
      issuer?: string;
      timeoutMs?: number;
    } = {},
  ): DfoIntegration {
    const s = sim.integration(over.discover ?? true);
    const i = createDfoIntegration({
      authIssuer: over.issuer ?? s.authIssuer,
      apiBase: s.apiBase,
      credentials: { ...s.credentials, ...over.creds },
      store: over.store ?? new MemoryStore(),
      log,
      http: { timeoutMs: over.timeoutMs ?? 15_000 },
    });
    open.push(i);
    return i;
  }

  beforeEach(async () => {
    sim = new CxoneSimulator({ channels: ['chat_1', 'chat_2'] });
    await sim.start();
    debug.length = 0;
  });
  afterEach(async () => {
    for (const i of open.splice(0)) i.close();
    await sim.stop();
  });

  it('discovers the token endpoint, sends the password grant form-encoded with the application as HTTP Basic, and discovers the DFO base from the tenant', async () => {
    const i = integration();
    const base = await i.client.apiBase();
    assert.equal(base, `${sim.url}/dfo/3.0`);
    assert.equal(sim.dfo.tokenRequests.length, 1);
    const t = sim.dfo.tokenRequests[0];
    assert.match(t.contentType, /^application\/x-www-form-urlencoded/);
    const c = sim.integration().credentials;
    assert.equal(
      t.authorization,
      'Basic ' + Buffer.from(`${c.clientId}:${c.clientSecret}`).toString('base64'),
    );
    assert.deepEqual(t.form, {
      grant_type: 'password',
      username: c.accessKeyId,
      password: c.accessKeySecret,
    });
    // The access key id and secret end in "====": they travel URL-encoded and arrive intact.
    assert.ok(c.accessKeyId.endsWith('===='));
    const paths = sim.dfo.requests.map((r) => `${r.method} ${r.path}`);
    assert.ok(paths.includes('GET /.well-known/openid-configuration'));
    assert.ok(paths.includes('GET /.well-known/cxone-configuration'));
    const tok = await i.auth.token();
    assert.equal(tok.tenantId, sim.dfo.opts.tenantId);
  });

  it('falls back to {authIssuer}/auth/token when the issuer has no openid-configuration', async () => {
    await sim.stop();
    sim = new CxoneSimulator({ channels: ['chat_1'], openidConfiguration: false });
    await sim.start();
    const i = integration();
    const r = await i.client.createMessage('chat_1', body('m-fallback'));
    assert.equal(r.duplicate, false);
    assert.equal(sim.dfo.tokenFetches, 1);
    assert.ok(debug.some((d) => /auth\/token/.test(d)));
  });

  it('uses the configured DFO base without discovery', async () => {
    const i = integration({ discover: false });
    await i.client.createMessage('chat_1', body('m-conf'));
    assert.ok(!sim.dfo.requests.some((r) => r.path === '/.well-known/cxone-configuration'));
  });

  it('reads the tenant from the access token when the id_token has none', async () => {
    await sim.stop();
    sim = new CxoneSimulator({ channels: ['chat_1'], tenantInIdToken: false });
    await sim.start();
    const i = integration();
    assert.equal(await i.client.apiBase(), `${sim.url}/dfo/3.0`);
  });

  it('says what to do when no token carries a tenant and no DFO base is set', async () => {
    await sim.stop();
    sim = new CxoneSimulator({ channels: ['chat_1'], tenantInIdToken: false, tenantInAccessToken: false });
    await sim.start();
    const i = integration();
    await assert.rejects(i.client.apiBase(), (e: DfoError) => {
      assert.equal(e.key, 'no-tenant');
      assert.match(e.message, /DFO API base/);
      assert.equal(e.retryable, false);
      return true;
    });
  });

  it('1000 concurrent sends make one token fetch and 1000 messages', async () => {
    const i = integration();
    const results = await Promise.all(
      Array.from({ length: 1000 }, (_, n) => i.client.createMessage('chat_1', body(`c-${n}`, `o${n % 50}`))),
    );
    assert.equal(results.length, 1000);
    assert.equal(sim.dfo.tokenFetches, 1);
    assert.equal(sim.dfo.messages('chat_1').length, 1000);
    assert.equal(i.auth.counters.tokenFetches, 1);
  });

  it('two instances sharing a store fetch one token between them (the store lock)', async () => {
    const store = new MemoryStore();
    const a = integration({ store });
    const b = integration({ store });
    const [ta, tb] = await Promise.all([a.auth.token(), b.auth.token()]);
    assert.equal(ta.accessToken, tb.accessToken);
    assert.equal(sim.dfo.tokenFetches, 1);
  });

  it('a 401 gets a fresh token and one more try, which delivers', async () => {
    const i = integration();
    await i.client.createMessage('chat_1', body('before'));
    const first = (await i.auth.token()).accessToken;
    sim.dfo.expireTokens();
    const r = await i.client.createMessage('chat_1', body('after'));
    assert.equal(r.duplicate, false);
    assert.equal(sim.dfo.tokenFetches, 2);
    const second = (await i.auth.token()).accessToken;
    assert.notEqual(first, second);
    assert.equal(i.auth.counters.invalidations, 1);
    assert.ok(sim.dfo.findMessage('chat_1', 'after'));
  });

  it('a token refused even when fresh is tried only once more, then fails for good', async () => {
    const i = integration({ discover: false });
    await i.auth.token();
    sim.dfo.failNext(5, 401, { match: /messages/ });
    await assert.rejects(i.client.createMessage('chat_1', body('nope')), (e: DfoError) => {
      assert.equal(e.status, 401);
      assert.equal(e.retryable, false);
      assert.match(e.message, /Digital Engagement/);
      return true;
    });
    assert.equal(sim.dfo.tokenFetches, 2);
    assert.equal(sim.dfo.requests.filter((r) => r.path.endsWith('/messages')).length, 2);
  });

  it('many sends that all meet a 401 invalidate once and refetch once', async () => {
    const i = integration({ discover: false });
    await i.client.createMessage('chat_1', body('warm'));
    sim.dfo.expireTokens();
    await Promise.all(Array.from({ length: 50 }, (_, n) => i.client.createMessage('chat_1', body(`r-${n}`))));
    assert.equal(sim.dfo.tokenFetches, 2);
  });

  it('a 400 is refused for good and names the fields CXone rejected', async () => {
    const i = integration();
    const bad = body('bad') as unknown as Record<string, unknown>;
    delete bad.authorEndUserIdentity;
    (bad.messageContent as Record<string, unknown>).type = 'IMAGE';
    await assert.rejects(
      i.client.createMessage('chat_1', bad as unknown as CreateMessageBody),
      (e: DfoError) => {
        assert.equal(e.status, 400);
        assert.equal(e.retryable, false);
        assert.match(e.message, /messageContent\.type/);
        assert.match(e.message, /authorEndUserIdentity\.idOnExternalPlatform/);
        assert.deepEqual(e.fields?.map((f) => f.field).sort(), [
          'authorEndUserIdentity.idOnExternalPlatform',
          'messageContent.type',
        ]);
        return true;
      },
    );
    assert.ok(
      debug.some((d) => d.includes('answered 400') && d.includes('messageContent.type')),
      'raw body at debug',
    );
  });

  it('a 429 is worth a retry after Retry-After; a 5xx too; an unknown channel is a 404 for good', async () => {
    const i = integration({ discover: false });
    sim.dfo.failNext(1, 429, { retryAfter: 7 });
    await assert.rejects(i.client.createMessage('chat_1', body('t1')), (e: DfoError) => {
      assert.equal(e.status, 429);
      assert.equal(e.retryable, true);
      assert.equal(e.retryAfterMs, 7000);
      return true;
    });
    sim.dfo.failNext(1, 503);
    await assert.rejects(
      i.client.createMessage('chat_1', body('t2')),
      (e: DfoError) => e.retryable && e.status === 503,
    );
    await assert.rejects(i.client.createMessage('chat_404', body('t3')), (e: DfoError) => {
      assert.equal(e.status, 404);
      assert.equal(e.retryable, false);
      assert.match(e.message, /chat_404/);
      return true;
    });
  });

  it('network failures and timeouts are worth a retry and name only the host', async () => {
    const i = integration({ discover: false, timeoutMs: 3000 });
    await i.auth.token();
    sim.dfo.down(400);
    await assert.rejects(i.client.createMessage('chat_1', body('n1')), (e: DfoError) => {
      assert.equal(e.retryable, true);
      assert.equal(e.code, 'network');
      assert.ok(e.message.includes(new URL(sim.url).host));
      return true;
    });
    await new Promise((r) => setTimeout(r, 450));
    sim.dfo.slow(3500);
    await assert.rejects(i.client.createMessage('chat_1', body('n2')), (e: DfoError) => {
      assert.equal(e.code, 'timeout');
      assert.equal(e.retryable, true);
      return true;
    });
    sim.dfo.slow(0);
  });

  it('the same message twice is one CXone message: the duplicate counts as delivered (409, 400 or 2xx)', async () => {
    for (const mode of ['409', '400', 'idempotent'] as const) {
      await sim.stop();
      sim = new CxoneSimulator({ channels: ['chat_1'], duplicates: mode });
      await sim.start();
      const i = integration({ discover: false });
      const a = await i.client.createMessage('chat_1', body('dup-1'));
      const b = await i.client.createMessage('chat_1', body('dup-1'));
      assert.equal(a.duplicate, false, mode);
      if (mode !== 'idempotent') assert.equal(b.duplicate, true, mode);
      assert.equal(sim.dfo.messages('chat_1').length, 1, mode);
    }
  });

  it('reports delivery status (delivered, failed with a reason) and typing', async () => {
    const i = integration({ discover: false });
    sim.dfo.recordOutbound('chat_1', 'oUser1', { idOnExternalPlatform: 'wx-out-1', text: 'hi' });
    await i.client.updateMessageStatus('chat_1', 'wx-out-1', 'delivered');
    await i.client.updateMessageStatus('chat_1', 'wx-out-1', 'failed', 'WeChat refused: 45015');
    const m = sim.dfo.findMessage('chat_1', 'wx-out-1');
    assert.deepEqual(
      m?.statuses.map((s) => [s.status, s.reason]),
      [
        ['delivered', undefined],
        ['failed', 'WeChat refused: 45015'],
      ],
    );
    assert.ok(!Number.isNaN(Date.parse(m.statuses[0].updatedAt)));
    await assert.rejects(
      i.client.updateMessageStatus('chat_1', 'unknown', 'delivered'),
      (e: DfoError) => e.status === 404,
    );
    await i.client.senderAction('chat_1', 'oUser1', 'isTypingOn');
    await i.client.senderAction('chat_1', 'oUser1', 'isTypingOff');
    assert.deepEqual(
      sim.dfo.senderActions.map((s) => [s.channelId, s.threadId, s.action]),
      [
        ['chat_1', 'oUser1', 'isTypingOn'],
        ['chat_1', 'oUser1', 'isTypingOff'],
      ],
    );
  });

  it('uploads an attachment and gets a URL CXone serves back', async () => {
    const i = integration({ discover: false });
    const png = Buffer.from(
      'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
      'base64',
    );
    const up = await i.client.uploadAttachment(png, 'image/png');
    const res = await fetch(up.url);
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), png);
  });

  it('lists, creates (with icon) and deletes channels; verifies a one-time token', async () => {
    const i = integration({ discover: false });
    const before = await i.client.listChannels();
    assert.deepEqual(before.map((c) => c.id).sort(), ['chat_1', 'chat_2']);
    const created = await i.client.createChannel({
      id: 'wechat_gh_1',
      idOnExternalPlatform: 'gh_1',
      channelIntegrationId: 'int-1',
      realExternalPlatformId: 'custom',
      name: 'WeChat gh_1',
      isPrivate: true,
      hasTreeStructure: false,
      externalPlatformIcon: 'wechat',
    });
    assert.equal(created.id, 'wechat_gh_1');
    assert.equal(created.externalPlatformIcon, 'wechat');
    await assert.rejects(
      i.client.createChannel({ ...created, id: 'x', externalPlatformIcon: 'nope' } as never),
      (e: DfoError) => e.status === 400 && /externalPlatformIcon/.test(e.message),
    );
    await i.client.deleteChannel('wechat_gh_1');
    assert.ok(!(await i.client.listChannels()).some((c) => c.id === 'wechat_gh_1'));
    const ott = sim.dfo.issueOneTimeToken({ brandId: 1234, userId: 5678 });
    const v = await i.client.verifyOneTimeToken({ brandId: 1234, userId: 5678, token: ott });
    assert.equal(v.brand.id, 1234);
    assert.ok(decodeJwtPayload(v.accessToken)?.exp);
    assert.deepEqual((sim.dfo.oneTimeVerifications[0].body as any).purpose, 'channel-integration');
    // Single use.
    await assert.rejects(
      i.client.verifyOneTimeToken({ brandId: 1234, userId: 5678, token: ott }),
      (e: DfoError) => !e.retryable,
    );
    // The admin's token lists channels.
    const listed = await i.client.listChannels({ bearer: v.accessToken });
    assert.ok(listed.length >= 2);
    assert.ok(!debug.some((d) => d.includes(v.accessToken)), 'the admin token is never logged');
  });

  it('refuses wrong application credentials and a wrong access key in words, without the secrets', async () => {
    const i = integration({ creds: { clientSecret: 'WRONG-secret-xyz' } });
    await assert.rejects(i.auth.token(), (e: DfoError) => {
      assert.equal(e.key, 'auth-client');
      assert.equal(e.retryable, false);
      assert.match(e.message, /Client ID and Client secret/);
      assert.ok(!e.message.includes('WRONG-secret-xyz'));
      return true;
    });
    const j = integration({ creds: { accessKeySecret: 'WRONG-ak-secret' } });
    await assert.rejects(j.auth.token(), (e: DfoError) => {
      assert.equal(e.key, 'auth-grant');
      assert.match(e.message, /Access key/);
      assert.ok(!e.message.includes('WRONG-ak-secret'));
      return true;
    });
    for (const d of debug) {
      assert.ok(!d.includes('WRONG-'), 'no secret in debug logs');
      assert.ok(!d.includes(sim.integration().credentials.accessKeySecret));
    }
  });

  it('a token endpoint that is down is worth a retry', async () => {
    const i = integration();
    sim.dfo.failNext(1, 503, { match: /auth\/token/ });
    await assert.rejects(i.auth.token(), (e: DfoError) => e.retryable && e.key === 'auth-status');
    const t = await i.auth.token();
    assert.ok(t.accessToken);
  });

  it('refreshes the token ahead of its expiry', async () => {
    await sim.stop();
    sim = new CxoneSimulator({ channels: ['chat_1'], tokenTtlSec: 2 });
    await sim.start();
    const i = integration({ discover: false });
    const t1 = await i.auth.token();
    await new Promise((r) => setTimeout(r, 1700)); // past 80 % of the lifetime, before expiry
    const t2 = await i.auth.token();
    assert.notEqual(t1.accessToken, t2.accessToken);
    assert.equal(sim.dfo.tokenFetches, 2);
    assert.ok(t1.expiresAt > Date.now(), 'the first was still valid when replaced');
  });

  it('two integrations with different credentials never share a token or its store key', async () => {
    await sim.stop();
    sim = new CxoneSimulator({
      channels: ['chat_1'],
      accessKeys: [
        { id: 'KEYA====', secret: 'SECRETA====' },
        { id: 'KEYB====', secret: 'SECRETB====' },
      ],
    });
    await sim.start();
    const store = new MemoryStore();
    const a = integration({ store, creds: { accessKeyId: 'KEYA====', accessKeySecret: 'SECRETA====' } });
    const b = integration({ store, creds: { accessKeyId: 'KEYB====', accessKeySecret: 'SECRETB====' } });
    assert.notEqual(a.auth.keyPrefix, b.auth.keyPrefix);
    const [ta, tb] = await Promise.all([a.auth.token(), b.auth.token()]);
    assert.notEqual(ta.accessToken, tb.accessToken);
    assert.equal(sim.dfo.tokenFetches, 2);
    assert.deepEqual(sim.dfo.tokenRequests.map((r) => r.form.username).sort(), ['KEYA====', 'KEYB====']);
    assert.equal(
      accountKey('https://x', { accessKeyId: 'K', clientId: 'c' }),
      accountKey('https://x', { accessKeyId: 'K', clientId: 'c' }),
    );
    assert.notEqual(
      accountKey('https://x', { accessKeyId: 'K', clientId: 'c' }),
      accountKey('https://x', { accessKeyId: 'K', clientId: 'd' }),
    );
  });

  it('reads Retry-After as seconds or as an HTTP date', () => {
    assert.equal(parseRetryAfter('3'), 3000);
    const now = Date.now();
    const d = new Date(now + 5000).toUTCString();
    const ms = parseRetryAfter(d, now)!;
    assert.ok(ms > 3000 && ms <= 5000, String(ms));
    assert.equal(parseRetryAfter('soon'), undefined);
    assert.equal(parseRetryAfter(undefined), undefined);
  });
});
