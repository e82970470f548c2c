/**
 * A small wrapper around ssh2 for running one-shot commands: connect with a pinned host key (the
 * SHA256 fingerprint OpenSSH prints) and a bounded handshake, run commands with a timeout and
 * bounded output, abort through an AbortSignal, and errors a user can act on. Secrets (key,
 * passphrase, password) are handed to ssh2 only; nothing here logs or repeats them.
 */
import { createHash } from 'node:crypto';
import * as net from 'node:net';
import { Client, ClientChannel, ConnectConfig, utils } from 'ssh2';

export interface SshTarget {
  host: string;
  port: number;
  username: string;
  privateKey?: string;
  passphrase?: string;
  password?: string;
  /** Pinned host key, `SHA256:` + unpadded base64 (as `ssh-keygen -lf` prints it). Required to connect. */
  fingerprint: string;
  /** Bound for TCP connect, handshake and authentication. */
  connectTimeoutMs: number;
  /** Keepalive interval for connections that stay open (0 = off). */
  keepaliveMs?: number;
}

export type SshErrorKind = 'unreachable' | 'timeout' | 'hostkey' | 'auth' | 'config' | 'closed' | 'protocol' | 'aborted';

export class SshError extends Error {
  constructor(readonly kind: SshErrorKind, message: string) {
    super(message);
    this.name = 'SshError';
  }
  /** The action contract's "not reachable (yet)" (lib/actions/run.ts): a startup waits for the host. */
  get notReachable(): boolean {
    return this.kind === 'unreachable';
  }
}

export interface ExecOptions {
  /** The command is given up (its channel closed) after this long. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Bytes kept of stdout and of stderr (the tail); default 64 KiB. */
  maxOutput?: number;
}

export interface ExecResult {
  /** Exit status, null when the command was ended by a signal or the connection closed first. */
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** True when the channel closed without an exit status (e.g. the host went down mid-command). */
  lost: boolean;
  ms: number;
}

/** `SHA256:` + unpadded base64 of the SHA-256 of the key blob, exactly as OpenSSH prints it. */
export function sshFingerprint(key: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(key).digest('base64').replace(/=+$/, '');
}

/** The key type named inside an SSH public key blob (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`). */
export function sshKeyType(key: Buffer): string {
  if (key.length < 4) return 'unknown';
  const len = key.readUInt32BE(0);
  if (len <= 0 || len > 64 || key.length < 4 + len) return 'unknown';
  return key.subarray(4, 4 + len).toString('latin1');
}

/**
 * `SHA256:abc…` (or the bare base64, padded or not) → `SHA256:abc…`; undefined when empty.
 * Throws on anything else, e.g. an MD5 fingerprint.
 */
export function normaliseSshFingerprint(fp: string | undefined | null): string | undefined {
  if (!fp || !fp.trim()) return undefined;
  const body = fp.trim().replace(/^sha256:/i, '').replace(/=+$/, '');
  if (!/^[A-Za-z0-9+/]{43}$/.test(body)) {
    throw new Error('the host key fingerprint must be the SHA256 form OpenSSH prints, e.g. SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)');
  }
  return 'SHA256:' + body;
}

const SAFE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

/**
 * Quote one word for a POSIX shell: left as is when it only has characters the shell never
 * interprets, else in single quotes with every `'` written `'\''`.
 */
export function shellQuote(word: string): string {
  if (word === '') return "''";
  if (SAFE_WORD.test(word)) return word;
  return "'" + word.replace(/'/g, "'\\''") + "'";
}

/** A command line from words, each quoted for the remote shell. */
export function shellCommand(words: string[]): string {
  return words.map(shellQuote).join(' ');
}

/** Keeps the last `max` bytes of a stream. */
class Tail {
  private chunks: Buffer[] = [];
  private size = 0;
  truncated = false;
  constructor(private readonly max: number) {}
  push(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
    while (this.size > this.max && this.chunks.length > 1) {
      this.size -= this.chunks.shift()!.length;
      this.truncated = true;
    }
    if (this.size > this.max) {
      const only = this.chunks[0];
      this.chunks[0] = only.subarray(only.length - this.max);
      this.size = this.max;
      this.truncated = true;
    }
  }
  text(): string {
    const s = Buffer.concat(this.chunks).toString('utf8');
    return this.truncated ? '…' + s : s;
  }
}

/** Human wording for a socket-level error code. */
function networkError(host: string, port: number, err: NodeJS.ErrnoException): SshError {
  const where = `${host}:${port}`;
  switch (err.code) {
    case 'ECONNREFUSED':
      return new SshError('unreachable', `cannot connect to ${where}: connection refused (is SSH running on that port?)`);
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EHOSTDOWN':
    case 'ENETDOWN':
      return new SshError('unreachable', `cannot connect to ${where}: host unreachable`);
    case 'ETIMEDOUT':
      return new SshError('unreachable', `cannot connect to ${where}: timed out`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new SshError('unreachable', `cannot resolve host "${host}" (${err.code})`);
    case 'ECONNRESET':
      return new SshError('unreachable', `${where} closed the connection during the SSH handshake`);
    default:
      return new SshError('protocol', `SSH to ${where}: ${err.message}`);
  }
}

function secondsText(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${+(ms / 1000).toFixed(1)} s`;
}

function abortReason(signal: AbortSignal): Error {
  const r = signal.reason;
  return r instanceof Error ? r : new SshError('aborted', typeof r === 'string' ? r : 'aborted');
}

/**
 * The host key check ssh2 runs during the handshake: compares with the pin and remembers what the
 * server showed, so a mismatch can be reported with both fingerprints.
 */
function pinVerifier(pin: string, seen: { fingerprint?: string; type?: string }): (key: Buffer) => boolean {
  return (key: Buffer) => {
    seen.fingerprint = sshFingerprint(key);
    seen.type = sshKeyType(key);
    return seen.fingerprint === pin;
  };
}

/** Why a private key cannot be used (never quoting the key), or undefined when it parses. */
export function privateKeyProblem(key: string, passphrase?: string): string | undefined {
  const parsed = utils.parseKey(key, passphrase || undefined);
  const k = Array.isArray(parsed) ? parsed[0] : parsed;
  if (k instanceof Error) {
    if (/encrypted/i.test(k.message) && !passphrase) return 'the private key is encrypted: enter its passphrase';
    if (/passphrase|decrypt|bad/i.test(k.message) && passphrase) return 'the private key cannot be decrypted: wrong passphrase?';
    return `the private key cannot be read (${k.message}); paste it in OpenSSH or PEM format`;
  }
  if (!k || !k.isPrivateKey()) return 'that is a public key: paste the private key';
  return undefined;
}

/** One authenticated SSH connection; commands run on channels of it (at most `maxChannels` at once). */
export class SshSession {
  private closedFlag = false;
  private closeListeners = new Set<(err?: Error) => void>();
  private active = 0;
  private waiting: Array<() => void> = [];
  private channels = new Set<ClientChannel>();
  private closeError?: Error;

  private constructor(
    private readonly client: Client,
    readonly target: Pick<SshTarget, 'host' | 'port' | 'username'>,
    readonly hostKey: { fingerprint: string; type: string },
    readonly authMethod: 'publickey' | 'password' | 'keyboard-interactive',
    private readonly maxChannels: number,
  ) {
    client.on('close', () => this.markClosed(this.closeError ?? new SshError('closed', `connection to ${this.where} closed`)));
    client.on('error', (err: Error) => {
      const e = err as NodeJS.ErrnoException;
      // On an established session a reset is not a handshake failure: say what happened.
      this.closeError = e.code === 'ECONNRESET' ? new SshError('unreachable', `the connection to ${target.host}:${target.port} was reset`) : networkError(target.host, target.port, e);
    });
  }

  get where(): string {
    return `${this.target.username}@${this.target.host}:${this.target.port}`;
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Called once when the connection ends, for whatever reason. */
  onClose(cb: (err?: Error) => void): () => void {
    if (this.closedFlag) {
      cb(this.closeError);
      return () => undefined;
    }
    this.closeListeners.add(cb);
    return () => this.closeListeners.delete(cb);
  }

  private markClosed(err?: Error): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    for (const w of this.waiting.splice(0)) w();
    for (const cb of [...this.closeListeners]) cb(err);
    this.closeListeners.clear();
  }

  /**
   * Connect, check the host key against the pin, authenticate. Everything is bounded by
   * `connectTimeoutMs`; aborting `signal` ends the connection at once.
   */
  static connect(t: SshTarget, signal?: AbortSignal, maxChannels = 8): Promise<SshSession> {
    let pin: string;
    try {
      const p = normaliseSshFingerprint(t.fingerprint);
      if (!p) throw new Error('no host key fingerprint is pinned: use "Fetch fingerprint" in the SSH host, compare it with the host, and save it');
      pin = p;
    } catch (err) {
      return Promise.reject(new SshError('config', (err as Error).message));
    }
    if (!t.privateKey && !t.password) return Promise.reject(new SshError('config', 'no private key and no password configured'));
    if (t.privateKey) {
      const why = privateKeyProblem(t.privateKey, t.passphrase);
      if (why) return Promise.reject(new SshError('config', why));
    }
    if (signal?.aborted) return Promise.reject(abortReason(signal));

    return new Promise<SshSession>((resolve, reject) => {
      const client = new Client();
      const seen: { fingerprint?: string; type?: string } = {};
      let settled = false;
      let lastAuth: 'publickey' | 'password' | 'keyboard-interactive' = 'publickey';
      let socketError: Error | undefined;
      const where = `${t.host}:${t.port}`;
      const timer = setTimeout(() => fail(new SshError('unreachable', `no SSH answer from ${where} within ${secondsText(t.connectTimeoutMs)}`)), t.connectTimeoutMs);
      const onAbort = () => fail(abortReason(signal!));
      signal?.addEventListener('abort', onAbort, { once: true });

      function cleanup() {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      }
      function fail(err: Error) {
        if (settled) return;
        settled = true;
        cleanup();
        client.removeAllListeners('ready');
        client.on('error', () => undefined);
        client.destroy();
        reject(err);
      }

      client.on('error', (err: Error & { level?: string; code?: string }) => {
        if (settled) return;
        if (seen.fingerprint && seen.fingerprint !== pin) {
          return fail(new SshError('hostkey', `host key mismatch: expected ${pin}, got ${seen.fingerprint} (${seen.type}) from ${where}`));
        }
        if (err.level === 'client-authentication') {
          const how = [t.privateKey ? 'private key' : '', t.password ? 'password' : ''].filter(Boolean).join(' and ');
          return fail(new SshError('auth', `authentication failed for user "${t.username}" on ${where}: the server refused the ${how}`));
        }
        if (err.level === 'client-timeout') return fail(new SshError('unreachable', `no SSH answer from ${where} within ${secondsText(t.connectTimeoutMs)}`));
        if (err.level === 'client-socket' || err.code) {
          socketError = networkError(t.host, t.port, err as NodeJS.ErrnoException);
          return fail(socketError);
        }
        fail(new SshError('protocol', `SSH to ${where}: ${err.message}`));
      });
      client.on('close', () => fail(socketError ?? new SshError('unreachable', `${where} closed the connection during the SSH handshake`)));
      client.on('ready', () => {
        if (settled) {
          client.end();
          return;
        }
        settled = true;
        cleanup();
        client.removeAllListeners('error');
        client.removeAllListeners('close');
        resolve(new SshSession(client, t, { fingerprint: seen.fingerprint!, type: seen.type ?? 'unknown' }, lastAuth, maxChannels));
      });
      // Methods in order of preference; one the server does not offer is skipped.
      const queue: Array<'publickey' | 'password' | 'keyboard-interactive'> = [];
      if (t.privateKey) queue.push('publickey');
      if (t.password) queue.push('password', 'keyboard-interactive');
      const answerAll = (_n: string, _i: string, _l: string, prompts: unknown[], finish: (answers: string[]) => void) => finish(prompts.map(() => t.password ?? ''));
      const nextAuth = (methodsLeft: string[] | null, _partial: boolean | null, next: (auth: unknown) => void): void => {
        let m = queue.shift();
        while (m && methodsLeft && !methodsLeft.includes(m)) m = queue.shift();
        if (!m) return next(false);
        lastAuth = m;
        if (m === 'publickey') return next({ type: 'publickey', username: t.username, key: t.privateKey, passphrase: t.passphrase || undefined });
        if (m === 'password') return next({ type: 'password', username: t.username, password: t.password });
        next({ type: 'keyboard-interactive', username: t.username, prompt: answerAll });
      };
      const cfg = {
        host: t.host,
        port: t.port,
        username: t.username,
        readyTimeout: t.connectTimeoutMs,
        keepaliveInterval: t.keepaliveMs ?? 0,
        keepaliveCountMax: 3,
        hostVerifier: pinVerifier(pin, seen),
        authHandler: nextAuth,
      } as unknown as ConnectConfig;
      try {
        client.connect(cfg);
      } catch (err) {
        fail(new SshError('protocol', `SSH to ${where}: ${(err as Error).message}`));
      }
    });
  }

  private async slot(signal?: AbortSignal): Promise<() => void> {
    while (this.active >= this.maxChannels) {
      if (this.closedFlag) throw this.closeError ?? new SshError('closed', `connection to ${this.where} closed`);
      if (signal?.aborted) throw abortReason(signal);
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal?.removeEventListener('abort', wake);
          const i = this.waiting.indexOf(wake);
          if (i >= 0) this.waiting.splice(i, 1);
          resolve();
        };
        this.waiting.push(wake);
        signal?.addEventListener('abort', wake, { once: true });
      });
    }
    this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      this.waiting.shift()?.();
    };
  }

  /**
   * Run one command. Resolves with its exit status and output tails (a non-zero status is a
   * result, not an error); rejects on timeout, abort, or when no channel could be opened.
   */
  async exec(command: string, opts: ExecOptions): Promise<ExecResult> {
    if (this.closedFlag) throw this.closeError ?? new SshError('closed', `connection to ${this.where} closed`);
    if (opts.signal?.aborted) throw abortReason(opts.signal);
    const release = await this.slot(opts.signal);
    const max = opts.maxOutput ?? 64 * 1024;
    const t0 = Date.now();
    try {
      return await new Promise<ExecResult>((resolve, reject) => {
        const stdout = new Tail(max);
        const stderr = new Tail(max);
        let code: number | null = null;
        let sig: string | null = null;
        let gotExit = false;
        let stream: ClientChannel | undefined;
        let settled = false;
        const finish = (err: Error | null) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          opts.signal?.removeEventListener('abort', onAbort);
          offClose();
          if (stream) {
            this.channels.delete(stream);
            if (err) {
              // Ask the server to end the command, then drop the channel.
              try {
                stream.signal('KILL');
              } catch {
                /* not supported everywhere */
              }
              try {
                stream.close();
              } catch {
                /* already closed */
              }
            }
          }
          if (err) reject(err);
          else resolve({ code, signal: sig, stdout: stdout.text(), stderr: stderr.text(), lost: !gotExit, ms: Date.now() - t0 });
        };
        const timer = setTimeout(() => finish(new SshError('timeout', `command did not finish within ${secondsText(opts.timeoutMs)}`)), opts.timeoutMs);
        const onAbort = () => finish(abortReason(opts.signal!));
        opts.signal?.addEventListener('abort', onAbort, { once: true });
        // The connection dropping mid-command (a host powering off) ends the command without a status.
        const offClose = this.onClose(() => finish(null));
        try {
          this.client.exec(command, (err, ch) => {
            if (err) return finish(new SshError('protocol', `cannot run a command on ${this.where}: ${err.message}`));
            if (settled) {
              try {
                ch.close();
              } catch {
                /* ignore */
              }
              return;
            }
            stream = ch;
            this.channels.add(ch);
            ch.on('data', (d: Buffer) => stdout.push(d));
            ch.stderr.on('data', (d: Buffer) => stderr.push(d));
            ch.on('exit', (c: number | null, s?: string) => {
              gotExit = true;
              code = typeof c === 'number' ? c : null;
              sig = s ?? null;
            });
            ch.on('close', () => finish(null));
            ch.on('error', () => undefined);
          });
        } catch (err) {
          finish(new SshError('closed', `cannot run a command on ${this.where}: ${(err as Error).message}`));
        }
      });
    } finally {
      release();
    }
  }

  /** End the connection (politely, then for good after `graceMs`). Never rejects. */
  close(graceMs = 1000): Promise<void> {
    if (this.closedFlag) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.client.destroy();
        this.markClosed();
        resolve();
      }, graceMs);
      this.onClose(() => {
        clearTimeout(timer);
        resolve();
      });
      for (const ch of this.channels) {
        try {
          ch.close();
        } catch {
          /* ignore */
        }
      }
      try {
        this.client.end();
      } catch {
        this.client.destroy();
      }
    });
  }
}

/**
 * Connect WITHOUT trusting the host only to read its host key, then hang up before authenticating.
 * For the editor's "Fetch fingerprint": the user compares the result with the host before saving it.
 */
export function fetchHostKey(host: string, port: number, timeoutMs: number, signal?: AbortSignal): Promise<{ fingerprint: string; keyType: string }> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    let settled = false;
    const where = `${host}:${port}`;
    const finish = (err: Error | null, v?: { fingerprint: string; keyType: string }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      client.on('error', () => undefined);
      client.destroy();
      if (err) reject(err);
      else resolve(v!);
    };
    const timer = setTimeout(() => finish(new SshError('unreachable', `no SSH answer from ${where} within ${secondsText(timeoutMs)}`)), timeoutMs);
    const onAbort = () => finish(abortReason(signal!));
    if (signal?.aborted) return finish(abortReason(signal));
    signal?.addEventListener('abort', onAbort, { once: true });
    client.on('error', (err: Error & { code?: string; level?: string }) => {
      if (err.code) return finish(networkError(host, port, err as NodeJS.ErrnoException));
      finish(new SshError('protocol', `SSH to ${where}: ${err.message}`));
    });
    client.on('close', () => finish(new SshError('unreachable', `${where} closed the connection before showing its host key`)));
    client.connect({
      host,
      port,
      username: 'upsorch-fingerprint',
      readyTimeout: timeoutMs,
      hostVerifier: (key: Buffer) => {
        // Refusing ends the handshake here: nothing is sent that could authenticate.
        finish(null, { fingerprint: sshFingerprint(key), keyType: sshKeyType(key) });
        return false;
      },
    });
  });
}

export type TcpProbe = 'open' | 'refused' | 'timeout' | 'unreachable';

/** One TCP connect attempt: is something listening on host:port? */
export function probeTcp(host: string, port: number, timeoutMs: number, signal?: AbortSignal): Promise<TcpProbe> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    let settled = false;
    const done = (r: TcpProbe) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      s.removeAllListeners();
      s.on('error', () => undefined);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    const onAbort = () => done('timeout');
    signal?.addEventListener('abort', onAbort, { once: true });
    s.once('connect', () => done('open'));
    s.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'refused' : err.code === 'ETIMEDOUT' ? 'timeout' : 'unreachable'));
  });
}
