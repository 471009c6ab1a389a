/**
 * The conversation message → CXone create-message mapping, the outbox Attempt's classification, and the words
 * of the errors (catalog keys in both languages, placeholders intact).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import type { ConversationMessage } from '../../lib/conversation';
import {
  createDfoIntegration,
  describeEvent,
  dfoAttempt,
  DFO_MESSAGES,
  eventFilter,
  externalMessageId,
  localizeDfoMessage,
  parseErrorBody,
  readableText,
  toCreateMessage,
  whatKey,
  type DfoIntegration,
  type DfoJob,
} from '../../lib/cxone/dfo';
import type { OutboxJob } from '../../lib/outbox/types';
import { MemoryStore } from '../../lib/store/memory';
import { fixture, repoRoot } from '../harness/paths';
import { CxoneSimulator } from '../../sandbox/sim/cxone';

const OPENID = 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o';

function conv(over: Partial<ConversationMessage>): ConversationMessage {
  return {
    direction: 'inbound',
    channel: 'wechat',
    account: 'gh_0123456789ab',
    conversationId: OPENID,
    messageId: '23456789012345678',
    timestamp: 1714552212000,
    from: { id: OPENID },
    type: 'text',
    text: '你好，我想查询订单',
    ...over,
  };
}

describe('CXone create-message mapping (lib/cxone/dfo/mapping)', () => {
  it('maps a text message to the documented body', () => {
    const r = toCreateMessage(conv({}));
    assert.equal(r.kind, 'send');
    if (r.kind !== 'send') return;
    const want = JSON.parse(fixture('cxone', 'dfo-create-message-request.json')) as Record<string, any>;
    assert.equal(r.body.direction, want.direction);
    assert.equal(r.body.createdAtWithMilliseconds, want.createdAtWithMilliseconds);
    assert.deepEqual(r.body.messageContent, want.messageContent);
    assert.equal(r.body.thread.idOnExternalPlatform, want.thread.idOnExternalPlatform);
    assert.equal(
      r.body.authorEndUserIdentity.idOnExternalPlatform,
      want.authorEndUserIdentity.idOnExternalPlatform,
    );
    assert.equal(r.body.idOnExternalPlatform, 'wechat:gh_0123456789ab:23456789012345678');
    assert.deepEqual(r.attachments, []);
  });

  it('gives every non-text type a readable text', () => {
    const cases: [Partial<ConversationMessage>, string][] = [
      [{ type: 'image', text: undefined }, '[image]'],
      [{ type: 'voice', text: undefined }, '[voice message]'],
      [{ type: 'voice', text: '我要退货' }, '[voice] 我要退货'],
      [{ type: 'video', text: undefined }, '[video]'],
      [
        { type: 'file', text: undefined, attachments: [{ name: 'a.pdf', url: 'https://x/a.pdf' }] },
        '[file: a.pdf]',
      ],
      [
        {
          type: 'location',
          text: undefined,
          location: { latitude: 23.134521, longitude: 113.358803, label: '广州市天河区' },
        },
        '[location: 广州市天河区 (23.134521, 113.358803)]',
      ],
      [
        {
          type: 'link',
          text: undefined,
          link: { title: 'Order', url: 'https://example.com/o/1', description: 'my order' },
        },
        '[link: Order https://example.com/o/1]\nmy order',
      ],
      [
        { type: 'miniprogrampage', text: undefined, link: { title: 'Shop', url: 'pages/index' } },
        '[miniprogrampage: Shop pages/index]',
      ],
      [{ type: 'device_text', text: undefined }, '[device_text]'],
      [
        { type: 'event', text: undefined, event: { name: 'CLICK', key: 'V1001_HELP' } },
        '[menu: the user clicked “V1001_HELP”]',
      ],
    ];
    for (const [over, text] of cases) assert.equal(readableText(conv(over)), text, JSON.stringify(over));
    assert.equal(describeEvent({ name: 'subscribe' }), '[event: the user followed the Official Account]');
    assert.equal(describeEvent({ name: 'SCAN', key: '42' }), '[event: the user scanned QR code 42]');
    assert.equal(describeEvent({ name: 'unsubscribe' }), '[event: the user unfollowed the Official Account]');
    assert.equal(
      describeEvent({ name: 'LOCATION' }, { latitude: 23.1, longitude: 113.3 }),
      '[event: location report (23.1, 113.3)]',
    );
    assert.equal(describeEvent({ name: 'kf_close_session', key: '' }), '[event: kf_close_session]');
  });

  it('forwards only the listed events (default subscribe, SCAN, CLICK; * all; empty none)', () => {
    const ev = (name: string): ConversationMessage =>
      conv({ type: 'event', text: undefined, messageId: 'wxevt-' + name, event: { name } });
    assert.equal(toCreateMessage(ev('subscribe')).kind, 'send');
    assert.equal(toCreateMessage(ev('click')).kind, 'send', 'case-insensitive');
    assert.equal(toCreateMessage(ev('LOCATION')).kind, 'skip');
    assert.equal(toCreateMessage(ev('unsubscribe')).kind, 'skip');
    assert.equal(toCreateMessage(ev('LOCATION'), { forwardEvents: '*' }).kind, 'send');
    assert.equal(toCreateMessage(ev('subscribe'), { forwardEvents: '' }).kind, 'skip');
    assert.equal(eventFilter('subscribe; VIEW ,  scan')('view'), true);
    assert.equal(eventFilter('subscribe; VIEW ,  scan')('CLICK'), false);
  });

  it('makes media into pending attachments with a friendly name', () => {
    const png = Buffer.from('x');
    const r = toCreateMessage(
      conv({
        type: 'image',
        text: undefined,
        attachments: [
          { url: 'https://mmbiz.qpic.cn/x', mediaId: 'M1', mimeType: 'image/jpeg' },
          { data: png, name: 'scan.png', mimeType: 'image/png' },
        ],
      }),
    );
    assert.equal(r.kind, 'send');
    if (r.kind !== 'send') return;
    assert.deepEqual(
      r.attachments.map((a) => [a.friendlyName, a.url, a.mediaId, a.data?.length]),
      [
        ['wechat-image-23456789012345678.jpg', 'https://mmbiz.qpic.cn/x', 'M1', undefined],
        ['scan.png', undefined, undefined, 1],
      ],
    );
    assert.equal(r.body.messageContent.payload.text, '[image]');
  });

  it('ids are stable and namespaced: the same message gives the same id, different messages different ids', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 30 }),
        fc.string({ minLength: 1, maxLength: 30 }),
        (a, b) => {
          const ia = externalMessageId(conv({ messageId: a }));
          assert.equal(ia, externalMessageId(conv({ messageId: a })));
          assert.ok(ia.startsWith('wechat:gh_0123456789ab:'));
          if (a !== b) assert.notEqual(ia, externalMessageId(conv({ messageId: b })));
        },
      ),
    );
    // Without a messageId (an event from an older producer): from the openid, time and event name.
    const e = conv({ messageId: '', type: 'event', event: { name: 'subscribe' } });
    assert.equal(externalMessageId(e), `wechat:gh_0123456789ab:${OPENID}:1714552212000:subscribe`);
    assert.equal(externalMessageId(e), externalMessageId({ ...e }));
  });

  it('never sends an empty text, and keeps the timestamp in milliseconds with Z', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('text', 'image', 'voice', 'video', 'file', 'location', 'link', 'event', 'whatever'),
        fc.option(fc.string(), { nil: undefined }),
        fc.integer({ min: 0, max: 4_102_444_800_000 }),
        (type, text, ts) => {
          const r = toCreateMessage(
            conv({
              type,
              text: type === 'text' ? (text ?? '') : text,
              timestamp: ts,
              event: { name: 'subscribe' },
            }),
            { forwardEvents: '*', now: 1714552212345 },
          );
          if (r.kind !== 'send') return;
          assert.ok(r.body.messageContent.payload.text.length > 0);
          assert.match(r.body.createdAtWithMilliseconds, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        },
      ),
    );
    const noTime = toCreateMessage(conv({ timestamp: NaN }), { now: 1714552212345 });
    assert.equal(noTime.kind === 'send' && noTime.body.createdAtWithMilliseconds, '2024-05-01T08:30:12.345Z');
  });

  it('refuses a message without an author', () => {
    assert.equal(toCreateMessage(conv({ conversationId: '', from: { id: '' } })).kind, 'invalid');
  });

  it('reads CXone error bodies defensively', () => {
    assert.deepEqual(parseErrorBody(JSON.parse(fixture('cxone', 'dfo-error-400.json'))), [
      { field: 'messageContent.type', message: 'This value should not be blank.' },
      { field: 'authorEndUserIdentity.idOnExternalPlatform', message: 'This value should not be blank.' },
    ]);
    assert.deepEqual(parseErrorBody('<html><body><h1>502 Bad Gateway</h1></body></html>'), [
      { message: '502 Bad Gateway' },
    ]);
    assert.deepEqual(parseErrorBody({ error: 'invalid_client', error_description: 'nope' }), [
      { field: undefined, message: 'nope' },
    ]);
    assert.deepEqual(parseErrorBody(''), []);
    assert.deepEqual(parseErrorBody([{ path: ['a', 0, 'b'], message: 'x' }]), [
      { field: 'a.0.b', message: 'x' },
    ]);
  });
});

describe('the cxone-dfo-out Attempt (lib/cxone/dfo/attempt)', function () {
  this.timeout(20_000);
  let sim: CxoneSimulator;
  let i: DfoIntegration;
  let media: http.Server;
  let mediaUrl = '';
  let mediaStatus = 200;

  before(async () => {
    media = http.createServer((_req, res) => {
      if (mediaStatus !== 200) {
        res.writeHead(mediaStatus).end();
        return;
      }
      res.writeHead(200, { 'Content-Type': 'image/jpeg' }).end(Buffer.alloc(2048, 7));
    });
    await new Promise<void>((r) => media.listen(0, '127.0.0.1', r));
    mediaUrl = `http://127.0.0.1:${(media.address() as AddressInfo).port}`;
  });
  after(async () => {
    media.closeAllConnections();
    await new Promise<void>((r) => media.close(() => r()));
  });
  beforeEach(async () => {
    sim = new CxoneSimulator({ channels: ['chat_1'] });
    await sim.start();
    const s = sim.integration(false);
    i = createDfoIntegration({ ...s, store: new MemoryStore(), http: { timeoutMs: 3000 } });
    mediaStatus = 200;
  });
  afterEach(async () => {
    i.close();
    await sim.stop();
  });

  function job(payload: DfoJob, attempts = 0): OutboxJob<DfoJob> {
    return { id: 'j1', key: 'k', payload, attempts, enqueuedAt: Date.now() };
  }
  function messageJob(attachments: { friendlyName: string; url?: string }[] = []): DfoJob {
    const r = toCreateMessage(conv({ messageId: 'att-' + Math.random() }));
    if (r.kind !== 'send') throw new Error('mapping');
    return { action: 'message', channelId: 'chat_1', body: r.body, attachments };
  }

  it('classifies: delivered with the DFO id; 429 retry with Retry-After; 400 failed with fields and catalog key', async () => {
    const policy = { allowHttp: true, allowPrivateNetwork: true };
    const attempt = dfoAttempt(i.client, i.http, { attachments: { mode: 'upload', policy } });
    const ok = await attempt(job(messageJob()));
    assert.equal(ok.kind, 'delivered');
    assert.ok(ok.kind === 'delivered' && ok.messageId && !ok.messageId.startsWith('wechat:'));
    sim.dfo.failNext(1, 429, { retryAfter: 3 });
    const r = await attempt(job(messageJob()));
    assert.equal(r.kind, 'retry');
    assert.equal(r.kind === 'retry' && r.retryAfterMs, 3000);
    sim.dfo.failNext(1, 400, { body: { errors: [{ field: 'thread', message: 'bad' }] } });
    const f = await attempt(job(messageJob()));
    assert.equal(f.kind, 'failed');
    if (f.kind === 'failed') {
      assert.equal(f.error.retryable, false);
      assert.deepEqual((f.error as any).fields, [{ field: 'thread', message: 'bad' }]);
      assert.deepEqual((f.error as any).i18n.key, 'rejected');
    }
  });

  it('a delivery status for a message CXone does not know yet (404) is retried a few times, then refused for good', async () => {
    const policy = { allowHttp: true, allowPrivateNetwork: true };
    const attempt = dfoAttempt(i.client, i.http, {
      attachments: { mode: 'upload', policy },
      statusNotFoundAttempts: 3,
      statusNotFoundDelayMs: 1500,
    });
    const status = (ext: string): DfoJob => ({
      action: 'status',
      channelId: 'chat_1',
      idOnExternalPlatform: ext,
      status: 'delivered',
      updatedAt: new Date().toISOString(),
    });
    // The reply is not in CXone yet (CXone has not read the box's answer): retried, 1.5 s apart …
    const early = await attempt(job(status('wx-out-not-yet'), 0));
    assert.equal(early.kind, 'retry');
    assert.equal(early.kind === 'retry' && early.retryAfterMs, 1500);
    assert.equal((await attempt(job(status('wx-out-not-yet'), 1))).kind, 'retry');
    // … and once CXone has it, the status goes through.
    sim.dfo.recordOutbound('chat_1', OPENID, { idOnExternalPlatform: 'wx-out-not-yet', text: 'hi' });
    assert.equal((await attempt(job(status('wx-out-not-yet'), 2))).kind, 'delivered');
    // Still unknown on the last attempt: refused for good (404), with the words for it.
    const last = await attempt(job(status('wx-out-never'), 2));
    assert.equal(last.kind, 'failed');
    assert.equal(last.kind === 'failed' && last.error.code, 404);
  });

  it('retries a passing attachment failure, then from the 3rd attempt sends the message without it, with a note', async () => {
    const policy = { allowHttp: true, allowPrivateNetwork: true };
    const attempt = dfoAttempt(i.client, i.http, { attachments: { mode: 'upload', policy } });
    mediaStatus = 503;
    const p = messageJob([{ friendlyName: 'photo.jpg', url: `${mediaUrl}/p.jpg` }]);
    const first = await attempt(job(p, 0));
    assert.equal(first.kind, 'retry');
    const third = await attempt(job(p, 2));
    assert.equal(third.kind, 'delivered');
    const m = sim.dfo.findMessage('chat_1', (p as any).body.idOnExternalPlatform)!;
    assert.equal(m.attachments.length, 0);
    assert.match(m.text, /\[photo\.jpg could not be forwarded: HTTP 503\]/);
  });

  it('uploads an attachment once per job, even when the message itself must be retried', async () => {
    const policy = { allowHttp: true, allowPrivateNetwork: true };
    const attempt = dfoAttempt(i.client, i.http, { attachments: { mode: 'upload', policy } });
    const p = messageJob([{ friendlyName: 'photo.jpg', url: `${mediaUrl}/p.jpg` }]);
    sim.dfo.failNext(1, 502, { match: /messages$/ });
    assert.equal((await attempt(job(p, 0))).kind, 'retry');
    assert.equal((await attempt(job(p, 1))).kind, 'delivered');
    assert.equal(sim.dfo.uploads.size, 1);
    attempt.forget('j1');
  });

  it('refuses a too-large attachment for good and a URL with an access token is never passed as a link', async () => {
    const policy = { allowHttp: true, allowPrivateNetwork: true };
    const small = dfoAttempt(i.client, i.http, { attachments: { mode: 'upload', policy, maxBytes: 1024 } });
    const p = messageJob([{ friendlyName: 'big.jpg', url: `${mediaUrl}/big.jpg` }]);
    assert.equal((await small(job(p))).kind, 'delivered');
    const m = sim.dfo.findMessage('chat_1', (p as any).body.idOnExternalPlatform)!;
    assert.match(m.text, /big\.jpg could not be forwarded: larger than 1024 bytes/);
    const link = dfoAttempt(i.client, i.http, { attachments: { mode: 'link', policy } });
    const q = messageJob([
      { friendlyName: 'v.amr', url: `${mediaUrl}/cgi-bin/media/get?access_token=SECRET&media_id=1` },
    ]);
    assert.equal((await link(job(q))).kind, 'delivered');
    const n = sim.dfo.findMessage('chat_1', (q as any).body.idOnExternalPlatform)!;
    assert.equal(n.attachments.length, 1);
    assert.ok(!n.attachments[0].url.includes('access_token'), 'uploaded instead of linked');
  });
});

describe('DFO error words in the catalogs', () => {
  const WHAT = [
    'message',
    'delivery status',
    'typing indicator',
    'attachment upload',
    'channel list',
    'channel creation',
    'channel removal',
    'one-time token',
    'call',
  ];
  const load = (lang: string, type: string): any =>
    JSON.parse(fs.readFileSync(path.join(repoRoot, 'nodes', 'locales', lang, `${type}.json`), 'utf8'))[type];
  const keys = (o: any, pre = ''): string[] =>
    Object.entries(o).flatMap(([k, v]) =>
      v && typeof v === 'object' ? keys(v, `${pre}${k}.`) : [`${pre}${k}`],
    );
  const holes = (s: string): string[] => [...s.matchAll(/__(\w+?)__/g)].map((m) => m[1]).sort();

  for (const type of ['cxone-dfo-out', 'cxone-dfo-config']) {
    it(`${type}: every DFO message and "what" in English and Chinese, same keys, same placeholders`, () => {
      const en = load('en-US', type);
      const zh = load('zh-CN', type);
      assert.deepEqual(keys(en).sort(), keys(zh).sort());
      for (const [k, t] of Object.entries(DFO_MESSAGES)) {
        assert.equal(en.dfo[k], t, `en ${k} matches the code`);
        assert.deepEqual(holes(zh.dfo[k]), holes(t), `zh ${k} placeholders`);
      }
      for (const w of WHAT) {
        assert.ok(en.dfo.what[whatKey(w)], w);
        assert.ok(zh.dfo.what[whatKey(w)], w);
      }
      const flat = (o: any): Record<string, string> =>
        Object.fromEntries(keys(o).map((k) => [k, k.split('.').reduce((a: any, p) => a[p], o)]));
      const fe = flat(en);
      const fz = flat(zh);
      for (const k of Object.keys(fe)) assert.deepEqual(holes(fz[k]), holes(fe[k]), `${type} ${k}`);
    });
  }

  it('localizes through the catalog and falls back to English when the key is missing', () => {
    const zh = load('zh-CN', 'cxone-dfo-out');
    const t = (key: string, subs?: Record<string, unknown>): string => {
      const v = key
        .split('.')
        .slice(1)
        .reduce((a: any, p) => (a ? a[p] : undefined), zh);
      if (typeof v !== 'string') return key;
      return v.replace(/__(\w+?)__/g, (_m: string, k: string) =>
        String((subs?.[k] as string | number | undefined) ?? ''),
      );
    };
    assert.equal(
      localizeDfoMessage('rejected', { what: 'message', fields: 'a: b' }, 'x', t, 'cxone-dfo-out'),
      'CXone 拒绝了消息（400）：a: b',
    );
    assert.equal(localizeDfoMessage('nope', {}, 'fallback', t, 'cxone-dfo-out'), 'fallback');
    assert.equal(
      localizeDfoMessage('rejected', { what: 'message', fields: 'f' }, 'english', (k) => k, 'cxone-dfo-out'),
      'english',
    );
  });
});
