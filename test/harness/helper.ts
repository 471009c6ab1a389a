/**
 * node-red-node-test-helper, wired for this pack: loads our six node modules into the helper's runtime, and
 * serves that runtime's `RED.httpNode` on a real loopback HTTP server so endpoints are tested with real requests.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { NODE_TYPES, nodeModule } from './paths';
import { nodeRedMain } from './runtime';
import { attachHelperRuntime, secretScan } from './secret-scan';

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const helper = require('node-red-node-test-helper');
helper.init(nodeRedMain());

export interface TestRuntime {
  /** Base URL of the server that serves `RED.httpNode` (no trailing slash; add `httpNodeRoot` paths yourself). */
  url: string;
  getNode<T = any>(id: string): T;
  /** Every `RED.httpNode` request goes through this server. */
  server: http.Server;
  close(): Promise<void>;
}

/** Starts the helper's server (for comms) once per file; call from a mocha `before`. */
export async function startHelper(settings?: Record<string, unknown>): Promise<void> {
  if (settings) helper.settings(settings);
  await helper.startServer();
}

export async function stopHelper(): Promise<void> {
  await helper.unload();
  await helper.stopServer();
  helper.settings({});
}

/**
 * Loads `flow` (and `credentials` keyed by node id) with all six node types registered, and serves the
 * runtime's httpNode app on 127.0.0.1.
 */
export async function loadFlow(
  flow: Record<string, unknown>[],
  credentials: Record<string, Record<string, string>> = {},
): Promise<TestRuntime> {
  let httpNode: http.RequestListener | undefined;
  secretScan.registerCredentials(credentials, 'loadFlow'); // the secret scan (test/harness/secret-scan.ts)
  attachHelperRuntime(helper);
  const probe = (RED: any): void => {
    httpNode = RED.httpNode;
  };
  await helper.load([...NODE_TYPES.map((t) => nodeModule(t)), probe], flow, credentials);
  if (!httpNode) throw new Error('the test runtime has no httpNode');
  const server = http.createServer(httpNode);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    getNode: (id: string) => helper.getNode(id),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await helper.unload();
    },
  };
}
