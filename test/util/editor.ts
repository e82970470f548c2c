/**
 * Shared harness of the headless-Chromium editor tests (test/*.browser.test.ts): Node-RED 4.1 as a
 * child process with this package in a fresh user dir (installed from `npm pack` as a user would,
 * or linked), Debian's Chromium driven by playwright-core on the editor, the browser's console and
 * page errors and Node-RED's log collected, and the steps a user takes in the editor (import an
 * example, drag from the palette, open a dialog, deploy, read a node's status).
 *
 * Artifacts (Node-RED's log, screenshots) go to .test-artifacts/, named after the harness's prefix.
 * Everything started here is stopped by stop(): the browser, Node-RED by its PID, the temp dirs.
 */
import { strict as assert } from 'node:assert';
import { ChildProcess, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, BrowserContext, Locator, Page } from 'playwright-core';
import { freePort, sleep } from '../peers/proc';

interface UserDirModule {
  installInto(dir: string, pkgRoot: string): void;
  startNodeRed(opts: { userDir: string; host: string; port: number }): ChildProcess;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const userdir: UserDirModule = require('../../scripts/nodered-userdir.js');

export const ROOT = path.resolve(__dirname, '..', '..');
export const ARTIFACTS = path.join(ROOT, '.test-artifacts');
export const CHROMIUM = '/usr/bin/chromium';
export const MODULE = 'node-red-contrib-ups-orchestrator';
export const HOST = '127.0.0.1';
/** Playwright's default timeout for actions and waits on the editor page. */
export const UI_TIMEOUT = 15000;
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Text as displayed: whitespace collapsed (labels are laid out in spans and line breaks). */
export const text = (s: string | null | undefined) => (s ?? '').replace(/\s+/g, ' ').trim();

/** `npm test` builds first; build here only if dist/ lacks a node file that package.json names. */
export function buildIfNeeded(): void {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  if (Object.values<string>(pkg['node-red'].nodes).some((f) => !fs.existsSync(path.join(ROOT, f)))) {
    execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'build.js')], { stdio: 'inherit' });
  }
}

export interface StartNodeRedOptions {
  /** 'pack': npm pack + npm install into the user dir, as a user installs it; 'link': a node_modules symlink to this checkout. */
  install: 'pack' | 'link';
}

export interface OpenEditorOptions {
  viewport?: { width: number; height: number };
  /** Waited for (besides the palette) before the editor counts as ready; default: the workspace drawn. */
  readySelector?: string;
}

export interface DeployOptions {
  /** Press "Confirm deploy" if Node-RED asks (flows with nodes that are not configured yet). */
  confirm?: boolean;
  /** Close the notifications before and after (non-strict). */
  dismiss?: boolean;
}

/**
 * One Node-RED with the package and one Chromium on its editor, for one mocha `describe`.
 * Call startNodeRed() and openEditor() in `before`, screenshotIfFailed() in `afterEach`, stop() in `after`.
 */
export class EditorHarness {
  /** Node-RED's output, line by line. */
  readonly log: string[] = [];
  /** console.error messages and uncaught page errors seen in the browser. */
  readonly browserErrors: string[] = [];
  /** http://127.0.0.1:<port> of the Node-RED under test. */
  base = '';
  private red: ChildProcess | undefined;
  private redExit: Promise<void> | undefined;
  private logFile: fs.WriteStream | undefined;
  private context: BrowserContext | undefined;
  private currentPage: Page | undefined;
  private readonly tmpDirs: string[] = [];

  /** prefix names the artifacts: `<prefix>-node-red.log`, `<prefix>-FAILED-<test>.png`. */
  constructor(readonly prefix: string) {}

  /** The editor page (after openEditor()). */
  get page(): Page {
    if (!this.currentPage) throw new Error('the editor is not open');
    return this.currentPage;
  }

  /**
   * Builds if needed, prepares a fresh user dir with the package, starts Node-RED on a free loopback
   * port and waits (60 s at most) for "Started flows". Its output goes to `log` and `<prefix>-node-red.log`.
   */
  async startNodeRed(opts: StartNodeRedOptions): Promise<void> {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    buildIfNeeded();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `upsorch-${this.prefix}-`));
    this.tmpDirs.push(dir);
    if (opts.install === 'pack') {
      userdir.installInto(dir, ROOT);
    } else {
      // Node-RED finds the package in node_modules, like `npm link`.
      fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `${this.prefix}-userdir`, private: true, version: '0.0.0' }));
      fs.mkdirSync(path.join(dir, 'node_modules'));
      fs.symlinkSync(ROOT, path.join(dir, 'node_modules', MODULE), 'dir');
    }
    const port = await freePort();
    this.base = `http://${HOST}:${port}`;
    const red = userdir.startNodeRed({ userDir: dir, host: HOST, port });
    this.red = red;
    const logFile = fs.createWriteStream(path.join(ARTIFACTS, `${this.prefix}-node-red.log`));
    this.logFile = logFile;
    const started = new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        const out = chunk.toString();
        logFile.write(out);
        this.log.push(...out.split('\n').filter(Boolean));
        if (/Started flows/.test(out)) resolve();
      };
      red.stdout!.on('data', onData);
      red.stderr!.on('data', onData);
      red.once('exit', (code, sig) => reject(new Error(`Node-RED exited (${code ?? sig}) before "Started flows":\n${this.log.join('\n')}`)));
    });
    this.redExit = new Promise((resolve) => red.once('exit', () => resolve()));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      started,
      new Promise((_r, reject) => {
        timer = setTimeout(() => reject(new Error(`Node-RED did not log "Started flows" within 60 s:\n${this.log.join('\n')}`)), 60000);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  /**
   * Launches Chromium on a fresh temp profile, collects its console errors and page errors into
   * `browserErrors`, opens the editor and waits until the palette and the workspace are loaded.
   */
  async openEditor(opts: OpenEditorOptions = {}): Promise<Page> {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-chromium-'));
    this.tmpDirs.push(profile);
    // playwright refuses --user-data-dir in args: a persistent context on a fresh temp profile instead.
    this.context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: opts.viewport ?? { width: 1400, height: 900 },
      timeout: 30000,
    });
    const page = this.context.pages()[0] ?? (await this.context.newPage());
    this.currentPage = page;
    page.setDefaultTimeout(UI_TIMEOUT);
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const where = msg.location()?.url ?? '';
      if (/favicon/.test(where) || /favicon/.test(msg.text())) return;
      this.browserErrors.push(`console.error: ${msg.text()} (${where})`);
    });
    page.on('pageerror', (err) => this.browserErrors.push(`page error: ${err.stack || err.message}`));
    await page.goto(this.base + '/', { waitUntil: 'domcontentloaded' });
    // The editor is ready when the palette has loaded the node definitions and the workspace is drawn.
    await page.locator('.red-ui-palette-node[data-palette-type="inject"]').waitFor({ state: 'attached', timeout: 30000 });
    await page.locator(opts.readySelector ?? '#red-ui-workspace-chart svg').waitFor({ timeout: 30000 });
    return page;
  }

  /** Closes the browser, stops Node-RED by its PID (SIGTERM, 5 s, SIGKILL) and removes the temp dirs. */
  async stop(): Promise<void> {
    await this.context?.close().catch(() => undefined);
    const red = this.red;
    if (red?.pid && red.exitCode === null && red.signalCode === null) {
      process.kill(red.pid, 'SIGTERM');
      if (!(await Promise.race([this.redExit!.then(() => true), sleep(5000).then(() => false)]))) {
        process.kill(red.pid, 'SIGKILL');
        await Promise.race([this.redExit, sleep(2000)]);
      }
    }
    this.logFile?.end();
    for (const d of this.tmpDirs) fs.rmSync(d, { recursive: true, force: true });
  }

  /** For `afterEach`: on a failed test, a screenshot of what the user would have seen. */
  async screenshotIfFailed(test: Mocha.Test | undefined): Promise<void> {
    if (test?.state !== 'failed' || !this.currentPage) return;
    const name = test.title.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 60);
    await this.currentPage.screenshot({ path: path.join(ARTIFACTS, `${this.prefix}-FAILED-${name}.png`) }).catch(() => undefined);
  }

  /** Node-RED's log lines at [warn] or [error] that `about` selects. */
  loggedProblems(about: (line: string) => boolean): string[] {
    return this.log.filter((l) => /\[(warn|error)\]/.test(l) && about(l));
  }

  /** A call to the admin HTTP API of the Node-RED under test; asserts a 2xx answer, returns the parsed JSON body. */
  async api(method: 'GET' | 'POST', pathname: string, body?: unknown): Promise<any> {
    const res = await fetch(this.base + pathname, {
      method,
      headers: { Accept: 'application/json', 'Content-Type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const t = await res.text();
    assert.ok(res.status >= 200 && res.status < 300, `${method} ${pathname} → ${res.status} ${t}`);
    return t ? JSON.parse(t) : null;
  }

  /** A node in the workspace, by id. */
  nodeEl(id: string): Locator {
    return this.page.locator(`g.red-ui-flow-node-group[id="${id}"]`);
  }

  /** Id of the only node of a type (and name, if given) in the editor's workspace model (ids are not assumed). */
  async nodeIdOf(type: string, name?: string): Promise<string> {
    const ids: string[] = await this.page.evaluate(
      ([t, n]) => (globalThis as any).RED.nodes.filterNodes({ type: t }).filter((x: any) => n === undefined || x.name === n).map((x: any) => x.id),
      [type, name] as const,
    );
    assert.equal(ids.length, 1, `expected one ${type} node${name ? ` named "${name}"` : ''} in the editor, found ${ids.length}`);
    return ids[0];
  }

  /** Whether the element is shown now. */
  visible(selector: string): Promise<boolean> {
    return this.page.locator(selector).isVisible();
  }

  /** Opens a node's edit dialog as a user does: a double click on it in the workspace. */
  async openNodeDialog(id: string): Promise<void> {
    await this.nodeEl(id).locator('.red-ui-flow-node').dblclick();
  }

  /** Waits (bounded) until an input has, or no longer has, Node-RED's invalid marker (class input-error). */
  async waitForInputError(selector: string, marked: boolean): Promise<void> {
    const page = this.page;
    await page.waitForFunction(
      ([sel, want]) => (globalThis as any).document.querySelector(sel)?.classList.contains('input-error') === want,
      [selector, marked] as const,
      { timeout: 5000 },
    ).catch(async () => assert.fail(`${selector} ("${await page.locator(selector).inputValue().catch(() => '?')}") is ${marked ? 'not ' : ''}marked invalid`));
  }

  /** A node's status text in the workspace now ('' if none). */
  async statusOf(id: string): Promise<string> {
    return ((await this.nodeEl(id).locator('.red-ui-flow-node-status-label').textContent({ timeout: 1000 }).catch(() => '')) ?? '').trim();
  }

  /** Waits (bounded) for a node's status in the workspace to match; returns its text and colour class. */
  async waitForStatus(id: string, pred: (statusText: string, cls: string) => boolean, ms: number, what: string): Promise<{ text: string; cls: string }> {
    const deadline = Date.now() + ms;
    let last = { text: '', cls: '' };
    for (;;) {
      const el = this.nodeEl(id);
      last = {
        text: text(await el.locator('.red-ui-flow-node-status-label').textContent({ timeout: 1000 }).catch(() => '')),
        cls: (await el.locator('.red-ui-flow-node-status').getAttribute('class', { timeout: 1000 }).catch(() => '')) ?? '',
      };
      if (pred(last.text, last.cls)) return last;
      if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}; status is "${last.text}" (${last.cls})`);
      await sleep(200);
    }
  }

  /**
   * Closes Node-RED's notifications (a click closes one) so that they cover no buttons or screenshots.
   * With `required`, fails if they are not all gone within 5 s.
   */
  async dismissNotifications(opts: { required?: boolean } = {}): Promise<void> {
    const page = this.page;
    // A click event on each (not a pointer click: they move while the others slide away).
    for (const n of await page.locator('#red-ui-notifications .red-ui-notification').all()) {
      await n.dispatchEvent('click').catch(() => undefined);
    }
    const gone = page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#red-ui-notifications .red-ui-notification').length === 0, undefined, { timeout: 5000 });
    await (opts.required ? gone : gone.catch(() => undefined));
  }

  /** Presses Deploy and waits until Node-RED says "Successfully deployed" and the button is disabled again. */
  async deploy(opts: DeployOptions = {}): Promise<void> {
    const page = this.page;
    if (opts.dismiss) await this.dismissNotifications();
    await page.locator('#red-ui-header-button-deploy:not(.disabled)').click();
    const done = page.locator('.red-ui-notification', { hasText: 'Successfully deployed' }).last();
    if (opts.confirm) {
      // Node-RED asks before deploying nodes that are not configured yet.
      const confirm = page.locator('button', { hasText: /^\s*Confirm deploy\s*$/ });
      await Promise.race([confirm.waitFor().then(() => confirm.click()), done.waitFor()]);
    }
    await done.waitFor();
    await page.locator('#red-ui-header-button-deploy.disabled').waitFor();
    if (opts.dismiss) await this.dismissNotifications();
  }

  /**
   * Import → Examples → this package → the example whose label matches `example`, then opens the
   * flow tab it came in (label matching `tab`), as a user would.
   */
  async importExample(example: RegExp, tab: RegExp): Promise<void> {
    const page = this.page;
    await page.locator('#red-ui-header-button-sidemenu').click();
    await page.locator('#menu-item-import').click();
    const dialog = page.locator('.ui-dialog', { has: page.locator('#red-ui-clipboard-dialog-import-tabs') });
    await dialog.waitFor({ state: 'visible' });
    await dialog.locator('#red-ui-clipboard-dialog-import-tabs .red-ui-tab-label', { hasText: /^\s*Examples\s*$/ }).click();
    const examples = dialog.locator('#red-ui-clipboard-dialog-import-tab-examples');
    await examples.waitFor({ state: 'visible' });
    await examples.locator('.red-ui-treeList-label', { hasText: new RegExp(`^\\s*${MODULE}\\s*$`) }).click();
    await examples.locator('.red-ui-treeList-label', { hasText: example }).click();
    // The Import button is enabled once a flow (not a folder) is selected.
    await page.locator('#red-ui-clipboard-dialog-ok:enabled').click();
    await dialog.waitFor({ state: 'hidden' });
    // The example comes as its own flow tab: open it.
    await page.locator('#red-ui-workspace-tabs .red-ui-tab', { hasText: tab }).click();
  }

  /** Drags a node type from the palette onto the workspace (at fractions of its width and height), as a user does. */
  async dragFromPalette(type: string, at: { x: number; y: number }): Promise<void> {
    const page = this.page;
    const paletteNode = page.locator(`.red-ui-palette-node[data-palette-type="${type}"]`);
    await paletteNode.scrollIntoViewIfNeeded();
    const from = (await paletteNode.boundingBox())!;
    const chart = (await page.locator('#red-ui-workspace-chart').boundingBox())!;
    await page.mouse.move(from.x + from.width / 2, from.y + from.height / 2);
    await page.mouse.down();
    const to = { x: chart.x + chart.width * at.x, y: chart.y + chart.height * at.y };
    for (let i = 1; i <= 20; i++) await page.mouse.move(from.x + from.width / 2 + ((to.x - from.x) * i) / 20, from.y + from.height / 2 + ((to.y - from.y) * i) / 20);
    await page.mouse.up();
  }
}
