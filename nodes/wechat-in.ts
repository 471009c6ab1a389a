/**
 * wechat-in: the webhook WeChat's server calls (URL verification GET, message and event POST), and the signed
 * media links of the messages it emits (`GET {path}/media/:token`).
 *
 * The request handling lives in lib/wechat/inbound/receiver.ts (accept → journal (also the dedupe) → acknowledge
 * → emit); this adapter gives it the account's secrets and the inbound journal (lib/journal, in the account's
 * store), turns accepted pushes into messages (`msg._wxcx.journal` set, completed by the -out node whose outbox
 * accepts the message), replays pushes a previous run acknowledged but never handed to an outbox, keeps the
 * status and health figures, and serves the media links.
 */
import type { OutboundPolicy } from '../lib/http/outbound-guard';
import type { RouteContext } from '../lib/http/registry';
import { createJournal } from '../lib/journal';
import { sendEmpty, sendText } from '../lib/http/respond';
import {
  DEFAULT_MEDIA_LINK_TTL_MS,
  mediaLink,
  mediaLinkKey,
  publicBaseOf,
  serveMedia,
  verifyMediaToken,
  type MediaFetcher,
} from '../lib/wechat/inbound/media-link';
import { str } from '../lib/wechat/inbound/normalize';
import { PushError, type PushSecrets } from '../lib/wechat/inbound/push';
import {
  MAX_REPLY_TIMEOUT_MS,
  PUSH_BODY_LIMIT,
  PushReceiver,
  type AcceptedPush,
} from '../lib/wechat/inbound/receiver';
import { DEFAULT_WECHAT_PATH, type WechatConfigNode, type WechatInDef } from './defs';
import { logsAt } from './logging';
import { claimForNode, numberIn, safeMessage } from './shared';
import { healthFor, runtimeOf, replayJournal } from './store';
import type { Node, NodeAPI, NodeMessage } from './types';
import { openPassiveWindow } from './wechat-passive';

interface WechatInNodeDef extends WechatInDef {
  /** Passive-reply budget in ms: 0 acknowledges at once; at most 4500. */
  replyTimeout?: number | string;
  /** Base URL of the media links (scheme://host[:port][/prefix]); empty: from the push request's headers. */
  publicUrl?: string;
  /** Lifetime of the media links, hours (default 72, WeChat's temporary-media lifetime). */
  mediaLinkTtl?: number | string;
  /** Largest distance of a push's timestamp from our clock, seconds; 0 (default) = no window. */
  timestampWindow?: number | string;
  /** Refuse plain (unencrypted) pushes; for accounts in compatible or safe mode. Default false. */
  encryptedOnly?: boolean | string;
}

const STATUS_THROTTLE_MS = 300;

/**
 * How long a push is remembered after its journal entry is complete, for the dedupe of WeChat's retries: WeChat
 * tries a push 3 more times within about 15 seconds, so 10 minutes is forty times that. (It was 1 hour; a mark per
 * push for an hour was, at a few hundred pushes a second, the file store's largest use of memory.)
 */
const DEDUPE_MS = 10 * 60_000;

function originOf(url: string | undefined): string | undefined {
  try {
    return url ? new URL(url).origin : undefined;
  } catch {
    return undefined;
  }
}

/** What the journal keeps of a push: the msg wechat-in emits, without the live parts (window, _msgid). */
interface JournaledPush {
  payload: AcceptedPush['payload'];
  wechat: Record<string, unknown>;
}

/**
 * The config node's way to download media: its API client's `getMedia` (lib/wechat/api `WechatApi.getMedia`),
 * wherever the config node exposes it.
 */
function mediaFetcherOf(config: WechatConfigNode): MediaFetcher | undefined {
  type Holder = { getMedia?: MediaFetcher; fetchMedia?: MediaFetcher };
  const c = config as unknown as Holder & { api?: Holder; client?: Holder };
  for (const h of [c.api, c.client, c]) {
    if (!h) continue;
    if (typeof h.getMedia === 'function') return h.getMedia.bind(h);
    if (typeof h.fetchMedia === 'function') return h.fetchMedia.bind(h);
  }
  return undefined;
}

export = function register(RED: NodeAPI): void {
  function WechatIn(this: Node, def: WechatInNodeDef): void {
    RED.nodes.createNode(this, def);
    const config = def.wechat ? (RED.nodes.getNode(def.wechat) as WechatConfigNode | null) : null;
    if (!config) {
      this.status({ fill: 'red', shape: 'ring', text: RED._('wechat-in.status.no-config') });
      this.error(RED._('wechat-in.errors.no-config'));
      return;
    }
    const replyTimeout = numberIn(def.replyTimeout, 0, 0, MAX_REPLY_TIMEOUT_MS);
    const linkTtlMs =
      numberIn(def.mediaLinkTtl, DEFAULT_MEDIA_LINK_TTL_MS / 3600_000, 0.01, 24 * 30) * 3600_000;
    const publicUrl = String(def.publicUrl ?? '')
      .trim()
      .replace(/\/+$/, '');
    const appId = (): string => config.appId || '';

    const secrets = (): PushSecrets => {
      const token = config.credentials?.token ?? '';
      if (!token) throw new PushError(500, 'not-configured', 'the account has no Token configured');
      return { token, encodingAESKey: config.credentials?.encodingAESKey || undefined, appId: appId() };
    };
    const linkKey = (): Buffer | null =>
      mediaLinkKey({
        appId: appId(),
        appSecret: config.credentials?.appSecret,
        token: config.credentials?.token,
        encodingAESKey: config.credentials?.encodingAESKey,
      });

    // ---- status: "listening on …", counts, what is held, the last problem -------------------------------
    const counts = { received: 0, rejected: 0, duplicates: 0, replayed: 0 };
    let fullPath = '';
    let active = false;
    let holding = 0;
    let problem: string | undefined;
    let statusTimer: NodeJS.Timeout | undefined;
    const showStatus = (): void => {
      statusTimer = undefined;
      if (!active) return;
      const tally = RED._('wechat-in.status.counts', {
        received: counts.received,
        rejected: counts.rejected,
      });
      if (problem) {
        this.status({ fill: 'red', shape: 'dot', text: `${problem} · ${tally}` });
      } else if (holding > 0) {
        this.status({
          fill: 'blue',
          shape: 'dot',
          text: RED._('wechat-in.status.holding', { count: holding, path: fullPath }) + ` · ${tally}`,
        });
      } else if (counts.received + counts.rejected === 0) {
        this.status({
          fill: 'green',
          shape: 'dot',
          text: RED._('wechat-in.status.listening', { path: fullPath }),
        });
      } else {
        this.status({
          fill: 'green',
          shape: 'dot',
          text: RED._('wechat-in.status.listening', { path: fullPath }) + ` · ${tally}`,
        });
      }
    };
    const refreshStatus = (): void => {
      if (!statusTimer) statusTimer = setTimeout(showStatus, STATUS_THROTTLE_MS);
    };

    const problemOf = (err: PushError): string | undefined => {
      switch (err.code) {
        case 'no-key':
          return RED._('wechat-in.status.no-key');
        case 'bad-key':
          return RED._('wechat-in.status.bad-key');
        case 'appid':
          return RED._('wechat-in.status.wrong-appid');
        case 'encrypt':
          return RED._('wechat-in.status.decrypt-failed');
        case 'not-configured':
          return RED._('wechat-in.status.no-token');
        default:
          return undefined;
      }
    };

    // ---- the inbound journal: durable before "success", the dedupe of WeChat's retries, replay on start ------
    const journal = createJournal<JournaledPush>({
      runtime: runtimeOf(RED),
      name: `wxcx:wechat:${appId() || config.id}:in:${this.id}`,
      store: config.store,
      dedupeMs: DEDUPE_MS,
    });
    const health = healthFor(RED, this, () => ({
      journal: journal.stats(),
      counters: { ...counts, holding },
    }));

    // Per push: only when a log handler takes the level (each call costs Node-RED an Error and its stack).
    const logDebug = logsAt(RED, 'debug');
    const logTrace = logsAt(RED, 'trace');
    const receiver = new PushReceiver({
      secrets,
      store: config.store,
      keyPrefix: `wxcx:wechat:${appId() || config.id}:`,
      journal: (p) => journal.append(p.dedupeKey, { payload: p.payload, wechat: wechatOf(p) }),
      replyTimeoutMs: replyTimeout,
      timestampWindowS: numberIn(def.timestampWindow, 0, 0, 86_400),
      encryptedOnly: def.encryptedOnly === true || def.encryptedOnly === 'true',
      xmlLimits: { maxBytes: PUSH_BODY_LIMIT },
      mediaUrl: (ref, ctx) => {
        const key = linkKey();
        const base =
          publicUrl || publicBaseOf(ctx.headers, !!(ctx.req.socket as { encrypted?: boolean }).encrypted);
        if (!key || !base || !fullPath) return undefined;
        return mediaLink(key, ref, base, fullPath, linkTtlMs);
      },
      emit: (p, replyId, ref) => emit(messageOf({ payload: p.payload, wechat: wechatOf(p) }, replyId, ref)),
      openWindow: (p, deliver) =>
        openPassiveWindow(
          RED,
          { appId: appId(), openid: p.payload.conversationId, account: p.payload.account },
          deliver,
        ),
      events: {
        received: (p) => {
          counts.received++;
          problem = undefined;
          if (logDebug)
            this.debug(
              `received a ${p.mode} push: ${str(p.fields, 'MsgType') ?? '?'}` +
                (str(p.fields, 'Event') ? `/${str(p.fields, 'Event')}` : '') +
                ` (${p.payload.messageId})`,
            );
          if (logTrace) this.trace(`push XML: ${p.xml}`);
          refreshStatus();
        },
        duplicate: () => {
          counts.duplicates++;
          refreshStatus();
        },
        rejected: (err) => {
          counts.rejected++;
          const p = problemOf(err);
          if (p) {
            problem = p;
            const text = RED._(`wechat-in.errors.${err.code}`, { status: err.status });
            health.error(text);
            this.error(text);
          } else if (err.code === 'timestamp' || err.code === 'plain') {
            // Signed with the Token, so from WeChat or from someone replaying a push: say what to check.
            this.warn(RED._(`wechat-in.errors.${err.code}`));
          } else {
            this.debug(`refused a request (${err.status}): ${err.message}`);
          }
          refreshStatus();
        },
        holding: (n) => {
          holding = n;
          refreshStatus();
        },
        answered: (p, how) => {
          if (how === 'passive') this.debug(`answered ${p.payload.messageId} with a passive reply`);
        },
        problem: (code, err, p) => {
          const m = p ? ({ payload: p.payload } as NodeMessage) : undefined;
          const text = RED._(`wechat-in.errors.${code}`, { error: safeMessage(err) });
          health.error(text);
          this.error(text, m);
        },
      },
    });

    /** `msg.wechat`: the push's fields, its XML and query, the mode and the account. */
    const wechatOf = (p: AcceptedPush): Record<string, unknown> => ({
      ...p.fields,
      xml: p.xml,
      query: p.query,
      mode: p.mode,
      appId: appId(),
    });
    const messageOf = (
      j: JournaledPush,
      replyId: string | undefined,
      ref: string | undefined,
    ): NodeMessage => {
      const wechat: Record<string, unknown> = { ...j.wechat };
      if (replyId) wechat.replyId = replyId;
      const msg: NodeMessage = { _msgid: RED.util.generateId(), payload: j.payload, wechat };
      if (ref) msg._wxcx = { journal: ref };
      return msg;
    };

    // Pushes acknowledged by a run that is gone (a crash) and never handed to an outbox: emitted again, once,
    // when the flows have started (so the nodes downstream exist). New pushes are acknowledged at once but held
    // back until then, so a conversation's replayed messages go ahead of the ones its user sent after the restart.
    const emit = replayJournal(RED, this, journal, {
      replay: (entry, ref) => {
        counts.replayed++;
        this.debug(RED._('wechat-in.log.replayed', { id: entry.data.payload?.messageId ?? entry.id }));
        return messageOf(entry.data, undefined, ref);
      },
      after: refreshStatus,
      onError: (err) => health.error(safeMessage(err)),
    });

    // ---- media links ---------------------------------------------------------------------------------------
    const serveMediaRoute = async (ctx: RouteContext): Promise<void> => {
      const key = linkKey();
      const check = key
        ? verifyMediaToken(key, ctx.params.token ?? '')
        : ({ ok: false, reason: 'forged' } as const);
      if (!check.ok) {
        if (check.reason === 'expired') sendText(ctx.res, 410, 'this media link has expired');
        else sendEmpty(ctx.res, 403);
        return;
      }
      const fetcher = mediaFetcherOf(config);
      if (!fetcher) {
        sendText(ctx.res, 503, 'media download is not available (the account has no API client)');
        return;
      }
      await serveMedia(
        ctx.res,
        check.claims,
        fetcher,
        {
          onError: (reason) => this.warn(RED._('wechat-in.errors.media', { reason })),
          // The video_url WeChat answers with is fetched under the account's outbound rules (wechat-config).
          outbound: (config as { api?: { outbound?: OutboundPolicy } }).api?.outbound,
          trustedOrigin: originOf(config.apiBase),
        },
        ctx.req.method === 'HEAD',
      );
    };

    const claim = claimForNode(
      RED,
      this,
      def.path || DEFAULT_WECHAT_PATH,
      [
        { method: 'GET', pattern: '', handler: receiver.handleGet },
        { method: 'POST', pattern: '', bodyLimit: PUSH_BODY_LIMIT, handler: receiver.handlePost },
        { method: 'GET', pattern: '/media/:token', handler: serveMediaRoute },
      ],
      {
        ns: 'wechat-in',
        onActive: (p) => {
          fullPath = p;
          active = true;
          showStatus();
        },
      },
    );
    if (claim) fullPath = claim.state.fullPath;

    this.on('close', (_removed: boolean, done: () => void) => {
      active = false;
      if (statusTimer) clearTimeout(statusTimer);
      statusTimer = undefined;
      receiver.close();
      claim?.release();
      journal.stop().then(
        () => done(),
        () => done(),
      );
    });
  }
  RED.nodes.registerType('wechat-in', WechatIn);
};
