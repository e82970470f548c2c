/**
 * The vSphere and Proxmox dialogs in the real Node-RED editor (headless Chromium), with the package
 * installed as a user would (scripts/nodered-userdir.js), against vcsim and the Proxmox fake: the
 * connection dialogs test the connection with what was typed, the action dialogs list what the
 * deployed connection sees, and what is ticked there is what the deployed node acts on.
 * The harness (Node-RED, Chromium, editor steps) is test/util/editor.ts.
 *
 * Run: npx mocha --require tsx --timeout 120000 --exit test/hypervisor.browser.test.ts
 */
import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { Page } from 'playwright-core';
import { VcsimPeer } from './peers/vcsim';
import { PveFake } from './fakes/pve-server';
import { waitUntil } from './peers/proc';
import { ARTIFACTS, EditorHarness } from './util/editor';

const TOKEN = { id: 'root@pam!upsorch', secret: '0b1c2d3e-aaaa-bbbb-cccc-ddddeeeeffff', privileges: ['*'] };

describe('vSphere and Proxmox dialogs in the Node-RED editor (Chromium)', function () {
  this.timeout(60000);
  const ed = new EditorHarness('hypervisor-editor');
  let page: Page;
  let vc: VcsimPeer;
  let pve: PveFake;
  let vcFingerprint = '';

  before(async function () {
    this.timeout(480000);
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
    await ed.startNodeRed({ install: 'pack' });

    // What a user starts from: connections without credentials, actions without targets.
    await ed.api('POST', '/flows', [
      { id: 'tab1', type: 'tab', label: 'Hypervisors' },
      { id: 'vc1', type: 'upsorch-vsphere', name: 'lab vCenter', url: vc.url, tlsVerify: true, tlsFingerprint: '', timeout: 10, pageSize: 500 },
      { id: 'px1', type: 'upsorch-proxmox', name: 'lab pve', host: '127.0.0.1', port: pve.port, tokenId: TOKEN.id, tlsVerify: true, tlsFingerprint: pve.fingerprint, timeout: 10 },
      { id: 'i1', type: 'inject', z: 'tab1', name: 'shutdown VMs', props: [{ p: 'topic', vt: 'str' }], repeat: '', crontab: '', once: false, onceDelay: 0.1, topic: 'shutdown', x: 140, y: 80, wires: [['a1']] },
      { id: 'a1', type: 'upsorch-vsphere-action', z: 'tab1', name: 'VMs', connection: 'vc1', kind: 'vm', shutdownOp: 'shutdown', startupOp: 'start', names: [], patterns: [], tags: [], exclude: [], allRunning: false, timeout: 10, force: true, waitForTools: false, toolsTimeout: 300, maintenanceFirst: true, concurrency: 4, connectTimeout: 20, poll: 0.5, x: 340, y: 80, wires: [[]] },
      { id: 'i2', type: 'inject', z: 'tab1', name: 'shutdown guests', props: [{ p: 'topic', vt: 'str' }], repeat: '', crontab: '', once: false, onceDelay: 0.1, topic: 'shutdown', x: 140, y: 160, wires: [['a2']] },
      { id: 'a2', type: 'upsorch-proxmox-action', z: 'tab1', name: 'guests', connection: 'px1', kind: 'guest', shutdownOp: 'shutdown', startupOp: 'start', names: [], patterns: [], tags: [], exclude: [], allRunning: false, timeout: 10, force: true, haStopFirst: false, startAllForce: false, concurrency: 4, connectTimeout: 20, poll: 0.5, x: 340, y: 160, wires: [[]] },
    ]);

    page = await ed.openEditor({ readySelector: 'g.red-ui-flow-node-group[id="a1"]' });
  });

  after(async function () {
    this.timeout(30000);
    await ed.stop();
    await Promise.all([vc?.stop(), pve?.stop()]);
  });

  beforeEach(async () => {
    if (page) await ed.dismissNotifications();
  });

  afterEach(async function () {
    await ed.screenshotIfFailed(this.currentTest);
  });

  it('the palette offers vSphere and Proxmox; deployed actions without targets say so in red', async () => {
    for (const t of ['upsorch-vsphere-action', 'upsorch-proxmox-action']) await page.locator(`.red-ui-palette-node[data-palette-type="${t}"]`).waitFor({ state: 'attached' });
    await waitUntil('the red status of the vSphere node', 10000, async () => /choose the VMs/.test(await ed.statusOf('a1')));
    await waitUntil('the red status of the Proxmox node', 10000, async () => /choose the guests/.test(await ed.statusOf('a2')));
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
    await ed.deploy({ confirm: true, dismiss: true });
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
    await ed.deploy({ confirm: true, dismiss: true });
    const flows: any[] = await ed.api('GET', '/flows');
    assert.deepEqual(flows.find((n) => n.id === 'a1').names, ['web-1', 'db-1']);

    await page.locator('g.red-ui-flow-node-group[id="i1"] .red-ui-flow-node-button').click();
    await waitUntil('the vSphere node to report', 30000, async () => /^2 done/.test(await ed.statusOf('a1')));
  });

  it('Proxmox dialogs: Test connection with the typed secret, List targets, ticked guests shut down', async () => {
    await page.evaluate(() => (globalThis as any).RED.editor.editConfig('', 'upsorch-proxmox', 'px1'));
    await page.locator('#node-config-input-secret').waitFor({ state: 'visible' });
    await page.locator('#node-config-input-secret').fill(TOKEN.secret);
    await page.locator('#upsorch-proxmox-test').click();
    await page.locator('#upsorch-proxmox-test-result', { hasText: /^OK: connected to Proxmox VE 8\.4\.1 as root@pam!upsorch: 1 node, 2 guests$/ }).waitFor();
    await page.locator('#node-config-dialog-ok').click();
    await page.locator('#upsorch-proxmox-test-result').waitFor({ state: 'detached' });
    await ed.deploy({ confirm: true, dismiss: true });

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
    await ed.deploy({ confirm: true, dismiss: true });
    await page.locator('g.red-ui-flow-node-group[id="i2"] .red-ui-flow-node-button').click();
    await waitUntil('the Proxmox node to report', 30000, async () => /^1 done/.test(await ed.statusOf('a2')));
    assert.equal(pve.guest(101).status, 'stopped');
    assert.equal(pve.guest(100).status, 'running');
  });

  it('nothing went wrong in the browser or in Node-RED\'s log', () => {
    assert.deepEqual(ed.browserErrors, []);
    // The first deploy had actions without targets: those errors are expected.
    const bad = ed.loggedProblems((l) => /upsorch-(vsphere|proxmox)/.test(l) && !/choose the (VMs|guests)/.test(l));
    assert.deepEqual(bad, [], bad.join('\n'));
  });
});
