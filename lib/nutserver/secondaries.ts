/**
 * The "NUT secondaries" action: tell the NUT clients of a served UPS to shut down, the way a NUT
 * primary does (upsmon's forceshutdown + HOSTSYNC): raise FSD on the UPS, then wait until every
 * client that was logged in has logged out (NUMLOGINS drops) or the timeout passes.
 *
 * Targets, per served UPS:
 * - the UPS itself (name = its NUT name): shutdown raises FSD, startup clears it (a NAS that boots
 *   while FSD is still raised would shut straight down again); power `off` = FSD raised. Marked
 *   undoOnStartup: a mirrored startup clears FSD also when the shutdown found it raised already;
 * - every logged-in client (name `user@address`, tagged with the UPS name): shutdown raises FSD if
 *   needed and waits for that client to leave; power `on` = logged in;
 * - with "expected clients" set, each expected client that is not logged in (or the shortfall of
 *   a count): a failed target, so a NAS that cannot be told does not pass as a success.
 * Only a client that leaves by itself (LOGOUT, closing its connection, going silent) counts as
 * gone; one we cut off for a protocol error failed, and one cut off by the server stopping has no
 * result (the resumed run checks it again). Dry-run lists who would be told, and the connections
 * that never logged in (a NAS with a wrong password is among them).
 */
import { ActOptions, ActOutcome, ActionDriver, Operation, Target, abortError } from '../actions/contract';
import { ClientInfo, LeaveReason, NutServer, PendingClient } from './server';
import { ExpectedClients } from './config';

export interface SecondariesOptions {
  /** NUT names to act on; empty = every UPS the server serves. */
  ups: string[];
  /** Who must be logged in; none by default. */
  expected?: ExpectedClients;
}

type Kind =
  | { kind: 'ups'; ups: string }
  | { kind: 'client'; ups: string; client: ClientInfo }
  | { kind: 'missing'; why: string };

/** How a client left, for the result; only these count as having gone. */
const LEFT_HOW: Partial<Record<LeaveReason, string>> = {
  logout: 'logged out',
  closed: 'disconnected',
  idle: 'went silent and was disconnected',
};

export class NutSecondariesDriver implements ActionDriver {
  /** Raising FSD again and waiting again is harmless. */
  readonly repeatable = true;
  private readonly kinds = new Map<string, Kind>();
  private upsNames: string[] = [];

  constructor(private readonly server: NutServer, private readonly opts: SecondariesOptions) {}

  private upsList(): string[] {
    const served = this.server.upsNames;
    if (!this.opts.ups.length) return served;
    return this.opts.ups.map((u) => {
      const hit = served.find((s) => s.toLowerCase() === u.toLowerCase());
      if (!hit) throw new Error(`the NUT server does not serve a UPS named "${u}" (it serves: ${served.join(', ') || 'none'})`);
      return hit;
    });
  }

  async list(signal: AbortSignal, operation?: Operation): Promise<Target[]> {
    if (signal.aborted) throw abortError(signal);
    if (!this.server.address) throw new Error('the NUT server is not listening (see its configuration and the Node-RED log)');
    const upsNames = this.upsList();
    this.upsNames = upsNames;
    const targets: Target[] = [];
    this.kinds.clear();
    const names = new Set<string>();
    const all: ClientInfo[] = [];
    for (const ups of upsNames) {
      const fsd = this.server.fsd(ups);
      const clients = this.server.clients(ups);
      all.push(...clients);
      const t: Target = {
        id: `ups:${ups}`,
        name: ups,
        tags: ['ups'],
        power: fsd.set ? 'off' : 'on',
        info: { kind: 'ups', fsd: fsd.set, fsdBy: fsd.by, secondaries: clients.length },
        undoOnStartup: true,
      };
      targets.push(t);
      names.add(ups);
      this.kinds.set(t.id, { kind: 'ups', ups });
      for (const c of clients) {
        let name = `${c.username}@${c.address}`;
        if (upsNames.length > 1) name += ` (${ups})`;
        if (names.has(name)) name += `:${c.port}`;
        names.add(name);
        const ct: Target = {
          id: `client:${c.id}`,
          name,
          tags: [ups, 'client'],
          power: 'on',
          info: { kind: 'client', ups, username: c.username, address: c.address, port: c.port, loggedInSince: new Date(c.since).toISOString() },
        };
        targets.push(ct);
        this.kinds.set(ct.id, { kind: 'client', ups, client: c });
      }
    }
    // Missing clients have nothing to start: the startup direction leaves them out.
    if (operation !== 'start') for (const m of this.missing(all)) {
      const t: Target = { id: `missing:${m.name}`, name: m.name, tags: ['expected'], power: 'unknown', info: { kind: 'missing' } };
      targets.push(t);
      this.kinds.set(t.id, { kind: 'missing', why: m.why });
    }
    return targets;
  }

  /** Expected clients that are not logged in, each with what the server knows of it. */
  private missing(logged: ClientInfo[]): Array<{ name: string; why: string }> {
    const exp = this.opts.expected;
    if (!exp || (!exp.count && !exp.names.length)) return [];
    const where = this.upsNames.join(', ');
    const pending = this.pendingFor();
    const out: Array<{ name: string; why: string }> = [];
    for (const want of exp.names) {
      if (logged.some((c) => matches(want, c))) continue;
      const seen = pending.filter((p) => matches(want, p));
      out.push({
        name: want,
        why: `expected, but not logged in to ${where}: it cannot be told to shut down${seen.length ? `; ${seen.map(describePending).join('; ')}` : ' (not connected: check the NAS points at this server, with a user of the NUT server)'}`,
      });
    }
    if (exp.count > logged.length) {
      const short = exp.count - logged.length;
      out.push({
        name: `${exp.count} expected clients`,
        why: `${logged.length} of ${exp.count} expected clients logged in to ${where}: ${short} cannot be told to shut down${pending.length ? `; ${pending.map(describePending).join('; ')}` : ''}`,
      });
    }
    return out;
  }

  /** Connections without a login that may belong to these UPSes (none named another one). */
  private pendingFor(): PendingClient[] {
    const mine = new Set(this.upsNames.map((u) => u.toLowerCase()));
    return this.server.pendingClients().filter((p) => !p.loginFailed || !p.loginFailed.ups || mine.has(p.loginFailed.ups.toLowerCase()) || !this.server.upsNames.some((u) => u.toLowerCase() === p.loginFailed!.ups.toLowerCase()));
  }

  /** "; connected without logging in: …" for the UPS target's detail, or ''. */
  private pendingNote(): string {
    const p = this.pendingFor();
    return p.length ? `; connected without logging in (not told): ${p.map(describePending).join('; ')}` : '';
  }

  private kind(t: Target): Kind {
    const k = this.kinds.get(t.id);
    if (!k) throw new Error(`unknown target ${t.name}`);
    return k;
  }

  async check(t: Target, opts: ActOptions, signal: AbortSignal): Promise<string> {
    if (signal.aborted) throw abortError(signal);
    const k = this.kind(t);
    const secs = Math.round(opts.timeoutMs / 1000);
    if (k.kind === 'missing') throw new Error(k.why);
    if (isShutdown(opts)) {
      if (k.kind === 'ups') {
        const n = Number(t.info?.secondaries ?? 0);
        const fsd = t.info?.fsd ? `FSD is already raised on ${k.ups}` : `would raise FSD on ${k.ups}`;
        return `${fsd} (${n} logged-in client${n === 1 ? '' : 's'} would be told to shut down)${n ? '' : ': nothing follows this UPS'}${this.pendingNote()}`;
      }
      return `would be told to shut down (FSD on ${k.ups}); would wait up to ${secs} s for it to log out`;
    }
    if (opts.operation === 'start') {
      if (k.kind === 'ups') return `would clear FSD on ${k.ups}`;
      return 'logged in; nothing to do';
    }
    throw new Error(`"${opts.operation}" is not something NUT secondaries can do: use shutdown (raise FSD and wait) or start (clear FSD)`);
  }

  async act(t: Target, opts: ActOptions, signal: AbortSignal): Promise<ActOutcome> {
    const k = this.kind(t);
    if (opts.operation === 'start') {
      if (k.kind === 'ups') {
        const was = this.server.clearFsd(k.ups);
        return { method: was ? 'graceful' : 'already', after: 'on', detail: was ? `FSD cleared on ${k.ups}` : `FSD was not raised on ${k.ups}` };
      }
      return { method: 'already', after: 'on', detail: 'logged in' };
    }
    if (!isShutdown(opts)) throw new Error(`"${opts.operation}" is not something NUT secondaries can do: use shutdown (raise FSD and wait) or start (clear FSD)`);
    if (k.kind === 'missing') {
      // Those that are there are told all the same.
      for (const u of this.upsNames) this.server.setFsd(u, 'NUT secondaries action');
      throw new Error(k.why);
    }
    // Every shutdown act (re)raises FSD: a run resumed after a restart must reach the clients too.
    const raised = this.server.setFsd(k.ups, 'NUT secondaries action');
    if (k.kind === 'ups') {
      const n = this.server.numLogins(k.ups);
      const none = n === 0 ? ': nothing follows this UPS' : '';
      return { method: raised ? 'graceful' : 'already', after: 'off', detail: `FSD ${raised ? 'raised' : 'already raised'} on ${k.ups}; ${n} logged-in client${n === 1 ? '' : 's'}${none}${this.pendingNote()}` };
    }
    const t0 = Date.now();
    const who = `${k.client.username}@${k.client.address}`;
    const left = await this.waitForLeave(k.client.id, opts.timeoutMs, signal);
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    if (left.how === 'violation') {
      throw new Error(`${who} was disconnected for a protocol error ${secs} s after FSD on ${k.ups}, without logging out: it may not be shutting down (check it by hand)`);
    }
    if (left.how === null) {
      if (left.serverStopped) throw new Error(`the NUT server stopped while waiting for ${who} to log out after FSD on ${k.ups}: whether it shut down is not known`);
      throw new Error(`still logged in ${Math.round(opts.timeoutMs / 1000)} s after FSD on ${k.ups}: ${who} did not shut down (check its upsmon / UPS settings)`);
    }
    return { method: 'graceful', after: 'off', detail: `${LEFT_HOW[left.how]} ${secs} s after FSD on ${k.ups}` };
  }

  /**
   * Resolves with how the client left (logout, closed, idle or violation), or null when it is
   * still there after `ms`. The server stopping is not a leave: the wait goes on until the run is
   * aborted (Node-RED stopping: no result, the resumed run checks again) or the time is up.
   */
  private waitForLeave(id: number, ms: number, signal: AbortSignal): Promise<{ how: LeaveReason | null; serverStopped?: boolean }> {
    if (!this.server.isLoggedIn(id)) return Promise.resolve({ how: 'logout' });
    return new Promise((resolve, reject) => {
      let serverStopped = false;
      const done = (v: LeaveReason | null, e?: Error) => {
        clearTimeout(timer);
        this.server.removeListener('logout', onLogout);
        signal.removeEventListener('abort', onAbort);
        if (e) reject(e);
        else resolve({ how: v, serverStopped });
      };
      const onLogout = (c: ClientInfo & { reason: LeaveReason }) => {
        if (c.id !== id) return;
        if (c.reason === 'server-stopped') serverStopped = true;
        else done(c.reason);
      };
      const onAbort = () => done(null, abortError(signal));
      const timer = setTimeout(() => done(null), ms);
      this.server.on('logout', onLogout);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  async close(): Promise<void> {
    this.kinds.clear();
  }
}

function isShutdown(opts: ActOptions): boolean {
  return opts.operation === 'shutdown' || opts.operation === 'stop' || opts.operation === 'host-shutdown';
}

/** An expected entry is a username, an address, or username@address. */
function matches(want: string, c: { username: string; address: string }): boolean {
  const at = want.lastIndexOf('@');
  if (at > 0 && want.slice(0, at) === c.username && want.slice(at + 1).toLowerCase() === c.address.toLowerCase()) return true;
  return want === c.username || want.toLowerCase() === c.address.toLowerCase();
}

function describePending(p: PendingClient): string {
  const who = p.username ? `${p.username}@${p.address}` : p.address;
  if (!p.loginFailed) return `${who} (no LOGIN${p.username ? '' : ', no USERNAME'})`;
  const hint = p.loginFailed.error === 'ACCESS-DENIED' ? ': wrong password or unknown user' : p.loginFailed.error === 'UNKNOWN-UPS' ? ': wrong UPS name' : '';
  return `${who} (LOGIN ${p.loginFailed.ups || '?'} refused: ${p.loginFailed.error}${hint})`;
}
