/**
 * UPS commands over NUT (upsd): INSTCMD, SET VAR and FSD on one short-lived connection, with the
 * UPS device's username/password (USERNAME/PASSWORD, no LOGIN). Where upsd speaks protocol 1.3 the
 * result of INSTCMD and SET VAR is followed with TRACKING (`SET TRACKING ON`, `OK TRACKING <id>`,
 * `GET TRACKING <id>` until SUCCESS or a failure), so "accepted" means the driver said it did it.
 *
 * Checks without side effects, for dry-runs: LIST CMD / LIST RW say what exists; a SET VAR of a
 * variable that does not exist tells whether the user may SET at all (upsd checks the `actions =
 * SET` right before it looks for the variable: VAR-NOT-SUPPORTED = allowed, ACCESS-DENIED = not, or
 * a wrong password). upsd looks a command up before it checks `instcmds`, so INSTCMD rights cannot
 * be known without sending the command; a dry-run says so.
 */
import { NutConnection } from '../nut/connection';
import { NutError, assertWord, clip, quote, tokenize } from '../nut/protocol';
import { TlsSettings } from '../net/tls';
import { abortableSleep, abortError } from '../actions/contract';

export interface NutCommandTarget {
  host: string;
  port: number;
  ups: string;
  username?: string;
  password?: string;
  starttls?: boolean;
  tls?: TlsSettings;
  timeoutMs: number;
}

export type TrackingResult = 'SUCCESS' | 'untracked';

/** A variable name that certainly does not exist: the harmless SET-rights probe. */
const PROBE_VAR = 'upsorch.permission.probe';

export class NutCommander {
  private conn: NutConnection | null = null;
  private tracking: boolean | null = null;
  private authenticated = false;

  constructor(readonly target: NutCommandTarget) {}

  get where(): string {
    return `${this.target.ups}@${this.target.host}:${this.target.port}`;
  }

  async connect(signal: AbortSignal): Promise<NutConnection> {
    if (this.conn && !this.conn.closed) return this.conn;
    const t = this.target;
    this.conn = await NutConnection.connect({ host: t.host, port: t.port, timeoutMs: t.timeoutMs, starttls: t.starttls, tls: t.tls, signal });
    const onAbort = () => void this.conn?.close();
    signal.addEventListener('abort', onAbort, { once: true });
    this.authenticated = false;
    this.tracking = null;
    return this.conn;
  }

  /** USERNAME/PASSWORD once per connection; commands that need rights call this first. */
  private async auth(signal: AbortSignal): Promise<NutConnection> {
    const conn = await this.connect(signal);
    if (this.authenticated) return conn;
    if (!this.target.username) {
      throw new Error(`the UPS device has no NUT username: upsd only runs commands for a user from upsd.users (with "instcmds" and "actions = SET FSD" as needed)`);
    }
    await conn.authenticate(this.target.username, this.target.password ?? '');
    this.authenticated = true;
    return conn;
  }

  async status(signal: AbortSignal): Promise<Record<string, string>> {
    const conn = await this.connect(signal);
    return conn.listVar(this.target.ups);
  }

  async commands(signal: AbortSignal): Promise<string[]> {
    const conn = await this.connect(signal);
    return conn.listCmd(this.target.ups);
  }

  /** Writable variables and their values (LIST RW). */
  async writable(signal: AbortSignal): Promise<Record<string, string>> {
    const conn = await this.connect(signal);
    const block = await conn.list(['RW', assertWord(this.target.ups, 'UPS name')], 'RW');
    const out: Record<string, string> = {};
    for (const row of block.rows) if (row.length >= 4) out[row[2]] = row[3];
    return out;
  }

  /** May this user SET (and is the password right)? Sends a SET of a variable that does not exist. */
  async maySet(signal: AbortSignal): Promise<boolean> {
    const conn = await this.auth(signal);
    try {
      await conn.command(`SET VAR ${this.target.ups} ${PROBE_VAR} "0"`, 'SET VAR (permission probe)');
      return true; // a UPS that has such a variable: allowed anyway
    } catch (err) {
      if (err instanceof NutError && (err.code === 'VAR-NOT-SUPPORTED' || err.code === 'INVALID-ARGUMENT')) return true;
      if (err instanceof NutError && err.code === 'ACCESS-DENIED') return false;
      throw err;
    }
  }

  private async enableTracking(conn: NutConnection): Promise<boolean> {
    if (this.tracking !== null) return this.tracking;
    try {
      const r = await conn.command('SET TRACKING ON', 'SET TRACKING');
      this.tracking = r.startsWith('OK');
    } catch {
      this.tracking = false; // upsd before protocol 1.3
    }
    return this.tracking;
  }

  /** Follow a TRACKING id until the driver reports a result or `timeoutMs` passes. */
  private async follow(conn: NutConnection, id: string, what: string, timeoutMs: number, signal: AbortSignal): Promise<TrackingResult> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let answer: string;
      try {
        answer = (await conn.command(`GET TRACKING ${id}`, 'GET TRACKING')).trim();
      } catch (err) {
        if (err instanceof NutError) throw new Error(`${what}: the driver reported failure (TRACKING ERR ${err.code}${err.extra ? ' ' + err.extra : ''})`);
        throw err;
      }
      if (answer === 'SUCCESS') return 'SUCCESS';
      if (answer !== 'PENDING') throw new Error(`${what}: unexpected tracking answer "${clip(answer)}"`);
      if (Date.now() >= deadline) throw new Error(`${what}: upsd accepted it but the driver did not confirm within ${Math.round(timeoutMs / 1000)} s (TRACKING still PENDING)`);
      await abortableSleep(Math.min(200, Math.max(0, deadline - Date.now())), signal);
    }
  }

  private explain(err: unknown, what: string, right: string): Error {
    if (err instanceof NutError) {
      if (err.code === 'ACCESS-DENIED') {
        return new Error(`${what} refused by upsd (ACCESS-DENIED): wrong password for "${this.target.username}", or the user lacks ${right} in upsd.users`);
      }
      if (err.code === 'CMD-NOT-SUPPORTED') return new Error(`${what}: UPS ${this.target.ups} does not offer this command (ERR CMD-NOT-SUPPORTED)`);
      if (err.code === 'VAR-NOT-SUPPORTED') return new Error(`${what}: UPS ${this.target.ups} has no such variable (ERR VAR-NOT-SUPPORTED)`);
      return new Error(`${what}: ${err.message}`);
    }
    return err instanceof Error ? err : new Error(String(err));
  }

  /** INSTCMD (with parameter, protocol 1.3), followed by TRACKING where upsd supports it. */
  async instcmd(cmd: string, param: string | undefined, confirmMs: number, signal: AbortSignal): Promise<TrackingResult> {
    assertWord(cmd, 'command name');
    const what = `INSTCMD ${cmd}${param ? ' ' + param : ''}`;
    const conn = await this.auth(signal);
    const tracked = await this.enableTracking(conn);
    let reply: string;
    try {
      reply = await conn.command(`INSTCMD ${this.target.ups} ${cmd}${param ? ' ' + quote(param) : ''}`, 'INSTCMD');
    } catch (err) {
      throw this.explain(err, what, `"instcmds = ${cmd}" (or ALL)`);
    }
    return this.afterOk(conn, reply, what, tracked, confirmMs, signal);
  }

  async setVar(name: string, value: string, confirmMs: number, signal: AbortSignal): Promise<TrackingResult> {
    assertWord(name, 'variable name');
    const what = `SET VAR ${name} "${value}"`;
    const conn = await this.auth(signal);
    const tracked = await this.enableTracking(conn);
    let reply: string;
    try {
      reply = await conn.command(`SET VAR ${this.target.ups} ${name} ${quote(value)}`, 'SET VAR');
    } catch (err) {
      throw this.explain(err, what, '"actions = SET"');
    }
    return this.afterOk(conn, reply, what, tracked, confirmMs, signal);
  }

  private async afterOk(conn: NutConnection, reply: string, what: string, tracked: boolean, confirmMs: number, signal: AbortSignal): Promise<TrackingResult> {
    const words = tokenize(reply);
    if (words[0] !== 'OK') throw new Error(`${what}: unexpected answer "${clip(reply)}"`);
    if (tracked && words[1] === 'TRACKING' && words[2]) return this.follow(conn, words[2], what, confirmMs, signal);
    return 'untracked';
  }

  /** FSD: upsd raises the forced-shutdown flag (latched until upsd restarts). */
  async fsd(signal: AbortSignal): Promise<void> {
    const conn = await this.auth(signal);
    try {
      const r = await conn.command(`FSD ${this.target.ups}`, 'FSD');
      if (!r.startsWith('OK')) throw new Error(`FSD: unexpected answer "${clip(r)}"`);
    } catch (err) {
      throw this.explain(err, 'FSD', '"actions = FSD" or an "upsmon primary" role');
    }
  }

  async close(): Promise<void> {
    const c = this.conn;
    this.conn = null;
    if (c) await c.close();
  }
}

export function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw abortError(signal);
}
