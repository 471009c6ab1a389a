/**
 * The wechat-config dialog in the Node-RED editor (red.js) in a real browser (Debian's Chromium through
 * playwright-core): "Test connection" reaches the WeChat simulator through the admin route with a relative URL and
 * shows the result in words (a token, then 40164 with the IP-whitelist explanation, then a wrong typed AppSecret);
 * the saved AppSecret never reaches the page; the token API choice and the field checks work.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { EDITOR_SETTINGS } from '../browser/harness';
import { startNodeRed, type NodeRedProcess } from '../harness/process';
import { WechatSimulator } from '../../sandbox/sim/wechat';

// Run inside the page by playwright (the DOM lib is not part of this Node project's types).
declare const window: any;
declare const document: any;

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));

function watch(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(String(e)));
  return problems;
}

(CHROMIUM ? describe : describe.skip)('wechat-config dialog in Chromium (red.js)', function () {
  this.timeout(90_000);
  let browser: Browser;
  let sim: WechatSimulator;
  let nr: NodeRedProcess | undefined;

  before(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    sim = new WechatSimulator();
    await sim.start();
  });
  after(async () => {
    await nr?.stop();
    await browser?.close();
    await sim?.stop();
  });

  it('“Test connection” shows the token, then 40164 in words, then a wrong typed AppSecret', async () => {
    nr = await startNodeRed({
      flows: [
        { id: 'tab', type: 'tab', label: 'Flow 1' },
        {
          id: 'wc',
          type: 'wechat-config',
          name: 'Acme',
          appId: sim.appId,
          apiBase: sim.url,
          tokenMode: 'stable',
        },
      ],
      credentials: { wc: { appSecret: sim.appSecret } },
      settings: EDITOR_SETTINGS,
    });
    const ctx = await browser.newContext({ locale: 'en-US' });
    const page = await ctx.newPage();
    const problems = watch(page);
    await page.goto(nr.url);
    await page.waitForFunction(
      () => window.RED?.nodes?.node?.('wc') && window.RED?.nodes?.getType?.('wechat-config'),
      undefined,
      { timeout: 30_000 },
    );
    await page.evaluate(() => window.RED.editor.editConfig('', 'wechat-config', 'wc'));
    await page.waitForSelector('#node-config-wechat-test', { state: 'visible' });
    assert.equal(
      await page.inputValue('#node-config-input-appSecret'),
      '__PWRD__',
      'the saved secret stays on the server',
    );
    assert.equal(await page.inputValue('#node-config-input-tokenMode'), 'stable');

    const result = async (re: RegExp): Promise<string> => {
      await page.waitForFunction(
        (src) =>
          new RegExp(src).test(document.getElementById('node-config-wechat-test-result')?.textContent ?? ''),
        re.source,
      );
      return (await page.textContent('#node-config-wechat-test-result')) ?? '';
    };

    await page.click('#node-config-wechat-test');
    assert.match(await result(/Connected/), /Connected: WeChat issued an access token \(valid 7200 s\)/);

    sim.api.setIpWhitelisted(false);
    await page.click('#node-config-wechat-test');
    const refused = await result(/refused/);
    assert.match(refused, /this server's IP is not on the account's IP whitelist/);
    assert.match(refused, /\(40164\)/);
    sim.api.setIpWhitelisted(true);

    await page.fill('#node-config-input-appSecret', 'typed-wrong-secret');
    await page.click('#node-config-wechat-test');
    assert.match(await result(/40125/), /AppSecret is not valid/);

    // The field checks: a malformed AppID is flagged in the dialog.
    await page.fill('#node-config-input-appId', 'wx123');
    await page.locator('#node-config-input-appId').blur();
    await page.waitForFunction(() =>
      document.getElementById('node-config-input-appId')?.classList.contains('input-error'),
    );
    assert.deepEqual(problems, []);
    await ctx.close();
  });
});
