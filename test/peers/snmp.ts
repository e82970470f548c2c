/**
 * Real SNMP peers on loopback for the test suite, started and stopped by PID:
 *
 * - SnmpPeer: snmpsim's `snmpsimd` (Debian package snmpsim 0.4.5) serving UPS agents from .snmprec
 *   files, one per community (the community string selects the data file), SNMPv3 users given on the
 *   command line (each with exactly one security level; the v3 context name selects the data file and
 *   the empty context is a symlink named after the first UDP/IPv4 endpoint, 1.3.6.1.6.1.1.0.snmprec).
 *   As root it must drop to nobody:nogroup, so its data dir is world-readable and its cache dir is
 *   owned by nobody. Values change at runtime by SNMP SET on records tagged `:writecache` (instant,
 *   any community or user) or by rewriting the data file with mtime max(now, old + 1 s) (snmpsimd
 *   re-indexes on a whole-second mtime change). An unknown community gets no answer at all.
 * - NutSnmpPeer: NUT's own upsd + `snmp-ups` driver (Debian package nut-snmp 2.8.0) reading those
 *   agents, as an independent second reading of the same simulated UPS for differential tests. Its
 *   config lives in a private folder (NUT_CONFPATH/NUT_STATEPATH), upsd listens on a free port.
 *   Known NUT 2.8.0 quirks the fixtures work around: snmp-ups guesses outlet/ambient template counts
 *   by probing indexes upward until it gets a value (an agent answering noSuchInstance makes it loop
 *   for ever), so the Eaton fixture carries outlet.count and ambient.count = 0.
 * - snmptrap(): the net-snmp `snmptrap` / `snmpinform` CLI (package snmp) sending one notification.
 *
 * Only node built-ins and net-snmp are used. Children are spawned directly (no shell), their PIDs are
 * kept, and a process 'exit' hook SIGKILLs whatever is still alive. Nothing is killed by name.
 */
import * as cp from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const snmp = require('net-snmp');
import { NutConnection } from '../../lib/nut/connection';

export const SNMPSIMD = '/usr/bin/snmpsimd';
export const SNMP_UPS_BIN = '/lib/nut/snmp-ups';
export const UPSD_BIN = '/lib/nut/upsd';

/** ASN.1 tags as snmprec writes them. */
export const T = { int: 2, str: 4, oid: 6, ip: 64, counter: 65, gauge: 66, ticks: 67 } as const;
export type RecType = (typeof T)[keyof typeof T];

export interface SnmpRecord {
  oid: string;
  type: RecType;
  value: string | number;
  /** Settable by SNMP SET (snmpsim writecache). */
  w?: boolean;
}

export interface V3UserSpec {
  name: string;
  /** MD5 SHA SHA224 SHA256 SHA384 SHA512 (omit for noAuthNoPriv). */
  auth?: string;
  authKey?: string;
  /** DES 3DES AES AES128 AES192 AES192BLMT AES256 AES256BLMT (omit for no privacy). */
  priv?: string;
  privKey?: string;
}

export interface SnmpPeerOptions {
  /** community (= data file name) → records. */
  agents: Record<string, SnmpRecord[]>;
  v3Users?: V3UserSpec[];
  /** Which data file answers SNMPv3 requests with the empty context name. Default: the first agent. */
  defaultContext?: string;
}

const START_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 5_000;

// ---------------------------------------------------------------------------------------------
// Process bookkeeping (same safety net as NutPeer): every child alive at exit is SIGKILLed.

const liveChildren = new Map<number, string>();
const liveDirs = new Set<string>();
let hooksInstalled = false;

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const pid of liveChildren.keys()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    for (const d of liveDirs) fs.rmSync(d, { recursive: true, force: true });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function freeUdpPort(address = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket(net.isIPv6(address) ? 'udp6' : 'udp4');
    s.once('error', reject);
    s.bind(0, address, () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

export function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function tail(file: string, lines = 20): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return `(no ${file})`;
  }
}

interface Proc {
  pid: number;
  child: cp.ChildProcess;
  label: string;
  exited: Promise<void>;
  done: boolean;
}

function spawn(label: string, bin: string, args: string[], logFile: string, env?: NodeJS.ProcessEnv, cwd?: string): Proc {
  installHooks();
  const fd = fs.openSync(logFile, 'a');
  let child: cp.ChildProcess;
  try {
    child = cp.spawn(bin, args, { stdio: ['ignore', fd, fd], env: env ?? process.env, cwd });
  } finally {
    fs.closeSync(fd);
  }
  child.on('error', () => undefined);
  if (child.pid === undefined) throw new Error(`could not spawn ${bin}`);
  const pid = child.pid;
  liveChildren.set(pid, label);
  child.unref();
  const p: Proc = { pid, child, label, done: false, exited: Promise.resolve() };
  p.exited = new Promise<void>((resolve) => child.once('exit', () => {
    p.done = true;
    liveChildren.delete(pid);
    resolve();
  }));
  return p;
}

async function terminate(p: Proc | undefined): Promise<void> {
  if (!p || p.done) return;
  const kill = (sig: NodeJS.Signals) => {
    try {
      process.kill(p.pid, sig);
    } catch {
      /* gone */
    }
  };
  kill('SIGTERM');
  kill('SIGCONT');
  const t = setTimeout(() => kill('SIGKILL'), STOP_GRACE_MS);
  await p.exited;
  clearTimeout(t);
}

function checkRoot(what: string, bins: string[], pkgs: string): void {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) throw new Error(`${what} needs Linux and root (apt-get install ${pkgs})`);
  for (const b of bins) {
    try {
      fs.accessSync(b, fs.constants.X_OK);
    } catch {
      throw new Error(`${what}: ${b} missing; apt-get install ${pkgs}`);
    }
  }
}

function snmprecLine(r: SnmpRecord): string {
  return r.w ? `${r.oid}|${r.type}:writecache|value=${r.value}` : `${r.oid}|${r.type}|${r.value}`;
}

function oidCompare(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

// ---------------------------------------------------------------------------------------------

export class SnmpPeer {
  readonly host = '127.0.0.1';
  private proc?: Proc;
  private readonly agents: Map<string, SnmpRecord[]>;
  private stopping?: Promise<void>;

  private constructor(readonly dir: string, readonly port: number, private readonly opts: SnmpPeerOptions) {
    this.agents = new Map(Object.entries(opts.agents).map(([k, v]) => [k, v.map((r) => ({ ...r }))]));
  }

  get dataDir(): string {
    return path.join(this.dir, 'data');
  }
  get logFile(): string {
    return path.join(this.dir, 'snmpsimd.log');
  }

  static async start(opts: SnmpPeerOptions): Promise<SnmpPeer> {
    checkRoot('SnmpPeer', [SNMPSIMD], 'snmpsim snmp');
    const names = Object.keys(opts.agents);
    if (!names.length) throw new Error('SnmpPeer: at least one agent');
    for (const n of names) if (!/^[A-Za-z0-9_-]+$/.test(n)) throw new Error(`SnmpPeer: community ${n} must be a plain word`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-snmp-'));
    liveDirs.add(dir);
    const peer = new SnmpPeer(dir, await freeUdpPort(), opts);
    try {
      await peer.launch();
      return peer;
    } catch (e) {
      await peer.stop().catch(() => undefined);
      throw e;
    }
  }

  private writeFiles(): void {
    fs.mkdirSync(this.dataDir, { recursive: true });
    fs.mkdirSync(path.join(this.dir, 'cache'), { recursive: true });
    fs.chmodSync(this.dir, 0o755);
    fs.chmodSync(this.dataDir, 0o755);
    for (const name of this.agents.keys()) this.writeAgent(name);
    const dflt = this.opts.defaultContext ?? [...this.agents.keys()][0];
    const link = path.join(this.dataDir, '1.3.6.1.6.1.1.0.snmprec');
    fs.rmSync(link, { force: true });
    fs.symlinkSync(`${dflt}.snmprec`, link);
    const cache = path.join(this.dir, 'cache');
    for (const f of fs.readdirSync(cache)) fs.rmSync(path.join(cache, f), { force: true, recursive: true });
    cp.execFileSync('chown', ['-R', 'nobody:nogroup', cache]);
  }

  /** Atomic rewrite with mtime max(now, old + 1 s), so snmpsimd notices within a second. */
  private writeAgent(name: string): void {
    const file = path.join(this.dataDir, `${name}.snmprec`);
    const records = [...this.agents.get(name)!].sort((a, b) => oidCompare(a.oid, b.oid));
    const tmp = `${file}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, records.map(snmprecLine).join('\n') + '\n', { mode: 0o644 });
    let old = -1;
    try {
      old = Math.floor(fs.statSync(file).mtimeMs / 1000);
    } catch {
      /* new */
    }
    const sec = Math.max(Math.floor(Date.now() / 1000), old + 1);
    fs.utimesSync(tmp, sec, sec);
    fs.renameSync(tmp, file);
  }

  private async launch(): Promise<void> {
    this.writeFiles();
    const args = [
      '--process-user=nobody', '--process-group=nogroup',
      `--data-dir=${this.dataDir}`, `--cache-dir=${path.join(this.dir, 'cache')}`,
      `--agent-udpv4-endpoint=${this.host}:${this.port}`,
      `--logging-method=file:${path.join(this.dir, 'snmpsimd-internal.log')}`,
    ];
    for (const u of this.opts.v3Users ?? []) {
      args.push(`--v3-user=${u.name}`);
      if (u.auth) args.push(`--v3-auth-key=${u.authKey}`, `--v3-auth-proto=${u.auth}`);
      if (u.priv) args.push(`--v3-priv-key=${u.privKey}`, `--v3-priv-proto=${u.priv}`);
    }
    this.proc = spawn('snmpsimd', SNMPSIMD, args, this.logFile);
    const first = [...this.agents.keys()][0];
    const probe = this.agents.get(first)![0].oid;
    const deadline = Date.now() + START_TIMEOUT_MS;
    let last = '';
    for (;;) {
      if (this.proc.done) throw new Error(`snmpsimd exited during startup:\n${tail(this.logFile)}\n${tail(path.join(this.dir, 'snmpsimd-internal.log'))}`);
      try {
        await this.get(first, [probe], 300);
        return;
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) throw new Error(`snmpsimd did not answer on ${this.host}:${this.port}: ${last}\n${tail(this.logFile)}`);
      await sleep(100);
    }
  }

  /** Raw GET with a community (for checks in tests). */
  get(community: string, oids: string[], timeoutMs = 2000): Promise<Array<{ oid: string; type: number; value: unknown }>> {
    return new Promise((resolve, reject) => {
      const s = snmp.createSession(this.host, community, { port: this.port, version: snmp.Version2c, timeout: timeoutMs, retries: 0 });
      s.on('error', () => undefined);
      s.get(oids, (err: Error | null, vbs: any[]) => {
        s.close();
        if (err) reject(err);
        else resolve(vbs);
      });
    });
  }

  /** Current value of one object (null when absent). */
  async value(community: string, oid: string): Promise<unknown> {
    const [vb] = await this.get(community, [oid]);
    if (snmp.isVarbindError(vb)) return null;
    return Buffer.isBuffer(vb.value) ? vb.value.toString() : vb.value;
  }

  /** Change writecache objects at once by SNMP SET (types as in the records). */
  set(community: string, values: Record<string, string | number>): Promise<void> {
    const recs = this.agents.get(community);
    if (!recs) throw new Error(`no agent ${community}`);
    const vbs = Object.entries(values).map(([oid, value]) => {
      const r = recs.find((x) => x.oid === oid);
      // The stored record keeps the fixture value: restart() brings it back.
      if (!r || !r.w) throw new Error(`${community}: ${oid} is not a writable (writecache) record`);
      return { oid, type: r.type, value: r.type === T.str ? String(value) : r.type === T.oid ? String(value) : Number(value) };
    });
    return new Promise((resolve, reject) => {
      const s = snmp.createSession(this.host, community, { port: this.port, version: snmp.Version2c, timeout: 2000, retries: 1 });
      s.on('error', () => undefined);
      s.set(vbs, (err: Error | null, answer: any[]) => {
        s.close();
        if (err) return reject(err);
        const bad = (answer ?? []).find((v) => snmp.isVarbindError(v));
        if (bad) reject(new Error(`SET ${bad.oid} refused: ${snmp.varbindError(bad)}`));
        else resolve();
      });
    });
  }

  /**
   * Replace an agent's records (for changes SET cannot make: adding or removing rows) by rewriting
   * its data file; waits until snmpsimd serves the new file. Writecache values set by SNMP SET
   * survive a rewrite (they live in snmpsimd's memory), so rewrite only non-writecache records.
   */
  async rewrite(community: string, records: SnmpRecord[], probe: { oid: string; present: boolean }): Promise<void> {
    this.agents.set(community, records.map((r) => ({ ...r })));
    this.writeAgent(community);
    const deadline = Date.now() + 5000;
    for (;;) {
      const [vb] = await this.get(community, [probe.oid]);
      if (snmp.isVarbindError(vb) !== probe.present) return;
      if (Date.now() > deadline) throw new Error(`snmpsimd did not pick up the new ${community}.snmprec`);
      await sleep(50);
    }
  }

  records(community: string): SnmpRecord[] {
    return (this.agents.get(community) ?? []).map((r) => ({ ...r }));
  }

  /** Restart snmpsimd with the fixture files (writecache values set by SNMP SET are gone). */
  async restart(): Promise<void> {
    await terminate(this.proc);
    await this.launch();
  }

  /** Stop answering for a while (SIGSTOP), as a host that went away; resume() continues. */
  pause(): void {
    if (this.proc && !this.proc.done) process.kill(this.proc.pid, 'SIGSTOP');
  }
  resume(): void {
    if (this.proc && !this.proc.done) process.kill(this.proc.pid, 'SIGCONT');
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await terminate(this.proc);
      fs.rmSync(this.dir, { recursive: true, force: true });
      liveDirs.delete(this.dir);
    })();
    return this.stopping;
  }
}

// ---------------------------------------------------------------------------------------------

export interface NutSnmpUps {
  /** snmp-ups `mibs=` (ietf, apcc, pw, cyberpower). */
  mibs: string;
  community?: string;
  version?: 'v1' | 'v2c' | 'v3';
  /** v3: secLevel, secName, authPassword, authProtocol, privPassword, privProtocol. */
  v3?: Record<string, string>;
}

/** upsd + NUT's snmp-ups driver(s) reading an SnmpPeer. */
export class NutSnmpPeer {
  readonly host = '127.0.0.1';
  private upsd?: Proc;
  private readonly drivers = new Map<string, Proc>();
  private stopping?: Promise<void>;

  private constructor(readonly dir: string, readonly port: number, private readonly agent: SnmpPeer, private readonly ups: Record<string, NutSnmpUps>) {}

  static async start(agent: SnmpPeer, ups: Record<string, NutSnmpUps>): Promise<NutSnmpPeer> {
    checkRoot('NutSnmpPeer', [SNMP_UPS_BIN, UPSD_BIN], 'nut-server nut-client nut-snmp');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-nutsnmp-'));
    liveDirs.add(dir);
    const peer = new NutSnmpPeer(dir, await freeTcpPort(), agent, ups);
    try {
      await peer.launch();
      return peer;
    } catch (e) {
      await peer.stop().catch(() => undefined);
      throw e;
    }
  }

  private get env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, NUT_CONFPATH: path.join(this.dir, 'etc'), NUT_STATEPATH: path.join(this.dir, 'state'), NUT_ALTPIDPATH: path.join(this.dir, 'state') };
    delete env.NUT_DEBUG_LEVEL;
    return env;
  }

  private async launch(): Promise<void> {
    const etc = path.join(this.dir, 'etc');
    fs.mkdirSync(etc, { recursive: true });
    fs.mkdirSync(path.join(this.dir, 'state'), { recursive: true, mode: 0o700 });
    const w = (n: string, t: string) => fs.writeFileSync(path.join(etc, n), t, { mode: 0o600 });
    w('nut.conf', 'MODE=standalone\n');
    let conf = 'maxretry = 3\npollinterval = 1\n';
    for (const [name, u] of Object.entries(this.ups)) {
      conf += `\n[${name}]\n  driver = snmp-ups\n  port = ${this.agent.host}:${this.agent.port}\n  mibs = ${u.mibs}\n  snmp_version = ${u.version ?? 'v2c'}\n  pollfreq = 1\n  snmp_timeout = 1\n  snmp_retries = 1\n`;
      if (u.community) conf += `  community = ${u.community}\n`;
      for (const [k, v] of Object.entries(u.v3 ?? {})) conf += `  ${k} = ${v}\n`;
      conf += `  desc = "snmp-ups reading snmpsim ${u.community ?? ''}"\n`;
    }
    w('ups.conf', conf);
    w('upsd.conf', `LISTEN ${this.host} ${this.port}\nSTATEPATH ${path.join(this.dir, 'state')}\nMAXAGE 15\n`);
    w('upsd.users', '[admin]\n  password = adminpass\n  actions = SET FSD\n  instcmds = ALL\n');
    for (const name of Object.keys(this.ups)) {
      this.drivers.set(name, spawn(`snmp-ups[${name}]`, SNMP_UPS_BIN, ['-a', name, '-F', '-u', 'root'], path.join(this.dir, `driver-${name}.log`), this.env, this.dir));
    }
    // The driver creates its socket after the first full update.
    const deadline = Date.now() + 60_000;
    for (const name of Object.keys(this.ups)) {
      const sock = path.join(this.dir, 'state', `snmp-ups-${name}`);
      while (!fs.existsSync(sock)) {
        const d = this.drivers.get(name)!;
        if (d.done) throw new Error(`snmp-ups for ${name} exited:\n${tail(path.join(this.dir, `driver-${name}.log`))}`);
        if (Date.now() > deadline) throw new Error(`snmp-ups for ${name} did not start:\n${tail(path.join(this.dir, `driver-${name}.log`))}`);
        await sleep(100);
      }
    }
    this.upsd = spawn('upsd', UPSD_BIN, ['-F', '-u', 'root'], path.join(this.dir, 'upsd.log'), this.env, this.dir);
    for (const name of Object.keys(this.ups)) {
      for (;;) {
        if (this.upsd.done) throw new Error(`upsd exited:\n${tail(path.join(this.dir, 'upsd.log'))}`);
        try {
          const vars = await this.list(name);
          if (vars['ups.status'] !== undefined && !/\bWAIT\b/.test(vars['ups.status'])) break;
        } catch {
          /* not yet */
        }
        if (Date.now() > deadline) throw new Error(`upsd did not serve ${name}:\n${tail(path.join(this.dir, 'upsd.log'))}`);
        await sleep(200);
      }
    }
  }

  async list(ups: string): Promise<Record<string, string>> {
    const c = await NutConnection.connect({ host: this.host, port: this.port, timeoutMs: 5000 });
    try {
      return await c.listVar(ups);
    } finally {
      await c.close();
    }
  }

  /** Until `pred` holds for what upsd serves (the driver refreshes every pollinterval). */
  async waitFor(ups: string, pred: (vars: Record<string, string>) => boolean, what: string, timeoutMs = 15_000): Promise<Record<string, string>> {
    const deadline = Date.now() + timeoutMs;
    let last: Record<string, string> = {};
    for (;;) {
      try {
        last = await this.list(ups);
        if (pred(last)) return last;
      } catch {
        /* driver briefly away */
      }
      if (Date.now() > deadline) throw new Error(`NUT's snmp-ups (${ups}) did not show ${what} within ${timeoutMs} ms; last ups.status ${JSON.stringify(last['ups.status'])}`);
      await sleep(250);
    }
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await terminate(this.upsd);
      await Promise.all([...this.drivers.values()].map((d) => terminate(d)));
      fs.rmSync(this.dir, { recursive: true, force: true });
      liveDirs.delete(this.dir);
    })();
    return this.stopping;
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * Send one notification with net-snmp's CLI: `snmptrap` (v1/v2c/v3 trap) or `snmpinform`.
 * v1: `enterprise` + `specific`; v2c/v3: `oid`. Resolves when the tool exits 0 (an inform: acknowledged).
 */
export function snmptrap(o: {
  port: number;
  host?: string;
  version: 'v1' | 'v2c' | 'v3';
  community?: string;
  oid?: string;
  enterprise?: string;
  specific?: number;
  inform?: boolean;
  v3?: { user: string; level: string; auth?: string; authKey?: string; priv?: string; privKey?: string; engineId?: string };
  varbinds?: string[];
}): Promise<void> {
  const host = `${o.host ?? '127.0.0.1'}:${o.port}`;
  const args: string[] = ['-v', o.version === 'v2c' ? '2c' : o.version === 'v1' ? '1' : '3', '-t', '2', '-r', '1'];
  if (o.version === 'v3') {
    const v = o.v3!;
    args.push('-u', v.user, '-l', v.level);
    if (v.auth) args.push('-a', v.auth, '-A', v.authKey!);
    if (v.priv) args.push('-x', v.priv, '-X', v.privKey!);
    if (v.engineId && !o.inform) args.push('-e', v.engineId);
  } else {
    args.push('-c', o.community ?? 'public');
  }
  if (o.inform) args.push('-Ci');
  args.push(host);
  if (o.version === 'v1') args.push(o.enterprise!, '127.0.0.1', '6', String(o.specific ?? 0), '');
  else args.push('', o.oid!);
  args.push(...(o.varbinds ?? []));
  return new Promise((resolve, reject) => {
    cp.execFile('/usr/bin/snmptrap', args, { timeout: 10_000 }, (err, _out, stderr) => {
      if (err) reject(new Error(`snmptrap ${args.join(' ')}: ${stderr || err.message}`));
      else resolve();
    });
  });
}
