/**
 * UpsmonPeer: a real `upsmon` (NUT 2.8.0, Debian's nut-client) run as a NUT secondary against a
 * server on loopback, the way a NAS follows a NUT server.
 *
 * Safety: upsmon's SHUTDOWNCMD is the only thing it runs when told to shut down. Here it is
 * always `/usr/bin/touch <marker>` in a private temp folder, built by this file and checked before
 * every start; POWERDOWNFLAG points into the same folder. upsmon reads its configuration from
 * NUT_CONFPATH (a private folder), stays in the foreground (-F), runs as one process (-p, no
 * privileged parent) and is stopped by its PID. On Debian 2.8.0 it writes its PID file to
 * /run/nut/upsmon.pid whatever NUT_ALTPIDPATH says; that file is removed afterwards when it holds
 * this upsmon's PID.
 */
import * as cp from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const UPSMON_BIN = '/lib/nut/upsmon';
const PID_FILE = '/run/nut/upsmon.pid';
const NOTIFY_TYPES = ['ONLINE', 'ONBATT', 'LOWBATT', 'FSD', 'COMMOK', 'COMMBAD', 'SHUTDOWN', 'REPLBATT', 'NOCOMM', 'NOPARENT'];

export interface UpsmonOptions {
  /** `ups@127.0.0.1:3493` */
  system: string;
  username: string;
  password: string;
  role?: 'secondary' | 'primary';
  /** upsmon POLLFREQ in seconds. Default 1. */
  pollFreq?: number;
}

const live = new Set<number>();
let hooked = false;
function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const pid of live) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  });
}

export class UpsmonPeer {
  readonly marker: string;
  readonly logFile: string;
  private readonly child: cp.ChildProcess;
  readonly pid: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;

  private constructor(private readonly dir: string, opts: UpsmonOptions) {
    this.marker = path.join(dir, 'shutdown-ran');
    this.logFile = path.join(dir, 'upsmon.log');
    const shutdownCmd = `/usr/bin/touch ${this.marker}`;
    const conf = [
      `MONITOR ${opts.system} 1 ${opts.username} ${opts.password} ${opts.role ?? 'secondary'}`,
      'MINSUPPLIES 1',
      `SHUTDOWNCMD "${shutdownCmd}"`,
      `POWERDOWNFLAG ${path.join(dir, 'killpower')}`,
      `POLLFREQ ${opts.pollFreq ?? 1}`,
      `POLLFREQALERT ${opts.pollFreq ?? 1}`,
      'DEADTIME 15',
      'FINALDELAY 0',
      'HOSTSYNC 5',
      ...NOTIFY_TYPES.map((n) => `NOTIFYFLAG ${n} SYSLOG`),
      '',
    ].join('\n');
    // The one line that decides what upsmon runs: never anything but touching the marker.
    if (!/^SHUTDOWNCMD "\/usr\/bin\/touch \/[^"\s]+\/shutdown-ran"$/m.test(conf) || !this.marker.startsWith(dir + path.sep)) {
      throw new Error('UpsmonPeer: refusing to start upsmon with an unexpected SHUTDOWNCMD');
    }
    fs.writeFileSync(path.join(dir, 'upsmon.conf'), conf, { mode: 0o600 });
    fs.writeFileSync(path.join(dir, 'nut.conf'), 'MODE=netclient\n', { mode: 0o600 });
    const env = { ...process.env, NUT_CONFPATH: dir, NUT_STATEPATH: dir, NUT_ALTPIDPATH: dir };
    const args = ['-F', '-D', '-p'];
    if (process.getuid?.() === 0) args.push('-u', 'root');
    const fd = fs.openSync(this.logFile, 'a');
    try {
      this.child = cp.spawn(UPSMON_BIN, args, { cwd: dir, env, stdio: ['ignore', fd, fd] });
    } finally {
      fs.closeSync(fd);
    }
    this.child.on('error', () => undefined);
    if (this.child.pid === undefined) throw new Error(`could not start ${UPSMON_BIN}`);
    this.pid = this.child.pid;
    live.add(this.pid);
    hook();
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => {
        live.delete(this.pid);
        this.exit = { code, signal };
        resolve({ code, signal });
      }),
    );
  }

  static start(opts: UpsmonOptions): UpsmonPeer {
    if (!fs.existsSync(UPSMON_BIN)) throw new Error(`${UPSMON_BIN} not found: install Debian's nut-client`);
    for (const v of [opts.username, opts.password, opts.system]) {
      if (!/^[A-Za-z0-9._@:+-]+$/.test(v)) throw new Error(`UpsmonPeer: "${v}" is not safe in upsmon.conf`);
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-upsmon-'));
    fs.chmodSync(dir, 0o700);
    return new UpsmonPeer(dir, opts);
  }

  get shutdownRan(): boolean {
    return fs.existsSync(this.marker);
  }

  log(): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** SIGTERM, then SIGKILL after 3 s; removes its folder and its PID file. Never rejects. */
  async stop(): Promise<void> {
    if (!this.exit) {
      try {
        process.kill(this.pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      let timer: NodeJS.Timeout | undefined;
      const done = await Promise.race([this.exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 3000)))]);
      clearTimeout(timer);
      if (!done) {
        try {
          process.kill(this.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
        await this.exited;
      }
    }
    try {
      if (fs.readFileSync(PID_FILE, 'utf8').trim() === String(this.pid)) fs.rmSync(PID_FILE, { force: true });
    } catch {
      /* no PID file */
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
