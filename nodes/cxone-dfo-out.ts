/**
 * cxone-dfo-out: calls CXone's Digital Engagement (DFO 3.0) API: customer messages, delivery status of agent
 * replies, typing.
 *
 * The action comes from the msg: `msg.action` ("message" | "status" | "typing") when set; else `msg.delivery`
 * with `msg.cxone` (a wechat-out result for an agent's reply) → delivery status; else `msg.payload.type ===
 * "typing"` → sender action; else → a customer message. The channel is `msg.cxone.channelId`, else
 * `msg.channelId`, else the node's. Every job goes through the outbox (lib/outbox) with the Attempt of
 * lib/cxone/dfo; `done()` when the outbox has it. Output 1: delivered; output 2: failed (also a Catch-able
 * error). Every other msg property passes through.
 */
import { invalidConversation, type ConversationMessage, type Delivery } from '../lib/conversation';
import {
  DEFAULT_FORWARD_EVENTS,
  dfoAttempt,
  localizeDfoMessage,
  toCreateMessage,
  type DfoDelivered,
  type DfoDeliveryError,
  type DfoJob,
} from '../lib/cxone/dfo';
import { outboundPolicyOf } from '../lib/http/outbound-guard';
import { createOutbox, type AttemptOutcome, type OutboxJob, type OutboxResult } from '../lib/outbox';
import type { JsonText } from '../lib/outbox/codec';
import type { CxoneConfigNode, CxoneOutDef } from './defs';
import { keptMsg, outboxPolicyOf, plainCopy, safeMessage } from './shared';
import { journalRefOf } from '../lib/journal';
import { healthFor, journalDone, runtimeOf } from './store';
import type { DoneFn, Node, NodeAPI, NodeMessage, NodeStatus, SendFn } from './types';

const NS = 'cxone-dfo-out';
const STATUS_INTERVAL_MS = 500;

/**
 * What the outbox keeps per job: the call, and a plain copy of the input msg for the output after a restart (its JSON
 * text in a job of this run, the object a stored record gives back after a restart).
 */
type OutJob = DfoJob & { msg?: JsonText | Record<string, unknown> };

interface Pending {
  msg: NodeMessage;
  send: SendFn;
}

type Action = 'message' | 'status' | 'typing';

function str(v: unknown): string {
  return typeof v === 'string' ? v.trim() : typeof v === 'number' && Number.isFinite(v) ? String(v) : '';
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** Which call a msg asks for (see the file comment). */
function actionOf(msg: NodeMessage): Action {
  const a = msg.action;
  if (a === 'message' || a === 'status' || a === 'typing') return a;
  if (obj(msg.delivery) && obj(msg.cxone)) return 'status';
  if (obj(msg.payload)?.type === 'typing') return 'typing';
  return 'message';
}

export = function register(RED: NodeAPI): void {
  function CxoneDfoOut(this: Node, def: CxoneOutDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: Node, def: CxoneOutDef): void {
    const config = def.cxone ? (RED.nodes.getNode(def.cxone) as CxoneConfigNode | null) : null;
    const t = (key: string, subs?: Record<string, unknown>): string => RED._(`${NS}.${key}`, subs);
    if (!config || typeof config.dfo !== 'function') {
      node.status({ fill: 'red', shape: 'ring', text: t('status.no-config') });
      node.on('input', (_msg: NodeMessage, _send: SendFn, done: DoneFn) => {
        done(new Error(t('errors.no-config')));
      });
      return;
    }

    const integration = config.dfo();
    const defaultChannel = str(def.channelId);
    const forwardEvents = typeof def.forwardEvents === 'string' ? def.forwardEvents : DEFAULT_FORWARD_EVENTS;
    const mb = Number(def.maxAttachmentMB);
    const maxBytes = Math.round((Number.isFinite(mb) && mb > 0 ? Math.min(mb, 100) : 20) * 1024 * 1024);
    const attempt = dfoAttempt(integration.client, integration.http, {
      attachments: {
        mode: def.attachmentMode === 'link' ? 'link' : 'upload',
        maxBytes,
        policy: outboundPolicyOf(def),
      },
    });
    const outbox = createOutbox<OutJob>({
      name: `${integration.auth.keyPrefix}:out:${node.id}`,
      store: config.store,
      policy: outboxPolicyOf(def),
      runtime: runtimeOf(RED),
    });
    const counters = { messages: 0, statuses: 0, typing: 0, failed: 0, skipped: 0, refused: 0 };
    const health = healthFor(RED, node, () => {
      const tok = integration.auth.current();
      const now = Date.now();
      return {
        outbox: outbox.stats(),
        token: {
          ageMs: tok ? now - tok.obtainedAt : undefined,
          expiresInMs: tok ? tok.expiresAt - now : undefined,
          refreshes: integration.auth.counters.tokenFetches,
          failures: integration.auth.counters.tokenFailures,
        },
        counters: { ...counters },
      };
    });
    const pending = new Map<string, Pending>();

    // --- Status, redrawn at most every STATUS_INTERVAL_MS; texts are made only when drawn ----------------
    // (per message, translating the texts and reading the queue's figures cost more than the rest of the node)
    type StatusOf = () => NodeStatus;
    let latest: StatusOf = () => ({});
    let want: StatusOf = latest;
    let statusTimer: NodeJS.Timeout | undefined;
    let lastDrawn = 0;
    let closed = false;
    const draw = (): void => {
      statusTimer = undefined;
      if (closed) return;
      lastDrawn = Date.now();
      node.status(want());
    };
    const schedule = (): void => {
      if (statusTimer || closed) return;
      const wait = Math.max(0, lastDrawn + STATUS_INTERVAL_MS - Date.now());
      if (wait === 0) draw();
      else statusTimer = setTimeout(draw, wait);
    };
    const setStatus = (s: StatusOf): void => {
      latest = s;
      want = s;
      schedule();
    };
    /** The queue while it has work, else the latest event's status. */
    const queueStatus = (): void => {
      const event = latest;
      want = () => {
        const s = outbox.stats();
        if (s.depth === 0) return event();
        return {
          fill: s.retrying > 0 ? 'yellow' : 'blue',
          shape: s.retrying > 0 ? 'ring' : 'dot',
          text:
            s.retrying > 0
              ? t('status.retrying', { depth: s.depth, retrying: s.retrying })
              : t('status.sending', { depth: s.depth }),
        };
      };
      schedule();
    };

    const words = (e: DfoDeliveryError): string =>
      e.i18n ? localizeDfoMessage(e.i18n.key, e.i18n.subs, e.message, RED._.bind(RED), NS) : e.message;

    const onResult = (r: OutboxResult<OutJob>): void => {
      const entry = pending.get(r.job.id);
      pending.delete(r.job.id);
      attempt.forget(r.job.id);
      const job = r.job.payload;
      // The live msg; after a restart, the plain copy the job kept.
      const msg: NodeMessage = entry?.msg ??
        keptMsg(job.msg) ?? { _msgid: RED.util.generateId(), payload: null };
      const send: SendFn = entry?.send ?? ((m) => node.send(m));
      const base = { action: job.action, channelId: job.channelId, attempts: r.job.attempts };
      if (r.status === 'delivered' && r.outcome.kind === 'delivered') {
        const d = (r.outcome.detail ?? {}) as DfoDelivered;
        const delivery: Delivery & Record<string, unknown> = { status: 'delivered', ...base };
        if (r.outcome.messageId) delivery.messageId = r.outcome.messageId;
        if (job.action === 'message') {
          delivery.idOnExternalPlatform = job.body.idOnExternalPlatform;
          if (d.message?.contactId) delivery.contactId = d.message.contactId;
          if (d.message?.threadId) delivery.threadId = d.message.threadId;
          if (d.message?.duplicate) delivery.duplicate = true;
          if (d.attachmentNotes?.length) delivery.warnings = d.attachmentNotes;
        } else if (job.action === 'status') {
          delivery.idOnExternalPlatform = job.idOnExternalPlatform;
          delivery.reported = job.status;
        }
        msg.delivery = delivery;
        if (job.action === 'message') counters.messages++;
        else if (job.action === 'status') counters.statuses++;
        else counters.typing++;
        setStatus(() => ({ fill: 'green', shape: 'dot', text: t(`status.delivered-${job.action}`) }));
        send([msg, null]);
      } else {
        const outcome = r.outcome as Exclude<AttemptOutcome, { kind: 'delivered' }>;
        const e = outcome.error as DfoDeliveryError;
        // Out of attempts or time: say so, with the last error.
        const gaveUp = outcome.kind === 'retry' || r.reason === 'attempts' || r.reason === 'expired';
        const last = words(e);
        let message = last;
        if (gaveUp) {
          const k = `${NS}.errors.gave-up`;
          const v = RED._(k, { attempts: r.job.attempts, error: last });
          message = v && v !== k ? v : `gave up after ${r.job.attempts} attempts: ${last}`;
        }
        const error: Record<string, unknown> = { code: e.code, message, retryable: e.retryable };
        if (e.fields) error.fields = e.fields;
        msg.delivery = { status: 'failed', error, ...base };
        setStatus(() => ({
          fill: 'red',
          shape: 'ring',
          text: t('status.failed', { code: String(e.code).slice(0, 40) }),
        }));
        counters.failed++;
        send([null, msg]);
        const text = t('errors.failed', { action: t(`action.${job.action}`), error: message });
        health.error(text);
        node.error(text, msg);
      }
      queueStatus();
    };

    const wrapped = async (job: OutboxJob<OutJob>): Promise<AttemptOutcome> => {
      const o = await attempt(job);
      if (o.kind === 'retry' && !closed) {
        setStatus(() => ({
          fill: 'yellow',
          shape: 'ring',
          text: t('status.retry', { attempt: job.attempts + 1, code: String(o.error.code).slice(0, 40) }),
        }));
        node.debug(t('log.retry', { attempt: job.attempts + 1, error: words(o.error) }));
      }
      return o;
    };
    outbox.start(wrapped, onResult);

    /** Refuses the msg at once: output 2 and a Catch-able error. */
    const refuse = (msg: NodeMessage, send: SendFn, done: DoneFn, code: string, message: string): void => {
      msg.delivery = {
        status: 'failed',
        error: { code, message, retryable: false },
        attempts: 0,
      };
      setStatus(() => ({ fill: 'red', shape: 'ring', text: t('status.failed', { code }) }));
      counters.refused++;
      health.error(message);
      send([null, msg]);
      // Refused for good: the inbound journal must not replay it.
      void journalDone(RED, msg);
      done(new Error(message));
    };

    node.on('input', (msg: NodeMessage, send: SendFn, done: DoneFn) => {
      const action = actionOf(msg);
      const cx = obj(msg.cxone);
      const channelId = str(cx?.channelId) || str(msg.channelId) || defaultChannel;
      if (!channelId) {
        refuse(msg, send, done, 'no-channel', t('dfo.no-channel'));
        return;
      }
      const payload = obj(msg.payload);
      let job: DfoJob;
      let id: string;
      let key: string;
      if (action === 'status' && msg.action !== 'status' && payload?.type === 'typing') {
        // wechat-out's result for an agent's typing: there is no CXone message to report on.
        node.debug(t('log.skipped', { reason: 'typing result' }));
        counters.skipped++;
        void journalDone(RED, msg);
        done();
        return;
      }
      if (action === 'status') {
        const delivery = obj(msg.delivery);
        const ext = str(cx?.idOnExternalPlatform) || str(payload?.messageId);
        const st = delivery?.status;
        if (!ext || (st !== 'delivered' && st !== 'failed' && st !== 'seen')) {
          refuse(msg, send, done, 'invalid', t('errors.bad-status'));
          return;
        }
        let reason: string | undefined;
        if (st === 'failed') {
          const err = obj(delivery?.error);
          const m = str(err?.message) || t('errors.no-reason');
          const code = str(err?.code);
          reason = code && !m.includes(code) ? `${m} (${code})` : m;
        }
        job = {
          action: 'status',
          channelId,
          idOnExternalPlatform: ext,
          status: st,
          reason,
          updatedAt: new Date().toISOString(),
        };
        id = `status:${channelId}:${ext}:${st}`;
        key = `${channelId}:${str(payload?.conversationId) || ext}`;
      } else if (action === 'typing') {
        const thread = str(payload?.conversationId) || str(obj(cx?.thread)?.idOnExternalPlatform);
        if (!thread) {
          refuse(msg, send, done, 'invalid', t('errors.no-thread'));
          return;
        }
        job = { action: 'typing', channelId, threadId: thread, typing: payload?.typing !== false };
        id = `typing:${RED.util.generateId()}`;
        key = `${channelId}:${thread}`;
      } else {
        const bad = invalidConversation(msg.payload);
        if (bad) {
          refuse(msg, send, done, 'invalid', t('dfo.invalid-message', { reason: bad }));
          return;
        }
        const m = toCreateMessage(msg.payload as ConversationMessage, { forwardEvents });
        if (m.kind === 'skip') {
          node.debug(t('log.skipped', { reason: m.reason }));
          counters.skipped++;
          void journalDone(RED, msg);
          done();
          return;
        }
        if (m.kind === 'invalid') {
          refuse(msg, send, done, 'invalid', t('dfo.invalid-message', { reason: m.reason }));
          return;
        }
        job = { action: 'message', channelId, body: m.body, attachments: m.attachments };
        id = `msg:${channelId}:${m.body.idOnExternalPlatform}`;
        key = `${channelId}:${m.body.thread.idOnExternalPlatform}`;
      }
      // A repeat of a job still pending keeps the first msg's entry (it gets the output).
      const mine = !pending.has(id);
      if (mine) pending.set(id, { msg, send });
      // The journal entry may be the job's record only with an id a replay gives again: not a typing job's.
      const journal = job.action === 'typing' ? undefined : journalRefOf(msg);
      outbox.enqueue({ id, key, payload: { ...job, msg: plainCopy(msg) }, journal }).then(
        (accepted) => {
          if (!accepted) {
            if (mine) pending.delete(id);
            node.debug(t('log.duplicate', { id: id.slice(0, 200) }));
          }
          queueStatus();
          // Safe in the outbox (or already there): the inbound journal may forget it. Once it has, nothing can
          // enqueue the message again, and the outbox need not remember its id after delivering it.
          void journalDone(RED, msg).then((completed) => {
            if (completed) outbox.release(id);
          });
          done();
        },
        (err: unknown) => {
          if (mine) pending.delete(id);
          done(new Error(t('errors.enqueue', { error: safeMessage(err) })));
        },
      );
    });

    node.on('close', (_removed: boolean, done: () => void) => {
      closed = true;
      if (statusTimer) clearTimeout(statusTimer);
      statusTimer = undefined;
      outbox.stop().then(
        () => {
          pending.clear();
          done();
        },
        () => {
          pending.clear();
          done();
        },
      );
    });
  }
  RED.nodes.registerType('cxone-dfo-out', CxoneDfoOut);
};
