/**
 * The Flow Library scorecard (`node-red-dev validate`), run the way the Flow Library runs it, except that
 * catalogue.nodered.org is out of reach here: its two checks (P08 similar names, N01 node types used by other
 * modules) are answered by a loopback stub with an empty catalogue, so they cannot really fail here. The npm
 * registry checks (P06, P07, D02, D03) run for real.
 */
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildRoot, repoRoot } from '../harness/paths';

describe('Flow Library scorecard (node-red-dev validate)', function () {
  this.timeout(120_000);
  let proxy: http.Server;
  const proxied: string[] = [];

  before(async function () {
    // The validator reads the editor files through package.json, i.e. from dist/.
    if (path.resolve(buildRoot) !== path.join(repoRoot, 'dist')) this.skip();
    // node-red-dev uses axios 0.21, which sends https requests through an http proxy in absolute form.
    proxy = http.createServer((req, res) => {
      proxied.push(`${req.method} ${req.url}`);
      if (/^https:\/\/catalogue\.nodered\.org\/catalogue\.json/.test(req.url ?? '')) {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ name: 'stub', updated_at: new Date().toISOString(), modules: [] }));
      } else {
        res.writeHead(502);
        res.end();
      }
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  });

  after(() => {
    proxy?.close();
  });

  it('passes every check', async () => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'wxcx-score-')), 'scorecard.json');
    const port = (proxy.address() as AddressInfo).port;
    const env = {
      ...process.env,
      https_proxy: `http://127.0.0.1:${port}`,
      HTTPS_PROXY: `http://127.0.0.1:${port}`,
      no_proxy: 'registry.npmjs.org',
      NO_PROXY: 'registry.npmjs.org',
    };
    const bin = path.join(repoRoot, 'node_modules', 'node-red-dev', 'bin', 'run');
    const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) =>
      execFile(
        process.execPath,
        [bin, 'validate', '-p', repoRoot, '-o', out],
        { env, timeout: 100_000 },
        (err, so, se) =>
          err ? reject(new Error(`${err.message}\n${so}\n${se}`)) : resolve({ stdout: so, stderr: se }),
      ),
    );
    const card = JSON.parse(fs.readFileSync(out, 'utf8')) as Record<string, { test?: boolean }>;
    console.log(stdout.replace(/\n+$/, ''));
    const checks = ['P01', 'P03', 'P04', 'P05', 'P06', 'P07', 'P08', 'N01', 'N02', 'D01', 'D02', 'D03'];
    for (const c of checks)
      assert.equal(card[c]?.test, true, `${c} failed: ${JSON.stringify(card[c])}\n${stderr}`);
    assert.doesNotMatch(stderr, /Warning/, 'no warnings');
    // P05 reports success even without the keyword (a known bug in 0.1.6); check it ourselves.
    const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as {
      keywords: string[];
    };
    assert.ok(pkg.keywords.includes('node-red'));
    assert.ok(
      proxied.length > 0 && proxied.every((p) => p.includes('catalogue.nodered.org')),
      proxied.join('\n'),
    );
  });
});
