/**
 * The integration box as a route table for the route registry (lib/http/registry.ts), free of Node-RED: the
 * `cxone-dfo-in` node gives it the box credentials, a store and an `emit`, and turns its events into status.
 *
 * - `POST /1.0/token`: client credentials → our JWT (tokens.ts); failures throttled per address and per client id.
 * - every other route: `Authorization: Bearer <our JWT>` or 401 (CXone asks for a token only after a 401).
 * - replies (legacy and DFO 3.0), typing, recipient validation: replies.ts.
 *
 * Agent replies are answered at once with the id we give them; whether WeChat took the message is reported
 * later through the DFO status API (docs/adr/0003-delivery-failures-visible-to-agents.md).
 */
import { createHash } from 'node:crypto';
import { HttpError, mediaType } from '../../http/body';
import type { RouteContext, RouteDef } from '../../http/registry';
import { sendEmpty, sendJson } from '../../http/respond';
import type { Store } from '../../store/types';
import { parseTokenRequest, requestAuthenticates, TokenRequestError } from './client-auth';
import { readJsonObject, type JsonObject } from './json';
import {
  readReply,
  replyEmission,
  replyIdFor,
  replyResponse,
  senderActionOf,
  typingEmission,
  typingOf,
  validateRecipients,
  type BoxEmission,
  type ReplyFormat,
} from './replies';
import { FailureThrottle } from './throttle';
import {
  bearerToken,
  DEFAULT_TOKEN_TTL_S,
  issueToken,
  verifyToken,
  type BoxSecrets,
  type TokenProblem,
} from './tokens';

/** What happened, for the node's status and logs. Never carries a secret or a token. */
export type BoxEvent =
  | { kind: 'token-issued'; via: 'basic' | 'body' | 'none' }
  | { kind: 'token-refused'; status: number; error: string; reason: string }
  | { kind: 'token-throttled'; retryAfterS: number; by: 'address' | 'client' }
  | { kind: 'unauthorized'; route: string; problem: TokenProblem }
  | { kind: 'bad-request'; route: string; reason: string }
  | { kind: 'reply'; format: ReplyFormat; threadId: string; id: string }
  | { kind: 'duplicate'; format: ReplyFormat; threadId: string; id: string }
  | { kind: 'typing'; threadId: string; typing: boolean }
  | { kind: 'sender-action-ignored'; action: string }
  | { kind: 'validation'; ok: boolean }
  | { kind: 'store-failed'; reason: string };

export interface ThrottleLimits {
  limit: number;
  windowMs: number;
}

export interface IntegrationBoxOptions {
  /** The box credentials, read on every call (a redeploy with new credentials builds a new box anyway). */
  secrets: () => BoxSecrets;
  /** For dedupe of CXone retries; shared by every instance that shares the backend. */
  store: Store;
  /** Store key prefix of this integration, e.g. `wxcx:cxone:<id>:`. */
  keyPrefix: string;
  /**
   * Hands a reply or a typing message to the flow; `journalRef` for a reply that was journaled (it goes on the
   * msg as `msg._wxcx.journal`).
   */
  emit: (m: BoxEmission, journalRef?: string) => void;
  /**
   * The inbound journal (lib/journal `append`): makes an agent reply durable before CXone is answered 200, and is
   * its dedupe, in one atomic step. Resolves with the reference for the msg, or null when `id` was journaled
   * before (CXone's retry: answered with the same id, not emitted). A rejection answers 503 (CXone retries).
   * Without it, replies are deduped with `store` only and not journaled.
   */
  journal?: (id: string, m: BoxEmission) => Promise<string | null>;
  events?: (e: BoxEvent) => void;
  /**
   * Told the body of every call but the token call, as CXone sent it (bounded), for a debug log: the shapes are
   * inferred (docs/cxone-box.md). Never given headers, so never the Authorization header or a token.
   */
  logBody?: (route: string, path: string, body: string) => void;
  /** Lifetime of issued tokens, seconds (default 3600). */
  tokenTtlS?: number;
  /** Token failures allowed per remote address (default 10 per minute). */
  perAddress?: ThrottleLimits;
  /** Token failures allowed per client id (default 30 per minute). */
  perClient?: ThrottleLimits;
  /** How long a CXone message id is remembered for dedupe (default 24 h). */
  dedupeTtlMs?: number;
  /**
   * With a journal (which dedupes for `dedupeTtlMs` with compact marks): how long the time a reply was first
   * answered with is kept, so that a retry gets the same answer (default 10 min, at most `dedupeTtlMs`). It is a store
   * entry per reply: kept 24 h, it grew with the replies of a whole day. A retry after it gets the same id and a new
   * time.
   */
  answerTtlMs?: number;
  /** Largest reply body, bytes (default 256 KiB). */
  replyBodyLimit?: number;
  /** Whether a recipient id can be a WeChat openid (default: the syntax check in replies.ts). */
  isValidRecipient?: (id: string) => boolean;
  now?: () => number;
}

export const TOKEN_BODY_LIMIT = 16 * 1024;
export const DEFAULT_REPLY_BODY_LIMIT = 256 * 1024;
const DEBUG_BODY_CHARS = 4096;
const REALM = 'integration-box';

function oauthError(
  ctx: RouteContext,
  status: number,
  error: string,
  description: string,
  extra: Record<string, string> = {},
): void {
  sendJson(ctx.res, status, { error, error_description: description }, { Pragma: 'no-cache', ...extra });
}

function shortHash(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex').slice(0, 32);
}

const PROBLEM_TEXT: Record<TokenProblem, string> = {
  missing: 'a bearer token is required',
  malformed: 'the bearer token is malformed',
  expired: 'the bearer token has expired',
  invalid: 'the bearer token is not valid',
  'not-configured': 'the box has no client credentials configured',
};

/**
 * The box's routes (without the admin pages, which the node adds). Throttle state lives in the returned closure:
 * one box per node instance, gone when the node is closed.
 */
export function integrationBoxRoutes(opts: IntegrationBoxOptions): RouteDef[] {
  const now = opts.now ?? Date.now;
  const events = (e: BoxEvent): void => {
    try {
      opts.events?.(e);
    } catch {
      /* a status hook that throws must not fail the request */
    }
  };
  const perAddress = new FailureThrottle({ ...(opts.perAddress ?? { limit: 10, windowMs: 60_000 }), now });
  const perClient = new FailureThrottle({ ...(opts.perClient ?? { limit: 30, windowMs: 60_000 }), now });
  const ttlS = opts.tokenTtlS ?? DEFAULT_TOKEN_TTL_S;
  const dedupeTtl = opts.dedupeTtlMs ?? 24 * 3600_000;
  const answerTtl = Math.min(dedupeTtl, opts.answerTtlMs ?? 600_000);
  const replyLimit = opts.replyBodyLimit ?? DEFAULT_REPLY_BODY_LIMIT;

  const throttled = (ctx: RouteContext, ms: number, by: 'address' | 'client'): void => {
    const s = Math.ceil(ms / 1000);
    events({ kind: 'token-throttled', retryAfterS: s, by });
    oauthError(ctx, 429, 'temporarily_unavailable', `too many failed attempts; try again in ${s} s`, {
      'Retry-After': String(s),
    });
  };

  const token = (ctx: RouteContext): void => {
    const addrKey = 'a:' + ctx.remoteAddress;
    const wait = perAddress.retryAfterMs(addrKey);
    if (wait > 0) return throttled(ctx, wait, 'address');
    let req;
    try {
      req = parseTokenRequest(
        { rawBody: ctx.rawBody, parsedBody: ctx.parsedBody },
        ctx.headers,
        mediaType(ctx.req),
      );
    } catch (err) {
      if (!(err instanceof TokenRequestError)) throw err;
      if (err.status === 401) perAddress.fail(addrKey);
      events({ kind: 'token-refused', status: err.status, error: err.error, reason: err.description });
      return oauthError(ctx, err.status, err.error, err.description);
    }
    const clientKey = req.clientId !== undefined ? 'c:' + shortHash(req.clientId) : undefined;
    if (clientKey) {
      const w = perClient.retryAfterMs(clientKey);
      if (w > 0) return throttled(ctx, w, 'client');
    }
    const secrets = opts.secrets();
    const basicChallenge: Record<string, string> =
      req.via === 'basic' ? { 'WWW-Authenticate': `Basic realm="${REALM}"` } : {};
    if (!secrets.clientId || !secrets.clientSecret) {
      events({ kind: 'token-refused', status: 401, error: 'invalid_client', reason: 'not-configured' });
      return oauthError(ctx, 401, 'invalid_client', 'client authentication failed', basicChallenge);
    }
    if (!requestAuthenticates(secrets, req)) {
      perAddress.fail(addrKey);
      if (clientKey) perClient.fail(clientKey);
      const reason = req.via === 'none' ? 'no client credentials' : 'wrong client id or secret';
      events({ kind: 'token-refused', status: 401, error: 'invalid_client', reason });
      return oauthError(ctx, 401, 'invalid_client', 'client authentication failed', basicChallenge);
    }
    // A request without grant_type is read as client credentials: the client authenticated, and CXone's exact
    // request is not documented (docs/cxone-box.md). Any other grant is refused.
    if (req.grantType !== undefined && req.grantType !== 'client_credentials') {
      events({ kind: 'token-refused', status: 400, error: 'unsupported_grant_type', reason: 'grant type' });
      return oauthError(
        ctx,
        400,
        'unsupported_grant_type',
        'only grant_type=client_credentials is supported',
      );
    }
    perAddress.clear(addrKey);
    const issued = issueToken(secrets, ttlS, Math.floor(now() / 1000));
    events({ kind: 'token-issued', via: req.via });
    sendJson(ctx.res, 200, issued, { Pragma: 'no-cache' });
  };

  /** Runs `handler` only for a request that carries a valid token of ours. */
  const authorized =
    (route: string, handler: (ctx: RouteContext) => void | Promise<void>) =>
    (ctx: RouteContext): void | Promise<void> => {
      const b = bearerToken(ctx.headers.authorization);
      let problem: TokenProblem | undefined;
      if ('problem' in b) problem = b.problem;
      else {
        const v = verifyToken(b.token, opts.secrets(), Math.floor(now() / 1000));
        if (!v.ok) problem = v.problem;
      }
      if (problem) {
        events({ kind: 'unauthorized', route, problem });
        // RFC 6750 §3.1: no error code when the request had no token at all.
        const challenge =
          problem === 'missing'
            ? `Bearer realm="${REALM}"`
            : `Bearer realm="${REALM}", error="invalid_token", error_description="${PROBLEM_TEXT[problem]}"`;
        sendJson(
          ctx.res,
          401,
          {
            error: problem === 'missing' ? 'unauthorized' : 'invalid_token',
            error_description: PROBLEM_TEXT[problem],
          },
          { 'WWW-Authenticate': challenge },
        );
        return;
      }
      return handler(ctx);
    };

  const jsonBody = (ctx: RouteContext, route: string): JsonObject => {
    if (opts.logBody) {
      // Logged before parsing, so a body we cannot read is in the log too.
      let raw: string;
      try {
        raw = ctx.rawBody ? ctx.rawBody.toString('utf8') : JSON.stringify(ctx.parsedBody ?? null);
      } catch {
        raw = '(unprintable)';
      }
      const cut = raw.length > DEBUG_BODY_CHARS ? raw.slice(0, DEBUG_BODY_CHARS) + '…' : raw;
      opts.logBody(route, ctx.subPath, cut);
    }
    return readJsonObject({ rawBody: ctx.rawBody, parsedBody: ctx.parsedBody });
  };

  const reply =
    (format: ReplyFormat) =>
    async (ctx: RouteContext): Promise<void> => {
      const route = format === 'legacy' ? 'legacy-reply' : 'dfo3-reply';
      let r;
      try {
        r = readReply(format, ctx.params, jsonBody(ctx, route));
      } catch (err) {
        if (err instanceof HttpError) {
          events({ kind: 'bad-request', route, reason: err.message });
          return oauthError(ctx, err.status, 'invalid_request', err.message);
        }
        throw err;
      }
      const id = replyIdFor(r.channelId, r.thread.threadId, r.cxoneMessageId);
      let createdAt = now();
      const key = r.cxoneMessageId
        ? `${opts.keyPrefix}box:reply:${shortHash(`${r.channelId ?? ''}\n${r.cxoneMessageId}`)}`
        : undefined;
      /** The id and time a first delivery of this reply was answered with, when this is a retry. */
      const earlier = async (): Promise<void> => {
        if (!key) return;
        const seen = await opts.store.get(key);
        if (!seen) return;
        // The time alone (the id is derived from CXone's), or `{"id","createdAt"}` as earlier builds wrote it.
        const t = /^\d+$/.test(seen)
          ? Number(seen)
          : (JSON.parse(seen) as { createdAt?: unknown } | null)?.createdAt;
        if (typeof t === 'number' && Number.isFinite(t)) createdAt = t;
      };
      const duplicate = (): void => {
        events({ kind: 'duplicate', format, threadId: r.thread.threadId, id });
        sendJson(ctx.res, 200, replyResponse(r, id, createdAt));
      };

      if (opts.journal) {
        // Journal first (durable and deduped in one step), then the time for retries, then answer: a crash
        // anywhere before the answer makes CXone retry; a crash after it is replayed from the journal.
        let ref: string | null;
        try {
          ref = await opts.journal(id, replyEmission(r, id, createdAt));
        } catch (err) {
          events({
            kind: 'store-failed',
            reason: err instanceof Error ? err.message.slice(0, 200) : 'store error',
          });
          sendJson(
            ctx.res,
            503,
            { error: 'temporarily_unavailable', error_description: 'the reply could not be stored; retry' },
            { 'Retry-After': '1' },
          );
          return;
        }
        if (ref === null) {
          await earlier().catch(() => undefined);
          return duplicate();
        }
        if (key) {
          // Not waited for: the journal made the reply durable and dedupes it; this only lets a retry get the same
          // time, and every store applies it before its next read. Lost in a crash, a retry gets a new time.
          void opts.store.set(key, String(createdAt), answerTtl).catch(() => undefined);
        }
        opts.emit(replyEmission(r, id, createdAt), ref);
        events({ kind: 'reply', format, threadId: r.thread.threadId, id });
        sendJson(ctx.res, 200, replyResponse(r, id, createdAt));
        return;
      }

      if (key) {
        let first = true;
        try {
          first = await opts.store.setIfAbsent(key, String(createdAt), dedupeTtl);
          if (!first) await earlier();
        } catch (err) {
          // Without the store we cannot tell a retry from a first delivery: deliver (at least once) rather than
          // drop the agent's reply, and say so.
          first = true;
          events({
            kind: 'store-failed',
            reason: err instanceof Error ? err.message.slice(0, 200) : 'store error',
          });
        }
        if (!first) return duplicate();
      }
      opts.emit(replyEmission(r, id, createdAt));
      events({ kind: 'reply', format, threadId: r.thread.threadId, id });
      sendJson(ctx.res, 200, replyResponse(r, id, createdAt));
    };

  const senderAction = (ctx: RouteContext): void => {
    let body: JsonObject;
    try {
      body = jsonBody(ctx, 'sender-action');
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      events({ kind: 'bad-request', route: 'sender-action', reason: err.message });
      return oauthError(ctx, err.status, 'invalid_request', err.message);
    }
    const action = senderActionOf(body);
    const typing = typingOf(action);
    if (typing === undefined) {
      // An action we do not know (or none): nothing to do on WeChat. 204 so CXone does not report an error.
      events({ kind: 'sender-action-ignored', action: action ?? '' });
      return sendEmpty(ctx.res, 204);
    }
    opts.emit(typingEmission(ctx.params, body, typing, action as string, now()));
    events({ kind: 'typing', threadId: ctx.params.threadId, typing });
    sendEmpty(ctx.res, 204);
  };

  const validation = (ctx: RouteContext): void => {
    let body: JsonObject;
    try {
      body = jsonBody(ctx, 'recipients-validation');
    } catch (err) {
      const why = err instanceof HttpError ? err.message : 'the request could not be read';
      events({ kind: 'bad-request', route: 'recipients-validation', reason: why });
      events({ kind: 'validation', ok: false });
      sendJson(ctx.res, 400, {
        displayErrorMessage: 'The recipient could not be checked: the request was not readable.',
        errorCode: 'outboundValidationFailed',
        errors: [{ path: [], message: why }],
      });
      return;
    }
    const failure = validateRecipients(body, opts.isValidRecipient);
    events({ kind: 'validation', ok: !failure });
    if (failure) sendJson(ctx.res, 400, failure);
    else sendJson(ctx.res, 200, { status: 'valid' });
  };

  return [
    { method: 'POST', pattern: '/1.0/token', bodyLimit: TOKEN_BODY_LIMIT, handler: token },
    {
      method: 'POST',
      pattern: '/1.0/posts/:postId/messages',
      bodyLimit: replyLimit,
      handler: authorized('legacy-reply', reply('legacy')),
    },
    {
      method: 'POST',
      pattern: '/2.0/channel/:channelId/outbound',
      bodyLimit: replyLimit,
      handler: authorized('dfo3-reply', reply('dfo3')),
    },
    {
      method: 'POST',
      pattern: '/1.0/channel/:channelId/thread/:threadId/sender-action',
      bodyLimit: 64 * 1024,
      handler: authorized('sender-action', senderAction),
    },
    {
      method: 'POST',
      pattern: '/1.0/channel/:channelId/recipients/validation',
      bodyLimit: 64 * 1024,
      handler: authorized('recipients-validation', validation),
    },
  ];
}
