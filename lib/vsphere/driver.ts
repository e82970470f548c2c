/**
 * The vSphere action driver (vCenter or standalone ESXi) behind the action contract.
 *
 * VMs: shutdown = ShutdownGuest when VMware Tools run (or run scripts), wait until poweredOff,
 * PowerOffVM_Task after the timeout (unless forcing is disabled); Tools not running = power off at
 * once (or fail when forcing is disabled), except for a target a resumed run had already asked to
 * shut down: its guest may be mid-shutdown with Tools already stopped, so it gets the timeout to
 * power off first. start = PowerOnVM_Task, optionally waiting until Tools run. stop =
 * PowerOffVM_Task. suspend = SuspendVM_Task.
 * Hosts: maintenance = EnterMaintenanceMode_Task; host-shutdown = ShutdownHost_Task, refused
 * without force unless the host is in maintenance mode (or the action enters it first; when that
 * fails and force is set, the host is shut down with force anyway: a host left on dies with the
 * UPS). Once the server accepted the shutdown, losing the connection means the host (or the
 * vCenter VM on it) is going down: success. start = wait until the host is connected again and
 * exit maintenance mode.
 */
import { ActOptions, ActOutcome, ActionDriver, Operation, PowerState, Target, formatSeconds } from '../actions/contract';
import { NotReachable } from '../actions/run';
import { ConnectError } from '../net/https-client';
import { HostInfo, VmInfo, missingPrivileges, readInventory, readLicences } from './inventory';
import { MoRef, SoapProtocolError, VimFault, parseRef, text, xsiType } from './soap';
import { VsphereSession } from './session';
import { Watcher } from './watch';

export type VsphereKind = 'vm' | 'host';

export interface VsphereDriverOptions {
  kind: VsphereKind;
  /** How often state is read while waiting, ms (default 1000). */
  pollMs?: number;
}

/** Extras the action node passes in ActOptions.extra. */
export interface VsphereExtra {
  /** start: wait until VMware Tools run in the guest. */
  waitForTools?: boolean;
  /** start: how long to wait for Tools, ms (default: the operation timeout). */
  toolsTimeoutMs?: number;
  /** host-shutdown: enter maintenance mode first when the host is not in it. */
  maintenanceFirst?: boolean;
}

const TOOLS_RUNNING = 'guestToolsRunning';

/** Tools that run power-on/off scripts are running: ShutdownGuest works. */
export function toolsUp(status: unknown): boolean {
  return status === TOOLS_RUNNING || status === 'guestToolsExecutingScripts';
}

/** The server stopped answering (as opposed to answering with a fault). */
function lostConnection(err: unknown): boolean {
  return err instanceof ConnectError || err instanceof SoapProtocolError;
}
/** Bound for tasks that take seconds on a healthy server (power on/off, suspend, host shutdown, exit maintenance). */
const QUICK_TASK_MS = 60_000;

const PRIVILEGES: Record<VsphereKind, Partial<Record<Operation, string[]>>> = {
  vm: {
    shutdown: ['VirtualMachine.Interact.PowerOff'],
    stop: ['VirtualMachine.Interact.PowerOff'],
    start: ['VirtualMachine.Interact.PowerOn'],
    suspend: ['VirtualMachine.Interact.Suspend'],
  },
  host: {
    maintenance: ['Host.Config.Maintenance'],
    'host-shutdown': ['Host.Config.Maintenance'],
    start: ['Host.Config.Maintenance'],
  },
};

const VM_OPS: Operation[] = ['shutdown', 'stop', 'start', 'suspend'];
const HOST_OPS: Operation[] = ['maintenance', 'host-shutdown', 'start'];

export function vmPower(p: string): PowerState {
  return p === 'poweredOn' ? 'on' : p === 'suspended' ? 'suspended' : p === 'poweredOff' ? 'off' : 'unknown';
}

/** A host as a target: a host in maintenance mode counts as not yet started for `start`. */
export function hostPower(h: Pick<HostInfo, 'power' | 'connection' | 'maintenance'>, op?: Operation): PowerState {
  if (h.power === 'poweredOff' || h.power === 'standBy') return 'off';
  if (h.connection !== 'connected') return 'unreachable';
  if (op === 'start' && h.maintenance) return 'suspended';
  return h.power === 'poweredOn' ? 'on' : 'unknown';
}

export function vmTarget(v: VmInfo): Target {
  const tags = [
    ...(v.host ? [`host:${v.host}`] : []),
    ...(v.cluster ? [`cluster:${v.cluster}`] : []),
    ...(v.datacenter ? [`datacenter:${v.datacenter}`] : []),
    ...v.folders.map((f) => `folder:${f}`),
  ];
  return {
    id: v.ref.value,
    name: v.name,
    tags,
    power: vmPower(v.power),
    info: {
      kind: 'vm',
      powerState: v.power,
      tools: v.tools,
      toolsRunning: toolsUp(v.tools),
      host: v.host,
      cluster: v.cluster,
      datacenter: v.datacenter,
      folder: v.folders.length ? '/' + v.folders.join('/') : '/',
      uuid: v.uuid,
      uptimeSeconds: v.uptimeSeconds,
    },
  };
}

export function hostTarget(h: HostInfo, op?: Operation): Target {
  return {
    id: h.ref.value,
    name: h.name,
    tags: [...(h.cluster ? [`cluster:${h.cluster}`] : []), ...(h.datacenter ? [`datacenter:${h.datacenter}`] : [])],
    power: hostPower(h, op),
    info: { kind: 'host', powerState: h.power, maintenance: h.maintenance, connection: h.connection, cluster: h.cluster, datacenter: h.datacenter },
  };
}

/** The state of a task (TaskInfo) as the watcher reads it. */
interface TaskEnd {
  ok: boolean;
  error?: string;
  faultType?: string;
}

function taskEnd(props: Record<string, unknown>): TaskEnd | undefined {
  const info = (props.info ?? {}) as Record<string, any>;
  const state = text(info.state);
  if (state === 'success') return { ok: true };
  if (state === 'error') {
    const fault = info.error?.fault;
    const faultType = xsiType(fault) || 'error';
    const msg = text(info.error?.localizedMessage).trim();
    return { ok: false, faultType, error: msg ? `${faultType}: ${msg}` : faultType };
  }
  return undefined;
}

export class VsphereDriver implements ActionDriver {
  readonly repeatable = true;
  private readonly watcher: Watcher;
  private vms = new Map<string, VmInfo>();
  private hosts = new Map<string, HostInfo>();
  private licence: string | null | undefined;

  constructor(
    private readonly session: VsphereSession,
    private readonly o: VsphereDriverOptions,
  ) {
    this.watcher = new Watcher(session, o.pollMs ?? 1000);
  }

  /** What the action talks to, for "waiting for vcenter to come back" (lib/actions/run.ts). */
  get label(): string {
    return this.session.label;
  }

  async list(signal: AbortSignal, operation?: Operation): Promise<Target[]> {
    const inv = await readInventory(this.session, signal);
    this.vms = new Map(inv.vms.map((v) => [v.ref.value, v]));
    this.hosts = new Map(inv.hosts.map((h) => [h.ref.value, h]));
    return this.o.kind === 'vm' ? inv.vms.filter((v) => !v.template).map(vmTarget) : inv.hosts.map((h) => hostTarget(h, operation));
  }

  private ref(t: Target): MoRef {
    return { type: this.o.kind === 'vm' ? 'VirtualMachine' : 'HostSystem', value: t.id };
  }

  private supported(op: Operation): void {
    const ops = this.o.kind === 'vm' ? VM_OPS : HOST_OPS;
    if (!ops.includes(op)) {
      throw new Error(
        this.o.kind === 'vm'
          ? `"${op}" applies to hosts; this action's targets are VMs (operations: ${VM_OPS.join(', ')})`
          : `"${op}" applies to VMs; this action's targets are hosts (operations: ${HOST_OPS.join(', ')})`,
      );
    }
  }

  /** Read-only licence (free ESXi), checked once per driver; a failed read is tried again next time. */
  private async writable(signal: AbortSignal): Promise<void> {
    if (this.licence === undefined) {
      try {
        this.licence = (await readLicences(this.session, signal)).readOnly;
      } catch {
        return; // not readable now: the operation itself will tell
      }
    }
    if (this.licence) throw new Error(this.licence);
  }

  private async fresh<T extends 'VirtualMachine' | 'HostSystem'>(type: T, id: string, signal: AbortSignal): Promise<Record<string, unknown>> {
    const paths = type === 'VirtualMachine' ? ['runtime.powerState', 'guest.toolsRunningStatus', 'runtime.connectionState'] : ['runtime.powerState', 'runtime.inMaintenanceMode', 'runtime.connectionState'];
    const got = await this.session.properties(type, [{ type, value: id }], paths, signal);
    const o = got.get(id);
    if (!o) throw new Error(`${type === 'VirtualMachine' ? 'VM' : 'host'} ${id} no longer exists`);
    return o.props;
  }

  /**
   * Start a task method and wait for its end; throws with the task's error. With `gone`, the
   * server no longer answering once the task was accepted resolves 'gone' (it went down with it).
   */
  private async task(method: string, ref: MoRef, params: string, timeoutMs: number, signal: AbortSignal, what: string, o: { gone?: boolean; cancelOnTimeout?: boolean } = {}): Promise<'done' | 'gone'> {
    const r = await this.session.call(method, ref, params, signal);
    const taskRef = parseRef(r.returnval);
    if (!taskRef) throw new Error(`${what}: the server returned no task`);
    let end: TaskEnd | null;
    try {
      end = await this.watcher.until(taskRef, taskEnd, timeoutMs, signal);
    } catch (err) {
      if (o.gone && !signal.aborted && lostConnection(err)) return 'gone';
      throw err;
    }
    if (end === null) {
      // Leave nothing running behind our back (best effort; not every server can cancel it).
      if (o.cancelOnTimeout) void this.session.call('CancelTask', taskRef, '').catch(() => undefined);
      throw new Error(`${what}: the task did not finish within ${formatSeconds(timeoutMs)}`);
    }
    if (!end.ok) throw new VimFault(end.faultType ?? 'error', `${what} failed: ${end.error}`);
    return 'done';
  }

  async check(target: Target, opts: ActOptions, signal: AbortSignal): Promise<string> {
    this.supported(opts.operation);
    await this.writable(signal);
    const missing = await missingPrivileges(this.session, this.ref(target), PRIVILEGES[this.o.kind][opts.operation] ?? [], signal).catch(() => []);
    if (missing.length) throw new Error(`"${this.session.settings.username}" lacks ${missing.join(', ')} on ${target.name}`);
    const secs = formatSeconds(opts.timeoutMs);
    const x = (opts.extra ?? {}) as VsphereExtra;
    if (this.o.kind === 'vm') {
      const p = await this.fresh('VirtualMachine', target.id, signal);
      const power = String(p['runtime.powerState']);
      const tools = toolsUp(p['guest.toolsRunningStatus']);
      switch (opts.operation) {
        case 'shutdown':
          if (power === 'poweredOff') return 'already off';
          if (power === 'suspended') {
            if (!opts.force) throw new Error(`${target.name} is suspended: a guest shutdown is impossible and forced power-off is disabled`);
            return 'would power off (suspended, no guest shutdown possible)';
          }
          if (tools) return `would ask the guest to shut down (VMware Tools running), then ${opts.force ? `power off after ${secs}` : `give up after ${secs}`}`;
          if (!opts.force) throw new Error(`VMware Tools are not running in ${target.name}: it cannot be shut down gracefully and forced power-off is disabled`);
          return 'would power off at once (VMware Tools not running)';
        case 'stop':
          return power === 'poweredOff' ? 'already off' : 'would power off';
        case 'start':
          return power === 'poweredOn' ? 'already on' : `would power on${x.waitForTools ? ' and wait for VMware Tools' : ''}`;
        case 'suspend':
          return power === 'suspended' ? 'already suspended' : power === 'poweredOff' ? 'off: nothing to suspend' : 'would suspend';
        default:
          return `would ${opts.operation}`;
      }
    }
    const p = await this.fresh('HostSystem', target.id, signal);
    const maint = p['runtime.inMaintenanceMode'] === true;
    switch (opts.operation) {
      case 'maintenance':
        return maint ? 'already in maintenance mode' : `would enter maintenance mode (up to ${secs})`;
      case 'host-shutdown':
        if (maint) return 'would shut the host down';
        if (!opts.force && !x.maintenanceFirst) throw new Error(`${target.name} is not in maintenance mode: shutting it down needs maintenance mode first or force`);
        if (!x.maintenanceFirst) return 'would shut the host down (forced, VMs still running are powered off)';
        return `would enter maintenance mode (up to ${secs}), then shut the host down${opts.force ? '; if maintenance mode is not reached, shut it down with force' : ''}`;
      case 'start':
        return maint ? 'would exit maintenance mode' : 'already on, not in maintenance mode';
      default:
        return `would ${opts.operation}`;
    }
  }

  async act(target: Target, opts: ActOptions, signal: AbortSignal): Promise<ActOutcome> {
    this.supported(opts.operation);
    return this.o.kind === 'vm' ? this.actVm(target, opts, signal) : this.actHost(target, opts, signal);
  }

  private async actVm(t: Target, opts: ActOptions, signal: AbortSignal): Promise<ActOutcome> {
    const ref = this.ref(t);
    const p = await this.fresh('VirtualMachine', t.id, signal);
    const power = String(p['runtime.powerState']);
    const x = (opts.extra ?? {}) as VsphereExtra;
    const taskMs = QUICK_TASK_MS;
    const powerOff = (what: string) => this.task('PowerOffVM_Task', ref, '', taskMs, signal, `powering ${t.name} off`).then(() => what);
    const isOff = (q: Record<string, unknown>) => (q['runtime.powerState'] === 'poweredOff' ? true : undefined);

    switch (opts.operation) {
      case 'shutdown': {
        if (power === 'poweredOff') return { method: 'already', after: 'off', detail: 'already off' };
        if (power === 'suspended') {
          if (!opts.force) throw new Error(`${t.name} is suspended: a guest shutdown is impossible and forced power-off is disabled`);
          return { method: 'forced', after: 'off', detail: await powerOff('suspended: powered off') };
        }
        let toolsRunning = toolsUp(p['guest.toolsRunningStatus']);
        if (!toolsRunning && opts.resumed) {
          // Asked to shut down before Node-RED stopped: its Tools stop while the guest OS goes down.
          const t0 = Date.now();
          const off = await this.watcher.until(ref, isOff, opts.timeoutMs, signal);
          if (off) return { method: 'graceful', after: 'off', detail: `guest shutdown (requested before the restart): off after ${formatSeconds(Date.now() - t0)}` };
          if (!opts.force) throw new Error(`${t.name}: VMware Tools are not running and it is still on ${formatSeconds(opts.timeoutMs)} after the restart, and forcing is disabled`);
          return { method: 'forced', after: 'off', detail: await powerOff(`VMware Tools not running, still on ${formatSeconds(opts.timeoutMs)} after the restart: powered off`) };
        }
        if (toolsRunning) {
          try {
            await this.session.call('ShutdownGuest', ref, '', signal);
          } catch (err) {
            if (err instanceof VimFault && err.faultType === 'ToolsUnavailable') toolsRunning = false;
            else if (err instanceof VimFault && err.faultType === 'InvalidPowerState') return { method: 'already', after: 'off', detail: 'already off' };
            else throw err;
          }
        }
        if (!toolsRunning) {
          if (!opts.force) throw new Error(`VMware Tools are not running in ${t.name}: it cannot be shut down gracefully and forced power-off is disabled`);
          return { method: 'forced', after: 'off', detail: await powerOff('VMware Tools not running: powered off at once') };
        }
        const t0 = Date.now();
        const off = await this.watcher.until(ref, isOff, opts.timeoutMs, signal);
        if (off) return { method: 'graceful', after: 'off', detail: `guest shutdown: off after ${formatSeconds(Date.now() - t0)}` };
        if (!opts.force) throw new Error(`${t.name}: still running ${formatSeconds(opts.timeoutMs)} after the guest shutdown request, and forcing is disabled`);
        try {
          await this.task('PowerOffVM_Task', ref, '', taskMs, signal, `powering ${t.name} off`);
        } catch (err) {
          // It may have gone off by itself between the last poll and the power-off.
          if (err instanceof VimFault && err.faultType === 'InvalidPowerState') return { method: 'graceful', after: 'off', detail: `guest shutdown: off after ${formatSeconds(Date.now() - t0)}` };
          throw err;
        }
        return { method: 'forced', after: 'off', detail: `guest did not shut down within ${formatSeconds(opts.timeoutMs)}: powered off` };
      }
      case 'stop':
        if (power === 'poweredOff') return { method: 'already', after: 'off', detail: 'already off' };
        return { method: 'forced', after: 'off', detail: await powerOff('powered off') };
      case 'suspend':
        if (power === 'suspended') return { method: 'already', after: 'suspended', detail: 'already suspended' };
        if (power === 'poweredOff') return { method: 'already', after: 'off', detail: 'off: nothing to suspend' };
        await this.task('SuspendVM_Task', ref, '', taskMs, signal, `suspending ${t.name}`);
        return { method: 'graceful', after: 'suspended', detail: 'suspended' };
      case 'start': {
        if (power === 'poweredOn') return { method: 'already', after: 'on', detail: 'already on' };
        // After an outage vCenter is often up before the ESXi hosts (or the NAS holding the
        // datastore) are back: its VMs are disconnected / inaccessible until then. The startup waits.
        const conn = String(p['runtime.connectionState'] ?? 'connected');
        if (conn === 'disconnected') throw new NotReachable(`${t.name}: its host is not connected to vCenter (yet)`);
        if (conn === 'inaccessible') throw new NotReachable(`${t.name}: its files are inaccessible (datastore not mounted yet?)`);
        const t0 = Date.now();
        await this.task('PowerOnVM_Task', ref, '', taskMs, signal, `powering ${t.name} on`);
        if (!x.waitForTools) return { method: 'graceful', after: 'on', detail: power === 'suspended' ? 'resumed' : 'powered on' };
        const toolsMs = x.toolsTimeoutMs ?? opts.timeoutMs;
        const up = await this.watcher.until(ref, (q) => (toolsUp(q['guest.toolsRunningStatus']) ? true : undefined), toolsMs, signal);
        if (!up) throw new Error(`${t.name} powered on, but VMware Tools were not running within ${formatSeconds(toolsMs)}`);
        return { method: 'graceful', after: 'on', detail: `powered on, VMware Tools running after ${formatSeconds(Date.now() - t0)}` };
      }
      default:
        throw new Error(`"${opts.operation}" is not a VM operation`);
    }
  }

  private async actHost(t: Target, opts: ActOptions, signal: AbortSignal): Promise<ActOutcome> {
    const ref = this.ref(t);
    const x = (opts.extra ?? {}) as VsphereExtra;
    let p = await this.fresh('HostSystem', t.id, signal);
    const state = () => ({ power: String(p['runtime.powerState']), connection: String(p['runtime.connectionState']), maintenance: p['runtime.inMaintenanceMode'] === true });
    const secs = Math.max(0, Math.ceil(opts.timeoutMs / 1000));
    const taskMs = QUICK_TASK_MS;
    const enterMaintenance = () =>
      this.task('EnterMaintenanceMode_Task', ref, `<timeout>${secs}</timeout>`, opts.timeoutMs + 30_000, signal, `${t.name} entering maintenance mode`, { cancelOnTimeout: true });

    switch (opts.operation) {
      case 'maintenance': {
        if (state().maintenance) return { method: 'already', after: 'on', detail: 'already in maintenance mode' };
        const t0 = Date.now();
        await enterMaintenance();
        return { method: 'graceful', after: 'on', detail: `in maintenance mode after ${formatSeconds(Date.now() - t0)}` };
      }
      case 'host-shutdown': {
        const s = state();
        if (s.power === 'poweredOff' || s.power === 'standBy') return { method: 'already', after: 'off', detail: `already ${s.power}` };
        if (s.connection !== 'connected') return { method: 'already', after: 'unreachable', detail: `host is ${s.connection}: already down?` };
        let steps = '';
        let force = opts.force;
        let forced = !s.maintenance && opts.force;
        let why = 'forced, not in maintenance mode';
        if (!s.maintenance) {
          if (x.maintenanceFirst) {
            try {
              await enterMaintenance();
              steps = 'entered maintenance mode, ';
              force = false;
              forced = false;
            } catch (err) {
              // VMs that cannot be evacuated (the vCenter VM, vCLS, every host entering at once)
              // keep a host out of maintenance mode; left on, it dies with the UPS.
              if (!opts.force || signal.aborted) throw err;
              why = `forced: maintenance mode not reached (${(err as Error).message})`;
            }
          } else if (!opts.force) {
            throw new Error(`${t.name} is not in maintenance mode: refusing to shut it down without force (enable "enter maintenance mode first" or "force")`);
          }
        }
        let end: 'done' | 'gone';
        try {
          end = await this.task('ShutdownHost_Task', ref, `<force>${force}</force>`, taskMs, signal, `shutting ${t.name} down`, { gone: true });
        } catch (err) {
          if (err instanceof VimFault && err.faultType === 'InvalidState') {
            throw new Error(`${t.name} refused to shut down (InvalidState): it is not in maintenance mode; enable "enter maintenance mode first" or "force"`);
          }
          throw err;
        }
        const gone = end === 'gone';
        return {
          method: forced ? 'forced' : 'graceful',
          after: 'off',
          detail: `${steps}${gone ? 'shutting down' : 'shut down'}${forced ? ` (${why})` : ''}${gone ? ': the server stopped answering after accepting it' : ''}`,
        };
      }
      case 'start': {
        const t0 = Date.now();
        if (state().connection !== 'connected') {
          const back = await this.watcher.until(ref, (q) => (q['runtime.connectionState'] === 'connected' ? q : undefined), opts.timeoutMs, signal);
          if (!back) throw new Error(`${t.name} is not connected (${state().connection}) and did not come back within ${formatSeconds(opts.timeoutMs)}`);
          p = back;
        }
        if (!state().maintenance) return { method: Date.now() - t0 > 1000 ? 'graceful' : 'already', after: 'on', detail: 'connected, not in maintenance mode' };
        await this.task('ExitMaintenanceMode_Task', ref, `<timeout>${Math.round(taskMs / 1000)}</timeout>`, taskMs, signal, `${t.name} exiting maintenance mode`);
        return { method: 'graceful', after: 'on', detail: `exited maintenance mode after ${formatSeconds(Date.now() - t0)}` };
      }
      default:
        throw new Error(`"${opts.operation}" is not a host operation`);
    }
  }

  async close(): Promise<void> {
    this.watcher.close();
  }
}

/** Used by tests and the admin endpoint: every VM and host the session sees. */
export async function listAll(session: VsphereSession, signal?: AbortSignal): Promise<{ vms: Target[]; hosts: Target[] }> {
  const inv = await readInventory(session, signal);
  return { vms: inv.vms.filter((v) => !v.template).map(vmTarget), hosts: inv.hosts.map((h) => hostTarget(h)) };
}

