/**
 * The UPS command action (lib/actions/contract.ts): one target, the UPS of a UPS device config
 * (NUT or SNMP). Operation `command` sends the configured command:
 * - `return`: the "power off with return" preset for the last phase of a plan — set the delays,
 *   send shutdown.return (NUT) or the MIB's equivalent (SNMP), confirm it was accepted (TRACKING
 *   result, or the running timer / written delay read back) and report what will happen;
 * - `instcmd` (NUT INSTCMD, or the MIB's control write of that NUT name), `setvar` (NUT SET VAR, or
 *   the MIB's delay objects), `fsd` (NUT only).
 * Dry-run connects, checks the command exists (LIST CMD / LIST RW, or the MIB objects answer a
 * GET), checks the credentials where that is possible without side effects (NUT: a SET of a
 * variable that does not exist; SNMP: one setting written with the value it has), and sends no
 * command.
 * A one-shot command is not repeated after a Node-RED restart (`repeatable` false) except SET VAR
 * and FSD, which are harmless to repeat.
 */
import { ActOptions, ActOutcome, ActionDriver, Operation, PowerState, Target, abortError, abortableSleep } from '../actions/contract';
import { NutCommandTarget, NutCommander, TrackingResult } from './nut';
import { CommandConfig, describeCommand } from './config';
import { SnmpPlan, planObjects, planSnmpCommand, planSnmpSetVar, proveWriteAccess, runSnmpPlan, snmpCommandNames, snmpVariableNames } from './snmp';
import { SnmpClient, SnmpTarget } from '../snmp/client';
import { ProfileId } from '../snmp/profiles';
import { SnmpSource } from '../snmp/source';
import { parseFlags } from '../ups/state';

export type UpsAccess =
  | { kind: 'nut'; name: string; nut: NutCommandTarget }
  | { kind: 'snmp'; name: string; snmp: SnmpTarget; profile: ProfileId | 'auto' };

function powerOf(status: string | undefined): PowerState {
  const flags = parseFlags(status);
  if (!flags.length) return 'unknown';
  return flags.includes('OFF') ? 'off' : 'on';
}

/**
 * The only operation this action performs is `command` (`none` lists the UPS for a status
 * request). A plain "stop", "suspend", "maintenance"… addressed to it must not power the UPS off.
 */
export function refuseOperation(op: Operation | undefined, what: string, listing = false): void {
  if (op === 'command' || (listing && (op === undefined || op === 'none'))) return;
  throw new Error(`"${op}" is not something a UPS command node does: it only sends its command (${what}); use topic shutdown, startup, command or dry-run`);
}

const tracked = (r: TrackingResult) => (r === 'SUCCESS' ? 'TRACKING SUCCESS' : 'accepted by upsd (no tracking on this upsd)');

export class UpsCommandDriver implements ActionDriver {
  readonly repeatable: boolean;
  private nut: NutCommander | null = null;
  private source: SnmpSource | null = null;
  private client: SnmpClient | null = null;
  private vars: Record<string, string> = {};

  private resolved: UpsAccess | null = null;

  /** `access` may be a function: resolved (and its errors reported as the target's) when listing. */
  constructor(private readonly accessOrResolver: UpsAccess | (() => UpsAccess), private readonly cmd: CommandConfig) {
    this.repeatable = cmd.mode === 'setvar' || cmd.mode === 'fsd';
  }

  private get access(): UpsAccess {
    if (!this.resolved) this.resolved = typeof this.accessOrResolver === 'function' ? this.accessOrResolver() : this.accessOrResolver;
    return this.resolved;
  }

  private get what(): string {
    return describeCommand(this.cmd);
  }

  async list(signal: AbortSignal, operation?: Operation): Promise<Target[]> {
    refuseOperation(operation, this.what, true);
    const a = this.access;
    if (a.kind === 'nut') {
      this.nut = new NutCommander(a.nut);
      this.vars = await this.nut.status(signal);
      return [{ id: `nut:${this.nut.where}`, name: a.name, tags: ['ups', 'nut'], power: powerOf(this.vars['ups.status']), info: { status: this.vars['ups.status'] ?? null, ups: a.nut.ups } }];
    }
    if (this.cmd.mode === 'fsd') throw new Error('FSD is a flag of a NUT server (upsd); an SNMP UPS has none: use "power off with return" or a command, or raise FSD on the NUT server node');
    this.source = new SnmpSource({ ...a.snmp, profile: a.profile });
    const onAbort = () => void this.source?.close();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      this.vars = (await this.source.read(Date.now())).vars;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
    this.client = new SnmpClient(a.snmp);
    return [{
      id: `snmp:${a.snmp.host}:${a.snmp.port}`, name: a.name, tags: ['ups', 'snmp'], power: powerOf(this.vars['ups.status']),
      info: { status: this.vars['ups.status'] ?? null, profile: this.source.profile?.id ?? null },
    }];
  }

  private get profile(): ProfileId {
    const p = this.source?.profile?.id;
    if (!p) throw new Error('the SNMP MIB profile is not known yet');
    return p;
  }

  private snmpPlan(): SnmpPlan {
    const ctx = { onBattery: parseFlags(this.vars['ups.status']).includes('OB'), delayShutdown: this.cmd.delayShutdown, delayStart: this.cmd.delayStart };
    switch (this.cmd.mode) {
      case 'return':
        return planSnmpCommand(this.profile, 'shutdown.return', ctx);
      case 'instcmd':
        return planSnmpCommand(this.profile, this.cmd.command, ctx);
      case 'setvar':
        return planSnmpSetVar(this.profile, this.cmd.variable, this.cmd.value);
      default:
        throw new Error('FSD is a NUT server flag; an SNMP UPS has none');
    }
  }

  async check(_target: Target, opts: ActOptions, signal: AbortSignal): Promise<string> {
    refuseOperation(opts.operation, this.what);
    if (this.access.kind === 'snmp') {
      const plan = this.snmpPlan();
      const objects = planObjects(plan);
      const values = await this.client!.get(objects, signal);
      const missing = objects.filter((o) => values.get(o) === null);
      if (missing.length) throw new Error(`the agent has no ${missing.join(', ')}: this ${this.source!.profile!.label} card cannot do "${this.what}"`);
      const write = await proveWriteAccess(this.client!, this.profile, signal);
      return `would ${plan.steps.map((s) => s.what).join(', then ')} — ${plan.summary}; the objects answer; ${write.detail}`;
    }
    const nut = this.nut!;
    const user = this.access.nut.username;
    if (!user) throw new Error('the UPS device has no NUT username: upsd runs commands only for a user from upsd.users');
    const rights = async (needSet: boolean): Promise<string> => {
      if (!needSet) return `upsd checks the rights of "${user}" for this command only when it is sent`;
      if (!(await nut.maySet(signal))) throw new Error(`upsd refuses SET for "${user}": wrong password, or no "actions = SET" in upsd.users`);
      return `"${user}" may SET`;
    };
    switch (this.cmd.mode) {
      case 'return': {
        const cmds = await nut.commands(signal);
        if (!cmds.includes('shutdown.return')) throw new Error(`UPS ${this.access.nut.ups} does not offer shutdown.return (it offers: ${cmds.join(', ') || 'no commands'})`);
        const delays = this.cmd.setDelays ? await this.writableDelays(signal) : [];
        const setPart = delays.length ? `set ${delays.map(([k, v]) => `${k} = ${v} s`).join(' and ')}, then ` : '';
        return `would ${setPart}send INSTCMD shutdown.return (offered); ${await rights(delays.length > 0)}${delays.length ? '; INSTCMD rights are checked by upsd only when it is sent' : ''}`;
      }
      case 'instcmd': {
        const cmds = await nut.commands(signal);
        if (!cmds.includes(this.cmd.command)) throw new Error(`UPS ${this.access.nut.ups} does not offer ${this.cmd.command} (it offers: ${cmds.join(', ') || 'no commands'})`);
        return `would send INSTCMD ${this.cmd.command}${this.cmd.param ? ' ' + this.cmd.param : ''} (offered); ${await rights(false)}`;
      }
      case 'setvar': {
        const rw = await nut.writable(signal);
        if (!(this.cmd.variable in rw)) throw new Error(`UPS ${this.access.nut.ups} has no writable ${this.cmd.variable} (writable: ${Object.keys(rw).join(', ') || 'none'})`);
        return `would SET ${this.cmd.variable} from "${rw[this.cmd.variable]}" to "${this.cmd.value}"; ${await rights(true)}`;
      }
      case 'fsd':
        return `would raise FSD on ${this.access.nut.ups} (status now ${this.vars['ups.status'] ?? '?'}); upsd checks FSD rights of "${user}" only when it is sent`;
    }
  }

  /** The delay variables the UPS lets us write, with the values to write. */
  private async writableDelays(signal: AbortSignal): Promise<Array<[string, number]>> {
    const rw = await this.nut!.writable(signal);
    const want: Array<[string, number]> = [['ups.delay.shutdown', this.cmd.delayShutdown], ['ups.delay.start', this.cmd.delayStart]];
    return want.filter(([k]) => k in rw);
  }

  async act(_target: Target, opts: ActOptions, signal: AbortSignal): Promise<ActOutcome> {
    refuseOperation(opts.operation, this.what);
    if (signal.aborted) throw abortError(signal);
    if (this.access.kind === 'snmp') {
      const plan = this.snmpPlan();
      const confirmed = await runSnmpPlan(this.client!, plan, signal);
      return { method: 'graceful', after: 'on', detail: `${plan.summary}; confirmed: ${confirmed.join(', ')}` };
    }
    const nut = this.nut!;
    const ms = this.cmd.confirmTimeout * 1000;
    switch (this.cmd.mode) {
      case 'return': {
        const cmds = await nut.commands(signal);
        if (!cmds.includes('shutdown.return')) throw new Error(`UPS ${this.access.nut.ups} does not offer shutdown.return (it offers: ${cmds.join(', ') || 'no commands'})`);
        const parts: string[] = [];
        if (this.cmd.setDelays) {
          const delays = await this.writableDelays(signal);
          for (const [k, v] of delays) parts.push(`${k} = ${v} s (${tracked(await nut.setVar(k, String(v), ms, signal))})`);
          const missing = ['ups.delay.shutdown', 'ups.delay.start'].filter((k) => !delays.some(([d]) => d === k));
          if (missing.length) parts.push(`${missing.join(', ')} not writable on this UPS: its own delays apply`);
        }
        const r = await nut.instcmd('shutdown.return', undefined, ms, signal);
        parts.push(`INSTCMD shutdown.return ${tracked(r)}`);
        if (r !== 'SUCCESS') parts.push(await this.confirmTimer(ms, signal));
        return { method: 'graceful', after: 'on', detail: `${parts.join('; ')}; the UPS turns its output off after its shutdown delay and back on when mains returns` };
      }
      case 'instcmd': {
        const r = await nut.instcmd(this.cmd.command, this.cmd.param || undefined, ms, signal);
        return { method: 'graceful', after: 'on', detail: `INSTCMD ${this.cmd.command}${this.cmd.param ? ' ' + this.cmd.param : ''} ${tracked(r)}` };
      }
      case 'setvar': {
        const r = await nut.setVar(this.cmd.variable, this.cmd.value, ms, signal);
        return { method: 'graceful', after: 'on', detail: `SET ${this.cmd.variable} = "${this.cmd.value}" ${tracked(r)}` };
      }
      case 'fsd': {
        await nut.fsd(signal);
        const status = (await nut.status(signal))['ups.status'] ?? '';
        if (!parseFlags(status).includes('FSD')) throw new Error(`upsd answered OK FSD-SET but ups.status is "${status}"`);
        return { method: 'graceful', after: 'on', detail: `FSD raised: ups.status ${status}` };
      }
    }
  }

  /**
   * Without tracking, upsd's OK only says it passed the command on: the driver may still have failed
   * it. Read the shutdown timer until it runs (≥ 0) or the UPS shows OFF, within the confirmation
   * time; a timer that never starts fails the run, so a plan does not report a UPS that stays on as
   * powered off. A UPS without the timer cannot be checked: the detail says so plainly.
   */
  private async confirmTimer(ms: number, signal: AbortSignal): Promise<string> {
    const deadline = Date.now() + ms;
    let last: string | undefined;
    for (;;) {
      const vars = await this.nut!.status(signal);
      const t = vars['ups.timer.shutdown'];
      if (parseFlags(vars['ups.status']).includes('OFF')) return `confirmed: ups.status ${vars['ups.status']}`;
      if (t === undefined) return 'NOT CONFIRMED: upsd has no TRACKING and the UPS has no ups.timer.shutdown to read back — check that the UPS really counts down';
      if (Number(t) >= 0) return `confirmed: ups.timer.shutdown counting (${t} s)`;
      last = t;
      if (Date.now() >= deadline) break;
      await abortableSleep(Math.min(500, Math.max(0, deadline - Date.now())), signal);
    }
    throw new Error(`upsd accepted INSTCMD shutdown.return (no TRACKING on this upsd) but ups.timer.shutdown still reads ${last} after ${Math.round(ms / 1000)} s: the driver has not started the shutdown (see its log), so the UPS may stay on`);
  }

  /** Commands (and settable variables) this UPS offers, for the editor. */
  async offered(signal: AbortSignal): Promise<{ commands: string[]; variables: string[]; profile?: string; profileId?: ProfileId }> {
    await this.list(signal);
    if (this.access.kind === 'nut') {
      return { commands: await this.nut!.commands(signal), variables: Object.keys(await this.nut!.writable(signal)) };
    }
    const p = this.profile;
    return { commands: snmpCommandNames(p), variables: snmpVariableNames(p), profile: this.source!.profile!.label, profileId: p };
  }

  async close(): Promise<void> {
    await this.nut?.close().catch(() => undefined);
    this.client?.close();
    await this.source?.close().catch(() => undefined);
    this.nut = null;
    this.client = null;
    this.source = null;
  }
}
