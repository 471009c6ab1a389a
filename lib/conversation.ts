/**
 * The conversation message: what both `-in` nodes emit as `msg.payload` and both `-out` nodes accept.
 * See docs/contract.md; property names here are part of the pack's public interface.
 */

export type Direction = 'inbound' | 'outbound';
export type Platform = 'wechat' | 'cxone';

export type ConversationType =
  'text' | 'image' | 'voice' | 'video' | 'file' | 'location' | 'link' | 'event' | 'typing' | (string & {});

export interface Party {
  id: string;
  name?: string;
}

export interface Attachment {
  url?: string;
  mediaId?: string;
  mimeType?: string;
  name?: string;
  size?: number;
  /** Set by producers in the same runtime: the bytes themselves (never serialised into a platform payload). */
  data?: Buffer;
}

export interface ConversationMessage {
  /** inbound: customer → contact center. */
  direction: Direction;
  /** The platform the message came from. */
  channel: Platform;
  /** WeChat: the account's original id (gh_…); CXone: the channel id. */
  account: string;
  /** The thread on the customer's platform; on WeChat, the user's openid. */
  conversationId: string;
  /** The platform's id for the message, always a string. */
  messageId: string;
  /** Epoch milliseconds. */
  timestamp: number;
  from: Party;
  to?: Party;
  type: ConversationType;
  text?: string;
  attachments?: Attachment[];
  location?: { latitude: number; longitude: number; scale?: number; label?: string };
  link?: { title?: string; description?: string; url: string };
  event?: { name: string; key?: string; [k: string]: unknown };
  /** Typing indicator for type "typing". */
  typing?: boolean;
}

export interface DeliveryError {
  /** The far side's code (WeChat errcode, HTTP status, …) or one of ours ('timeout', 'network', …). */
  code: string | number;
  /** Words an agent or an admin can act on. Never contains a secret. */
  message: string;
  /** Whether trying again later may succeed. */
  retryable: boolean;
}

/** What an `-out` node puts on `msg.delivery`. */
export interface Delivery {
  status: 'delivered' | 'failed';
  messageId?: string;
  error?: DeliveryError;
  /** How many attempts it took. */
  attempts?: number;
}

const TYPES_WITH_TEXT = new Set(['text']);

/** A light structural check of a value that claims to be a conversation message; returns a reason or null. */
export function invalidConversation(p: unknown): string | null {
  if (!p || typeof p !== 'object') return 'msg.payload is not an object';
  const m = p as Partial<ConversationMessage>;
  if (typeof m.conversationId !== 'string' || !m.conversationId)
    return 'msg.payload.conversationId is missing';
  if (typeof m.type !== 'string' || !m.type) return 'msg.payload.type is missing';
  if (TYPES_WITH_TEXT.has(m.type) && typeof m.text !== 'string') return 'msg.payload.text is missing';
  if (m.attachments !== undefined && !Array.isArray(m.attachments))
    return 'msg.payload.attachments is not an array';
  return null;
}
