/**
 * The conversation message → CXone's create-message body (docs/contract.md "Mapping WeChat ⇄ CXone",
 * docs/protocol/cxone.md §b).
 *
 * - `idOnExternalPlatform` is stable: `<channel>:<account>:<messageId>` (e.g. `wechat:gh_0123456789ab:2345…`),
 *   so a retried or replayed message can never become a second CXone message. WeChat events have no MsgId;
 *   wechat-in derives their messageId from FromUserName+CreateTime+Event, and when it is missing so do we.
 * - DFO has no image/file message type: every message is TEXT, media travel as `attachments [{friendlyName, url}]`,
 *   and a message without text gets a readable one ("[image]", "[location: …]") so the agent never sees an empty
 *   bubble (whether DFO accepts an empty text is not known).
 * - Events become short notes only when the node's event list names them (default: subscribe, SCAN, CLICK);
 *   the rest are dropped, since they would open a contact an agent cannot act on.
 */
import type { Attachment, ConversationMessage } from '../../conversation';
import type { CreateMessageBody } from './client';

/** The events forwarded when the node does not say otherwise. */
export const DEFAULT_FORWARD_EVENTS = 'subscribe,SCAN,CLICK';

/** An attachment still to be made into `{friendlyName, url}` (by link or by upload) when the job runs. */
export interface PendingAttachment {
  friendlyName: string;
  url?: string;
  data?: Buffer;
  mimeType?: string;
  mediaId?: string;
}

export type MapResult =
  | { kind: 'send'; body: CreateMessageBody; attachments: PendingAttachment[] }
  | { kind: 'skip'; reason: string }
  | { kind: 'invalid'; reason: string };

export interface MapOptions {
  /** Comma-separated event names to forward ("*" = all, "" = none); case-insensitive. */
  forwardEvents?: string;
  /** The time to use when the message carries none, epoch ms (tests). */
  now?: number;
}

/** Parses the event list of the node. */
export function eventFilter(spec: string | undefined): (name: string) => boolean {
  const s = (spec ?? DEFAULT_FORWARD_EVENTS).trim();
  if (s === '*') return () => true;
  const set = new Set(
    s
      .split(/[\s,;]+/)
      .map((x) => x.trim().toLowerCase())
      .filter(Boolean),
  );
  return (name) => set.has(String(name).toLowerCase());
}

/** The stable id CXone dedupes on. */
export function externalMessageId(
  m: Pick<
    ConversationMessage,
    'channel' | 'account' | 'messageId' | 'conversationId' | 'timestamp' | 'event'
  >,
): string {
  const ns = m.channel || 'wechat';
  const account = m.account || 'account';
  let id = m.messageId;
  if (!id) id = `${m.conversationId}:${m.timestamp ?? ''}:${m.event?.name ?? ''}`;
  return `${ns}:${account}:${id}`;
}

const MIME_EXT: Record<string, string> = {
  'image/jpeg': '.jpg',
  'image/png': '.png',
  'image/gif': '.gif',
  'image/webp': '.webp',
  'audio/amr': '.amr',
  'audio/mpeg': '.mp3',
  'audio/speex': '.speex',
  'video/mp4': '.mp4',
  'application/pdf': '.pdf',
};

const TYPE_EXT: Record<string, string> = { image: '.jpg', voice: '.amr', video: '.mp4', shortvideo: '.mp4' };

export function friendlyNameOf(
  a: Attachment,
  m: Pick<ConversationMessage, 'type' | 'messageId'>,
  index: number,
): string {
  if (a.name && a.name.trim()) return a.name.trim().slice(0, 200);
  const ext =
    (a.mimeType && MIME_EXT[a.mimeType.toLowerCase().split(';')[0].trim()]) || TYPE_EXT[m.type] || '';
  const id = (m.messageId || 'media').replace(/[^A-Za-z0-9_-]/g, '').slice(-40) || 'media';
  return `wechat-${m.type || 'file'}-${id}${index ? '-' + (index + 1) : ''}${ext}`;
}

function num(v: unknown): string {
  const n = Number(v);
  return Number.isFinite(n) ? String(n) : '?';
}

/** Readable words for an event, or null when it is not one we describe. */
export function describeEvent(
  ev: NonNullable<ConversationMessage['event']>,
  location?: ConversationMessage['location'],
): string {
  const name = String(ev.name || 'event');
  const key = typeof ev.key === 'string' && ev.key ? ev.key : '';
  switch (name.toLowerCase()) {
    case 'subscribe':
      return key
        ? `[event: the user followed the Official Account by scanning QR code ${key.replace(/^qrscene_/, '')}]`
        : '[event: the user followed the Official Account]';
    case 'unsubscribe':
      return '[event: the user unfollowed the Official Account]';
    case 'scan':
      return `[event: the user scanned QR code ${key || '(no scene)'}]`;
    case 'click':
      return `[menu: the user clicked “${key || '?'}”]`;
    case 'view':
      return `[menu: the user opened ${key || 'a link'}]`;
    case 'location':
      return `[event: location report (${num(location?.latitude ?? ev.Latitude)}, ${num(
        location?.longitude ?? ev.Longitude,
      )})]`;
    default:
      return `[event: ${name}${key ? ' ' + key : ''}]`;
  }
}

/** The text the agent reads for a message. */
export function readableText(m: ConversationMessage): string {
  const text = typeof m.text === 'string' ? m.text : '';
  switch (m.type) {
    case 'text':
      return text;
    case 'location': {
      const l = m.location;
      if (!l) return text || '[location]';
      const label = l.label ? `${l.label} ` : '';
      return `[location: ${label}(${num(l.latitude)}, ${num(l.longitude)})]`;
    }
    case 'link': {
      const k = m.link;
      if (!k) return text || '[link]';
      const head = `[link: ${k.title ? k.title + ' ' : ''}${k.url}]`;
      return k.description ? `${head}\n${k.description}` : head;
    }
    case 'event':
      return m.event ? describeEvent(m.event, m.location) : text || '[event]';
    case 'image':
      return text || '[image]';
    case 'voice':
      return text ? `[voice] ${text}` : '[voice message]';
    case 'video':
    case 'shortvideo':
      return text || '[video]';
    case 'file': {
      const n = m.attachments?.[0]?.name;
      return text || (n ? `[file: ${n}]` : '[file]');
    }
    default: {
      const k = m.link;
      if (k && k.url) return `[${String(m.type || 'link')}: ${k.title ? k.title + ' ' : ''}${k.url}]`;
      return text || `[${String(m.type || 'message')}]`;
    }
  }
}

/** Maps one conversation message; the caller has checked it is a conversation message. */
export function toCreateMessage(m: ConversationMessage, opts: MapOptions = {}): MapResult {
  if (m.type === 'event') {
    const name = m.event?.name ?? '';
    if (!eventFilter(opts.forwardEvents)(name)) {
      return { kind: 'skip', reason: `event "${name || '?'}" is not in the list of events to forward` };
    }
  }
  const openid = m.conversationId;
  const author = m.from?.id || openid;
  if (!author) return { kind: 'invalid', reason: 'msg.payload.from.id is missing' };
  const ts = Number(m.timestamp);
  const when = Number.isFinite(ts) && ts > 0 ? ts : (opts.now ?? Date.now());
  const text = readableText(m);
  const attachments: PendingAttachment[] = [];
  (Array.isArray(m.attachments) ? m.attachments : []).forEach((a, i) => {
    if (!a || typeof a !== 'object') return;
    attachments.push({
      friendlyName: friendlyNameOf(a, m, i),
      url: typeof a.url === 'string' && a.url ? a.url : undefined,
      data: Buffer.isBuffer(a.data) ? a.data : undefined,
      mimeType: typeof a.mimeType === 'string' ? a.mimeType : undefined,
      mediaId: typeof a.mediaId === 'string' ? a.mediaId : undefined,
    });
  });
  const identity: CreateMessageBody['authorEndUserIdentity'] = { idOnExternalPlatform: author };
  if (m.from?.name) identity.nickname = m.from.name.slice(0, 100);
  const body: CreateMessageBody = {
    idOnExternalPlatform: externalMessageId(m),
    direction: 'inbound',
    createdAtWithMilliseconds: new Date(when).toISOString(),
    thread: {
      idOnExternalPlatform: openid,
      threadName: `WeChat ${m.from?.name || openid}`.slice(0, 100),
    },
    messageContent: { type: 'TEXT', payload: { text: text || '[message]' } },
    authorEndUserIdentity: identity,
  };
  return { kind: 'send', body, attachments };
}
