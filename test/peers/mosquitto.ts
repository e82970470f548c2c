/**
 * MosquittoPeer: a real Mosquitto MQTT broker (Debian package `mosquitto`, 2.0) on loopback for the
 * test suite, anonymous or with a password file (made with `mosquitto_passwd`).
 *
 * - One private folder per broker: mosquitto.conf, passwd, mosquitto.log (`log_dest file`; Mosquitto
 *   writes nothing useful to stdout). `persistence false`: a restart forgets retained messages.
 * - Started directly (no shell), on a free port of 127.0.0.1, its PID kept; stopped by that PID
 *   (SIGTERM, then SIGKILL), and a process 'exit' hook kills whatever is still alive. Nothing is ever
 *   killed by name.
 * - Run as root, Mosquitto drops privileges to the `mosquitto` user: the folder and its files are
 *   made readable (and the log writable) for it.
 */
import * as cp from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export const MOSQUITTO_BIN = '/usr/sbin/mosquitto';
export const MOSQUITTO_PASSWD_BIN = '/usr/bin/mosquitto_passwd';

export interface MosquittoOptions {
  /** Users (name → password); when given, anonymous clients are refused. */
  users?: Record<string, string>;
  /** Port on 127.0.0.1; default a free one. */
  port?: number;
  /**
   * A TLS listener: a fresh CA, a server certificate it signed (CN=localhost, subjectAltName
   * IP:127.0.0.1 and DNS:localhost) and a client certificate it signed, made with openssl. With
   * `requireClientCert` the broker refuses clients without a certificate from that CA.
   */
  tls?: { requireClientCert?: boolean };
}

/** PEM texts of the TLS listener (see MosquittoOptions.tls) and the server certificate's SHA-256 fingerprint. */
export interface MosquittoTls {
  ca: string;
  clientCert: string;
  clientKey: string;
  serverFingerprint256: string;
}

const live = new Map<number, string>();
const dirs = new Set<string>();
let hooked = false;
function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const pid of live.keys()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      s.removeAllListeners();
      s.on('error', () => undefined);
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class MosquittoPeer {
  readonly host = '127.0.0.1';
  private child: cp.ChildProcess | null = null;
  tls: MosquittoTls | null = null;

  private constructor(readonly dir: string, public port: number, readonly opts: MosquittoOptions) {}

  get logFile(): string {
    return path.join(this.dir, 'mosquitto.log');
  }

  get url(): string {
    return `mqtt://${this.host}:${this.port}`;
  }

  static async start(opts: MosquittoOptions = {}): Promise<MosquittoPeer> {
    hook();
    if (!fs.existsSync(MOSQUITTO_BIN)) {
      throw new Error(`${MOSQUITTO_BIN} not found: install the Debian packages mosquitto mosquitto-clients (npm test does it as root: scripts/test-env.sh)`);
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-mosquitto-'));
    dirs.add(dir);
    fs.chmodSync(dir, 0o755);
    const peer = new MosquittoPeer(dir, opts.port ?? (await freePort()), opts);
    await peer.writeConfig();
    await peer.launch();
    return peer;
  }

  private async writeConfig(): Promise<void> {
    const lines = [`listener ${this.port} 127.0.0.1`];
    if (this.opts.tls) {
      this.tls = makeCertificates(this.dir);
      lines.push(`cafile ${path.join(this.dir, 'ca.crt')}`, `certfile ${path.join(this.dir, 'server.crt')}`, `keyfile ${path.join(this.dir, 'server.key')}`);
      lines.push(`require_certificate ${this.opts.tls.requireClientCert ? 'true' : 'false'}`);
    }
    lines.push('persistence false', `log_dest file ${this.logFile}`, 'log_type all', 'connection_messages true');
    if (this.opts.users && Object.keys(this.opts.users).length) {
      const pw = path.join(this.dir, 'passwd');
      let first = true;
      for (const [user, pass] of Object.entries(this.opts.users)) {
        const r = cp.spawnSync(MOSQUITTO_PASSWD_BIN, first ? ['-c', '-b', pw, user, pass] : ['-b', pw, user, pass], { encoding: 'utf8', timeout: 10_000 });
        if (r.status !== 0) throw new Error(`mosquitto_passwd failed: ${r.stderr || r.error?.message}`);
        first = false;
      }
      fs.chmodSync(pw, 0o644);
      lines.push('allow_anonymous false', `password_file ${pw}`);
    } else {
      lines.push('allow_anonymous true');
    }
    fs.writeFileSync(path.join(this.dir, 'mosquitto.conf'), lines.join('\n') + '\n');
    fs.writeFileSync(this.logFile, '');
    fs.chmodSync(this.logFile, 0o666);
  }

  private async launch(): Promise<void> {
    const out = fs.openSync(path.join(this.dir, 'stdout.log'), 'a');
    try {
      this.child = cp.spawn(MOSQUITTO_BIN, ['-c', path.join(this.dir, 'mosquitto.conf')], { stdio: ['ignore', out, out] });
    } finally {
      fs.closeSync(out);
    }
    const child = this.child;
    if (child.pid) live.set(child.pid, 'mosquitto');
    child.once('exit', () => child.pid && live.delete(child.pid));
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) break;
      if (await canConnect(this.port)) return;
      await sleep(50);
    }
    const log = fs.readFileSync(this.logFile, 'utf8') + fs.readFileSync(path.join(this.dir, 'stdout.log'), 'utf8');
    await this.stop();
    throw new Error(`mosquitto did not listen on 127.0.0.1:${this.port} within 10 s\n${log.split('\n').slice(-20).join('\n')}`);
  }

  /** Stop by PID (SIGTERM, then SIGKILL after 5 s). */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }

  /** Stop and start again on the same port (retained messages are gone: persistence is off). */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  /** Stop and remove the folder. */
  async dispose(): Promise<void> {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
    dirs.delete(this.dir);
  }

  log(): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }
}

/** openssl, no shell; throws with its output on failure. */
function openssl(dir: string, args: string[]): string {
  const r = cp.spawnSync('openssl', args, { cwd: dir, encoding: 'utf8', timeout: 20_000 });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr || r.error?.message}`);
  return r.stdout;
}

/** A CA, a server and a client certificate signed by it (RSA 2048, 1 day), readable by the broker. */
function makeCertificates(dir: string): MosquittoTls {
  const f = (n: string) => path.join(dir, n);
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=UPS orchestrator test CA', '-keyout', f('ca.key'), '-out', f('ca.crt')]);
  fs.writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
  openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', f('server.key'), '-out', f('server.csr')]);
  openssl(dir, ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '1', '-extfile', f('server.ext'), '-out', f('server.crt')]);
  fs.writeFileSync(f('client.ext'), 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n');
  openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=upsorch-client', '-keyout', f('client.key'), '-out', f('client.csr')]);
  openssl(dir, ['x509', '-req', '-in', f('client.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '1', '-extfile', f('client.ext'), '-out', f('client.crt')]);
  for (const n of ['ca.crt', 'server.crt', 'server.key']) fs.chmodSync(f(n), 0o644); // the broker drops privileges when started as root
  const fp = openssl(dir, ['x509', '-noout', '-fingerprint', '-sha256', '-in', f('server.crt')]).trim().replace(/^.*=/, '');
  return { ca: fs.readFileSync(f('ca.crt'), 'utf8'), clientCert: fs.readFileSync(f('client.crt'), 'utf8'), clientKey: fs.readFileSync(f('client.key'), 'utf8'), serverFingerprint256: fp };
}
