/**
 * The vSphere and Proxmox dialogs in the real Node-RED editor (headless Chromium), with the package
 * installed as a user would (scripts/nodered-userdir.js), against vcsim and the Proxmox fake: the
 * connection dialogs test the connection with what was typed, the action dialogs list what the
 * deployed connection sees, and what is ticked there is what the deployed node acts on.
 *
 * Run: npx mocha --require tsx --timeout 120000 --exit test/hypervisor.browser.test.ts
 */
import { strict as assert } from 'node:assert';
import { ChildProcess, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, BrowserContext, Page } from 'playwright-core';
import { VcsimPeer } from './peers/vcsim';
import { PveFake } from './fakes/pve-server';
import { freePort, sleep, waitUntil } from './peers/proc';

interface UserDirModule {
  installInto(dir: string, pkgRoot: string): void;
  startNodeRed(opts: { userDir: string; host: string; port: number }): ChildProcess;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const userdir: UserDirModule = require('../scripts/nodered-userdir.js');

const ROOT = path.resolve(__dirname, '..');
const ARTIFACTS = path.join(ROOT, '.test-artifacts');
const CHROMIUM = '/usr/bin/chromium';
const HOST = '127.0.0.1';
const TOKEN = { id: 'root@pam!upsorch', secret: '0b1c2d3e-aaaa-bbbb-cccc-ddddeeeeffff', privileges: ['*'] };

describe('vSphere and Proxmox dialogs in the Node-RED editor (Chromium)', function () {
  this.timeout(60000);
  const tmpDirs: string[] = [];
  const log: string[] = [];
  const browserErrors: string[] = [];
  let red: ChildProcess | undefined;
  let redExit: Promise<void> | undefined;
  let context: BrowserContext | undefined;
  let page: Page;
  let base = '';
  let vc: VcsimPeer;
  let pve: PveFake;
  let vcFingerprint = '';

  async function api(method: 'GET' | 'POST', pathname: string, body?: unknown): Promise<any> {
    const res = await fetch(base + pathname, {
      method,
      headers: { Accept: 'application/json', 'Content-Type': 'application/json', 'Node-RED-Deployment-Type': 'full' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    assert.ok(res.status >= 200 && res.status < 300, `${method} ${pathname} → ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  async function dismissNotifications() {
    for (const n of await page.locator('#red-ui-notifications .red-ui-notification').all()) await n.dispatchEvent('click').catch(() => undefined);
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#red-ui-notifications .red-ui-notification').length === 0, undefined, { timeout: 5000 }).catch(() => undefined);
  }

  async function deploy() {
    await dismissNotifications();
    await page.locator('#red-ui-header-button-deploy:not(.disabled)').click();
    const confirm = page.locator('button', { hasText: /^\s*Confirm deploy\s*$/ });
    const done = page.locator('.red-ui-notification', { hasText: 'Successfully deployed' });
    await Promise.race([confirm.waitFor().then(() => confirm.click()), done.waitFor()]);
    await done.waitFor();
    await page.locator('#red-ui-header-button-deploy.disabled').waitFor();
    await dismissNotifications();
  }

  async function statusOf(id: string): Promise<string> {
    return ((await page.locator(`g.red-ui-flow-node-group[id="${id}"] .red-ui-flow-node-status-label`).textContent({ timeout: 1000 }).catch(() => '')) ?? '').trim();
  }

  before(async function () {
    this.timeout(480000);
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    [vc, pve] = await Promise.all([
      VcsimPeer.start({ args: ['-guest-shutdown-delay', '500ms', '-rename', 'DC0_H0_VM0=web-1,DC0_H0_VM1=db-1'] }),
      PveFake.start({
        nodes: ['pve'],
        guests: [
          { vmid: 100, type: 'qemu', node: 'pve', name: 'web', status: 'running' },
          { vmid: 101, type: 'lxc', node: 'pve', name: 'dns', status: 'running' },
        ],
        tokens: [TOKEN],
      }),
    ]);
    vcFingerprint = (await vc.fingerprint()).match(/../g)!.join(':');
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    if (Object.values<string>(pkg['node-red'].nodes).some((f) => !fs.existsSync(path.join(ROOT, f)))) {
      execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'build.js')], { stdio: 'inherit' });
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-hv-editor-'));
    tmpDirs.push(dir);
    userdir.installInto(dir, ROOT);
    const port = await freePort();
    base = `http://${HOST}:${port}`;
    red = userdir.startNodeRed({ userDir: dir, host: HOST, port });
    const logFile = fs.createWriteStream(path.join(ARTIFACTS, 'hypervisor-editor-node-red.log'));
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
    await Promise.race([started, new Promise((_r, reject) => (timer = setTimeout(() => reject(new Error('Node-RED did not start within 60 s')), 60000)))]).finally(() => clearTimeout(timer));

    // What a user starts from: connections without credentials, actions without targets.
    await api('POST', '/flows', [
      { id: 'tab1', type: 'tab', label: 'Hypervisors' },
      { id: 'vc1', type: 'upsorch-vsphere', name: 'lab vCenter', url: vc.url, tlsVerify: true, tlsFingerprint: '', timeout: 10, pageSize: 500 },
      { id: 'px1', type: 'upsorch-proxmox', name: 'lab pve', host: '127.0.0.1', port: pve.port, tokenId: TOKEN.id, tlsVerify: true, tlsFingerprint: pve.fingerprint, timeout: 10 },
      { id: 'i1', type: 'inject', z: 'tab1', name: 'shutdown VMs', props: [{ p: 'topic', vt: 'str' }], repeat: '', crontab: '', once: false, onceDelay: 0.1, topic: 'shutdown', x: 140, y: 80, wires: [['a1']] },
      { id: 'a1', type: 'upsorch-vsphere-action', z: 'tab1', name: 'VMs', connection: 'vc1', kind: 'vm', shutdownOp: 'shutdown', startupOp: 'start', names: [], patterns: [], tags: [], exclude: [], allRunning: false, timeout: 10, force: true, waitForTools: false, toolsTimeout: 300, maintenanceFirst: true, concurrency: 4, connectTimeout: 20, poll: 0.5, x: 340, y: 80, wires: [[]] },
      { id: 'i2', type: 'inject', z: 'tab1', name: 'shutdown guests', props: [{ p: 'topic', vt: 'str' }], repeat: '', crontab: '', once: false, onceDelay: 0.1, topic: 'shutdown', x: 140, y: 160, wires: [['a2']] },
      { id: 'a2', type: 'upsorch-proxmox-action', z: 'tab1', name: 'guests', connection: 'px1', kind: 'guest', shutdownOp: 'shutdown', startupOp: 'start', names: [], patterns: [], tags: [], exclude: [], allRunning: false, timeout: 10, force: true, haStopFirst: false, startAllForce: false, concurrency: 4, connectTimeout: 20, poll: 0.5, x: 340, y: 160, wires: [[]] },
    ]);

    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-chromium-'));
    tmpDirs.push(profile);
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1400, height: 900 },
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
    await page.locator('g.red-ui-flow-node-group[id="a1"]').waitFor({ timeout: 30000 });
  });

  after(async function () {
    this.timeout(30000);
    await context?.close().catch(() => undefined);
    if (red?.pid && red.exitCode === null && red.signalCode === null) {
      process.kill(red.pid, 'SIGTERM');
      if (!(await Promise.race([redExit!.then(() => true), sleep(5000).then(() => false)]))) {
        process.kill(red.pid, 'SIGKILL');
        await Promise.race([redExit, sleep(2000)]);
      }
    }
    for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
    await Promise.all([vc?.stop(), pve?.stop()]);
  });

  beforeEach(async () => {
    if (page) await dismissNotifications();
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && page) {
      const name = this.currentTest.title.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 60);
      await page.screenshot({ path: path.join(ARTIFACTS, `hypervisor-editor-FAILED-${name}.png`) }).catch(() => undefined);
    }
  });

  it('the palette offers vSphere and Proxmox; deployed actions without targets say so in red', async () => {
    for (const t of ['upsorch-vsphere-action', 'upsorch-proxmox-action']) await page.locator(`.red-ui-palette-node[data-palette-type="${t}"]`).waitFor({ state: 'attached' });
    await waitUntil('the red status of the vSphere node', 10000, async () => /choose the VMs/.test(await statusOf('a1')));
    await waitUntil('the red status of the Proxmox node', 10000, async () => /choose the guests/.test(await statusOf('a2')));
  });

  it('vSphere connection dialog: an untrusted certificate names its fingerprint; pinned, the test logs in', async () => {
    await page.evaluate(() => (globalThis as any).RED.editor.editConfig('', 'upsorch-vsphere', 'vc1'));
    await page.locator('#node-config-input-username').waitFor({ state: 'visible' });
    await page.locator('#node-config-input-username').fill('admin');
    await page.locator('#node-config-input-password').fill('secret');
    const result = page.locator('#upsorch-vsphere-test-result');
    await page.locator('#upsorch-vsphere-test').click();
    await result.locator('xpath=.', { hasText: /^Failed: the certificate of 127\.0\.0\.1:\d+ is not trusted/ }).waitFor();
    assert.ok(((await result.textContent()) ?? '').includes(vcFingerprint), 'the message names the fingerprint');
    await page.locator('#node-config-input-tlsFingerprint').fill(vcFingerprint);
    await page.locator('#upsorch-vsphere-test').click();
    await result.locator('xpath=.', { hasText: /^OK: logged in to .* \(vCenter, API [\d.]+\) as admin: 4 VMs, 4 hosts/ }).waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, 'vsphere-connection-dialog.png') });
    await page.locator('#node-config-dialog-ok').click();
    await result.waitFor({ state: 'detached' });
    await deploy();
    assert.ok(!(await page.content()).includes('value="secret"'), 'the password never comes back to the browser');
  });

  it('vSphere action dialog: operations follow the kind of target; List targets ticks VMs that are then shut down', async () => {
    await page.evaluate(() => (globalThis as any).RED.editor.edit((globalThis as any).RED.nodes.node('a1')));
    const ops = page.locator('#node-input-shutdownOp option');
    await ops.first().waitFor({ state: 'attached' });
    assert.deepEqual(await ops.evaluateAll((o) => o.map((x: any) => x.value)), ['shutdown', 'stop', 'suspend', 'none']);
    await page.locator('#node-input-kind').selectOption('host');
    assert.deepEqual(await ops.evaluateAll((o) => o.map((x: any) => x.value)), ['maintenance', 'host-shutdown', 'none']);
    assert.equal(await page.locator('#node-input-force').isChecked(), false, 'forcing a host off is not the default');
    await page.locator('#node-input-kind').selectOption('vm');
    assert.equal(await page.locator('#node-input-force').isChecked(), true);

    await page.locator('#upsorch-vsphere-action-list').click();
    const list = page.locator('#upsorch-vsphere-action-targets');
    const web = list.locator('label', { hasText: 'web-1' });
    await web.waitFor();
    assert.match((await web.textContent()) ?? '', /web-1 \(on, Tools, DC0_H0\) host:DC0_H0 datacenter:DC0/);
    await web.locator('input').check();
    await list.locator('label', { hasText: 'db-1' }).locator('input').check();
    assert.equal(await page.locator('#upsorch-vsphere-action-names').inputValue(), 'web-1\ndb-1');
    await page.screenshot({ path: path.join(ARTIFACTS, 'vsphere-action-dialog.png') });
    await page.locator('#node-dialog-ok').click();
    await list.waitFor({ state: 'detached' });
    await deploy();
    const flows: any[] = await api('GET', '/flows');
    assert.deepEqual(flows.find((n) => n.id === 'a1').names, ['web-1', 'db-1']);

    await page.locator('g.red-ui-flow-node-group[id="i1"] .red-ui-flow-node-button').click();
    await waitUntil('the vSphere node to report', 30000, async () => /^2 done/.test(await statusOf('a1')));
  });

  it('Proxmox dialogs: Test connection with the typed secret, List targets, ticked guests shut down', async () => {
    await page.evaluate(() => (globalThis as any).RED.editor.editConfig('', 'upsorch-proxmox', 'px1'));
    await page.locator('#node-config-input-secret').waitFor({ state: 'visible' });
    await page.locator('#node-config-input-secret').fill(TOKEN.secret);
    await page.locator('#upsorch-proxmox-test').click();
    await page.locator('#upsorch-proxmox-test-result', { hasText: /^OK: connected to Proxmox VE 8\.4\.1 as root@pam!upsorch: 1 node, 2 guests$/ }).waitFor();
    await page.locator('#node-config-dialog-ok').click();
    await page.locator('#upsorch-proxmox-test-result').waitFor({ state: 'detached' });
    await deploy();

    await page.evaluate(() => (globalThis as any).RED.editor.edit((globalThis as any).RED.nodes.node('a2')));
    await page.locator('#node-input-kind').selectOption('node');
    const ops = page.locator('#node-input-shutdownOp option');
    assert.deepEqual(await ops.evaluateAll((o) => o.map((x: any) => x.textContent)), ['stop all guests (stopall)', 'suspend all VMs (suspendall)', 'shut the node down', 'nothing']);
    await page.locator('#node-input-kind').selectOption('guest');
    await page.locator('#upsorch-proxmox-action-list').click();
    const list = page.locator('#upsorch-proxmox-action-targets');
    await list.locator('label', { hasText: 'dns' }).waitFor();
    assert.match((await list.locator('label', { hasText: 'web' }).textContent()) ?? '', /web \(on, qemu, vmid 100, pve\)/);
    await list.locator('label', { hasText: 'dns' }).locator('input').check();
    await page.locator('#node-dialog-ok').click();
    await list.waitFor({ state: 'detached' });
    await deploy();
    await page.locator('g.red-ui-flow-node-group[id="i2"] .red-ui-flow-node-button').click();
    await waitUntil('the Proxmox node to report', 30000, async () => /^1 done/.test(await statusOf('a2')));
    assert.equal(pve.guest(101).status, 'stopped');
    assert.equal(pve.guest(100).status, 'running');
  });

  it('nothing went wrong in the browser or in Node-RED\'s log', () => {
    assert.deepEqual(browserErrors, []);
    // The first deploy had actions without targets: those errors are expected.
    const bad = log.filter((l) => /\[(warn|error)\]/.test(l) && /upsorch-(vsphere|proxmox)/.test(l) && !/choose the (VMs|guests)/.test(l));
    assert.deepEqual(bad, [], bad.join('\n'));
  });
});
