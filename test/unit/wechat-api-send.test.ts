/**
 * Sending: the mapping of a conversation message to custom/send bodies (send plans), media upload with its cache,
 * media download, and the outbox Attempt's classification, against the WeChat API simulator over real HTTP.
 */
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { OutboxJob } from '../../lib/outbox/types';
import { MemoryStore } from '../../lib/store/memory';
import { createWechatAttempt } from '../../lib/wechat/api/attempt';
import { WechatApi } from '../../lib/wechat/api/client';
import { WechatApiError, readBounded } from '../../lib/wechat/api/http';
import { filenameFromDisposition, multipartBody, resolveContentType } from '../../lib/wechat/api/media';
import { planSend, splitText, type WechatSendPlan } from '../../lib/wechat/api/messages';
import { parseMultipart, WechatApiSim } from '../../sandbox/sim/wechat/api';

const OPENID = 'oUser000000000000000000000002';
const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(2000, 7)]);
const PNG = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  Buffer.alloc(500, 3),
]);
const MP4 = Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from('ftypmp42'), Buffer.alloc(800, 1)]);
const PDF = Buffer.concat([Buffer.from('%PDF-1.4\n'), Buffer.alloc(100, 65)]);

function conv(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    direction: 'outbound',
    channel: 'cxone',
    account: 'chat_1',
    conversationId: OPENID,
    messageId: 'm-1',
    timestamp: Date.now(),
    from: { id: 'agent-1', name: 'Agent' },
    type: 'text',
    text: 'Hello',
    ...over,
  };
}

function job(
  plan: WechatSendPlan,
  id = 'job-' + Math.random().toString(36).slice(2),
): OutboxJob<{ plan: WechatSendPlan }> {
  return { id, key: plan.openid, payload: { plan }, attempts: 0, enqueuedAt: Date.now() };
}

function mustPlan(msg: Record<string, unknown>): WechatSendPlan {
  const r = planSend(msg);
  if (!r.ok) throw new Error(r.reason);
  return r.plan;
}

/** A file server for attachment URLs; counts requests. */
async function fileServer(files: Record<string, { data: Buffer; type: string }>) {
  const hits: string[] = [];
  const server = http.createServer((req, res) => {
    hits.push(req.url ?? '');
    const f = files[req.url ?? ''];
    if (!f) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { 'Content-Type': f.type, 'Content-Length': String(f.data.length) });
    res.end(f.data);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    hits,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('send plans (conversation message → custom/send)', () => {
  it('maps text plus attachments to one text and one media step per attachment, in order', () => {
    const p = mustPlan({
      payload: conv({
        text: 'See these',
        attachments: [
          { url: 'https://files.example/a.jpg', mimeType: 'image/jpeg', name: 'a.jpg' },
          { url: 'https://files.example/b.pdf', name: 'b.pdf' },
        ],
      }),
    });
    assert.equal(p.openid, OPENID);
    assert.deepEqual(
      p.steps.map((s) => s.op),
      ['custom', 'media', 'media'],
    );
    assert.deepEqual((p.steps[0] as any).body, {
      touser: OPENID,
      msgtype: 'text',
      text: { content: 'See these' },
    });
  });

  it('sends a raw custom/send body from msg.wechatMessage or msg.payload.wechat, filling in touser', () => {
    const menu = {
      msgtype: 'msgmenu',
      msgmenu: { head_content: 'Satisfied?', list: [{ id: '101', content: 'Yes' }], tail_content: 'Thanks' },
    };
    const a = mustPlan({ payload: conv(), wechatMessage: menu });
    assert.deepEqual(a.steps, [{ op: 'custom', body: { ...menu, touser: OPENID } }]);
    const b = mustPlan({
      payload: conv({ wechat: [{ msgtype: 'wxcard', wxcard: { card_id: 'c1' } }, menu] }),
    });
    assert.equal(b.steps.length, 2);
    const c = mustPlan({
      payload: conv({
        wechat: { touser: 'oOther', msgtype: 'mpnewsarticle', mpnewsarticle: { article_id: 'A' } },
      }),
    });
    assert.equal(c.openid, 'oOther');
  });

  it('sends a body with template_id as a template message', () => {
    const p = mustPlan({ payload: conv(), wechatMessage: { template_id: 'T', data: { a: { value: '1' } } } });
    assert.deepEqual(p.steps[0], {
      op: 'template',
      body: { template_id: 'T', data: { a: { value: '1' } }, touser: OPENID },
    });
  });

  it('refuses a raw body without a known msgtype or without its content object, saying what is missing', () => {
    const r1 = planSend({ payload: conv(), wechatMessage: { msgtype: 'file', file: {} } });
    assert.ok(!r1.ok && /msgtype/.test(r1.reason));
    const r2 = planSend({ payload: conv(), wechatMessage: { msgtype: 'msgmenu' } });
    assert.ok(!r2.ok && /no "msgmenu" object/.test(r2.reason));
  });

  it('maps typing to Typing / CancelTyping, a link to one news article, a location to text', () => {
    assert.deepEqual(mustPlan({ payload: conv({ type: 'typing', typing: true }) }).steps, [
      { op: 'typing', command: 'Typing' },
    ]);
    assert.deepEqual(mustPlan({ payload: conv({ type: 'typing', typing: false }) }).steps, [
      { op: 'typing', command: 'CancelTyping' },
    ]);
    const link = mustPlan({
      payload: conv({ type: 'link', text: '', link: { url: 'https://x.example', title: 'X' } }),
    });
    assert.deepEqual((link.steps[0] as any).body.news.articles, [{ title: 'X', url: 'https://x.example' }]);
    const loc = mustPlan({
      payload: conv({
        type: 'location',
        text: '',
        location: { latitude: 23.1, longitude: 113.3, label: 'Canton Tower' },
      }),
    });
    assert.equal((loc.steps[0] as any).body.text.content, 'Canton Tower\n23.1, 113.3');
  });

  it('says why a message cannot be sent: no openid, nothing to send, not an object', () => {
    const a = planSend({ payload: conv({ conversationId: '' }) });
    assert.ok(!a.ok && a.code === 'no-recipient' && /openid/.test(a.reason));
    const b = planSend({ payload: conv({ text: '  ' }) });
    assert.ok(!b.ok && b.code === 'nothing-to-send');
    const c = planSend({ payload: 'hello' });
    assert.ok(!c.ok && c.code === 'bad-message');
  });

  it('splits long text at 2048 UTF-8 bytes, on a line or word break, never inside a character', () => {
    const zh = '你好世界。'.repeat(300); // 4500 bytes, no spaces
    const parts = splitText(zh);
    assert.ok(parts.length === 3);
    assert.ok(parts.every((p) => Buffer.byteLength(p) <= 2048));
    assert.equal(parts.join(''), zh);
    const en = ('word '.repeat(100) + '\n').repeat(6);
    const p2 = splitText(en);
    assert.ok(p2.every((p) => Buffer.byteLength(p) <= 2048 && !p.startsWith(' ') && !p.endsWith(' ')));
    assert.equal(p2.join(' ').replace(/\s+/g, ' ').trim(), en.replace(/\s+/g, ' ').trim());
    const emoji = '😀'.repeat(1000);
    assert.ok(splitText(emoji).every((p) => !p.includes('\uFFFD') && Buffer.byteLength(p) <= 2048));
  });
});

describe('media helpers', () => {
  it('builds the multipart body WeChat expects (field "media" with filename and type), which the simulator reads back', () => {
    const m = multipartBody(JPEG, 'a.jpg', 'image/jpeg');
    const parts = parseMultipart(m.data, m.contentType);
    assert.equal(parts.length, 1);
    assert.equal(parts[0].name, 'media');
    assert.equal(parts[0].filename, 'a.jpg');
    assert.equal(parts[0].contentType, 'image/jpeg');
    assert.ok(parts[0].data.equals(JPEG));
  });

  it('tells the type from the bytes first, then the declared type, then the extension', () => {
    assert.equal(resolveContentType('application/octet-stream', 'x.bin', PNG), 'image/png');
    assert.equal(resolveContentType(undefined, 'clip.mp4', Buffer.from('????')), 'video/mp4');
    assert.equal(resolveContentType('audio/amr', undefined, Buffer.from('xxxx')), 'audio/amr');
    assert.equal(filenameFromDisposition('attachment; filename="MEDIA_ID.jpg"'), 'MEDIA_ID.jpg');
  });
});

describe('media and the send Attempt (against the simulator)', function () {
  this.timeout(20_000);
  let sim: WechatApiSim;
  let api: WechatApi;
  let store: MemoryStore;

  beforeEach(async () => {
    sim = new WechatApiSim({ followers: [OPENID] });
    await sim.start();
    sim.onUserMessage(OPENID);
    store = new MemoryStore();
    api = new WechatApi({
      appId: sim.appId,
      appSecret: () => sim.appSecret,
      apiBase: sim.url,
      store,
      retryBaseMs: 2,
      retryMaxMs: 10,
      // The test's files are served on loopback over http (test/security/outbound.test.ts: refused by default).
      outbound: { allowHttp: true, allowPrivateNetwork: true },
    });
  });
  afterEach(async () => {
    api.close();
    await sim.stop();
  });

  it('uploads the same file once: the second send uses the cached media_id', async () => {
    const a = await api.media.upload({ data: JPEG, filename: 'a.jpg' });
    const b = await api.media.upload({ data: Buffer.from(JPEG), filename: 'other-name.jpg' });
    assert.equal(a.mediaId, b.mediaId);
    assert.equal(a.cached, false);
    assert.equal(b.cached, true);
    assert.equal(sim.uploads, 1);
    assert.equal(sim.callsTo('/cgi-bin/media/upload')[0].upload?.contentType, 'image/jpeg');
  });

  it('shares one upload among concurrent sends of the same bytes', async () => {
    const r = await Promise.all(
      Array.from({ length: 20 }, () => api.media.upload({ data: PNG, filename: 'p.png' })),
    );
    assert.equal(new Set(r.map((x) => x.mediaId)).size, 1);
    assert.equal(sim.uploads, 1);
  });

  it('uploads from a URL once, and answers the same URL from the cache without downloading it again', async () => {
    const files = await fileServer({ '/pic': { data: JPEG, type: 'image/jpeg' } });
    try {
      const a = await api.media.upload({ url: files.url + '/pic' });
      const b = await api.media.upload({ url: files.url + '/pic' });
      assert.equal(a.type, 'image');
      assert.equal(a.mediaId, b.mediaId);
      assert.equal(files.hits.length, 1);
      assert.equal(sim.uploads, 1);
    } finally {
      await files.close();
    }
  });

  it('refuses a file no WeChat message can carry, and one over the size limit, before uploading', async () => {
    await assert.rejects(
      api.media.upload({ data: PDF, filename: 'x.pdf' }),
      (e: WechatApiError) => e.code === 'unsupported-type',
    );
    const big = Buffer.concat([Buffer.from('#!AMR\n'), Buffer.alloc(2 * 1024 * 1024 + 1)]);
    await assert.rejects(
      api.media.upload({ data: big }),
      (e: WechatApiError) => e.code === 'too-large' && /2 MB/.test(e.reason),
    );
    assert.equal(sim.uploads, 0);
  });

  it('downloads media: the bytes with type and name, video as its URL, and an unknown id as a 40007 error', async () => {
    const id = sim.addMedia(JPEG, { contentType: 'image/jpeg', type: 'image' });
    const d = await api.getMedia(id);
    assert.equal(d.kind, 'file');
    if (d.kind !== 'file') return;
    assert.equal(d.contentType, 'image/jpeg');
    assert.equal(d.filename, `${id}.jpeg`);
    assert.equal(d.contentLength, JPEG.length);
    assert.ok((await readBounded(d.stream, 1e6)).equals(JPEG));

    const vid = sim.addMedia(MP4, { contentType: 'video/mp4', type: 'video' });
    const v = await api.getMedia(vid);
    assert.equal(v.kind, 'video');
    if (v.kind === 'video') assert.match(v.videoUrl, new RegExp(`/sim/video/${vid}$`));

    await assert.rejects(
      api.getMedia('unknownMediaId'),
      (e: WechatApiError) => e.errcode === 40007 && /expired/.test(e.reason),
    );
    await assert.rejects(api.getMedia('../../etc/passwd'), (e: WechatApiError) => e.code === 'bad-media-id');
  });

  it('delivers text + image + video as three messages, uploading the attachments', async () => {
    const attempt = createWechatAttempt(api);
    const plan = mustPlan({
      payload: conv({
        text: 'Here you go',
        attachments: [
          { data: JPEG, name: 'photo.jpg', mimeType: 'image/jpeg' },
          { data: MP4, name: 'clip.mp4', mimeType: 'video/mp4' },
        ],
      }),
    });
    const out = await attempt(job(plan));
    assert.equal(out.kind, 'delivered');
    const sent = sim.sentTo(OPENID);
    assert.deepEqual(
      sent.map((b) => b.msgtype),
      ['text', 'image', 'video'],
    );
    assert.equal((sent[2].video as any).title, 'clip.mp4');
    assert.equal(sim.uploads, 2);
  });

  it('sends a file WeChat cannot carry (PDF) as a text with its name and link', async () => {
    const files = await fileServer({ '/doc.pdf': { data: PDF, type: 'application/pdf' } });
    try {
      const attempt = createWechatAttempt(api);
      const out = await attempt(
        job(
          mustPlan({
            payload: conv({
              text: '',
              type: 'file',
              attachments: [{ url: files.url + '/doc.pdf', name: 'Invoice.pdf' }],
            }),
          }),
        ),
      );
      assert.equal(out.kind, 'delivered');
      assert.deepEqual(sim.sentTo(OPENID)[0].text, { content: `Invoice.pdf: ${files.url}/doc.pdf` });
    } finally {
      await files.close();
    }
  });

  it('fails for good on 45015 (48-hour window) with words an agent understands, retryable false', async () => {
    const other = 'oUserNeverWrote0000000000000';
    sim.onUserEvent(other, 'subscribe');
    sim.advance(2 * 60_000); // the follow's 1-minute grant is over; the user never wrote
    const out = await createWechatAttempt(api)(job(mustPlan({ payload: conv({ conversationId: other }) })));
    assert.equal(out.kind, 'failed');
    if (out.kind !== 'failed') return;
    assert.equal(out.error.code, 45015);
    assert.equal(out.error.retryable, false);
    assert.equal(
      out.error.message,
      'WeChat refused the message: the customer has not written in the last 48 hours (or has unfollowed), so they cannot be answered until they write again (45015)',
    );
  });

  it('fails for good on 45047 once the five replies to a customer message are used up', async () => {
    const attempt = createWechatAttempt(api);
    for (let i = 0; i < 5; i++)
      assert.equal((await attempt(job(mustPlan({ payload: conv({ text: `r${i}` }) })))).kind, 'delivered');
    const out = await attempt(job(mustPlan({ payload: conv({ text: 'sixth' }) })));
    assert.equal(out.kind, 'failed');
    if (out.kind !== 'failed') return;
    assert.equal(out.error.code, 45047);
    assert.equal(out.error.retryable, false);
    assert.match(out.error.message, /five replies allowed per customer message are used up/);
    sim.onUserMessage(OPENID); // the customer writes again: five more
    assert.equal((await attempt(job(mustPlan({ payload: conv({ text: 'now ok' }) })))).kind, 'delivered');
  });

  it('says the same in Chinese when asked', async () => {
    sim.setReceive(OPENID, false);
    const out = await createWechatAttempt(api, { lang: 'zh' })(job(mustPlan({ payload: conv() })));
    assert.ok(out.kind === 'failed' && out.error.code === 48002);
    if (out.kind === 'failed')
      assert.match(out.error.message, /^微信拒绝了这条消息：用户已在公众号设置中关闭“接收消息”（48002）$/);
  });

  it('asks the outbox to retry when WeChat stays busy (-1) or answers 5xx, and delivers on a later attempt', async () => {
    const attempt = createWechatAttempt(api);
    const j = job(mustPlan({ payload: conv() }));
    sim.inject({ kind: 'busy', count: 3, path: '/cgi-bin/message/custom/send' });
    const first = await attempt(j);
    assert.equal(first.kind, 'retry');
    if (first.kind === 'retry') {
      assert.equal(first.error.code, -1);
      assert.equal(first.error.retryable, true);
    }
    sim.inject({ kind: 'status', status: 503, count: 3, path: '/cgi-bin/message/custom/send' });
    assert.equal((await attempt(j)).kind, 'retry');
    assert.equal((await attempt(j)).kind, 'delivered');
    assert.equal(sim.sentTo(OPENID).length, 1);
  });

  it('waits a minute on 45011 (minute quota) via retryAfterMs', async () => {
    sim.inject({ kind: 'errcode', errcode: 45011, path: '/cgi-bin/message/custom/send' });
    const out = await createWechatAttempt(api)(job(mustPlan({ payload: conv() })));
    assert.ok(out.kind === 'retry' && out.retryAfterMs === 60_000);
  });

  it('does not send the parts that went out again when a later part is retried', async () => {
    const attempt = createWechatAttempt(api);
    const j = job(
      mustPlan({
        payload: conv({ text: 'part one', attachments: [{ data: JPEG, mimeType: 'image/jpeg' }] }),
      }),
    );
    sim.inject({ kind: 'status', status: 500, count: 3, path: '/cgi-bin/media/upload' });
    const first = await attempt(j);
    assert.equal(first.kind, 'retry');
    assert.equal(sim.sentTo(OPENID).length, 1, 'the text went out');
    assert.equal((await attempt(j)).kind, 'delivered');
    assert.deepEqual(
      sim.sentTo(OPENID).map((b) => b.msgtype),
      ['text', 'image'],
    );
  });

  it('reports a part refused for good after others were sent as a partial failure', async () => {
    const j = job(
      mustPlan({ payload: conv({ text: 'ok', attachments: [{ mediaId: 'nope', mimeType: 'image/jpeg' }] }) }),
    );
    const out = await createWechatAttempt(api)(j);
    assert.ok(out.kind === 'failed');
    if (out.kind === 'failed') {
      assert.equal(out.error.code, 40007);
      assert.match(out.error.message, /refused part of the message \(1 of 2 parts were sent\)/);
    }
  });

  it('uploads again when WeChat no longer knows a cached media_id (40007)', async () => {
    const attempt = createWechatAttempt(api);
    const mk = () =>
      job(
        mustPlan({
          payload: conv({ text: '', type: 'image', attachments: [{ data: PNG, mimeType: 'image/png' }] }),
        }),
      );
    assert.equal((await attempt(mk())).kind, 'delivered');
    sim.advance(3 * 24 * 60 * 60_000 + 1000); // WeChat dropped the media (and the token expired)
    sim.onUserMessage(OPENID);
    api.tokens.forget();
    assert.equal((await attempt(mk())).kind, 'delivered');
    assert.equal(sim.uploads, 2);
    assert.equal(sim.calls.filter((c) => c.errcode === 40007).length, 1);
  });

  it('sends a template message outside the 48-hour window and reports its msgid', async () => {
    sim.addTemplate('TPL_OK');
    sim.advance(49 * 60 * 60_000);
    api.tokens.forget();
    const out = await createWechatAttempt(api)(
      job(
        mustPlan({
          payload: conv(),
          wechatMessage: { template_id: 'TPL_OK', data: { first: { value: 'Your reply is ready' } } },
        }),
      ),
    );
    assert.equal(out.kind, 'delivered');
    if (out.kind === 'delivered') assert.match(out.messageId ?? '', /^\d{19}$/);
  });

  it('shows typing, skips a stale indicator, treats "already typing" as done, never retries typing', async () => {
    const attempt = createWechatAttempt(api);
    const on = mustPlan({ payload: conv({ type: 'typing', typing: true }) });
    assert.equal((await attempt(job(on))).kind, 'delivered');
    const again = await attempt(job(on));
    assert.ok(again.kind === 'delivered' && (again.detail as any).skipped === 'already-typing');
    const stale = { ...job(on), enqueuedAt: Date.now() - 20_000 };
    const s = await attempt(stale);
    assert.ok(s.kind === 'delivered' && (s.detail as any).skipped === 'stale');
    sim.inject({ kind: 'busy', path: '/cgi-bin/message/custom/typing' });
    const busy = await attempt(job(mustPlan({ payload: conv({ type: 'typing', typing: false }) })));
    assert.equal(busy.kind, 'failed');
    assert.deepEqual(
      sim.typing.map((t) => t.command),
      ['Typing'],
    );
  });
});
