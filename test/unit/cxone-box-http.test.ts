/**
 * The integration box's routes served over real HTTP on loopback (the route registry on a plain Node server), with
 * the CXone simulator's box caller on the other side: the 401 → token → retry dance, the token endpoint in its
 * three encodings, throttling, forged tokens, both reply formats, dedupe of CXone retries, typing, recipient
 * validation, and bad bodies.
 */
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import bodyParser from 'body-parser';
import express from 'express';
import jwt from 'jsonwebtoken';
import { RouteRegistry, routeRegistry } from '../../lib/http/registry';
import { integrationBoxRoutes, type BoxEvent, type IntegrationBoxOptions } from '../../lib/cxone/box/box';
import type { BoxEmission } from '../../lib/cxone/box/replies';
import { signingKey, TOKEN_ISSUER, tokenAudience, issueToken } from '../../lib/cxone/box/tokens';
import { MemoryStore } from '../../lib/store/memory';
import type { Store } from '../../lib/store/types';
import { CxoneBoxCaller } from '../../sandbox/sim/cxone/box-caller';
import { fixture } from '../harness/paths';

const creds = JSON.parse(fixture('cxone', 'box-token-request.json')) as Record<string, string>;
const secrets = { clientId: creds.client_id, clientSecret: creds.client_secret };
const OPENID = 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o';
const CHANNEL = 'chat_5d1ed0c1-8bbd-4c4b-8f0f-6f1f3bd6d1a1';
const BASE = '/integration/box';

interface Rig {
  url: string;
  boxUrl: string;
  emitted: BoxEmission[];
  events: BoxEvent[];
  bodies: string[];
  store: Store;
  close(): Promise<void>;
}

/** CXone's side of the box: the simulator's caller with the test credentials, on the test channel. */
function callerOf(boxUrl: string): CxoneBoxCaller {
  return new CxoneBoxCaller({
    boxUrl,
    clientId: secrets.clientId,
    clientSecret: secrets.clientSecret,
    channelId: CHANNEL,
  });
}

async function rig(extra: Partial<IntegrationBoxOptions> = {}): Promise<Rig> {
  const emitted: BoxEmission[] = [];
  const events: BoxEvent[] = [];
  const bodies: string[] = [];
  const store = extra.store ?? new MemoryStore();
  const reg = new RouteRegistry('/');
  const claim = reg.claim({
    owner: 'box',
    label: 'box',
    basePath: BASE,
    routes: integrationBoxRoutes({
      secrets: () => secrets,
      store,
      keyPrefix: 'wxcx:cxone:test:',
      emit: (m) => emitted.push(m),
      events: (e) => events.push(e),
      logBody: (_r, _p, b) => bodies.push(b),
      ...extra,
    }),
  });
  const server = http.createServer((req, res) =>
    reg.dispatcher(req, res, () => {
      res.statusCode = 404;
      res.end();
    }),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    boxUrl: url + BASE,
    emitted,
    events,
    bodies,
    store,
    close: async () => {
      claim.release();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function post(
  url: string,
  body: string,
  headers: Record<string, string> = { 'Content-Type': 'application/json' },
): Promise<{ status: number; headers: Headers; json: any; text: string }> {
  const res = await fetch(url, { method: 'POST', headers, body });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json, text };
}

describe('integration box over HTTP', function () {
  this.timeout(20_000);
  let r: Rig;
  let cx: CxoneBoxCaller;
  beforeEach(async () => {
    r = await rig();
    cx = callerOf(r.boxUrl);
  });
  afterEach(async () => {
    cx.stop();
    await r.close();
  });

  describe('the token endpoint', () => {
    for (const style of ['json', 'form', 'basic'] as const) {
      it(`issues a bearer token for client credentials sent as ${style}`, async () => {
        const a = await cx.fetchToken(style);
        assert.equal(a.status, 200);
        const b = a.body as any;
        assert.equal(b.token_type, 'Bearer');
        assert.equal(b.expires_in, 3600);
        assert.equal(typeof b.access_token, 'string');
        assert.equal(a.headers['cache-control'], 'no-store');
        const claims = jwt.verify(b.access_token, signingKey(secrets), {
          algorithms: ['HS256'],
        }) as jwt.JwtPayload;
        assert.equal(claims.sub, secrets.clientId);
        assert.equal(claims.iss, TOKEN_ISSUER);
      });
    }

    it('answers 401 invalid_client for a wrong secret, an unknown client, or no credentials', async () => {
      for (const body of [
        { ...creds, client_secret: 'wrong' },
        { ...creds, client_id: 'someone-else' },
        { grant_type: 'client_credentials' },
      ]) {
        const a = await post(`${r.boxUrl}/1.0/token`, JSON.stringify(body));
        assert.equal(a.status, 401, JSON.stringify(body));
        assert.equal(a.json.error, 'invalid_client');
        assert.ok(!a.text.includes(creds.client_secret));
      }
      const basic = await post(`${r.boxUrl}/1.0/token`, 'grant_type=client_credentials', {
        'Content-Type': 'application/x-www-form-urlencoded',
        Authorization: 'Basic ' + Buffer.from(`${creds.client_id}:nope`).toString('base64'),
      });
      assert.equal(basic.status, 401);
      assert.match(String(basic.headers.get('www-authenticate')), /^Basic /);
      assert.ok(!r.events.some((e) => e.kind === 'token-issued'));
    });

    it('answers 400 unsupported_grant_type for another grant, and issues for a request with none', async () => {
      const a = await post(`${r.boxUrl}/1.0/token`, JSON.stringify({ ...creds, grant_type: 'password' }));
      assert.equal(a.status, 400);
      assert.deepEqual(a.json.error, 'unsupported_grant_type');
      const b = await post(
        `${r.boxUrl}/1.0/token`,
        JSON.stringify({ client_id: creds.client_id, client_secret: creds.client_secret }),
      );
      assert.equal(b.status, 200);
    });

    it('answers 400 invalid_request for malformed JSON, without echoing the body', async () => {
      const a = await post(`${r.boxUrl}/1.0/token`, `{"client_secret":"${creds.client_secret}",`);
      assert.equal(a.status, 400);
      assert.equal(a.json.error, 'invalid_request');
      assert.ok(!a.text.includes(creds.client_secret));
    });

    it('throttles an address after 10 failures in a minute (429 + Retry-After), even with the right secret then', async () => {
      for (let i = 0; i < 10; i++) {
        const a = await post(
          `${r.boxUrl}/1.0/token`,
          JSON.stringify({ ...creds, client_secret: 'guess' + i }),
        );
        assert.equal(a.status, 401);
      }
      const blocked = await post(
        `${r.boxUrl}/1.0/token`,
        JSON.stringify({ ...creds, client_secret: 'guess' }),
      );
      assert.equal(blocked.status, 429);
      const s = Number(blocked.headers.get('retry-after'));
      assert.ok(s >= 1 && s <= 60, String(s));
      assert.equal(blocked.json.error, 'temporarily_unavailable');
      const right = await post(`${r.boxUrl}/1.0/token`, JSON.stringify(creds));
      assert.equal(right.status, 429, 'no oracle while throttled');
      assert.ok(r.events.some((e) => e.kind === 'token-throttled' && e.by === 'address'));
    });

    it('throttles one client id on its own limit, separately from other client ids', async () => {
      await r.close();
      r = await rig({
        perAddress: { limit: 1000, windowMs: 60_000 },
        perClient: { limit: 3, windowMs: 60_000 },
      });
      for (let i = 0; i < 3; i++)
        assert.equal(
          (await post(`${r.boxUrl}/1.0/token`, JSON.stringify({ ...creds, client_secret: 'x' }))).status,
          401,
        );
      const blocked = await post(`${r.boxUrl}/1.0/token`, JSON.stringify(creds));
      assert.equal(blocked.status, 429);
      const other = await post(
        `${r.boxUrl}/1.0/token`,
        JSON.stringify({ ...creds, client_id: 'other', client_secret: 'x' }),
      );
      assert.equal(other.status, 401, 'another client id is not throttled');
      assert.ok(r.events.some((e) => e.kind === 'token-throttled' && e.by === 'client'));
    });

    it('refuses a token request body over 16 KiB (413)', async () => {
      const a = await post(`${r.boxUrl}/1.0/token`, JSON.stringify({ ...creds, pad: 'x'.repeat(20_000) }));
      assert.equal(a.status, 413);
    });

    it('never logs the token request body', async () => {
      await cx.fetchToken('json');
      assert.equal(r.bodies.length, 0);
    });
  });

  describe('bearer tokens on every other call', () => {
    const replyUrl = (): string => `${r.boxUrl}/2.0/channel/${CHANNEL}/outbound`;
    const body = JSON.stringify(JSON.parse(fixture('cxone', 'box-dfo3-outbound.json')));
    // Made when each test runs, not when the file is loaded: the whole suite takes longer than the tokens live.
    const nowS = (): number => Math.floor(Date.now() / 1000);
    const claims = (): Record<string, unknown> => ({
      iss: TOKEN_ISSUER,
      aud: tokenAudience(secrets.clientId),
      sub: secrets.clientId,
      iat: nowS(),
      exp: nowS() + 600,
      jti: 'j',
    });
    const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
    const cases: [string, () => string | undefined, string][] = [
      ['no token', () => undefined, 'missing'],
      ['a malformed token', () => 'Bearer not-a-jwt', 'malformed'],
      ['an expired token', () => 'Bearer ' + issueToken(secrets, 60, nowS() - 3600).access_token, 'expired'],
      [
        'a token signed with another key',
        () => 'Bearer ' + jwt.sign(claims(), 'another key', { algorithm: 'HS256' }),
        'invalid',
      ],
      ['an alg:none token', () => `Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}.`, 'invalid'],
      [
        'a token for another client id',
        () => 'Bearer ' + jwt.sign({ ...claims(), sub: 'x' }, signingKey(secrets), { algorithm: 'HS256' }),
        'invalid',
      ],
      [
        'Basic credentials',
        () => 'Basic ' + Buffer.from(`${secrets.clientId}:${secrets.clientSecret}`).toString('base64'),
        'missing',
      ],
    ];
    for (const [what, auth, problem] of cases) {
      it(`refuses ${what} with 401 and emits nothing`, async () => {
        const h: Record<string, string> = { 'Content-Type': 'application/json' };
        const a = auth();
        if (a) h.Authorization = a;
        const res = await post(replyUrl(), body, h);
        assert.equal(res.status, 401);
        const challenge = String(res.headers.get('www-authenticate'));
        if (problem === 'missing') assert.equal(challenge, 'Bearer realm="integration-box"');
        else assert.match(challenge, /^Bearer realm="integration-box", error="invalid_token"/);
        assert.equal(r.emitted.length, 0);
        assert.ok(
          r.events.some((e) => e.kind === 'unauthorized' && e.problem === problem),
          JSON.stringify(r.events),
        );
        assert.equal(r.bodies.length, 0, 'an unauthenticated body is not even logged');
      });
    }
  });

  describe('the CXone caller against the box', () => {
    it('asks for a token only after a 401, then retries; later calls reuse the token', async () => {
      const a = await cx.sendReply({ threadId: OPENID, text: 'hello', format: 'dfo3' });
      assert.equal(a.status, 200);
      assert.deepEqual(
        cx.calls.map((c) => [c.path.replace(/\/channel\/[^/]+/, '/channel/:id'), c.status, c.withToken]),
        [
          ['/2.0/channel/:id/outbound', 401, false],
          ['/1.0/token', 200, false],
          ['/2.0/channel/:id/outbound', 200, true],
        ],
      );
      await cx.sendReply({ threadId: OPENID, text: 'again', format: 'dfo3' });
      await cx.senderAction(OPENID, true);
      assert.equal(cx.tokenFetches, 1, 'one token for all three calls');
      assert.equal(r.emitted.length, 3);
    });

    it('fetches a new token when the one it holds has expired', async () => {
      await cx.sendReply({ threadId: OPENID, text: 'one' });
      cx.token = issueToken(secrets, 60, Math.floor(Date.now() / 1000) - 3600).access_token;
      const a = await cx.sendReply({ threadId: OPENID, text: 'two' });
      assert.equal(a.status, 200);
      assert.equal(cx.tokenFetches, 2);
      assert.deepEqual(
        cx.calls.slice(-3).map((c) => c.status),
        [401, 200, 200],
      );
    });

    it('stops after one token attempt when the box refuses its credentials', async () => {
      const bad = new CxoneBoxCaller({ boxUrl: r.boxUrl, clientId: secrets.clientId, clientSecret: 'wrong' });
      try {
        const a = await bad.sendReply({ threadId: OPENID, text: 'x' });
        assert.equal(a.status, 401);
        assert.deepEqual(
          bad.calls.map((c) => c.status),
          [401, 401],
        );
        assert.equal(r.emitted.length, 0);
      } finally {
        bad.stop();
      }
    });
  });

  describe('agent replies', () => {
    it('DFO 3.0: emits the conversation message and answers {message, thread}', async () => {
      const body = JSON.parse(fixture('cxone', 'box-dfo3-outbound.json'));
      const a = await cx.sendReply({ threadId: OPENID, format: 'dfo3', body });
      assert.equal(a.status, 200);
      const ans = a.body as any;
      assert.match(ans.message.idOnExternalPlatform, /^wx-out-/);
      assert.match(ans.message.createdAtWithMilliseconds, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.deepEqual(ans.thread, { idOnExternalPlatform: OPENID });
      assert.equal(r.emitted.length, 1);
      const { payload, cxone } = r.emitted[0];
      assert.equal(payload.messageId, ans.message.idOnExternalPlatform);
      assert.equal(cxone.idOnExternalPlatform, ans.message.idOnExternalPlatform);
      assert.equal(cxone.createdAtWithMilliseconds, ans.message.createdAtWithMilliseconds);
      assert.equal(payload.conversationId, OPENID);
      assert.equal(payload.account, CHANNEL);
      assert.equal(payload.text, body.messageContent.payload.text);
      assert.deepEqual(cxone.body, body);
      assert.equal(r.bodies.length, 1, 'the raw body is handed to the debug log');
      assert.ok(r.bodies[0].includes('您好'));
    });

    it('legacy: answers {idOnExternalPlatform} and takes the thread id from the body', async () => {
      const body = JSON.parse(fixture('cxone', 'box-legacy-reply.json'));
      const a = await cx.sendReply({
        threadId: OPENID,
        format: 'legacy',
        body,
        postId: '0f9c2bbd-3a55-4b8e-9a6f-0d2a0c4b1e77',
      });
      assert.equal(a.status, 200);
      const ans = a.body as any;
      assert.deepEqual(Object.keys(ans), ['idOnExternalPlatform']);
      assert.equal(r.emitted[0].payload.messageId, ans.idOnExternalPlatform);
      assert.equal(r.emitted[0].cxone.format, 'legacy');
      assert.equal(r.emitted[0].cxone.postId, '0f9c2bbd-3a55-4b8e-9a6f-0d2a0c4b1e77');
    });

    it('legacy with a minimal body: the openid in the path is the thread', async () => {
      const a = await cx.sendReply({
        threadId: OPENID,
        format: 'legacy',
        postId: OPENID,
        body: { messageContent: { payload: { text: 'hi' } } },
      });
      assert.equal(a.status, 200);
      assert.equal(r.emitted[0].payload.conversationId, OPENID);
      assert.equal(r.emitted[0].cxone.threadIdSource, 'path');
    });

    it('DFO 3.0 with only a recipient: the first end-user recipient is the thread', async () => {
      const a = await cx.sendReply({
        threadId: OPENID,
        format: 'dfo3',
        body: {
          messageContent: { payload: { text: 'hi' } },
          endUserRecipients: [{ idOnExternalPlatform: OPENID }],
        },
      });
      assert.equal(a.status, 200);
      assert.equal(r.emitted[0].cxone.threadIdSource, 'recipient');
      assert.deepEqual((a.body as any).thread, { idOnExternalPlatform: OPENID });
    });

    it('passes attachments on as [{url, name, mimeType}]', async () => {
      const body = JSON.parse(fixture('cxone', 'box-outbound-attachments.json'));
      const a = await cx.sendReply({ threadId: OPENID, format: 'dfo3', body });
      assert.equal(a.status, 200);
      assert.deepEqual(
        r.emitted[0].payload.attachments?.map((x) => [x.name, x.mimeType]),
        [
          ['invoice-2024-05.pdf', 'application/pdf'],
          ['photo.jpg', 'image/jpeg'],
        ],
      );
    });

    it('refuses a reply with no recipient, malformed JSON, or deep nesting (400), emitting nothing', async () => {
      const a = await cx.sendReply({
        threadId: OPENID,
        format: 'dfo3',
        body: { messageContent: { payload: { text: 'x' } } },
      });
      assert.equal(a.status, 400);
      assert.match((a.body as any).error_description, /names no recipient/);
      const token = cx.token as string;
      const h = { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` };
      const m = await post(`${r.boxUrl}/2.0/channel/${CHANNEL}/outbound`, '{"thread":', h);
      assert.equal(m.status, 400);
      assert.equal(m.json.error, 'invalid_request');
      assert.match(m.json.error_description, /not valid JSON/);
      const deep = await post(
        `${r.boxUrl}/2.0/channel/${CHANNEL}/outbound`,
        '['.repeat(5000) + ']'.repeat(5000),
        h,
      );
      assert.equal(deep.status, 400);
      const big = await post(
        `${r.boxUrl}/2.0/channel/${CHANNEL}/outbound`,
        JSON.stringify({ t: 'x'.repeat(300 * 1024) }),
        h,
      );
      assert.equal(big.status, 413);
      assert.equal(r.emitted.length, 0);
      assert.ok(r.events.filter((e) => e.kind === 'bad-request').length >= 3);
    });

    it('emits a reply CXone sends twice (same CXone message id) once, answering the same id both times', async () => {
      const first = await cx.sendReply({
        threadId: OPENID,
        format: 'dfo3',
        text: 'only once',
        messageId: 'cx-msg-42',
      });
      const again = await cx.sendReply({
        threadId: OPENID,
        format: 'dfo3',
        text: 'only once',
        messageId: 'cx-msg-42',
      });
      assert.equal(first.status, 200);
      assert.equal(again.status, 200);
      assert.deepEqual(again.body, first.body, 'same id, same createdAtWithMilliseconds');
      assert.equal(r.emitted.length, 1);
      assert.ok(r.events.some((e) => e.kind === 'duplicate'));
      const other = await cx.sendReply({
        threadId: OPENID,
        format: 'dfo3',
        text: 'only once',
        messageId: 'cx-msg-43',
      });
      assert.notDeepEqual(other.body, first.body);
      assert.equal(r.emitted.length, 2);
    });

    it('emits two replies without CXone ids both, even with the same text', async () => {
      await cx.sendReply({ threadId: OPENID, text: 'ok', messageId: null });
      await cx.sendReply({ threadId: OPENID, text: 'ok', messageId: null });
      assert.equal(r.emitted.length, 2);
      assert.notEqual(r.emitted[0].payload.messageId, r.emitted[1].payload.messageId);
    });

    it('dedupes across two boxes sharing one store (two instances behind one CXone)', async () => {
      const second = await rig({ store: r.store });
      const cx2 = callerOf(second.boxUrl);
      try {
        const a = await cx.sendReply({
          threadId: OPENID,
          format: 'legacy',
          text: 'x',
          messageId: 'cx-shared-1',
        });
        const b = await cx2.sendReply({
          threadId: OPENID,
          format: 'legacy',
          text: 'x',
          messageId: 'cx-shared-1',
        });
        assert.deepEqual(b.body, a.body);
        assert.equal(r.emitted.length + second.emitted.length, 1);
      } finally {
        cx2.stop();
        await second.close();
      }
    });

    it('still delivers when the dedupe store fails, and says so', async () => {
      await r.close();
      const broken = new MemoryStore();
      broken.setIfAbsent = () => Promise.reject(new Error('store down'));
      r = await rig({ store: broken });
      cx.stop();
      cx = callerOf(r.boxUrl);
      const a = await cx.sendReply({ threadId: OPENID, text: 'x', messageId: 'cx-1' });
      assert.equal(a.status, 200);
      assert.equal(r.emitted.length, 1);
      assert.ok(r.events.some((e) => e.kind === 'store-failed'));
    });

    it('with a journal: keeps only the first answer time, 10 min, and answers a retry with it (also as written before)', async () => {
      await r.close();
      const store = new MemoryStore();
      const sets: { key: string; value: string; ttl?: number }[] = [];
      const set = store.set.bind(store);
      store.set = (key, value, ttl) => {
        sets.push({ key, value, ttl });
        return set(key, value, ttl);
      };
      const journaled = new Set<string>();
      r = await rig({
        store,
        journal: (id) => Promise.resolve(journaled.has(id) ? null : (journaled.add(id), `ref:${id}`)),
      });
      cx.stop();
      cx = callerOf(r.boxUrl);
      const first = await cx.sendReply({ threadId: OPENID, format: 'dfo3', text: 'x', messageId: 'cx-j-1' });
      assert.equal(first.status, 200);
      const memo = sets.filter((s) => s.key.includes(':box:reply:'));
      assert.equal(memo.length, 1);
      assert.match(memo[0].value, /^\d{13}$/, 'the time alone');
      assert.equal(memo[0].ttl, 600_000);
      const again = await cx.sendReply({ threadId: OPENID, format: 'dfo3', text: 'x', messageId: 'cx-j-1' });
      assert.deepEqual(again.body, first.body);
      assert.equal(r.emitted.length, 1);
      // An entry in the earlier format ({"id","createdAt"}), as a store written by an older version holds it.
      await store.set(
        memo[0].key,
        JSON.stringify({ id: 'x', createdAt: Date.UTC(2024, 4, 1, 8, 35, 1, 123) }),
      );
      const old = await cx.sendReply({ threadId: OPENID, format: 'dfo3', text: 'x', messageId: 'cx-j-1' });
      assert.equal(
        (old.body as { message: { createdAtWithMilliseconds: string } }).message.createdAtWithMilliseconds,
        '2024-05-01T08:35:01.123Z',
      );
      // Forgotten (after its 10 minutes): the same id, a new time; still not emitted again (the journal dedupes).
      await store.delete(memo[0].key);
      const late = await cx.sendReply({ threadId: OPENID, format: 'dfo3', text: 'x', messageId: 'cx-j-1' });
      const idOf = (b: unknown): string =>
        (b as { message: { idOnExternalPlatform: string } }).message.idOnExternalPlatform;
      assert.equal(idOf(late.body), idOf(first.body));
      assert.equal(r.emitted.length, 1);
    });
  });

  describe('typing and recipient validation', () => {
    it('turns isTypingOn/isTypingOff into typing messages, 204', async () => {
      const on = await cx.senderAction(OPENID, true);
      const off = await cx.senderAction(OPENID, false);
      assert.equal(on.status, 204);
      assert.equal(off.status, 204);
      assert.equal(on.body, '');
      assert.deepEqual(
        r.emitted.map((e) => [e.payload.type, e.payload.typing, e.payload.conversationId, e.payload.account]),
        [
          ['typing', true, OPENID, CHANNEL],
          ['typing', false, OPENID, CHANNEL],
        ],
      );
      assert.equal(r.emitted[0].cxone.action, 'isTypingOn');
      assert.equal(r.emitted[0].cxone.format, 'sender-action');
      assert.equal(r.emitted[0].cxone.idOnExternalPlatform, undefined);
    });

    it('answers 204 to a sender action it does not know, and emits nothing', async () => {
      const a = await cx.call('POST', `/1.0/channel/${CHANNEL}/thread/${OPENID}/sender-action`, {
        senderAction: { action: 'markSeen' },
      });
      assert.equal(a.status, 204);
      assert.equal(r.emitted.length, 0);
    });

    it('validates recipients: 200 for openids, 400 with the exact error shape otherwise', async () => {
      const ok = await cx.validateRecipients([OPENID]);
      assert.equal(ok.status, 200);
      const bad = await cx.validateRecipients(['customer@example.com']);
      assert.equal(bad.status, 400);
      assert.deepEqual(bad.body, JSON.parse(fixture('cxone', 'box-recipients-validation-400.json')));
      const unreadable = await cx.call(
        'POST',
        `/1.0/channel/${CHANNEL}/recipients/validation`,
        '{"endUserRecipients":[',
      );
      assert.equal(unreadable.status, 400);
      assert.equal((unreadable.body as any).errorCode, 'outboundValidationFailed');
      assert.equal(r.emitted.length, 0, 'validation emits nothing');
    });
  });
});

describe('integration box behind body parsers it could not get ahead of (the registry fallback)', function () {
  this.timeout(20_000);
  it('serves tokens and replies from the bodies the parsers produced', async () => {
    // Express with JSON and form parsers mounted ahead of the node app, and no admin app to hook: the registry
    // hands the routes `parsedBody` instead of raw bytes.
    const app = express();
    app.use(bodyParser.json());
    app.use(bodyParser.urlencoded({ extended: true }));
    const httpNode = express();
    app.use('/', httpNode);
    const reg = routeRegistry(httpNode, null, { httpNodeRoot: '/' });
    const emitted: BoxEmission[] = [];
    const claim = reg.claim({
      owner: 'box',
      label: 'box',
      basePath: BASE,
      routes: integrationBoxRoutes({
        secrets: () => secrets,
        store: new MemoryStore(),
        keyPrefix: 'wxcx:cxone:fallback:',
        emit: (m) => emitted.push(m),
      }),
    });
    const server = http.createServer(app);
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${BASE}`;
    const cx = callerOf(url);
    try {
      assert.equal((await cx.fetchToken('form')).status, 200);
      assert.equal((await cx.fetchToken('json')).status, 200);
      const a = await cx.sendReply({ threadId: OPENID, format: 'dfo3', text: 'parsed by someone else' });
      assert.equal(a.status, 200);
      assert.equal(emitted[0].payload.text, 'parsed by someone else');
      const wrong = await post(`${url}/1.0/token`, JSON.stringify({ ...creds, client_secret: 'x' }));
      assert.equal(wrong.status, 401);
    } finally {
      cx.stop();
      claim.release();
      server.closeAllConnections();
      await new Promise<void>((res) => server.close(() => res()));
    }
  });
});
