/**
 * The account's access token: fetched once however many sends wait, shared through the pack's store so several
 * Node-RED instances use one token, refreshed ahead of expiry, and invalidated only if it is still the token that
 * failed.
 *
 * - `stable` (default): `POST /cgi-bin/stable_token` with `force_refresh:false`. Repeated calls return the same
 *   token, so instances cannot invalidate each other's; `force_refresh:true` is used only when WeChat rejected the
 *   very token the normal call returns again.
 * - `classic`: `GET /cgi-bin/token`. Each fetch replaces the previous token (the old one works 5 more minutes).
 *
 * Single flight: one refresh per process at a time (a shared promise) and one per account across processes
 * (`store.tryLock`); the others wait for the token to appear in the store.
 */
import type { Store } from '../../store/types';
import { describeErrcode, TOKEN_ERROR_CODES } from './errors';
import { WechatApiError, type WechatHttp } from './http';

export type TokenMode = 'stable' | 'classic';

export interface TokenManagerOptions {
  http: WechatHttp;
  store: Store;
  appId: string;
  /** Read when a fetch is made, so a redeploy with a new secret needs no new manager. */
  appSecret: () => string | undefined;
  mode?: TokenMode;
  /** Refresh this long before expiry (default 5 min: stable_token itself renews 5 min early). */
  refreshAheadMs?: number;
  /** A token with less than this left is never used (default 30 s). */
  minRemainingMs?: number;
  /** The cross-instance fetch lock's lifetime (default 15 s). */
  lockTtlMs?: number;
  /** How often an instance waiting for another's fetch looks at the store (default 50 ms). */
  pollMs?: number;
  /** How long a configuration failure (40164, 40125 …) is answered from memory without a new fetch (default 3 s). */
  failureHoldMs?: number;
  now?: () => number;
}

interface Entry {
  /** the token */
  t: string;
  /** expiry, epoch ms */
  e: number;
  /** mode it came from */
  m: TokenMode;
  /** when WeChat issued it (epoch ms; absent in entries written by older versions) */
  o?: number;
}

/** What the health endpoint shows about the token (no token, no secret). */
export interface TokenFigures {
  ageMs?: number;
  expiresInMs?: number;
  refreshes: number;
  failures: number;
}

/** Words for errcodes on the token endpoints, where they mean something else than on other APIs. */
export function tokenFetchError(err: WechatApiError): WechatApiError {
  if (err.kind !== 'errcode' || err.errcode === undefined) return err;
  // On the token endpoints 40001 means a wrong AppSecret, not a stale token: never loop on it.
  const reason =
    err.errcode === 40001
      ? 'the AppSecret is wrong; copy it again from the WeChat Official Accounts Platform'
      : describeErrcode(err.errcode, err.reason);
  return new WechatApiError({
    kind: 'errcode',
    api: err.api,
    errcode: err.errcode,
    reason,
    retryable: err.retryable && !TOKEN_ERROR_CODES.has(err.errcode),
    retryAfterMs: err.retryAfterMs,
    host: err.host,
  });
}

export class TokenManager {
  readonly key: string;
  readonly lockKey: string;
  readonly mode: TokenMode;
  /** How many times this manager asked WeChat for a token. */
  fetches = 0;
  /** How many of those failed. */
  failures = 0;
  private cached?: Entry;
  private inflight?: Promise<string>;
  private background?: Promise<unknown>;
  private heldFailure?: { err: WechatApiError; until: number };
  private closed = false;
  private readonly o: Required<Omit<TokenManagerOptions, 'mode'>>;

  constructor(opts: TokenManagerOptions) {
    this.mode = opts.mode ?? 'stable';
    this.o = {
      refreshAheadMs: 5 * 60_000,
      minRemainingMs: 30_000,
      lockTtlMs: 15_000,
      pollMs: 50,
      failureHoldMs: 3_000,
      now: Date.now,
      ...opts,
    };
    this.key = `wxcx:wechat:${opts.appId}:token`;
    this.lockKey = `${this.key}:lock`;
  }

  /** A token to call with. Waits only when there is none usable; otherwise refreshes in the background. */
  async get(): Promise<string> {
    const now = this.o.now();
    const c = this.cached;
    if (c && now < c.e - this.o.refreshAheadMs) return c.t;
    if (c && now < c.e - this.o.minRemainingMs) {
      this.refreshInBackground();
      return c.t;
    }
    return this.refresh();
  }

  /**
   * After WeChat rejected `failed` with 40001/40014/42001: forgets it here and in the store, but only if it is still
   * the current token (another caller may already have replaced it), and returns the token to retry with.
   */
  async replace(failed: string): Promise<string> {
    if (this.cached?.t === failed) this.cached = undefined;
    const raw = await this.o.store.get(this.key);
    const entry = parse(raw);
    if (raw !== undefined && entry?.t === failed) await this.o.store.deleteIfEquals(this.key, raw);
    const c = this.cached;
    if (c && c.t !== failed && this.o.now() < c.e - this.o.minRemainingMs) return c.t;
    const t = await this.refresh(failed);
    // A refresh that was already running may have read the failed token from the store before it was deleted.
    return t === failed ? this.refresh(failed) : t;
  }

  /** Fetches a token from WeChat now, bypassing every cache (the test-connection button). */
  async fetchFresh(): Promise<{ t: string; e: number; host?: string }> {
    return this.fetchOnce(false);
  }

  /** Makes `token` the current one, here and in the store (a classic token fetched by the test button). */
  async adopt(token: { t: string; e: number }): Promise<void> {
    const entry: Entry = { t: token.t, e: token.e, m: this.mode, o: this.o.now() };
    const ttl = entry.e - this.o.now();
    if (ttl > 0) await this.o.store.set(this.key, JSON.stringify(entry), ttl);
    this.keep(entry);
  }

  /** Age and remaining life of the token in use, and fetch counts. */
  figures(): TokenFigures {
    const c = this.cached;
    const now = this.o.now();
    return {
      ageMs: c?.o !== undefined ? now - c.o : undefined,
      expiresInMs: c ? c.e - now : undefined,
      refreshes: this.fetches,
      failures: this.failures,
    };
  }

  /** Forgets the cached token in this process (the store is left alone). */
  forget(): void {
    this.cached = undefined;
  }

  close(): void {
    this.closed = true;
  }

  private refreshInBackground(): void {
    if (this.inflight || this.background) return;
    this.background = this.refresh()
      .catch(() => undefined)
      .finally(() => {
        this.background = undefined;
      });
  }

  /** Single flight within the process: every caller during a refresh shares one promise. */
  private refresh(bad?: string): Promise<string> {
    if (this.inflight) {
      // A refresh already running returns a token at least as new as what `bad` callers saw.
      return this.inflight;
    }
    const held = this.heldFailure;
    if (held && this.o.now() < held.until) return Promise.reject(held.err);
    const p = this.obtain(bad).finally(() => {
      if (this.inflight === p) this.inflight = undefined;
    });
    this.inflight = p;
    return p;
  }

  /** From the store when another instance fetched one; otherwise fetch under the cross-instance lock. */
  private async obtain(bad?: string): Promise<string> {
    const deadline = this.o.now() + this.o.lockTtlMs + 5_000;
    let usable: Entry | undefined;
    for (;;) {
      const entry = parse(await this.o.store.get(this.key));
      const now = this.o.now();
      if (entry && entry.t !== bad && now < entry.e - this.o.minRemainingMs) {
        if (now < entry.e - this.o.refreshAheadMs) return this.keep(entry);
        usable = entry; // still good; refresh it if we get the lock, else use it
      }
      const release = await this.o.store.tryLock(this.lockKey, this.o.lockTtlMs);
      if (release) {
        try {
          // Someone may have stored a fresh token between our read and the lock.
          const again = parse(await this.o.store.get(this.key));
          if (again && again.t !== bad && this.o.now() < again.e - this.o.refreshAheadMs)
            return this.keep(again);
          const f = await this.fetch(bad);
          const fresh: Entry = { t: f.t, e: f.e, m: f.m, o: f.o };
          const ttl = fresh.e - this.o.now();
          if (ttl > 0) await this.o.store.set(this.key, JSON.stringify(fresh), ttl);
          return this.keep(fresh);
        } finally {
          await release().catch(() => undefined);
        }
      }
      if (usable) return this.keep(usable);
      if (this.closed) throw closedError();
      if (this.o.now() > deadline)
        throw new WechatApiError({
          kind: 'timeout',
          api: '/cgi-bin/stable_token',
          code: 'token-wait',
          reason: 'waited too long for another instance to fetch the access token',
          retryable: true,
        });
      await new Promise((r) => setTimeout(r, this.o.pollMs));
    }
  }

  private keep(e: Entry): string {
    this.cached = e;
    this.heldFailure = undefined;
    return e.t;
  }

  /** Asks WeChat. In stable mode, if WeChat hands back the token it just rejected, asks once with force_refresh. */
  private async fetch(bad?: string): Promise<Entry & { host?: string }> {
    let e = await this.fetchOnce(false);
    if (bad && e.t === bad && this.mode === 'stable') e = await this.fetchOnce(true);
    return e;
  }

  private async fetchOnce(force: boolean): Promise<Entry & { host?: string }> {
    const api = this.mode === 'stable' ? '/cgi-bin/stable_token' : '/cgi-bin/token';
    const appid = this.o.appId;
    const secret = this.o.appSecret();
    if (!appid || !secret)
      throw new WechatApiError({
        kind: 'local',
        api,
        code: appid ? 'no-secret' : 'no-appid',
        reason: appid
          ? 'the AppSecret is missing; enter it in the account configuration'
          : 'the AppID is missing; enter it in the account configuration',
        retryable: false,
      });
    this.fetches++;
    let data: Record<string, unknown>;
    let host: string | undefined;
    try {
      const ans =
        this.mode === 'stable'
          ? await this.o.http.request({
              method: 'POST',
              path: api,
              json: { grant_type: 'client_credential', appid, secret, force_refresh: force },
            })
          : await this.o.http.request({
              method: 'GET',
              path: api,
              query: { grant_type: 'client_credential', appid, secret },
            });
      data = (ans as { data: Record<string, unknown> }).data;
      host = ans.host;
    } catch (err) {
      this.failures++;
      if (!(err instanceof WechatApiError)) throw err;
      const e = tokenFetchError(err);
      if (e.kind === 'errcode' && !e.retryable)
        this.heldFailure = { err: e, until: this.o.now() + this.o.failureHoldMs };
      throw e;
    }
    const t = data.access_token;
    const expiresIn = Number(data.expires_in);
    if (typeof t !== 'string' || !t || !Number.isFinite(expiresIn) || expiresIn <= 0) {
      this.failures++;
      throw new WechatApiError({
        kind: 'bad-response',
        api,
        code: 'bad-response',
        reason: 'WeChat answered the token request without a token',
        retryable: true,
      });
    }
    const now = this.o.now();
    return { t, e: now + expiresIn * 1000, m: this.mode, o: now, host };
  }
}

function parse(raw: string | undefined): Entry | undefined {
  if (!raw) return undefined;
  try {
    const v = JSON.parse(raw) as Partial<Entry>;
    if (typeof v.t === 'string' && v.t && typeof v.e === 'number')
      return { t: v.t, e: v.e, m: v.m ?? 'stable', ...(typeof v.o === 'number' ? { o: v.o } : {}) };
  } catch {
    /* not ours */
  }
  return undefined;
}

function closedError(): WechatApiError {
  return new WechatApiError({
    kind: 'aborted',
    api: '/cgi-bin/stable_token',
    code: 'aborted',
    reason: 'the account configuration was stopped',
    retryable: true,
  });
}
