/**
 * The SSH action: one host, one command per direction (a preset or the user's own), the exit code
 * checked, optionally a wait until the host's SSH port stops answering, and on startup a wait until
 * SSH login works again (with Wake-on-LAN if the host needs waking). A one-shot command is
 * not repeatable: after a restart mid-command it is reported, not sent again.
 */
import { ActOptions, ActOutcome, ActionDriver, Operation, Target, abortableSleep, formatSeconds } from '../actions/contract';
import { SshError, SshSession } from './client';
import { HeldSession, SshHostHandle } from './shared';
import { WakeTarget, sendMagicPacket } from './wol';

/** What `ActOptions.extra` carries for the SSH action. */
export interface SshCommandExtra {
  /** The command line for the remote shell; empty on startup when the action only waits for the host. */
  command: string;
  /** The command powers the host off: a dropped connection then counts as success. */
  powersOff: boolean;
  /** Wait until the SSH port stops answering. */
  waitDown: boolean;
  waitDownTimeoutMs: number;
  /** Startup: wait until SSH login works (the host is back) before the command and before the next phase. */
  waitUp?: boolean;
  waitUpTimeoutMs?: number;
  /** Startup: wake the host with a magic packet first, and again while waiting for it. */
  wake?: WakeTarget;
}

export interface SshDriverOptions {
  /** An unreachable host counts as already down (set when "wait until down" is on). */
  unreachableIsDown: boolean;
  /** Startup waits for the host (or wakes it): an unreachable host is "off", to be brought up. */
  startupWaits?: boolean;
  /** Interval of the "is it down yet" probe. */
  pollMs?: number;
  /** Sends the magic packet (tests replace it); default sendMagicPacket. */
  sendWake?: (t: WakeTarget) => Promise<void>;
}

/** How much of stderr a failure message quotes. */
const STDERR_TAIL = 400;

export function commandText(cmd: string, max = 120): string {
  const one = cmd.replace(/\s*\n\s*/g, ' ⏎ ');
  return one.length > max ? one.slice(0, max - 1) + '…' : one;
}

function tail(s: string, max = STDERR_TAIL): string {
  const t = s.trim();
  return t.length > max ? '…' + t.slice(t.length - max) : t;
}

export class SshActionDriver implements ActionDriver {
  readonly repeatable = false;
  private readonly held: HeldSession;
  /** Startup: how many login attempts and magic packets so far. */
  private attempts = 0;
  private wakes = 0;
  private wakeError?: string;

  constructor(private readonly host: SshHostHandle, private readonly opts: SshDriverOptions) {
    this.held = new HeldSession(host);
  }

  /** The host's name, for "waiting for kvm1 to come back" (lib/actions/run.ts). */
  get label(): string {
    return this.host.label;
  }

  private baseTarget(): Omit<Target, 'power'> {
    return {
      id: `${this.host.host}:${this.host.port}`,
      name: this.host.label,
      info: { host: this.host.host, port: this.host.port, user: this.host.username },
    };
  }

  async list(signal: AbortSignal, operation?: Operation): Promise<Target[]> {
    let session: SshSession;
    try {
      session = await this.held.session(signal);
    } catch (err) {
      const down = operation === 'start' ? this.opts.startupWaits === true : this.opts.unreachableIsDown;
      if (down && err instanceof SshError && err.kind === 'unreachable') {
        const base = this.baseTarget();
        return [{ ...base, power: 'off', info: { ...base.info, reachable: false, error: err.message } }];
      }
      throw err;
    }
    const base = this.baseTarget();
    // Connected means running, but what the command does to it is not known before acting.
    return [{ ...base, power: 'unknown', info: { ...base.info, reachable: true, hostKey: session.hostKey.fingerprint } }];
  }

  private extra(opts: ActOptions): SshCommandExtra {
    const e = opts.extra as Partial<SshCommandExtra> | undefined;
    const startupWait = opts.operation === 'start' && (e?.waitUp === true || !!e?.wake);
    if (!e?.command && !startupWait) throw new Error(`the SSH action has no command for "${opts.operation}" (it runs its shutdown command on "shutdown" and its startup command on "startup")`);
    return {
      command: e?.command ?? '',
      powersOff: e?.powersOff === true,
      waitDown: e?.waitDown === true,
      waitDownTimeoutMs: e?.waitDownTimeoutMs ?? 180_000,
      waitUp: e?.waitUp === true,
      waitUpTimeoutMs: e?.waitUpTimeoutMs ?? 600_000,
      wake: e?.wake,
    };
  }

  private wakeText(w: WakeTarget): string {
    return `a Wake-on-LAN packet to ${w.mac} via ${w.address}:${w.port}`;
  }

  async check(target: Target, opts: ActOptions): Promise<string> {
    const e = this.extra(opts);
    const who = `${this.host.username}@${this.host.host}:${this.host.port}`;
    if (opts.operation === 'start') {
      const steps: string[] = [];
      if (e.wake) steps.push(`would send ${this.wakeText(e.wake)} (none sent in a dry-run)`);
      if (e.waitUp) {
        steps.push(
          target.power === 'off'
            ? `${this.host.label} does not answer on port ${this.host.port} now: would wait until SSH login works (up to ${formatSeconds(e.waitUpTimeoutMs!)})`
            : `${this.host.label} is up (SSH login works): nothing to wait for`,
        );
      }
      if (e.command) steps.push(`would run "${commandText(e.command)}" as ${who}`);
      return steps.join('; then ');
    }
    if (target.power === 'off') return `${this.host.label} does not answer on port ${this.host.port}: counts as already down`;
    const wait = e.waitDown ? `, then wait until port ${this.host.port} stops answering (up to ${formatSeconds(e.waitDownTimeoutMs)})` : '';
    return `would run "${commandText(e.command)}" as ${who}${wait}`;
  }

  /**
   * Startup: get the host within reach (wake it, log in) without running anything on it, so that a
   * restart of Node-RED meanwhile does not count as an interrupted one-shot command.
   */
  async reach(_target: Target, opts: ActOptions, signal: AbortSignal): Promise<void> {
    if (opts.operation !== 'start') return;
    const e = this.extra(opts);
    if (!e.waitUp && !e.command) return; // only waking: sending the packet is the action itself
    await this.bringUp(e, signal);
  }

  /**
   * Wake the host (each attempt, so a packet lost while the switch was still booting is made good),
   * then log in. A host that does not answer yet throws SshError 'unreachable', which runAction
   * retries with backoff until "wait at most" (its reachableWaitMs) has passed.
   */
  private async bringUp(e: SshCommandExtra, signal: AbortSignal): Promise<SshSession> {
    const open = this.held.open;
    if (open) return open;
    this.attempts++;
    if (e.wake) {
      try {
        await (this.opts.sendWake ?? sendMagicPacket)(e.wake);
        this.wakes++;
        this.wakeError = undefined;
      } catch (err) {
        this.wakeError = (err as Error).message;
      }
    }
    try {
      return await this.held.session(signal);
    } catch (err) {
      if (!(err instanceof SshError && err.kind === 'unreachable') || !e.wake) throw err;
      // Said when the wait ends without the host: whether the packets went out.
      throw new SshError('unreachable', `${err.message}; ${this.wakeError ?? `${this.wakes} Wake-on-LAN packet${this.wakes === 1 ? '' : 's'} sent`}`);
    }
  }

  private async start(target: Target, e: SshCommandExtra, timeoutMs: number, signal: AbortSignal): Promise<ActOutcome> {
    const woke = () => (e.wake ? (this.wakeError ? `; ${this.wakeError}` : `; Wake-on-LAN sent${this.wakes > 1 ? ` ${this.wakes}×` : ''}`) : '');
    if (!e.waitUp && !e.command) {
      // Only waking: nothing to log in for.
      await (this.opts.sendWake ?? sendMagicPacket)(e.wake!);
      return { method: 'graceful', after: 'unknown', detail: `sent ${this.wakeText(e.wake!)}` };
    }
    // Reached already (reach); logs in again if the connection dropped since.
    const session = await this.bringUp(e, signal);
    const came = this.attempts > 1 || target.power === 'off';
    const up = e.waitUp ? (came ? `${this.host.label} is back: SSH login works` : `${this.host.label} is up: SSH login works`) : '';
    if (!e.command) return { method: came ? 'graceful' : 'already', after: 'on', detail: up + woke() };
    const out = await this.run(session, target, e, timeoutMs, signal);
    return { ...out, detail: (up ? `${up}; ` : '') + out.detail + woke() };
  }

  async act(target: Target, opts: ActOptions, signal: AbortSignal): Promise<ActOutcome> {
    const e = this.extra(opts);
    if (opts.operation === 'start') return this.start(target, e, opts.timeoutMs, signal);
    const done = await this.run(await this.held.session(signal), target, e, opts.timeoutMs, signal);
    if (!e.waitDown) return done;
    // Let go of the connection so that nothing of ours keeps the host's sshd busy.
    this.held.release();
    const down = await this.waitDown(e, signal);
    return { method: 'graceful', after: 'off', detail: `${done.detail}; port ${this.host.port} closed after ${formatSeconds(down)}` };
  }

  /** Run the command on the leased connection and judge its outcome. */
  private async run(session: SshSession, target: Target, e: SshCommandExtra, timeoutMs: number, signal: AbortSignal): Promise<ActOutcome> {
    const shown = commandText(e.command);
    let result;
    try {
      result = await session.exec(e.command, { timeoutMs, signal, maxOutput: 16 * 1024 });
    } catch (err) {
      if (err instanceof SshError && err.kind === 'timeout') throw new Error(`"${shown}" on ${target.name} did not finish within ${formatSeconds(timeoutMs)}`);
      throw err;
    }
    let how: string;
    if (result.code === 0) {
      how = `"${shown}" exited 0`;
    } else if (result.code === null && e.powersOff) {
      // The host cut the connection (or killed the session) while powering off: that is what was asked.
      how = result.signal ? `"${shown}" ended by signal ${result.signal} as the host went down` : `"${shown}" sent; the host closed the connection`;
    } else if (result.code === null) {
      throw new Error(
        result.signal
          ? `"${shown}" on ${target.name} was ended by signal ${result.signal}${result.stderr.trim() ? `: ${tail(result.stderr)}` : ''}`
          : `the connection to ${target.name} closed before "${shown}" finished`,
      );
    } else {
      const why = tail(result.stderr) || tail(result.stdout);
      throw new Error(`"${shown}" on ${target.name} failed with exit code ${result.code}${why ? `: ${why}` : ''}`);
    }
    return { method: 'graceful', after: e.powersOff ? 'unknown' : 'on', detail: how };
  }

  /** Poll the SSH port until it stops answering twice in a row; resolves with the time it took. */
  private async waitDown(e: SshCommandExtra, signal: AbortSignal): Promise<number> {
    const t0 = Date.now();
    const pollMs = this.opts.pollMs ?? 1000;
    let misses = 0;
    for (;;) {
      const r = await this.host.probe(Math.min(2000, Math.max(500, pollMs * 2)), signal);
      if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('aborted');
      misses = r === 'open' ? 0 : misses + 1;
      if (misses >= 2) return Date.now() - t0;
      const left = e.waitDownTimeoutMs - (Date.now() - t0);
      if (left <= 0) break;
      await abortableSleep(Math.min(pollMs, left), signal);
    }
    throw new Error(`${this.host.label} still answers on port ${this.host.port} ${formatSeconds(e.waitDownTimeoutMs)} after "${commandText(e.command)}"`);
  }

  async close(): Promise<void> {
    this.held.release();
  }
}
