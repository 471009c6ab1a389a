/**
 * The CXone admin page and the cxone-dfo-config dialog in a real browser (Debian's Chromium through
 * playwright-core): the page's script runs under its strict CSP (no violation), lists, creates and removes
 * channels and goes back; the editor dialog's "Test connection" and "Create channel" work against the simulator in
 * a Node-RED started with red.js.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { loadFlow, startHelper, stopHelper, type TestRuntime } from '../harness/helper';
import { startNodeRed, type NodeRedProcess } from '../harness/process';
import { CxoneSimulator } from '../../sandbox/sim/cxone';

// Evaluated in the browser; this project compiles without the DOM library.
declare const document: any;
declare const window: any;

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));

function watch(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || /Content Security Policy|Refused to/i.test(m.text())) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(String(e)));
  return problems;
}

(CHROMIUM ? describe : describe.skip)('CXone admin UI in Chromium', function () {
  this.timeout(90_000);
  let browser: Browser;
  let sim: CxoneSimulator;

  before(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });
  after(async () => {
    await browser?.close();
  });
  beforeEach(async () => {
    sim = new CxoneSimulator({ channels: ['chat_other'] });
    await sim.start();
    sim.dfo.addChannel({
      id: 'chat_mine',
      channelIntegrationId: 'int-1',
      idOnExternalPlatform: 'gh_mine',
      name: 'Mine',
    });
  });
  afterEach(async () => {
    await sim.stop();
  });

  describe('the Action page served by cxone-dfo-in', () => {
    let rt: TestRuntime;
    before(() => startHelper());
    after(() => stopHelper());
    afterEach(async () => {
      await rt?.close();
    });

    it('lists, creates with the icon, removes, and goes back, with no CSP violation', async () => {
      const s = sim.integration();
      rt = await loadFlow(
        [
          { id: 'tab', type: 'tab' },
          {
            id: 'cc',
            type: 'cxone-dfo-config',
            authIssuer: s.authIssuer,
            apiBase: '',
            channelIntegrationId: 'int-1',
          },
          { id: 'ci', type: 'cxone-dfo-in', z: 'tab', cxone: 'cc', path: '/integration/box', wires: [[]] },
        ],
        { cc: { ...s.credentials, boxClientId: 'box', boxClientSecret: 'boxsecret' } },
      );
      const backUrl = `${rt.url}/back-to-cxone`;
      const token = sim.dfo.issueOneTimeToken({ brandId: 1234, userId: 5678 });
      const ctx = await browser.newContext({ locale: 'en-US' });
      const page = await ctx.newPage();
      const problems = watch(page);
      const q = new URLSearchParams({ userId: '5678', brandId: '1234', token, backUrl });
      await page.goto(`${rt.url}/integration/box/action?${q.toString()}`);
      assert.equal(
        new URL(page.url()).pathname,
        '/integration/box/admin',
        'the one-time token left the address bar',
      );
      await page.waitForSelector('tr[data-channel-id="chat_mine"]');
      assert.equal(await page.locator('tr[data-channel-id="chat_other"]').count(), 0);

      await page.fill('input[name="idOnExternalPlatform"]', 'gh_browser01');
      await page.fill('input[name="name"]', 'WeChat <b>Browser</b>');
      await page.click('#create button[type="submit"]');
      await page.waitForFunction(() => document.querySelectorAll('tr[data-channel-id]').length === 2);
      const created = [...sim.dfo.channels.values()].find((c) => c.idOnExternalPlatform === 'gh_browser01')!;
      assert.ok(created);
      assert.equal(created.externalPlatformIcon, 'wechat');
      assert.equal(created.channelIntegrationId, 'int-1');
      // The name is shown as text, never parsed as HTML.
      const row = page.locator(`tr[data-channel-id="${String(created.id)}"]`);
      assert.equal(await row.locator('td').first().textContent(), 'WeChat <b>Browser</b>');
      assert.equal(await row.locator('b').count(), 0);
      assert.match((await page.textContent('#notice')) ?? '', /Channel created/);

      page.once('dialog', (d) => void d.accept());
      await row.locator('button.remove').click();
      await page.waitForFunction(() => document.querySelectorAll('tr[data-channel-id]').length === 1);
      assert.ok(!sim.dfo.channels.has(String(created.id)));

      await Promise.all([page.waitForURL(backUrl), page.click('#back')]);
      assert.equal(page.url(), backUrl);
      assert.deepEqual(
        problems.filter((p) => !/404/.test(p)),
        [],
        'no script error or CSP violation',
      );
      await ctx.close();
    });
  });

  describe('the cxone-dfo-config dialog in the Node-RED editor (red.js)', () => {
    let nr: NodeRedProcess | undefined;
    afterEach(async () => {
      await nr?.stop();
      nr = undefined;
    });

    it('“Test connection” reports the tenant and API base; “Create channel” creates it with the icon', async () => {
      const s = sim.integration();
      nr = await startNodeRed({
        flows: [
          { id: 'tab', type: 'tab', label: 'Flow 1' },
          {
            id: 'cc',
            type: 'cxone-dfo-config',
            name: 'Tenant A',
            authIssuer: s.authIssuer,
            apiBase: '',
            channelIntegrationId: 'int-1',
          },
        ],
        credentials: { cc: s.credentials },
        settings: { editorTheme: { tours: false }, telemetry: { enabled: false } },
      });
      const ctx = await browser.newContext({ locale: 'en-US' });
      const page = await ctx.newPage();
      const problems = watch(page);
      await page.goto(nr.url);
      await page.waitForFunction(
        () => window.RED?.nodes?.node?.('cc') && window.RED?.nodes?.getType?.('cxone-dfo-config'),
        undefined,
        { timeout: 30_000 },
      );
      await page.evaluate(() => window.RED.editor.editConfig('', 'cxone-dfo-config', 'cc'));
      await page.waitForSelector('#node-config-cxone-test', { state: 'visible' });
      // The saved secret is not in the page: the field holds Node-RED's placeholder.
      assert.equal(await page.inputValue('#node-config-input-accessKeySecret'), '__PWRD__');

      await page.click('#node-config-cxone-test');
      await page.waitForFunction(() =>
        /Connected|Failed/.test(document.getElementById('node-config-cxone-result')?.textContent ?? ''),
      );
      const text = (await page.textContent('#node-config-cxone-result')) ?? '';
      assert.match(text, /Connected/);
      assert.ok(text.includes(sim.dfo.opts.tenantId));
      assert.ok(text.includes(`${sim.url}/dfo/3.0`));

      await page.fill('#node-config-cxone-new-account', 'gh_editor01');
      await page.click('#node-config-cxone-create');
      await page.waitForFunction(() =>
        /Channel created/.test(document.getElementById('node-config-cxone-result')?.textContent ?? ''),
      );
      const created = [...sim.dfo.channels.values()].find((c) => c.idOnExternalPlatform === 'gh_editor01')!;
      assert.ok(created);
      assert.equal(created.externalPlatformIcon, 'wechat');
      assert.equal(created.channelIntegrationId, 'int-1');
      await page.waitForSelector(`#node-config-cxone-channels tr[data-channel-id="${String(created.id)}"]`);

      // A wrong secret typed into the dialog (not deployed) is reported at the token step.
      await page.fill('#node-config-input-clientSecret', 'typed-wrong');
      await page.click('#node-config-cxone-test');
      await page.waitForFunction(() =>
        /Failed/.test(document.getElementById('node-config-cxone-result')?.textContent ?? ''),
      );
      assert.match(
        (await page.textContent('#node-config-cxone-result')) ?? '',
        /token.*Client ID and Client secret/,
      );
      // A key pasted with a space in it is flagged in the dialog.
      await page.fill('#node-config-input-accessKeyId', 'AKID PASTED');
      await page.dispatchEvent('#node-config-input-accessKeyId', 'change');
      await page.waitForFunction(() =>
        document.getElementById('node-config-input-accessKeyId').classList.contains('input-error'),
      );
      await page.fill('#node-config-input-accessKeyId', 'AKIDPASTED====');
      await page.dispatchEvent('#node-config-input-accessKeyId', 'change');
      await page.waitForFunction(
        () => !document.getElementById('node-config-input-accessKeyId').classList.contains('input-error'),
      );
      // The editor itself may try to reach the internet (no DNS here); nothing else may go wrong.
      assert.deepEqual(
        problems.filter((p) => !/ERR_NAME_NOT_RESOLVED|ERR_INTERNET_DISCONNECTED/.test(p)),
        [],
      );
      await ctx.close();
    });
  });
});
