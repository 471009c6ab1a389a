/**
 * Creating a CXone channel (point of contact) for a WeChat account, shared by the admin pages and the
 * cxone-dfo-config editor: what the admin fills in, checked, and the `POST /channels` body built from it
 * (docs/protocol/cxone.md §f: the required keys, `externalPlatformIcon` set — "without an icon, your channel may
 * not function properly" — and `realExternalPlatformId` defaulting to `custom`, which is inferred).
 */
import { randomUUID } from 'node:crypto';
import type { Channel, NewChannel } from '../dfo/client';

/** `externalPlatformIcon` values DFO accepts (NICE's OpenAPI enum). */
export const CHANNEL_ICONS = [
  'amazon',
  'apple',
  'apple-apps',
  'apple-imessage',
  'co-browsing',
  'contact-form',
  'email',
  'facebook',
  'facebook-dm',
  'facebook-messenger',
  'forum',
  'google',
  'google-dm',
  'google-maps',
  'google-play',
  'google-search',
  'instagram',
  'instagram-dm',
  'kakao-talk',
  'kik',
  'line-message',
  'linkedin',
  'listening',
  'livechat',
  'livechat-contact-form',
  'ok-ru',
  'pinterest',
  'rcs',
  'rss',
  'slack',
  'sms',
  'snapchat',
  'tango',
  'telegram',
  'tumblr',
  'twitter',
  'twitter-dm',
  'viber',
  'vkontakte',
  'vkontakte-dm',
  'voice',
  'wechat',
  'whatsapp',
  'youtube',
] as const;

/** `realExternalPlatformId` values in NICE's OpenAPI enum; which one a BYOC channel should use is not documented. */
export const REAL_EXTERNAL_PLATFORM_IDS = [
  'custom',
  'we-chat',
  'smooch-io-we-chat',
  'chat',
  'sandbox',
  'mock',
] as const;

export interface ChannelInput {
  name?: unknown;
  /** The WeChat account this channel is for (its original id gh_…, or the AppID). */
  idOnExternalPlatform?: unknown;
  channelIntegrationId?: unknown;
  externalPlatformIcon?: unknown;
  realExternalPlatformId?: unknown;
  isPrivate?: unknown;
  /** Let the admin pick the channel id; a UUID otherwise. */
  id?: unknown;
}

export interface ChannelProblem {
  field: string;
  message: string;
}

function str(v: unknown): string {
  return typeof v === 'string' ? v.trim() : typeof v === 'number' ? String(v) : '';
}

const SAFE = /^[A-Za-z0-9._:@-]+$/;

/** Checks the form; returns the body to POST, or the problems (field and words). */
export function newChannelBody(
  input: ChannelInput,
  defaults: { channelIntegrationId?: string } = {},
): { ok: true; channel: NewChannel } | { ok: false; problems: ChannelProblem[] } {
  const problems: ChannelProblem[] = [];
  const name = str(input.name) || 'WeChat Official Account';
  const ext = str(input.idOnExternalPlatform);
  const integration = str(input.channelIntegrationId) || (defaults.channelIntegrationId ?? '').trim();
  const icon = str(input.externalPlatformIcon) || 'wechat';
  const real = str(input.realExternalPlatformId) || 'custom';
  const id = str(input.id) || randomUUID();
  if (name.length > 100) problems.push({ field: 'name', message: 'at most 100 characters' });
  if (!ext)
    problems.push({
      field: 'idOnExternalPlatform',
      message: 'the WeChat account id (gh_… or AppID) is required',
    });
  else if (ext.length > 100 || !SAFE.test(ext)) {
    problems.push({
      field: 'idOnExternalPlatform',
      message: 'letters, digits and . _ : @ - only, at most 100',
    });
  }
  if (!integration) {
    problems.push({
      field: 'channelIntegrationId',
      message: 'the Integration ID CXone shows for this Bring Your Own Channel integration is required',
    });
  } else if (integration.length > 100 || !SAFE.test(integration)) {
    problems.push({ field: 'channelIntegrationId', message: 'not an integration id' });
  }
  if (!(CHANNEL_ICONS as readonly string[]).includes(icon)) {
    problems.push({ field: 'externalPlatformIcon', message: 'not one of the icons CXone knows' });
  }
  if (!/^[a-z0-9-]{1,60}$/.test(real))
    problems.push({ field: 'realExternalPlatformId', message: 'not a platform id' });
  if (id.length > 100 || !SAFE.test(id)) problems.push({ field: 'id', message: 'not a channel id' });
  if (problems.length) return { ok: false, problems };
  return {
    ok: true,
    channel: {
      id,
      idOnExternalPlatform: ext,
      channelIntegrationId: integration,
      realExternalPlatformId: real,
      name,
      isPrivate:
        input.isPrivate === undefined ? true : input.isPrivate === true || input.isPrivate === 'true',
      hasTreeStructure: false,
      hasReply: true,
      contentFormat: 'plain',
      hasAbilityToSendFiles: true,
      hasOutboundFlow: false,
      hasMultipleThreadsPerEndUser: false,
      externalPlatformIcon: icon,
    },
  };
}

/** What the pages and the editor show of a channel (no other fields leave the server). */
export interface ChannelSummary {
  id: string;
  name: string;
  idOnExternalPlatform: string;
  channelIntegrationId: string;
  externalPlatformIcon: string;
  realExternalPlatformId: string;
}

export function summarize(c: Channel): ChannelSummary {
  const s = (v: unknown): string => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '');
  return {
    id: c.id,
    name: s(c.name),
    idOnExternalPlatform: s(c.idOnExternalPlatform),
    channelIntegrationId: s(c.channelIntegrationId),
    externalPlatformIcon: s(c.externalPlatformIcon),
    realExternalPlatformId: s(c.realExternalPlatformId),
  };
}

/** The channels of one integration (all of them when no integration id is known). */
export function ofIntegration(list: Channel[], channelIntegrationId?: string): ChannelSummary[] {
  const want = (channelIntegrationId ?? '').trim();
  return list.filter((c) => !want || c.channelIntegrationId === want).map(summarize);
}
