/**
 * What the palette manager does: pack the module, `npm install` the tarball into a fresh Node-RED user directory
 * (with the palette manager's flags), start Node-RED, and ask the Admin API whether all six types loaded.
 */
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildRoot, repoRoot } from '../harness/paths';
import { startNodeRed, type NodeRedProcess } from '../harness/process';

const npmCli =
  process.env.npm_execpath && /npm-cli\.js$/.test(process.env.npm_execpath) ? process.env.npm_execpath : null;

function npm(args: string[], cwd: string): string {
  const env = {
    ...process.env,
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
  };
  if (npmCli)
    return execFileSync(process.execPath, [npmCli, ...args], {
      cwd,
      env,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  return execFileSync('npm', args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('installed from a tarball, as the palette manager installs it', function () {
  this.timeout(240_000);
  let nr: NodeRedProcess | undefined;
  let tarball = '';
  let files: string[] = [];

  before(function () {
    if (path.resolve(buildRoot) !== path.join(repoRoot, 'dist')) {
      // The tarball is made from dist/; a helper's private build elsewhere is not what would be published.
      this.skip();
    }
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wxcx-pack-'));
    const info = JSON.parse(
      npm(['pack', '--json', '--ignore-scripts', '--pack-destination', out], repoRoot),
    ) as {
      filename: string;
      files: { path: string }[];
    }[];
    tarball = path.join(out, info[0].filename);
    files = info[0].files.map((f) => f.path);
  });

  after(async () => {
    await nr?.stop();
  });

  it('packs what users need and nothing else', () => {
    for (const t of [
      'wechat-config',
      'wechat-in',
      'wechat-out',
      'cxone-dfo-config',
      'cxone-dfo-in',
      'cxone-dfo-out',
    ]) {
      assert.ok(files.includes(`dist/nodes/${t}.js`), `${t}.js packed`);
      assert.ok(files.includes(`dist/nodes/${t}.html`), `${t}.html packed`);
      assert.ok(files.includes(`dist/nodes/locales/en-US/${t}.json`), `${t} en-US catalog packed`);
      assert.ok(files.includes(`dist/nodes/locales/zh-CN/${t}.html`), `${t} zh-CN help packed`);
    }
    assert.ok(files.includes('dist/nodes/icons/wxcx-wechat.svg'));
    assert.ok(files.includes('package.json') && files.includes('README.md'));
    const unwanted = files.filter((f) =>
      /^(test|bench|docs|scripts|\.ci)\/|^dist\/(test|bench)\/|\.ts$|(^|\/)node_modules\//.test(f),
    );
    assert.deepEqual(unwanted, []);
  });

  it('loads all six types into a fresh Node-RED with no error', async () => {
    const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxcx-palette-'));
    fs.writeFileSync(
      path.join(userDir, 'package.json'),
      JSON.stringify({
        name: 'node-red-project',
        description: 'A Node-RED Project',
        version: '0.0.1',
        private: true,
      }),
    );
    // The palette manager's own command line (@node-red/registry/lib/installer.js).
    npm(
      [
        'install',
        '--no-audit',
        '--no-update-notifier',
        '--no-fund',
        '--save',
        '--save-prefix=~',
        '--omit=dev',
        '--engine-strict',
        tarball,
      ],
      userDir,
    );
    const installed = JSON.parse(fs.readFileSync(path.join(userDir, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    assert.ok(installed.dependencies['@wxcx/node-red-wechat-cxone'], 'recorded in the user directory');
    assert.ok(
      !fs.existsSync(path.join(userDir, 'node_modules', 'node-red')),
      'node-red is not pulled in as a dependency',
    );

    nr = await startNodeRed({ userDir, linkPackage: false });
    const res = await fetch(`${nr.url}/nodes`, { headers: { Accept: 'application/json' } });
    const sets = (await res.json()) as { module: string; types: string[]; enabled: boolean; err?: string }[];
    const ours = sets.filter((s) => s.module === '@wxcx/node-red-wechat-cxone');
    assert.deepEqual(ours.flatMap((s) => s.types).sort(), [
      'cxone-dfo-config',
      'cxone-dfo-in',
      'cxone-dfo-out',
      'wechat-config',
      'wechat-in',
      'wechat-out',
    ]);
    for (const s of ours) {
      assert.equal(s.err, undefined, `${s.types.join()}: ${s.err}`);
      assert.equal(s.enabled, true);
    }
    // The examples are offered in the Import menu (the editor lists them from the `examples` library).
    const mod = encodeURIComponent('@wxcx/node-red-wechat-cxone').replace('%2F', '/');
    const lib = await fetch(`${nr.url}/library/examples/flows/${mod}`, {
      headers: { Accept: 'application/json' },
    });
    assert.equal(lib.status, 200);
    const listing = (await lib.json()) as unknown[];
    const names = listing.map((e) => (typeof e === 'string' ? e : (e as { fn: string }).fn));
    assert.ok(
      names.some((n) => /bridge/i.test(n)),
      `examples listed: ${JSON.stringify(listing)}`,
    );
    assert.doesNotMatch(nr.logs(), /\[error\]/);
  });
});
