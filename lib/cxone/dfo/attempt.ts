/**
 * The outbox's `Attempt` for cxone-dfo-out: try one job once against CXone and classify the outcome
 * (lib/outbox/types.ts). A job is plain data (JSON with Buffers), so a persistent outbox can replay it after a
 * restart; everything derived from it (uploaded attachment URLs) is cached per job id while it runs.
 */
import type { DeliveryError } from '../../conversation';
import type { Attempt, AttemptOutcome, OutboxJob } from '../../outbox/types';
import { type AttachmentOptions, resolveAttachments } from './attachments';
import type { CreateMessageBody, CreateMessageResult, DfoClient, MessageStatus } from './client';
import { DfoError } from './errors';
import type { DfoHttp } from './http';
import type { PendingAttachment } from './mapping';

export interface MessageJob {
  action: 'message';
  channelId: string;
  body: CreateMessageBody;
  attachments: PendingAttachment[];
}

export interface StatusJob {
  action: 'status';
  channelId: string;
  /** The id we gave CXone for the agent's reply. */
  idOnExternalPlatform: string;
  status: MessageStatus;
  reason?: string;
  updatedAt: string;
}

export interface TypingJob {
  action: 'typing';
  channelId: string;
  threadId: string;
  typing: boolean;
}

export type DfoJob = MessageJob | StatusJob | TypingJob;

export interface DfoAttemptOptions {
  attachments: AttachmentOptions;
  /** From this attempt on, attachments that keep failing are left out instead of holding the message (default 3). */
  degradeAfterAttempts?: number;
  /** A delivery status CXone answers 404 for is tried this many times before it is refused for good (default 4). */
  statusNotFoundAttempts?: number;
  /** …this long apart, ms (default 2000). */
  statusNotFoundDelayMs?: number;
}

export const STATUS_NOT_FOUND_ATTEMPTS = 4;
export const STATUS_NOT_FOUND_DELAY_MS = 2000;

/** What a delivered job reports (`outcome.detail`). */
export interface DfoDelivered {
  action: DfoJob['action'];
  channelId: string;
  message?: CreateMessageResult;
  attachmentNotes?: string[];
}

export interface DfoDeliveryError extends DeliveryError {
  /** The fields CXone rejected (400). */
  fields?: { field?: string; message: string }[];
  /** The catalog key and substitutions of the message, so a node can say it in the user's language. */
  i18n?: { key: string; subs: Record<string, string | number> };
}

/** A DeliveryError from anything thrown, with words safe to show. */
export function toDeliveryError(err: unknown): DfoDeliveryError {
  if (err instanceof DfoError) {
    const e: DfoDeliveryError = {
      code: err.code,
      message: err.message,
      retryable: err.retryable,
      i18n: { key: err.key, subs: err.subs },
    };
    if (err.fields?.length) e.fields = err.fields;
    return e;
  }
  return { code: 'internal', message: 'internal error while calling CXone', retryable: false };
}

export function outcomeOf(err: unknown): AttemptOutcome {
  const error = toDeliveryError(err);
  if (err instanceof DfoError && err.retryable) {
    return { kind: 'retry', error, retryAfterMs: err.retryAfterMs };
  }
  return { kind: 'failed', error };
}

export interface DfoAttempt extends Attempt<DfoJob> {
  /** Drops what was cached for a job (called when it ends). */
  forget(jobId: string): void;
}

export function dfoAttempt(client: DfoClient, http: DfoHttp, opts: DfoAttemptOptions): DfoAttempt {
  const uploads = new Map<string, Map<number, { friendlyName: string; url: string }>>();
  const degradeAfter = opts.degradeAfterAttempts ?? 3;

  const attempt = async (job: OutboxJob<DfoJob>): Promise<AttemptOutcome> => {
    const p = job.payload;
    try {
      switch (p.action) {
        case 'message': {
          let body = p.body;
          let notes: string[] = [];
          if (p.attachments?.length) {
            let cache = uploads.get(job.id);
            if (!cache)
              uploads.set(job.id, (cache = new Map<number, { friendlyName: string; url: string }>()));
            const r = await resolveAttachments(
              client,
              http,
              p.attachments,
              { ...opts.attachments, degrade: job.attempts + 1 >= degradeAfter },
              cache,
            );
            notes = r.notes;
            const text = [p.body.messageContent.payload.text, ...notes].filter(Boolean).join('\n');
            body = {
              ...p.body,
              messageContent: {
                ...p.body.messageContent,
                payload: { ...p.body.messageContent.payload, text },
              },
              attachments: r.attachments,
            };
          }
          const res = await client.createMessage(p.channelId, body);
          const detail: DfoDelivered = { action: 'message', channelId: p.channelId, message: res };
          if (notes.length) detail.attachmentNotes = notes;
          return { kind: 'delivered', messageId: res.messageId ?? res.idOnExternalPlatform, detail };
        }
        case 'status': {
          try {
            await client.updateMessageStatus(
              p.channelId,
              p.idOnExternalPlatform,
              p.status,
              p.reason,
              p.updatedAt,
            );
          } catch (err) {
            // 404 "no such message" can be a race, not a refusal: the box emits the reply before CXone has read
            // the 200 that tells it the reply's idOnExternalPlatform (and after a lost answer, CXone learns it
            // only from its retry). WeChat can be faster than that. So a few tries, seconds apart, first.
            if (
              err instanceof DfoError &&
              err.status === 404 &&
              job.attempts + 1 < (opts.statusNotFoundAttempts ?? STATUS_NOT_FOUND_ATTEMPTS)
            ) {
              return {
                kind: 'retry',
                error: toDeliveryError(err),
                retryAfterMs: opts.statusNotFoundDelayMs ?? STATUS_NOT_FOUND_DELAY_MS,
              };
            }
            throw err;
          }
          return {
            kind: 'delivered',
            messageId: p.idOnExternalPlatform,
            detail: { action: 'status', channelId: p.channelId } satisfies DfoDelivered,
          };
        }
        case 'typing': {
          await client.senderAction(p.channelId, p.threadId, p.typing ? 'isTypingOn' : 'isTypingOff');
          return {
            kind: 'delivered',
            detail: { action: 'typing', channelId: p.channelId } satisfies DfoDelivered,
          };
        }
        default:
          return {
            kind: 'failed',
            error: { code: 'invalid', message: 'unknown job action', retryable: false },
          };
      }
    } catch (err) {
      return outcomeOf(err);
    }
  };
  return Object.assign(attempt, { forget: (id: string) => void uploads.delete(id) });
}
