/**
 * Browser test of the notify dialogs (Debian's Chromium via playwright-core): Node-RED 4.1 as a child
 * process with the package linked into a fresh user dir (dist/ must be built), a recording HTTP
 * server on loopback as the ntfy server. What a user does: find notify in the palette, read its
 * help (English, German), import the example "07 Notifications", open the notify dialog and its
 * channel, switch the channel's kind (fields follow, invalid ones are marked), press Send test.
 *
 * Screenshots and Node-RED's log go to .test-artifacts/.
 */
import { strict as assert } from 'node:assert';
import { ChildProcess, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, BrowserContext, Page } from 'playwright-core';
import { HttpRecorder } from './peers/notify-services';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const userdir: { startNodeRed(opts: { userDir: string; host: string; port: number }): ChildProcess } = require('../scripts/nodered-userdir.js');

const ROOT = path.resolve(__dirname, '..');
const ARTIFACTS = path.join(ROOT, '.test-artifacts');
const CHROMIUM = '/usr/bin/chromium';
const MODULE = 'node-red-contrib-ups-orchestrator';
const HOST = '127.0.0.1';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
const text = (s: string | null | undefined) => (s ?? '').replace(/\s+/g, ' ').trim();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Node-RED editor: notify and notification channel dialogs (Chromium)', function () {
  this.timeout(60000);
  const tmpDirs: string[] = [];
  const log: string[] = [];
  const browserErrors: string[] = [];
  let red: ChildProcess | undefined;
  let redExit: Promise<void> | undefined;
  let context: BrowserContext | undefined;
  let page: Page;
  let base = '';
  let http: HttpRecorder;

  const nodeEl = (id: string) => page.locator(`g.red-ui-flow-node-group[id="${id}"]`);
  async function nodeIdOf(type: string, name: string): Promise<string> {
    const ids: string[] = await page.evaluate(([t, n]) => (globalThis as any).RED.nodes.filterNodes({ type: t }).filter((x: any) => x.name === n).map((x: any) => x.id), [type, name] as const);
    assert.equal(ids.length, 1, `expected one ${type} node named ${name}, found ${ids.length}`);
    return ids[0];
  }
  async function waitForInputError(selector: string, marked: boolean) {
    await page.waitForFunction(
      ([sel, want]) => (globalThis as any).document.querySelector(sel)?.classList.contains('input-error') === want,
      [selector, marked] as const,
      { timeout: 5000 },
    ).catch(async () => assert.fail(`${selector} ("${await page.locator(selector).inputValue().catch(() => '?')}") is ${marked ? 'not ' : ''}marked invalid`));
  }
  const visible = (sel: string) => page.locator(sel).isVisible();

  before(async function () {
    this.timeout(120000);
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    if (Object.values<string>(pkg['node-red'].nodes).some((f) => !fs.existsSync(path.join(ROOT, f)))) {
      execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'build.js')], { stdio: 'inherit' });
    }
    http = await HttpRecorder.start();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-editor-notify-'));
    tmpDirs.push(dir);
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'editor-notify-userdir', private: true, version: '0.0.0' }));
    fs.mkdirSync(path.join(dir, 'node_modules'));
    fs.symlinkSync(ROOT, path.join(dir, 'node_modules', MODULE), 'dir');
    const port = await freePort();
    base = `http://${HOST}:${port}`;
    red = userdir.startNodeRed({ userDir: dir, host: HOST, port });
    const logFile = fs.createWriteStream(path.join(ARTIFACTS, 'editor-notify-node-red.log'));
    const started = new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        const out = chunk.toString();
        logFile.write(out);
        log.push(...out.split('\n').filter(Boolean));
        if (/Started flows/.test(out)) resolve();
      };
      red!.stdout!.on('data', onData);
      red!.stderr!.on('data', onData);
      red!.once('exit', (code, sig) => reject(new Error(`Node-RED exited (${code ?? sig}):\n${log.join('\n')}`)));
    });
    redExit = new Promise((resolve) => red!.once('exit', () => resolve()));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([started, new Promise((_r, reject) => (timer = setTimeout(() => reject(new Error(`Node-RED did not start:\n${log.join('\n')}`)), 60000)))]).finally(() => clearTimeout(timer));
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-chromium-'));
    tmpDirs.push(profile);
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1400, height: 1000 },
      timeout: 30000,
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(15000);
    page.on('console', (msg) => {
      if (msg.type() === 'error' && !/favicon/.test(msg.text() + (msg.location()?.url ?? ''))) browserErrors.push(`console.error: ${msg.text()}`);
    });
    page.on('pageerror', (err) => browserErrors.push(`page error: ${err.stack || err.message}`));
    await page.goto(base + '/', { waitUntil: 'domcontentloaded' });
    await page.locator('.red-ui-palette-node[data-palette-type="inject"]').waitFor({ state: 'attached', timeout: 30000 });
    await page.locator('#red-ui-workspace-chart svg').waitFor({ timeout: 30000 });
  });

  after(async function () {
    this.timeout(30000);
    await context?.close().catch(() => undefined);
    if (red?.pid && red.exitCode === null && red.signalCode === null) {
      process.kill(red.pid, 'SIGTERM');
      if (!(await Promise.race([redExit!.then(() => true), sleep(5000).then(() => false)]))) process.kill(red.pid, 'SIGKILL');
    }
    await http?.stop();
    for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && page) {
      const name = this.currentTest.title.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 60);
      await page.screenshot({ path: path.join(ARTIFACTS, `editor-notify-FAILED-${name}.png`) }).catch(() => undefined);
    }
  });

  it('notify is in the palette, with help in English and German', async () => {
    const sets = (await (await fetch(base + '/nodes', { headers: { Accept: 'application/json' } })).json()) as any[];
    for (const type of ['upsorch-notify', 'upsorch-notify-channel']) {
      const set = sets.find((s) => s.module === MODULE && s.types.includes(type));
      assert.ok(set, `${type} registered`);
      assert.deepEqual([set.enabled, set.err], [true, undefined]);
    }
    const node = page.locator('.red-ui-palette-node[data-palette-type="upsorch-notify"]');
    await node.waitFor({ state: 'attached' });
    assert.equal(text(await node.locator('.red-ui-palette-label').textContent()), 'notify');
    for (const [lang, type, re] of [
      ['en-US', 'upsorch-notify', /Every\s+message is written to disk before it is sent/],
      ['de', 'upsorch-notify', /Jede Meldung\s+wird vor dem Senden auf die Platte geschrieben/],
      ['en-US', 'upsorch-notify-channel', /pin its SHA-256\s+fingerprint/],
      ['de', 'upsorch-notify-channel', /SHA-256-Fingerabdruck\s+pinnen/],
    ] as const) {
      const html = await (await fetch(base + '/nodes', { headers: { Accept: 'text/html', 'Accept-Language': lang } })).text();
      assert.match(new RegExp(`data-help-name="${type}">([\\s\\S]*?)</script>`).exec(html)?.[1] ?? '', re, `${lang} help of ${type}`);
    }
  });

  it('import the example; the notify dialog shows its channel, events and template; the channel dialog follows its kind; Send test works', async () => {
    await page.locator('#red-ui-header-button-sidemenu').click();
    await page.locator('#menu-item-import').click();
    const dialog = page.locator('.ui-dialog', { has: page.locator('#red-ui-clipboard-dialog-import-tabs') });
    await dialog.waitFor({ state: 'visible' });
    await dialog.locator('#red-ui-clipboard-dialog-import-tabs .red-ui-tab-label', { hasText: /^\s*Examples\s*$/ }).click();
    const examples = dialog.locator('#red-ui-clipboard-dialog-import-tab-examples');
    await examples.locator('.red-ui-treeList-label', { hasText: new RegExp(`^\\s*${MODULE}\\s*$`) }).click();
    await examples.locator('.red-ui-treeList-label', { hasText: /07 Notifications/ }).click();
    await page.locator('#red-ui-clipboard-dialog-ok:enabled').click();
    await dialog.waitFor({ state: 'hidden' });
    await page.locator('#red-ui-workspace-tabs .red-ui-tab', { hasText: /Notifications/ }).click();

    const phone = await nodeIdOf('upsorch-notify', 'phone (ntfy)');
    await nodeEl(phone).locator('.red-ui-flow-node').dblclick();
    await page.locator('#node-input-channel').waitFor({ state: 'attached' });
    assert.equal(await page.locator('#upsorch-notify-events input:checked').count(), 18, 'every UPS event ticked');
    const rows = page.locator('#upsorch-notify-templates .upsorch-tpl-title');
    assert.equal(await rows.count(), 1);
    assert.equal(await rows.first().inputValue(), '⚡ {{ups}} on battery');
    await waitForInputError('#node-input-flapQuiet', false);
    await page.locator('#node-input-flapQuiet').fill('1');
    await page.locator('#node-input-flapQuiet').dispatchEvent('change');
    await waitForInputError('#node-input-flapQuiet', true);
    await page.locator('#node-input-flapQuiet').fill('120');
    await page.locator('#node-input-flapQuiet').dispatchEvent('change');

    // The channel: ntfy fields shown, email fields hidden; another kind shows its own.
    await page.locator('#node-input-btn-channel-edit').click();
    await page.locator('#node-config-input-kind').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#node-config-input-kind').inputValue(), 'ntfy');
    assert.ok(await visible('#node-config-input-ntfyTopic'));
    assert.ok(await visible('#node-config-input-token'));
    assert.equal(text(await page.locator('#upsorch-token-label').textContent()), 'Access token');
    assert.ok(!(await visible('#node-config-input-smtpHost')));
    await page.locator('#node-config-input-kind').selectOption('telegram');
    assert.ok(await visible('#node-config-input-telegramChat'));
    assert.equal(text(await page.locator('#upsorch-token-label').textContent()), 'Bot token');
    assert.ok(!(await visible('#node-config-input-ntfyTopic')));
    await waitForInputError('#node-config-input-telegramChat', true);
    await page.locator('#node-config-input-kind').selectOption('email');
    assert.ok(await visible('#node-config-input-smtpHost'));
    await page.locator('#node-config-input-smtpSecurity').selectOption('tls');
    assert.equal(await page.locator('#node-config-input-smtpPort').inputValue(), '465', 'port follows the security setting');
    await page.locator('#node-config-input-kind').selectOption('ntfy');

    // Send test to a loopback ntfy server, with a token typed in the dialog.
    await page.locator('#node-config-input-ntfyServer').fill(http.url);
    await page.locator('#node-config-input-token').fill('tk_dialog');
    await page.locator('#upsorch-notify-channel-test').click();
    const result = page.locator('#upsorch-notify-channel-test-result.upsorch-ok');
    await result.waitFor({ state: 'visible' });
    assert.match(text(await result.textContent()), /^✔ sent to ntfy http:\/\/127\.0\.0\.1:\d+ topic ups-orchestrator-demo-change-me$/);
    const [req] = await http.waitForCount(1);
    assert.equal(req.headers.authorization, 'Bearer tk_dialog');
    assert.equal(req.json.title, 'Test notification from UPS orchestrator');
    // A bad topic is marked and Send test says why.
    await page.locator('#node-config-input-ntfyTopic').fill('has spaces');
    await page.locator('#node-config-input-ntfyTopic').dispatchEvent('change');
    await waitForInputError('#node-config-input-ntfyTopic', true);
    await page.locator('#upsorch-notify-channel-test').click();
    const failed = page.locator('#upsorch-notify-channel-test-result.upsorch-failed');
    await failed.waitFor({ state: 'visible' });
    assert.match(text(await failed.textContent()), /ntfyTopic: the ntfy topic is 1–64 letters/);
    await page.locator('#node-config-dialog-cancel').click();
    await page.locator('#node-dialog-cancel').click();
  });

  it('no errors in the browser console, none about notify in Node-RED\'s log', () => {
    assert.deepEqual(browserErrors, []);
    const bad = log.filter((l) => /\[(warn|error)\]/.test(l) && /notify/i.test(l));
    assert.deepEqual(bad, []);
  });
});
