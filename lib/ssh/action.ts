/**
 * The SSH action: one host, one command per direction (a preset or the user's own), the exit code
 * checked, and optionally a wait until the host's SSH port stops answering. A one-shot command is
 * not repeatable: after a restart mid-command it is reported, not sent again.
 */
import { ActOptions, ActOutcome, ActionDriver, Target, abortableSleep, formatSeconds } from '../actions/contract';
import { SshError } from './client';
import { SshHostHandle, SshLease } from './shared';

/** What `ActOptions.extra` carries for the SSH action. */
export interface SshCommandExtra {
  /** The command line for the remote shell. */
  command: string;
  /** The command powers the host off: a dropped connection then counts as success. */
  powersOff: boolean;
  /** Wait until the SSH port stops answering. */
  waitDown: boolean;
  waitDownTimeoutMs: number;
}

export interface SshDriverOptions {
  /** An unreachable host counts as already down (set when "wait until down" is on). */
  unreachableIsDown: boolean;
  /** Interval of the "is it down yet" probe. */
  pollMs?: number;
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
  private lease?: SshLease;

  constructor(private readonly host: SshHostHandle, private readonly opts: SshDriverOptions) {}

  private baseTarget(): Omit<Target, 'power'> {
    return {
      id: `${this.host.host}:${this.host.port}`,
      name: this.host.label,
      info: { host: this.host.host, port: this.host.port, user: this.host.username },
    };
  }

  async list(signal: AbortSignal): Promise<Target[]> {
    try {
      this.lease ??= await this.host.acquire(signal);
    } catch (err) {
      if (this.opts.unreachableIsDown && err instanceof SshError && err.kind === 'unreachable') {
        const base = this.baseTarget();
        return [{ ...base, power: 'off', info: { ...base.info, reachable: false, error: err.message } }];
      }
      throw err;
    }
    const base = this.baseTarget();
    // Connected means running, but what the command does to it is not known before acting.
    return [{ ...base, power: 'unknown', info: { ...base.info, reachable: true, hostKey: this.lease.session.hostKey.fingerprint } }];
  }

  private extra(opts: ActOptions): SshCommandExtra {
    const e = opts.extra as Partial<SshCommandExtra> | undefined;
    if (!e?.command) throw new Error(`the SSH action has no command for "${opts.operation}" (it runs its shutdown command on "shutdown" and its startup command on "startup")`);
    return { command: e.command, powersOff: e.powersOff === true, waitDown: e.waitDown === true, waitDownTimeoutMs: e.waitDownTimeoutMs ?? 180_000 };
  }

  async check(target: Target, opts: ActOptions): Promise<string> {
    const e = this.extra(opts);
    if (target.power === 'off') return `${this.host.label} does not answer on port ${this.host.port}: counts as already down`;
    const who = `${this.host.username}@${this.host.host}:${this.host.port}`;
    const wait = e.waitDown ? `, then wait until port ${this.host.port} stops answering (up to ${formatSeconds(e.waitDownTimeoutMs)})` : '';
    return `would run "${commandText(e.command)}" as ${who}${wait}`;
  }

  async act(target: Target, opts: ActOptions, signal: AbortSignal): Promise<ActOutcome> {
    const e = this.extra(opts);
    this.lease ??= await this.host.acquire(signal);
    const session = this.lease.session;
    const shown = commandText(e.command);
    let result;
    try {
      result = await session.exec(e.command, { timeoutMs: opts.timeoutMs, signal, maxOutput: 16 * 1024 });
    } catch (err) {
      if (err instanceof SshError && err.kind === 'timeout') throw new Error(`"${shown}" on ${target.name} did not finish within ${formatSeconds(opts.timeoutMs)}`);
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
    if (!e.waitDown) return { method: 'graceful', after: e.powersOff ? 'unknown' : 'on', detail: how };
    // Let go of the connection so that nothing of ours keeps the host's sshd busy.
    this.lease.release();
    this.lease = undefined;
    const down = await this.waitDown(e, signal);
    return { method: 'graceful', after: 'off', detail: `${how}; port ${this.host.port} closed after ${formatSeconds(down)}` };
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
    this.lease?.release();
    this.lease = undefined;
  }
}
