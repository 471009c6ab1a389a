/**
 * Starts a real Node-RED (its `red.js`, as the `node-red` command does) for the sandbox, with its own user
 * directory and the pack "installed" in it the way npm would (package.json + the compiled build + examples).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

export const PACKAGE_NAME = '@wxcx/node-red-wechat-cxone';

/** The repository checkout above `start` (has package.json and tsconfig.json). */
export function findRepoRoot(start: string): string {
  let dir = start;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'tsconfig.json')))
      return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`repository root not found above ${start}`);
    dir = up;
  }
}

/** Installs the pack into `<userDir>/node_modules` as links to this checkout's build and examples. */
export function linkPack(userDir: string, repoRoot: string, buildRoot: string): void {
  const pkgDir = path.join(userDir, 'node_modules', ...PACKAGE_NAME.split('/'));
  fs.rmSync(pkgDir, { recursive: true, force: true });
  fs.mkdirSync(pkgDir, { recursive: true });
  fs.copyFileSync(path.join(repoRoot, 'package.json'), path.join(pkgDir, 'package.json'));
  fs.symlinkSync(buildRoot, path.join(pkgDir, 'dist'), 'dir');
  fs.symlinkSync(path.join(repoRoot, 'examples'), path.join(pkgDir, 'examples'), 'dir');
  fs.symlinkSync(path.join(repoRoot, 'icons'), path.join(pkgDir, 'icons'), 'dir');
}

/** `preferred` when it is free on 127.0.0.1, else any free port. */
export function freePort(preferred = 0): Promise<number> {
  const tryPort = (p: number): Promise<number> =>
    new Promise((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(p, '127.0.0.1', () => {
        const port = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(port));
      });
    });
  return preferred ? tryPort(preferred).catch(() => tryPort(0)) : tryPort(0);
}

export interface NodeRedOptions {
  userDir: string;
  port: number;
  /** red.js of the Node-RED to run. */
  redJs: string;
  /** Node binary (default: this one). */
  nodeBin?: string;
  /** Extra settings.js properties. */
  settings?: Record<string, unknown>;
  /** Where Node-RED's output goes (a file), besides `onLine`. */
  logFile?: string;
  onLine?: (line: string) => void;
  startTimeoutMs?: number;
}

export interface RunningNodeRed {
  url: string;
  child: ChildProcess;
  logs(): string;
  waitForLog(re: RegExp, timeoutMs?: number, from?: number): Promise<string>;
  stop(): Promise<void>;
}

export function settingsJs(port: number, extra: Record<string, unknown> = {}): string {
  const s = {
    uiHost: '127.0.0.1',
    uiPort: port,
    flowFile: 'flows.json',
    // The sandbox's credentials are the simulators' and nothing else: kept readable on purpose.
    credentialSecret: false,
    logging: { console: { level: 'info', metrics: false, audit: false } },
    editorTheme: { tours: false },
    telemetry: { enabled: false, updateNotification: false },
    diagnostics: { enabled: false },
    ...extra,
  };
  return `// Written by the sandbox (sandbox/node-red.ts) at every start.\nmodule.exports = ${JSON.stringify(s, null, 2)};\n`;
}

export async function startNodeRed(o: NodeRedOptions): Promise<RunningNodeRed> {
  fs.mkdirSync(o.userDir, { recursive: true });
  const settings = path.join(o.userDir, 'settings.js');
  fs.writeFileSync(settings, settingsJs(o.port, o.settings));
  const logStream = o.logFile ? fs.createWriteStream(o.logFile, { flags: 'w' }) : null;
  const child = spawn(
    o.nodeBin ?? process.execPath,
    [o.redJs, '--userDir', o.userDir, '--port', String(o.port), '--settings', settings],
    { cwd: o.userDir, env: { ...process.env, NODE_ENV: 'production' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let partial = '';
  const waiters = new Set<() => void>();
  const onData = (b: Buffer): void => {
    const s = b.toString('utf8');
    out += s;
    if (out.length > 2_000_000) out = out.slice(-1_000_000);
    logStream?.write(s);
    partial += s;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) o.onLine?.(l);
    for (const w of [...waiters]) w();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code) => {
      exitCode = code;
      logStream?.end();
      for (const w of [...waiters]) w();
      resolve();
    }),
  );

  const waitForLog = (re: RegExp, timeoutMs = 30_000, from = 0): Promise<string> =>
    new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined = undefined;
      const check = (): void => {
        const m = re.exec(out.slice(from));
        if (m) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(m[0]);
        } else if (exitCode !== undefined) {
          waiters.delete(check);
          clearTimeout(timer);
          reject(new Error(`Node-RED exited (${exitCode}). Its last output:\n${out.slice(-3000)}`));
        }
      };
      timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`Node-RED did not log ${String(re)} in ${timeoutMs} ms:\n${out.slice(-3000)}`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });

  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  };

  try {
    const line = await waitForLog(/Server now running at (http:\/\/\S+)/, o.startTimeoutMs ?? 60_000);
    const url = /(http:\/\/\S+?)\/?$/.exec(line.replace(/^.*running at /, ''))?.[1] ?? '';
    await waitForLog(/Started flows|No flows found/, 30_000);
    return { url: url.replace(/\/$/, ''), child, logs: () => out, waitForLog, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
