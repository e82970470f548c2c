/**
 * One TCP connection to upsd. Requests are queued and answered in order (upsd replies in order);
 * every request has a timeout, and any protocol violation or timeout closes the connection, because
 * after it the reply stream can no longer be trusted to line up with the requests.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { EventEmitter } from 'node:events';
import {
  LineSplitter, ListReader, ListBlock, NutProtocolError, NutError, assertWord, clip, parseErrorLine, quote, varsFromList, tokenize,
} from './protocol';
import { TlsSettings, checkPinnedFingerprint, tlsConnectOptions } from '../net/tls';

/** Longest close() waits for upsd to answer LOGOUT before it hangs up anyway. */
export const LOGOUT_WAIT_MS = 2000;

export interface NutConnectionOptions {
  host: string;
  port: number;
  /** Per request and for the TCP connect (ms). */
  timeoutMs?: number;
  /** Upgrade with STARTTLS before anything else. */
  starttls?: boolean;
  tls?: TlsSettings;
  /** Aborts a connect (and STARTTLS) in progress: the socket is destroyed at once. */
  signal?: AbortSignal;
}

interface Pending {
  /** Called with each line; returns true when the reply is complete. May throw. */
  accept(line: string): boolean;
  resolve(): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
  what: string;
}

/** Connection-level failure (refused, reset, timeout) with a message a user can act on. */
export class NutConnectionError extends Error {
  constructor(message: string, readonly code?: string) {
    super(message);
    this.name = 'NutConnectionError';
  }
}

export function describeSocketError(err: NodeJS.ErrnoException, host: string, port: number): NutConnectionError {
  const where = `${host}:${port}`;
  switch (err.code) {
    case 'ECONNREFUSED':
      return new NutConnectionError(`connection refused at ${where}: is upsd running and listening there (LISTEN in upsd.conf)?`, err.code);
    case 'ETIMEDOUT':
      return new NutConnectionError(`no answer from ${where} (timeout): check host, port and firewall`, err.code);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new NutConnectionError(`host name "${host}" could not be resolved`, err.code);
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return new NutConnectionError(`${where} is unreachable from here`, err.code);
    case 'ECONNRESET':
    case 'EPIPE':
      return new NutConnectionError(`upsd at ${where} closed the connection`, err.code);
    default:
      return new NutConnectionError(`connection to ${where} failed: ${err.message}`, err.code);
  }
}

export class NutConnection extends EventEmitter {
  private socket: net.Socket | tls.TLSSocket;
  private readonly splitter = new LineSplitter();
  private readonly queue: Pending[] = [];
  private closedWith: Error | undefined;
  private readonly timeoutMs: number;
  readonly host: string;
  readonly port: number;
  loggedIn = false;

  private constructor(socket: net.Socket, opts: NutConnectionOptions) {
    super();
    this.socket = socket;
    this.host = opts.host;
    this.port = opts.port;
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.attach(socket);
  }

  /** Open a connection (and STARTTLS if asked). Rejects with a NutConnectionError/NutError. */
  static connect(opts: NutConnectionOptions): Promise<NutConnection> {
    const timeoutMs = opts.timeoutMs ?? 5000;
    // Settings errors (a malformed pin) must surface before STARTTLS: once upsd has answered
    // "OK STARTTLS" it blocks in its handshake until this client handshakes or hangs up.
    let tlsOptions: tls.ConnectionOptions | undefined;
    try {
      if (opts.starttls) tlsOptions = tlsConnectOptions(opts.host, opts.tls ?? {});
    } catch (err) {
      return Promise.reject(new NutConnectionError(`TLS settings for ${opts.host}:${opts.port}: ${(err as Error).message}`, 'TLS'));
    }
    return new Promise<NutConnection>((resolve, reject) => {
      if (opts.signal?.aborted) return reject(new NutConnectionError('connection aborted', 'ABORTED'));
      const socket = net.connect({ host: opts.host, port: opts.port });
      socket.setNoDelay(true);
      let settled = false;
      const settle = (err: Error | null, conn?: NutConnection) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        if (err) {
          socket.destroy();
          reject(err);
        } else resolve(conn!);
      };
      const onAbort = () => settle(new NutConnectionError('connection aborted', 'ABORTED'));
      opts.signal?.addEventListener('abort', onAbort);
      const timer = setTimeout(() => {
        settle(new NutConnectionError(`no answer from ${opts.host}:${opts.port} within ${timeoutMs} ms: check host, port and firewall`, 'ETIMEDOUT'));
      }, timeoutMs);
      socket.once('error', (err) => settle(describeSocketError(err, opts.host, opts.port)));
      socket.once('connect', () => {
        socket.removeAllListeners('error');
        const conn = new NutConnection(socket, opts);
        if (!opts.starttls) return settle(null, conn);
        conn.startTls(tlsOptions!, opts.tls ?? {}).then(() => settle(null, conn), (err) => {
          void conn.close();
          settle(err);
        });
      });
    });
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  private attach(socket: net.Socket): void {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => this.fail(describeSocketError(err, this.host, this.port)));
    socket.on('close', () => this.fail(new NutConnectionError(`upsd at ${this.host}:${this.port} closed the connection`, 'ECONNRESET')));
  }

  private onData(chunk: string): void {
    let lines: string[];
    try {
      lines = this.splitter.push(chunk);
    } catch (err) {
      return this.fail(err as Error);
    }
    for (const line of lines) {
      const head = this.queue[0];
      if (!head) return this.fail(new NutProtocolError(`unsolicited line from upsd: "${clip(line)}"`));
      let complete: boolean;
      try {
        complete = head.accept(line);
      } catch (err) {
        this.queue.shift();
        clearTimeout(head.timer);
        head.reject(err as Error);
        // An ERR ends a reply cleanly; anything else leaves the stream out of step.
        if (!(err instanceof NutError)) return this.fail(err as Error);
        continue;
      }
      if (complete) {
        this.queue.shift();
        clearTimeout(head.timer);
        head.resolve();
      }
    }
  }

  /** Close the connection and reject everything in flight. Idempotent. */
  private fail(err: Error): void {
    if (this.closedWith) return;
    this.closedWith = err;
    this.socket.destroy();
    for (const p of this.queue.splice(0)) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.emit('close', err);
  }

  /** Send one line; `accept` sees the reply lines until it returns true. */
  private send(line: string, what: string, accept: (line: string) => boolean): Promise<void> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new NutConnectionError(`upsd at ${this.host}:${this.port} did not answer "${what}" within ${this.timeoutMs} ms`, 'ETIMEDOUT'));
      }, this.timeoutMs);
      this.queue.push({ accept, resolve, reject, timer, what });
      this.socket.write(line + '\n');
    });
  }

  /** A command answered by one line; ERR replies reject with NutError. */
  async command(line: string, context = line.split(' ')[0]): Promise<string> {
    let reply = '';
    await this.send(line, context, (l) => {
      const err = parseErrorLine(l, context);
      if (err) throw err;
      reply = l;
      return true;
    });
    return reply;
  }

  async list(args: string[], rowWord: string): Promise<ListBlock> {
    const what = `LIST ${args.join(' ')}`;
    const reader = new ListReader(args, rowWord, what);
    let block: ListBlock | undefined;
    await this.send(what, what, (l) => {
      block = reader.accept(l);
      return block !== undefined;
    });
    return block!;
  }

  async listVar(ups: string): Promise<Record<string, string>> {
    assertWord(ups, 'UPS name');
    return varsFromList(await this.list(['VAR', ups], 'VAR'), ups);
  }

  async listUps(): Promise<Record<string, string>> {
    const block = await this.list(['UPS'], 'UPS');
    const out: Record<string, string> = {};
    for (const row of block.rows) {
      if (row.length !== 3) throw new NutProtocolError(`malformed UPS row: ${row.join(' ')}`);
      out[row[1]] = row[2];
    }
    return out;
  }

  async listCmd(ups: string): Promise<string[]> {
    assertWord(ups, 'UPS name');
    const block = await this.list(['CMD', ups], 'CMD');
    return block.rows.map((r) => r[2]);
  }

  async getVar(ups: string, name: string): Promise<string> {
    assertWord(ups, 'UPS name');
    assertWord(name, 'variable name');
    const reply = await this.command(`GET VAR ${ups} ${name}`, `GET VAR ${ups} ${name}`);
    const words = tokenize(reply);
    if (words.length !== 4 || words[0] !== 'VAR' || words[1] !== ups || words[2] !== name) {
      throw new NutProtocolError(`unexpected reply to GET VAR: "${clip(reply)}"`);
    }
    return words[3];
  }

  async getNumLogins(ups: string): Promise<number> {
    assertWord(ups, 'UPS name');
    const words = tokenize(await this.command(`GET NUMLOGINS ${ups}`, 'GET NUMLOGINS'));
    const n = Number(words[2]);
    if (words[0] !== 'NUMLOGINS' || !Number.isInteger(n)) throw new NutProtocolError(`unexpected reply to GET NUMLOGINS: ${words.join(' ')}`);
    return n;
  }

  /** USERNAME + PASSWORD (+ LOGIN ups, so a NUT primary counts us as a secondary). */
  async authenticate(username: string, password: string, loginUps?: string): Promise<void> {
    await this.expectOk(`USERNAME ${assertWord(username, 'username')}`, 'USERNAME');
    await this.expectOk(`PASSWORD ${quote(password)}`, 'PASSWORD');
    if (loginUps) {
      await this.expectOk(`LOGIN ${assertWord(loginUps, 'UPS name')}`, 'LOGIN');
      this.loggedIn = true;
    }
  }

  private async expectOk(line: string, what: string): Promise<string> {
    const reply = await this.command(line, what);
    if (!reply.startsWith('OK')) throw new NutProtocolError(`unexpected reply to ${what}: "${clip(reply)}"`);
    return reply;
  }

  private async startTls(options: tls.ConnectionOptions, settings: TlsSettings): Promise<void> {
    await this.expectOk('STARTTLS', 'STARTTLS');
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('error');
    plain.removeAllListeners('close');
    await new Promise<void>((resolve, reject) => {
      const secure = tls.connect({ ...options, socket: plain });
      const timer = setTimeout(() => {
        secure.destroy();
        reject(new NutConnectionError(`TLS handshake with ${this.host}:${this.port} timed out`, 'ETIMEDOUT'));
      }, this.timeoutMs);
      secure.once('error', (err) => {
        clearTimeout(timer);
        secure.destroy();
        reject(new NutConnectionError(`TLS with ${this.host}:${this.port} failed: ${err.message}`, 'TLS'));
      });
      secure.once('secureConnect', () => {
        clearTimeout(timer);
        const pinErr = checkPinnedFingerprint(secure, settings);
        if (pinErr) {
          secure.destroy();
          return reject(new NutConnectionError(`TLS with ${this.host}:${this.port} failed: ${pinErr.message}`, 'TLS'));
        }
        secure.removeAllListeners('error');
        this.socket = secure;
        this.attach(secure);
        resolve();
      });
    });
  }

  /** LOGOUT (when logged in, bounded wait) and close. Never rejects. */
  async close(): Promise<void> {
    if (this.closedWith) return;
    // With a request in flight upsd may be hung: hang up rather than queue a LOGOUT behind it.
    if (this.loggedIn && this.queue.length === 0) {
      // Bounded well below the request timeout: Node-RED gives a closing node 15 s in all.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.command('LOGOUT', 'LOGOUT').catch(() => undefined),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.min(this.timeoutMs, LOGOUT_WAIT_MS)))),
      ]);
      clearTimeout(timer);
    }
    this.fail(new NutConnectionError('connection closed by the client', 'CLOSED'));
  }
}
