/**
 * The browser harness: Debian's Chromium (/usr/bin/chromium, never a downloaded one) driven by playwright-core,
 * headless, with a fresh profile per launch and every request that leaves 127.0.0.1 refused (the editor and the
 * sandbox must work with no network).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { repoRoot } from '../harness/paths';
import { nodeRedPackage, nodeRedVersion } from '../harness/runtime';

// Run inside the page by playwright (the DOM lib is not part of this Node project's types).
declare const window: any;

export const CHROMIUM = process.env.WXCX_CHROMIUM || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Settings for a Node-RED the browser opens: no tour, no telemetry question, no catalogue fetched. */
export const EDITOR_SETTINGS = {
  editorTheme: { tours: false, palette: { catalogues: [] } },
  telemetry: { enabled: false, updateNotification: false },
};

export interface Browser {
  context: BrowserContext;
  page: Page;
  /** Requests the page tried to send off 127.0.0.1 (refused). */
  offline: string[];
  /** Errors the page logged to its console. */
  consoleErrors: string[];
  close(): Promise<void>;
}

export function chromiumMissing(): string | null {
  return fs.existsSync(CHROMIUM)
    ? null
    : `Chromium is not installed at ${CHROMIUM} (apt-get install chromium); the browser tests need it`;
}

export async function launch(viewport = { width: 1400, height: 900 }): Promise<Browser> {
  const missing = chromiumMissing();
  if (missing) throw new Error(missing);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'wxcx-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport,
    locale: 'en-US',
    timeout: 30_000,
  });
  context.setDefaultTimeout(15_000);
  const offline: string[] = [];
  await context.route(
    (url) => !/^(127\.0\.0\.1|localhost)$/.test(url.hostname) && !/^(data|blob|about):/.test(url.protocol),
    (route) => {
      offline.push(route.request().url());
      return route.abort('internetdisconnected');
    },
  );
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  return {
    context,
    page,
    offline,
    consoleErrors,
    async close() {
      await context.close().catch(() => undefined);
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Saves a screenshot under .cache/screenshots/<node-red version>/ and, on the Node-RED 4.1 pass when
 * WXCX_SCREENSHOTS=1 or the picture does not exist yet, as docs/images/<name>.png for the README.
 */
export async function screenshot(
  page: Page,
  name: string,
  opts: {
    fullPage?: boolean;
    docs?: boolean;
    clip?: { x: number; y: number; width: number; height: number };
  } = {},
): Promise<void> {
  const dir = path.join(repoRoot, '.cache', 'screenshots', `node-red-${nodeRedVersion()}`);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.png`);
  await page.screenshot({
    path: file,
    fullPage: opts.fullPage ?? false,
    animations: 'disabled',
    ...(opts.clip ? { clip: opts.clip } : {}),
  });
  const docs = path.join(repoRoot, 'docs', 'images', `${name}.png`);
  if (opts.docs === false) return;
  if (nodeRedPackage === 'node-red' && (process.env.WXCX_SCREENSHOTS === '1' || !fs.existsSync(docs))) {
    fs.mkdirSync(path.dirname(docs), { recursive: true });
    fs.copyFileSync(file, docs);
  }
}

/** Opens the editor and waits until the palette and the flows are loaded. */
export async function openEditor(page: Page, url: string): Promise<void> {
  await page.goto(url, { waitUntil: 'domcontentloaded' });
  // Attached, not visible: a palette hidden in an earlier page of the same user stays hidden (Node-RED 5).
  await page.waitForSelector('.red-ui-palette-node[data-palette-type="wechat-in"]', {
    state: 'attached',
    timeout: 30_000,
  });
  await page.waitForFunction(
    () => !!window.RED?.nodes?.getType?.('wechat-in') && !!window.RED?.workspaces?.active?.(),
    undefined,
    {
      timeout: 30_000,
    },
  );
}
