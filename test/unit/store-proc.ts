/** A child node process for the store tests, read line by line (not a test file itself). */
import { spawn, type ChildProcess } from 'node:child_process';

export interface Child {
  proc: ChildProcess;
  /** Every complete line the child printed on stdout so far. */
  lines: string[];
  stderr(): string;
  waitFor(pred: (lines: string[]) => boolean, timeoutMs?: number): Promise<void>;
  /** Writes a line to the child's stdin. */
  send(line: string): void;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function spawnChild(script: string, args: string[], env: Record<string, string> = {}): Child {
  const proc = spawn(process.execPath, [script, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const lines: string[] = [];
  let partial = '';
  const waiters: (() => void)[] = [];
  const wake = (): void => {
    for (const w of waiters.splice(0)) w();
  };
  proc.stdout.on('data', (b: Buffer) => {
    const parts = (partial + b.toString('utf8')).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
    wake();
  });
  let err = '';
  proc.stderr.on('data', (b: Buffer) => (err += b.toString()));
  proc.stdin.on('error', () => undefined);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => {
      wake();
      resolve({ code, signal });
    }),
  );
  return {
    proc,
    lines,
    exited,
    stderr: () => err,
    send(line: string) {
      proc.stdin.write(line + '\n');
    },
    async waitFor(pred, timeoutMs = 15_000) {
      const end = Date.now() + timeoutMs;
      while (!pred(lines)) {
        if (Date.now() > end) throw new Error(`child: timed out; stderr: ${err.slice(0, 500)}`);
        if (proc.exitCode !== null || proc.signalCode !== null)
          throw new Error(`child exited (${proc.exitCode ?? proc.signalCode}); stderr: ${err.slice(0, 500)}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
    },
  };
}
