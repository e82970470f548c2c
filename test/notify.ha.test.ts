/**
 * The Home Assistant channel in the real Node-RED runtime, through the HA server config node's
 * websocket connection to the fake Home Assistant (test/fakes/ha-server.ts: it records service
 * calls; it does not deliver anything to a phone). Asserts the service calls the companion apps
 * document for critical alerts (iOS push.sound critical, Android ttl 0 / priority high /
 * channel alarm_stream) and persistent_notification.create; Home Assistant down → queued → sent.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { haServerNode, helper, notifyChannelNode, notifyNode, send, sleep } from './util/red';
import { FakeHaServer } from './fakes/ha-server';
import { channel, notify, waitForStatusOf } from './util/notify-flow';

const NODES = [haServerNode, notifyChannelNode, notifyNode];

describe('notify via Home Assistant (Node-RED runtime, fake HA websocket)', function () {
  this.timeout(30000);
  let userDir: string;
  let ha: FakeHaServer;

  beforeEach(async () => {
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-notify-ha-'));
    helper.settings({ userDir });
    ha = await FakeHaServer.start({ token: 'ha-token', services: ['notify.mobile_app_pixel_8'] });
  });
  afterEach(async () => {
    await helper.unload();
    await ha.stop();
    helper.settings({});
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  const flow = (over: Record<string, unknown> = {}) => [
    { id: 'ha', type: 'upsorch-ha-server', name: '', url: ha.url, tlsVerify: true, tlsFingerprint: '' },
    channel('ch', { kind: 'ha', haServer: 'ha', haService: 'notify.mobile_app_pixel_8', haCritical: 'critical', haPersistent: true, ...over }),
    notify('n', 'ch'),
  ];

  async function waitForCalls(n: number, ms = 10000) {
    const deadline = Date.now() + ms;
    while (ha.serviceCalls.length < n) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} service calls; got ${JSON.stringify(ha.serviceCalls)}`);
      await sleep(50);
    }
    return ha.serviceCalls;
  }

  it('a critical message is a critical alert on iOS and Android, plus a persistent notification', async () => {
    await helper.load(NODES, flow(), { ha: { token: 'ha-token' } });
    send('n', { payload: { title: 'UPS rack: LOW BATTERY', message: 'Charge 18% · runtime 3 min', severity: 'critical' } });
    const [push, persistent] = await waitForCalls(2);
    assert.equal(push.domain, 'notify');
    assert.equal(push.service, 'mobile_app_pixel_8');
    assert.deepEqual(push.service_data, {
      title: 'UPS rack: LOW BATTERY',
      message: 'Charge 18% · runtime 3 min',
      data: {
        group: 'ups-orchestrator',
        'thread-id': 'ups-orchestrator',
        push: { sound: { name: 'default', critical: 1, volume: 1.0 } },
        ttl: 0,
        priority: 'high',
        channel: 'alarm_stream',
      },
    });
    assert.equal(persistent.domain, 'persistent_notification');
    assert.equal(persistent.service, 'create');
    assert.deepEqual(persistent.service_data, { title: 'UPS rack: LOW BATTERY', message: 'Charge 18% · runtime 3 min', notification_id: 'upsorch_custom' });
    await waitForStatusOf('n', (s) => s.text === 'sent 1');
  });

  it('an info message is an ordinary push (no critical keys)', async () => {
    await helper.load(NODES, flow({ haPersistent: false }), { ha: { token: 'ha-token' } });
    send('n', { payload: 'mains is back' });
    const [push] = await waitForCalls(1);
    assert.deepEqual(push.service_data, { title: 'UPS orchestrator', message: 'mains is back', data: { group: 'ups-orchestrator', 'thread-id': 'ups-orchestrator' } });
    await sleep(300);
    assert.equal(ha.serviceCalls.length, 1);
  });

  it('Home Assistant down: queued; back: sent once each, in order', async () => {
    await helper.load(NODES, flow({ haPersistent: false }), { ha: { token: 'ha-token' } });
    send('n', { payload: 'first' });
    await waitForCalls(1);
    await ha.stop();
    send('n', { payload: 'second' });
    send('n', { payload: 'third' });
    await waitForStatusOf('n', (s) => s.fill === 'red' && /^2 queued · failing: Home Assistant: call notify\.mobile_app_pixel_8: not connected/.test(s.text ?? ''), 8000);
    await ha.restart();
    await waitForCalls(3, 15000);
    await sleep(500);
    assert.deepEqual(ha.serviceCalls.map((c) => c.service_data?.message), ['first', 'second', 'third']);
    await waitForStatusOf('n', (s) => s.text === 'sent 3');
  });

  it('an unknown notify service is a settings problem, said on the node', async () => {
    await helper.load(NODES, flow({ haService: 'notify.mobile_app_nope', haPersistent: false }), { ha: { token: 'ha-token' } });
    send('n', { payload: 'x' });
    const st = await waitForStatusOf('n', (s) => s.fill === 'red', 8000);
    assert.match(st.text ?? '', /^1 queued · failing: Home Assistant has no notify\.mobile_app_nope \(a phone's is/);
  });
});
