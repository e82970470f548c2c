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
 * - TLS (option `tls`): Debian's upsd is built against Mozilla NSS, so the certificate and key live in
 *   an NSS database (CERTPATH <dir>, CERTIDENT "<nickname>" "<db password>"). upsd loads it at start
 *   and, if that fails, only logs it and answers STARTTLS with ERR FEATURE-NOT-CONFIGURED; start()
 *   therefore proves TLS with a real STARTTLS handshake. upsd's NSS handshake blocks its whole main
 *   loop until the client finishes or fails the handshake.
 *
 * Only node built-ins are used. Children are spawned directly (no shell, no setsid), their PIDs are
 * kept, and a process 'exit' hook SIGKILLs whatever is still alive. Nothing is ever killed by name.
 */
import * as cp from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';

export const UPSD_BIN = '/lib/nut/upsd';
export const DRIVER_BIN = '/lib/nut/dummy-ups';
const PACKAGES = 'nut-server nut-client';
const TLS_PACKAGES = 'libnss3-tools openssl';
/** Tools for `tls: true`: openssl makes the certificate, certutil/pk12util the NSS database. */
const TLS_TOOLS = ['openssl', 'certutil', 'pk12util'] as const;
/** Nickname of the server certificate in the NSS database (CERTIDENT). */
const TLS_CERT_NICKNAME = 'NutPeer upsd';

export interface NutPeerOptions {
  /** upsd TCP port on 127.0.0.1. Default: a free port (bind 127.0.0.1:0, close). */
  port?: number;
  /** UPS name -> initial .dev variables (dummy-once mode). */
  ups?: Record<string, Record<string, string>>;
  /** upsd MAXAGE in seconds. Default 5. */
  maxAge?: number;
  /** Default true; false = write the config and start the drivers only. */
  startUpsd?: boolean;
  /**
   * Configure STARTTLS: a fresh self-signed certificate (CN=localhost, subjectAltName IP:127.0.0.1 and
   * DNS:localhost) in a fresh NSS database, CERTPATH/CERTIDENT in upsd.conf. See certPem/certFingerprint256.
   */
  tls?: boolean;
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
const TLS_TOOL_TIMEOUT_MS = 15_000;
const TLS_PROBE_TIMEOUT_MS = 5_000;
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

/** The executable `name` on PATH, or undefined. */
function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH || '/usr/local/bin:/usr/bin:/bin').split(':')) {
    if (!dir) continue;
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/**
 * Run a short-lived tool (no shell) with its output appended to `logFile`; its PID is tracked like
 * the daemons'. Rejects, with the output's tail, on a non-zero exit or after `timeoutMs` (SIGKILL).
 */
function runTool(bin: string, args: string[], logFile: string, timeoutMs = TLS_TOOL_TIMEOUT_MS): Promise<void> {
  const line = `${path.basename(bin)} ${args.join(' ')}`;
  fs.appendFileSync(logFile, `==== ${new Date().toISOString()} run: ${line}\n`);
  return new Promise((resolve, reject) => {
    const fd = fs.openSync(logFile, 'a');
    let child: cp.ChildProcess;
    try {
      child = cp.spawn(bin, args, { cwd: path.dirname(logFile), stdio: ['ignore', fd, fd] });
    } finally {
      fs.closeSync(fd);
    }
    const pid = child.pid;
    if (pid !== undefined) liveChildren.set(pid, line);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    const fail = (why: string): void => reject(new Error(`${line}: ${why}\n--- ${path.basename(logFile)} ---\n${tailFile(logFile, 15)}`));
    child.once('error', (e) => {
      clearTimeout(timer);
      if (pid !== undefined) liveChildren.delete(pid);
      fail(`could not run it (${e.message})`);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (pid !== undefined) liveChildren.delete(pid);
      if (timedOut) fail(`no result within ${timeoutMs} ms (killed)`);
      else if (code !== 0) fail(`exited with ${signal ? `signal ${signal}` : `code ${code}`}`);
      else resolve();
    });
  });
}

/**
 * Plain connect, `STARTTLS`, TLS handshake without verification; resolves with the SHA-256
 * fingerprint of the certificate the server presented and the protocol, or rejects with what went
 * wrong, including upsd's literal answer when it was not `OK STARTTLS`.
 */
function probeStartTls(host: string, port: number, timeoutMs = TLS_PROBE_TIMEOUT_MS): Promise<{ fingerprint256: string; protocol: string }> {
  return new Promise((resolve, reject) => {
    const plain = net.connect({ host, port });
    let secure: tls.TLSSocket | undefined;
    let buf = '';
    let settled = false;
    const finish = (err: Error | null, value?: { fingerprint256: string; protocol: string }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      plain.removeAllListeners('data');
      plain.on('error', () => undefined);
      secure?.on('error', () => undefined);
      if (secure) secure.destroy();
      plain.destroy();
      if (err) reject(err);
      else resolve(value!);
    };
    const timer = setTimeout(
      () => finish(new Error(`STARTTLS probe of ${host}:${port}: no result within ${timeoutMs} ms (${secure ? 'TLS handshake' : 'waiting for the answer to STARTTLS'})`)),
      timeoutMs,
    );
    plain.setEncoding('utf8');
    plain.once('connect', () => plain.write('STARTTLS\n'));
    plain.once('error', (e) => finish(new Error(`STARTTLS probe of ${host}:${port}: ${e.message}`)));
    plain.once('close', () => finish(new Error(`STARTTLS probe of ${host}:${port}: upsd closed the connection (got ${JSON.stringify(buf)})`)));
    plain.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const answer = buf.slice(0, nl).replace(/\r$/, '');
      if (answer !== 'OK STARTTLS') return finish(new Error(`STARTTLS probe of ${host}:${port}: upsd answered ${JSON.stringify(answer)}`));
      plain.removeAllListeners('data');
      plain.removeAllListeners('close');
      secure = tls.connect({ socket: plain, rejectUnauthorized: false, servername: 'localhost' });
      secure.once('error', (e) => finish(new Error(`STARTTLS probe of ${host}:${port}: TLS handshake failed: ${e.message}`)));
      secure.once('secureConnect', () => {
        const cert = secure!.getPeerCertificate();
        if (!cert?.fingerprint256) return finish(new Error(`STARTTLS probe of ${host}:${port}: no server certificate`));
        finish(null, { fingerprint256: cert.fingerprint256, protocol: secure!.getProtocol() ?? '?' });
      });
    });
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
  /** Whether upsd offers STARTTLS (option `tls`). */
  readonly tls: boolean;

  private _port: number;
  private _certPem?: string;
  private _certFingerprint256?: string;
  private readonly tlsLog: string;
  /** Password of the NSS database (CERTIDENT); hex, so it needs no quoting. */
  private readonly nssPassword = crypto.randomBytes(12).toString('hex');
  private readonly drivers = new Map<string, DriverState>();
  private upsd?: Proc;
  private readonly upsdLog: string;
  private readonly peerLog: string;
  private readonly env: NodeJS.ProcessEnv;
  private stopping?: Promise<void>;

  private constructor(
    readonly dir: string,
    port: number,
    maxAge: number,
    ups: Record<string, Record<string, string>>,
    withTls: boolean,
  ) {
    this._port = port;
    this.maxAge = maxAge;
    this.tls = withTls;
    this.upsdLog = path.join(dir, 'upsd.log');
    this.peerLog = path.join(dir, 'peer.log');
    this.tlsLog = path.join(dir, 'tls.log');
    this.env = {
      ...process.env,
      NUT_CONFPATH: path.join(dir, 'etc'),
      NUT_STATEPATH: path.join(dir, 'state'),
      NUT_ALTPIDPATH: path.join(dir, 'state'),
      // CERTPATH is a plain directory (upsd stat()s it); make NSS open it as an sql: (cert9/key4) database.
      NSS_DEFAULT_DB_TYPE: 'sql',
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

  /** The self-signed server certificate (PEM) upsd presents after STARTTLS. Only with `tls: true`. */
  get certPem(): string {
    if (this._certPem === undefined) throw new Error('NutPeer: certPem exists only for a peer started with { tls: true }');
    return this._certPem;
  }

  /** SHA-256 of that certificate's DER, upper-case hex with colons (Node's `fingerprint256` form). */
  get certFingerprint256(): string {
    if (this._certFingerprint256 === undefined) {
      throw new Error('NutPeer: certFingerprint256 exists only for a peer started with { tls: true }');
    }
    return this._certFingerprint256;
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle

  static async start(opts: NutPeerOptions = {}): Promise<NutPeer> {
    NutPeer.checkEnvironment(opts.tls === true);
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
    const peer = new NutPeer(dir, opts.port ?? (await freePort()), maxAge, ups, opts.tls === true);
    const deadline = Date.now() + START_TIMEOUT_MS;
    try {
      if (peer.tls) await peer.makeTls();
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

  private static checkEnvironment(withTls: boolean): void {
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
    if (withTls) {
      const missing = TLS_TOOLS.filter((t) => !onPath(t));
      if (missing.length) {
        throw new Error(`NutPeer { tls: true } needs ${missing.join(', ')} on PATH: apt-get install ${TLS_PACKAGES}`);
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
    const files = [this.peerLog, this.upsdLog, this.tlsLog, ...[...this.drivers.values()].map((d) => d.logFile)];
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
    let upsd = `LISTEN 127.0.0.1 ${this._port}\nSTATEPATH ${state}\nMAXAGE ${this.maxAge}\n`;
    if (this.tls) {
      upsd += `CERTPATH ${this.nssDir}\nCERTIDENT "${TLS_CERT_NICKNAME}" "${this.nssPassword}"\nDISABLE_WEAK_SSL true\n`;
    }
    w('upsd.conf', upsd);
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

  private get nssDir(): string {
    return path.join(this.dir, 'tls', 'nssdb');
  }

  /**
   * Self-signed certificate for localhost / 127.0.0.1 (openssl), imported with its key into a fresh
   * NSS database (certutil -N, pk12util -i). Each step is bounded; its output goes to tls.log.
   */
  private async makeTls(): Promise<void> {
    const t0 = Date.now();
    const tlsDir = path.join(this.dir, 'tls');
    fs.mkdirSync(this.nssDir, { recursive: true, mode: 0o700 });
    fs.chmodSync(tlsDir, 0o700);
    const f = (name: string): string => path.join(tlsDir, name);
    const p12Password = crypto.randomBytes(12).toString('hex');
    fs.writeFileSync(f('nssdb.pass'), this.nssPassword + '\n', { mode: 0o600 });
    fs.writeFileSync(f('p12.pass'), p12Password + '\n', { mode: 0o600 });
    const [openssl, certutil, pk12util] = TLS_TOOLS.map((t) => onPath(t) ?? t);
    const db = `sql:${this.nssDir}`;
    // prettier-ignore
    await runTool(openssl, [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '7',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout', f('key.pem'), '-out', f('cert.pem'),
    ], this.tlsLog);
    // prettier-ignore
    await runTool(openssl, [
      'pkcs12', '-export', '-in', f('cert.pem'), '-inkey', f('key.pem'), '-name', TLS_CERT_NICKNAME,
      '-passout', `file:${f('p12.pass')}`, '-out', f('upsd.p12'),
    ], this.tlsLog);
    await runTool(certutil, ['-N', '-d', db, '-f', f('nssdb.pass')], this.tlsLog);
    await runTool(pk12util, ['-i', f('upsd.p12'), '-d', db, '-k', f('nssdb.pass'), '-w', f('p12.pass')], this.tlsLog);
    // Short listings for tls.log (-K also proves the password opens the keys); whether upsd finds
    // certificate and key under CERTIDENT is proven by the STARTTLS probe once upsd runs.
    await runTool(certutil, ['-L', '-d', db], this.tlsLog);
    await runTool(certutil, ['-K', '-d', db, '-f', f('nssdb.pass')], this.tlsLog);
    // The key lives in the NSS database now.
    fs.rmSync(f('key.pem'), { force: true });
    fs.rmSync(f('upsd.p12'), { force: true });
    this._certPem = fs.readFileSync(f('cert.pem'), 'utf8');
    this._certFingerprint256 = new crypto.X509Certificate(this._certPem).fingerprint256;
    this.note(`TLS: NSS database ${this.nssDir}, certificate "${TLS_CERT_NICKNAME}" SHA-256 ${this._certFingerprint256} (${Date.now() - t0} ms)`);
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
    if (this.tls) {
      // upsd only logs a broken NSS setup and carries on without TLS: prove STARTTLS works end to end.
      const seen = await probeStartTls(this.host, this._port, Math.max(1000, Math.min(TLS_PROBE_TIMEOUT_MS, deadline - Date.now())));
      if (seen.fingerprint256 !== this._certFingerprint256) {
        throw new Error(`upsd presented certificate ${seen.fingerprint256} after STARTTLS, expected ${this._certFingerprint256}`);
      }
      this.note(`TLS: STARTTLS works (${seen.protocol})`);
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

/**
 * One plaintext upsd session for protocol-level tests: send the lines in order, one answer line
 * each, then hang up. Bounded by a 5 s timeout.
 */
export function session(peer: { host: string; port: number }, lines: string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: peer.host, port: peer.port });
    const answers: string[] = [];
    let buf = '';
    const timer = setTimeout(() => (s.destroy(), reject(new Error(`session timeout; got ${JSON.stringify(answers)}`))), 5000);
    s.setEncoding('utf8');
    s.on('connect', () => s.write(lines[0] + '\n'));
    s.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        answers.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (answers.length === lines.length) {
          clearTimeout(timer);
          s.destroy();
          return resolve(answers);
        }
        s.write(lines[answers.length] + '\n');
      }
    });
    s.on('error', (e) => (clearTimeout(timer), reject(e)));
  });
}
