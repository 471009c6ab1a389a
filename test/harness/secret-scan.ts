/**
 * The secret scan: every secret the tests hand to a runtime or that a runtime or simulator issues is recorded here,
 * every line of output the suite produces is captured, and at the end of the run no secret may appear anywhere.
 *
 * What is recorded (process-wide, one registry even if two builds of this file are loaded):
 * - every credential given to `loadFlow` (test helper), `startNodeRed` / `deploy` (red.js), except the ones the
 *   nodes declare as `text` (identifiers, not secrets);
 * - every token in a JSON answer seen in this process: answers of our in-process servers (the simulators, the test
 *   helper's runtime: WeChat access tokens, CXone access/refresh/id tokens, one-time-token exchanges, the box's
 *   JWTs) and answers received by tests (`fetch` and `http.request` clients: the box JWTs a red.js issues);
 * - with each value its derived forms: URL-encoded, form-encoded, JSON-escaped, and base64/base64url at all three
 *   alignments (so a secret inside a longer base64 text, such as a Basic header, is found too).
 *
 * What is scanned: this process's stdout and stderr (mocha and everything the tests print), every red.js child's
 * stdout and stderr (test/harness/process.ts; those children log at trace level during the scan and also write
 * their node status, debug-sidebar and notification traffic to a tap file), and the test helper's runtime: every
 * `RED.log` call at any level (node.log/warn/error/debug/trace included, errors inspected with their properties),
 * every node status and every comms message (debug output).
 *
 * Active only when loaded as a mocha root hook plugin (`--require …/secret-scan.js`, as scripts/test.js does);
 * otherwise the registry only records. Values shorter than 8 characters are not scanned (too many innocent
 * matches) and are counted as such.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import * as util from 'node:util';

/** Shortest value (and derived form) scanned for. */
export const MIN_SECRET_LENGTH = 8;
/** Credential names the nodes declare as `type: 'text'`: identifiers shown in the editor, not secrets. */
export const TEXT_CREDENTIALS = new Set(['boxClientId']);
/** Keys of JSON answers whose string values are issued secrets. */
const TOKEN_KEYS = new Set([
  'access_token',
  'refresh_token',
  'id_token',
  'accessToken',
  'refreshToken',
  'idToken',
  'client_secret',
  'clientSecret',
]);

export interface Finding {
  /** What the secret is ("credential wc.appSecret", "token from POST /cgi-bin/token" …). */
  label: string;
  /** Which form was found: raw, url, form, json, base64, base64url. */
  form: string;
  /** Where: "mocha stdout", "red.js 1234", "helper log" … */
  source: string;
  /** The line, with every secret in it replaced by ‹label›, cut to 240 characters around the find. */
  excerpt: string;
}

export interface ScanReport {
  secrets: number;
  forms: number;
  tooShort: number;
  lines: number;
  bytes: number;
  sources: string[];
  findings: Finding[];
}

const K = 8; // window of the rolling hash = MIN_SECRET_LENGTH
const B = 31;
let BK = 1;
for (let i = 0; i < K; i++) BK = Math.imul(BK, B);

function windowHash(s: string, from: number): number {
  let h = 0;
  for (let i = 0; i < K; i++) h = (Math.imul(h, B) + s.charCodeAt(from + i)) | 0;
  return h;
}

/** The base64 text of `value` as it appears inside any longer base64 text, at each of the three alignments. */
function base64Cores(value: Buffer, enc: 'base64' | 'base64url'): string[] {
  const out: string[] = [];
  for (let k = 0; k < 3; k++) {
    const full = Buffer.concat([Buffer.alloc(k), value])
      .toString(enc)
      .replace(/=+$/, '');
    const start = k === 0 ? 0 : 4; // the first group mixes padding and secret when k > 0
    const end = Math.floor((k + value.length) / 3) * 4; // the last partial group depends on what follows
    if (end - start >= MIN_SECRET_LENGTH) out.push(full.slice(start, end));
  }
  return out;
}

interface Form {
  text: string;
  label: string;
  kind: string;
}

export class SecretScanner {
  private readonly values = new Map<string, string>();
  private readonly forms = new Map<string, Form>();
  private byHash = new Map<number, Form[]>();
  private dirty = true;
  private tooShortCount = 0;
  private longestForm = 0;
  /** Captured text kept for the final scan, per source. */
  private readonly kept = new Map<string, string[]>();
  private keptChars = 0;
  /** Beyond this many characters kept, chunks are scanned as they come (against the secrets known then). */
  keepBudget = 128 * 1024 * 1024;
  private readonly tails = new Map<string, string>();
  private lineCount = 0;
  private byteCount = 0;
  private readonly sourceNames = new Set<string>();
  private readonly found: Finding[] = [];
  private readonly foundKeys = new Set<string>();

  /** Records a secret value (and its derived forms). Non-strings and short values are ignored. */
  register(value: unknown, label: string): void {
    if (typeof value !== 'string') return;
    if (value.length < MIN_SECRET_LENGTH) {
      if (value.length > 0 && !this.values.has(value)) this.tooShortCount++;
      return;
    }
    if (this.values.has(value)) return;
    this.values.set(value, label);
    const add = (text: string, kind: string): void => {
      if (text.length < MIN_SECRET_LENGTH || this.forms.has(text)) return;
      this.forms.set(text, { text, label, kind });
      this.longestForm = Math.max(this.longestForm, text.length);
    };
    add(value, 'raw');
    const url = encodeURIComponent(value);
    add(url, 'url');
    add(url.replace(/%20/g, '+'), 'form');
    add(JSON.stringify(value).slice(1, -1), 'json');
    const bytes = Buffer.from(value, 'utf8');
    for (const c of base64Cores(bytes, 'base64')) add(c, 'base64');
    for (const c of base64Cores(bytes, 'base64url')) add(c, 'base64url');
    this.dirty = true;
  }

  /** Records every credential of a flow's credentials object (`{nodeId: {name: value}}`). */
  registerCredentials(creds: unknown, from: string): void {
    if (!creds || typeof creds !== 'object') return;
    for (const [id, set] of Object.entries(creds as Record<string, unknown>)) {
      if (!set || typeof set !== 'object') continue;
      for (const [name, value] of Object.entries(set as Record<string, unknown>)) {
        if (TEXT_CREDENTIALS.has(name) || name === 'has_password' || name.startsWith('has_')) continue;
        this.register(value, `credential ${id}.${name} (${from})`);
      }
    }
  }

  /** Records the tokens in a JSON value or text (keys such as access_token, refresh_token, accessToken). */
  registerTokensIn(body: unknown, from: string, depth = 0): void {
    if (depth > 6 || body === null || body === undefined) return;
    if (typeof body === 'string' || Buffer.isBuffer(body)) {
      const text = typeof body === 'string' ? body : body.toString('utf8');
      if (text.length > 256 * 1024 || !/token|secret/i.test(text)) return;
      const t = text.trim();
      if (!t.startsWith('{') && !t.startsWith('[')) return;
      let v: unknown;
      try {
        v = JSON.parse(t);
      } catch {
        return;
      }
      this.registerTokensIn(v, from, depth + 1);
      return;
    }
    if (typeof body !== 'object') return;
    for (const [k, v] of Object.entries(body as Record<string, unknown>)) {
      if (TOKEN_KEYS.has(k) && typeof v === 'string') this.register(v, `${k} issued by ${from}`);
      else if (v && typeof v === 'object') this.registerTokensIn(v, from, depth + 1);
    }
  }

  private rebuild(): void {
    if (!this.dirty) return;
    this.byHash = new Map();
    for (const f of this.forms.values()) {
      const h = windowHash(f.text, 0);
      const list = this.byHash.get(h);
      if (list) list.push(f);
      else this.byHash.set(h, [f]);
    }
    this.dirty = false;
  }

  /** Every secret form in `text` (pure: records nothing). */
  scan(text: string, source: string): Finding[] {
    this.rebuild();
    const out: Finding[] = [];
    const n = text.length;
    if (n < K || this.byHash.size === 0) return out;
    let h = windowHash(text, 0);
    for (let i = 0; ; i++) {
      const list = this.byHash.get(h);
      if (list) {
        for (const f of list) if (text.startsWith(f.text, i)) out.push(this.finding(text, i, f, source));
      }
      if (i + K >= n) break;
      h = (Math.imul(h, B) - Math.imul(text.charCodeAt(i), BK) + text.charCodeAt(i + K)) | 0;
    }
    return out;
  }

  private finding(text: string, at: number, f: Form, source: string): Finding {
    const lineStart = text.lastIndexOf('\n', at) + 1;
    let lineEnd = text.indexOf('\n', at);
    if (lineEnd < 0) lineEnd = text.length;
    const from = Math.max(lineStart, at - 100);
    const to = Math.min(lineEnd, at + f.text.length + 100);
    return { label: f.label, form: f.kind, source, excerpt: this.mask(text.slice(from, to)) };
  }

  /** `text` with every known secret form replaced by ‹its label›. */
  mask(text: string): string {
    let out = text;
    const sorted = [...this.forms.values()].sort((a, b) => b.text.length - a.text.length);
    for (const f of sorted) if (out.includes(f.text)) out = out.split(f.text).join(`‹${f.label}›`);
    return out;
  }

  /** Adds output of `source` to what is scanned. */
  capture(source: string, chunk: string | Buffer): void {
    const text = typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    if (!text) return;
    this.sourceNames.add(source);
    this.byteCount += text.length;
    for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) this.lineCount++;
    if (this.keptChars + text.length <= this.keepBudget) {
      const list = this.kept.get(source);
      if (list) list.push(text);
      else this.kept.set(source, [text]);
      this.keptChars += text.length;
      return;
    }
    // Over the budget: scan now, with the end of the previous chunk so a secret split across chunks is found.
    const tail = this.tails.get(source) ?? '';
    this.record(this.scan(tail + text, source));
    this.tails.set(source, (tail + text).slice(-Math.max(this.longestForm, 1024)));
  }

  private record(findings: Finding[]): void {
    for (const f of findings) {
      const key = `${f.label}\n${f.source}\n${f.excerpt}`;
      if (this.foundKeys.has(key)) continue;
      this.foundKeys.add(key);
      this.found.push(f);
    }
  }

  /** Scans everything kept against every secret known now. */
  finish(extra: { source: string; text: string }[] = []): ScanReport {
    for (const e of extra) this.capture(e.source, e.text);
    for (const [source, chunks] of this.kept) this.record(this.scan(chunks.join(''), source));
    return this.report();
  }

  report(): ScanReport {
    return {
      secrets: this.values.size,
      forms: this.forms.size,
      tooShort: this.tooShortCount,
      lines: this.lineCount,
      bytes: this.byteCount,
      sources: [...this.sourceNames],
      findings: [...this.found],
    };
  }
}

const GLOBAL_KEY = Symbol.for('wxcx.secretScan');
type GlobalWithScan = typeof globalThis & {
  [GLOBAL_KEY]?: { scanner: SecretScanner; active: boolean; tapDir?: string };
};
const g = globalThis as GlobalWithScan;
const state = (g[GLOBAL_KEY] ??= { scanner: new SecretScanner(), active: false });

/** The process-wide registry. */
export const secretScan: SecretScanner = state.scanner;

/** Whether the scan runs in this mocha process (loaded as a root hook plugin). */
export function secretScanActive(): boolean {
  return state.active;
}

// ---------------------------------------------------------------------------------------------------------
// Capturing

/** Inspects an error or object the way a log or a Catch node could show it: message, stack and own properties. */
function show(v: unknown): string {
  if (typeof v === 'string') return v;
  return util.inspect(v, { depth: 6, breakLength: Infinity, maxStringLength: 100_000, maxArrayLength: 200 });
}

const LEVELS: Record<number, string> = {
  10: 'fatal',
  20: 'error',
  30: 'warn',
  40: 'info',
  50: 'debug',
  60: 'trace',
};

interface HelperLike {
  _log?: { addHandler(h: unknown): void; removeHandler(h: unknown): void };
  _events?: { on(ev: string, fn: (v: unknown) => void): void };
}

const logHandler = (() => {
  // An EventEmitter, as Node-RED's log expects of a handler.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { EventEmitter } = require('node:events') as typeof import('node:events');
  const h = new EventEmitter();
  h.on('log', (m: { level?: number; type?: string; id?: string; name?: string; msg?: unknown }) => {
    const where = m.type ? `[${m.type}:${m.name || m.id || ''}] ` : '';
    secretScan.capture('helper runtime log', `[${LEVELS[m.level ?? 0] ?? m.level}] ${where}${show(m.msg)}\n`);
  });
  return h;
})();
const attachedEvents = new WeakSet<object>();

/**
 * Captures the test helper's runtime: every log call at every level (call after the helper's `startServer`, which
 * resets Node-RED's log handlers, and before flows load), node status and comms (debug output).
 */
export function attachHelperRuntime(helper: HelperLike): void {
  if (!state.active) return;
  if (helper._log) {
    helper._log.removeHandler(logHandler);
    helper._log.addHandler(logHandler);
  }
  const ev = helper._events;
  if (ev && !attachedEvents.has(ev)) {
    attachedEvents.add(ev);
    ev.on('node-status', (s) => secretScan.capture('helper runtime status', show(s) + '\n'));
    ev.on('comms', (c) => secretScan.capture('helper runtime comms', show(c) + '\n'));
  }
}

/**
 * Environment for a red.js child: trace logging unless the test chose a level, and a tap file for node status,
 * debug-sidebar and notification traffic (see `tapSnippet`).
 */
export function childScanEnv(): Record<string, string> {
  if (!state.active || !state.tapDir) return {};
  return { WXCX_SCAN_TAP_DIR: state.tapDir };
}

/** Log level for red.js children that did not choose one. */
export function childLogLevel(): string | undefined {
  return state.active ? 'trace' : undefined;
}

/**
 * A few lines appended to a red.js child's settings.js: listen on Node-RED's runtime events (node status, comms =
 * debug sidebar and notifications) and append them to a file in the tap directory, for the final scan. Nothing
 * goes to stdout, so the tests' log assertions are unaffected.
 */
export function tapSnippet(nodeRedUtilPath: string): string {
  if (!state.active) return '';
  return `
;(function wxcxSecretScanTap() {
  const dir = process.env.WXCX_SCAN_TAP_DIR;
  if (!dir) return;
  const fs = require('node:fs');
  const util = require('node:util');
  const file = require('node:path').join(dir, 'tap-' + process.pid + '.log');
  const write = (kind, v) => {
    try { fs.appendFileSync(file, kind + ' ' + util.inspect(v, { depth: 6, breakLength: Infinity, maxStringLength: 100000 }) + '\\n'); } catch (e) {}
  };
  try {
    const events = require(${JSON.stringify(nodeRedUtilPath)}).events;
    events.on('node-status', (s) => write('status', s));
    events.on('comms', (c) => write('comms', c));
  } catch (e) {}
})();
`;
}

function patchProcessOutput(): void {
  for (const [name, stream] of [
    ['mocha stdout', process.stdout],
    ['mocha stderr', process.stderr],
  ] as const) {
    const orig = stream.write.bind(stream) as (...a: unknown[]) => boolean;
    (stream as unknown as { write: (...a: unknown[]) => boolean }).write = (...args: unknown[]) => {
      const c = args[0];
      if (typeof c === 'string' || Buffer.isBuffer(c)) secretScan.capture(name, c);
      else if (c instanceof Uint8Array) secretScan.capture(name, Buffer.from(c));
      return orig(...args);
    };
  }
}

/** Records tokens in every JSON answer this process's servers send and its clients receive. */
function patchHttp(): void {
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const endOrig = http.ServerResponse.prototype.end;
  http.ServerResponse.prototype.end = function (this: http.ServerResponse, ...args: unknown[]) {
    const c = args[0];
    if ((typeof c === 'string' || Buffer.isBuffer(c)) && c.length < 256 * 1024) {
      const req = (this as unknown as { req?: http.IncomingMessage }).req;
      secretScan.registerTokensIn(
        c,
        `a server in the test process (${req?.method ?? ''} ${(req?.url ?? '').split('?')[0]})`,
      );
    }
    return (endOrig as (...a: unknown[]) => http.ServerResponse).apply(this, args);
  } as typeof endOrig;

  // Client answers (http.request): tee the body chunks of JSON answers as the parser pushes them.
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const pushOrig = http.IncomingMessage.prototype.push;
  const bodies = new WeakMap<object, Buffer[]>();
  http.IncomingMessage.prototype.push = function (
    this: http.IncomingMessage,
    chunk: unknown,
    enc?: BufferEncoding,
  ) {
    const isClient = typeof this.statusCode === 'number'; // server-side requests have no status
    if (isClient && /json/i.test(String(this.headers['content-type'] ?? ''))) {
      let list = bodies.get(this);
      if (!list) bodies.set(this, (list = []));
      if (chunk === null) {
        secretScan.registerTokensIn(
          Buffer.concat(list),
          `an answer received by the tests (${this.statusCode})`,
        );
        bodies.delete(this);
      } else if (Buffer.isBuffer(chunk) && list.reduce((n, b) => n + b.length, 0) < 256 * 1024)
        list.push(chunk);
    }
    return pushOrig.call(this, chunk, enc);
  } as typeof pushOrig;

  // fetch answers.
  const R = (globalThis as unknown as { Response?: { prototype: Record<string, unknown> } }).Response;
  if (R) {
    for (const m of ['json', 'text'] as const) {
      const orig = R.prototype[m] as (this: unknown) => Promise<unknown>;
      R.prototype[m] = async function (this: { url?: string }) {
        const v = await orig.call(this);
        secretScan.registerTokensIn(
          v,
          `an answer received by the tests (fetch ${String(this.url ?? '').split('?')[0]})`,
        );
        return v;
      };
    }
  }
}

function readTapFiles(): { source: string; text: string }[] {
  if (!state.tapDir) return [];
  const out: { source: string; text: string }[] = [];
  for (const f of fs.readdirSync(state.tapDir)) {
    out.push({
      source: `red.js ${f.replace(/^tap-|\.log$/g, '')} status/comms`,
      text: fs.readFileSync(path.join(state.tapDir, f), 'utf8'),
    });
  }
  return out;
}

function activate(): void {
  if (state.active) return;
  state.active = true;
  state.tapDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxcx-scan-'));
  patchProcessOutput();
  patchHttp();
}

function summary(r: ScanReport): string {
  return (
    `secret scan: ${r.secrets} secrets known (${r.forms} forms: raw, URL-, form-, JSON-encoded, base64/base64url), ` +
    `${r.tooShort} too short to scan; ${r.lines} lines (${(r.bytes / 1e6).toFixed(1)} MB) scanned from ` +
    `${r.sources.length} sources; ${r.findings.length} leak(s)`
  );
}

/** Mocha root hooks (this file is loaded with `--require` by scripts/test.js). */
export const mochaHooks = {
  beforeAll(): void {
    activate();
  },
  afterAll(): void {
    const tap = readTapFiles();
    const report = secretScan.finish(tap);
    if (state.tapDir) fs.rmSync(state.tapDir, { recursive: true, force: true });
    const text = summary(report);
    if (report.findings.length) {
      const lines = report.findings
        .slice(0, 40)
        .map((f) => `  - ${f.label} (${f.form}) in ${f.source}: ${f.excerpt}`);
      throw new Error(`${text}\n${lines.join('\n')}`);
    }
    console.log(`\n  ${text}`);
  },
};
