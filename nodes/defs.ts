/** Property and credential shapes of the six node types as stored in flow JSON (see docs/contract.md). */
import type { DfoIntegration } from '../lib/cxone/dfo';
import type { Store } from '../lib/store/types';
import type { WechatApi } from '../lib/wechat/api/client';
import type { Node, NodeDef } from './types';

export const DEFAULT_WECHAT_API = 'https://api.weixin.qq.com';
export const DEFAULT_WECHAT_PATH = '/wechat/webhook';
export const DEFAULT_AUTH_ISSUER = 'https://cxone.niceincontact.com';
export const DEFAULT_BOX_PATH = '/integration/box';

export interface WechatConfigDef extends NodeDef {
  appId?: string;
  apiBase?: string;
}

export interface WechatCredentials {
  appSecret?: string;
  token?: string;
  encodingAESKey?: string;
}

export interface WechatConfigNode extends Node<WechatCredentials> {
  appId: string;
  apiBase: string;
  /** Dedupe, token cache, outbox and journal of this account (nodes/store.ts). */
  store: Store;
  /** The account's API client (token, send, media upload/download), created on first use, closed with the node. */
  readonly api: WechatApi;
}

export interface CxoneConfigDef extends NodeDef {
  authIssuer?: string;
  apiBase?: string;
  /** The Integration ID CXone shows for the BYOC integration (channel admin). */
  channelIntegrationId?: string;
}

export interface CxoneCredentials {
  clientId?: string;
  clientSecret?: string;
  accessKeyId?: string;
  accessKeySecret?: string;
  boxClientId?: string;
  boxClientSecret?: string;
  jwtSecret?: string;
}

export interface CxoneConfigNode extends Node<CxoneCredentials> {
  authIssuer: string;
  apiBase: string;
  /** Token caches, outbox and journal of this integration (nodes/store.ts). */
  store: Store;
  /** The Integration ID CXone shows for the BYOC integration; '' when not set. */
  channelIntegrationId: string;
  /** This integration's DFO 3.0 client (token, discovery, calls), created on first use, closed with the node. */
  dfo(): DfoIntegration;
}

export interface WechatInDef extends NodeDef {
  wechat?: string;
  path?: string;
}

export interface WechatOutDef extends NodeDef {
  wechat?: string;
}

export interface CxoneInDef extends NodeDef {
  cxone?: string;
  path?: string;
}

/** The outbox properties of both `-out` nodes (same names, same ranges). */
export interface OutboxPolicyDef {
  /** Attempts before a message is dead-lettered (default 8, 1–100). */
  maxAttempts?: number | string;
  /** Minutes before an undelivered message is dead-lettered (default 1440, at most 7 days). */
  maxAge?: number | string;
  /** Conversations delivered at once (default 256, 1–1024). */
  concurrency?: number | string;
}

export interface CxoneOutDef extends NodeDef, OutboxPolicyDef {
  cxone?: string;
  channelId?: string;
  /** 'upload' (default): media go through /attachments/temporary; 'link': public URLs are passed as they are. */
  attachmentMode?: string;
  /** Events forwarded as notes, comma-separated ("*" all, "" none); default subscribe,SCAN,CLICK. */
  forwardEvents?: string;
  /** Largest attachment fetched and uploaded, MiB (default 20). */
  maxAttachmentMB?: number | string;
  /** Fetch attachment URLs on http:// and private addresses too (local networks, the sandbox). */
  allowPrivateNetwork?: boolean;
  /** Hosts attachment URLs may be fetched from (comma/space separated, ".example.com" for a domain); empty: any public host. */
  allowedHosts?: string;
}
