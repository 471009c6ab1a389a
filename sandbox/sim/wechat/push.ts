/**
 * The "WeChat server" side of the WeChat simulator: what WeChat does to a developer's webhook.
 *
 * - URL verification: `GET ?signature&timestamp&nonce&echostr`, expecting `echostr` back.
 * - Pushes of every message and event type (built from parameters or from test/fixtures/wechat/*.xml), signed,
 *   and in compatible or safe mode encrypted (AES-256-CBC, 32-byte PKCS#7, AppID appended) with `msg_signature`,
 *   POSTed as text/xml with WeChat's 5 s timeout; retried up to 3 more times on a timeout, a network failure or a
 *   non-200 answer (optionally all at once, as WeChat sometimes does while the first is still running).
 * - Answers are judged as WeChat judges them: `success` or an empty body acknowledge; a passive reply must be
 *   valid XML addressed to the user (encrypted and correctly signed in safe mode); anything else is what makes
 *   WeChat show the user "该公众号暂时无法提供服务".
 * - Everything is recorded for tests to assert on; `onUserMessage(openid, kind)` tells the API side which
 *   customer-service window a push opened (48 h / 5 messages for a message, 1 min / 3 for menu, follow, scan).
 *
 * The signing and encryption here are written independently of lib/wechat so a mistake there cannot hide itself.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { XMLParser } from 'fast-xml-parser';

export type SimPushMode = 'plain' | 'compat' | 'safe';
/** Which customer-service window a push opens on WeChat's side. */
export type UserInteraction = 'message' | 'menu' | 'subscribe' | 'scan';

export interface SimAccount {
  appId: string;
  /** The account's original id, gh_… (ToUserName of every push). */
  originalId: string;
  token: string;
  /** 43 characters; needed for compat and safe mode. */
  encodingAESKey?: string;
  /** The mode pushes use unless a push says otherwise. Default plain. */
  mode?: SimPushMode;
}

export interface PushSimulatorOptions {
  account: SimAccount;
  /** Told once per push (not per retry) when the push opens a customer-service window. */
  onUserMessage?: (openid: string, kind: UserInteraction) => void;
  /** Default timeout of each attempt (WeChat: 5000 ms). */
  timeoutMs?: number;
  /** Default number of retries after the first attempt (WeChat: 3). */
  retries?: number;
  /** Directory of the fixture files (default: test/fixtures/wechat of this repository). */
  fixturesDir?: string;
}

export type Field = [name: string, value: string | number | Field[] | undefined, raw?: 'text'];

export interface PushOptions {
  mode?: SimPushMode;
  timeoutMs?: number;
  retries?: number;
  /** Send the first attempt and all retries at once (dedupe under concurrency). */
  concurrent?: boolean;
  /** Pause between sequential attempts, ms (default 0). */
  retryDelayMs?: number;
  timestamp?: string;
  nonce?: string;
  /** Extra request headers (X-Forwarded-*, Host, …). */
  headers?: Record<string, string>;
  /** Break something on purpose. */
  tamper?: 'signature' | 'msg_signature' | 'appid' | 'no-signature' | 'ciphertext';
  /** Use this Content-Type instead of text/xml. */
  contentType?: string;
  /** Do not add the openid query parameter. */
  noOpenid?: boolean;
}

export interface PushAttempt {
  n: number;
  startedAt: number;
  ms: number;
  status?: number;
  contentType?: string;
  body?: string;
  timedOut: boolean;
  error?: string;
}

export interface PassiveReplySeen {
  /** The reply XML (decrypted when it came encrypted). */
  xml: string;
  fields: Record<string, unknown>;
  encrypted: boolean;
}

export interface PushRecord {
  mode: SimPushMode;
  /** The plain message XML. */
  xml: string;
  /** The request as sent on the first attempt. */
  query: Record<string, string>;
  body: string;
  openid: string;
  attempts: PushAttempt[];
  /** WeChat got a valid answer (success, empty, or a valid passive reply). */
  acknowledged: boolean;
  reply?: PassiveReplySeen;
  /** What WeChat would complain about (the user then sees "该公众号暂时无法提供服务"). */
  problems: string[];
}

const parser = new XMLParser({
  parseTagValue: false,
  processEntities: false,
  ignoreAttributes: true,
  trimValues: true,
  isArray: (name) => name === 'item',
});

function asText(v: unknown): string {
  return typeof v === 'string' || typeof v === 'number' ? String(v) : '';
}

function sha1(...parts: string[]): string {
  return createHash('sha1').update(parts.map(String).sort().join(''), 'utf8').digest('hex');
}

function cdata(s: string): string {
  return '<![CDATA[' + s.split(']]>').join(']]]]><![CDATA[>') + ']]>';
}

function fieldXml([name, v, raw]: Field): string {
  if (v === undefined) return '';
  if (Array.isArray(v)) return `<${name}>${v.map(fieldXml).join('')}</${name}>`;
  if (typeof v === 'number' || raw === 'text') return `<${name}>${String(v)}</${name}>`;
  return `<${name}>${cdata(String(v))}</${name}>`;
}

/** WeChat's XML: strings in CDATA, numbers and `raw: 'text'` values as plain text, one field a line. */
export function fieldsXml(fields: Field[]): string {
  return `<xml>\n${fields.map(fieldXml).filter(Boolean).join('\n')}\n</xml>`;
}

/** Replaces the text of the first `<name>` element of a document (CDATA kept if it was CDATA). */
export function setField(xml: string, name: string, value: string): string {
  const re = new RegExp(`<${name}>([\\s\\S]*?)</${name}>`);
  const m = re.exec(xml);
  if (!m) return xml.replace(/<\/xml>\s*$/, `<${name}>${cdata(value)}</${name}>\n</xml>`);
  const wasCdata = m[1].trim().startsWith('<![CDATA[');
  return xml.replace(re, `<${name}>${wasCdata ? cdata(value) : value}</${name}>`);
}

function defaultFixturesDir(): string {
  let dir = __dirname;
  for (let i = 0; i < 8; i++) {
    const cand = path.join(dir, 'test', 'fixtures', 'wechat');
    if (fs.existsSync(cand) && fs.existsSync(path.join(dir, 'package.json'))) return cand;
    dir = path.dirname(dir);
  }
  return path.join(process.cwd(), 'test', 'fixtures', 'wechat');
}

let msgIdCounter = 7_000_000_000_000_000_000n + BigInt(randomBytes(4).readUInt32BE(0)) * 1000n;

export class WechatPushSimulator {
  readonly account: SimAccount;
  /** Every push, in order. */
  readonly pushes: PushRecord[] = [];
  /** Every URL verification. */
  readonly verifications: { status: number; body: string; ok: boolean }[] = [];
  private readonly opts: PushSimulatorOptions;
  // A new connection per attempt, as WeChat's pushes often say `Connection: close`: a reused idle socket that the
  // webhook closed would fail the attempt for reasons WeChat never sees.
  private readonly agent = new http.Agent({ keepAlive: false, maxSockets: 16 });

  constructor(opts: PushSimulatorOptions) {
    this.opts = opts;
    this.account = opts.account;
  }

  close(): void {
    this.agent.destroy();
  }

  // ---- crypto, as WeChat does it ------------------------------------------------------------------------

  private key(): Buffer {
    const k = this.account.encodingAESKey;
    if (!k) throw new Error('the simulated account has no EncodingAESKey (needed for compat and safe mode)');
    return Buffer.from(k + '=', 'base64');
  }

  encrypt(xml: string, appId = this.account.appId): string {
    const key = this.key();
    const msg = Buffer.from(xml, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(msg.length);
    const plain = Buffer.concat([
      Buffer.from(randomBytes(8).toString('hex'), 'latin1'),
      len,
      msg,
      Buffer.from(appId),
    ]);
    const pad = 32 - (plain.length % 32);
    const c = createCipheriv('aes-256-cbc', key, key.subarray(0, 16));
    c.setAutoPadding(false);
    return Buffer.concat([c.update(Buffer.concat([plain, Buffer.alloc(pad, pad)])), c.final()]).toString(
      'base64',
    );
  }

  decrypt(encrypt: string): { xml: string; appId: string } {
    const key = this.key();
    const d = createDecipheriv('aes-256-cbc', key, key.subarray(0, 16));
    d.setAutoPadding(false);
    const plain = Buffer.concat([d.update(Buffer.from(encrypt, 'base64')), d.final()]);
    const pad = plain[plain.length - 1];
    if (pad < 1 || pad > 32) throw new Error('bad padding');
    const body = plain.subarray(0, plain.length - pad);
    const len = body.readUInt32BE(16);
    return {
      xml: body.subarray(20, 20 + len).toString('utf8'),
      appId: body.subarray(20 + len).toString('utf8'),
    };
  }

  // ---- messages -------------------------------------------------------------------------------------------

  nextMsgId(): string {
    msgIdCounter += 1n + BigInt(randomBytes(1)[0]);
    return msgIdCounter.toString();
  }

  private head(openid: string, type: string, createTime?: number): Field[] {
    return [
      ['ToUserName', this.account.originalId],
      ['FromUserName', openid],
      ['CreateTime', createTime ?? Math.floor(Date.now() / 1000)],
      ['MsgType', type],
    ];
  }

  text(openid: string, content: string, extra: Field[] = []): string {
    return fieldsXml([
      ...this.head(openid, 'text'),
      ['Content', content],
      ['MsgId', this.nextMsgId(), 'text'],
      ...extra,
    ]);
  }

  image(openid: string, mediaId: string, picUrl = 'http://mmbiz.qpic.cn/mmbiz_jpg/sim/0'): string {
    return fieldsXml([
      ...this.head(openid, 'image'),
      ['PicUrl', picUrl],
      ['MsgId', this.nextMsgId(), 'text'],
      ['MediaId', mediaId],
    ]);
  }

  voice(
    openid: string,
    mediaId: string,
    o: { format?: string; recognition?: string; mediaId16K?: string } = {},
  ): string {
    return fieldsXml([
      ...this.head(openid, 'voice'),
      ['MediaId', mediaId],
      ['Format', o.format ?? 'amr'],
      ['MsgId', this.nextMsgId(), 'text'],
      ['Recognition', o.recognition],
      ['MediaId16K', o.mediaId16K],
    ]);
  }

  video(
    openid: string,
    mediaId: string,
    thumbMediaId = 'thumb-' + mediaId,
    type: 'video' | 'shortvideo' = 'video',
  ): string {
    return fieldsXml([
      ...this.head(openid, type),
      ['MediaId', mediaId],
      ['ThumbMediaId', thumbMediaId],
      ['MsgId', this.nextMsgId(), 'text'],
    ]);
  }

  location(openid: string, lat: number, lng: number, label = '', scale = 15): string {
    return fieldsXml([
      ...this.head(openid, 'location'),
      ['Location_X', lat.toFixed(6), 'text'],
      ['Location_Y', lng.toFixed(6), 'text'],
      ['Scale', scale],
      ['Label', label],
      ['MsgId', this.nextMsgId(), 'text'],
    ]);
  }

  link(openid: string, url: string, title = '', description = ''): string {
    return fieldsXml([
      ...this.head(openid, 'link'),
      ['Title', title],
      ['Description', description],
      ['Url', url],
      ['MsgId', this.nextMsgId(), 'text'],
    ]);
  }

  /** Any event: `Event` plus the given fields (EventKey etc.). */
  event(openid: string, event: string, fields: Field[] = [], createTime?: number): string {
    return fieldsXml([...this.head(openid, 'event', createTime), ['Event', event], ...fields]);
  }

  /**
   * A fixture body (test/fixtures/wechat/<name>), with ToUserName set to this account and, if given, the sender,
   * CreateTime and a fresh MsgId (so two tests using one fixture are not duplicates of each other).
   */
  fromFixture(name: string, o: { openid?: string; createTime?: number; freshMsgId?: boolean } = {}): string {
    const dir = this.opts.fixturesDir ?? defaultFixturesDir();
    let xml = fs.readFileSync(path.join(dir, name.endsWith('.xml') ? name : name + '.xml'), 'utf8');
    xml = setField(xml, 'ToUserName', this.account.originalId);
    if (o.openid) xml = setField(xml, 'FromUserName', o.openid);
    if (o.createTime !== undefined) xml = setField(xml, 'CreateTime', String(o.createTime));
    if (o.freshMsgId && /<MsgId>/.test(xml)) xml = setField(xml, 'MsgId', this.nextMsgId());
    return xml;
  }

  // ---- requests -------------------------------------------------------------------------------------------

  /** The query and body WeChat would send for this message XML. */
  buildRequest(
    xml: string,
    o: PushOptions = {},
  ): { query: Record<string, string>; body: string; mode: SimPushMode } {
    const mode = o.mode ?? this.account.mode ?? 'plain';
    const timestamp = o.timestamp ?? String(Math.floor(Date.now() / 1000));
    const nonce = o.nonce ?? String(randomBytes(4).readUInt32BE(0));
    const fields = parser.parse(xml) as { xml?: Record<string, unknown> };
    const openid = asText(fields.xml?.FromUserName);
    const query: Record<string, string> = {
      signature: sha1(this.account.token, timestamp, nonce),
      timestamp,
      nonce,
    };
    if (!o.noOpenid && openid) query.openid = openid;
    let body = xml;
    if (mode !== 'plain') {
      let encrypt = this.encrypt(xml, o.tamper === 'appid' ? 'wx0000000000000000' : this.account.appId);
      if (o.tamper === 'ciphertext') {
        const b = Buffer.from(encrypt, 'base64');
        b[b.length - 40] ^= 0x55;
        encrypt = b.toString('base64');
      }
      query.encrypt_type = 'aes';
      query.msg_signature = sha1(this.account.token, timestamp, nonce, encrypt);
      body =
        mode === 'safe'
          ? `<xml>\n    <ToUserName>${cdata(this.account.originalId)}</ToUserName>\n    <Encrypt>${cdata(encrypt)}</Encrypt>\n</xml>`
          : xml.replace(/<\/xml>\s*$/, `<Encrypt>${cdata(encrypt)}</Encrypt>\n</xml>`);
    }
    if (o.tamper === 'signature')
      query.signature = query.signature.replace(/^./, (c) => (c === 'a' ? 'b' : 'a'));
    if (o.tamper === 'msg_signature' && query.msg_signature)
      query.msg_signature = query.msg_signature.replace(/^./, (c) => (c === 'a' ? 'b' : 'a'));
    if (o.tamper === 'no-signature') delete query.signature;
    return { query, body, mode };
  }

  /** URL verification (GET). `ok` when the webhook answered 200 with exactly `echostr`. */
  async verifyUrl(
    url: string,
    o: { echostr?: string; tamper?: 'signature'; timeoutMs?: number } = {},
  ): Promise<{ status: number; body: string; ok: boolean; headers: http.IncomingHttpHeaders }> {
    const timestamp = String(Math.floor(Date.now() / 1000));
    const nonce = String(randomBytes(4).readUInt32BE(0));
    const echostr = o.echostr ?? String(randomBytes(8).readBigUInt64BE(0));
    let signature = sha1(this.account.token, timestamp, nonce);
    if (o.tamper === 'signature') signature = sha1('not-the-token', timestamp, nonce);
    const q = new URLSearchParams({ signature, timestamp, nonce, echostr });
    const r = await this.request(
      'GET',
      `${url}?${q.toString()}`,
      undefined,
      {},
      o.timeoutMs ?? this.opts.timeoutMs ?? 5000,
    );
    const res = {
      status: r.status ?? 0,
      body: r.body ?? '',
      ok: r.status === 200 && r.body === echostr,
      headers: r.headers ?? {},
    };
    this.verifications.push({ status: res.status, body: res.body, ok: res.ok });
    return res;
  }

  /** Pushes one message XML to the webhook the way WeChat does, with retries. */
  async push(url: string, xml: string, o: PushOptions = {}): Promise<PushRecord> {
    const { query, body, mode } = this.buildRequest(xml, o);
    const fields = (parser.parse(xml) as { xml?: Record<string, unknown> }).xml ?? {};
    const openid = asText(fields.FromUserName);
    const kind = interactionOf(fields);
    if (kind && openid) this.opts.onUserMessage?.(openid, kind);
    const record: PushRecord = {
      mode,
      xml,
      query,
      body,
      openid,
      attempts: [],
      acknowledged: false,
      problems: [],
    };
    this.pushes.push(record);
    const target = `${url}${url.includes('?') ? '&' : '?'}${new URLSearchParams(query).toString()}`;
    const timeoutMs = o.timeoutMs ?? this.opts.timeoutMs ?? 5000;
    const retries = o.retries ?? this.opts.retries ?? 3;
    const headers = {
      'Content-Type': o.contentType ?? 'text/xml',
      'User-Agent': 'Mozilla/4.0',
      Accept: '*/*',
      Pragma: 'no-cache',
      ...o.headers,
    };
    const attempt = async (n: number): Promise<PushAttempt> => {
      const startedAt = Date.now();
      const r = await this.request('POST', target, body, headers, timeoutMs);
      const a: PushAttempt = {
        n,
        startedAt,
        ms: Date.now() - startedAt,
        status: r.status,
        contentType: r.headers?.['content-type'],
        body: r.body,
        timedOut: r.timedOut,
        error: r.error,
      };
      record.attempts.push(a);
      return a;
    };
    const failed = (a: PushAttempt): boolean => a.timedOut || !!a.error || a.status !== 200;

    let answered: PushAttempt | undefined;
    if (o.concurrent) {
      const all = await Promise.all(Array.from({ length: retries + 1 }, (_, i) => attempt(i + 1)));
      answered = all.find((a) => !failed(a));
    } else {
      for (let n = 1; n <= retries + 1; n++) {
        const a = await attempt(n);
        if (!failed(a)) {
          answered = a;
          break;
        }
        if (o.retryDelayMs) await new Promise((r) => setTimeout(r, o.retryDelayMs));
      }
    }
    if (!answered) {
      record.problems.push('no valid answer within the timeout after all retries');
      return record;
    }
    this.judge(record, answered, fields);
    return record;
  }

  /** Judges a 200 answer as WeChat would. */
  private judge(record: PushRecord, a: PushAttempt, push: Record<string, unknown>): void {
    const text = a.body ?? '';
    if (text === '' || text === 'success') {
      record.acknowledged = true;
      return;
    }
    let parsed: Record<string, unknown> | undefined;
    try {
      parsed = (parser.parse(text) as { xml?: Record<string, unknown> }).xml;
    } catch {
      parsed = undefined;
    }
    if (!parsed) {
      record.problems.push('the answer is neither "success", empty, nor reply XML');
      return;
    }
    let reply = parsed;
    let xml = text;
    let encrypted = false;
    if (typeof parsed.Encrypt === 'string') {
      encrypted = true;
      const ts = asText(parsed.TimeStamp);
      const nonce = asText(parsed.Nonce);
      if (sha1(this.account.token, ts, nonce, parsed.Encrypt) !== asText(parsed.MsgSignature)) {
        record.problems.push('the encrypted reply has a wrong MsgSignature');
        return;
      }
      let d: { xml: string; appId: string };
      try {
        d = this.decrypt(parsed.Encrypt);
      } catch {
        record.problems.push('the encrypted reply cannot be decrypted');
        return;
      }
      if (d.appId !== this.account.appId) {
        record.problems.push('the encrypted reply carries another AppID');
        return;
      }
      xml = d.xml;
      reply = (parser.parse(d.xml) as { xml?: Record<string, unknown> }).xml ?? {};
    } else if (record.mode === 'safe') {
      record.problems.push('a plain reply in safe mode');
      return;
    }
    const valid = ['text', 'image', 'voice', 'video', 'music', 'news', 'transfer_customer_service'];
    if (reply.ToUserName !== push.FromUserName)
      record.problems.push('the reply is not addressed to the user');
    if (reply.FromUserName !== push.ToUserName) record.problems.push('the reply is not from the account');
    if (!valid.includes(asText(reply.MsgType)))
      record.problems.push(`the reply has MsgType ${asText(reply.MsgType)}`);
    if (!/^\d+$/.test(asText(reply.CreateTime))) record.problems.push('the reply has no CreateTime');
    record.reply = { xml, fields: reply, encrypted };
    record.acknowledged = record.problems.length === 0;
  }

  private request(
    method: 'GET' | 'POST',
    url: string,
    body: string | undefined,
    headers: Record<string, string>,
    timeoutMs: number,
  ): Promise<{
    status?: number;
    body?: string;
    headers?: http.IncomingHttpHeaders;
    timedOut: boolean;
    error?: string;
  }> {
    return new Promise((resolve) => {
      const u = new URL(url);
      const buf = body === undefined ? undefined : Buffer.from(body, 'utf8');
      const req = http.request(
        u,
        {
          method,
          agent: this.agent,
          headers: { ...headers, ...(buf ? { 'Content-Length': String(buf.length) } : {}) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            clearTimeout(timer);
            resolve({
              status: res.statusCode,
              body: Buffer.concat(chunks).toString('utf8'),
              headers: res.headers,
              timedOut: false,
            });
          });
          res.on('error', () => {
            clearTimeout(timer);
            resolve({ timedOut: false, error: 'the answer broke off' });
          });
        },
      );
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        req.destroy(new Error('timeout'));
      }, timeoutMs);
      req.on('error', (e) => {
        clearTimeout(timer);
        resolve(
          timedOut
            ? { timedOut: true }
            : { timedOut: false, error: (e as NodeJS.ErrnoException).code ?? e.message },
        );
      });
      if (buf) req.end(buf);
      else req.end();
    });
  }
}

/** Which customer-service window a message opens (docs/protocol/wechat.md §8.3). */
export function interactionOf(fields: Record<string, unknown>): UserInteraction | undefined {
  const type = asText(fields.MsgType);
  if (!type) return undefined;
  if (type !== 'event') return 'message';
  switch (asText(fields.Event)) {
    case 'CLICK':
    case 'scancode_push':
    case 'scancode_waitmsg':
      return 'menu';
    case 'subscribe':
      return 'subscribe';
    case 'SCAN':
      return 'scan';
    default:
      return undefined;
  }
}
