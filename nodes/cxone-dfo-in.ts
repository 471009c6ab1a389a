/**
 * cxone-dfo-in: the BYOC "integration box" CXone calls: our OAuth token endpoint, agent replies (legacy and
 * DFO 3.0), typing, recipient validation, and the admin pages for points of contact. The protocol lives in
 * lib/cxone/box (no Node-RED there); this file wires it to the runtime: credentials, store, output, status, health.
 *
 * Agent replies are journaled (lib/journal, the integration's store) before CXone gets its 200: the emitted msg
 * carries `msg._wxcx.journal`, which the -out node whose outbox accepts the message completes; a reply answered
 * by a run that died before an outbox had it is emitted again after the restart (docs/adr/0006-nothing-lost.md).
 */
import { cxoneKeyPrefix, integrationBoxRoutes, type BoxEvent } from '../lib/cxone/box';
import { adminPageRoutes } from '../lib/cxone/admin/pages';
import type { RouteDef } from '../lib/http/registry';
import { createJournal } from '../lib/journal';
import type { BoxEmission } from '../lib/cxone/box/replies';
import { logsAt } from './logging';
import { claimForNode, safeMessage } from './shared';
import { healthFor, runtimeOf, replayJournal } from './store';
import type { Node, NodeAPI, NodeMessage } from './types';
import { DEFAULT_BOX_PATH, type CxoneConfigNode, type CxoneInDef } from './defs';

/** Status is redrawn at most this often (a busy box must not flood the editor). */
const STATUS_INTERVAL_MS = 1000;
/** How long an agent reply's CXone id is remembered, so CXone's retries are answered but not emitted again. */
const REPLY_DEDUPE_MS = 24 * 3600_000;
/** Repeated warnings of one kind (throttling) at most this often. */
const WARN_INTERVAL_MS = 60_000;

export = function register(RED: NodeAPI): void {
  function CxoneDfoIn(this: Node, def: CxoneInDef): void {
    RED.nodes.createNode(this, def);
    const config = def.cxone ? (RED.nodes.getNode(def.cxone) as CxoneConfigNode | null) : null;
    if (!config) {
      this.status({ fill: 'red', shape: 'ring', text: RED._('cxone-dfo-in.status.no-config') });
      this.error(RED._('cxone-dfo-in.errors.no-config'));
      return;
    }
    const creds = config.credentials ?? {};
    const secrets = {
      clientId: String(creds.boxClientId ?? '').trim(),
      clientSecret: String(creds.boxClientSecret ?? '').trim(),
      jwtSecret: String(creds.jwtSecret ?? ''),
    };
    const configured = secrets.clientId !== '' && secrets.clientSecret !== '';

    // --- Status: listening / last reply / token requests / rejected calls ---------------------------------
    const counts = { replies: 0, tokens: 0, rejected: 0, duplicates: 0, replayed: 0 };
    let lastReplyAt: number | undefined;
    let attention = false;
    let active = false;
    let fullPath = '';
    let statusTimer: NodeJS.Timeout | undefined;
    let closed = false;
    const lastWarn = new Map<string, number>();
    const warnSometimes = (kind: string, text: string): void => {
      const t = Date.now();
      if ((lastWarn.get(kind) ?? 0) + WARN_INTERVAL_MS > t) return;
      lastWarn.set(kind, t);
      this.warn(text);
    };
    const drawStatus = (): void => {
      statusTimer = undefined;
      if (closed || !active) return;
      if (!configured) {
        this.status({ fill: 'yellow', shape: 'ring', text: RED._('cxone-dfo-in.status.no-credentials') });
        return;
      }
      const subs = {
        path: fullPath,
        tokens: counts.tokens,
        rejected: counts.rejected,
        replies: counts.replies,
        time: lastReplyAt ? new Date(lastReplyAt).toLocaleTimeString() : '',
      };
      const quiet = counts.tokens === 0 && counts.rejected === 0 && counts.replies === 0;
      this.status({
        fill: attention ? 'yellow' : 'green',
        shape: 'dot',
        text: quiet
          ? RED._('cxone-dfo-in.status.listening', subs)
          : lastReplyAt
            ? RED._('cxone-dfo-in.status.last-reply', subs)
            : RED._('cxone-dfo-in.status.activity', subs),
      });
    };
    const scheduleStatus = (): void => {
      if (statusTimer || closed) return;
      statusTimer = setTimeout(drawStatus, STATUS_INTERVAL_MS);
    };

    const onEvent = (e: BoxEvent): void => {
      switch (e.kind) {
        case 'token-issued':
          counts.tokens++;
          attention = false;
          break;
        case 'token-refused':
          counts.rejected++;
          attention = true;
          this.debug(
            RED._('cxone-dfo-in.log.token-refused', { status: e.status, error: e.error, reason: e.reason }),
          );
          if (e.reason === 'not-configured')
            warnSometimes('not-configured', RED._('cxone-dfo-in.errors.no-credentials'));
          break;
        case 'token-throttled':
          counts.rejected++;
          attention = true;
          warnSometimes(
            'throttled-' + e.by,
            RED._(`cxone-dfo-in.errors.throttled-${e.by}`, { seconds: e.retryAfterS }),
          );
          break;
        case 'unauthorized':
          // No token, or an expired one, is how CXone's every token dance starts (401 → token → retry): not a
          // rejection worth counting. Malformed or forged tokens are.
          if (e.problem !== 'missing' && e.problem !== 'expired') counts.rejected++;
          this.debug(RED._('cxone-dfo-in.log.unauthorized', { route: e.route, problem: e.problem }));
          break;
        case 'bad-request':
          counts.rejected++;
          attention = true;
          this.warn(RED._('cxone-dfo-in.errors.bad-request', { route: e.route, reason: e.reason }));
          break;
        case 'reply':
          counts.replies++;
          lastReplyAt = Date.now();
          attention = false;
          break;
        case 'typing':
        case 'validation':
          // A call that got through: whatever was refused before is no longer the latest news.
          attention = false;
          break;
        case 'duplicate':
          counts.duplicates++;
          this.debug(RED._('cxone-dfo-in.log.duplicate', { id: e.id }));
          break;
        case 'sender-action-ignored':
          this.debug(RED._('cxone-dfo-in.log.action-ignored', { action: e.action.slice(0, 40) }));
          break;
        case 'store-failed': {
          const text = RED._('cxone-dfo-in.errors.store-failed', { error: e.reason });
          health.error(text);
          this.warn(text);
          break;
        }
        default:
          break;
      }
      scheduleStatus();
    };

    // --- The inbound journal: durable before CXone's 200, the dedupe of CXone's retries, replay on start ------
    const keyPrefix = cxoneKeyPrefix(config.id, creds.accessKeyId);
    const journal = createJournal<BoxEmission>({
      runtime: runtimeOf(RED),
      name: `${keyPrefix}in:${this.id}`,
      store: config.store,
      dedupeMs: REPLY_DEDUPE_MS,
    });
    const health = healthFor(RED, this, () => ({ journal: journal.stats(), counters: { ...counts } }));
    const messageOf = ({ payload, cxone }: BoxEmission, ref?: string): NodeMessage => {
      const msg: NodeMessage = { payload, cxone };
      if (ref) msg._wxcx = { journal: ref };
      return msg;
    };
    // Replies answered by a run that is gone and never handed to an outbox: emitted again once the flows run.
    // New replies are answered at once but held back until then, so the replayed ones go first.
    const emit = replayJournal(RED, this, journal, {
      replay: (entry, ref) => {
        counts.replayed++;
        this.debug(RED._('cxone-dfo-in.log.replayed', { id: entry.id }));
        return messageOf(entry.data, ref);
      },
      after: scheduleStatus,
      onError: (err) => health.error(safeMessage(err)),
    });

    const boxRoutes = integrationBoxRoutes({
      secrets: () => secrets,
      store: config.store,
      keyPrefix,
      dedupeTtlMs: REPLY_DEDUPE_MS,
      journal: (id, m) => journal.append(id, m),
      emit: (m, ref) => emit(messageOf(m, ref)),
      events: onEvent,
      // Per reply: only when a log handler takes debug lines (each call costs Node-RED an Error and its stack).
      logBody: logsAt(RED, 'debug')
        ? (route, path, body) => this.debug(RED._('cxone-dfo-in.log.body', { route, path, body }))
        : undefined,
    });

    // --- Admin pages (Action / Reconnect / Remove URLs) ----------------------------------------------------
    // Opened by CXone in the admin's browser with ?userId&brandId&token&backUrl, so NOT behind the bearer token.
    // lib/cxone/admin/pages.ts: the one-time-token exchange, a server-side session, channel list/create/remove.
    const adminRoutes: RouteDef[] = adminPageRoutes(config, {
      log: { debug: (m) => this.debug(m), warn: (m) => this.warn(m) },
    });

    const claim = claimForNode(RED, this, def.path || DEFAULT_BOX_PATH, [...boxRoutes, ...adminRoutes], {
      ns: 'cxone-dfo-in',
      onActive: (p) => {
        active = true;
        fullPath = p;
        if (!configured) {
          drawStatus();
          this.warn(RED._('cxone-dfo-in.errors.no-credentials'));
        }
      },
    });

    this.on('close', (_removed: boolean, done: () => void) => {
      closed = true;
      if (statusTimer) clearTimeout(statusTimer);
      statusTimer = undefined;
      claim?.release();
      journal.stop().then(
        () => done(),
        () => done(),
      );
    });
  }
  RED.nodes.registerType('cxone-dfo-in', CxoneDfoIn);
};
