/**
 * The Proxmox VE action driver behind the action contract.
 *
 * Guests (qemu VMs and lxc containers), found through /cluster/resources: shutdown = status/shutdown
 * with the timeout, its task polled on the guest's node; when it fails (timeout, paused VM) the
 * guest is stopped unless forcing is disabled. stop, start, and suspend (qemu: hibernate to disk,
 * so the state survives the host losing power; start resumes it). HA-managed guests: the API only
 * queues an HA request (hastop/hastart task that ends at once), so the guest's own status is
 * polled; optionally the HA resource state is set to `stopped` first, so HA does not start it
 * again elsewhere.
 * Nodes: shutdown = stopall, start = startall, suspend = suspendall (tasks), host-shutdown =
 * POST /nodes/{node}/status command=shutdown, then wait until the node is offline.
 */
import { ActOptions, ActOutcome, ActionDriver, Operation, PowerState, Target, abortableSleep, formatSeconds } from '../actions/contract';
import { ConnectError } from '../net/https-client';
import { ProxmoxClient, ProxmoxError, apiPath } from './client';
import { TaskFailed, waitTask } from './tasks';

export type ProxmoxKind = 'guest' | 'node';

export interface ProxmoxDriverOptions {
  kind: ProxmoxKind;
  /** How often task and guest status are read while waiting, ms (default 1000). */
  pollMs?: number;
  /** Filled by every listing: guests per node, for the action's time budget. */
  seen?: Map<string, number>;
}

/** A guest's hard stop (or start) after its graceful part, as stopall / startall run them. */
const GUEST_STEP_MS = 60_000;

/**
 * How long stopall / suspendall / startall on a node with `guests` guests may take. Proxmox runs
 * `max-workers` guests at once (datacenter.cfg, else the CPU threads up to 8), which the API
 * token may not read: one at a time is the bound, each getting its timeout plus the hard stop.
 */
export function nodeTaskBudgetMs(op: Operation, guests: number, timeoutMs: number): number {
  const per = op === 'start' ? GUEST_STEP_MS : timeoutMs + GUEST_STEP_MS;
  return Math.max(timeoutMs * 2, Math.max(1, guests) * per) + 60_000;
}

/** Extras the action node passes in ActOptions.extra. */
export interface ProxmoxExtra {
  /** HA-managed guests: set the HA resource state to `stopped` (instead of a shutdown request). */
  haStopFirst?: boolean;
  /** startall: start every guest, not only those with "start at boot". */
  startAllForce?: boolean;
}

/** One entry of GET /cluster/resources. */
export interface PveResource {
  id: string;
  type: string;
  node?: string;
  vmid?: number;
  name?: string;
  status?: string;
  hastate?: string;
  template?: number | boolean;
  tags?: string;
  pool?: string;
  lock?: string;
  uptime?: number;
}

interface GuestStatus {
  status: string;
  qmpstatus?: string;
  lock?: string;
  ha?: { managed?: number; state?: string };
  agent?: number | boolean;
}

const GUEST_OPS: Operation[] = ['shutdown', 'stop', 'start', 'suspend'];
const NODE_OPS: Operation[] = ['shutdown', 'start', 'suspend', 'host-shutdown'];

export function guestPower(r: Pick<PveResource, 'status' | 'lock'>): PowerState {
  if (r.status === 'running') return 'on';
  if (r.status === 'stopped') return r.lock === 'suspended' ? 'suspended' : 'off';
  return 'unknown';
}

function isGuest(r: PveResource): boolean {
  return (r.type === 'qemu' || r.type === 'lxc') && typeof r.vmid === 'number' && !r.template;
}

export function guestTarget(r: PveResource): Target {
  const pveTags = (r.tags ?? '').split(/[;,\s]+/).filter(Boolean);
  return {
    id: String(r.vmid),
    name: r.name || `${r.type}/${r.vmid}`,
    tags: [...pveTags, ...(r.pool ? [`pool:${r.pool}`] : []), ...(r.node ? [`node:${r.node}`] : []), `type:${r.type}`, ...(r.hastate ? ['ha'] : [])],
    power: guestPower(r),
    info: { kind: r.type, vmid: r.vmid ?? null, node: r.node ?? null, status: r.status ?? null, ha: r.hastate ?? null, pool: r.pool ?? null, lock: r.lock ?? null, uptimeSeconds: r.uptime ?? null },
  };
}

/** A node as a target: its power depends on the operation (are there guests left to stop or start?). */
export function nodeTarget(n: PveResource, guests: PveResource[], op?: Operation): Target {
  const mine = guests.filter((g) => g.node === n.node);
  const running = mine.filter((g) => g.status === 'running').length;
  const stopped = mine.length - running;
  let power: PowerState;
  if (n.status !== 'online') power = op === 'host-shutdown' ? 'off' : 'unreachable';
  else if (op === 'shutdown' || op === 'suspend') power = running ? 'on' : 'off';
  else if (op === 'start') power = stopped ? 'off' : 'on';
  else power = 'on';
  return { id: n.node!, name: n.node!, tags: [], power, info: { kind: 'node', status: n.status ?? null, guests: mine.length, running, uptimeSeconds: n.uptime ?? null } };
}

export class ProxmoxDriver implements ActionDriver {
  readonly repeatable = true;
  private guests = new Map<string, PveResource>();
  private nodes = new Map<string, PveResource>();
  private readonly pollMs: number;

  constructor(
    private readonly client: ProxmoxClient,
    private readonly o: ProxmoxDriverOptions,
  ) {
    this.pollMs = o.pollMs ?? 1000;
  }

  /** What the action talks to, for "waiting for pve1 to come back" (lib/actions/run.ts). */
  get label(): string {
    return this.client.label;
  }

  async list(signal: AbortSignal, operation?: Operation): Promise<Target[]> {
    const all = await this.client.request<PveResource[]>('GET', '/cluster/resources', {}, signal);
    const guests = all.filter(isGuest).sort((a, b) => (a.vmid ?? 0) - (b.vmid ?? 0));
    const nodes = all.filter((r) => r.type === 'node' && r.node).sort((a, b) => a.node!.localeCompare(b.node!));
    this.guests = new Map(guests.map((g) => [String(g.vmid), g]));
    this.nodes = new Map(nodes.map((n) => [n.node!, n]));
    for (const n of nodes) this.o.seen?.set(n.node!, guests.filter((g) => g.node === n.node).length);
    return this.o.kind === 'guest' ? guests.map(guestTarget) : nodes.map((n) => nodeTarget(n, guests, operation));
  }

  private supported(op: Operation): void {
    const ops = this.o.kind === 'guest' ? GUEST_OPS : NODE_OPS;
    if (!ops.includes(op)) {
      throw new Error(`"${op}" does not apply to Proxmox ${this.o.kind === 'guest' ? 'guests' : 'nodes'} (operations: ${ops.join(', ')})`);
    }
  }

  private guest(t: Target): PveResource {
    const g = this.guests.get(t.id);
    if (!g) throw new Error(`guest ${t.id} is not in the listing`);
    return g;
  }

  private base(g: PveResource): string {
    return apiPath(`/nodes/{node}/${g.type}/{vmid}`, { node: g.node!, vmid: g.vmid! });
  }

  private status(g: PveResource, signal: AbortSignal): Promise<GuestStatus> {
    return this.client.request<GuestStatus>('GET', `${this.base(g)}/status/current`, {}, signal);
  }

  private async missing(path: string, privileges: string[], signal: AbortSignal): Promise<string[]> {
    const perms = await this.client.request<Record<string, Record<string, number>>>('GET', '/access/permissions', { path }, signal);
    const have = perms?.[path] ?? {};
    return privileges.filter((p) => !(p in have));
  }

  /** Poll the guest's status until `want` (HA guests: the API only queued the request). */
  private async untilStatus(g: PveResource, want: 'stopped' | 'running', timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    const t0 = Date.now();
    for (;;) {
      const st = await this.status(g, signal);
      if (st.status === want) return true;
      const left = timeoutMs - (Date.now() - t0);
      if (left <= 0) return false;
      await abortableSleep(Math.min(this.pollMs, left), signal);
    }
  }

  async check(target: Target, opts: ActOptions, signal: AbortSignal): Promise<string> {
    this.supported(opts.operation);
    const x = (opts.extra ?? {}) as ProxmoxExtra;
    const secs = formatSeconds(opts.timeoutMs);
    if (this.o.kind === 'node') {
      const n = this.nodes.get(target.id);
      if (opts.operation === 'host-shutdown') {
        const miss = await this.missing(`/nodes/${target.id}`, ['Sys.PowerMgmt'], signal);
        if (miss.length) throw new Error(`the API token ${this.client.settings.tokenId} lacks Sys.PowerMgmt on /nodes/${target.id}: it cannot shut the node down`);
        return n?.status === 'online' ? 'would shut the node down' : `node is ${n?.status ?? 'unknown'}`;
      }
      const miss = await this.missing('/', ['VM.PowerMgmt'], signal);
      if (miss.length) throw new Error(`the API token ${this.client.settings.tokenId} lacks VM.PowerMgmt on /: stopall/startall need it there`);
      const info = target.info ?? {};
      switch (opts.operation) {
        case 'shutdown':
          return `would run stopall (${info.running} running guests, ${secs} per guest, then ${opts.force ? 'hard stop' : 'give up'}; HA-managed guests are skipped by stopall)`;
        case 'start':
          return `would run startall (${x.startAllForce ? 'every guest' : 'guests with start at boot'})`;
        default:
          return 'would run suspendall';
      }
    }
    const g = this.guest(target);
    const privs = ['VM.PowerMgmt', ...(opts.operation === 'suspend' ? ['VM.Config.Disk'] : [])];
    const miss = await this.missing(`/vms/${g.vmid}`, privs, signal);
    if (miss.length) throw new Error(`the API token ${this.client.settings.tokenId} lacks ${miss.join(', ')} on /vms/${g.vmid}`);
    const st = await this.status(g, signal);
    const ha = st.ha?.managed === 1;
    if (ha && x.haStopFirst && opts.operation === 'shutdown') {
      const m2 = await this.missing('/', ['Sys.Console'], signal);
      if (m2.length) throw new Error(`the API token ${this.client.settings.tokenId} lacks Sys.Console on /: it cannot set the HA state of ${target.name}`);
    }
    const how = g.type === 'qemu' ? (st.agent ? ' through the guest agent' : ' by ACPI') : '';
    switch (opts.operation) {
      case 'shutdown':
        if (st.status === 'stopped') return 'already off';
        if (ha) return `HA-managed: would ${x.haStopFirst ? 'set the HA state to stopped' : 'request an HA shutdown'} and watch the guest for up to ${secs}${opts.force ? ', then stop it' : ''}`;
        if (st.qmpstatus === 'paused') {
          if (!opts.force) throw new Error(`${target.name} is paused: it cannot shut down and forcing is disabled`);
          return 'paused: would stop it';
        }
        return `would shut down${how}, wait up to ${secs}, then ${opts.force ? 'stop it' : 'give up'}`;
      case 'stop':
        return st.status === 'stopped' ? 'already off' : 'would stop';
      case 'start':
        return st.status === 'running' ? 'already on' : st.lock === 'suspended' ? 'would resume from the saved state' : 'would start';
      case 'suspend':
        if (g.type !== 'qemu') throw new Error(`${target.name} is a container: only qemu VMs can be suspended`);
        return st.status === 'stopped' ? 'already off' : 'would suspend to disk (hibernate)';
      default:
        return `would ${opts.operation}`;
    }
  }

  async act(target: Target, opts: ActOptions, signal: AbortSignal): Promise<ActOutcome> {
    this.supported(opts.operation);
    return this.o.kind === 'guest' ? this.actGuest(target, opts, signal) : this.actNode(target, opts, signal);
  }

  private async actGuest(t: Target, opts: ActOptions, signal: AbortSignal): Promise<ActOutcome> {
    const g = this.guest(t);
    const x = (opts.extra ?? {}) as ProxmoxExtra;
    const st = await this.status(g, signal);
    const ha = st.ha?.managed === 1;
    const base = this.base(g);
    const secs = Math.max(1, Math.ceil(opts.timeoutMs / 1000));
    const stepMs = 60_000 + 2 * this.client.settings.timeoutMs;
    const sid = `${g.type === 'qemu' ? 'vm' : 'ct'}:${g.vmid}`;
    const since = (t0: number) => formatSeconds(Date.now() - t0);

    /** Hard stop: the task (or, for HA, the guest's status) until stopped. */
    const stop = async (): Promise<void> => {
      const upid = await this.client.request<string>('POST', `${base}/status/stop`, {}, signal);
      if (ha) {
        await waitTask(this.client, upid, stepMs, signal, this.pollMs);
        if (!(await this.untilStatus(g, 'stopped', stepMs, signal))) throw new Error(`${t.name}: HA did not stop it within ${formatSeconds(stepMs)}`);
      } else {
        await waitTask(this.client, upid, stepMs, signal, this.pollMs);
      }
    };

    switch (opts.operation) {
      case 'shutdown': {
        if (st.status === 'stopped') return { method: 'already', after: st.lock === 'suspended' ? 'suspended' : 'off', detail: 'already off' };
        const t0 = Date.now();
        if (ha) {
          // The API only queues an HA request: watch the guest itself.
          if (x.haStopFirst) {
            await this.client.request('PUT', apiPath('/cluster/ha/resources/{sid}', { sid }), { state: 'stopped' }, signal);
          } else {
            const upid = await this.client.request<string>('POST', `${base}/status/shutdown`, { timeout: secs }, signal);
            await waitTask(this.client, upid, stepMs, signal, this.pollMs);
          }
          const how = x.haStopFirst ? 'HA state set to stopped' : 'HA shutdown';
          if (await this.untilStatus(g, 'stopped', opts.timeoutMs, signal)) return { method: 'graceful', after: 'off', detail: `${how}: off after ${since(t0)}` };
          if (!opts.force) throw new Error(`${t.name}: still running ${formatSeconds(opts.timeoutMs)} after the ${how}, and forcing is disabled`);
          await stop();
          return { method: 'forced', after: 'off', detail: `${how}: still running after ${formatSeconds(opts.timeoutMs)}, stopped` };
        }
        if (st.qmpstatus === 'paused') {
          if (!opts.force) throw new Error(`${t.name} is paused: it cannot shut down and forcing is disabled`);
          await stop();
          return { method: 'forced', after: 'off', detail: 'paused: stopped' };
        }
        const upid = await this.client.request<string>('POST', `${base}/status/shutdown`, { timeout: secs, forceStop: false }, signal);
        try {
          await waitTask(this.client, upid, opts.timeoutMs + stepMs, signal, this.pollMs);
          return { method: 'graceful', after: 'off', detail: `shut down after ${since(t0)}` };
        } catch (err) {
          if (!(err instanceof TaskFailed)) throw err;
          if (!opts.force) throw new Error(`${t.name}: shutdown failed (${err.exitstatus.trim()}) and forcing is disabled`);
          await stop();
          return { method: 'forced', after: 'off', detail: `shutdown failed (${err.exitstatus.trim()}): stopped` };
        }
      }
      case 'stop':
        if (st.status === 'stopped') return { method: 'already', after: 'off', detail: 'already off' };
        await stop();
        return { method: 'forced', after: 'off', detail: 'stopped' };
      case 'start': {
        if (st.status === 'running') return { method: 'already', after: 'on', detail: 'already on' };
        const t0 = Date.now();
        const resumed = st.lock === 'suspended';
        const upid = await this.client.request<string>('POST', `${base}/status/start`, {}, signal);
        await waitTask(this.client, upid, opts.timeoutMs + stepMs, signal, this.pollMs);
        if (ha && !(await this.untilStatus(g, 'running', opts.timeoutMs, signal))) throw new Error(`${t.name}: HA did not start it within ${formatSeconds(opts.timeoutMs)}`);
        return { method: 'graceful', after: 'on', detail: `${resumed ? 'resumed' : 'started'} after ${since(t0)}${ha ? ' (HA)' : ''}` };
      }
      case 'suspend': {
        if (g.type !== 'qemu') throw new Error(`${t.name} is a container: only qemu VMs can be suspended`);
        if (st.status === 'stopped') return { method: 'already', after: st.lock === 'suspended' ? 'suspended' : 'off', detail: st.lock === 'suspended' ? 'already suspended' : 'off: nothing to suspend' };
        const upid = await this.client.request<string>('POST', `${base}/status/suspend`, { todisk: true }, signal);
        await waitTask(this.client, upid, opts.timeoutMs + stepMs, signal, this.pollMs);
        return { method: 'graceful', after: 'suspended', detail: 'suspended to disk' };
      }
      default:
        throw new Error(`"${opts.operation}" is not a guest operation`);
    }
  }

  private async actNode(t: Target, opts: ActOptions, signal: AbortSignal): Promise<ActOutcome> {
    const x = (opts.extra ?? {}) as ProxmoxExtra;
    const node = t.id;
    const secs = Math.max(0, Math.min(7200, Math.ceil(opts.timeoutMs / 1000)));
    const t0 = Date.now();
    const since = () => formatSeconds(Date.now() - t0);
    const task = async (what: string, params: Record<string, string | number | boolean>, limitMs: number) => {
      const upid = await this.client.request<string>('POST', apiPath(`/nodes/{node}/${what}`, { node }), params, signal);
      const end = await waitTask(this.client, upid, limitMs, signal, this.pollMs);
      return end.exitstatus === 'OK' ? '' : ` (${end.exitstatus})`;
    };
    const info = t.info ?? {};
    const running = typeof info.running === 'number' ? info.running : 0;
    const stopped = (typeof info.guests === 'number' ? info.guests : 0) - running;
    const budget = nodeTaskBudgetMs(opts.operation, opts.operation === 'start' ? stopped : running, opts.timeoutMs);
    switch (opts.operation) {
      case 'shutdown': {
        const warn = await task('stopall', { timeout: secs, 'force-stop': opts.force }, budget);
        return { method: 'graceful', after: 'off', detail: `stopall done after ${since()}${warn}` };
      }
      case 'start': {
        const warn = await task('startall', x.startAllForce ? { force: true } : {}, budget);
        return { method: 'graceful', after: 'on', detail: `startall done after ${since()}${warn}` };
      }
      case 'suspend': {
        const warn = await task('suspendall', {}, budget);
        return { method: 'graceful', after: 'suspended', detail: `suspendall done after ${since()}${warn}` };
      }
      case 'host-shutdown': {
        if (this.nodes.get(node)?.status !== 'online' && t.power === 'off') return { method: 'already', after: 'off', detail: 'node already offline' };
        await this.client.request('POST', apiPath('/nodes/{node}/status', { node }), { command: 'shutdown' }, signal);
        // Then watch it go: offline in the cluster, or the API itself gone (single node).
        for (;;) {
          try {
            const nodes = await this.client.request<PveResource[]>('GET', '/cluster/resources', { type: 'node' }, signal);
            const n = nodes.find((r) => r.node === node);
            if (!n || n.status !== 'online') return { method: 'graceful', after: 'off', detail: `node shut down: offline after ${since()}` };
          } catch (err) {
            if (err instanceof ConnectError || (err instanceof ProxmoxError && err.status >= 500)) {
              return { method: 'graceful', after: 'off', detail: `node shutting down: the API stopped answering after ${since()}` };
            }
            throw err;
          }
          if (Date.now() - t0 > opts.timeoutMs) throw new Error(`${node}: shutdown was accepted, but the node is still online after ${formatSeconds(opts.timeoutMs)}`);
          await abortableSleep(this.pollMs, signal);
        }
      }
      default:
        throw new Error(`"${opts.operation}" is not a node operation`);
    }
  }

  async close(): Promise<void> {
    /* the client is shared by the connection config node */
  }
}

/** Every guest and node the token sees (the editor's picker). */
export async function listProxmox(client: ProxmoxClient, signal?: AbortSignal): Promise<{ guests: Target[]; nodes: Target[] }> {
  const all = await client.request<PveResource[]>('GET', '/cluster/resources', {}, signal);
  const guests = all.filter(isGuest).sort((a, b) => (a.vmid ?? 0) - (b.vmid ?? 0));
  return { guests: guests.map(guestTarget), nodes: all.filter((r) => r.type === 'node' && r.node).map((n) => nodeTarget(n, guests)) };
}
