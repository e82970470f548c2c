/**
 * One SSH connection per SSH host, shared by everyone using it at the same time (Node-RED's MQTT
 * broker model): the first user connects, later users reuse the connection, and it is closed when
 * the last user releases it. A connection that dropped is replaced on the next use.
 */
import { SshError, SshSession, SshTarget, probeTcp } from './client';

export interface SshLease {
  readonly session: SshSession;
  /** Give the connection back; the last release closes it. Idempotent. */
  release(): void;
}

/** What a node or driver needs from an SSH host config. */
export interface SshHostHandle {
  /** Name for targets and messages: the config's name, else the host. */
  readonly label: string;
  readonly host: string;
  readonly port: number;
  readonly username: string;
  readonly connectTimeoutMs: number;
  acquire(signal: AbortSignal): Promise<SshLease>;
  /** Is something answering on the SSH port (for "wait until the host is down")? */
  probe(timeoutMs: number, signal?: AbortSignal): ReturnType<typeof probeTcp>;
  /** Close the connection now, whoever holds it (the config node is closing). */
  close(): Promise<void>;
}

export class SharedSsh implements SshHostHandle {
  private session?: SshSession;
  private connecting?: { promise: Promise<SshSession>; ac: AbortController };
  private users = 0;
  private closing = false;

  constructor(private readonly target: SshTarget, readonly label: string) {}

  get host(): string {
    return this.target.host;
  }
  get port(): number {
    return this.target.port;
  }
  get username(): string {
    return this.target.username;
  }
  get connectTimeoutMs(): number {
    return this.target.connectTimeoutMs;
  }
  /** Number of current users (for tests and status). */
  get leases(): number {
    return this.users;
  }

  async acquire(signal: AbortSignal): Promise<SshLease> {
    if (this.closing) throw new SshError('closed', `SSH host ${this.label} is closing`);
    if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new SshError('aborted', 'aborted');
    this.users++;
    try {
      const session = await this.connected(signal);
      let released = false;
      return {
        session,
        release: () => {
          if (released) return;
          released = true;
          this.drop();
        },
      };
    } catch (err) {
      this.drop();
      throw err;
    }
  }

  private drop(): void {
    this.users = Math.max(0, this.users - 1);
    if (this.users > 0) return;
    // Nobody needs it any more: stop a connect in progress, close an open connection.
    this.connecting?.ac.abort(new SshError('aborted', 'no longer needed'));
    this.connecting = undefined;
    const s = this.session;
    this.session = undefined;
    void s?.close();
  }

  private connected(signal: AbortSignal): Promise<SshSession> {
    if (this.session && !this.session.closed) return Promise.resolve(this.session);
    this.session = undefined;
    if (!this.connecting) {
      const ac = new AbortController();
      const promise = SshSession.connect({ keepaliveMs: 15_000, ...this.target }, ac.signal).then(
        (s) => {
          if (this.connecting?.promise === promise) this.connecting = undefined;
          if (ac.signal.aborted || this.users === 0) {
            void s.close();
            throw new SshError('aborted', 'no longer needed');
          }
          this.session = s;
          s.onClose(() => {
            if (this.session === s) this.session = undefined;
          });
          return s;
        },
        (err) => {
          if (this.connecting?.promise === promise) this.connecting = undefined;
          throw err;
        },
      );
      this.connecting = { promise, ac };
    }
    const { promise } = this.connecting;
    // Each user waits for the shared connect but may give up on its own.
    return new Promise<SshSession>((resolve, reject) => {
      const onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new SshError('aborted', 'aborted'));
      signal.addEventListener('abort', onAbort, { once: true });
      promise.then(
        (s) => {
          signal.removeEventListener('abort', onAbort);
          resolve(s);
        },
        (err) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      );
    });
  }

  probe(timeoutMs: number, signal?: AbortSignal) {
    return probeTcp(this.target.host, this.target.port, timeoutMs, signal);
  }

  async close(): Promise<void> {
    this.closing = true;
    this.connecting?.ac.abort(new SshError('aborted', `SSH host ${this.label} is closing`));
    this.connecting = undefined;
    const s = this.session;
    this.session = undefined;
    await s?.close();
  }
}

/**
 * One user's hold on a host's shared connection: the same session while it is open, a fresh lease
 * once it has dropped (a reset between listing and acting must not leave a driver retrying a dead
 * session). Concurrent callers share one acquire.
 */
export class HeldSession {
  private lease?: SshLease;
  private leasing?: Promise<SshLease>;

  constructor(private readonly host: SshHostHandle) {}

  /** The open session, if there is one now. */
  get open(): SshSession | undefined {
    return this.lease && !this.lease.session.closed ? this.lease.session : undefined;
  }

  async session(signal: AbortSignal): Promise<SshSession> {
    const open = this.open;
    if (open) return open;
    this.release();
    this.leasing ??= this.host.acquire(signal).finally(() => (this.leasing = undefined));
    const lease = await this.leasing;
    // Callers that waited for the same acquire share its lease; never hold two.
    if (this.lease !== lease) {
      if (this.open) lease.release();
      else {
        this.lease?.release();
        this.lease = lease;
      }
    }
    return this.lease!.session;
  }

  /** Give the connection back (the last user's release closes it). Idempotent. */
  release(): void {
    this.lease?.release();
    this.lease = undefined;
  }
}
