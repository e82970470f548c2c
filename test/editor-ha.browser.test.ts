/**
 * Browser test of the Home Assistant / MQTT dialogs in the Node-RED editor (Debian's Chromium via
 * playwright-core): Node-RED 4.1 as a child process with the package linked into a fresh user dir
 * (dist/ must be built), a real Mosquitto broker and the fake Home Assistant on loopback. What a user
 * does: import the example "UPS and plan on the HA dashboard", point its broker at the local one,
 * test the connection, deploy and see the status; add a Home Assistant server from the publish
 * node's dialog; switch a UPS device to Home Assistant entities.
 * The harness (Node-RED, Chromium, editor steps) is test/util/editor.ts.
 *
 * Screenshots and Node-RED's log go to .test-artifacts/.
 */
import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { Page } from 'playwright-core';
import { MosquittoPeer } from './peers/mosquitto';
import { FakeHaServer } from './fakes/ha-server';
import { ARTIFACTS, EditorHarness, MODULE, text } from './util/editor';

const TYPES = ['upsorch-mqtt-broker', 'upsorch-ha-server', 'upsorch-publish-state'];

describe('Node-RED editor: Home Assistant and MQTT dialogs (Chromium)', function () {
  this.timeout(60000);
  const ed = new EditorHarness('editor-ha');
  let page: Page;
  let mqtt: MosquittoPeer;
  let ha: FakeHaServer;

  before(async function () {
    this.timeout(120000);
    mqtt = await MosquittoPeer.start();
    ha = await FakeHaServer.start({ token: 'editor-test-token', states: [{ entity_id: 'sensor.rack_status_data', state: 'OL' }] });
    await ed.startNodeRed({ install: 'link' });
    page = await ed.openEditor({ viewport: { width: 1400, height: 1000 } });
  });

  after(async function () {
    this.timeout(30000);
    await ed.stop();
    await ha?.stop();
    await mqtt?.dispose();
  });

  afterEach(async function () {
    await ed.screenshotIfFailed(this.currentTest);
  });

  it('Node-RED loads the three node types; "publish state" is in the palette with its icon; help in English and German', async () => {
    const sets = (await (await fetch(ed.base + '/nodes', { headers: { Accept: 'application/json' } })).json()) as any[];
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
      const html = await (await fetch(ed.base + '/nodes', { headers: { Accept: 'text/html', 'Accept-Language': lang } })).text();
      assert.match(/data-help-name="upsorch-publish-state">([\s\S]*?)<\/script>/.exec(html)?.[1] ?? '', re, `${lang} help`);
      for (const t of ['upsorch-mqtt-broker', 'upsorch-ha-server']) assert.match(html, new RegExp(`data-help-name="${t}"`), `${lang} help for ${t}`);
    }
  });

  it('import the example, point its broker at the local Mosquitto, Test connection, deploy: the publish node is green', async () => {
    await ed.importExample(/UPS and plan on the HA dashboard/, /UPS and plan on the HA dashboard/);
    const pub = await ed.nodeIdOf('upsorch-publish-state');
    await ed.nodeEl(pub).waitFor();

    await ed.openNodeDialog(pub);
    const tray = page.locator('.red-ui-tray', { has: page.locator('#node-input-plan1') });
    await tray.waitFor({ state: 'visible' });
    await ed.waitForInputError('#node-input-broker', false);
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
    await ed.waitForInputError('#node-config-input-port', true);
    const baseTopic = page.locator('#node-config-input-baseTopic');
    // Node-RED validates on key presses: type as a user does
    await baseTopic.fill('');
    await baseTopic.pressSequentially('ups/#');
    await ed.waitForInputError('#node-config-input-baseTopic', true);
    await baseTopic.press('Backspace');
    await baseTopic.press('Backspace');
    await ed.waitForInputError('#node-config-input-baseTopic', false);
    await baseTopic.fill('');
    await baseTopic.pressSequentially('ups-orchestrator');
    await host.fill('');
    await host.pressSequentially('127.0.0.1');
    await port.fill('');
    await port.pressSequentially(String(mqtt.port));
    await ed.waitForInputError('#node-config-input-port', false);
    await page.locator('#upsorch-mqtt-broker-test').click();
    await page.locator('#upsorch-mqtt-broker-test-result.upsorch-ok').waitFor({ timeout: 15000 });
    assert.equal(text(await page.locator('#upsorch-mqtt-broker-test-result').textContent()), `OK: connected to mqtt://127.0.0.1:${mqtt.port}`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'editor-ha-broker-dialog.png') });
    await page.locator('#node-config-dialog-ok').click();
    await host.waitFor({ state: 'detached' });
    await page.locator('#node-dialog-ok').click();
    await tray.waitFor({ state: 'detached' });

    await ed.deploy();
    await ed.waitForStatus(pub, (t, cls) => /status-dot-green/.test(cls) && t === '1 UPS · 1 plan · MQTT connected', 15000, 'a green publish status');
    await page.screenshot({ path: path.join(ARTIFACTS, 'editor-ha-example-deployed.png') });
  });

  it('the publish dialog: without a broker and a Home Assistant server it is invalid; a Home Assistant server added from it, tested and deployed', async () => {
    const pub = await ed.nodeIdOf('upsorch-publish-state');
    await ed.openNodeDialog(pub);
    const tray = page.locator('.red-ui-tray', { has: page.locator('#node-input-plan1') });
    await tray.waitFor({ state: 'visible' });
    const broker = page.locator('select#node-input-broker');
    const brokerValue = await broker.inputValue();
    await broker.selectOption('_ADD_');
    await ed.waitForInputError('#node-input-broker', true);
    await broker.selectOption(brokerValue);
    await ed.waitForInputError('#node-input-broker', false);

    await page.locator('#node-input-btn-haServer-add').click();
    const url = page.locator('#node-config-input-url');
    await url.waitFor({ state: 'visible' });
    await url.fill('');
    await url.pressSequentially('homeassistant');
    await ed.waitForInputError('#node-config-input-url', true);
    await url.fill('');
    await url.pressSequentially(ha.url);
    await ed.waitForInputError('#node-config-input-url', false);
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
    await ed.deploy();
    await ed.waitForStatus(pub, (t, cls) => /status-dot-green/.test(cls) && /MQTT \+ HA connected$/.test(t), 15000, 'MQTT + HA connected');
    assert.equal(ha.connections, 1);
  });

  it('the UPS device dialog: "Home Assistant entities" shows the HA fields and the entity ids an empty field reads', async () => {
    const upsIn = await ed.nodeIdOf('upsorch-ups-in');
    await ed.openNodeDialog(upsIn);
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
    await ed.waitForInputError('#node-config-input-haEntityPrefix', true);
    await page.locator('#node-config-input-haEntityPrefix').pressSequentially('sensor.rack');
    await ed.waitForInputError('#node-config-input-haEntityPrefix', false);
    assert.equal(await page.locator('#node-config-input-haChargeEntity').getAttribute('placeholder'), 'sensor.rack_battery_charge');
    assert.equal(await page.locator('#node-config-input-haStatusEntity').getAttribute('placeholder'), 'sensor.rack_status_data');
    await page.locator('#node-config-input-haLoadEntity').pressSequentially('not an entity');
    await ed.waitForInputError('#node-config-input-haLoadEntity', true);
    await page.screenshot({ path: path.join(ARTIFACTS, 'editor-ha-device-dialog.png') });
    await page.locator('#node-config-dialog-cancel').click();
    await source.waitFor({ state: 'detached' });
    await page.locator('#node-dialog-cancel').click();
    await tray.waitFor({ state: 'detached' });
  });

  it('no errors: none in the browser console, none about the package in Node-RED\'s log', () => {
    assert.deepEqual(ed.browserErrors, []);
    const bad = ed.loggedProblems((l) => /upsorch|ups-orchestrator/i.test(l));
    assert.deepEqual(bad, [], bad.join('\n'));
  });
});
