/**
 * The part of the CXone simulator that acts like CXone towards an integration box (ours, `cxone-dfo-in`): it holds
 * the box client id and secret entered in CXone's BYOC settings, and calls the box the way CXone is seen to
 * (docs/protocol/cxone.md §g):
 *
 * - every call goes out with the token it holds, or with none at first; it asks `{box}/1.0/token` for a token
 *   ONLY after a 401 (a JSON body, as CXone's samples show), then retries the call once. An expired token is
 *   noticed the same way: the box answers 401, a new token is fetched, the call is retried.
 * - agent replies go out in the legacy format (`/1.0/posts/{postId}/messages`) or, with the "Use DFO 3.0 Outbound
 *   API for replies" switch on, in the DFO 3.0 format (`/2.0/channel/{channelId}/outbound`), shaped like the
 *   fixtures in test/fixtures/cxone.
 * - typing goes to `/1.0/channel/{channelId}/thread/{threadId}/sender-action`, recipient checks to
 *   `/1.0/channel/{channelId}/recipients/validation`.
 *
 * Everything is recorded (requests, answers, token fetches) for tests and the sandbox page. Real HTTP only.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { randomUUID } from 'node:crypto';

export type TokenStyle = 'json' | 'form' | 'basic';

export interface BoxCallerOptions {
  /** The Integration Box URL as entered in CXone, e.g. `http://127.0.0.1:1880/integration/box`. */
  boxUrl: string;
  clientId: string;
  clientSecret: string;
  /** CXone's "Use DFO 3.0 Outbound API for replies" switch (default false: legacy replies). */
  dfo3?: boolean;
  /** The Authorization URL; default `{boxUrl}/1.0/token`. */
  tokenUrl?: string;
  /** How the token request carries the credentials (default 'json', what CXone is seen to send). */
  tokenStyle?: TokenStyle;
  /** The channel (point of contact) id replies are sent for. */
  channelId?: string;
  /** The brand CXone puts in its bodies. */
  brand?: Record<string, unknown>;
  /** Per-request timeout, ms (default 10 s). */
  timeoutMs?: number;
}

export interface RecordedCall {
  at: number;
  method: string;
  /** The path below the box URL, e.g. `/1.0/token`. */
  path: string;
  /** Whether the call carried a bearer token (the token itself is not recorded). */
  withToken: boolean;
  /** What was sent (the token request's body is recorded with the secret masked). */
  body: unknown;
  status: number;
  responseHeaders: http.IncomingHttpHeaders;
  /** The answer, parsed as JSON when it is JSON. */
  response: unknown;
}

export interface BoxAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

export interface AgentReply {
  /** The WeChat openid (the thread's idOnExternalPlatform). */
  threadId: string;
  text?: string;
  attachments?: { friendlyName: string; url: string }[];
  /** CXone's id of the agent's message; sent as `id` in the body. Default: a new UUID per reply. */
  messageId?: string | null;
  /** Override the format of this one reply. */
  format?: 'legacy' | 'dfo3';
  /** Legacy route's postId (default: CXone's own UUID for the post). */
  postId?: string;
  channelId?: string;
  /** A complete body to send instead of the one built here (for odd shapes). */
  body?: Record<string, unknown>;
}

const DEFAULT_BRAND = {
  id: 1234,
  tenantId: '11eb660f-4c6d-34a0-8733-0242ac110002',
  businessUnitId: 4597359,
  timezone: 'Asia/Shanghai',
  friendlyName: 'Simulated Brand',
};

const AGENT = {
  id: 5678,
  incontactId: '11eb660f-4fdf-02d0-8f28-0242ac110002',
  emailAddress: 'agent@example.com',
  loginUsername: 'agent@example.com',
  firstName: 'Ada',
  surname: 'Agent',
  nickname: '',
  imageUrl: '',
  isBotUser: false,
  isSurveyUser: false,
};

export class CxoneBoxCaller {
  /** Every call made, in order (token calls included). */
  readonly calls: RecordedCall[] = [];
  /** How many times a token was requested, and how many of those succeeded. */
  tokenFetches = 0;
  tokensReceived = 0;
  /** The token held, as CXone would hold it. Tests may replace it (with an expired one, say). */
  token: string | undefined;
  dfo3: boolean;
  private readonly agent: http.Agent;
  private readonly base: URL;

  constructor(private readonly opts: BoxCallerOptions) {
    this.base = new URL(opts.boxUrl.replace(/\/+$/, ''));
    this.dfo3 = opts.dfo3 ?? false;
    this.agent =
      this.base.protocol === 'https:'
        ? new https.Agent({ keepAlive: true, maxSockets: 8 })
        : new http.Agent({ keepAlive: true, maxSockets: 8 });
  }

  get channelId(): string {
    return this.opts.channelId ?? 'chat_5d1ed0c1-8bbd-4c4b-8f0f-6f1f3bd6d1a1';
  }

  /** Closes kept-alive connections. */
  stop(): void {
    this.agent.destroy();
  }

  /** Forgets the recorded calls (not the token). */
  clearRecords(): void {
    this.calls.length = 0;
    this.tokenFetches = 0;
    this.tokensReceived = 0;
  }

  private url(path: string): URL {
    return new URL(this.base.pathname.replace(/\/+$/, '') + path, this.base);
  }

  private request(
    method: string,
    url: URL,
    headers: Record<string, string>,
    body: string | undefined,
  ): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(
        url,
        {
          method,
          agent: this.agent,
          headers:
            body !== undefined ? { ...headers, 'Content-Length': String(Buffer.byteLength(body)) } : headers,
          timeout: this.opts.timeoutMs ?? 10_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              text: Buffer.concat(chunks).toString('utf8'),
            }),
          );
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`box did not answer ${method} ${url.pathname} in time`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  private record(
    method: string,
    path: string,
    withToken: boolean,
    body: unknown,
    r: { status: number; headers: http.IncomingHttpHeaders; text: string },
  ): BoxAnswer {
    let parsed: unknown = r.text;
    if (/json/i.test(String(r.headers['content-type'] ?? '')) && r.text) {
      try {
        parsed = JSON.parse(r.text);
      } catch {
        parsed = r.text;
      }
    }
    this.calls.push({
      at: Date.now(),
      method,
      path,
      withToken,
      body,
      status: r.status,
      responseHeaders: r.headers,
      response: parsed,
    });
    return { status: r.status, headers: r.headers, body: parsed };
  }

  /** Asks the box for a token, the way CXone does. Returns the answer; keeps the token when there is one. */
  async fetchToken(style: TokenStyle = this.opts.tokenStyle ?? 'json'): Promise<BoxAnswer> {
    this.tokenFetches++;
    const url = this.opts.tokenUrl ? new URL(this.opts.tokenUrl) : this.url('/1.0/token');
    const headers: Record<string, string> = { Accept: 'application/json' };
    let body: string;
    if (style === 'json') {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify({
        grant_type: 'client_credentials',
        client_id: this.opts.clientId,
        client_secret: this.opts.clientSecret,
      });
    } else if (style === 'form') {
      headers['Content-Type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: this.opts.clientId,
        client_secret: this.opts.clientSecret,
      }).toString();
    } else {
      headers['Content-Type'] = 'application/x-www-form-urlencoded';
      const enc = (s: string): string => encodeURIComponent(s).replace(/%20/g, '+');
      headers.Authorization =
        'Basic ' +
        Buffer.from(`${enc(this.opts.clientId)}:${enc(this.opts.clientSecret)}`).toString('base64');
      body = 'grant_type=client_credentials';
    }
    const r = await this.request('POST', url, headers, body);
    const answer = this.record(
      'POST',
      url.pathname.slice(this.base.pathname.replace(/\/+$/, '').length),
      false,
      { style, client_id: this.opts.clientId, client_secret: '***' },
      r,
    );
    const b = answer.body as { access_token?: unknown } | undefined;
    if (r.status === 200 && b && typeof b.access_token === 'string') {
      this.token = b.access_token;
      this.tokensReceived++;
    }
    return answer;
  }

  /**
   * Calls the box like CXone: with the token held (none at first); on 401, fetches a token and retries once.
   * A token call that fails ends the dance with that answer.
   */
  async call(method: string, path: string, body: unknown): Promise<BoxAnswer> {
    const once = async (): Promise<BoxAnswer> => {
      const headers: Record<string, string> = {
        Accept: 'application/json',
        'Content-Type': 'application/json',
      };
      const withToken = this.token !== undefined;
      if (this.token) headers.Authorization = `Bearer ${this.token}`;
      const text = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
      const r = await this.request(method, this.url(path), headers, text);
      return this.record(method, path, withToken, body, r);
    };
    const first = await once();
    if (first.status !== 401) return first;
    this.token = undefined;
    const t = await this.fetchToken();
    if (t.status !== 200 || !this.token) return t;
    return once();
  }

  /** The body CXone sends for an agent reply, in either format (shapes of the fixtures). */
  replyBody(r: AgentReply, format: 'legacy' | 'dfo3'): Record<string, unknown> {
    const recipient = {
      idOnExternalPlatform: r.threadId,
      name: 'WeChat user',
      isPrimary: true,
      isPrivate: false,
    };
    const common: Record<string, unknown> = {
      brand: this.opts.brand ?? DEFAULT_BRAND,
      thread: { idOnExternalPlatform: r.threadId },
      messageContent: { type: 'TEXT', payload: { text: r.text ?? '' } },
      attachments: r.attachments ?? [],
      authorUser: AGENT,
    };
    if (r.messageId !== null) common.id = r.messageId ?? randomUUID();
    if (format === 'legacy')
      return { ...common, post: { idOnExternalPlatform: r.threadId }, recipients: [recipient] };
    return {
      ...common,
      endUserRecipients: [recipient],
      replyToMessage: { idOnExternalPlatform: '' },
      isReplyToSpecificMessage: false,
    };
  }

  /** Sends an agent reply in the format the switch selects (or `r.format`). */
  sendReply(r: AgentReply): Promise<BoxAnswer> {
    const format = r.format ?? (this.dfo3 ? 'dfo3' : 'legacy');
    const body = r.body ?? this.replyBody(r, format);
    if (format === 'legacy') {
      const postId = r.postId ?? randomUUID();
      return this.call('POST', `/1.0/posts/${encodeURIComponent(postId)}/messages`, body);
    }
    return this.call(
      'POST',
      `/2.0/channel/${encodeURIComponent(r.channelId ?? this.channelId)}/outbound`,
      body,
    );
  }

  /** The agent starts (true) or stops (false) typing in a thread. */
  senderAction(threadId: string, typing: boolean, channelId = this.channelId): Promise<BoxAnswer> {
    return this.call(
      'POST',
      `/1.0/channel/${encodeURIComponent(channelId)}/thread/${encodeURIComponent(threadId)}/sender-action`,
      {
        brand: this.opts.brand ?? DEFAULT_BRAND,
        senderAction: { action: typing ? 'isTypingOn' : 'isTypingOff' },
        authorUser: AGENT,
      },
    );
  }

  /** CXone checks recipients before an agent-initiated outbound message. */
  validateRecipients(ids: string[], channelId = this.channelId): Promise<BoxAnswer> {
    return this.call('POST', `/1.0/channel/${encodeURIComponent(channelId)}/recipients/validation`, {
      brand: this.opts.brand ?? DEFAULT_BRAND,
      endUserRecipients: ids.map((id, i) => ({
        idOnExternalPlatform: id,
        name: 'WeChat user',
        isPrimary: i === 0,
        isPrivate: false,
      })),
    });
  }
}
