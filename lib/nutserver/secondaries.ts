/**
 * The "NUT secondaries" action: tell the NUT clients of a served UPS to shut down, the way a NUT
 * primary does (upsmon's forceshutdown + HOSTSYNC): raise FSD on the UPS, then wait until every
 * client that was logged in has logged out (NUMLOGINS drops) or the timeout passes.
 *
 * Targets, per served UPS:
 * - the UPS itself (name = its NUT name): shutdown raises FSD, startup clears it (a NAS that boots
 *   while FSD is still raised would shut straight down again); power `off` = FSD raised;
 * - every logged-in client (name `user@address`, tagged with the UPS name): shutdown raises FSD if
 *   needed and waits for that client to leave; power `on` = logged in.
 * One result per client says who left (and after how long) and who did not. Dry-run lists them.
 */
import { ActOptions, ActOutcome, ActionDriver, Target, abortError } from '../actions/contract';
import { ClientInfo, LeaveReason, NutServer } from './server';

export interface SecondariesOptions {
  /** NUT names to act on; empty = every UPS the server serves. */
  ups: string[];
}

type Kind = { kind: 'ups'; ups: string } | { kind: 'client'; ups: string; client: ClientInfo };

const LEFT_HOW: Record<LeaveReason, string> = {
  logout: 'logged out',
  closed: 'disconnected',
  idle: 'went silent and was disconnected',
  violation: 'was disconnected for a protocol error',
  'server-stopped': 'was disconnected (server stopped)',
};

export class NutSecondariesDriver implements ActionDriver {
  /** Raising FSD again and waiting again is harmless. */
  readonly repeatable = true;
  private readonly kinds = new Map<string, Kind>();

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

  async list(signal: AbortSignal): Promise<Target[]> {
    if (signal.aborted) throw abortError(signal);
    if (!this.server.address) throw new Error('the NUT server is not listening (see its configuration and the Node-RED log)');
    const upsNames = this.upsList();
    const targets: Target[] = [];
    this.kinds.clear();
    const names = new Set<string>();
    for (const ups of upsNames) {
      const fsd = this.server.fsd(ups);
      const clients = this.server.clients(ups);
      const t: Target = {
        id: `ups:${ups}`,
        name: ups,
        tags: ['ups'],
        power: fsd.set ? 'off' : 'on',
        info: { kind: 'ups', fsd: fsd.set, fsdBy: fsd.by, secondaries: clients.length },
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
    return targets;
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
    if (isShutdown(opts)) {
      if (k.kind === 'ups') return `would raise FSD on ${k.ups} (${t.info?.secondaries ?? 0} logged-in clients would be told to shut down)`;
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
    const raised = this.server.setFsd(k.ups, 'NUT secondaries action');
    if (k.kind === 'ups') {
      const n = this.server.numLogins(k.ups);
      return { method: raised ? 'graceful' : 'already', after: 'off', detail: `FSD ${raised ? 'raised' : 'already raised'} on ${k.ups}; ${n} logged-in client${n === 1 ? '' : 's'}` };
    }
    const t0 = Date.now();
    const how = await this.waitForLeave(k.client.id, opts.timeoutMs, signal);
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    if (how === null) {
      throw new Error(`still logged in ${Math.round(opts.timeoutMs / 1000)} s after FSD on ${k.ups}: ${k.client.username}@${k.client.address} did not shut down (check its upsmon / UPS settings)`);
    }
    return { method: 'graceful', after: 'off', detail: `${LEFT_HOW[how]} ${secs} s after FSD on ${k.ups}` };
  }

  /** Resolves with how the client left, or null when it is still there after `ms`. */
  private waitForLeave(id: number, ms: number, signal: AbortSignal): Promise<LeaveReason | null> {
    if (!this.server.isLoggedIn(id)) return Promise.resolve('logout');
    return new Promise((resolve, reject) => {
      const done = (v: LeaveReason | null, e?: Error) => {
        clearTimeout(timer);
        this.server.removeListener('logout', onLogout);
        signal.removeEventListener('abort', onAbort);
        if (e) reject(e);
        else resolve(v);
      };
      const onLogout = (c: ClientInfo & { reason: LeaveReason }) => {
        if (c.id === id) done(c.reason);
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
