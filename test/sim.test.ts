import { strict as assert } from 'node:assert';
import { SimulatedUps } from '../lib/sim/battery';
import { SimSource } from '../lib/sim/source';
import { UpsDevice } from '../lib/ups/device';
import { UpsState } from '../lib/ups/state';

const MIN = 60_000;

describe('simulated UPS battery model', () => {
  it('on battery, runtime falls at the rate its model says (energy ÷ power)', () => {
    // 250 Wh at 25 % of 900 W = 225 W, 90 % efficient: 250 × 0.9 / 225 h = 1 h of runtime when full.
    const sim = new SimulatedUps({ capacityWh: 250, ratedPowerW: 900, load: 25, efficiency: 0.9 }, 0);
    assert.equal(Math.round(sim.runtimeEstimate()), 3600);
    sim.command('power-lost', undefined, 0);
    sim.advance(10 * MIN);
    assert.equal(Math.round(sim.runtimeEstimate()), 3000);
    assert.ok(Math.abs(sim.charge() - (50 / 60) * 100) < 0.01);
    const vars = sim.vars(10 * MIN);
    assert.equal(vars['ups.status'], 'OB DISCHRG');
    assert.equal(vars['battery.runtime'], '3000');
    assert.equal(vars['input.voltage'], '0.0');
  });

  it('doubling the load halves the remaining runtime', () => {
    const sim = new SimulatedUps({ load: 25 }, 0);
    const r1 = sim.runtimeEstimate();
    sim.command('set-load', 50, 0);
    assert.ok(Math.abs(sim.runtimeEstimate() - r1 / 2) < 1e-6);
  });

  it('LB appears at the low-battery charge threshold, and only on battery', () => {
    const sim = new SimulatedUps({ chargeLow: 20, runtimeLow: 0 }, 0);
    sim.command('set-charge', 21, 0);
    assert.ok(!sim.status().includes('LB'));
    sim.command('power-lost', undefined, 0);
    assert.ok(!sim.status().includes('LB'));
    // 1 % of a 1 h battery is 36 s
    sim.advance(35_000);
    assert.ok(!sim.status().includes('LB'), `not yet at ${sim.charge()}%`);
    sim.advance(35_000 + 2_000);
    assert.ok(sim.status().includes('LB'), `LB at ${sim.charge()}%`);
  });

  it('LB also appears when the runtime estimate falls to the low-runtime threshold', () => {
    const sim = new SimulatedUps({ chargeLow: 0, runtimeLow: 600 }, 0);
    sim.command('power-lost', undefined, 0);
    sim.advance(2990_000);
    assert.ok(!sim.lowBattery());
    sim.advance(3001_000);
    assert.ok(sim.lowBattery());
  });

  it('a depleted battery drops the load (OFF); power restored recharges at the configured rate', () => {
    const sim = new SimulatedUps({ rechargeHours: 4 }, 0);
    sim.command('power-lost', undefined, 0);
    sim.advance(61 * MIN);
    assert.equal(sim.charge(), 0);
    assert.deepEqual(sim.status(), ['OB', 'LB', 'OFF']);
    assert.equal(sim.vars(61 * MIN)['ups.load'], '0.0');
    sim.command('power-restored', undefined, 61 * MIN);
    sim.advance(61 * MIN + 60 * MIN);
    assert.ok(Math.abs(sim.charge() - 25) < 0.01, `an hour of a 4 h recharge gives 25 %, got ${sim.charge()}`);
    assert.deepEqual(sim.status(), ['OL', 'CHRG']);
  });

  it('an aged battery: charge falls faster than the runtime estimate says', () => {
    const sim = new SimulatedUps({}, 0);
    sim.command('battery-ages', 1 / 3, 0);
    sim.command('power-lost', undefined, 0);
    const r0 = sim.runtimeEstimate();
    sim.advance(10 * MIN);
    // the firmware thinks 10 min of a 60 min battery are gone; really 30 min of it are
    const estimatedDrop = r0 - sim.runtimeEstimate();
    assert.ok(Math.abs(estimatedDrop - 30 * 60) < 1, `estimate fell by ${estimatedDrop}s`);
    assert.ok(Math.abs(sim.trueRuntime() - 10 * 60) < 1, `really ${sim.trueRuntime()}s left`);
    assert.ok(sim.status().includes('RB'));
  });

  it('speed factor: simulated time runs faster than the clock', () => {
    const sim = new SimulatedUps({ speed: 60 }, 0);
    sim.command('power-lost', undefined, 0);
    sim.advance(30_000); // 30 s real = 30 min simulated
    assert.ok(Math.abs(sim.runtimeEstimate() - 1800) < 1);
    assert.equal(Math.round(sim.secondsOnBattery()), 1800);
  });

  it('input voltage outside the transfer limits puts it on battery; back inside returns to mains', () => {
    const sim = new SimulatedUps({}, 0);
    sim.command('set-input-voltage', 200, 0);
    assert.deepEqual(sim.status(), ['OL', 'BOOST']);
    sim.command('set-input-voltage', 150, 0);
    assert.equal(sim.status()[0], 'OB');
    sim.command('set-input-voltage', 230, 0);
    assert.equal(sim.status()[0], 'OL');
  });

  it('rejects invalid commands and values with a message that says what is allowed', () => {
    const sim = new SimulatedUps({}, 0);
    assert.throws(() => sim.command('explode', 1, 0), /unknown simulator command "explode"; use one of power-lost/);
    assert.throws(() => sim.command('set-load', 'lots', 0), /load \(%\) must be a number from 0 to 200, got "lots"/);
    assert.throws(() => sim.command('battery-ages', 2, 0), /battery health/);
    assert.throws(() => new SimulatedUps({ capacityWh: -1 }, 0), /battery capacity/);
  });
});

describe('simulated UPS through the shared device', () => {
  it('yields the same normalised state shape as a real UPS, with simulated seconds on battery', async () => {
    let now = 0;
    const source = new SimSource('lab', { speed: 10 }, now);
    const device = new UpsDevice(source, { name: 'lab', pollMs: 1000, pollOnBatteryMs: 1000, now: () => now });
    source.sim.command('power-lost', undefined, now);
    now += 6000;
    const s: UpsState = await device.poll();
    assert.equal(s.source, 'sim');
    assert.equal(s.onBattery, true);
    assert.equal(s.secondsOnBattery, 60);
    assert.equal(s.device.model, 'Simulated UPS');
    assert.ok(s.runtime! < 3600 && s.runtime! > 3400);
    source.sim.command('comm-lost', undefined, now);
    const lost = await device.poll();
    assert.equal(lost.comm, 'lost');
    assert.equal(lost.onBattery, true, 'last known readings kept');
    await device.stop();
  });
});
