/**
 * The Home Assistant websocket side, in the real Node-RED runtime, against the fake Home Assistant
 * of test/fakes/ha-server.ts (no Home Assistant can run here): authentication, events fired on
 * HA's bus, service calls (the API notify uses), a UPS read from HA entities, and reconnecting after
 * Home Assistant restarts.
 */
import { strict as assert } from 'node:assert';
import * as cp from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MosquittoPeer } from './peers/mosquitto';
import { FakeHaServer } from './fakes/ha-server';
import { HaClient, HaError } from '../lib/ha/client';
import { Collector, deviceConfig, haMqttNodes, helper, send, sleep, upsIn, waitForStatus as ownStatus, warningsOf } from './util/red';

const TOKEN = 'llat-test-token-0123456789';

const RACK_ENTITIES = [
  { entity_id: 'sensor.rack_status_data', state: 'OL CHRG', attributes: { friendly_name: 'Rack Status data' } },
  { entity_id: 'sensor.rack_battery_charge', state: '97', attributes: { unit_of_measurement: '%', device_class: 'battery' } },
  { entity_id: 'sensor.rack_battery_runtime', state: '45', attributes: { unit_of_measurement: 'min', device_class: 'duration' } },
  { entity_id: 'sensor.rack_load', state: '23', attributes: { unit_of_measurement: '%' } },
  { entity_id: 'sensor.rack_input_voltage', state: '231.5', attributes: { unit_of_measurement: 'V' } },
  { entity_id: 'sensor.rack_output_voltage', state: '230', attributes: { unit_of_measurement: 'V' } },
  { entity_id: 'sensor.rack_real_power', state: '120', attributes: { unit_of_measurement: 'W' } },
  { entity_id: 'sensor.rack_ups_temperature', state: '86', attributes: { unit_of_measurement: '°F' } },
];

function haServer(url: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { id: 'ha', type: 'upsorch-ha-server', name: '', url, tlsVerify: true, tlsFingerprint: '', ...over };
}

function publishNode(over: Record<string, unknown> = {}): Record<string, unknown>[] {
  return [
    { id: 'pub', type: 'upsorch-publish-state', name: '', broker: '', haServer: 'ha', ups1: '', ups2: '', ups3: '', ups4: '', plan1: '', plan2: '', haEvents: true, wires: [['pub-out']], ...over },
    { id: 'pub-out', type: 'helper' },
  ];
}

const haDevice = (over: Record<string, unknown> = {}) => deviceConfig('hadev', { source: 'ha', name: '', haServer: 'ha', haEntityPrefix: 'sensor.rack', pollInterval: 0.5, ...over });
const creds = (token = TOKEN) => ({ ha: { token } });


describe('Home Assistant websocket (fake Home Assistant)', function () {
  this.timeout(60000);
  let fake: FakeHaServer;

  beforeEach(async () => {
    fake = await FakeHaServer.start({ token: TOKEN, states: RACK_ENTITIES });
  });
  afterEach(async () => {
    await helper.unload();
    await fake.stop();
  });

  it('a wrong token: clear status, and no retry (Home Assistant bans addresses that keep failing)', async () => {
    await helper.load(haMqttNodes, [haServer(fake.url), ...publishNode()], creds('wrong-token'));
    const st = await ownStatus('pub', (x) => x.fill === 'red', 5000);
    assert.equal(st.text, 'HA: authentication failed: Invalid access token or password (check the long-lived access token)');
    await sleep(2500);
    assert.equal(fake.authAttempts.length, 1);
    assert.equal(fake.authAttempts[0].ok, false);
  });

  it('fires ups_orchestrator_event for every UPS event, from a UPS device and from UPS in messages', async () => {
    await helper.load(haMqttNodes, [
      haServer(fake.url), deviceConfig('dev', { name: 'Rack UPS', source: 'sim' }), deviceConfig('dev2', { name: 'Other', source: 'sim' }),
      ...upsIn('in2', 'dev2', { wires: [[], ['pub']] }), ...publishNode({ ups1: 'dev' }),
    ], creds());
    await ownStatus('pub', (x) => x.fill === 'green', 5000);
    // the device the node subscribes to directly
    helper.getNode('dev').simulate('power-lost');
    await fake.waitFor(() => fake.firedEvents.some((e) => e.event_data.event === 'ONBATT' && e.event_data.ups === 'Rack UPS'), 5000, 'ONBATT of Rack UPS');
    const onbatt = fake.firedEvents.find((e) => e.event_data.event === 'ONBATT')!;
    assert.equal(onbatt.event_type, 'ups_orchestrator_event');
    assert.equal(onbatt.event_data.kind, 'ups');
    assert.equal(onbatt.event_data.severity, 'warning');
    assert.match(String(onbatt.event_data.message), /^UPS Rack UPS is on battery/);
    assert.equal(onbatt.event_data.flags, 'OB DISCHRG');
    assert.equal(typeof onbatt.event_data.charge, 'number');
    assert.ok(!Number.isNaN(Date.parse(String(onbatt.event_data.at))));
    // events arriving as messages (UPS in, output 2)
    send('in2', { topic: 'power-lost' });
    await fake.waitFor(() => fake.firedEvents.some((e) => e.event_data.event === 'ONBATT' && e.event_data.ups === 'Other'), 5000, 'ONBATT of Other');
    helper.getNode('dev').simulate('power-restored');
    await fake.waitFor(() => fake.firedEvents.some((e) => e.event_data.event === 'ONLINE' && e.event_data.ups === 'Rack UPS'), 5000, 'ONLINE');
    assert.equal(fake.firedEvents.filter((e) => e.event_data.event === 'ONBATT' && e.event_data.ups === 'Rack UPS').length, 1, 'once per change');
  });

  it('callService(): the API notify uses (result, Home Assistant errors, not connected)', async () => {
    fake.onService('notify.mobile_app_phone');
    fake.onService('notify.broken', () => {
      throw { code: 'service_validation_error', message: 'message is required' };
    });
    await helper.load(haMqttNodes, [haServer(fake.url), ...publishNode()], creds());
    await ownStatus('pub', (x) => x.fill === 'green', 5000);
    const client = helper.getNode('ha').client as HaClient;
    const result = (await client.callService('notify', 'mobile_app_phone', { title: 'UPS', message: 'on battery', data: { push: { sound: { name: 'default', critical: 1, volume: 1 } } } })) as { context: { id: string } };
    assert.equal(typeof result.context.id, 'string');
    const call = fake.serviceCalls.at(-1)!;
    assert.deepEqual([call.domain, call.service, call.service_data, call.target], ['notify', 'mobile_app_phone', { title: 'UPS', message: 'on battery', data: { push: { sound: { name: 'default', critical: 1, volume: 1 } } } }, undefined]);
    await client.callService('persistent_notification', 'create', { message: 'x', notification_id: 'upsorch' }, { entity_id: 'sensor.y' });
    assert.deepEqual(fake.serviceCalls.at(-1)!.target, { entity_id: 'sensor.y' });
    await assert.rejects(client.callService('notify', 'nobody', { message: 'x' }), (e: HaError) => e.code === 'not_found' && /Action notify\.nobody not found/.test(e.message));
    await assert.rejects(client.callService('notify', 'broken', {}), (e: HaError) => e.code === 'service_validation_error' && /message is required/.test(e.message));
    await fake.stop();
    await assert.rejects(client.callService('notify', 'mobile_app_phone', { message: 'x' }), (e: HaError) => e.code === 'not_connected' || e.code === 'connection_lost');
  });

  it('a UPS read from Home Assistant entities gives the normalised state and follows changes', async () => {
    await helper.load(haMqttNodes, [haServer(fake.url), haDevice(), ...upsIn('in', 'hadev')], creds());
    const states = new Collector('in-state');
    const events = new Collector('in-events');
    const first = await states.waitFor((m) => m.payload.comm === 'ok', 5000);
    const s = first.msg.payload;
    assert.equal(s.ups, 'rack');
    assert.equal(s.source, 'ha');
    assert.deepEqual(s.flags, ['OL', 'CHRG']);
    assert.equal(s.online, true);
    assert.equal(s.charging, true);
    assert.equal(s.onBattery, false);
    assert.equal(s.charge, 97);
    assert.equal(s.runtime, 2700, '45 min in seconds');
    assert.equal(s.load, 23);
    assert.equal(s.inputVoltage, 231.5);
    assert.equal(s.outputVoltage, 230);
    assert.equal(s.realPower, 120);
    assert.equal(s.temperature, 30, '86 °F in °C');
    assert.equal(s.raw['ups.status'], 'OL CHRG');
    await ownStatus('in', (x) => x.fill === 'green' && x.text === 'OL CHRG 97% 45m');

    // every poll of the UPS: the change must show by the second poll after it (the first may have read the old states)
    const polls: number[] = [];
    const unsubscribe = helper.getNode('hadev').subscribe(() => polls.push(Date.now()));
    const t0 = Date.now();
    fake.setState('sensor.rack_status_data', 'OB DISCHRG');
    fake.setState('sensor.rack_battery_charge', '80', { unit_of_measurement: '%', device_class: 'battery' });
    const ob = await states.waitFor((m) => m.payload.onBattery && m.payload.charge === 80, 5000);
    // the poll that delivered it counts too (it reaches the collector a moment later)
    const polls2 = polls.filter((at) => at > t0 && at <= ob.at).length;
    await unsubscribe();
    assert.ok(polls2 <= 2, `the change showed after ${polls2} polls (${ob.at - t0} ms; poll 0.5 s)`);
    await events.waitFor((m) => m.topic === 'ONBATT', 2000);

    // the integration loses the UPS
    fake.setState('sensor.rack_status_data', 'unavailable');
    const lost = await states.waitFor((m) => m.payload.comm === 'lost', 3000);
    assert.match(lost.msg.payload.commError, /sensor\.rack_status_data unavailable/);
    await events.waitFor((m) => m.topic === 'COMMBAD', 2000);
    fake.setState('sensor.rack_status_data', 'OL');
    await states.waitFor((m) => m.payload.comm === 'ok' && m.payload.online, 3000);
    // only the entities of this UPS are subscribed
    const sub = fake.received.find((r) => r.msg.type === 'subscribe_entities')!;
    assert.deepEqual((sub.msg.entity_ids as string[]).slice().sort(), RACK_ENTITIES.map((e) => e.entity_id).concat('sensor.rack_alarms').sort());
  });

  it('Home Assistant status words (NUT integration "Status" sensor) and a missing entity', async () => {
    fake.setState('sensor.words_status', 'On Battery Battery Discharging Low Battery');
    await helper.load(haMqttNodes, [
      haServer(fake.url),
      haDevice({ haEntityPrefix: '', haStatusEntity: 'sensor.words_status', name: 'Words' }), ...upsIn('in', 'hadev'),
      deviceConfig('missing', { source: 'ha', haServer: 'ha', haEntityPrefix: 'sensor.nope', pollInterval: 0.5 }), ...upsIn('in2', 'missing'),
    ], creds());
    const s = (await new Collector('in-state').waitFor((m) => m.payload.comm === 'ok', 5000)).msg.payload;
    assert.deepEqual(s.flags.slice().sort(), ['DISCHRG', 'LB', 'OB']);
    assert.equal(s.charge, null, 'no charge entity: absent, not 0');
    const m = (await new Collector('in2-state').waitFor((x) => x.payload.comm === 'lost', 8000)).msg.payload;
    assert.match(m.commError, /entity sensor\.nope_status_data not found in Home Assistant/);
  });

  it('a mapped entity Home Assistant does not have (NUT integration: battery runtime is disabled by default) is named, once, until it is enabled', async () => {
    fake.removeEntity('sensor.rack_battery_runtime');
    await helper.load(haMqttNodes, [haServer(fake.url), haDevice(), ...upsIn('in', 'hadev')], creds());
    const states = new Collector('in-state');
    const s = (await states.waitFor((m) => m.payload.comm === 'ok', 5000)).msg.payload;
    assert.equal(s.runtime, null);
    assert.equal(s.charge, 97);
    const advice = 'sensor.rack_battery_runtime (battery runtime) is not in Home Assistant: enable it in Home Assistant (Settings → Devices & services → Entities); HA\'s NUT integration creates it disabled; runtime thresholds cannot fire without it, or correct the entity id in the UPS device';
    const st = await ownStatus('in', (x) => x.fill === 'red', 5000);
    assert.equal(st.text, `OL CHRG 97% · ${advice}`.slice(0, 99) + '…');
    const n = helper.getNode('in');
    const warned = () => n.warn.getCalls().filter((c: any) => c.thisValue === n).map((c: any) => String(c.args[0]));
    await sleep(1500); // three polls
    assert.deepEqual(warned(), [advice], 'warned once, not on every poll');
    // the dialog's Test connection says it too
    const t = await helper.request().post('/upsorch-device/test').send({ source: 'ha', haServer: 'ha', haEntityPrefix: 'sensor.rack', timeout: 5 }).expect(200);
    assert.deepEqual([t.body.ok, t.body.runtime, t.body.warning], [true, null, advice]);

    // enabled in Home Assistant: the runtime arrives and the warning goes
    fake.setState('sensor.rack_battery_runtime', '45', { unit_of_measurement: 'min', device_class: 'duration' });
    await states.waitFor((m) => m.payload.runtime === 2700, 5000);
    await ownStatus('in', (x) => x.fill === 'green' && x.text === 'OL CHRG 97% 45m', 5000);
  });

  it('readings derived from the prefix that this UPS does not have (no temperature probe) are left out quietly; an entity chosen explicitly is not', async () => {
    fake.removeEntity('sensor.rack_ups_temperature');
    await helper.load(haMqttNodes, [haServer(fake.url), haDevice(), ...upsIn('in', 'hadev'), deviceConfig('hadev2', { source: 'ha', name: 'rack2', haServer: 'ha', haEntityPrefix: 'sensor.rack', haLoadEntity: 'sensor.rack_load_pct', pollInterval: 0.5 }), ...upsIn('in2', 'hadev2')], creds());
    const s = (await new Collector('in-state').waitFor((m) => m.payload.comm === 'ok', 5000)).msg.payload;
    assert.equal(s.temperature, null);
    await ownStatus('in', (x) => x.fill === 'green' && x.text === 'OL CHRG 97% 45m', 5000);
    const st = await ownStatus('in2', (x) => x.fill === 'red', 5000);
    assert.match(st.text ?? '', /· sensor\.rack_load_pct \(load\) is not in Home Assistant: enable it/);
  });

  it('reconnects after Home Assistant restarts: the UPS source and events work again', async () => {
    await helper.load(haMqttNodes, [haServer(fake.url), haDevice(), ...upsIn('in', 'hadev', { wires: [['in-state'], ['pub']] }), ...publishNode()], creds());
    const states = new Collector('in-state');
    await states.waitFor((m) => m.payload.comm === 'ok', 5000);
    await ownStatus('pub', (x) => x.fill === 'green', 5000);
    assert.equal(fake.connections, 1, 'one connection shared by the UPS source and the publish node');

    await fake.restart(1500);
    await ownStatus('pub', (x) => x.fill !== 'green' && /HA:/.test(x.text ?? ''), 5000);
    await states.waitFor((m) => m.payload.comm === 'lost' && /Home Assistant/.test(m.payload.commError), 5000);
    await ownStatus('pub', (x) => x.fill === 'green', 15000);
    assert.equal(fake.connections, 1);
    const from = states.received.length;
    fake.setState('sensor.rack_status_data', 'OB DISCHRG');
    await states.waitFor((m) => m.payload.comm === 'ok' && m.payload.onBattery, 5000, from);
    await fake.waitFor(() => fake.firedEvents.some((e) => e.event_data.event === 'ONBATT'), 5000, 'ONBATT after the reconnect');
  });

  it('Test connection of a UPS device reading Home Assistant entities', async () => {
    await helper.load(haMqttNodes, [haServer(fake.url)], creds());
    const r = await helper.request().post('/upsorch-device/test').send({ source: 'ha', haServer: 'ha', haEntityPrefix: 'sensor.rack', timeout: 5 }).expect(200);
    assert.equal(r.body.ok, true, r.body.message);
    assert.deepEqual([r.body.message, r.body.status, r.body.charge, r.body.runtime], ['connected to sensor.rack_status_data (Home Assistant)', 'OL CHRG', 97, 2700]);
    const missing = await helper.request().post('/upsorch-device/test').send({ source: 'ha', haServer: 'nope', haEntityPrefix: 'sensor.rack' }).expect(200);
    assert.deepEqual(missing.body, { ok: false, message: 'the Home Assistant server of this UPS is not deployed (check the UPS device\'s Home Assistant server)' });
  });

  it('Test connection in the dialog: version and entity count, or what is wrong; never the token', async () => {
    await helper.load(haMqttNodes, [haServer(fake.url)], creds());
    const ok = await helper.request().post('/upsorch-ha-server/test').send({ id: 'ha', url: fake.url, tlsVerify: true, tlsFingerprint: '', token: '__PWRD__' }).expect(200);
    assert.equal(ok.body.ok, true);
    assert.match(ok.body.message, new RegExp(`connected to Home Assistant 2025\\.1\\.0 .*; ${RACK_ENTITIES.length} entities`));
    assert.doesNotMatch(JSON.stringify(ok.body), new RegExp(TOKEN));
    const bad = await helper.request().post('/upsorch-ha-server/test').send({ url: fake.url, token: 'nope' }).expect(200);
    assert.deepEqual(bad.body, { ok: false, message: 'authentication failed: Invalid access token or password (check the long-lived access token)' });
    const down = await helper.request().post('/upsorch-ha-server/test').send({ url: 'http://127.0.0.1:1', token: 'x' }).expect(200);
    assert.equal(down.body.ok, false);
    assert.match(down.body.message, /connection refused/);
  });
});

describe('closing the flow (Home Assistant + MQTT)', function () {
  this.timeout(60000);

  /** Established client connections to 127.0.0.1:port (from /proc/net/tcp). */
  function connectionsTo(port: number): number {
    const hex = ':' + port.toString(16).toUpperCase().padStart(4, '0');
    let n = 0;
    for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length > 3 && cols[2].endsWith(hex) && cols[3] === '01') n++;
    }
    return n;
  }
  const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

  it('leaves no socket and no timer behind', async () => {
    const fake = await FakeHaServer.start({ token: TOKEN, states: RACK_ENTITIES });
    const broker = await MosquittoPeer.start();
    try {
      await sleep(200);
      const before = timers();
      await helper.load(haMqttNodes, [
        haServer(fake.url), haDevice(), ...upsIn('in', 'hadev', { wires: [['pub'], ['pub']] }),
        {
          id: 'broker', type: 'upsorch-mqtt-broker', name: '', host: '127.0.0.1', port: broker.port, tls: false, tlsVerify: true, tlsFingerprint: '', ca: '', cert: '',
          clientId: '', baseTopic: 'ups-orchestrator', discoveryPrefix: 'homeassistant', keepalive: 60,
        },
        ...publishNode({ broker: 'broker' }),
      ], creds());
      await ownStatus('pub', (x) => x.fill === 'green' && /1 UPS/.test(x.text ?? ''), 8000);
      assert.equal(connectionsTo(fake.port), 1);
      assert.equal(connectionsTo(broker.port), 1);
      const t0 = Date.now();
      await helper.unload();
      assert.ok(Date.now() - t0 < 5000, `closing took ${Date.now() - t0} ms`);
      await sleep(300);
      assert.equal(connectionsTo(fake.port), 0, 'HA websocket closed');
      assert.equal(connectionsTo(broker.port), 0, 'MQTT connection closed');
      assert.ok(timers() <= before, `timers before ${before}, after ${timers()}: ${process.getActiveResourcesInfo().join(', ')}`);
    } finally {
      await fake.stop();
      await broker.dispose();
    }
  });
});

describe('Home Assistant over TLS (wss, fake Home Assistant with a self-signed certificate)', function () {
  this.timeout(60000);
  let fake: FakeHaServer;
  let fingerprint = '';
  let dir = '';

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-ha-tls-'));
    const ssl = (args: string[]) => {
      const r = cp.spawnSync('openssl', args, { cwd: dir, encoding: 'utf8', timeout: 20000 });
      if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=homeassistant.local', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', 'key.pem', '-out', 'cert.pem']);
    fingerprint = ssl(['x509', '-noout', '-fingerprint', '-sha256', '-in', 'cert.pem']).trim().replace(/^.*=/, '');
    fake = await FakeHaServer.start({ token: TOKEN, states: RACK_ENTITIES, tls: { key: fs.readFileSync(path.join(dir, 'key.pem'), 'utf8'), cert: fs.readFileSync(path.join(dir, 'cert.pem'), 'utf8') } });
  });
  after(async () => {
    await fake?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await helper.unload();
  });

  it('a self-signed certificate is refused by default, with advice', async () => {
    assert.match(fake.url, /^https:/);
    await helper.load(haMqttNodes, [haServer(fake.url), ...publishNode()], creds());
    const st = await ownStatus('pub', (x) => x.fill === 'red', 8000);
    assert.match(st.text ?? '', /^HA: TLS: the certificate of wss:\/\/127\.0\.0\.1:\d+ is not trusted \(self.signed certificate\)/i);
    assert.equal(fake.authAttempts.length, 0, 'the token was never sent');
  });

  it('a pinned SHA-256 fingerprint connects; a wrong pin never sends the token', async () => {
    await helper.load(haMqttNodes, [haServer(fake.url, { tlsFingerprint: fingerprint }), ...publishNode()], creds());
    await ownStatus('pub', (x) => x.fill === 'green', 8000);
    assert.equal(fake.authAttempts.length, 1);
    await helper.unload();
    await helper.load(haMqttNodes, [haServer(fake.url, { tlsFingerprint: 'AB'.repeat(32) }), ...publishNode()], creds());
    const st = await ownStatus('pub', (x) => x.fill === 'red', 8000);
    assert.match(st.text ?? '', /^HA: certificate fingerprint mismatch/);
    await sleep(300);
    assert.equal(fake.authAttempts.length, 1, 'no second login: the token went nowhere');
  });
});

describe('Home Assistant over TLS with its own CA (wss, fake Home Assistant with a certificate signed by a self-made CA)', function () {
  this.timeout(60000);
  let fake: FakeHaServer;
  let dir = '';
  let ca = '';
  let otherCa = '';
  let caKey = '';

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-ha-ca-'));
    const ssl = (args: string[]) => {
      const r = cp.spawnSync('openssl', args, { cwd: dir, encoding: 'utf8', timeout: 20000 });
      if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    const read = (f: string) => fs.readFileSync(path.join(dir, f), 'utf8');
    ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=Homelab test CA', '-keyout', 'ca.key', '-out', 'ca.crt']);
    ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=Some other CA', '-keyout', 'other.key', '-out', 'other.crt']);
    fs.writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
    ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=homeassistant.local', '-keyout', 'server.key', '-out', 'server.csr']);
    ssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'server.ext', '-out', 'server.crt']);
    ca = read('ca.crt');
    otherCa = read('other.crt');
    caKey = read('ca.key');
    fake = await FakeHaServer.start({ token: TOKEN, states: RACK_ENTITIES, tls: { key: read('server.key'), cert: read('server.crt') } });
  });
  after(async () => {
    await fake?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await helper.unload();
  });

  const warnings = warningsOf;

  it('with the CA certificate in the dialog the certificate is verified and it connects', async () => {
    const logins = fake.authAttempts.length;
    await helper.load(haMqttNodes, [haServer(fake.url, { ca }), ...publishNode()], creds());
    const st = await ownStatus('pub', (x) => x.fill === 'green', 8000);
    assert.equal(st.text, '0 UPS · HA connected');
    assert.equal(fake.authAttempts.length, logins + 1);
    assert.equal(helper.getNode('ha').client.status.text, `connected to Home Assistant 2025.1.0 at ${fake.url.replace(/^https/, 'wss')}`);
  });

  it('without the CA (or with another CA) the status says the certificate is not trusted, and the token is never sent', async () => {
    const logins = fake.authAttempts.length;
    for (const over of [{}, { ca: otherCa }]) {
      await helper.load(haMqttNodes, [haServer(fake.url, over), ...publishNode()], creds());
      const st = await ownStatus('pub', (x) => x.fill === 'red', 8000);
      assert.match(st.text ?? '', /^HA: TLS: the certificate of wss:\/\/127\.0\.0\.1:\d+ is not trusted \(unable to (get local issuer|verify the first) cert/);
      assert.ok(warnings('pub').some((w) => /is not trusted .*: add the CA certificate that signed it, or pin the certificate's SHA-256 fingerprint$/.test(w)), warnings('pub').join(' | '));
      await helper.unload();
    }
    assert.equal(fake.authAttempts.length, logins, 'no login: the token went nowhere');
  });

  it('a private key or a damaged certificate in the CA field is refused with a clear error, and nothing connects', async () => {
    const logins = fake.authAttempts.length;
    const lines = ca.trim().split('\n');
    const damaged = [...lines.slice(0, 3), ...lines.slice(6)].join('\n');
    for (const [text, why] of [[caKey, 'this is a private key: paste the CA certificate (-----BEGIN CERTIFICATE-----), never a key'], [damaged, 'the certificate cannot be read (cut off or changed while copying?)'], ['MIIB…', 'must be PEM text: -----BEGIN CERTIFICATE----- … -----END CERTIFICATE-----']]) {
      await helper.load(haMqttNodes, [haServer(fake.url, { ca: text }), ...publishNode()], creds());
      const n = helper.getNode('ha');
      assert.equal(n.configError, `invalid Home Assistant server configuration: ca: CA certificate: ${why}`);
      await ownStatus('pub', (x) => x.fill === 'red' && /^Home Assistant server: invalid Home Assistant server configuration: ca: CA certificate/.test(x.text ?? ''));
      await helper.unload();
    }
    assert.equal(fake.authAttempts.length, logins);
  });

  it('Test connection uses the CA from the dialog; the stored token only with the deployed CA', async () => {
    await helper.load(haMqttNodes, [haServer(fake.url, { ca })], creds());
    const body = { id: 'ha', url: fake.url, tlsVerify: true, tlsFingerprint: '', ca, token: '__PWRD__' };
    const ok = await helper.request().post('/upsorch-ha-server/test').send(body).expect(200);
    assert.equal(ok.body.ok, true, ok.body.message);
    assert.match(ok.body.message, /^connected to Home Assistant 2025\.1\.0 at wss:\/\/127\.0\.0\.1:\d+; 8 entities$/);
    const other = await helper.request().post('/upsorch-ha-server/test').send({ ...body, ca: otherCa }).expect(200);
    assert.deepEqual(other.body, { ok: false, message: 'the stored token is sent only to the deployed Home Assistant URL; enter the token again to test this one' });
    const typed = await helper.request().post('/upsorch-ha-server/test').send({ ...body, ca: '', token: TOKEN }).expect(200);
    assert.equal(typed.body.ok, false);
    assert.match(typed.body.message, /is not trusted/);
  });
});
