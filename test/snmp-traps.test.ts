/**
 * SNMP traps in the Node-RED runtime: a UPS device with a long poll interval and its trap listener
 * on a free loopback port; the simulated agent (snmpsim) changes state and net-snmp's `snmptrap` /
 * `snmpinform` CLI sends the card's trap. The change must show at the UPS in node far sooner than
 * the next poll. v1, v2c, v3 traps and v3 informs; wrong community and non-UPS traps are ignored.
 */
import { strict as assert } from 'node:assert';
import * as dgram from 'node:dgram';
import { SnmpPeer, freeUdpPort, snmptrap } from './peers/snmp';
import { STATES, allAgents } from './peers/snmp-ups-agents';
import { openTrapListeners, trapReachProblem } from '../lib/snmp/traps';
import { SnmpSource } from '../lib/snmp/source';
import { Collector, deviceConfig, helper, ourNodes, upsIn, waitForStatus } from './util/red';

const POLL_S = 30;
const V3 = { user: 'trapper', level: 'authPriv', auth: 'SHA', authKey: 'authpass123', priv: 'AES', privKey: 'privpass123' };

describe('SNMP traps → immediate poll (real snmpsim + snmptrap CLI, Node-RED runtime)', function () {
  this.timeout(60_000);
  let peer: SnmpPeer;
  let trapPort: number;

  before(async () => {
    peer = await SnmpPeer.start({ agents: allAgents(), v3Users: [{ name: V3.user, auth: V3.auth, authKey: V3.authKey, priv: V3.priv, privKey: V3.privKey }], defaultContext: 'apc' });
  });
  beforeEach(async () => {
    trapPort = await freeUdpPort();
  });
  afterEach(async () => {
    await helper.unload();
    await peer.set('apc', STATES.apc.online);
    await peer.set('ietf', STATES.ietf.online);
  });
  after(async () => {
    await peer?.stop();
  });

  const device = (over: Record<string, unknown> = {}) =>
    deviceConfig('dev', {
      source: 'snmp', host: peer.host, snmpPort: peer.port, snmpVersion: 'v2c', timeout: 2, snmpRetries: 0,
      pollInterval: POLL_S, pollIntervalOnBattery: POLL_S, snmpTraps: true, snmpTrapAddress: '127.0.0.1', snmpTrapPort: trapPort, ...over,
    });

  async function started(creds: Record<string, string>, over: Record<string, unknown> = {}) {
    await helper.load(ourNodes, [device(over), ...upsIn('in', 'dev')], { dev: creds });
    const states = new Collector('in-state');
    await states.waitFor((m) => m.payload.online === true, 5000, 0, 'the first (on-line) state');
    // The listener binds with the first poll; give the socket a moment.
    const dev = helper.getNode('dev');
    await dev.device().source.trapsReady();
    return { states, events: new Collector('in-events'), source: dev.device().source };
  }

  it('v2c upsOnBattery trap: OB shows at once, not at the next 30 s poll', async () => {
    const { states, events } = await started({ community: 'apc' });
    await peer.set('apc', STATES.apc['on-battery']);
    const from = states.received.length;
    const t0 = Date.now();
    await snmptrap({ port: trapPort, version: 'v2c', community: 'apc', oid: '1.3.6.1.4.1.318.0.5' });
    const ob = await states.waitFor((m) => m.payload.onBattery, 5000, from, 'OB after the trap');
    const latency = ob.at - t0;
    assert.ok(latency < POLL_S * 1000 / 10, `trap to state message ${latency} ms`);
    await events.waitFor((m) => m.topic === 'ONBATT', 1000);
  });

  it('v1 powerRestored trap (enterprise apc, specific 9) → OL at once', async () => {
    const { states, source } = await started({ community: 'apc' });
    await peer.set('apc', STATES.apc['on-battery']);
    await snmptrap({ port: trapPort, version: 'v1', community: 'apc', enterprise: '1.3.6.1.4.1.318', specific: 5 });
    await states.waitFor((m) => m.payload.onBattery, 5000);
    await peer.set('apc', STATES.apc.online);
    const from = states.received.length;
    await snmptrap({ port: trapPort, version: 'v1', community: 'apc', enterprise: '1.3.6.1.4.1.318', specific: 9 });
    await states.waitFor((m) => m.payload.online, 5000, from, 'OL after powerRestored');
    assert.equal(source.lastTrap.kind, 'power-restored');
    assert.equal(source.lastTrap.version, 'v1');
  });

  it('v3 trap (authPriv, the device\'s v3 user) lowBattery → LB at once; v3 inform acknowledged', async () => {
    const v3 = { snmpVersion: 'v3', snmpUser: V3.user, snmpSecLevel: 'authPriv', snmpAuthProtocol: 'sha', snmpPrivProtocol: 'aes' };
    const { states, source } = await started({ authKey: V3.authKey, privKey: V3.privKey }, v3);
    await peer.set('apc', STATES.apc['low-battery']);
    const from = states.received.length;
    await snmptrap({ port: trapPort, version: 'v3', oid: '1.3.6.1.4.1.318.0.7', v3: { ...V3, engineId: '0x8000000001020304' } });
    await states.waitFor((m) => m.payload.lowBattery, 5000, from, 'LB after the v3 trap');
    assert.equal(source.lastTrap.kind, 'low-battery');
    await peer.set('apc', STATES.apc.online);
    const from2 = states.received.length;
    // An inform: snmpinform discovers our engine ID, sends, and waits for our acknowledgement.
    await snmptrap({ port: trapPort, version: 'v3', inform: true, oid: '1.3.6.1.4.1.318.0.11', v3: V3 });
    await states.waitFor((m) => m.payload.online && !m.payload.lowBattery, 5000, from2, 'OL after the inform');
    assert.equal(source.lastTrap.inform, true);
  });

  it('RFC 1628 upsTrapAlarmEntryAdded with upsAlarmOnBattery → on-battery', async () => {
    const { states, source } = await started({ community: 'ietf' });
    await peer.set('ietf', STATES.ietf['on-battery']);
    const from = states.received.length;
    await snmptrap({
      port: trapPort, version: 'v2c', community: 'ietf', oid: '1.3.6.1.2.1.33.2.3',
      varbinds: ['1.3.6.1.2.1.33.1.6.2.1.1.1', 'i', '1', '1.3.6.1.2.1.33.1.6.2.1.2.1', 'o', '1.3.6.1.2.1.33.1.6.3.2'],
    });
    await states.waitFor((m) => m.payload.onBattery, 5000, from);
    assert.equal(source.lastTrap.kind, 'on-battery');
  });

  it('RFC 1628 upsTrapAlarmEntryAdded with upsAlarmLowBattery → LB at once; EntryRemoved → battery ok', async () => {
    const { states, source, events } = await started({ community: 'ietf' });
    await peer.set('ietf', STATES.ietf['low-battery']);
    const from = states.received.length;
    await snmptrap({
      port: trapPort, version: 'v2c', community: 'ietf', oid: '1.3.6.1.2.1.33.2.3',
      varbinds: ['1.3.6.1.2.1.33.1.6.2.1.1.1', 'i', '1', '1.3.6.1.2.1.33.1.6.2.1.2.1', 'o', '1.3.6.1.2.1.33.1.6.3.3'],
    });
    await states.waitFor((m) => m.payload.onBattery && m.payload.lowBattery, 5000, from, 'OB LB after the trap');
    assert.equal(source.lastTrap.kind, 'low-battery');
    await events.waitFor((m) => m.topic === 'LOWBATT', 1000);
    await peer.set('ietf', STATES.ietf.online);
    const from2 = states.received.length;
    await snmptrap({
      port: trapPort, version: 'v2c', community: 'ietf', oid: '1.3.6.1.2.1.33.2.4',
      varbinds: ['1.3.6.1.2.1.33.1.6.2.1.1.1', 'i', '1', '1.3.6.1.2.1.33.1.6.2.1.2.1', 'o', '1.3.6.1.2.1.33.1.6.3.3'],
    });
    await states.waitFor((m) => m.payload.online && !m.payload.lowBattery, 5000, from2, 'OL after the alarm was removed');
    assert.equal(source.lastTrap.kind, 'battery-ok');
  });

  it('a trap with the wrong community, or one that is not about a UPS, does not poll', async () => {
    const { states, source } = await started({ community: 'apc' });
    await peer.set('apc', STATES.apc['on-battery']);
    const from = states.received.length;
    await snmptrap({ port: trapPort, version: 'v2c', community: 'not-apc', oid: '1.3.6.1.4.1.318.0.5' });
    await snmptrap({ port: trapPort, version: 'v2c', community: 'apc', oid: '1.3.6.1.6.3.1.1.5.1' }); // coldStart
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(states.received.slice(from).filter((r) => r.msg.payload.onBattery).length, 0, 'no read before the next poll');
    assert.equal(source.trapsReceived, 0);
  });

  it('trap port in use: reading goes on, the status says why traps are off', async () => {
    const blocker = dgram.createSocket('udp4');
    await new Promise<void>((r) => blocker.bind(trapPort, '127.0.0.1', () => r()));
    try {
      await helper.load(ourNodes, [device({ pollInterval: 0.5 }), ...upsIn('in', 'dev')], { dev: { community: 'apc' } });
      const st = await waitForStatus('in', (s) => /traps off/.test(s.text ?? ''), 5000);
      assert.match(st.text ?? '', /trap port 127\.0\.0\.1:\d+ is already in use/);
      assert.match(st.text ?? '', /^OL /, 'the UPS is still read');
    } finally {
      blocker.close();
    }
  });

  it('a listen address that is not an IP (a host name): ready rejects with the reason, the source warns, nothing stays open', async () => {
    const src = new SnmpSource({ host: peer.host, port: peer.port, version: 'v2c', community: 'apc', timeoutMs: 1500, retries: 0, profile: 'auto', traps: { address: 'trap-host.invalid', port: trapPort } });
    try {
      await assert.rejects(src.trapsReady(), /cannot listen for traps on "trap-host\.invalid": give an IP address of this machine \(0\.0\.0\.0 for all\), not a host name/);
      await new Promise((r) => setImmediate(r));
      assert.match(src.warning ?? '', /^traps off: cannot listen for traps on "trap-host\.invalid"/);
      assert.equal((await src.read(Date.now())).vars['ups.status'], 'OL', 'the UPS is still read');
      assert.equal(openTrapListeners(), 0);
    } finally {
      await src.close();
    }
  });

  it('the UPS device refuses a trap listen address that is not an IP address', async () => {
    await helper.load(ourNodes, [device({ snmpTrapAddress: 'nas.local' }), ...upsIn('in', 'dev')], { dev: { community: 'apc' } });
    const st = await waitForStatus('in', (x) => x.fill === 'red', 5000);
    assert.match(st.text ?? '', /^invalid UPS device configuration: snmpTrapAddress: the trap listen address must be an IP address/);
    assert.match(helper.getNode('dev').configError, /snmpTrapAddress: the trap listen address must be an IP address of this machine \(0\.0\.0\.0 for all\), not "nas\.local"/);
    assert.equal(openTrapListeners(), 0);
  });

  it('traps bound to loopback while the card is elsewhere: a warning says the card can never reach it', async () => {
    assert.equal(trapReachProblem('127.0.0.1', '127.0.0.1'), null);
    assert.equal(trapReachProblem('0.0.0.0', '192.0.2.10'), null);
    assert.equal(trapReachProblem('::1', 'localhost'), null);
    const want = 'traps: listening on 127.0.0.1 only, which the card at 192.0.2.10 can never reach: listen on 0.0.0.0 or an address of this machine the card can send to';
    assert.equal(trapReachProblem('127.0.0.1', '192.0.2.10'), want);
    // Nothing is sent to 192.0.2.10: the warning is known from the settings alone.
    const src = new SnmpSource({ host: '192.0.2.10', port: 161, version: 'v2c', community: 'apc', timeoutMs: 1500, retries: 0, profile: 'auto', traps: { address: '127.0.0.1', port: trapPort } });
    assert.equal(src.warning, want);
    await src.close();
    // A loopback agent with loopback traps (this test bed) gets no such warning.
    const { source } = await started({ community: 'apc' });
    assert.equal(source.warning, null);
  });

  it('closing the flow closes the trap socket', async () => {
    await started({ community: 'apc' });
    assert.equal(openTrapListeners(), 1);
    await helper.unload();
    assert.equal(openTrapListeners(), 0);
    // The port is free again.
    const s = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(trapPort, '127.0.0.1', () => resolve());
    });
    s.close();
  });
});
