/**
 * The UPS in node with the simulated UPS, in the real Node-RED runtime: what a user sees when they
 * import the demo flow and press its inject buttons.
 */
import { strict as assert } from 'node:assert';
import { Collector, deviceConfig, errorsOf, helper, ourNodes, send, upsIn, waitForStatus } from './util/red';

describe('UPS in node with a simulated UPS (Node-RED runtime)', function () {
  this.timeout(20000);
  afterEach(async () => {
    await helper.unload();
  });

  it('emits the normalised state at deploy with a green badge', async () => {
    await helper.load(ourNodes, [deviceConfig('dev', { name: 'lab' }), ...upsIn('in', 'dev')]);
    const states = new Collector('in-state');
    const { msg } = await states.waitFor(() => true, 3000);
    assert.equal(msg.topic, 'lab');
    assert.equal(msg.payload.ups, 'lab');
    assert.equal(msg.payload.source, 'sim');
    assert.equal(msg.payload.online, true);
    assert.equal(msg.payload.charge, 100);
    assert.equal(msg.payload.runtime, 3600);
    assert.equal(msg.payload.comm, 'ok');
    const st = await waitForStatus('in', (s) => s.fill === 'green');
    assert.equal(st.text, 'OL 100% 1h00m');
  });

  it('power lost → ONBATT and a falling runtime; LOWBATT at the threshold; power restored → ONLINE and charging', async () => {
    // 2000× speed: the hour of battery lasts under two seconds of test time.
    await helper.load(ourNodes, [deviceConfig('dev', { simSpeed: 2000, pollInterval: 0.2, pollIntervalOnBattery: 0.2 }), ...upsIn('in', 'dev')]);
    const states = new Collector('in-state');
    const events = new Collector('in-events');
    await states.waitFor(() => true, 3000);
    send('in', { topic: 'power-lost' });
    const onbatt = await events.waitFor((m) => m.topic === 'ONBATT', 3000);
    assert.equal(onbatt.msg.payload.severity, 'warning');
    assert.match(onbatt.msg.payload.message, /^UPS simulated is on battery: charge 100%/);
    await waitForStatus('in', (s) => s.fill === 'yellow' && /^OB DISCHRG/.test(s.text ?? ''));
    const low = await events.waitFor((m) => m.topic === 'LOWBATT', 10000);
    assert.ok(low.msg.payload.state.charge <= 20.5, `LB at ${low.msg.payload.state.charge}%`);
    const runtimes = states.messages.filter((m) => m.payload.onBattery).map((m) => m.payload.runtime);
    assert.ok(runtimes.length >= 3, 'several states while on battery');
    for (let i = 1; i < runtimes.length; i++) assert.ok(runtimes[i] <= runtimes[i - 1], 'runtime never rises on battery');
    const from = states.received.length;
    send('in', { topic: 'power-restored' });
    await events.waitFor((m) => m.topic === 'ONLINE', 3000);
    const back = await states.waitFor((m) => m.payload.online, 3000, from);
    assert.equal(back.msg.payload.charging, true);
    assert.deepEqual(back.msg.payload.flags, ['OL', 'CHRG']);
    assert.deepEqual(events.messages.map((m) => m.topic), ['ONBATT', 'LOWBATT', 'ONLINE'], 'each event exactly once');
  });

  it('refresh answers with the current state at once; an unknown topic is an error for Catch nodes', async () => {
    await helper.load(ourNodes, [deviceConfig('dev', {}), ...upsIn('in', 'dev')]);
    const states = new Collector('in-state');
    await states.waitFor(() => true, 3000);
    send('in', { topic: 'refresh', correlation: 42 });
    const r = await states.waitFor((m) => m.correlation === 42, 2000);
    assert.equal(r.msg.payload.online, true);
    send('in', { topic: 'launch-missiles' });
    await waitUntil(() => errorsOf('in').some((e) => /unknown topic "launch-missiles"/.test(e)));
  });

  it('a bad simulator value is reported, and the UPS keeps running', async () => {
    await helper.load(ourNodes, [deviceConfig('dev', {}), ...upsIn('in', 'dev')]);
    const states = new Collector('in-state');
    await states.waitFor(() => true, 3000);
    send('in', { topic: 'set-load', payload: 'heavy' });
    await waitUntil(() => errorsOf('in').some((e) => /load \(%\) must be a number from 0 to 200, got "heavy"/.test(e)));
    await waitForStatus('in', (s) => s.fill === 'red' && /^load \(%\) must be a number/.test(s.text ?? ''));
    send('in', { topic: 'set-load', payload: 50 });
    await states.waitFor((m) => m.payload.load === 50, 3000);
    await waitForStatus('in', (s) => s.fill === 'green', 3000);
  });

  it('repeats the state at the configured interval even when nothing changes', async () => {
    await helper.load(ourNodes, [deviceConfig('dev', { pollInterval: 60 }), ...upsIn('in', 'dev', { interval: 0.3 })]);
    const states = new Collector('in-state');
    const first = await states.waitFor(() => true, 3000);
    // Four repeats; the deadline is generous (a loaded machine delays timers), the spacing is not.
    const fourth = await states.waitFor(() => true, 5000, 4, 'the fourth repeat');
    const ms = fourth.at - first.at;
    assert.ok(ms >= 3 * 300 - 20, `4 repeats within ${ms} ms: faster than every 0.3 s`);
    // Nothing changed and the device polls only every minute: every message is the same state again.
    assert.ok(states.messages.slice(0, 5).every((m) => m.payload.ts === first.msg.payload.ts), 'the same reading repeated');
  });

  it('an invalid device configuration gives a red status and a clear error, no crash', async () => {
    await helper.load(ourNodes, [deviceConfig('dev', { source: 'nut', upsName: 'bad name!', pollInterval: 'often' }), ...upsIn('in', 'dev')]);
    const st = await waitForStatus('in', (s) => s.fill === 'red');
    assert.match(st.text ?? '', /invalid UPS device configuration/);
    const errs = errorsOf('dev').join(' ');
    assert.match(errs, /upsName: UPS name may contain only letters/);
    assert.match(errs, /pollInterval: poll interval \(s\) must be a number/);
    send('in', { topic: 'refresh' });
    await waitUntil(() => errorsOf('in').some((e) => /no working UPS device/.test(e)));
  });

  it('a UPS in node without a device says so', async () => {
    await helper.load(ourNodes, [...upsIn('in', 'missing')]);
    const st = await waitForStatus('in', (s) => s.fill === 'red');
    assert.match(st.text ?? '', /does not exist/);
  });

  it('simulated communication loss: COMMBAD, red status, last readings kept; COMMOK when restored', async () => {
    await helper.load(ourNodes, [deviceConfig('dev', { pollInterval: 0.2 }), ...upsIn('in', 'dev')]);
    const states = new Collector('in-state');
    const events = new Collector('in-events');
    await states.waitFor(() => true, 3000);
    send('in', { topic: 'comm-lost' });
    const bad = await events.waitFor((m) => m.topic === 'COMMBAD', 2000);
    assert.equal(bad.msg.payload.state.comm, 'lost');
    assert.equal(bad.msg.payload.state.charge, 100);
    await waitForStatus('in', (s) => s.fill === 'red' && /^comm lost/.test(s.text ?? ''));
    send('in', { topic: 'comm-restored' });
    await events.waitFor((m) => m.topic === 'COMMOK', 2000);
  });
});

async function waitUntil(cond: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
