/**
 * Passive replies: the XML a flow may answer a push with, in the push's own HTTP response
 * (docs/protocol/wechat.md §7), and the encrypted envelope of compatible and safe mode (§4.1).
 *
 * What can be replied passively, from a conversation message (`msg.payload`):
 * - `type: "text"` with `text` (at most 2048 bytes; longer text goes through the customer-service API);
 * - `type: "image" | "voice"` with a `mediaId` (on the payload or its first attachment);
 * - `type: "video"` with a `mediaId`, optional `title` and `description`;
 * - `type: "music"` with `music: {title?, description?, musicUrl?, hqMusicUrl?, thumbMediaId}`;
 * - `type: "news"` with `articles` (or `news.articles`): `[{title, description?, picUrl?, url}]`, at most 8
 *   (WeChat shows only 1 when the push was a user message);
 * - `type: "link"` with `link: {title?, description?, url, picUrl?}`: a one-article news reply;
 * - `type: "transfer_customer_service"`, optional `kfAccount`: hand the conversation to WeChat's own
 *   customer-service inbox.
 * Anything else (files, attachments known only by URL, location, typing, …) is not replyable: `passiveReplyXml`
 * returns null and the caller sends through the customer-service API instead.
 */
import type { WXBizMsgCrypt } from '../crypto';
import { buildXml, xmlText, type XmlOutObject } from '../xml';

/** WeChat's practical limit for a text reply (bytes, UTF-8). */
export const MAX_PASSIVE_TEXT_BYTES = 2048;
export const MAX_NEWS_ARTICLES = 8;

export interface ReplyTarget {
  /** The user's openid (the push's FromUserName). */
  toUser: string;
  /** The account's original id, gh_… (the push's ToUserName). */
  fromUser: string;
  /** Unix seconds; now by default. */
  createTime?: number;
}

type Loose = Record<string, unknown>;

function s(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return undefined;
}

function mediaIdOf(p: Loose): string | undefined {
  const direct = s(p.mediaId);
  if (direct) return direct;
  const atts = Array.isArray(p.attachments) ? (p.attachments as Loose[]) : [];
  const first = atts.find((a) => a && typeof a === 'object' && s(a.mediaId));
  return first ? s(first.mediaId) : undefined;
}

interface Article {
  Title?: string;
  Description?: string;
  PicUrl?: string;
  Url?: string;
}

function articleOf(a: unknown): Article | null {
  if (!a || typeof a !== 'object') return null;
  const o = a as Loose;
  const art: Article = {
    Title: s(o.title) ?? s(o.Title),
    Description: s(o.description) ?? s(o.Description),
    PicUrl: s(o.picUrl) ?? s(o.picurl) ?? s(o.PicUrl),
    Url: s(o.url) ?? s(o.Url),
  };
  if (!art.Title && !art.Url) return null;
  return art;
}

/** The body of the reply (everything after MsgType), or null when the payload cannot be a passive reply. */
function replyBody(p: Loose): { msgType: string; body: XmlOutObject } | null {
  switch (p.type) {
    case 'text': {
      const text = s(p.text);
      if (text === undefined || text === '' || Buffer.byteLength(text, 'utf8') > MAX_PASSIVE_TEXT_BYTES)
        return null;
      return { msgType: 'text', body: { Content: text } };
    }
    case 'image':
    case 'voice': {
      const id = mediaIdOf(p);
      if (!id) return null;
      const tag = p.type === 'image' ? 'Image' : 'Voice';
      return { msgType: p.type, body: { [tag]: { MediaId: id } } };
    }
    case 'video': {
      const id = mediaIdOf(p);
      if (!id) return null;
      return {
        msgType: 'video',
        body: { Video: { MediaId: id, Title: s(p.title), Description: s(p.description) } },
      };
    }
    case 'music': {
      const m = (p.music && typeof p.music === 'object' ? p.music : p) as Loose;
      const thumb = s(m.thumbMediaId) ?? s(m.thumb_media_id);
      if (!thumb) return null;
      return {
        msgType: 'music',
        body: {
          Music: {
            Title: s(m.title),
            Description: s(m.description),
            MusicUrl: s(m.musicUrl) ?? s(m.musicurl),
            HQMusicUrl: s(m.hqMusicUrl) ?? s(m.hqmusicurl),
            ThumbMediaId: thumb,
          },
        },
      };
    }
    case 'news': {
      const news = p.news && typeof p.news === 'object' ? (p.news as Loose) : undefined;
      const list = Array.isArray(p.articles)
        ? p.articles
        : Array.isArray(news?.articles)
          ? news.articles
          : [];
      const articles = (list as unknown[])
        .map(articleOf)
        .filter((a): a is Article => a !== null)
        .slice(0, MAX_NEWS_ARTICLES);
      if (!articles.length) return null;
      return {
        msgType: 'news',
        body: { ArticleCount: articles.length, Articles: { item: articles as unknown as XmlOutObject[] } },
      };
    }
    case 'link': {
      const link = p.link && typeof p.link === 'object' ? (p.link as Loose) : undefined;
      const art = articleOf(link);
      if (!art || !art.Url) return null;
      return {
        msgType: 'news',
        body: { ArticleCount: 1, Articles: { item: [art as unknown as XmlOutObject] } },
      };
    }
    case 'transfer_customer_service': {
      const kf = s(p.kfAccount) ?? s((p.transInfo as Loose | undefined)?.kfAccount);
      return {
        msgType: 'transfer_customer_service',
        body: kf ? { TransInfo: { KfAccount: kf } } : {},
      };
    }
    default:
      return null;
  }
}

/** Whether a payload can be answered passively. */
export function isPassiveReplyable(payload: unknown): boolean {
  return !!payload && typeof payload === 'object' && replyBody(payload as Loose) !== null;
}

/** The plain passive-reply XML for a payload, or null when it cannot be a passive reply. */
export function passiveReplyXml(payload: unknown, target: ReplyTarget): string | null {
  if (!payload || typeof payload !== 'object') return null;
  const r = replyBody(payload as Loose);
  if (!r) return null;
  return buildXml({
    ToUserName: target.toUser,
    FromUserName: target.fromUser,
    CreateTime: target.createTime ?? Math.floor(Date.now() / 1000),
    MsgType: r.msgType,
    ...r.body,
  });
}

/** The encrypted envelope of a reply (compatible and safe mode), signed with the account's token. */
export function encryptedReplyXml(
  crypt: WXBizMsgCrypt,
  xml: string,
  timestamp?: string,
  nonce?: string,
  random?: Buffer,
): string {
  const env = crypt.encryptReply(xml, timestamp, nonce, random);
  return buildXml({
    Encrypt: env.encrypt,
    MsgSignature: env.msgSignature,
    TimeStamp: xmlText(env.timestamp),
    Nonce: env.nonce,
  });
}
