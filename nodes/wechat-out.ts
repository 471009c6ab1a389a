/**
 * wechat-out: sends a conversation message to a WeChat user through the customer-service message API (and media,
 * typing, template messages), through the outbox (persisted, retried with back-off, in order per user).
 *
 * - First, a passive reply: when the msg comes from a wechat-in push whose HTTP response is still held, the reply
 *   goes into that response (nodes/wechat-passive.ts) and costs nothing of the 5-replies quota.
 * - Otherwise the msg becomes a send plan (lib/wechat/api/messages.ts) that the outbox delivers with the WeChat
 *   Attempt (lib/wechat/api/attempt.ts). `done()` is called once the outbox accepted it.
 * - Output 1: delivered (`msg.delivery = {status:"delivered", messageId?, attempts}`); output 2: failed or dead
 *   letter (`msg.delivery = {status:"failed", error:{code, message, retryable}, attempts}`), also raised with
 *   `this.error(message, msg)` for Catch nodes. Every other msg property (`msg.cxone` …) passes through.
 */
import { createOutbox, type Outbox, type OutboxResult } from '../lib/outbox';
import type { JsonText } from '../lib/outbox/codec';
import type { Attempt } from '../lib/outbox/types';
import type { Delivery } from '../lib/conversation';
import { createWechatAttempt } from '../lib/wechat/api/attempt';
import type { Lang } from '../lib/wechat/api/errors';
import { planSend, type WechatSendPlan } from '../lib/wechat/api/messages';
import type { OutboxPolicyDef, WechatOutDef } from './defs';
import type { WechatConfigNode } from './defs';
import { journalRefOf } from '../lib/journal';
import { healthFor, journalDone, runtimeOf } from './store';
import { keptMsg, outboxPolicyOf, plainCopy } from './shared';
import { passiveReply } from './wechat-passive';
import type { DoneFn, Node, NodeAPI, NodeMessage, NodeStatus, SendFn } from './types';

/** wechat-out's properties beyond docs/contract.md's first list (added, see the contract). */
interface WechatOutDefEx extends WechatOutDef, OutboxPolicyDef {
  /** Send as this customer-service account (`account@wechat_id`); empty: none. */
  kfAccount?: string;
  /** Send files WeChat cannot carry (PDF, …) as a text with their link (default true). */
  linkFallback?: boolean;
}

/** What the outbox keeps per input msg. */
interface JobPayload {
  plan: WechatSendPlan;
  /**
   * A plain copy of the input msg (for the output after a restart; the live msg is used when available): its JSON
   * text in a job of this run, the object a stored record gives back after a restart.
   */
  msg: JsonText | Record<string, unknown>;
}

/** The queue's depth is redrawn at most this often. */
const QUEUE_STATUS_MS = 500;
const QUOTA_CODES = new Set<unknown>([45015, 45047, 43004, 48002, 50005]);
/** Typing refusals that are expected in normal use (no exchange in 30 s), not raised as errors. */
const QUIET_TYPING_CODES = new Set<unknown>([45080, 45081]);

export = function register(RED: NodeAPI): void {
  function WechatOut(this: Node, def: WechatOutDefEx): void {
    RED.nodes.createNode(this, def);
    const config = def.wechat ? (RED.nodes.getNode(def.wechat) as WechatConfigNode | null) : null;
    if (!config || config.type !== 'wechat-config') {
      this.status({ fill: 'red', shape: 'ring', text: RED._('wechat-out.status.no-config') });
      this.on('input', (_msg: NodeMessage, _send: SendFn, done: DoneFn) => {
        done(new Error(RED._('wechat-out.errors.no-config')));
      });
      return;
    }
    const lang: Lang = RED._('wechat-out.lang') === 'zh' ? 'zh' : 'en';
    const kfAccount = typeof def.kfAccount === 'string' ? def.kfAccount.trim() : '';
    const linkFallback = def.linkFallback !== false;

    /** The live input msgs of jobs in the outbox, by job id (output keeps every property, even non-JSON ones). */
    const pending = new Map<string, NodeMessage>();
    const outbox: Outbox<JobPayload> = createOutbox<JobPayload>({
      name: `wxcx:wechat:${config.appId}:out:${this.id}`,
      store: config.store,
      policy: outboxPolicyOf(def),
      runtime: runtimeOf(RED),
    });

    const counters = { delivered: 0, passive: 0, failed: 0, refused: 0, typingRefused: 0 };
    const health = healthFor(RED, this, () => ({ outbox: outbox.stats(), counters: { ...counters } }));

    // ---- status: a few redraws a second at most, however many messages (each one is a translation and a message
    // to every open editor). The queue's depth is drawn at most every QUEUE_STATUS_MS, when the timer fires; the
    // "delivered" status at most every second unless something else was drawn since, so the last word stays true.
    let drawn = '';
    let drawnAt = 0;
    let queueDrawnAt = 0;
    let queueTimer: NodeJS.Timeout | undefined;
    let closed = false;
    const show = (kind: string, s: NodeStatus): void => {
      drawn = kind;
      drawnAt = Date.now();
      this.status(s);
    };
    const drawQueue = (): void => {
      queueTimer = undefined;
      if (closed) return;
      const s = outbox.stats();
      if (s.depth === 0) return;
      queueDrawnAt = Date.now();
      show('queue', {
        fill: 'blue',
        shape: 'dot',
        text: RED._('wechat-out.status.sending', { depth: s.depth }),
      });
    };
    const showQueue = (): void => {
      if (queueTimer || closed) return;
      const wait = queueDrawnAt + QUEUE_STATUS_MS - Date.now();
      if (wait <= 0) drawQueue();
      else queueTimer = setTimeout(drawQueue, wait);
    };
    const showDelivered = (): void => {
      if (drawn === 'delivered' && Date.now() - drawnAt < 1000) return;
      show('delivered', {
        fill: 'green',
        shape: 'dot',
        text: RED._('wechat-out.status.delivered', { time: new Date().toLocaleTimeString() }),
      });
    };

    const wechatAttempt = (): Attempt<JobPayload> =>
      createWechatAttempt<JobPayload>(config.api, { lang, linkFallback });
    let base: Attempt<JobPayload> | undefined;
    const attempt: Attempt<JobPayload> = async (job) => {
      base ??= wechatAttempt();
      const o = await base(job);
      if (o.kind === 'retry') {
        // Queue depth and how many conversations wait for a retry (this one included: it is still in flight).
        const s = outbox.stats();
        show('retrying', {
          fill: 'yellow',
          shape: 'ring',
          text: RED._('wechat-out.status.retrying', {
            code: String(o.error.code),
            attempt: job.attempts,
            depth: s.depth,
            retrying: Math.max(1, s.retrying),
          }),
        });
      }
      return o;
    };

    const onResult = (r: OutboxResult<JobPayload>): void => {
      const id = r.job.id;
      const msg: NodeMessage = pending.get(id) ?? keptMsg(r.job.payload?.msg) ?? {};
      pending.delete(id);
      const attempts = r.job.attempts;
      const typing = r.job.payload?.plan?.typing === true;
      if (r.status === 'delivered' && r.outcome.kind === 'delivered') {
        const delivery: Delivery = { status: 'delivered', attempts };
        if (r.outcome.messageId) delivery.messageId = r.outcome.messageId;
        msg.delivery = delivery;
        counters.delivered++;
        this.send([msg, null]);
        if (!typing) showDelivered();
        else showQueue();
        return;
      }
      const error =
        r.outcome.kind === 'delivered'
          ? { code: 'error', message: RED._('wechat-out.errors.unknown'), retryable: false }
          : r.outcome.error;
      const gaveUp = r.outcome.kind === 'retry' || r.reason === 'attempts' || r.reason === 'expired';
      const message = gaveUp
        ? RED._('wechat-out.errors.gave-up', { attempts, reason: error.message })
        : error.message;
      const delivery: Delivery = { status: 'failed', error: { ...error, message }, attempts };
      msg.delivery = delivery;
      this.send([null, msg]);
      if (typing && QUIET_TYPING_CODES.has(error.code)) {
        counters.typingRefused++;
        return;
      }
      counters.failed++;
      health.error(message);
      this.error(message, msg);
      const quota = QUOTA_CODES.has(error.code);
      show('failed', {
        fill: quota ? 'yellow' : 'red',
        shape: 'ring',
        text: RED._(quota ? 'wechat-out.status.user-unreachable' : 'wechat-out.status.failed', {
          code: String(error.code),
        }),
      });
    };

    outbox.start(attempt, onResult);

    this.on('input', (msg: NodeMessage, send: SendFn, done: DoneFn) => {
      // 1. A passive reply into the held push response, when there is one for this msg.
      let replied = false;
      try {
        replied = passiveReply(RED, msg, { appId: config.appId });
      } catch {
        replied = false;
      }
      if (replied) {
        msg.delivery = { status: 'delivered', attempts: 1 } satisfies Delivery;
        counters.passive++;
        if (drawn !== 'passive' || Date.now() - drawnAt >= 1000)
          show('passive', { fill: 'green', shape: 'dot', text: RED._('wechat-out.status.passive') });
        send([msg, null]);
        void journalDone(RED, msg);
        done();
        return;
      }

      // 2. The customer-service API, through the outbox.
      const planned = planSend(msg, { kfAccount });
      if (!planned.ok) {
        const message = RED._('wechat-out.errors.bad-message', { reason: planned.reason });
        msg.delivery = {
          status: 'failed',
          error: { code: planned.code, message, retryable: false },
          attempts: 0,
        } satisfies Delivery;
        show('bad-message', { fill: 'red', shape: 'ring', text: RED._('wechat-out.status.bad-message') });
        counters.refused++;
        health.error(message);
        send([null, msg]);
        // Refused for good: the inbound journal must not replay it.
        void journalDone(RED, msg);
        done(new Error(message));
        return;
      }
      const plan = planned.plan;
      const p = msg.payload as { direction?: unknown; messageId?: unknown; type?: unknown } | undefined;
      // An agent reply (outbound, with the id CXone knows it by) is sent once, even if the input is repeated.
      const dedupe =
        !plan.typing && p?.direction === 'outbound' && typeof p.messageId === 'string' && p.messageId
          ? `m:${p.messageId}`
          : undefined;
      const id = `${this.id}:${dedupe ?? RED.util.generateId()}`;
      pending.set(id, msg);
      outbox
        .enqueue({
          id,
          key: plan.openid,
          payload: { plan, msg: plainCopy(msg, { cxone: undefined }) },
          // The journal entry may be the job's record only with an id a replay gives again (ADR 0018).
          journal: dedupe ? journalRefOf(msg) : undefined,
        })
        .then((accepted) => {
          if (!accepted) {
            pending.delete(id);
            this.warn(
              RED._('wechat-out.warn.duplicate', { id: typeof p?.messageId === 'string' ? p.messageId : '' }),
            );
          } else showQueue();
          // Safe in the outbox (or already there): the inbound journal may forget it. Once it has, nothing can
          // enqueue the message again, and the outbox need not remember its id after delivering it.
          void journalDone(RED, msg).then((completed) => {
            if (completed) outbox.release(id);
          });
          done();
        })
        .catch((err: unknown) => {
          pending.delete(id);
          const reason = err instanceof Error ? err.message : String(err);
          done(new Error(RED._('wechat-out.errors.enqueue', { reason })));
        });
    });

    this.on('close', (_removed: boolean, done: () => void) => {
      closed = true;
      if (queueTimer) clearTimeout(queueTimer);
      queueTimer = undefined;
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
  RED.nodes.registerType('wechat-out', WechatOut);
};
