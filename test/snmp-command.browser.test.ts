/**
 * Browser test of the SNMP fields of the UPS device dialog and of the UPS command dialog (Debian's
 * Chromium via playwright-core): Node-RED 4.1 as a child process with the package linked into a
 * fresh user dir (dist/ must be built), a real snmpsim agent on loopback. What a user does: import
 * the example "14 SNMP UPS and power off with return", open the UPS device from the UPS in node,
 * see the SNMP fields (v3 fields only for v3), point it at the agent, press Test connection; open
 * the UPS command dialog and switch between its commands.
 * The harness (Node-RED, Chromium, editor steps) is test/util/editor.ts.
 *
 * Screenshots and Node-RED's log go to .test-artifacts/.
 */
import { strict as assert } from 'node:assert';
import { Page } from 'playwright-core';
import { SnmpPeer } from './peers/snmp';
import { allAgents } from './peers/snmp-ups-agents';
import { EditorHarness, MODULE, text } from './util/editor';

describe('Node-RED editor: SNMP UPS device and UPS command dialogs (Chromium)', function () {
  this.timeout(60000);
  const ed = new EditorHarness('editor-snmp');
  let page: Page;
  let agent: SnmpPeer;

  before(async function () {
    this.timeout(120000);
    agent = await SnmpPeer.start({ agents: allAgents() });
    await ed.startNodeRed({ install: 'link' });
    page = await ed.openEditor({ viewport: { width: 1400, height: 1000 } });
  });

  after(async function () {
    this.timeout(30000);
    await ed.stop();
    await agent?.stop();
  });

  afterEach(async function () {
    await ed.screenshotIfFailed(this.currentTest);
  });

  it('the UPS command node loads, is in the palette as "UPS command", with help in English and German', async () => {
    const sets = (await (await fetch(ed.base + '/nodes', { headers: { Accept: 'application/json' } })).json()) as any[];
    const set = sets.find((s) => s.module === MODULE && s.types.includes('upsorch-ups-command'));
    assert.ok(set, 'node set registered');
    assert.deepEqual([set.enabled, set.err], [true, undefined]);
    const node = page.locator('.red-ui-palette-node[data-palette-type="upsorch-ups-command"]');
    await node.waitFor({ state: 'attached' });
    assert.equal(text(await node.locator('.red-ui-palette-label').textContent()), 'UPS command');
    for (const [lang, re] of [['en-US', /powers it off last so\s+the hardware comes back/], ['de', /schaltet\s+sie zuletzt aus/]] as const) {
      const html = await (await fetch(ed.base + '/nodes', { headers: { Accept: 'text/html', 'Accept-Language': lang } })).text();
      assert.match(/data-help-name="upsorch-ups-command">([\s\S]*?)<\/script>/.exec(html)?.[1] ?? '', re, `${lang} help`);
    }
  });

  it('import the example; the UPS device dialog shows SNMP fields (v3 ones for v3), Test connection finds the APC card', async () => {
    await ed.importExample(/SNMP UPS and power off with return/, /SNMP UPS and power off with return/);

    const upsIn = await ed.nodeIdOf('upsorch-ups-in');
    await ed.openNodeDialog(upsIn);
    await page.locator('#node-input-ups').waitFor({ state: 'attached' });
    await page.locator('#node-input-btn-ups-edit').click();
    await page.locator('#node-config-input-source').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#node-config-input-source').inputValue(), 'snmp');
    assert.ok(await ed.visible('#node-config-input-host'), 'host shown for SNMP');
    assert.ok(await ed.visible('#node-config-input-snmpPort'));
    assert.ok(!(await ed.visible('#node-config-input-port')), "NUT's port hidden");
    assert.ok(!(await ed.visible('#node-config-input-upsName')), "NUT's UPS name hidden");
    assert.ok(await ed.visible('#node-config-input-community'), 'community for v2c');
    assert.ok(!(await ed.visible('#node-config-input-snmpUser')), 'no v3 user for v2c');
    assert.ok(await ed.visible('#node-config-input-snmpTrapPort'), 'trap port shown with traps on');

    await page.locator('#node-config-input-snmpVersion').selectOption('v3');
    assert.ok(await ed.visible('#node-config-input-snmpUser'));
    assert.ok(await ed.visible('#node-config-input-authKey'));
    assert.ok(await ed.visible('#node-config-input-privKey'));
    assert.ok(!(await ed.visible('#node-config-input-community')));
    await ed.waitForInputError('#node-config-input-snmpUser', true);
    await page.locator('#node-config-input-snmpSecLevel').selectOption('authNoPriv');
    assert.ok(!(await ed.visible('#node-config-input-privKey')), 'no privacy key for authNoPriv');
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
    assert.ok(await ed.visible('#node-config-input-port'), "NUT's port back for NUT");
    assert.ok(!(await ed.visible('#node-config-input-snmpPort')));
    await page.locator('#node-config-dialog-cancel').click();
    await page.locator('#node-dialog-cancel').click();
  });

  it('the UPS command dialog: delays for "power off with return", a command field for instant commands', async () => {
    const cmd = await ed.nodeIdOf('upsorch-ups-command');
    await ed.openNodeDialog(cmd);
    await page.locator('#node-input-mode').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#node-input-mode').inputValue(), 'return');
    assert.ok(await ed.visible('#node-input-delayShutdown'));
    assert.ok(!(await ed.visible('#node-input-command')));
    await page.locator('#node-input-mode').selectOption('instcmd');
    assert.ok(await ed.visible('#node-input-command'));
    assert.ok(!(await ed.visible('#node-input-delayShutdown')));
    await ed.waitForInputError('#node-input-command', true);
    await page.locator('#node-input-command').fill('beeper.mute');
    await page.locator('#node-input-command').dispatchEvent('change');
    await ed.waitForInputError('#node-input-command', false);
    await page.locator('#node-input-mode').selectOption('fsd');
    assert.ok(!(await ed.visible('#node-input-confirmTimeout')), 'no confirmation wait for FSD');
    await page.locator('#node-dialog-cancel').click();
  });

  it('no errors in the browser console, none about the package in Node-RED\'s log', () => {
    assert.deepEqual(ed.browserErrors, []);
    const bad = ed.loggedProblems((l) => /upsorch|ups-orchestrator/i.test(l) && /ups-command|snmp/i.test(l));
    assert.deepEqual(bad, []);
  });
});
