/**
 * `npm run bench` (part of it): the NUT server under 200 concurrent clients polling once a second,
 * like 200 upsmon/NAS secondaries. Measures and prints; never asserts.
 *
 * Runs, each BENCH_SECONDS long (default 60):
 *   1. our server (lib/nutserver) serving a simulated UPS, 200 clients;
 *   2. the same with misbehaving clients alongside: one stalled in a STARTTLS handshake, one that
 *      never reads its replies, and a new connection flooding garbage every 2 s;
 *   3. the real upsd 2.8.0 + dummy-ups (the test suite's NutPeer) with the same 200 clients, for
 *      comparison (skipped when NUT is not installed).
 * Each client sends three GET VAR per second (status, charge, runtime) and a LIST VAR every tenth
 * round. The clients run in a child process; the figures are the server's CPU time and memory
 * (our server runs in this process, so "server" includes the simulated UPS's poll loop), and the
 * clients' round-trip times.
 */
import * as cp from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { NutServer } from '../lib/nutserver/server';
import { UpsDevice } from '../lib/ups/device';
import { SimSource } from '../lib/sim/source';
import { UpsState } from '../lib/ups/state';
import { NutPeer, UPSD_BIN } from '../test/peers/nut';

const BENCH_SECONDS = Number(process.env.BENCH_SECONDS || 60);
const CLIENTS = 200;
const CLK_TCK = Number(cp.execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

interface Result {
  name: string;
  polls: number;
  wrong: number;
  dropped: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  cpuPct: number;
  memStart: number;
  memEnd: number;
  memPeak: number;
  /** p99 of this process's event-loop delay (ms): how long any request could have waited for the server. */
  loopP99: number;
  note: string;
}

function pct(xs: number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

function rssMb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Start the client process, let it connect, poll for BENCH_SECONDS, and return what it measured. */
async function runClients(port: number, ups: string, abuse: boolean, onConnected: () => void): Promise<{ latencies: number[]; wrong: number; dropped: number }> {
  const child = cp.spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'nut-server-clients.ts')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  try {
    return await new Promise((resolve, reject) => {
      child.on('message', (m: { type: string; latencies: number[]; wrong: number; dropped: number; message?: string }) => {
        if (m.type === 'connected') onConnected();
        else if (m.type === 'done') resolve(m);
        else if (m.type === 'error') reject(new Error(m.message));
      });
      child.on('exit', (code) => reject(new Error(`client process exited with ${code}`)));
      child.send({ port, ups, clients: CLIENTS, seconds: BENCH_SECONDS, abuse });
    });
  } finally {
    process.removeListener('exit', kill);
    child.kill('SIGKILL');
  }
}

async function ours(abuse: boolean): Promise<Result> {
  const device = new UpsDevice(new SimSource('bench', {}, Date.now()), { name: 'bench', pollMs: 1000, pollOnBatteryMs: 1000 });
  let state: UpsState | undefined;
  const unsubscribe = device.subscribe((s) => (state = s));
  const server = new NutServer({
    host: '127.0.0.1', port: 0, maxConnections: CLIENTS + 50, idleTimeoutMs: 60_000,
    ups: [{ name: 'ups', description: 'bench', state: () => state }],
    users: [],
  });
  const { port } = await server.listen();
  global.gc?.();
  let cpu0 = process.cpuUsage();
  let t0 = performance.now();
  let memStart = 0;
  let memPeak = 0;
  const sampler = setInterval(() => (memPeak = Math.max(memPeak, process.memoryUsage().rss / 1048576)), 500);
  const loop = monitorEventLoopDelay({ resolution: 10 });
  const r = await runClients(port, 'ups', abuse, () => {
    memStart = process.memoryUsage().rss / 1048576;
    cpu0 = process.cpuUsage();
    t0 = performance.now();
    loop.enable();
  });
  loop.disable();
  const cpu = process.cpuUsage(cpu0);
  const wall = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  const memEnd = process.memoryUsage().rss / 1048576;
  const stats = { ...server.stats };
  await server.close();
  await unsubscribe();
  return {
    name: abuse ? 'ours + misbehaving clients' : 'ours',
    polls: r.latencies.length, wrong: r.wrong, dropped: r.dropped,
    p50: pct(r.latencies, 50), p95: pct(r.latencies, 95), p99: pct(r.latencies, 99), max: pct(r.latencies, 100),
    cpuPct: ((cpu.user + cpu.system) / 1e6 / wall) * 100,
    memStart, memEnd, memPeak, loopP99: loop.percentile(99) / 1e6,
    note: abuse ? `server closed ${stats.violations} misbehaving connections` : '',
  };
}

async function upsd(): Promise<Result | null> {
  if (!fs.existsSync(UPSD_BIN)) return null;
  let peer: NutPeer | undefined;
  try {
    peer = await NutPeer.start({ ups: { ups: { 'ups.status': 'OL', 'battery.charge': '100', 'battery.runtime': '3600', 'device.model': 'bench' } } });
  } catch (e) {
    console.log(`(upsd comparison skipped: ${(e as Error).message.split('\n')[0]})`);
    return null;
  }
  try {
    const pid = peer.pids().upsd!;
    let cpu0 = 0;
    let t0 = 0;
    let memStart = 0;
    let memPeak = 0;
    const sampler = setInterval(() => (memPeak = Math.max(memPeak, rssMb(pid))), 500);
    const r = await runClients(peer.port, 'ups', false, () => {
      cpu0 = cpuSeconds(pid);
      t0 = performance.now();
      memStart = rssMb(pid);
    });
    const cpu = cpuSeconds(pid) - cpu0;
    const wall = (performance.now() - t0) / 1000;
    clearInterval(sampler);
    return {
      name: 'upsd 2.8.0 (dummy-ups)', polls: r.latencies.length, wrong: r.wrong, dropped: r.dropped,
      p50: pct(r.latencies, 50), p95: pct(r.latencies, 95), p99: pct(r.latencies, 99), max: pct(r.latencies, 100),
      cpuPct: (cpu / wall) * 100, memStart, memEnd: rssMb(pid), memPeak, loopP99: NaN, note: '',
    };
  } finally {
    await peer.stop();
  }
}

async function main(): Promise<void> {
  console.log(`\nNUT server: ${CLIENTS} clients polling once a second for ${BENCH_SECONDS} s (3x GET VAR per second, LIST VAR every 10th round)\n`);
  const results: Result[] = [];
  results.push(await ours(false));
  results.push(await ours(true));
  const real = await upsd();
  if (real) results.push(real);
  const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  console.log('| server | polls | errors | dropped | p50 ms | p95 ms | p99 ms | max ms | server CPU % | RSS MB start → end (peak) | event-loop delay p99 ms | note |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    console.log(`| ${r.name} | ${r.polls} | ${r.wrong} | ${r.dropped} | ${f(r.p50, 2)} | ${f(r.p95, 2)} | ${f(r.p99, 2)} | ${f(r.max, 1)} | ${f(r.cpuPct)} | ${f(r.memStart)} → ${f(r.memEnd)} (${f(r.memPeak)}) | ${f(r.loopP99, 2)} | ${r.note} |`);
  }
  console.log('\n"errors": replies that were ERR or missing; "dropped": well-behaved clients the server closed (must be 0).');
  console.log(`Load average while measuring: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} on ${os.cpus().length} CPUs (round trips include waiting for CPU).`);
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
