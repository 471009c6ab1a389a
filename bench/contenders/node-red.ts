/**
 * Contenders (a) and (b): a real Node-RED (`red.js`, as users start it) in its own process, with default settings
 * (editor and endpoints on one port and root), our package installed in the user directory, and one flow:
 *
 * (a) the pack:  wechat-in → cxone-dfo-out,  or  cxone-dfo-in → wechat-out
 * (b) the same bridge from core nodes:
 *     WeChat → CXone: http in → xml → function (signature; builds the DFO request) → http request → change → http
 *                     response; safe mode: http in → xml → function (signatures, decrypt) → xml → function (builds
 *                     the DFO request) → http request → change → http response
 *     CXone → WeChat: http in → function (bearer JWT; builds the WeChat request) → http request → function (the
 *                     answer CXone expects) → http response
 *     and an inject at start that fetches the far side's token into global context (http request, keep-alive on).
 *
 * The core flow's function nodes get `crypto` and the account settings through `functionGlobalContext`, the usual
 * way to give function nodes a module.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Redis from 'ioredis';
import {
  BOX_PATH,
  CXONE,
  DFO_BASE_PATH,
  WECHAT,
  WECHAT_PATH,
  handBuiltJwtKey,
  type PushMode,
} from '../common';
import { start, type Child } from '../proc';

export type StoreKind = 'default' | 'memory' | 'file' | 'redis';

export interface NodeRedContender {
  kind: 'pack' | 'core';
  direction: 'wechat' | 'cxone';
  mode: PushMode;
  /** The pack's store (default: the property left out, as in a flow saved before it existed → file store). */
  store?: StoreKind;
  /** The pack's dist directory, when not this build (the bench's --baseline). */
  build?: string;
}

type Flow = Record<string, unknown>[];

/** The build these files were compiled into (it has nodes/, lib/, bench/). */
const buildRoot = path.resolve(__dirname, '..', '..');

/** The checkout: the first directory above the build with package.json and tsconfig.json. */
function findRepoRoot(): string {
  for (let dir = buildRoot; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'tsconfig.json')))
      return dir;
    if (path.dirname(dir) === dir) throw new Error(`no checkout above ${buildRoot}`);
  }
}

/** `node-red` (4.x) or `node-red-5`, as the tests choose it. */
export function nodeRedBin(): string {
  const pkg = process.env.WXCX_NODE_RED || 'node-red';
  return path.join(path.dirname(require.resolve(`${pkg}/package.json`)), 'red.js');
}

/**
 * Installs this build (or the dist directory `build`) as `@wxcx/node-red-wechat-cxone` in the user directory
 * (symlinked), as a user would.
 */
function linkPackageInto(userDir: string, build = buildRoot): void {
  const root = findRepoRoot();
  const pkgDir = path.join(userDir, 'node_modules', '@wxcx', 'node-red-wechat-cxone');
  fs.mkdirSync(pkgDir, { recursive: true });
  fs.copyFileSync(path.join(root, 'package.json'), path.join(pkgDir, 'package.json'));
  fs.symlinkSync(build, path.join(pkgDir, 'dist'), 'dir');
}

function packFlows(
  c: NodeRedContender,
  farUrl: string,
  redisPrefix: string,
): { flows: Flow; creds: Record<string, Record<string, string>> } {
  const store: Record<string, unknown> = c.store && c.store !== 'default' ? { store: c.store } : {};
  if (c.store === 'redis') store.keyPrefix = redisPrefix;
  const flows: Flow = [
    { id: 'tab', type: 'tab', label: 'bench' },
    { id: 'wxcfg', type: 'wechat-config', name: 'bench', appId: WECHAT.appId, apiBase: farUrl, ...store },
    {
      id: 'cxcfg',
      type: 'cxone-dfo-config',
      name: 'bench',
      authIssuer: farUrl,
      apiBase: farUrl + DFO_BASE_PATH,
      ...store,
    },
  ];
  if (c.direction === 'wechat') {
    flows.push(
      {
        id: 'wxin',
        type: 'wechat-in',
        z: 'tab',
        name: '',
        wechat: 'wxcfg',
        path: WECHAT_PATH,
        wires: [['cxout']],
      },
      {
        id: 'cxout',
        type: 'cxone-dfo-out',
        z: 'tab',
        name: '',
        cxone: 'cxcfg',
        channelId: CXONE.channelId,
        wires: [[], []],
      },
    );
  } else {
    flows.push(
      {
        id: 'cxin',
        type: 'cxone-dfo-in',
        z: 'tab',
        name: '',
        cxone: 'cxcfg',
        path: BOX_PATH,
        wires: [['wxout']],
      },
      { id: 'wxout', type: 'wechat-out', z: 'tab', name: '', wechat: 'wxcfg', wires: [[], []] },
    );
  }
  return {
    flows,
    creds: {
      wxcfg: {
        appSecret: WECHAT.appSecret,
        token: WECHAT.token,
        encodingAESKey: c.mode === 'safe' ? WECHAT.encodingAESKey : '',
      },
      cxcfg: {
        clientId: CXONE.clientId,
        clientSecret: CXONE.clientSecret,
        accessKeyId: CXONE.accessKeyId,
        accessKeySecret: CXONE.accessKeySecret,
        boxClientId: CXONE.boxClientId,
        boxClientSecret: CXONE.boxClientSecret,
        jwtSecret: CXONE.jwtSecret,
      },
    },
  };
}

// ---- (b) the core-node flows ------------------------------------------------------------------------------------

const CHECK_SIGNATURE = `
const crypto = global.get('crypto');
const cfg = global.get('bench');
const q = msg.req.query;
const ts = String(q.timestamp || ''), nonce = String(q.nonce || ''), sig = String(q.signature || '');
const expected = crypto.createHash('sha1').update([cfg.token, ts, nonce].sort().join('')).digest('hex');
if (!ts || !nonce || sig.length !== expected.length || !crypto.timingSafeEqual(Buffer.from(sig), Buffer.from(expected))) {
    msg.statusCode = 401;
    msg.payload = '';
    return [null, msg];
}`;

const BUILD_DFO_REQUEST = `
const x = msg.payload && msg.payload.xml;
const f = (k) => (x && Array.isArray(x[k]) ? String(x[k][0]) : '');
const openid = f('FromUserName');
if (!openid || !f('MsgId') || !f('MsgType')) {
    msg.statusCode = 400;
    msg.payload = 'missing fields';
    return [null, msg];
}
const created = Number(f('CreateTime')) * 1000 || Date.now();
msg.method = 'POST';
msg.url = cfg.dfoBase + '/channels/' + encodeURIComponent(cfg.channelId) + '/messages';
msg.headers = { 'Content-Type': 'application/json', Accept: 'application/json', Authorization: 'Bearer ' + global.get('dfoToken') };
msg.payload = {
    idOnExternalPlatform: 'wechat:' + f('ToUserName') + ':' + f('MsgId'),
    direction: 'inbound',
    createdAtWithMilliseconds: new Date(created).toISOString(),
    thread: { idOnExternalPlatform: openid, threadName: 'WeChat ' + openid },
    messageContent: { type: 'TEXT', payload: { text: f('Content') || '[' + f('MsgType') + ']' } },
    authorEndUserIdentity: { idOnExternalPlatform: openid }
};
return [msg, null];`;

const DECRYPT = `
const enc = msg.payload && msg.payload.xml && Array.isArray(msg.payload.xml.Encrypt) ? String(msg.payload.xml.Encrypt[0]) : '';
const msgSig = String(q.msg_signature || '');
const expectedMsg = crypto.createHash('sha1').update([cfg.token, ts, nonce, enc].sort().join('')).digest('hex');
if (!enc || msgSig.length !== expectedMsg.length || !crypto.timingSafeEqual(Buffer.from(msgSig), Buffer.from(expectedMsg))) {
    msg.statusCode = 401;
    msg.payload = '';
    return [null, msg];
}
try {
    const key = Buffer.from(cfg.aesKey + '=', 'base64');
    const d = crypto.createDecipheriv('aes-256-cbc', key, key.subarray(0, 16));
    d.setAutoPadding(false);
    const plain = Buffer.concat([d.update(enc, 'base64'), d.final()]);
    const content = plain.subarray(16, plain.length - plain[plain.length - 1]);
    const len = content.readUInt32BE(0);
    if (content.subarray(4 + len).toString('utf8') !== cfg.appId) throw new Error('appid');
    msg.payload = content.subarray(4, 4 + len).toString('utf8');
} catch (e) {
    msg.statusCode = 400;
    msg.payload = 'cannot decrypt';
    return [null, msg];
}
return [msg, null];`;

const ACK_SUCCESS = [
  { t: 'set', p: 'payload', pt: 'msg', to: 'success', tot: 'str' },
  { t: 'delete', p: 'headers', pt: 'msg' },
];

const FETCH_DFO_TOKEN = `
const cfg = global.get('bench');
msg.method = 'POST';
msg.url = cfg.farUrl + '/auth/token';
msg.headers = {
    'Content-Type': 'application/x-www-form-urlencoded',
    Authorization: 'Basic ' + Buffer.from(cfg.clientId + ':' + cfg.clientSecret).toString('base64')
};
msg.payload = 'grant_type=password&username=' + encodeURIComponent(cfg.accessKeyId) + '&password=' + encodeURIComponent(cfg.accessKeySecret);
return msg;`;

const KEEP_DFO_TOKEN = `
if (msg.statusCode === 200 && msg.payload && msg.payload.access_token) {
    global.set('dfoToken', msg.payload.access_token);
    node.status({ fill: 'green', shape: 'dot', text: 'token' });
} else {
    node.error('no DFO token: HTTP ' + msg.statusCode, msg);
}
return null;`;

const FETCH_WX_TOKEN = `
const cfg = global.get('bench');
msg.method = 'POST';
msg.url = cfg.farUrl + '/cgi-bin/stable_token';
msg.headers = { 'Content-Type': 'application/json' };
msg.payload = { grant_type: 'client_credential', appid: cfg.appId, secret: cfg.appSecret };
return msg;`;

const KEEP_WX_TOKEN = `
if (msg.payload && msg.payload.access_token) {
    global.set('wxToken', msg.payload.access_token);
    node.status({ fill: 'green', shape: 'dot', text: 'token' });
} else {
    node.error('no WeChat token', msg);
}
return null;`;

const CHECK_JWT_BUILD_SEND = `
const crypto = global.get('crypto');
const cfg = global.get('bench');
const reject = (status, error) => {
    msg.statusCode = status;
    msg.payload = { error };
    return [null, msg];
};
const m = /^Bearer ([A-Za-z0-9_-]+)\\.([A-Za-z0-9_-]+)\\.([A-Za-z0-9_-]+)$/.exec(String(msg.req.headers.authorization || ''));
if (!m) return reject(401, 'invalid_token');
const expected = crypto.createHmac('sha256', Buffer.from(cfg.jwtKey, 'hex')).update(m[1] + '.' + m[2]).digest();
const got = Buffer.from(m[3], 'base64url');
if (got.length !== expected.length || !crypto.timingSafeEqual(got, expected)) return reject(401, 'invalid_token');
let claims;
try {
    const h = JSON.parse(Buffer.from(m[1], 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(m[2], 'base64url').toString('utf8'));
    if (h.alg !== 'HS256') return reject(401, 'invalid_token');
} catch (e) {
    return reject(401, 'invalid_token');
}
if (claims.iss !== 'urn:bench:box' || claims.aud !== 'urn:bench:box:' + cfg.boxClientId || claims.sub !== cfg.boxClientId ||
    typeof claims.exp !== 'number' || claims.exp + 5 < Date.now() / 1000) return reject(401, 'invalid_token');
const b = msg.payload;
if (!b || typeof b !== 'object') return reject(400, 'invalid_request');
const recipients = Array.isArray(b.endUserRecipients) ? b.endUserRecipients : [];
const openid = (b.thread && b.thread.idOnExternalPlatform) || (recipients[0] && recipients[0].idOnExternalPlatform) || '';
const text = b.messageContent && b.messageContent.payload && b.messageContent.payload.text;
if (!openid || typeof text !== 'string' || !text) return reject(400, 'invalid_request');
msg.reply = { id: 'wx-' + (b.id || msg._msgid), openid, created: new Date().toISOString() };
msg.method = 'POST';
msg.url = cfg.farUrl + '/cgi-bin/message/custom/send?access_token=' + encodeURIComponent(global.get('wxToken'));
msg.headers = { 'Content-Type': 'application/json' };
msg.payload = { touser: openid, msgtype: 'text', text: { content: text } };
return [msg, null];`;

const ANSWER_CXONE = `
delete msg.headers;
if (msg.statusCode === 200 && msg.payload && msg.payload.errcode === 0) {
    msg.payload = {
        message: { idOnExternalPlatform: msg.reply.id, createdAtWithMilliseconds: msg.reply.created, url: '' },
        thread: { idOnExternalPlatform: msg.reply.openid }
    };
} else {
    msg.statusCode = 502;
    msg.payload = { error: 'wechat_refused' };
}
return msg;`;

function httpRequest(id: string, ret: 'txt' | 'obj', wires: string[]): Record<string, unknown> {
  return {
    id,
    type: 'http request',
    z: 'tab',
    name: '',
    method: 'use',
    ret,
    paytoqs: 'ignore',
    url: '',
    tls: '',
    persist: true,
    proxy: '',
    insecureHTTPParser: false,
    authType: '',
    senderr: false,
    headers: [],
    wires: [wires],
  };
}

function fn(id: string, code: string, outputs: number, wires: string[][]): Record<string, unknown> {
  return {
    id,
    type: 'function',
    z: 'tab',
    name: `fn ${id}`,
    func: code,
    outputs,
    timeout: 0,
    noerr: 0,
    initialize: '',
    finalize: '',
    libs: [],
    wires,
  };
}

function coreFlows(c: NodeRedContender): Flow {
  const flows: Flow = [{ id: 'tab', type: 'tab', label: 'bench (core nodes)' }];
  const inject = (id: string, wires: string[]): Record<string, unknown> => ({
    id,
    type: 'inject',
    z: 'tab',
    name: 'token at start',
    props: [],
    repeat: '',
    crontab: '',
    once: true,
    onceDelay: 0.1,
    topic: '',
    wires: [wires],
  });
  const response = {
    id: 'resp',
    type: 'http response',
    z: 'tab',
    name: '',
    statusCode: '',
    headers: {},
    wires: [],
  };
  if (c.direction === 'wechat') {
    flows.push(
      inject('tokinj', ['tokfn']),
      fn('tokfn', FETCH_DFO_TOKEN, 1, [['tokreq']]),
      httpRequest('tokreq', 'obj', ['tokkeep']),
      fn('tokkeep', KEEP_DFO_TOKEN, 1, []),
      {
        id: 'in',
        type: 'http in',
        z: 'tab',
        name: '',
        url: WECHAT_PATH,
        method: 'post',
        upload: false,
        swaggerDoc: '',
        wires: [['xml1']],
      },
      {
        id: 'xml1',
        type: 'xml',
        z: 'tab',
        name: '',
        property: 'payload',
        attr: '',
        chr: '',
        wires: [['check']],
      },
    );
    if (c.mode === 'plain') {
      flows.push(fn('check', CHECK_SIGNATURE + BUILD_DFO_REQUEST, 2, [['req'], ['resp']]));
    } else {
      flows.push(
        fn('check', CHECK_SIGNATURE + DECRYPT, 2, [['xml2'], ['resp']]),
        {
          id: 'xml2',
          type: 'xml',
          z: 'tab',
          name: '',
          property: 'payload',
          attr: '',
          chr: '',
          wires: [['build']],
        },
        fn('build', `const cfg = global.get('bench');\n${BUILD_DFO_REQUEST}`, 2, [['req'], ['resp']]),
      );
    }
    flows.push(
      httpRequest('req', 'txt', ['ack']),
      { id: 'ack', type: 'change', z: 'tab', name: 'success', rules: ACK_SUCCESS, wires: [['resp']] },
      response,
    );
  } else {
    flows.push(
      inject('tokinj', ['tokfn']),
      fn('tokfn', FETCH_WX_TOKEN, 1, [['tokreq']]),
      httpRequest('tokreq', 'obj', ['tokkeep']),
      fn('tokkeep', KEEP_WX_TOKEN, 1, []),
      {
        id: 'in',
        type: 'http in',
        z: 'tab',
        name: '',
        url: `${BOX_PATH}/2.0/channel/:channelId/outbound`,
        method: 'post',
        upload: false,
        swaggerDoc: '',
        wires: [['check']],
      },
      fn('check', CHECK_JWT_BUILD_SEND, 2, [['req'], ['resp']]),
      httpRequest('req', 'obj', ['answer']),
      fn('answer', ANSWER_CXONE, 1, [['resp']]),
      response,
    );
  }
  return flows;
}

function settingsJs(farUrl: string): string {
  const bench = {
    farUrl,
    dfoBase: farUrl + DFO_BASE_PATH,
    token: WECHAT.token,
    aesKey: WECHAT.encodingAESKey,
    appId: WECHAT.appId,
    appSecret: WECHAT.appSecret,
    channelId: CXONE.channelId,
    clientId: CXONE.clientId,
    clientSecret: CXONE.clientSecret,
    accessKeyId: CXONE.accessKeyId,
    accessKeySecret: CXONE.accessKeySecret,
    boxClientId: CXONE.boxClientId,
    jwtKey: handBuiltJwtKey().toString('hex'),
  };
  return `module.exports = {
  flowFile: 'flows.json',
  credentialSecret: false,
  uiHost: '127.0.0.1',
  logging: { console: { level: 'info', metrics: false, audit: false } },
  functionGlobalContext: { crypto: require('node:crypto'), bench: ${JSON.stringify(bench)} },
};
`;
}

export interface StartNodeRedOptions {
  farUrl: string;
  name: string;
  execArgv?: string[];
  logFile?: string;
}

export interface RunningNodeRed {
  child: Child;
  userDir: string;
  /** The key prefix of the Redis store (pack with `store: redis`): every key of the run starts with it. */
  redisPrefix?: string;
}

/** Deletes every key of a bench run from Redis (127.0.0.1:6379); the pack's keys carry `prefix`. */
export async function cleanRedis(prefix: string): Promise<number> {
  const client = new Redis({ host: '127.0.0.1', port: 6379, lazyConnect: true, maxRetriesPerRequest: 1 });
  let n = 0;
  try {
    await client.connect();
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) n += await client.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    client.disconnect();
  }
  return n;
}

/** Writes a user directory for `c` and starts red.js in it. */
export async function startNodeRed(c: NodeRedContender, o: StartNodeRedOptions): Promise<RunningNodeRed> {
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), `wxcx-bench-${c.kind}-`));
  fs.writeFileSync(path.join(userDir, 'settings.js'), settingsJs(o.farUrl));
  const redisPrefix = c.store === 'redis' ? `wxcx-bench-${process.pid}-${Date.now()}:` : undefined;
  if (c.kind === 'pack') {
    const { flows, creds } = packFlows(c, o.farUrl, redisPrefix ?? '');
    fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(flows));
    fs.writeFileSync(path.join(userDir, 'flows_cred.json'), JSON.stringify(creds));
    linkPackageInto(userDir, c.build);
  } else {
    fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(coreFlows(c)));
  }
  const child = await start({
    name: o.name,
    script: nodeRedBin(),
    args: ['--userDir', userDir, '--port', '0', '--settings', path.join(userDir, 'settings.js')],
    cwd: userDir,
    agent: true,
    execArgv: o.execArgv,
    logFile: o.logFile,
    readyLog: /Server now running at http:\/\/[^:]+:(\d+)\//,
  });
  // Flows start after the server listens.
  const t0 = Date.now();
  while (!/Started flows/.test(child.logs())) {
    if (Date.now() - t0 > 30_000)
      throw new Error(`${o.name}: flows did not start:\n${child.logs().slice(-3000)}`);
    if (/\[error\]/.test(child.logs())) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, userDir, redisPrefix };
}

/** Removes a stopped contender's user directory. */
export function cleanUserDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}
