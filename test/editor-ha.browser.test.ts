/**
 * Browser test of the Home Assistant / MQTT dialogs in the Node-RED editor (Debian's Chromium via
 * playwright-core): Node-RED 4.1 as a child process with the package linked into a fresh user dir
 * (dist/ must be built), a real Mosquitto broker and the fake Home Assistant on loopback. What a user
 * does: import the example "UPS and plan on the HA dashboard", point its broker at the local one,
 * test the connection, deploy and see the status; add a Home Assistant server from the publish
 * node's dialog; switch a UPS device to Home Assistant entities.
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
import { MosquittoPeer } from './peers/mosquitto';
import { FakeHaServer } from './fakes/ha-server';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const userdir: { startNodeRed(opts: { userDir: string; host: string; port: number }): ChildProcess } = require('../scripts/nodered-userdir.js');

const ROOT = path.resolve(__dirname, '..');
const ARTIFACTS = path.join(ROOT, '.test-artifacts');
const CHROMIUM = '/usr/bin/chromium';
const MODULE = 'node-red-contrib-ups-orchestrator';
const HOST = '127.0.0.1';
const TYPES = ['upsorch-mqtt-broker', 'upsorch-ha-server', 'upsorch-publish-state'];

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

describe('Node-RED editor: Home Assistant and MQTT dialogs (Chromium)', function () {
  this.timeout(60000);
  const tmpDirs: string[] = [];
  const log: string[] = [];
  const browserErrors: string[] = [];
  let red: ChildProcess | undefined;
  let redExit: Promise<void> | undefined;
  let context: BrowserContext | undefined;
  let page: Page;
  let base = '';
  let mqtt: MosquittoPeer;
  let ha: FakeHaServer;

  const nodeEl = (id: string) => page.locator(`g.red-ui-flow-node-group[id="${id}"]`);
  async function nodeIdOf(type: string): Promise<string> {
    const ids: string[] = await page.evaluate((t) => (globalThis as any).RED.nodes.filterNodes({ type: t }).map((x: any) => x.id), type);
    assert.equal(ids.length, 1, `expected one ${type} node, found ${ids.length}`);
    return ids[0];
  }
  async function waitForInputError(selector: string, marked: boolean) {
    await page.waitForFunction(
      ([sel, want]) => (globalThis as any).document.querySelector(sel)?.classList.contains('input-error') === want,
      [selector, marked] as const,
      { timeout: 5000 },
    ).catch(async () => assert.fail(`${selector} ("${await page.locator(selector).inputValue().catch(() => '?')}") is ${marked ? 'not ' : ''}marked invalid`));
  }
  async function waitForStatus(id: string, pred: (t: string, cls: string) => boolean, ms: number, what: string) {
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
  async function deploy() {
    await page.locator('#red-ui-header-button-deploy:not(.disabled)').click();
    await page.locator('.red-ui-notification', { hasText: 'Successfully deployed' }).last().waitFor();
    await page.locator('#red-ui-header-button-deploy.disabled').waitFor();
  }

  before(async function () {
    this.timeout(120000);
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    if (Object.values<string>(pkg['node-red'].nodes).some((f) => !fs.existsSync(path.join(ROOT, f)))) {
      execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'build.js')], { stdio: 'inherit' });
    }
    mqtt = await MosquittoPeer.start();
    ha = await FakeHaServer.start({ token: 'editor-test-token', states: [{ entity_id: 'sensor.rack_status_data', state: 'OL' }] });
    // The package linked into a fresh user dir (Node-RED finds it in node_modules, like `npm link`).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-editor-ha-'));
    tmpDirs.push(dir);
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'editor-ha-userdir', private: true, version: '0.0.0' }));
    fs.mkdirSync(path.join(dir, 'node_modules'));
    fs.symlinkSync(ROOT, path.join(dir, 'node_modules', MODULE), 'dir');
    const port = await freePort();
    base = `http://${HOST}:${port}`;
    red = userdir.startNodeRed({ userDir: dir, host: HOST, port });
    const logFile = fs.createWriteStream(path.join(ARTIFACTS, 'editor-ha-node-red.log'));
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
    await ha?.stop();
    await mqtt?.dispose();
    for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && page) {
      const name = this.currentTest.title.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 60);
      await page.screenshot({ path: path.join(ARTIFACTS, `editor-ha-FAILED-${name}.png`) }).catch(() => undefined);
    }
  });

  it('Node-RED loads the three node types; "publish state" is in the palette with its icon; help in English and German', async () => {
    const sets = (await (await fetch(base + '/nodes', { headers: { Accept: 'application/json' } })).json()) as any[];
    const mine = sets.filter((s) => s.module === MODULE && TYPES.some((t) => s.types.includes(t)));
    assert.deepEqual(mine.map((s) => s.types[0]).sort(), [...TYPES].sort());
    for (const s of mine) assert.deepEqual([s.enabled, s.err], [true, undefined], s.id);
    const node = page.locator('.red-ui-palette-category', { has: page.locator('.red-ui-palette-header', { hasText: /^\s*UPS orchestrator\s*$/ }) })
      .locator('.red-ui-palette-node[data-palette-type="upsorch-publish-state"]');
    await node.waitFor({ state: 'visible' });
    assert.equal(text(await node.locator('.red-ui-palette-label').textContent()), 'publish state');
    assert.equal(await node.locator('.red-ui-palette-icon').count(), 1);
    for (const t of ['upsorch-mqtt-broker', 'upsorch-ha-server']) assert.equal(await page.locator(`.red-ui-palette-node[data-palette-type="${t}"]`).count(), 0, `${t} is a config node`);
    for (const [lang, re] of [['en-US', /Shows UPSes and plans in Home Assistant/], ['de', /Zeigt USVs und Pläne in Home Assistant/]] as const) {
      const html = await (await fetch(base + '/nodes', { headers: { Accept: 'text/html', 'Accept-Language': lang } })).text();
      assert.match(/data-help-name="upsorch-publish-state">([\s\S]*?)<\/script>/.exec(html)?.[1] ?? '', re, `${lang} help`);
      for (const t of ['upsorch-mqtt-broker', 'upsorch-ha-server']) assert.match(html, new RegExp(`data-help-name="${t}"`), `${lang} help for ${t}`);
    }
  });

  it('import the example, point its broker at the local Mosquitto, Test connection, deploy: the publish node is green', async () => {
    await page.locator('#red-ui-header-button-sidemenu').click();
    await page.locator('#menu-item-import').click();
    const dialog = page.locator('.ui-dialog', { has: page.locator('#red-ui-clipboard-dialog-import-tabs') });
    await dialog.waitFor({ state: 'visible' });
    await dialog.locator('#red-ui-clipboard-dialog-import-tabs .red-ui-tab-label', { hasText: /^\s*Examples\s*$/ }).click();
    const examples = dialog.locator('#red-ui-clipboard-dialog-import-tab-examples');
    await examples.locator('.red-ui-treeList-label', { hasText: new RegExp(`^\\s*${MODULE}\\s*$`) }).click();
    await examples.locator('.red-ui-treeList-label', { hasText: /UPS and plan on the HA dashboard/ }).click();
    await page.locator('#red-ui-clipboard-dialog-ok:enabled').click();
    await dialog.waitFor({ state: 'hidden' });
    await page.locator('#red-ui-workspace-tabs .red-ui-tab', { hasText: /UPS and plan on the HA dashboard/ }).click();
    const pub = await nodeIdOf('upsorch-publish-state');
    await nodeEl(pub).waitFor();

    await nodeEl(pub).locator('.red-ui-flow-node').dblclick();
    const tray = page.locator('.red-ui-tray', { has: page.locator('#node-input-plan1') });
    await tray.waitFor({ state: 'visible' });
    await waitForInputError('#node-input-broker', false);
    await page.locator('#node-input-btn-broker-edit').click();
    const host = page.locator('#node-config-input-host');
    await host.waitFor({ state: 'visible' });
    assert.equal(await host.inputValue(), 'core-mosquitto');
    assert.equal(await page.locator('#node-config-input-ca').isVisible(), false, 'TLS rows hidden without TLS');
    await page.locator('#node-config-input-tls').check();
    await page.locator('#node-config-input-ca').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#node-config-input-port').inputValue(), '8883', 'TLS switches the default port');
    await page.locator('#node-config-input-tls').uncheck();
    const port = page.locator('#node-config-input-port');
    await port.fill('');
    await port.pressSequentially('abc');
    await waitForInputError('#node-config-input-port', true);
    const baseTopic = page.locator('#node-config-input-baseTopic');
    // Node-RED validates on key presses: type as a user does
    await baseTopic.fill('');
    await baseTopic.pressSequentially('ups/#');
    await waitForInputError('#node-config-input-baseTopic', true);
    await baseTopic.press('Backspace');
    await baseTopic.press('Backspace');
    await waitForInputError('#node-config-input-baseTopic', false);
    await baseTopic.fill('');
    await baseTopic.pressSequentially('ups-orchestrator');
    await host.fill('');
    await host.pressSequentially('127.0.0.1');
    await port.fill('');
    await port.pressSequentially(String(mqtt.port));
    await waitForInputError('#node-config-input-port', false);
    await page.locator('#upsorch-mqtt-broker-test').click();
    await page.locator('#upsorch-mqtt-broker-test-result.upsorch-ok').waitFor({ timeout: 15000 });
    assert.equal(text(await page.locator('#upsorch-mqtt-broker-test-result').textContent()), `OK: connected to mqtt://127.0.0.1:${mqtt.port}`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'editor-ha-broker-dialog.png') });
    await page.locator('#node-config-dialog-ok').click();
    await host.waitFor({ state: 'detached' });
    await page.locator('#node-dialog-ok').click();
    await tray.waitFor({ state: 'detached' });

    await deploy();
    await waitForStatus(pub, (t, cls) => /status-dot-green/.test(cls) && t === '1 UPS · 1 plan · MQTT connected', 15000, 'a green publish status');
    await page.screenshot({ path: path.join(ARTIFACTS, 'editor-ha-example-deployed.png') });
  });

  it('the publish dialog: without a broker and a Home Assistant server it is invalid; a Home Assistant server added from it, tested and deployed', async () => {
    const pub = await nodeIdOf('upsorch-publish-state');
    await nodeEl(pub).locator('.red-ui-flow-node').dblclick();
    const tray = page.locator('.red-ui-tray', { has: page.locator('#node-input-plan1') });
    await tray.waitFor({ state: 'visible' });
    const broker = page.locator('select#node-input-broker');
    const brokerValue = await broker.inputValue();
    await broker.selectOption('_ADD_');
    await waitForInputError('#node-input-broker', true);
    await broker.selectOption(brokerValue);
    await waitForInputError('#node-input-broker', false);

    await page.locator('#node-input-btn-haServer-add').click();
    const url = page.locator('#node-config-input-url');
    await url.waitFor({ state: 'visible' });
    await url.fill('');
    await url.pressSequentially('homeassistant');
    await waitForInputError('#node-config-input-url', true);
    await url.fill('');
    await url.pressSequentially(ha.url);
    await waitForInputError('#node-config-input-url', false);
    assert.equal(await page.locator('#node-config-input-tlsFingerprint').isVisible(), false, 'TLS rows only for https');
    await page.locator('#node-config-input-token').fill('wrong-token');
    await page.locator('#upsorch-ha-server-test').click();
    await page.locator('#upsorch-ha-server-test-result.upsorch-failed').waitFor({ timeout: 15000 });
    assert.match(text(await page.locator('#upsorch-ha-server-test-result').textContent()), /^Failed: authentication failed: Invalid access token or password/);
    await page.locator('#node-config-input-token').fill('editor-test-token');
    await page.locator('#upsorch-ha-server-test').click();
    await page.locator('#upsorch-ha-server-test-result.upsorch-ok').waitFor({ timeout: 15000 });
    assert.match(text(await page.locator('#upsorch-ha-server-test-result').textContent()), /^OK: connected to Home Assistant 2025\.1\.0 at ws:\/\/127\.0\.0\.1:\d+; 1 entities$/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'editor-ha-server-dialog.png') });
    await page.locator('#node-config-dialog-ok').click();
    await url.waitFor({ state: 'detached' });
    await page.locator('#upsorch-publish-events-row').waitFor({ state: 'visible' });
    await page.locator('#node-dialog-ok').click();
    await tray.waitFor({ state: 'detached' });
    await deploy();
    await waitForStatus(pub, (t, cls) => /status-dot-green/.test(cls) && /MQTT \+ HA connected$/.test(t), 15000, 'MQTT + HA connected');
    assert.equal(ha.connections, 1);
  });

  it('the UPS device dialog: "Home Assistant entities" shows the HA fields and the entity ids an empty field reads', async () => {
    const upsIn = await nodeIdOf('upsorch-ups-in');
    await nodeEl(upsIn).locator('.red-ui-flow-node').dblclick();
    const tray = page.locator('.red-ui-tray', { has: page.locator('#node-input-interval') });
    await tray.waitFor({ state: 'visible' });
    await page.locator('#node-input-btn-ups-edit').click();
    const source = page.locator('#node-config-input-source');
    await source.waitFor({ state: 'visible' });
    assert.equal(await page.locator('#node-config-input-haEntityPrefix').isVisible(), false);
    await source.selectOption('ha');
    await page.locator('#node-config-input-haEntityPrefix').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#node-config-input-simCapacityWh').isVisible(), false, 'battery model hidden');
    assert.equal(await page.locator('#node-config-input-host').isVisible(), false, 'NUT host hidden');
    await waitForInputError('#node-config-input-haEntityPrefix', true);
    await page.locator('#node-config-input-haEntityPrefix').pressSequentially('sensor.rack');
    await waitForInputError('#node-config-input-haEntityPrefix', false);
    assert.equal(await page.locator('#node-config-input-haChargeEntity').getAttribute('placeholder'), 'sensor.rack_battery_charge');
    assert.equal(await page.locator('#node-config-input-haStatusEntity').getAttribute('placeholder'), 'sensor.rack_status_data');
    await page.locator('#node-config-input-haLoadEntity').pressSequentially('not an entity');
    await waitForInputError('#node-config-input-haLoadEntity', true);
    await page.screenshot({ path: path.join(ARTIFACTS, 'editor-ha-device-dialog.png') });
    await page.locator('#node-config-dialog-cancel').click();
    await source.waitFor({ state: 'detached' });
    await page.locator('#node-dialog-cancel').click();
    await tray.waitFor({ state: 'detached' });
  });

  it('no errors: none in the browser console, none about the package in Node-RED\'s log', () => {
    assert.deepEqual(browserErrors, []);
    const bad = log.filter((l) => /\[(warn|error)\]/.test(l) && /upsorch|ups-orchestrator/i.test(l));
    assert.deepEqual(bad, [], bad.join('\n'));
  });
});
