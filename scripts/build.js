#!/usr/bin/env node
'use strict';
// Build: compile the TypeScript (strict, CommonJS) and put each node's editor files where Node-RED looks
// for them: `<dir of the node's .js>/*.html`, `.../locales/<lang>/`, `.../icons/`.
// Usage: node scripts/build.js [--outDir DIR]   (default dist; helpers building in parallel use their own)
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const argv = process.argv.slice(2);
const i = argv.indexOf('--outDir');
const outDir = path.resolve(root, i >= 0 ? argv[i + 1] : 'dist');
const strict = !argv.includes('--no-check');

const tsc = require.resolve('typescript/bin/tsc');
fs.rmSync(outDir, { recursive: true, force: true });
const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json'), '--outDir', outDir], {
  stdio: 'inherit',
});
if (r.status !== 0 && strict) {
  console.error('build: TypeScript reported errors');
  process.exit(r.status || 1);
}

function copyDir(from, to, filter) {
  if (!fs.existsSync(from)) return;
  fs.mkdirSync(to, { recursive: true });
  for (const ent of fs.readdirSync(from, { withFileTypes: true })) {
    const src = path.join(from, ent.name);
    const dst = path.join(to, ent.name);
    if (ent.isDirectory()) copyDir(src, dst, filter);
    else if (!filter || filter(ent.name)) fs.copyFileSync(src, dst);
  }
}

const nodesOut = path.join(outDir, 'nodes');
fs.mkdirSync(nodesOut, { recursive: true });
for (const f of fs.readdirSync(path.join(root, 'nodes'))) {
  if (f.endsWith('.html')) fs.copyFileSync(path.join(root, 'nodes', f), path.join(nodesOut, f));
}
copyDir(path.join(root, 'nodes', 'locales'), path.join(nodesOut, 'locales'));
copyDir(path.join(root, 'icons'), path.join(nodesOut, 'icons'));
// Static files some nodes serve (admin pages, the sandbox page).
copyDir(path.join(root, 'lib'), path.join(outDir, 'lib'), (n) => /\.(html|css|svg|png)$/.test(n));
copyDir(path.join(root, 'sandbox'), path.join(outDir, 'sandbox'), (n) =>
  /\.(html|css|svg|png|json)$/.test(n),
);
