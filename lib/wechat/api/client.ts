/**
 * One Official Account's API client: HTTP with failover and retries (http.ts), the access token (token.ts),
 * temporary media (media.ts), and the calls wechat-out makes: custom/send, custom/typing, template/send.
 *
 * Every call that carries `access_token` goes through `call()`: on 40001/40014/42001 the token is replaced (only if
 * it is still the one that failed) and the call is made once more.
 */
import type { OutboundPolicy } from '../../http/outbound-guard';
import type { Store } from '../../store/types';
import { TOKEN_ERROR_CODES } from './errors';
import {
  WechatApiError,
  WechatHttp,
  type HttpAnswer,
  type HttpRequest,
  type WechatHttpOptions,
} from './http';
import { MediaService, type MediaDownload } from './media';
import type { CustomBody } from './messages';
import { TokenManager, type TokenManagerOptions, type TokenMode } from './token';

export interface WechatApiOptions extends WechatHttpOptions {
  appId: string;
  /** Read at each token fetch. */
  appSecret: () => string | undefined;
  store: Store;
  tokenMode?: TokenMode;
  /** Token tuning (tests). */
  token?: Partial<Omit<TokenManagerOptions, 'http' | 'store' | 'appId' | 'appSecret' | 'mode'>>;
  /** How long an uploaded media_id is reused, ms (default 60 h). */
  mediaCacheTtlMs?: number;
  /**
   * Which URLs the account fetches because someone else named them: attachment URLs to upload, and the video_url
   * WeChat answers media/get with (default: https, public addresses, any host; lib/http/outbound-guard.ts).
   */
  outbound?: OutboundPolicy;
}

export interface TestConnectionResult {
  ok: boolean;
  /** Which endpoint was used. */
  mode: TokenMode;
  /** Seconds the fetched token lives (on success). */
  expiresIn?: number;
  /** Origin of the host that answered. */
  host?: string;
  code?: string | number;
  /** Words for the failure. */
  message?: string;
  /** The failure in Chinese (errcodes). */
  messageZh?: string;
}

export class WechatApi {
  readonly appId: string;
  readonly http: WechatHttp;
  readonly tokens: TokenManager;
  readonly media: MediaService;
  /** The account's store (token, media cache, send progress). */
  readonly store: Store;
  private readonly opts: WechatApiOptions;

  constructor(opts: WechatApiOptions) {
    this.opts = opts;
    this.appId = opts.appId;
    this.store = opts.store;
    this.http = new WechatHttp(opts);
    this.tokens = new TokenManager({
      ...opts.token,
      http: this.http,
      store: opts.store,
      appId: opts.appId,
      appSecret: opts.appSecret,
      mode: opts.tokenMode,
    });
    this.media = new MediaService({
      appId: opts.appId,
      store: opts.store,
      call: (req) => this.call(req),
      cacheTtlMs: opts.mediaCacheTtlMs,
      outbound: opts.outbound,
    });
  }

  /** The outbound rules of this account (wechat-in applies them to the video_url it follows). */
  get outbound(): OutboundPolicy {
    return this.opts.outbound ?? {};
  }

  /** A call with the access token; replaces a rejected token once. */
  async call(req: HttpRequest): Promise<HttpAnswer> {
    let token = await this.tokens.get();
    try {
      return await this.http.request({ ...req, query: { ...req.query, access_token: token } });
    } catch (err) {
      if (
        !(err instanceof WechatApiError) ||
        err.errcode === undefined ||
        !TOKEN_ERROR_CODES.has(err.errcode)
      )
        throw err;
      token = await this.tokens.replace(token);
    }
    return this.http.request({ ...req, query: { ...req.query, access_token: token } });
  }

  /** `/cgi-bin/message/custom/send`. Resolves when WeChat accepted it (errcode 0). */
  async sendCustom(body: CustomBody): Promise<void> {
    await this.call({ method: 'POST', path: '/cgi-bin/message/custom/send', json: body });
  }

  /** `/cgi-bin/message/custom/typing`: Typing (true) or CancelTyping (false). Not retried: typing is short-lived. */
  async typing(openid: string, on: boolean): Promise<void> {
    await this.call({
      method: 'POST',
      path: '/cgi-bin/message/custom/typing',
      json: { touser: openid, command: on ? 'Typing' : 'CancelTyping' },
      retries: 0,
    });
  }

  /** `/cgi-bin/message/template/send`. Resolves to WeChat's msgid, as a string (it exceeds 2^53). */
  async sendTemplate(body: Record<string, unknown>): Promise<string | undefined> {
    const ans = await this.call({ method: 'POST', path: '/cgi-bin/message/template/send', json: body });
    if (ans.kind !== 'json') return undefined;
    const m = /"msgid"\s*:\s*"?(\d+)"?/.exec(ans.text);
    return m ? m[1] : undefined;
  }

  /**
   * Downloads temporary media by media_id (wechat-in's media links use this through `config.api.getMedia`):
   * `{kind:'file', stream, contentType, filename, contentLength?}`, or for video `{kind:'video', videoUrl}`.
   * WeChat's refusals (40007 expired or unknown id, …) are thrown as WechatApiError with `errcode`.
   */
  getMedia(mediaId: string, opts: { signal?: AbortSignal } = {}): Promise<MediaDownload> {
    return this.media.get(mediaId, opts);
  }

  /**
   * Fetches a token straight from WeChat (not from any cache) to prove the AppID, AppSecret and IP whitelist work.
   * In stable mode this does not disturb the token in use; in classic mode the fetched token replaces it in the
   * store, since WeChat just made it the current one.
   */
  async testConnection(): Promise<TestConnectionResult> {
    const mode = this.tokens.mode;
    const probe = new TokenManager({
      http: this.http,
      store: this.opts.store,
      appId: this.appId,
      appSecret: this.opts.appSecret,
      mode,
      failureHoldMs: 0,
    });
    try {
      const r = await probe.fetchFresh();
      if (mode === 'classic') await this.tokens.adopt(r);
      return { ok: true, mode, expiresIn: Math.round((r.e - Date.now()) / 1000), host: r.host };
    } catch (err) {
      if (err instanceof WechatApiError)
        return {
          ok: false,
          mode,
          code: err.code,
          message: err.reason,
          messageZh: err.reasonIn('zh'),
          host: err.host,
        };
      return { ok: false, mode, code: 'error', message: 'the test failed unexpectedly' };
    }
  }

  close(): void {
    this.tokens.close();
    this.http.close();
    this.media.close();
  }
}
