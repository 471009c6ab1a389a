/**
 * wechat-in in a real Node-RED runtime (node-red-node-test-helper, its httpNode served on loopback), driven by the
 * WeChat simulator's push side over real HTTP: URL verification, every fixture in plain, compatible and safe
 * mode, refusals, dedupe of concurrent retries, passive replies (encrypted in
 * safe mode), media links, status, secrets kept out of logs, release on close.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mediaLinkKey, signMediaToken } from '../../lib/wechat/inbound/media-link';
import { parseWechatXml } from '../../lib/wechat/xml';
import { passiveReply } from '../../nodes/wechat-passive';
import { WechatPushSimulator, type SimPushMode } from '../../sandbox/sim/wechat/push';
import { fixturesDir } from '../harness/paths';
import { helper, loadFlow, startHelper, stopHelper, type TestRuntime } from '../harness/helper';

const APP_ID = 'wxabb8e5e80f591861';
const GH = 'gh_b4f0e22ae50e';
const TOKEN = 'GreedIsGood-token-9f3c';
const AES_KEY = 'h7ZycbpEh2vNdfkYulfw9pG95HjLYwmrKBFeqIktff6';
const APP_SECRET = 'app-secret-0123456789abcdef';
const OPENID = 'oJqxQwYRyZMXFTc8sipB5TSe6Vw4';
const SECRETS = [TOKEN, AES_KEY, APP_SECRET];

const flow = (over: Record<string, unknown> = {}, wires: string[] = ['out']): Record<string, unknown>[] => [
  { id: 'wc', type: 'wechat-config', name: 'Acme', appId: APP_ID, apiBase: 'http://127.0.0.1:9' },
  {
    id: 'wi',
    type: 'wechat-in',
    name: 'hook',
    wechat: 'wc',
    path: '/wechat/webhook',
    wires: [wires],
    ...over,
  },
  { id: 'out', type: 'helper' },
];
const credentials = { wc: { appSecret: APP_SECRET, token: TOKEN, encodingAESKey: AES_KEY } };

function collect(rt: TestRuntime, id = 'out'): any[] {
  const got: any[] = [];
  rt.getNode(id).on('input', (msg: any) => got.push(msg));
  return got;
}

function statusesOf(id: string): any[] {
  return helper._NodePrototype.status
    .getCalls()
    .filter((c: any) => c.thisValue?.id === id)
    .map((c: any) => c.args[0]);
}

/** Everything the runtime and the nodes logged or reported, as text. */
function allLogged(): string {
  const calls: any[] = [...helper.log().getCalls()];
  for (const m of ['error', 'warn', 'log', 'debug', 'trace', 'status'])
    calls.push(...helper._NodePrototype[m].getCalls());
  return calls
    .map((c) => JSON.stringify(c.args, (_k, v) => (v instanceof Error ? v.message + v.stack : v)))
    .join('\n');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('condition not met in time');
    await sleep(10);
  }
}

/** The runtime handle passiveReply keys its windows on (the httpNode app the helper serves). */
function redOf(rt: TestRuntime): any {
  const app = rt.server.listeners('request')[0];
  return { httpNode: app };
}

async function raw(
  url: string,
  init: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; text: string; headers: Headers }> {
  const res = await fetch(url, { method: init.method ?? 'GET', body: init.body, headers: init.headers });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

describe('wechat-in in a Node-RED runtime', function () {
  this.timeout(30_000);
  before(() => startHelper());
  after(() => stopHelper());
  let rt: TestRuntime | undefined;
  let sim: WechatPushSimulator;
  const opened: { openid: string; kind: string }[] = [];
  beforeEach(() => {
    opened.length = 0;
    sim = new WechatPushSimulator({
      account: { appId: APP_ID, originalId: GH, token: TOKEN, encodingAESKey: AES_KEY, mode: 'safe' },
      onUserMessage: (openid, kind) => opened.push({ openid, kind }),
    });
  });
  afterEach(async () => {
    sim.close();
    await rt?.close();
    rt = undefined;
  });
  const hook = (): string => `${rt?.url}/wechat/webhook`;

  describe('URL verification', () => {
    it('answers echostr unchanged as text/plain for the right signature', async () => {
      rt = await loadFlow(flow(), credentials);
      const r = await sim.verifyUrl(hook(), { echostr: '8641591277801631551' });
      assert.equal(r.status, 200);
      assert.equal(r.body, '8641591277801631551');
      assert.match(String(r.headers['content-type']), /^text\/plain/);
      assert.ok(r.ok);
    });

    it('answers 401 with no body to a wrong or missing signature, and emits nothing', async () => {
      rt = await loadFlow(flow(), credentials);
      const got = collect(rt);
      const r = await sim.verifyUrl(hook(), { tamper: 'signature' });
      assert.equal(r.status, 401);
      assert.equal(r.body, '');
      const bare = await raw(`${hook()}?echostr=123`);
      assert.equal(bare.status, 401);
      assert.equal(bare.text, '');
      await sleep(50);
      assert.equal(got.length, 0);
    });

    it('answers 405 to other methods', async () => {
      rt = await loadFlow(flow(), credentials);
      const r = await raw(hook(), { method: 'PUT', body: '<xml/>' });
      assert.equal(r.status, 405);
    });
  });

  describe('pushes', () => {
    for (const mode of ['plain', 'compat', 'safe'] as SimPushMode[]) {
      it(`${mode} mode: a text message is acknowledged with "success" and emitted once, fields intact`, async () => {
        rt = await loadFlow(flow(), credentials);
        const got = collect(rt);
        const xml = sim.text(OPENID, '你好 ]]> <b>&amp;');
        const rec = await sim.push(hook(), xml, { mode });
        assert.equal(rec.attempts.length, 1);
        assert.equal(rec.attempts[0].status, 200);
        assert.equal(rec.attempts[0].body, 'success');
        assert.ok(rec.acknowledged);
        await until(() => got.length === 1);
        const m = got[0];
        const sent = parseWechatXml(xml);
        assert.deepEqual(
          {
            direction: m.payload.direction,
            channel: m.payload.channel,
            account: m.payload.account,
            conversationId: m.payload.conversationId,
            messageId: m.payload.messageId,
            type: m.payload.type,
            text: m.payload.text,
            timestamp: m.payload.timestamp,
          },
          {
            direction: 'inbound',
            channel: 'wechat',
            account: GH,
            conversationId: OPENID,
            messageId: sent.MsgId,
            type: 'text',
            text: '你好 ]]> <b>&amp;',
            timestamp: Number(sent.CreateTime) * 1000,
          },
        );
        assert.ok(BigInt(m.payload.messageId) > 2n ** 53n);
        assert.equal(m.wechat.mode, mode);
        assert.equal(m.wechat.MsgId, sent.MsgId);
        assert.equal(m.wechat.Content, '你好 ]]> <b>&amp;');
        assert.equal(m.wechat.xml, xml);
        assert.equal(m.wechat.query.timestamp, rec.query.timestamp);
        assert.equal(m.wechat.Encrypt, undefined);
        assert.equal(m.wechat.replyId, undefined);
        assert.deepEqual(opened, [{ openid: OPENID, kind: 'message' }]);
      });
    }

    it('every message and event fixture, in safe mode, becomes one conversation message of the right type', async () => {
      rt = await loadFlow(flow(), credentials);
      const got = collect(rt);
      const files = fs
        .readdirSync(path.join(fixturesDir, 'wechat'))
        .filter((f) => /^(msg|event)-.*\.xml$/.test(f) && !/-(compat|safe)\.xml$/.test(f));
      const t0 = 1_700_000_000;
      for (let i = 0; i < files.length; i++) {
        const f = files[i];
        // A fresh MsgId and CreateTime: several official samples share "fromUser" and MsgId 1234567890123456.
        const xml = sim.fromFixture(f, { freshMsgId: true, createTime: t0 + i });
        const rec = await sim.push(hook(), xml, { mode: 'safe' });
        assert.equal(rec.attempts[0].body, 'success', f);
        await until(() => got.length === i + 1);
        const fx = parseWechatXml(xml);
        const m = got[i];
        assert.equal(m.wechat.xml, xml, f);
        assert.equal(m.payload.account, GH, f);
        assert.equal(m.payload.conversationId, fx.FromUserName, f);
        assert.equal(m.payload.timestamp, (t0 + i) * 1000, f);
        if (fx.MsgType === 'event') {
          assert.equal(m.payload.type, 'event', f);
          assert.equal(m.payload.event.name, fx.Event, f);
          assert.ok(m.payload.messageId.startsWith('wxevt-'), f);
        } else {
          assert.equal(m.payload.type, fx.MsgType === 'shortvideo' ? 'video' : fx.MsgType, f);
          assert.equal(m.payload.messageId, fx.MsgId, f);
        }
        if (['image', 'voice', 'video', 'shortvideo'].includes(fx.MsgType as string)) {
          const a = m.payload.attachments[0];
          assert.equal(a.mediaId, fx.MediaId, f);
          assert.match(a.url, new RegExp(`^${rt.url}/wechat/webhook/media/v1\\.`), f);
        }
      }
      assert.ok(files.length >= 50);
    });

    it('a retried push (4 concurrent identical requests, then a late one) is emitted exactly once', async () => {
      rt = await loadFlow(flow(), credentials);
      const got = collect(rt);
      const xml = sim.text(OPENID, 'once');
      const built = sim.buildRequest(xml, { mode: 'safe' });
      const url = `${hook()}?${new URLSearchParams(built.query).toString()}`;
      const post = (): Promise<{ status: number; text: string }> =>
        raw(url, { method: 'POST', body: built.body, headers: { 'Content-Type': 'text/xml' } });
      const answers = await Promise.all([post(), post(), post(), post()]);
      assert.deepEqual(
        answers.map((a) => [a.status, a.text]),
        Array(4).fill([200, 'success']),
      );
      await sleep(100);
      assert.equal((await post()).text, 'success');
      await sleep(100);
      assert.equal(got.length, 1);
      // The simulator's own concurrent retries too, for an event (keyed on FromUserName+CreateTime+Event+EventKey).
      const ev = sim.event(OPENID, 'CLICK', [['EventKey', 'MENU_1']]);
      const rec = await sim.push(hook(), ev, { concurrent: true });
      assert.equal(rec.attempts.length, 4);
      await sleep(100);
      assert.equal(got.filter((g) => g.payload.type === 'event').length, 1);
      // Two different clicks in the same second are two events.
      await sim.push(
        hook(),
        sim.event(OPENID, 'CLICK', [['EventKey', 'MENU_2']], Number(parseWechatXml(ev).CreateTime)),
      );
      await until(() => got.filter((g) => g.payload.type === 'event').length === 2);
    });
  });

  describe('refusals: nothing is emitted', () => {
    const cases: [
      string,
      (s: WechatPushSimulator) => Promise<{ status: number; text: string }>,
      number,
      string?,
    ][] = [
      ['a forged signature', (s) => send(s, { tamper: 'signature' }), 401, ''],
      ['no signature', (s) => send(s, { tamper: 'no-signature' }), 401, ''],
      ['a forged msg_signature', (s) => send(s, { tamper: 'msg_signature' }), 401, ''],
      ['a push encrypted for another AppID', (s) => send(s, { tamper: 'appid' }), 401, ''],
      ['a JSON body', (s) => send(s, { contentType: 'application/json', mode: 'plain' }), 415],
      [
        'a form body',
        (s) => send(s, { contentType: 'application/x-www-form-urlencoded', mode: 'plain' }),
        415,
      ],
      ['a DOCTYPE (entity bomb)', (s) => sendBody(s, '<!DOCTYPE x [<!ENTITY a "aaaa">]><xml>&a;</xml>'), 400],
      ['malformed XML', (s) => sendBody(s, '<xml><ToUserName>'), 400],
      ['an oversized body', (s) => sendBody(s, '<xml><A>' + 'x'.repeat(300 * 1024) + '</A></xml>'), 413],
      [
        'a push without FromUserName',
        (s) =>
          sendBody(
            s,
            '<xml><ToUserName>gh</ToUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>',
          ),
        400,
      ],
    ];
    let target = '';
    function send(
      s: WechatPushSimulator,
      o: Parameters<WechatPushSimulator['buildRequest']>[1],
    ): Promise<any> {
      const b = s.buildRequest(s.text(OPENID, 'x'), o);
      return raw(`${target}?${new URLSearchParams(b.query).toString()}`, {
        method: 'POST',
        body: b.body,
        headers: { 'Content-Type': o?.contentType ?? 'text/xml' },
      });
    }
    function sendBody(s: WechatPushSimulator, body: string): Promise<any> {
      const b = s.buildRequest(s.text(OPENID, 'x'), { mode: 'plain' });
      return raw(`${target}?${new URLSearchParams(b.query).toString()}`, {
        method: 'POST',
        body,
        headers: { 'Content-Type': 'text/xml' },
      });
    }
    for (const [what, run, status, body] of cases) {
      it(`${what}: ${status}${body === '' ? ' with no body' : ''}`, async () => {
        rt = await loadFlow(flow(), credentials);
        target = hook();
        const got = collect(rt);
        const r = await run(sim);
        assert.equal(r.status, status);
        if (body !== undefined) assert.equal(r.text, body);
        else assert.ok(r.text.length > 0 && r.text.length < 200);
        await sleep(50);
        assert.equal(got.length, 0);
        const logged = allLogged();
        for (const s of SECRETS) assert.ok(!logged.includes(s), 'a secret was logged');
      });
    }

    it('safe-mode pushes with no EncodingAESKey configured: 500 (WeChat retries), a red status that says why', async () => {
      rt = await loadFlow(flow(), { wc: { appSecret: APP_SECRET, token: TOKEN, encodingAESKey: '' } });
      const got = collect(rt);
      const rec = await sim.push(hook(), sim.text(OPENID, 'x'), { retries: 0 });
      assert.equal(rec.attempts[0].status, 500);
      await sleep(400);
      assert.equal(got.length, 0);
      const st = statusesOf('wi').at(-1);
      assert.equal(st.fill, 'red');
      // The helper runtime has no message catalogs: texts are their keys (the red.js test checks the words).
      assert.match(st.text, /wechat-in\.status\.no-key/);
      const errors = helper._NodePrototype.error.getCalls().filter((c: any) => c.thisValue?.id === 'wi');
      assert.ok(errors.some((c: any) => String(c.args[0]) === 'wechat-in.errors.no-key'));
    });

    it('the status turns from "listening" to "listening · counts" once pushes arrive', async () => {
      rt = await loadFlow(flow(), credentials);
      await sim.push(hook(), sim.text(OPENID, 'a'));
      await sim.push(hook(), sim.text(OPENID, 'b'), { tamper: 'signature', retries: 0 });
      await sleep(400);
      const st = statusesOf('wi').at(-1);
      assert.equal(st.fill, 'green');
      assert.equal(st.text, 'wechat-in.status.listening · wechat-in.status.counts');
      assert.equal(statusesOf('wi')[0].text, 'wechat-in.status.listening');
    });
  });

  describe('passive replies', () => {
    it('a reply given within the budget goes into the push response, encrypted and signed in safe mode', async () => {
      rt = await loadFlow(flow({ replyTimeout: 3000 }), credentials);
      const red = redOf(rt);
      let handled: boolean | undefined;
      rt.getNode('out').on('input', (msg: any) => {
        handled = passiveReply(red, {
          ...msg,
          payload: { type: 'text', text: '自动回复 ]]>', conversationId: OPENID },
        });
      });
      const rec = await sim.push(hook(), sim.text(OPENID, 'hello'));
      assert.equal(handled, true);
      assert.deepEqual(rec.problems, []);
      assert.ok(rec.acknowledged);
      assert.equal(rec.reply?.encrypted, true);
      assert.equal(rec.reply?.fields.MsgType, 'text');
      assert.equal(rec.reply?.fields.Content, '自动回复 ]]>');
      assert.equal(rec.reply?.fields.ToUserName, OPENID);
      assert.equal(rec.reply?.fields.FromUserName, GH);
    });

    it('plain mode: a plain reply; transfer_customer_service with a KF account', async () => {
      rt = await loadFlow(flow({ replyTimeout: 3000 }), credentials);
      const red = redOf(rt);
      rt.getNode('out').on('input', (msg: any) => {
        passiveReply(red, { ...msg, payload: { type: 'transfer_customer_service', kfAccount: 'kf1@acme' } });
      });
      const rec = await sim.push(hook(), sim.text(OPENID, 'agent please'), { mode: 'plain' });
      assert.deepEqual(rec.problems, []);
      assert.equal(rec.reply?.encrypted, false);
      assert.equal(rec.reply?.fields.MsgType, 'transfer_customer_service');
      assert.deepEqual(rec.reply?.fields.TransInfo, { KfAccount: 'kf1@acme' });
    });

    it('past the budget the node answers "success"; a late reply is refused (the flow uses the API instead)', async () => {
      rt = await loadFlow(flow({ replyTimeout: 300 }), credentials);
      const got = collect(rt);
      const rec = await sim.push(hook(), sim.text(OPENID, 'hello'));
      assert.equal(rec.attempts[0].body, 'success');
      assert.ok(rec.attempts[0].ms >= 250 && rec.attempts[0].ms < 2000, String(rec.attempts[0].ms));
      await until(() => got.length === 1);
      assert.match(got[0].wechat.replyId, /^wxr-[0-9a-f]{24}$/);
      assert.equal(passiveReply(redOf(rt), { ...got[0], payload: { type: 'text', text: 'late' } }), false);
    });

    it('only one reply per push; a reply for another user or a payload that cannot be passive is refused', async () => {
      rt = await loadFlow(flow({ replyTimeout: 3000 }), credentials);
      const red = redOf(rt);
      const results: boolean[] = [];
      rt.getNode('out').on('input', (msg: any) => {
        results.push(
          passiveReply(red, { ...msg, payload: { type: 'text', text: 'x', conversationId: 'someone-else' } }),
        );
        results.push(
          passiveReply(red, { ...msg, payload: { type: 'file', attachments: [{ url: 'https://x/y.pdf' }] } }),
        );
        results.push(
          passiveReply(red, { ...msg, payload: { type: 'image', attachments: [{ mediaId: 'MID' }] } }),
        );
        results.push(passiveReply(red, { ...msg, payload: { type: 'text', text: 'second' } }));
      });
      const rec = await sim.push(hook(), sim.text(OPENID, 'hello'));
      assert.deepEqual(results, [false, false, true, false]);
      assert.equal(rec.reply?.fields.MsgType, 'image');
      assert.deepEqual(rec.reply?.fields.Image, { MediaId: 'MID' });
    });

    it('while a reply is awaited the status says so; closing the node answers held pushes "success"', async () => {
      rt = await loadFlow(flow({ replyTimeout: 4500 }), credentials);
      const pending = sim.push(hook(), sim.text(OPENID, 'hold'), { retries: 0 });
      await until(() => statusesOf('wi').some((s) => s.fill === 'blue'), 2000);
      assert.match(statusesOf('wi').find((s) => s.fill === 'blue').text, /wechat-in\.status\.holding/);
      const t0 = Date.now();
      // A redeploy: the nodes close, the server stays up.
      const server = rt.server;
      await helper.unload();
      const rec = await pending;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rt = undefined;
      assert.equal(rec.attempts[0].body, 'success');
      assert.ok(Date.now() - t0 < 2000);
    });
  });

  describe('media links', () => {
    it('a forged token gets 403, an expired one 410, both with nothing secret in the answer', async () => {
      rt = await loadFlow(flow(), credentials);
      const got = collect(rt);
      await sim.push(hook(), sim.image(OPENID, 'MEDIA_ID_1'));
      await until(() => got.length === 1);
      const url: string = got[0].payload.attachments[0].url;
      const token = url.split('/').pop() as string;
      const forged = token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
      const f = await raw(`${hook()}/media/${forged}`);
      assert.equal(f.status, 403);
      assert.equal(f.text, '');
      const key = mediaLinkKey({
        appId: APP_ID,
        appSecret: APP_SECRET,
        token: TOKEN,
        encodingAESKey: AES_KEY,
      }) as Buffer;
      const expired = signMediaToken(key, {
        mediaId: 'MEDIA_ID_1',
        kind: 'image',
        exp: Math.floor(Date.now() / 1000) - 1,
      });
      const e = await raw(`${hook()}/media/${expired}`);
      assert.equal(e.status, 410);
      for (const s of SECRETS) assert.ok(!f.text.includes(s) && !e.text.includes(s));
    });

    it('links use the public URL when set, and X-Forwarded-Proto/Host otherwise', async () => {
      rt = await loadFlow(flow({ publicUrl: 'https://bot.example.com/' }), credentials);
      const got = collect(rt);
      await sim.push(hook(), sim.image(OPENID, 'M1'));
      await until(() => got.length === 1);
      assert.match(
        got[0].payload.attachments[0].url,
        /^https:\/\/bot\.example\.com\/wechat\/webhook\/media\/v1\./,
      );
      await rt.close();
      rt = await loadFlow(flow(), credentials);
      const got2 = collect(rt);
      await sim.push(hook(), sim.voice(OPENID, 'M2'), {
        headers: { 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'wx.example.org' },
      });
      await until(() => got2.length === 1);
      assert.match(
        got2[0].payload.attachments[0].url,
        /^https:\/\/wx\.example\.org\/wechat\/webhook\/media\/v1\./,
      );
    });
  });

  it('releases the path on close: the webhook is gone (404) after the flow is removed', async () => {
    rt = await loadFlow(flow(), credentials);
    const url = hook();
    assert.equal((await sim.verifyUrl(url)).status, 200);
    const server = rt.server;
    await helper.unload();
    const r = await raw(url).catch(() => ({ status: 0 }));
    assert.equal(r.status, 404);
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rt = undefined;
  });

  it('never logs the Token, EncodingAESKey or AppSecret, even at debug level', async () => {
    rt = await loadFlow(flow({ replyTimeout: 200 }), credentials);
    await sim.push(hook(), sim.text(OPENID, 'x'));
    await sim.push(hook(), sim.text(OPENID, 'x'), { tamper: 'appid', retries: 0 });
    await sim.push(hook(), sim.text(OPENID, 'x'), { tamper: 'ciphertext', retries: 0 });
    await sim.verifyUrl(hook(), { tamper: 'signature' });
    await sleep(400);
    const logged = allLogged();
    assert.ok(logged.length > 0);
    for (const s of SECRETS) assert.ok(!logged.includes(s), 'a secret was logged');
  });
});
