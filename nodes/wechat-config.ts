/**
 * wechat-config: one WeChat Official Account (服务号). Holds the AppID, the API host and the secrets (as Node-RED
 * credentials); owns the account's API client (lib/wechat/api): the access token shared by every node that uses
 * the account (and, through the store, by every Node-RED instance), media upload and download.
 *
 * Other nodes use `config.api` (a `WechatApi`, created on first use, closed with this node):
 *   - wechat-out: `createWechatAttempt(config.api)`, `config.api.sendCustom(…)`
 *   - wechat-in:  `config.api.getMedia(mediaId, {signal})` for its media links
 *
 * The editor's "Test connection" button posts to `wechat-config/:id/test` (admin API, `wechat-config.write`).
 */
import type { Request, Response } from 'express';
import { outboundPolicyOf } from '../lib/http/outbound-guard';
import { MemoryStore } from '../lib/store/memory';
import { WechatApi, type TestConnectionResult } from '../lib/wechat/api/client';
import { API_BASE_RE as URL_RE, APPID_RE, configProblems } from '../lib/wechat/api/config';
import type { TokenMode } from '../lib/wechat/api/token';
import { DEFAULT_WECHAT_API, type WechatConfigDef, type WechatConfigNode } from './defs';
import { healthFor, storeForConfig } from './store';
import type { NodeAPI } from './types';

/** wechat-config's properties beyond docs/contract.md's first list (added, see the contract). */
interface WechatConfigDefEx extends WechatConfigDef {
  /** 'stable' (default): /cgi-bin/stable_token; 'classic': /cgi-bin/token. */
  tokenMode?: string;
  /** Also fetch attachment and video URLs over http:// and from private addresses (default false). */
  allowPrivateNetwork?: boolean | string;
  /** Hosts attachment and video URLs may come from (comma/space separated; empty: any public host). */
  allowedHosts?: string;
}

/** The running config node, with what this file adds. */
type WechatConfigRuntime = WechatConfigNode & { tokenMode: TokenMode };

const str = (v: unknown): string => (typeof v === 'string' ? v.trim() : '');

export = function register(RED: NodeAPI): void {
  function WechatConfig(this: WechatConfigRuntime, def: WechatConfigDefEx): void {
    RED.nodes.createNode(this, def);
    this.store = storeForConfig(RED, this, def);
    this.name = def.name;
    this.appId = String(def.appId ?? '').trim();
    this.apiBase = String(def.apiBase || DEFAULT_WECHAT_API)
      .trim()
      .replace(/\/+$/, '');
    this.tokenMode = def.tokenMode === 'classic' ? 'classic' : 'stable';

    const creds = this.credentials ?? {};
    const problems = configProblems(this.appId, this.apiBase, creds);
    if (problems.length) {
      // Config nodes show no status in the editor; the warning goes to the log and the debug sidebar.
      for (const p of problems)
        this.warn(RED._(`wechat-config.warn.${p}`, { length: String(creds.encodingAESKey?.length ?? 0) }));
      this.status({ fill: 'red', shape: 'ring', text: RED._('wechat-config.status.invalid') });
    }

    // One client per deployed node: created on first use, closed with the node (a call made after that fails as
    // "abandoned", which the outbox retries with the node that replaces this one).
    let api: WechatApi | undefined;
    Object.defineProperty(this, 'api', {
      enumerable: false,
      get: (): WechatApi => {
        api ??= new WechatApi({
          appId: this.appId,
          appSecret: () => this.credentials?.appSecret,
          apiBase: this.apiBase,
          store: this.store,
          tokenMode: this.tokenMode,
          outbound: outboundPolicyOf(def),
        });
        return api;
      },
    });

    // The health endpoint shows the token's age and fetch counts (never the token).
    healthFor(RED, this, () => (api ? { token: api.tokens.figures() } : {}));

    this.on('close', (_removed: boolean, done: () => void) => {
      api?.close();
      done();
    });
  }

  RED.nodes.registerType('wechat-config', WechatConfig, {
    credentials: {
      appSecret: { type: 'password' },
      token: { type: 'password' },
      encodingAESKey: { type: 'password' },
      /** The store's Redis password (nodes/store.ts), when the store is Redis. */
      redisPassword: { type: 'password' },
    },
  });

  // ---- the editor's "Test connection" ---------------------------------------------------------------------
  //
  // Body (all optional): {appId, apiBase, tokenMode, appSecret} from the open dialog. A field left empty (or the
  // editor's "__PWRD__" placeholder for a saved password) means "the deployed node's value". Answers
  // {ok, code?, reason?, reasonZh?, expiresIn?, host?, mode}; never echoes a secret.
  async function testRoute(req: Request, res: Response): Promise<void> {
    const id = String(req.params.id ?? '');
    const body = (req.body && typeof req.body === 'object' ? req.body : {}) as Record<string, unknown>;
    const deployed = RED.nodes.getNode(id) as WechatConfigRuntime | null;
    const node = deployed && deployed.type === 'wechat-config' ? deployed : null;
    const appId = str(body.appId) || node?.appId || '';
    const apiBase = (str(body.apiBase) || node?.apiBase || DEFAULT_WECHAT_API).replace(/\/+$/, '');
    const mode: TokenMode =
      body.tokenMode === 'classic' || body.tokenMode === 'stable'
        ? body.tokenMode
        : (node?.tokenMode ?? 'stable');
    const typed = str(body.appSecret);
    const secret = typed && typed !== '__PWRD__' ? typed : node?.credentials?.appSecret;
    const fail = (status: number, code: string): void => {
      res.status(status).json({
        ok: false,
        mode,
        code,
        reason: RED._(`wechat-config.test.${code}`),
      } satisfies Partial<TestConnectionResult> & { reason: string });
    };
    if (!APPID_RE.test(appId)) return fail(400, 'bad-appid');
    if (!URL_RE.test(apiBase)) return fail(400, 'bad-apibase');
    if (!secret) return fail(400, 'no-secret');

    // The deployed node's own client when the dialog tests what is deployed (a classic token fetched here then
    // replaces the one in use, as WeChat just made it current); otherwise a throwaway client with its own store.
    const same =
      node &&
      node.appId === appId &&
      node.apiBase === apiBase &&
      node.tokenMode === mode &&
      node.credentials?.appSecret === secret;
    const api = same
      ? node.api
      : new WechatApi({
          appId,
          appSecret: () => secret,
          apiBase,
          store: new MemoryStore(),
          tokenMode: mode,
          retries: 0,
          timeoutMs: 8_000,
        });
    let r: TestConnectionResult;
    try {
      r = await api.testConnection();
    } finally {
      if (!same) api.close();
    }
    res.json({
      ok: r.ok,
      mode: r.mode,
      host: r.host,
      expiresIn: r.expiresIn,
      code: r.code,
      reason: r.message,
      reasonZh: r.messageZh,
    });
  }

  RED.httpAdmin.post(
    '/wechat-config/:id/test',
    RED.auth.needsPermission('wechat-config.write'),
    (req, res) => {
      testRoute(req, res).catch(() => {
        if (!res.headersSent)
          res.status(500).json({ ok: false, code: 'error', reason: RED._('wechat-config.test.error') });
      });
    },
  );
};
