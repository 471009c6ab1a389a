/**
 * The message catalogs and help of the six node types, in en-US and zh-CN: both exist, they have the same keys,
 * the help has the same sections in both, and every key the code uses is in both catalogs.
 *
 * Keys in code: `RED._('<type>.…')` (and `<type>.…` string literals) in nodes/*.ts, `t('…')` where a file's
 * `NS` is a node type, `this._('…')` / `node._('…')` and `data-i18n` in nodes/*.html. Keys built at run time
 * (`status.delivered-${action}`) cannot be checked here.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NODE_TYPES, repoRoot } from '../harness/paths';

const LANGS = ['en-US', 'zh-CN'] as const;
const nodesDir = path.join(repoRoot, 'nodes');
const localesDir = path.join(nodesDir, 'locales');
const CONFIG_TYPES = new Set(['wechat-config', 'cxone-dfo-config']);

/** The help sections, as headings in each language. */
const SECTIONS: Record<string, { 'en-US': RegExp; 'zh-CN': RegExp }> = {
  inputs: { 'en-US': /^inputs?$/i, 'zh-CN': /^输入$/ },
  outputs: { 'en-US': /^outputs?$/i, 'zh-CN': /^输出$/ },
  details: { 'en-US': /^details$/i, 'zh-CN': /^(详细|详细说明|详情|说明)$/ },
  references: { 'en-US': /^references$/i, 'zh-CN': /^(参考|参考资料|参考文档)$/ },
};

type Catalog = Record<string, unknown>;

function flatten(o: unknown, prefix = ''): Map<string, string> {
  const out = new Map<string, string>();
  if (o && typeof o === 'object' && !Array.isArray(o)) {
    for (const [k, v] of Object.entries(o as Catalog)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (v && typeof v === 'object') for (const [k2, v2] of flatten(v, key)) out.set(k2, v2);
      else out.set(key, String(v));
    }
  }
  return out;
}

function catalog(lang: string, type: string): Map<string, string> | null {
  const f = path.join(localesDir, lang, `${type}.json`);
  if (!fs.existsSync(f)) return null;
  return flatten(JSON.parse(fs.readFileSync(f, 'utf8')) as unknown);
}

function help(lang: string, type: string): string | null {
  const f = path.join(localesDir, lang, `${type}.html`);
  return fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : null;
}

/** `__name__` substitutions of a message, sorted. */
function subs(s: string): string[] {
  return [...s.matchAll(/__([A-Za-z0-9_]+)__/g)].map((m) => m[1]).sort();
}

function headings(html: string): string[] {
  return [...html.matchAll(/<h3[^>]*>([\s\S]*?)<\/h3>/g)].map((m) => m[1].replace(/<[^>]+>/g, '').trim());
}

/** The message properties documented in the help (`<dl class="message-properties"><dt>name …`), in order. */
function properties(html: string): string[] {
  const lists = [...html.matchAll(/<dl class="message-properties">([\s\S]*?)<\/dl>/g)].map((m) => m[1]);
  return lists.flatMap((l) => [...l.matchAll(/<dt[^>]*>\s*([^<\s]+)/g)].map((m) => m[1]));
}

/** Keys (`<type>.a.b`) the runtime file of `type` uses. */
function keysInRuntime(type: string): string[] {
  const file = path.join(nodesDir, `${type}.ts`);
  if (!fs.existsSync(file)) return [];
  // Without comments and permission names (`needsPermission('wechat-config.write')` is not a message).
  const src = fs
    .readFileSync(file, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/^\s*\/\/.*$/gm, '')
    .replace(/needsPermission\(\s*['"][^'"]*['"]\s*\)/g, '');
  const keys = new Set<string>();
  const types = NODE_TYPES.join('|');
  for (const m of src.matchAll(new RegExp(`['"\`]((?:${types})\\.[A-Za-z0-9_.-]+)(['"\`])(\\s*\\+)?`, 'g'))) {
    if (m[2] === '`' && m[1].includes('${')) continue;
    // A literal followed by `+`, or ending in '.', is a prefix completed at run time: marked with a trailing '*'.
    keys.add(m[3] || /\.$/.test(m[1]) ? `${m[1]}*` : m[1]);
  }
  // `const NS = '<type>'` with a helper `t('key')` → `<type>.key`.
  const ns = /const\s+NS\s*=\s*'([^']+)'/.exec(src)?.[1];
  if (ns && (NODE_TYPES as readonly string[]).includes(ns)) {
    for (const m of src.matchAll(/\bt\(\s*'([A-Za-z0-9_.-]+)'/g)) keys.add(`${ns}.${m[1]}`);
  }
  return [...keys].sort();
}

/** Keys the editor file of `type` uses (`data-i18n`, `this._()`, `node._()`, `RED._()`), ours only. */
function keysInEditor(type: string): string[] {
  const file = path.join(nodesDir, `${type}.html`);
  if (!fs.existsSync(file)) return [];
  const src = fs.readFileSync(file, 'utf8');
  const keys = new Set<string>();
  for (const m of src.matchAll(/data-i18n="([^"]+)"/g)) {
    for (const part of m[1].split(';')) keys.add(part.replace(/^\[[^\]]+\]/, '').trim());
  }
  // A literal followed by `+` is a prefix completed at run time: marked with a trailing '*'.
  for (const m of src.matchAll(/(?:\bthis|\bnode|\bRED|\bself|\bthat)\._\(\s*['"]([^'"]+)['"](\s*\+)?/g))
    keys.add(m[2] ? `${m[1]}*` : m[1]);
  return [...keys].filter((k) => (NODE_TYPES as readonly string[]).some((t) => k.startsWith(`${t}.`))).sort();
}

describe('message catalogs and help in en-US and zh-CN', () => {
  for (const type of NODE_TYPES) {
    describe(type, () => {
      it('has a catalog in both languages with the same keys and the same substitutions', () => {
        const en = catalog('en-US', type);
        const zh = catalog('zh-CN', type);
        assert.ok(en, `nodes/locales/en-US/${type}.json is missing`);
        assert.ok(zh, `nodes/locales/zh-CN/${type}.json is missing`);
        assert.ok(
          [...en.keys()].every((k) => k.startsWith(`${type}.`)),
          `every key of ${type}.json is under "${type}"`,
        );
        const onlyEn = [...en.keys()].filter((k) => !zh.has(k));
        const onlyZh = [...zh.keys()].filter((k) => !en.has(k));
        assert.deepEqual({ onlyEn, onlyZh }, { onlyEn: [], onlyZh: [] }, 'the same keys in both');
        const differ = [...en.keys()].filter((k) => subs(en.get(k)!).join() !== subs(zh.get(k)!).join());
        assert.deepEqual(differ, [], 'the same __substitutions__ in both');
        const empty = [...en.entries(), ...zh.entries()].filter(([, v]) => !v.trim()).map(([k]) => k);
        assert.deepEqual(empty, [], 'no empty message');
      });

      it('has help in both languages with the same sections and the same documented properties', () => {
        const en = help('en-US', type);
        const zh = help('zh-CN', type);
        assert.ok(en, `nodes/locales/en-US/${type}.html is missing`);
        assert.ok(zh, `nodes/locales/zh-CN/${type}.html is missing`);
        for (const [lang, html] of [
          ['en-US', en],
          ['zh-CN', zh],
        ] as const) {
          assert.match(html, new RegExp(`data-help-name="${type}"`), `${lang} help is for ${type}`);
          const hs = headings(html);
          const want = CONFIG_TYPES.has(type) ? ['details', 'references'] : Object.keys(SECTIONS);
          const missing = want.filter((s) => !hs.some((h) => SECTIONS[s][lang].test(h)));
          assert.deepEqual(
            missing,
            [],
            `${lang} help of ${type} has the sections (found ${JSON.stringify(hs)})`,
          );
          assert.match(html, /<a [^>]*href="https?:\/\//, `${lang} help of ${type} links its references`);
        }
        assert.equal(headings(en).length, headings(zh).length, 'as many sections in both');
        // Flow nodes document msg properties by name; config nodes their fields by (translated) label.
        if (CONFIG_TYPES.has(type))
          assert.equal(properties(zh).length, properties(en).length, 'as many fields');
        else
          assert.deepEqual(properties(zh), properties(en), 'the same message properties documented in both');
      });

      it('every key its runtime and editor files use is in both catalogs', () => {
        const used = [...new Set([...keysInRuntime(type), ...keysInEditor(type)])];
        const missing: string[] = [];
        for (const key of used) {
          const owner = NODE_TYPES.find((t) => key.startsWith(`${t}.`))!;
          const prefix = key.endsWith('*') ? key.slice(0, -1) : null;
          for (const lang of LANGS) {
            const c = catalog(lang, owner);
            const keys = c ? [...c.keys()] : [];
            const found = prefix
              ? keys.some((k) => k.startsWith(prefix))
              : // A key may name a section of messages (used with a suffix added at run time).
                !!c && (c.has(key) || keys.some((k) => k.startsWith(`${key}.`)));
            if (!found) missing.push(`${lang}: ${key}`);
          }
        }
        assert.deepEqual(missing, [], `keys used by nodes/${type}.ts/.html but not in the catalogs`);
      });
    });
  }

  it('the editor files use only their own node type’s keys (Node-RED namespaces them per node file)', () => {
    const foreign: string[] = [];
    for (const type of NODE_TYPES) {
      for (const k of keysInEditor(type)) if (!k.startsWith(`${type}.`)) foreign.push(`${type}.html: ${k}`);
    }
    assert.deepEqual(foreign, []);
  });
});
