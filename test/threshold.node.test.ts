/**
 * Runtime threshold node in the Node-RED runtime without a peer: states sent on its input (or from
 * the simulated UPS of example 03), what it sends and warns, and how it keeps time.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { normalise } from '../lib/ups/state';
import { Collector, errorsOf, helper, ourNodes, send, sleep, statuses, threshold, waitForStatus, warningsOf } from './util/red';

const ONLY_TIME_ON_BATTERY = {
  fsdEnabled: false, obLbEnabled: false, runtimeEnabled: false, chargeEnabled: false, timeOnBatteryEnabled: true, timeOnBatteryAfter: 3,
  depletionEnabled: false, commLostEnabled: false, budgetEnabled: false, noReturnAfter: 30,
};

function state(ups: string, status: string, secondsOnBattery = 0): ReturnType<typeof normalise> {
  return normalise({ ups, source: 'nut', ts: Date.now(), secondsOnBattery, vars: { 'ups.status': status, 'battery.charge': '90', 'battery.runtime': '1800', 'input.voltage': '230' } });
}


describe('runtime threshold node', function () {
  this.timeout(60000);
  const realNow = Date.now;
  afterEach(async () => {
    Date.now = realNow;
    await helper.unload();
  });

  describe('keeps time on a monotonic clock', () => {
    it('the wall clock stepping 1 h forward during a 1 s outage fires nothing', async () => {
      await helper.load(ourNodes, threshold('th', ONLY_TIME_ON_BATTERY));
      const shutdown = new Collector('th-shutdown');
      send('th', { payload: state('ups', 'OB DISCHRG') });
      await sleep(1000);
      Date.now = () => realNow() + 3600_000; // NTP corrects the clock
      send('th', { payload: state('ups', 'OB DISCHRG', 1) });
      await sleep(500);
      assert.equal(shutdown.received.length, 0, 'time on battery 3 s must not be reached after 1.5 s');
      // …but it is reached on time; its ts is the (corrected) wall clock, for display
      const got = await shutdown.waitFor(() => true, 5000);
      assert.equal(got.msg.payload.reason.vector, 'timeOnBattery');
      assert.ok(Math.abs(got.msg.payload.ts - Date.now()) < 2000, 'ts is wall-clock time');
    });

    it('the wall clock stepping 1 h back does not delay a due shutdown', async () => {
      await helper.load(ourNodes, threshold('th', ONLY_TIME_ON_BATTERY));
      const shutdown = new Collector('th-shutdown');
      const t0 = realNow();
      send('th', { payload: state('ups', 'OB DISCHRG') });
      await sleep(500);
      Date.now = () => realNow() - 3600_000;
      send('th', { payload: state('ups', 'OB DISCHRG', 0.5) });
      const got = await shutdown.waitFor(() => true, 8000);
      assert.ok(realNow() - t0 >= 2900, `fired after ${realNow() - t0} ms`);
      assert.equal(got.msg.payload.reason.values.after, 3);
    });
  });

  it('warns about a UPS name not listed under UPSes, and about a listed UPS that never reports', async () => {
    await helper.load(ourNodes, threshold('th', {
      commLostAfter: 1, policy: 'min', minSupplies: 1, supplies: [{ device: '', ups: 'a', power: 1 }, { device: '', ups: 'b', power: 1 }],
    }));
    send('th', { payload: state('a', 'OL') });
    send('th', { payload: state('B', 'OL') });
    await waitForStatus('th', (s) => s.text === 'idle · on mains');
    await sleep(1500);
    assert.deepEqual(warningsOf('th'), [
      'UPS B is not listed under UPSes (a, b): it counts with power value 1; check the UPS name',
      'UPS b is listed under UPSes but has sent no state for 1 s: it counts as not healthy',
    ]);
  });

  it('a minimum power of 0 is shown in red; one above the listed power values is warned about and still shuts down', async () => {
    const supplies = [{ device: '', ups: 'a', power: 1 }, { device: '', ups: 'b', power: 1 }];
    await helper.load(ourNodes, threshold('th', { policy: 'min', minSupplies: 0, supplies }));
    let st = await waitForStatus('th', (s) => s.fill === 'red', 3000);
    assert.match(st.text ?? '', /^invalid runtime threshold configuration: minSupplies: minimum power must be more than 0/);
    await helper.unload();
    await helper.load(ourNodes, threshold('th', { policy: 'min', minSupplies: 3, supplies }));
    assert.match(warningsOf('th')[0], /minimum power 3 is more than the UPSes' power values add up to \(2\): the first UPS that turns critical shuts down/);
    assert.deepEqual(errorsOf('th'), []);
    const shutdown = new Collector('th-shutdown');
    send('th', { payload: state('b', 'OL') });
    send('th', { payload: state('a', 'OB LB') });
    const got = await shutdown.waitFor(() => true, 5000);
    assert.equal(got.msg.payload.reason.ups, 'a');
  });

  describe('the example flow "03 Runtime threshold"', () => {
    const file = path.join(__dirname, '..', 'examples', '03 Runtime threshold.json');

    it('power lost → armed → shutdown with its reason; power restored in time → cancel', async function () {
      this.timeout(60000);
      // The example as shipped, its inject and debug nodes replaced by helpers; the simulated UPS
      // three times faster than shipped (60× real time) so that the rehearsal takes seconds.
      const flow: any[] = JSON.parse(fs.readFileSync(file, 'utf8')).map((n: any) => {
        if (n.type === 'inject' || n.type === 'debug') return { id: n.id, z: n.z, type: 'helper', name: n.name, wires: n.wires ?? [] };
        if (n.type === 'upsorch-device') return { ...n, simSpeed: 60 };
        return n;
      });
      const byName = (name: string) => flow.find((n) => n.name === name).id;
      const upsIn = flow.find((n) => n.type === 'upsorch-ups-in').id;
      const th = flow.find((n) => n.type === 'upsorch-threshold').id;
      await helper.load(ourNodes, flow);
      const shutdown = new Collector(byName('shutdown'));
      const cancel = new Collector(byName('cancel'));
      const restore = new Collector(byName('restore'));
      await waitForStatus(th, (s) => s.text === 'idle · on mains', 5000);

      // 20 % charge at 25 % load: about 12 min of runtime, under the example's 10 min in ~2 min (2 s)
      send(upsIn, { topic: 'set-charge', payload: 20 });
      send(upsIn, { topic: 'power-lost', payload: Date.now() });
      await waitForStatus(th, (s) => s.fill === 'yellow' && /^armed · runtime \d+m > 10m$/.test(s.text ?? ''), 5000);
      const got = await shutdown.waitFor(() => true, 20000);
      assert.equal(got.msg.topic, 'shutdown');
      assert.equal(got.msg.payload.reason.vector, 'runtime');
      assert.equal(got.msg.payload.reason.ups, 'Rehearsal UPS');
      assert.ok((got.msg.payload.reason.values.runtime as number) <= 600);
      await waitForStatus(th, (s) => s.fill === 'red' && /^shutdown · UPS Rehearsal UPS runtime \d+ min/.test(s.text ?? ''));

      send(upsIn, { topic: 'power-restored', payload: Date.now() });
      const c = await cancel.waitFor(() => true, 15000);
      assert.match(c.msg.payload.reason.message, /^mains back for \d+ s before the point of no return: shutdown cancelled$/);
      assert.ok(c.at - got.at < 30000, 'within the point of no return');
      await waitForStatus(th, (s) => s.text === 'idle · shutdown cancelled');
      assert.equal(shutdown.received.length, 1);
      assert.equal(restore.received.length, 0);
      assert.ok(statuses(th).every((s) => s.fill !== 'red' || !/invalid/.test(s.text ?? '')));
    });
  });
});
