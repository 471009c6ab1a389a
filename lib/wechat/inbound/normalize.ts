/**
 * Every WeChat push (message or event) as the pack's conversation message (docs/contract.md), plus the ids that
 * make it unique (dedupe key, messageId for events).
 *
 * Field names in `fields` are WeChat's own; every value is a string (or a nested object/array of strings for
 * events such as ScanCodeInfo, SendPicsInfo, PublishEventInfo). Numbers are converted only where the
 * conversation message wants a number (timestamp, coordinates); ids stay strings.
 */
import { createHash } from 'node:crypto';
import type { Attachment, ConversationMessage } from '../../conversation';
import type { XmlObject, XmlValue } from '../xml';

/** Fields every push carries, outside `event` in the conversation message. */
const COMMON = new Set([
  'ToUserName',
  'FromUserName',
  'CreateTime',
  'MsgType',
  'Event',
  'EventKey',
  'Encrypt',
]);

/** A string field, or undefined when absent or not text. */
export function str(fields: XmlObject, name: string): string | undefined {
  const v = Object.prototype.hasOwnProperty.call(fields, name) ? fields[name] : undefined;
  return typeof v === 'string' ? v : undefined;
}

/** A nested object field. */
function obj(fields: XmlObject, name: string): XmlObject | undefined {
  const v = Object.prototype.hasOwnProperty.call(fields, name) ? fields[name] : undefined;
  return v && typeof v === 'object' && !Array.isArray(v) ? v : undefined;
}

function num(s: string | undefined): number | undefined {
  if (s === undefined || s.trim() === '') return undefined;
  const n = Number(s.trim());
  return Number.isFinite(n) ? n : undefined;
}

/** The message id of an ordinary message: `MsgId`, or `MsgID` as some events spell it. Always a string. */
export function msgIdOf(fields: XmlObject): string | undefined {
  const v = str(fields, 'MsgId') ?? str(fields, 'MsgID') ?? str(fields, 'msgid');
  return v && v.trim() ? v.trim() : undefined;
}

function isEvent(fields: XmlObject): boolean {
  return str(fields, 'MsgType') === 'event';
}

function h(parts: string[]): string {
  return createHash('sha256').update(parts.join('\u0000'), 'utf8').digest('hex');
}

/**
 * What makes a push unique, as WeChat recommends: FromUserName + MsgId for messages; FromUserName + CreateTime
 * (+ Event + EventKey, so two different events in the same second are not merged) for events and for anything
 * without a MsgId. Hashed, so it is short and safe in any store key.
 */
export function dedupeKeyOf(fields: XmlObject): string {
  const from = str(fields, 'FromUserName') ?? '';
  const id = msgIdOf(fields);
  if (!isEvent(fields) && id) return 'm' + h([from, id]).slice(0, 40);
  return (
    'e' +
    h([
      from,
      str(fields, 'CreateTime') ?? '',
      str(fields, 'MsgType') ?? '',
      str(fields, 'Event') ?? '',
      str(fields, 'EventKey') ?? '',
    ]).slice(0, 40)
  );
}

/**
 * `messageId` of the conversation message: the MsgId for messages; for events (which mostly have none) a stable
 * id from FromUserName + CreateTime + Event + EventKey, the same on every instance and on every retry.
 */
export function messageIdOf(fields: XmlObject): string {
  const id = msgIdOf(fields);
  if (!isEvent(fields) && id) return id;
  const base = [
    str(fields, 'FromUserName') ?? '',
    str(fields, 'CreateTime') ?? '',
    str(fields, 'Event') ?? str(fields, 'MsgType') ?? '',
    str(fields, 'EventKey') ?? '',
  ];
  return 'wxevt-' + h(base).slice(0, 32);
}

/** The kinds of inbound media, and how the node's media links name them. */
export type MediaKind = 'image' | 'voice' | 'video' | 'shortvideo' | 'thumb';

export interface MediaRef {
  mediaId: string;
  kind: MediaKind;
  /** The type WeChat's media is expected to be; the download's own Content-Type wins when served. */
  mimeType: string;
  /** A file name for the agent (`image.jpg`, `voice.amr`, `video.mp4`). */
  name: string;
}

const VOICE_TYPES: Record<string, [string, string]> = {
  amr: ['audio/amr', 'amr'],
  speex: ['audio/speex', 'spx'],
  mp3: ['audio/mpeg', 'mp3'],
  silk: ['audio/silk', 'silk'],
};

/** The media reference of a message, or undefined. */
export function mediaRefOf(fields: XmlObject): MediaRef | undefined {
  const type = str(fields, 'MsgType') ?? '';
  const mediaId = str(fields, 'MediaId')?.trim();
  if (!mediaId) return undefined;
  switch (type) {
    case 'image':
      return { mediaId, kind: 'image', mimeType: 'image/jpeg', name: 'image.jpg' };
    case 'voice': {
      const [mime, ext] = VOICE_TYPES[(str(fields, 'Format') ?? 'amr').toLowerCase()] ?? ['audio/amr', 'amr'];
      return { mediaId, kind: 'voice', mimeType: mime, name: `voice.${ext}` };
    }
    case 'video':
    case 'shortvideo':
      return { mediaId, kind: type, mimeType: 'video/mp4', name: 'video.mp4' };
    default:
      return { mediaId, kind: 'image', mimeType: 'application/octet-stream', name: 'media' };
  }
}

export interface NormalizeOptions {
  /** A URL that serves the media to whoever receives the message (signed media links), or undefined. */
  mediaUrl?: (ref: MediaRef) => string | undefined;
}

function attachmentOf(ref: MediaRef, opts: NormalizeOptions): Attachment {
  const a: Attachment = { mediaId: ref.mediaId, mimeType: ref.mimeType, name: ref.name };
  const url = opts.mediaUrl?.(ref);
  if (url) a.url = url;
  return a;
}

/** Every field of an event except the common ones, with the original names. */
function eventFields(fields: XmlObject): Record<string, XmlValue> {
  const out: Record<string, XmlValue> = {};
  for (const [k, v] of Object.entries(fields)) if (!COMMON.has(k)) out[k] = v;
  return out;
}

/** The conversation message of a push. `fields` must have FromUserName, ToUserName, CreateTime and MsgType. */
export function toConversation(fields: XmlObject, opts: NormalizeOptions = {}): ConversationMessage {
  const from = str(fields, 'FromUserName') ?? '';
  const to = str(fields, 'ToUserName') ?? '';
  const msgType = str(fields, 'MsgType') ?? '';
  const createTime = num(str(fields, 'CreateTime'));
  const m: ConversationMessage = {
    direction: 'inbound',
    channel: 'wechat',
    account: to,
    conversationId: from,
    messageId: messageIdOf(fields),
    timestamp: createTime !== undefined ? createTime * 1000 : Date.now(),
    from: { id: from },
    to: { id: to },
    type: msgType,
  };

  switch (msgType) {
    case 'text':
      m.text = str(fields, 'Content') ?? '';
      break;
    case 'image':
    case 'voice':
    case 'video':
    case 'shortvideo': {
      if (msgType === 'shortvideo') m.type = 'video';
      if (msgType === 'voice') {
        const rec = str(fields, 'Recognition');
        if (rec && rec.trim()) m.text = rec;
      }
      const ref = mediaRefOf(fields);
      if (ref) m.attachments = [attachmentOf(ref, opts)];
      break;
    }
    case 'location': {
      const lat = num(str(fields, 'Location_X'));
      const lng = num(str(fields, 'Location_Y'));
      if (lat !== undefined && lng !== undefined) {
        m.location = { latitude: lat, longitude: lng };
        const scale = num(str(fields, 'Scale'));
        if (scale !== undefined) m.location.scale = scale;
        const label = str(fields, 'Label');
        if (label) m.location.label = label;
      }
      break;
    }
    case 'link': {
      const url = str(fields, 'Url') ?? '';
      m.link = { url };
      const title = str(fields, 'Title');
      if (title) m.link.title = title;
      const desc = str(fields, 'Description');
      if (desc) m.link.description = desc;
      break;
    }
    case 'miniprogrampage': {
      m.link = { url: str(fields, 'PagePath') ?? '' };
      const title = str(fields, 'Title');
      if (title) m.link.title = title;
      const thumb = str(fields, 'ThumbMediaId')?.trim();
      if (thumb) {
        m.attachments = [
          attachmentOf({ mediaId: thumb, kind: 'thumb', mimeType: 'image/jpeg', name: 'thumb.jpg' }, opts),
        ];
      }
      break;
    }
    case 'event':
      m.event = eventOf(fields);
      locationOfEvent(fields, m);
      break;
    default: {
      // A type this pack does not know (device_text, …): keep what is recognisable.
      const content = str(fields, 'Content');
      if (content !== undefined) m.text = content;
      const ref = mediaRefOf(fields);
      if (ref) m.attachments = [attachmentOf(ref, opts)];
    }
  }
  return m;
}

/** `event` of the conversation message: name, key, every other field by its WeChat name, and a few helpers. */
export function eventOf(fields: XmlObject): NonNullable<ConversationMessage['event']> {
  const name = str(fields, 'Event') ?? '';
  const ev: NonNullable<ConversationMessage['event']> = { name, ...eventFields(fields) };
  const key = str(fields, 'EventKey');
  if (key !== undefined) ev.key = key;
  // A follow through a parametric QR code: EventKey "qrscene_<scene>"; a scan by a follower: EventKey "<scene>".
  if (name === 'subscribe' && key && key.startsWith('qrscene_')) ev.scene = key.slice('qrscene_'.length);
  if (name === 'SCAN' && key !== undefined) ev.scene = key;
  return ev;
}

function locationOfEvent(fields: XmlObject, m: ConversationMessage): void {
  const name = str(fields, 'Event');
  if (name === 'LOCATION') {
    const lat = num(str(fields, 'Latitude'));
    const lng = num(str(fields, 'Longitude'));
    if (lat !== undefined && lng !== undefined) m.location = { latitude: lat, longitude: lng };
  } else if (name === 'location_select') {
    const info = obj(fields, 'SendLocationInfo');
    if (!info) return;
    const lat = num(str(info, 'Location_X'));
    const lng = num(str(info, 'Location_Y'));
    if (lat === undefined || lng === undefined) return;
    m.location = { latitude: lat, longitude: lng };
    const scale = num(str(info, 'Scale'));
    if (scale !== undefined) m.location.scale = scale;
    const label = str(info, 'Label') || str(info, 'Poiname');
    if (label) m.location.label = label;
  }
}

/**
 * Which customer-service window a push opens on WeChat's side (docs/protocol/wechat.md §8.3): a user message
 * (5 messages / 48 h), or a menu click, follow or QR scan (3 messages / 1 min). Undefined: none.
 */
export function interactionOf(fields: XmlObject): 'message' | 'menu' | 'subscribe' | 'scan' | undefined {
  const type = str(fields, 'MsgType');
  if (type !== 'event') return type ? 'message' : undefined;
  switch (str(fields, 'Event')) {
    case 'CLICK':
    case 'scancode_push':
    case 'scancode_waitmsg':
      return 'menu';
    case 'subscribe':
      return 'subscribe';
    case 'SCAN':
      return 'scan';
    default:
      return undefined;
  }
}

/** The problem with a push's required fields, or null. */
export function missingFields(fields: XmlObject): string | null {
  for (const f of ['ToUserName', 'FromUserName', 'CreateTime', 'MsgType']) {
    const v = str(fields, f);
    if (v === undefined || v.trim() === '') return `the push has no ${f}`;
  }
  if (!/^\d{1,12}$/.test((str(fields, 'CreateTime') ?? '').trim()))
    return 'CreateTime is not a number of seconds';
  return null;
}
