/**
 * The outbox `Attempt` for WeChat: tries a send plan once and says what happened.
 *
 * - delivered: every step accepted (errcode 0).
 * - retry: WeChat busy (-1, 45011, 45009), 5xx/429, no answer, a token that kept failing, a file server down.
 * - failed: refused for good (45015 outside 48 h, 45047 quota, 43004, 48002, 40003, 45002, bad media …), with
 *   words an agent understands and `retryable: false`.
 *
 * A plan with several steps (text, then images) remembers in the store how many steps went out, so a retry after
 * a failure in step 3 does not send steps 1 and 2 again.
 */
import type { DeliveryError } from '../../conversation';
import type { Attempt, AttemptOutcome, OutboxJob } from '../../outbox/types';
import type { WechatApi } from './client';
import { kindOf, type Lang } from './errors';
import { WechatApiError } from './http';
import { mediaTypeFor, type MediaType } from './media';
import type { CustomBody, SendStep, WechatSendPlan } from './messages';

export interface WechatAttemptOptions {
  /** Language of `error.message` (default en). */
  lang?: Lang;
  /** Send a file no WeChat message can carry (PDF, …) as a text with its name and link (default true). */
  linkFallback?: boolean;
  /** A typing indicator older than this is skipped, ms (default 15 s, WeChat's typing duration). */
  typingMaxAgeMs?: number;
  /** How long the step progress of a job is remembered, ms (default 48 h). */
  progressTtlMs?: number;
  now?: () => number;
}

export interface WechatDeliveredDetail {
  /** Steps the plan had, and calls made for it (a link fallback is one call). */
  steps: number;
  /** Set when a typing indicator was not sent because it was stale or already showing. */
  skipped?: 'stale' | 'already-typing';
}

const WORDS = {
  en: {
    refused: (r: string, c: string | number) => `WeChat refused the message: ${r} (${c})`,
    partial: (r: string, c: string | number, d: number, t: number) =>
      `WeChat refused part of the message (${d} of ${t} parts were sent): ${r} (${c})`,
    transient: (r: string, c: string | number) => `Not delivered yet: ${r} (${c})`,
    unexpected: 'the message could not be sent because of an unexpected error',
    file: 'file',
  },
  zh: {
    refused: (r: string, c: string | number) => `微信拒绝了这条消息：${r}（${c}）`,
    partial: (r: string, c: string | number, d: number, t: number) =>
      `微信拒绝了部分消息（共 ${t} 部分，已发送 ${d} 部分）：${r}（${c}）`,
    transient: (r: string, c: string | number) => `暂未送达：${r}（${c}）`,
    unexpected: '发送时发生意外错误',
    file: '文件',
  },
} as const;

/** Whether an error is worth another attempt later (by the outbox). */
export function isTransient(err: WechatApiError): boolean {
  switch (err.kind) {
    case 'network':
    case 'timeout':
    case 'aborted':
      return true;
    case 'http':
    case 'bad-response':
      return err.retryable;
    case 'local':
      return err.retryable;
    case 'errcode': {
      const k = kindOf(err.errcode ?? 0);
      return k === 'busy' || k === 'token';
    }
  }
}

/** The outcome for an error in step `done` of `total`. */
export function classifyError(err: unknown, done: number, total: number, lang: Lang = 'en'): AttemptOutcome {
  const w = WORDS[lang];
  if (!(err instanceof WechatApiError)) {
    const error: DeliveryError = { code: 'error', message: w.unexpected, retryable: false };
    return { kind: 'failed', error };
  }
  const reason = err.reasonIn(lang);
  if (isTransient(err)) {
    const error: DeliveryError = { code: err.code, message: w.transient(reason, err.code), retryable: true };
    return err.retryAfterMs !== undefined
      ? { kind: 'retry', error, retryAfterMs: err.retryAfterMs }
      : { kind: 'retry', error };
  }
  const message = done > 0 ? w.partial(reason, err.code, done, total) : w.refused(reason, err.code);
  return {
    kind: 'failed',
    error: { code: err.code, message, retryable: false },
    detail: { sent: done, steps: total },
  };
}

/** Creates the Attempt for jobs whose payload carries a send plan. */
export function createWechatAttempt<P extends { plan: WechatSendPlan }>(
  api: WechatApi,
  opts: WechatAttemptOptions = {},
): Attempt<P> {
  const lang = opts.lang ?? 'en';
  const linkFallback = opts.linkFallback ?? true;
  const typingMaxAgeMs = opts.typingMaxAgeMs ?? 15_000;
  const progressTtlMs = opts.progressTtlMs ?? 48 * 60 * 60_000;
  const now = opts.now ?? Date.now;
  const store = api.store;

  return async (job: OutboxJob<P>): Promise<AttemptOutcome> => {
    const plan = job.payload?.plan;
    if (!plan || !Array.isArray(plan.steps) || plan.steps.length === 0)
      return {
        kind: 'failed',
        error: {
          code: 'bad-message',
          message: WORDS[lang].refused('nothing to send', 'bad-message'),
          retryable: false,
        },
      };
    const total = plan.steps.length;

    if (plan.typing) return typingOutcome(api, plan, job, typingMaxAgeMs, now, lang);

    const progressKey = `wxcx:wechat:${api.appId}:sent:${job.id}`;
    let done = Number((await store.get(progressKey)) ?? 0) || 0;
    let messageId: string | undefined;
    try {
      for (; done < total; done++) {
        const step = plan.steps[done];
        const id = await runStep(api, plan.openid, step, linkFallback, lang);
        if (id) messageId = id;
        if (total > 1) await store.set(progressKey, String(done + 1), progressTtlMs);
      }
    } catch (err) {
      return classifyError(err, done, total, lang);
    }
    if (total > 1) await store.delete(progressKey);
    const detail: WechatDeliveredDetail = { steps: total };
    return messageId ? { kind: 'delivered', messageId, detail } : { kind: 'delivered', detail };
  };
}

async function typingOutcome(
  api: WechatApi,
  plan: WechatSendPlan,
  job: OutboxJob<unknown>,
  maxAge: number,
  now: () => number,
  lang: Lang,
): Promise<AttemptOutcome> {
  const step = plan.steps[0];
  if (step.op !== 'typing') return classifyError(new Error('not a typing plan'), 0, 1, lang);
  if (now() - job.enqueuedAt > maxAge)
    return { kind: 'delivered', detail: { steps: 1, skipped: 'stale' } satisfies WechatDeliveredDetail };
  try {
    await api.typing(plan.openid, step.command === 'Typing');
    return { kind: 'delivered', detail: { steps: 1 } satisfies WechatDeliveredDetail };
  } catch (err) {
    if (err instanceof WechatApiError && err.errcode === 45081)
      return {
        kind: 'delivered',
        detail: { steps: 1, skipped: 'already-typing' } satisfies WechatDeliveredDetail,
      };
    // A typing indicator is worth nothing later: never retried.
    const o = classifyError(err, 0, 1, lang);
    return o.kind === 'retry' ? { kind: 'failed', error: o.error } : o;
  }
}

/** One step; resolves to a message id when WeChat gave one (template msgid). */
async function runStep(
  api: WechatApi,
  openid: string,
  step: SendStep,
  linkFallback: boolean,
  lang: Lang,
): Promise<string | undefined> {
  switch (step.op) {
    case 'custom':
      await api.sendCustom(step.body);
      return undefined;
    case 'template':
      return api.sendTemplate(step.body);
    case 'typing':
      await api.typing(openid, step.command === 'Typing');
      return undefined;
    case 'media':
      await sendMedia(api, openid, step, linkFallback, lang);
      return undefined;
  }
}

function mediaBody(
  openid: string,
  type: Exclude<MediaType, 'thumb'>,
  mediaId: string,
  name?: string,
  kf?: string,
): CustomBody {
  const inner: Record<string, string> = { media_id: mediaId };
  if (type === 'video' && name) inner.title = name;
  const b: CustomBody = { touser: openid, msgtype: type, [type]: inner };
  if (kf) b.customservice = { kf_account: kf };
  return b;
}

async function sendMedia(
  api: WechatApi,
  openid: string,
  step: Extract<SendStep, { op: 'media' }>,
  linkFallback: boolean,
  lang: Lang,
): Promise<void> {
  const a = step.attachment;
  // A media_id WeChat already has (e.g. from wechat-in) is sent as is.
  if (a.mediaId && !a.data && !a.url) {
    const t = mediaTypeFor(a.mimeType);
    if (!t)
      throw new WechatApiError({
        kind: 'local',
        api: '/cgi-bin/message/custom/send',
        code: 'unsupported-type',
        reason:
          'an attachment given by mediaId needs its mimeType (image/…, audio/amr, audio/mpeg or video/mp4)',
        retryable: false,
      });
    await api.sendCustom(mediaBody(openid, t, a.mediaId, a.name, step.kfAccount));
    return;
  }
  const src = { data: a.data, url: a.url, filename: a.name, contentType: a.mimeType };
  let up;
  try {
    up = await api.media.upload(src);
  } catch (err) {
    if (err instanceof WechatApiError && err.code === 'unsupported-type' && a.url && linkFallback) {
      const label = a.name || WORDS[lang].file;
      const body: CustomBody = { touser: openid, msgtype: 'text', text: { content: `${label}: ${a.url}` } };
      if (step.kfAccount) body.customservice = { kf_account: step.kfAccount };
      await api.sendCustom(body);
      return;
    }
    throw err;
  }
  const t = up.type === 'thumb' ? 'image' : up.type;
  try {
    await api.sendCustom(mediaBody(openid, t, up.mediaId, a.name, step.kfAccount));
  } catch (err) {
    // A cached media_id WeChat no longer knows (deleted early): forget it, upload again, send once more.
    if (!(err instanceof WechatApiError) || err.errcode !== 40007 || !up.cached) throw err;
    await api.media.forget(up.cacheKeys);
    const again = await api.media.upload(src, up.type);
    await api.sendCustom(mediaBody(openid, t, again.mediaId, a.name, step.kfAccount));
  }
}
