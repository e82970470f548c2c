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
import { statusText } from '../lib/mqtt/discovery';
import { normalise } from '../lib/ups/state';
import { parseBrokerConfig } from '../lib/mqtt/config';
import { parseInput } from '../lib/mqtt/ups-input';

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
});
