/**
 * The UPS command node in the Node-RED runtime, against real peers on loopback:
 * - NUT: upsd + dummy-ups (NutPeer; its upsd.users grants admin instcmds ALL and SET FSD; dummy-ups
 *   offers only load.off) for INSTCMD with TRACKING, unknown commands, SET VAR, FSD, wrong password;
 * - NUT with a real driver behind it: upsd + NUT's snmp-ups reading snmpsim (NutSnmpPeer), so
 *   "power off with return" goes INSTCMD shutdown.return → upsd → snmp-ups → SNMP SET on the agent;
 * - SNMP: our own control writes to snmpsim for each MIB profile (the preset on battery and on mains).
 * Dry-runs are checked to send nothing: the agent / upsd state is unchanged afterwards.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NutPeer, DEFAULT_UPS_VARS } from './peers/nut';
import { NutSnmpPeer, SnmpPeer, freeUdpPort } from './peers/snmp';
import { STATES, allAgents } from './peers/snmp-ups-agents';
import { Collector, deviceConfig, helper, upsCommandNodes, waitForStatus } from './util/red';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const planNode = require('../nodes/upsorch-plan');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const phaseNode = require('../nodes/upsorch-phase');

const I = '1.3.6.1.2.1.33.1.';
const A = '1.3.6.1.4.1.318.1.1.1.';
const C = '1.3.6.1.4.1.3808.1.1.1.';
const X = '1.3.6.1.4.1.534.1.';

function commandNode(over: Record<string, unknown> = {}): Record<string, unknown>[] {
  return [
    { id: 'cmd', type: 'upsorch-ups-command', name: '', ups: 'dev', mode: 'return', command: '', param: '', variable: '', value: '', delayShutdown: 20, delayStart: 30, setDelays: true, confirmTimeout: 10, timeout: 3, runOn: 'shutdown', wires: [['out']], ...over },
    { id: 'out', type: 'helper' },
  ];
}

/** Send a request to the command node and wait for its report. */
async function run(topic: string, extra: Record<string, unknown> = {}): Promise<any> {
  const out = new Collector('out');
  helper.getNode('cmd').receive({ topic, ...extra });
  return (await out.waitFor((m) => m.topic === 'action-report', 30_000)).msg.payload;
}

describe('UPS command node (Node-RED runtime, real peers)', function () {
  this.timeout(90_000);
  afterEach(async () => {
    await helper.unload();
  });

  describe('NUT: upsd + dummy-ups', () => {
    let peer: NutPeer;
    before(async () => {
      peer = await NutPeer.start({ ups: { sim: { ...DEFAULT_UPS_VARS, 'ups.delay.shutdown': '20', 'ups.delay.start': '30' } } });
    });
    after(async () => {
      await peer?.stop();
    });
    const nutDevice = (over: Record<string, unknown> = {}) => deviceConfig('dev', { source: 'nut', host: '127.0.0.1', port: peer.port, upsName: 'sim', timeout: 3, ...over });
    const admin = () => ({ dev: { username: peer.users.admin.username, password: peer.users.admin.password } });

    it('INSTCMD load.off: upsd accepts it, TRACKING shows the driver refused it (dummy-ups handles no command)', async () => {
      await helper.load(upsCommandNodes, [nutDevice(), ...commandNode({ mode: 'instcmd', command: 'load.off' })], admin());
      const dry = await run('dry-run');
      assert.equal(dry.ok, true);
      assert.match(dry.results[0].detail, /^would send INSTCMD load\.off \(offered\); upsd checks the rights of "admin" for this command only when it is sent$/);
      const r = await run('shutdown');
      assert.equal(r.ok, false);
      assert.equal(r.operation, 'command');
      assert.equal(r.results[0].target, 'sim');
      assert.equal(r.results[0].error, 'INSTCMD load.off: the driver reported failure (TRACKING ERR UNKNOWN)');
      await waitForStatus('cmd', (s) => s.fill === 'red' && /1 failed/.test(s.text ?? ''));
    });

    it('an unknown command is refused clearly (dry-run and real)', async () => {
      await helper.load(upsCommandNodes, [nutDevice(), ...commandNode({ mode: 'instcmd', command: 'beeper.mute' })], admin());
      const dry = await run('dry-run');
      assert.equal(dry.ok, false);
      assert.equal(dry.results[0].error, 'UPS sim does not offer beeper.mute (it offers: load.off)');
      const real = await run('shutdown');
      assert.equal(real.ok, false);
      assert.match(real.results[0].error, /INSTCMD beeper\.mute: UPS sim does not offer this command \(ERR CMD-NOT-SUPPORTED\)/);
      await waitForStatus('cmd', (s) => s.fill === 'red' && /1 failed/.test(s.text ?? ''));
    });

    it('"power off with return" on a UPS without shutdown.return: refused, naming what it offers', async () => {
      await helper.load(upsCommandNodes, [nutDevice(), ...commandNode()], admin());
      const r = await run('shutdown');
      assert.equal(r.ok, false);
      assert.equal(r.results[0].error, 'UPS sim does not offer shutdown.return (it offers: load.off)');
    });

    it('SET VAR ups.delay.shutdown: dry-run checks rights and sends nothing; real run sets it', async () => {
      await helper.load(upsCommandNodes, [nutDevice(), ...commandNode({ mode: 'setvar', variable: 'ups.delay.shutdown', value: '45' })], admin());
      const dry = await run('dry-run');
      assert.equal(dry.ok, true, JSON.stringify(dry));
      assert.equal(dry.results[0].method, 'dry-run');
      assert.match(dry.results[0].detail, /would SET ups\.delay\.shutdown from "20" to "45"; "admin" may SET/);
      assert.equal(await peer.get('sim', 'ups.delay.shutdown'), '20', 'dry-run changed nothing');
      const r = await run('command');
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.match(r.results[0].detail, /SET ups\.delay\.shutdown = "45" (TRACKING SUCCESS|accepted)/);
      await peer.waitFor('sim', 'ups.delay.shutdown', '45');
    });

    it('wrong password: the dry-run says so without sending anything; the real run names upsd.users', async () => {
      await helper.load(upsCommandNodes, [nutDevice(), ...commandNode({ mode: 'setvar', variable: 'ups.delay.start', value: '60' })], { dev: { username: 'admin', password: 'wrong' } });
      const dry = await run('dry-run');
      assert.equal(dry.ok, false);
      assert.match(dry.results[0].error, /upsd refuses SET for "admin": wrong password, or no "actions = SET" in upsd\.users/);
      const r = await run('shutdown');
      assert.match(r.results[0].error, /refused by upsd \(ACCESS-DENIED\): wrong password for "admin", or the user lacks "actions = SET" in upsd\.users/);
      assert.equal(await peer.get('sim', 'ups.delay.start'), '30');
    });

    it('FSD: dry-run sends nothing; real run raises FSD, visible in ups.status', async () => {
      await helper.load(upsCommandNodes, [nutDevice(), ...commandNode({ mode: 'fsd' })], admin());
      const dry = await run('dry-run');
      assert.equal(dry.ok, true);
      assert.match(dry.results[0].detail, /would raise FSD on sim \(status now OL\)/);
      assert.equal(await peer.get('sim', 'ups.status'), 'OL', 'no FSD after the dry-run');
      const r = await run('shutdown');
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.match(r.results[0].detail, /^FSD raised: ups\.status FSD OL$/);
      assert.equal(await peer.get('sim', 'ups.status'), 'FSD OL');
      await peer.restart(); // FSD is latched in upsd until it restarts
    });

    it('the dialog lists what the UPS offers (LIST CMD, LIST RW) with the device\'s credentials', async () => {
      await helper.load(upsCommandNodes, [nutDevice(), ...commandNode()], admin());
      const r = (await helper.request().post('/upsorch-ups-command/commands').send({ ups: 'dev', timeout: 3 }).expect(200)).body;
      assert.equal(r.ok, true, r.message);
      assert.equal(r.source, 'nut');
      assert.deepEqual(r.commands.map((c: { name: string }) => c.name), ['load.off']);
      assert.ok(r.variables.includes('ups.delay.shutdown'), JSON.stringify(r.variables));
      assert.ok(!JSON.stringify(r).includes('adminpass'));
      const none = (await helper.request().post('/upsorch-ups-command/commands').send({ ups: 'nosuch' }).expect(200)).body;
      assert.equal(none.ok, false);
      assert.match(none.message, /does not exist \(deleted, or not deployed yet\)/);
    });

    it('startup direction: a shutdown-only command does nothing, and the report says so', async () => {
      await helper.load(upsCommandNodes, [nutDevice(), ...commandNode({ mode: 'setvar', variable: 'ups.delay.start', value: '60' })], admin());
      const r = await run('startup');
      assert.equal(r.ok, true);
      assert.deepEqual(r.results.map((x: any) => [x.target, x.method, x.detail]), [['sim', 'skipped', 'nothing to do in this direction']]);
      await waitForStatus('cmd', (s) => /1 skipped/.test(s.text ?? ''));
      assert.equal(await peer.get('sim', 'ups.delay.start'), '30');
      assert.equal(await peer.get('sim', 'ups.status'), 'OL');
    });

    it('a simulated UPS device cannot take commands: clear error', async () => {
      await helper.load(upsCommandNodes, [deviceConfig('dev', { source: 'sim' }), ...commandNode()]);
      const r = await run('shutdown');
      assert.equal(r.ok, false);
      assert.match(r.error, /UPS device "simulated" is a simulated UPS: commands go to a NUT or SNMP UPS/);
      await waitForStatus('cmd', (s) => s.fill === 'red');
    });
  });

  describe('NUT with a real driver: upsd + snmp-ups (apcc) reading snmpsim', () => {
    let agent: SnmpPeer;
    let nut: NutSnmpPeer;
    before(async () => {
      agent = await SnmpPeer.start({ agents: allAgents() });
      nut = await NutSnmpPeer.start(agent, { apc: { mibs: 'apcc', community: 'apc' } });
    });
    after(async () => {
      await nut?.stop();
      await agent?.stop();
    });

    it('INSTCMD test.battery.start: accepted and tracked (TRACKING SUCCESS), the SET reaches the agent', async () => {
      await helper.load(upsCommandNodes, [deviceConfig('dev', { source: 'nut', host: nut.host, port: nut.port, upsName: 'apc', timeout: 3 }), ...commandNode({ mode: 'instcmd', command: 'test.battery.start', confirmTimeout: 20 })], { dev: { username: 'admin', password: 'adminpass' } });
      const r = await run('shutdown');
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.equal(r.results[0].method, 'graceful');
      assert.equal(r.results[0].detail, 'INSTCMD test.battery.start TRACKING SUCCESS');
      assert.equal(await agent.value('apc', `${A}7.2.2.0`), 2, 'upsAdvTestDiagnostics = testDiagnostics on the agent');
      await waitForStatus('cmd', (s) => s.fill === 'green' && /1 done/.test(s.text ?? ''));
    });

    it('"power off with return": delays set, INSTCMD shutdown.return tracked to SUCCESS, the SNMP SET reaches the agent', async () => {
      await agent.set('apc', STATES.apc['on-battery']);
      await helper.load(upsCommandNodes, [deviceConfig('dev', { source: 'nut', host: nut.host, port: nut.port, upsName: 'apc', timeout: 3 }), ...commandNode({ confirmTimeout: 20 })], { dev: { username: 'admin', password: 'adminpass' } });
      const dry = await run('dry-run');
      assert.equal(dry.ok, true, JSON.stringify(dry));
      assert.match(dry.results[0].detail, /^would set ups\.delay\.shutdown = 20 s and ups\.delay\.start = 30 s, then send INSTCMD shutdown\.return \(offered\); "admin" may SET/);
      assert.equal(await agent.value('apc', `${A}6.1.1.0`), 1, 'dry-run sent nothing to the agent');
      const r = await run('shutdown');
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.match(r.results[0].detail, /ups\.delay\.shutdown = 20 s \(TRACKING SUCCESS\); ups\.delay\.start = 30 s \(TRACKING SUCCESS\); INSTCMD shutdown\.return TRACKING SUCCESS/);
      assert.equal(await agent.value('apc', `${A}6.1.1.0`), 2, 'upsBasicControlConserveBattery = turnOffUpsToConserveBattery on the agent');
    });
  });

  describe('SNMP control writes (snmpsim)', () => {
    let agent: SnmpPeer;
    before(async () => {
      agent = await SnmpPeer.start({ agents: allAgents() });
    });
    after(async () => {
      await agent?.stop();
    });
    afterEach(async () => {
      await agent.restart(); // writecache values back to the fixture
    });
    const snmpDevice = (community: string) => [deviceConfig('dev', { source: 'snmp', host: agent.host, snmpPort: agent.port, snmpVersion: 'v2c', timeout: 2, snmpRetries: 0 })];

    it('RFC 1628 on battery: upsAutoRestart on, upsShutdownAfterDelay written and read back on the agent; dry-run sends nothing', async () => {
      await agent.set('ietf', STATES.ietf['on-battery']);
      await helper.load(upsCommandNodes, [...snmpDevice('ietf'), ...commandNode({ delayShutdown: 25 })], { dev: { community: 'ietf' } });
      const dry = await run('dry-run');
      assert.equal(dry.ok, true, JSON.stringify(dry));
      assert.match(dry.results[0].detail, /^would upsAutoRestart = on, then upsShutdownAfterDelay = 25 s — on battery/);
      assert.equal(await agent.value('ietf', `${I}8.2.0`), -1, 'nothing written by the dry-run');
      const r = await run('shutdown');
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.match(r.results[0].detail, /output off in 25 s, back on when mains returns .*confirmed: upsShutdownAfterDelay counting down, upsAutoRestart on/);
      assert.equal(await agent.value('ietf', `${I}8.2.0`), 25, 'upsShutdownAfterDelay on the agent');
      assert.equal(await agent.value('ietf', `${I}8.5.0`), 1);
    });

    it('RFC 1628 on mains (power came back mid-shutdown): startup timer then shutdown timer, so power returns', async () => {
      await helper.load(upsCommandNodes, [...snmpDevice('ietf'), ...commandNode({ delayShutdown: 20, delayStart: 30 })], { dev: { community: 'ietf' } });
      const r = await run('shutdown');
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.match(r.results[0].detail, /^on mains: output off in 20 s and on again 30 s later/);
      assert.equal(await agent.value('ietf', `${I}8.3.0`), 50);
      assert.equal(await agent.value('ietf', `${I}8.2.0`), 20);
    });

    it('APC: delays in TimeTicks, conserve battery on battery; graceful reboot on mains', async () => {
      await agent.set('apc', STATES.apc['on-battery']);
      await helper.load(upsCommandNodes, [...snmpDevice('apc'), ...commandNode({ delayShutdown: 60, delayStart: 10 })], { dev: { community: 'apc' } });
      let r = await run('shutdown');
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.equal(await agent.value('apc', `${A}5.2.10.0`), 6000, 'upsAdvConfigShutoffDelay 60 s = 6000 ticks');
      assert.equal(await agent.value('apc', `${A}5.2.9.0`), 1000);
      assert.equal(await agent.value('apc', `${A}6.1.1.0`), 2);
      await agent.set('apc', STATES.apc.online);
      r = await run('shutdown');
      assert.equal(r.ok, true);
      assert.match(r.results[0].detail, /^on mains: graceful reboot/);
      assert.equal(await agent.value('apc', `${A}6.2.2.0`), 3, 'upsAdvControlRebootUPS = rebootUpsGracefully');
    });

    it('Eaton XUPS on battery: xupsLoadShedSecsWithRestart', async () => {
      await agent.set('eaton', STATES.eaton['on-battery']);
      await helper.load(upsCommandNodes, [...snmpDevice('eaton'), ...commandNode({ delayShutdown: 15 })], { dev: { community: 'eaton' } });
      const r = await run('shutdown');
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.equal(await agent.value('eaton', `${X}9.6.0`), 15);
    });

    it('CyberPower: sleep/return delays, then sleep (upsAdvanceControlUpsSleep), on battery and on mains alike', async () => {
      await agent.set('cyberpower', STATES.cyberpower['on-battery']);
      await helper.load(upsCommandNodes, [...snmpDevice('cyberpower'), ...commandNode({ delayShutdown: 20, delayStart: 5 })], { dev: { community: 'cyberpower' } });
      let r = await run('shutdown');
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.match(r.results[0].detail, /^on battery: UPS asleep \(off\) in 20 s, on again 5 s after mains returns; confirmed: sleep delay 20 s, return delay 5 s$/);
      assert.equal(await agent.value('cyberpower', `${C}6.2.3.0`), 3, 'upsAdvanceControlUpsSleep = putUpsToSleepGracefully on the agent');
      assert.equal(await agent.value('cyberpower', `${C}6.1.1.0`), 1, 'conserve battery (ignored on mains) is not used');
      assert.equal(await agent.value('cyberpower', `${C}5.2.11.0`), 2000);
      assert.equal(await agent.value('cyberpower', `${C}5.2.9.0`), 500);
      await agent.restart();
      // Mains came back during the shutdown: the same sleep, so the hosts see power return.
      r = await run('shutdown');
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.match(r.results[0].detail, /^on mains: UPS asleep \(off\) in 20 s and on again 5 s later/);
      assert.equal(await agent.value('cyberpower', `${C}6.2.3.0`), 3);
      assert.equal(await agent.value('cyberpower', `${C}6.1.1.0`), 1);
    });

    it('RFC 1628 battery tests write the right upsWellKnownTests OIDs (quick .7.7.4, deep calibration .7.7.5)', async () => {
      for (const [command, oid] of [['test.battery.start.quick', `${I}7.7.4`], ['test.battery.start.deep', `${I}7.7.5`]]) {
        await helper.load(upsCommandNodes, [...snmpDevice('ietf'), ...commandNode({ mode: 'instcmd', command })], { dev: { community: 'ietf' } });
        const r = await run('command');
        assert.equal(r.ok, true, JSON.stringify(r));
        assert.equal(await agent.value('ietf', `${I}7.1.0`), oid, `${command}: upsTestId on the agent`);
        await helper.unload();
      }
    });

    it('a request for another operation (stop, suspend, maintenance, host-shutdown) is refused and sends nothing', async () => {
      await agent.set('ietf', STATES.ietf['on-battery']);
      await helper.load(upsCommandNodes, [...snmpDevice('ietf'), ...commandNode()], { dev: { community: 'ietf' } });
      for (const req of [{ topic: 'stop' }, { topic: 'suspend' }, { topic: 'maintenance' }, { topic: 'host-shutdown' }, { topic: 'x', operation: 'stop' }, { topic: 'stop', dryRun: true }]) {
        const r = await run(req.topic, req);
        assert.equal(r.ok, false, JSON.stringify(req));
        const op = req.operation ?? req.topic;
        assert.equal(r.error, `"${op}" is not something a UPS command node does: it only sends its command (power off with return (off after 20 s, on 30 s after mains)); use topic shutdown, startup, command or dry-run`);
        await waitForStatus('cmd', (st) => st.fill === 'red' && st.text!.startsWith(`${req.dryRun ? 'dry-run: ' : ''}failed: "${op}" is not something a UPS command node does`));
      }
      assert.equal(await agent.value('ietf', `${I}8.2.0`), -1, 'upsShutdownAfterDelay untouched: the UPS was not powered off');
      assert.equal(await agent.value('ietf', `${I}8.5.0`), 1);
    });

    it('topic command honours "Send in": a startup-only command is not sent by it, topic startup sends it', async () => {
      await helper.load(upsCommandNodes, [...snmpDevice('apc'), ...commandNode({ mode: 'instcmd', command: 'test.battery.start', runOn: 'startup' })], { dev: { community: 'apc' } });
      let r = await run('command');
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.equal(r.operation, 'none');
      assert.deepEqual(r.results.map((x: any) => [x.method, x.detail]), [['skipped', 'nothing to do in this direction']]);
      assert.equal(await agent.value('apc', `${A}7.2.2.0`), 1, 'nothing sent');
      r = await run('startup');
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.equal(r.results[0].method, 'graceful');
      assert.equal(await agent.value('apc', `${A}7.2.2.0`), 2, 'upsAdvTestDiagnostics written by the startup request');
    });

    for (const [what, over] of [
      ['power off with return', { runOn: 'startup' }],
      ['FSD', { mode: 'fsd', runOn: 'both' }],
      ['load.off', { mode: 'instcmd', command: 'load.off', runOn: 'both' }],
    ] as Array<[string, Record<string, unknown>]>) {
      it(`${what} in the startup direction is a configuration error: nothing is sent, whatever the topic`, async () => {
        await helper.load(upsCommandNodes, [...snmpDevice('ietf'), ...commandNode(over)], { dev: { community: 'ietf' } });
        const st = await waitForStatus('cmd', (x) => x.fill === 'red');
        assert.match(st.text ?? '', /^invalid UPS command configuration: runOn: /);
        const out = new Collector('out');
        helper.getNode('cmd').receive({ topic: 'startup' });
        await new Promise((res) => setTimeout(res, 300));
        assert.equal(out.received.length, 0, 'no report: the request failed with the configuration error');
        assert.equal(await agent.value('ietf', `${I}8.2.0`), -1);
        assert.equal(await agent.value('ietf', `${I}8.3.0`), -1);
      });
    }

    it('the dialog lists the SNMP profile\'s commands', async () => {
      await helper.load(upsCommandNodes, [...snmpDevice('apc'), ...commandNode()], { dev: { community: 'apc' } });
      const r = (await helper.request().post('/upsorch-ups-command/commands').send({ ups: 'dev', timeout: 2 }).expect(200)).body;
      assert.equal(r.ok, true, r.message);
      assert.equal(r.source, 'snmp');
      assert.match(r.message, /APC PowerNet-MIB/);
      const ret = r.commands.find((c: { name: string }) => c.name === 'shutdown.return');
      assert.match(ret.description, /conserve battery/);
      assert.deepEqual(r.variables, ['ups.delay.shutdown', 'ups.delay.start']);
    });

    it('SNMP instant command and SET of a delay; unknown command and FSD refused clearly', async () => {
      await helper.load(upsCommandNodes, [...snmpDevice('apc'), ...commandNode({ mode: 'instcmd', command: 'test.battery.start' })], { dev: { community: 'apc' } });
      let r = await run('command');
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.equal(await agent.value('apc', `${A}7.2.2.0`), 2);
      await helper.unload();
      await helper.load(upsCommandNodes, [...snmpDevice('apc'), ...commandNode({ mode: 'setvar', variable: 'ups.delay.start', value: '90' })], { dev: { community: 'apc' } });
      r = await run('command');
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.equal(await agent.value('apc', `${A}5.2.9.0`), 9000);
      await helper.unload();
      await helper.load(upsCommandNodes, [...snmpDevice('apc'), ...commandNode({ mode: 'instcmd', command: 'beeper.mute' })], { dev: { community: 'apc' } });
      r = await run('command');
      assert.equal(r.ok, false);
      assert.match(r.results[0].error, /the apc MIB profile has no command "beeper\.mute" \(it has: shutdown\.return, shutdown\.stayoff/);
      await helper.unload();
      await helper.load(upsCommandNodes, [...snmpDevice('apc'), ...commandNode({ mode: 'fsd' })], { dev: { community: 'apc' } });
      r = await run('shutdown');
      assert.equal(r.ok, false);
      assert.match(r.error, /FSD is a flag of a NUT server/);
    });

    it('dry-run proves write access by writing one setting with the value it has, and changes nothing', async () => {
      await helper.load(upsCommandNodes, [...snmpDevice('apc'), ...commandNode()], { dev: { community: 'apc' } });
      const dry = await run('dry-run');
      assert.equal(dry.ok, true, JSON.stringify(dry));
      assert.match(dry.results[0].detail, /; the objects answer; write access proven \(upsAdvConfigShutoffDelay written with the value it has, 9000\)$/);
      assert.equal(await agent.value('apc', `${A}5.2.10.0`), 9000, 'the shutoff delay is what it was');
      assert.equal(await agent.value('apc', `${A}5.2.9.0`), 0);
      assert.equal(await agent.value('apc', `${A}6.2.2.0`), 1, 'no reboot sent');
      assert.equal(await agent.value('apc', `${A}6.1.1.0`), 1, 'no conserve battery sent');
      await helper.unload();
      // Eaton: no setting every card has that can be rewritten unchanged (its off-delay reads -1 here).
      await helper.load(upsCommandNodes, [...snmpDevice('eaton'), ...commandNode()], { dev: { community: 'eaton' } });
      const eaton = await run('dry-run');
      assert.equal(eaton.ok, true, JSON.stringify(eaton));
      assert.match(eaton.results[0].detail, /write access not checked: this card has no setting that can be rewritten unchanged/);
      assert.equal(await agent.value('eaton', `${X}9.1.0`), -1);
    });

    it('dry-run with a read-only community: fails, saying the community may not write, before anything is sent', async () => {
      // "generic" is file-backed without writecache: snmpsim refuses every SET, as a card does for a
      // read-only community that answers with an error (one that drops the write silently gives the
      // "answers reads but not a write" error instead; snmpsim cannot drop only the SETs).
      await helper.load(upsCommandNodes, [...snmpDevice('generic'), ...commandNode()], { dev: { community: 'generic' } });
      const dry = await run('dry-run');
      assert.equal(dry.ok, false, JSON.stringify(dry));
      assert.equal(dry.results[0].error, 'the agent refused to write upsAutoRestart even with the value it has: this community / v3 user may not write (read-only?); use the card\'s write community or a v3 user with write access');
      assert.equal(await agent.value('generic', `${I}8.2.0`), -1);
    });

    it('a read-only community: the SET is refused and the report says which object', async () => {
      // "generic" is file-backed without writecache: every SET is refused by the agent.
      await helper.load(upsCommandNodes, [...snmpDevice('generic'), ...commandNode()], { dev: { community: 'generic' } });
      const r = await run('shutdown');
      assert.equal(r.ok, false);
      assert.match(r.results[0].error, /^upsStartupAfterDelay = 50 s: the agent at 127\.0\.0\.1:\d+ refused to write 1\.3\.6\.1\.2\.1\.33\.1\.8\.3\.0 \(NoSuchInstance\): may this community \/ v3 user write/);
    });

    it('example "14 SNMP UPS and power off with return": loads, and its dry-run checks the card and sends nothing', async () => {
      const flow = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'examples', '14 SNMP UPS and power off with return.json'), 'utf8')) as Array<Record<string, any>>;
      const dev = flow.find((n) => n.type === 'upsorch-device')!;
      Object.assign(dev, { host: agent.host, snmpPort: agent.port, snmpTrapAddress: '127.0.0.1', snmpTrapPort: await freeUdpPort() });
      const cmd = flow.find((n) => n.type === 'upsorch-ups-command')!;
      const phase = flow.find((n) => n.type === 'upsorch-phase')!;
      await helper.load([...upsCommandNodes, planNode, phaseNode], flow.map((n) => (n.type === 'debug' || n.type === 'inject' ? { ...n, type: 'helper' } : n)), { [dev.id]: { community: 'ietf' } });
      const reports = new Collector(cmd.wires[0][0]);
      helper.getNode(phase.id).receive({ topic: 'dry-run' });
      const r = (await reports.waitFor((m) => m.topic === 'action-report', 20_000)).msg.payload;
      assert.equal(r.dryRun, true);
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.match(r.results[0].detail, /^would upsStartupAfterDelay = 50 s, then upsShutdownAfterDelay = 20 s/);
      assert.equal(await agent.value('ietf', `${I}8.2.0`), -1);
    });

    it('driven by a plan: the last phase powers the UPS off with return; dry-run of the plan sends nothing', async () => {
      await agent.set('ietf', STATES.ietf['on-battery']);
      await helper.load([...upsCommandNodes, planNode, phaseNode], [
        ...snmpDevice('ietf'),
        { id: 'plan', type: 'upsorch-plan', name: 'homelab', armed: true, allowRemote: false, stateDir: '' },
        {
          id: 'last', type: 'upsorch-phase', name: 'UPS off', plan: 'plan', mode: 'sequential', stepDelay: 0, wait: true, onFailure: 'stop', timeout: '',
          pointOfNoReturn: true, direction: 'shutdown', gate: false, gateUps: '', gateRuntime: 10, wires: [['cmd'], ['done']],
        },
        { id: 'done', type: 'helper' },
        ...commandNode({ delayShutdown: 30 }),
      ], { dev: { community: 'ietf' } });
      const done = new Collector('done');
      // The run record's entry for the UPS command: the one action of the one phase.
      const commandResult = (report: any) => {
        assert.equal(report.phases.length, 1);
        const action = report.phases[0].actions.find((a: any) => a.id === 'cmd');
        assert.ok(action, `the run record has the UPS command (${JSON.stringify(report.phases[0].actions)})`);
        assert.equal(action.results.length, 1);
        return { action, result: action.results[0] };
      };
      helper.getNode('last').receive({ topic: 'dry-run' });
      const dry = (await done.waitFor((m) => m.topic === 'run-report', 30_000)).msg.payload;
      assert.deepEqual([dry.state, dry.dryRun, dry.direction], ['done', true, 'shutdown'], JSON.stringify(dry));
      const d = commandResult(dry);
      assert.equal(d.action.state, 'done');
      assert.deepEqual([d.result.method, d.result.ok], ['dry-run', true]);
      assert.match(d.result.detail, /^would upsAutoRestart = on, then upsShutdownAfterDelay = 30 s — on battery: .*write access proven/);
      assert.equal(await agent.value('ietf', `${I}8.2.0`), -1, 'plan dry-run wrote nothing');
      const from = done.received.length;
      helper.getNode('last').receive({ topic: 'shutdown' });
      const real = (await done.waitFor((m) => m.topic === 'run-report', 30_000, from)).msg.payload;
      assert.deepEqual([real.state, real.dryRun], ['done', false], JSON.stringify(real));
      const r = commandResult(real);
      assert.equal(r.action.state, 'done');
      assert.deepEqual([r.result.target, r.result.method, r.result.ok], [helper.getNode('dev').upsName, 'graceful', true]);
      assert.match(r.result.detail, /^on battery: output off in 30 s, back on when mains returns \(upsAutoRestart\); confirmed: upsShutdownAfterDelay counting down, upsAutoRestart on$/);
      assert.equal(await agent.value('ietf', `${I}8.2.0`), 30, 'upsShutdownAfterDelay written by the plan');
    });
  });
});
