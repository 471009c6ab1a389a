/**
 * The store choice in the config dialogs (red.js editor, Debian's Chromium through playwright-core): File is the
 * default with its explanation; choosing Redis shows the URL, password and key prefix, flags a URL that carries a
 * password or is not redis://, and a key prefix with a space, with the catalog's words; after Done and Deploy the
 * flow holds the choice, the password is a credential (never in flows.json, shown as set), and the runtime uses
 * the real Redis it names (health says so).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Page } from 'playwright-core';
import { chromiumMissing, EDITOR_SETTINGS, launch, openEditor, type Browser } from '../browser/harness';
import { startNodeRed, type NodeRedProcess } from '../harness/process';
import { cleanup, REDIS_URL, uniquePrefix } from './store-redis-helpers';

// Run inside the page by playwright (the DOM lib is not part of this Node project's types).
declare const window: any;
declare const document: any;

/** The config node types with the store fields, and their ids in the test flow. */
const TYPES: [string, string][] = [
  ['wechat-config', 'wc'],
  ['cxone-dfo-config', 'cc'],
];

async function deploy(page: Page): Promise<void> {
  await page.locator('#red-ui-header-button-deploy').click();
  const confirm = page.locator('#red-ui-deploy-dialog-confirm-deploy-deploy');
  await Promise.race([
    confirm.waitFor({ state: 'visible', timeout: 4000 }).then(() => confirm.click()),
    page.waitForFunction(
      () => document.querySelector('#red-ui-header-button-deploy')?.classList.contains('disabled'),
      undefined,
      { timeout: 4000 },
    ),
  ]).catch(() => undefined);
  await page.waitForFunction(
    () => document.querySelector('#red-ui-header-button-deploy')?.classList.contains('disabled'),
    undefined,
    { timeout: 15_000 },
  );
}

/** A file of the user directory once `ok` holds for its content (Node-RED writes them after answering). */
async function fileWhen<T>(file: string, ok: (v: T) => boolean): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    let v: T | undefined;
    try {
      v = JSON.parse(fs.readFileSync(file, 'utf8')) as T;
    } catch {
      v = undefined;
    }
    if (v !== undefined && ok(v)) return v;
    if (Date.now() - t0 > 10_000) throw new Error(`${file} never reached the expected content`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function invalid(page: Page, id: string): Promise<boolean> {
  await page.locator(id).blur();
  await page.waitForTimeout(150);
  return page.evaluate((sel) => !!document.querySelector(sel)?.classList.contains('input-error'), id);
}

(chromiumMissing() ? describe.skip : describe)(
  'the store choice in the config dialogs (Chromium, red.js)',
  function () {
    this.timeout(120_000);
    const prefix = uniquePrefix('editor');
    let nr: NodeRedProcess | undefined;
    let browser: Browser | undefined;

    after(async () => {
      await browser?.close();
      await nr?.stop();
      if (nr) fs.rmSync(nr.userDir, { recursive: true, force: true });
      await cleanup(prefix);
    });

    it('File by default; Redis shows its fields, checks them in words, and deploys with the password as a credential', async () => {
      nr = await startNodeRed({
        flows: [
          { id: 'tab', type: 'tab', label: 'Flow 1' },
          { id: 'wc', type: 'wechat-config', name: 'Acme', appId: 'wx2c2769f8efd9abc2' },
          {
            id: 'cc',
            type: 'cxone-dfo-config',
            name: 'Tenant',
            authIssuer: 'https://cxone.niceincontact.com',
          },
        ],
        credentials: { wc: { appSecret: 'app-secret-editor-test' } },
        settings: EDITOR_SETTINGS,
      });
      browser = await launch();
      const page = browser.page;
      await openEditor(page, nr.url);

      for (const [type, id] of TYPES) {
        await page.evaluate(([t, i]) => window.RED.editor.editConfig('', t, i), [type, id]);
        await page.waitForSelector('#node-config-input-store', { state: 'visible' });
        assert.equal(await page.inputValue('#node-config-input-store'), 'file', `${type}: file by default`);
        const hint = `#node-config-${type}-store-hint`;
        assert.match((await page.textContent(hint)) ?? '', /survive a restart or a crash/);
        assert.equal(await page.isVisible('#node-config-input-redisUrl'), false);

        await page.selectOption('#node-config-input-store', 'memory');
        assert.match((await page.textContent(hint)) ?? '', /Nothing survives a restart/);

        await page.selectOption('#node-config-input-store', 'redis');
        assert.equal(await page.isVisible('#node-config-input-redisUrl'), true);
        assert.equal(await page.isVisible('#node-config-input-redisPassword'), true);
        assert.match((await page.textContent(hint)) ?? '', /several Node-RED instances/);

        for (const bad of ['redis://:secret@127.0.0.1:6379', 'http://127.0.0.1:6379', '127.0.0.1:6379']) {
          await page.fill('#node-config-input-redisUrl', bad);
          assert.equal(
            await invalid(page, '#node-config-input-redisUrl'),
            true,
            `${type}: ${bad} is flagged`,
          );
        }
        await page.fill('#node-config-input-redisUrl', REDIS_URL);
        assert.equal(await invalid(page, '#node-config-input-redisUrl'), false);
        await page.fill('#node-config-input-keyPrefix', 'has space');
        assert.equal(await invalid(page, '#node-config-input-keyPrefix'), true);
        await page.fill('#node-config-input-keyPrefix', prefix);
        assert.equal(await invalid(page, '#node-config-input-keyPrefix'), false);
        await page.fill('#node-config-input-redisPassword', '');
        await page.locator('#node-config-dialog-ok').click();
        await page.locator('#node-config-dialog-ok').waitFor({ state: 'detached' });
      }

      await deploy(page);
      const flows = await fileWhen<any[]>(path.join(nr.userDir, 'flows.json'), (f) =>
        TYPES.every(([, id]) => f.find((x) => x.id === id)?.store === 'redis'),
      );
      for (const [, id] of TYPES) {
        const n = flows.find((x) => x.id === id);
        assert.equal(n.store, 'redis', id);
        assert.equal(n.redisUrl, REDIS_URL, id);
        assert.equal(n.keyPrefix, prefix, id);
        assert.equal(n.redisPassword, undefined, `${id}: the password is not a property`);
      }
      // The runtime opened the real Redis the dialog names.
      const t0 = Date.now();
      for (;;) {
        const h = (await (await fetch(`${nr.url}/wechat-cxone/health`)).json()) as { nodes: any[] };
        const stores = h.nodes.filter((n) => n.figures.store).map((n) => n.figures.store);
        const onRedis = stores.filter((s) => s.kind === 'redis' && s.connected).length;
        if (onRedis === TYPES.length) break;
        if (Date.now() - t0 > 10_000) assert.fail(`stores not on Redis: ${JSON.stringify(stores)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.deepEqual(browser.consoleErrors, []);
      assert.deepEqual(browser.offline, []);
    });

    it('a Redis password typed in the dialog is saved as a credential, shown as set, never sent back to the page', async () => {
      assert.ok(nr && browser, 'the previous test set up the editor');
      const page = browser.page;
      await page.evaluate(() => window.RED.editor.editConfig('', 'wechat-config', 'wc'));
      await page.waitForSelector('#node-config-input-redisPassword', { state: 'visible' });
      // (Redis on 127.0.0.1 has no password; ioredis then ignores the one given, so the store stays up.)
      await page.fill('#node-config-input-redisPassword', 'typed-redis-password');
      await page.locator('#node-config-dialog-ok').click();
      await page.locator('#node-config-dialog-ok').waitFor({ state: 'detached' });
      await deploy(page);
      const creds = await fileWhen<Record<string, Record<string, string>>>(
        path.join(nr.userDir, 'flows_cred.json'),
        (c) => !!c.wc?.redisPassword,
      );
      assert.equal(creds.wc.redisPassword, 'typed-redis-password');
      assert.doesNotMatch(nr.logs(), /typed-redis-password/);
      const flowsText = fs.readFileSync(path.join(nr.userDir, 'flows.json'), 'utf8');
      assert.doesNotMatch(flowsText, /typed-redis-password/);

      await page.reload();
      await openEditor(page, nr.url);
      await page.evaluate(() => window.RED.editor.editConfig('', 'wechat-config', 'wc'));
      await page.waitForSelector('#node-config-input-store', { state: 'visible' });
      assert.equal(await page.inputValue('#node-config-input-store'), 'redis');
      assert.equal(await page.inputValue('#node-config-input-redisPassword'), '__PWRD__');
      assert.equal(await page.content().then((h) => h.includes('typed-redis-password')), false);
      await page.locator('#node-config-dialog-cancel').click();
    });
  },
);
