/**
 * Calling CXone's Digital Engagement (DFO 3.0) API: authentication and discovery (auth.ts), the calls (client.ts),
 * the conversation message → create-message mapping (mapping.ts), media (attachments.ts), and the outbox's
 * Attempt (attempt.ts). No Node-RED here; the nodes wire it up.
 */
import type { Store } from '../../store/types';
import { DfoAuth, type DfoCredentials, type DfoLogger } from './auth';
import { DfoClient } from './client';
import { createDfoHttp, type DfoHttp, type DfoHttpOptions } from './http';

export * from './auth';
export * from './client';
export * from './errors';
export * from './http';
export * from './jwt';
export * from './mapping';
export * from './attachments';
export * from './attempt';

export interface DfoIntegrationOptions {
  authIssuer: string;
  apiBase?: string;
  credentials: DfoCredentials;
  store: Store;
  log?: DfoLogger;
  http?: DfoHttpOptions;
  refreshAheadMs?: number;
}

/** One integration's HTTP agents, token and client; `close()` releases the sockets. */
export interface DfoIntegration {
  readonly auth: DfoAuth;
  readonly client: DfoClient;
  readonly http: DfoHttp;
  close(): void;
}

export function createDfoIntegration(opts: DfoIntegrationOptions): DfoIntegration {
  const http = createDfoHttp(opts.http);
  const auth = new DfoAuth({
    authIssuer: opts.authIssuer,
    apiBase: opts.apiBase,
    credentials: opts.credentials,
    store: opts.store,
    http,
    log: opts.log,
    refreshAheadMs: opts.refreshAheadMs,
  });
  const client = new DfoClient(auth, http, opts.log);
  return {
    auth,
    client,
    http,
    close: () => {
      auth.close();
      http.close();
    },
  };
}
