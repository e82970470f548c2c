/**
 * Browser test of the SNMP fields of the UPS device dialog and of the UPS command dialog (Debian's
 * Chromium via playwright-core): Node-RED 4.1 as a child process with the package linked into a
 * fresh user dir (dist/ must be built), a real snmpsim agent on loopback. What a user does: import
 * the example "14 SNMP UPS and power off with return", open the UPS device from the UPS in node,
 * see the SNMP fields (v3 fields only for v3), point it at the agent, press Test connection; open
 * the UPS command dialog and switch between its commands.
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
import { SnmpPeer } from './peers/snmp';
import { allAgents } from './peers/snmp-ups-agents';

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

describe('Node-RED editor: SNMP UPS device and UPS command dialogs (Chromium)', function () {
  this.timeout(60000);
  const tmpDirs: string[] = [];
  const log: string[] = [];
  const browserErrors: string[] = [];
  let red: ChildProcess | undefined;
  let redExit: Promise<void> | undefined;
  let context: BrowserContext | undefined;
  let page: Page;
  let base = '';
  let agent: SnmpPeer;

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
  const visible = (sel: string) => page.locator(sel).isVisible();

  before(async function () {
    this.timeout(120000);
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    if (Object.values<string>(pkg['node-red'].nodes).some((f) => !fs.existsSync(path.join(ROOT, f)))) {
      execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'build.js')], { stdio: 'inherit' });
    }
    agent = await SnmpPeer.start({ agents: allAgents() });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-editor-snmp-'));
    tmpDirs.push(dir);
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'editor-snmp-userdir', private: true, version: '0.0.0' }));
    fs.mkdirSync(path.join(dir, 'node_modules'));
    fs.symlinkSync(ROOT, path.join(dir, 'node_modules', MODULE), 'dir');
    const port = await freePort();
    base = `http://${HOST}:${port}`;
    red = userdir.startNodeRed({ userDir: dir, host: HOST, port });
    const logFile = fs.createWriteStream(path.join(ARTIFACTS, 'editor-snmp-node-red.log'));
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
    await agent?.stop();
    for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && page) {
      const name = this.currentTest.title.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 60);
      await page.screenshot({ path: path.join(ARTIFACTS, `editor-snmp-FAILED-${name}.png`) }).catch(() => undefined);
    }
  });

  it('the UPS command node loads, is in the palette as "UPS command", with help in English and German', async () => {
    const sets = (await (await fetch(base + '/nodes', { headers: { Accept: 'application/json' } })).json()) as any[];
    const set = sets.find((s) => s.module === MODULE && s.types.includes('upsorch-ups-command'));
    assert.ok(set, 'node set registered');
    assert.deepEqual([set.enabled, set.err], [true, undefined]);
    const node = page.locator('.red-ui-palette-node[data-palette-type="upsorch-ups-command"]');
    await node.waitFor({ state: 'attached' });
    assert.equal(text(await node.locator('.red-ui-palette-label').textContent()), 'UPS command');
    for (const [lang, re] of [['en-US', /powers it off last so\s+the hardware comes back/], ['de', /schaltet\s+sie zuletzt aus/]] as const) {
      const html = await (await fetch(base + '/nodes', { headers: { Accept: 'text/html', 'Accept-Language': lang } })).text();
      assert.match(/data-help-name="upsorch-ups-command">([\s\S]*?)<\/script>/.exec(html)?.[1] ?? '', re, `${lang} help`);
    }
  });

  it('import the example; the UPS device dialog shows SNMP fields (v3 ones for v3), Test connection finds the APC card', async () => {
    await page.locator('#red-ui-header-button-sidemenu').click();
    await page.locator('#menu-item-import').click();
    const dialog = page.locator('.ui-dialog', { has: page.locator('#red-ui-clipboard-dialog-import-tabs') });
    await dialog.waitFor({ state: 'visible' });
    await dialog.locator('#red-ui-clipboard-dialog-import-tabs .red-ui-tab-label', { hasText: /^\s*Examples\s*$/ }).click();
    const examples = dialog.locator('#red-ui-clipboard-dialog-import-tab-examples');
    await examples.locator('.red-ui-treeList-label', { hasText: new RegExp(`^\\s*${MODULE}\\s*$`) }).click();
    await examples.locator('.red-ui-treeList-label', { hasText: /SNMP UPS and power off with return/ }).click();
    await page.locator('#red-ui-clipboard-dialog-ok:enabled').click();
    await dialog.waitFor({ state: 'hidden' });
    await page.locator('#red-ui-workspace-tabs .red-ui-tab', { hasText: /SNMP UPS and power off with return/ }).click();

    const upsIn = await nodeIdOf('upsorch-ups-in');
    await nodeEl(upsIn).locator('.red-ui-flow-node').dblclick();
    await page.locator('#node-input-ups').waitFor({ state: 'attached' });
    await page.locator('#node-input-btn-ups-edit').click();
    await page.locator('#node-config-input-source').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#node-config-input-source').inputValue(), 'snmp');
    assert.ok(await visible('#node-config-input-host'), 'host shown for SNMP');
    assert.ok(await visible('#node-config-input-snmpPort'));
    assert.ok(!(await visible('#node-config-input-port')), "NUT's port hidden");
    assert.ok(!(await visible('#node-config-input-upsName')), "NUT's UPS name hidden");
    assert.ok(await visible('#node-config-input-community'), 'community for v2c');
    assert.ok(!(await visible('#node-config-input-snmpUser')), 'no v3 user for v2c');
    assert.ok(await visible('#node-config-input-snmpTrapPort'), 'trap port shown with traps on');

    await page.locator('#node-config-input-snmpVersion').selectOption('v3');
    assert.ok(await visible('#node-config-input-snmpUser'));
    assert.ok(await visible('#node-config-input-authKey'));
    assert.ok(await visible('#node-config-input-privKey'));
    assert.ok(!(await visible('#node-config-input-community')));
    await waitForInputError('#node-config-input-snmpUser', true);
    await page.locator('#node-config-input-snmpSecLevel').selectOption('authNoPriv');
    assert.ok(!(await visible('#node-config-input-privKey')), 'no privacy key for authNoPriv');
    await page.locator('#node-config-input-snmpVersion').selectOption('v2c');

    await page.locator('#node-config-input-host').fill(agent.host);
    await page.locator('#node-config-input-snmpPort').fill(String(agent.port));
    await page.locator('#node-config-input-community').fill('apc');
    await page.locator('#upsorch-device-test').click();
    const result = page.locator('#upsorch-device-test-result.upsorch-ok');
    await result.waitFor({ state: 'visible' });
    const shown = text(await result.textContent());
    assert.match(shown, /APC Smart-UPS 1500/);
    assert.match(shown, /MIB APC PowerNet-MIB \(detected\)/);
    assert.match(shown, /input 230\.4 V/);

    await page.locator('#node-config-input-source').selectOption('nut');
    assert.ok(await visible('#node-config-input-port'), "NUT's port back for NUT");
    assert.ok(!(await visible('#node-config-input-snmpPort')));
    await page.locator('#node-config-dialog-cancel').click();
    await page.locator('#node-dialog-cancel').click();
  });

  it('the UPS command dialog: delays for "power off with return", a command field for instant commands', async () => {
    const cmd = await nodeIdOf('upsorch-ups-command');
    await nodeEl(cmd).locator('.red-ui-flow-node').dblclick();
    await page.locator('#node-input-mode').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#node-input-mode').inputValue(), 'return');
    assert.ok(await visible('#node-input-delayShutdown'));
    assert.ok(!(await visible('#node-input-command')));
    await page.locator('#node-input-mode').selectOption('instcmd');
    assert.ok(await visible('#node-input-command'));
    assert.ok(!(await visible('#node-input-delayShutdown')));
    await waitForInputError('#node-input-command', true);
    await page.locator('#node-input-command').fill('beeper.mute');
    await page.locator('#node-input-command').dispatchEvent('change');
    await waitForInputError('#node-input-command', false);
    await page.locator('#node-input-mode').selectOption('fsd');
    assert.ok(!(await visible('#node-input-confirmTimeout')), 'no confirmation wait for FSD');
    await page.locator('#node-dialog-cancel').click();
  });

  it('no errors in the browser console, none about the package in Node-RED\'s log', () => {
    assert.deepEqual(browserErrors, []);
    const bad = log.filter((l) => /\[(warn|error)\]/.test(l) && /upsorch|ups-orchestrator/i.test(l) && /ups-command|snmp/i.test(l));
    assert.deepEqual(bad, []);
  });
});
