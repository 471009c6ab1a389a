/**
 * Hostile input against every endpoint of the pack, over real HTTP, in two runtimes: the test helper's runtime and a
 * real `red.js` started with default settings (the editor's JSON and form body parsers in front of every endpoint).
 * The same cases run against both. Each case also proves that nothing was emitted: it ends by sending one genuine
 * push (the canary) and waiting for it, and then the canary must be the only new message on the wires.
 *
 * What is sent: XML with a DOCTYPE, internal and external entities, billion laughs, deep nesting, many elements,
 * huge attributes, processing instructions; JSON too deep, not an object, with __proto__; bodies over the limit
 * (declared, and streamed without a length); wrong content types and encodings; truncated and binary bodies;
 * invalid UTF-8; forged signatures, msg_signature, AppID and box tokens (alg none, other keys and algorithms,
 * tampered, expired); replays; forged and expired media links; odd admin-page parameters; and emoji and
 * right-to-left text, which must come out exactly as they went in.
 */
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { CxoneSimulator } from '../../sandbox/sim/cxone';
import { WechatSimulator } from '../../sandbox/sim/wechat';
import { mediaLinkKey, signMediaToken } from '../../lib/wechat/inbound/media-link';
import { signingKey } from '../../lib/cxone/box/tokens';
import { loadFlow, startHelper, stopHelper, type TestRuntime } from '../harness/helper';
import { startNodeRed, type NodeRedProcess } from '../harness/process';
import {
  BOX_ISSUER,
  boxAudience,
  forgedBoxTokens,
  portOf,
  rawRequest,
  send,
  sha1Sorted,
  sleep,
  textPush,
  wxEncrypt,
  wxPush,
  wxVerifyQuery,
  wxXml,
  type Answer,
  type WxAccount,
  type WxMode,
} from './requests';

const OPENID = 'oSecUser0000000000000000001';
const BOX_ID = 'sec-box-client-7f3a';
const BOX_SECRET = 'sec-box-secret-9c1e-' + randomBytes(6).toString('hex');
const PLAIN: WxAccount = {
  appId: 'wx5ec0000000000001',
  gh: 'gh_5ec000000001',
  token: 'secPlainToken' + randomBytes(4).toString('hex'),
};
/** Emoji (with skin tone and ZWJ sequences), Arabic and Hebrew (right to left), bidi controls, combining marks. */
const TRICKY_TEXT =
  '👍🏽 👩‍👩‍👧‍👦 🇨🇳 مرحبا بالعالم עברית \u202Eevil\u202C \u200F x\u0301\u0327 𠮷野家 ]]> <b>&amp;</b>';

interface Emitted {
  payload: any;
  mode?: string;
}

/** One runtime under test, as the cases see it. */
interface Target {
  kind: 'helper' | 'red.js';
  url: string;
  emitted(): Emitted[];
  wechat: WxAccount;
}

function flows(wechatApi: string, cxoneIssuer: string, out: string): Record<string, unknown>[] {
  return [
    { id: 'tab', type: 'tab', label: 'security' },
    {
      id: 'wcp',
      type: 'wechat-config',
      z: '',
      name: 'plain',
      appId: PLAIN.appId,
      apiBase: 'http://127.0.0.1:9',
    },
    { id: 'wcs', type: 'wechat-config', z: '', name: 'aes', appId: '', apiBase: wechatApi },
    {
      id: 'wip',
      type: 'wechat-in',
      z: 'tab',
      name: 'plain',
      wechat: 'wcp',
      path: '/sec/wx/plain',
      wires: [[out]],
    },
    {
      id: 'wis',
      type: 'wechat-in',
      z: 'tab',
      name: 'aes',
      wechat: 'wcs',
      path: '/sec/wx/aes',
      wires: [[out]],
    },
    { id: 'cc', type: 'cxone-dfo-config', z: '', name: 'cx', authIssuer: cxoneIssuer, apiBase: '' },
    { id: 'ci', type: 'cxone-dfo-in', z: 'tab', name: 'box', cxone: 'cc', path: '/sec/box', wires: [[out]] },
  ];
}

function hostileCases(get: () => Target, wx: () => WechatSimulator, cx: () => CxoneSimulator): void {
  let boxToken = '';
  const t = (): Target => get();
  const plainUrl = (): string => `${t().url}/sec/wx/plain`;
  const aesUrl = (): string => `${t().url}/sec/wx/aes`;
  const box = (): string => `${t().url}/sec/box`;

  /** A genuine push; resolves once it was emitted; returns the emissions since `since` (canary included). */
  async function canary(since: number): Promise<Emitted[]> {
    const marker = 'canary-' + randomBytes(6).toString('hex');
    const r = wxPush(PLAIN, 'plain', textPush(PLAIN, OPENID, marker, String(Date.now()) + '7'));
    const a = await send(`${plainUrl()}?${r.query}`, {
      body: r.body,
      headers: { 'Content-Type': 'text/xml' },
    });
    assert.equal(a.status, 200, 'the canary push is accepted');
    const t0 = Date.now();
    while (
      !t()
        .emitted()
        .some((e) => e.payload?.text === marker)
    ) {
      if (Date.now() - t0 > 5000) throw new Error('the canary was not emitted');
      await sleep(10);
    }
    return t().emitted().slice(since);
  }

  /** Asserts that only the canary came out since `since`. */
  async function nothingEmitted(since: number): Promise<void> {
    const got = await canary(since);
    assert.equal(
      got.length,
      1,
      `only the canary was emitted, got: ${got.map((g) => JSON.stringify(g.payload?.text)).join(', ')}`,
    );
  }

  const xmlPost = (
    url: string,
    r: { query: string; body: Buffer | string },
    ct = 'text/xml',
  ): Promise<Answer> => send(`${url}?${r.query}`, { body: r.body, headers: { 'Content-Type': ct } });

  const boxCall = (
    path: string,
    body: Buffer | string,
    headers: Record<string, string> = {},
  ): Promise<Answer> =>
    send(`${box()}${path}`, {
      body,
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${boxToken}`, ...headers },
    });

  const dfo3 = (text: string, thread = OPENID): string =>
    JSON.stringify({
      thread: { idOnExternalPlatform: thread },
      messageContent: { type: 'TEXT', payload: { text } },
      endUserRecipients: [{ idOnExternalPlatform: thread, isPrimary: true }],
    });

  it('gets a box token the genuine way (JSON client credentials)', async () => {
    const a = await send(`${box()}/1.0/token`, {
      body: JSON.stringify({
        grant_type: 'client_credentials',
        client_id: BOX_ID,
        client_secret: BOX_SECRET,
      }),
      headers: { 'Content-Type': 'application/json' },
    });
    assert.equal(a.status, 200, a.text);
    boxToken = (JSON.parse(a.text) as { access_token: string }).access_token;
    assert.ok(boxToken.split('.').length === 3);
  });

  describe('forgery', () => {
    it('refuses pushes whose signature or msg_signature does not match (401, no body), in every mode', async () => {
      const n = t().emitted().length;
      const w = t().wechat;
      for (const [url, acct, mode] of [
        [plainUrl(), PLAIN, 'plain'],
        [aesUrl(), w, 'compat'],
        [aesUrl(), w, 'safe'],
      ] as [string, WxAccount, WxMode][]) {
        const good = wxPush(acct, mode, textPush(acct, OPENID, 'forged ' + mode, '9000000000000000001'));
        const q = new URLSearchParams(good.query);
        const flips: [string, URLSearchParams][] = [];
        const sig = new URLSearchParams(q);
        sig.set(
          'signature',
          q.get('signature')!.replace(/^./, (c) => (c === 'a' ? 'b' : 'a')),
        );
        flips.push(['signature flipped', sig]);
        const upper = new URLSearchParams(q);
        upper.set('signature', 'G'.repeat(40));
        flips.push(['signature not hex', upper]);
        const none = new URLSearchParams(q);
        none.delete('signature');
        flips.push(['no signature', none]);
        const other = new URLSearchParams(q);
        other.set('timestamp', String(Number(q.get('timestamp')) + 1));
        flips.push(['timestamp changed after signing', other]);
        if (mode !== 'plain') {
          const ms = new URLSearchParams(q);
          ms.set(
            'msg_signature',
            q.get('msg_signature')!.replace(/^./, (c) => (c === 'a' ? 'b' : 'a')),
          );
          flips.push(['msg_signature flipped', ms]);
          const nms = new URLSearchParams(q);
          nms.delete('msg_signature');
          if (mode === 'safe') flips.push(['no msg_signature (safe)', nms]);
        }
        for (const [what, query] of flips) {
          const a = await xmlPost(url, { query: query.toString(), body: good.body });
          assert.ok(a.status === 401 || a.status === 400, `${mode}: ${what} → ${a.status}`);
          if (a.status === 401) assert.equal(a.text, '', `${mode}: ${what} has no body`);
        }
      }
      // A ciphertext encrypted for another AppID, correctly signed.
      const wrong = wxPush(w, 'safe', textPush(w, OPENID, 'other app', '9000000000000000002'), {
        appId: 'wx0000000000000bad',
      });
      assert.equal((await xmlPost(aesUrl(), wrong)).status, 401);
      // The body of a genuinely signed safe push swapped for another ciphertext.
      const a1 = wxPush(w, 'safe', textPush(w, OPENID, 'a', '9000000000000000003'));
      const a2 = wxPush(w, 'safe', textPush(w, OPENID, 'b', '9000000000000000004'));
      assert.equal((await xmlPost(aesUrl(), { query: a1.query, body: a2.body })).status, 401);
      await nothingEmitted(n);
    });

    it('answers URL verification only with the right signature; echostr is echoed as text, never as HTML', async () => {
      const ok = await send(`${plainUrl()}?${wxVerifyQuery(PLAIN.token, '<script>1</script>')}`);
      assert.equal(ok.status, 200);
      assert.match(String(ok.headers['content-type']), /^text\/plain/);
      const bad = await send(`${plainUrl()}?${wxVerifyQuery('another-token', '123')}`);
      assert.equal(bad.status, 401);
      assert.equal(bad.text, '');
      const none = await send(`${plainUrl()}?echostr=123`);
      assert.equal(none.status, 401);
    });

    it('drops a replayed push (same MsgId, new signature): answered "success", emitted once', async () => {
      const n = t().emitted().length;
      const id = String(Date.now()) + '1';
      const xml = textPush(PLAIN, OPENID, 'replay-' + id, id);
      for (let i = 0; i < 3; i++) {
        const a = await xmlPost(plainUrl(), wxPush(PLAIN, 'plain', xml));
        assert.equal(a.status, 200);
        assert.equal(a.text, 'success');
      }
      const got = await canary(n);
      assert.deepEqual(
        got.map((g) => g.payload.text),
        ['replay-' + id, got[1].payload.text],
      );
    });

    it('refuses box tokens it did not issue: alg none, other keys and algorithms, tampered, expired (401)', async () => {
      const n = t().emitted().length;
      const body = dfo3('must not pass');
      const now = Math.floor(Date.now() / 1000);
      const key = signingKey({ clientId: BOX_ID, clientSecret: BOX_SECRET, jwtSecret: '' });
      const expired = jwt.sign({ iat: now - 7200, exp: now - 3600, jti: 'x' }, key, {
        algorithm: 'HS256',
        issuer: BOX_ISSUER,
        audience: boxAudience(BOX_ID),
        subject: BOX_ID,
      });
      const wrongAud = jwt.sign({ iat: now, exp: now + 600, jti: 'x' }, key, {
        algorithm: 'HS256',
        issuer: BOX_ISSUER,
        audience: boxAudience('someone-else'),
        subject: BOX_ID,
      });
      const wrongIss = jwt.sign({ iat: now, exp: now + 600, jti: 'x' }, key, {
        algorithm: 'HS256',
        issuer: 'urn:evil',
        audience: boxAudience(BOX_ID),
        subject: BOX_ID,
      });
      const cases = [
        ...forgedBoxTokens(BOX_ID, boxToken),
        { what: 'expired an hour ago', token: expired },
        { what: 'another audience', token: wrongAud },
        { what: 'another issuer', token: wrongIss },
      ];
      for (const c of cases) {
        for (const path of ['/2.0/channel/chat_1/outbound', '/1.0/posts/p1/messages']) {
          const a = await boxCall(path, body, { Authorization: `Bearer ${c.token}` });
          assert.equal(a.status, 401, `${c.what} on ${path}`);
          assert.match(String(a.headers['www-authenticate']), /^Bearer realm=/);
        }
      }
      for (const h of [
        '',
        'Basic ' + Buffer.from(`${BOX_ID}:${BOX_SECRET}`).toString('base64'),
        'Bearer',
        `Bearer ${'A'.repeat(5000)}`,
      ]) {
        assert.equal((await boxCall('/2.0/channel/chat_1/outbound', body, { Authorization: h })).status, 401);
      }
      await nothingEmitted(n);
    });

    it('refuses forged and expired media links (403 / 410) and path tricks, without calling WeChat', async () => {
      const w = t().wechat;
      const calls = wx().api.calls.length;
      const sim = wx().account();
      const key = mediaLinkKey({
        appId: sim.appId,
        appSecret: sim.credentials.appSecret,
        token: sim.credentials.token,
        encodingAESKey: sim.credentials.encodingAESKey,
      })!;
      const now = Math.floor(Date.now() / 1000);
      const valid = signMediaToken(key, { mediaId: 'm1', kind: 'image', exp: now + 600 });
      const expired = signMediaToken(key, { mediaId: 'm1', kind: 'image', exp: now - 1 });
      const otherKey = signMediaToken(randomBytes(32), { mediaId: 'm1', kind: 'image', exp: now + 600 });
      const [v, body, mac] = valid.split('.');
      const forged = [
        otherKey,
        `${v}.${Buffer.from(JSON.stringify({ m: 'other', k: 'image', e: now + 600 })).toString('base64url')}.${mac}`,
        `${v}.${body}.${mac.slice(0, -2)}`,
        `${v}.${body}.`,
        `v2.${body}.${mac}`,
        'x'.repeat(3000),
        '..%2f..%2fetc%2fpasswd',
        '%00',
      ];
      for (const f of forged) {
        const a = await send(`${aesUrl()}/media/${f}`);
        assert.ok(a.status === 403 || a.status === 404, `${f.slice(0, 40)} → ${a.status}`);
        assert.doesNotMatch(a.text, /access_token|appsecret/i);
      }
      const e = await send(`${aesUrl()}/media/${expired}`);
      assert.equal(e.status, 410);
      assert.equal(wx().api.calls.length, calls, 'WeChat was not called for a refused link');
      void w;
    });
  });

  describe('hostile XML', () => {
    const doctypes = [
      ['an internal entity', '<!DOCTYPE xml [<!ENTITY e "boom">]><xml><ToUserName>&e;</ToUserName></xml>'],
      [
        'an external entity',
        '<!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Content>&e;</Content></xml>',
      ],
      ['a parameter entity', '<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]><xml/>'],
      [
        'billion laughs',
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">' +
          Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i || ''};`.repeat(10)}">`).join(
            '',
          ) +
          ']><xml><Content>&lol9;</Content></xml>',
      ],
      ['a DOCTYPE after a comment', '<!-- hi --><!DOCTYPE xml><xml/>'],
      ['a processing instruction', '<xml><?evil run?><ToUserName>x</ToUserName></xml>'],
      ['an undefined entity', '<xml><ToUserName>&undefined;</ToUserName></xml>'],
    ];

    it('refuses DOCTYPEs, entities, billion laughs and processing instructions (400), also inside the ciphertext', async () => {
      const n = t().emitted().length;
      for (const [what, xml] of doctypes) {
        const t0 = Date.now();
        const a = await xmlPost(plainUrl(), wxPush(PLAIN, 'plain', xml));
        assert.equal(a.status, 400, `plain, ${what}`);
        assert.ok(Date.now() - t0 < 2000, `plain, ${what}: answered at once`);
        assert.doesNotMatch(a.text, /root:|lollol/);
        const s = await xmlPost(aesUrl(), wxPush(t().wechat, 'safe', xml));
        assert.equal(s.status, 400, `safe, ${what}`);
      }
      await nothingEmitted(n);
    });

    it('refuses deep nesting and floods of elements quickly (400), and huge attributes past the limit (413)', async () => {
      const n = t().emitted().length;
      const deep = '<xml>' + '<a>'.repeat(30_000) + '</a>'.repeat(30_000) + '</xml>';
      const many = '<xml>' + '<a>1</a>'.repeat(30_000) + '</xml>';
      const deepEnc = '<xml>' + '<a>'.repeat(20) + 'x' + '</a>'.repeat(20) + '</xml>';
      for (const [what, xml, status] of [
        ['30 000 levels', deep, 400],
        ['30 000 elements', many, 400],
        ['20 levels', deepEnc, 400],
        ['a 300 KiB attribute', `<xml><ToUserName a="${'A'.repeat(300_000)}">x</ToUserName></xml>`, 413],
        ['an unterminated attribute', `<xml><ToUserName a="${'A'.repeat(100_000)}>x</ToUserName></xml>`, 400],
      ] as [string, string, number][]) {
        const t0 = Date.now();
        const a = await xmlPost(plainUrl(), wxPush(PLAIN, 'plain', xml));
        assert.equal(a.status, status, what);
        assert.ok(Date.now() - t0 < 3000, `${what}: answered within 3 s`);
      }
      await nothingEmitted(n);
    });

    it('refuses truncated, binary, empty and not-XML bodies, and pushes missing fields (400)', async () => {
      const n = t().emitted().length;
      const full = textPush(PLAIN, OPENID, 'truncated', '9000000000000000005');
      const bodies: [string, Buffer | string][] = [
        ['cut in half', full.slice(0, Math.floor(full.length / 2))],
        ['cut before the last >', full.slice(0, -1)],
        ['binary', randomBytes(2048)],
        ['NUL bytes', Buffer.alloc(64)],
        ['empty', ''],
        ['JSON text', '{"ToUserName":"gh"}'],
        ['two roots', full + full],
        [
          'no CreateTime',
          wxXml([
            ['ToUserName', PLAIN.gh],
            ['FromUserName', OPENID],
            ['MsgType', 'text'],
          ]),
        ],
        [
          'CreateTime not a number',
          wxXml([
            ['ToUserName', PLAIN.gh],
            ['FromUserName', OPENID],
            ['CreateTime', 'soon'],
            ['MsgType', 'text'],
          ]),
        ],
      ];
      for (const [what, body] of bodies) {
        const a = await xmlPost(plainUrl(), wxPush(PLAIN, 'plain', Buffer.from(body as string)));
        assert.equal(a.status, 400, what);
        assert.doesNotMatch(a.text, /<html|at \w+ \(/i, `${what}: a short text, no page or stack`);
      }
      // A ciphertext that is not one: base64 of random bytes, not base64 at all, empty.
      for (const enc of [randomBytes(64).toString('base64'), '%%%not base64%%%', ' ']) {
        const w = t().wechat;
        const ts = String(Math.floor(Date.now() / 1000));
        const q = new URLSearchParams({
          signature: sha1Sorted(w.token, ts, '1'),
          timestamp: ts,
          nonce: '1',
          encrypt_type: 'aes',
          msg_signature: sha1Sorted(w.token, ts, '1', enc.trim()),
        });
        const body = `<xml><ToUserName><![CDATA[${w.gh}]]></ToUserName><Encrypt><![CDATA[${enc}]]></Encrypt></xml>`;
        const a = await xmlPost(aesUrl(), { query: q.toString(), body });
        assert.equal(a.status, 400, `Encrypt ${JSON.stringify(enc.slice(0, 10))}`);
      }
      // Decrypts, but the plaintext inside is binary or a truncated XML.
      const w = t().wechat;
      for (const inner of [randomBytes(100), Buffer.from(full.slice(0, 40))]) {
        const ts = String(Math.floor(Date.now() / 1000));
        const enc = wxEncrypt(w, inner);
        const q = new URLSearchParams({
          signature: sha1Sorted(w.token, ts, '2'),
          timestamp: ts,
          nonce: '2',
          encrypt_type: 'aes',
          msg_signature: sha1Sorted(w.token, ts, '2', enc),
        });
        const body = `<xml><ToUserName><![CDATA[${w.gh}]]></ToUserName><Encrypt><![CDATA[${enc}]]></Encrypt></xml>`;
        assert.equal((await xmlPost(aesUrl(), { query: q.toString(), body })).status, 400);
      }
      await nothingEmitted(n);
    });

    it('refuses invalid UTF-8 in a push (400), in plain and inside the ciphertext', async () => {
      const n = t().emitted().length;
      const good = textPush(PLAIN, OPENID, 'XXXX', '9000000000000000006');
      for (const bad of [
        [0xff, 0xfe],
        [0xc3, 0x28],
        [0xed, 0xa0, 0x80],
        [0xf8, 0x88, 0x80, 0x80, 0x80],
        [0xe2, 0x82],
      ]) {
        const body = Buffer.concat([
          Buffer.from(good.split('XXXX')[0]),
          Buffer.from(bad),
          Buffer.from(good.split('XXXX')[1]),
        ]);
        const a = await xmlPost(plainUrl(), wxPush(PLAIN, 'plain', body));
        assert.equal(a.status, 400, `plain, bytes ${bad.join(',')}`);
        const s = await xmlPost(aesUrl(), wxPush(t().wechat, 'safe', body));
        assert.equal(s.status, 400, `safe, bytes ${bad.join(',')}`);
      }
      await nothingEmitted(n);
    });
  });

  describe('limits, content types and encodings', () => {
    it('refuses a body declared over the limit at once (413), before it is sent', async () => {
      const n = t().emitted().length;
      const port = portOf(t().url);
      for (const [path, limit] of [
        ['/sec/wx/plain', 256 * 1024],
        ['/sec/box/1.0/token', 16 * 1024],
        ['/sec/box/2.0/channel/c/outbound', 256 * 1024],
        ['/sec/box/admin/api/channels', 16 * 1024],
      ] as [string, number][]) {
        const head =
          `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n` +
          `Authorization: Bearer ${boxToken}\r\nContent-Length: ${limit + 1}\r\n\r\n`;
        const a = await rawRequest(port, head + 'x', { waitMs: 3000 });
        assert.equal(a.status, 413, `${path}: ${a.text.slice(0, 80)}`);
      }
      await nothingEmitted(n);
    });

    it('cuts a chunked body as soon as it passes the limit (413) instead of reading it all', async () => {
      const n = t().emitted().length;
      const chunk = Buffer.alloc(64 * 1024, 0x41);
      for (const path of ['/sec/wx/plain?x=1', '/sec/box/2.0/channel/c/outbound']) {
        // 64 MiB offered; the answer must come long before that was sent.
        const chunks = Array.from({ length: 1024 }, () => chunk);
        let answered: Answer | undefined;
        try {
          answered = await send(`${t().url}${path}`, {
            chunks,
            headers: { 'Content-Type': 'text/xml', Authorization: `Bearer ${boxToken}` },
          });
        } catch {
          // The server may close the connection while we are still writing: that is also "cut".
        }
        if (answered) assert.equal(answered.status, 413, path);
      }
      await nothingEmitted(n);
    });

    it('refuses JSON, form and multipart bodies at the webhook (415) although the editor parsers see them first', async () => {
      const n = t().emitted().length;
      const r = wxPush(PLAIN, 'plain', textPush(PLAIN, OPENID, 'ct', '9000000000000000007'));
      for (const [ct, body] of [
        ['application/json', '{"ToUserName":"gh","Content":"x"}'],
        ['application/json; charset=utf-8', '[1,2,3]'],
        ['application/vnd.api+json', '{}'],
        ['application/x-www-form-urlencoded', 'ToUserName=gh&Content=x'],
        [
          'multipart/form-data; boundary=x',
          '--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n--x--\r\n',
        ],
      ]) {
        const a = await xmlPost(plainUrl(), { query: r.query, body }, ct);
        assert.equal(a.status, 415, ct);
        assert.doesNotMatch(a.text, /<html|<!DOCTYPE/i, `${ct}: our answer, not the editor's error page`);
      }
      // A signed, well-formed push sent as JSON is still refused.
      assert.equal((await xmlPost(plainUrl(), r, 'application/json')).status, 415);
      await nothingEmitted(n);
    });

    it('refuses compressed bodies (415) and an invalid Content-Length (400)', async () => {
      const n = t().emitted().length;
      const r = wxPush(PLAIN, 'plain', textPush(PLAIN, OPENID, 'enc', '9000000000000000008'));
      for (const enc of ['gzip', 'deflate', 'br']) {
        const a = await send(`${plainUrl()}?${r.query}`, {
          body: r.body,
          headers: { 'Content-Type': 'text/xml', 'Content-Encoding': enc },
        });
        assert.equal(a.status, 415, enc);
      }
      const port = portOf(t().url);
      for (const cl of ['-1', 'abc', '1e3']) {
        const a = await rawRequest(
          port,
          `POST /sec/wx/plain?${r.query} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: ${cl}\r\n\r\n`,
        );
        assert.ok(
          a.status !== undefined && a.status >= 400 && a.status < 500,
          `Content-Length ${cl} → ${a.status}`,
        );
      }
      await nothingEmitted(n);
    });

    it('survives a body that stops halfway and a client that hangs up (nothing emitted, still serving)', async () => {
      const n = t().emitted().length;
      const port = portOf(t().url);
      const r = wxPush(PLAIN, 'plain', textPush(PLAIN, OPENID, 'half', '9000000000000000009'));
      const head = `POST /sec/wx/plain?${r.query} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: ${r.body.length}\r\n\r\n`;
      const half = r.body.subarray(0, Math.floor(r.body.length / 2));
      // Half the body, then the client closes its side.
      const a = await rawRequest(port, Buffer.concat([Buffer.from(head), half]), {
        halfClose: true,
        waitMs: 2000,
      });
      assert.ok(a.status === undefined || (a.status >= 400 && a.status < 500), `half-close → ${a.status}`);
      // Half the body, then silence: the connection is not held forever by us; we stop waiting after 1.5 s here.
      const b = await rawRequest(port, Buffer.concat([Buffer.from(head), half]), { waitMs: 1500 });
      assert.ok(b.status === undefined || b.status === 408, `stalled → ${b.status}`);
      // Garbage instead of HTTP.
      const c = await rawRequest(port, randomBytes(512), { waitMs: 1500 });
      assert.ok(c.status === undefined || c.status === 400, `garbage → ${c.status}`);
      await nothingEmitted(n);
    });

    it('answers oversized headers and query strings with 431 / 414-class errors, not a crash', async () => {
      const huge = 'a'.repeat(40_000);
      const a = await send(`${plainUrl()}?echostr=${huge}`).catch(() => undefined);
      assert.ok(!a || (a.status >= 400 && a.status < 500), `huge query → ${a?.status}`);
      const b = await send(`${plainUrl()}`, { headers: { 'X-Junk': huge } }).catch(() => undefined);
      assert.ok(!b || (b.status >= 400 && b.status < 500), `huge header → ${b?.status}`);
      const many: Record<string, string> = {};
      for (let i = 0; i < 500; i++) many[`x-h${i}`] = String(i);
      const c = await send(`${plainUrl()}?${wxVerifyQuery(PLAIN.token, 'ok')}`, { headers: many });
      assert.ok(c.status === 200 || c.status === 431, `500 headers → ${c.status}`);
      const n = t().emitted().length;
      await nothingEmitted(n);
    });
  });

  describe('hostile JSON at the box', () => {
    it('refuses JSON nested too deep, not an object, truncated, binary and invalid UTF-8 (400 invalid_request)', async () => {
      const n = t().emitted().length;
      const bodies: [string, Buffer | string][] = [
        ['60 000 [', '['.repeat(60_000)],
        ['10 000 {"a":', '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000)],
        ['33 levels', '{"a":'.repeat(33) + '1' + '}'.repeat(33)],
        ['an array', '[{"thread":{"idOnExternalPlatform":"x"}}]'],
        ['a string', '"hello"'],
        ['null', 'null'],
        ['truncated', dfo3('cut').slice(0, 30)],
        ['binary', randomBytes(1024)],
        [
          'invalid UTF-8',
          Buffer.concat([
            Buffer.from('{"messageContent":{"payload":{"text":"'),
            Buffer.from([0xff, 0xc3, 0x28]),
            Buffer.from('"}}}'),
          ]),
        ],
        ['XML', '<xml><a>1</a></xml>'],
      ];
      for (const path of [
        '/2.0/channel/chat_1/outbound',
        '/1.0/posts/p1/messages',
        '/1.0/channel/c/thread/t/sender-action',
        '/1.0/channel/c/recipients/validation',
      ]) {
        for (const [what, body] of bodies) {
          const a = await boxCall(path, body);
          assert.equal(a.status, 400, `${path}: ${what} → ${a.status} ${a.text.slice(0, 100)}`);
          assert.match(
            String(a.headers['content-type'] ?? 'application/json'),
            /json/,
            `${path}: ${what}: JSON answer`,
          );
          assert.doesNotMatch(a.text, /<html|at \w+ \(/i);
        }
      }
      await nothingEmitted(n);
    });

    it('does not let __proto__ or constructor keys change objects', async () => {
      const n = t().emitted().length;
      const body =
        '{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}},' +
        `"thread":{"idOnExternalPlatform":"${OPENID}","__proto__":{"isAdmin":true}},` +
        '"messageContent":{"type":"TEXT","payload":{"text":"proto-check"}}}';
      const a = await boxCall('/2.0/channel/chat_1/outbound', body);
      assert.equal(a.status, 200);
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
      const got = await canary(n);
      assert.equal(got.length, 2);
      const reply = got.find((g) => g.payload.text === 'proto-check');
      assert.ok(reply);
      assert.equal(reply.payload.isAdmin, undefined);
    });

    it('token endpoint: unreadable requests get 400/401 JSON answers and no token', async () => {
      const bodies: [string, Buffer | string, string][] = [
        ['deep JSON', '{"a":'.repeat(100) + '1' + '}'.repeat(100), 'application/json'],
        ['invalid UTF-8', Buffer.from([0x7b, 0xff, 0x7d]), 'application/json'],
        ['binary', randomBytes(300), 'application/octet-stream'],
        ['XML', '<xml/>', 'text/xml'],
        [
          'repeated form parameter',
          `client_id=${BOX_ID}&client_id=x&client_secret=y`,
          'application/x-www-form-urlencoded',
        ],
        [
          'secret in the body and in Basic',
          JSON.stringify({ client_id: BOX_ID, client_secret: 'x' }),
          'application/json',
        ],
      ];
      for (const [what, body, ct] of bodies) {
        const headers: Record<string, string> = { 'Content-Type': ct };
        if (what.includes('Basic'))
          headers.Authorization = 'Basic ' + Buffer.from(`${BOX_ID}:nope`).toString('base64');
        const a = await send(`${box()}/1.0/token`, { body, headers });
        assert.ok(a.status === 400 || a.status === 401, `${what} → ${a.status}`);
        assert.doesNotMatch(a.text, /access_token/);
        assert.match(a.text, /"error":"(invalid_request|invalid_client)"/);
      }
    });
  });

  describe('what must pass through intact', () => {
    it('emoji, right-to-left text, bidi controls and combining marks come out of every mode exactly as sent', async () => {
      const n = t().emitted().length;
      const w = t().wechat;
      const sent: string[] = [];
      for (const [url, acct, mode] of [
        [plainUrl(), PLAIN, 'plain'],
        [aesUrl(), w, 'compat'],
        [aesUrl(), w, 'safe'],
      ] as [string, WxAccount, WxMode][]) {
        const text = `${mode}: ${TRICKY_TEXT}`;
        sent.push(text);
        const a = await xmlPost(
          url,
          wxPush(acct, mode, textPush(acct, OPENID, text, String(Date.now()) + mode.length)),
        );
        assert.equal(a.status, 200, mode);
      }
      const boxText = `box: ${TRICKY_TEXT}`;
      sent.push(boxText);
      assert.equal((await boxCall('/2.0/channel/chat_1/outbound', dfo3(boxText))).status, 200);
      const got = await canary(n);
      const texts = got.map((g) => g.payload.text);
      for (const s of sent) assert.ok(texts.includes(s), `came out intact: ${JSON.stringify(s)}`);
    });
  });

  describe('admin pages and health', () => {
    it('refuses malformed admin-page links without calling CXone, and API calls without a session', async () => {
      const before = cx().dfo.oneTimeVerifications.length;
      for (const q of [
        '',
        'userId=1&brandId=2',
        `userId=1&brandId=2&token=${'t'.repeat(3000)}`,
        'userId=x&brandId=2&token=t',
        'userId=1e5&brandId=2&token=t',
        'userId=1&brandId=2&token=',
      ]) {
        const a = await send(`${box()}/action?${q}`);
        assert.equal(a.status, 400, q.slice(0, 40));
        assert.match(String(a.headers['content-security-policy']), /default-src 'none'/);
      }
      assert.equal(cx().dfo.oneTimeVerifications.length, before, 'CXone was not asked');
      const forged = 'wxcx_admin=' + randomBytes(32).toString('base64url');
      assert.equal((await send(`${box()}/admin`, { headers: { cookie: forged } })).status, 401);
      assert.equal((await send(`${box()}/admin/api/channels`, { headers: { cookie: forged } })).status, 401);
      const post = await send(`${box()}/admin/api/channels`, {
        body: '{"name":"x"}',
        headers: { cookie: forged, 'Content-Type': 'application/json', 'X-CSRF-Token': 'x' },
      });
      assert.equal(post.status, 401);
      const del = await send(`${box()}/admin/api/channels/chat_1`, {
        method: 'DELETE',
        headers: { cookie: forged },
      });
      assert.equal(del.status, 401);
    });

    it('a forged one-time token gets an error page (403), and a genuine one a session only once', async () => {
      const a = await send(`${box()}/action?userId=5678&brandId=1234&token=forged-token-123`);
      assert.equal(a.status, 403);
      assert.doesNotMatch(a.text, /<script>|accessToken/);
      const token = cx().dfo.issueOneTimeToken({ brandId: 1234, userId: 5678 });
      const ok = await send(
        `${box()}/action?userId=5678&brandId=1234&token=${token}&backUrl=javascript:alert(1)`,
      );
      assert.equal(ok.status, 303);
      const cookie = /wxcx_admin=[^;]+/.exec(String(ok.headers['set-cookie']))![0];
      // javascript: is never offered as "back".
      assert.equal((await send(`${box()}/admin/back`, { headers: { cookie } })).status, 404);
      const again = await send(`${box()}/action?userId=5678&brandId=1234&token=${token}`);
      assert.equal(again.status, 403);
      // A change without the CSRF token, or from another origin, is refused even with the session.
      const noCsrf = await send(`${box()}/admin/api/channels`, {
        body: '{}',
        headers: { cookie, 'Content-Type': 'application/json' },
      });
      assert.equal(noCsrf.status, 403);
    });

    it('the public health endpoint answers GET with figures only; other methods 405', async () => {
      const h = await send(`${t().url}/wechat-cxone/health?x=${'%00'.repeat(100)}`);
      assert.equal(h.status, 200);
      const body = JSON.parse(h.text) as { nodes: unknown[] };
      assert.ok(Array.isArray(body.nodes));
      assert.doesNotMatch(h.text, new RegExp(`${BOX_SECRET}|${PLAIN.token}`));
      const p = await send(`${t().url}/wechat-cxone/health`, {
        method: 'POST',
        body: '{}',
        headers: { 'Content-Type': 'application/json' },
      });
      assert.equal(p.status, 405);
      const m = await send(`${t().url}/wechat-cxone/health/metrics`);
      assert.equal(m.status, 200);
    });
  });

  describe('throttling (last: it locks this address out of the token endpoint for a minute)', () => {
    it('throttles failed token requests per address: 429 with Retry-After, and a throttled secret is not checked', async () => {
      let throttled: Answer | undefined;
      for (let i = 0; i < 15 && !throttled; i++) {
        const a = await send(`${box()}/1.0/token`, {
          body: JSON.stringify({
            grant_type: 'client_credentials',
            client_id: BOX_ID,
            client_secret: 'wrong-' + i,
          }),
          headers: { 'Content-Type': 'application/json' },
        });
        if (a.status === 429) throttled = a;
        else assert.equal(a.status, 401);
      }
      assert.ok(throttled, 'throttled within 15 failures');
      assert.match(String(throttled.headers['retry-after']), /^\d+$/);
      assert.equal((JSON.parse(throttled.text) as { error: string }).error, 'temporarily_unavailable');
      // While throttled, even the right secret gets 429: nothing can be learnt by guessing on.
      const right = await send(`${box()}/1.0/token`, {
        body: JSON.stringify({
          grant_type: 'client_credentials',
          client_id: BOX_ID,
          client_secret: BOX_SECRET,
        }),
        headers: { 'Content-Type': 'application/json' },
      });
      assert.equal(right.status, 429);
      // Calls with a token issued before still work.
      assert.equal((await boxCall('/1.0/channel/c/thread/t/sender-action', '{}')).status, 204);
    });
  });
}

describe('security: hostile input, in the test helper runtime', function () {
  this.timeout(60_000);
  let wx: WechatSimulator;
  let cx: CxoneSimulator;
  let rt: TestRuntime;
  const got: Emitted[] = [];
  let target: Target;
  before(async () => {
    wx = new WechatSimulator({ mode: 'safe' });
    await wx.start();
    cx = new CxoneSimulator();
    await cx.start();
    await startHelper();
    const a = wx.account();
    const fl = flows(a.apiBase, cx.integration().authIssuer, 'out');
    (fl.find((n) => n.id === 'wcs') as Record<string, unknown>).appId = a.appId;
    rt = await loadFlow([...fl, { id: 'out', type: 'helper', z: 'tab' }], {
      wcp: {
        appSecret: 'secPlainAppSecret-' + randomBytes(4).toString('hex'),
        token: PLAIN.token,
        encodingAESKey: '',
      },
      wcs: a.credentials,
      cc: {
        ...cx.integration().credentials,
        boxClientId: BOX_ID,
        boxClientSecret: BOX_SECRET,
        jwtSecret: '',
      },
    });
    rt.getNode('out').on('input', (m: any) => got.push({ payload: m.payload, mode: m.wechat?.mode }));
    target = {
      kind: 'helper',
      url: rt.url,
      emitted: () => got,
      wechat: {
        appId: a.appId,
        gh: wx.push.account.originalId,
        token: a.credentials.token,
        aesKey: a.credentials.encodingAESKey,
      },
    };
  });
  after(async () => {
    await rt?.close();
    await stopHelper();
    await wx?.stop();
    await cx?.stop();
  });
  hostileCases(
    () => target,
    () => wx,
    () => cx,
  );
});

describe('security: hostile input, in red.js with default settings (editor body parsers in front)', function () {
  this.timeout(90_000);
  let wx: WechatSimulator;
  let cx: CxoneSimulator;
  let nr: NodeRedProcess;
  let target: Target;
  before(async () => {
    wx = new WechatSimulator({ mode: 'safe' });
    await wx.start();
    cx = new CxoneSimulator();
    await cx.start();
    const a = wx.account();
    const fl = flows(a.apiBase, cx.integration().authIssuer, 'fn');
    (fl.find((n) => n.id === 'wcs') as Record<string, unknown>).appId = a.appId;
    fl.push(
      {
        id: 'fn',
        type: 'function',
        z: 'tab',
        name: 'one line',
        func: 'msg.payload = "EMITTED " + JSON.stringify({ payload: msg.payload, mode: msg.wechat && msg.wechat.mode });\nreturn msg;',
        outputs: 1,
        wires: [['dbg']],
      },
      {
        id: 'dbg',
        type: 'debug',
        z: 'tab',
        active: true,
        tosidebar: false,
        console: true,
        complete: 'payload',
        wires: [],
      },
    );
    nr = await startNodeRed({
      flows: fl,
      credentials: {
        wcp: {
          appSecret: 'secPlainAppSecret-' + randomBytes(4).toString('hex'),
          token: PLAIN.token,
          encodingAESKey: '',
        },
        wcs: a.credentials,
        cc: {
          ...cx.integration().credentials,
          boxClientId: BOX_ID,
          boxClientSecret: BOX_SECRET,
          jwtSecret: '',
        },
      },
    });
    target = {
      kind: 'red.js',
      url: nr.url,
      emitted: () => [...nr.logs().matchAll(/EMITTED (\{.*\})$/gm)].map((m) => JSON.parse(m[1]) as Emitted),
      wechat: {
        appId: a.appId,
        gh: wx.push.account.originalId,
        token: a.credentials.token,
        aesKey: a.credentials.encodingAESKey,
      },
    };
  });
  after(async () => {
    await nr?.stop();
    await wx?.stop();
    await cx?.stop();
  });
  hostileCases(
    () => target,
    () => wx,
    () => cx,
  );
  describe('afterwards', () => {
    it('is still running and never logged an uncaught exception', () => {
      assert.equal(nr.child.exitCode, null);
      assert.doesNotMatch(nr.logs(), /uncaught|unhandled/i);
    });
  });
});
