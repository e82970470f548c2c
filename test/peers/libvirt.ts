/**
 * LibvirtPeer: a private libvirtd with only libvirt's built-in test driver, for the libvirt tests.
 *
 * What it is: Debian's real /usr/sbin/libvirtd (run as root in the foreground, by PID) with
 * LIBVIRT_DRIVER_DIR pointing at an empty folder, so no hypervisor driver (qemu, lxc, network,
 * storage) loads — only the test driver, which keeps domains in memory. Its own config puts the
 * sockets in a temp folder (unix_sock_dir, auth_unix_rw none) and it does not listen on TCP.
 * Clients use `test+unix:///default?socket=<dir>/run/libvirt-sock`.
 *
 * The test driver's state (test:///default) lives only while a connection is open, so one
 * `virsh event --all --loop --timestamp` stays connected for the peer's lifetime; it also logs
 * every lifecycle event (events()), which tests assert on.
 *
 * What it does not model: the test driver shuts a domain off instantly and cannot ignore ACPI, has
 * no guest agent, and rejects `shutdown --mode`. A guest that ignores shutdown is emulated by the
 * SSH peer's virsh shim (see sshd.ts) for domains named stubborn*.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Daemon, run, spawnDaemon, stopDaemon, tailFile, trackDir, untrackDir, waitUntil } from './proc';

export const LIBVIRTD_BIN = '/usr/sbin/libvirtd';
export const VIRSH_BIN = '/usr/bin/virsh';

export interface DomainSpec {
  name: string;
  /** Start it after defining (default true). */
  running?: boolean;
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;');
}

export class LibvirtPeer {
  private daemon?: Daemon;
  private holder?: Daemon;
  private stopping?: Promise<void>;
  readonly uri: string;

  private constructor(readonly dir: string) {
    this.uri = `test+unix:///default?socket=${path.join(dir, 'run', 'libvirt-sock')}`;
  }

  static async start(domains: DomainSpec[] = []): Promise<LibvirtPeer> {
    if (process.platform !== 'linux' || process.getuid?.() !== 0) throw new Error('LibvirtPeer needs Linux and root');
    for (const b of [LIBVIRTD_BIN, VIRSH_BIN]) {
      if (!fs.existsSync(b)) throw new Error(`LibvirtPeer: ${b} is missing: apt-get install libvirt-daemon libvirt-clients`);
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-libvirt-'));
    trackDir(dir);
    const peer = new LibvirtPeer(dir);
    try {
      await peer.spawn();
      for (const d of domains) await peer.define(d.name, d.running !== false);
      return peer;
    } catch (err) {
      const msg = `LibvirtPeer.start failed: ${(err as Error).message}\n--- libvirtd.out ---\n${tailFile(path.join(dir, 'libvirtd.out'))}\n--- libvirtd.log ---\n${tailFile(path.join(dir, 'libvirtd.log'))}`;
      await peer.stop().catch(() => undefined);
      throw new Error(msg);
    }
  }

  private async spawn(): Promise<void> {
    const d = this.dir;
    fs.mkdirSync(path.join(d, 'run'));
    fs.mkdirSync(path.join(d, 'nodrivers'));
    fs.writeFileSync(
      path.join(d, 'libvirtd.conf'),
      [
        `unix_sock_dir = "${d}/run"`,
        'unix_sock_rw_perms = "0700"',
        'auth_unix_rw = "none"',
        'auth_unix_ro = "none"',
        'listen_tls = 0',
        'listen_tcp = 0',
        `log_outputs = "3:file:${d}/libvirtd.log"`,
        '',
      ].join('\n'),
    );
    const env = { ...process.env, LIBVIRT_DRIVER_DIR: path.join(d, 'nodrivers') };
    this.daemon = spawnDaemon(LIBVIRTD_BIN, ['-f', path.join(d, 'libvirtd.conf'), '-p', path.join(d, 'libvirtd.pid')], path.join(d, 'libvirtd.out'), env);
    const daemon = this.daemon;
    await waitUntil('libvirtd to answer', 20_000, async () => {
      if (daemon.exitedYet) throw new Error('libvirtd exited at start');
      return (await this.virsh(['uri'], 3000).catch(() => ({ code: 1 }))).code === 0;
    });
    // Keep one connection open: the test driver's state lives as long as a connection does.
    this.holder = spawnDaemon(VIRSH_BIN, ['-c', this.uri, 'event', '--all', '--loop', '--timestamp'], path.join(d, 'events.log'));
    const holder = this.holder;
    // Connected once a domain defined by another connection is still there afterwards.
    const probe = path.join(d, 'probe.xml');
    fs.writeFileSync(probe, "<domain type='test'><name>upsorch-probe</name><memory>1024</memory><os><type>hvm</type></os></domain>\n");
    await waitUntil('the event listener to hold the test driver open', 10_000, async () => {
      if (holder.exitedYet) throw new Error(`virsh event exited: ${tailFile(path.join(d, 'events.log'), 5)}`);
      await this.virsh(['define', '--file', probe]);
      return (await this.virsh(['list', '--all', '--name'])).stdout.split('\n').includes('upsorch-probe');
    });
    await this.virsh(['undefine', '--domain', 'upsorch-probe']);
  }

  /** Run the real virsh (not the SSH peer's shim) against this libvirtd. */
  virsh(args: string[], timeoutMs = 15_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return run(VIRSH_BIN, ['-c', this.uri, ...args], timeoutMs, { ...process.env, LC_ALL: 'C' });
  }

  /** Define a minimal test-driver domain (any name: it is XML-escaped) and optionally start it. */
  async define(name: string, running = true): Promise<void> {
    const file = path.join(this.dir, `domain-${Date.now()}-${Math.random().toString(36).slice(2)}.xml`);
    fs.writeFileSync(file, `<domain type='test'><name>${xmlEscape(name)}</name><memory>1048576</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>\n`);
    const r = await this.virsh(['define', '--file', file]);
    if (r.code !== 0) throw new Error(`virsh define ${JSON.stringify(name)}: ${r.stderr.trim()}`);
    if (running) await this.start(name);
  }

  async start(name: string): Promise<void> {
    const r = await this.virsh(['start', '--domain', name]);
    if (r.code !== 0) throw new Error(`virsh start ${JSON.stringify(name)}: ${r.stderr.trim()}`);
  }

  /** Bring a domain to a state directly, for test setup: running, shut off, paused. */
  async setState(name: string, state: 'running' | 'shut off' | 'paused'): Promise<void> {
    const now = await this.state(name);
    if (now === state) return;
    if (state === 'shut off') await this.virsh(['destroy', '--domain', name]);
    else if (state === 'running') await this.virsh([now === 'paused' ? 'resume' : 'start', '--domain', name]);
    else {
      if (now !== 'running') await this.virsh(['start', '--domain', name]);
      await this.virsh(['suspend', '--domain', name]);
    }
    const after = await this.state(name);
    if (after !== state) throw new Error(`could not bring ${JSON.stringify(name)} to ${state} (it is ${after})`);
  }

  /** `virsh domstate` of a domain ("running", "shut off", "paused"). */
  async state(name: string): Promise<string> {
    const r = await this.virsh(['domstate', '--domain', name]);
    if (r.code !== 0) throw new Error(`virsh domstate ${JSON.stringify(name)}: ${r.stderr.trim()}`);
    return r.stdout.trim();
  }

  /** The lifecycle event log ("event 'lifecycle' for domain 'web01': Stopped Shutdown"). */
  events(): string {
    try {
      return fs.readFileSync(path.join(this.dir, 'events.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /** Stop the event listener and libvirtd by PID; remove the folder. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      if (this.holder) await stopDaemon(this.holder);
      if (this.daemon) await stopDaemon(this.daemon);
      this.holder = this.daemon = undefined;
      fs.rmSync(this.dir, { recursive: true, force: true });
      untrackDir(this.dir);
    })();
    return this.stopping;
  }
}
