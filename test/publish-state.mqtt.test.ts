/**
 * Publish state → Home Assistant MQTT discovery, against a real Mosquitto broker on loopback, in the
 * real Node-RED runtime. The test plays Home Assistant: it reads the retained discovery configs and
 * states as HA would, and announces `homeassistant/status`.
 */
import { strict as assert } from 'node:assert';
import * as cp from 'node:child_process';
import * as path from 'node:path';
import { MosquittoPeer } from './peers/mosquitto';
import { MqttObserver } from './util/mqtt-observer';
import { deviceConfig, haMqttNodes, helper, send, sleep, upsIn, waitForStatus as ownStatus } from './util/red';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const pkg = require('../package.json') as { version: string };

const ORIGIN = {
  name: 'UPS orchestrator (node-red-contrib-ups-orchestrator)',
  sw_version: pkg.version,
  support_url: 'https://github.com/ups-orchestrator/node-red-contrib-ups-orchestrator',
};
const AVAILABILITY = [{ topic: 'ups-orchestrator/status' }];
const DEV = 'upsorch_ups_orchestrator_ups_rack_ups';
const DEVICE_BLOCK = { identifiers: [DEV], name: 'Rack UPS', manufacturer: 'node-red-contrib-ups-orchestrator', model: 'Simulated UPS' };
const STATE_TOPIC = 'ups-orchestrator/ups/rack_ups/state';
const cfgTopic = (component: string, key: string) => `homeassistant/${component}/${DEV}_${key}/config`;

/** The 12 entities of a UPS that reports every reading. */
const UPS_CONFIG_TOPICS = [
  cfgTopic('sensor', 'status'), cfgTopic('sensor', 'battery_charge'), cfgTopic('sensor', 'battery_runtime'), cfgTopic('sensor', 'load'),
  cfgTopic('sensor', 'input_voltage'), cfgTopic('sensor', 'output_voltage'), cfgTopic('sensor', 'real_power'), cfgTopic('sensor', 'temperature'),
  cfgTopic('binary_sensor', 'on_battery'), cfgTopic('binary_sensor', 'low_battery'), cfgTopic('binary_sensor', 'comm_problem'), cfgTopic('binary_sensor', 'replace_battery'),
].sort();

/** Every discovery config of the simulated Rack UPS, exactly as Home Assistant receives it. */
const common = { availability: AVAILABILITY, device: DEVICE_BLOCK, origin: ORIGIN };
const entity = (component: string, key: string, name: string, over: Record<string, unknown>) => ({
  name, unique_id: `${DEV}_${key}`, default_entity_id: `${component}.rack_ups_${key}`, state_topic: STATE_TOPIC, value_template: `{{ value_json.${key} }}`, ...over, ...common,
});
const ONOFF = { payload_on: 'ON', payload_off: 'OFF' };
const EXPECTED_UPS_CONFIGS: Record<string, unknown> = {
  [cfgTopic('sensor', 'status')]: entity('sensor', 'status', 'Status', {
    json_attributes_topic: STATE_TOPIC,
    json_attributes_template: '{{ {"flags": value_json.flags, "comm": value_json.comm, "comm_error": value_json.comm_error, "alarm": value_json.alarm, "untrusted": value_json.untrusted, "seconds_on_battery": value_json.seconds_on_battery} | tojson }}',
    icon: 'mdi:power-plug-battery',
  }),
  [cfgTopic('sensor', 'battery_charge')]: entity('sensor', 'battery_charge', 'Battery charge', { device_class: 'battery', unit_of_measurement: '%', state_class: 'measurement' }),
  [cfgTopic('sensor', 'battery_runtime')]: entity('sensor', 'battery_runtime', 'Battery runtime', { device_class: 'duration', unit_of_measurement: 's', state_class: 'measurement' }),
  [cfgTopic('sensor', 'load')]: entity('sensor', 'load', 'Load', { unit_of_measurement: '%', state_class: 'measurement', icon: 'mdi:gauge' }),
  [cfgTopic('sensor', 'input_voltage')]: entity('sensor', 'input_voltage', 'Input voltage', { device_class: 'voltage', unit_of_measurement: 'V', state_class: 'measurement' }),
  [cfgTopic('sensor', 'output_voltage')]: entity('sensor', 'output_voltage', 'Output voltage', { device_class: 'voltage', unit_of_measurement: 'V', state_class: 'measurement' }),
  [cfgTopic('sensor', 'real_power')]: entity('sensor', 'real_power', 'Real power', { device_class: 'power', unit_of_measurement: 'W', state_class: 'measurement' }),
  [cfgTopic('sensor', 'temperature')]: entity('sensor', 'temperature', 'Temperature', { device_class: 'temperature', unit_of_measurement: '°C', state_class: 'measurement', entity_category: 'diagnostic' }),
  [cfgTopic('binary_sensor', 'on_battery')]: entity('binary_sensor', 'on_battery', 'On battery', { icon: 'mdi:power-plug-off', ...ONOFF }),
  [cfgTopic('binary_sensor', 'low_battery')]: entity('binary_sensor', 'low_battery', 'Low battery', { device_class: 'battery', ...ONOFF }),
  [cfgTopic('binary_sensor', 'comm_problem')]: entity('binary_sensor', 'comm_problem', 'Communication problem', { device_class: 'problem', entity_category: 'diagnostic', ...ONOFF }),
  [cfgTopic('binary_sensor', 'replace_battery')]: entity('binary_sensor', 'replace_battery', 'Replace battery', { device_class: 'problem', ...ONOFF }),
};

function brokerConfig(port: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: 'broker', type: 'upsorch-mqtt-broker', name: '', host: '127.0.0.1', port, tls: false, tlsVerify: true, tlsFingerprint: '', ca: '', cert: '',
    clientId: '', baseTopic: 'ups-orchestrator', discoveryPrefix: 'homeassistant', keepalive: 60, ...over,
  };
}

function publishNode(over: Record<string, unknown> = {}): Record<string, unknown>[] {
  return [
    { id: 'pub', type: 'upsorch-publish-state', name: '', broker: 'broker', haServer: '', ups1: '', ups2: '', ups3: '', ups4: '', plan1: '', plan2: '', haEvents: true, wires: [['pub-out']], ...over },
    { id: 'pub-out', type: 'helper' },
  ];
}

const rackUps = (over: Record<string, unknown> = {}) => deviceConfig('dev', { name: 'Rack UPS', source: 'sim', ...over });


/** Wait until every topic in `topics` has been seen (retained or live). */
async function waitForTopics(o: MqttObserver, topics: string[], ms = 8000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const seen = new Set(o.seen.map((s) => s.topic));
    const missing = topics.filter((t) => !seen.has(t));
    if (!missing.length) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${missing.join(', ')}`);
    await sleep(50);
  }
}

/** The topics a retained index lists (without its device records, `$devices`). */
const indexTopics = (json: string): string[] => Object.keys(JSON.parse(json)).filter((k) => k !== '$devices');

/** Wait until the publisher's retained index lists `n` topics (the sync is complete). */
async function waitForIndex(port: number, pred: (topics: string[]) => boolean, ms = 8000): Promise<string[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await MqttObserver.retained(port, ['ups-orchestrator/publisher/+/index']);
    const idx = [...r.values()][0];
    const topics = idx ? indexTopics(idx) : [];
    if (pred(topics)) return topics;
    if (Date.now() > deadline) throw new Error(`timed out waiting for the publisher index; it lists ${topics.join(', ')}`);
    await sleep(100);
  }
}

describe('publish state: Home Assistant MQTT discovery with a real Mosquitto broker', function () {
  this.timeout(60000);
  let peer: MosquittoPeer;
  let observer: MqttObserver | undefined;

  beforeEach(async () => {
    peer = await MosquittoPeer.start();
  });
  afterEach(async () => {
    await helper.unload();
    await observer?.close();
    observer = undefined;
    await peer.dispose();
  });

  it('publishes the exact discovery configs of a UPS, retained, and its state', async () => {
    await helper.load(haMqttNodes, [brokerConfig(peer.port), rackUps(), ...publishNode({ ups1: 'dev' })]);
    observer = await MqttObserver.connect(peer.port, ['homeassistant/#', 'ups-orchestrator/#']);
    await waitForTopics(observer, [...UPS_CONFIG_TOPICS, STATE_TOPIC]);
    await waitForIndex(peer.port, (t) => t.length === 13);

    // What a Home Assistant that connects now gets: retained configs only.
    const retained = await MqttObserver.retained(peer.port, ['homeassistant/#']);
    assert.deepEqual([...retained.keys()].sort(), UPS_CONFIG_TOPICS);

    const got = Object.fromEntries(UPS_CONFIG_TOPICS.map((t) => [t, JSON.parse(retained.get(t)!)]));
    assert.deepEqual(got, EXPECTED_UPS_CONFIGS);
    assert.equal((got[cfgTopic('sensor', 'status')] as Record<string, unknown>).object_id, undefined, 'object_id is deprecated: default_entity_id instead');

    // the state, retained, and the availability topic (our last will) says online
    const state = await MqttObserver.retained(peer.port, [STATE_TOPIC, 'ups-orchestrator/status']);
    assert.equal(state.get('ups-orchestrator/status'), 'online');
    const s = JSON.parse(state.get(STATE_TOPIC)!);
    // what the simulated UPS (250 Wh, 900 W rated, 25 % load, on mains, full) reports
    assert.deepEqual(s, {
      status: 'Online', flags: 'OL', comm: 'ok', comm_error: null, battery_charge: 100, battery_runtime: 3600, load: 25,
      input_voltage: 230, output_voltage: 230, real_power: 225, temperature: 27.5,
      on_battery: 'OFF', low_battery: 'OFF', comm_problem: 'OFF', replace_battery: 'OFF', alarm: null, untrusted: [], seconds_on_battery: 0,
    });
    await ownStatus('pub', (x) => x.fill === 'green' && /1 UPS/.test(x.text ?? ''));
  });

  it('leaves out sensors for readings the UPS does not report', async () => {
    await helper.load(haMqttNodes, [brokerConfig(peer.port), ...publishNode()]);
    observer = await MqttObserver.connect(peer.port, ['homeassistant/#']);
    const state = {
      ups: 'Rack UPS', source: 'nut', ts: Date.now(), lastSeen: Date.now(), online: true, onBattery: false, lowBattery: false, fsd: false, charging: false,
      discharging: false, bypass: false, overload: false, trim: false, boost: false, calibrating: false, off: false, replaceBattery: false, alarm: false,
      flags: ['OL'], charge: 90, runtime: null, inputVoltage: null, outputVoltage: null, load: 20, realPower: null, temperature: null,
      secondsOnBattery: 0, comm: 'ok', commError: null, untrusted: [], alarmText: null, device: { mfr: null, model: null, serial: null }, raw: {},
    };
    send('pub', { payload: state });
    await waitForIndex(peer.port, (t) => t.length === 8);
    const retained = await MqttObserver.retained(peer.port, ['homeassistant/#']);
    assert.deepEqual([...retained.keys()].sort(), [
      cfgTopic('sensor', 'status'), cfgTopic('sensor', 'battery_charge'), cfgTopic('sensor', 'load'),
      cfgTopic('binary_sensor', 'on_battery'), cfgTopic('binary_sensor', 'low_battery'), cfgTopic('binary_sensor', 'comm_problem'), cfgTopic('binary_sensor', 'replace_battery'),
    ].sort());
    assert.deepEqual(JSON.parse(retained.get(cfgTopic('sensor', 'status'))!).device, { identifiers: [DEV], name: 'Rack UPS' });
  });

  it('a state change reaches the state topic before the next poll', async () => {
    await helper.load(haMqttNodes, [brokerConfig(peer.port), rackUps({ pollInterval: 1, pollIntervalOnBattery: 1 }), ...upsIn('in', 'dev', { wires: [['pub'], ['pub']] }), ...publishNode()]);
    observer = await MqttObserver.connect(peer.port, [STATE_TOPIC]);
    await observer.waitFor((s) => s.topic === STATE_TOPIC && JSON.parse(s.payload).on_battery === 'OFF', 8000);
    // every poll of the UPS, as the UPS in node sees it
    const polls: Array<{ at: number; onBattery: boolean }> = [];
    const unsubscribe = helper.getNode('dev').subscribe((st: any) => polls.push({ at: Date.now(), onBattery: st.onBattery }));
    try {
      const from = observer.seen.length;
      send('in', { topic: 'power-lost' });
      const got = await observer.waitFor((s) => s.topic === STATE_TOPIC && JSON.parse(s.payload).on_battery === 'ON', 5000, from);
      const first = polls.find((p) => p.onBattery)!;
      assert.ok(first, 'the UPS was read on battery');
      const deadline = Date.now() + 5000;
      while (!polls.some((p) => p.at > first.at) && Date.now() < deadline) await sleep(50);
      const next = polls.find((p) => p.at > first.at);
      assert.ok(next, 'a next poll');
      assert.ok(got.at <= next.at, `on battery reached MQTT ${got.at - first.at} ms after the poll that saw it, after the next poll (${next.at - first.at} ms)`);
      const s = JSON.parse(got.payload);
      assert.equal(s.status, 'On battery, discharging');
      assert.equal(s.flags, 'OB DISCHRG');
      assert.equal(got.retain, false, 'a live update (retained on the broker, delivered live to subscribers)');
    } finally {
      await unsubscribe();
    }
    const retained = await MqttObserver.retained(peer.port, [STATE_TOPIC]);
    assert.equal(JSON.parse(retained.get(STATE_TOPIC)!).on_battery, 'ON', 'the state is retained');
  });

  it('Home Assistant restarts (homeassistant/status = online): every config is sent again', async () => {
    await helper.load(haMqttNodes, [brokerConfig(peer.port), rackUps(), ...publishNode({ ups1: 'dev' })]);
    await waitForIndex(peer.port, (t) => t.length === 13);
    observer = await MqttObserver.connect(peer.port, ['homeassistant/+/+/config']);
    await sleep(300);
    const from = observer.seen.length;
    assert.equal(observer.find((s) => !s.retain, from).length, 0);
    await observer.publish('homeassistant/status', 'online');
    await observer.waitFor(() => observer!.find((s) => !s.retain, from).length >= UPS_CONFIG_TOPICS.length, 5000, from, 'the re-sent configs');
    const resent = observer.find((s) => !s.retain, from);
    assert.deepEqual([...new Set(resent.map((s) => s.topic))].sort(), UPS_CONFIG_TOPICS);
    assert.ok(resent.every((s) => s.payload.length > 0));
  });

  it('restarting the flow publishes no duplicate configs (the restarted publisher is working)', async () => {
    const flow = [brokerConfig(peer.port), rackUps(), ...publishNode({ ups1: 'dev' })];
    await helper.load(haMqttNodes, flow);
    await waitForIndex(peer.port, (t) => t.length === 13);
    observer = await MqttObserver.connect(peer.port, ['homeassistant/#', STATE_TOPIC, 'ups-orchestrator/publisher/#']);
    await sleep(300);
    const from = observer.seen.length;
    await helper.unload();
    await helper.load(haMqttNodes, flow);
    // the restarted publisher is at work: it publishes the state again after connecting, and follows a change
    await observer.waitFor((m) => m.topic === STATE_TOPIC && !m.retain && JSON.parse(m.payload).on_battery === 'OFF', 8000, from, 'the state after the restart');
    await helper.getNode('dev').simulate('power-lost', undefined);
    await observer.waitFor((m) => m.topic === STATE_TOPIC && !m.retain && JSON.parse(m.payload).on_battery === 'ON', 8000, from, 'on battery after the restart');
    // an entity that was missing would be published by now; a re-sent config too
    const live = observer.find((s) => !s.retain, from);
    assert.deepEqual(live.filter((s) => s.topic.startsWith('homeassistant/')).map((s) => s.topic), [], 'no config re-published');
    assert.deepEqual(live.filter((s) => s.topic.includes('/publisher/')).map((s) => s.topic), [], 'index unchanged');
    const retained = await MqttObserver.retained(peer.port, ['homeassistant/#']);
    assert.deepEqual([...retained.keys()].sort(), UPS_CONFIG_TOPICS, 'and every config is still there');
  });

  it('deleting a UPS in node removes its UPS from Home Assistant; deleting the publish node removes everything', async () => {
    const second = deviceConfig('dev2', { name: 'Second UPS', source: 'sim' });
    const flow = [
      brokerConfig(peer.port), rackUps(), second,
      ...upsIn('in', 'dev', { wires: [['pub'], []] }), ...upsIn('in2', 'dev2', { wires: [['pub'], []] }),
      ...publishNode(),
    ];
    await helper.load(haMqttNodes, flow);
    await waitForIndex(peer.port, (t) => t.length === 26);
    observer = await MqttObserver.connect(peer.port, ['homeassistant/#', 'ups-orchestrator/#']);
    await sleep(300);

    // delete "in" (and its helpers), deploy modified nodes only: the publish node itself is not restarted
    let from = observer.seen.length;
    await helper.setFlows(flow.filter((n) => !String(n.id).startsWith('in-') && n.id !== 'in'), 'nodes');
    await observer.waitFor(() => observer!.find((s) => !s.retain && s.payload === '' && s.topic.includes('rack_ups'), from).length >= 13, 8000, from, 'empty configs for Rack UPS');
    let retained = await MqttObserver.retained(peer.port, ['homeassistant/#', 'ups-orchestrator/ups/#']);
    assert.equal([...retained.keys()].filter((t) => t.includes('rack_ups')).length, 0, 'no retained config or state of Rack UPS left');
    assert.equal([...retained.keys()].filter((t) => t.includes('second_ups') && t.startsWith('homeassistant/')).length, 12, 'Second UPS stays');

    // delete the publish node
    from = observer.seen.length;
    await helper.setFlows(flow.filter((n) => !String(n.id).startsWith('in') && !String(n.id).startsWith('pub')), 'nodes');
    await observer.waitFor(() => observer!.find((s) => !s.retain && s.payload === '' && s.topic.includes('second_ups'), from).length >= 13, 8000, from, 'empty configs for Second UPS');
    retained = await MqttObserver.retained(peer.port, ['homeassistant/#', 'ups-orchestrator/#']);
    assert.deepEqual([...retained.keys()].filter((t) => t !== 'ups-orchestrator/status'), [], 'nothing of ours is left on the broker');
  });

  it('a UPS deleted while Node-RED was stopped is removed at the next start (the retained index)', async () => {
    const flow = [brokerConfig(peer.port), rackUps(), ...upsIn('in', 'dev', { wires: [['pub'], []] }), ...publishNode()];
    await helper.load(haMqttNodes, flow);
    await waitForIndex(peer.port, (t) => t.length === 13);
    await helper.unload();
    observer = await MqttObserver.connect(peer.port, ['homeassistant/#']);
    await sleep(300);
    const from = observer.seen.length;
    // Node-RED starts again with the UPS in node (and its UPS device) gone
    await helper.load(haMqttNodes, flow.filter((n) => !String(n.id).startsWith('in') && n.id !== 'dev'));
    await observer.waitFor(() => observer!.find((s) => !s.retain && s.payload === '', from).length >= 12, 8000, from, 'empty configs');
    await waitForIndex(peer.port, (t) => t.length === 0);
    const retained = await MqttObserver.retained(peer.port, ['homeassistant/#', 'ups-orchestrator/ups/#']);
    assert.deepEqual([...retained.keys()], []);
  });

  it('a publish node deleted while the broker was unreachable: its entities are swept at the next start', async () => {
    const keep = deviceConfig('devk', { name: 'Keep UPS', source: 'sim' });
    const flow = [brokerConfig(peer.port), rackUps(), keep, ...publishNode({ ups1: 'dev' }), { ...publishNode({ ups1: 'devk' })[0], id: 'pubk', wires: [] }];
    await helper.load(haMqttNodes, flow);
    const indexes = async () => MqttObserver.retained(peer.port, ['ups-orchestrator/publisher/+/index']);
    const deadline = Date.now() + 8000;
    while ([...(await indexes()).values()].filter((v) => indexTopics(v).length === 13).length < 2) {
      if (Date.now() > deadline) throw new Error('timed out waiting for both publishers');
    }
    // not ours to touch: another base topic's publisher, and a discovery config no index lists
    const o = await MqttObserver.connect(peer.port, []);
    await o.publish('other-base/publisher/gone/index', JSON.stringify({ 'homeassistant/sensor/x_other/config': { h: 'abc', d: 'x' } }), true);
    await o.publish('homeassistant/sensor/x_other/config', '{"name":"other"}', true);
    await o.close();
    // Node-RED stops; the publish node "pub" is deleted while nothing can reach the broker
    await helper.unload();
    let retained = await MqttObserver.retained(peer.port, ['homeassistant/#', 'ups-orchestrator/#']);
    assert.equal([...retained.keys()].filter((t) => t.includes('rack_ups')).length, 13, 'the ghost entities are there before the start');

    await helper.load(haMqttNodes, flow.filter((n) => n.id !== 'pub' && n.id !== 'pub-out'));
    observer = await MqttObserver.connect(peer.port, ['ups-orchestrator/publisher/+/index']);
    await observer.waitFor((m) => m.topic === 'ups-orchestrator/publisher/pub/index' && m.payload === '' && !m.retain, 8000, 0, 'the swept index');
    retained = await MqttObserver.retained(peer.port, ['homeassistant/#', 'ups-orchestrator/#', 'other-base/#']);
    assert.deepEqual([...retained.keys()].filter((t) => t.includes('rack_ups') || t.includes('/publisher/pub/')), [], 'nothing of the deleted publish node is left');
    assert.equal([...retained.keys()].filter((t) => t.startsWith('homeassistant/') && t.includes('keep_ups')).length, 12, 'the deployed publish node keeps its entities');
    assert.ok(retained.has('ups-orchestrator/publisher/pubk/index'));
    assert.equal(retained.get('homeassistant/sensor/x_other/config'), '{"name":"other"}');
    assert.ok(retained.has('other-base/publisher/gone/index'));
    const n = helper.getNode('pubk');
    assert.ok(n.log.getCalls().some((c: any) => /removed the Home Assistant entities left by 1 deleted publish node \(pub\)/.test(String(c.args[0]))));
    // clean up what this test planted outside our base topic
    const c = await MqttObserver.connect(peer.port, []);
    await c.publish('other-base/publisher/gone/index', '', true);
    await c.publish('homeassistant/sensor/x_other/config', '', true);
    await c.close();
  });

  it('two UPS devices with one name: the first keeps its Home Assistant device, the second gets its own, and the node says so', async () => {
    const twin = deviceConfig('dev2', { name: 'Rack UPS', source: 'sim', simLoad: 50 });
    await helper.load(haMqttNodes, [brokerConfig(peer.port), rackUps(), twin, ...publishNode({ ups1: 'dev', ups2: 'dev2' })]);
    const TWIN = 'upsorch_ups_orchestrator_ups_rack_ups_dev2';
    await waitForIndex(peer.port, (t) => t.length === 26);
    const retained = await MqttObserver.retained(peer.port, ['homeassistant/#', 'ups-orchestrator/ups/#']);
    assert.deepEqual([...retained.keys()].filter((t) => t.startsWith('homeassistant/')).sort(), [...UPS_CONFIG_TOPICS, ...UPS_CONFIG_TOPICS.map((t) => t.replace(DEV, TWIN))].sort());
    assert.deepEqual(JSON.parse(retained.get(cfgTopic('sensor', 'load'))!).device, DEVICE_BLOCK, 'the first keeps its ids and name');
    const twinLoad = JSON.parse(retained.get(`homeassistant/sensor/${TWIN}_load/config`)!);
    assert.deepEqual([twinLoad.device.name, twinLoad.default_entity_id, twinLoad.state_topic], ['Rack UPS (dev2)', 'sensor.rack_ups_dev2_load', 'ups-orchestrator/ups/rack_ups_dev2/state']);
    assert.equal(JSON.parse(retained.get(STATE_TOPIC)!).load, 25);
    assert.equal(JSON.parse(retained.get('ups-orchestrator/ups/rack_ups_dev2/state')!).load, 50, 'each shows its own readings');
    const text = '2 UPS devices are called "Rack UPS" (simulated UPS "Rack UPS", simulated UPS "Rack UPS"): Home Assistant shows "Rack UPS (dev2)" besides "Rack UPS" (simulated UPS "Rack UPS"); or give each UPS device its own name';
    const n = helper.getNode('pub');
    assert.deepEqual(n.warn.getCalls().filter((c: any) => c.thisValue === n).map((c: any) => String(c.args[0])), [`Home Assistant: ${text}`]);
    await ownStatus('pub', (x) => x.fill === 'yellow' && (x.text ?? '').startsWith('2 UPS · 2 UPS devices are called "Rack UPS"'));
  });

  it('two wired UPS in nodes whose UPS devices share a name: a clear warning that they merge', async () => {
    const twin = deviceConfig('dev2', { name: 'Rack UPS', source: 'sim' });
    await helper.load(haMqttNodes, [
      brokerConfig(peer.port), rackUps(), twin, ...upsIn('in', 'dev', { wires: [['pub'], []] }), ...upsIn('in2', 'dev2', { wires: [['pub'], []] }), ...publishNode(),
    ]);
    await ownStatus('pub', (x) => x.fill === 'yellow' && /^1 UPS · 2 UPS devices are called "Rack UPS"/.test(x.text ?? ''), 8000);
    const n = helper.getNode('pub');
    const w = n.warn.getCalls().filter((c: any) => c.thisValue === n).map((c: any) => String(c.args[0]));
    assert.deepEqual(w, ['Home Assistant: 2 UPS devices are called "Rack UPS" (simulated UPS "Rack UPS", simulated UPS "Rack UPS"): simulated UPS "Rack UPS" reaches this node only as messages, which carry the name alone, and merge into "Rack UPS" in Home Assistant – choose it in this node\'s UPS list instead of wiring; or give each UPS device its own name']);
  });

  it('the Node-RED process dies: the broker publishes our last will, offline', async () => {
    observer = await MqttObserver.connect(peer.port, ['ups-orchestrator/status']);
    const child = cp.spawn(process.execPath, ['--require', 'tsx/cjs', path.join(__dirname, 'fixtures', 'mqtt-client-child.ts'), String(peer.port)], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await observer.waitFor((s) => s.topic === 'ups-orchestrator/status' && s.payload === 'online', 15000);
      const from = observer.seen.length;
      child.kill('SIGKILL');
      const offline = await observer.waitFor((s) => s.topic === 'ups-orchestrator/status', 5000, from);
      assert.equal(offline.payload, 'offline');
      const retained = await MqttObserver.retained(peer.port, ['ups-orchestrator/status']);
      assert.equal(retained.get('ups-orchestrator/status'), 'offline', 'retained, so Home Assistant sees it after its own restart');
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  it('a clean stop publishes offline too; entities stay (they show unavailable)', async () => {
    await helper.load(haMqttNodes, [brokerConfig(peer.port), rackUps(), ...publishNode({ ups1: 'dev' })]);
    await waitForIndex(peer.port, (t) => t.length === 13);
    await helper.unload();
    const retained = await MqttObserver.retained(peer.port, ['ups-orchestrator/status', 'homeassistant/#']);
    assert.equal(retained.get('ups-orchestrator/status'), 'offline');
    assert.equal([...retained.keys()].filter((t) => t.startsWith('homeassistant/')).length, 12);
  });
});

describe('publish state: broker with passwords (real Mosquitto)', function () {
  this.timeout(60000);
  let peer: MosquittoPeer;
  before(async () => {
    peer = await MosquittoPeer.start({ users: { upsuser: 'upspass' } });
  });
  after(async () => {
    await peer.dispose();
  });
  afterEach(async () => {
    await helper.unload();
  });

  it('the right password connects and publishes', async () => {
    await helper.load(haMqttNodes, [brokerConfig(peer.port), rackUps(), ...publishNode({ ups1: 'dev' })], { broker: { username: 'upsuser', password: 'upspass' } });
    await ownStatus('pub', (x) => x.fill === 'green' && /MQTT connected/.test(x.text ?? ''), 8000);
    const o = await MqttObserver.connect(peer.port, ['homeassistant/#'], { username: 'upsuser', password: 'upspass' });
    try {
      await o.waitFor((s) => s.topic === cfgTopic('sensor', 'battery_charge'), 5000);
    } finally {
      await o.close();
    }
  });

  it('a wrong password gives a clear status, and the password never shows', async () => {
    await helper.load(haMqttNodes, [brokerConfig(peer.port), rackUps(), ...publishNode({ ups1: 'dev' })], { broker: { username: 'upsuser', password: 'secret-wrong' } });
    const st = await ownStatus('pub', (x) => x.fill === 'red', 8000);
    assert.match(st.text ?? '', /MQTT: refused: not authorized \(check username and password\)/);
    assert.doesNotMatch(st.text ?? '', /secret-wrong/);
  });

  it('no username on a broker that needs one: the same clear status', async () => {
    await helper.load(haMqttNodes, [brokerConfig(peer.port), ...publishNode()]);
    const st = await ownStatus('pub', (x) => x.fill === 'red', 8000);
    assert.match(st.text ?? '', /not authorized/);
  });

  it('an invalid broker config shows what is wrong, and input fails with done(err)', async () => {
    await helper.load(haMqttNodes, [brokerConfig(peer.port, { port: 'abc', baseTopic: 'a/#' }), ...publishNode()]);
    const st = await ownStatus('pub', (x) => x.fill === 'red', 5000);
    assert.match(st.text ?? '', /port must be a number|base topic/);
    const errs: string[] = [];
    helper.getNode('pub').on('call:error', (call: any) => errs.push(String(call.args[0]?.message ?? call.args[0])));
    send('pub', { payload: { ups: 'x' } });
    await sleep(200);
    assert.ok(errs.some((e) => /not working/.test(e)), errs.join(' | '));
  });
});

// Node-RED's own inject and function nodes: a UPS state that comes from neither a UPS in node nor
// this node's UPS list (an MQTT in node, a function building it from another integration …).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const injectNode = require('@node-red/nodes/core/common/20-inject.js');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const functionNode = require('@node-red/nodes/core/function/10-function.js');
const coreAndOurs = [...haMqttNodes, injectNode, functionNode];

const GARAGE = 'upsorch_ups_orchestrator_ups_garage_ups';
const garageTopic = (component: string, key: string) => `homeassistant/${component}/${GARAGE}_${key}/config`;
/** A state with charge and load only: 7 entities. */
const GARAGE_CONFIG_TOPICS = [
  garageTopic('sensor', 'status'), garageTopic('sensor', 'battery_charge'), garageTopic('sensor', 'load'),
  garageTopic('binary_sensor', 'on_battery'), garageTopic('binary_sensor', 'low_battery'), garageTopic('binary_sensor', 'comm_problem'), garageTopic('binary_sensor', 'replace_battery'),
].sort();
const GARAGE_STATE_TOPIC = 'ups-orchestrator/ups/garage_ups/state';
const garageState = {
  ups: 'Garage UPS', source: 'nut', flags: ['OL'], comm: 'ok', online: true, onBattery: false, charge: 90, runtime: null, load: 20,
  inputVoltage: null, outputVoltage: null, realPower: null, temperature: null,
};

/** inject → function (sets the readings it got from elsewhere) → publish state. */
function unknownOriginFlow(port: number, over: Record<string, unknown> = {}): Record<string, unknown>[] {
  return [
    brokerConfig(port),
    { id: 'inj', type: 'inject', name: '', props: [{ p: 'payload' }], payload: JSON.stringify(garageState), payloadType: 'json', repeat: '', crontab: '', once: false, onceDelay: 0.1, topic: '', wires: [['fn']] },
    { id: 'fn', type: 'function', name: '', func: 'msg.payload.ts = Date.now();\nreturn msg;', outputs: 1, timeout: 0, noerr: 0, initialize: '', finalize: '', libs: [], wires: [['pub']] },
    ...publishNode(over),
  ];
}

/** Configs Home Assistant was told to delete (an empty retained config), seen live since `from`. */
const removals = (o: MqttObserver, from: number) => o.find((s) => !s.retain && s.payload === '' && s.topic.startsWith('homeassistant/'), from).map((s) => s.topic);

describe('publish state: UPS states of unknown origin (inject / function / MQTT in) over a real Mosquitto broker', function () {
  this.timeout(60000);
  let peer: MosquittoPeer;
  let observer: MqttObserver | undefined;

  beforeEach(async () => {
    peer = await MosquittoPeer.start();
  });
  afterEach(async () => {
    await helper.unload();
    await observer?.close();
    observer = undefined;
    await peer.dispose();
  });

  it('its entities survive a restart of Node-RED (no empty config); deleting the publish node removes them', async () => {
    const flow = unknownOriginFlow(peer.port);
    await helper.load(coreAndOurs, flow);
    await ownStatus('pub', (x) => x.fill === 'green', 8000);
    send('inj', {});
    await waitForIndex(peer.port, (t) => t.length === 8);
    observer = await MqttObserver.connect(peer.port, ['homeassistant/#', 'ups-orchestrator/#']);
    await sleep(300);
    let from = observer.seen.length;

    // Node-RED restarts; nothing sends a Garage UPS state for a while
    await helper.unload();
    await helper.load(coreAndOurs, flow);
    await ownStatus('pub', (x) => x.fill === 'green', 8000);
    // the restarted publisher has read its index back and acted on it (a removal would be out by now)
    await sleep(2500);
    assert.deepEqual(removals(observer, from), [], 'no entity of Garage UPS was removed');
    let retained = await MqttObserver.retained(peer.port, ['homeassistant/#', GARAGE_STATE_TOPIC]);
    assert.deepEqual([...retained.keys()].filter((t) => t.startsWith('homeassistant/')).sort(), GARAGE_CONFIG_TOPICS, 'Home Assistant keeps every entity');
    assert.equal(JSON.parse(retained.get(GARAGE_STATE_TOPIC)!).battery_charge, 90, 'and the last state');

    // the next state updates the same entities: no config is published again
    send('inj', {});
    await observer.waitFor((s) => s.topic === GARAGE_STATE_TOPIC && !s.retain, 5000, from, 'the next state');
    await sleep(500);
    assert.deepEqual(observer.find((s) => !s.retain && s.topic.startsWith('homeassistant/'), from).map((s) => s.topic), [], 'no config re-published');

    // the publish node is deleted, with the inject and function nodes in front of it
    from = observer.seen.length;
    await helper.setFlows(flow.filter((n) => n.id === 'broker'), 'nodes');
    await observer.waitFor(() => removals(observer!, from).length >= 7, 8000, from, 'empty configs for Garage UPS');
    assert.deepEqual(removals(observer, from).sort(), GARAGE_CONFIG_TOPICS);
    retained = await MqttObserver.retained(peer.port, ['homeassistant/#', 'ups-orchestrator/#']);
    assert.deepEqual([...retained.keys()].filter((t) => t !== 'ups-orchestrator/status'), [], 'nothing of ours is left on the broker');
  });

  it("msg.topic 'forget' removes such a UPS at once, also after a restart; a UPS this node knows where from is refused", async () => {
    const listed = deviceConfig('dev', { name: 'Rack UPS', source: 'sim' });
    const flow = [...unknownOriginFlow(peer.port, { ups1: 'dev' }), listed];
    await helper.load(coreAndOurs, flow);
    await ownStatus('pub', (x) => x.fill === 'green', 8000);
    send('inj', {});
    await waitForIndex(peer.port, (t) => t.length === 8 + 13);
    await helper.unload();
    await helper.load(coreAndOurs, flow);
    await ownStatus('pub', (x) => x.fill === 'green', 8000);
    observer = await MqttObserver.connect(peer.port, ['homeassistant/#', 'ups-orchestrator/#']);
    await sleep(300);
    const from = observer.seen.length;
    const n = helper.getNode('pub');
    const errors: string[] = [];
    n.on('call:error', (call: any) => errors.push(String(call.args[0]?.message ?? call.args[0])));

    send('pub', { topic: 'forget', payload: 'Garage UPS' });
    await observer.waitFor(() => removals(observer!, from).length >= 7, 8000, from, 'empty configs for Garage UPS');
    assert.deepEqual(removals(observer, from).sort(), GARAGE_CONFIG_TOPICS);
    const topics = await waitForIndex(peer.port, (t) => t.length === 13);
    assert.ok(topics.every((t) => t.includes('rack_ups')), 'Rack UPS (from the UPS list) stays');
    const retained = await MqttObserver.retained(peer.port, ['homeassistant/#', 'ups-orchestrator/ups/#']);
    assert.deepEqual([...retained.keys()].filter((t) => t.includes('garage_ups')), [], 'neither config nor state of Garage UPS is left');
    assert.ok(n.log.getCalls().some((c: any) => /removed UPS "Garage UPS" from Home Assistant \(forget\)/.test(String(c.args[0]))));

    send('pub', { topic: 'forget', payload: 'Rack UPS' });
    send('pub', { topic: 'forget', payload: 'Attic UPS' });
    send('pub', { topic: 'forget', payload: '' });
    await sleep(300);
    assert.deepEqual(errors, [
      'forget: "Rack UPS" comes from this node\'s UPS list or a wired UPS in node and would come back at once; remove it there and deploy',
      'forget: this node has no UPS called "Attic UPS" in Home Assistant',
      'forget: msg.payload must be the name of the UPS to remove from Home Assistant',
    ]);
    assert.equal(removals(observer, from).filter((t) => t.includes('rack_ups')).length, 0);
  });

  it('such a UPS leaves Home Assistant after the grace period without a state (here 2 s), and the log says why', async () => {
    await helper.load(coreAndOurs, unknownOriginFlow(peer.port, { forgetAfter: 2 / 86400 }));
    await ownStatus('pub', (x) => x.fill === 'green', 8000);
    observer = await MqttObserver.connect(peer.port, ['homeassistant/#']);
    send('inj', {});
    await waitForIndex(peer.port, (t) => t.length === 8);
    const sent = Date.now();
    await observer.waitFor(() => removals(observer!, 0).length >= 7, 10000, 0, 'the entities removed after the grace period');
    assert.ok(Date.now() - sent >= 1500, `removed ${Date.now() - sent} ms after its last state, before the grace period ran out`);
    assert.deepEqual(removals(observer, 0).sort(), GARAGE_CONFIG_TOPICS);
    await waitForIndex(peer.port, (t) => t.length === 0);
    const n = helper.getNode('pub');
    assert.ok(n.log.getCalls().some((c: any) => /^removed UPS "Garage UPS" from Home Assistant: no state for \d+ min$/.test(String(c.args[0]))), n.log.getCalls().map((c: any) => c.args[0]).join(' | '));
    await ownStatus('pub', (x) => /^0 UPS/.test(x.text ?? ''));
  });
});
