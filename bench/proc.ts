/**
 * The benchmark's child processes: each contender and the far side run in their own process (so RSS and CPU are
 * theirs), started with `fork()` so the driver can talk to them over IPC. Contenders get bench/agent.js preloaded
 * (garbage collection and memory figures on request); RSS is also read from /proc while they work.
 */
import { fork, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface MemInfo {
  memory: NodeJS.MemoryUsage;
  cpuMs: number;
  /** Of `cpuMs`, the time spent in the kernel. */
  sysMs?: number;
  maxRssKiB: number;
  gc: boolean;
  timeOrigin?: number;
}

export interface StartOptions {
  /** A name for logs and errors. */
  name: string;
  script: string;
  args?: string[];
  cwd?: string;
  env?: Record<string, string>;
  /** Preload the agent (contenders). */
  agent?: boolean;
  /** Extra node options, e.g. ['--cpu-prof', '--cpu-prof-dir=…']. */
  execArgv?: string[];
  /** Also append everything the child prints to this file (`--child-logs`; e.g. with `--node-args --trace-gc`). */
  logFile?: string;
  /** How the child says it is ready: an IPC message `{ready, port}` (default) or a log line. */
  readyLog?: RegExp;
  startTimeoutMs?: number;
}

export class Child {
  private out = '';
  private seq = 0;
  private readonly waiting = new Map<number, (data: unknown) => void>();
  private readonly exited: Promise<number | null>;
  port = 0;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    const onData = (b: Buffer): void => {
      this.out += b.toString('utf8');
      if (this.out.length > 200_000) this.out = this.out.slice(-100_000);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('message', (m: { id?: number; data?: unknown }) => {
      if (m && typeof m.id === 'number') {
        const w = this.waiting.get(m.id);
        if (w) {
          this.waiting.delete(m.id);
          w(m.data);
        }
      }
    });
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  logs(): string {
    return this.out;
  }

  /** Sends `msg` over IPC and waits for the answer with the same id. */
  ask<T = unknown>(msg: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
    const id = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`${this.name} did not answer ${JSON.stringify(msg)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, (d) => {
        clearTimeout(t);
        resolve(d as T);
      });
      this.child.send({ ...msg, id });
    });
  }

  /** Memory and CPU figures from the agent; `gc` collects garbage first. */
  mem(gc = false): Promise<MemInfo> {
    return this.ask<MemInfo>({ agent: true, cmd: 'mem', gc }, 60_000);
  }

  /** Resident set size now and at its peak, KiB, from /proc (0 when unavailable). */
  rss(): { rssKiB: number; hwmKiB: number } {
    try {
      const s = fs.readFileSync(`/proc/${this.pid}/status`, 'utf8');
      const num = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? 0);
      return { rssKiB: num('VmRSS'), hwmKiB: num('VmHWM') };
    } catch {
      return { rssKiB: 0, hwmKiB: 0 };
    }
  }

  /** Stops the child: SIGINT (Node-RED stops its flows and a CPU profile is written), SIGKILL after 15 s. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill('SIGINT');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }
}

/** Starts a child and waits until it is ready (its port is known). */
export async function start(o: StartOptions): Promise<Child> {
  const execArgv = ['--expose-gc', ...(o.execArgv ?? [])];
  if (o.agent) execArgv.push('--require', path.join(__dirname, 'agent.js'));
  const cp = fork(o.script, o.args ?? [], {
    cwd: o.cwd,
    env: { ...process.env, NODE_ENV: 'production', ...o.env },
    execArgv,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const c = new Child(o.name, cp);
  if (o.logFile) {
    const log = fs.createWriteStream(o.logFile, { flags: 'a' });
    cp.stdout?.pipe(log);
    cp.stderr?.pipe(log);
  }
  const timeoutMs = o.startTimeoutMs ?? 60_000;
  await new Promise<void>((resolve, reject) => {
    let done = false;
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearInterval(poll);
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(
      () => finish(new Error(`${o.name} did not start within ${timeoutMs} ms:\n${c.logs().slice(-3000)}`)),
      timeoutMs,
    );
    cp.once('exit', (code) =>
      finish(new Error(`${o.name} exited (${code}) while starting:\n${c.logs().slice(-3000)}`)),
    );
    cp.on('message', (m: { ready?: boolean; port?: number }) => {
      if (m && m.ready && typeof m.port === 'number') {
        c.port = m.port;
        finish();
      }
    });
    const poll = setInterval(() => {
      if (!o.readyLog) return;
      const m = o.readyLog.exec(c.logs());
      if (m) {
        c.port = Number(m[1]);
        finish();
      }
    }, 50);
  });
  return c;
}
