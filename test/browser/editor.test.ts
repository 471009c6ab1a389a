/**
 * The editor in a real browser (Debian's Chromium) against a Node-RED started like a user starts it: the pack's
 * nodes in the palette, every dialog opening, validating with messages, saving and keeping its values (secrets
 * shown as set after a reload), a deploy with the nodes' status, and an example imported through
 * Menu → Import → Examples and deployed. Works on the editors of Node-RED 4.1 and 5.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Page } from 'playwright-core';
import { repoRoot } from '../harness/paths';
import { startNodeRed, type NodeRedProcess } from '../harness/process';
import { EDITOR_SETTINGS, chromiumMissing, launch, openEditor, screenshot, type Browser } from './harness';

const CATEGORY = 'wechat_cxone';
const PALETTE_TYPES = ['wechat-in', 'wechat-out', 'cxone-dfo-in', 'cxone-dfo-out'];
const AES_KEY = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG';

interface Field {
  /** The property (input id node-input-<id> or node-config-input-<id>). */
  id: string;
  bad: string;
  good: string;
  /** Take this screenshot while the message shows. */
  screenshot?: string;
}

interface ConfigCase {
  type: string;
  fields: Field[];
  /** Credentials to enter; `text` ones are shown back as they are, the others as "set". */
  secrets: Record<string, string>;
  textSecrets: string[];
}

const CONFIGS: Record<string, ConfigCase> = {
  wechat: {
    type: 'wechat-config',
    fields: [
      { id: 'appId', bad: 'my-app', good: 'wx0123456789abcdef', screenshot: 'dialog-validation' },
      { id: 'apiBase', bad: 'api.weixin.qq.com', good: 'https://api.weixin.qq.com' },
      { id: 'encodingAESKey', bad: 'too-short', good: AES_KEY },
      { id: 'allowedHosts', bad: 'https://files.example.org/x', good: '.example.com, files.example.org' },
    ],
    secrets: { appSecret: 'app-secret-for-the-editor-test', token: 'webhookToken123' },
    textSecrets: [],
  },
  cxone: {
    type: 'cxone-dfo-config',
    fields: [
      { id: 'authIssuer', bad: 'cxone', good: 'https://cxone.niceincontact.com' },
      { id: 'apiBase', bad: 'na1 api', good: 'https://api-na1.niceincontact.com/dfo/3.0' },
      { id: 'channelIntegrationId', bad: 'my integration', good: 'a1b2c3d4-integration' },
    ],
    secrets: {
      clientId: 'app-client-id',
      clientSecret: 'app-client-secret',
      accessKeyId: 'ACCESSKEYID',
      accessKeySecret: 'access-key-secret',
      boxClientId: 'box-client-id',
      boxClientSecret: 'box-client-secret',
      jwtSecret: 'a-jwt-secret-of-at-least-32-characters!!',
    },
    textSecrets: ['boxClientId'],
  },
};

interface NodeCase {
  type: string;
  config: keyof typeof CONFIGS;
  configProp: string;
  at: [number, number];
  fields: Field[];
  /** Status text expected once deployed (a regexp), when the node shows one with no traffic. */
  status?: RegExp;
}

const NODES: NodeCase[] = [
  {
    type: 'wechat-in',
    config: 'wechat',
    configProp: 'wechat',
    at: [220, 100],
    fields: [
      { id: 'path', bad: 'wechat hook', good: '/wechat/editor-test' },
      { id: 'replyTimeout', bad: '9000', good: '1500' },
      { id: 'publicUrl', bad: 'bot.example.com', good: 'https://bot.example.com' },
      { id: 'mediaLinkTtl', bad: '0', good: '48' },
      { id: 'timestampWindow', bad: '100000', good: '300' },
    ],
    status: /\/wechat\/editor-test/,
  },
  {
    type: 'wechat-out',
    config: 'wechat',
    configProp: 'wechat',
    at: [220, 200],
    fields: [
      { id: 'kfAccount', bad: 'not an account', good: 'agent1@gh_account' },
      { id: 'maxAttempts', bad: '0', good: '5' },
      { id: 'maxAge', bad: '0', good: '60' },
      { id: 'concurrency', bad: '2000', good: '32' },
    ],
  },
  {
    type: 'cxone-dfo-in',
    config: 'cxone',
    configProp: 'cxone',
    at: [520, 100],
    fields: [{ id: 'path', bad: 'integration box', good: '/integration/editor-test' }],
    status: /\/integration\/editor-test/,
  },
  {
    type: 'cxone-dfo-out',
    config: 'cxone',
    configProp: 'cxone',
    at: [520, 200],
    fields: [
      { id: 'channelId', bad: 'my channel!', good: 'wechat-editor-test' },
      { id: 'maxAttachmentMB', bad: '0', good: '15' },
      { id: 'allowedHosts', bad: 'files.example.org/path', good: '.example.com' },
      { id: 'maxAttempts', bad: '0', good: '5' },
      { id: 'maxAge', bad: '0', good: '60' },
      { id: 'concurrency', bad: '2000', good: '32' },
    ],
  },
];

type RedWindow = { RED: any };
// Run inside the page by playwright (the DOM lib is not part of this Node project's types).
declare const window: any;
declare const document: any;
declare function getComputedStyle(e: unknown): { backgroundImage: string };

/** Ids of the nodes of `type` in the editor. */
function idsOf(page: Page, type: string): Promise<string[]> {
  return page.evaluate((t) => {
    const out: string[] = [];
    (window as unknown as RedWindow).RED.nodes.eachNode((n: { id: string; type: string }) => {
      if (n.type === t) out.push(n.id);
    });
    return out;
  }, type);
}

/** Drags a node from the palette onto the workspace; returns its id. */
async function dropFromPalette(page: Page, type: string, at: [number, number]): Promise<string> {
  const before = await idsOf(page, type);
  const item = page.locator(
    `#red-ui-palette-base-category-${CATEGORY} .red-ui-palette-node[data-palette-type="${type}"]`,
  );
  await item.scrollIntoViewIfNeeded();
  await item.dragTo(page.locator('#red-ui-workspace-chart'), { targetPosition: { x: at[0], y: at[1] } });
  // A click on empty canvas drops the node if the editor still holds it.
  await page.waitForFunction(
    ([t, n]) => {
      let c = 0;
      (window as unknown as RedWindow).RED.nodes.eachNode((x: { type: string }) => {
        if (x.type === t) c++;
      });
      return c > n;
    },
    [type, before.length] as const,
  );
  const after = await idsOf(page, type);
  const id = after.find((i) => !before.includes(i));
  assert.ok(id, `no new ${type} node after the drop`);
  return id;
}

/** The button beside a config-node selector: "add" and "edit" (Node-RED 4.1, 5) or the one pencil (4.0). */
function configButton(page: Page, prop: string, which: 'add' | 'edit') {
  return page.locator(`#node-input-btn-${prop}-${which}, #node-input-lookup-${prop}`).first();
}

/** Closes whatever edit trays a failed test left open. */
async function closeTrays(page: Page): Promise<void> {
  await page.evaluate(async () => {
    for (let i = 0; i < 5 && document.querySelector('.red-ui-tray'); i++) {
      window.RED.tray.close();
      await new Promise((r) => setTimeout(r, 400));
    }
  });
}

async function openNode(page: Page, id: string): Promise<void> {
  await page.locator(`#red-ui-workspace-chart g.red-ui-flow-node[id="${id}"]`).dblclick();
  await page.locator('#node-dialog-ok').waitFor({ state: 'visible' });
  await page.waitForTimeout(300); // the tray slides in
}

/**
 * Enters a bad value: the field must turn red, and hovering it must show the node's own message (not a catalog
 * key). Then the good value, which must clear it. Returns what was wrong (the caller saves the node first, so one
 * missing message does not spoil the next tests).
 */
async function checkField(page: Page, nodeType: string, prefix: string, f: Field): Promise<string[]> {
  const problems: string[] = [];
  const sel = `#${prefix}-${f.id}`;
  const input = page.locator(sel);
  await input.waitFor({ state: 'visible' });
  await input.fill(f.bad);
  await input.dispatchEvent('change');
  const red = await page
    .waitForFunction((s) => document.querySelector(s)?.classList.contains('input-error'), sel, {
      timeout: 5000,
    })
    .then(() => true)
    .catch(() => false);
  if (!red) problems.push(`${nodeType}: "${f.bad}" in ${f.id} is not marked invalid`);
  const expected = await page.evaluate(
    ([t, prop, v]) => {
      const RED = (window as unknown as RedWindow).RED;
      const def = RED.nodes.getType(t);
      const spec = (def.defaults && def.defaults[prop]) || (def.credentials && def.credentials[prop]);
      const r = spec && spec.validate ? spec.validate.call({ _: def._ ?? RED._, ...def }, v, {}) : null;
      return typeof r === 'string' ? r : null;
    },
    [nodeType, f.id, f.bad] as const,
  );
  if (!expected) problems.push(`${nodeType}.${f.id}: no message says what is wrong with "${f.bad}"`);
  else if (new RegExp(`^${nodeType}\\.`).test(expected))
    problems.push(`${nodeType}.${f.id}: the message is a bare catalog key (${expected})`);
  else if (red) {
    await page.mouse.move(0, 0);
    await input.hover();
    const shown = await page
      .locator('.red-ui-popover')
      .filter({ hasText: expected.slice(0, 40) })
      .first()
      .waitFor({ state: 'visible', timeout: 5000 })
      .then(() => true)
      .catch(() => false);
    if (!shown) problems.push(`${nodeType}.${f.id}: the message "${expected}" is not shown on hover`);
    else if (f.screenshot) await screenshot(page, f.screenshot);
  }
  await input.fill(f.good);
  await input.dispatchEvent('change');
  const cleared = await page
    .waitForFunction((s) => !document.querySelector(s)?.classList.contains('input-error'), sel, {
      timeout: 5000,
    })
    .then(() => true)
    .catch(() => false);
  if (!cleared) problems.push(`${nodeType}: "${f.good}" in ${f.id} is still marked invalid`);
  return problems;
}

async function deploy(page: Page): Promise<void> {
  await page.locator('#red-ui-header-button-deploy').click();
  // A flow with nodes that are not fully configured asks for confirmation first.
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

describe('the editor in Chromium', function () {
  this.timeout(180_000);
  let nr: NodeRedProcess;
  let b: Browser;
  let page: Page;
  const created: Record<string, string> = {};
  const configIds: Record<string, string> = {};

  before(async function () {
    const missing = chromiumMissing();
    if (missing) throw new Error(missing);
    nr = await startNodeRed({
      settings: EDITOR_SETTINGS,
      flows: [{ id: 'wxcxtab00000001', type: 'tab', label: 'Editor test' }],
    });
    b = await launch();
    page = b.page;
    await openEditor(page, nr.url);
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && page) {
      await screenshot(
        page,
        `failed-${(this.currentTest.title || 'test').replace(/[^A-Za-z0-9]+/g, '-').slice(0, 60)}`,
        {
          docs: false,
        },
      ).catch(() => undefined);
      await closeTrays(page).catch(() => undefined);
    }
  });

  after(async () => {
    await b?.close();
    await nr?.stop();
  });

  it('shows the four nodes in the pack’s palette category, with its own icons, and knows both config nodes', async () => {
    const types = await page.$$eval(`#red-ui-palette-base-category-${CATEGORY} .red-ui-palette-node`, (els) =>
      els.map((e) => e.getAttribute('data-palette-type')),
    );
    assert.deepEqual([...types].sort(), [...PALETTE_TYPES].sort());
    for (const t of PALETTE_TYPES) {
      const icon = await page
        .locator(`.red-ui-palette-node[data-palette-type="${t}"] .red-ui-palette-icon`)
        .evaluate((e) => getComputedStyle(e).backgroundImage);
      assert.match(icon, /wxcx-(wechat|cxone)\.svg/, `${t} uses the pack's icon`);
    }
    const config = await page.evaluate(() => {
      const RED = (window as unknown as RedWindow).RED;
      return ['wechat-config', 'cxone-dfo-config'].map((t) => RED.nodes.getType(t)?.category);
    });
    assert.deepEqual(config, ['config', 'config']);
    await screenshot(page, 'editor-palette');
  });

  for (const n of NODES) {
    it(`${n.type}: the dialog opens, says what is wrong with a field, and saves`, async () => {
      const problems: string[] = [];
      const id = await dropFromPalette(page, n.type, n.at);
      created[n.type] = id;
      await openNode(page, id);
      const cfg = CONFIGS[n.config];
      if (!configIds[n.config]) {
        // A new config node through the pencil button beside the selector.
        await configButton(page, n.configProp, 'add').click();
        await page.locator('#node-config-dialog-ok').waitFor({ state: 'visible' });
        await page.waitForTimeout(300);
        for (const f of cfg.fields)
          problems.push(...(await checkField(page, cfg.type, 'node-config-input', f)));
        for (const [k, v] of Object.entries(cfg.secrets))
          await page.locator(`#node-config-input-${k}`).fill(v);
        await page.locator('#node-config-input-name').fill(`Test ${n.config}`);
        await screenshot(page, `dialog-${cfg.type}`);
        await page.locator('#node-config-dialog-ok').click();
        await page.locator('#node-config-dialog-ok').waitFor({ state: 'detached' });
        configIds[n.config] = await page.locator(`#node-input-${n.configProp}`).inputValue();
        assert.ok(configIds[n.config], 'the new config node is selected');
      } else {
        await page.locator(`#node-input-${n.configProp}`).selectOption(configIds[n.config]);
      }
      for (const f of n.fields) problems.push(...(await checkField(page, n.type, 'node-input', f)));
      await page.locator('#node-input-name').fill(`my ${n.type}`);
      await screenshot(page, `dialog-${n.type}`);
      await page.locator('#node-dialog-ok').click();
      await page.locator('#node-dialog-ok').waitFor({ state: 'detached' });
      const saved = await page.evaluate(
        ([nid, props]) => {
          const node = (window as unknown as RedWindow).RED.nodes.node(nid);
          return Object.fromEntries(props.map((p) => [p, String(node[p])]));
        },
        [id, [...n.fields.map((f) => f.id), n.configProp, 'name']] as const,
      );
      for (const f of n.fields) assert.equal(saved[f.id], f.good, `${n.type}.${f.id} saved`);
      assert.equal(saved[n.configProp], configIds[n.config]);
      assert.equal(saved.name, `my ${n.type}`);
      const valid = await page.evaluate(
        (nid) => (window as unknown as RedWindow).RED.nodes.node(nid).valid,
        id,
      );
      assert.equal(valid, true, `${n.type} is valid once filled in`);
      assert.deepEqual(problems, [], 'every field says what is wrong');
    });
  }

  it('shows the full callback URLs with a copy button', async () => {
    for (const [type, re] of [
      ['wechat-in', /^http:\/\/127\.0\.0\.1:\d+\/wechat\/editor-test$/],
      ['cxone-dfo-in', /^http:\/\/127\.0\.0\.1:\d+\/integration\/editor-test$/],
    ] as const) {
      await openNode(page, created[type]);
      const urls = await page.locator('.red-ui-tray code').allInnerTexts();
      assert.ok(
        urls.some((u) => re.test(u.trim())),
        `${type} shows ${String(re)}: ${JSON.stringify(urls)}`,
      );
      assert.ok(
        (await page.locator('.red-ui-tray button:has(.fa-clipboard)').count()) > 0,
        `${type} copy button`,
      );
      if (type === 'cxone-dfo-in') {
        assert.ok(
          urls.some((u) => /\/integration\/editor-test\/1\.0\/token$/.test(u.trim())),
          'token URL',
        );
        await screenshot(page, 'dialog-cxone-dfo-in-urls');
      }
      await page.locator('#node-dialog-cancel').click();
      await page.locator('#node-dialog-cancel').waitFor({ state: 'detached' });
    }
  });

  it('deploys; every node then shows a status; after a reload the values are kept and secrets show as set', async () => {
    await deploy(page);
    for (const n of NODES.filter((x) => x.status)) {
      const status = page.locator(
        `g.red-ui-flow-node[id="${created[n.type]}"] .red-ui-flow-node-status-label`,
      );
      await page
        .waitForFunction(
          ([sel, src]) => new RegExp(src).test(document.querySelector(sel)?.textContent ?? ''),
          [
            `g.red-ui-flow-node[id="${created[n.type]}"] .red-ui-flow-node-status-label`,
            n.status!.source,
          ] as const,
          { timeout: 10_000 },
        )
        .catch(async () => {
          throw new Error(
            `${n.type} status: "${await status.textContent()}" does not match ${String(n.status)}`,
          );
        });
    }
    await screenshot(page, 'editor-deployed');

    // What the runtime stored.
    const flows = (await (await fetch(`${nr.url}/flows`)).json()) as Record<string, unknown>[];
    for (const n of NODES) {
      const node = flows.find((x) => x.id === created[n.type]);
      assert.ok(node, `${n.type} deployed`);
      for (const f of n.fields) assert.equal(String(node[f.id]), f.good);
    }
    for (const key of Object.keys(configIds)) {
      const cfg = CONFIGS[key];
      const creds = (await (
        await fetch(`${nr.url}/credentials/${cfg.type}/${configIds[key]}`)
      ).json()) as Record<string, unknown>;
      for (const k of Object.keys(cfg.secrets)) {
        if (cfg.textSecrets.includes(k)) assert.equal(creds[k], cfg.secrets[k]);
        else assert.equal(creds[`has_${k}`], true, `${cfg.type} ${k} stored`);
        assert.notEqual(
          creds[k],
          cfg.textSecrets.includes(k) ? undefined : cfg.secrets[k],
          'no secret sent back',
        );
      }
    }

    await openEditor(page, nr.url);
    for (const n of NODES) {
      await openNode(page, created[n.type]);
      for (const f of n.fields) assert.equal(await page.locator(`#node-input-${f.id}`).inputValue(), f.good);
      await page.locator('#node-dialog-cancel').click();
      await page.locator('#node-dialog-cancel').waitFor({ state: 'detached' });
    }
    for (const n of [NODES[0], NODES[2]]) {
      const cfg = CONFIGS[n.config];
      await openNode(page, created[n.type]);
      await configButton(page, n.configProp, 'edit').click();
      await page.locator('#node-config-dialog-ok').waitFor({ state: 'visible' });
      await page.waitForTimeout(300);
      for (const f of cfg.fields.filter((x) => !(x.id in cfg.secrets) && x.id !== 'encodingAESKey'))
        assert.equal(await page.locator(`#node-config-input-${f.id}`).inputValue(), f.good);
      for (const k of [
        ...Object.keys(cfg.secrets),
        ...(cfg.type === 'wechat-config' ? ['encodingAESKey'] : []),
      ]) {
        const v = await page.locator(`#node-config-input-${k}`).inputValue();
        if (cfg.textSecrets.includes(k)) assert.equal(v, cfg.secrets[k]);
        else assert.equal(v, '__PWRD__', `${cfg.type} ${k} shows as set, not in clear`);
      }
      await page.locator('#node-config-dialog-cancel').click();
      await page.locator('#node-config-dialog-cancel').waitFor({ state: 'detached' });
      await page.locator('#node-dialog-cancel').click();
      await page.locator('#node-dialog-cancel').waitFor({ state: 'detached' });
    }
  });

  it('imports the bridge example from Menu → Import → Examples and deploys it', async () => {
    // A new, empty flow tab for the example.
    await page.evaluate(() => (window as unknown as RedWindow).RED.actions.invoke('core:add-flow'));
    await page.waitForTimeout(300);
    await page.locator('#red-ui-header-button-sidemenu').click();
    await page.locator('#menu-item-import').click();
    await page.locator('#red-ui-clipboard-dialog-ok').waitFor({ state: 'visible' });
    await page.locator('#red-ui-clipboard-dialog-import-tabs a', { hasText: 'Examples' }).click();
    const tree = page.locator('#red-ui-clipboard-dialog-import-tab-examples');
    await tree.locator('.red-ui-treeList-label', { hasText: '@wxcx/node-red-wechat-cxone' }).click();
    // The module's examples are loaded when it is opened.
    await tree
      .locator('.red-ui-treeList-label', { hasText: 'WeChat to CXone bridge' })
      .waitFor({ state: 'visible' });
    const names = (await tree.locator('.red-ui-treeList-label').allInnerTexts()).map((s) => s.trim());
    const examples = fs
      .readdirSync(path.join(repoRoot, 'examples'))
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.replace(/\.json$/, ''));
    for (const e of examples)
      assert.ok(names.includes(e), `Import → Examples lists "${e}": ${JSON.stringify(names)}`);
    await tree.locator('.red-ui-treeList-label', { hasText: 'WeChat to CXone bridge' }).click();
    await page.locator('#red-ui-clipboard-dialog-ok').click();
    await page.locator('#red-ui-clipboard-dialog-ok').waitFor({ state: 'hidden' });
    // The editor fetches the example, then the imported nodes follow the mouse until a click places them.
    await page.waitForFunction(() => {
      let found = false;
      (window as unknown as RedWindow).RED.nodes.eachNode((n: { name?: string }) => {
        if (n.name === 'CXone agent replies') found = true;
      });
      return found;
    });
    await page.mouse.move(240, 160);
    await page.mouse.move(250, 170);
    await page.mouse.click(250, 170);
    const imported = await page.evaluate(() => {
      const out: string[] = [];
      (window as unknown as RedWindow).RED.nodes.eachNode((n: { type: string; name?: string }) => {
        if (
          n.name === 'WeChat user writes' ||
          n.name === 'CXone agent replies' ||
          n.name === 'to the WeChat user'
        )
          out.push(n.type);
      });
      return out.sort();
    });
    assert.deepEqual(imported, ['cxone-dfo-in', 'wechat-in', 'wechat-out']);
    // The example's webhook path collides with nothing here; deploy it as it comes.
    await deploy(page);
    await page.evaluate(() => (window as unknown as RedWindow).RED.view.focus?.());
    await screenshot(page, 'example-imported', { docs: false });
    const flows = (await (await fetch(`${nr.url}/flows`)).json()) as { type: string; name?: string }[];
    assert.ok(
      flows.some((n) => n.type === 'wechat-in' && n.name === 'WeChat user writes'),
      'the example was deployed',
    );
    assert.deepEqual(b.offline, [], 'the editor tried to reach the internet');
  });
});

describe('the editor with httpNodeRoot set', function () {
  this.timeout(120_000);
  let nr: NodeRedProcess;
  let b: Browser;

  before(async function () {
    const missing = chromiumMissing();
    if (missing) throw new Error(missing);
    nr = await startNodeRed({
      settings: { ...EDITOR_SETTINGS, httpNodeRoot: '/hooks' },
      flows: [{ id: 'wxcxtab00000002', type: 'tab', label: 'Root test' }],
    });
    b = await launch();
    await openEditor(b.page, nr.url);
  });

  after(async () => {
    await b?.close();
    await nr?.stop();
  });

  it('shows the callback URLs under httpNodeRoot, as WeChat and CXone must call them', async () => {
    const page = b.page;
    for (const [type, at, re] of [
      ['wechat-in', [220, 100], /^http:\/\/127\.0\.0\.1:\d+\/hooks\/wechat\/webhook$/],
      ['cxone-dfo-in', [220, 220], /^http:\/\/127\.0\.0\.1:\d+\/hooks\/integration\/box\/1\.0\/token$/],
    ] as const) {
      const id = await dropFromPalette(page, type, [at[0], at[1]]);
      await openNode(page, id);
      const urls = (await page.locator('.red-ui-tray code').allInnerTexts()).map((u) => u.trim());
      assert.ok(
        urls.some((u) => re.test(u)),
        `${type} shows ${String(re)}: ${JSON.stringify(urls)}`,
      );
      await page.locator('#node-dialog-cancel').click();
      await page.locator('#node-dialog-cancel').waitFor({ state: 'detached' });
    }
  });
});
