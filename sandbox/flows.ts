/**
 * The sandbox's flow: the bridge example (examples/WeChat to CXone bridge.json) as a newcomer would import it,
 * with its config nodes pointed at the simulators and the credentials filled in. A flow saved earlier in the
 * sandbox's user directory is kept (so edits survive a restart); only its config nodes are re-pointed, since the
 * simulators get new ports and secrets at every start.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const BRIDGE_EXAMPLE = 'WeChat to CXone bridge.json';
export const SANDBOX_TAB = 'wxcxsandboxtab01';

export type FlowNode = Record<string, unknown> & { id: string; type: string };

export interface SimSettings {
  wechat: {
    appId: string;
    apiBase: string;
    credentials: { appSecret: string; token: string; encodingAESKey: string };
  };
  cxone: {
    authIssuer: string;
    apiBase: string;
    /** The Integration ID CXone shows for the BYOC integration (the simulator's channels carry it). */
    channelIntegrationId: string;
    credentials: {
      clientId: string;
      clientSecret: string;
      accessKeyId: string;
      accessKeySecret: string;
      boxClientId: string;
      boxClientSecret: string;
      jwtSecret: string;
    };
  };
  channelId: string;
}

const CONFIG_TYPES = new Set(['wechat-config', 'cxone-dfo-config']);

/** The example as it is in the Import menu, on a tab of its own. */
export function exampleFlow(repoRoot: string, file = BRIDGE_EXAMPLE): FlowNode[] {
  const name = file.endsWith('.json') ? file : `${file}.json`;
  const full = path.join(repoRoot, 'examples', name);
  if (!fs.existsSync(full)) {
    const known = fs.readdirSync(path.join(repoRoot, 'examples')).map((f) => f.replace(/\.json$/, ''));
    throw new Error(`no example "${file}"; the examples are: ${known.join(', ')}`);
  }
  const nodes = JSON.parse(fs.readFileSync(full, 'utf8')) as FlowNode[];
  const tab: FlowNode = {
    id: SANDBOX_TAB,
    type: 'tab',
    label: `Sandbox: ${name.replace(/\.json$/, '')}`,
    disabled: false,
    info: `The example "${name.replace(/\.json$/, '')}", deployed by \`npm run sandbox\` with its config nodes pointed at the local simulators.`,
  };
  const isConfig = (n: FlowNode): boolean => CONFIG_TYPES.has(n.type) || !('wires' in n);
  return [tab, ...nodes.map((n) => (isConfig(n) ? { ...n } : { ...n, z: SANDBOX_TAB }))];
}

/**
 * Points every config node at the simulators, and every out node at the sandbox's channel, with what a
 * loopback-only setup needs (plain http, private addresses allowed). Returns the flow and its credentials.
 */
export function pointAtSimulators(
  flow: FlowNode[],
  s: SimSettings,
  store?: string,
): { flow: FlowNode[]; credentials: Record<string, Record<string, string>> } {
  const credentials: Record<string, Record<string, string>> = {};
  const st = store ? { store } : {};
  const out = flow.map((n) => {
    switch (n.type) {
      case 'wechat-config':
        credentials[n.id] = { ...s.wechat.credentials };
        return { ...n, ...st, appId: s.wechat.appId, apiBase: s.wechat.apiBase, allowPrivateNetwork: true };
      case 'cxone-dfo-config':
        credentials[n.id] = { ...s.cxone.credentials };
        return {
          ...n,
          ...st,
          authIssuer: s.cxone.authIssuer,
          apiBase: s.cxone.apiBase,
          channelIntegrationId: s.cxone.channelIntegrationId,
          allowPrivateNetwork: true,
        };
      case 'cxone-dfo-out':
        return { ...n, channelId: n.channelId || s.channelId, allowPrivateNetwork: true };
      case 'wechat-out':
        return { ...n, allowPrivateNetwork: true };
      default:
        return n;
    }
  });
  return { flow: out, credentials };
}

/** Writes flows.json and flows_cred.json (plain: the sandbox runs with credentialSecret false). */
export function writeFlows(
  userDir: string,
  s: SimSettings,
  opts: {
    repoRoot: string;
    reset?: boolean;
    store?: string;
    /** An example other than the bridge (file name, with or without .json); implies reset. */
    example?: string;
    /** Changes the flow before it is written (tests). */
    transform?: (flow: FlowNode[]) => FlowNode[];
  },
): { kept: boolean; flow: FlowNode[] } {
  const file = path.join(userDir, 'flows.json');
  let base: FlowNode[] | null = null;
  if (!opts.reset && !opts.example && fs.existsSync(file)) {
    try {
      const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
      if (Array.isArray(saved) && saved.some((n: FlowNode) => CONFIG_TYPES.has(n?.type)))
        base = saved as FlowNode[];
    } catch {
      base = null;
    }
  }
  const kept = base !== null;
  const pointed = pointAtSimulators(base ?? exampleFlow(opts.repoRoot, opts.example), s, opts.store);
  const flow = opts.transform ? opts.transform(pointed.flow) : pointed.flow;
  const credentials = pointed.credentials;
  fs.mkdirSync(userDir, { recursive: true });
  fs.writeFileSync(file, JSON.stringify(flow, null, 2));
  // Credentials of other nodes the user added in the sandbox are kept.
  let oldCreds: Record<string, Record<string, string>> = {};
  const credFile = path.join(userDir, 'flows_cred.json');
  if (kept && fs.existsSync(credFile)) {
    try {
      oldCreds = JSON.parse(fs.readFileSync(credFile, 'utf8')) as Record<string, Record<string, string>>;
    } catch {
      oldCreds = {};
    }
  }
  fs.writeFileSync(credFile, JSON.stringify({ ...oldCreds, ...credentials }, null, 2));
  return { kept, flow };
}
