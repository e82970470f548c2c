/**
 * The NUT source: one persistent connection to upsd, `LIST VAR <ups>` per read, reconnect with
 * backoff, optional LOGIN as a secondary (so a NUT primary waits for us before it powers off).
 */
import { NutConnection, NutConnectionError } from './connection';
import { NUT_ERRORS, NutError, NutProtocolError } from './protocol';
import { SourceError, UpsReading, UpsSource } from '../ups/source';
import { TlsSettings } from '../net/tls';

export interface NutSourceOptions {
  host: string;
  port: number;
  ups: string;
  username?: string;
  password?: string;
  starttls?: boolean;
  tls?: TlsSettings;
  /** Per request (ms). */
  timeoutMs?: number;
  /** Reconnect backoff: first delay and cap (ms). */
  backoffMinMs?: number;
  backoffMaxMs?: number;
}

export class NutSource implements UpsSource {
  readonly kind = 'nut' as const;
  readonly label: string;
  warning: string | null = null;
  private conn: NutConnection | null = null;
  private connecting: Promise<NutConnection> | null = null;
  private failures = 0;
  private nextAttempt = 0;
  private lastConnectError: SourceError | null = null;
  private lastCause: unknown = null;
  /** Bumped by close(): a connect that finishes after it belongs to the past and is dropped. */
  private generation = 0;
  /** Aborts a connect in progress when the source is closed. */
  private abort: AbortController | null = null;

  constructor(private readonly opts: NutSourceOptions) {
    this.label = `${opts.ups}@${opts.host}:${opts.port}`;
  }

  private backoff(): number {
    const min = this.opts.backoffMinMs ?? 1000;
    const max = this.opts.backoffMaxMs ?? 10000;
    return Math.min(max, min * 2 ** Math.max(0, this.failures - 1));
  }

  private async connection(now: number): Promise<NutConnection> {
    if (this.conn && !this.conn.closed) return this.conn;
    this.conn = null;
    if (now < this.nextAttempt && this.lastConnectError) throw this.lastConnectError;
    const generation = this.generation;
    this.abort = new AbortController();
    const conn = await NutConnection.connect({
      host: this.opts.host, port: this.opts.port, timeoutMs: this.opts.timeoutMs, starttls: this.opts.starttls, tls: this.opts.tls, signal: this.abort.signal,
    });
    if (generation !== this.generation) {
      await conn.close();
      throw new SourceError('source closed', 'lost');
    }
    this.conn = conn; // from here on close() can hang it up, even during the login
    if (this.opts.username) {
      try {
        await conn.authenticate(this.opts.username, this.opts.password ?? '', this.opts.ups);
        this.warning = null;
      } catch (err) {
        if (!(err instanceof NutError) || conn.closed) {
          // Not a refusal (a username NUT cannot carry, an answer that is not OK, a broken link): reading on
          // this connection would look healthy while the primary does not count us. Hang up; the next
          // attempt logs in anew, after the backoff.
          if (this.conn === conn) this.conn = null;
          await conn.close();
          throw err;
        }
        // A refused LOGIN does not stop monitoring: the UPS can still be read, so keep going, loudly.
        this.warning = loginAdvice(err, this.opts.username, this.opts.ups);
      }
    }
    return conn;
  }

  async read(now: number): Promise<UpsReading> {
    const generation = this.generation;
    let conn: NutConnection;
    try {
      if (!this.connecting) this.connecting = this.connection(now);
      conn = await this.connecting;
    } catch (err) {
      if (err instanceof SourceError) throw err;
      throw this.failed(err, now, generation);
    } finally {
      this.connecting = null;
    }
    try {
      const vars = await conn.listVar(this.opts.ups);
      // Only an answer to LIST VAR proves the server is a working upsd: a server that accepts and then
      // hangs up (upsd at its connection limit, another service on the port) keeps backing off.
      this.succeeded();
      const status = vars['ups.status'] ?? '';
      if (/(^|\s)WAIT(\s|$)/.test(status)) throw new SourceError(`upsd is still waiting for the driver of ${this.label} (status WAIT)`, 'stale');
      return { vars };
    } catch (err) {
      if (err instanceof SourceError) throw err;
      if (err instanceof NutError) {
        this.succeeded(); // upsd answered, the connection is fine; the UPS behind it is not
        if (err.code === 'UNKNOWN-UPS') throw await this.unknownUps(conn);
        throw toSourceError(err, this.label);
      }
      conn.close().catch(() => undefined);
      throw this.failed(err, now, generation);
    }
  }

  private succeeded(): void {
    this.failures = 0;
    this.lastConnectError = null;
  }

  /** Count a failed connection (or one that broke before it answered) and hold off the next attempt. */
  private failed(err: unknown, now: number, generation: number): SourceError {
    // A read cut short by close() says nothing about the server.
    if (generation !== this.generation) return new SourceError('source closed', 'lost');
    // Reads that joined one connect attempt count it once.
    if (this.lastConnectError && (err === this.lastConnectError || err === this.lastCause)) return this.lastConnectError;
    this.lastCause = err;
    this.failures++;
    this.nextAttempt = now + this.backoff();
    this.lastConnectError = toSourceError(err, this.label);
    return this.lastConnectError;
  }

  private async unknownUps(conn: NutConnection): Promise<SourceError> {
    let known = '';
    try {
      known = Object.keys(await conn.listUps()).join(', ');
    } catch {
      /* the list is only a hint */
    }
    return new SourceError(
      `upsd at ${this.opts.host}:${this.opts.port} has no UPS named "${this.opts.ups}"` + (known ? ` (it has: ${known})` : ' (it lists none)'),
      'lost',
    );
  }

  /** Close the connection (LOGOUT first when logged in). The source can be read again later. */
  async close(): Promise<void> {
    this.generation++;
    // Opened again later, it starts afresh rather than inside an old backoff.
    this.failures = 0;
    this.nextAttempt = 0;
    this.lastConnectError = null;
    this.abort?.abort();
    this.abort = null;
    const conn = this.conn;
    this.conn = null;
    if (conn) await conn.close();
  }
}

function loginAdvice(err: NutError, username: string, ups: string): string {
  if (err.code === 'ACCESS-DENIED') {
    return `upsd refused LOGIN for user "${username}" on ${ups}: wrong username or password, or the user lacks an "upsmon secondary" role in upsd.users`;
  }
  return `LOGIN as "${username}" failed: ${err.message}`;
}

export function toSourceError(err: unknown, label: string): SourceError {
  if (err instanceof SourceError) return err;
  if (err instanceof NutError) {
    // The request that failed (LIST VAR …) means nothing to a user; the code's explanation does.
    const text = `${NUT_ERRORS[err.code] ?? 'upsd refused the request'} (ERR ${err.code})`;
    return new SourceError(text, err.code === 'DATA-STALE' ? 'stale' : 'lost');
  }
  if (err instanceof NutConnectionError || err instanceof NutProtocolError) return new SourceError(err.message, 'lost');
  return new SourceError(`${label}: ${(err as Error)?.message ?? String(err)}`, 'lost');
}
