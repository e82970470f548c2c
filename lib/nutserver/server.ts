/**
 * A NUT server: serves UPSes the package knows over the NUT network protocol (upsd 2.8.0,
 * protocol 1.3), so NAS appliances and stock `upsmon` secondaries can follow this orchestrator.
 *
 * Replies, error codes and their order are upsd 2.8.0's, checked against the real upsd
 * (test/nut-server.nut.test.ts). Differences, on purpose:
 * - one slow, stalled or misbehaving client never affects another: every connection is handled
 *   on its own (upsd 2.8.0 freezes all clients while one sits in a STARTTLS handshake);
 * - a command longer than 8 KiB, more than 64 unanswered commands, or a client that does not read
 *   its replies closes that connection only;
 * - idle connections are closed after a timeout (upsd: 60 s), a cap bounds the connections, and
 *   an optional allow-list (CIDR) turns other addresses away with `ERR ACCESS-DENIED`;
 * - nothing is writable (SET VAR → ERR ACCESS-DENIED for everyone), STARTTLS is not offered
 *   (ERR FEATURE-NOT-CONFIGURED); so GET TYPE never says RW, ENUM or RANGE, also where the
 *   upsd of a NUT source does;
 * - a stale or lost source gives ERR DATA-STALE (upsd: DATA-STALE or DRIVER-NOT-CONNECTED);
 * - FSD survives a Node-RED restart when a store is given (upsd forgets it): a shutdown cut short
 *   by a Node-RED restart must still reach the NAS boxes that have not shut down yet. A restart of
 *   the machine drops it, as upsd does: the UPS went off last, the outage is over.
 */
import * as net from 'node:net';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { UpsState } from '../ups/state';
import { CommandParser, CommandTooLong, MAX_COMMAND_BYTES, quoteValue } from './parse';
import { VarList, cmdDescription, findVar, typeOf, varDescription, varsOf } from './vars';
import { NutUser, mayDo, mayRunInstcmd } from './users';
import { AllowList, allowList, plainAddress } from './allow';
import { FsdLatches, FsdStore, SavedFsd } from './fsd-store';

/** The upsd version this server answers as (VER, server.version): what clients were tested with. */
export const UPSD_VERSION = '2.8.0';
const VER_TEXT = `Network UPS Tools upsd ${UPSD_VERSION} - http://www.networkupstools.org/`;
const HELP_TEXT = 'Commands: HELP VER GET LIST SET INSTCMD LOGIN LOGOUT USERNAME PASSWORD STARTTLS';
const NETVER = '1.3';

/** Instant commands a served UPS supports, and how to run one. */
export interface InstantCommands {
  /** NUT command names the source supports; `signal` aborts when the server stops. */
  list(signal?: AbortSignal): string[] | Promise<string[]>;
  /** Run one; rejects with a message when the source refused or failed. */
  run(cmd: string, param: string | undefined, signal: AbortSignal): Promise<void>;
}

/** One UPS as the server serves it. */
export interface ServedUps {
  /** The NUT name clients use (`ups` for Synology). */
  name: string;
  /** LIST UPS / GET UPSDESC text. */
  description?: string;
  /** The latest state of the source, undefined before the first reading. */
  state(): UpsState | undefined;
  /** A state older than this is stale (ms). Default 15 s (upsd's MAXAGE). */
  maxAgeMs?: number;
  commands?: InstantCommands;
  /** Where GET TYPE / DESC / CMDDESC come from when the source knows better (a NUT source's upsd). */
  meta?: UpstreamMeta;
}

/**
 * TYPE, DESC and CMDDESC as the source's own upsd answers them. Each resolves null when the
 * source has no answer (the server then answers itself); failures also fall back.
 */
export interface UpstreamMeta {
  /** The type words after the variable name (`STRING:32`, `NUMBER`), RW / ENUM / RANGE removed. */
  type(name: string, signal: AbortSignal): Promise<string | null>;
  desc(name: string, signal: AbortSignal): Promise<string | null>;
  cmddesc(name: string, signal: AbortSignal): Promise<string | null>;
}

export interface NutServerOptions {
  /** Address to bind; required (never a silent "all interfaces"). */
  host: string;
  port: number;
  ups: ServedUps[];
  users: NutUser[];
  /** Addresses / CIDR blocks allowed to connect; empty = everyone who can reach the port. */
  allow?: string[];
  /** Close a connection after this long without a command (ms). Default 60 s, as upsd. */
  idleTimeoutMs?: number;
  /** Connections beyond this are closed at once. Default 100. */
  maxConnections?: number;
  /** Longest command in bytes; a longer one closes the connection. Default 8 KiB. */
  maxCommandBytes?: number;
  /** Commands a client may send ahead of their replies. Default 64. */
  maxPendingCommands?: number;
  /** Replies a client may leave unread before it is dropped (bytes). Default 1 MiB. */
  maxUnreadBytes?: number;
  /** Bound for forwarding one instant command (ms). Default 15 s. */
  instcmdTimeoutMs?: number;
  /** Keeps FSD across restarts; without it FSD lives as long as the server. */
  fsdStore?: FsdStore;
  now?: () => number;
}

/** A client that has sent LOGIN for a UPS (a secondary, or a primary). */
export interface ClientInfo {
  /** Connection id, unique for the life of the server. */
  id: number;
  ups: string;
  username: string;
  address: string;
  port: number;
  /** When it logged in (ms since epoch). */
  since: number;
}

/** A client connected without being logged in (a poller such as upsc or Home Assistant, or a refused LOGIN). */
export interface PendingClient {
  id: number;
  address: string;
  port: number;
  /** USERNAME it sent, '' if none. */
  username: string;
  /** When it connected (ms since epoch). */
  since: number;
  /** Its last LOGIN attempt, if any: the UPS it named and the error it got. */
  loginFailed?: { ups: string; error: string };
}

export type LeaveReason = 'logout' | 'closed' | 'idle' | 'violation' | 'server-stopped';

export interface ServerStats {
  connections: number;
  accepted: number;
  refusedAllowList: number;
  refusedCap: number;
  violations: number;
  idleClosed: number;
}

interface Reply {
  lines: string[];
  /** LOGOUT: close after sending. */
  close?: boolean;
}

interface Entry {
  ups: ServedUps;
  name: string;
  fsd: boolean;
  fsdBy: string | null;
  fsdAt: number;
  logins: Set<Connection>;
  /** The variable list of the last state served, reused while state and FSD are unchanged. */
  cache?: { state: UpsState; fsd: boolean; vars: VarList };
}

interface Tracked {
  status: 'PENDING' | 'SUCCESS' | 'ERR FAILED';
  at: number;
}

const TRACKING_KEEP_MS = 5 * 60_000;
const TRACKING_MAX = 1024;
/** After LOGOUT or a FIN: how long a connection may take to finish closing. */
const CLOSE_GRACE_MS = 2000;
/** A client outside the allow-list gets this many answers and seconds before it is hung up on. */
const REFUSED_ANSWERS = 4;
const REFUSED_LINGER_MS = 3000;
/** At most this many refused clients linger at once; more are hung up on at once. */
const REFUSED_MAX = 32;

const err = (code: string): Reply => ({ lines: [`ERR ${code}`] });
const one = (line: string): Reply => ({ lines: [line] });

export class NutServer extends EventEmitter {
  private readonly entries = new Map<string, Entry>();
  private readonly connections = new Set<Connection>();
  private readonly refused = new Set<net.Socket>();
  private readonly tracking = new Map<string, Tracked>();
  private readonly allow: AllowList;
  private readonly now: () => number;
  private server: net.Server | null = null;
  private nextId = 1;
  private stopping = false;
  /** Aborted by close(): ends forwarded commands and upstream requests still in flight. */
  private readonly life = new AbortController();
  private readonly store: FsdStore | undefined;
  /** FSD latches found in the store at start, for the node to report. */
  readonly restoredFsd: Array<{ ups: string; by: string; at: number }> = [];
  /** FSD latches in the store saved before this machine restarted: not raised (the outage is over). */
  readonly droppedFsd: Array<{ ups: string; by: string; at: number }> = [];
  /** Why the saved FSD state could not be read, if it could not. */
  readonly storeError: string | undefined;
  readonly stats: ServerStats = { connections: 0, accepted: 0, refusedAllowList: 0, refusedCap: 0, violations: 0, idleClosed: 0 };
  readonly opts: Required<Omit<NutServerOptions, 'allow' | 'now' | 'fsdStore'>>;

  constructor(options: NutServerOptions) {
    super();
    // Every waiting "NUT secondaries" target listens for logouts.
    this.setMaxListeners(0);
    if (!options.host) throw new Error('the NUT server needs an address to listen on (e.g. 127.0.0.1)');
    this.opts = {
      host: options.host,
      port: options.port,
      ups: options.ups,
      users: options.users,
      idleTimeoutMs: options.idleTimeoutMs ?? 60_000,
      maxConnections: options.maxConnections ?? 100,
      maxCommandBytes: options.maxCommandBytes ?? MAX_COMMAND_BYTES,
      maxPendingCommands: options.maxPendingCommands ?? 64,
      maxUnreadBytes: options.maxUnreadBytes ?? 1024 * 1024,
      instcmdTimeoutMs: options.instcmdTimeoutMs ?? 15_000,
    };
    this.allow = allowList(options.allow ?? []);
    this.now = options.now ?? Date.now;
    for (const ups of options.ups) {
      const key = ups.name.toLowerCase();
      if (this.entries.has(key)) throw new Error(`UPS name "${ups.name}" is served twice (NUT names are not case-sensitive)`);
      this.entries.set(key, { ups, name: ups.name, fsd: false, fsdBy: null, fsdAt: 0, logins: new Set() });
    }
    this.store = options.fsdStore;
    let saved: SavedFsd = { latches: {}, earlierBoot: {} };
    try {
      saved = this.store?.load() ?? saved;
    } catch (e) {
      this.storeError = (e as Error).message;
    }
    for (const [key, latch] of Object.entries(saved.latches)) {
      const e = this.entries.get(key);
      // A latch of a UPS no longer served is dropped at the next write.
      if (!e) continue;
      e.fsd = true;
      e.fsdBy = latch.by;
      e.fsdAt = latch.at;
      this.restoredFsd.push({ ups: e.name, by: latch.by, at: latch.at });
    }
    for (const [key, latch] of Object.entries(saved.earlierBoot)) {
      const e = this.entries.get(key);
      if (e) this.droppedFsd.push({ ups: e.name, by: latch.by, at: latch.at });
    }
    if (Object.keys(saved.earlierBoot).length) {
      // Forget them on disk now, so a later Node-RED restart in this boot has nothing to report.
      try {
        this.store!.save(this.latches());
      } catch (e) {
        this.storeError = `the FSD of before this machine restarted could not be removed from disk (${(e as Error).message}); it is not raised all the same`;
      }
    }
  }

  /** Start listening. Rejects with a message a user can act on (port in use, address not local…). */
  listen(): Promise<{ address: string; port: number }> {
    if (this.server) return Promise.reject(new Error('already listening'));
    const srv = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    this.server = srv;
    const { host, port } = this.opts;
    return new Promise((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException) => {
        this.server = null;
        reject(new Error(listenError(e, host, port)));
      };
      srv.once('error', onError);
      srv.listen({ host, port, exclusive: true }, () => {
        srv.removeListener('error', onError);
        // Errors after listening (e.g. EMFILE on accept) are reported, never thrown at the caller.
        srv.on('error', (e) => this.listenerCount('error') > 0 && this.emit('error', e));
        const a = srv.address() as net.AddressInfo;
        this.emit('listening', { address: a.address, port: a.port });
        resolve({ address: a.address, port: a.port });
      });
    });
  }

  /** The bound address, once listening. */
  get address(): { address: string; port: number } | null {
    const a = this.server?.address();
    return a && typeof a === 'object' ? { address: a.address, port: a.port } : null;
  }

  /** Stop listening and drop every connection. Never rejects; resolves when the port is free. */
  close(): Promise<void> {
    this.stopping = true;
    if (!this.life.signal.aborted) this.life.abort(new Error('the NUT server stopped'));
    const srv = this.server;
    this.server = null;
    for (const c of [...this.connections]) c.destroy('server-stopped');
    for (const s of [...this.refused]) s.destroy();
    if (!srv) return Promise.resolve();
    // Every socket is destroyed above, so close() completes at once; the bound is for the unforeseen.
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, 3000);
      srv.close(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Names of the served UPSes, as configured. */
  get upsNames(): string[] {
    return [...this.entries.values()].map((e) => e.name);
  }

  /** Raise FSD on a served UPS (latched until clearFsd). Returns false if it was already set. */
  setFsd(ups: string, by: string): boolean {
    const e = this.entry(ups);
    if (e.fsd) return false;
    e.fsd = true;
    e.fsdBy = by;
    e.fsdAt = this.now();
    this.persist();
    this.emit('fsd', { ups: e.name, by });
    return true;
  }

  /** Clear FSD. Returns false if it was not set. */
  clearFsd(ups: string): boolean {
    const e = this.entry(ups);
    if (!e.fsd) return false;
    e.fsd = false;
    e.fsdBy = null;
    e.fsdAt = 0;
    this.persist();
    this.emit('fsd-cleared', { ups: e.name });
    return true;
  }

  fsd(ups: string): { set: boolean; by: string | null } {
    const e = this.entry(ups);
    return { set: e.fsd, by: e.fsdBy };
  }

  /** Write every latch; a failure is reported, never thrown (FSD stays raised in memory). */
  private persist(): void {
    if (!this.store) return;
    try {
      this.store.save(this.latches());
    } catch (err) {
      if (this.listenerCount('error') > 0) this.emit('error', new Error(`FSD could not be saved, it will not survive a restart: ${(err as Error).message}`));
    }
  }

  private latches(): FsdLatches {
    const latches: FsdLatches = {};
    for (const [key, e] of this.entries) if (e.fsd) latches[key] = { by: e.fsdBy ?? '', at: e.fsdAt };
    return latches;
  }

  /** Clients logged in to one UPS (or to any), oldest first. */
  clients(ups?: string): ClientInfo[] {
    const entries = ups === undefined ? [...this.entries.values()] : [this.entry(ups)];
    const out: ClientInfo[] = [];
    for (const e of entries) for (const c of e.logins) out.push(c.info(e.name));
    return out.sort((a, b) => a.since - b.since || a.id - b.id);
  }

  /** Connections that are not logged in to any UPS, oldest first. */
  pendingClients(): PendingClient[] {
    const out: PendingClient[] = [];
    for (const c of this.connections) {
      if (c.login) continue;
      out.push({ id: c.id, address: c.address, port: c.port, username: c.username ?? '', since: c.since, ...(c.loginFailed ? { loginFailed: { ...c.loginFailed } } : {}) });
    }
    return out.sort((a, b) => a.since - b.since || a.id - b.id);
  }

  /** Is this connection still logged in? */
  isLoggedIn(id: number): boolean {
    for (const c of this.connections) if (c.id === id) return c.login !== undefined;
    return false;
  }

  numLogins(ups: string): number {
    return this.entry(ups).logins.size;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  private entry(ups: string): Entry {
    const e = this.entries.get(ups.toLowerCase());
    if (!e) throw new Error(`this NUT server does not serve a UPS named "${ups}" (it serves: ${this.upsNames.join(', ') || 'none'})`);
    return e;
  }

  private accept(socket: net.Socket): void {
    const address = plainAddress(socket.remoteAddress ?? '');
    socket.on('error', () => undefined);
    if (this.stopping) {
      socket.destroy();
      return;
    }
    if (!this.allow.allows(address)) {
      this.stats.refusedAllowList++;
      this.emit('refused', { address, reason: 'not in the allow-list' });
      this.turnAway(socket);
      return;
    }
    if (this.connections.size >= this.opts.maxConnections) {
      this.stats.refusedCap++;
      this.emit('refused', { address, reason: `connection limit (${this.opts.maxConnections}) reached` });
      socket.destroy();
      return;
    }
    this.stats.accepted++;
    const conn = new Connection(this, socket, this.nextId++, address, socket.remotePort ?? 0, this.now());
    this.connections.add(conn);
    this.stats.connections = this.connections.size;
  }

  /**
   * A client outside the allow-list: every request it makes is answered `ERR ACCESS-DENIED` (so
   * upsc says "Access denied" rather than "Server disconnected", even after its STARTTLS attempt),
   * for at most a few requests and seconds; then it is hung up on.
   */
  private turnAway(socket: net.Socket): void {
    if (this.refused.size >= REFUSED_MAX) {
      socket.destroy();
      return;
    }
    this.refused.add(socket);
    const parser = new CommandParser(1024);
    let answered = 0;
    const bye = () => socket.destroy();
    const timer = setTimeout(bye, REFUSED_LINGER_MS);
    socket.on('close', () => {
      clearTimeout(timer);
      this.refused.delete(socket);
    });
    socket.on('end', () => socket.end());
    socket.on('data', (chunk: Buffer) => {
      let n: number;
      try {
        n = parser.push(chunk).length;
      } catch {
        return bye();
      }
      for (let i = 0; i < n && answered < REFUSED_ANSWERS; i++, answered++) socket.write('ERR ACCESS-DENIED\n');
      if (answered >= REFUSED_ANSWERS) socket.end();
    });
  }

  /** Called by a connection when its socket is gone. */
  forget(conn: Connection, reason: LeaveReason): void {
    if (!this.connections.delete(conn)) return;
    this.stats.connections = this.connections.size;
    if (reason === 'violation') this.stats.violations++;
    if (reason === 'idle') this.stats.idleClosed++;
    this.leave(conn, reason);
  }

  private leave(conn: Connection, reason: LeaveReason): void {
    const e = conn.login;
    if (!e) return;
    conn.login = undefined;
    e.logins.delete(conn);
    this.emit('logout', { ...conn.info(e.name), reason });
  }

  // ------------------------------------------------------------------------------------------
  // Commands. Each returns its reply, or a promise of it (instant commands go to the source).

  execute(conn: Connection, args: string[]): Reply | Promise<Reply> {
    if (args.length === 0) return err('UNKNOWN-COMMAND');
    const cmd = args[0].toUpperCase();
    const rest = args.slice(1);
    switch (cmd) {
      case 'VER':
        return rest.length ? err('INVALID-ARGUMENT') : one(VER_TEXT);
      case 'NETVER':
      case 'PROTVER':
        return rest.length ? err('INVALID-ARGUMENT') : one(NETVER);
      case 'HELP':
        return rest.length ? err('INVALID-ARGUMENT') : one(HELP_TEXT);
      case 'STARTTLS':
        return err('FEATURE-NOT-CONFIGURED');
      case 'GET':
        return this.get(conn, rest);
      case 'LIST':
        return this.list(rest);
      case 'USERNAME':
        if (rest.length !== 1) return err('INVALID-ARGUMENT');
        if (conn.username !== undefined) return err('ALREADY-SET-USERNAME');
        conn.username = rest[0];
        return one('OK');
      case 'PASSWORD':
        if (rest.length !== 1) return err('INVALID-ARGUMENT');
        if (conn.password !== undefined) return err('ALREADY-SET-PASSWORD');
        conn.password = rest[0];
        return one('OK');
      case 'LOGOUT':
        if (rest.length) return err('INVALID-ARGUMENT');
        this.leave(conn, 'logout');
        return { lines: ['OK Goodbye'], close: true };
      case 'LOGIN': {
        const r = this.loginCommand(conn, rest);
        // Remembered for the dry-run of "NUT secondaries": a NAS whose LOGIN fails is not followed.
        if (r.lines[0].startsWith('ERR ') && r.lines[0] !== 'ERR ALREADY-LOGGED-IN') conn.loginFailed = { ups: rest[0] ?? '', error: r.lines[0].slice(4) };
        return r;
      }
      case 'PRIMARY':
      case 'MASTER':
      case 'FSD':
      case 'SET':
      case 'INSTCMD': {
        if (conn.username === undefined) return err('USERNAME-REQUIRED');
        if (conn.password === undefined) return err('PASSWORD-REQUIRED');
        if (cmd === 'PRIMARY' || cmd === 'MASTER') return this.primary(conn, rest, cmd);
        if (cmd === 'FSD') return this.clientFsd(conn, rest);
        if (cmd === 'SET') return this.set(conn, rest);
        return this.instcmd(conn, rest);
      }
      default:
        return err('UNKNOWN-COMMAND');
    }
  }

  /** upsd's ups_available(): the data must be there and fresh. */
  private stale(e: Entry): Reply | null {
    const s = e.ups.state();
    if (!s || s.comm !== 'ok') return err('DATA-STALE');
    if (this.now() - s.ts > (e.ups.maxAgeMs ?? 15_000)) return err('DATA-STALE');
    return null;
  }

  private vars(e: Entry): VarList {
    const state = e.ups.state()!;
    if (e.cache?.state !== state || e.cache.fsd !== e.fsd) e.cache = { state, fsd: e.fsd, vars: varsOf(state, e.fsd) };
    return e.cache.vars;
  }

  private get(conn: Connection, a: string[]): Reply | Promise<Reply> {
    if (a.length < 1) return err('INVALID-ARGUMENT');
    const sub = a[0].toUpperCase();
    if (sub === 'TRACKING') {
      if (a.length < 2) return one(conn.tracking ? 'ON' : 'OFF');
      if (!conn.tracking) return err('FEATURE-NOT-CONFIGURED');
      return one(this.trackingStatus(a[1]));
    }
    if (a.length < 2) return err('INVALID-ARGUMENT');
    const ups = a[1];
    if (sub === 'NUMLOGINS') {
      const e = this.entries.get(ups.toLowerCase());
      if (!e) return err('UNKNOWN-UPS');
      return this.stale(e) ?? one(`NUMLOGINS ${ups} ${e.logins.size}`);
    }
    if (sub === 'UPSDESC') {
      const e = this.entries.get(ups.toLowerCase());
      if (!e) return err('UNKNOWN-UPS');
      return one(`UPSDESC ${ups} ${e.ups.description ? quoteValue(e.ups.description) : '"Unavailable"'}`);
    }
    if (a.length < 3) return err('INVALID-ARGUMENT');
    const name = a[2];
    if (sub === 'VAR') {
      if (name.toLowerCase().startsWith('server.')) {
        const v = name.toLowerCase();
        if (v === 'server.info') return one(`VAR ${ups} server.info ${quoteValue(VER_TEXT)}`);
        if (v === 'server.version') return one(`VAR ${ups} server.version ${quoteValue(UPSD_VERSION)}`);
        return err('VAR-NOT-SUPPORTED');
      }
    }
    if (sub === 'VAR' || sub === 'TYPE' || sub === 'DESC' || sub === 'CMDDESC') {
      const e = this.entries.get(ups.toLowerCase());
      if (!e) return err('UNKNOWN-UPS');
      const stale = this.stale(e);
      if (stale) return stale;
      const meta = e.ups.meta;
      if (sub === 'DESC' || sub === 'CMDDESC') {
        const local = sub === 'DESC' ? varDescription(name) : cmdDescription(name);
        const answer = (text: string) => one(`${sub} ${ups} ${name} ${quoteValue(text)}`);
        if (!meta) return answer(local);
        return this.upstream(() => (sub === 'DESC' ? meta.desc(name, this.life.signal) : meta.cmddesc(name, this.life.signal))).then((t) => answer(t ?? local));
      }
      const value = findVar(this.vars(e), name);
      if (value === undefined) return err('VAR-NOT-SUPPORTED');
      if (sub === 'TYPE') {
        const answer = (type: string) => one(`TYPE ${ups} ${name} ${type}`);
        if (!meta) return answer(typeOf(name, value));
        return this.upstream(() => meta.type(name, this.life.signal)).then((t) => answer(t || typeOf(name, value)));
      }
      return one(`VAR ${ups} ${name} ${quoteValue(value)}`);
    }
    return err('INVALID-ARGUMENT');
  }

  /** An upstream answer, or null when it fails: the caller answers itself then. */
  private upstream(fn: () => Promise<string | null>): Promise<string | null> {
    if (this.life.signal.aborted) return Promise.resolve(null);
    try {
      return fn().catch(() => null);
    } catch {
      return Promise.resolve(null);
    }
  }

  private list(a: string[]): Reply | Promise<Reply> {
    if (a.length < 1) return err('INVALID-ARGUMENT');
    const sub = a[0].toUpperCase();
    if (sub === 'UPS') {
      const rows = [...this.entries.values()].map((e) => `UPS ${e.name} ${e.ups.description ? quoteValue(e.ups.description) : '"Description unavailable"'}`);
      return { lines: ['BEGIN LIST UPS', ...rows, 'END LIST UPS'] };
    }
    if (a.length < 2) return err('INVALID-ARGUMENT');
    const ups = a[1];
    const known = ['VAR', 'RW', 'CMD', 'CLIENT'].includes(sub);
    const needsVar = sub === 'ENUM' || sub === 'RANGE';
    if (!known && !(needsVar && a.length >= 3)) return err('INVALID-ARGUMENT');
    const e = this.entries.get(ups.toLowerCase());
    if (!e) return err('UNKNOWN-UPS');
    if (sub === 'CLIENT') {
      const rows = [...e.logins].map((c) => `CLIENT ${e.name} ${c.address}`);
      return { lines: [`BEGIN LIST CLIENT ${ups}`, ...rows, `END LIST CLIENT ${ups}`] };
    }
    const stale = this.stale(e);
    if (stale) return stale;
    if (sub === 'VAR') {
      const rows = this.vars(e).map(([k, v]) => `VAR ${ups} ${k} ${quoteValue(v)}`);
      return { lines: [`BEGIN LIST VAR ${ups}`, ...rows, `END LIST VAR ${ups}`] };
    }
    if (sub === 'RW') return { lines: [`BEGIN LIST RW ${ups}`, `END LIST RW ${ups}`] };
    if (sub === 'CMD') {
      return Promise.resolve().then(() => e.ups.commands?.list(this.life.signal) ?? []).then(
        (cmds) => ({ lines: [`BEGIN LIST CMD ${ups}`, ...cmds.map((c) => `CMD ${ups} ${c}`), `END LIST CMD ${ups}`] }),
        () => ({ lines: [`BEGIN LIST CMD ${ups}`, `END LIST CMD ${ups}`] }),
      );
    }
    // ENUM / RANGE: nothing is writable, so the lists are empty for every variable that exists.
    const name = a[2];
    if (findVar(this.vars(e), name) === undefined) return err('VAR-NOT-SUPPORTED');
    return { lines: [`BEGIN LIST ${sub} ${ups} ${name}`, `END LIST ${sub} ${ups} ${name}`] };
  }

  private loginCommand(conn: Connection, a: string[]): Reply {
    if (conn.username === undefined) return err('USERNAME-REQUIRED');
    if (conn.password === undefined) return err('PASSWORD-REQUIRED');
    return this.login(conn, a);
  }

  private login(conn: Connection, a: string[]): Reply {
    if (a.length !== 1) return err('INVALID-ARGUMENT');
    if (conn.login) return err('ALREADY-LOGGED-IN');
    const e = this.entries.get(a[0].toLowerCase());
    if (!e) return err('UNKNOWN-UPS');
    if (!mayDo(this.opts.users, conn.username, conn.password, 'LOGIN')) return err('ACCESS-DENIED');
    conn.login = e;
    conn.loginAt = this.now();
    e.logins.add(conn);
    this.emit('login', conn.info(e.name));
    return one('OK');
  }

  private primary(conn: Connection, a: string[], cmd: 'PRIMARY' | 'MASTER'): Reply {
    if (a.length !== 1) return err('INVALID-ARGUMENT');
    if (!this.entries.has(a[0].toLowerCase())) return err('UNKNOWN-UPS');
    if (!mayDo(this.opts.users, conn.username, conn.password, 'MASTER')) return err('ACCESS-DENIED');
    return one(`OK ${cmd}-GRANTED`);
  }

  private clientFsd(conn: Connection, a: string[]): Reply {
    if (a.length !== 1) return err('INVALID-ARGUMENT');
    const e = this.entries.get(a[0].toLowerCase());
    if (!e) return err('UNKNOWN-UPS');
    if (!mayDo(this.opts.users, conn.username, conn.password, 'FSD')) return err('ACCESS-DENIED');
    this.setFsd(e.name, `${conn.username}@${conn.address}`);
    return one('OK FSD-SET');
  }

  private set(conn: Connection, a: string[]): Reply {
    if (a.length < 2) return err('INVALID-ARGUMENT');
    const sub = a[0].toUpperCase();
    if (sub === 'VAR') {
      if (a.length < 4) return err('INVALID-ARGUMENT');
      const e = this.entries.get(a[1].toLowerCase());
      if (!e) return err('UNKNOWN-UPS');
      return this.stale(e) ?? (mayDo(this.opts.users, conn.username, conn.password, 'SET') ? err('READONLY') : err('ACCESS-DENIED'));
    }
    if (sub === 'TRACKING') {
      const v = a[1].toUpperCase();
      if (v !== 'ON' && v !== 'OFF') return err('INVALID-ARGUMENT');
      conn.tracking = v === 'ON';
      return one('OK');
    }
    return err('INVALID-ARGUMENT');
  }

  private async instcmd(conn: Connection, a: string[]): Promise<Reply> {
    if (a.length < 2) return err('INVALID-ARGUMENT');
    const e = this.entries.get(a[0].toLowerCase());
    if (!e) return err('UNKNOWN-UPS');
    const stale = this.stale(e);
    if (stale) return stale;
    const cmds = e.ups.commands;
    let supported: string[] = [];
    try {
      supported = cmds ? await cmds.list(this.life.signal) : [];
    } catch {
      supported = [];
    }
    const cmd = supported.find((c) => c.toLowerCase() === a[1].toLowerCase());
    if (!cmds || !cmd) return err('CMD-NOT-SUPPORTED');
    if (!mayRunInstcmd(this.opts.users, conn.username, conn.password, cmd)) return err('ACCESS-DENIED');
    // upsd passes a value only when exactly one follows the command name.
    const param = a.length === 3 ? a[2] : undefined;
    const by = `${conn.username}@${conn.address}`;
    const run = this.runInstcmd(e, cmds, cmd, param, by);
    if (conn.tracking) {
      const id = randomUUID().toUpperCase();
      this.track(id, 'PENDING');
      run.then((ok) => this.track(id, ok ? 'SUCCESS' : 'ERR FAILED'));
      return one(`OK TRACKING ${id}`);
    }
    return (await run) ? one('OK') : err('INSTCMD-FAILED');
  }

  /** Run an instant command within its timeout; resolves true on success, never rejects. */
  private async runInstcmd(e: Entry, cmds: InstantCommands, cmd: string, param: string | undefined, by: string): Promise<boolean> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new Error(`no result within ${this.opts.instcmdTimeoutMs} ms`)), this.opts.instcmdTimeoutMs);
    // close() ends the command too: neither the timer nor the upstream connection outlives the server.
    const onStop = () => ac.abort(this.life.signal.reason);
    if (this.life.signal.aborted) onStop();
    else this.life.signal.addEventListener('abort', onStop, { once: true });
    try {
      await Promise.race([
        cmds.run(cmd, param, ac.signal),
        new Promise<never>((_, reject) => ac.signal.addEventListener('abort', () => reject(ac.signal.reason), { once: true })),
      ]);
      this.emit('instcmd', { ups: e.name, cmd, param, by, ok: true });
      return true;
    } catch (x) {
      this.emit('instcmd', { ups: e.name, cmd, param, by, ok: false, error: (x as Error)?.message ?? String(x) });
      return false;
    } finally {
      clearTimeout(timer);
      this.life.signal.removeEventListener('abort', onStop);
      if (!ac.signal.aborted) ac.abort();
    }
  }



  private track(id: string, status: Tracked['status']): void {
    const now = this.now();
    this.tracking.set(id, { status, at: now });
    for (const [k, v] of this.tracking) {
      if (this.tracking.size <= TRACKING_MAX && now - v.at < TRACKING_KEEP_MS) break;
      this.tracking.delete(k);
    }
  }

  private trackingStatus(id: string): string {
    const t = this.tracking.get(id.toUpperCase());
    return t ? t.status : 'ERR UNKNOWN';
  }
}

function listenError(e: NodeJS.ErrnoException, host: string, port: number): string {
  const where = `${host}:${port}`;
  switch (e.code) {
    case 'EADDRINUSE':
      return `${where} is already in use (another NUT server such as upsd, or a second NUT server node?): choose another port`;
    case 'EACCES':
      return `not allowed to listen on ${where} (ports below 1024 need privileges): choose a port above 1023, e.g. 3493`;
    case 'EADDRNOTAVAIL':
      return `${host} is not an address of this machine: use 127.0.0.1, one of its own addresses, or 0.0.0.0 for all interfaces`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `"${host}" could not be resolved to a local address`;
    default:
      return `cannot listen on ${where}: ${e.message}`;
  }
}

/**
 * One client connection. Bytes are parsed as they come; commands run one at a time in order and
 * each reply is written before the next command starts, so an instant command in flight holds
 * back only this client's later commands. When the client stops reading its replies, reading
 * from it stops too (backpressure); the idle timeout then ends it.
 */
export class Connection {
  username: string | undefined;
  password: string | undefined;
  login: Entry | undefined;
  loginAt = 0;
  loginFailed: { ups: string; error: string } | undefined;
  tracking = false;
  private readonly parser: CommandParser;
  private readonly queue: string[][] = [];
  private busy = false;
  private peerEnded = false;
  private closing = false;
  private gone = false;

  constructor(
    private readonly server: NutServer,
    private readonly socket: net.Socket,
    readonly id: number,
    readonly address: string,
    readonly port: number,
    readonly since: number,
  ) {
    this.parser = new CommandParser(server.opts.maxCommandBytes);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    socket.setTimeout(server.opts.idleTimeoutMs);
    socket.on('timeout', () => {
      // An instant command in flight has its own bound; the client is waiting for it, not idle.
      if (!this.busy) this.destroy('idle');
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => {
      socket.resume();
      this.pump();
    });
    socket.on('end', () => {
      this.peerEnded = true;
      this.pump();
    });
    socket.on('close', () => {
      this.gone = true;
      this.server.forget(this, 'closed');
    });
  }

  info(ups: string): ClientInfo {
    return { id: this.id, ups, username: this.username ?? '', address: this.address, port: this.port, since: this.loginAt || this.since };
  }

  destroy(reason: LeaveReason): void {
    if (this.gone) return;
    this.gone = true;
    this.server.forget(this, reason);
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.closing || this.gone) return;
    let commands: string[][];
    try {
      commands = this.parser.push(chunk);
    } catch (e) {
      if (e instanceof CommandTooLong) return this.destroy('violation');
      throw e;
    }
    for (const c of commands) this.queue.push(c);
    if (this.queue.length > this.server.opts.maxPendingCommands) return this.destroy('violation');
    this.pump();
  }

  /** Run queued commands in order until one is asynchronous or the client stops reading. */
  private pump(): void {
    while (!this.busy && !this.closing && !this.gone && this.queue.length) {
      if (this.socket.writableNeedDrain) {
        this.socket.pause();
        return;
      }
      const args = this.queue.shift()!;
      let reply: Reply | Promise<Reply>;
      try {
        reply = this.server.execute(this, args);
      } catch {
        reply = err('UNKNOWN');
      }
      if (reply instanceof Promise) {
        this.busy = true;
        reply
          .catch(() => err('UNKNOWN'))
          .then((r) => {
            this.busy = false;
            this.write(r);
            this.pump();
          });
        return;
      }
      this.write(reply);
    }
    if (this.peerEnded && !this.busy && !this.closing && !this.gone && this.queue.length === 0) this.finish();
  }

  private write(reply: Reply): void {
    if (this.gone || this.closing) return;
    this.socket.write(reply.lines.join('\n') + '\n');
    if (this.socket.writableLength > this.server.opts.maxUnreadBytes) return this.destroy('violation');
    if (reply.close) this.finish();
  }

  /** Send what is buffered, close our side, and make sure the socket is gone soon after. */
  private finish(): void {
    if (this.closing) return;
    this.closing = true;
    this.socket.end();
    setTimeout(() => this.destroy('closed'), CLOSE_GRACE_MS).unref();
  }
}
