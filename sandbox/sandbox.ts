/**
 * The sandbox: `npm run sandbox`. A newcomer sees the pack work in a minute, with no account and no network:
 *
 * - the WeChat simulator (sandbox/sim/wechat: the API the pack calls, and WeChat's server pushing signed, in safe
 *   mode encrypted, retried messages to the pack's webhook),
 * - the CXone simulator (sandbox/sim/cxone: auth, DFO 3.0 and an agent console; and CXone calling the pack's
 *   integration box, asking for a token only after a 401),
 * - a real Node-RED with the pack and the bridge example deployed, its config nodes pointed at the simulators,
 * - a web page (sandbox/page) where one plays the WeChat user and the CXone agent, with buttons for the
 *   interesting cases: media, the 48-hour window (the WeChat clock jumps 49 hours), a CXone outage, safe mode.
 *
 * Everything listens on 127.0.0.1. The same class drives the browser tests (test/browser).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CxoneSimulator } from './sim/cxone';
import { WechatSimulator } from './sim/wechat';
import type { PushRecord, SimPushMode } from './sim/wechat/push';
import { writeFlows, type FlowNode, type SimSettings } from './flows';
import { findRepoRoot, freePort, linkPack, startNodeRed, type RunningNodeRed } from './node-red';
import { picture } from './png';
import { PageServer } from './server';

export interface SandboxOptions {
  /** Port of the sandbox page (default 1881; another free port when taken; 0: any). */
  port?: number;
  /** Port of the Node-RED started (default 1880; another free port when taken; 0: any). */
  nodeRedPort?: number;
  /** Ports of the WeChat and CXone simulators (default 1882 and 1883; others when taken; 0: any). */
  wechatPort?: number;
  cxonePort?: number;
  /**
   * Use a Node-RED that is already running (one where the pack was installed from the palette) instead of
   * starting one: its base URL, e.g. http://127.0.0.1:1880. Its config nodes must be given the settings printed.
   */
  nodeRedUrl?: string;
  /** The webhook path of wechat-in and the path of cxone-dfo-in (defaults as in the example). */
  webhookPath?: string;
  boxPath?: string;
  /** Node-RED's user directory (default <repo>/.cache/sandbox/node-red). */
  userDir?: string;
  /** Start from the example again instead of the flow saved by the last run. */
  reset?: boolean;
  /** The config nodes' store ("file", "memory" or "redis"); default: as the flow says (file when unset). */
  store?: string;
  /** Deploy this example instead of the bridge (a file name in examples/, with or without .json). */
  example?: string;
  /** Changes the flow before it is deployed (tests). */
  transform?: (flow: FlowNode[]) => FlowNode[];
  /** red.js to run (default: the node-red package's). */
  redJs?: string;
  nodeBin?: string;
  /** The compiled pack to install (default: the build this file belongs to). */
  buildRoot?: string;
  /** Lines for the terminal. */
  log?: (line: string) => void;
}

export interface ChatEntry {
  id: string;
  at: number;
  /** 'user': written by the WeChat user; 'account': received from the Official Account. */
  from: 'user' | 'account';
  kind: 'text' | 'image' | 'location' | 'voice' | 'video' | 'news' | 'other';
  text?: string;
  imageUrl?: string;
  location?: { latitude: number; longitude: number; label: string };
  /** For the user's messages: how WeChat's push went. */
  push?: {
    state: 'sending' | 'acknowledged' | 'failed';
    attempts: number;
    mode: SimPushMode;
    problem?: string;
  };
  /** For the account's messages: passive reply (in WeChat's own request) or customer-service message. */
  via?: 'customer-service' | 'passive-reply';
}

export interface LogEntry {
  at: number;
  /** Who called whom. */
  who: 'wechat→node-red' | 'node-red→wechat' | 'node-red→cxone' | 'cxone→node-red' | 'sandbox';
  text: string;
  level: 'info' | 'warn' | 'error';
}

const USER = { openid: 'oSbx_7dQ1mXiaoMing_Sandbox01', name: 'Xiao Ming 小明' };
const CHANNEL_ID = 'wechat-sandbox';
const ACCOUNT_ORIGINAL_ID = 'gh_5a1dbox0wxcx';

/** A string or number as text; anything else as ''. */
function text(v: unknown): string {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '';
}

/** Secrets of the simulators: read from `file`, or made and written there the first time. */
function sandboxSecrets(file: string): Record<string, string> {
  const want = [
    'appSecret',
    'token',
    'encodingAESKey',
    'clientSecret',
    'accessKeySecret',
    'boxClientSecret',
    'jwtSecret',
  ];
  try {
    const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, string>;
    if (want.every((k) => typeof saved[k] === 'string' && saved[k])) return saved;
  } catch {
    /* made below */
  }
  const made: Record<string, string> = {
    appSecret: randomBytes(16).toString('hex'),
    token: `sandbox${randomBytes(6).toString('hex')}`,
    encodingAESKey: randomBytes(40)
      .toString('base64')
      .replace(/[^A-Za-z0-9]/g, '')
      .slice(0, 43)
      .padEnd(43, 'A'),
    clientSecret: randomBytes(18).toString('base64url'),
    accessKeySecret: randomBytes(24).toString('base64url'),
    boxClientSecret: randomBytes(18).toString('base64url'),
    jwtSecret: randomBytes(32).toString('hex'),
  };
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify(made, null, 2), { mode: 0o600 });
  } catch {
    /* the sandbox works without keeping them */
  }
  return made;
}

function errMsg(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class Sandbox {
  readonly wechat: WechatSimulator;
  readonly cxone: CxoneSimulator;
  readonly repoRoot: string;
  readonly user = USER;
  readonly channelId = CHANNEL_ID;
  nodeRed: RunningNodeRed | null = null;
  /** The flow deployed (empty when a Node-RED of one's own is used). */
  flow: FlowNode[] = [];
  /** Base URL of Node-RED (the one started, or the one given). */
  nodeRedUrl = '';
  pageUrl = '';
  webhookUrl = '';
  boxUrl = '';
  safeMode = true;
  clockOffsetMs = 0;
  outageUntil = 0;
  /** Changes on every change the page should show. */
  version = 0;

  readonly chat: ChatEntry[] = [];
  readonly logEntries: LogEntry[] = [];
  private readonly boxSecrets: { boxClientId: string; boxClientSecret: string; jwtSecret: string };
  private readonly userDir: string;
  private readonly server: PageServer;
  private ticker: NodeJS.Timeout | undefined;
  private readonly waiters = new Set<() => void>();
  private seen = { inbox: 0, typing: 0, apiCalls: 0, cxRequests: 0, cxTokens: 0, boxCalls: 0, pushes: 0 };
  private pushAttemptsSeen = new Map<PushRecord, number>();
  private typingShownUntil = 0;
  private stopped = false;
  private unsubscribe: (() => void) | undefined;
  private seq = 0;

  constructor(readonly opts: SandboxOptions = {}) {
    this.repoRoot = findRepoRoot(__dirname);
    this.userDir = opts.userDir ?? path.join(this.repoRoot, '.cache', 'sandbox', 'node-red');
    // The simulators' secrets stay the same from run to run (kept beside the user directory), so config nodes
    // of one's own Node-RED pointed at them keep working.
    const secrets = sandboxSecrets(path.join(path.dirname(this.userDir), 'simulator-secrets.json'));
    this.wechat = new WechatSimulator({
      appId: 'wx5a1db0c0ffee0001',
      appSecret: secrets.appSecret,
      token: secrets.token,
      encodingAESKey: secrets.encodingAESKey,
      originalId: ACCOUNT_ORIGINAL_ID,
      mode: 'safe',
      followers: [USER.openid],
    });
    this.cxone = new CxoneSimulator({
      channels: [CHANNEL_ID],
      clientId: 'sandbox-application',
      clientSecret: secrets.clientSecret,
      accessKeys: [{ id: 'SANDBOXACCESSKEY', secret: secrets.accessKeySecret }],
    });
    this.boxSecrets = {
      boxClientId: 'sandbox-cxone-box',
      boxClientSecret: secrets.boxClientSecret,
      jwtSecret: secrets.jwtSecret,
    };
    this.server = new PageServer(this, path.join(this.repoRoot, 'sandbox', 'page'));
  }

  private say(line: string): void {
    (this.opts.log ?? ((l: string) => console.log(l)))(line);
  }

  /** What the page and the tests wait on. */
  changed(): void {
    this.version++;
    for (const w of [...this.waiters]) w();
  }

  /** Resolves when `version` passes `v`, or after `ms`. */
  waitForChange(v: number, ms: number): Promise<void> {
    if (this.version !== v) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        this.waiters.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }

  log(who: LogEntry['who'], text: string, level: LogEntry['level'] = 'info'): void {
    this.logEntries.push({ at: Date.now(), who, text, level });
    if (this.logEntries.length > 400) this.logEntries.splice(0, this.logEntries.length - 400);
    this.changed();
  }

  /** The settings a wechat-config / cxone-dfo-config needs to talk to the simulators. */
  simSettings(): SimSettings {
    const wx = this.wechat.account();
    const cx = this.cxone.integration(false);
    return {
      wechat: { appId: wx.appId, apiBase: wx.apiBase, credentials: wx.credentials },
      cxone: {
        authIssuer: cx.authIssuer,
        apiBase: cx.apiBase,
        channelIntegrationId: 'sim-integration',
        credentials: { ...cx.credentials, ...this.boxSecrets },
      },
      channelId: CHANNEL_ID,
    };
  }

  async start(): Promise<{ pageUrl: string; nodeRedUrl: string }> {
    // Fixed ports by default (so the API host and auth issuer entered elsewhere stay right), any when taken.
    await this.wechat.start(await freePort(this.opts.wechatPort ?? 1882));
    await this.cxone.start(await freePort(this.opts.cxonePort ?? 1883));
    this.unsubscribe = this.cxone.dfo.onChange(() => this.changed());
    const settings = this.simSettings();

    if (this.opts.nodeRedUrl) {
      this.nodeRedUrl = this.opts.nodeRedUrl.replace(/\/+$/, '');
    } else {
      const userDir = this.userDir;
      const buildRoot = this.opts.buildRoot ?? path.resolve(__dirname, '..');
      fs.mkdirSync(userDir, { recursive: true });
      linkPack(userDir, this.repoRoot, buildRoot);
      const { kept, flow } = writeFlows(userDir, settings, {
        repoRoot: this.repoRoot,
        reset: this.opts.reset,
        store: this.opts.store,
        example: this.opts.example,
        transform: this.opts.transform,
      });
      this.flow = flow;
      this.say(
        kept
          ? `Node-RED: keeping the flow of the last run (${path.relative(process.cwd(), userDir) || userDir}); --reset starts from the example again`
          : `Node-RED: deploying the example "${this.opts.example ?? 'WeChat to CXone bridge'}"`,
      );
      const redJs =
        this.opts.redJs ?? path.join(path.dirname(require.resolve('node-red/package.json')), 'red.js');
      const port = await freePort(this.opts.nodeRedPort ?? 1880);
      this.nodeRed = await startNodeRed({
        userDir,
        port,
        redJs,
        nodeBin: this.opts.nodeBin,
        logFile: path.join(userDir, '..', 'node-red.log'),
        onLine: (l) => {
          if (/Using unencrypted credentials|Projects disabled/.test(l)) return;
          if (/\[(warn|error)\]/.test(l))
            this.log(
              'sandbox',
              `Node-RED: ${l.replace(/^.*?\[(warn|error)\] /, '[$1] ')}`,
              /\[error\]/.test(l) ? 'error' : 'warn',
            );
        },
      });
      this.nodeRedUrl = this.nodeRed.url;
    }
    // The paths and channels of the flow deployed (its first wechat-in and cxone-dfo-in).
    const pathOf = (type: string): string | undefined => {
      const n = this.flow.find((x) => x.type === type && typeof x.path === 'string' && x.path);
      return n ? String(n.path) : undefined;
    };
    const webhookPath = this.opts.webhookPath ?? pathOf('wechat-in') ?? '/wechat/webhook';
    this.webhookUrl = `${this.nodeRedUrl}${webhookPath}`;
    this.boxUrl = `${this.nodeRedUrl}${this.opts.boxPath ?? pathOf('cxone-dfo-in') ?? '/integration/box'}`;
    for (const n of this.flow) {
      if (n.type === 'cxone-dfo-out' && typeof n.channelId === 'string' && n.channelId)
        if (!this.cxone.dfo.channels.has(n.channelId)) this.cxone.dfo.addChannel({ id: n.channelId });
    }
    this.cxone.attachBox({
      boxUrl: this.boxUrl,
      clientId: settings.cxone.credentials.boxClientId,
      clientSecret: settings.cxone.credentials.boxClientSecret,
      channelId: CHANNEL_ID,
      dfo3: true,
    });

    this.pageUrl = await this.server.start(this.opts.port ?? 1881);
    this.ticker = setInterval(() => this.tick(), 200);
    this.ticker.unref();

    // As the WeChat console does when the Server URL is saved: a signed GET that must echo `echostr`.
    const v = await this.wechat.push.verifyUrl(this.webhookUrl).catch((err: unknown) => ({
      ok: false,
      status: 0,
      body: errMsg(err),
    }));
    this.log(
      'wechat→node-red',
      v.ok
        ? `URL verification (GET ${webhookPath}?signature…&echostr…) → 200, echostr echoed: the WeChat console accepts the Server URL`
        : `URL verification failed (${v.status}): the WeChat console would refuse this Server URL`,
      v.ok ? 'info' : 'error',
    );
    return { pageUrl: this.pageUrl, nodeRedUrl: this.nodeRedUrl };
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.ticker) clearInterval(this.ticker);
    this.unsubscribe?.();
    for (const w of [...this.waiters]) w();
    await this.server.stop();
    await this.nodeRed?.stop();
    await this.wechat.stop();
    await this.cxone.stop();
  }

  // --- The WeChat user -------------------------------------------------------------------------------------

  private id(): string {
    return `e${++this.seq}`;
  }

  private deliverPush(entry: ChatEntry, xml: string): void {
    const mode: SimPushMode = this.safeMode ? 'safe' : 'plain';
    entry.push = { state: 'sending', attempts: 0, mode };
    this.chat.push(entry);
    this.changed();
    this.wechat.push
      .push(this.webhookUrl, xml, { mode })
      .then((rec) => {
        entry.push = {
          state: rec.acknowledged ? 'acknowledged' : 'failed',
          attempts: rec.attempts.length,
          mode,
          ...(rec.problems.length ? { problem: rec.problems.join('; ') } : {}),
        };
        if (rec.reply) this.addPassiveReply(rec);
        this.changed();
      })
      .catch((err: unknown) => {
        entry.push = { state: 'failed', attempts: 0, mode, problem: errMsg(err) };
        this.changed();
      });
  }

  userText(text: string): ChatEntry {
    const entry: ChatEntry = { id: this.id(), at: Date.now(), from: 'user', kind: 'text', text };
    this.deliverPush(entry, this.wechat.push.text(USER.openid, text));
    return entry;
  }

  userImage(data?: Buffer, contentType = 'image/png'): ChatEntry {
    const bytes = data ?? picture(this.seq);
    const mediaId = this.wechat.api.addMedia(bytes, { type: 'image', contentType });
    const imageUrl = `/media/wechat/${encodeURIComponent(mediaId)}`;
    const entry: ChatEntry = { id: this.id(), at: Date.now(), from: 'user', kind: 'image', imageUrl };
    this.deliverPush(entry, this.wechat.push.image(USER.openid, mediaId, `${this.pageUrl}${imageUrl}`));
    return entry;
  }

  userLocation(
    latitude = 31.2304,
    longitude = 121.4737,
    label = 'People’s Square, Shanghai 人民广场',
  ): ChatEntry {
    const entry: ChatEntry = {
      id: this.id(),
      at: Date.now(),
      from: 'user',
      kind: 'location',
      location: { latitude, longitude, label },
    };
    this.deliverPush(entry, this.wechat.push.location(USER.openid, latitude, longitude, label));
    return entry;
  }

  private addPassiveReply(rec: PushRecord): void {
    const f = rec.reply?.fields ?? {};
    const type = text(f.MsgType);
    const entry: ChatEntry = {
      id: this.id(),
      at: Date.now(),
      from: 'account',
      kind: 'other',
      via: 'passive-reply',
    };
    if (type === 'text') {
      entry.kind = 'text';
      entry.text = text(f.Content);
    } else if (type === 'image') {
      entry.kind = 'image';
      const id = text((f.Image as Record<string, unknown> | undefined)?.MediaId);
      entry.imageUrl = `/media/wechat/${encodeURIComponent(id)}`;
    } else {
      entry.text = `(${type})`;
    }
    this.chat.push(entry);
  }

  // --- The CXone agent -------------------------------------------------------------------------------------

  /** Puts a file where CXone keeps agents' attachments and returns its URL. */
  agentFile(data: Buffer, mimeType: string): string {
    const id = randomBytes(16)
      .toString('hex')
      .replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5');
    this.cxone.dfo.uploads.set(id, { mimeType, data, at: Date.now() });
    return `${this.cxone.url}/files/temporary/${id}`;
  }

  async agentReply(
    threadId: string,
    text: string,
    attachment?: { data?: Buffer; mimeType?: string; name?: string },
    channelId?: string,
  ): Promise<{ status: number; error?: string }> {
    const attachments = attachment
      ? [
          {
            friendlyName: attachment.name ?? 'photo.png',
            url: this.agentFile(
              attachment.data ?? picture(this.seq + 3, 160, [200, 80, 60], [60, 40, 140]),
              attachment.mimeType ?? 'image/png',
            ),
          },
        ]
      : undefined;
    try {
      const { answer } = await this.cxone.agentReply({
        threadId,
        text,
        ...(attachments ? { attachments } : {}),
        ...(channelId ? { channelId } : {}),
      });
      this.changed();
      if (answer.status !== 200) {
        const why = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
        return {
          status: answer.status,
          error: `the integration box answered ${answer.status}: ${why.slice(0, 300)}`,
        };
      }
      return { status: 200 };
    } catch (err) {
      const error = `CXone could not reach the integration box: ${errMsg(err)}`;
      this.log('cxone→node-red', error, 'error');
      return { status: 0, error };
    }
  }

  async agentTyping(threadId: string, typing: boolean, channelId?: string): Promise<number> {
    try {
      return (await this.cxone.agentTyping(threadId, typing, channelId)).status;
    } catch {
      return 0;
    }
  }

  // --- The buttons -----------------------------------------------------------------------------------------

  jumpHours(hours: number): void {
    const ms = Math.round(hours * 3600_000);
    this.wechat.api.advance(ms);
    this.clockOffsetMs += ms;
    this.log(
      'sandbox',
      `WeChat's clock jumped ${hours} hours ahead: the user's last message is now older than 48 hours`,
    );
  }

  outage(seconds: number): void {
    this.cxone.dfo.down(seconds * 1000);
    this.outageUntil = Date.now() + seconds * 1000;
    this.log(
      'sandbox',
      `CXone is down for ${seconds} s: every connection to its API is reset. The bridge keeps what the user writes in its outbox and retries with growing pauses.`,
      'warn',
    );
  }

  setSafeMode(on: boolean): void {
    this.safeMode = on;
    this.log(
      'sandbox',
      on
        ? 'Safe mode on: WeChat encrypts every push (AES-256-CBC) and signs it with msg_signature'
        : 'Plain mode: WeChat pushes readable XML, signed with signature only',
    );
  }

  // --- What the page shows ---------------------------------------------------------------------------------

  /** Takes what the simulators recorded since the last tick into the chat and the log. */
  private tick(): void {
    let changed = false;
    const api = this.wechat.api;
    for (; this.seen.inbox < api.inbox.length; this.seen.inbox++) {
      const b = api.inbox[this.seen.inbox].body;
      if (b.touser !== USER.openid) continue;
      this.chat.push(this.chatOf(b));
      this.typingShownUntil = 0;
      changed = true;
    }
    for (; this.seen.typing < api.typing.length; this.seen.typing++) {
      const t = api.typing[this.seen.typing];
      if (t.touser !== USER.openid) continue;
      this.typingShownUntil = t.command === 'Typing' ? Date.now() + 15_000 : 0;
      changed = true;
    }
    if (this.typingShownUntil && this.typingShownUntil < Date.now()) {
      this.typingShownUntil = 0;
      changed = true;
    }
    // New records of every party, in the order they happened.
    const fresh: LogEntry[] = [];
    for (; this.seen.apiCalls < api.calls.length; this.seen.apiCalls++) {
      const c = api.calls[this.seen.apiCalls];
      const ok = c.status === 200 && (c.errcode === undefined || c.errcode === 0);
      const result =
        c.status === 'reset' ? 'connection reset' : c.errcode ? `errcode ${c.errcode}` : `${c.status} ok`;
      const cmd = c.path.endsWith('/typing') ? ` (${text((c.json as { command?: unknown })?.command)})` : '';
      fresh.push({
        at: c.at - this.clockOffsetMs,
        who: 'node-red→wechat',
        text: `${c.method} ${c.path}${cmd} → ${result}`,
        level: ok ? 'info' : 'warn',
      });
    }
    const dfo = this.cxone.dfo;
    for (; this.seen.cxTokens < dfo.tokenRequests.length; this.seen.cxTokens++) {
      const r = dfo.tokenRequests[this.seen.cxTokens];
      fresh.push({
        at: r.at,
        who: 'node-red→cxone',
        text: `POST /auth/token (${r.form.grant_type ?? '?'} grant) → ${r.status}`,
        level: r.status === 200 ? 'info' : 'warn',
      });
    }
    for (; this.seen.cxRequests < dfo.requests.length; this.seen.cxRequests++) {
      const r = dfo.requests[this.seen.cxRequests];
      if (r.path.startsWith('/files/') || r.path === '/auth/token') continue;
      fresh.push({
        at: r.at,
        who: 'node-red→cxone',
        text: `${r.method} ${r.path} → ${r.status}`,
        level: r.status < 400 ? 'info' : 'warn',
      });
    }
    const box = this.cxone.box;
    if (box) {
      for (; this.seen.boxCalls < box.calls.length; this.seen.boxCalls++) {
        const c = box.calls[this.seen.boxCalls];
        const auth = c.path.endsWith('/token') ? '' : c.withToken ? ' (Bearer token)' : ' (no token yet)';
        fresh.push({
          at: c.at,
          who: 'cxone→node-red',
          text: `${c.method} ${c.path}${auth} → ${c.status}`,
          level: c.status < 400 || (c.status === 401 && !c.withToken) ? 'info' : 'warn',
        });
      }
    }
    const pushes = this.wechat.push.pushes;
    const webhookPath = this.webhookUrl ? new URL(this.webhookUrl).pathname : '';
    for (const rec of pushes.slice(-20)) {
      const seenN = this.pushAttemptsSeen.get(rec) ?? 0;
      for (let i = seenN; i < rec.attempts.length; i++) {
        const a = rec.attempts[i];
        const how =
          rec.mode === 'safe'
            ? 'encrypted, msg_signature'
            : rec.mode === 'compat'
              ? 'compatible mode'
              : 'plain, signature';
        const answer = a.timedOut
          ? 'no answer within 5 s'
          : a.error
            ? a.error
            : `${a.status}${a.body === 'success' ? ' "success"' : a.body === '' ? ' (empty)' : ' passive reply'} in ${a.ms} ms`;
        fresh.push({
          at: a.startedAt,
          who: 'wechat→node-red',
          text: `POST ${webhookPath} (${how})${a.n > 1 ? ` retry ${a.n - 1}` : ''} → ${answer}`,
          level: a.status === 200 ? 'info' : 'warn',
        });
      }
      this.pushAttemptsSeen.set(rec, rec.attempts.length);
    }
    if (fresh.length) {
      fresh.sort((a, b) => a.at - b.at);
      this.logEntries.push(...fresh);
      changed = true;
    }
    if (pushes.length > 40)
      for (const r of pushes.slice(0, pushes.length - 40)) this.pushAttemptsSeen.delete(r);
    if (this.logEntries.length > 400) this.logEntries.splice(0, this.logEntries.length - 400);
    if (this.outageUntil && this.outageUntil < Date.now()) {
      this.outageUntil = 0;
      this.logEntries.push({ at: Date.now(), who: 'sandbox', text: 'CXone is back', level: 'info' });
      changed = true;
    }
    if (changed) this.changed();
  }

  private chatOf(b: Record<string, unknown>): ChatEntry {
    const e: ChatEntry = {
      id: this.id(),
      at: Date.now(),
      from: 'account',
      kind: 'other',
      via: 'customer-service',
    };
    const type = text(b.msgtype);
    const inner = (b[type] ?? {}) as Record<string, unknown>;
    switch (type) {
      case 'text':
        e.kind = 'text';
        e.text = text(inner.content);
        break;
      case 'image':
        e.kind = 'image';
        e.imageUrl = `/media/wechat/${encodeURIComponent(text(inner.media_id))}`;
        break;
      case 'voice':
      case 'video':
        e.kind = type;
        e.text = `(${type})`;
        break;
      case 'news': {
        const a = ((inner.articles as Record<string, unknown>[] | undefined) ?? [])[0] ?? {};
        e.kind = 'news';
        e.text = `${text(a.title)} ${text(a.url)}`.trim();
        break;
      }
      default:
        e.text = `(${type})`;
    }
    return e;
  }

  /** Everything the page shows, as JSON. */
  state(): Record<string, unknown> {
    const now = Date.now();
    const dfo = this.cxone.dfo;
    const threads = dfo.threads().map((t) => ({
      channelId: t.channelId,
      threadId: t.threadId,
      name: t.threadId === USER.openid ? USER.name : t.threadId,
      messages: t.messages.map((m) => {
        const last = m.statuses[m.statuses.length - 1];
        return {
          id: m.idOnExternalPlatform,
          direction: m.direction,
          text: m.text,
          at: m.receivedAt,
          attachments: m.attachments.map((a) => ({ name: a.friendlyName, url: a.url })),
          status: last?.status ?? null,
          reason: last?.reason ?? null,
        };
      }),
    }));
    return {
      version: this.version,
      user: USER,
      account: { originalId: ACCOUNT_ORIGINAL_ID, appId: this.wechat.appId },
      channelId: CHANNEL_ID,
      settings: {
        safeMode: this.safeMode,
        clockOffsetHours: Math.round(this.clockOffsetMs / 360_000) / 10,
        outageSeconds: this.outageUntil > now ? Math.ceil((this.outageUntil - now) / 1000) : 0,
        repliesLeft: this.wechat.api.quotaOf(USER.openid),
      },
      wechat: { chat: this.chat, typing: this.typingShownUntil > now },
      cxone: { threads },
      links: {
        editor: this.nodeRedUrl,
        webhook: this.webhookUrl,
        box: this.boxUrl,
        startedNodeRed: !!this.nodeRed,
      },
      log: this.logEntries.slice(-150),
    };
  }

  /** What to type into config nodes of one's own Node-RED to use these simulators (shown on the page). */
  ownNodeRedSettings(): Record<string, Record<string, string>> {
    const s = this.simSettings();
    return {
      'wechat-config': {
        AppID: s.wechat.appId,
        'API host': s.wechat.apiBase,
        AppSecret: s.wechat.credentials.appSecret,
        Token: s.wechat.credentials.token,
        EncodingAESKey: s.wechat.credentials.encodingAESKey,
      },
      'cxone-dfo-config': {
        'Auth issuer': s.cxone.authIssuer,
        'API base (DFO 3.0)': s.cxone.apiBase,
        'Integration ID': s.cxone.channelIntegrationId,
        'Client id': s.cxone.credentials.clientId,
        'Client secret': s.cxone.credentials.clientSecret,
        'Access key id': s.cxone.credentials.accessKeyId,
        'Access key secret': s.cxone.credentials.accessKeySecret,
        'Box client id': s.cxone.credentials.boxClientId,
        'Box client secret': s.cxone.credentials.boxClientSecret,
        'Token signing key': s.cxone.credentials.jwtSecret,
      },
      'cxone-dfo-out': { 'Channel id': CHANNEL_ID },
    };
  }
}
