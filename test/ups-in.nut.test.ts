/**
 * The UPS in node against a real NUT stack (upsd + dummy-ups on loopback) in the Node-RED runtime.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { NutPeer } from './peers/nut';
import { NutConnection } from '../lib/nut/connection';
import { NutSource } from '../lib/nut/source';
import { SourceError } from '../lib/ups/source';
import { Collector, deviceConfig, helper, ourNodes, sleep, upsIn, waitForStatus } from './util/red';

/** Established client connections to 127.0.0.1:port in this network namespace (from /proc/net/tcp). */
function clientConnections(port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let n = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!fs.existsSync(file)) continue;
    for (const line of fs.readFileSync(file, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length > 3 && cols[2].endsWith(':' + hexPort) && cols[3] === '01') n++;
    }
  }
  return n;
}

function activeResources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1;
  return counts;
}

async function numLogins(peer: NutPeer, ups: string): Promise<number> {
  const c = await NutConnection.connect({ host: peer.host, port: peer.port, timeoutMs: 3000 });
  try {
    return await c.getNumLogins(ups);
  } finally {
    await c.close();
  }
}

/** A loopback stand-in that says OK to everything and records every byte it is sent. */
async function recordingServer(): Promise<{ port: number; received: () => string; close: () => Promise<void> }> {
  let received = '';
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.on('data', (d) => {
      received += d.toString('latin1');
      for (const line of d.toString('latin1').split('\n').filter(Boolean)) {
        s.write(line.startsWith('LIST') ? 'BEGIN LIST VAR sim\nVAR sim ups.status "OL"\nEND LIST VAR sim\n' : 'OK\n');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    received: () => received,
    close: () => new Promise((r) => { sockets.forEach((x) => x.destroy()); server.close(() => r()); }),
  };
}

const ONLINE = { 'ups.status': 'OL', 'battery.charge': '100', 'battery.runtime': '3600' };

describe('UPS in node with a real NUT server (upsd + dummy-ups)', function () {
  this.timeout(60000);
  let peer: NutPeer;

  before(async function () {
    this.timeout(60000);
    peer = await NutPeer.start({
      ups: {
        sim: {
          'device.mfr': 'Simulated', 'device.model': 'SimUPS 1500', 'device.serial': 'SN123', 'device.type': 'ups', 'ups.status': 'OL',
          'battery.charge': '100', 'battery.charge.low': '20', 'battery.runtime': '3600', 'battery.runtime.low': '120',
          'input.voltage': '230.0', 'output.voltage': '229.5', 'ups.load': '023.4', 'ups.realpower': '150', 'ups.temperature': '30.5',
          'input.transfer.low': '180', 'input.transfer.high': '260',
        },
        other: { 'ups.status': 'OL', 'battery.charge': '90' },
      },
    });
  });
  after(async () => {
    await peer?.stop();
  });
  afterEach(async () => {
    await helper.unload();
  });

  const nutDevice = (over: Record<string, unknown> = {}) => deviceConfig('dev', { source: 'nut', host: '127.0.0.1', port: peer.port, upsName: 'sim', ...over });

  it('delivers values with their units, device identity and raw variables', async () => {
    await peer.setVars('sim', ONLINE);
    await peer.waitFor('sim', 'ups.status', 'OL');
    await helper.load(ourNodes, [nutDevice(), ...upsIn('in', 'dev')]);
    const { msg } = await new Collector('in-state').waitFor((m) => m.payload.comm === 'ok', 5000);
    const s = msg.payload;
    assert.equal(s.ups, 'sim');
    assert.equal(s.source, 'nut');
    assert.equal(s.online, true);
    assert.equal(s.onBattery, false);
    assert.equal(s.charge, 100); // %
    assert.equal(s.runtime, 3600); // s
    assert.equal(s.inputVoltage, 230); // V
    assert.equal(s.outputVoltage, 229.5);
    assert.equal(s.load, 23.4); // % ("023.4" on the wire)
    assert.equal(s.realPower, 150); // W
    assert.equal(s.temperature, 30.5); // °C
    assert.deepEqual(s.device, { mfr: 'Simulated', model: 'SimUPS 1500', serial: 'SN123' });
    assert.equal(s.raw['ups.load'], '023.4');
    assert.deepEqual(s.untrusted, []);
    const st = await waitForStatus('in', (x) => x.fill === 'green');
    assert.equal(st.text, 'OL 100% 1h00m');
  });

  it('a change in the driver\'s data reaches the node within about 2 s', async () => {
    await helper.load(ourNodes, [nutDevice(), ...upsIn('in', 'dev')]);
    const states = new Collector('in-state');
    await states.waitFor((m) => m.payload.comm === 'ok', 5000);
    const t0 = Date.now();
    await peer.setVars('sim', { 'battery.charge': '87' });
    const got = await states.waitFor((m) => m.payload.charge === 87, 5000);
    const ms = got.at - t0;
    // dummy-ups re-reads its file once a second; we poll once a second
    assert.ok(ms <= 2500, `took ${ms} ms`);
    await peer.setVars('sim', ONLINE);
  });

  it('OL → OB → OB LB → FSD → OL: ONBATT, LOWBATT, FSD, ONLINE, each once and in order', async () => {
    await peer.setVars('sim', ONLINE);
    await peer.waitFor('sim', 'ups.status', 'OL');
    await helper.load(ourNodes, [nutDevice({ pollIntervalOnBattery: 0.5 }), ...upsIn('in', 'dev')]);
    const states = new Collector('in-state');
    const events = new Collector('in-events');
    await states.waitFor((m) => m.payload.comm === 'ok', 5000);

    await peer.setVars('sim', { 'ups.status': 'OB DISCHRG', 'battery.charge': '80', 'battery.runtime': '1380' });
    const onbatt = await events.waitFor((m) => m.topic === 'ONBATT', 5000);
    assert.equal(onbatt.msg.payload.message, 'UPS sim is on battery: charge 80%, runtime 23 min');
    await waitForStatus('in', (x) => x.fill === 'yellow' && x.text === 'OB DISCHRG 80% 23m');

    await peer.setVars('sim', { 'ups.status': 'OB DISCHRG LB', 'battery.charge': '15', 'battery.runtime': '100' });
    await events.waitFor((m) => m.topic === 'LOWBATT', 5000);
    await waitForStatus('in', (x) => x.fill === 'red' && /^OB DISCHRG LB 15%/.test(x.text ?? ''));

    // FSD the way a NUT primary raises it: LOGIN, FSD (latched in upsd until it restarts)
    const primary = await NutConnection.connect({ host: peer.host, port: peer.port, timeoutMs: 3000 });
    await primary.authenticate(peer.users.monitor.username, peer.users.monitor.password, 'sim');
    assert.equal(await primary.command('FSD sim'), 'OK FSD-SET');
    await primary.close();
    const fsd = await events.waitFor((m) => m.topic === 'FSD', 5000);
    assert.equal(fsd.msg.payload.severity, 'critical');
    assert.equal(fsd.msg.payload.state.fsd, true);

    await peer.setVars('sim', ONLINE);
    await events.waitFor((m) => m.topic === 'ONLINE', 5000);
    await sleep(1500); // a few more polls: nothing may repeat
    assert.deepEqual(events.messages.map((m) => m.topic), ['ONBATT', 'LOWBATT', 'FSD', 'ONLINE']);
    await peer.restart(); // clear the latched FSD
  });

  it('driver killed → COMMBAD, and comm lost within 2 polls; driver back → COMMOK', async () => {
    await helper.load(ourNodes, [nutDevice(), ...upsIn('in', 'dev')]);
    const events = new Collector('in-events');
    const states = new Collector('in-state');
    await states.waitFor((m) => m.payload.comm === 'ok', 5000);
    // Count polls on the device itself, so that "within 2 polls" does not depend on the machine's load.
    const device = helper.getNode('dev').device();
    let lostAtPoll: number | undefined;
    const unsubscribe = device.subscribe((st: { comm: string }) => {
      if (st.comm === 'lost' && lostAtPoll === undefined) lostAtPoll = device.polls;
    });
    const pollsBefore = device.polls;
    const t0 = Date.now();
    await peer.killDriver('sim');
    try {
      const bad = await events.waitFor((m) => m.topic === 'COMMBAD', 5000);
      assert.ok(bad.at - t0 <= 2 * 1000 + 500, `COMMBAD after ${bad.at - t0} ms`);
      // upsd 2.8.0 answers DATA-STALE to the first poll after the driver died and DRIVER-NOT-CONNECTED
      // from the next one on (measured: stale at ~1 s, lost at ~2 s, nearly every run): COMMBAD may
      // say stale, but by the second poll it is "lost".
      assert.ok(['lost', 'stale'].includes(bad.msg.payload.state.comm), bad.msg.payload.state.comm);
      const lost = await states.waitFor((m) => m.payload.comm === 'lost', 5000);
      assert.ok(lostAtPoll !== undefined && lostAtPoll - pollsBefore <= 2, `lost at poll ${lostAtPoll! - pollsBefore} after the kill (${lost.at - t0} ms)`);
      assert.equal(lost.msg.payload.commError, 'upsd has no connection to the UPS driver (driver not running?) (ERR DRIVER-NOT-CONNECTED)');
      assert.equal(lost.msg.payload.charge, 100, 'last known readings kept');
      await waitForStatus('in', (x) => x.fill === 'red' && x.text === 'comm lost: upsd has no connection to the UPS driver (driver not running?) (ERR DRIVER-NOT-CONNECTED)');
    } finally {
      await unsubscribe();
      await peer.startDriver('sim');
    }
    const ok = await events.waitFor((m) => m.topic === 'COMMOK', 15000);
    assert.equal(ok.msg.payload.state.comm, 'ok');
    await waitForStatus('in', (x) => x.fill === 'green');
  });

  it('driver stops answering → comm stale (upsd: DATA-STALE); it answers again → COMMOK', async () => {
    await helper.load(ourNodes, [nutDevice(), ...upsIn('in', 'dev')]);
    const events = new Collector('in-events');
    await new Collector('in-state').waitFor((m) => m.payload.comm === 'ok', 5000);
    peer.pauseDriver('sim');
    try {
      const bad = await events.waitFor((m) => m.topic === 'COMMBAD', 15000);
      assert.equal(bad.msg.payload.state.comm, 'stale');
      assert.match(bad.msg.payload.message, /is stale: .*data is stale/);
      await waitForStatus('in', (x) => x.fill === 'yellow' && /^stale:/.test(x.text ?? ''));
    } finally {
      peer.resumeDriver('sim');
    }
    await events.waitFor((m) => m.topic === 'COMMOK', 15000);
  });

  it('upsd not running at deploy: retries with a clear status, then recovers when it starts', async () => {
    await peer.stopUpsd();
    let states: Collector;
    try {
      await helper.load(ourNodes, [nutDevice(), ...upsIn('in', 'dev')]);
      states = new Collector('in-state');
      const st = await waitForStatus('in', (x) => x.fill === 'red', 5000);
      assert.match(st.text ?? '', /^comm lost: connection refused at 127\.0\.0\.1:\d+: is upsd running/);
      await sleep(2500);
    } finally {
      await peer.startUpsd();
    }
    const ok = await states!.waitFor((m) => m.payload.comm === 'ok', 20000);
    assert.equal(ok.msg.payload.online, true);
  });

  it('unknown UPS name: red status naming the UPSes upsd does have', async () => {
    await helper.load(ourNodes, [nutDevice({ upsName: 'nosuch' }), ...upsIn('in', 'dev')]);
    const { msg } = await new Collector('in-state').waitFor(() => true, 5000);
    assert.equal(msg.payload.comm, 'lost');
    assert.match(msg.payload.commError, /^upsd at 127\.0\.0\.1:\d+ has no UPS named "nosuch" \(it has: (sim, other|other, sim)\)$/);
    await waitForStatus('in', (x) => x.fill === 'red' && /has no UPS named "nosuch"/.test(x.text ?? ''));
  });

  it('wrong port: red status that says the connection was refused', async () => {
    const free = peer.port + 1;
    await helper.load(ourNodes, [nutDevice({ port: free }), ...upsIn('in', 'dev')]);
    const { msg } = await new Collector('in-state').waitFor(() => true, 5000);
    assert.equal(msg.payload.comm, 'lost');
    assert.match(msg.payload.commError, new RegExp(`connection refused at 127\\.0\\.0\\.1:${free}`));
    const st = await waitForStatus('in', (x) => x.fill === 'red' && x.shape === 'ring', 5000);
    assert.match(st.text ?? '', new RegExp(`^comm lost: connection refused at 127\\.0\\.0\\.1:${free}`));
  });

  it('wrong password: LOGIN refused is shown in red and warned about, and the UPS is still read', async () => {
    await helper.load(ourNodes, [nutDevice(), ...upsIn('in', 'dev')], { dev: { username: peer.users.monitor.username, password: 'not-the-password' } });
    const { msg } = await new Collector('in-state').waitFor((m) => m.payload.comm === 'ok', 5000);
    assert.equal(msg.payload.online, true);
    const st = await waitForStatus('in', (x) => x.fill === 'red', 5000);
    assert.match(st.text ?? '', /^OL 100% 1h00m · upsd refused LOGIN for user "monuser"/);
    const warned = helper.getNode('in').warn.getCalls().map((c: any) => String(c.args[0]));
    assert.ok(warned.some((w: string) => /wrong username or password/.test(w)), warned.join('\n'));
    assert.equal(await numLogins(peer, 'sim'), 0);
  });

  it('a username NUT cannot send (a space): the device refuses it in red at deploy, and never reads green without LOGIN', async () => {
    await helper.load(ourNodes, [nutDevice(), ...upsIn('in', 'dev')], { dev: { username: 'mon user', password: peer.users.monitor.password } });
    const st = await waitForStatus('in', (x) => x.fill === 'red', 5000);
    assert.match(st.text ?? '', /username: a NUT username may contain only letters, digits/);
    const states = new Collector('in-state');
    await sleep(1500);
    assert.equal(states.messages.length, 0, 'no state without the login');
    assert.equal(await numLogins(peer, 'sim'), 0);
  });

  it('the NUT source itself, given such a username, hangs up and reports lost on every attempt (real upsd)', async () => {
    const source = new NutSource({ host: peer.host, port: peer.port, ups: 'sim', username: 'mon user', password: 'monpass', timeoutMs: 2000, backoffMinMs: 100, backoffMaxMs: 100 });
    try {
      for (let i = 0; i < 3; i++) {
        await assert.rejects(source.read(Date.now()), (e: unknown) => e instanceof SourceError && e.comm === 'lost' && /username "mon user"/.test(e.message));
        await sleep(150);
      }
      assert.equal(source.warning, null);
      assert.equal(clientConnections(peer.port), 0, 'no connection left open to read on');
      assert.equal(await numLogins(peer, 'sim'), 0);
    } finally {
      await source.close();
    }
  });

  it('with credentials it logs in as a secondary (NUMLOGINS 1) and logs out when the flow stops', async () => {
    await helper.load(ourNodes, [nutDevice(), ...upsIn('in', 'dev')], { dev: { username: peer.users.monitor.username, password: peer.users.monitor.password } });
    await new Collector('in-state').waitFor((m) => m.payload.comm === 'ok', 5000);
    await waitForStatus('in', (x) => x.fill === 'green');
    assert.equal(await numLogins(peer, 'sim'), 1);
    await helper.unload();
    assert.equal(await numLogins(peer, 'sim'), 0);
  });

  it('two UPS in nodes on one UPS device share one TCP connection; stopping the flow closes it and leaves no timer or socket', async () => {
    await sleep(200);
    const before = activeResources();
    assert.equal(clientConnections(peer.port), 0, 'no client connection before the flow starts');
    await helper.load(ourNodes, [nutDevice(), ...upsIn('a', 'dev'), ...upsIn('b', 'dev')]);
    const a = new Collector('a-state');
    const b = new Collector('b-state');
    await a.waitFor((m) => m.payload.comm === 'ok', 5000);
    await b.waitFor((m) => m.payload.comm === 'ok', 5000);
    await sleep(1500);
    assert.equal(clientConnections(peer.port), 1, 'one connection for two nodes');
    await helper.unload();
    await sleep(300);
    assert.equal(clientConnections(peer.port), 0, 'connection closed with the flow');
    const after = activeResources();
    assert.ok((after.Timeout ?? 0) <= (before.Timeout ?? 0), `timers before ${before.Timeout ?? 0}, after ${after.Timeout ?? 0}`);
    assert.ok((after.TCPSocketWrap ?? 0) <= (before.TCPSocketWrap ?? 0), `sockets before ${before.TCPSocketWrap ?? 0}, after ${after.TCPSocketWrap ?? 0}`);
  });

  it('the config dialog\'s Test connection reads the UPS and never echoes the password', async () => {
    await helper.startServer();
    try {
      await helper.load(ourNodes, [nutDevice(), ...upsIn('in', 'dev')], { dev: { username: 'monuser', password: 'monpass' } });
      const res = await helper.request().post('/upsorch-device/test').send({ ...nutDevice(), id: 'dev', password: '__PWRD__' }).expect(200);
      assert.equal(res.body.ok, true);
      assert.equal(res.body.model, 'Simulated SimUPS 1500');
      assert.equal(res.body.status, 'OL');
      assert.equal(res.body.warning, null, 'stored credentials were used and accepted');
      assert.ok(!JSON.stringify(res.body).includes('monpass'));
      const bad = await helper.request().post('/upsorch-device/test').send({ ...nutDevice({ upsName: 'nosuch' }) }).expect(200);
      assert.equal(bad.body.ok, false);
      assert.match(bad.body.message, /has no UPS named "nosuch"/);
      const invalid = await helper.request().post('/upsorch-device/test').send({ source: 'nut', port: 'x' }).expect(200);
      assert.equal(invalid.body.ok, false);
      assert.match(invalid.body.message, /port must be a number/);
      const badUser = await helper.request().post('/upsorch-device/test').send({ ...nutDevice(), id: 'dev', username: 'mon user', password: '__PWRD__' }).expect(200);
      assert.equal(badUser.body.ok, false);
      assert.match(badUser.body.message, /a NUT username may contain only/);
    } finally {
      await helper.unload();
      await helper.stopServer();
    }
  });

  it('Test connection naming another host or port gets no stored password: the dialog must send it', async () => {
    const rec = await recordingServer();
    await helper.startServer();
    try {
      await helper.load(ourNodes, [nutDevice(), ...upsIn('in', 'dev')], { dev: { username: 'monuser', password: 'monpass' } });
      const res = await helper.request().post('/upsorch-device/test').send({ ...nutDevice({ port: rec.port }), id: 'dev', username: 'monuser', password: '__PWRD__' }).expect(200);
      assert.equal(res.body.ok, true, res.body.message);
      assert.match(rec.received(), /^USERNAME monuser\nPASSWORD ""\nLOGIN sim\n/, 'it did reach the other server');
      assert.ok(!rec.received().includes('monpass'), rec.received());
      // The deployed endpoint still gets its stored password (LOGIN accepted, no warning).
      const same = await helper.request().post('/upsorch-device/test').send({ ...nutDevice(), id: 'dev', username: 'monuser', password: '__PWRD__' }).expect(200);
      assert.equal(same.body.ok, true);
      assert.equal(same.body.warning, null);
    } finally {
      await helper.unload();
      await helper.stopServer();
      await rec.close();
    }
  });
});
