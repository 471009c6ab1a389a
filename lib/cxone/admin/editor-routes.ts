/**
 * The cxone-dfo-config editor's own admin routes (on `RED.httpAdmin`, behind
 * `RED.auth.needsPermission('cxone-dfo-config.write')`): "test connection", and listing, creating and removing
 * the integration's channels, so nobody needs Postman to create a channel.
 *
 * The dialog may hold credentials not yet deployed. It sends what the admin typed; a password field left as it
 * was arrives as `__PWRD__` (or not at all) and is taken from the deployed node, as core nodes treat `has_x`.
 * Every call uses a throwaway client with a private memory store, so a test never replaces the token of the
 * running integration, and it is closed afterwards. Answers are JSON with words a person can act on; never a
 * secret.
 */
import type { RequestHandler, Request, Response } from 'express';
import { MemoryStore } from '../../store/memory';
import { createDfoIntegration, type DfoCredentials, type DfoIntegration } from '../dfo';
import { DfoError } from '../dfo/errors';
import { newChannelBody, ofIntegration, summarize } from './channels';

export interface EditorConfigLike {
  authIssuer?: string;
  apiBase?: string;
  channelIntegrationId?: string;
  credentials?: DfoCredentials;
}

export interface EditorRouteDeps {
  httpAdmin: { post(path: string, ...handlers: RequestHandler[]): unknown };
  needsPermission(permission: string): RequestHandler;
  /** The deployed config node, if any. */
  getNode(id: string): EditorConfigLike | null;
  /** Saved credentials of a node not running (Node-RED's `RED.nodes.getCredentials`), if available. */
  getCredentials?(id: string): Record<string, unknown> | undefined;
  defaultIssuer: string;
  /** Words for an error (the node's catalog), falling back to the error's own English message. */
  describe?(err: DfoError): string;
  /** Extra HTTP options for the throwaway client (tests: shorter timeouts). */
  timeoutMs?: number;
}

const PLACEHOLDER = '__PWRD__';
const CRED_KEYS = ['clientId', 'clientSecret', 'accessKeyId', 'accessKeySecret'] as const;

function text(v: unknown): string | undefined {
  return typeof v === 'string' ? v.trim() : undefined;
}

function isUrl(v: string): boolean {
  return /^https?:\/\/[^\s/]+(\/[^\s]*)?$/i.test(v);
}

/** The settings to test with: the dialog's values over the deployed ones. */
export function mergeSettings(
  body: Record<string, unknown>,
  saved: EditorConfigLike | null,
  savedCreds: Record<string, unknown> | undefined,
  defaultIssuer: string,
):
  | { authIssuer: string; apiBase: string; channelIntegrationId: string; credentials: DfoCredentials }
  | { error: string } {
  const authIssuer = (text(body.authIssuer) || saved?.authIssuer || defaultIssuer).replace(/\/+$/, '');
  const apiBaseRaw = text(body.apiBase);
  const apiBase = (apiBaseRaw !== undefined ? apiBaseRaw : saved?.apiBase || '').replace(/\/+$/, '');
  if (!isUrl(authIssuer))
    return { error: 'Auth issuer must be a URL such as https://cxone.niceincontact.com' };
  if (apiBase && !isUrl(apiBase))
    return { error: 'DFO API base must be a URL such as https://api-na1.niceincontact.com/dfo/3.0' };
  const given = (body.credentials && typeof body.credentials === 'object' ? body.credentials : {}) as Record<
    string,
    unknown
  >;
  const stored: Record<string, unknown> = { ...(savedCreds ?? {}), ...(saved?.credentials ?? {}) };
  const credentials: DfoCredentials = {};
  for (const k of CRED_KEYS) {
    const v = given[k];
    if (typeof v === 'string' && v !== PLACEHOLDER) credentials[k] = v.trim();
    else if (typeof stored[k] === 'string') credentials[k] = stored[k];
  }
  const channelIntegrationId = text(body.channelIntegrationId) ?? saved?.channelIntegrationId ?? '';
  return { authIssuer, apiBase, channelIntegrationId, credentials };
}

export function registerEditorRoutes(deps: EditorRouteDeps): void {
  const perm = deps.needsPermission('cxone-dfo-config.write');
  const words = (err: unknown): string =>
    err instanceof DfoError ? (deps.describe ? deps.describe(err) : err.message) : 'internal error';

  const withIntegration = async (
    req: Request,
    res: Response,
    fn: (
      i: DfoIntegration,
      s: { authIssuer: string; apiBase: string; channelIntegrationId: string },
    ) => Promise<unknown>,
  ): Promise<void> => {
    const id = String(req.params.id ?? '');
    const body = (req.body && typeof req.body === 'object' ? req.body : {}) as Record<string, unknown>;
    let saved: EditorConfigLike | null = null;
    let savedCreds: Record<string, unknown> | undefined;
    try {
      saved = /^[A-Za-z0-9._-]{1,64}$/.test(id) ? deps.getNode(id) : null;
      savedCreds = !saved && deps.getCredentials ? deps.getCredentials(id) : undefined;
    } catch {
      saved = null;
    }
    const s = mergeSettings(body, saved, savedCreds, deps.defaultIssuer);
    res.set('Cache-Control', 'no-store');
    if ('error' in s) {
      res.status(400).json({ ok: false, error: s.error });
      return;
    }
    const integration = createDfoIntegration({
      authIssuer: s.authIssuer,
      apiBase: s.apiBase,
      credentials: s.credentials,
      store: new MemoryStore(),
      http: { timeoutMs: deps.timeoutMs ?? 15_000 },
    });
    try {
      const out = await fn(integration, s);
      res.status(200).json(out);
    } catch (err) {
      const e = err instanceof DfoError ? err : null;
      res.status(e && e.status === 400 ? 400 : 200).json({
        ok: false,
        error: words(err),
        code: e ? e.code : 'internal',
        fields: e?.fields,
      });
    } finally {
      integration.close();
    }
  };

  deps.httpAdmin.post('/cxone-dfo-config/:id/test', perm, (req, res) => {
    void withIntegration(req, res, async (i, s) => {
      const steps: { step: string; ok: boolean; detail?: string }[] = [];
      const missing = i.auth.missingCredential();
      if (missing) {
        return {
          ok: false,
          step: 'credentials',
          error: words(new DfoError({ key: 'auth-missing', subs: { what: missing }, retryable: false })),
        };
      }
      let step = 'token';
      try {
        const endpoint = await i.auth.tokenEndpoint();
        const t = await i.auth.token();
        steps.push({ step: 'token', ok: true, detail: new URL(endpoint).host });
        step = 'discovery';
        const apiBase = await i.client.apiBase();
        steps.push({ step: 'discovery', ok: true, detail: apiBase });
        step = 'channels';
        const all = await i.client.listChannels();
        const mine = ofIntegration(all, s.channelIntegrationId);
        steps.push({ step: 'channels', ok: true, detail: String(mine.length) });
        return {
          ok: true,
          steps,
          tenantId: t.tenantId ?? null,
          apiBase,
          apiBaseSource: s.apiBase ? 'configured' : 'discovered',
          channels: mine,
          filtered: !!s.channelIntegrationId,
        };
      } catch (err) {
        return {
          ok: false,
          step,
          steps,
          error: words(err),
          code: err instanceof DfoError ? err.code : 'internal',
        };
      }
    });
  });

  deps.httpAdmin.post('/cxone-dfo-config/:id/channels/list', perm, (req, res) => {
    void withIntegration(req, res, async (i, s) => {
      const all = await i.client.listChannels();
      return {
        ok: true,
        channels: ofIntegration(all, s.channelIntegrationId),
        filtered: !!s.channelIntegrationId,
      };
    });
  });

  deps.httpAdmin.post('/cxone-dfo-config/:id/channels', perm, (req, res) => {
    const body = (req.body && typeof req.body === 'object' ? req.body : {}) as Record<string, unknown>;
    const input = (body.channel && typeof body.channel === 'object' ? body.channel : {}) as Record<
      string,
      unknown
    >;
    void withIntegration(req, res, async (i, s) => {
      const built = newChannelBody(input, { channelIntegrationId: s.channelIntegrationId });
      if (!built.ok) {
        return {
          ok: false,
          error: built.problems.map((p) => `${p.field}: ${p.message}`).join('; '),
          problems: built.problems,
        };
      }
      const ch = await i.client.createChannel(built.channel);
      return { ok: true, channel: summarize(ch) };
    });
  });

  deps.httpAdmin.post('/cxone-dfo-config/:id/channels/:channelId/delete', perm, (req, res) => {
    const channelId = String(req.params.channelId ?? '');
    void withIntegration(req, res, async (i, s) => {
      if (s.channelIntegrationId) {
        const mine = ofIntegration(await i.client.listChannels(), s.channelIntegrationId).some(
          (c) => c.id === channelId,
        );
        if (!mine)
          return {
            ok: false,
            error: `channel ${channelId.slice(0, 100)} is not a channel of this integration`,
          };
      }
      await i.client.deleteChannel(channelId);
      return { ok: true, removed: channelId };
    });
  });
}
