/**
 * Inbound WeChat, the pure parts: opening pushes (real captures in plain, compatible and safe mode), turning every
 * fixture into the conversation message, dedupe keys, passive-reply XML, media-link tokens.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { WXBizMsgCrypt } from '../../lib/wechat/crypto';
import { plainSignature, msgSignature } from '../../lib/wechat/signature';
import { parseWechatXml, type XmlObject } from '../../lib/wechat/xml';
import {
  dedupeKeyOf,
  interactionOf,
  messageIdOf,
  missingFields,
  toConversation,
  type MediaRef,
} from '../../lib/wechat/inbound/normalize';
import { openPush, PushError, verifyUrl, type PushSecrets } from '../../lib/wechat/inbound/push';
import { encryptedReplyXml, isPassiveReplyable, passiveReplyXml } from '../../lib/wechat/inbound/reply';
import {
  mediaLink,
  mediaLinkKey,
  publicBaseOf,
  signMediaToken,
  verifyMediaToken,
} from '../../lib/wechat/inbound/media-link';
import { fixturesDir, repoRoot } from '../harness/paths';

const wechatDir = path.join(fixturesDir, 'wechat');
const read = (f: string): string => fs.readFileSync(path.join(wechatDir, f), 'utf8');
const fields = (f: string): XmlObject => parseWechatXml(read(f));
const shared = JSON.parse(fs.readFileSync(path.join(repoRoot, 'test/vectors/wechat-crypto.json'), 'utf8'));
const extra = JSON.parse(
  fs.readFileSync(path.join(repoRoot, 'test/vectors/wechat-crypto-extra.json'), 'utf8'),
).vectors as any[];
const vec = (id: string): any => extra.find((v) => v.id === id);

function pushError(status: number, code?: string): (e: unknown) => boolean {
  return (e) => e instanceof PushError && e.status === status && (code === undefined || e.code === code);
}

describe('opening pushes', () => {
  describe('real captures (GIG test) with their original query strings', () => {
    it('plain mode: msg-text.xml with the recorded signature', () => {
      const v = vec('gig-post-plain-text');
      const q = new URLSearchParams({
        signature: v.signature,
        timestamp: v.timestamp,
        nonce: v.nonce,
        openid: v.openid,
      });
      const p = openPush(
        { token: v.token, appId: 'wxd3a0f6c8176edcab' },
        q,
        Buffer.from(read('msg-text.xml')),
      );
      assert.equal(p.mode, 'plain');
      assert.equal(p.fields.MsgId, '23892468385179204');
      assert.equal(p.query.openid, v.openid);
      assert.equal(p.decrypted, false);
    });

    for (const id of [
      'gig-compat-text',
      'gig-compat-image',
      'gig-safe-text',
      'gig-safe-image',
      'gig-safe-location',
    ]) {
      it(`${id}: verifies both signatures, decrypts, checks the AppID`, () => {
        const v = vec(id);
        const q = new URLSearchParams({
          signature: v.signature,
          timestamp: v.timestamp,
          nonce: v.nonce,
          openid: v.openid,
          encrypt_type: 'aes',
          msg_signature: v.msg_signature,
        });
        const body = fs.readFileSync(path.join(repoRoot, v.fixture));
        const p = openPush({ token: v.token, encodingAESKey: v.key, appId: v.appId }, q, body);
        assert.equal(p.mode, id.includes('compat') ? 'compat' : 'safe');
        assert.equal(p.decrypted, true);
        assert.equal(p.xml, v.verified_locally.derived_plaintext);
        assert.equal(p.fields.FromUserName, v.openid);
        // The wrong AppID is refused with 401 even though both signatures are right.
        assert.throws(
          () => openPush({ token: v.token, encodingAESKey: v.key, appId: 'wx0000000000000000' }, q, body),
          pushError(401, 'appid'),
        );
      });
    }
  });

  it('the official compatible-mode sample (vector C) opens to its MsgId beyond 2^53', () => {
    const c = shared.C;
    const q = new URLSearchParams({
      signature: c.signature,
      timestamp: c.timestamp,
      nonce: c.nonce,
      encrypt_type: 'aes',
      msg_signature: c.msg_signature,
    });
    const p = openPush({ token: c.token, encodingAESKey: c.key, appId: c.appId }, q, c.body);
    assert.equal(p.mode, 'compat');
    assert.equal(p.fields.MsgId, '6054768590064713728');
    assert.equal(p.fields.Encrypt, undefined);
  });

  it('the wechatpy safe-mode case (vector F) opens', () => {
    const f = shared.F;
    const q = new URLSearchParams({
      signature: plainSignature(f.token, f.timestamp, f.nonce),
      timestamp: f.timestamp,
      nonce: f.nonce,
      encrypt_type: 'aes',
      msg_signature: f.msg_signature,
    });
    const body = `<xml><ToUserName><![CDATA[gh_x]]></ToUserName><Encrypt><![CDATA[${f.encrypt}]]></Encrypt></xml>`;
    const p = openPush({ token: f.token, encodingAESKey: f.key, appId: f.appId }, q, body);
    assert.equal(p.mode, 'safe');
    assert.equal(p.fields.Content, f.text);
    assert.equal(p.fields.MsgId, f.msgId);
  });

  describe('refusals', () => {
    const v = vec('gig-safe-text');
    const secrets: PushSecrets = { token: v.token, encodingAESKey: v.key, appId: v.appId };
    const body = fs.readFileSync(path.join(repoRoot, v.fixture));
    const q = (over: Record<string, string | undefined> = {}): URLSearchParams => {
      const base: Record<string, string | undefined> = {
        signature: v.signature,
        timestamp: v.timestamp,
        nonce: v.nonce,
        encrypt_type: 'aes',
        msg_signature: v.msg_signature,
        ...over,
      };
      return new URLSearchParams(
        Object.entries(base).filter(([, x]) => x !== undefined) as [string, string][],
      );
    };

    it('a missing or wrong signature: 401, before the body is looked at', () => {
      assert.throws(() => openPush(secrets, q({ signature: undefined }), body), pushError(401, 'signature'));
      assert.throws(
        () => openPush(secrets, q({ signature: 'f'.repeat(40) }), body),
        pushError(401, 'signature'),
      );
      assert.throws(
        () => openPush(secrets, q({ signature: 'f'.repeat(40) }), '<!DOCTYPE x><xml/>'),
        pushError(401),
      );
      assert.throws(() => openPush({ ...secrets, token: 'other' }, q(), body), pushError(401, 'signature'));
    });

    it('a wrong or missing msg_signature (the Encrypt value is signed too): 401', () => {
      assert.throws(
        () => openPush(secrets, q({ msg_signature: undefined }), body),
        pushError(401, 'signature'),
      );
      assert.throws(
        () => openPush(secrets, q({ msg_signature: 'a'.repeat(40) }), body),
        pushError(401, 'signature'),
      );
      const swapped = body.toString().replace('nXJsNjyg1mO1', 'nXJsNjyg1mO2');
      assert.throws(() => openPush(secrets, q(), swapped), pushError(401, 'signature'));
    });

    it('a safe-mode push with no EncodingAESKey configured: 500 (WeChat retries, the admin is told)', () => {
      assert.throws(() => openPush({ ...secrets, encodingAESKey: '' }, q(), body), pushError(500, 'no-key'));
      assert.throws(
        () => openPush({ ...secrets, encodingAESKey: 'short' }, q(), body),
        pushError(500, 'bad-key'),
      );
    });

    it('a compatible-mode push with no key configured uses the plain copy', () => {
      const c = vec('gig-compat-text');
      const qq = new URLSearchParams({
        signature: c.signature,
        timestamp: c.timestamp,
        nonce: c.nonce,
        encrypt_type: 'aes',
        msg_signature: c.msg_signature,
      });
      const p = openPush(
        { token: c.token, appId: c.appId },
        qq,
        fs.readFileSync(path.join(repoRoot, c.fixture)),
      );
      assert.equal(p.mode, 'compat');
      assert.equal(p.decrypted, false);
      assert.equal(p.fields.MsgId, '23903507600338688');
      assert.equal(p.fields.Encrypt, undefined);
    });

    it('a key that does not decrypt (signed correctly with the token): 400 encrypt', () => {
      const other = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG';
      assert.throws(
        () => openPush({ ...secrets, encodingAESKey: other }, q(), body),
        pushError(400, 'encrypt'),
      );
    });

    it('malformed, DOCTYPE, empty, wrong root, oversized XML: 400/413, after the signature', () => {
      const token = 'tok';
      const ts = '1700000000';
      const nonce = '1';
      const qq = new URLSearchParams({ signature: plainSignature(token, ts, nonce), timestamp: ts, nonce });
      const s = { token, appId: 'wx1' };
      assert.throws(() => openPush(s, qq, '<xml><a></xml>'), pushError(400, 'xml'));
      assert.throws(
        () => openPush(s, qq, '<!DOCTYPE a [<!ENTITY b "c">]><xml>&b;</xml>'),
        pushError(400, 'xml'),
      );
      assert.throws(() => openPush(s, qq, ''), pushError(400, 'xml'));
      assert.throws(() => openPush(s, qq, '{"MsgType":"text"}'), pushError(400, 'xml'));
      assert.throws(() => openPush(s, qq, '<foo/>'), pushError(400, 'xml'));
      assert.throws(
        () => openPush(s, qq, '<xml><A>' + 'x'.repeat(2000) + '</A></xml>', { maxBytes: 1000 }),
        pushError(413),
      );
      assert.throws(() => openPush(s, qq, '<xml><MsgType>text</MsgType></xml>'), pushError(400, 'fields'));
      assert.throws(
        () =>
          openPush(
            s,
            qq,
            '<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>soon</CreateTime><MsgType>text</MsgType></xml>',
          ),
        pushError(400, 'fields'),
      );
      const bad = new URLSearchParams({ ...Object.fromEntries(qq), encrypt_type: 'rsa' });
      assert.throws(() => openPush(s, bad, read('msg-text.xml')), pushError(400, 'encrypt'));
    });

    it('no token configured: 500 not-configured', () => {
      assert.throws(() => openPush({ token: '', appId: 'wx' }, q(), body), pushError(500, 'not-configured'));
    });
  });

  it('URL verification answers the echostr only for the right signature (gig-get-verify-plain)', () => {
    const v = vec('gig-get-verify-plain');
    const q = new URLSearchParams({
      signature: v.signature,
      timestamp: v.timestamp,
      nonce: v.nonce,
      echostr: v.echostr,
    });
    assert.equal(verifyUrl(v.token, q), '8641591277801631551');
    assert.equal(verifyUrl('other', q), null);
    q.set('nonce', '1');
    assert.equal(verifyUrl(v.token, q), null);
  });
});

describe('the conversation message of every fixture', () => {
  const mediaUrl = (ref: MediaRef): string =>
    `https://nr.example/wechat/webhook/media/${ref.kind}-${ref.mediaId}`;
  const conv = (f: string): any => toConversation(fields(f), { mediaUrl });

  it('every push fixture gives direction, channel, account, conversationId, messageId, timestamp', () => {
    const pushes = fs
      .readdirSync(wechatDir)
      .filter((f) => /^(msg|event)-.*\.xml$/.test(f) && !/-(compat|safe)\.xml$/.test(f));
    assert.ok(pushes.length >= 50, String(pushes.length));
    for (const f of pushes) {
      const x = fields(f);
      assert.equal(missingFields(x), null, f);
      const m = toConversation(x, { mediaUrl });
      assert.equal(m.direction, 'inbound', f);
      assert.equal(m.channel, 'wechat', f);
      assert.equal(m.account, x.ToUserName, f);
      assert.equal(m.conversationId, x.FromUserName, f);
      assert.deepEqual(m.from, { id: x.FromUserName }, f);
      assert.equal(m.timestamp, Number(x.CreateTime) * 1000, f);
      assert.equal(typeof m.messageId, 'string', f);
      assert.ok(m.messageId.length > 0, f);
      if (f.startsWith('event-')) {
        assert.equal(m.type, 'event', f);
        assert.equal(m.event?.name, x.Event, f);
        assert.ok(m.messageId.startsWith('wxevt-'), f);
      } else assert.notEqual(m.type, 'event', f);
    }
  });

  it('text: the Content; a msgmenu tap keeps the lower-case bizmsgmenuid in the fields', () => {
    assert.equal(conv('msg-text.xml').text, fields('msg-text.xml').Content);
    assert.equal(conv('msg-text.xml').messageId, '23892468385179204');
    const t = conv('msg-text-bizmsgmenuid.xml');
    assert.equal(t.type, 'text');
    assert.equal(t.text, '满意');
    assert.equal(fields('msg-text-bizmsgmenuid.xml').bizmsgmenuid, '101');
  });

  it('image: one attachment with the media link, media id and type', () => {
    const m = conv('msg-image-real.xml');
    const x = fields('msg-image-real.xml');
    assert.equal(m.type, 'image');
    assert.deepEqual(m.attachments, [
      {
        mediaId: x.MediaId,
        mimeType: 'image/jpeg',
        name: 'image.jpg',
        url: mediaUrl({ kind: 'image', mediaId: x.MediaId } as MediaRef),
      },
    ]);
  });

  it('voice: Recognition as text when present and not empty; MediaId16K kept in the fields', () => {
    assert.equal(conv('msg-voice-recognition.xml').text, '腾讯微信团队');
    assert.equal(conv('msg-voice-real.xml').text, undefined);
    assert.equal(conv('msg-voice-real.xml').attachments[0].mimeType, 'audio/amr');
    assert.equal(conv('msg-voice-real.xml').attachments[0].name, 'voice.amr');
    assert.equal(fields('msg-voice-16k.xml').MediaId16K, 'media_id_16k');
    assert.equal(conv('msg-voice-16k.xml').type, 'voice');
  });

  it('video and shortvideo: type video with the video media id (thumb stays in the fields)', () => {
    for (const f of ['msg-video.xml', 'msg-video-real.xml', 'msg-shortvideo.xml']) {
      const m = conv(f);
      assert.equal(m.type, 'video', f);
      assert.equal(m.attachments.length, 1);
      assert.equal(m.attachments[0].mediaId, fields(f).MediaId);
      assert.equal(m.attachments[0].mimeType, 'video/mp4');
      assert.ok(m.attachments[0].url.includes(fields(f).MsgType === 'shortvideo' ? 'shortvideo-' : 'video-'));
    }
  });

  it('location: numbers, scale and label', () => {
    const m = conv('msg-location-real.xml');
    const x = fields('msg-location-real.xml');
    assert.deepEqual(m.location, {
      latitude: Number(x.Location_X),
      longitude: Number(x.Location_Y),
      scale: Number(x.Scale),
      label: x.Label,
    });
  });

  it('link: title, description, url', () => {
    const m = conv('msg-link.xml');
    const x = fields('msg-link.xml');
    assert.equal(m.type, 'link');
    assert.equal(m.link.url, x.Url);
    assert.equal(m.link.title, x.Title);
  });

  it('miniprogrampage and unknown types are passed through generically', () => {
    const mp = toConversation(
      parseWechatXml(
        '<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>miniprogrampage</MsgType>' +
          '<MsgId>9</MsgId><Title>T</Title><AppId>wxapp</AppId><PagePath>pages/a</PagePath><ThumbUrl>http://x</ThumbUrl><ThumbMediaId>tm</ThumbMediaId></xml>',
      ),
      { mediaUrl },
    );
    assert.equal(mp.type, 'miniprogrampage');
    assert.deepEqual(mp.link, { url: 'pages/a', title: 'T' });
    assert.equal(mp.attachments?.[0].mediaId, 'tm');
    const unk = toConversation(
      parseWechatXml(
        '<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>device_text</MsgType><Content>hi</Content><MsgId>10</MsgId></xml>',
      ),
    );
    assert.equal(unk.type, 'device_text');
    assert.equal(unk.text, 'hi');
    assert.equal(unk.messageId, '10');
  });

  it('subscribe through a QR code: key, scene and Ticket; SCAN: the scene without prefix', () => {
    const s = conv('event-subscribe-qrscene.xml').event;
    assert.deepEqual(s, { name: 'subscribe', key: 'qrscene_123123', scene: '123123', Ticket: 'TICKET' });
    const scan = conv('event-scan.xml').event;
    assert.equal(scan.scene, '123123');
    assert.equal(scan.Ticket, 'TICKET');
    assert.equal(conv('event-subscribe-real.xml').event.key, '');
    assert.equal(conv('event-subscribe.xml').event.key, undefined);
  });

  it('LOCATION and location_select events also fill payload.location', () => {
    assert.deepEqual(conv('event-location.xml').location, { latitude: 23.137466, longitude: 113.352425 });
    assert.equal(conv('event-location.xml').event.Precision, '119.385040');
    const sel = conv('event-location_select-real.xml');
    assert.deepEqual(sel.location, {
      latitude: 31.257009506225586,
      longitude: 121.59297180175781,
      scale: 15,
      label: '浦东新区平度路212号',
    });
    assert.equal(sel.event.SendLocationInfo.Poiname, '浦东新区金桥公园(平度路东)');
  });

  it('nested and repeated event fields keep their WeChat names and shape', () => {
    assert.deepEqual(conv('event-scancode_push.xml').event.ScanCodeInfo, {
      ScanType: 'qrcode',
      ScanResult: '1',
    });
    assert.equal(conv('event-pic_weixin.xml').event.SendPicsInfo.PicList.item.length, 1);
    assert.deepEqual(conv('event-publishjobfinish-fail.xml').event.PublishEventInfo.fail_idx, ['1', '2']);
    assert.equal(conv('event-view.xml').event.MenuId, '461376933');
    assert.equal(conv('event-view_miniprogram.xml').event.name, 'view_miniprogram');
    const tpl = conv('event-templatesendjobfinish.xml');
    assert.equal(tpl.event.MsgID, '2702600966117900288');
    assert.equal(tpl.event.Status, fields('event-templatesendjobfinish.xml').Status);
    assert.equal(conv('event-masssendjobfinish.xml').event.CopyrightCheckResult.ResultList.item.length, 2);
    assert.equal(
      conv('event-kf_switch_session.xml').event.ToKfAccount,
      fields('event-kf_switch_session.xml').ToKfAccount,
    );
  });
});

describe('dedupe keys and event ids', () => {
  it('the same message (a retry) has the same key; another MsgId or sender another key', () => {
    const a = fields('msg-text.xml');
    assert.equal(dedupeKeyOf(a), dedupeKeyOf({ ...a }));
    assert.notEqual(dedupeKeyOf(a), dedupeKeyOf({ ...a, MsgId: '23892468385179205' }));
    assert.notEqual(dedupeKeyOf(a), dedupeKeyOf({ ...a, FromUserName: 'other' }));
    // Same MsgId, different CreateTime: still the same message (WeChat keys messages on MsgId).
    assert.equal(dedupeKeyOf(a), dedupeKeyOf({ ...a, CreateTime: '1' }));
  });

  it('events: FromUserName + CreateTime + Event + EventKey; two menu clicks in one second stay apart', () => {
    const e = fields('event-click.xml');
    assert.equal(dedupeKeyOf(e), dedupeKeyOf({ ...e }));
    assert.notEqual(dedupeKeyOf(e), dedupeKeyOf({ ...e, EventKey: 'OTHER' }));
    assert.notEqual(dedupeKeyOf(e), dedupeKeyOf({ ...e, CreateTime: String(Number(e.CreateTime) + 1) }));
    assert.equal(messageIdOf(e), messageIdOf({ ...e }));
    assert.notEqual(messageIdOf(e), messageIdOf({ ...e, EventKey: 'OTHER' }));
    // An event with MsgID (TEMPLATESENDJOBFINISH) is keyed as an event, not by its MsgID.
    const t = fields('event-templatesendjobfinish.xml');
    assert.ok(messageIdOf(t).startsWith('wxevt-'));
  });

  it('keys are short and safe in a store key', () => {
    for (const f of ['msg-text.xml', 'event-click.xml', 'event-view.xml']) {
      assert.match(dedupeKeyOf(fields(f)), /^[me][0-9a-f]{40}$/);
    }
  });

  it('customer-service windows: a message, a menu click, a follow, a scan; nothing for VIEW or unsubscribe', () => {
    assert.equal(interactionOf(fields('msg-text.xml')), 'message');
    assert.equal(interactionOf(fields('event-click.xml')), 'menu');
    assert.equal(interactionOf(fields('event-scancode_waitmsg.xml')), 'menu');
    assert.equal(interactionOf(fields('event-subscribe.xml')), 'subscribe');
    assert.equal(interactionOf(fields('event-scan.xml')), 'scan');
    assert.equal(interactionOf(fields('event-view.xml')), undefined);
    assert.equal(interactionOf(fields('event-unsubscribe.xml')), undefined);
  });
});

describe('passive replies', () => {
  const target = { toUser: 'toUser', fromUser: 'fromUser', createTime: 12345678 };
  const same = (ours: string | null, fixture: string): void => {
    assert.ok(ours);
    assert.deepEqual(parseWechatXml(ours), parseWechatXml(read(fixture)));
  };

  it('builds each reply type exactly like the official samples', () => {
    same(passiveReplyXml({ type: 'text', text: '你好' }, target), 'reply-text.xml');
    same(
      passiveReplyXml({ type: 'image', attachments: [{ mediaId: 'media_id' }] }, target),
      'reply-image.xml',
    );
    same(passiveReplyXml({ type: 'voice', mediaId: 'media_id' }, target), 'reply-voice.xml');
    same(
      passiveReplyXml(
        { type: 'video', mediaId: 'media_id', title: 'title', description: 'description' },
        target,
      ),
      'reply-video.xml',
    );
    same(
      passiveReplyXml(
        {
          type: 'music',
          music: {
            title: 'TITLE',
            description: 'DESCRIPTION',
            musicUrl: 'MUSIC_Url',
            hqMusicUrl: 'HQ_MUSIC_Url',
            thumbMediaId: 'media_id',
          },
        },
        target,
      ),
      'reply-music.xml',
    );
    same(
      passiveReplyXml(
        {
          type: 'news',
          articles: [{ title: 'title1', description: 'description1', picUrl: 'picurl', url: 'url' }],
        },
        target,
      ),
      'reply-news.xml',
    );
    same(
      passiveReplyXml(
        { type: 'transfer_customer_service', kfAccount: 'test1@test' },
        { toUser: 'touser', fromUser: 'fromuser', createTime: 1399197672 },
      ),
      'reply-transfer_customer_service.xml',
    );
  });

  it('transfer_customer_service without a KF account has no TransInfo; a link becomes a one-article news', () => {
    const t = parseWechatXml(passiveReplyXml({ type: 'transfer_customer_service' }, target) as string);
    assert.equal(t.MsgType, 'transfer_customer_service');
    assert.equal(t.TransInfo, undefined);
    const n = parseWechatXml(
      passiveReplyXml({ type: 'link', link: { title: 'T', url: 'https://x' } }, target) as string,
    ) as any;
    assert.equal(n.MsgType, 'news');
    assert.equal(n.ArticleCount, '1');
    assert.equal(n.Articles.item[0].Url, 'https://x');
  });

  it('news is cut to 8 articles', () => {
    const articles = Array.from({ length: 12 }, (_, i) => ({ title: `t${i}`, url: `https://x/${i}` }));
    const n = parseWechatXml(passiveReplyXml({ type: 'news', articles }, target) as string) as any;
    assert.equal(n.ArticleCount, '8');
    assert.equal(n.Articles.item.length, 8);
  });

  it('refuses what cannot be a passive reply (null: the caller uses the customer-service API)', () => {
    for (const p of [
      null,
      'text',
      { type: 'text' },
      { type: 'text', text: '' },
      { type: 'text', text: '长'.repeat(700) }, // 2100 bytes > 2048
      { type: 'image' },
      { type: 'image', attachments: [{ url: 'https://x/a.jpg' }] },
      { type: 'file', attachments: [{ mediaId: 'm' }] },
      { type: 'location', location: { latitude: 1, longitude: 2 } },
      { type: 'typing', typing: true },
      { type: 'music', music: { title: 'no thumb' } },
      { type: 'news', articles: [] },
    ]) {
      assert.equal(passiveReplyXml(p, target), null, JSON.stringify(p));
      assert.equal(isPassiveReplyable(p), false);
    }
  });

  it('escapes "]]>" in text and cannot be broken out of', () => {
    const xml = passiveReplyXml(
      { type: 'text', text: 'a]]></Content><MsgType>evil</MsgType><Content>b' },
      target,
    ) as string;
    const f = parseWechatXml(xml);
    assert.equal(f.MsgType, 'text');
    assert.equal(f.Content, 'a]]></Content><MsgType>evil</MsgType><Content>b');
  });

  it('the encrypted envelope reproduces the official sample (wechatpy-work-encrypt) and decrypts back', () => {
    const v = vec('wechatpy-work-encrypt');
    const crypt = new WXBizMsgCrypt(v.token, v.key, v.appId);
    const env = encryptedReplyXml(crypt, v.plaintext, v.timestamp, v.nonce, Buffer.from(v.random));
    assert.deepEqual(parseWechatXml(env), parseWechatXml(read('reply-encrypted-envelope.xml')));
    const e = parseWechatXml(env) as any;
    assert.equal(e.MsgSignature, msgSignature(v.token, e.TimeStamp, e.Nonce, e.Encrypt));
    assert.equal(
      crypt.decryptMessage(e.MsgSignature, e.TimeStamp, e.Nonce, e.Encrypt).toString(),
      v.plaintext,
    );
  });
});

describe('media links', () => {
  // Secrets long enough that no link holds one by chance (a link with "tok" in its MAC failed a CI run).
  const secrets = {
    appId: 'wxabc',
    appSecret: 'S3cret-of-the-media-link-tests',
    token: 'token-of-the-media-link-tests',
    encodingAESKey: shared.A.key,
  };
  const key = mediaLinkKey(secrets) as Buffer;
  const now = 1_700_000_000;

  it('a token verifies on any instance with the same secrets, and carries the media id and kind', () => {
    const t = signMediaToken(key, { mediaId: 'MEDIA-1', kind: 'image', exp: now + 60 });
    const again = mediaLinkKey({ ...secrets }) as Buffer;
    const r = verifyMediaToken(again, t, now);
    assert.deepEqual(r, { ok: true, claims: { mediaId: 'MEDIA-1', kind: 'image', exp: now + 60 } });
  });

  it('forged, tampered, other-account and expired tokens are told apart', () => {
    const t = signMediaToken(key, { mediaId: 'M', kind: 'video', exp: now + 60 });
    const [v, body, sig] = t.split('.');
    const otherBody = Buffer.from(JSON.stringify({ m: 'OTHER', k: 'video', e: now + 60 })).toString(
      'base64url',
    );
    assert.deepEqual(verifyMediaToken(key, `${v}.${otherBody}.${sig}`, now), { ok: false, reason: 'forged' });
    assert.deepEqual(verifyMediaToken(key, `${v}.${body}.${sig.slice(0, -2)}AA`, now), {
      ok: false,
      reason: 'forged',
    });
    const other = mediaLinkKey({ ...secrets, appSecret: 'rotated' }) as Buffer;
    assert.deepEqual(verifyMediaToken(other, t, now), { ok: false, reason: 'forged' });
    assert.deepEqual(verifyMediaToken(key, t, now + 61), { ok: false, reason: 'expired' });
    for (const bad of ['', 'v1', 'v2.a.b', 'v1.a.b.c', 'v1.!!.x', 'x'.repeat(3000)]) {
      assert.equal(verifyMediaToken(key, bad, now).ok, false, bad);
    }
  });

  it('a link has one spelling: a MAC whose last character differs only in unused bits is refused', () => {
    // 32 bytes are 43 base64url characters; the last carries 4 bits and 2 unused ones, so four characters decode to
    // the same bytes. Found by the fuzz suite (token-flip mutation answered 200).
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const t = signMediaToken(key, { mediaId: 'M', kind: 'image', exp: now + 60 });
    const [v, body, sig] = t.split('.');
    const last = alphabet.indexOf(sig[sig.length - 1]);
    let twins = 0;
    for (let i = 0; i < 64; i++) {
      if (i === last) continue;
      const twin = sig.slice(0, -1) + alphabet[i];
      if (Buffer.from(twin, 'base64url').equals(Buffer.from(sig, 'base64url'))) {
        twins++;
        assert.deepEqual(verifyMediaToken(key, `${v}.${body}.${twin}`, now), { ok: false, reason: 'forged' });
      }
    }
    assert.equal(twins, 3, 'three other spellings decode to the same MAC');
  });

  it('keys differ between accounts (the AppID is the salt) and the key never appears in a link', () => {
    const k2 = mediaLinkKey({ ...secrets, appId: 'wxother' }) as Buffer;
    assert.notDeepEqual(k2, key);
    const link = mediaLink(
      key,
      { mediaId: 'M', kind: 'image' },
      'https://nr.example/',
      '/api/wechat/webhook/',
      3600_000,
    );
    assert.match(link, /^https:\/\/nr\.example\/api\/wechat\/webhook\/media\/v1\.[\w-]+\.[\w-]+$/);
    for (const s of [secrets.appSecret, secrets.token, secrets.encodingAESKey, key.toString('base64url')]) {
      assert.ok(!link.includes(s));
    }
    assert.equal(mediaLinkKey({ appId: 'wx' }), null);
  });

  it('the public base comes from X-Forwarded-* or Host, and refuses odd hosts', () => {
    assert.equal(publicBaseOf({ host: 'nr.example:1880' }, false), 'http://nr.example:1880');
    assert.equal(publicBaseOf({ host: 'nr.example' }, true), 'https://nr.example');
    assert.equal(
      publicBaseOf(
        { host: 'internal:1880', 'x-forwarded-host': 'bot.example.com', 'x-forwarded-proto': 'https, http' },
        false,
      ),
      'https://bot.example.com',
    );
    assert.equal(publicBaseOf({ host: 'evil.example/path?x' }, false), undefined);
    assert.equal(publicBaseOf({}, false), undefined);
  });
});

describe('arbitrary input', () => {
  const token = 'tok';
  const key = shared.A.key;
  const secrets = { token, encodingAESKey: key, appId: 'wxb11529c136998cb6' };
  const signed = (extra: Record<string, string> = {}): URLSearchParams =>
    new URLSearchParams({ signature: plainSignature(token, '1', '2'), timestamp: '1', nonce: '2', ...extra });

  it('any body with a valid signature opens or is refused with a PushError (400/413), never anything else', () => {
    const xmlish = fc.oneof(
      fc.string({ maxLength: 400 }),
      fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b).toString('latin1')),
      fc
        .array(
          fc.constantFrom(
            '<xml>',
            '</xml>',
            '<A>',
            '</A>',
            '<![CDATA[',
            ']]>',
            '<!--',
            '-->',
            '&amp;',
            '&',
            '<!DOCTYPE x>',
            '<?xml?>',
            'x',
            ' ',
          ),
          { maxLength: 30 },
        )
        .map((a) => a.join('')),
    );
    fc.assert(
      fc.property(xmlish, fc.boolean(), (body, enc) => {
        const q = enc ? signed({ encrypt_type: 'aes', msg_signature: 'a'.repeat(40) }) : signed();
        try {
          openPush(secrets, q, body);
        } catch (e) {
          assert.ok(e instanceof PushError, String(e));
          assert.ok([400, 401, 413].includes(e.status), String(e.status));
        }
      }),
      { numRuns: 500 },
    );
  });

  it('any Encrypt value with a matching msg_signature is refused with 400 or 401, never a crash', () => {
    fc.assert(
      fc.property(fc.oneof(fc.base64String({ maxLength: 300 }), fc.string({ maxLength: 100 })), (encrypt) => {
        const body = `<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt><![CDATA[${encrypt.replace(/]]>/g, '')}]]></Encrypt></xml>`;
        const e = encrypt.replace(/]]>/g, '').trim();
        const q = signed({ encrypt_type: 'aes', msg_signature: msgSignature(token, '1', '2', e) });
        try {
          openPush(secrets, q, body);
          assert.fail('an arbitrary ciphertext opened');
        } catch (err) {
          assert.ok(err instanceof PushError, String(err));
          assert.ok([400, 401].includes(err.status));
        }
      }),
      { numRuns: 300 },
    );
  });
});
