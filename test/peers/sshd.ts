/**
 * SshdPeer: a private OpenSSH server on a free loopback port for the SSH and libvirt tests.
 *
 * What it is: Debian's real /usr/sbin/sshd (run as root, in the foreground, by PID) with its own
 * ed25519 host key, one authorised client key (a second key is NOT authorised, for the auth-failure
 * test), public-key login only (UsePAM no, PasswordAuthentication no: a password test would need a
 * system user with a password, which the tests do not create), StrictModes no (keys live in /tmp).
 *
 * SAFETY — this sshd runs as root on the machine that runs the tests, so no test may ever be able to
 * power off or reboot it. Every session goes through a ForceCommand wrapper that
 *   1. appends the command to commands.log (NUL-separated),
 *   2. REFUSES (exit 126, logged to refused.log) anything with `sbin` in it, an absolute path to a
 *      system or power tool (/…/shutdown, /…/systemctl, /…/virsh …), `init`, `telinit`, `kexec`,
 *      `sysrq`, `kill`, `mount`, `loginctl`, dbus tools, `busybox`, script interpreters, a PATH
 *      change, /proc/sysrq-trigger, /sys/power, interactive shells;
 *   3. runs the rest with PATH=<fakebin>:/usr/bin:/bin, where fakebin holds fake shutdown, poweroff,
 *      halt, reboot, systemctl, synoshutdown, midclt, esxcli, docker, umount and sudo that only log
 *      their arguments to fake.log (sudo strips its options and runs the rest from that PATH), and
 *      `hang` (sleeps, for the "command that hangs" test; its PIDs are recorded and killed at stop).
 * The wrapper is a safety net against mistakes in tests, not a sandbox against a hostile client.
 *
 * virsh shim (fakebin/virsh): libvirt's test driver shuts a domain down at once and cannot ignore
 * ACPI. To test "graceful shutdown times out, then destroy" honestly, the shim swallows `shutdown`
 * for domains whose name starts with `stubborn` (logged to fake.log, answered with what virsh
 * prints, exit 0) — exactly what a guest that ignores the ACPI button looks like to virsh. Every
 * other call goes to the real /usr/bin/virsh, and only for `test…` URIs (anything else is refused).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Daemon, childrenOf, clientConnections, freePort, isAlive, run, sleep, spawnDaemon, stopDaemon, tailFile, trackDir, untrackDir, waitUntil } from './proc';

export const SSHD_BIN = '/usr/sbin/sshd';
const KEYGEN = '/usr/bin/ssh-keygen';

const FAKE_TOOLS = ['shutdown', 'poweroff', 'halt', 'reboot', 'systemctl', 'synoshutdown', 'midclt', 'esxcli', 'umount'];

const WRAPPER = String.raw`#!/bin/sh
# ForceCommand of the test sshd (test/peers/sshd.ts): log, refuse anything that could reach a real
# power tool, run the rest with fake tools first in PATH.
D='__DIR__'
cd "$D" || exit 126
cmd=${'$'}{SSH_ORIGINAL_COMMAND-}
printf '%s\0' "$cmd" >> "$D/commands.log"
refuse() { printf '%s\0' "$1: $cmd" >> "$D/refused.log"; echo "test sshd: refused ($1)" >&2; exit 126; }
[ -n "$cmd" ] || refuse 'interactive shell'
lc=$(printf '%s' "$cmd" | tr 'A-Z' 'a-z')
case "$lc" in
  *sbin*) refuse 'sbin' ;;
  */shutdown*|*/poweroff*|*/halt*|*/reboot*|*/systemctl*|*/init*|*/telinit*|*/synoshutdown*|*/midclt*|*/esxcli*) refuse 'absolute path to a power tool' ;;
  */docker*|*/umount*|*/mount*|*/virsh*|*/sudo*|*/kexec*|*/busybox*|*/loginctl*|*/sh\ *|*/bash*|*/env\ *) refuse 'absolute path to a system tool' ;;
  */proc/sysrq*|*/sys/power*|*/dev/watchdog*|*/proc/1/*|*sysrq*) refuse 'kernel power interface' ;;
esac
if printf '%s' "$lc" | grep -Eq '(^|[^a-z0-9_.-])(init|telinit|kexec|loginctl|dbus-send|busctl|gdbus|openrc-shutdown|busybox|kill|pkill|killall|mount|swapoff|hash|python[0-9.]*|perl|ruby|node|php|lua|nsenter|chroot|unshare|su|doas|ssh)($|[^a-z0-9_-])'; then refuse 'forbidden tool'; fi
if printf '%s' "$lc" | grep -Eq '(^|[^a-z0-9_])path[[:space:]]*[+]?='; then refuse 'PATH change'; fi
PATH="$D/fakebin:/usr/bin:/bin"; export PATH
exec /bin/sh -c "$cmd"
`;

const FAKE_TOOL = String.raw`#!/bin/sh
printf '%s\0' "__NAME__ $*" >> '__DIR__/fake.log'
echo "fake __NAME__: $*"
`;

// Like the real CLI: \`ps\` lists the containers (docker-ps.txt when a test set it), and
// start/stop without a container name fail with exit 1.
const FAKE_DOCKER = String.raw`#!/bin/sh
printf '%s\0' "docker $*" >> '__DIR__/fake.log'
case "$1" in
  ps) if [ -f '__DIR__/docker-ps.txt' ]; then cat '__DIR__/docker-ps.txt'; else printf 'c0ffee000001\nc0ffee000002\n'; fi ;;
  start|stop) if [ $# -lt 2 ]; then echo "\"docker $1\" requires at least 1 argument." >&2; exit 1; fi ;;
esac
`;

const FAKE_SUDO = String.raw`#!/bin/sh
printf '%s\0' "sudo $*" >> '__DIR__/fake.log'
while [ $# -gt 0 ]; do case "$1" in --) shift; break ;; -*) shift ;; *) break ;; esac; done
exec "$@"
`;

const FAKE_HANG = String.raw`#!/bin/sh
echo $$ >> '__DIR__/hang.pids'
printf '%s\0' "hang $*" >> '__DIR__/fake.log'
exec sleep "${'$'}{1:-60}"
`;

const VIRSH_SHIM = String.raw`#!/bin/sh
# virsh shim (see test/peers/sshd.ts): guests named stubborn* ignore "shutdown"; test URIs only.
D='__DIR__'
uri=''; sub=''; dom=''; expect=''
for a do
  if [ -n "$expect" ]; then
    case "$expect" in uri) uri=$a ;; dom) dom=$a ;; esac
    expect=''; continue
  fi
  case "$a" in
    -c|--connect) expect=uri ;;
    --domain) expect=dom ;;
    --mode|--timeout) expect=skip ;;
    -*) ;;
    *) if [ -z "$sub" ]; then sub=$a; elif [ -z "$dom" ]; then dom=$a; fi ;;
  esac
done
case "$uri" in
  test*) ;;
  *) printf '%s\0' "virsh shim: URI '$uri'" >> "$D/refused.log"; echo "virsh shim: refusing URI '$uri' (test driver only)" >&2; exit 126 ;;
esac
if [ "$sub" = shutdown ]; then
  name=$dom
  if printf '%s' "$dom" | grep -Eqi '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'; then
    name=$(/usr/bin/virsh -c "$uri" domname --domain "$dom" 2>/dev/null | head -n 1)
  fi
  case "$name" in
    stubborn*)
      printf '%s\0' "virsh shutdown $name (the guest ignores it)" >> "$D/fake.log"
      printf "Domain '%s' is being shutdown\n\n" "$name"
      exit 0 ;;
  esac
fi
exec /usr/bin/virsh "$@"
`;

export interface SshdPeerOptions {
  /** Fixed port; default a free one. */
  port?: number;
}

export class SshdPeer {
  readonly host = '127.0.0.1' as const;
  readonly user = 'root' as const;
  private daemon?: Daemon;
  private stopping?: Promise<void>;
  /** The authorised client's private key (OpenSSH format). */
  clientKey = '';
  /** A valid key the server does not accept. */
  otherKey = '';
  /** `SHA256:…` of the host key, as `ssh-keygen -lf` prints it (independent of the code under test). */
  hostKeyFingerprint = '';
  /** The fingerprint of some other key, for the mismatch test. */
  otherFingerprint = '';

  private constructor(readonly dir: string, private _port: number) {}

  get port(): number {
    return this._port;
  }

  private get log(): string {
    return path.join(this.dir, 'sshd.log');
  }

  static async start(opts: SshdPeerOptions = {}): Promise<SshdPeer> {
    if (process.platform !== 'linux' || process.getuid?.() !== 0) throw new Error('SshdPeer needs Linux and root (it runs /usr/sbin/sshd)');
    for (const b of [SSHD_BIN, KEYGEN]) {
      if (!fs.existsSync(b)) throw new Error(`SshdPeer: ${b} is missing: apt-get install openssh-server openssh-client`);
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-sshd-'));
    trackDir(dir);
    const peer = new SshdPeer(dir, opts.port ?? (await freePort()));
    try {
      await peer.prepare();
      for (let attempt = 1; ; attempt++) {
        try {
          await peer.spawn();
          break;
        } catch (err) {
          if (opts.port !== undefined || attempt >= 3 || !/already in use|Cannot bind/i.test(tailFile(peer.log, 10))) throw err;
          peer._port = await freePort();
          peer.writeConfig();
        }
      }
      return peer;
    } catch (err) {
      const msg = `SshdPeer.start failed: ${(err as Error).message}\n--- sshd.log ---\n${tailFile(peer.log)}`;
      await peer.stop().catch(() => undefined);
      throw new Error(msg);
    }
  }

  private async keygen(file: string, comment: string): Promise<void> {
    const r = await run(KEYGEN, ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file]);
    if (r.code !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`);
  }

  private async fingerprintOf(pubFile: string): Promise<string> {
    const r = await run(KEYGEN, ['-l', '-E', 'sha256', '-f', pubFile]);
    const fp = r.stdout.split(/\s+/)[1];
    if (r.code !== 0 || !fp?.startsWith('SHA256:')) throw new Error(`ssh-keygen -lf ${pubFile}: ${r.stdout} ${r.stderr}`);
    return fp;
  }

  private async prepare(): Promise<void> {
    const d = this.dir;
    await this.keygen(path.join(d, 'hostkey'), 'upsorch-test-host');
    await this.keygen(path.join(d, 'client'), 'upsorch-test-client');
    await this.keygen(path.join(d, 'other'), 'upsorch-test-other');
    this.clientKey = fs.readFileSync(path.join(d, 'client'), 'utf8');
    this.otherKey = fs.readFileSync(path.join(d, 'other'), 'utf8');
    this.hostKeyFingerprint = await this.fingerprintOf(path.join(d, 'hostkey.pub'));
    this.otherFingerprint = await this.fingerprintOf(path.join(d, 'other.pub'));
    fs.copyFileSync(path.join(d, 'client.pub'), path.join(d, 'authorized_keys'));
    fs.chmodSync(path.join(d, 'authorized_keys'), 0o600);

    const fakebin = path.join(d, 'fakebin');
    fs.mkdirSync(fakebin);
    const put = (file: string, text: string) => fs.writeFileSync(file, text.replace(/__DIR__/g, d), { mode: 0o755 });
    for (const t of FAKE_TOOLS) put(path.join(fakebin, t), FAKE_TOOL.replace(/__NAME__/g, t));
    put(path.join(fakebin, 'docker'), FAKE_DOCKER);
    put(path.join(fakebin, 'sudo'), FAKE_SUDO);
    put(path.join(fakebin, 'hang'), FAKE_HANG);
    put(path.join(fakebin, 'virsh'), VIRSH_SHIM);
    put(path.join(d, 'wrapper.sh'), WRAPPER);
    for (const f of ['commands.log', 'refused.log', 'fake.log', 'hang.pids']) fs.writeFileSync(path.join(d, f), '');
    this.writeConfig();
    // sshd insists on its privilege-separation directory.
    fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  }

  private writeConfig(): void {
    const d = this.dir;
    fs.writeFileSync(
      path.join(d, 'sshd_config'),
      [
        `Port ${this._port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${d}/hostkey`,
        `PidFile ${d}/sshd.pid`,
        `AuthorizedKeysFile ${d}/authorized_keys`,
        'PermitRootLogin prohibit-password',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        'PermitTTY no',
        'X11Forwarding no',
        'AllowTcpForwarding no',
        'AllowAgentForwarding no',
        'PermitUserEnvironment no',
        'PrintMotd no',
        'MaxStartups 50',
        'MaxSessions 20',
        'LogLevel VERBOSE',
        `ForceCommand ${d}/wrapper.sh`,
        '',
      ].join('\n'),
    );
  }

  private async spawn(): Promise<void> {
    const cfg = path.join(this.dir, 'sshd_config');
    const t = await run(SSHD_BIN, ['-t', '-f', cfg]);
    if (t.code !== 0) throw new Error(`sshd -t: ${t.stderr.trim()}`);
    // An absolute path is required ("sshd re-exec requires execution with an absolute path").
    const d = spawnDaemon(SSHD_BIN, ['-D', '-e', '-f', cfg], this.log);
    this.daemon = d;
    await waitUntil(`sshd on ${this.host}:${this._port}`, 10_000, async () => {
      if (d.exitedYet) throw new Error('sshd exited at start');
      return (await this.banner()).startsWith('SSH-2.0');
    });
  }

  /** The first line the server sends, or '' if nothing answers. */
  private banner(): Promise<string> {
    return new Promise((resolve) => {
      const s = net.connect({ host: this.host, port: this._port });
      let buf = '';
      const done = (v: string) => {
        clearTimeout(timer);
        s.removeAllListeners();
        s.on('error', () => undefined);
        s.destroy();
        resolve(v);
      };
      const timer = setTimeout(() => done(''), 1000);
      s.on('data', (c) => {
        buf += c.toString('latin1');
        if (buf.includes('\n')) done(buf.split('\n')[0]);
      });
      s.once('error', () => done(''));
      s.once('close', () => done(buf));
    });
  }

  private records(file: string): string[] {
    try {
      return fs.readFileSync(path.join(this.dir, file), 'utf8').split('\0').filter((x) => x !== '');
    } catch {
      return [];
    }
  }

  /** Every command the server was asked to run, in order. */
  commands(): string[] {
    return this.records('commands.log');
  }

  /** Commands the wrapper (or the virsh shim) refused, with the reason. */
  refused(): string[] {
    return this.records('refused.log');
  }

  /** Calls of the fake tools: "poweroff", "docker stop -t 30 c0ffee000001 c0ffee000002", … */
  fakeCalls(): string[] {
    return this.records('fake.log');
  }

  /** What the fake \`docker ps\` lists from now on; null for the default two containers. */
  setContainers(ids: string[] | null): void {
    const f = path.join(this.dir, 'docker-ps.txt');
    if (ids === null) fs.rmSync(f, { force: true });
    else fs.writeFileSync(f, ids.map((i) => i + '\n').join(''));
  }

  clearLogs(): void {
    for (const f of ['commands.log', 'refused.log', 'fake.log']) fs.writeFileSync(path.join(this.dir, f), '');
  }

  /** Wait until a command matching `pred` arrives. */
  async waitForCommand(pred: (c: string) => boolean, ms = 10_000): Promise<string> {
    let hit: string | undefined;
    await waitUntil('a command at the test sshd', ms, () => (hit = this.commands().find(pred)) !== undefined);
    return hit!;
  }

  /** Our established client connections to this server. */
  connections(): number {
    return clientConnections(this._port);
  }

  /** "The host goes down": stop listening (sessions already open stay as they are). */
  async goDown(): Promise<void> {
    if (this.daemon) await stopDaemon(this.daemon);
    this.daemon = undefined;
  }

  /** Listen again on the same port. */
  async comeUp(): Promise<void> {
    if (!this.daemon) await this.spawn();
  }

  private killHangs(): void {
    for (const line of fs.existsSync(path.join(this.dir, 'hang.pids')) ? fs.readFileSync(path.join(this.dir, 'hang.pids'), 'utf8').split('\n') : []) {
      const pid = Number(line.trim());
      if (!pid || !isAlive(pid)) continue;
      try {
        // Only our `hang` (exec'd into sleep): a recycled PID would not be running sleep.
        if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sleep')) process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }

  /** Stop sshd, its session processes and leftover `hang`s, by PID; remove the folder. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const listener = this.daemon;
      const sessions = listener ? childrenOf(listener.pid) : [];
      if (listener) await stopDaemon(listener);
      this.daemon = undefined;
      for (const pid of sessions) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          /* gone */
        }
      }
      this.killHangs();
      await sleep(50);
      fs.rmSync(this.dir, { recursive: true, force: true });
      untrackDir(this.dir);
    })();
    return this.stopping;
  }
}
