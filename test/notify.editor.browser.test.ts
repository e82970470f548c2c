/**
 * Browser test of the notify dialogs (Debian's Chromium via playwright-core): Node-RED 4.1 as a child
 * process with the package linked into a fresh user dir (dist/ must be built), a recording HTTP
 * server on loopback as the ntfy server. What a user does: find notify in the palette, read its
 * help (English, German), import the example "07 Notifications", open the notify dialog and its
 * channel, switch the channel's kind (fields follow, invalid ones are marked), press Send test.
 * The harness (Node-RED, Chromium, editor steps) is test/util/editor.ts.
 *
 * Screenshots and Node-RED's log go to .test-artifacts/.
 */
import { strict as assert } from 'node:assert';
import { Page } from 'playwright-core';
import { HttpRecorder } from './peers/notify-services';
import { EditorHarness, MODULE, text } from './util/editor';

describe('Node-RED editor: notify and notification channel dialogs (Chromium)', function () {
  this.timeout(60000);
  const ed = new EditorHarness('editor-notify');
  let page: Page;
  let http: HttpRecorder;

  before(async function () {
    this.timeout(120000);
    http = await HttpRecorder.start();
    await ed.startNodeRed({ install: 'link' });
    page = await ed.openEditor({ viewport: { width: 1400, height: 1000 } });
  });

  after(async function () {
    this.timeout(30000);
    await ed.stop();
    await http?.stop();
  });

  afterEach(async function () {
    await ed.screenshotIfFailed(this.currentTest);
  });

  it('notify is in the palette, with help in English and German', async () => {
    const sets = (await (await fetch(ed.base + '/nodes', { headers: { Accept: 'application/json' } })).json()) as any[];
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
      const html = await (await fetch(ed.base + '/nodes', { headers: { Accept: 'text/html', 'Accept-Language': lang } })).text();
      assert.match(new RegExp(`data-help-name="${type}">([\\s\\S]*?)</script>`).exec(html)?.[1] ?? '', re, `${lang} help of ${type}`);
    }
  });

  it('import the example; the notify dialog shows its channel, events and template; the channel dialog follows its kind; Send test works', async () => {
    await ed.importExample(/07 Notifications/, /Notifications/);

    const phone = await ed.nodeIdOf('upsorch-notify', 'phone (ntfy)');
    await ed.openNodeDialog(phone);
    await page.locator('#node-input-channel').waitFor({ state: 'attached' });
    assert.equal(await page.locator('#upsorch-notify-events input:checked').count(), 18, 'every UPS event ticked');
    const rows = page.locator('#upsorch-notify-templates .upsorch-tpl-title');
    assert.equal(await rows.count(), 1);
    assert.equal(await rows.first().inputValue(), '⚡ {{ups}} on battery');
    await ed.waitForInputError('#node-input-flapQuiet', false);
    await page.locator('#node-input-flapQuiet').fill('1');
    await page.locator('#node-input-flapQuiet').dispatchEvent('change');
    await ed.waitForInputError('#node-input-flapQuiet', true);
    await page.locator('#node-input-flapQuiet').fill('120');
    await page.locator('#node-input-flapQuiet').dispatchEvent('change');

    // The channel: ntfy fields shown, email fields hidden; another kind shows its own.
    await page.locator('#node-input-btn-channel-edit').click();
    await page.locator('#node-config-input-kind').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#node-config-input-kind').inputValue(), 'ntfy');
    assert.ok(await ed.visible('#node-config-input-ntfyTopic'));
    assert.ok(await ed.visible('#node-config-input-token'));
    assert.equal(text(await page.locator('#upsorch-token-label').textContent()), 'Access token');
    assert.ok(!(await ed.visible('#node-config-input-smtpHost')));
    await page.locator('#node-config-input-kind').selectOption('telegram');
    assert.ok(await ed.visible('#node-config-input-telegramChat'));
    assert.equal(text(await page.locator('#upsorch-token-label').textContent()), 'Bot token');
    assert.ok(!(await ed.visible('#node-config-input-ntfyTopic')));
    await ed.waitForInputError('#node-config-input-telegramChat', true);
    await page.locator('#node-config-input-kind').selectOption('email');
    assert.ok(await ed.visible('#node-config-input-smtpHost'));
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
    await ed.waitForInputError('#node-config-input-ntfyTopic', true);
    await page.locator('#upsorch-notify-channel-test').click();
    const failed = page.locator('#upsorch-notify-channel-test-result.upsorch-failed');
    await failed.waitFor({ state: 'visible' });
    assert.match(text(await failed.textContent()), /ntfyTopic: the ntfy topic is 1–64 letters/);
    await page.locator('#node-config-dialog-cancel').click();
    await page.locator('#node-dialog-cancel').click();
  });

  it('no errors in the browser console, none about notify in Node-RED\'s log', () => {
    assert.deepEqual(ed.browserErrors, []);
    const bad = ed.loggedProblems((l) => /notify/i.test(l));
    assert.deepEqual(bad, []);
  });
});
