/**
 * Authentication for calling CXone (docs/protocol/cxone.md §a): the OAuth password grant with the API user's
 * access key, the registered application as HTTP Basic client auth, at the token endpoint named by
 * `{authIssuer}/.well-known/openid-configuration` (falling back to the documented `{authIssuer}/auth/token`), and
 * the DFO base from the configuration or from `{authIssuer}/.well-known/cxone-configuration?tenantId=…`.
 *
 * The token lives in the integration's store under a key derived from the issuer, client id and access key id, so
 * Node-RED instances sharing a Redis with the same account share it, and two integrations never do. One fetch is
 * in flight per process (single flight) and per store (`tryLock`); the token is refreshed ahead of its expiry,
 * and a token CXone refuses is dropped only if it is still the stored one (`deleteIfEquals`).
 */
import { createHash } from 'node:crypto';
import type { Store } from '../../store/types';
import { DfoError, parseErrorBody } from './errors';
import { type DfoHttp, hostOf, parseBody, request, safeUrl } from './http';
import { tenantIdOf } from './jwt';

export interface DfoCredentials {
  clientId?: string;
  clientSecret?: string;
  accessKeyId?: string;
  accessKeySecret?: string;
}

export interface DfoLogger {
  debug(msg: string): void;
  warn(msg: string): void;
}

export interface DfoAuthOptions {
  authIssuer: string;
  /** The configured DFO base; empty to discover it. */
  apiBase?: string;
  credentials: DfoCredentials;
  store: Store;
  http: DfoHttp;
  log?: DfoLogger;
  /** Refresh this long before expiry at most (default 5 min; never more than a fifth of the lifetime). */
  refreshAheadMs?: number;
  /** How long one instance may hold the fetch lock (default 20 s). */
  lockTtlMs?: number;
  /** How long to wait for another instance's fetch before fetching anyway (default 20 s). */
  lockWaitMs?: number;
}

export interface CxoneToken {
  accessToken: string;
  /** Epoch ms. */
  expiresAt: number;
  /** When it was obtained, epoch ms. */
  obtainedAt: number;
  tenantId?: string;
}

interface Cached extends CxoneToken {
  /** The exact string in the store, for deleteIfEquals. */
  raw: string;
}

const NO_LOG: DfoLogger = { debug: () => undefined, warn: () => undefined };
const OPENID_TTL_MS = 3600_000;
const FALLBACK_TTL_MS = 300_000;
const API_BASE_TTL_MS = 24 * 3600_000;
const NEGATIVE_TTL_MS = 5_000;

/**
 * The store key prefix of the DFO token of one account: the account part is the one cxone-dfo-in uses
 * (`wxcx:cxone:ak-<sha256(accessKeyId)>:`), then `dfo:<hash of issuer and client id>`, so instances with the same
 * account share one token, and a config with another application or issuer never picks up this one's.
 */
export function accountKey(authIssuer: string, creds: DfoCredentials): string {
  const ak = createHash('sha256')
    .update(creds.accessKeyId ?? '', 'utf8')
    .digest('hex')
    .slice(0, 16);
  const app = createHash('sha256')
    .update(`${authIssuer}\n${creds.clientId ?? ''}`, 'utf8')
    .digest('hex')
    .slice(0, 12);
  return `wxcx:cxone:ak-${ak}:dfo:${app}`;
}

/** RFC 6749 §2.3.1: client id and secret are form-urlencoded before being joined and base64-encoded. */
export function basicAuth(clientId: string, clientSecret: string): string {
  const enc = (s: string): string => encodeURIComponent(s).replace(/%20/g, '+');
  return 'Basic ' + Buffer.from(`${enc(clientId)}:${enc(clientSecret)}`, 'utf8').toString('base64');
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function trimSlash(s: string): string {
  return s.replace(/\/+$/, '');
}

export class DfoAuth {
  readonly authIssuer: string;
  readonly configuredApiBase: string;
  readonly keyPrefix: string;
  private readonly tokenKey: string;
  private readonly lockKey: string;
  private readonly creds: DfoCredentials;
  private readonly store: Store;
  private readonly http: DfoHttp;
  private readonly log: DfoLogger;
  private readonly refreshAheadMs: number;
  private readonly lockTtlMs: number;
  private readonly lockWaitMs: number;

  private local: Cached | null = null;
  private inflight: Promise<Cached> | null = null;
  private negative: { until: number; error: DfoError } | null = null;
  private endpoint: { url: string; until: number } | null = null;
  private endpointInflight: Promise<string> | null = null;
  private apiBases = new Map<string, { url: string; until: number }>();
  private apiBaseInflight: Promise<string> | null = null;
  private closed = false;

  /** Counters for tests and the status: token fetches made by this process. */
  readonly counters = { tokenFetches: 0, tokenFailures: 0, discoveries: 0, invalidations: 0 };

  constructor(opts: DfoAuthOptions) {
    this.authIssuer = trimSlash(opts.authIssuer);
    this.configuredApiBase = trimSlash(opts.apiBase ?? '');
    this.creds = { ...opts.credentials };
    this.store = opts.store;
    this.http = opts.http;
    this.log = opts.log ?? NO_LOG;
    this.refreshAheadMs = opts.refreshAheadMs ?? 300_000;
    this.lockTtlMs = opts.lockTtlMs ?? 20_000;
    this.lockWaitMs = opts.lockWaitMs ?? 20_000;
    this.keyPrefix = accountKey(this.authIssuer, this.creds);
    this.tokenKey = `${this.keyPrefix}:token`;
    this.lockKey = `${this.keyPrefix}:token-lock`;
  }

  /** The token this process holds now, if any (for health figures; never log it). */
  current(): CxoneToken | null {
    return this.local;
  }

  /** Stops new fetches (calls already running finish). */
  close(): void {
    this.closed = true;
  }

  /** Which credential is missing, or null. */
  missingCredential(): string | null {
    if (!this.creds.clientId) return 'Client ID';
    if (!this.creds.clientSecret) return 'Client secret';
    if (!this.creds.accessKeyId) return 'Access key ID';
    if (!this.creds.accessKeySecret) return 'Access key secret';
    return null;
  }

  private refreshAt(t: CxoneToken): number {
    const life = Math.max(0, t.expiresAt - t.obtainedAt);
    return t.expiresAt - Math.min(this.refreshAheadMs, life / 5);
  }

  /** A token to use now: cached while it is fresh, fetched (once, for every caller) when not. */
  async token(): Promise<CxoneToken> {
    const now = Date.now();
    if (this.local && this.refreshAt(this.local) > now) return this.local;
    if (this.negative && this.negative.until > now) throw this.negative.error;
    if (!this.inflight) {
      this.inflight = this.obtain().finally(() => {
        this.inflight = null;
      });
    }
    return this.inflight;
  }

  /**
   * CXone refused `accessToken` (401): forget it, here and in the store, but only if it is still the current one
   * (another caller or instance may already have replaced it).
   */
  async invalidate(accessToken: string): Promise<void> {
    this.counters.invalidations++;
    if (this.local?.accessToken === accessToken) this.local = null;
    const raw = await this.store.get(this.tokenKey);
    const c = this.parse(raw);
    if (raw && c && c.accessToken === accessToken) await this.store.deleteIfEquals(this.tokenKey, raw);
  }

  private parse(raw: string | undefined): Cached | null {
    if (!raw) return null;
    try {
      const o = JSON.parse(raw) as Partial<{ t: string; e: number; o: number; tn: string }>;
      if (typeof o.t !== 'string' || typeof o.e !== 'number') return null;
      return {
        accessToken: o.t,
        expiresAt: o.e,
        obtainedAt: typeof o.o === 'number' ? o.o : o.e - 3600_000,
        tenantId: o.tn,
        raw,
      };
    } catch {
      return null;
    }
  }

  private async obtain(): Promise<Cached> {
    const missing = this.missingCredential();
    if (missing) {
      throw new DfoError({ key: 'auth-missing', subs: { what: missing }, code: 'config', retryable: false });
    }
    const deadline = Date.now() + this.lockWaitMs;
    for (let round = 0; ; round++) {
      const stored = this.parse(await this.store.get(this.tokenKey));
      if (stored && this.refreshAt(stored) > Date.now()) return (this.local = stored);
      const release = await this.store.tryLock(this.lockKey, this.lockTtlMs);
      if (release) {
        try {
          const again = this.parse(await this.store.get(this.tokenKey));
          if (again && this.refreshAt(again) > Date.now()) return (this.local = again);
          return await this.fetchAndStore();
        } finally {
          await release().catch(() => undefined);
        }
      }
      // Someone else is fetching. A stored token that has not expired yet is good enough meanwhile.
      if (stored && stored.expiresAt - 5_000 > Date.now()) return (this.local = stored);
      if (Date.now() > deadline || this.closed) return this.fetchAndStore();
      await sleep(Math.min(250, 50 + round * 25));
    }
  }

  private async fetchAndStore(): Promise<Cached> {
    let t: CxoneToken;
    try {
      t = await this.fetchToken();
    } catch (err) {
      this.counters.tokenFailures++;
      if (err instanceof DfoError && !err.retryable) {
        this.negative = { until: Date.now() + NEGATIVE_TTL_MS, error: err };
      }
      throw err;
    }
    this.negative = null;
    const raw = JSON.stringify({ t: t.accessToken, e: t.expiresAt, o: t.obtainedAt, tn: t.tenantId });
    const ttl = Math.max(1000, t.expiresAt - Date.now());
    await this.store.set(this.tokenKey, raw, ttl);
    this.local = { ...t, raw };
    return this.local;
  }

  /** The token endpoint from the issuer's discovery document, or the documented fallback. */
  async tokenEndpoint(): Promise<string> {
    const now = Date.now();
    if (this.endpoint && this.endpoint.until > now) return this.endpoint.url;
    if (!this.endpointInflight) {
      this.endpointInflight = this.discoverTokenEndpoint().finally(() => {
        this.endpointInflight = null;
      });
    }
    return this.endpointInflight;
  }

  private async discoverTokenEndpoint(): Promise<string> {
    const fallback = `${this.authIssuer}/auth/token`;
    const url = `${this.authIssuer}/.well-known/openid-configuration`;
    let reason: string;
    try {
      const res = await request(this.http, { method: 'GET', url });
      const body = parseBody(res.data);
      const te =
        res.status >= 200 && res.status < 300 && body && typeof body === 'object'
          ? (body as { token_endpoint?: unknown }).token_endpoint
          : undefined;
      if (typeof te === 'string' && /^https?:\/\//i.test(te)) {
        if (this.authIssuer.startsWith('https:') && !te.startsWith('https:')) {
          throw new DfoError({
            key: 'auth-insecure',
            subs: { host: hostOf(te) },
            code: 'insecure',
            retryable: false,
          });
        }
        this.endpoint = { url: te, until: Date.now() + OPENID_TTL_MS };
        return te;
      }
      reason = `HTTP ${res.status}${te === undefined ? ', no token_endpoint' : ''}`;
      this.log.debug(
        `CXone openid-configuration at ${safeUrl(url)} answered ${res.status}; using ${fallback}`,
      );
    } catch (err) {
      if (err instanceof DfoError && err.key === 'auth-insecure') throw err;
      reason = err instanceof Error ? err.message : 'error';
    }
    this.log.debug(`CXone token endpoint discovery failed (${reason}); using ${safeUrl(fallback)}`);
    this.endpoint = { url: fallback, until: Date.now() + FALLBACK_TTL_MS };
    return fallback;
  }

  /** One password grant. Never logs the request or the response body (both carry secrets). */
  private async fetchToken(): Promise<CxoneToken> {
    if (this.closed)
      throw new DfoError({ key: 'network', subs: { host: 'CXone', reason: 'closed' }, retryable: true });
    const endpoint = await this.tokenEndpoint();
    this.counters.tokenFetches++;
    const form = new URLSearchParams({
      grant_type: 'password',
      username: this.creds.accessKeyId ?? '',
      password: this.creds.accessKeySecret ?? '',
    });
    const started = Date.now();
    const res = await request(this.http, {
      method: 'POST',
      url: endpoint,
      data: form.toString(),
      headers: {
        'Content-Type': 'application/x-www-form-urlencoded',
        Authorization: basicAuth(this.creds.clientId ?? '', this.creds.clientSecret ?? ''),
      },
    });
    const body = parseBody(res.data);
    if (res.status >= 200 && res.status < 300) {
      const o = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
      const at = o.access_token;
      if (typeof at !== 'string' || !at) {
        this.log.debug(
          `CXone token response without access_token; keys: ${Object.keys(o).slice(0, 20).join(',') || '(none)'}`,
        );
        throw new DfoError({ key: 'auth-no-token', code: 'no_token', retryable: true });
      }
      const ei = Number(o.expires_in);
      const lifeMs = Number.isFinite(ei) && ei > 0 ? ei * 1000 : 3600_000;
      const tenantId = tenantIdOf(o.id_token, at);
      if (!tenantId) this.log.debug('CXone token carries no tenantId claim (checked id_token, access_token)');
      return { accessToken: at, expiresAt: started + lifeMs, obtainedAt: started, tenantId };
    }
    const oauthError =
      body && typeof body === 'object' && typeof (body as { error?: unknown }).error === 'string'
        ? (body as { error: string }).error.slice(0, 60)
        : '';
    if (oauthError === 'invalid_client' || (res.status === 401 && !oauthError)) {
      throw new DfoError({
        key: 'auth-client',
        subs: { error: oauthError || 'HTTP 401' },
        status: res.status,
        code: oauthError || res.status,
        retryable: false,
      });
    }
    if (oauthError === 'invalid_grant' || oauthError === 'unauthorized_client') {
      throw new DfoError({
        key: 'auth-grant',
        subs: { error: oauthError },
        status: res.status,
        code: oauthError,
        retryable: false,
      });
    }
    const retryable = res.status === 429 || res.status >= 500 || res.status === 408;
    const detail = oauthError
      ? ` (${oauthError})`
      : (() => {
          const f = parseErrorBody(body);
          return f.length ? ` (${f[0].message.slice(0, 120)})` : '';
        })();
    throw new DfoError({
      key: 'auth-status',
      subs: { status: res.status, detail },
      status: res.status,
      code: oauthError || res.status,
      retryable,
    });
  }

  /** The DFO 3.0 base: the configured one, else `{api_endpoint}/dfo/3.0` from cxone-configuration. */
  async apiBase(): Promise<string> {
    if (this.configuredApiBase) return this.configuredApiBase;
    const t = await this.token();
    const tenant = t.tenantId;
    if (!tenant) throw new DfoError({ key: 'no-tenant', code: 'no-tenant', retryable: false });
    const hit = this.apiBases.get(tenant);
    if (hit && hit.until > Date.now()) return hit.url;
    if (!this.apiBaseInflight) {
      this.apiBaseInflight = this.discoverApiBase(tenant).finally(() => {
        this.apiBaseInflight = null;
      });
    }
    return this.apiBaseInflight;
  }

  private async discoverApiBase(tenant: string): Promise<string> {
    const key = `${this.keyPrefix}:apibase:${tenant}`;
    const stored = await this.store.get(key);
    if (stored && /^https?:\/\//.test(stored)) {
      this.apiBases.set(tenant, { url: stored, until: Date.now() + API_BASE_TTL_MS });
      return stored;
    }
    this.counters.discoveries++;
    const url = `${this.authIssuer}/.well-known/cxone-configuration?tenantId=${encodeURIComponent(tenant)}`;
    let res;
    try {
      res = await request(this.http, { method: 'GET', url });
    } catch (err) {
      const e = err as DfoError;
      throw new DfoError({
        key: 'discovery-failed',
        subs: { reason: e.message },
        code: 'discovery',
        retryable: e.retryable,
      });
    }
    const body = parseBody(res.data);
    const ep =
      res.status >= 200 && res.status < 300 && body && typeof body === 'object'
        ? (body as { api_endpoint?: unknown }).api_endpoint
        : undefined;
    if (typeof ep !== 'string' || !/^https?:\/\/[^\s/]+/i.test(ep)) {
      this.log.debug(
        `CXone cxone-configuration at ${safeUrl(url)} answered ${res.status}: ${
          typeof res.data === 'string' ? res.data.slice(0, 1000) : ''
        }`,
      );
      throw new DfoError({
        key: 'discovery-failed',
        subs: {
          reason:
            res.status >= 200 && res.status < 300
              ? 'the answer names no api_endpoint'
              : `${hostOf(url)} answered HTTP ${res.status}`,
        },
        status: res.status,
        code: 'discovery',
        retryable: res.status === 429 || res.status >= 500,
      });
    }
    if (this.authIssuer.startsWith('https:') && !ep.startsWith('https:')) {
      throw new DfoError({
        key: 'discovery-failed',
        subs: { reason: `api_endpoint ${hostOf(ep)} is not https` },
        code: 'discovery',
        retryable: false,
      });
    }
    const base = `${trimSlash(ep)}/dfo/3.0`;
    this.log.debug(`CXone DFO API base discovered for the tenant: ${base}`);
    this.apiBases.set(tenant, { url: base, until: Date.now() + API_BASE_TTL_MS });
    await this.store.set(key, base, API_BASE_TTL_MS);
    return base;
  }
}
