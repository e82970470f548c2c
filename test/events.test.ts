import { strict as assert } from 'node:assert';
import { EventTracker } from '../lib/ups/events';
import { UpsState, normalise, withComm, statusOf, badge } from '../lib/ups/state';

const base = { 'battery.charge': '100', 'battery.runtime': '3600', 'input.voltage': '230', 'input.transfer.low': '180', 'input.transfer.high': '260' };
let t = 1_000_000;
function st(status: string, extra: Record<string, string> = {}): UpsState {
  t += 1000;
  return normalise({ ups: 'sim', source: 'nut', vars: { ...base, 'ups.status': status, ...extra }, ts: t, secondsOnBattery: 0 });
}

function run(tracker: EventTracker, states: UpsState[]): string[][] {
  return states.map((s) => tracker.update(s).map((e) => e.event));
}

describe('UPS state normalisation', () => {
  it('maps status flags, numbers and units; keeps unknown flags', () => {
    const s = st('OB DISCHRG LB ECO', { 'ups.load': '023.4', 'ups.realpower': '150', 'battery.temperature': '31.5', 'output.voltage': '229.0', 'device.model': 'X' });
    assert.equal(s.onBattery, true);
    assert.equal(s.online, false);
    assert.equal(s.lowBattery, true);
    assert.equal(s.discharging, true);
    assert.deepEqual(s.flags, ['OB', 'DISCHRG', 'LB', 'ECO']);
    assert.equal(s.load, 23.4);
    assert.equal(s.realPower, 150);
    assert.equal(s.temperature, 31.5);
    assert.equal(s.outputVoltage, 229);
    assert.equal(s.charge, 100);
    assert.equal(s.runtime, 3600);
    assert.equal(s.device.model, 'X');
    assert.equal(s.comm, 'ok');
    assert.equal(badge(s), 'OB DISCHRG LB ECO 100% 1h00m');
  });

  it('absent values are null, never zero', () => {
    const s = normalise({ ups: 'u', source: 'nut', vars: { 'ups.status': 'OL' }, ts: 1, secondsOnBattery: 0 });
    assert.equal(s.charge, null);
    assert.equal(s.runtime, null);
    assert.equal(s.inputVoltage, null);
    assert.equal(s.temperature, null);
  });

  it('flags implausible readings as untrusted: runtime 65535 or negative, charge above 100', () => {
    assert.deepEqual(st('OB', { 'battery.runtime': '65535' }).untrusted, ['runtime']);
    assert.deepEqual(st('OB', { 'battery.runtime': '-1' }).untrusted, ['runtime']);
    assert.deepEqual(st('OB', { 'battery.charge': '255' }).untrusted, ['charge']);
    assert.deepEqual(st('OB', { 'battery.runtime': '600' }).untrusted, []);
    assert.deepEqual(st('OB', { 'battery.runtime': '0', 'battery.charge': '80' }).untrusted, ['runtime'], 'runtime 0 with a full battery');
    assert.deepEqual(st('OB LB', { 'battery.runtime': '0', 'battery.charge': '3' }).untrusted, [], 'runtime 0 with an empty battery is real');
    assert.equal(statusOf(st('OL', { 'battery.runtime': '65535' }), null).fill, 'yellow');
  });

  it('a UPS that stops answering keeps its last readings, marked lost', () => {
    const last = st('OB', { 'battery.charge': '50' });
    const lost = withComm(last, { ups: 'sim', source: 'nut', ts: t + 5000 }, 'lost', 'refused');
    assert.equal(lost.comm, 'lost');
    assert.equal(lost.onBattery, true);
    assert.equal(lost.charge, 50);
    assert.equal(lost.lastSeen, last.ts);
    assert.deepEqual(statusOf(lost, null), { fill: 'red', shape: 'ring', text: 'comm lost: refused' });
  });
});

describe('UPS events', () => {
  it('OL → OB → OB LB → FSD → OL: each event once, in order, ONLINE at the end', () => {
    const tr = new EventTracker();
    assert.deepEqual(run(tr, [st('OL'), st('OB'), st('OB'), st('OB LB'), st('OB LB'), st('FSD OB LB'), st('FSD OB LB'), st('FSD OL'), st('OL')]), [
      [], ['ONBATT'], [], ['LOWBATT'], [], ['FSD'], [], ['ONLINE'], [],
    ]);
  });

  it('ONLINE says how long the UPS was on battery (the ONLINE state itself reports 0 s)', () => {
    const tr = new EventTracker();
    const onBattery = (secs: number) => ({ ...st('OB'), secondsOnBattery: secs });
    tr.update(st('OL'));
    tr.update(onBattery(1));
    tr.update(onBattery(95));
    const [online] = tr.update(st('OL'));
    assert.equal(online.event, 'ONLINE');
    assert.equal(online.message, 'UPS sim is back on mains power after 1 min 35 s on battery: charge 100%');
    // Deployed while on mains: no duration to tell.
    const fresh = new EventTracker();
    fresh.update(st('OB'));
    assert.equal(fresh.update(st('OL'))[0].message, 'UPS sim is back on mains power: charge 100%');
  });

  it('a node deployed during an outage learns ONBATT from its first state; ONLINE never comes first', () => {
    assert.deepEqual(run(new EventTracker(), [st('OB LB')]), [['ONBATT', 'LOWBATT']]);
    assert.deepEqual(run(new EventTracker(), [st('OL')]), [[]]);
  });

  it('comm lost / restored: COMMBAD once, COMMOK once; no power events from stale readings', () => {
    const tr = new EventTracker();
    const ob = st('OB');
    const lost = withComm(ob, { ups: 'sim', source: 'nut', ts: t + 1 }, 'lost', 'x');
    const stale = withComm(ob, { ups: 'sim', source: 'nut', ts: t + 2 }, 'stale', 'y');
    assert.deepEqual(run(tr, [ob, lost, lost, stale, st('OL')]), [['ONBATT'], ['COMMBAD'], [], [], ['COMMOK', 'ONLINE']]);
  });

  it('REPLBATT, OVERLOAD/NOTOVERLOAD, BYPASS/NOTBYPASS, TRIM, BOOST, CAL, OFF, ALARM', () => {
    const tr = new EventTracker();
    assert.deepEqual(run(tr, [st('OL'), st('OL RB'), st('OL RB OVER'), st('OL RB'), st('OL BYPASS'), st('OL'), st('OL TRIM'), st('OL BOOST'), st('OL CAL'), st('OFF'), st('OL', { 'ups.alarm': 'Fan failure' })]), [
      [], ['REPLBATT'], ['OVERLOAD'], ['NOTOVERLOAD'], ['BYPASS'], ['NOTBYPASS'], ['TRIM'], ['BOOST'], ['CAL'], ['OFF'], ['ALARM'],
    ]);
  });

  it('BROWNOUT / OVERVOLTAGE against the UPS transfer limits, with hysteresis (no flapping at the edge)', () => {
    const tr = new EventTracker();
    const v = (x: number) => st('OL', { 'input.voltage': String(x) });
    assert.deepEqual(run(tr, [v(230), v(179), v(180.5), v(179), v(183), v(179), v(261), v(259), v(261), v(257), v(261)]), [
      [], ['BROWNOUT'], [], [], [], ['BROWNOUT'], ['OVERVOLTAGE'], [], [], [], ['OVERVOLTAGE'],
    ]);
  });

  it('configured voltage thresholds override the UPS limits', () => {
    const tr = new EventTracker({ brownoutBelow: 210, overvoltageAbove: 245 });
    assert.deepEqual(run(tr, [st('OL', { 'input.voltage': '205' }), st('OL', { 'input.voltage': '250' })]), [['BROWNOUT'], ['OVERVOLTAGE']]);
  });

  it('events carry a sentence for people and a severity', () => {
    const [e] = new EventTracker().update(st('OB', { 'battery.charge': '76', 'battery.runtime': '1380' }));
    assert.equal(e.event, 'ONBATT');
    assert.equal(e.severity, 'warning');
    assert.equal(e.message, 'UPS sim is on battery: charge 76%, runtime 23 min');
  });
});
