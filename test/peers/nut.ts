/**
 * NutPeer: runs a private, real NUT stack (dummy-ups drivers + upsd) on loopback for the test suite.
 *
 * Facts this relies on (NUT 2.8.0, Debian 12):
 * - /lib/nut/upsd and /lib/nut/dummy-ups are the real binaries (/sbin/upsd is a wrapper that reads
 *   /etc/nut/nut.conf); NUT_CONFPATH / NUT_STATEPATH / NUT_ALTPIDPATH point them at a private folder.
 * - With -F neither writes a PID file; the driver listens on <STATEPATH>/dummy-ups-<ups>.
 * - dummy-once re-reads the .dev file only when its mtime changes (whole seconds), and never drops a
 *   variable that disappears from the file: removing variables needs a driver restart.
 * - dummy-ups does not parse `"` or `\` inside values; such values are rejected here.
 * - upsd answers ERR DRIVER-NOT-CONNECTED at once when a driver dies, ERR DATA-STALE about MAXAGE s
 *   after a driver stops answering, and needs ~1-3 s to (re)connect to a (re)started driver.
 * - FSD is latched inside upsd until upsd restarts.
 *
 * Only node built-ins are used. Children are spawned directly (no shell, no setsid), their PIDs are
 * kept, and a process 'exit' hook SIGKILLs whatever is still alive. Nothing is ever killed by name.
 */
import * as cp from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export const UPSD_BIN = '/lib/nut/upsd';
export const DRIVER_BIN = '/lib/nut/dummy-ups';
const PACKAGES = 'nut-server nut-client';

export interface NutPeerOptions {
  /** upsd TCP port on 127.0.0.1. Default: a free port (bind 127.0.0.1:0, close). */
  port?: number;
  /** UPS name -> initial .dev variables (dummy-once mode). */
  ups?: Record<string, Record<string, string>>;
  /** upsd MAXAGE in seconds. Default 5. */
  maxAge?: number;
  /** Default true; false = write the config and start the drivers only. */
  startUpsd?: boolean;
}

export const DEFAULT_UPS_VARS: Readonly<Record<string, string>> = Object.freeze({
  'device.mfr': 'Simulated',
  'device.model': 'SimUPS 1500',
  'device.type': 'ups',
  'ups.mfr': 'Simulated',
  'ups.model': 'SimUPS 1500',
  'ups.status': 'OL',
  'battery.charge': '100',
  'battery.charge.low': '20',
  'battery.runtime': '3600',
  'battery.runtime.low': '120',
  'input.voltage': '230.0',
  'output.voltage': '230.0',
  'ups.load': '25',
  'ups.realpower': '150',
  'ups.temperature': '30.5',
});

class PortInUseError extends Error {}

/** An `ERR <code>` answer from upsd. */
export class NutError extends Error {
  constructor(readonly code: string, readonly request: string) {
    super(`ERR ${code} (${request})`);
    this.name = 'NutError';
  }
}

const START_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 5_000;
const DRIVER_SOCKET_TIMEOUT_MS = 10_000;
const UPSD_PORT_TIMEOUT_MS = 10_000;
const UPSD_READY_TIMEOUT_MS = 15_000;
const GET_TIMEOUT_MS = 5_000;
const LOG_TAIL_LINES = 25;
const TAILS_MARK = '\n--- log ';

const UPS_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;
const VAR_NAME_RE = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

// ---------------------------------------------------------------------------------------------
// Process-wide safety net: every child still alive at exit is SIGKILLed, every dir removed.

const liveChildren = new Map<number, string>(); // pid -> description
const liveDirs = new Set<string>();
let hooksInstalled = false;

function killAllSync(): void {
  for (const pid of liveChildren.keys()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  liveChildren.clear();
  for (const dir of liveDirs) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
  liveDirs.clear();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killAllSync);
  // On a fatal signal Node exits without running 'exit' handlers. Clean up, and if nobody else
  // handles the signal, restore the default behaviour (terminate by that signal).
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      killAllSync();
      if (process.listenerCount(sig) === 1) {
        process.removeListener(sig, handler);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, handler);
  }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('could not determine a free port'))));
    });
  });
}

function tailFile(file: string, lines = LOG_TAIL_LINES): string {
  try {
    const text = fs.readFileSync(file, 'utf8');
    const all = text.split('\n');
    if (all.length && all[all.length - 1] === '') all.pop();
    return all.slice(-lines).join('\n');
  } catch (e) {
    return `(cannot read ${file}: ${(e as Error).message})`;
  }
}

function canConnect(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean): void => {
      s.removeAllListeners();
      s.on('error', () => undefined);
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Send one request line to upsd and collect answer lines until `isLast(line)` returns true. */
function nutRequestLines(
  host: string,
  port: number,
  line: string,
  isLast: (l: string) => boolean,
  timeoutMs = GET_TIMEOUT_MS,
): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    let buf = '';
    const lines: string[] = [];
    let settled = false;
    const finish = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.removeAllListeners('data');
      s.on('error', () => undefined);
      if (err) s.destroy();
      else s.end();
      if (err) reject(err);
      else resolve(lines);
    };
    const timer = setTimeout(
      () => finish(new Error(`timeout after ${timeoutMs} ms waiting for upsd ${host}:${port} to answer "${line}"`)),
      timeoutMs,
    );
    s.setEncoding('utf8');
    s.once('connect', () => s.write(line + '\n'));
    s.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const l = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        lines.push(l);
        if (isLast(l)) return finish(null);
      }
    });
    s.once('error', (e) => finish(e));
    s.once('close', () => finish(new Error(`upsd ${host}:${port} closed the connection while answering "${line}"`)));
  });
}

const unquote = (v: string): string => v.replace(/\\(.)/g, '$1');
/** dummy-ups joins whitespace-separated words with single spaces. */
const normalize = (v: string): string => v.trim().replace(/\s+/g, ' ');

function checkValue(v: string, what: string): void {
  if (typeof v !== 'string') throw new TypeError(`${what}: value must be a string`);
  if (/["\\\r\n]/.test(v)) {
    throw new Error(`${what}: dummy-ups cannot represent values containing '"', '\\' or newlines`);
  }
}

// ---------------------------------------------------------------------------------------------

interface Proc {
  readonly label: string;
  readonly child: cp.ChildProcess;
  readonly pid: number;
  readonly logFile: string;
  readonly exited: Promise<void>;
  exit?: { code: number | null; signal: NodeJS.Signals | null };
  expectExit: boolean;
}

interface DriverState {
  vars: Map<string, string>;
  devFile: string;
  logFile: string;
  proc?: Proc;
  paused: boolean;
}

export class NutPeer {
  readonly host = '127.0.0.1' as const;
  readonly users = Object.freeze({
    admin: Object.freeze({ username: 'admin' as const, password: 'adminpass' as const }),
    monitor: Object.freeze({ username: 'monuser' as const, password: 'monpass' as const }),
  });
  readonly maxAge: number;

  private _port: number;
  private readonly drivers = new Map<string, DriverState>();
  private upsd?: Proc;
  private readonly upsdLog: string;
  private readonly peerLog: string;
  private readonly env: NodeJS.ProcessEnv;
  private stopping?: Promise<void>;

  private constructor(readonly dir: string, port: number, maxAge: number, ups: Record<string, Record<string, string>>) {
    this._port = port;
    this.maxAge = maxAge;
    this.upsdLog = path.join(dir, 'upsd.log');
    this.peerLog = path.join(dir, 'peer.log');
    this.env = {
      ...process.env,
      NUT_CONFPATH: path.join(dir, 'etc'),
      NUT_STATEPATH: path.join(dir, 'state'),
      NUT_ALTPIDPATH: path.join(dir, 'state'),
    };
    delete this.env.NUT_DEBUG_LEVEL;
    for (const [name, vars] of Object.entries(ups)) {
      this.drivers.set(name, {
        vars: new Map(Object.entries(vars)),
        devFile: path.join(dir, `${name}.dev`),
        logFile: path.join(dir, `driver-${name}.log`),
        paused: false,
      });
    }
  }

  get port(): number {
    return this._port;
  }

  /** Names of the configured UPSes. */
  get upsNames(): string[] {
    return [...this.drivers.keys()];
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle

  static async start(opts: NutPeerOptions = {}): Promise<NutPeer> {
    NutPeer.checkEnvironment();
    const ups = opts.ups ?? { sim: { ...DEFAULT_UPS_VARS } };
    const names = Object.keys(ups);
    if (names.length === 0) throw new Error('NutPeer: at least one UPS is required');
    for (const name of names) {
      if (!UPS_NAME_RE.test(name)) throw new Error(`NutPeer: invalid UPS name ${JSON.stringify(name)}`);
      for (const [k, v] of Object.entries(ups[name])) {
        if (!VAR_NAME_RE.test(k)) throw new Error(`NutPeer: invalid variable name ${JSON.stringify(k)} for ${name}`);
        checkValue(v, `NutPeer: ${name} ${k}`);
      }
    }
    const maxAge = opts.maxAge ?? 5;
    if (!Number.isInteger(maxAge) || maxAge < 1) throw new Error(`NutPeer: maxAge must be a positive integer`);
    if (opts.port !== undefined && (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535)) {
      throw new Error(`NutPeer: invalid port ${opts.port}`);
    }

    installHooks();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-nut-'));
    liveDirs.add(dir);
    const peer = new NutPeer(dir, opts.port ?? (await freePort()), maxAge, ups);
    const deadline = Date.now() + START_TIMEOUT_MS;
    try {
      peer.writeConfig();
      for (const name of names) peer.writeDev(name);
      // Drivers first: upsd connects to their sockets when it starts.
      await Promise.all(names.map((n) => peer.spawnDriver(n, deadline)));
      if (opts.startUpsd !== false) {
        // A port picked by "bind :0 and close" can be taken by someone else in between: retry with
        // a fresh one when the port was not chosen by the caller.
        for (let attempt = 1; ; attempt++) {
          try {
            await peer.spawnUpsdAndWait(deadline);
            break;
          } catch (e) {
            const bindFailure =
              e instanceof PortInUseError || (!peer.upsd && /no listening interface|not listening/i.test(tailFile(peer.upsdLog, 8)));
            if (opts.port !== undefined || attempt >= 3 || !bindFailure) throw e;
            peer.note(`upsd could not listen on ${peer._port}; retrying with another port`);
            peer._port = await freePort();
            peer.writeConfig();
          }
        }
      }
      return peer;
    } catch (e) {
      const msg = `NutPeer.start failed: ${(e as Error).message}\n${peer.logTails()}`;
      await peer.stop().catch(() => undefined);
      throw new Error(msg);
    }
  }

  private static checkEnvironment(): void {
    const hint = `Install the Debian packages: apt-get install ${PACKAGES}`;
    if (process.platform !== 'linux') throw new Error(`NutPeer needs Linux with NUT (${PACKAGES}); platform is ${process.platform}`);
    if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
      throw new Error(`NutPeer must run as root (it starts ${UPSD_BIN} and ${DRIVER_BIN} with -u root). ${hint}`);
    }
    for (const bin of [UPSD_BIN, DRIVER_BIN]) {
      try {
        fs.accessSync(bin, fs.constants.X_OK);
      } catch {
        throw new Error(`NutPeer: ${bin} not found or not executable. ${hint}`);
      }
    }
  }

  /** SIGTERM every child by PID, wait <= 5 s, SIGKILL; remove the temp dir. Idempotent. */
  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = (async () => {
        const procs: Proc[] = [];
        if (this.upsd) procs.push(this.upsd);
        for (const d of this.drivers.values()) if (d.proc) procs.push(d.proc);
        const results = await Promise.allSettled(procs.map((p) => this.terminate(p)));
        this.upsd = undefined;
        for (const d of this.drivers.values()) {
          d.proc = undefined;
          d.paused = false;
        }
        const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        const tails = failures.length ? this.logTails() : '';
        fs.rmSync(this.dir, { recursive: true, force: true });
        liveDirs.delete(this.dir);
        if (failures.length) {
          throw new Error(`NutPeer.stop: ${failures.map((f) => (f.reason as Error).message).join('; ')}\n${tails}`);
        }
      })();
    }
    return this.stopping;
  }

  /** Restart drivers and upsd together (clears the FSD latch; upsd-only restarts can upset dummy-ups 2.8.0). */
  async restart(): Promise<void> {
    return this.guard('restart', async () => {
      const deadline = Date.now() + START_TIMEOUT_MS;
      await this.stopUpsd();
      await Promise.all([...this.drivers.values()].map((d) => (d.proc ? this.terminate(d.proc) : undefined)));
      for (const d of this.drivers.values()) {
        d.proc = undefined;
        d.paused = false;
      }
      await Promise.all(this.upsNames.map((n) => this.spawnDriver(n, deadline)));
      await this.spawnUpsdAndWait(deadline);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Data

  /** Atomically rewrite the .dev file with the merged variables; visible through upsd in ~1 s. */
  async setVars(ups: string, vars: Record<string, string>): Promise<void> {
    this.assertNotStopped();
    const d = this.driver(ups);
    for (const [k, v] of Object.entries(vars)) {
      if (!VAR_NAME_RE.test(k)) throw new Error(`setVars(${ups}): invalid variable name ${JSON.stringify(k)}`);
      checkValue(v, `setVars(${ups}, ${k})`);
    }
    for (const [k, v] of Object.entries(vars)) d.vars.set(k, v);
    this.writeDev(ups);
  }

  /**
   * Remove variables. dummy-ups never forgets a variable that vanishes from the .dev file, so this
   * rewrites the file and then restarts that UPS's driver (if it was running), waiting until upsd
   * serves it again. Expect a short DRIVER-NOT-CONNECTED window (~1-3 s).
   */
  async removeVars(ups: string, names: string[]): Promise<void> {
    return this.guard('removeVars', async () => {
      const d = this.driver(ups);
      let changed = false;
      for (const n of names) changed = d.vars.delete(n) || changed;
      if (!changed) return;
      this.writeDev(ups);
      if (d.proc && !d.proc.exit) {
        await this.killDriver(ups);
        await this.startDriver(ups);
      }
    });
  }

  /** One `GET VAR` over a short-lived connection (5 s timeout). Rejects with NutError on `ERR ...`. */
  async get(ups: string, variable: string): Promise<string> {
    const req = `GET VAR ${ups} ${variable}`;
    const [answer] = await nutRequestLines(this.host, this._port, req, () => true, GET_TIMEOUT_MS);
    const m = /^VAR (\S+) (\S+) "(.*)"$/.exec(answer);
    if (m) return unquote(m[3]);
    const err = /^ERR (\S+)/.exec(answer);
    if (err) throw new NutError(err[1], req);
    throw new Error(`unexpected answer to "${req}": ${JSON.stringify(answer)}`);
  }

  /** All variables of one UPS (`LIST VAR`, one short-lived connection). Rejects with NutError on `ERR ...`. */
  async list(ups: string, timeoutMs = GET_TIMEOUT_MS): Promise<Record<string, string>> {
    const req = `LIST VAR ${ups}`;
    const isLast = (l: string): boolean => l.startsWith('ERR ') || l.startsWith('END LIST VAR');
    const lines = await nutRequestLines(this.host, this._port, req, isLast, timeoutMs);
    const out: Record<string, string> = {};
    for (const l of lines) {
      const err = /^ERR (\S+)/.exec(l);
      if (err) throw new NutError(err[1], req);
      const m = /^VAR (\S+) (\S+) "(.*)"$/.exec(l);
      if (m) out[m[2]] = unquote(m[3]);
    }
    return out;
  }

  /** Poll every 50 ms until `variable` equals `value`; resolves with the ms elapsed. */
  async waitFor(ups: string, variable: string, value: string, timeoutMs = 5000): Promise<number> {
    const t0 = Date.now();
    let last = '(no answer yet)';
    for (;;) {
      try {
        const v = await this.get(ups, variable);
        if (v === value) return Date.now() - t0;
        last = JSON.stringify(v);
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() - t0 >= timeoutMs) {
        throw new Error(`waitFor ${ups} ${variable} == ${JSON.stringify(value)}: still ${last} after ${timeoutMs} ms`);
      }
      await sleep(50);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Faults

  /** SIGKILL the dummy-ups process of that UPS and wait until it is gone. */
  async killDriver(ups: string): Promise<void> {
    return this.guard('killDriver', async () => {
      const d = this.driver(ups);
      const p = d.proc;
      if (!p) return;
      p.expectExit = true;
      if (!p.exit) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      if (!(await this.waitExit(p, STOP_GRACE_MS))) {
        throw new Error(`NutPeer.killDriver(${ups}): pid ${p.pid} still alive ${STOP_GRACE_MS} ms after SIGKILL`);
      }
      d.proc = undefined;
      d.paused = false;
    });
  }

  /** Start the driver of that UPS; waits for its socket, and (if upsd runs) until upsd serves it. */
  async startDriver(ups: string): Promise<void> {
    return this.guard('startDriver', async () => {
      const d = this.driver(ups);
      if (d.proc && !d.proc.exit) return;
      const deadline = Date.now() + START_TIMEOUT_MS;
      await this.spawnDriver(ups, deadline);
      if (this.upsd && !this.upsd.exit) await this.waitUpsServed(ups, deadline);
    });
  }

  /** SIGSTOP the driver: upsd answers ERR DATA-STALE after about MAXAGE (+ up to 2) s. */
  pauseDriver(ups: string): void {
    this.assertNotStopped();
    const p = this.runningDriver(ups);
    process.kill(p.pid, 'SIGSTOP');
    this.driver(ups).paused = true;
  }

  /** SIGCONT the driver. */
  resumeDriver(ups: string): void {
    this.assertNotStopped();
    const p = this.runningDriver(ups);
    process.kill(p.pid, 'SIGCONT');
    this.driver(ups).paused = false;
  }

  /** SIGTERM upsd (SIGKILL after 5 s); afterwards the port refuses connections. */
  async stopUpsd(): Promise<void> {
    return this.guard('stopUpsd', async () => {
      const p = this.upsd;
      if (!p) return;
      await this.terminate(p);
      this.upsd = undefined;
    });
  }

  /**
   * Start upsd; waits until the port accepts and every UPS whose driver is running (and not paused)
   * is served with a status other than WAIT and with its .dev values. No-op if upsd is running.
   */
  async startUpsd(): Promise<void> {
    return this.guard('startUpsd', async () => {
      if (this.upsd && !this.upsd.exit) return;
      await this.spawnUpsdAndWait(Date.now() + START_TIMEOUT_MS);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Introspection (extras)

  /** PIDs of the children currently running (for leak checks). */
  pids(): { upsd?: number; drivers: Record<string, number> } {
    const drivers: Record<string, number> = {};
    for (const [n, d] of this.drivers) if (d.proc && !d.proc.exit) drivers[n] = d.proc.pid;
    return { upsd: this.upsd && !this.upsd.exit ? this.upsd.pid : undefined, drivers };
  }

  /** Last lines of every log file (upsd, drivers, peer events). */
  logTails(lines = LOG_TAIL_LINES): string {
    const files = [this.peerLog, this.upsdLog, ...[...this.drivers.values()].map((d) => d.logFile)];
    return files
      .filter((f) => fs.existsSync(f))
      .map((f) => `${TAILS_MARK}${path.basename(f)} (last ${lines} lines) ---\n${tailFile(f, lines)}`)
      .join('')
      .replace(/^\n/, '');
  }

  // -------------------------------------------------------------------------------------------
  // Internals

  /** Run a lifecycle step; on failure, rethrow with the method name and the log tails. */
  private async guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
    this.assertNotStopped();
    try {
      return await fn();
    } catch (e) {
      const msg = (e as Error).message;
      // Nested guarded calls (restart -> stopUpsd, removeVars -> startDriver) add the tails only once.
      if (msg.includes(TAILS_MARK)) throw new Error(`NutPeer.${what} failed: ${msg}`);
      throw new Error(`NutPeer.${what} failed: ${msg}\n${this.logTails()}`);
    }
  }

  private assertNotStopped(): void {
    if (this.stopping) throw new Error('NutPeer: already stopped');
  }

  private driver(ups: string): DriverState {
    const d = this.drivers.get(ups);
    if (!d) throw new Error(`NutPeer: unknown UPS ${JSON.stringify(ups)} (have: ${this.upsNames.join(', ')})`);
    return d;
  }

  private runningDriver(ups: string): Proc {
    const p = this.driver(ups).proc;
    if (!p || p.exit) throw new Error(`NutPeer: driver of ${ups} is not running`);
    return p;
  }

  private note(msg: string): void {
    try {
      fs.appendFileSync(this.peerLog, `${new Date().toISOString()} ${msg}\n`);
    } catch {
      /* dir may be gone */
    }
  }

  private writeConfig(): void {
    const etc = path.join(this.dir, 'etc');
    const state = path.join(this.dir, 'state');
    fs.mkdirSync(etc, { recursive: true });
    fs.mkdirSync(state, { recursive: true, mode: 0o700 });
    const w = (name: string, text: string): void => fs.writeFileSync(path.join(etc, name), text, { mode: 0o600 });
    w('nut.conf', 'MODE=standalone\n');
    let ups = 'maxretry = 3\npollinterval = 1\n';
    for (const [name, d] of this.drivers) {
      ups += `\n[${name}]\n  driver = dummy-ups\n  port = ${d.devFile}\n  mode = dummy-once\n  desc = "NutPeer simulated UPS ${name}"\n`;
    }
    w('ups.conf', ups);
    w('upsd.conf', `LISTEN 127.0.0.1 ${this._port}\nSTATEPATH ${state}\nMAXAGE ${this.maxAge}\n`);
    w(
      'upsd.users',
      [
        '[admin]',
        '  password = adminpass',
        '  actions = SET FSD',
        '  instcmds = ALL',
        '[monuser]',
        '  password = monpass',
        '  upsmon primary',
        '',
      ].join('\n'),
    );
  }

  /** Atomic rewrite: temp file, mtime = max(now, old mtime + 1 s) in whole seconds, rename over. */
  private writeDev(ups: string): void {
    const d = this.driver(ups);
    const body = [...d.vars].map(([k, v]) => `${k}: "${v}"`).join('\n') + '\n';
    const tmp = `${d.devFile}.tmp-${process.pid}-${Date.now()}`;
    fs.writeFileSync(tmp, `# NutPeer ${ups}\n${body}`, { mode: 0o644 });
    let oldSec = -1;
    try {
      oldSec = Math.floor(fs.statSync(d.devFile).mtimeMs / 1000);
    } catch {
      /* first write */
    }
    const sec = Math.max(Math.floor(Date.now() / 1000), oldSec + 1);
    fs.utimesSync(tmp, sec, sec);
    fs.renameSync(tmp, d.devFile);
  }

  private spawnProc(label: string, bin: string, args: string[], logFile: string): Proc {
    fs.appendFileSync(logFile, `==== ${new Date().toISOString()} start: ${bin} ${args.join(' ')}\n`);
    const fd = fs.openSync(logFile, 'a');
    let child: cp.ChildProcess;
    try {
      child = cp.spawn(bin, args, { cwd: this.dir, env: this.env, stdio: ['ignore', fd, fd] });
    } finally {
      fs.closeSync(fd);
    }
    // Always listen for 'error' (an unhandled one would crash the test runner).
    child.on('error', (e) => this.note(`${label} (pid ${child.pid ?? '-'}) error: ${e.message}`));
    if (child.pid === undefined) throw new Error(`could not spawn ${bin} (see ${this.peerLog})`);
    const pid = child.pid;
    liveChildren.set(pid, label);
    // Do not let a forgotten peer keep the test runner alive; the exit hook kills it.
    child.unref();
    const proc: Proc = {
      label,
      child,
      pid,
      logFile,
      expectExit: false,
      exited: new Promise<void>((resolve) => {
        child.once('exit', (code, signal) => {
          proc.exit = { code, signal };
          liveChildren.delete(pid);
          const how = signal ? `signal ${signal}` : `code ${code}`;
          if (!proc.expectExit) this.note(`UNEXPECTED exit of ${label} (pid ${pid}): ${how}`);
          else this.note(`${label} (pid ${pid}) exited: ${how}`);
          resolve();
        });
      }),
    };
    this.note(`started ${label} pid ${pid}`);
    return proc;
  }

  /** Wait for exit with a (ref'd) timer so the event loop stays alive. Returns false on timeout. */
  private async waitExit(p: Proc, ms: number): Promise<boolean> {
    if (p.exit) return true;
    let timer: NodeJS.Timeout | undefined;
    const ok = await Promise.race([
      p.exited.then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms))),
    ]);
    clearTimeout(timer);
    return ok;
  }

  /** SIGTERM (+SIGCONT in case it is stopped), wait <= 5 s, SIGKILL, wait. */
  private async terminate(p: Proc): Promise<void> {
    p.expectExit = true;
    if (p.exit) return;
    const signal = (sig: NodeJS.Signals): void => {
      try {
        process.kill(p.pid, sig);
      } catch {
        /* gone */
      }
    };
    signal('SIGTERM');
    signal('SIGCONT');
    if (await this.waitExit(p, STOP_GRACE_MS)) return;
    this.note(`${p.label} (pid ${p.pid}) ignored SIGTERM for ${STOP_GRACE_MS} ms; SIGKILL`);
    signal('SIGKILL');
    if (!(await this.waitExit(p, STOP_GRACE_MS))) {
      throw new Error(`NutPeer: ${p.label} (pid ${p.pid}) did not exit after SIGKILL`);
    }
  }

  private async spawnDriver(ups: string, deadline: number): Promise<void> {
    const d = this.driver(ups);
    const sock = path.join(this.dir, 'state', `dummy-ups-${ups}`);
    // A stale socket from a killed driver would make the wait below succeed too early.
    fs.rmSync(sock, { force: true });
    const p = this.spawnProc(`dummy-ups[${ups}]`, DRIVER_BIN, ['-a', ups, '-F', '-u', 'root'], d.logFile);
    d.proc = p;
    d.paused = false;
    const until = Math.min(deadline, Date.now() + DRIVER_SOCKET_TIMEOUT_MS);
    for (;;) {
      if (p.exit) {
        throw new Error(`dummy-ups for ${ups} exited during startup (${JSON.stringify(p.exit)}); see ${d.logFile}`);
      }
      if (fs.existsSync(sock)) {
        // The driver's init copies ups.mfr/ups.model (defaults "Dummy ...") over device.mfr/device.model
        // after parsing the file; bumping the mtime makes it re-read the file and apply ours again.
        this.writeDev(ups);
        return;
      }
      if (Date.now() > until) throw new Error(`dummy-ups for ${ups} did not create ${sock} in time`);
      await sleep(25);
    }
  }

  private async spawnUpsdAndWait(deadline: number): Promise<void> {
    // Someone else listening there would satisfy the "port accepts" check below.
    if (await canConnect(this.host, this._port, 500)) {
      throw new PortInUseError(`${this.host}:${this._port} is already in use by another process; upsd cannot listen there`);
    }
    const p = this.spawnProc('upsd', UPSD_BIN, ['-F', '-u', 'root'], this.upsdLog);
    this.upsd = p;
    const portUntil = Math.min(deadline, Date.now() + UPSD_PORT_TIMEOUT_MS);
    for (;;) {
      if (p.exit) {
        this.upsd = undefined;
        throw new Error(`upsd exited during startup (${JSON.stringify(p.exit)}); see ${this.upsdLog}`);
      }
      if (await canConnect(this.host, this._port, 500)) break;
      if (Date.now() > portUntil) throw new Error(`upsd did not accept connections on ${this.host}:${this._port} in time`);
      await sleep(25);
    }
    for (const [name, d] of this.drivers) {
      if (d.proc && !d.proc.exit && !d.paused) await this.waitUpsServed(name, deadline);
    }
  }

  /**
   * Until upsd serves `ups` with a status other than WAIT and with every .dev variable as written
   * (whitespace-normalised). If the values lag for > 1.5 s the .dev file is bumped again.
   */
  private async waitUpsServed(ups: string, deadline: number): Promise<void> {
    const d = this.driver(ups);
    const until = Math.min(deadline, Date.now() + UPSD_READY_TIMEOUT_MS);
    let last = '(no answer yet)';
    let lastBump = Date.now();
    for (;;) {
      const u = this.upsd;
      if (!u || u.exit) throw new Error(`upsd is not running (while waiting for ${ups})`);
      if (!d.proc || d.proc.exit) throw new Error(`driver of ${ups} died while waiting for upsd to serve it`);
      try {
        const served = await this.list(ups, 2000);
        const status = served['ups.status'];
        if (status !== undefined && /\bWAIT\b/.test(status)) {
          last = `ups.status ${JSON.stringify(status)}`;
        } else {
          const wrong = [...d.vars]
            .filter(([k, v]) => served[k] === undefined || normalize(served[k]) !== normalize(v))
            .map(([k, v]) => `${k}=${JSON.stringify(served[k])} (want ${JSON.stringify(v)})`);
          if (wrong.length === 0) return;
          last = `values not applied yet: ${wrong.join(', ')}`;
          if (Date.now() - lastBump > 1500) {
            this.writeDev(ups);
            lastBump = Date.now();
          }
        }
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > until) throw new Error(`upsd did not serve ${ups} in time: ${last}`);
      await sleep(50);
    }
  }
}
