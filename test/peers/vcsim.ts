/**
 * VcsimPeer: VMware's own vCenter/ESXi simulator (govmomi 0.24's vcsim, built by
 * test/peers/vcsim/build.sh from Debian's source with this project's extensions) on a free
 * loopback port, started by PID and stopped by PID.
 *
 * Facts this relies on: vcsim serves https://127.0.0.1:<port>/sdk with Go's built-in test
 * certificate (self-signed, stable fingerprint) unless -tlscert is given; it prints "READY <url>"
 * (our main.go) once it serves; tasks complete synchronously; every VM starts powered on. The
 * extensions (upsorch_ext.go) make Tools follow the power state and guest shutdown take time.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { Daemon, freePort, run, spawnDaemon, stopDaemon, tailFile, trackDir, untrackDir, waitUntil } from './proc';

const BUILD_SCRIPT = path.join(__dirname, 'vcsim', 'build.sh');
let built: Promise<string> | null = null;

/** Build (or reuse the cached build of) vcsim; resolves with the binary's path. */
export function buildVcsim(): Promise<string> {
  built ??= run('bash', [BUILD_SCRIPT], 400_000).then((r) => {
    const bin = r.stdout.trim().split('\n').pop() ?? '';
    if (r.code !== 0 || !bin || !fs.existsSync(bin)) throw new Error(`vcsim build failed (exit ${r.code}):\n${r.stderr.trim()}`);
    return bin;
  });
  built.catch(() => {
    built = null;
  });
  return built;
}

export interface VcsimOptions {
  /** Standalone ESXi model instead of vCenter. */
  esx?: boolean;
  username?: string;
  password?: string;
  /** Further flags, e.g. ['-vm', '3', '-no-tools', 'notools', '-rename', 'DC0_H0_VM0=web1']. */
  args?: string[];
  /** PEM cert + key to serve instead of Go's test certificate. */
  cert?: { cert: string; key: string };
}

export class VcsimPeer {
  private constructor(
    private readonly daemon: Daemon,
    readonly port: number,
    readonly dir: string,
    readonly username: string,
    readonly password: string,
  ) {}

  get url(): string {
    return `https://127.0.0.1:${this.port}/sdk`;
  }

  get pid(): number {
    return this.daemon.pid;
  }

  static async start(o: VcsimOptions = {}): Promise<VcsimPeer> {
    const bin = await buildVcsim();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-vcsim-'));
    trackDir(dir);
    const username = o.username ?? (o.esx ? 'root' : 'admin');
    const password = o.password ?? 'secret';
    const args = ['-username', username, '-password', password, ...(o.esx ? ['-esx'] : []), ...(o.args ?? [])];
    if (o.cert) {
      fs.writeFileSync(path.join(dir, 'cert.pem'), o.cert.cert);
      fs.writeFileSync(path.join(dir, 'key.pem'), o.cert.key, { mode: 0o600 });
      args.push('-tlscert', path.join(dir, 'cert.pem'), '-tlskey', path.join(dir, 'key.pem'));
    }
    const log = path.join(dir, 'vcsim.log');
    for (let attempt = 0; ; attempt++) {
      const port = await freePort();
      // vcsim writes VM files under TMPDIR: keep them in our folder.
      const d = spawnDaemon(bin, ['-l', `127.0.0.1:${port}`, ...args], log, { ...process.env, TMPDIR: dir });
      try {
        await waitUntil('vcsim to print READY', 60_000, () => {
          if (d.exitedYet) throw new Error(`vcsim exited:\n${tailFile(log)}`);
          return fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes(`READY https://127.0.0.1:${port}/sdk`);
        });
        return new VcsimPeer(d, port, dir, username, password);
      } catch (err) {
        await stopDaemon(d);
        if (attempt < 2 && /address already in use/.test(tailFile(log))) continue;
        untrackDir(dir);
        fs.rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }

  /** SHA-256 fingerprint of the certificate it serves (hex, no colons). */
  fingerprint(): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: this.port, rejectUnauthorized: false }, () => {
        const fp = s.getPeerCertificate().fingerprint256.replace(/:/g, '');
        s.end();
        resolve(fp);
      });
      s.once('error', reject);
      s.setTimeout(5000, () => s.destroy(new Error('no TLS handshake within 5 s')));
    });
  }

  log(): string {
    return tailFile(path.join(this.dir, 'vcsim.log'), 40);
  }

  async stop(): Promise<void> {
    await stopDaemon(this.daemon);
    untrackDir(this.dir);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
