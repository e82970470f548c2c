/**
 * The libvirt action: domains listed and acted on with virsh (locally or over SSH). Shutdown asks
 * the guest (ACPI, guest agent, or the hypervisor's default), polls `domstate` until "shut off",
 * and destroys the domain after the timeout unless forcing is disabled. virsh shutdown/start/destroy
 * are safe to repeat, so a run interrupted by a restart acts on a domain again.
 */
import { ActOptions, ActOutcome, ActionDriver, PowerState, Target, formatSeconds, gracefulThenForce } from '../actions/contract';
import { Virsh, VirshError, VirshResult } from './virsh';

export const SHUTDOWN_MODES = ['', 'acpi', 'agent'] as const;
export type ShutdownMode = (typeof SHUTDOWN_MODES)[number];

export interface LibvirtDriverOptions {
  /** Bound for each virsh call. */
  commandTimeoutMs: number;
  /** Interval of the domstate poll while waiting for a shutdown. */
  pollMs: number;
}

/** What `ActOptions.extra` carries for libvirt. */
export interface LibvirtExtra {
  mode?: ShutdownMode;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** virsh's domain state words (LC_ALL=C) as a power state. */
export function powerOf(state: string): PowerState {
  switch (state.trim().toLowerCase()) {
    case 'running':
    case 'idle':
    case 'blocked':
    case 'in shutdown':
    case 'dying':
      return 'on';
    case 'paused':
    case 'pmsuspended':
      return 'suspended';
    case 'shut off':
    case 'crashed':
      return 'off';
    default:
      return 'unknown';
  }
}

/** `virsh list --all --uuid --name` lines ("<uuid> <name>"); older virsh prints only names. */
export function parseDomainList(stdout: string): Array<{ id: string; name: string }> {
  const out: Array<{ id: string; name: string }> = [];
  for (const line of stdout.split('\n')) {
    if (!line.trim()) continue;
    const m = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}) (.+)$/i.exec(line);
    if (m) out.push({ id: m[1].toLowerCase(), name: m[2] });
    else out.push({ id: line, name: line });
  }
  return out;
}

function words(stdout: string): Set<string> {
  return new Set(stdout.split('\n').filter((l) => l.trim()).map((l) => l.toLowerCase()));
}

export class LibvirtDriver implements ActionDriver {
  readonly repeatable = true;

  constructor(private readonly virsh: Virsh, private readonly opts: LibvirtDriverOptions) {}

  /** What the action connects to, for "waiting for kvm1 to come back" (lib/actions/run.ts). */
  get label(): string {
    return this.virsh.label ?? this.virsh.where;
  }

  /** Run virsh and fail with virsh's own message on a non-zero status. */
  private async ok(args: string[], signal: AbortSignal): Promise<VirshResult> {
    const r = await this.virsh.run(args, this.opts.commandTimeoutMs, signal);
    if (r.code !== 0) throw new VirshError(args, r);
    return r;
  }

  /**
   * How a domain is named on the virsh command line: by name, unless the name could be read as an
   * id or a UUID (virsh tries those first), then by its UUID.
   */
  private dom(t: Target): string {
    if ((/^\d+$/.test(t.name) || UUID_RE.test(t.name)) && UUID_RE.test(t.id)) return t.id;
    return t.name;
  }

  async list(signal: AbortSignal): Promise<Target[]> {
    const all = parseDomainList((await this.ok(['list', '--all', '--uuid', '--name'], signal)).stdout);
    const byUuid = all.every((d) => UUID_RE.test(d.id));
    const key = byUuid ? '--uuid' : '--name';
    // Three listings by state instead of one domstate per domain; the rest is asked one by one.
    const [running, paused, shutoff] = await Promise.all(
      ['--state-running', '--state-paused', '--state-shutoff'].map(async (f) => words((await this.ok(['list', key, f], signal)).stdout)),
    );
    return Promise.all(
      all.map(async (d) => {
        const k = (byUuid ? d.id : d.name).toLowerCase();
        let power: PowerState;
        let state: string;
        if (running.has(k)) [power, state] = ['on', 'running'];
        else if (paused.has(k)) [power, state] = ['suspended', 'paused'];
        else if (shutoff.has(k)) [power, state] = ['off', 'shut off'];
        else {
          state = await this.domstate(byUuid ? d.id : d.name, signal);
          power = powerOf(state);
        }
        return { id: d.id, name: d.name, power, info: { state } };
      }),
    );
  }

  private async domstate(dom: string, signal: AbortSignal): Promise<string> {
    const r = await this.ok(['domstate', '--domain', dom], signal);
    return r.stdout.split('\n').map((l) => l.trim()).find(Boolean) ?? 'unknown';
  }

  private async power(t: Target, signal: AbortSignal): Promise<PowerState> {
    return powerOf(await this.domstate(this.dom(t), signal));
  }

  private mode(opts: ActOptions): ShutdownMode {
    const m = (opts.extra as LibvirtExtra | undefined)?.mode ?? '';
    return (SHUTDOWN_MODES as readonly string[]).includes(m) ? m : '';
  }

  private shutdownWords(mode: ShutdownMode): string {
    return mode === 'acpi' ? 'ACPI shutdown' : mode === 'agent' ? 'guest-agent shutdown' : 'shutdown';
  }

  async check(target: Target, opts: ActOptions, signal: AbortSignal): Promise<string> {
    const dom = this.dom(target);
    const power = await this.power(target, signal);
    const name = `"${target.name}" (${power})`;
    switch (opts.operation) {
      case 'shutdown': {
        const mode = this.mode(opts);
        if (mode === 'agent' && power === 'on') {
          // domtime goes through the guest agent and changes nothing: proves the agent answers.
          const r = await this.virsh.run(['domtime', '--domain', dom], this.opts.commandTimeoutMs, signal);
          if (r.code !== 0) throw new Error(`guest agent of "${target.name}" does not answer: ${new VirshError(['domtime'], r).message}`);
        }
        const then = opts.force ? `then destroy it` : `then fail (forcing is disabled)`;
        return `would run virsh shutdown${mode ? ` --mode ${mode}` : ''} on ${name}, wait up to ${formatSeconds(opts.timeoutMs)} for "shut off", ${then}`;
      }
      case 'start':
        return power === 'suspended' ? `would resume ${name}` : `would start ${name}`;
      case 'stop':
        return `would destroy (power off) ${name}`;
      case 'suspend':
        if (power === 'off') throw new Error(`"${target.name}" is shut off and cannot be suspended`);
        return `would suspend ${name}`;
      default:
        throw new Error(`libvirt cannot "${opts.operation}" a domain (shutdown, start, stop, suspend)`);
    }
  }

  async act(target: Target, opts: ActOptions, signal: AbortSignal): Promise<ActOutcome> {
    const dom = this.dom(target);
    const now = await this.power(target, signal);
    switch (opts.operation) {
      case 'shutdown': {
        if (now === 'off') return { method: 'already', after: 'off', detail: 'already shut off' };
        const mode = this.mode(opts);
        return gracefulThenForce({
          graceful: async () => {
            try {
              await this.ok(['shutdown', ...(mode ? ['--mode', mode] : []), '--domain', dom], signal);
            } catch (err) {
              // It may have gone off between the check and the request.
              if ((await this.power(target, signal)) !== 'off') throw err;
            }
          },
          isOff: async () => (await this.power(target, signal)) === 'off',
          force: opts.force ? () => this.destroy(target, signal) : null,
          timeoutMs: opts.timeoutMs,
          pollMs: this.opts.pollMs,
          signal,
          what: this.shutdownWords(mode),
        });
      }
      case 'stop':
        if (now === 'off') return { method: 'already', after: 'off', detail: 'already shut off' };
        await this.destroy(target, signal);
        return { method: 'forced', after: await this.power(target, signal), detail: 'destroyed (powered off)' };
      case 'start': {
        if (now === 'on') return { method: 'already', after: 'on', detail: 'already running' };
        const resume = now === 'suspended';
        await this.ok([resume ? 'resume' : 'start', '--domain', dom], signal);
        const after = await this.power(target, signal);
        if (after !== 'on') throw new Error(`"${target.name}" is ${after} after virsh ${resume ? 'resume' : 'start'}`);
        return { method: 'graceful', after, detail: resume ? 'resumed' : 'started' };
      }
      case 'suspend': {
        if (now === 'suspended') return { method: 'already', after: 'suspended', detail: 'already paused' };
        if (now === 'off') throw new Error(`"${target.name}" is shut off and cannot be suspended`);
        await this.ok(['suspend', '--domain', dom], signal);
        return { method: 'graceful', after: await this.power(target, signal), detail: 'suspended (paused)' };
      }
      default:
        throw new Error(`libvirt cannot "${opts.operation}" a domain (shutdown, start, stop, suspend)`);
    }
  }

  private async destroy(t: Target, signal: AbortSignal): Promise<void> {
    try {
      await this.ok(['destroy', '--domain', this.dom(t)], signal);
    } catch (err) {
      if ((await this.power(t, signal)) !== 'off') throw err;
    }
  }

  async close(): Promise<void> {
    await this.virsh.close();
  }
}
