/**
 * UPS MIB profiles: which objects to read and how they become NUT variables (the names every source
 * reports, see lib/ups/source.ts), mapped the way NUT's snmp-ups driver maps them (drivers/ietf-mib.c,
 * apc-mib.c, cyberpower-mib.c, powerware-mib.c; /work/shared/reference/protocols.md §2):
 *
 * - units: TimeTicks are 1/100 s (divided by 100 whatever the object), RFC 1628 minutes ×60, tenths
 *   of volts/percent ×0.1; APC's high-precision objects win over the basic ones when present, as
 *   NUT's SU_FLAG_UNIQUE does.
 * - `ups.status` is built from several objects as NUT's SU_STATUS_PWR/_BATT/_CAL/_RB entries do:
 *   output source, battery status, calibration, replace indicator, and the overload alarm.
 * - Objects the agent does not have are absent (never 0). A value of the wrong SNMP type is ignored
 *   and reported as a problem.
 *
 * Alarm tables (RFC 1628 upsAlarmTable, XUPS xupsAlarmTable) have rows whose indexes grow over the
 * agent's uptime, so they cannot be part of a fixed GET. Their row count (upsAlarmsPresent,
 * xupsAlarms) is in the GET; only when it is above 0 is the description column read with one GETBULK.
 *
 * Two NUT quirks are kept so NUT and this source agree on the same agent: NUT reads the well-known
 * alarm OIDs upsAlarmOutputOverload (…33.1.6.3.8) and xupsOnBattery / xupsLowBattery (…534.1.7.3/.4)
 * as if they were scalars holding 1 when active. Real agents answer noSuchObject there (absent,
 * harmless); an agent that does answer 1 gets the same flag NUT shows.
 */
import { SnmpValue } from './client';

export type ProfileId = 'ietf' | 'apc' | 'eaton' | 'cyberpower';
export const PROFILE_IDS: readonly ProfileId[] = ['apc', 'cyberpower', 'eaton', 'ietf'];

export const SYS_OBJECT_ID = '1.3.6.1.2.1.1.2.0';
export const SYS_DESCR = '1.3.6.1.2.1.1.1.0';
/** SNMPv2 notification OID varbind (snmpTrapOID.0). */
export const SNMP_TRAP_OID = '1.3.6.1.6.3.1.1.4.1.0';

/** What a trap means for the UPS. */
export type TrapKind = 'on-battery' | 'power-restored' | 'low-battery' | 'battery-ok' | 'other';

export interface TrapInfo {
  /** The notification OID (v2c/v3 snmpTrapOID; v1 enterprise.0.specific). */
  oid: string;
  varbinds: Array<{ oid: string; value: SnmpValue | null }>;
}

export interface AlarmTable {
  /** The row count object (name in `objects`). */
  countName: string;
  /** The description column (OID values naming the alarm). */
  descrColumn: string;
}

export interface Profile {
  id: ProfileId;
  label: string;
  /** sysObjectID prefixes that identify the profile. */
  sysObjectIds: string[];
  /** An object every agent of this MIB has: the fallback probe. */
  probe: string;
  /** name → OID of everything read each poll. */
  objects: Record<string, string>;
  alarms?: AlarmTable;
  /** Turn one reading into NUT variables. */
  toVars(r: Reading): Record<string, string>;
  /** Classify a trap of this MIB; null when it is not one of this MIB's. */
  classifyTrap(t: TrapInfo): TrapKind | null;
}

/** One poll's values with typed accessors; wrong types are recorded in `problems`, never thrown. */
export class Reading {
  readonly problems: string[] = [];
  constructor(
    private readonly profile: { objects: Record<string, string> },
    private readonly values: Map<string, SnmpValue | null>,
    /** Alarm description OIDs (from the alarm table), if read. */
    readonly alarmOids: string[] = [],
  ) {}

  private get(name: string): SnmpValue | null {
    const oid = this.profile.objects[name];
    if (!oid) throw new Error(`profile has no object "${name}"`);
    return this.values.get(oid) ?? null;
  }

  private wrong(name: string, v: SnmpValue, expected: string): null {
    this.problems.push(`${name} (${this.profile.objects[name]}) is ${v.type}, expected ${expected}; ignored`);
    return null;
  }

  /** A measurement: TimeTicks become seconds (÷100), then × scale. */
  number(name: string, scale = 1): number | null {
    const v = this.get(name);
    if (!v) return null;
    if (typeof v.value !== 'number' || !['int', 'gauge', 'counter', 'timeticks'].includes(v.kind)) return this.wrong(name, v, 'a number');
    const base = v.kind === 'timeticks' ? v.value / 100 : v.value;
    return base * scale;
  }

  /** An enumeration: an integer, or (as NUT does) the last sub-identifier of an OID value. */
  enumValue(name: string): number | null {
    const v = this.get(name);
    if (!v) return null;
    if (typeof v.value === 'number' && v.kind !== 'timeticks') return v.value;
    if (v.kind === 'oid' && typeof v.value === 'string') {
      const last = Number(v.value.split('.').pop());
      return Number.isFinite(last) ? last : this.wrong(name, v, 'an enumeration');
    }
    return this.wrong(name, v, 'an INTEGER enumeration');
  }

  text(name: string): string | null {
    const v = this.get(name);
    if (!v) return null;
    if (v.kind === 'string') return (v.value as string) || null;
    if (typeof v.value === 'number') return String(v.value);
    return this.wrong(name, v, 'a DisplayString');
  }

  has(name: string): boolean {
    return this.get(name) !== null;
  }
}

/** A NUT-style number: at most two decimals, no trailing zeros. */
export function fmt(n: number): string {
  return String(Math.round(n * 100) / 100);
}

class VarBuilder {
  readonly vars: Record<string, string> = {};
  num(name: string, n: number | null): this {
    if (n !== null && Number.isFinite(n)) this.vars[name] = fmt(n);
    return this;
  }
  text(name: string, s: string | null): this {
    if (s !== null && s !== '') this.vars[name] = s;
    return this;
  }
}

/** Status flags in a stable order (power source first), without duplicates. */
export function joinFlags(flags: Array<string | null | undefined>): string {
  const seen: string[] = [];
  for (const f of flags) for (const w of (f ?? '').split(' ')) if (w && !seen.includes(w)) seen.push(w);
  return seen.join(' ');
}

function firstOf(...values: Array<number | null>): number | null {
  for (const v of values) if (v !== null) return v;
  return null;
}

/** v1 trap → the OIDs it may be known by: enterprise.0.specific (RFC 3584) and enterprise.specific. */
function trapMatches(t: TrapInfo, enterprise: string): number | null {
  for (const form of [`${enterprise}.0.`, `${enterprise}.`]) {
    if (t.oid.startsWith(form)) {
      const rest = t.oid.slice(form.length);
      if (/^\d+$/.test(rest)) return Number(rest);
    }
  }
  return null;
}

// ------------------------------------------------------------------------------------------------
// RFC 1628 UPS-MIB

const I = '1.3.6.1.2.1.33.1.';
const IETF_ALARMS: Record<number, string> = {
  1: 'battery bad', 2: 'on battery', 3: 'low battery', 4: 'battery depleted', 5: 'temperature bad', 6: 'input bad',
  7: 'output bad', 8: 'output overload', 9: 'on bypass', 10: 'bypass bad', 11: 'output off as requested',
  12: 'UPS off as requested', 13: 'charger failed', 14: 'UPS output off', 15: 'UPS system off', 16: 'fan failure',
  17: 'fuse failure', 18: 'general fault', 19: 'diagnostic test failed', 20: 'communications lost', 21: 'awaiting power',
  22: 'shutdown pending', 23: 'shutdown imminent', 24: 'test in progress',
};
/** Alarms already shown as status flags (no ALARM text for them). */
const IETF_ALARMS_AS_FLAGS = new Set([1, 2, 3, 4, 8, 9, 24]);
const IETF_WELL_KNOWN = `${I}6.3.`;

function wellKnown(oids: string[], prefix: string): number[] {
  return oids.filter((o) => o.startsWith(prefix)).map((o) => Number(o.slice(prefix.length))).filter((n) => Number.isInteger(n));
}

const ietf: Profile = {
  id: 'ietf',
  label: 'RFC 1628 UPS-MIB',
  sysObjectIds: ['1.3.6.1.2.1.33'],
  probe: `${I}4.1.0`,
  objects: {
    mfr: `${I}1.1.0`, model: `${I}1.2.0`, firmware: `${I}1.3.0`,
    batteryStatus: `${I}2.1.0`, secondsOnBattery: `${I}2.2.0`, minutesRemaining: `${I}2.3.0`, charge: `${I}2.4.0`,
    batteryVoltage: `${I}2.5.0`, batteryTemperature: `${I}2.7.0`,
    inputFrequency: `${I}3.3.1.2.1`, inputVoltage: `${I}3.3.1.3.1`,
    outputSource: `${I}4.1.0`, outputFrequency: `${I}4.2.0`, outputVoltage: `${I}4.4.1.2.1`, outputPower: `${I}4.4.1.4.1`, load: `${I}4.4.1.5.1`,
    alarmsPresent: `${I}6.1.0`, overloadQuirk: `${I}6.3.8`,
    testId: `${I}7.1.0`, testResult: `${I}7.3.0`,
    shutdownAfterDelay: `${I}8.2.0`, startupAfterDelay: `${I}8.3.0`, autoRestart: `${I}8.5.0`,
    nominalInputVoltage: `${I}9.1.0`, nominalVA: `${I}9.5.0`, nominalW: `${I}9.6.0`, lowBattTime: `${I}9.7.0`, audible: `${I}9.8.0`,
    transferLow: `${I}9.9.0`, transferHigh: `${I}9.10.0`,
  },
  alarms: { countName: 'alarmsPresent', descrColumn: `${I}6.2.1.2` },
  toVars(r) {
    const b = new VarBuilder();
    b.text('ups.mfr', r.text('mfr')).text('ups.model', r.text('model')).text('ups.firmware', r.text('firmware'));
    b.num('battery.runtime', r.number('minutesRemaining', 60)).num('battery.charge', r.number('charge'));
    b.num('battery.voltage', r.number('batteryVoltage', 0.1)).num('battery.temperature', r.number('batteryTemperature'));
    b.num('input.frequency', r.number('inputFrequency', 0.1)).num('input.voltage', r.number('inputVoltage'));
    b.num('output.frequency', r.number('outputFrequency', 0.1)).num('output.voltage', r.number('outputVoltage'));
    const power = r.number('outputPower');
    b.num('output.realpower', power).num('ups.realpower', power).num('ups.load', r.number('load'));
    b.num('ups.timer.shutdown', r.number('shutdownAfterDelay')).num('ups.timer.start', r.number('startupAfterDelay'));
    const auto = r.enumValue('autoRestart');
    b.text('ups.start.auto', auto === 1 ? 'yes' : auto === 2 ? 'no' : null);
    b.num('input.voltage.nominal', r.number('nominalInputVoltage')).num('output.power.nominal', r.number('nominalVA'));
    b.num('output.realpower.nominal', r.number('nominalW')).num('battery.runtime.low', r.number('lowBattTime', 60));
    b.num('input.transfer.low', r.number('transferLow')).num('input.transfer.high', r.number('transferHigh'));
    const beeper = r.enumValue('audible');
    b.text('ups.beeper.status', ({ 1: 'disabled', 2: 'enabled', 3: 'muted' } as Record<number, string>)[beeper ?? 0] ?? null);
    const result = r.enumValue('testResult');
    b.text('ups.test.result', ({ 1: 'done and passed', 2: 'done and warning', 3: 'done and error', 4: 'aborted', 5: 'in progress', 6: 'no test initiated' } as Record<number, string>)[result ?? 0] ?? null);
    const alarms = wellKnown(r.alarmOids, IETF_WELL_KNOWN);
    const source = r.enumValue('outputSource');
    const battery = r.enumValue('batteryStatus');
    // upsTestId keeps naming the last test after it ended; only upsTestResultsSummary inProgress(5)
    // says one runs. NUT's ietf-mib looks at upsTestId alone, so its CAL sticks after a calibration
    // and upsmon (and our threshold) then ignore OB+LB: here CAL/TEST hold only while it runs.
    const test = result === 5 ? r.enumValue('testId') : null;
    const flags = joinFlags([
      ({ 2: 'OFF', 3: 'OL', 4: 'OL BYPASS', 5: 'OB', 6: 'OL BOOST', 7: 'OL TRIM' } as Record<number, string>)[source ?? 0],
      battery === 3 || battery === 4 ? 'LB' : null,
      alarms.includes(1) ? 'RB' : null,
      test === 5 ? 'CAL' : test === 3 || test === 4 ? 'TEST' : null,
      alarms.includes(8) || r.enumValue('overloadQuirk') === 1 ? 'OVER' : null,
    ]);
    if (r.has('outputSource') || r.has('batteryStatus')) b.vars['ups.status'] = flags;
    const text = alarms.filter((a) => !IETF_ALARMS_AS_FLAGS.has(a)).map((a) => IETF_ALARMS[a] ?? `alarm ${a}`);
    if (text.length) b.vars['ups.alarm'] = text.join(', ');
    return b.vars;
  },
  classifyTrap(t) {
    const n = trapMatches(t, '1.3.6.1.2.1.33.2');
    if (n === null) return null;
    if (n === 1) return 'on-battery';
    if (n === 3 || n === 4) {
      const descr = t.varbinds.find((v) => v.value?.kind === 'oid' && String(v.value.value).startsWith(IETF_WELL_KNOWN));
      const alarm = descr ? Number(String(descr.value!.value).slice(IETF_WELL_KNOWN.length)) : 0;
      if (alarm === 2) return n === 3 ? 'on-battery' : 'power-restored';
      if (alarm === 3 || alarm === 4) return n === 3 ? 'low-battery' : 'battery-ok';
    }
    return 'other';
  },
};

// ------------------------------------------------------------------------------------------------
// APC PowerNet-MIB

const A = '1.3.6.1.4.1.318.1.1.1.';
const APC_OUTPUT: Record<number, string> = {
  2: 'OL', 3: 'OB', 4: 'OL BOOST', 5: 'OFF', 6: 'OFF', 7: 'OFF', 9: 'BYPASS', 10: 'BYPASS', 11: 'OFF', 12: 'OL TRIM',
  13: 'OL ECO', 14: 'OL', 15: 'OL', 16: 'BYPASS', 17: 'BYPASS', 19: 'OL', 20: 'OL ECO', 21: 'OL', 22: 'OL', 24: 'OL', 25: 'OL', 28: 'OL',
};
const APC_FAIL_CAUSE: Record<number, string> = {
  1: 'noTransfer', 2: 'highLineVoltage', 3: 'brownout', 4: 'blackout', 5: 'smallMomentarySag', 6: 'deepMomentarySag',
  7: 'smallMomentarySpike', 8: 'largeMomentarySpike', 9: 'selfTest', 10: 'rateOfVoltageChange',
};

/** Flag n (1-based) of APC's upsBasicStateOutputState, a string of 64 '0'/'1' characters. */
function apcStateFlag(state: string | null, n: number): boolean {
  return !!state && /^[01]{16,}$/.test(state) && state[n - 1] === '1';
}

const apc: Profile = {
  id: 'apc',
  label: 'APC PowerNet-MIB',
  sysObjectIds: ['1.3.6.1.4.1.318'],
  probe: `${A}1.1.1.0`,
  objects: {
    model: `${A}1.1.1.0`, name: `${A}1.1.2.0`, firmware: `${A}1.2.1.0`, mfrDate: `${A}1.2.2.0`, serial: `${A}1.2.3.0`,
    batteryStatus: `${A}2.1.1.0`, batteryDate: `${A}2.1.3.0`,
    capacity: `${A}2.2.1.0`, batteryTemperature: `${A}2.2.2.0`, runtime: `${A}2.2.3.0`, replace: `${A}2.2.4.0`,
    batteryNominalVoltage: `${A}2.2.7.0`, batteryVoltage: `${A}2.2.8.0`,
    hpCapacity: `${A}2.3.1.0`, hpBatteryTemperature: `${A}2.3.2.0`, hpBatteryVoltage: `${A}2.3.4.0`,
    inputVoltage: `${A}3.2.1.0`, inputFrequency: `${A}3.2.4.0`, failCause: `${A}3.2.5.0`, hpInputVoltage: `${A}3.3.1.0`, hpInputFrequency: `${A}3.3.4.0`,
    outputStatus: `${A}4.1.1.0`, outputVoltage: `${A}4.2.1.0`, outputFrequency: `${A}4.2.2.0`, load: `${A}4.2.3.0`,
    activePower: `${A}4.2.8.0`, apparentPower: `${A}4.2.9.0`, hpOutputVoltage: `${A}4.3.1.0`, hpOutputFrequency: `${A}4.3.2.0`, hpLoad: `${A}4.3.3.0`,
    lowBatteryRuntime: `${A}5.2.8.0`, returnDelay: `${A}5.2.9.0`, shutoffDelay: `${A}5.2.10.0`,
    testResult: `${A}7.2.3.0`, calibration: `${A}7.2.6.0`,
    commStatus: `${A}8.1.0`, stateFlags: `${A}11.1.1.0`,
  },
  toVars(r) {
    const b = new VarBuilder();
    b.text('ups.mfr', 'APC').text('ups.model', r.text('model')).text('ups.id', r.text('name')).text('ups.firmware', r.text('firmware'));
    b.text('ups.mfr.date', r.text('mfrDate')).text('ups.serial', r.text('serial')).text('battery.date', r.text('batteryDate'));
    b.num('battery.charge', firstOf(r.number('hpCapacity', 0.1), r.number('capacity')));
    b.num('ups.temperature', firstOf(r.number('hpBatteryTemperature', 0.1), r.number('batteryTemperature')));
    b.num('battery.runtime', r.number('runtime'));
    b.num('battery.voltage', firstOf(r.number('hpBatteryVoltage', 0.1), r.number('batteryVoltage'))).num('battery.voltage.nominal', r.number('batteryNominalVoltage'));
    b.num('input.voltage', firstOf(r.number('hpInputVoltage', 0.1), r.number('inputVoltage')));
    b.num('input.frequency', firstOf(r.number('hpInputFrequency', 0.1), r.number('inputFrequency')));
    b.text('input.transfer.reason', APC_FAIL_CAUSE[r.enumValue('failCause') ?? 0] ?? null);
    b.num('output.voltage', firstOf(r.number('hpOutputVoltage', 0.1), r.number('outputVoltage')));
    b.num('output.frequency', firstOf(r.number('hpOutputFrequency', 0.1), r.number('outputFrequency')));
    b.num('ups.load', firstOf(r.number('hpLoad', 0.1), r.number('load')));
    b.num('ups.realpower', r.number('activePower')).num('ups.power', r.number('apparentPower'));
    b.num('battery.runtime.low', r.number('lowBatteryRuntime')).num('ups.delay.start', r.number('returnDelay')).num('ups.delay.shutdown', r.number('shutoffDelay'));
    b.text('ups.test.result', ({ 1: 'Ok', 2: 'Failed', 3: 'InvalidTest', 4: 'TestInProgress' } as Record<number, string>)[r.enumValue('testResult') ?? 0] ?? null);
    const state = r.text('stateFlags');
    const battery = r.enumValue('batteryStatus');
    const flags = joinFlags([
      APC_OUTPUT[r.enumValue('outputStatus') ?? 0],
      // batteryLow, batteryInFaultCondition and noBatteryPresent all mean the load will not be
      // carried for long (apc-mib.c maps 3, 4 and 5 to LB); the alarm text says which it is.
      battery === 3 || battery === 4 || battery === 5 ? 'LB' : null,
      r.enumValue('calibration') === 3 ? 'CAL' : null,
      r.enumValue('replace') === 2 ? 'RB' : null,
      apcStateFlag(state, 9) ? 'OVER' : null,
    ]);
    if (r.has('outputStatus') || r.has('batteryStatus')) b.vars['ups.status'] = flags;
    const alarms: string[] = [];
    if (battery === 4) alarms.push('battery in fault condition');
    if (battery === 5) alarms.push('no battery present');
    if (alarms.length) b.vars['ups.alarm'] = alarms.join(', ');
    return b.vars;
  },
  classifyTrap(t) {
    const n = trapMatches(t, '1.3.6.1.4.1.318');
    if (n === null) return null;
    return ({ 5: 'on-battery', 9: 'power-restored', 7: 'low-battery', 11: 'battery-ok' } as Record<number, TrapKind>)[n] ?? 'other';
  },
};

// ------------------------------------------------------------------------------------------------
// CyberPower CPS-MIB

const C = '1.3.6.1.4.1.3808.1.1.1.';
const cyberpower: Profile = {
  id: 'cyberpower',
  label: 'CyberPower CPS-MIB',
  sysObjectIds: ['1.3.6.1.4.1.3808'],
  probe: `${C}1.1.1.0`,
  objects: {
    model: `${C}1.1.1.0`, firmware: `${C}1.2.1.0`, mfrDate: `${C}1.2.2.0`, serial: `${C}1.2.3.0`,
    batteryStatus: `${C}2.1.1.0`, timeOnBattery: `${C}2.1.2.0`,
    capacity: `${C}2.2.1.0`, batteryVoltage: `${C}2.2.2.0`, batteryTemperature: `${C}2.2.3.0`, runtime: `${C}2.2.4.0`, replace: `${C}2.2.5.0`,
    batteryCurrent: `${C}2.2.7.0`,
    inputVoltage: `${C}3.2.1.0`, inputFrequency: `${C}3.2.4.0`,
    outputStatus: `${C}4.1.1.0`, outputVoltage: `${C}4.2.1.0`, load: `${C}4.2.3.0`, outputPower: `${C}4.2.5.0`,
    returnDelay: `${C}5.2.9.0`, sleepDelay: `${C}5.2.11.0`,
    calibration: `${C}7.2.7.0`,
  },
  toVars(r) {
    const b = new VarBuilder();
    b.text('ups.mfr', 'CyberPower').text('ups.model', r.text('model')).text('ups.firmware', r.text('firmware'));
    b.text('ups.mfr.date', r.text('mfrDate')).text('ups.serial', r.text('serial'));
    b.num('battery.charge', r.number('capacity')).num('battery.voltage', r.number('batteryVoltage', 0.1));
    b.num('battery.temperature', r.number('batteryTemperature')).num('battery.runtime', r.number('runtime'));
    b.num('battery.current', r.number('batteryCurrent', 0.1)).num('battery.runtime.elapsed', r.number('timeOnBattery'));
    b.num('input.voltage', r.number('inputVoltage', 0.1)).num('input.frequency', r.number('inputFrequency', 0.1));
    b.num('output.voltage', r.number('outputVoltage', 0.1)).num('ups.load', r.number('load')).num('ups.realpower', r.number('outputPower'));
    b.num('ups.delay.start', r.number('returnDelay')).num('ups.delay.shutdown', r.number('sleepDelay'));
    const flags = joinFlags([
      ({ 2: 'OL', 3: 'OB', 4: 'OL BOOST', 5: 'OFF', 6: 'OFF', 7: 'OL', 8: 'OL', 9: 'OL BYPASS', 10: 'OL TRIM', 11: 'OL OVER' } as Record<number, string>)[r.enumValue('outputStatus') ?? 0],
      r.enumValue('batteryStatus') === 3 ? 'LB' : null,
      r.enumValue('calibration') === 3 ? 'CAL' : null,
      r.enumValue('replace') === 2 ? 'RB' : null,
    ]);
    if (r.has('outputStatus') || r.has('batteryStatus')) b.vars['ups.status'] = flags;
    if (r.enumValue('batteryStatus') === 4) b.vars['ups.alarm'] = 'battery not present';
    return b.vars;
  },
  classifyTrap(t) {
    const n = trapMatches(t, '1.3.6.1.4.1.3808');
    if (n === null) return null;
    return ({ 5: 'on-battery', 9: 'power-restored', 7: 'low-battery', 11: 'battery-ok' } as Record<number, TrapKind>)[n] ?? 'other';
  },
};

// ------------------------------------------------------------------------------------------------
// Eaton / Powerware XUPS-MIB

const X = '1.3.6.1.4.1.534.1.';
const XUPS_WELL_KNOWN = `${X}7.`;
const XUPS_ALARMS: Record<number, string> = {
  5: 'utility power restored', 6: 'return from low battery', 8: 'internal failure', 9: 'battery discharged', 10: 'inverter failure',
  12: 'bypass not available', 13: 'output off', 14: 'input failure', 15: 'building alarm', 16: 'shutdown imminent', 17: 'on inverter',
};
const XUPS_ALARMS_AS_FLAGS = new Set([3, 4, 7, 11]);

const eaton: Profile = {
  id: 'eaton',
  label: 'Eaton XUPS-MIB',
  sysObjectIds: ['1.3.6.1.4.1.534.1', '1.3.6.1.4.1.534.2.12'],
  probe: `${X}1.2.0`,
  objects: {
    mfr: `${X}1.1.0`, model: `${X}1.2.0`, firmware: `${X}1.3.0`,
    runtime: `${X}2.1.0`, batteryVoltage: `${X}2.2.0`, batteryCurrent: `${X}2.3.0`, capacity: `${X}2.4.0`, abm: `${X}2.5.0`, batteryFailure: `${X}2.7.0`,
    inputFrequency: `${X}3.1.0`, inputVoltage: `${X}3.4.1.2.1`,
    load: `${X}4.1.0`, outputFrequency: `${X}4.2.0`, outputVoltage: `${X}4.4.1.2.1`, outputWatts: `${X}4.4.1.4.1`, outputSource: `${X}4.5.0`,
    ambient: `${X}6.1.0`,
    alarms: `${X}7.1.0`, onBatteryQuirk: `${X}7.3`, lowBatteryQuirk: `${X}7.4`,
    testStatus: `${X}8.2.0`,
    offDelay: `${X}9.1.0`, onDelay: `${X}9.2.0`, shedWithRestart: `${X}9.6.0`,
  },
  alarms: { countName: 'alarms', descrColumn: `${X}7.2.1.2` },
  toVars(r) {
    const b = new VarBuilder();
    b.text('ups.mfr', r.text('mfr')).text('ups.model', r.text('model')).text('ups.firmware', r.text('firmware'));
    b.num('battery.runtime', r.number('runtime')).num('battery.voltage', r.number('batteryVoltage')).num('battery.current', r.number('batteryCurrent', 0.1));
    b.num('battery.charge', r.number('capacity'));
    const abm = r.enumValue('abm');
    b.text('battery.charger.status', ({ 1: 'charging', 2: 'discharging', 3: 'floating', 4: 'resting', 5: 'unknown', 6: 'disabled' } as Record<number, string>)[abm ?? 0] ?? null);
    b.num('input.frequency', r.number('inputFrequency', 0.1)).num('input.voltage', r.number('inputVoltage'));
    b.num('ups.load', r.number('load')).num('output.frequency', r.number('outputFrequency', 0.1)).num('output.voltage', r.number('outputVoltage'));
    const watts = r.number('outputWatts');
    b.num('output.realpower', watts).num('ups.realpower', watts).num('ups.temperature', r.number('ambient'));
    b.text('ups.test.result', ({ 2: 'Done and passed', 3: 'Done and error', 4: 'In progress', 5: 'Not supported', 6: 'Inhibited', 7: 'Scheduled' } as Record<number, string>)[r.enumValue('testStatus') ?? 0] ?? null);
    b.num('ups.timer.shutdown', r.number('offDelay')).num('ups.timer.start', r.number('onDelay'));
    const alarms = wellKnown(r.alarmOids, XUPS_WELL_KNOWN);
    const flags = joinFlags([
      ({ 2: 'OFF', 3: 'OL', 4: 'BYPASS', 5: 'OB', 6: 'OL BOOST', 7: 'OL TRIM', 8: 'OL', 9: 'OL', 10: 'OL', 11: 'BYPASS', 12: 'OL' } as Record<number, string>)[r.enumValue('outputSource') ?? 0],
      alarms.includes(3) || r.enumValue('onBatteryQuirk') === 1 ? 'OB' : null,
      alarms.includes(4) || r.enumValue('lowBatteryQuirk') === 1 ? 'LB' : null,
      abm === 1 ? 'CHRG' : abm === 2 ? 'DISCHRG' : null,
      r.enumValue('batteryFailure') === 1 ? 'RB' : null,
      alarms.includes(7) ? 'OVER' : null,
      alarms.includes(11) ? 'BYPASS' : null,
    ]);
    if (r.has('outputSource') || r.has('abm')) b.vars['ups.status'] = flags;
    const text = alarms.filter((a) => !XUPS_ALARMS_AS_FLAGS.has(a)).map((a) => XUPS_ALARMS[a] ?? `alarm ${XUPS_WELL_KNOWN}${a}`);
    if (text.length) b.vars['ups.alarm'] = text.join(', ');
    return b.vars;
  },
  classifyTrap(t) {
    for (const enterprise of ['1.3.6.1.4.1.534.1.11.4.1', '1.3.6.1.4.1.534.1.11.4.2', '1.3.6.1.4.1.534.1.0.0']) {
      const n = trapMatches(t, enterprise);
      if (n !== null) return ({ 3: 'on-battery', 4: 'low-battery', 5: 'power-restored', 6: 'battery-ok' } as Record<number, TrapKind>)[n] ?? 'other';
    }
    return null;
  },
};

export const PROFILES: Readonly<Record<ProfileId, Profile>> = { ietf, apc, eaton, cyberpower };

export function profileLabel(id: ProfileId): string {
  return PROFILES[id].label;
}

/**
 * Pick the profile for an agent from one GET of sysObjectID and every profile's probe object:
 * the sysObjectID's vendor when that profile's probe answers, else the first probe that answers
 * (vendor MIBs before RFC 1628, which many vendor cards also implement).
 */
export function detectProfile(values: Map<string, SnmpValue | null>): Profile | null {
  const sysOid = values.get(SYS_OBJECT_ID);
  const sys = sysOid?.kind === 'oid' ? String(sysOid.value) : '';
  const answers = (p: Profile) => values.get(p.probe) != null;
  for (const id of PROFILE_IDS) {
    const p = PROFILES[id];
    if (p.sysObjectIds.some((s) => sys === s || sys.startsWith(s + '.')) && answers(p)) return p;
  }
  for (const id of PROFILE_IDS) if (answers(PROFILES[id])) return PROFILES[id];
  return null;
}

export function detectionOids(): string[] {
  return [SYS_OBJECT_ID, SYS_DESCR, ...PROFILE_IDS.map((id) => PROFILES[id].probe)];
}

/** Which profile a trap belongs to, and what it means; null for traps that are not about a UPS. */
export function classifyTrap(t: TrapInfo, prefer?: ProfileId | null): { profile: ProfileId; kind: TrapKind } | null {
  const order = prefer ? [prefer, ...PROFILE_IDS.filter((p) => p !== prefer)] : [...PROFILE_IDS];
  for (const id of order) {
    const kind = PROFILES[id].classifyTrap(t);
    if (kind) return { profile: id, kind };
  }
  return null;
}
