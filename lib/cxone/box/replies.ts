/**
 * What CXone posts to the box, read into the pack's conversation message. The request bodies are not documented
 * publicly (docs/protocol/cxone.md §g, docs/cxone-box.md): every field is looked up in the places public code and
 * NICE's own client put it, and nothing but the thread id (and, for a reply, some content) is required.
 */
import { createHash, randomUUID } from 'node:crypto';
import { HttpError } from '../../http/body';
import type { Attachment, ConversationMessage, Party } from '../../conversation';
import type { JsonObject } from './json';

export type ReplyFormat = 'legacy' | 'dfo3';

/** Where the WeChat openid (the thread id) of a reply was found. */
export type ThreadIdSource = 'thread' | 'post' | 'path' | 'recipient';

/** `msg.cxone` as `cxone-dfo-in` emits it beside the conversation message. */
export interface CxoneInbound {
  /** Which box endpoint CXone called. */
  format: ReplyFormat | 'sender-action';
  /** The CXone channel (point of contact) id: from the path (3.0, sender action) or the body (legacy). */
  channelId?: string;
  /** The legacy route's `:postId`. */
  postId?: string;
  /** The thread on WeChat: the user's openid. */
  threadId: string;
  threadIdSource?: ThreadIdSource;
  /** The id we gave CXone for this reply (also `msg.payload.messageId`); absent for typing. */
  idOnExternalPlatform?: string;
  /** When we accepted the reply, as we told CXone. */
  createdAtWithMilliseconds?: string;
  /** CXone's own id of the agent's message, when the body carries one. */
  cxoneMessageId?: string;
  /** The message the agent replied to (`replyToMessage.idOnExternalPlatform`). */
  replyToMessageId?: string;
  brandId?: string;
  tenantId?: string;
  /** `isTypingOn` / `isTypingOff` for sender actions. */
  action?: string;
  /** The request body as parsed, untouched. */
  body: JsonObject;
}

export interface BoxEmission {
  payload: ConversationMessage;
  cxone: CxoneInbound;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_ID_LENGTH = 256;

function obj(v: unknown): JsonObject | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as JsonObject) : undefined;
}

/** A usable id: a non-empty string (trimmed) or a finite number, not absurdly long. */
export function idString(v: unknown): string | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v !== 'string') return undefined;
  const s = v.trim();
  return s && s.length <= MAX_ID_LENGTH ? s : undefined;
}

function text(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

/** The end-user recipients of a body: `endUserRecipients` (DFO 3.0 box calls) or `recipients`. */
export function recipientsOf(body: JsonObject): JsonObject[] {
  const list = Array.isArray(body.endUserRecipients)
    ? body.endUserRecipients
    : Array.isArray(body.recipients)
      ? body.recipients
      : [];
  return list.map(obj).filter((r): r is JsonObject => r !== undefined);
}

/** The first end-user recipient that can receive: the primary one if marked, else the first with an id. */
function firstRecipient(body: JsonObject): JsonObject | undefined {
  const rs = recipientsOf(body).filter((r) => idString(r.idOnExternalPlatform) !== undefined);
  return rs.find((r) => r.isPrimary === true) ?? rs[0];
}

export interface ThreadId {
  threadId: string;
  source: ThreadIdSource;
}

/**
 * The WeChat openid a reply goes to: `thread.idOnExternalPlatform`, else the post id (`post.idOnExternalPlatform`,
 * then the legacy path's `:postId` unless it is a CXone UUID), else the first end-user recipient.
 */
export function threadIdOf(body: JsonObject, pathPostId?: string): ThreadId | undefined {
  const t = idString(obj(body.thread)?.idOnExternalPlatform);
  if (t) return { threadId: t, source: 'thread' };
  const p = idString(obj(body.post)?.idOnExternalPlatform);
  if (p) return { threadId: p, source: 'post' };
  const pp = idString(pathPostId);
  if (pp && !UUID_RE.test(pp)) return { threadId: pp, source: 'path' };
  const r = idString(firstRecipient(body)?.idOnExternalPlatform);
  if (r) return { threadId: r, source: 'recipient' };
  return undefined;
}

/** The agent's text: `messageContent.payload.text`, then the other places samples put it. */
export function replyText(body: JsonObject): string | undefined {
  const mc = obj(body.messageContent);
  const payload = obj(mc?.payload);
  const message = body.message;
  return (
    text(payload?.text) ??
    text(mc?.text) ??
    text(obj(message)?.text) ??
    text(message) ??
    text(body.text) ??
    text(mc?.fallbackText)
  );
}

const MIME_BY_EXT: Record<string, string> = {
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  png: 'image/png',
  gif: 'image/gif',
  webp: 'image/webp',
  bmp: 'image/bmp',
  mp3: 'audio/mpeg',
  amr: 'audio/amr',
  wav: 'audio/wav',
  m4a: 'audio/mp4',
  mp4: 'video/mp4',
  mov: 'video/quicktime',
  pdf: 'application/pdf',
  txt: 'text/plain',
  doc: 'application/msword',
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  xls: 'application/vnd.ms-excel',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  ppt: 'application/vnd.ms-powerpoint',
  pptx: 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
  zip: 'application/zip',
};

/** A media type guessed from a file name's extension; undefined when unknown. */
export function mimeFromName(name: string | undefined): string | undefined {
  if (!name) return undefined;
  const m = /\.([A-Za-z0-9]{1,5})$/.exec(name);
  return m ? MIME_BY_EXT[m[1].toLowerCase()] : undefined;
}

function urlPathName(url: string): string | undefined {
  try {
    const p = new URL(url).pathname;
    const last = p.split('/').filter(Boolean).pop();
    return last ? decodeURIComponent(last) : undefined;
  } catch {
    return undefined;
  }
}

/** `attachments [{friendlyName, url}]` → `[{url, name, mimeType?}]`; items without an http(s) URL are left out. */
export function replyAttachments(body: JsonObject): Attachment[] {
  if (!Array.isArray(body.attachments)) return [];
  const out: Attachment[] = [];
  for (const item of body.attachments) {
    const a = obj(item);
    const url = text(a?.url);
    if (!a || !url || !/^https?:\/\//i.test(url)) continue;
    const name = text(a.friendlyName) ?? text(a.name) ?? text(a.fileName) ?? urlPathName(url);
    const declared = text(a.mimeType) ?? text(a.contentType);
    const mimeType = declared ?? mimeFromName(name) ?? mimeFromName(urlPathName(url));
    const att: Attachment = { url };
    if (name) att.name = name;
    if (mimeType) att.mimeType = mimeType;
    if (typeof a.size === 'number' && Number.isFinite(a.size)) att.size = a.size;
    out.push(att);
  }
  return out;
}

/** The conversation type of a message with no text: from its first attachment. */
export function typeOfAttachment(a: Attachment): 'image' | 'voice' | 'video' | 'file' {
  const m = a.mimeType ?? '';
  if (m.startsWith('image/')) return 'image';
  if (m.startsWith('audio/')) return 'voice';
  if (m.startsWith('video/')) return 'video';
  return 'file';
}

/** The agent as `from`: `authorUser` (or `author`) of the body. */
export function agentOf(body: JsonObject): Party {
  const u = obj(body.authorUser) ?? obj(body.author);
  if (!u) return { id: 'agent' };
  const id = idString(u.id) ?? idString(u.incontactId) ?? idString(u.emailAddress) ?? 'agent';
  const name =
    [text(u.firstName), text(u.surname) ?? text(u.lastName)].filter(Boolean).join(' ') ||
    text(u.nickname) ||
    text(u.name);
  return name ? { id, name } : { id };
}

/** CXone's id of the agent's message, if the body carries one (`id`, `messageId` or `message.id`). */
export function cxoneMessageIdOf(body: JsonObject): string | undefined {
  return idString(body.messageId) ?? idString(body.id) ?? idString(obj(body.message)?.id);
}

/**
 * The `idOnExternalPlatform` we give a reply. Derived from CXone's message id when there is one, so a retry of
 * the same reply gets the same id on every instance and after a restart; random otherwise.
 */
export function replyIdFor(channelId: string | undefined, threadId: string, cxoneMessageId?: string): string {
  if (!cxoneMessageId) return `wx-out-${randomUUID()}`;
  const h = createHash('sha256')
    .update(`${channelId ?? ''}\n${threadId}\n${cxoneMessageId}`, 'utf8')
    .digest('hex');
  // Formatted like a v4 UUID (version and variant nibbles set) so it looks like the random ones.
  const v = `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${((parseInt(h[16], 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
  return `wx-out-${v}`;
}

function brandOf(body: JsonObject): { brandId?: string; tenantId?: string } {
  const b = obj(body.brand);
  return {
    brandId: idString(b?.id) ?? idString(body.brandId),
    tenantId: idString(b?.tenantId) ?? idString(body.tenantId),
  };
}

/** A reply as read from the request, before an id is given to it. */
export interface ReadReply {
  format: ReplyFormat;
  channelId?: string;
  postId?: string;
  thread: ThreadId;
  cxoneMessageId?: string;
  text?: string;
  attachments: Attachment[];
  type: string;
  from: Party;
  to: Party;
  replyToMessageId?: string;
  brandId?: string;
  tenantId?: string;
  body: JsonObject;
}

/**
 * Reads an agent reply. `params` are the route's (`channelId` for 3.0, `postId` for legacy). Throws HttpError(400)
 * when the reply names no recipient or carries nothing to send.
 */
export function readReply(format: ReplyFormat, params: Record<string, string>, body: JsonObject): ReadReply {
  const pathChannel = format === 'dfo3' ? idString(params.channelId) : undefined;
  const postId = format === 'legacy' ? idString(params.postId) : undefined;
  const channelId =
    pathChannel ??
    idString(obj(body.channel)?.id) ??
    idString(body.channelId) ??
    idString(obj(body.post)?.channelId) ??
    idString(obj(body.thread)?.channelId);
  const thread = threadIdOf(body, postId);
  if (!thread)
    throw new HttpError(
      400,
      'the reply names no recipient: expected thread.idOnExternalPlatform, a post id or an end-user recipient',
    );
  const t = replyText(body);
  const attachments = replyAttachments(body);
  let type: string;
  if (t !== undefined) type = 'text';
  else if (attachments.length) type = typeOfAttachment(attachments[0]);
  else {
    const declared = idString(obj(body.messageContent)?.type);
    if (!declared)
      throw new HttpError(400, 'the reply has no text (messageContent.payload.text) and no attachments');
    // A content type we do not know (a rich message, say): passed on as is; the raw body is in msg.cxone.body.
    type = declared.toLowerCase();
  }
  const recipient = recipientsOf(body).find((r) => idString(r.idOnExternalPlatform) === thread.threadId);
  const toName = text(recipient?.name);
  const { brandId, tenantId } = brandOf(body);
  return {
    format,
    channelId,
    postId,
    thread,
    cxoneMessageId: cxoneMessageIdOf(body),
    text: t,
    attachments,
    type,
    from: agentOf(body),
    to: toName ? { id: thread.threadId, name: toName } : { id: thread.threadId },
    replyToMessageId: idString(obj(body.replyToMessage)?.idOnExternalPlatform),
    brandId,
    tenantId,
    body,
  };
}

/** The emitted message of a reply that was given `id` at `createdAt` (epoch ms). */
export function replyEmission(r: ReadReply, id: string, createdAt: number): BoxEmission {
  const payload: ConversationMessage = {
    direction: 'outbound',
    channel: 'cxone',
    account: r.channelId ?? '',
    conversationId: r.thread.threadId,
    messageId: id,
    timestamp: createdAt,
    from: r.from,
    to: r.to,
    type: r.type,
  };
  if (r.text !== undefined) payload.text = r.text;
  if (r.attachments.length) payload.attachments = r.attachments;
  const cxone: CxoneInbound = {
    format: r.format,
    channelId: r.channelId,
    threadId: r.thread.threadId,
    threadIdSource: r.thread.source,
    idOnExternalPlatform: id,
    createdAtWithMilliseconds: new Date(createdAt).toISOString(),
    body: r.body,
  };
  if (r.postId !== undefined) cxone.postId = r.postId;
  if (r.cxoneMessageId !== undefined) cxone.cxoneMessageId = r.cxoneMessageId;
  if (r.replyToMessageId !== undefined) cxone.replyToMessageId = r.replyToMessageId;
  if (r.brandId !== undefined) cxone.brandId = r.brandId;
  if (r.tenantId !== undefined) cxone.tenantId = r.tenantId;
  return { payload, cxone };
}

/** What the box answers CXone for an accepted reply, in the format CXone called. */
export function replyResponse(
  r: Pick<ReadReply, 'format' | 'thread' | 'body'>,
  id: string,
  createdAt: number,
): Record<string, unknown> {
  if (r.format === 'legacy') return { idOnExternalPlatform: id };
  const out: Record<string, unknown> = {
    message: {
      idOnExternalPlatform: id,
      createdAtWithMilliseconds: new Date(createdAt).toISOString(),
      url: '',
    },
    thread: { idOnExternalPlatform: r.thread.threadId },
  };
  const rs = recipientsOf(r.body)
    .filter((x) => idString(x.idOnExternalPlatform) !== undefined)
    .map((x) => ({
      idOnExternalPlatform: idString(x.idOnExternalPlatform),
      name: text(x.name) ?? '',
      isPrimary: x.isPrimary === true,
      isPrivate: x.isPrivate === true,
    }));
  if (rs.length) out.recipients = rs;
  return out;
}

/** `isTypingOn` → true, `isTypingOff` → false; undefined for any other action. */
export function typingOf(action: string | undefined): boolean | undefined {
  if (!action) return undefined;
  const a = action.toLowerCase();
  if (a === 'istypingon' || a === 'typing_on' || a === 'typingon') return true;
  if (a === 'istypingoff' || a === 'typing_off' || a === 'typingoff') return false;
  return undefined;
}

/** The action of a sender-action body: `senderAction.action`, else `action`. */
export function senderActionOf(body: JsonObject): string | undefined {
  return idString(obj(body.senderAction)?.action) ?? idString(body.action) ?? idString(body.senderAction);
}

/** The typing message for a sender action. */
export function typingEmission(
  params: Record<string, string>,
  body: JsonObject,
  typing: boolean,
  action: string,
  now: number,
): BoxEmission {
  const threadId = params.threadId;
  const { brandId, tenantId } = brandOf(body);
  const payload: ConversationMessage = {
    direction: 'outbound',
    channel: 'cxone',
    account: params.channelId ?? '',
    conversationId: threadId,
    messageId: `wx-typing-${randomUUID()}`,
    timestamp: now,
    from: agentOf(body),
    to: { id: threadId },
    type: 'typing',
    typing,
  };
  const cxone: CxoneInbound = {
    format: 'sender-action',
    channelId: params.channelId,
    threadId,
    action,
    body,
  };
  if (brandId !== undefined) cxone.brandId = brandId;
  if (tenantId !== undefined) cxone.tenantId = tenantId;
  return { payload, cxone };
}

/** The syntax a WeChat openid has: 28 URL-safe base64 characters in practice; 16–64 accepted (docs/cxone-box.md). */
export const OPENID_RE = /^[A-Za-z0-9_-]{16,64}$/;

export interface ValidationError {
  path: (string | number)[];
  message: string;
}

/** The 400 body of a failed recipient validation (the shape CXone is seen to expect). */
export interface ValidationFailure {
  displayErrorMessage: string;
  errorCode: 'outboundValidationFailed';
  errors: ValidationError[];
}

/**
 * Checks the recipients CXone wants to write to. Returns null when every recipient can be a WeChat openid, else
 * the 400 body.
 */
export function validateRecipients(
  body: JsonObject,
  isValid: (id: string) => boolean = (id) => OPENID_RE.test(id),
): ValidationFailure | null {
  const key = Array.isArray(body.endUserRecipients)
    ? 'endUserRecipients'
    : Array.isArray(body.recipients)
      ? 'recipients'
      : undefined;
  const list: unknown[] = key ? (body[key] as unknown[]) : [];
  const errors: ValidationError[] = [];
  if (!key || list.length === 0) {
    errors.push({ path: ['endUserRecipients'], message: 'No recipient given' });
  } else {
    list.forEach((item, i) => {
      const id = obj(item)?.idOnExternalPlatform;
      if (typeof id !== 'string' || id.trim() === '')
        errors.push({ path: [key, i, 'idOnExternalPlatform'], message: 'Recipient id missing' });
      else if (!isValid(id.trim()))
        errors.push({ path: [key, i, 'idOnExternalPlatform'], message: 'Invalid recipient format' });
    });
  }
  if (!errors.length) return null;
  return {
    displayErrorMessage:
      errors.length === 1 && errors[0].message === 'No recipient given'
        ? 'No recipient was given. Enter the WeChat openid of the customer.'
        : 'The recipient is not a valid WeChat openid for this Official Account.',
    errorCode: 'outboundValidationFailed',
    errors,
  };
}
