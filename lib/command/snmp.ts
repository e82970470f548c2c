/**
 * UPS commands over SNMP: each MIB profile's control writes, named as NUT names the instant
 * commands (apc-mib.c, ietf-mib.c, cyberpower-mib.c, powerware-mib.c), plus the delay variables
 * (ups.delay.shutdown / ups.delay.start) where the MIB has them, and the "power off with return"
 * preset that powers the UPS off last and lets the hardware come back by itself.
 *
 * Power race: a UPS told to "turn off to conserve battery" while mains is back may do nothing and
 * leave the shut-down hosts without a power cycle. So the preset looks at the output source first:
 * on battery it uses the MIB's "off, return when power returns" control; on mains it uses an
 * off-then-on sequence (APC graceful reboot, RFC 1628 startup timer, XUPS off/on delays; CyberPower's
 * sleep does both), so the hosts see power come back either way.
 *
 * Acceptance: the agent's SET response (no error) is the first confirmation; where the MIB exposes
 * the running timer (RFC 1628 upsShutdownAfterDelay, XUPS xupsControlOutputOffDelay /
 * xupsLoadShedSecsWithRestart) or the delay just written (APC/CyberPower), it is read back.
 */
import { SetVarbind, SnmpClient, SnmpError, SnmpValue } from '../snmp/client';
import { ProfileId } from '../snmp/profiles';

const I = '1.3.6.1.2.1.33.1.';
const A = '1.3.6.1.4.1.318.1.1.1.';
const C = '1.3.6.1.4.1.3808.1.1.1.';
const X = '1.3.6.1.4.1.534.1.';

export interface SnmpCommandContext {
  /** Whether the UPS runs on battery now (decides the return method). */
  onBattery: boolean;
  /** Seconds before the output goes off. */
  delayShutdown: number;
  /** Seconds after mains returns (or after the off time, on mains) before the output comes back. */
  delayStart: number;
}

/** One write step and what reading back must show. */
export interface SnmpStep {
  set: SetVarbind[];
  what: string;
}

export interface SnmpPlan {
  steps: SnmpStep[];
  /** Objects to read back after the writes, with what they must hold. */
  confirm: Array<{ oid: string; what: string; ok: (v: SnmpValue | null) => boolean }>;
  /** What will happen, in words. */
  summary: string;
}

interface CommandDef {
  description: string;
  plan(ctx: SnmpCommandContext): SnmpPlan;
}

const int = (oid: string, value: number): SetVarbind => ({ oid, type: 'int', value });
const ticks = (oid: string, seconds: number): SetVarbind => ({ oid, type: 'timeticks', value: Math.round(seconds * 100) });
const oidv = (oid: string, value: string): SetVarbind => ({ oid, type: 'oid', value });

/** A timer that is running (or just set): a number ≥ 0 and ≤ what was written. */
const timerRunning = (max: number) => (v: SnmpValue | null) => v !== null && typeof v.value === 'number' && (v.kind === 'timeticks' ? v.value / 100 : v.value) >= 0 && (v.kind === 'timeticks' ? v.value / 100 : v.value) <= max + 1;
const equals = (n: number) => (v: SnmpValue | null) => v !== null && typeof v.value === 'number' && v.value === n;
const ticksEqual = (seconds: number) => (v: SnmpValue | null) => v !== null && typeof v.value === 'number' && Math.round(v.kind === 'timeticks' ? v.value / 100 : v.value) === Math.round(seconds);

function simple(description: string, set: SetVarbind[]): CommandDef {
  return { description, plan: () => ({ steps: [{ set, what: description }], confirm: [], summary: description }) };
}

const COMMANDS: Record<ProfileId, Record<string, CommandDef>> = {
  ietf: {
    'shutdown.return': {
      description: 'turn the output off after ups.delay.shutdown, back on when power returns (upsAutoRestart on, upsShutdownAfterDelay)',
      plan: (c) => c.onBattery
        ? {
          steps: [
            { set: [int(`${I}8.5.0`, 1)], what: 'upsAutoRestart = on' },
            { set: [int(`${I}8.2.0`, c.delayShutdown)], what: `upsShutdownAfterDelay = ${c.delayShutdown} s` },
          ],
          confirm: [
            { oid: `${I}8.2.0`, what: 'upsShutdownAfterDelay counting down', ok: timerRunning(c.delayShutdown) },
            { oid: `${I}8.5.0`, what: 'upsAutoRestart on', ok: equals(1) },
          ],
          summary: `on battery: output off in ${c.delayShutdown} s, back on when mains returns (upsAutoRestart)`,
        }
        : {
          steps: [
            { set: [int(`${I}8.3.0`, c.delayShutdown + c.delayStart)], what: `upsStartupAfterDelay = ${c.delayShutdown + c.delayStart} s` },
            { set: [int(`${I}8.2.0`, c.delayShutdown)], what: `upsShutdownAfterDelay = ${c.delayShutdown} s` },
          ],
          confirm: [
            { oid: `${I}8.2.0`, what: 'upsShutdownAfterDelay counting down', ok: timerRunning(c.delayShutdown) },
            { oid: `${I}8.3.0`, what: 'upsStartupAfterDelay counting down', ok: timerRunning(c.delayShutdown + c.delayStart) },
          ],
          summary: `on mains: output off in ${c.delayShutdown} s and on again ${c.delayStart} s later (startup timer), so the hosts see power return`,
        },
    },
    'shutdown.stayoff': {
      description: 'turn the output off after ups.delay.shutdown and leave it off (upsAutoRestart off)',
      plan: (c) => ({
        steps: [{ set: [int(`${I}8.5.0`, 2)], what: 'upsAutoRestart = off' }, { set: [int(`${I}8.2.0`, c.delayShutdown)], what: `upsShutdownAfterDelay = ${c.delayShutdown} s` }],
        confirm: [{ oid: `${I}8.2.0`, what: 'upsShutdownAfterDelay counting down', ok: timerRunning(c.delayShutdown) }],
        summary: `output off in ${c.delayShutdown} s, stays off`,
      }),
    },
    'load.off': simple('output off now (upsShutdownAfterDelay = 0)', [int(`${I}8.2.0`, 0)]),
    'load.on': simple('output on now (upsStartupAfterDelay = 0)', [int(`${I}8.3.0`, 0)]),
    'shutdown.stop': simple('abort a pending shutdown (upsShutdownAfterDelay = -1)', [int(`${I}8.2.0`, -1)]),
    'beeper.disable': simple('beeper off (upsConfigAudibleStatus = disabled)', [int(`${I}9.8.0`, 1)]),
    'beeper.enable': simple('beeper on (upsConfigAudibleStatus = enabled)', [int(`${I}9.8.0`, 2)]),
    'beeper.mute': simple('silence the current alarm (upsConfigAudibleStatus = muted)', [int(`${I}9.8.0`, 3)]),
    'test.battery.start.quick': simple('quick battery test (upsTestId = upsTestQuickBatteryTest)', [oidv(`${I}7.1.0`, `${I}7.7.4`)]),
    'test.battery.start.deep': simple('deep battery calibration (upsTestId = upsTestDeepBatteryCalibration)', [oidv(`${I}7.1.0`, `${I}7.7.5`)]),
    'test.battery.stop': simple('abort the running test (upsTestId = upsTestAbortTestInProgress)', [oidv(`${I}7.1.0`, `${I}7.7.2`)]),
  },
  apc: {
    'shutdown.return': {
      description: 'turn the UPS off after ups.delay.shutdown and back on when power returns (conserve battery; on mains: graceful reboot)',
      plan: (c) => ({
        steps: [
          { set: [ticks(`${A}5.2.10.0`, c.delayShutdown), ticks(`${A}5.2.9.0`, c.delayStart)], what: `upsAdvConfigShutoffDelay = ${c.delayShutdown} s, upsAdvConfigReturnDelay = ${c.delayStart} s` },
          c.onBattery
            ? { set: [int(`${A}6.1.1.0`, 2)], what: 'upsBasicControlConserveBattery = turnOffUpsToConserveBattery' }
            : { set: [int(`${A}6.2.2.0`, 3)], what: 'upsAdvControlRebootUPS = rebootUpsGracefully' },
        ],
        confirm: [
          { oid: `${A}5.2.10.0`, what: `shutoff delay ${c.delayShutdown} s`, ok: ticksEqual(c.delayShutdown) },
          { oid: `${A}5.2.9.0`, what: `return delay ${c.delayStart} s`, ok: ticksEqual(c.delayStart) },
        ],
        summary: c.onBattery
          ? `on battery: UPS off in ${c.delayShutdown} s (conserve battery), on again ${c.delayStart} s after mains returns`
          : `on mains: graceful reboot — off in ${c.delayShutdown} s, on again ${c.delayStart} s later, so the hosts see power return`,
      }),
    },
    'shutdown.stayoff': simple('turn the UPS off gracefully after its shutoff delay, stay off (upsAdvControlUpsOff = turnUpsOffGracefully)', [int(`${A}6.2.1.0`, 3)]),
    'shutdown.reboot': simple('graceful reboot (upsAdvControlRebootUPS = rebootUpsGracefully)', [int(`${A}6.2.2.0`, 3)]),
    'load.off': simple('UPS off now (upsAdvControlUpsOff = turnUpsOff)', [int(`${A}6.2.1.0`, 2)]),
    'load.on': simple('UPS on (upsAdvControlTurnOnUPS = turnOnUPS)', [int(`${A}6.2.6.0`, 2)]),
    'test.battery.start': simple('self test (upsAdvTestDiagnostics = testDiagnostics)', [int(`${A}7.2.2.0`, 2)]),
    'calibrate.start': simple('runtime calibration (upsAdvTestRuntimeCalibration = performCalibration)', [int(`${A}7.2.5.0`, 2)]),
    'calibrate.stop': simple('cancel calibration (upsAdvTestRuntimeCalibration = cancelCurrentCalibration)', [int(`${A}7.2.5.0`, 3)]),
  },
  cyberpower: {
    // upsBaseControlConserveBattery is honoured only on battery (NUT's cyberpower-mib disables it for
    // that reason): with mains back mid-shutdown the UPS would stay on and the hosts stay off. Sleep
    // works either way: off after the sleep delay, on again after the return delay with mains.
    'shutdown.return': {
      description: 'put the UPS to sleep: off after ups.delay.shutdown, on again ups.delay.start after mains is there, on battery or on mains (upsAdvanceControlUpsSleep)',
      plan: (c) => ({
        steps: [
          { set: [ticks(`${C}5.2.11.0`, c.delayShutdown), ticks(`${C}5.2.9.0`, c.delayStart)], what: `upsAdvanceConfigSleepDelay = ${c.delayShutdown} s, upsAdvanceConfigReturnDelay = ${c.delayStart} s` },
          { set: [int(`${C}6.2.3.0`, 3)], what: 'upsAdvanceControlUpsSleep = putUpsToSleepGracefully' },
        ],
        confirm: [
          { oid: `${C}5.2.11.0`, what: `sleep delay ${c.delayShutdown} s`, ok: ticksEqual(c.delayShutdown) },
          { oid: `${C}5.2.9.0`, what: `return delay ${c.delayStart} s`, ok: ticksEqual(c.delayStart) },
        ],
        summary: c.onBattery
          ? `on battery: UPS asleep (off) in ${c.delayShutdown} s, on again ${c.delayStart} s after mains returns`
          : `on mains: UPS asleep (off) in ${c.delayShutdown} s and on again ${c.delayStart} s later, so the hosts see power return`,
      }),
    },
    'shutdown.stayoff': simple('turn the UPS off gracefully, stay off (upsAdvanceControlUpsOff = turnUpsOffGracefully)', [int(`${C}6.2.1.0`, 3)]),
    'load.off': simple('UPS off now (upsAdvanceControlUpsOff = turnUpsOff)', [int(`${C}6.2.1.0`, 2)]),
    'load.on': simple('UPS on (upsAdvanceControlTurnOnUPS = turnOnUPS)', [int(`${C}6.2.6.0`, 2)]),
    'test.battery.start': simple('self test (upsAdvanceTestDiagnostics)', [int(`${C}7.2.2.0`, 2)]),
  },
  eaton: {
    'shutdown.return': {
      description: 'shed the load after ups.delay.shutdown and restart when power returns (xupsLoadShedSecsWithRestart; on mains: off/on delays)',
      plan: (c) => c.onBattery
        ? {
          steps: [{ set: [int(`${X}9.6.0`, c.delayShutdown)], what: `xupsLoadShedSecsWithRestart = ${c.delayShutdown} s` }],
          confirm: [{ oid: `${X}9.6.0`, what: 'xupsLoadShedSecsWithRestart counting down', ok: timerRunning(c.delayShutdown) }],
          summary: `on battery: load off in ${c.delayShutdown} s, restart when mains returns`,
        }
        : {
          steps: [
            { set: [int(`${X}9.2.0`, c.delayShutdown + c.delayStart)], what: `xupsControlOutputOnDelay = ${c.delayShutdown + c.delayStart} s` },
            { set: [int(`${X}9.1.0`, c.delayShutdown)], what: `xupsControlOutputOffDelay = ${c.delayShutdown} s` },
          ],
          confirm: [
            { oid: `${X}9.1.0`, what: 'xupsControlOutputOffDelay counting down', ok: timerRunning(c.delayShutdown) },
            { oid: `${X}9.2.0`, what: 'xupsControlOutputOnDelay counting down', ok: timerRunning(c.delayShutdown + c.delayStart) },
          ],
          summary: `on mains: output off in ${c.delayShutdown} s and on again ${c.delayStart} s later, so the hosts see power return`,
        },
    },
    'shutdown.stayoff': {
      description: 'output off after ups.delay.shutdown (xupsControlOutputOffDelay), stays off',
      plan: (c) => ({
        steps: [{ set: [int(`${X}9.1.0`, Math.max(1, c.delayShutdown))], what: `xupsControlOutputOffDelay = ${Math.max(1, c.delayShutdown)} s` }],
        confirm: [{ oid: `${X}9.1.0`, what: 'xupsControlOutputOffDelay counting down', ok: timerRunning(Math.max(1, c.delayShutdown)) }],
        summary: `output off in ${Math.max(1, c.delayShutdown)} s, stays off`,
      }),
    },
    'load.off': simple('output off in 1 s (xupsControlOutputOffDelay = 1)', [int(`${X}9.1.0`, 1)]),
    'load.on': simple('output on in 1 s (xupsControlOutputOnDelay = 1)', [int(`${X}9.2.0`, 1)]),
    'shutdown.stop': simple('cancel a pending output off (xupsControlOutputOffDelay = 0)', [int(`${X}9.1.0`, 0)]),
    'test.battery.start.quick': simple('battery test (xupsTestBattery = startTest)', [int(`${X}8.1.0`, 1)]),
  },
};

/** Delay variables each MIB can set (NUT names → object, in seconds). */
const DELAY_VARS: Partial<Record<ProfileId, Record<string, (s: number) => SetVarbind>>> = {
  apc: { 'ups.delay.shutdown': (s) => ticks(`${A}5.2.10.0`, s), 'ups.delay.start': (s) => ticks(`${A}5.2.9.0`, s) },
  cyberpower: { 'ups.delay.shutdown': (s) => ticks(`${C}5.2.11.0`, s), 'ups.delay.start': (s) => ticks(`${C}5.2.9.0`, s) },
};

export function snmpCommandNames(profile: ProfileId): string[] {
  return Object.keys(COMMANDS[profile]);
}

export function snmpCommandDescription(profile: ProfileId, cmd: string): string | null {
  return COMMANDS[profile][cmd]?.description ?? null;
}

export function snmpVariableNames(profile: ProfileId): string[] {
  return Object.keys(DELAY_VARS[profile] ?? {});
}

export function planSnmpCommand(profile: ProfileId, cmd: string, ctx: SnmpCommandContext): SnmpPlan {
  const def = COMMANDS[profile][cmd];
  if (!def) throw new Error(`the ${profile} MIB profile has no command "${cmd}" (it has: ${snmpCommandNames(profile).join(', ')})`);
  return def.plan(ctx);
}

export function planSnmpSetVar(profile: ProfileId, name: string, value: string): SnmpPlan {
  const make = DELAY_VARS[profile]?.[name];
  if (!make) {
    const have = snmpVariableNames(profile);
    throw new Error(`the ${profile} MIB profile has no settable variable "${name}"${have.length ? ` (it has: ${have.join(', ')})` : ' (its delays are given with the command)'}`);
  }
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds < 0 || seconds > 86400) throw new Error(`${name} must be a number of seconds from 0 to 86400`);
  const vb = make(seconds);
  return { steps: [{ set: [vb], what: `${name} = ${seconds} s` }], confirm: [{ oid: vb.oid, what: `${name} ${seconds} s`, ok: ticksEqual(seconds) }], summary: `${name} = ${seconds} s` };
}

/** Objects a plan writes: a dry-run checks the agent has them (GET, nothing written). */
export function planObjects(plan: SnmpPlan): string[] {
  return [...new Set(plan.steps.flatMap((s) => s.set.map((v) => v.oid)))];
}

/** Run a plan: every write in order, then read back what must show. Returns what was confirmed. */
export async function runSnmpPlan(client: SnmpClient, plan: SnmpPlan, signal: AbortSignal): Promise<string[]> {
  for (const step of plan.steps) {
    try {
      await client.set(step.set, signal);
    } catch (err) {
      throw new Error(`${step.what}: ${(err as Error).message}`);
    }
  }
  if (!plan.confirm.length) return ['the agent accepted the write'];
  const values = await client.get(plan.confirm.map((c) => c.oid), signal);
  const confirmed: string[] = [];
  for (const c of plan.confirm) {
    const v = values.get(c.oid) ?? null;
    if (!c.ok(v)) throw new Error(`the agent accepted the write but reading back does not show ${c.what} (${c.oid} = ${v === null ? 'absent' : v.value})`);
    confirmed.push(c.what);
  }
  return confirmed;
}

/**
 * Objects a dry-run may write back with the value they hold, to prove write access without changing
 * anything: configuration values, never a trigger (a control object acts on any write) or a running
 * timer (rewriting it would restart the count). Numbers only: strings come back trimmed.
 */
const WRITE_PROBES: Record<ProfileId, Array<{ oid: string; name: string; safe?: (v: SnmpValue) => boolean }>> = {
  ietf: [{ oid: `${I}8.5.0`, name: 'upsAutoRestart' }, { oid: `${I}9.8.0`, name: 'upsConfigAudibleStatus' }],
  apc: [{ oid: `${A}5.2.10.0`, name: 'upsAdvConfigShutoffDelay' }, { oid: `${A}5.2.9.0`, name: 'upsAdvConfigReturnDelay' }],
  cyberpower: [{ oid: `${C}5.2.11.0`, name: 'upsAdvanceConfigSleepDelay' }, { oid: `${C}5.2.9.0`, name: 'upsAdvanceConfigReturnDelay' }],
  // XUPS has no plain configuration number every card has; 0 written to an idle off-delay is
  // "abort a pending shutdown" with none pending.
  eaton: [{ oid: `${X}9.1.0`, name: 'xupsControlOutputOffDelay', safe: (v) => v.value === 0 }],
};

const SET_TYPE: Partial<Record<SnmpValue['kind'], SetVarbind['type']>> = { int: 'int', gauge: 'gauge', timeticks: 'timeticks' };

export interface WriteCheck {
  /** Whether a write was tried (false: the card has no object that can be rewritten unchanged). */
  tried: boolean;
  detail: string;
}

/**
 * Prove the community / v3 user may write: SET one configuration object to the value it holds.
 * Rejects with what to fix when the agent refuses, or answers GETs but not the SET (many agents
 * drop a write from a read-only community without an answer).
 */
export async function proveWriteAccess(client: SnmpClient, profile: ProfileId, signal: AbortSignal): Promise<WriteCheck> {
  const probes = WRITE_PROBES[profile];
  const values = await client.get(probes.map((p) => p.oid), signal);
  for (const p of probes) {
    const v = values.get(p.oid) ?? null;
    const type = v && typeof v.value === 'number' ? SET_TYPE[v.kind] : undefined;
    if (!v || !type || (p.safe && !p.safe(v))) continue;
    try {
      await client.set([{ oid: p.oid, type, value: v.value as number }], signal);
    } catch (err) {
      const e = err as SnmpError;
      if (e.kind === 'timeout') {
        throw new Error(`the agent answers reads but not a write (${p.name} set to the value it has): this community / v3 user is most likely read-only (agents drop such writes without an answer); use the card's write community or a v3 user with write access`);
      }
      if (e.kind === 'agent') {
        throw new Error(`the agent refused to write ${p.name} even with the value it has: this community / v3 user may not write (read-only?); use the card's write community or a v3 user with write access`);
      }
      throw err;
    }
    return { tried: true, detail: `write access proven (${p.name} written with the value it has, ${v.value})` };
  }
  return { tried: false, detail: 'write access not checked: this card has no setting that can be rewritten unchanged, so it shows only when the command is sent' };
}
