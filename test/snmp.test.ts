/**
 * The SNMP UPS source against a real SNMP agent (snmpsim on loopback): every MIB profile in every
 * state, units, profile detection, absent objects, wrong types, v1/v2c/v3 (each auth/priv pair
 * snmpsim offers that net-snmp speaks), wrong credentials, and the UPS device / UPS in node /
 * Test connection in the Node-RED runtime.
 */
import { strict as assert } from 'node:assert';
import { SnmpPeer, SnmpRecord, T, V3UserSpec } from './peers/snmp';
import { MORE_STATES, STATES, STATE_NAMES, ProfileName, StateName, allAgents, apcRecords, eatonRecords } from './peers/snmp-ups-agents';
import { SnmpSource, SnmpSourceOptions } from '../lib/snmp/source';
import { AuthProtocol, PrivProtocol } from '../lib/snmp/client';
import { SourceError } from '../lib/ups/source';
import { UpsState, normalise } from '../lib/ups/state';
import { Collector, deviceConfig, helper, ourNodes, upsIn, waitForStatus } from './util/red';

const AUTHS: Array<[string, AuthProtocol]> = [['MD5', 'md5'], ['SHA', 'sha'], ['SHA224', 'sha224'], ['SHA256', 'sha256'], ['SHA384', 'sha384'], ['SHA512', 'sha512']];
/** snmpsim's name → ours. snmpsim's AES256 is the Reeder (Cisco) key extension, AES256BLMT Blumenthal. */
const PRIVS: Array<[string, PrivProtocol]> = [['DES', 'des'], ['AES', 'aes'], ['AES256', 'aes256r'], ['AES256BLMT', 'aes256b']];
const AUTH_KEY = 'authpass123';
const PRIV_KEY = 'privpass123';

function v3Users(): V3UserSpec[] {
  const users: V3UserSpec[] = [{ name: 'noauth' }];
  for (const [a] of AUTHS) {
    users.push({ name: `an-${a}`, auth: a, authKey: AUTH_KEY });
    for (const [p] of PRIVS) users.push({ name: `ap-${a}-${p}`, auth: a, authKey: AUTH_KEY, priv: p, privKey: PRIV_KEY });
  }
  return users;
}

/** APC with wrong types: capacity and output status as strings, runtime absent. */
function badTypeRecords(): SnmpRecord[] {
  const A = '1.3.6.1.4.1.318.1.1.1.';
  return apcRecords()
    .filter((r) => ![`${A}2.3.1.0`, `${A}2.2.3.0`].includes(r.oid))
    .map((r) => (r.oid === `${A}2.2.1.0` ? { oid: r.oid, type: T.str, value: '97%' } : r.oid === `${A}4.1.1.0` ? { oid: r.oid, type: T.str, value: 'onLine' } : r));
}

/** APC without any capacity or temperature object. */
function sparseRecords(): SnmpRecord[] {
  const A = '1.3.6.1.4.1.318.1.1.1.';
  return apcRecords().filter((r) => ![`${A}2.2.1.0`, `${A}2.3.1.0`, `${A}2.2.2.0`].includes(r.oid));
}

const state = (vars: Record<string, string>): UpsState => normalise({ ups: 't', source: 'snmp', vars, ts: Date.now(), secondsOnBattery: 0 });

const EXPECT: Record<StateName, Partial<UpsState>> = {
  online: { online: true, onBattery: false, lowBattery: false, bypass: false, overload: false, replaceBattery: false },
  'on-battery': { online: false, onBattery: true, lowBattery: false },
  'low-battery': { onBattery: true, lowBattery: true },
  bypass: { bypass: true, onBattery: false },
  overload: { overload: true, onBattery: false },
  'replace-battery': { replaceBattery: true, onBattery: false },
};

describe('SNMP UPS source (real snmpsim agent)', function () {
  this.timeout(60_000);
  let peer: SnmpPeer;
  const open: SnmpSource[] = [];

  const source = (o: Partial<SnmpSourceOptions>): SnmpSource => {
    const s = new SnmpSource({ host: peer.host, port: peer.port, version: 'v2c', community: 'apc', timeoutMs: 1500, retries: 0, profile: 'auto', ...o });
    open.push(s);
    return s;
  };

  before(async () => {
    peer = await SnmpPeer.start({ agents: { ...allAgents(), badtypes: badTypeRecords(), sparse: sparseRecords() }, v3Users: v3Users(), defaultContext: 'apc' });
  });
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
  });
  after(async () => {
    await peer?.stop();
  });

  describe('every profile, every state', () => {
    for (const profile of ['ietf', 'apc', 'eaton', 'cyberpower'] as ProfileName[]) {
      it(`${profile}: on-line, on-battery, low-battery, bypass, overload, replace-battery`, async () => {
        const src = source({ community: profile });
        try {
          for (const name of STATE_NAMES) {
            await peer.set(profile, STATES[profile][name]);
            const s = state((await src.read(Date.now())).vars);
            for (const [k, v] of Object.entries(EXPECT[name])) assert.equal((s as any)[k], v, `${profile} ${name}: ${k} (flags ${s.flags.join(' ')})`);
            assert.equal(s.comm, 'ok');
          }
        } finally {
          await peer.set(profile, STATES[profile].online);
        }
      });
    }
  });

  it('RFC 1628: CAL / TEST only while the test runs; upsTestId still naming a finished calibration leaves OB+LB alone', async () => {
    const src = source({ community: 'ietf' });
    try {
      await peer.set('ietf', MORE_STATES.ietf.calibrating);
      let vars = (await src.read(Date.now())).vars;
      assert.equal(vars['ups.status'], 'OL CAL');
      assert.equal(state(vars).calibrating, true);
      await peer.set('ietf', MORE_STATES.ietf['quick-test']);
      assert.equal((await src.read(Date.now())).vars['ups.status'], 'OL TEST');
      await peer.set('ietf', MORE_STATES.ietf['calibration-done']);
      vars = (await src.read(Date.now())).vars;
      assert.equal(vars['ups.status'], 'OL', 'the calibration ended (donePass): no CAL although upsTestId still names it');
      assert.equal(vars['ups.test.result'], 'done and passed');
      await peer.set('ietf', MORE_STATES.ietf['low-battery-after-calibration']);
      const s = state((await src.read(Date.now())).vars);
      assert.deepEqual([s.flags.join(' '), s.onBattery, s.lowBattery, s.calibrating], ['OB LB', true, true, false]);
    } finally {
      await peer.set('ietf', STATES.ietf.online);
    }
  });

  it('APC battery in fault condition / no battery present: LB as NUT\'s apc-mib maps it, with the alarm text', async () => {
    const src = source({ community: 'apc' });
    try {
      await peer.set('apc', MORE_STATES.apc['battery-fault']);
      let s = state((await src.read(Date.now())).vars);
      assert.deepEqual([s.flags.join(' '), s.onBattery, s.lowBattery, s.alarmText], ['OB LB', true, true, 'battery in fault condition']);
      await peer.set('apc', MORE_STATES.apc['no-battery']);
      s = state((await src.read(Date.now())).vars);
      assert.deepEqual([s.flags.join(' '), s.lowBattery, s.alarmText], ['OB LB', true, 'no battery present']);
    } finally {
      await peer.set('apc', STATES.apc.online);
    }
  });

  it('units: TimeTicks and minutes → seconds, tenths of volts and percent → units, high precision preferred', async () => {
    const apc = state((await source({ community: 'apc' }).read(Date.now())).vars);
    assert.equal(apc.runtime, 2160, 'upsAdvBatteryRunTimeRemaining 216000 ticks = 2160 s');
    assert.equal(apc.charge, 97.3, 'upsHighPrecBatteryCapacity 973 = 97.3 %');
    assert.equal(apc.inputVoltage, 230.4, 'upsHighPrecInputLineVoltage 2304 = 230.4 V');
    assert.equal(apc.outputVoltage, 230.1);
    assert.equal(apc.load, 25.3);
    assert.equal(apc.raw['battery.voltage'], '54.5');
    assert.equal(apc.raw['ups.delay.shutdown'], '90', 'upsAdvConfigShutoffDelay 9000 ticks = 90 s');
    assert.deepEqual(apc.device, { mfr: 'APC', model: 'Smart-UPS 1500', serial: 'AS1920123456' });
    const ietf = state((await source({ community: 'ietf' }).read(Date.now())).vars);
    assert.equal(ietf.runtime, 2700, 'upsEstimatedMinutesRemaining 45 min = 2700 s');
    assert.equal(ietf.raw['battery.voltage'], '54.5', 'upsBatteryVoltage 545 = 54.5 V');
    assert.equal(ietf.raw['input.frequency'], '50', 'upsInputFrequency 500 = 50 Hz');
    assert.equal(ietf.inputVoltage, 231);
    assert.equal(ietf.realPower, 600);
    assert.equal(ietf.raw['battery.runtime.low'], '120', 'upsConfigLowBattTime 2 min');
    const cps = state((await source({ community: 'cyberpower' }).read(Date.now())).vars);
    assert.equal(cps.runtime, 2400, 'upsAdvanceBatteryRunTimeRemaining 240000 ticks');
    assert.equal(cps.inputVoltage, 229.6, 'upsAdvanceInputLineVoltage 2296 = 229.6 V');
    assert.equal(cps.raw['battery.voltage'], '24.5');
    const eaton = state((await source({ community: 'eaton' }).read(Date.now())).vars);
    assert.equal(eaton.runtime, 1800, 'xupsBatTimeRemaining is in seconds');
    assert.equal(eaton.charge, 96);
    assert.equal(eaton.raw['battery.charger.status'], 'floating');
  });

  it('detects the profile from sysObjectID, and by probing when sysObjectID is not a UPS vendor', async () => {
    for (const p of ['apc', 'ietf', 'eaton', 'cyberpower']) {
      const s = source({ community: p });
      await s.read(Date.now());
      assert.equal(s.profile?.id, p);
    }
    const generic = source({ community: 'generic' });
    const vars = (await generic.read(Date.now())).vars;
    assert.equal(generic.profile?.id, 'ietf', 'net-snmp sysObjectID, RFC 1628 objects → ietf by probe');
    assert.equal(generic.sysObjectId, '1.3.6.1.4.1.8072.3.2.10');
    assert.equal(vars['ups.status'], 'OL');
    const forced = source({ community: 'generic', profile: 'apc' });
    await assert.rejects(forced.read(Date.now()), (e: SourceError) => e.comm === 'lost' && /none of the APC PowerNet-MIB objects: wrong MIB profile/.test(e.message));
  });

  it('objects the agent lacks are absent (null), never 0', async () => {
    const s = state((await source({ community: 'sparse' }).read(Date.now())).vars);
    assert.equal(s.charge, null);
    assert.equal(s.temperature, null);
    assert.ok(!('battery.charge' in s.raw));
    assert.equal(s.runtime, 2160, 'the rest is read');
  });

  it('wrong SNMP types: the value is ignored and named in a warning, reading goes on', async () => {
    const src = source({ community: 'badtypes' });
    const s = state((await src.read(Date.now())).vars);
    assert.equal(s.charge, null, '"97%" is not a Gauge');
    assert.equal(s.runtime, null);
    assert.deepEqual(s.flags, [], 'no status flag from a string-typed output status');
    assert.match(src.warning ?? '', /capacity \(1\.3\.6\.1\.4\.1\.318\.1\.1\.1\.2\.2\.1\.0\) is OctetString, expected a number; ignored/);
    assert.match(src.warning ?? '', /outputStatus .* is OctetString, expected an INTEGER enumeration/);
  });

  it('SNMPv1: objects missing in the agent (noSuchName fails a whole v1 GET) are dropped, the rest is read', async () => {
    const src = source({ version: 'v1', community: 'apc' });
    const first = state((await src.read(Date.now())).vars);
    assert.equal(first.charge, 97.3);
    assert.equal(first.runtime, 2160);
    assert.deepEqual(first.flags, ['OL']);
    const again = state((await src.read(Date.now())).vars);
    assert.equal(again.charge, 97.3, 'second poll: one GET with the known objects');
  });

  it('wrong community: no answer → comm lost within the timeout, saying to check the community', async () => {
    const src = source({ community: 'wrong', timeoutMs: 800, retries: 1 });
    const t0 = Date.now();
    await assert.rejects(src.read(Date.now()), (e: SourceError) => {
      assert.equal(e.comm, 'lost');
      assert.match(e.message, /no answer from 127\.0\.0\.1:\d+ \(SNMP v2c\) within 1600 ms: check the community/);
      assert.match(e.message, /access list/);
      return true;
    });
    assert.ok(Date.now() - t0 < 4000, `gave up after ${Date.now() - t0} ms`);
  });

  describe('SNMPv3: each auth/priv pair snmpsim offers (and net-snmp speaks)', () => {
    it('noAuthNoPriv', async () => {
      const s = source({ version: 'v3', community: undefined, user: { name: 'noauth', level: 'noAuthNoPriv' } });
      assert.equal(state((await s.read(Date.now())).vars).device.model, 'Smart-UPS 1500');
    });
    for (const [a, auth] of AUTHS) {
      it(`${a} (authNoPriv)`, async () => {
        const s = source({ version: 'v3', community: undefined, user: { name: `an-${a}`, level: 'authNoPriv', authProtocol: auth, authKey: AUTH_KEY } });
        assert.equal(state((await s.read(Date.now())).vars).device.model, 'Smart-UPS 1500');
      });
      for (const [p, priv] of PRIVS) {
        it(`${a} + ${p} (authPriv)`, async () => {
          const s = source({ version: 'v3', community: undefined, user: { name: `ap-${a}-${p}`, level: 'authPriv', authProtocol: auth, authKey: AUTH_KEY, privProtocol: priv, privKey: PRIV_KEY } });
          const st = state((await s.read(Date.now())).vars);
          assert.equal(st.device.model, 'Smart-UPS 1500');
          assert.equal(st.charge, 97.3);
        });
      }
    }
    it('context name selects the agent (snmpsim: the data file)', async () => {
      const s = source({ version: 'v3', community: undefined, context: 'eaton', user: { name: 'ap-SHA-AES', level: 'authPriv', authProtocol: 'sha', authKey: AUTH_KEY, privProtocol: 'aes', privKey: PRIV_KEY } });
      await s.read(Date.now());
      assert.equal(s.profile?.id, 'eaton');
    });
  });

  describe('SNMPv3 errors say what is wrong', () => {
    const user = (o: Record<string, unknown>) => ({ name: 'ap-SHA-AES', level: 'authPriv' as const, authProtocol: 'sha' as const, authKey: AUTH_KEY, privProtocol: 'aes' as const, privKey: PRIV_KEY, ...o });
    it('wrong authentication key → "wrong authentication key"', async () => {
      const s = source({ version: 'v3', community: undefined, user: user({ authKey: 'not-the-key' }) });
      await assert.rejects(s.read(Date.now()), (e: SourceError) => e.comm === 'lost' && /SNMPv3 authentication failed for user "ap-SHA-AES": wrong authentication key or protocol \(sha\)/.test(e.message));
    });
    it('wrong privacy key → no answer (the agent drops it), naming the v3 user and keys', async () => {
      const s = source({ version: 'v3', community: undefined, timeoutMs: 800, user: user({ privKey: 'not-the-key' }) });
      await assert.rejects(s.read(Date.now()), (e: SourceError) => e.comm === 'lost' && /no answer .* check the SNMPv3 user "ap-SHA-AES", its keys and security level/.test(e.message));
    });
    it('unknown user → no answer', async () => {
      const s = source({ version: 'v3', community: undefined, timeoutMs: 800, user: user({ name: 'nobody' }) });
      await assert.rejects(s.read(Date.now()), (e: SourceError) => /no answer .*SNMPv3 user "nobody"/.test(e.message));
    });
    it('a key shorter than 8 characters is a settings error before anything is sent', async () => {
      const s = source({ version: 'v3', community: undefined, user: user({ privKey: 'short' }) });
      await assert.rejects(s.read(Date.now()), (e: SourceError) => /SNMP settings: SNMPv3 user "ap-SHA-AES": the privacy key must have at least 8 characters/.test(e.message));
    });
  });

  it('APC card that lost its UPS (upsCommStatus noComm) → stale', async () => {
    const src = source({ community: 'apc' });
    await peer.set('apc', { '1.3.6.1.4.1.318.1.1.1.8.1.0': 2 });
    try {
      await assert.rejects(src.read(Date.now()), (e: SourceError) => e.comm === 'stale' && /lost contact with its UPS/.test(e.message));
    } finally {
      await peer.set('apc', { '1.3.6.1.4.1.318.1.1.1.8.1.0': 1 });
    }
  });

  it('alarm tables: read (one GETBULK) only while the agent reports alarms; XUPS low battery and overload rows', async () => {
    const X = '1.3.6.1.4.1.534.1.';
    const src = source({ community: 'eaton' });
    try {
      await peer.set('eaton', { [`${X}4.5.0`]: 5, [`${X}7.1.0`]: 1, [`${X}7.2.1.2.1`]: `${X}7.4` });
      let s = state((await src.read(Date.now())).vars);
      assert.ok(s.onBattery && s.lowBattery, `LB from the xupsLowBattery alarm row (${s.flags.join(' ')})`);
      await peer.set('eaton', { [`${X}4.5.0`]: 3, [`${X}7.2.1.2.1`]: `${X}7.10` });
      s = state((await src.read(Date.now())).vars);
      assert.equal(s.alarmText, 'inverter failure');
      assert.equal(s.alarm, true);
    } finally {
      await peer.set('eaton', STATES.eaton.online);
    }
    const records = eatonRecords();
    assert.ok(records.some((r) => r.oid === `${X}7.2.1.2.1`));
  });

  it('host down (agent stopped) → lost; back → ok', async () => {
    const src = source({ community: 'apc', timeoutMs: 500 });
    await src.read(Date.now());
    peer.pause();
    try {
      await assert.rejects(src.read(Date.now()), (e: SourceError) => e.comm === 'lost' && /no answer/.test(e.message));
    } finally {
      peer.resume();
    }
    assert.equal(state((await src.read(Date.now())).vars).online, true);
  });

  describe('in the Node-RED runtime', () => {
    afterEach(async () => {
      await helper.unload();
    });
    const snmpDevice = (over: Record<string, unknown> = {}) =>
      deviceConfig('dev', { source: 'snmp', host: peer.host, snmpPort: peer.port, snmpVersion: 'v2c', timeout: 1, snmpRetries: 0, pollInterval: 0.3, pollIntervalOnBattery: 0.3, ...over });

    it('UPS in: the normalised state and events of an SNMP UPS, community from the credentials', async () => {
      await helper.load(ourNodes, [snmpDevice({ name: 'rack' }), ...upsIn('in', 'dev')], { dev: { community: 'apc' } });
      const states = new Collector('in-state');
      const events = new Collector('in-events');
      const first = await states.waitFor((m) => m.payload.comm === 'ok', 5000);
      assert.equal(first.msg.payload.source, 'snmp');
      assert.equal(first.msg.payload.ups, 'rack');
      assert.equal(first.msg.payload.charge, 97.3);
      await waitForStatus('in', (s) => s.fill === 'green' && s.text === 'OL 97% 36m');
      await peer.set('apc', STATES.apc['on-battery']);
      try {
        await events.waitFor((m) => m.topic === 'ONBATT', 5000);
        await waitForStatus('in', (s) => s.fill === 'yellow' && /^OB 81%/.test(s.text ?? ''));
        assert.ok(!JSON.stringify(states.messages).includes('"community"'), 'no secret in messages');
      } finally {
        await peer.set('apc', STATES.apc.online);
      }
    });

    it('wrong community → red "comm lost" status with the reason, within the timeout', async () => {
      await helper.load(ourNodes, [snmpDevice({ timeout: 1 }), ...upsIn('in', 'dev')], { dev: { community: 'not-it' } });
      const t0 = Date.now();
      const st = await waitForStatus('in', (s) => s.fill === 'red' && /^comm lost: no answer/.test(s.text ?? ''), 6000);
      assert.match(st.text ?? '', /check the community/);
      assert.ok(Date.now() - t0 < 5000);
    });

    it('Test connection shows model, detected profile and current values; sends no secret back', async () => {
      await helper.load(ourNodes, [snmpDevice()], { dev: { community: 'apc' } });
      const body = { id: 'dev', source: 'snmp', host: peer.host, snmpPort: peer.port, snmpVersion: 'v2c', timeout: 2, community: '__PWRD__', snmpProfile: 'auto' };
      const ok = (await helper.request().post('/upsorch-device/test').send(body).expect(200)).body;
      assert.equal(ok.ok, true, ok.message);
      assert.equal(ok.model, 'APC Smart-UPS 1500');
      assert.equal(ok.profile, 'APC PowerNet-MIB (detected)');
      assert.equal(ok.status, 'OL');
      assert.equal(ok.charge, 97.3);
      assert.ok(ok.details.includes('input 230.4 V'), JSON.stringify(ok.details));
      assert.ok(ok.details.some((d: string) => /^agent: APC Web\/SNMP/.test(d)));
      assert.ok(!JSON.stringify(ok).includes('"apc"'), 'the stored community is not echoed');
      const bad = (await helper.request().post('/upsorch-device/test').send({ ...body, id: undefined, community: 'nope', timeout: 0.5 }).expect(200)).body;
      assert.equal(bad.ok, false);
      assert.match(bad.message, /no answer .*check the community/);
      const v3 = (await helper.request().post('/upsorch-device/test').send({ ...body, id: undefined, snmpVersion: 'v3', snmpUser: 'ap-SHA-AES', snmpSecLevel: 'authPriv', snmpAuthProtocol: 'sha', snmpPrivProtocol: 'aes', authKey: 'wrong-key-123', privKey: PRIV_KEY }).expect(200)).body;
      assert.equal(v3.ok, false);
      assert.match(v3.message, /wrong authentication key/);
    });

    it('invalid SNMP settings: red status and a clear error, no crash', async () => {
      await helper.load(ourNodes, [snmpDevice({ snmpVersion: 'v3', snmpUser: '' }), ...upsIn('in', 'dev')]);
      const st = await waitForStatus('in', (s) => s.fill === 'red', 3000);
      assert.match(st.text ?? '', /SNMPv3 needs a user name/);
    });
  });
});
