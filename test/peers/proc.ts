/**
 * Process helpers for the test peers in this folder (sshd.ts, libvirt.ts): spawn a daemon with its
 * output in a log file and its PID tracked, stop it by that PID (SIGTERM, bounded wait, SIGKILL),
 * and a process 'exit' hook that SIGKILLs whatever is still alive. Nothing is killed by name.
 */
import * as cp from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';

const live = new Map<number, string>();
const liveDirs = new Set<string>();
let hooked = false;

function killAllSync(): void {
  for (const pid of live.keys()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  live.clear();
  for (const d of liveDirs) {
    try {
      fs.rmSync(d, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
  liveDirs.clear();
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', killAllSync);
}

/** Remove `dir` at process exit if the peer did not. */
export function trackDir(dir: string): void {
  hook();
  liveDirs.add(dir);
}
export function untrackDir(dir: string): void {
  liveDirs.delete(dir);
}

export interface Daemon {
  readonly pid: number;
  readonly label: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exitedYet: boolean;
}

export function spawnDaemon(bin: string, args: string[], logFile: string, env: NodeJS.ProcessEnv = process.env): Daemon {
  hook();
  const fd = fs.openSync(logFile, 'a');
  let child: cp.ChildProcess;
  try {
    child = cp.spawn(bin, args, { stdio: ['ignore', fd, fd], env });
  } finally {
    fs.closeSync(fd);
  }
  if (child.pid === undefined) throw new Error(`could not start ${bin}`);
  const pid = child.pid;
  const label = `${bin} ${args.join(' ')}`;
  live.set(pid, label);
  const d: Daemon = {
    pid,
    label,
    exitedYet: false,
    exited: new Promise((resolve) => {
      child.once('error', () => {
        d.exitedYet = true;
        live.delete(pid);
        resolve({ code: null, signal: null });
      });
      child.once('exit', (code, signal) => {
        d.exitedYet = true;
        live.delete(pid);
        resolve({ code, signal });
      });
    }),
  };
  return d;
}

/** SIGTERM, wait up to `graceMs`, then SIGKILL; resolves when the process has exited. */
export async function stopDaemon(d: Daemon, graceMs = 5000): Promise<void> {
  if (d.exitedYet) return;
  try {
    process.kill(d.pid, 'SIGTERM');
  } catch {
    /* gone */
  }
  const t = await Promise.race([d.exited.then(() => true), sleep(graceMs).then(() => false)]);
  if (!t) {
    try {
      process.kill(d.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    await Promise.race([d.exited, sleep(2000)]);
  }
}

/** PIDs whose parent is `ppid` (from /proc). */
export function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      // pid (comm) state ppid …; comm may contain spaces and parentheses: split after the last ')'.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === ppid && rest[0] !== 'Z') out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

export function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Run a tool (no shell) and collect its output; rejects after `timeoutMs`. */
export function run(bin: string, args: string[], timeoutMs = 15000, env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    cp.execFile(bin, args, { timeout: timeoutMs, killSignal: 'SIGKILL', env, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolve({ code: 0, stdout, stderr });
      const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean };
      if (e.killed) return reject(new Error(`${bin} ${args.join(' ')}: no result within ${timeoutMs} ms`));
      if (typeof e.code === 'number') return resolve({ code: e.code, stdout, stderr });
      reject(new Error(`${bin} ${args.join(' ')}: ${e.message}`));
    });
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

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function tailFile(file: string, lines = 25): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch (e) {
    return `(cannot read ${file}: ${(e as Error).message})`;
  }
}

/** Poll `check` every 100 ms until it returns true, or fail after `ms` with `what`. */
export async function waitUntil(what: string, ms: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** Established client connections (in this network namespace) to 127.0.0.1:port, from /proc/net/tcp. */
export function clientConnections(port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let n = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!fs.existsSync(file)) continue;
    for (const line of fs.readFileSync(file, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length > 3 && cols[2].endsWith(':' + hexPort) && cols[3] === '01') n++;
    }
  }
  return n;
}
