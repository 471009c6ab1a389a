/**
 * Open passive-reply windows, per Node-RED runtime.
 *
 * When wechat-in holds a push's HTTP response for a passive reply (its `replyTimeout`), it opens a window here and
 * puts the window's id on the emitted message as `msg.wechat.replyId` (a string; nothing live travels on the
 * msg). A node further down the flow, normally wechat-out, calls `passiveReply(RED, msg)` first: when the window
 * is still open and the payload can be a passive reply, the reply goes into that HTTP response (encrypted and
 * signed in compatible/safe mode) and the call returns true; otherwise it returns false and the caller sends
 * through the customer-service API.
 *
 * Kept in a WeakMap keyed by the runtime (`runtimeOf`: its HTTP app, shared by every node module, like the route
 * registry), so nothing outlives the runtime.
 */
import { randomBytes } from 'node:crypto';
import { isPassiveReplyable, passiveReplyXml } from '../lib/wechat/inbound/reply';
import { runtimeOf } from './store';
import type { NodeAPI, NodeMessage } from './types';

export interface PassiveWindowInfo {
  /** AppID of the account the push came to. */
  appId: string;
  /** The user's openid (FromUserName of the push). */
  openid: string;
  /** The account's original id, gh_… (ToUserName of the push). */
  account: string;
}

interface Entry extends PassiveWindowInfo {
  deliver(xml: string): boolean;
}

const perRuntime = new WeakMap<object, Map<string, Entry>>();

function runtimeKey(RED: Pick<NodeAPI, 'httpNode' | 'events' | 'util'>): object | undefined {
  try {
    return runtimeOf(RED);
  } catch {
    return undefined;
  }
}

function windowsOf(
  RED: Pick<NodeAPI, 'httpNode' | 'events' | 'util'>,
  create: boolean,
): Map<string, Entry> | undefined {
  const key = runtimeKey(RED);
  if (!key) return undefined;
  let m = perRuntime.get(key);
  if (!m && create) {
    m = new Map();
    perRuntime.set(key, m);
  }
  return m;
}

/** Opens a window; `deliver` writes the reply XML into the held response and says whether it could. */
export function openPassiveWindow(
  RED: Pick<NodeAPI, 'httpNode' | 'events' | 'util'>,
  info: PassiveWindowInfo,
  deliver: (xml: string) => boolean,
): { id: string; close(): void } {
  const windows = windowsOf(RED, true) as Map<string, Entry>;
  const id = 'wxr-' + randomBytes(12).toString('hex');
  windows.set(id, { ...info, deliver });
  return { id, close: () => void windows.delete(id) };
}

function replyIdOf(msg: NodeMessage | null | undefined): string | undefined {
  const w = msg?.wechat as { replyId?: unknown } | undefined;
  return w && typeof w === 'object' && typeof w.replyId === 'string' ? w.replyId : undefined;
}

/** Whether `msg` came from a push whose passive-reply window is still open. */
export function hasPassiveWindow(
  RED: Pick<NodeAPI, 'httpNode' | 'events' | 'util'>,
  msg: NodeMessage,
): boolean {
  const id = replyIdOf(msg);
  return !!id && !!windowsOf(RED, false)?.has(id);
}

export interface PassiveReplyOptions {
  /** The AppID of the caller's account: a window of another account is never used. */
  appId?: string;
}

/**
 * Answers the push `msg` came from with `msg.payload` as a passive reply. True when the reply went into the held
 * HTTP response; false when there is no open window for this msg, the payload is for another user or another
 * account, or it cannot be a passive reply (see lib/wechat/inbound/reply.ts) — then use the customer-service API.
 * A window answers once; later calls return false.
 */
export function passiveReply(
  RED: Pick<NodeAPI, 'httpNode' | 'events' | 'util'>,
  msg: NodeMessage,
  opts: PassiveReplyOptions = {},
): boolean {
  const id = replyIdOf(msg);
  if (!id) return false;
  const windows = windowsOf(RED, false);
  const w = windows?.get(id);
  if (!w) return false;
  if (opts.appId && opts.appId !== w.appId) return false;
  const payload = msg.payload as { conversationId?: unknown } | undefined;
  if (!payload || typeof payload !== 'object') return false;
  if (
    typeof payload.conversationId === 'string' &&
    payload.conversationId &&
    payload.conversationId !== w.openid
  ) {
    return false;
  }
  if (!isPassiveReplyable(payload)) return false;
  const xml = passiveReplyXml(payload, { toUser: w.openid, fromUser: w.account });
  if (!xml) return false;
  windows?.delete(id);
  return w.deliver(xml);
}
