/**
 * A real Node-RED started the way users start it: `node-red` (red.js) with a user directory, our package in its
 * node_modules, default settings unless a test asks otherwise (editor and endpoints on one port and root).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildRoot, repoRoot } from './paths';
import { nodeRedBin } from './runtime';
import { childLogLevel, childScanEnv, secretScan, tapSnippet } from './secret-scan';

export interface NodeRedProcessOptions {
  /** Extra settings.js properties (JSON-serialisable). Default: none, i.e. Node-RED's defaults. */
  settings?: Record<string, unknown>;
  /** Initial flows.json. */
  flows?: unknown[];
  /** flows_cred.json content keyed by node id (stored unencrypted: the tests set credentialSecret false). */
  credentials?: Record<string, Record<string, string>>;
  /** Use this user directory (to restart on the same state); a new temporary one otherwise. */
  userDir?: string;
  /** Install the package under test into the user directory (symlinked build). Default true. */
  linkPackage?: boolean;
  /** Extra environment. */
  env?: Record<string, string>;
  /** Node binary (default: the one running the tests). */
  nodeBin?: string;
  startTimeoutMs?: number;
  /** Extra arguments for node before red.js (e.g. `--expose-gc`). */
  nodeArgs?: string[];
  /** Keep at most this many characters of output in `logs()` (the newest); default: all. */
  maxLogChars?: number;
}

export interface NodeRedProcess {
  url: string;
  port: number;
  userDir: string;
  child: ChildProcess;
  /** Everything Node-RED wrote to stdout and stderr so far. */
  logs(): string;
  /** Waits until a line matching `re` has been logged. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Replaces the flows through the Admin API (a full deploy), with credentials per node id. */
  deploy(flows: unknown[], credentials?: Record<string, Record<string, string>>): Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const PACKAGE_NAME = '@wxcx/node-red-wechat-cxone';

/** Makes `<userDir>/node_modules/<our package>` point at the build these tests belong to. */
export function linkPackageInto(userDir: string): void {
  const pkgDir = path.join(userDir, 'node_modules', ...PACKAGE_NAME.split('/'));
  fs.rmSync(pkgDir, { recursive: true, force: true });
  fs.mkdirSync(pkgDir, { recursive: true });
  fs.copyFileSync(path.join(repoRoot, 'package.json'), path.join(pkgDir, 'package.json'));
  fs.symlinkSync(buildRoot, path.join(pkgDir, 'dist'), 'dir');
  fs.symlinkSync(path.join(repoRoot, 'examples'), path.join(pkgDir, 'examples'), 'dir');
}

export function settingsFile(settings: Record<string, unknown>): string {
  const base = {
    flowFile: 'flows.json',
    credentialSecret: false,
    uiHost: '127.0.0.1',
    logging: { console: { level: childLogLevel() ?? 'info', metrics: false, audit: false } },
    ...settings,
  };
  // The secret scan's tap (test/harness/secret-scan.ts): node status and comms to a file; empty when not scanning.
  const utilPath = path.dirname(
    require.resolve('@node-red/util/package.json', { paths: [path.dirname(nodeRedBin())] }),
  );
  return `module.exports = ${JSON.stringify(base, null, 2)};\n${tapSnippet(utilPath)}`;
}

export async function startNodeRed(opts: NodeRedProcessOptions = {}): Promise<NodeRedProcess> {
  const userDir = opts.userDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'wxcx-nr-'));
  if (!opts.userDir || !fs.existsSync(path.join(userDir, 'settings.js'))) {
    fs.writeFileSync(path.join(userDir, 'settings.js'), settingsFile(opts.settings ?? {}));
  }
  if (opts.flows) fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(opts.flows));
  if (opts.credentials)
    fs.writeFileSync(path.join(userDir, 'flows_cred.json'), JSON.stringify(opts.credentials));
  secretScan.registerCredentials(opts.credentials, 'startNodeRed');
  if (opts.linkPackage !== false) linkPackageInto(userDir);

  const child = spawn(
    opts.nodeBin ?? process.execPath,
    [
      ...(opts.nodeArgs ?? []),
      nodeRedBin(),
      '--userDir',
      userDir,
      '--port',
      '0',
      '--settings',
      path.join(userDir, 'settings.js'),
    ],
    {
      cwd: userDir,
      env: { ...process.env, NODE_ENV: 'production', ...childScanEnv(), ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  const source = `red.js ${child.pid ?? '?'}`;
  const onData = (b: Buffer): void => {
    secretScan.capture(source, b);
    out += b.toString('utf8');
    if (opts.maxLogChars && out.length > opts.maxLogChars) out = out.slice(-opts.maxLogChars);
    for (const w of [...waiters]) {
      const m = w.re.exec(out);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m[0]);
      }
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const waitForLog = (re: RegExp, timeoutMs = 20_000): Promise<string> =>
    new Promise<string>((resolve, reject) => {
      const m = re.exec(out);
      if (m) {
        resolve(m[0]);
        return;
      }
      const w = { re, resolve: (l: string) => (clearTimeout(t), resolve(l)) };
      const t = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        reject(
          new Error(
            `Node-RED did not log ${String(re)} within ${timeoutMs} ms. Output:\n${out.slice(-4000)}`,
          ),
        );
      }, timeoutMs);
      waiters.push(w);
      void exited.then((code) => {
        if (waiters.includes(w)) {
          clearTimeout(t);
          waiters.splice(waiters.indexOf(w), 1);
          reject(
            new Error(`Node-RED exited (${code}) before logging ${String(re)}. Output:\n${out.slice(-4000)}`),
          );
        }
      });
    });

  const line = await waitForLog(/Server now running at (http:\/\/[^\s]+)/, opts.startTimeoutMs ?? 30_000);
  const m = /:(\d+)\//.exec(line);
  const port = Number(m?.[1]);
  const url = `http://127.0.0.1:${port}`;
  // Flows start after the server listens; wait for them.
  await waitForLog(/Started flows|No flows found|Stopped flows/, 20_000).catch(() => undefined);

  return {
    url,
    port,
    userDir,
    child,
    logs: () => out,
    waitForLog,
    async deploy(flows, credentials) {
      secretScan.registerCredentials(credentials, 'deploy');
      const body = (flows as Record<string, unknown>[]).map((n) =>
        credentials && credentials[n.id as string] ? { ...n, credentials: credentials[n.id as string] } : n,
      );
      const before = out.length;
      const res = await fetch(`${url}/flows`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
        body: JSON.stringify(body),
      });
      if (res.status !== 204 && res.status !== 200)
        throw new Error(`deploy failed: ${res.status} ${await res.text()}`);
      // Wait until this deploy's flows have started.
      const started = (): boolean => /Started flows/.test(out.slice(before));
      const t0 = Date.now();
      while (!started()) {
        if (Date.now() - t0 > 15_000)
          throw new Error('flows did not start after deploy:\n' + out.slice(before));
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}
