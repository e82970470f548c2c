/**
 * Browser smoke test of the Node-RED editor: the packed package installed into a fresh user dir (as a
 * user would install it, via scripts/nodered-userdir.js like `npm start`), Node-RED 4.1 started as a
 * child process, and Debian's Chromium driven by playwright-core through what a user does: find the
 * node in the palette, import the example flow, deploy, press its inject buttons, open the dialogs.
 * The harness (Node-RED, Chromium, editor steps) is test/util/editor.ts.
 *
 * Run: npx mocha --require tsx --timeout 120000 --exit test/editor.browser.test.ts
 * Screenshots and Node-RED's log go to .test-artifacts/.
 */
import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { Page } from 'playwright-core';
import { sleep } from './peers/proc';
import { ARTIFACTS, EditorHarness, MODULE, text } from './util/editor';

describe('Node-RED editor with the package installed (Chromium)', function () {
  this.timeout(60000);

  const ed = new EditorHarness('editor');
  let page: Page;

  /** Node-RED logged no warning or error about this package (loading it, or from its nodes at run time). */
  function assertNoLoggedProblems() {
    const bad = ed.loggedProblems((l) => /upsorch|ups-orchestrator/i.test(l));
    assert.deepEqual(bad, [], `Node-RED logged:\n${bad.join('\n')}`);
  }

  before(async function () {
    this.timeout(120000);
    await ed.startNodeRed({ install: 'pack' });
    page = await ed.openEditor();
  });

  after(async function () {
    this.timeout(30000);
    await ed.stop();
  });

  afterEach(async function () {
    // On failure, what the user would have seen.
    await ed.screenshotIfFailed(this.currentTest);
  });

  it('Node-RED loads the package: no warnings or errors about it, both node types enabled', async () => {
    assertNoLoggedProblems();
    const sets: any[] = (await ed.api('GET', '/nodes')).filter((s: any) => s.module === MODULE);
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
    await ed.importExample(/^\s*01 Simulated UPS\s*$/, /^\s*Simulated UPS\s*$/);
    await page.locator('#red-ui-workspace-tabs .red-ui-tab.active', { hasText: /^\s*Simulated UPS\s*$/ }).waitFor();
    const upsIn = await ed.nodeIdOf('upsorch-ups-in');
    await ed.nodeEl(upsIn).waitFor();
    assert.equal(text(await ed.nodeEl(upsIn).locator('.red-ui-flow-node-label').textContent()), 'Demo UPS');

    // Deployed: Node-RED says so, the button goes back to disabled and the runtime has the flow.
    await ed.deploy();
    await page.locator('#red-ui-header-shade').waitFor({ state: 'hidden' }); // the editor is usable again
    await page.locator('.red-ui-deploy-button-spinner').waitFor({ state: 'hidden' });
    const flows: any[] = await ed.api('GET', '/flows');
    assert.ok(flows.some((n) => n.type === 'upsorch-ups-in' && n.id === upsIn), 'GET /flows has no upsorch-ups-in node after deploy');
    assert.ok(flows.some((n) => n.type === 'upsorch-device' && n.name === 'Demo UPS'), 'GET /flows has no "Demo UPS" device after deploy');

    const st = await ed.waitForStatus(upsIn, (t, cls) => /status-dot-green/.test(cls) && /^OL .*100%/.test(t), 10000, 'a green "OL … 100%" status');
    assert.match(st.text, /^OL .*100%/);
    await sleep(400); // let the notifications finish sliding in (jQuery, 300 ms)
    await page.screenshot({ path: path.join(ARTIFACTS, 'editor-after-deploy.png') });
    await ed.dismissNotifications({ required: true });
  });

  it('the "power lost" inject button puts the UPS on battery: status "OB …"', async () => {
    const upsIn = await ed.nodeIdOf('upsorch-ups-in');
    const inject = await ed.nodeIdOf('inject', 'power lost');
    await ed.nodeEl(inject).locator('.red-ui-flow-node-button').click();
    const st = await ed.waitForStatus(upsIn, (t) => /^OB\b/.test(t), 10000, 'an "OB …" status');
    assert.match(st.cls, /status-dot-(yellow|red)/);
    await page.locator('.red-ui-notification', { hasText: 'Successfully injected: power lost' }).waitFor();
    await ed.dismissNotifications({ required: true });
  });

  it('the UPS in edit dialog: UPS select, interval validation, and the UPS device dialog switches to NUT fields', async () => {
    const upsIn = await ed.nodeIdOf('upsorch-ups-in');
    await ed.openNodeDialog(upsIn);
    const tray = page.locator('.red-ui-tray', { has: page.locator('#node-input-interval') });
    await tray.waitFor({ state: 'visible' });

    const select = page.locator('select#node-input-ups');
    await select.waitFor({ state: 'visible' });
    assert.equal(text(await select.locator('option:checked').textContent()), 'Demo UPS');

    const interval = page.locator('#node-input-interval');
    assert.equal(await interval.inputValue(), '0');
    await interval.fill('');
    await interval.pressSequentially('abc');
    await ed.waitForInputError('#node-input-interval', true);
    await page.screenshot({ path: path.join(ARTIFACTS, 'editor-edit-dialog.png') });
    await interval.fill('');
    await interval.pressSequentially('0');
    await ed.waitForInputError('#node-input-interval', false);

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
    await ed.waitForInputError('#node-config-input-port', true);
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
      const res = await fetch(ed.base + '/nodes', { headers: { Accept: 'text/html', 'Accept-Language': lang } });
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
    await ed.dragFromPalette('upsorch-phase', { x: 0.6, y: 0.75 });
    const phase = await ed.nodeIdOf('upsorch-phase');
    await ed.nodeEl(phase).waitFor();
    assert.equal(text(await ed.nodeEl(phase).locator('.red-ui-flow-node-label').textContent()), 'phase');

    await ed.openNodeDialog(phase);
    const tray = page.locator('.red-ui-tray', { has: page.locator('#node-input-gateRuntime') });
    await tray.waitFor({ state: 'visible' });
    assert.equal(await page.locator('#node-input-mode').inputValue(), 'parallel');
    assert.equal(await page.locator('#node-input-direction').inputValue(), 'both');
    assert.equal(await page.locator('#node-input-wait').isChecked(), true);
    assert.equal(await page.locator('#node-input-timeout').getAttribute('placeholder'), 'auto');
    // No plan yet: the required plan select offers to add one and is marked.
    assert.equal(text(await page.locator('select#node-input-plan option:checked').textContent()), 'Add new plan...');
    await ed.waitForInputError('#node-input-plan', true);

    // Gate off: its fields are hidden and not validated (no UPS device exists).
    const gate = page.locator('#node-input-gate');
    assert.equal(await gate.isChecked(), false);
    assert.equal(await page.locator('#node-input-gateRuntime').isVisible(), false, 'gate runtime shown with the gate off');
    assert.equal(await page.locator('#node-input-gateUps').isVisible(), false, 'gate UPS shown with the gate off');
    await ed.waitForInputError('#node-input-gateUps', false);
    // Gate on: shown, and the missing UPS device is marked; an invalid runtime too.
    await gate.check();
    await page.locator('#node-input-gateRuntime').waitFor({ state: 'visible', timeout: 5000 });
    await page.locator('#node-input-gateUps').waitFor({ state: 'visible', timeout: 5000 });
    await ed.waitForInputError('#node-input-gateUps', true);
    const runtime = page.locator('#node-input-gateRuntime');
    assert.equal(await runtime.inputValue(), '10');
    await runtime.fill('');
    await runtime.pressSequentially('2000');
    await ed.waitForInputError('#node-input-gateRuntime', true);
    await page.screenshot({ path: path.join(ARTIFACTS, 'editor-phase-dialog-gate.png') });
    // Gate off again: hidden, and neither field counts any more.
    await gate.uncheck();
    await page.locator('#node-input-gateRuntime').waitFor({ state: 'hidden', timeout: 5000 });
    await ed.waitForInputError('#node-input-gateRuntime', false);
    await ed.waitForInputError('#node-input-gateUps', false);

    // Other fields: out-of-range values are marked, an empty timeout is allowed (derived).
    const stepDelay = page.locator('#node-input-stepDelay');
    await stepDelay.fill('');
    await stepDelay.pressSequentially('5000');
    await ed.waitForInputError('#node-input-stepDelay', true);
    await stepDelay.fill('');
    await stepDelay.pressSequentially('2');
    await ed.waitForInputError('#node-input-stepDelay', false);
    const timeout = page.locator('#node-input-timeout');
    await timeout.pressSequentially('0');
    await ed.waitForInputError('#node-input-timeout', true);
    await timeout.fill('');
    await timeout.press('Backspace');
    await ed.waitForInputError('#node-input-timeout', false);
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
    await ed.waitForInputError('#node-config-input-stateDir', true);
    await stateDir.fill('');
    await stateDir.press('Backspace');
    await ed.waitForInputError('#node-config-input-stateDir', false);
    await planName.fill('homelab');
    await page.screenshot({ path: path.join(ARTIFACTS, 'editor-plan-dialog.png') });
    await page.locator('#node-config-dialog-ok').click();
    await planName.waitFor({ state: 'detached' });

    // Back in the phase dialog: the new plan is selected and the select is valid.
    assert.equal(text(await page.locator('select#node-input-plan option:checked').textContent()), 'homelab');
    await ed.waitForInputError('#node-input-plan', false);
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
    assert.equal(text(await ed.nodeEl(phase).locator('.red-ui-flow-node-label').textContent()), 'VMs');

    // Its help in the sidebar: the input and output properties render as lists.
    await ed.nodeEl(phase).locator('.red-ui-flow-node').click();
    await page.evaluate(() => (globalThis as any).RED.sidebar.show('help'));
    const help = page.locator('.red-ui-help', { hasText: 'chain of phases linked by their done outputs' }).last();
    await help.waitFor({ state: 'visible' });
    assert.ok((await help.locator('dl.message-properties dt').count()) >= 8, 'help lists the message properties');
    await page.screenshot({ path: path.join(ARTIFACTS, 'editor-phase-help.png') });
    await page.evaluate(() => (globalThis as any).RED.sidebar.show('info'));

    // Deploy: the runtime accepts it (no red status, nothing logged; checked in the last test).
    await ed.deploy();
    const flows: any[] = await ed.api('GET', '/flows');
    assert.ok(flows.some((n) => n.type === 'upsorch-phase' && n.id === phase && n.name === 'VMs'), 'GET /flows has no phase after deploy');
    assert.ok(flows.some((n) => n.type === 'upsorch-plan' && n.name === 'homelab'), 'GET /flows has no plan after deploy');
    await sleep(500);
    assert.equal(await ed.nodeEl(phase).locator('.red-ui-flow-node-status-label').count() === 0 ? '' : text(await ed.nodeEl(phase).locator('.red-ui-flow-node-status-label').textContent()), '');
    await ed.dismissNotifications({ required: true });
  });

  it('no errors during the whole run: none in the browser console, none about the package in Node-RED\'s log', () => {
    assert.deepEqual(ed.browserErrors, []);
    assertNoLoggedProblems();
  });
});
