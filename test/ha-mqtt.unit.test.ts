/**
 * The pure parts of the Home Assistant / MQTT layer: topic matching, slugs, the compressed entity
 * format of subscribe_entities, status words of HA's NUT integration, entity defaults, the
 * websocket URL, the status text of a UPS.
 */
import { strict as assert } from 'node:assert';
import { slug, topicMatches, cleanBaseTopic } from '../lib/mqtt/topics';
import { applyEntitiesEvent, EntityState } from '../lib/ha/entities';
import { entityMap, statusFlags } from '../lib/ha/source';
import { websocketUrl } from '../lib/ha/client';
import { statusText, upsStatePayload } from '../lib/mqtt/discovery';
import { normalise } from '../lib/ups/state';
import { parseBrokerConfig } from '../lib/mqtt/config';
import { parseInput } from '../lib/mqtt/ups-input';
import { CommandReport, PlanControl, PlanHandle, planStatePayload } from '../lib/mqtt/plan';
import { DiscoveryPublisher, PublisherBroker } from '../lib/mqtt/publisher';
import { MessageHandler } from '../lib/mqtt/broker';
import { PlanStatus } from '../lib/plan/types';
import { upsNames } from '../lib/mqtt/ups-names';

/** A plan and a broker that is not connected: PlanControl's decisions only, no MQTT. */
function planControl(status: Partial<PlanStatus>, answer?: PlanHandle['request']) {
  const handlers = new Map<string, MessageHandler>();
  const broker: PublisherBroker = {
    connected: false,
    publish: () => Promise.reject(new Error('not connected')),
    subscribe: (filter, h) => (handlers.set(filter, h), () => handlers.delete(filter)),
    subscribeAcked: () => Promise.reject(new Error('not connected')),
  };
  const ctx = { baseTopic: 'ups-orchestrator', discoveryPrefix: 'homeassistant', availabilityTopic: 'ups-orchestrator/status', origin: { name: 'x' } };
  const calls: string[] = [];
  const st: PlanStatus = { state: 'armed', armed: true, allowRemote: false, run: null, currentPhase: null, progress: null, lastResult: null, ...status };
  const plan: PlanHandle = {
    id: 'p', name: 'Homelab',
    status: () => st,
    subscribe: () => () => undefined,
    request: (r) => (calls.push(`request ${r.direction} ${r.dryRun}`), answer ? answer(r) : { started: false, queued: false, reason: 'test' }),
    cancel: (by) => (calls.push(`cancel ${by}`), { ok: true, reason: '' }),
    setArmed: async (a, by) => void calls.push(`armed ${a} ${by}`),
    expectedDurationMs: () => 0,
  };
  const reports: CommandReport[] = [];
  const c = new PlanControl(broker, new DiscoveryPublisher(broker, ctx, { publisherId: 'pub' }), plan, { runtime: () => null, onCommand: (r) => reports.push(r) });
  c.start();
  const press = async (key: string, payload = 'PRESS') => {
    handlers.get('ups-orchestrator/plan/p/set/+')!(`ups-orchestrator/plan/p/set/${key}`, Buffer.from(payload), false);
    await new Promise((r) => setImmediate(r));
    return reports.at(-1)!;
  };
  return { press, calls, reports };
}
const run = (dryRun: boolean) => ({ id: 'r1234567890', direction: 'shutdown', dryRun }) as PlanStatus['run'];

describe('HA / MQTT pure functions', () => {
  it('topic filters: + one level, # the rest (and the parent level)', () => {
    assert.ok(topicMatches('a/+/c', 'a/b/c'));
    assert.ok(!topicMatches('a/+/c', 'a/b/d'));
    assert.ok(topicMatches('a/#', 'a/b/c'));
    assert.ok(topicMatches('a/#', 'a'));
    assert.ok(topicMatches('#', 'x/y'));
    assert.ok(!topicMatches('a/+', 'a/b/c'));
    assert.ok(topicMatches('ups-orchestrator/plan/p/set/+', 'ups-orchestrator/plan/p/set/dry_run'));
  });

  it('slugs for discovery ids and entity ids', () => {
    assert.equal(slug('Rack UPS'), 'rack_ups');
    assert.equal(slug('ups-orchestrator'), 'ups_orchestrator');
    assert.equal(slug('Größe über'), 'grosse_uber');
    assert.equal(slug('--'), 'x');
    assert.equal(cleanBaseTopic('/home/ups/'), 'home/ups');
    assert.throws(() => cleanBaseTopic('a/#'), /must not contain/);
  });

  it('subscribe_entities: add, change (+ and -), remove', () => {
    const m = new Map<string, EntityState>();
    applyEntitiesEvent(m, { a: { 'sensor.x': { s: 'OL', a: { unit_of_measurement: '%', friendly_name: 'X' }, c: 'ctx', lc: 100 } } });
    assert.deepEqual(m.get('sensor.x'), { entity_id: 'sensor.x', state: 'OL', attributes: { unit_of_measurement: '%', friendly_name: 'X' }, last_changed: 100, last_updated: 100 });
    const changed = applyEntitiesEvent(m, { c: { 'sensor.x': { '+': { s: 'OB', lc: 200, a: { icon: 'mdi:x' } }, '-': { a: ['friendly_name'] } } } });
    assert.deepEqual(changed, ['sensor.x']);
    assert.deepEqual(m.get('sensor.x'), { entity_id: 'sensor.x', state: 'OB', attributes: { unit_of_measurement: '%', icon: 'mdi:x' }, last_changed: 200, last_updated: 200 });
    applyEntitiesEvent(m, { c: { 'sensor.x': { '+': { lu: 250 } } } });
    assert.equal(m.get('sensor.x')!.last_updated, 250);
    assert.equal(m.get('sensor.x')!.last_changed, 200);
    applyEntitiesEvent(m, { c: { 'sensor.unknown': { '+': { s: '1' } } } });
    assert.equal(m.has('sensor.unknown'), false);
    assert.deepEqual(applyEntitiesEvent(m, { r: ['sensor.x'] }), ['sensor.x']);
    assert.equal(m.size, 0);
  });

  it('UPS status from HA: NUT flags as they are, status words of the NUT integration and apcupsd', () => {
    assert.deepEqual(statusFlags('OL CHRG'), ['OL', 'CHRG']);
    assert.deepEqual(statusFlags('Online Battery Charging'), ['CHRG', 'OL']);
    assert.deepEqual(statusFlags('On Battery Battery Discharging Low Battery')!.sort(), ['DISCHRG', 'LB', 'OB']);
    assert.deepEqual(statusFlags('ONBATT'), ['OB']);
    assert.deepEqual(statusFlags('Battery Needs Replaced Online'), ['RB', 'OL']);
    assert.equal(statusFlags('banana'), null);
    assert.equal(statusFlags(''), null);
  });

  it('entity ids: derived from the prefix (NUT integration names), overrides win', () => {
    assert.deepEqual(entityMap('sensor.rack', { load: 'sensor.other_load' }), {
      status: 'sensor.rack_status_data', charge: 'sensor.rack_battery_charge', runtime: 'sensor.rack_battery_runtime', load: 'sensor.other_load',
      inputVoltage: 'sensor.rack_input_voltage', outputVoltage: 'sensor.rack_output_voltage', realPower: 'sensor.rack_real_power',
      temperature: 'sensor.rack_ups_temperature', alarm: 'sensor.rack_alarms',
    });
    assert.deepEqual(entityMap('', { status: 'sensor.s' }), { status: 'sensor.s' });
    assert.throws(() => entityMap('', {}), /status entity is required/);
  });

  it('websocket URL from what users type', () => {
    assert.equal(websocketUrl('http://homeassistant.local:8123'), 'ws://homeassistant.local:8123/api/websocket');
    assert.equal(websocketUrl('https://ha.example.org/'), 'wss://ha.example.org/api/websocket');
    assert.equal(websocketUrl('ws://h:8123/api/websocket'), 'ws://h:8123/api/websocket');
    assert.throws(() => websocketUrl('ftp://x'), /use http/);
    assert.throws(() => websocketUrl('homeassistant'), /not a URL/);
  });

  it('status text of a UPS for the Status sensor', () => {
    const s = normalise({ ups: 'u', source: 'nut', vars: { 'ups.status': 'OB DISCHRG LB' }, ts: 0, secondsOnBattery: 0 });
    assert.equal(statusText(s), 'On battery, discharging, low battery');
    assert.equal(statusText({ ...s, flags: ['OL', 'XYZ'] }), 'Online, XYZ');
    assert.equal(statusText({ ...s, comm: 'lost' }), 'Communication lost');
  });

  it('broker config: defaults, and every problem in one message', () => {
    const c = parseBrokerConfig({ host: 'mqtt.local' });
    assert.deepEqual([c.port, c.baseTopic, c.discoveryPrefix, c.tls, c.tlsVerify, c.keepalive], [1883, 'ups-orchestrator', 'homeassistant', false, true, 60]);
    assert.throws(() => parseBrokerConfig({ host: '', port: 0, baseTopic: 'a/+', ca: 'nope' }), (e: Error) =>
      /host is required/.test(e.message) && /port must be between 1 and 65535/.test(e.message) && /base topic: the base topic must not contain/.test(e.message) && /PEM/.test(e.message));
  });

  it('publish node input: a UPS state, a UPS event, or a clear error', () => {
    assert.equal(parseInput({ ups: 'u', flags: ['OL'], comm: 'ok', onBattery: false }).kind, 'state');
    assert.equal(parseInput({ event: 'ONBATT', ups: 'u', severity: 'warning', message: 'x' }).kind, 'event');
    const bad = parseInput({ ups: 'u', flags: 'OL' });
    assert.equal(bad.kind, 'invalid');
    assert.match((bad as { error: string }).error, /looks like a UPS state but flags/);
    assert.match((parseInput('hello') as { error: string }).error, /neither a UPS state/);
  });

  it('a press held while the plan loads its saved state reports what finally became of it', async () => {
    let release: (r: { started: true; run: { id: string } }) => void = () => undefined;
    const later = new Promise<{ started: true; run: { id: string } }>((r) => (release = r));
    const c = planControl({}, () => ({ started: false, queued: true, reason: 'the plan is loading its saved state', later }));
    const pending = c.press('dry_run');
    release({ started: true, run: { id: 'abcdef1234' } });
    await later;
    await new Promise((r) => setImmediate(r));
    await pending;
    const last = c.reports.at(-1)!;
    assert.equal(last.accepted, true);
    assert.match(last.message, /started by Home Assistant \(run abcdef12\)/);
  });

  it('plan controls without "allow remote runs": dry-run, arming and cancelling a dry-run only', async () => {
    const idle = planControl({});
    assert.deepEqual([(await idle.press('armed', 'OFF')).accepted, (await idle.press('armed', 'ON')).accepted], [false, true]);
    assert.equal((await idle.press('cancel')).message, 'cancel refused: no run in progress');
    assert.deepEqual(idle.calls, ['armed true Home Assistant'], 'neither disarm nor cancel reached the plan');

    const real = planControl({ state: 'running', run: run(false) });
    const r = await real.press('cancel');
    assert.deepEqual([r.accepted, r.message], [false, 'cancel refused: remote control of real runs is not allowed for this plan (enable "allow runs from Home Assistant / MQTT")']);
    assert.deepEqual(real.calls, []);

    const dry = planControl({ state: 'running', run: run(true) });
    assert.equal((await dry.press('cancel')).accepted, true);
    assert.deepEqual(dry.calls, ['cancel Home Assistant']);
  });

  it('plan controls with "allow remote runs": disarm and cancel of a real run reach the plan', async () => {
    const c = planControl({ allowRemote: true, state: 'running', run: run(false) });
    assert.deepEqual([(await c.press('cancel')).message, (await c.press('armed', 'OFF')).message], ['cancel requested by Home Assistant', 'disarmed by Home Assistant']);
    assert.deepEqual(c.calls, ['cancel Home Assistant', 'armed false Home Assistant']);
  });

  it('sensor states stay within Home Assistant\'s 255 characters', () => {
    const long = 'dry-run refused: ' + 'ä'.repeat(400);
    const p = planStatePayload({ state: 'running', armed: true, allowRemote: false, run: null, currentPhase: 'P'.repeat(300), progress: null, lastResult: null }, null, long);
    assert.equal([...(p.last_command as string)].length, 255);
    assert.ok((p.last_command as string).startsWith('dry-run refused: ää') && (p.last_command as string).endsWith('…'));
    assert.equal([...(p.current_phase as string)].length, 255);
    const ups = normalise({ ups: 'u', source: 'nut', vars: { 'ups.status': Array.from({ length: 40 }, (_, i) => `VENDOR_FLAG_${i}`).join(' ') }, ts: 0, secondsOnBattery: 0 });
    assert.equal([...(upsStatePayload(ups).status as string)].length, 255, 'the UPS Status sensor too');
    assert.equal(planStatePayload({ state: 'idle', armed: false, allowRemote: false, run: null, currentPhase: null, progress: null, lastResult: null }, null, 'armed by Home Assistant').last_command, 'armed by Home Assistant');
  });

  it('UPS names: NUT "ups" on two hosts become two Home Assistant devices; the first keeps its name', () => {
    const a = { sourceId: 'n1', name: 'ups', where: 'ups@10.0.0.1:3493', direct: true };
    const b = { sourceId: 'n2', name: 'ups', where: 'ups@10.0.0.2:3493', direct: true };
    const r = upsNames([a, b, { ...a, direct: false }]);
    assert.deepEqual([...r.alias], [['n2', 'ups (ups@10.0.0.2:3493)']]);
    assert.deepEqual([...r.ambiguous], ['ups']);
    assert.deepEqual(r.warnings, ['2 UPS devices are called "ups" (ups@10.0.0.1:3493, ups@10.0.0.2:3493): Home Assistant shows "ups (ups@10.0.0.2:3493)" besides "ups" (ups@10.0.0.1:3493); or give each UPS device its own name']);
    // one device used twice (UPS list and a wired UPS in), or different names: nothing to say
    assert.deepEqual(upsNames([a, { ...a, direct: false }, { ...b, sourceId: 'n3', name: 'Rack' }]), { alias: new Map(), warnings: [], ambiguous: new Set() });
    // a wired-only twin of a listed UPS is left out, and the warning says how to fix it
    const w = upsNames([a, b, { sourceId: 'n4', name: 'UPS', where: 'ups@10.0.0.4:3493', direct: false }]);
    assert.match(w.warnings[0], /^3 UPS devices are called "ups" .*; ups@10\.0\.0\.4:3493 reaches this node only as messages, which carry the name alone, and are left out – choose it in this node's UPS list instead of wiring; or give each UPS device its own name$/);
  });
});
