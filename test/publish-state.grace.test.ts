/**
 * The publisher's memory of where each Home Assistant device came from, across restarts, against a
 * real Mosquitto broker: the retained index of one publisher read back by the next one (a restart
 * of Node-RED), with the clock moved on instead of waiting days.
 */
import { strict as assert } from 'node:assert';
import { MosquittoPeer } from './peers/mosquitto';
import { MqttObserver } from './util/mqtt-observer';
import { MqttBroker } from '../lib/mqtt/broker';
import { DiscoveryPublisher } from '../lib/mqtt/publisher';

const DAY = 24 * 3600_000;
const T0 = Date.UTC(2025, 0, 1);
const ctx = { baseTopic: 'ups-orchestrator', discoveryPrefix: 'homeassistant', availabilityTopic: 'ups-orchestrator/status', origin: { name: 'test' } };
const INDEX = 'ups-orchestrator/publisher/pub/index';
const cfg = (dev: string) => `homeassistant/sensor/${dev}_status/config`;
const stateTopic = (dev: string) => `ups-orchestrator/ups/${dev}/state`;

interface Forgotten {
  id: string;
  name: string | undefined;
  lastStateAt: number;
  live: boolean;
}

/** One run of Node-RED: a publisher at clock `now`, `setup` tells it what it has and expects. */
async function session(port: number, now: number, setup: (p: DiscoveryPublisher, publish: (dev: string) => void) => void, forgetAfterMs?: number): Promise<Forgotten[]> {
  const broker = new MqttBroker({ host: '127.0.0.1', port, tls: false, tlsVerify: true, clientId: `grace-${Math.random().toString(16).slice(2)}`, baseTopic: ctx.baseTopic, discoveryPrefix: ctx.discoveryPrefix });
  const forgotten: Forgotten[] = [];
  const p = new DiscoveryPublisher(broker, ctx, { publisherId: 'pub', now: () => now, forgetAfterMs, forgotten: (id, name, lastStateAt, live) => forgotten.push({ id, name, lastStateAt, live }) });
  let up: () => void = () => undefined;
  const user = { connected: () => (p.connected(), up()) };
  p.start();
  await new Promise<void>((resolve) => ((up = resolve), broker.register(user)));
  const publish = (dev: string) => p.setDevice(dev, () => [{ topic: cfg(dev), device: dev, payload: { name: 'Status', unique_id: `${dev}_status` } }], stateTopic(dev), { status: 'Online' }, dev.toUpperCase());
  setup(p, publish);
  await new Promise((r) => setTimeout(r, 100));
  await p.idle();
  p.stop();
  await broker.deregister(user);
  await broker.dispose();
  return forgotten;
}

describe('publish state: which devices survive a restart (retained index, real Mosquitto)', function () {
  this.timeout(60000);
  let peer: MosquittoPeer;
  beforeEach(async () => {
    peer = await MosquittoPeer.start();
  });
  afterEach(async () => {
    await peer.dispose();
  });

  const retainedConfigs = async () => [...(await MqttObserver.retained(peer.port, ['homeassistant/#'])).keys()].sort();
  const index = async () => JSON.parse((await MqttObserver.retained(peer.port, [INDEX])).get(INDEX) ?? '{}');

  it('a device of unknown origin is kept for the grace period after its last state (7 days by default), then removed', async () => {
    // it reports (no UPS list or wired UPS in names it), a device the node expects reports too
    await session(peer.port, T0, (p, publish) => {
      p.setExpected(['listed']);
      publish('garage');
      publish('listed');
    });
    assert.deepEqual((await index())['$devices'], { garage: { o: 'msg', s: T0, n: 'GARAGE' }, listed: { o: 'node', s: T0, n: 'LISTED' } });

    // 6 days later, Node-RED starts without a state of it yet: kept
    let forgotten = await session(peer.port, T0 + 6 * DAY, (p) => p.setExpected(['listed']));
    assert.deepEqual(forgotten, []);
    assert.deepEqual(await retainedConfigs(), [cfg('garage'), cfg('listed')]);

    // 8 days after its last state: removed, config, state and its index entries
    forgotten = await session(peer.port, T0 + 8 * DAY, (p) => p.setExpected(['listed']));
    assert.deepEqual(forgotten, [{ id: 'garage', name: 'GARAGE', lastStateAt: T0, live: false }]);
    assert.deepEqual(await retainedConfigs(), [cfg('listed')], 'the device the node expects stays, however long without a state');
    const idx = await index();
    assert.deepEqual(Object.keys(idx).sort(), ['$devices', cfg('listed'), stateTopic('listed')].sort());
    assert.deepEqual(Object.keys(idx['$devices']), ['listed']);
  });

  it('a state refreshes the grace period; 0 keeps such a device for ever', async () => {
    await session(peer.port, T0, (p, publish) => (p.setExpected([]), publish('garage')));
    await session(peer.port, T0 + 5 * DAY, (p, publish) => (p.setExpected([]), publish('garage')));
    assert.equal((await index())['$devices'].garage.s, T0 + 5 * DAY, 'the last state is recorded (at most hourly)');
    assert.deepEqual(await session(peer.port, T0 + 11 * DAY, (p) => p.setExpected([])), [], '6 days after the last state');
    assert.deepEqual(await retainedConfigs(), [cfg('garage')]);
    assert.deepEqual(await session(peer.port, T0 + 400 * DAY, (p) => p.setExpected([]), 0), [], 'never');
    assert.deepEqual(await retainedConfigs(), [cfg('garage')]);
  });

  it('a device of known origin whose origin is gone is removed at once; before the flows started nothing is removed', async () => {
    await session(peer.port, T0, (p, publish) => (p.setExpected(['wired']), publish('wired')));
    // started, but the flows have not said what they expect yet
    await session(peer.port, T0 + 60_000, () => undefined);
    assert.deepEqual(await retainedConfigs(), [cfg('wired')]);
    // its UPS in node was deleted while Node-RED was stopped
    const forgotten = await session(peer.port, T0 + 120_000, (p) => p.setExpected([]));
    assert.deepEqual(forgotten, [], 'not a grace-period removal');
    assert.deepEqual(await retainedConfigs(), []);
    assert.deepEqual(await index(), {});
  });

  it('an index written before device records existed: its devices are kept and recorded, their grace period starting now', async () => {
    const o = await MqttObserver.connect(peer.port, []);
    await o.publish(cfg('old'), '{"name":"Status"}', true);
    await o.publish(INDEX, JSON.stringify({ [cfg('old')]: { h: 'abc', d: 'old' } }), true);
    await o.close();
    await session(peer.port, T0, (p) => p.setExpected([]));
    assert.deepEqual(await retainedConfigs(), [cfg('old')]);
    assert.deepEqual((await index())['$devices'], { old: { o: 'msg', s: T0 } });
    await session(peer.port, T0 + 8 * DAY, (p) => p.setExpected([]));
    assert.deepEqual(await retainedConfigs(), []);
  });
});
