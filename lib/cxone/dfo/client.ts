/**
 * The Digital Engagement (DFO 3.0) calls the pack makes (docs/protocol/cxone.md §b–f), each classified the same
 * way (§h): 2xx success; 400 refused for good, naming the fields CXone rejected; 401 a fresh token and one more
 * try; 403/404 refused for good; 409 on create-message a duplicate, i.e. already delivered; 429 and 5xx worth
 * trying again, with Retry-After; network errors and timeouts worth trying again.
 *
 * Bodies CXone documents only loosely are read defensively; unexpected ones are logged raw at debug level
 * (never the one-time-token answer, which carries an access token).
 */
import type { DfoAuth, DfoLogger } from './auth';
import { DfoError, clip, describeFields, parseErrorBody } from './errors';
import { type DfoHttp, parseBody, parseRetryAfter, request } from './http';

export interface CreateMessageBody {
  idOnExternalPlatform: string;
  direction: 'inbound' | 'outbound';
  createdAtWithMilliseconds: string;
  thread: { idOnExternalPlatform: string; threadName?: string };
  messageContent: { type: 'TEXT'; payload: { text: string }; fallbackText?: string };
  authorEndUserIdentity: {
    idOnExternalPlatform: string;
    firstName?: string;
    lastName?: string;
    nickname?: string;
    image?: string;
  };
  attachments?: { friendlyName: string; url: string }[];
  [k: string]: unknown;
}

export interface CreateMessageResult {
  /** DFO's own id of the message, when it said. */
  messageId?: string;
  idOnExternalPlatform: string;
  contactId?: string;
  threadId?: string;
  /** CXone already had a message with this idOnExternalPlatform. */
  duplicate: boolean;
  status: number;
}

export interface UploadResult {
  id?: string;
  url: string;
  expireAt?: string;
}

export type MessageStatus = 'delivered' | 'seen' | 'failed';

export interface Channel {
  id: string;
  idOnExternalPlatform?: string;
  channelIntegrationId?: string;
  realExternalPlatformId?: string;
  name?: string;
  externalPlatformIcon?: string;
  isPrivate?: boolean;
  [k: string]: unknown;
}

export interface NewChannel {
  id: string;
  idOnExternalPlatform: string;
  channelIntegrationId: string;
  realExternalPlatformId: string;
  name: string;
  isPrivate: boolean;
  hasTreeStructure: boolean;
  externalPlatformIcon: string;
  [k: string]: unknown;
}

export interface OneTimeTokenResult {
  accessToken: string;
  brand: { id?: number; friendlyName?: string; tenantId?: string; [k: string]: unknown };
  user: { id?: number; firstName?: string; surname?: string; emailAddress?: string; [k: string]: unknown };
}

export interface CallOptions {
  /** What the call does, for messages: 'message', 'delivery status', … */
  what: string;
  /** The channel concerned, for 404 messages. */
  channelId?: string;
  /** Use this bearer (an admin's one-time-token session) instead of ours; no refresh on 401. */
  bearer?: string;
  /** No Authorization header at all. */
  anonymous?: boolean;
  /** Use this DFO base instead of the integration's. */
  base?: string;
  /** Do not log the answer's body (it carries a secret). */
  secretBody?: boolean;
  timeoutMs?: number;
}

interface Answer {
  status: number;
  body: unknown;
  headers: Record<string, unknown>;
}

const enc = encodeURIComponent;

export class DfoClient {
  constructor(
    readonly auth: DfoAuth,
    private readonly http: DfoHttp,
    private readonly log: DfoLogger = { debug: () => undefined, warn: () => undefined },
  ) {}

  apiBase(): Promise<string> {
    return this.auth.apiBase();
  }

  /** One call with our token; a 401 gets a fresh token and one more try. Returns any answer but a 401. */
  private async send(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    body: unknown,
    opts: CallOptions,
  ): Promise<Answer> {
    const base = opts.base ?? (await this.auth.apiBase());
    const url = base + path;
    const once = async (bearer?: string): Promise<Answer> => {
      const headers: Record<string, string> = {};
      if (bearer) headers.Authorization = `Bearer ${bearer}`;
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const res = await request(this.http, {
        method,
        url,
        data: body === undefined ? undefined : JSON.stringify(body),
        headers,
        timeout: opts.timeoutMs,
      });
      return {
        status: res.status,
        body: parseBody(res.data),
        headers: res.headers,
      };
    };
    if (opts.anonymous) return once();
    if (opts.bearer) return once(opts.bearer);
    const t1 = await this.auth.token();
    const a1 = await once(t1.accessToken);
    if (a1.status !== 401) return a1;
    this.log.debug(
      `CXone answered 401 to ${method} ${path.split('?')[0]}; fetching a new token and trying once more`,
    );
    await this.auth.invalidate(t1.accessToken);
    const t2 = await this.auth.token();
    return once(t2.accessToken);
  }

  /** Throws the classified error of a non-2xx answer. */
  private fail(a: Answer, method: string, path: string, opts: CallOptions): never {
    const fields = parseErrorBody(a.body);
    if (!opts.secretBody) {
      const raw = typeof a.body === 'string' ? a.body : JSON.stringify(a.body ?? '');
      this.log.debug(
        `CXone answered ${a.status} to ${method} ${path.split('?')[0]}: ${clip(raw ?? '', 2000)}`,
      );
    }
    const what = opts.what;
    const s = a.status;
    if (s === 400 || s === 422) {
      throw new DfoError({
        key: 'rejected',
        subs: { what, fields: describeFields(fields) },
        status: s,
        retryable: false,
        fields,
      });
    }
    if (s === 401 && (opts.bearer || opts.anonymous)) {
      // Not our token: the admin's session token or a one-time token, which no refresh can fix.
      throw new DfoError({
        key: 'refused',
        subs: { what, status: s, fields: describeFields(fields) },
        status: s,
        retryable: false,
        fields,
      });
    }
    if (s === 401) throw new DfoError({ key: 'unauthorized', subs: { what }, status: s, retryable: false });
    if (s === 403)
      throw new DfoError({ key: 'forbidden', subs: { what }, status: s, retryable: false, fields });
    if (s === 404) {
      throw new DfoError({
        key: 'not-found',
        subs: { what, channel: opts.channelId ?? '' },
        status: s,
        retryable: false,
        fields,
      });
    }
    if (s === 409)
      throw new DfoError({ key: 'conflict', subs: { what }, status: s, retryable: false, fields });
    const retryAfterMs = parseRetryAfter(a.headers['retry-after']);
    if (s === 429)
      throw new DfoError({ key: 'throttled', subs: { what }, status: s, retryable: true, retryAfterMs });
    if (s >= 500 || s === 408) {
      throw new DfoError({
        key: 'server',
        subs: { what, status: s },
        status: s,
        retryable: true,
        retryAfterMs,
      });
    }
    throw new DfoError({ key: 'unexpected', subs: { what, status: s }, status: s, retryable: false, fields });
  }

  private async call(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    body: unknown,
    opts: CallOptions,
  ): Promise<Answer> {
    const a = await this.send(method, path, body, opts);
    if (a.status >= 200 && a.status < 300) return a;
    this.fail(a, method, path, opts);
  }

  /** `POST /channels/{channelId}/messages`: a customer message. A duplicate id counts as delivered. */
  async createMessage(channelId: string, msg: CreateMessageBody): Promise<CreateMessageResult> {
    const path = `/channels/${enc(channelId)}/messages`;
    const opts: CallOptions = { what: 'message', channelId };
    const a = await this.send('POST', path, msg, opts);
    if (a.status === 409 || (a.status === 400 && isDuplicateComplaint(a.body))) {
      this.log.debug(
        `CXone answered ${a.status} for a message it already has (idOnExternalPlatform); counted as delivered`,
      );
      return { idOnExternalPlatform: msg.idOnExternalPlatform, duplicate: true, status: a.status };
    }
    if (a.status < 200 || a.status >= 300) this.fail(a, 'POST', path, opts);
    const o = (a.body && typeof a.body === 'object' ? a.body : {}) as {
      message?: Record<string, unknown>;
      consumerContact?: Record<string, unknown>;
    };
    if (!o.message && !o.consumerContact) {
      this.log.debug(
        `CXone create-message answered ${a.status} with an unexpected body: ${clip(
          typeof a.body === 'string' ? a.body : JSON.stringify(a.body ?? ''),
          2000,
        )}`,
      );
    }
    const str = (v: unknown): string | undefined =>
      typeof v === 'string' && v ? v : typeof v === 'number' ? String(v) : undefined;
    return {
      messageId: str(o.message?.id),
      idOnExternalPlatform: str(o.message?.idOnExternalPlatform) ?? msg.idOnExternalPlatform,
      contactId: str(o.consumerContact?.contactId) ?? str(o.consumerContact?.id),
      threadId: str(o.message?.threadId) ?? str(o.consumerContact?.threadId),
      duplicate: false,
      status: a.status,
    };
  }

  /** `POST /attachments/temporary` with the bytes as base64; returns the URL to put in a message. */
  async uploadAttachment(data: Buffer, mimeType: string): Promise<UploadResult> {
    const a = await this.call(
      'POST',
      '/attachments/temporary',
      { content: data.toString('base64'), mimeType },
      { what: 'attachment upload', timeoutMs: Math.max(this.http.timeoutMs, 60_000) },
    );
    const o = (a.body && typeof a.body === 'object' ? a.body : {}) as Record<string, unknown>;
    if (typeof o.url !== 'string' || !/^https?:\/\//i.test(o.url)) {
      this.log.debug(
        `CXone attachment upload answered ${a.status} without a url; keys: ${Object.keys(o).join(',')}`,
      );
      throw new DfoError({
        key: 'bad-response',
        subs: { what: 'attachment upload', reason: 'no url in the answer' },
        status: a.status,
        retryable: true,
      });
    }
    return {
      id: typeof o.id === 'string' ? o.id : undefined,
      url: o.url,
      expireAt: typeof o.expireAt === 'string' ? o.expireAt : undefined,
    };
  }

  /** `PUT /channels/{channelId}/messages/{idOnExternalPlatform}/status`. */
  async updateMessageStatus(
    channelId: string,
    idOnExternalPlatform: string,
    status: MessageStatus,
    reason?: string,
    updatedAt = new Date().toISOString(),
  ): Promise<void> {
    const body: Record<string, string> = { status, updatedAt };
    if (reason) body.reason = clip(reason, 500);
    await this.call('PUT', `/channels/${enc(channelId)}/messages/${enc(idOnExternalPlatform)}/status`, body, {
      what: 'delivery status',
      channelId,
    });
  }

  /** `POST /channels/{channelId}/threads/{thread}/sender-actions`: typing on or off. */
  async senderAction(
    channelId: string,
    threadId: string,
    action: 'isTypingOn' | 'isTypingOff',
  ): Promise<void> {
    await this.call(
      'POST',
      `/channels/${enc(channelId)}/threads/${enc(threadId)}/sender-actions`,
      { action },
      {
        what: 'typing indicator',
        channelId,
      },
    );
  }

  /** `GET /channels`: a bare array per the spec; `{data:[…]}` and `{channels:[…]}` are read too. */
  async listChannels(opts: Partial<CallOptions> = {}): Promise<Channel[]> {
    const a = await this.call('GET', '/channels', undefined, { what: 'channel list', ...opts });
    const b = a.body;
    const arr = Array.isArray(b)
      ? b
      : b && typeof b === 'object' && Array.isArray((b as { data?: unknown }).data)
        ? (b as { data: unknown[] }).data
        : b && typeof b === 'object' && Array.isArray((b as { channels?: unknown }).channels)
          ? (b as { channels: unknown[] }).channels
          : null;
    if (!arr) {
      this.log.debug(
        `CXone channel list answered an unexpected body: ${clip(JSON.stringify(b ?? ''), 2000)}`,
      );
      throw new DfoError({
        key: 'bad-response',
        subs: { what: 'channel list', reason: 'not a list' },
        status: a.status,
        retryable: false,
      });
    }
    return arr.filter(
      (c): c is Channel => !!c && typeof c === 'object' && typeof (c as { id?: unknown }).id === 'string',
    );
  }

  /**
   * `POST /channels` (create or update), then the list re-read, since what POST returns is not specified and DFO
   * may rewrite the id. Returns the channel as listed, or as sent when the list does not show it.
   */
  async createChannel(ch: NewChannel, opts: Partial<CallOptions> = {}): Promise<Channel> {
    const a = await this.call('POST', '/channels', ch, { what: 'channel creation', ...opts });
    const echoed = a.body && typeof a.body === 'object' ? (a.body as Partial<Channel>) : undefined;
    try {
      const list = await this.listChannels(opts);
      const found =
        list.find((c) => c.id === (echoed?.id ?? ch.id)) ??
        list.find(
          (c) =>
            c.idOnExternalPlatform === ch.idOnExternalPlatform &&
            c.channelIntegrationId === ch.channelIntegrationId,
        );
      if (found) return found;
    } catch (err) {
      this.log.debug(`channel list after creation failed: ${(err as Error).message}`);
    }
    return { ...ch, ...(echoed && typeof echoed.id === 'string' ? echoed : {}) };
  }

  /** `DELETE /channels/{channelId}`. */
  async deleteChannel(channelId: string, opts: Partial<CallOptions> = {}): Promise<void> {
    await this.call('DELETE', `/channels/${enc(channelId)}`, undefined, {
      what: 'channel removal',
      channelId,
      ...opts,
    });
  }

  /** `POST /one-time-token/verification`: the admin page's one-time token for a CXone access token. */
  async verifyOneTimeToken(
    q: { brandId: number; userId: number; token: string },
    opts: Partial<CallOptions> = {},
  ): Promise<OneTimeTokenResult> {
    const a = await this.call(
      'POST',
      '/one-time-token/verification',
      { brandId: q.brandId, userId: q.userId, token: q.token, purpose: 'channel-integration' },
      { what: 'one-time token', anonymous: true, secretBody: true, ...opts },
    );
    const o = (a.body && typeof a.body === 'object' ? a.body : {}) as Record<string, unknown>;
    if (typeof o.accessToken !== 'string' || !o.accessToken) {
      throw new DfoError({
        key: 'bad-response',
        subs: { what: 'one-time token', reason: 'no accessToken in the answer' },
        status: a.status,
        retryable: false,
      });
    }
    const obj = (v: unknown): Record<string, unknown> =>
      v && typeof v === 'object' ? (v as Record<string, unknown>) : {};
    return { accessToken: o.accessToken, brand: obj(o.brand), user: obj(o.user) };
  }
}

/** A 400 that complains about idOnExternalPlatform already existing. */
function isDuplicateComplaint(body: unknown): boolean {
  return parseErrorBody(body).some(
    (f) =>
      /idOnExternalPlatform/i.test(`${f.field ?? ''} ${f.message}`) &&
      /(exist|duplicat|already|unique|taken)/i.test(f.message),
  );
}
