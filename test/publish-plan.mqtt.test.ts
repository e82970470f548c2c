/**
 * A plan as a Home Assistant device: discovery configs, state, and the controls (buttons, armed
 * switch) pressed over MQTT as Home Assistant would, against a real Mosquitto broker, with the real
 * plan and phase nodes (phases without actions, so a run is quick and touches nothing). Run steps
 * go to the fake Home Assistant's event bus.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MosquittoPeer } from './peers/mosquitto';
import { FakeHaServer } from './fakes/ha-server';
import { MqttObserver } from './util/mqtt-observer';
import { Collector, deviceConfig, haMqttNodes, helper, sleep, waitForStatus as ownStatus, warningsOf } from './util/red';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const planNode = require('../nodes/upsorch-plan');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const phaseNode = require('../nodes/upsorch-phase');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const pkg = require('../package.json') as { version: string };
const NODES = [...haMqttNodes, planNode, phaseNode];

const ORIGIN = {
  name: 'UPS orchestrator (node-red-contrib-ups-orchestrator)',
  sw_version: pkg.version,
  support_url: 'https://github.com/ups-orchestrator/node-red-contrib-ups-orchestrator',
};
const DEV = 'upsorch_ups_orchestrator_plan_homelab_plan';
const BASE = 'ups-orchestrator/plan/homelab_plan';
const STATE = `${BASE}/state`;
const DEVICE_BLOCK = { identifiers: [DEV], name: 'Plan Homelab', manufacturer: 'UPS orchestrator', model: 'Shutdown and startup plan' };
const AVAILABILITY = [{ topic: 'ups-orchestrator/status' }];
const cfgTopic = (component: string, key: string) => `homeassistant/${component}/${DEV}_${key}/config`;
const PLAN_CONFIG_TOPICS = [
  cfgTopic('sensor', 'state'), cfgTopic('sensor', 'current_phase'), cfgTopic('sensor', 'progress'), cfgTopic('sensor', 'last_result'),
  cfgTopic('sensor', 'time_budget_margin'), cfgTopic('sensor', 'last_command'), cfgTopic('binary_sensor', 'remote_runs'),
  cfgTopic('button', 'run_shutdown'), cfgTopic('button', 'run_startup'), cfgTopic('button', 'dry_run'), cfgTopic('button', 'cancel'), cfgTopic('switch', 'armed'),
].sort();

/** Every discovery config of the plan device, exactly as Home Assistant receives it. */
const common = { availability: AVAILABILITY, device: DEVICE_BLOCK, origin: ORIGIN };
const sensor = (key: string, name: string, over: Record<string, unknown>) => ({
  name, unique_id: `${DEV}_${key}`, default_entity_id: `sensor.plan_homelab_${key}`, state_topic: STATE, value_template: `{{ value_json.${key} }}`, ...over, ...common,
});
const button = (key: string, name: string, icon: string) => ({
  name, unique_id: `${DEV}_${key}`, default_entity_id: `button.plan_homelab_${key}`, icon, command_topic: `${BASE}/set/${key}`, payload_press: 'PRESS', ...common,
});
const EXPECTED_PLAN_CONFIGS: Record<string, unknown> = {
  [cfgTopic('sensor', 'state')]: sensor('state', 'State', { device_class: 'enum', options: ['idle', 'armed', 'running', 'done', 'failed'], icon: 'mdi:state-machine' }),
  [cfgTopic('sensor', 'current_phase')]: sensor('current_phase', 'Current phase', { icon: 'mdi:format-list-numbered' }),
  [cfgTopic('sensor', 'progress')]: sensor('progress', 'Progress', { unit_of_measurement: '%', state_class: 'measurement', icon: 'mdi:progress-clock' }),
  [cfgTopic('sensor', 'last_result')]: {
    name: 'Last result',
    unique_id: `${DEV}_last_result`,
    default_entity_id: 'sensor.plan_homelab_last_result',
    state_topic: STATE,
    value_template: '{{ value_json.last_result }}',
    json_attributes_topic: STATE,
    json_attributes_template: '{{ {"run_id": value_json.last_run_id, "direction": value_json.last_run_direction, "dry_run": value_json.last_run_dry_run, "state": value_json.last_run_state, "ended_at": value_json.last_run_ended_at} | tojson }}',
    icon: 'mdi:clipboard-check-outline',
    ...common,
  },
  [cfgTopic('sensor', 'time_budget_margin')]: sensor('time_budget_margin', 'Time-budget margin', { device_class: 'duration', unit_of_measurement: 's', state_class: 'measurement', icon: 'mdi:timer-sand' }),
  [cfgTopic('sensor', 'last_command')]: sensor('last_command', 'Last command', { entity_category: 'diagnostic', icon: 'mdi:message-reply-text' }),
  [cfgTopic('binary_sensor', 'remote_runs')]: {
    name: 'Remote runs allowed',
    unique_id: `${DEV}_remote_runs`,
    default_entity_id: 'binary_sensor.plan_homelab_remote_runs',
    state_topic: STATE,
    value_template: '{{ value_json.remote_runs }}',
    entity_category: 'diagnostic',
    icon: 'mdi:remote',
    payload_on: 'ON',
    payload_off: 'OFF',
    ...common,
  },
  [cfgTopic('button', 'run_shutdown')]: button('run_shutdown', 'Run shutdown', 'mdi:power'),
  [cfgTopic('button', 'run_startup')]: button('run_startup', 'Run startup', 'mdi:play-circle-outline'),
  [cfgTopic('button', 'dry_run')]: button('dry_run', 'Dry-run', 'mdi:test-tube'),
  [cfgTopic('button', 'cancel')]: button('cancel', 'Cancel', 'mdi:cancel'),
  [cfgTopic('switch', 'armed')]: {
    name: 'Armed',
    unique_id: `${DEV}_armed`,
    default_entity_id: 'switch.plan_homelab_armed',
    state_topic: STATE,
    value_template: '{{ value_json.armed }}',
    icon: 'mdi:shield-check',
    command_topic: `${BASE}/set/armed`,
    payload_on: 'ON',
    payload_off: 'OFF',
    state_on: 'ON',
    state_off: 'OFF',
    ...common,
  },
};

function flow(port: number, planOver: Record<string, unknown> = {}, pubOver: Record<string, unknown> = {}): Record<string, unknown>[] {
  return [
    {
      id: 'broker', type: 'upsorch-mqtt-broker', name: '', host: '127.0.0.1', port, tls: false, tlsVerify: true, tlsFingerprint: '', ca: '', cert: '',
      clientId: '', baseTopic: 'ups-orchestrator', discoveryPrefix: 'homeassistant', keepalive: 60,
    },
    { id: 'homelab-plan', type: 'upsorch-plan', name: 'Homelab', armed: true, allowRemote: false, stateDir: '', ...planOver },
    {
      id: 'p1', type: 'upsorch-phase', name: 'VMs', plan: 'homelab-plan', mode: 'parallel', stepDelay: 0, wait: true, onFailure: 'continue', timeout: '',
      pointOfNoReturn: false, direction: 'both', gate: false, gateUps: '', gateRuntime: 10, wires: [[], ['p2']],
    },
    {
      id: 'p2', type: 'upsorch-phase', name: 'Hosts', plan: 'homelab-plan', mode: 'parallel', stepDelay: 0, wait: true, onFailure: 'continue', timeout: '',
      pointOfNoReturn: false, direction: 'both', gate: false, gateUps: '', gateRuntime: 10, wires: [[], ['report']],
    },
    { id: 'report', type: 'helper' },
    deviceConfig('dev', { name: 'Rack UPS', source: 'sim' }),
    { id: 'pub', type: 'upsorch-publish-state', name: '', broker: 'broker', haServer: '', ups1: 'dev', ups2: '', ups3: '', ups4: '', plan1: 'homelab-plan', plan2: '', haEvents: true, wires: [['pub-out']], ...pubOver },
    { id: 'pub-out', type: 'helper' },
  ];
}


const press = (o: MqttObserver, key: string, payload = 'PRESS') => o.publish(`${BASE}/set/${key}`, payload);
const stateOf = (o: MqttObserver, pred: (s: any) => boolean, from: number, ms = 8000) =>
  o.waitFor((m) => m.topic === STATE && pred(JSON.parse(m.payload)), ms, from, 'a plan state').then((m) => JSON.parse(m.payload));
const warnings = warningsOf;

describe('publish state: a plan as a Home Assistant device (real Mosquitto, real plan and phases)', function () {
  this.timeout(60000);
  let peer: MosquittoPeer;
  let o: MqttObserver;
  let userDir: string;

  beforeEach(async () => {
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-plan-ha-'));
    helper.settings({ userDir });
    peer = await MosquittoPeer.start();
    o = await MqttObserver.connect(peer.port, ['homeassistant/#', `${BASE}/#`]);
  });
  afterEach(async () => {
    await helper.unload();
    await o.close();
    await peer.dispose();
    fs.rmSync(userDir, { recursive: true, force: true });
  });
  after(() => helper.settings({ userDir: undefined }));

  it('publishes the exact discovery configs of a plan device, retained, and its state', async () => {
    await helper.load(NODES, flow(peer.port));
    await o.waitFor(() => PLAN_CONFIG_TOPICS.every((t) => o.seen.some((s) => s.topic === t)), 8000, 0, 'the plan configs');
    await sleep(300);
    const retained = await MqttObserver.retained(peer.port, ['homeassistant/#', STATE]);
    assert.deepEqual([...retained.keys()].filter((t) => t.includes(DEV)).sort(), PLAN_CONFIG_TOPICS);
    const got = Object.fromEntries(PLAN_CONFIG_TOPICS.map((t) => [t, JSON.parse(retained.get(t)!)]));
    assert.deepEqual(got, EXPECTED_PLAN_CONFIGS);

    const st = await stateOf(o, (s) => typeof s.time_budget_margin === 'number', 0);
    assert.equal(st.state, 'armed');
    assert.equal(st.armed, 'ON');
    assert.equal(st.remote_runs, 'OFF');
    assert.equal(st.current_phase, null);
    assert.equal(st.progress, null);
    assert.equal(st.last_result, null);
    // margin = the UPS's runtime minus the plan's expected duration: these two phases have no actions,
    // so each may take only the run's own 10 s margin per phase (the same formula a run times out by)
    const ups = JSON.parse((await MqttObserver.retained(peer.port, ['ups-orchestrator/ups/rack_ups/state'])).get('ups-orchestrator/ups/rack_ups/state')!);
    assert.equal(st.time_budget_margin, Math.round(ups.battery_runtime) - 2 * 10);
    await ownStatus('pub', (x) => x.fill === 'green' && x.text === '1 UPS · 1 plan · MQTT connected');
  });

  it('the dry-run button runs a dry-run of the plan', async () => {
    await helper.load(NODES, flow(peer.port));
    const report = new Collector('report');
    const out = new Collector('pub-out');
    await stateOf(o, (s) => s.state === 'armed', 0);
    const from = o.seen.length;
    await press(o, 'dry_run');
    const r = (await report.waitFor((m) => m.topic === 'run-report', 10000)).msg.payload;
    assert.equal(r.dryRun, true);
    assert.equal(r.direction, 'shutdown');
    assert.equal(r.origin, 'remote');
    assert.equal(r.trigger.topic, 'homeassistant:dry_run');
    const cmd = (await out.waitFor((m) => m.topic === 'command', 3000)).msg.payload;
    assert.deepEqual([cmd.command, cmd.accepted, cmd.plan.name], ['dry_run', true, 'Homelab']);
    assert.match(cmd.message, /^dry-run started by Home Assistant \(run [0-9a-f]{8}\)$/);
    const done = await stateOf(o, (s) => s.last_result !== null, from);
    assert.equal(done.last_result, 'dry-run of shutdown done: 0 ok, 0 failed');
    assert.equal(done.last_run_dry_run, true);
    assert.equal(done.last_command, cmd.message);
  });

  it('a real-run press is refused while the plan does not allow remote runs, and reported', async () => {
    await helper.load(NODES, flow(peer.port));
    const report = new Collector('report');
    const out = new Collector('pub-out');
    await stateOf(o, (s) => s.state === 'armed', 0);
    const from = o.seen.length;
    await press(o, 'run_shutdown');
    const cmd = (await out.waitFor((m) => m.topic === 'command', 3000)).msg.payload;
    assert.equal(cmd.accepted, false);
    assert.match(cmd.message, /^shutdown refused: remote runs are not allowed for this plan/);
    const st = await stateOf(o, (s) => s.last_command !== null, from);
    assert.equal(st.last_command, cmd.message);
    assert.equal(st.state, 'armed', 'nothing runs');
    assert.ok(warnings('pub').some((w) => /plan "Homelab": shutdown refused: remote runs are not allowed/.test(w)), warnings('pub').join(' | '));
    await press(o, 'run_startup');
    const cmd2 = (await out.waitFor((m) => m.topic === 'command' && m.payload.command === 'run_startup', 3000)).msg.payload;
    assert.equal(cmd2.accepted, false);
    await sleep(500);
    assert.equal(report.received.length, 0, 'no run');
  });

  it('with "allow remote runs" on, the run shutdown button starts a real run', async () => {
    await helper.load(NODES, flow(peer.port, { allowRemote: true }));
    const report = new Collector('report');
    await stateOf(o, (s) => s.remote_runs === 'ON', 0);
    await press(o, 'run_shutdown');
    const r = (await report.waitFor((m) => m.topic === 'run-report', 10000)).msg.payload;
    assert.deepEqual([r.dryRun, r.direction, r.origin, r.trigger.topic], [false, 'shutdown', 'remote', 'homeassistant:run_shutdown']);
  });

  it('the armed switch: ON arms always; OFF is refused unless the plan allows remote runs (a disarm would stop the next real shutdown)', async () => {
    await helper.load(NODES, flow(peer.port));
    const out = new Collector('pub-out');
    await stateOf(o, (s) => s.armed === 'ON' && s.state === 'armed', 0);
    let from = o.seen.length;
    await press(o, 'armed', 'OFF');
    const cmd = (await out.waitFor((m) => m.topic === 'command' && m.payload.command === 'armed', 3000)).msg.payload;
    assert.equal(cmd.accepted, false);
    assert.equal(cmd.message, 'disarming refused: remote control of real runs is not allowed for this plan (enable "allow runs from Home Assistant / MQTT")');
    let st = await stateOf(o, (s) => s.last_command === cmd.message, from);
    assert.deepEqual([st.armed, st.state], ['ON', 'armed'], 'the switch stays on');
    assert.equal(helper.getNode('homelab-plan').plan.isArmed(), true);
    assert.ok(warnings('pub').some((w) => w === `Home Assistant: plan "Homelab": ${cmd.message}`), warnings('pub').join(' | '));

    // arming is always allowed (disarm locally first)
    await helper.getNode('homelab-plan').plan.setArmed(false, 'test');
    await stateOf(o, (s) => s.armed === 'OFF', from);
    from = o.seen.length;
    await press(o, 'armed', 'ON');
    st = await stateOf(o, (s) => s.armed === 'ON' && s.last_command === 'armed by Home Assistant', from);
    assert.equal(st.state, 'armed');
    assert.equal(helper.getNode('homelab-plan').plan.isArmed(), true);
  });

  it('with "allow remote runs" on, the armed switch round-trips: OFF disarms the plan, ON arms it, the state follows', async () => {
    await helper.load(NODES, flow(peer.port, { allowRemote: true }));
    await stateOf(o, (s) => s.armed === 'ON' && s.state === 'armed', 0);
    let from = o.seen.length;
    await press(o, 'armed', 'OFF');
    let st = await stateOf(o, (s) => s.armed === 'OFF' && s.last_command === 'disarmed by Home Assistant', from);
    assert.equal(st.state, 'idle');
    assert.equal(helper.getNode('homelab-plan').plan.isArmed(), false);
    from = o.seen.length;
    await press(o, 'armed', 'ON');
    st = await stateOf(o, (s) => s.armed === 'ON' && s.last_command === 'armed by Home Assistant', from);
    assert.equal(st.state, 'armed');
    assert.equal(helper.getNode('homelab-plan').plan.isArmed(), true);
  });

  it('cancel of a real run from Home Assistant is refused unless the plan allows remote runs; the run goes on', async () => {
    // The second phase waits for its gate (runtime ≤ 1 min on battery), so the run is in progress.
    const f = flow(peer.port);
    Object.assign(f.find((n) => n.id === 'p2')!, { gate: true, gateUps: 'dev', gateRuntime: 1 });
    await helper.load(NODES, f);
    const out = new Collector('pub-out');
    const report = new Collector('report');
    await stateOf(o, (s) => s.state === 'armed', 0);
    await helper.getNode('dev').simulate('power-lost', undefined);
    const from = o.seen.length;
    const started = helper.getNode('homelab-plan').request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' });
    assert.equal(started.started, true, JSON.stringify(started));
    await stateOf(o, (s) => s.state === 'running' && s.current_phase === 'Hosts', from);
    await press(o, 'cancel');
    const cmd = (await out.waitFor((m) => m.topic === 'command' && m.payload.command === 'cancel', 3000)).msg.payload;
    assert.equal(cmd.accepted, false);
    assert.equal(cmd.message, 'cancel refused: remote control of real runs is not allowed for this plan (enable "allow runs from Home Assistant / MQTT")');
    const st = await stateOf(o, (s) => s.last_command === cmd.message, from);
    assert.equal(st.state, 'running', 'the run goes on');
    assert.ok(warnings('pub').some((w) => w.endsWith(cmd.message)), warnings('pub').join(' | '));
    assert.equal(report.received.length, 0);
    // a local cancel still works
    assert.equal(helper.getNode('homelab-plan').cancel('test').ok, true);
    await report.waitFor((m) => m.topic === 'run-report', 10000);
  });

  it('a retained command is ignored: a stale PRESS never starts anything after a restart', async () => {
    await o.publish(`${BASE}/set/dry_run`, 'PRESS', true);
    await helper.load(NODES, flow(peer.port));
    const report = new Collector('report');
    await stateOf(o, (s) => s.state === 'armed', 0);
    await sleep(1000);
    assert.equal(report.received.length, 0);
    await o.publish(`${BASE}/set/dry_run`, '', true);
  });

  it('run steps are fired on Home Assistant\'s event bus (websocket)', async () => {
    const fake = await FakeHaServer.start({ token: 'tok' });
    try {
      const f = flow(peer.port, {}, { haServer: 'ha' });
      f.push({ id: 'ha', type: 'upsorch-ha-server', name: '', url: fake.url, tlsVerify: true, tlsFingerprint: '' });
      await helper.load(NODES, f, { ha: { token: 'tok' } });
      await ownStatus('pub', (x) => x.fill === 'green' && /MQTT \+ HA connected/.test(x.text ?? ''), 8000);
      await press(o, 'dry_run');
      await fake.waitFor(() => fake.firedEvents.some((e) => e.event_data.type === 'run-report'), 10000, 'the run report event');
      const runs = fake.firedEvents.filter((e) => e.event_data.kind === 'run');
      assert.ok(runs.every((e) => e.event_type === 'ups_orchestrator_event'));
      const types = runs.map((e) => e.event_data.type);
      assert.deepEqual([types[0], types.at(-1)], ['run-started', 'run-report']);
      assert.ok(types.includes('phase-started') && types.includes('phase-done'), types.join(', '));
      const started = runs[0].event_data;
      assert.deepEqual([started.plan, started.plan_id, started.direction, started.dry_run], ['Homelab', 'homelab-plan', 'shutdown', true]);
      const cmd = fake.firedEvents.find((e) => e.event_data.kind === 'command')!;
      assert.deepEqual([cmd.event_data.command, cmd.event_data.accepted], ['dry_run', true]);
    } finally {
      await helper.unload();
      await fake.stop();
    }
  });
});
