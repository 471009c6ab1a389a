/**
 * From a conversation message (plus an optional raw WeChat body) to the calls that deliver it: a "send plan" of
 * steps, each one customer-service message, typing command or template message. The plan is plain data so the
 * outbox can persist it; attachments are uploaded when the step is attempted.
 *
 * Mapping (docs/contract.md "Outbound"):
 * - `type:"typing"` → `/cgi-bin/message/custom/typing` Typing / CancelTyping.
 * - `text` → one `text` message (split in parts of at most 2048 UTF-8 bytes).
 * - each attachment → an `image`, `voice` or `video` message (uploaded as temporary media); a file no WeChat
 *   message can carry (PDF, …) is sent as a text with its name and link.
 * - `type:"link"` → a `news` message with one article; `type:"location"` → a text with the place and coordinates.
 * - A raw body in `msg.wechatMessage` or `msg.payload.wechat` (an object or an array of objects) is sent as is
 *   instead: a custom/send body (`{msgtype:"msgmenu", msgmenu:{…}}`, `touser` filled in from the conversation when
 *   absent) or, when it has `template_id`, a template message.
 */
import type { Attachment, ConversationMessage } from '../../conversation';

/** Message types `/cgi-bin/message/custom/send` accepts. */
export const CUSTOM_MSGTYPES = [
  'text',
  'image',
  'voice',
  'video',
  'music',
  'news',
  'mpnews',
  'mpnewsarticle',
  'msgmenu',
  'wxcard',
  'miniprogrampage',
] as const;
export type CustomMsgType = (typeof CUSTOM_MSGTYPES)[number];

/** A custom/send body. */
export interface CustomBody {
  touser: string;
  msgtype: CustomMsgType;
  customservice?: { kf_account: string };
  [k: string]: unknown;
}

/** An attachment as the plan keeps it (JSON-serialisable; `data` is a Buffer the outbox keeps). */
export interface PlannedAttachment {
  url?: string;
  mediaId?: string;
  mimeType?: string;
  name?: string;
  data?: Buffer;
}

export type SendStep =
  | { op: 'custom'; body: CustomBody }
  | { op: 'media'; attachment: PlannedAttachment; kfAccount?: string }
  | { op: 'typing'; command: 'Typing' | 'CancelTyping' }
  | { op: 'template'; body: Record<string, unknown> };

/** What the outbox carries for one input message. */
export interface WechatSendPlan {
  /** The recipient's openid. */
  openid: string;
  steps: SendStep[];
  /** Whether this plan is only a typing indicator (never retried; stale after 15 s). */
  typing?: boolean;
}

export type PlanResult = { ok: true; plan: WechatSendPlan } | { ok: false; code: string; reason: string };

/** WeChat's text limit, bytes (third-party figure, docs/protocol/wechat.md §7). */
export const TEXT_LIMIT_BYTES = 2048;

/**
 * Splits text into parts of at most `limit` UTF-8 bytes, preferring a paragraph break, then a line break, then a
 * space, in the last third of each part; never inside a character (or a surrogate pair).
 */
export function splitText(text: string, limit = TEXT_LIMIT_BYTES): string[] {
  if (Buffer.byteLength(text, 'utf8') <= limit) return [text];
  const parts: string[] = [];
  const chars = Array.from(text);
  let i = 0;
  while (i < chars.length) {
    let bytes = 0;
    let j = i;
    while (j < chars.length) {
      const b = Buffer.byteLength(chars[j], 'utf8');
      if (bytes + b > limit) break;
      bytes += b;
      j++;
    }
    if (j < chars.length) {
      const min = i + Math.floor(((j - i) * 2) / 3);
      let cut = -1;
      for (const sep of ['\n\n', '\n', ' ']) {
        for (let k = j; k > min; k--) {
          if (chars.slice(k - sep.length, k).join('') === sep) {
            cut = k;
            break;
          }
        }
        if (cut > 0) break;
      }
      if (cut > 0) j = cut;
    }
    const part = chars.slice(i, j).join('').trim();
    if (part) parts.push(part);
    i = j;
  }
  return parts;
}

const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** The raw WeChat body/bodies a message carries, if any: `msg.wechatMessage`, else `msg.payload.wechat`. */
export function rawBodiesOf(msg: { payload?: unknown; wechatMessage?: unknown }): unknown[] | undefined {
  const raw = msg.wechatMessage ?? (isObj(msg.payload) ? msg.payload.wechat : undefined);
  if (raw === undefined || raw === null) return undefined;
  return Array.isArray(raw) ? (raw as unknown[]) : [raw];
}

function rawStep(
  raw: unknown,
  openid: string | undefined,
  i: number,
): SendStep | { code: string; reason: string } {
  const where = `the WeChat body${i > 0 ? ` #${i + 1}` : ''}`;
  if (!isObj(raw)) return { code: 'bad-message', reason: `${where} is not an object` };
  const touser = typeof raw.touser === 'string' && raw.touser ? raw.touser : openid;
  if (!touser)
    return { code: 'no-recipient', reason: `${where} has no touser and the message no conversationId` };
  if (typeof raw.template_id === 'string') {
    if (!raw.template_id) return { code: 'bad-message', reason: `${where} has an empty template_id` };
    return { op: 'template', body: { ...raw, touser } };
  }
  const t = raw.msgtype;
  if (typeof t !== 'string' || !(CUSTOM_MSGTYPES as readonly string[]).includes(t))
    return {
      code: 'bad-message',
      reason: `${where} needs a msgtype (${CUSTOM_MSGTYPES.join(', ')}) or a template_id`,
    };
  if (!isObj(raw[t]))
    return { code: 'bad-message', reason: `${where} has msgtype "${t}" but no "${t}" object` };
  return { op: 'custom', body: { ...raw, touser, msgtype: t as CustomMsgType } };
}

function attachmentOf(a: Attachment): PlannedAttachment | undefined {
  if (!isObj(a)) return undefined;
  const out: PlannedAttachment = {};
  if (typeof a.url === 'string' && a.url) out.url = a.url;
  if (typeof a.mediaId === 'string' && a.mediaId) out.mediaId = a.mediaId;
  if (typeof a.mimeType === 'string' && a.mimeType) out.mimeType = a.mimeType;
  if (typeof a.name === 'string' && a.name) out.name = a.name;
  if (Buffer.isBuffer(a.data) && a.data.length) out.data = a.data;
  return out.url || out.mediaId || out.data ? out : undefined;
}

function textBody(openid: string, content: string, kf?: string): CustomBody {
  const b: CustomBody = { touser: openid, msgtype: 'text', text: { content } };
  if (kf) b.customservice = { kf_account: kf };
  return b;
}

export interface PlanOptions {
  /** Sends every customer-service message as this kf_account (`account@wechat_id`). */
  kfAccount?: string;
}

/**
 * The plan for `msg`: its conversation message in `msg.payload`, or the raw body in `msg.wechatMessage` /
 * `msg.payload.wechat`. Returns a reason in words when there is nothing that can be sent.
 */
export function planSend(
  msg: { payload?: unknown; wechatMessage?: unknown },
  opts: PlanOptions = {},
): PlanResult {
  const p = isObj(msg.payload) ? (msg.payload as Partial<ConversationMessage>) : undefined;
  const to = p && isObj(p.to) && typeof p.to.id === 'string' ? p.to.id : undefined;
  const openid =
    p && typeof p.conversationId === 'string' && p.conversationId.trim() ? p.conversationId.trim() : to;
  const kf = opts.kfAccount || undefined;

  const raws = rawBodiesOf(msg);
  if (raws) {
    if (raws.length === 0) return { ok: false, code: 'bad-message', reason: 'the WeChat body list is empty' };
    const steps: SendStep[] = [];
    for (const [i, r] of raws.entries()) {
      const s = rawStep(r, openid, i);
      if (!('op' in s)) return { ok: false, ...s };
      if (s.op === 'custom' && kf && !s.body.customservice) s.body.customservice = { kf_account: kf };
      steps.push(s);
    }
    const first = steps[0];
    const target = first.op === 'custom' || first.op === 'template' ? String(first.body.touser) : openid;
    return { ok: true, plan: { openid: target ?? '', steps } };
  }

  if (!p) return { ok: false, code: 'bad-message', reason: 'msg.payload is not a conversation message' };
  if (!openid)
    return {
      ok: false,
      code: 'no-recipient',
      reason: "msg.payload.conversationId (the user's openid) is missing",
    };

  if (p.type === 'typing')
    return {
      ok: true,
      plan: {
        openid,
        typing: true,
        steps: [{ op: 'typing', command: p.typing === false ? 'CancelTyping' : 'Typing' }],
      },
    };

  const steps: SendStep[] = [];
  const text = typeof p.text === 'string' ? p.text.trim() : '';
  if (p.type === 'link' && isObj(p.link) && typeof p.link.url === 'string' && p.link.url) {
    const article: Record<string, string> = { title: p.link.title || text || p.link.url, url: p.link.url };
    if (p.link.description) article.description = p.link.description;
    const pic = p.attachments?.find(
      (a) =>
        isObj(a) &&
        typeof a.url === 'string' &&
        typeof a.mimeType === 'string' &&
        a.mimeType.startsWith('image/'),
    );
    if (pic?.url) article.picurl = pic.url;
    const body: CustomBody = { touser: openid, msgtype: 'news', news: { articles: [article] } };
    if (kf) body.customservice = { kf_account: kf };
    steps.push({ op: 'custom', body });
    return { ok: true, plan: { openid, steps } };
  }
  if (text)
    for (const part of splitText(text)) steps.push({ op: 'custom', body: textBody(openid, part, kf) });
  if (p.type === 'location' && isObj(p.location)) {
    const l = p.location;
    const where = `${l.label ? l.label + '\n' : ''}${Number(l.latitude)}, ${Number(l.longitude)}`;
    steps.push({ op: 'custom', body: textBody(openid, where, kf) });
  }
  if (p.attachments !== undefined && !Array.isArray(p.attachments))
    return { ok: false, code: 'bad-message', reason: 'msg.payload.attachments is not an array' };
  for (const a of p.attachments ?? []) {
    const att = attachmentOf(a);
    if (!att)
      return {
        ok: false,
        code: 'bad-message',
        reason: 'an attachment has neither a url, a mediaId nor data',
      };
    steps.push(kf ? { op: 'media', attachment: att, kfAccount: kf } : { op: 'media', attachment: att });
  }
  if (steps.length === 0)
    return {
      ok: false,
      code: 'nothing-to-send',
      reason: 'the message has no text, no attachments and no WeChat body',
    };
  return { ok: true, plan: { openid, steps } };
}
