/**
 * cxone-dfo-config: one CXone BYOC integration. What CXone presents to our token endpoint, how we call CXone's
 * Digital Engagement API, and the key that signs the tokens we issue.
 *
 * Each config node owns its DFO client (lib/cxone/dfo): its own HTTP agents, and its token under a store key of
 * its own account, so several integrations (tenants) side by side never share a token. The editor gets admin
 * routes (lib/cxone/admin/editor-routes.ts) to test the connection and to manage channels.
 */
import { registerEditorRoutes } from '../lib/cxone/admin/editor-routes';
import { createDfoIntegration, localizeDfoMessage, type DfoIntegration } from '../lib/cxone/dfo';
import { DEFAULT_AUTH_ISSUER, type CxoneConfigDef, type CxoneConfigNode } from './defs';
import { storeForConfig } from './store';
import type { NodeAPI } from './types';

export = function register(RED: NodeAPI): void {
  function CxoneDfoConfig(this: CxoneConfigNode, def: CxoneConfigDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: CxoneConfigNode, def: CxoneConfigDef): void {
    node.store = storeForConfig(RED, node, def);
    node.name = def.name;
    node.authIssuer = String(def.authIssuer || DEFAULT_AUTH_ISSUER)
      .trim()
      .replace(/\/+$/, '');
    node.apiBase = String(def.apiBase ?? '')
      .trim()
      .replace(/\/+$/, '');
    node.channelIntegrationId = String(def.channelIntegrationId ?? '').trim();
    let integration: DfoIntegration | null = null;
    let closed = false;
    // Created on first use; after close the same (closed) client is handed out, never a new one that would leak.
    node.dfo = (): DfoIntegration => {
      if (!integration) {
        const c = node.credentials ?? {};
        integration = createDfoIntegration({
          authIssuer: node.authIssuer,
          apiBase: node.apiBase,
          credentials: {
            clientId: (c.clientId ?? '').trim(),
            clientSecret: c.clientSecret ?? '',
            accessKeyId: (c.accessKeyId ?? '').trim(),
            accessKeySecret: c.accessKeySecret ?? '',
          },
          store: node.store,
          log: { debug: (m) => node.debug(m), warn: (m) => node.warn(m) },
        });
        if (closed) integration.close();
      }
      return integration;
    };
    node.on('close', (_removed: boolean, done: () => void) => {
      closed = true;
      integration?.close();
      done();
    });
  }

  RED.nodes.registerType('cxone-dfo-config', CxoneDfoConfig, {
    credentials: {
      clientId: { type: 'password' },
      clientSecret: { type: 'password' },
      accessKeyId: { type: 'password' },
      accessKeySecret: { type: 'password' },
      boxClientId: { type: 'text' },
      boxClientSecret: { type: 'password' },
      jwtSecret: { type: 'password' },
      /** The store's Redis password (nodes/store.ts), when the store is Redis. */
      redisPassword: { type: 'password' },
    },
  });

  const nodesApi = RED.nodes as NodeAPI['nodes'] & { getCredentials?(id: string): Record<string, unknown> };
  registerEditorRoutes({
    httpAdmin: RED.httpAdmin,
    needsPermission: (p) => RED.auth.needsPermission(p),
    getNode: (id) => {
      const n = RED.nodes.getNode(id) as (CxoneConfigNode & { type: string }) | null;
      return n && n.type === 'cxone-dfo-config' ? n : null;
    },
    getCredentials: nodesApi.getCredentials ? (id) => nodesApi.getCredentials?.(id) : undefined,
    defaultIssuer: DEFAULT_AUTH_ISSUER,
    describe: (e) => localizeDfoMessage(e.key, e.subs, e.message, (k, s) => RED._(k, s), 'cxone-dfo-config'),
  });
};
