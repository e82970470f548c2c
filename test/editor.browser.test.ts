/**
 * Browser smoke test of the Node-RED editor: the packed package installed into a fresh user dir (as a
 * user would install it, via scripts/nodered-userdir.js like `npm start`), Node-RED 4.1 started as a
 * child process, and Debian's Chromium driven by playwright-core through what a user does: find the
 * node in the palette, import the example flow, deploy, press its inject buttons, open the dialogs.
 *
 * Run: npx mocha --require tsx --timeout 120000 --exit test/editor.browser.test.ts
 * Screenshots and Node-RED's log go to .test-artifacts/.
 */
import { strict as assert } from 'node:assert';
import { ChildProcess, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, BrowserContext, Page } from 'playwright-core';

interface UserDirModule {
  installInto(dir: string, pkgRoot: string): void;
  startNodeRed(opts: { userDir: string; host: string; port: number }): ChildProcess;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const userdir: UserDirModule = require('../scripts/nodered-userdir.js');

const ROOT = path.resolve(__dirname, '..');
const ARTIFACTS = path.join(ROOT, '.test-artifacts');
const CHROMIUM = '/usr/bin/chromium';
const MODULE = 'node-red-contrib-ups-orchestrator';
const HOST = '127.0.0.1';
const UI_TIMEOUT = 15000;

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

/** Text as displayed: whitespace collapsed (labels are laid out in spans and line breaks). */
const text = (s: string | null | undefined) => (s ?? '').replace(/\s+/g, ' ').trim();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Node-RED editor with the package installed (Chromium)', function () {
  this.timeout(60000);

  const tmpDirs: string[] = [];
  const log: string[] = [];
  const browserErrors: string[] = [];
  let red: ChildProcess | undefined;
  let redExit: Promise<void> | undefined;
  let context: BrowserContext | undefined;
  let page: Page;
  let base = '';

  /** The admin HTTP API of the Node-RED under test. */
  async function api(pathname: string): Promise<any> {
    const res = await fetch(base + pathname, { headers: { Accept: 'application/json' } });
    assert.equal(res.status, 200, `GET ${pathname} → ${res.status}`);
    return res.json();
  }

  /** Id of the only node of a type in the editor's workspace model (ids are not assumed). */
  async function nodeIdOf(type: string, name?: string): Promise<string> {
    const ids: string[] = await page.evaluate(
      ([t, n]) => (globalThis as any).RED.nodes.filterNodes({ type: t }).filter((x: any) => n === undefined || x.name === n).map((x: any) => x.id),
      [type, name] as const,
    );
    assert.equal(ids.length, 1, `expected one ${type} node${name ? ` named "${name}"` : ''} in the editor, found ${ids.length}`);
    return ids[0];
  }

  /** Closes Node-RED's notifications (a click closes one) so that they cover no buttons or screenshots. */
  async function dismissNotifications() {
    // A click event on each (not a pointer click: they move while the others slide away).
    for (const n of await page.locator('#red-ui-notifications .red-ui-notification').all()) {
      await n.dispatchEvent('click').catch(() => undefined);
    }
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#red-ui-notifications .red-ui-notification').length === 0, undefined, { timeout: 5000 });
  }

  /** Node-RED logged no warning or error about this package (loading it, or from its nodes at run time). */
  function assertNoLoggedProblems() {
    const bad = log.filter((l) => /\[(warn|error)\]/.test(l) && /upsorch|ups-orchestrator/i.test(l));
    assert.deepEqual(bad, [], `Node-RED logged:\n${bad.join('\n')}`);
  }

  /** Waits (bounded) until an input has, or no longer has, Node-RED's invalid marker (class input-error). */
  async function waitForInputError(selector: string, marked: boolean) {
    await page.waitForFunction(
      ([sel, want]) => (globalThis as any).document.querySelector(sel)?.classList.contains('input-error') === want,
      [selector, marked] as const,
      { timeout: 5000 },
    ).catch(async () => assert.fail(`${selector} ("${await page.locator(selector).inputValue()}") is ${marked ? 'not ' : ''}marked invalid`));
  }

  const nodeEl = (id: string) => page.locator(`g.red-ui-flow-node-group[id="${id}"]`);

  /** Waits (bounded) for a node's status in the workspace to match; returns its text and colour class. */
  async function waitForStatus(id: string, pred: (statusText: string, cls: string) => boolean, ms: number, what: string) {
    const deadline = Date.now() + ms;
    let last = { text: '', cls: '' };
    for (;;) {
      const el = nodeEl(id);
      last = {
        text: text(await el.locator('.red-ui-flow-node-status-label').textContent({ timeout: 1000 }).catch(() => '')),
        cls: (await el.locator('.red-ui-flow-node-status').getAttribute('class', { timeout: 1000 }).catch(() => '')) ?? '',
      };
      if (pred(last.text, last.cls)) return last;
      if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}; status is "${last.text}" (${last.cls})`);
      await sleep(200);
    }
  }

  before(async function () {
    this.timeout(120000);
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    // `npm test` builds first; build here only if dist/ lacks a node file that package.json names.
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    const nodeFiles = Object.values<string>(pkg['node-red'].nodes).map((f) => path.join(ROOT, f));
    if (nodeFiles.some((f) => !fs.existsSync(f))) {
      execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'build.js')], { stdio: 'inherit' });
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-editor-userdir-'));
    tmpDirs.push(dir);
    userdir.installInto(dir, ROOT);

    const port = await freePort();
    base = `http://${HOST}:${port}`;
    red = userdir.startNodeRed({ userDir: dir, host: HOST, port });
    const logFile = fs.createWriteStream(path.join(ARTIFACTS, 'editor-node-red.log'));
    const started = new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        const out = chunk.toString();
        logFile.write(out);
        log.push(...out.split('\n').filter(Boolean));
        if (/Started flows/.test(out)) resolve();
      };
      red!.stdout!.on('data', onData);
      red!.stderr!.on('data', onData);
      red!.once('exit', (code, sig) => reject(new Error(`Node-RED exited (${code ?? sig}) before "Started flows":\n${log.join('\n')}`)));
    });
    redExit = new Promise((resolve) => red!.once('exit', () => resolve()));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      started,
      new Promise((_r, reject) => {
        timer = setTimeout(() => reject(new Error(`Node-RED did not log "Started flows" within 60 s:\n${log.join('\n')}`)), 60000);
      }),
    ]).finally(() => clearTimeout(timer));

    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-chromium-'));
    tmpDirs.push(profile);
    // playwright refuses --user-data-dir in args: a persistent context on a fresh temp profile instead.
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1400, height: 900 },
      timeout: 30000,
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(UI_TIMEOUT);
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const where = msg.location()?.url ?? '';
      if (/favicon/.test(where) || /favicon/.test(msg.text())) return;
      browserErrors.push(`console.error: ${msg.text()} (${where})`);
    });
    page.on('pageerror', (err) => browserErrors.push(`page error: ${err.stack || err.message}`));
    await page.goto(base + '/', { waitUntil: 'domcontentloaded' });
    // The editor is ready when the palette has loaded the node definitions and the workspace is drawn.
    await page.locator('.red-ui-palette-node[data-palette-type="inject"]').waitFor({ state: 'attached', timeout: 30000 });
    await page.locator('#red-ui-workspace-chart svg').waitFor({ timeout: 30000 });
  });

  after(async function () {
    this.timeout(30000);
    await context?.close().catch(() => undefined);
    if (red?.pid && red.exitCode === null && red.signalCode === null) {
      process.kill(red.pid, 'SIGTERM');
      const killed = await Promise.race([redExit!.then(() => true), sleep(5000).then(() => false)]);
      if (!killed) {
        process.kill(red.pid, 'SIGKILL');
        await Promise.race([redExit, sleep(2000)]);
      }
    }
    for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
  });

  afterEach(async function () {
    // On failure, what the user would have seen.
    if (this.currentTest?.state === 'failed' && page) {
      const name = this.currentTest.title.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 60);
      await page.screenshot({ path: path.join(ARTIFACTS, `editor-FAILED-${name}.png`) }).catch(() => undefined);
    }
  });

  it('Node-RED loads the package: no warnings or errors about it, both node types enabled', async () => {
    assertNoLoggedProblems();
    const sets: any[] = (await api('/nodes')).filter((s: any) => s.module === MODULE);
    assert.ok(sets.length > 0, `GET /nodes does not list ${MODULE}`);
    const types: string[] = sets.flatMap((s) => s.types);
    for (const t of ['upsorch-device', 'upsorch-ups-in', 'upsorch-plan', 'upsorch-phase']) assert.ok(types.includes(t), `GET /nodes: ${MODULE} has no ${t} (types: ${types.join(', ')})`);
    // Every node set of the module (these two and any added later) loaded and enabled.
    for (const s of sets) {
      assert.equal(s.enabled, true, `${s.id} is disabled`);
      assert.equal(s.err, undefined, `${s.id}: ${s.err}`);
    }
  });

  it('the palette shows the "UPS in" node in a "UPS orchestrator" category', async () => {
    const category = page.locator('.red-ui-palette-category', {
      has: page.locator('.red-ui-palette-header', { hasText: /^\s*UPS orchestrator\s*$/ }),
    });
    await category.waitFor();
    const node = category.locator('.red-ui-palette-node[data-palette-type="upsorch-ups-in"]');
    await node.waitFor({ state: 'visible' });
    assert.equal(text(await node.locator('.red-ui-palette-label').textContent()), 'UPS in');
    // The config node is not a palette node.
    assert.equal(await page.locator('.red-ui-palette-node[data-palette-type="upsorch-device"]').count(), 0);
  });

  it('Import → Examples → "01 Simulated UPS", deploy: the UPS in node shows a green "OL … 100%" status', async () => {
    await page.locator('#red-ui-header-button-sidemenu').click();
    await page.locator('#menu-item-import').click();
    const dialog = page.locator('.ui-dialog', { has: page.locator('#red-ui-clipboard-dialog-import-tabs') });
    await dialog.waitFor({ state: 'visible' });
    await dialog.locator('#red-ui-clipboard-dialog-import-tabs .red-ui-tab-label', { hasText: /^\s*Examples\s*$/ }).click();
    const examples = dialog.locator('#red-ui-clipboard-dialog-import-tab-examples');
    await examples.waitFor({ state: 'visible' });
    await examples.locator('.red-ui-treeList-label', { hasText: new RegExp(`^\\s*${MODULE}\\s*$`) }).click();
    await examples.locator('.red-ui-treeList-label', { hasText: /^\s*01 Simulated UPS\s*$/ }).click();
    // The Import button is enabled once a flow (not a folder) is selected.
    await page.locator('#red-ui-clipboard-dialog-ok:enabled').click();
    await dialog.waitFor({ state: 'hidden' });

    // The example comes as its own flow tab: open it, as a user would.
    await page.locator('#red-ui-workspace-tabs .red-ui-tab', { hasText: /^\s*Simulated UPS\s*$/ }).click();
    await page.locator('#red-ui-workspace-tabs .red-ui-tab.active', { hasText: /^\s*Simulated UPS\s*$/ }).waitFor();
    const upsIn = await nodeIdOf('upsorch-ups-in');
    await nodeEl(upsIn).waitFor();
    assert.equal(text(await nodeEl(upsIn).locator('.red-ui-flow-node-label').textContent()), 'UPS Demo UPS');

    await page.locator('#red-ui-header-button-deploy:not(.disabled)').click();
    // Deployed: Node-RED says so, the button goes back to disabled and the runtime has the flow.
    await page.locator('.red-ui-notification', { hasText: 'Successfully deployed' }).waitFor();
    await page.locator('#red-ui-header-shade').waitFor({ state: 'hidden' }); // the editor is usable again
    await page.locator('.red-ui-deploy-button-spinner').waitFor({ state: 'hidden' });
    await page.locator('#red-ui-header-button-deploy.disabled').waitFor();
    const flows: any[] = await api('/flows');
    assert.ok(flows.some((n) => n.type === 'upsorch-ups-in' && n.id === upsIn), 'GET /flows has no upsorch-ups-in node after deploy');
    assert.ok(flows.some((n) => n.type === 'upsorch-device' && n.name === 'Demo UPS'), 'GET /flows has no "Demo UPS" device after deploy');

    const st = await waitForStatus(upsIn, (t, cls) => /status-dot-green/.test(cls) && /^OL .*100%/.test(t), 10000, 'a green "OL … 100%" status');
    assert.match(st.text, /^OL .*100%/);
    await sleep(400); // let the notifications finish sliding in (jQuery, 300 ms)
    await page.screenshot({ path: path.join(ARTIFACTS, 'editor-after-deploy.png') });
    await dismissNotifications();
  });

  it('the "power lost" inject button puts the UPS on battery: status "OB …"', async () => {
    const upsIn = await nodeIdOf('upsorch-ups-in');
    const inject = await nodeIdOf('inject', 'power lost');
    await nodeEl(inject).locator('.red-ui-flow-node-button').click();
    const st = await waitForStatus(upsIn, (t) => /^OB\b/.test(t), 10000, 'an "OB …" status');
    assert.match(st.cls, /status-dot-(yellow|red)/);
    await page.locator('.red-ui-notification', { hasText: 'Successfully injected: power lost' }).waitFor();
    await dismissNotifications();
  });

  it('the UPS in edit dialog: UPS select, interval validation, and the UPS device dialog switches to NUT fields', async () => {
    const upsIn = await nodeIdOf('upsorch-ups-in');
    await nodeEl(upsIn).locator('.red-ui-flow-node').dblclick();
    const tray = page.locator('.red-ui-tray', { has: page.locator('#node-input-interval') });
    await tray.waitFor({ state: 'visible' });

    const select = page.locator('select#node-input-ups');
    await select.waitFor({ state: 'visible' });
    assert.equal(text(await select.locator('option:checked').textContent()), 'Demo UPS');

    const interval = page.locator('#node-input-interval');
    assert.equal(await interval.inputValue(), '0');
    await interval.fill('');
    await interval.pressSequentially('abc');
    await waitForInputError('#node-input-interval', true);
    await page.screenshot({ path: path.join(ARTIFACTS, 'editor-edit-dialog.png') });
    await interval.fill('');
    await interval.pressSequentially('0');
    await waitForInputError('#node-input-interval', false);

    // The UPS device (config node) dialog, from the pencil button next to the select.
    await page.locator('#node-input-btn-ups-edit').click();
    const source = page.locator('#node-config-input-source');
    await source.waitFor({ state: 'visible' });
    assert.equal(await source.inputValue(), 'sim');
    assert.equal(await page.locator('#node-config-input-name').inputValue(), 'Demo UPS');
    const nutRows = page.locator('.upsorch-nut-row');
    const simRows = page.locator('.upsorch-sim-row');
    assert.equal(await page.locator('#node-config-input-simCapacityWh').isVisible(), true, 'battery model rows hidden for a simulated UPS');
    assert.equal(await page.locator('#node-config-input-host').isVisible(), false, 'NUT host row shown for a simulated UPS');

    await source.selectOption('nut');
    for (const id of ['#node-config-input-host', '#node-config-input-port', '#node-config-input-upsName']) {
      await page.locator(id).waitFor({ state: 'visible', timeout: 5000 });
    }
    assert.ok((await nutRows.count()) > 0);
    for (let i = 0; i < (await simRows.count()); i++) {
      assert.equal(await simRows.nth(i).isVisible(), false, `battery model row ${i} still shown for a NUT server`);
    }
    // The NUT fields are validated once they apply: a port that is not a number is marked.
    const port = page.locator('#node-config-input-port');
    await port.fill('');
    await port.pressSequentially('abc');
    await waitForInputError('#node-config-input-port', true);
    await page.screenshot({ path: path.join(ARTIFACTS, 'editor-device-dialog-nut.png') });
    await page.locator('#node-config-dialog-cancel').click();
    await source.waitFor({ state: 'detached' });

    // Back in the UPS in dialog: still the same UPS, then cancel.
    assert.equal(text(await select.locator('option:checked').textContent()), 'Demo UPS');
    await page.locator('#node-dialog-cancel').click();
    await tray.waitFor({ state: 'detached' });
    // Cancel changed nothing: nothing to deploy.
    assert.ok(await page.locator('#red-ui-header-button-deploy.disabled').isVisible(), 'cancelling the dialogs left changes to deploy');
  });

  it('the palette shows the "phase" node in the "UPS orchestrator" category; the plan is a config node', async () => {
    const category = page.locator('.red-ui-palette-category', {
      has: page.locator('.red-ui-palette-header', { hasText: /^\s*UPS orchestrator\s*$/ }),
    });
    const node = category.locator('.red-ui-palette-node[data-palette-type="upsorch-phase"]');
    await node.waitFor({ state: 'visible' });
    assert.equal(text(await node.locator('.red-ui-palette-label').textContent()), 'phase');
    assert.equal(await node.locator('.red-ui-palette-icon-container .red-ui-palette-icon').count(), 1, 'the phase has an icon');
    assert.equal(await page.locator('.red-ui-palette-node[data-palette-type="upsorch-plan"]').count(), 0);
    // Help for both, in English and German, as the editor loads it.
    for (const [lang, phaseHelp, planHelp] of [['en-US', /a \*\*chain of phases linked by their \*done\* outputs\*\*/, /allow REAL shutdown and startup runs/], ['de', /Kette von Phasen,\s+verbunden über ihre \*fertig\*-Ausgänge/, /ECHTES Herunter- und Hochfahren/]] as const) {
      const res = await fetch(base + '/nodes', { headers: { Accept: 'text/html', 'Accept-Language': lang } });
      const html = await res.text();
      for (const [type, re] of [['upsorch-phase', phaseHelp], ['upsorch-plan', planHelp]] as const) {
        const m = new RegExp(`data-help-name="${type}">([\\s\\S]*?)</script>`).exec(html);
        assert.ok(m, `no ${lang} help for ${type}`);
        assert.match(m[1], re, `${lang} help for ${type}`);
      }
    }
  });

  it('the phase dialog: gate fields only with the gate on, invalid values marked, a plan created from the dialog, deploy', async () => {
    // Drag the phase from the palette onto the workspace, as a user does.
    const paletteNode = page.locator('.red-ui-palette-node[data-palette-type="upsorch-phase"]');
    await paletteNode.scrollIntoViewIfNeeded();
    const from = (await paletteNode.boundingBox())!;
    const chart = (await page.locator('#red-ui-workspace-chart').boundingBox())!;
    await page.mouse.move(from.x + from.width / 2, from.y + from.height / 2);
    await page.mouse.down();
    const to = { x: chart.x + chart.width * 0.6, y: chart.y + chart.height * 0.75 };
    for (let i = 1; i <= 20; i++) await page.mouse.move(from.x + from.width / 2 + ((to.x - from.x) * i) / 20, from.y + from.height / 2 + ((to.y - from.y) * i) / 20);
    await page.mouse.up();
    const phase = await nodeIdOf('upsorch-phase');
    await nodeEl(phase).waitFor();
    assert.equal(text(await nodeEl(phase).locator('.red-ui-flow-node-label').textContent()), 'phase');

    await nodeEl(phase).locator('.red-ui-flow-node').dblclick();
    const tray = page.locator('.red-ui-tray', { has: page.locator('#node-input-gateRuntime') });
    await tray.waitFor({ state: 'visible' });
    assert.equal(await page.locator('#node-input-mode').inputValue(), 'parallel');
    assert.equal(await page.locator('#node-input-direction').inputValue(), 'both');
    assert.equal(await page.locator('#node-input-wait').isChecked(), true);
    assert.equal(await page.locator('#node-input-timeout').getAttribute('placeholder'), 'auto');
    // No plan yet: the required plan select offers to add one and is marked.
    assert.equal(text(await page.locator('select#node-input-plan option:checked').textContent()), 'Add new plan...');
    await waitForInputError('#node-input-plan', true);

    // Gate off: its fields are hidden and not validated (no UPS device exists).
    const gate = page.locator('#node-input-gate');
    assert.equal(await gate.isChecked(), false);
    assert.equal(await page.locator('#node-input-gateRuntime').isVisible(), false, 'gate runtime shown with the gate off');
    assert.equal(await page.locator('#node-input-gateUps').isVisible(), false, 'gate UPS shown with the gate off');
    await waitForInputError('#node-input-gateUps', false);
    // Gate on: shown, and the missing UPS device is marked; an invalid runtime too.
    await gate.check();
    await page.locator('#node-input-gateRuntime').waitFor({ state: 'visible', timeout: 5000 });
    await page.locator('#node-input-gateUps').waitFor({ state: 'visible', timeout: 5000 });
    await waitForInputError('#node-input-gateUps', true);
    const runtime = page.locator('#node-input-gateRuntime');
    assert.equal(await runtime.inputValue(), '10');
    await runtime.fill('');
    await runtime.pressSequentially('2000');
    await waitForInputError('#node-input-gateRuntime', true);
    await page.screenshot({ path: path.join(ARTIFACTS, 'editor-phase-dialog-gate.png') });
    // Gate off again: hidden, and neither field counts any more.
    await gate.uncheck();
    await page.locator('#node-input-gateRuntime').waitFor({ state: 'hidden', timeout: 5000 });
    await waitForInputError('#node-input-gateRuntime', false);
    await waitForInputError('#node-input-gateUps', false);

    // Other fields: out-of-range values are marked, an empty timeout is allowed (derived).
    const stepDelay = page.locator('#node-input-stepDelay');
    await stepDelay.fill('');
    await stepDelay.pressSequentially('5000');
    await waitForInputError('#node-input-stepDelay', true);
    await stepDelay.fill('');
    await stepDelay.pressSequentially('2');
    await waitForInputError('#node-input-stepDelay', false);
    const timeout = page.locator('#node-input-timeout');
    await timeout.pressSequentially('0');
    await waitForInputError('#node-input-timeout', true);
    await timeout.fill('');
    await timeout.press('Backspace');
    await waitForInputError('#node-input-timeout', false);
    // The direction hint follows the choice.
    await page.locator('#node-input-direction').selectOption('startup');
    assert.match(text(await page.locator('.upsorch-phase-direction-hint[data-direction="startup"]').textContent()), /separate startup chain/);
    assert.equal(await page.locator('.upsorch-phase-direction-hint[data-direction="both"]').isVisible(), false);
    await page.locator('#node-input-direction').selectOption('both');

    // A new plan from the + button next to the plan select.
    await page.locator('#node-input-btn-plan-add').click();
    const planName = page.locator('#node-config-input-name');
    await planName.waitFor({ state: 'visible' });
    assert.equal(await page.locator('#node-config-input-armed').isChecked(), true);
    assert.equal(await page.locator('#node-config-input-allowRemote').isChecked(), false);
    assert.equal(await page.locator('#upsorch-plan-remote-warning').isVisible(), false);
    assert.match(text(await page.locator('label[for="node-config-input-allowRemote"]').textContent()), /REAL shutdown and startup runs from Home Assistant \/ MQTT/);
    await page.locator('#node-config-input-allowRemote').check();
    await page.locator('#upsorch-plan-remote-warning').waitFor({ state: 'visible', timeout: 5000 });
    await page.locator('#node-config-input-allowRemote').uncheck();
    assert.match((await page.locator('#node-config-input-stateDir').getAttribute('placeholder')) ?? '', /<userDir>\/ups-orchestrator/);
    const stateDir = page.locator('#node-config-input-stateDir');
    await stateDir.pressSequentially('relative/dir');
    await waitForInputError('#node-config-input-stateDir', true);
    await stateDir.fill('');
    await stateDir.press('Backspace');
    await waitForInputError('#node-config-input-stateDir', false);
    await planName.fill('homelab');
    await page.screenshot({ path: path.join(ARTIFACTS, 'editor-plan-dialog.png') });
    await page.locator('#node-config-dialog-ok').click();
    await planName.waitFor({ state: 'detached' });

    // Back in the phase dialog: the new plan is selected and the select is valid.
    assert.equal(text(await page.locator('select#node-input-plan option:checked').textContent()), 'homelab');
    await waitForInputError('#node-input-plan', false);
    await page.locator('#node-input-name').fill('VMs');
    await page.locator('#node-dialog-ok').click();
    await tray.waitFor({ state: 'detached' });

    const saved = await page.evaluate((id) => {
      const RED = (globalThis as any).RED;
      const n = RED.nodes.node(id);
      const p = RED.nodes.node(n.plan);
      return { valid: n.valid, plan: p && { type: p.type, name: p.name, armed: p.armed, allowRemote: p.allowRemote }, stepDelay: n.stepDelay, timeout: n.timeout, gate: n.gate, gateRuntime: String(n.gateRuntime) };
    }, phase);
    // The hidden, invalid gate runtime went back to its default (the runtime parses it even with the gate off).
    assert.deepEqual(saved, { valid: true, plan: { type: 'upsorch-plan', name: 'homelab', armed: true, allowRemote: false }, stepDelay: '2', timeout: '', gate: false, gateRuntime: '10' });
    assert.equal(text(await nodeEl(phase).locator('.red-ui-flow-node-label').textContent()), 'VMs');

    // Its help in the sidebar: the input and output properties render as lists.
    await nodeEl(phase).locator('.red-ui-flow-node').click();
    await page.evaluate(() => (globalThis as any).RED.sidebar.show('help'));
    const help = page.locator('.red-ui-help', { hasText: 'chain of phases linked by their done outputs' }).last();
    await help.waitFor({ state: 'visible' });
    assert.ok((await help.locator('dl.message-properties dt').count()) >= 8, 'help lists the message properties');
    await page.screenshot({ path: path.join(ARTIFACTS, 'editor-phase-help.png') });
    await page.evaluate(() => (globalThis as any).RED.sidebar.show('info'));

    // Deploy: the runtime accepts it (no red status, nothing logged; checked in the last test).
    await page.locator('#red-ui-header-button-deploy:not(.disabled)').click();
    await page.locator('.red-ui-notification', { hasText: 'Successfully deployed' }).waitFor();
    await page.locator('#red-ui-header-button-deploy.disabled').waitFor();
    const flows: any[] = await api('/flows');
    assert.ok(flows.some((n) => n.type === 'upsorch-phase' && n.id === phase && n.name === 'VMs'), 'GET /flows has no phase after deploy');
    assert.ok(flows.some((n) => n.type === 'upsorch-plan' && n.name === 'homelab'), 'GET /flows has no plan after deploy');
    await sleep(500);
    assert.equal(await nodeEl(phase).locator('.red-ui-flow-node-status-label').count() === 0 ? '' : text(await nodeEl(phase).locator('.red-ui-flow-node-status-label').textContent()), '');
    await dismissNotifications();
  });

  it('no errors during the whole run: none in the browser console, none about the package in Node-RED\'s log', () => {
    assert.deepEqual(browserErrors, []);
    assertNoLoggedProblems();
  });
});
