#!/usr/bin/env node
'use strict';
/*
 * The test command (`npm test`): build, lint and format checks, then the whole suite twice:
 *   1. Node-RED 4.1 on the Node.js running this script (20 on this project's machines),
 *   2. Node-RED 5 on Node.js 22, which it installs from the npm registry (the `node` package) into .cache/node22.
 *
 * Options:
 *   --quick          only the first pass (Node-RED 4.1)
 *   --nr5-only       only the second pass
 *   --no-lint        skip eslint and prettier
 *   --no-build       use the existing dist/
 *   --no-prereqs     do not look for Chromium and Redis (scripts/test-prereqs.sh installs them as root)
 *   --grep <re>      only tests whose title matches
 *   <files…>         only these compiled test files (paths under dist/test)
 */
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
const has = (f) => args.includes(f);
const grepAt = args.indexOf('--grep');
const grep = grepAt >= 0 ? args[grepAt + 1] : null;
const files = args.filter((a, i) => !a.startsWith('--') && !(grepAt >= 0 && i === grepAt + 1));

function run(cmd, cmdArgs, opts = {}) {
  const t0 = Date.now();
  const r = spawnSync(cmd, cmdArgs, { stdio: 'inherit', cwd: root, ...opts });
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  if (r.status !== 0) {
    console.error(
      `\n✖ ${path.basename(cmd)} ${cmdArgs.slice(0, 3).join(' ')} … failed (${r.status ?? r.signal}) after ${secs}s`,
    );
    process.exit(r.status || 1);
  }
  return secs;
}

const bin = (p) => path.join(root, 'node_modules', p);
const timings = [];

// Chromium for the editor tests, Redis for the shared-store tests: installed on a fresh Debian machine (as root).
if (!has('--no-prereqs') && process.platform === 'linux')
  timings.push(['prerequisites', run('bash', [path.join(root, 'scripts', 'test-prereqs.sh')])]);
if (!has('--no-build'))
  timings.push(['build', run(process.execPath, [path.join(root, 'scripts', 'build.js')])]);
if (!has('--no-lint')) {
  timings.push(['eslint', run(process.execPath, [bin('eslint/bin/eslint.js'), '.'])]);
  timings.push([
    'prettier',
    run(process.execPath, [bin('prettier/bin/prettier.cjs'), '--check', '.', '--log-level', 'warn']),
  ]);
}

const mochaArgs = [
  bin('mocha/bin/mocha.js'),
  '--timeout',
  '30000',
  '--exit',
  // The secret scan (test/harness/secret-scan.ts): records every secret the tests hand out or see issued, captures
  // every log line, status and debug message of the run, and fails the run if any secret appears in them.
  '--require',
  'dist/test/harness/secret-scan.js',
  '--reporter',
  process.env.MOCHA_REPORTER || 'spec',
  ...(grep ? ['--grep', grep] : []),
  ...(files.length ? files : ['dist/test/**/*.test.js']),
];

function node22() {
  const dir = path.join(root, '.cache', 'node22');
  const exe = path.join(dir, 'node_modules', 'node', 'bin', 'node');
  const ok = () => {
    if (!fs.existsSync(exe)) return false;
    const v = spawnSync(exe, ['-v'], { encoding: 'utf8' }).stdout || '';
    return /^v22\./.test(v.trim());
  };
  if (!ok()) {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'node22', private: true }));
    console.log('Installing Node.js 22 from the npm registry (the `node` package) into .cache/node22 …');
    run('npm', ['install', '--no-audit', '--no-fund', '--no-save', 'node@22'], { cwd: dir });
    if (!ok()) {
      console.error('Node.js 22 could not be installed from the npm registry');
      process.exit(1);
    }
  }
  return exe;
}

if (!has('--nr5-only')) {
  console.log(`\n=== Node-RED 4.1 on Node.js ${process.version} ===`);
  timings.push([
    'suite: Node-RED 4.1 / Node ' + process.version,
    run(process.execPath, mochaArgs, { env: { ...process.env, WXCX_NODE_RED: 'node-red' } }),
  ]);
}
if (!has('--quick')) {
  const exe = node22();
  const v = spawnSync(exe, ['-v'], { encoding: 'utf8' }).stdout.trim();
  console.log(`\n=== Node-RED 5 on Node.js ${v} ===`);
  timings.push([
    'suite: Node-RED 5 / Node ' + v,
    run(exe, mochaArgs, {
      env: {
        ...process.env,
        WXCX_NODE_RED: 'node-red-5',
        PATH: path.dirname(exe) + path.delimiter + process.env.PATH,
      },
    }),
  ]);
}

console.log('\nAll passed:');
for (const [what, secs] of timings) console.log(`  ${what}: ${secs}s`);
