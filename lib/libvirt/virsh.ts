/**
 * Running virsh: on the Node-RED machine (execFile with an argument array, no shell) or on a remote
 * host over SSH (every word shell-quoted for the remote shell). Both run it with LC_ALL=C, because
 * virsh translates the domain states it prints.
 */
import { execFile } from 'node:child_process';
import { SshError, shellCommand } from '../ssh/client';
import { HeldSession, SshHostHandle } from '../ssh/shared';
import { formatSeconds } from '../actions/contract';

export interface VirshResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface Virsh {
  /** Where virsh runs, for messages ("root@kvm1:22", "this machine"). */
  readonly where: string;
  /** The host's name as the user knows it, where there is one. */
  readonly label?: string;
  /** Run `virsh -c <uri> <args…>`; resolves with its status, rejects on timeout/abort/transport errors. */
  run(args: string[], timeoutMs: number, signal: AbortSignal): Promise<VirshResult>;
  close(): Promise<void>;
}

/** A failed virsh call, with virsh's own words ("error: failed to get domain 'x'"). */
export class VirshError extends Error {
  constructor(readonly args: string[], readonly result: VirshResult) {
    const msg = lastError(result.stderr) || lastError(result.stdout) || `exit code ${result.code}`;
    super(`virsh ${args[0]}: ${msg}`);
    this.name = 'VirshError';
  }
  /**
   * virsh ran but libvirtd does not answer (yet): a host that has just booted starts sshd before
   * libvirtd. A startup waits for it (lib/actions/run.ts).
   */
  get notReachable(): boolean {
    return virshNotReachable(`${this.result.stderr}\n${this.result.stdout}`);
  }
}

/**
 * Refusals: the socket's permissions, polkit, SASL, libvirt's ACLs, the SSH key or host key of a
 * qemu+ssh:// URI. virsh reports them as "failed to connect to the hypervisor" too, but waiting
 * would not fix them, so they are checked first.
 */
const VIRSH_REFUSED = /permission denied|authentication (unavailable|failed|required)|no polkit agent|access denied|not authori[sz]ed|operation not permitted|host key verification failed|remote host identification has changed|no matching host key/i;
/** libvirtd (or the host of a remote URI) does not answer yet: not started, booting, restarting. */
const VIRSH_NOT_ANSWERING = /failed to connect to the hypervisor|failed to connect socket|cannot recv data|end of file while reading data|connection refused|connection reset|no route to host/i;

/** Whether virsh's output says libvirtd does not answer (yet), as opposed to refusing us. */
export function virshNotReachable(output: string): boolean {
  return !VIRSH_REFUSED.test(output) && VIRSH_NOT_ANSWERING.test(output);
}

function lastError(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  // virsh prints "error: Failed to shutdown domain 'x'" then the reason: keep both.
  const errs = lines.filter((l) => l.startsWith('error:')).map((l) => l.replace(/^error:\s*/, ''));
  const out = (errs.length ? errs : lines).slice(-2).join(': ');
  return out.length > 400 ? out.slice(0, 399) + '…' : out;
}

/** The argument list after `virsh`: the URI first (when given), then the command. */
export function virshArgs(uri: string, args: string[]): string[] {
  return uri ? ['-c', uri, ...args] : args;
}

/** virsh on the Node-RED machine. */
export class LocalVirsh implements Virsh {
  readonly where = 'this machine';
  constructor(private readonly uri: string, private readonly bin = 'virsh') {}

  run(args: string[], timeoutMs: number, signal: AbortSignal): Promise<VirshResult> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      execFile(
        this.bin,
        virshArgs(this.uri, args),
        { timeout: timeoutMs, killSignal: 'SIGKILL', signal, maxBuffer: 4 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' }, windowsHide: true },
        (err, stdout, stderr) => {
          if (!err) return resolve({ code: 0, stdout, stderr });
          const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean; signal?: string };
          if (e.code === 'ENOENT') return reject(new Error(`virsh is not installed on the Node-RED machine (Debian/Ubuntu: apt-get install libvirt-clients)`));
          if (signal.aborted) return reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
          if (e.name === 'AbortError') return reject(new Error('aborted'));
          if (e.killed || e.signal) return reject(new Error(`virsh ${args[0]} did not finish within ${formatSeconds(timeoutMs)}`));
          if (typeof e.code === 'number') return resolve({ code: e.code, stdout, stderr });
          reject(new Error(`virsh ${args[0]}: ${e.message}`));
        },
      );
    });
  }

  async close(): Promise<void> {}
}

/** virsh on a remote host, over the SSH host's shared connection. */
export class SshVirsh implements Virsh {
  private readonly held: HeldSession;

  constructor(private readonly host: SshHostHandle, private readonly uri: string) {
    this.held = new HeldSession(host);
  }

  get where(): string {
    return `${this.host.username}@${this.host.host}:${this.host.port}`;
  }

  /** The SSH host's name, for "waiting for kvm1 to come back". */
  get label(): string {
    return this.host.label;
  }

  async run(args: string[], timeoutMs: number, signal: AbortSignal): Promise<VirshResult> {
    const session = await this.held.session(signal);
    const command = shellCommand(['env', 'LC_ALL=C', 'virsh', ...virshArgs(this.uri, args)]);
    try {
      const r = await session.exec(command, { timeoutMs, signal, maxOutput: 4 * 1024 * 1024 });
      if (r.code === null) {
        if (r.lost) throw new SshError('closed', `the connection to ${this.where} closed during virsh ${args[0]}`);
        return { code: 255, stdout: r.stdout, stderr: r.stderr || `virsh ended by signal ${r.signal}` };
      }
      if (r.code === 127) throw new Error(`virsh is not installed on ${this.where} (${r.stderr.trim() || 'command not found'})`);
      return { code: r.code, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      if (err instanceof SshError && err.kind === 'timeout') throw new Error(`virsh ${args[0]} on ${this.where} did not finish within ${formatSeconds(timeoutMs)}`);
      throw err;
    }
  }

  async close(): Promise<void> {
    this.held.release();
  }
}
