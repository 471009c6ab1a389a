/**
 * XML in and out, the way WeChat speaks it.
 *
 * Reading (`parseXml`, `parseWechatXml`): for bodies from the network, so nothing is trusted.
 * - No DOCTYPE and no other `<!…>` declaration (the only way to define entities): refused before parsing, so no
 *   entity expansion, no external entity, no billion laughs. Only the five predefined entities and numeric
 *   character references are decoded, in text outside CDATA; CDATA is taken as it is.
 * - Limits on bytes, nesting depth and number of elements, checked by a linear scan before the parser runs.
 * - Well-formedness checked (fast-xml-parser's validator), a single root element.
 * - Every value stays a string (MsgId exceeds 2^53). Elements with children become objects, repeated siblings
 *   become arrays; `item`, `List` and `fail_idx` (WeChat's list elements) are arrays even when alone.
 *
 * Writing (`buildXml`): strings go into CDATA, with `]]>` split across two sections; numbers and `xmlText(...)`
 * values are written as escaped text; characters XML 1.0 cannot carry are dropped.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';

export type XmlErrorCode =
  'too-large' | 'doctype' | 'instruction' | 'malformed' | 'too-deep' | 'too-many' | 'root';

/** A problem with a received XML document. `status` is the HTTP status to answer; the message is safe to show. */
export class XmlError extends Error {
  constructor(
    readonly code: XmlErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'XmlError';
  }
  get status(): number {
    return this.code === 'too-large' ? 413 : 400;
  }
}

export interface XmlLimits {
  /** Largest document, bytes (UTF-8). Default 256 KiB. */
  maxBytes?: number;
  /** Deepest element nesting, the root counting as 1. Default 16. */
  maxDepth?: number;
  /** Most elements in the document. Default 2000. */
  maxElements?: number;
}

export const DEFAULT_XML_LIMITS: Required<XmlLimits> = {
  maxBytes: 256 * 1024,
  maxDepth: 16,
  maxElements: 2000,
};

export type XmlValue = string | XmlObject | XmlValue[];
export interface XmlObject {
  [name: string]: XmlValue;
}

/** Element names that are lists in WeChat's XML, kept as arrays even with one element. */
const LIST_NAMES = new Set(['item', 'List', 'fail_idx']);
/** Names that must never become own properties of a plain object. */
const UNSAFE_NAMES = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * The linear pre-scan: refuses declarations (DOCTYPE, ENTITY…), processing instructions other than a leading
 * `<?xml …?>`, and documents deeper or larger than the limits, before any parser sees them.
 */
function scan(text: string, limits: Required<XmlLimits>): void {
  let i = 0;
  let depth = 0;
  let elements = 0;
  let seenElement = false;
  const n = text.length;
  while (i < n) {
    const lt = text.indexOf('<', i);
    if (lt < 0) break;
    if (text.startsWith('<![CDATA[', lt)) {
      const end = text.indexOf(']]>', lt + 9);
      if (end < 0) throw new XmlError('malformed', 'the XML has an unterminated CDATA section');
      i = end + 3;
      continue;
    }
    if (text.startsWith('<!--', lt)) {
      const end = text.indexOf('-->', lt + 4);
      if (end < 0) throw new XmlError('malformed', 'the XML has an unterminated comment');
      i = end + 3;
      continue;
    }
    if (text.startsWith('<!', lt)) {
      throw new XmlError('doctype', 'the XML has a DOCTYPE or another declaration, which is not accepted');
    }
    if (text.startsWith('<?', lt)) {
      const isDecl =
        !seenElement && /^<\?xml[\s?]/.test(text.slice(lt, lt + 6)) && text.slice(0, lt).trim() === '';
      if (!isDecl)
        throw new XmlError('instruction', 'the XML has a processing instruction, which is not accepted');
      const end = text.indexOf('?>', lt + 2);
      if (end < 0) throw new XmlError('malformed', 'the XML declaration is not terminated');
      i = end + 2;
      continue;
    }
    // A tag: find its end, skipping quoted attribute values.
    let j = lt + 1;
    let quote = 0;
    for (; j < n; j++) {
      const c = text.charCodeAt(j);
      if (quote) {
        if (c === quote) quote = 0;
      } else if (c === 34 || c === 39) quote = c;
      else if (c === 62 /* > */) break;
    }
    if (j >= n) throw new XmlError('malformed', 'the XML has an unterminated tag');
    seenElement = true;
    if (text.charCodeAt(lt + 1) === 47 /* / */) depth--;
    else {
      elements++;
      if (elements > limits.maxElements) {
        throw new XmlError('too-many', `the XML has more than ${limits.maxElements} elements`);
      }
      if (text.charCodeAt(j - 1) !== 47) {
        depth++;
        if (depth > limits.maxDepth) {
          throw new XmlError('too-deep', `the XML nests deeper than ${limits.maxDepth} levels`);
        }
      }
    }
    i = j + 1;
  }
}

const parser = new XMLParser({
  preserveOrder: true,
  cdataPropName: '#cdata',
  textNodeName: '#text',
  processEntities: false,
  htmlEntities: false,
  parseTagValue: false,
  parseAttributeValue: false,
  ignoreAttributes: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  trimValues: true,
  maxNestedTags: 64,
});

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

const PREDEFINED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** Decodes the five predefined entities and numeric character references; anything else stays as written. */
export function decodeEntities(s: string): string {
  if (s.indexOf('&') < 0) return s;
  return s.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|[A-Za-z]{2,4});/g, (m, ref: string) => {
    if (ref[0] === '#') {
      const cp = ref[1] === 'x' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      if (!Number.isFinite(cp) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp === 0) return m;
      return String.fromCodePoint(cp);
    }
    return Object.prototype.hasOwnProperty.call(PREDEFINED, ref) ? PREDEFINED[ref] : m;
  });
}

type OrderedNode = Record<string, unknown>;

function nameOf(node: OrderedNode): string | undefined {
  for (const k of Object.keys(node)) if (k !== ':@') return k;
  return undefined;
}

/** Converts one element's ordered children into a string (text only) or an object (with child elements). */
function convert(children: OrderedNode[]): XmlValue {
  let text = '';
  let hasElements = false;
  const obj: XmlObject = {};
  for (const child of children) {
    const name = nameOf(child);
    if (name === undefined) continue;
    if (name === '#text') {
      text += decodeEntities(String(child[name]));
      continue;
    }
    if (name === '#cdata') {
      const parts = child[name] as { '#text'?: string }[];
      for (const p of parts) text += p['#text'] ?? '';
      continue;
    }
    hasElements = true;
    if (UNSAFE_NAMES.has(name)) continue;
    const value = convert(child[name] as OrderedNode[]);
    const prev = Object.prototype.hasOwnProperty.call(obj, name) ? obj[name] : undefined;
    // `convert` never returns an array, so an array here is one this loop made for repeated siblings.
    if (prev === undefined) obj[name] = LIST_NAMES.has(name) ? [value] : value;
    else if (Array.isArray(prev)) prev.push(value);
    else obj[name] = [prev, value];
  }
  return hasElements ? obj : text;
}

export interface ParsedXml {
  /** The root element's name. */
  root: string;
  /** The root element's content: an object of its children, or its text. */
  value: XmlValue;
}

/** Parses a received XML document under the limits; throws XmlError. */
export function parseXml(input: string | Buffer, limits: XmlLimits = {}): ParsedXml {
  const lim = { ...DEFAULT_XML_LIMITS, ...limits };
  const bytes = typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.length;
  if (bytes > lim.maxBytes) throw new XmlError('too-large', `the XML is larger than ${lim.maxBytes} bytes`);
  let text: string;
  if (typeof input === 'string') text = input;
  else {
    // Strict: invalid UTF-8 is refused, not turned into U+FFFD and passed on (WeChat sends UTF-8 only).
    try {
      text = STRICT_UTF8.decode(input);
    } catch {
      throw new XmlError('malformed', 'the body is not valid UTF-8 text');
    }
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.trim() === '') throw new XmlError('malformed', 'the body is empty');
  scan(text, lim);
  const valid = XMLValidator.validate(text);
  if (valid !== true) throw new XmlError('malformed', 'the body is not well-formed XML');
  let doc: OrderedNode[];
  try {
    doc = parser.parse(text) as OrderedNode[];
  } catch {
    throw new XmlError('malformed', 'the body is not well-formed XML');
  }
  const roots = doc.filter((n) => {
    const k = nameOf(n);
    return k !== undefined && k !== '#text' && k !== '#cdata';
  });
  if (roots.length !== 1) throw new XmlError('malformed', 'the XML must have exactly one root element');
  const root = nameOf(roots[0]) as string;
  return { root, value: convert(roots[0][root] as OrderedNode[]) };
}

/** Parses a WeChat body: root `<xml>`, returns its children as an object (an empty root gives `{}`). */
export function parseWechatXml(input: string | Buffer, limits: XmlLimits = {}): XmlObject {
  const { root, value } = parseXml(input, limits);
  if (root !== 'xml') throw new XmlError('root', 'the XML root element must be <xml>');
  if (typeof value === 'string') {
    if (value.trim() !== '') throw new XmlError('malformed', 'the <xml> element has text but no fields');
    return {};
  }
  if (Array.isArray(value)) throw new XmlError('malformed', 'the XML root is not an element');
  return value;
}

// ---------------------------------------------------------------------------------------------------------
// Writing

/** A value written as escaped text rather than CDATA (numbers, timestamps). */
export class XmlText {
  constructor(readonly text: string) {}
}

export function xmlText(v: string | number): XmlText {
  return new XmlText(String(v));
}

export type XmlOut = string | number | XmlText | null | undefined | XmlOutObject | XmlOut[];
export interface XmlOutObject {
  [name: string]: XmlOut;
}

/** Drops the characters XML 1.0 cannot carry, even in CDATA (C0 controls but tab/LF/CR, U+FFFE/U+FFFF, lone surrogates). */
export function xmlSafe(s: string): string {
  return s.replace(
    /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g,
    '',
  );
}

/** A CDATA section for any text: `]]>` inside is split as `]]]]><![CDATA[>`. */
export function cdata(s: string): string {
  return '<![CDATA[' + xmlSafe(s).split(']]>').join(']]]]><![CDATA[>') + ']]>';
}

export function escapeXmlText(s: string): string {
  return xmlSafe(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

function writeValue(name: string, v: XmlOut, out: string[]): void {
  if (v === null || v === undefined) return;
  if (Array.isArray(v)) {
    for (const item of v) writeValue(name, item, out);
    return;
  }
  if (!NAME_RE.test(name)) throw new Error(`"${name.slice(0, 40)}" is not an XML element name`);
  out.push('<', name, '>');
  if (typeof v === 'string') out.push(cdata(v));
  else if (typeof v === 'number') out.push(escapeXmlText(String(v)));
  else if (v instanceof XmlText) out.push(escapeXmlText(v.text));
  else for (const [k, c] of Object.entries(v)) writeValue(k, c, out);
  out.push('</', name, '>');
}

/** Writes `<root>…</root>` from an object whose key order is the element order. */
export function buildXml(content: XmlOutObject, root = 'xml'): string {
  const out: string[] = [];
  writeValue(root, content, out);
  return out.join('');
}
