/**
 * Generated and mutated requests for the fuzz suite (fuzz.test.ts), one generator per endpoint.
 *
 * fast-check picks what to do (genuine or mutated, which mutations, where, how big); the bytes are then built by
 * plain code from a seed fast-check also picks, so a failing case is reproduced from the run's seed. Each genuine
 * request carries a unique marker (FZ + 12 hex digits + 8 check digits) in the places the emitted message keeps (text, MsgId,
 * thread id), so the suite can tell which request an emission came from.
 *
 * Every request says what is expected of it:
 *   accept  a genuine request: answered 2xx (and emitted, where the endpoint emits);
 *   refuse  a mutation that cannot be genuine (a signature flipped, no token…): answered 4xx, never emitted;
 *   any     a mutation that may or may not still be genuine (the body of a plain push is not signed): any 2xx/4xx,
 *           and emitted only if answered 2xx.
 */
import { createHash, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { sha1Sorted, wxEncrypt, type WxAccount } from './requests';

export type Expect = 'accept' | 'refuse' | 'any';

export interface FuzzRequest {
  method: string;
  /** Path and query. */
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  /** Sent as these raw bytes on a new connection (which is then half-closed) instead of through the client. */
  raw?: Buffer;
  marker?: string;
  expect: Expect;
  /** Whether an accepted answer means a message was emitted. */
  emits: boolean;
  /** A second, identical request sent after the first was answered: answered 2xx, emitted never. */
  replay?: boolean;
  mutations: string[];
}

// ---------------------------------------------------------------------------------------------------------
// A small deterministic PRNG for the bytes (fast-check picks its seed)

export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  hex(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += '0123456789abcdef'[this.int(16)];
    return s;
  }
}

/** Percent-encodes the UTF-8 bytes of `s` (lone surrogates included, which encodeURIComponent refuses). */
export function pct(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-_.~]/.test(c) ? c : '%' + b.toString(16).padStart(2, '0');
  }
  return out;
}

let markerCounter = 0;
const runTag = randomBytes(3).toString('hex');

/**
 * The check digits of a marker body (12 hex digits): FNV-1a, 32 bits. A mutation that flips a digit of a marker in a
 * body that is still accepted must not make another request's marker: with 8 bits (the first version) one flip in 251
 * did, and the suite blamed an unrelated refused request for the emission.
 */
export function markerCheck(body: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < body.length; i++) h = Math.imul(h ^ body.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}

/** A marker no other request of this process carries: FZ, 12 hex digits, 8 check digits. */
export function newMarker(): string {
  markerCounter = (markerCounter + 1) % 0x1000000;
  const body = runTag + markerCounter.toString(16).padStart(6, '0');
  return 'FZ' + body + markerCheck(body);
}

// ---------------------------------------------------------------------------------------------------------
// Generic mutations of bytes, text and requests

/** Strings that have broken parsers before. */
const NASTY = [
  '',
  '\u0000',
  '\uFEFF',
  '\uD800',
  '%',
  '%zz',
  '%00',
  '%ff%fe',
  '../..',
  '\\',
  '<',
  '>',
  ']]>',
  '<![CDATA[',
  '&',
  '&amp',
  '&#0;',
  '&#x110000;',
  '&lol;',
  '"',
  "'",
  '{',
  '}',
  '[',
  ']',
  '\\u0000',
  '\\ud800',
  '__proto__',
  'constructor',
  '1e999',
  '-0',
  'NaN',
  '9007199254740993',
  '👍🏽',
  'مرحبا',
  '\u202E',
  '\r\n',
  'A'.repeat(4096),
];

const CONTENT_TYPES = [
  'text/xml',
  'application/xml',
  'text/plain',
  'application/json',
  'application/json; charset=utf-8',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=zz',
  'application/octet-stream',
  'text/xml; charset=gbk',
  'image/png',
  '',
  'text/html',
  'application/vnd.api+json',
];

export type ByteMutation =
  | 'truncate'
  | 'flip'
  | 'insert-random'
  | 'binary'
  | 'duplicate-slice'
  | 'delete-slice'
  | 'append-garbage'
  | 'invalid-utf8'
  | 'nasty-string'
  | 'pad-huge'
  | 'empty';

export const BYTE_MUTATIONS: readonly ByteMutation[] = [
  'truncate',
  'flip',
  'insert-random',
  'binary',
  'duplicate-slice',
  'delete-slice',
  'append-garbage',
  'invalid-utf8',
  'nasty-string',
  'pad-huge',
  'empty',
];

export function mutateBytes(b: Buffer, m: ByteMutation, r: Rng): Buffer {
  const at = b.length ? r.int(b.length) : 0;
  switch (m) {
    case 'truncate':
      return b.subarray(0, at);
    case 'flip': {
      const c = Buffer.from(b);
      if (c.length) c[at] ^= 1 << r.int(8);
      return c;
    }
    case 'insert-random':
      return Buffer.concat([b.subarray(0, at), r.bytes(1 + r.int(16)), b.subarray(at)]);
    case 'binary':
      return r.bytes(r.int(4096));
    case 'duplicate-slice': {
      const end = Math.min(b.length, at + 1 + r.int(200));
      return Buffer.concat([b.subarray(0, end), b.subarray(at, end), b.subarray(end)]);
    }
    case 'delete-slice':
      return Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + r.int(50)))]);
    case 'append-garbage':
      return Buffer.concat([b, Buffer.from(r.pick(NASTY)), r.bytes(r.int(32))]);
    case 'invalid-utf8':
      return Buffer.concat([
        b.subarray(0, at),
        Buffer.from(
          r.pick([[0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80]]),
        ),
        b.subarray(at),
      ]);
    case 'nasty-string':
      return Buffer.concat([b.subarray(0, at), Buffer.from(r.pick(NASTY)), b.subarray(at)]);
    case 'pad-huge':
      // Past every limit of the pack (256 KiB pushes and replies, 16 KiB token, 64 KiB sender actions).
      return Buffer.concat([b, Buffer.alloc(270_000 + r.int(40_000), 0x20)]);
    case 'empty':
      return Buffer.alloc(0);
  }
}

/** XML-aware mutations: what a parser must refuse or survive. */
export const XML_MUTATIONS = [
  'doctype',
  'entity',
  'external-entity',
  'billion-laughs',
  'deep',
  'many-elements',
  'huge-attribute',
  'pi',
  'drop-field',
  'duplicate-field',
  'rename-root',
  'cdata-break',
  'two-roots',
  'comment',
] as const;
export type XmlMutation = (typeof XML_MUTATIONS)[number];

export function mutateXml(xml: string, m: XmlMutation, r: Rng): string {
  const inner = xml.replace(/^<xml>/, '').replace(/<\/xml>$/, '');
  switch (m) {
    case 'doctype':
      return `<!DOCTYPE xml [<!ELEMENT xml ANY>]>${xml}`;
    case 'entity':
      return `<!DOCTYPE xml [<!ENTITY e "x">]>${xml.replace('<Content>', '<Content>&e;')}`;
    case 'external-entity':
      return `<!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]>${xml.replace('</xml>', '<X>&e;</X></xml>')}`;
    case 'billion-laughs':
      return (
        '<!DOCTYPE lolz [<!ENTITY a "aaaaaaaaaa">' +
        Array.from({ length: 8 }, (_, i) => `<!ENTITY a${i + 1} "${`&a${i || ''};`.repeat(10)}">`).join('') +
        `]>${xml.replace('</xml>', '<X>&a8;</X></xml>')}`
      );
    case 'deep': {
      const d = r.int(8) ? 17 + r.int(200) : 20_000;
      return xml.replace('</xml>', '<d>'.repeat(d) + '</d>'.repeat(d) + '</xml>');
    }
    case 'many-elements':
      return xml.replace('</xml>', '<e/>'.repeat(1000 + r.int(5000)) + '</xml>');
    case 'huge-attribute':
      return xml.replace(
        '<ToUserName>',
        `<ToUserName a="${'A'.repeat(r.int(8) ? 1 + r.int(4000) : 300_000)}">`,
      );
    case 'pi':
      return xml.replace('</xml>', '<?php evil(); ?></xml>');
    case 'drop-field': {
      const fields = [...inner.matchAll(/<(\w+)>.*?<\/\1>/g)].map((x) => x[0]);
      if (!fields.length) return xml;
      return xml.replace(r.pick(fields), '');
    }
    case 'duplicate-field': {
      const fields = [...inner.matchAll(/<(\w+)>.*?<\/\1>/g)].map((x) => x[0]);
      if (!fields.length) return xml;
      const f = r.pick(fields);
      return xml.replace(f, f + f);
    }
    case 'rename-root':
      return `<root>${inner}</root>`;
    case 'cdata-break':
      return xml.replace('<![CDATA[', '<![CDATA[]]>');
    case 'two-roots':
      return xml + xml;
    case 'comment':
      return xml.replace('<xml>', '<xml><!-- ' + r.pick(NASTY) + ' -->');
  }
}

/** JSON-aware mutations. */
export const JSON_MUTATIONS = [
  'drop-key',
  'retype',
  'deep',
  'array',
  'proto',
  'big-number',
  'escapes',
  'null',
  'nested-string',
  'many-keys',
] as const;
export type JsonMutation = (typeof JSON_MUTATIONS)[number];

function dropRandomKey(v: Record<string, unknown>, r: Rng): void {
  const keys = Object.keys(v);
  if (!keys.length) return;
  const k = r.pick(keys);
  const child = v[k];
  if (child && typeof child === 'object' && !Array.isArray(child) && r.int(2) === 0)
    dropRandomKey(child as Record<string, unknown>, r);
  else delete v[k];
}

export function mutateJson(body: Record<string, unknown>, m: JsonMutation, r: Rng): string {
  const v = JSON.parse(JSON.stringify(body)) as Record<string, unknown>;
  switch (m) {
    case 'drop-key':
      dropRandomKey(v, r);
      return JSON.stringify(v);
    case 'retype': {
      const k = r.pick(Object.keys(v).length ? Object.keys(v) : ['x']);
      v[k] = r.pick<unknown>([null, 0, -1, 1e308, true, [], {}, '', 'x'.repeat(300), [1, [2, [3]]]]);
      return JSON.stringify(v);
    }
    case 'deep': {
      const d = r.int(8) ? 20 + r.int(100) : 5000;
      return JSON.stringify(v).replace(/}$/, `,"deep":${'['.repeat(d)}${']'.repeat(d)}}`);
    }
    case 'array':
      return JSON.stringify([v]);
    case 'proto':
      return JSON.stringify(v).replace(
        /^{/,
        '{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}},',
      );
    case 'big-number':
      return JSON.stringify(v).replace(/}$/, ',"id":123456789012345678901234567890,"n":1e999}');
    case 'escapes':
      return JSON.stringify(v).replace(/"text":"/, '"text":"\\ud800\\u0000\\"\\\\');
    case 'null':
      return 'null';
    case 'nested-string':
      return JSON.stringify(JSON.stringify(v));
    case 'many-keys': {
      const extra: string[] = [];
      for (let i = 0, n = 100 + r.int(2000); i < n; i++) extra.push(`"k${i}":${i}`);
      return JSON.stringify(v).replace(/}$/, ',' + extra.join(',') + '}');
    }
  }
}

export const HEADER_MUTATIONS = [
  'content-type',
  'no-content-type',
  'content-encoding',
  'huge-header',
  'many-headers',
  'odd-header-name',
  'expect-continue',
  'x-forwarded',
] as const;
export type HeaderMutation = (typeof HEADER_MUTATIONS)[number];

export function mutateHeaders(h: Record<string, string>, m: HeaderMutation, r: Rng): Record<string, string> {
  const out = { ...h };
  switch (m) {
    case 'content-type':
      out['Content-Type'] = r.pick(CONTENT_TYPES);
      if (!out['Content-Type']) delete out['Content-Type'];
      break;
    case 'no-content-type':
      delete out['Content-Type'];
      break;
    case 'content-encoding':
      out['Content-Encoding'] = r.pick(['gzip', 'deflate', 'br', 'identity, gzip', 'x-unknown']);
      break;
    case 'huge-header':
      out['X-Huge'] = 'h'.repeat(1000 + r.int(20_000));
      break;
    case 'many-headers':
      for (let i = 0, n = 50 + r.int(150); i < n; i++) out[`x-f${i}`] = r.hex(8);
      break;
    case 'odd-header-name':
      // Names the client can send (it refuses non-token characters itself; raw requests cover the rest).
      out[r.pick(['X-Y_Z', 'x-' + r.hex(40), 'Transfer-Encoding-X', 'X-HTTP-Method-Override', 'Forwarded'])] =
        r.pick(['1', '', 'DELETE', 'for=127.0.0.1', '\t']);
      break;
    case 'expect-continue':
      out.Expect = '100-continue';
      break;
    case 'x-forwarded':
      out['X-Forwarded-For'] = r.pick(['::1', '10.0.0.1', 'not an ip', '1.2.3.4, 5.6.7.8', '']);
      out['X-Forwarded-Host'] = r.pick(['evil.example', '', 'a b', 'x'.repeat(300)]);
      out['X-Forwarded-Proto'] = r.pick(['https', 'gopher', '']);
      break;
  }
  return out;
}

export const QUERY_MUTATIONS = [
  'flip-signature',
  'drop-param',
  'duplicate-param',
  'change-param',
  'non-hex',
  'long-value',
  'broken-percent',
  'extra-param',
] as const;
export type QueryMutation = (typeof QUERY_MUTATIONS)[number];

function flipHex(s: string, r: Rng): string {
  if (!s) return 'a';
  const i = r.int(s.length);
  const c = s[i];
  const to = c === 'a' ? 'b' : 'a';
  return s.slice(0, i) + to + s.slice(i + 1);
}

/** Mutates a query string; says whether the result can no longer authenticate. */
export function mutateQuery(
  q: string,
  m: QueryMutation,
  r: Rng,
  signed: string[],
): { q: string; breaks: boolean } {
  const p = new URLSearchParams(q);
  const names = [...new Set([...p.keys()])];
  switch (m) {
    case 'flip-signature': {
      const name = r.pick(
        signed.filter((s) => p.has(s)).length ? signed.filter((s) => p.has(s)) : ['signature'],
      );
      p.set(name, flipHex(p.get(name) ?? '', r));
      return { q: p.toString(), breaks: true };
    }
    case 'drop-param': {
      const name = r.pick(names.length ? names : ['x']);
      p.delete(name);
      return { q: p.toString(), breaks: signed.includes(name) };
    }
    case 'duplicate-param': {
      const name = r.pick(names.length ? names : ['x']);
      // The first value counts; a second, different one must not be what is checked.
      p.append(name, r.pick(NASTY));
      return { q: p.toString(), breaks: false };
    }
    case 'change-param': {
      const name = r.pick(names.length ? names : ['x']);
      p.set(name, (p.get(name) ?? '') + r.pick(['1', 'x', ' ', '0']));
      return { q: p.toString(), breaks: signed.includes(name) };
    }
    case 'non-hex': {
      const name = r.pick(signed);
      p.set(name, 'Z'.repeat(40));
      return { q: p.toString(), breaks: true };
    }
    case 'long-value':
      p.set('x' + r.hex(2), 'v'.repeat(100 + r.int(12_000)));
      return { q: p.toString(), breaks: false };
    case 'broken-percent':
      return { q: q + '&bad=%' + r.pick(['zz', 'f', '', '%', 'c3%28', 'ed%a0%80']), breaks: false };
    case 'extra-param':
      p.append(r.pick(['encrypt_type', 'msg_signature', 'openid', 'echostr', '__proto__']), r.pick(NASTY));
      // encrypt_type or msg_signature added may change the mode; nothing stays guaranteed.
      return { q: p.toString(), breaks: false };
  }
}

export const PATH_MUTATIONS = [
  'case',
  'trailing-slash',
  'double-slash',
  'extra-segment',
  'encoded',
  'dot-segments',
] as const;
export type PathMutation = (typeof PATH_MUTATIONS)[number];

export function mutatePath(path: string, m: PathMutation, r: Rng): string {
  const [p, q] = path.split('?', 2) as [string, string | undefined];
  let out = p;
  switch (m) {
    case 'case':
      out = p.replace(/[a-z]/, (c) => c.toUpperCase());
      break;
    case 'trailing-slash':
      out = p + '/';
      break;
    case 'double-slash':
      out = p.replace('/', '//');
      break;
    case 'extra-segment':
      out = p + '/' + r.pick(['x', '..', '%2e%2e', 'admin', 'media', '1.0']);
      break;
    case 'encoded':
      out = p.replace(/[a-z]/, (c) => '%' + c.charCodeAt(0).toString(16));
      break;
    case 'dot-segments':
      out = p.replace(/\/([^/]+)$/, '/../$1');
      break;
  }
  return q === undefined ? out : `${out}?${q}`;
}

export const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'] as const;

/** The request as raw HTTP/1.1 bytes, whole, asking the server to close the connection after answering. */
export function rawWhole(req: FuzzRequest): Buffer {
  const body = req.body ?? Buffer.alloc(0);
  const head =
    `${req.method} ${req.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n` +
    Object.entries(req.headers)
      .filter(([k]) => !/^(content-length|transfer-encoding|host|connection)$/i.test(k))
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('') +
    `Content-Length: ${body.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

/** A raw HTTP/1.1 request with a body that stops early, a lying length, or broken chunking. */
export function rawVariant(req: FuzzRequest, r: Rng): Buffer {
  const body = req.body ?? Buffer.alloc(0);
  const head = (extra: string): string =>
    `${req.method} ${req.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
    Object.entries(req.headers)
      .filter(([k]) => !/^(content-length|transfer-encoding|host)$/i.test(k))
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('') +
    extra +
    '\r\n';
  switch (r.int(5)) {
    case 0: // declared longer than sent, then the client hangs up
      return Buffer.concat([Buffer.from(head(`Content-Length: ${body.length + 1 + r.int(1000)}\r\n`)), body]);
    case 1: // cut in the middle of the body
      return Buffer.concat([
        Buffer.from(head(`Content-Length: ${body.length}\r\n`)),
        body.subarray(0, r.int(body.length + 1)),
      ]);
    case 2: // broken chunked encoding
      return Buffer.concat([
        Buffer.from(head('Transfer-Encoding: chunked\r\n')),
        Buffer.from(`${r.pick(['zz', '-1', 'ffffffffffff', '5'])}\r\n`),
        body.subarray(0, 5),
      ]);
    case 3: // both Content-Length and chunked (request smuggling shape)
      return Buffer.concat([
        Buffer.from(head(`Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n`)),
        Buffer.from(`${body.length.toString(16)}\r\n`),
        body,
        Buffer.from('\r\n0\r\n\r\n'),
      ]);
    default: // garbage
      return r.bytes(1 + r.int(600));
  }
}

// ---------------------------------------------------------------------------------------------------------
// The fast-check side: what to do with each request

/**
 * The last step of every mutated request: raw bytes where the plan says so, and what no endpoint can promise
 * (Node-RED answers OPTIONS itself; a raw request may be cut at any point).
 */
export function seal(req: FuzzRequest, plan: Plan, r: Rng): FuzzRequest {
  if (plan.raw) req.raw = rawVariant(req, r);
  // Node's client does not wait for "100 Continue" (it sends the body at once) and may take the interim answer
  // for the final one: a request that asks for it goes out raw, whole, with its expectation unchanged.
  else if (req.headers.Expect) req.raw = rawWhole(req);
  if (req.method === 'OPTIONS' || plan.raw) req.expect = 'any';
  return req;
}

export interface Plan {
  seed: number;
  /** 0..99: below the endpoint's genuine share → genuine. */
  roll: number;
  mutations: string[];
  raw: boolean;
}

/** A plan: genuine or not, and up to three mutations from `pool`. */
export function planArb(pool: readonly string[]): fc.Arbitrary<Plan> {
  return fc.record({
    seed: fc.noBias(fc.integer()),
    roll: fc.noBias(fc.integer({ min: 0, max: 99 })),
    mutations: fc.array(fc.constantFrom(...pool), { minLength: 1, maxLength: 3 }),
    raw: fc.noBias(fc.integer({ min: 0, max: 99 })).map((n) => n === 0),
  });
}

// ---------------------------------------------------------------------------------------------------------
// Endpoints

export interface FuzzEndpoint {
  name: string;
  /** Share of genuine requests, percent. */
  genuine: number;
  pool: readonly string[];
  build(plan: Plan): FuzzRequest[];
  /** Statuses a refused request may get (default: 4xx). */
  refusedOk?(status: number): boolean;
  /** Statuses an accepted request may get (default: 2xx). */
  acceptedOk?(status: number): boolean;
}

function withMutations(
  base: FuzzRequest,
  plan: Plan,
  r: Rng,
  opts: {
    signed?: string[];
    xml?: boolean;
    json?: Record<string, unknown>;
    /** Whether a change to the body can keep the request genuine (unsigned body). */
    bodyMayStayValid: boolean;
    /** Whether a different method/path may still reach the same handler. */
    pathMayStayValid?: boolean;
  },
): FuzzRequest {
  const req: FuzzRequest = { ...base, headers: { ...base.headers }, mutations: [...plan.mutations] };
  let breaks = false;
  let unsure = false;
  /** Whether a flip-signature left a signed value different from the genuine one (two flips may undo each other). */
  let flipped = false;
  const signedOf = (path: string): string[] => {
    const q = new URLSearchParams(path.split('?', 2)[1] ?? '');
    return (opts.signed ?? []).map((n) => q.getAll(n).join('\u0000'));
  };
  const genuineSigned = signedOf(base.path);
  let text = base.body?.toString('utf8');
  for (const m of plan.mutations) {
    if ((BYTE_MUTATIONS as readonly string[]).includes(m)) {
      req.body = mutateBytes(req.body ?? Buffer.alloc(0), m as ByteMutation, r);
      text = undefined;
      if (opts.bodyMayStayValid) unsure = true;
      else breaks = true;
    } else if ((XML_MUTATIONS as readonly string[]).includes(m) && opts.xml) {
      req.body = Buffer.from(mutateXml(text ?? req.body?.toString('utf8') ?? '', m as XmlMutation, r));
      text = req.body.toString('utf8');
      if (opts.bodyMayStayValid) unsure = true;
      else breaks = true;
    } else if ((JSON_MUTATIONS as readonly string[]).includes(m) && opts.json) {
      req.body = Buffer.from(mutateJson(opts.json, m as JsonMutation, r));
      text = req.body.toString('utf8');
      unsure = true;
    } else if ((HEADER_MUTATIONS as readonly string[]).includes(m)) {
      req.headers = mutateHeaders(req.headers, m as HeaderMutation, r);
      unsure = true;
    } else if ((QUERY_MUTATIONS as readonly string[]).includes(m)) {
      const [p, q = ''] = req.path.split('?', 2);
      const out = mutateQuery(q, m as QueryMutation, r, opts.signed ?? []);
      req.path = `${p}?${out.q}`;
      if (m === 'flip-signature') flipped = true;
      else if (out.breaks) breaks = true;
      else unsure = true;
    } else if ((PATH_MUTATIONS as readonly string[]).includes(m)) {
      req.path = mutatePath(req.path, m as PathMutation, r);
      unsure = true;
    } else if (m === 'method') {
      req.method = r.pick(METHODS.filter((x) => x !== req.method));
    } else if (m === 'auth') {
      req.headers.Authorization = r.pick([
        '',
        'Bearer',
        'Bearer x.y.z',
        'Basic Zm9vOmJhcg==',
        'Bearer ' + 'A'.repeat(5000),
        'bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.',
      ]);
      breaks = true;
    }
  }
  if (flipped) {
    if (signedOf(req.path).some((v, i) => v !== genuineSigned[i])) breaks = true;
    else unsure = true; // flipped back: the signature is the genuine one again
  }
  if (req.method !== base.method) {
    // HEAD is served by a GET route; OPTIONS is answered by Node-RED's CORS handling (204), not by us.
    const same = req.method === 'OPTIONS' || (req.method === 'HEAD' && base.method === 'GET');
    if (opts.pathMayStayValid || same) unsure = true;
    else breaks = true;
  }
  req.expect = breaks ? 'refuse' : unsure ? 'any' : 'accept';
  // Content-Encoding is refused outright by the registry on the routes that read a body.
  if (
    req.headers['Content-Encoding'] &&
    !/^identity$/i.test(req.headers['Content-Encoding']) &&
    base.method === 'POST' &&
    req.method === 'POST'
  )
    req.expect = 'refuse';
  return req;
}

export interface WechatFuzzSetup {
  plain: WxAccount;
  aes: WxAccount;
  openid: string;
  base: string; // e.g. /fz/wx
}

function push(
  a: WxAccount,
  mode: 'plain' | 'compat' | 'safe',
  xml: string,
  r: Rng,
): { query: string; body: Buffer } {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = String(r.int(1e9));
  const q = new URLSearchParams({
    signature: sha1Sorted(a.token, timestamp, nonce),
    timestamp,
    nonce,
    openid: 'o' + r.hex(27),
  });
  if (mode === 'plain') return { query: q.toString(), body: Buffer.from(xml) };
  const enc = wxEncrypt(a, xml);
  q.set('encrypt_type', 'aes');
  q.set('msg_signature', sha1Sorted(a.token, timestamp, nonce, enc));
  const body =
    mode === 'safe'
      ? `<xml><ToUserName><![CDATA[${a.gh}]]></ToUserName><Encrypt><![CDATA[${enc}]]></Encrypt></xml>`
      : xml.replace('</xml>', `<Encrypt><![CDATA[${enc}]]></Encrypt></xml>`);
  return { query: q.toString(), body: Buffer.from(body) };
}

const TEXTS = ['hello', '你好，请问订单什么时候到？', '👍🏽 مرحبا עברית', 'a]]>b<c>&amp;', ' '];

function pushXml(a: WxAccount, marker: string, r: Rng): string {
  const id = String(1e15 + markerCounter * 1000 + r.int(1000));
  return (
    `<xml><ToUserName><![CDATA[${a.gh}]]></ToUserName>` +
    `<FromUserName><![CDATA[o${marker}${r.hex(12)}]]></FromUserName>` +
    `<CreateTime>${Math.floor(Date.now() / 1000)}</CreateTime><MsgType><![CDATA[text]]></MsgType>` +
    `<Content><![CDATA[${r.pick(TEXTS).split(']]>').join(']]]]><![CDATA[>')} ${marker}]]></Content><MsgId>${id}${marker.slice(-4)}</MsgId></xml>`
  );
}

export function wechatPostEndpoint(s: WechatFuzzSetup, mode: 'plain' | 'compat' | 'safe'): FuzzEndpoint {
  const acct = mode === 'plain' ? s.plain : s.aes;
  const path = `${s.base}/${mode === 'plain' ? 'plain' : 'aes'}`;
  const pool = [
    ...BYTE_MUTATIONS,
    ...XML_MUTATIONS,
    ...HEADER_MUTATIONS,
    ...QUERY_MUTATIONS,
    ...PATH_MUTATIONS,
    'method',
  ];
  return {
    name: `wechat-in POST (${mode} mode)`,
    genuine: 8,
    pool,
    build(plan) {
      const r = new Rng(plan.seed);
      const marker = newMarker();
      const xml = pushXml(acct, marker, r);
      const p = push(acct, mode, xml, r);
      const base: FuzzRequest = {
        method: 'POST',
        path: `${path}?${p.query}`,
        headers: { 'Content-Type': 'text/xml' },
        body: p.body,
        marker,
        expect: 'accept',
        emits: true,
        mutations: [],
      };
      if (plan.roll < 8) {
        // Genuine; one in four is also replayed (WeChat's retry, or an attacker's replay).
        if (plan.roll < 2) {
          const again = push(acct, mode, xml, r);
          return [
            base,
            {
              ...base,
              path: `${path}?${again.query}`,
              body: again.body,
              replay: true,
              mutations: ['replay'],
            },
          ];
        }
        return [base];
      }
      // The body of a plain push is not signed; in compat mode the plain copy is not either (the decrypted one
      // is used). In safe mode the whole body is the signed ciphertext, but the envelope around it is not.
      const req = withMutations(base, plan, r, {
        signed: mode === 'plain' ? ['signature'] : ['signature', 'msg_signature'],
        xml: true,
        bodyMayStayValid: true,
        pathMayStayValid: false,
      });
      // The push's signature, timestamp and nonce also make a valid URL verification: as a GET (or HEAD) with an
      // echostr added, the request is genuine, answered 200, and emits nothing.
      if (req.method === 'GET' || req.method === 'HEAD') req.expect = 'any';
      // Without encrypt_type=aes, a push is read as encrypted only when it has both msg_signature and an Encrypt
      // element; otherwise it is read as a plain one, which only the plain signature covers, and a compatible-mode
      // body (plain fields beside the ciphertext) is then a genuine plain push. (Seen: encrypt_type dropped, the
      // Encrypt element dropped and msg_signature flipped: a plain push with a valid signature, answered 200.)
      if (mode !== 'plain') {
        const q = new URLSearchParams(req.path.split('?')[1] ?? '');
        const type = (q.get('encrypt_type') ?? '').toLowerCase();
        const hasEncrypt = !!req.body && req.body.includes('<Encrypt>');
        if ((type === '' || type === 'raw') && (!q.has('msg_signature') || !hasEncrypt)) req.expect = 'any';
      }
      return [seal(req, plan, r)];
    },
  };
}

export function wechatGetEndpoint(s: WechatFuzzSetup): FuzzEndpoint {
  return {
    name: 'wechat-in GET (URL verification)',
    genuine: 10,
    pool: [...QUERY_MUTATIONS, ...HEADER_MUTATIONS, ...PATH_MUTATIONS, 'method'],
    build(plan) {
      const r = new Rng(plan.seed);
      const marker = newMarker();
      const timestamp = String(Math.floor(Date.now() / 1000));
      const nonce = String(r.int(1e9));
      const q = new URLSearchParams({
        signature: sha1Sorted(s.plain.token, timestamp, nonce),
        timestamp,
        nonce,
        echostr: marker,
      });
      const base: FuzzRequest = {
        method: 'GET',
        path: `${s.base}/plain?${q.toString()}`,
        headers: {},
        marker,
        expect: 'accept',
        emits: false,
        mutations: [],
      };
      if (plan.roll < 10) return [base];
      const req = withMutations(base, plan, r, {
        signed: ['signature', 'timestamp', 'nonce'],
        bodyMayStayValid: false,
      });
      return [seal(req, plan, r)];
    },
  };
}

export function mediaEndpoint(
  s: WechatFuzzSetup,
  validToken: () => string,
  forge: (r: Rng) => string,
): FuzzEndpoint {
  return {
    name: 'wechat-in media links',
    genuine: 3,
    pool: [...PATH_MUTATIONS, ...HEADER_MUTATIONS, 'method', 'token-flip', 'token-forged', 'token-garbage'],
    build(plan) {
      const r = new Rng(plan.seed);
      const token = validToken();
      const base: FuzzRequest = {
        method: 'GET',
        path: `${s.base}/aes/media/${token}`,
        headers: {},
        expect: 'accept',
        emits: false,
        mutations: [],
      };
      if (plan.roll < 3) return [base];
      const req = withMutations(
        base,
        { ...plan, mutations: plan.mutations.filter((m) => !m.startsWith('token')) },
        r,
        {
          bodyMayStayValid: false,
          pathMayStayValid: true,
        },
      );
      req.mutations = plan.mutations;
      let t = token;
      for (const m of plan.mutations) {
        if (m === 'token-flip') {
          const i = r.int(t.length);
          t = t.slice(0, i) + (t[i] === 'A' ? 'B' : 'A') + t.slice(i + 1);
        } else if (m === 'token-forged') t = forge(r);
        else if (m === 'token-garbage') t = pct(r.pick(NASTY) + r.hex(r.int(40)));
      }
      if (t !== token) {
        req.path = req.path.replace(token, t);
        req.expect = 'refuse';
      }
      // Raw bytes (if any) are made from the final path, token included.
      return [seal(req, plan, r)];
    },
    // A genuine link streams from WeChat (the simulator); 502/504 would mean WeChat failed, which it does not here.
    refusedOk: (st) => st >= 400 && st < 500,
  };
}

export interface BoxFuzzSetup {
  base: string; // e.g. /fz/box
  clientId: string;
  clientSecret: string;
  token: () => string;
  openid: string;
}

export function boxTokenEndpoint(s: BoxFuzzSetup): FuzzEndpoint {
  return {
    name: 'cxone-dfo-in token endpoint',
    genuine: 10,
    pool: [
      ...BYTE_MUTATIONS,
      ...JSON_MUTATIONS,
      ...HEADER_MUTATIONS,
      ...PATH_MUTATIONS,
      'method',
      'wrong-secret',
      'basic',
      'form',
    ],
    build(plan) {
      const r = new Rng(plan.seed);
      const json = { grant_type: 'client_credentials', client_id: s.clientId, client_secret: s.clientSecret };
      // Each request comes from its own address (the runtime trusts X-Forwarded-For), so the per-address throttle
      // does not refuse everything; the per-client one soon does, for the right client id (ADR 0004).
      const xff = `198.18.${r.int(64)}.${r.int(256)}`;
      const base: FuzzRequest = {
        method: 'POST',
        path: `${s.base}/1.0/token`,
        headers: { 'Content-Type': 'application/json', 'X-Forwarded-For': xff },
        body: Buffer.from(JSON.stringify(json)),
        expect: 'any', // 200, or 429 while the client id is throttled by the refused ones
        emits: false,
        mutations: [],
      };
      if (plan.roll < 10) return [base];
      const req = withMutations(base, plan, r, { json, bodyMayStayValid: true, pathMayStayValid: false });
      const has = (m: string): boolean => plan.mutations.includes(m);
      const body = has('wrong-secret') ? { ...json, client_secret: r.hex(8 + r.int(40)) } : json;
      if (has('form')) {
        req.headers['Content-Type'] = 'application/x-www-form-urlencoded';
        req.body = Buffer.from(new URLSearchParams(body).toString());
      } else if (has('wrong-secret')) req.body = Buffer.from(JSON.stringify(body));
      if (has('wrong-secret')) req.expect = 'refuse';
      if (has('basic')) {
        req.headers.Authorization =
          'Basic ' + Buffer.from(`${s.clientId}:${r.int(2) ? s.clientSecret : r.hex(16)}`).toString('base64');
        req.expect = 'any';
      }
      if (req.expect === 'accept') req.expect = 'any';
      return [seal(req, plan, r)];
    },
  };
}

function replyBody(
  kind: 'dfo3' | 'legacy',
  thread: string,
  marker: string,
  r: Rng,
  withId: boolean,
): Record<string, unknown> {
  const b: Record<string, unknown> = {
    brand: { id: 1234, tenantId: '11eb660f-4c6d-34a0-8733-0242ac110002' },
    thread: { idOnExternalPlatform: thread },
    messageContent: { type: 'TEXT', payload: { text: `${r.pick(TEXTS)} ${marker}` } },
    attachments: [],
    authorUser: { id: 5678, firstName: 'Ada', surname: 'Agent' },
  };
  if (kind === 'dfo3') b.endUserRecipients = [{ idOnExternalPlatform: thread, isPrimary: true }];
  else {
    b.post = { idOnExternalPlatform: thread };
    b.recipients = [{ idOnExternalPlatform: thread, isPrimary: true }];
  }
  if (withId) b.messageId = `${marker}-${r.hex(8)}`;
  return b;
}

export function boxRouteEndpoint(
  s: BoxFuzzSetup,
  route: 'dfo3' | 'legacy' | 'typing' | 'validation',
): FuzzEndpoint {
  const names = {
    dfo3: 'cxone-dfo-in DFO 3.0 reply',
    legacy: 'cxone-dfo-in legacy reply',
    typing: 'cxone-dfo-in sender action',
    validation: 'cxone-dfo-in recipient validation',
  };
  return {
    name: names[route],
    genuine: 8,
    pool: [
      ...BYTE_MUTATIONS,
      ...JSON_MUTATIONS,
      ...HEADER_MUTATIONS,
      ...PATH_MUTATIONS,
      'method',
      'auth',
      'auth',
      'auth',
    ],
    build(plan) {
      const r = new Rng(plan.seed);
      const marker = newMarker();
      const thread = `o${marker}${r.hex(10)}`;
      let path: string;
      let json: Record<string, unknown>;
      let emits = true;
      switch (route) {
        case 'dfo3':
          path = `${s.base}/2.0/channel/chat_${r.hex(6)}/outbound`;
          json = replyBody('dfo3', thread, marker, r, r.int(4) === 0);
          break;
        case 'legacy':
          path = `${s.base}/1.0/posts/${thread}/messages`;
          json = replyBody('legacy', thread, marker, r, r.int(4) === 0);
          break;
        case 'typing':
          path = `${s.base}/1.0/channel/chat_${r.hex(6)}/thread/${thread}/sender-action`;
          json = { senderAction: { action: r.int(2) ? 'isTypingOn' : 'isTypingOff' } };
          break;
        case 'validation':
          path = `${s.base}/1.0/channel/chat_${r.hex(6)}/recipients/validation`;
          json = { endUserRecipients: [{ idOnExternalPlatform: thread, isPrimary: true }] };
          emits = false;
          break;
      }
      const base: FuzzRequest = {
        method: 'POST',
        path,
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${s.token()}` },
        body: Buffer.from(JSON.stringify(json)),
        marker,
        expect: 'accept',
        emits,
        mutations: [],
      };
      if (plan.roll < 8) {
        if (plan.roll < 2 && (route === 'dfo3' || route === 'legacy')) {
          // CXone sends the same reply again (same message id): same answer, emitted once.
          json.messageId = `${marker}-again`;
          base.body = Buffer.from(JSON.stringify(json));
          return [base, { ...base, replay: true, mutations: ['replay'] }];
        }
        return [base];
      }
      const req = withMutations(base, plan, r, { json, bodyMayStayValid: true, pathMayStayValid: false });
      // A sender action with a changed body may name an action we ignore (204, nothing emitted): `any` covers it.
      return [seal(req, plan, r)];
    },
    acceptedOk: (st) => st >= 200 && st < 300,
  };
}

export function adminPagesEndpoint(s: BoxFuzzSetup, oneTimeToken: () => string): FuzzEndpoint {
  const pages = ['/action', '/reconnect', '/remove'];
  return {
    name: 'cxone-dfo-in admin pages',
    genuine: 2,
    pool: [
      ...QUERY_MUTATIONS,
      ...HEADER_MUTATIONS,
      ...PATH_MUTATIONS,
      'method',
      'cookie',
      'api',
      'asset',
      'back-url',
    ],
    build(plan) {
      const r = new Rng(plan.seed);
      const genuine = plan.roll < 2;
      // A genuine link names the user and brand its one-time token was issued for (5678, 1234).
      const q = new URLSearchParams({
        userId: genuine ? '5678' : String(1 + r.int(9999)),
        brandId: genuine ? '1234' : String(1 + r.int(9999)),
        token: genuine ? oneTimeToken() : r.pick([r.hex(24), '', 't'.repeat(3000), r.pick(NASTY)]),
        backUrl: r.pick([
          'https://na1.nice-incontact.com/x',
          'javascript:alert(1)',
          'data:text/html,x',
          '//evil',
          '',
        ]),
      });
      const base: FuzzRequest = {
        method: 'GET',
        path: `${s.base}${r.pick(pages)}?${q.toString()}`,
        headers: {},
        expect: genuine ? 'accept' : 'any',
        emits: false,
        mutations: [],
      };
      if (genuine) return [base];
      const req = withMutations(base, plan, r, { bodyMayStayValid: false, pathMayStayValid: true });
      for (const m of plan.mutations) {
        if (m === 'cookie')
          req.headers.Cookie = `wxcx_admin=${r.pick([r.hex(43), 'A'.repeat(43), '', 'x;y', pct(r.pick(NASTY))])}`;
        else if (m === 'api') {
          req.method = r.pick(['GET', 'POST', 'DELETE']);
          req.path = `${s.base}/admin/api/channels${req.method === 'DELETE' ? '/chat_' + r.hex(4) : ''}`;
          if (req.method === 'POST') {
            req.body = Buffer.from(JSON.stringify({ name: r.pick(NASTY), idOnExternalPlatform: r.hex(8) }));
            req.headers['Content-Type'] = 'application/json';
            req.headers['X-CSRF-Token'] = r.hex(32);
          }
        } else if (m === 'asset')
          req.path = `${s.base}/admin/${r.pick(['app.js', 'app.css', 'back', '', 'x.js'])}`;
        else if (m === 'back-url') req.path += '&backUrl=' + pct(r.pick(NASTY));
      }
      req.expect = 'any';
      return [seal(req, plan, r)];
    },
    // The exchange of a one-time token calls CXone (the simulator): 403 for a token it does not know.
    refusedOk: (st) => st >= 400 && st < 500,
    acceptedOk: (st) => st === 303,
  };
}

export function healthEndpoint(): FuzzEndpoint {
  return {
    name: 'health endpoints',
    genuine: 20,
    pool: [...QUERY_MUTATIONS, ...HEADER_MUTATIONS, ...PATH_MUTATIONS, 'method'],
    build(plan) {
      const r = new Rng(plan.seed);
      const base: FuzzRequest = {
        method: 'GET',
        path: r.pick(['/wechat-cxone/health', '/wechat-cxone/health/metrics']) + `?v=${r.int(10)}`,
        headers: {},
        expect: 'accept',
        emits: false,
        mutations: [],
      };
      if (plan.roll < 20) return [base];
      const req = withMutations(base, plan, r, { bodyMayStayValid: false, pathMayStayValid: true });
      if (req.expect === 'refuse') req.expect = 'any';
      return [seal(req, plan, r)];
    },
  };
}

export function adminApiEndpoint(ids: { wechat: string; cxone: string }, root = ''): FuzzEndpoint {
  const routes = [
    ['POST', `${root}/wechat-config/${ids.wechat}/test`],
    ['POST', `${root}/cxone-dfo-config/${ids.cxone}/test`],
    ['POST', `${root}/cxone-dfo-config/${ids.cxone}/channels/list`],
    ['POST', `${root}/cxone-dfo-config/${ids.cxone}/channels`],
    ['POST', `${root}/cxone-dfo-config/${ids.cxone}/channels/chat_1/delete`],
    ['GET', `${root}/wechat-cxone/health`],
  ];
  return {
    name: 'admin API routes (adminAuth on, no valid token)',
    genuine: 0,
    pool: [...BYTE_MUTATIONS, ...JSON_MUTATIONS, ...HEADER_MUTATIONS, 'auth', 'auth'],
    build(plan) {
      const r = new Rng(plan.seed);
      const [method, path] = r.pick(routes);
      const json = {
        appId: 'wx' + r.hex(16),
        apiBase: r.pick(['http://169.254.169.254/', 'https://evil.example', 'file:///etc/passwd']),
        authIssuer: 'http://127.0.0.1:1',
        credentials: { clientSecret: r.hex(8) },
      };
      const base: FuzzRequest = {
        method,
        path,
        headers: { 'Content-Type': 'application/json' },
        body: method === 'POST' ? Buffer.from(JSON.stringify(json)) : undefined,
        expect: 'refuse',
        emits: false,
        mutations: [],
      };
      const req = withMutations(base, plan, r, { json, bodyMayStayValid: false });
      req.expect = 'refuse';
      return [seal(req, plan, r)];
    },
    // Node-RED's own answers: 401 without a valid token; its body parser may answer 400/413/415 first.
    refusedOk: (st) => st >= 400 && st < 500,
  };
}

export function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}
