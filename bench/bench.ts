/**
 * `npm run bench`: measures and prints; never asserts timings.
 *
 * (a) Detection latency in the real Node-RED runtime (node-red-node-test-helper): from the moment a
 *     ups.status change is visible at upsd (a probe connection sends GET VAR every ~2 ms) to the moment
 *     the UPS in node sends its state message; next to it a raw 1 s GET VAR poller on one persistent
 *     connection; and the round trip of one poll (LIST VAR vs GET VAR).
 * (b) Cost of polling 1, 10, 100 UPSes at 1 Hz for BENCH_SECONDS (default 60), each client in its own
 *     child process: ours (N UpsDevice, source nut) vs spawning `upsc` per UPS per second. CPU from
 *     /proc/<pid>/stat (utime+stime+cutime+cstime) over the window, peak RSS (VmHWM), upsd's CPU.
 *
 * Needs root and Debian's nut-server/nut-client (the NutPeer of the test suite).
 */
import * as cp from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DEFAULT_UPS_VARS, NutPeer } from '../test/peers/nut';
import { NutConnection } from '../lib/nut/connection';

const BENCH_SECONDS = (() => {
  const raw = process.env.BENCH_SECONDS;
  if (raw === undefined || raw === '') return 60;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`BENCH_SECONDS must be a positive number of seconds, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return n;
})();
const CHANGES = 20;
const POLL_COST_SAMPLES = 50;
const SPACED_SAMPLES = 30;
const N_VALUES = [1, 10, 100];
const UPS_COUNT = 100;
const IDLE_SECONDS = Math.min(5, BENCH_SECONDS);

const now = (): number => performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Statistics and formatting

function sorted(xs: number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}
function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = sorted(xs);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
/** Nearest-rank percentile (p95 of 20 samples = the 19th smallest). */
function pct(xs: number[], p: number): number {
  if (!xs.length) return NaN;
  const s = sorted(xs);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const fmt = (x: number, d = 1): string => (Number.isFinite(x) ? x.toFixed(d) : '-');

function table(head: string[], rows: string[][], alignLeft = 1): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < alignLeft ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ').trimEnd();
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------
// /proc

const CLK_TCK = Number(cp.execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** CPU seconds of a process: utime + stime + cutime + cstime (reaped children included). */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after "(comm)": [0]=state (field 3) … [11]=utime (14), [12]=stime, [13]=cutime, [14]=cstime.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLK_TCK;
}

/** A "VmXXX:   1234 kB" field of /proc/<pid>/status, in MB. */
function statusMb(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

// ---------------------------------------------------------------------------------------------
// Process hygiene: every child we start is killed by PID if we exit early.

const ourChildren = new Set<cp.ChildProcess>();
function killOurChildren(): void {
  for (const c of ourChildren) {
    if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  ourChildren.clear();
}
const tempDirs = new Set<string>();
function removeTempDirs(): void {
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}
process.on('exit', () => {
  killOurChildren();
  removeTempDirs();
});
// On a signal, clean up and exit (NutPeer's own handlers stop upsd and the drivers; with this
// listener present they leave the exit to us, and its 'exit' hook runs again on process.exit).
for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
  process.on(sig, () => {
    console.error(`bench: ${sig}, cleaning up`);
    process.exit(code);
  });
}

// ---------------------------------------------------------------------------------------------
// Part (a)

interface PartA {
  ours: number[];
  oursWait: number[];
  oursReaction: number[];
  oursMissed: number;
  raw: number[];
  rawWait: number[];
  rawReaction: number[];
  rawMissed: number;
  delivered: number[];
  visibleAfterSetVars: number[];
  probeInterval: number;
  probeRtt: number;
  oursPollPeriod: number;
  cost: Array<{ what: string; backToBack: number[]; spaced: number[] }>;
  probeErrors: number;
  oursOther: number;
  listVarCount: number;
}

/** The UPS in node's helper, loaded the way the test suite loads it (nodes from their TypeScript sources). */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const red = (): typeof import('../test/util/red') => require('../test/util/red');

async function partA(): Promise<PartA> {
  const ups = 'sim';
  const peer = await NutPeer.start({ ups: { [ups]: { ...DEFAULT_UPS_VARS, 'ups.status': 'OL' } } });
  const conns: NutConnection[] = [];
  const connect = async () => {
    const c = await NutConnection.connect({ host: '127.0.0.1', port: peer.port, timeoutMs: 5000 });
    conns.push(c);
    return c;
  };
  let helperLoaded = false;
  const timers: Array<() => void> = [];
  try {
    await peer.waitFor(ups, 'ups.status', 'OL');

    // -- Cost of one poll on a persistent connection (nothing else running yet), at two spacings:
    // back to back (10 ms between requests) and 1 s apart as a 1 Hz poll sends them. Linux delays
    // ACKs (up to 40 ms) only on a connection in interactive "ping-pong" mode, i.e. when the client
    // sent its request shortly after receiving the last reply; upsd's Nagle then holds the rest of a
    // multi-line reply until that ACK.
    const listVarCount = Object.keys(await (await connect()).listVar(ups)).length;
    const kinds: Array<[string, (c: NutConnection) => Promise<unknown>]> = [
      [`LIST VAR ${ups} (${listVarCount} variables)`, (c) => c.listVar(ups)],
      ['GET VAR ups.status', (c) => c.getVar(ups, 'ups.status')],
      ['3 x GET VAR one after another (status, charge, runtime)', async (c) => {
        await c.getVar(ups, 'ups.status');
        await c.getVar(ups, 'battery.charge');
        await c.getVar(ups, 'battery.runtime');
      }],
    ];
    const cost: PartA['cost'] = kinds.map(([what]) => ({ what, backToBack: [], spaced: [] }));
    const costConns = await Promise.all(kinds.map(() => connect()));
    for (let k = 0; k < kinds.length; k++) {
      const fn = kinds[k][1];
      const c = costConns[k];
      for (let i = 0; i < 5; i++) await fn(c); // warm-up (JIT; a fresh TCP connection starts in quick-ACK mode)
      for (let i = 0; i < POLL_COST_SAMPLES; i++) {
        const t = now();
        await fn(c);
        cost[k].backToBack.push(now() - t);
        await sleep(10);
      }
    }
    // 1 s apart: one connection per request kind, staggered, all sampled in the same SPACED_SAMPLES s.
    await Promise.all(kinds.map(async ([, fn], k) => {
      await sleep(1000 + (k * 1000) / kinds.length);
      for (let i = 0; i < SPACED_SAMPLES; i++) {
        const t = now();
        await fn(costConns[k]);
        cost[k].spaced.push(now() - t);
        await sleep(Math.max(0, t + 1000 - now()));
      }
    }));

    // -- Probe: GET VAR ups.status every ~2 ms on its own connection; records when each value first appears.
    const probeConn = await connect();
    let probeValue = await probeConn.getVar(ups, 'ups.status');
    const probeSeen: Array<{ t: number; value: string }> = [];
    const probeIntervals: number[] = [];
    const probeRtts: number[] = [];
    let probing = true;
    let probeErrors = 0;
    const probeLoop = (async () => {
      let last = now();
      while (probing) {
        const t0 = now();
        probeIntervals.push(t0 - last);
        last = t0;
        let v: string;
        try {
          v = await probeConn.getVar(ups, 'ups.status');
        } catch {
          probeErrors++;
          await sleep(2);
          continue;
        }
        const t1 = now();
        probeRtts.push(t1 - t0);
        if (v !== probeValue) {
          probeValue = v;
          probeSeen.push({ t: t1, value: v });
        }
        await sleep(2);
      }
    })();
    timers.push(() => (probing = false));

    // -- Baseline: raw poller, one GET VAR ups.status per second on one persistent connection.
    const rawConn = await connect();
    let rawValue = await rawConn.getVar(ups, 'ups.status');
    const rawSeen: Array<{ t: number; value: string; sent: number }> = [];
    let rawTimer: NodeJS.Timeout | null = null;
    let rawNext = now();
    let rawStopped = false;
    const rawTick = (): void => {
      rawTimer = null;
      if (rawStopped) return;
      const sent = now();
      rawConn.getVar(ups, 'ups.status').then((v) => {
        if (v !== rawValue) {
          rawValue = v;
          rawSeen.push({ t: now(), value: v, sent });
        }
      }, () => undefined);
      rawNext += 1000;
      rawTimer = setTimeout(rawTick, Math.max(0, rawNext - now()));
    };
    rawTick();
    timers.push(() => {
      rawStopped = true;
      if (rawTimer) clearTimeout(rawTimer);
    });

    // -- Node-RED: a UPS device (nut, 1 s) and a UPS in node.
    const { helper, ourNodes, deviceConfig, upsIn } = red();
    await helper.load(ourNodes, [
      deviceConfig('dev', { source: 'nut', host: '127.0.0.1', port: peer.port, upsName: ups, pollInterval: 1, pollIntervalOnBattery: 1, timeout: 5 }),
      ...upsIn('in', 'dev'),
    ]);
    helperLoaded = true;
    const inNode = helper.getNode('in');
    const sends: Array<{ t: number; value: string }> = [];
    const origSend = inNode.send;
    inNode.send = function (msg: unknown) {
      const first = Array.isArray(msg) ? msg[0] : msg;
      const t = now();
      if (first && (first as any).payload?.flags) sends.push({ t, value: ((first as any).payload.flags as string[]).join(' ') });
      return origSend.call(this, msg);
    };
    const received: Array<{ t: number; value: string }> = [];
    helper.getNode('in-state').on('input', (msg: any) => received.push({ t: now(), value: (msg.payload?.flags ?? []).join(' ') }));
    // When each read of the device starts (wrapping the source instance, not the library).
    const device = helper.getNode('dev').device();
    const readStarts: number[] = [];
    const source = device.source;
    const origRead = source.read.bind(source);
    source.read = (t: number) => {
      readStarts.push(now());
      return origRead(t);
    };
    // Wait for the node's first OL state.
    const waitUntil = async (cond: () => boolean, ms: number): Promise<boolean> => {
      const end = now() + ms;
      while (!cond()) {
        if (now() > end) return false;
        await sleep(1);
      }
      return true;
    };
    if (!(await waitUntil(() => sends.some((s) => s.value === 'OL'), 10_000))) {
      throw new Error('the UPS in node sent no OL state within 10 s');
    }

    const res: PartA = {
      ours: [], oursWait: [], oursReaction: [], oursMissed: 0, raw: [], rawWait: [], rawReaction: [], rawMissed: 0, delivered: [], visibleAfterSetVars: [],
      probeInterval: NaN, probeRtt: NaN, oursPollPeriod: NaN, cost, listVarCount, probeErrors: 0, oursOther: 0,
    };
    const sendsFrom = sends.length;
    const firstAfter = <T extends { t: number; value: string }>(xs: T[], t: number, value: string): T | undefined =>
      xs.find((x) => x.t >= t && x.value === value);
    const pollPeriodFrom = readStarts.length;
    for (let i = 0; i < CHANGES; i++) {
      const target = i % 2 === 0 ? 'OB' : 'OL';
      // dummy-ups applies a changed file only at its own 1 s tick, so a change becomes visible at
      // upsd at a fixed phase however setVars is timed, and a 1 s poller then phase-locks with it.
      // Re-phase the driver: SIGSTOP it for 1-2 s; its loop restarts its 1 s tick at SIGCONT.
      peer.pauseDriver(ups);
      await sleep(1000 + Math.random() * 1000);
      peer.resumeDriver(ups);
      // Irregular spacing as well.
      await sleep(100 + Math.random() * 400);
      const tSet = now();
      await peer.setVars(ups, { 'ups.status': target });
      if (!(await waitUntil(() => !!firstAfter(probeSeen, tSet, target), 5000))) throw new Error(`probe never saw ${target} (change ${i + 1})`);
      const p = firstAfter(probeSeen, tSet, target)!;
      res.visibleAfterSetVars.push(p.t - tSet);
      await waitUntil(() => !!firstAfter(sends, tSet, target) && !!firstAfter(rawSeen, tSet, target), 5000);
      const s = firstAfter(sends, tSet, target);
      const r = firstAfter(rawSeen, tSet, target);
      if (s) {
        res.ours.push(s.t - p.t);
        const readStart = [...readStarts].reverse().find((t) => t <= s.t);
        if (readStart !== undefined) {
          res.oursWait.push(readStart - p.t);
          res.oursReaction.push(s.t - readStart);
        }
        await waitUntil(() => !!firstAfter(received, s.t, target), 1000);
        const d = firstAfter(received, s.t, target);
        if (d) res.delivered.push(d.t - s.t);
      } else res.oursMissed++;
      if (r) {
        res.raw.push(r.t - p.t);
        res.rawWait.push(r.sent - p.t);
        res.rawReaction.push(r.t - r.sent);
      } else res.rawMissed++;
      await sleep(100 + Math.random() * 300);
    }
    const periods: number[] = [];
    for (let k = pollPeriodFrom + 1; k < readStarts.length; k++) periods.push(readStarts[k] - readStarts[k - 1]);
    res.oursPollPeriod = median(periods);
    res.probeInterval = median(probeIntervals.slice(1));
    res.probeRtt = median(probeRtts);
    res.probeErrors = probeErrors;
    res.oursOther = sends.slice(sendsFrom).filter((x) => x.value !== 'OL' && x.value !== 'OB').length;
    probing = false;
    await probeLoop;
    return res;
  } finally {
    for (const stop of timers) stop();
    if (helperLoaded) await red().helper.unload().catch(() => undefined);
    for (const c of conns) await c.close();
    await peer.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Part (b)

interface LoadRun {
  label: string;
  n: number;
  seconds: number;
  cpu: number;
  rssPeak: number;
  upsdCpu: number;
  polls: number;
  ok: number;
  errors: number;
  rounds: number;
  lastError: string;
}

const CHILD = path.join(__dirname, 'load-child.ts');

/**
 * The child runs as plain JavaScript: bench/load-child.ts (and the library code it uses) bundled by
 * esbuild (tsx's own compiler), so no TypeScript loader (Node 20 runs it on an extra thread) inflates
 * the client's memory and CPU. All three modes run the same bundle.
 */
function bundleChild(dir: string): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const esbuild = require('esbuild') as typeof import('esbuild');
  const outfile = path.join(dir, 'load-child.cjs');
  esbuild.buildSync({ entryPoints: [CHILD], bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile, logLevel: 'error' });
  return outfile;
}

function waitMessage(child: cp.ChildProcess, type: string, ms: number): Promise<any> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`child ${child.pid}: no "${type}" within ${ms} ms`)), ms);
    const onMsg = (m: any) => m && m.type === type && done(null, m);
    const onExit = (code: number | null, sig: string | null) => done(new Error(`child ${child.pid} exited (${sig ?? code}) before "${type}"`));
    const done = (err: Error | null, m?: any) => {
      clearTimeout(timer);
      child.off('message', onMsg);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(m);
    };
    child.on('message', onMsg);
    child.once('exit', onExit);
  });
}

async function loadRun(
  script: string, mode: 'ours' | 'upsc' | 'idle', label: string, names: string[], port: number, upsdPid: number, seconds: number,
): Promise<LoadRun> {
  // One plain node process (no npx/tsx wrapper), so /proc/<pid> is the client itself.
  const child = cp.spawn(process.execPath, [script, mode, String(port), names.join(',')], {
    cwd: path.join(__dirname, '..'),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  ourChildren.add(child);
  child.on('error', () => undefined);
  try {
    await waitMessage(child, 'ready', 60_000);
    const pid = child.pid!;
    const c0 = cpuSeconds(pid);
    const u0 = cpuSeconds(upsdPid);
    const t0 = now();
    child.send('go');
    await sleep(seconds * 1000);
    const stoppedP = waitMessage(child, 'stopped', 30_000);
    child.send('stop');
    const stopped = await stoppedP;
    const c1 = cpuSeconds(pid);
    const u1 = cpuSeconds(upsdPid);
    const t1 = now();
    const rssPeak = statusMb(pid, 'VmHWM');
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.send('exit');
    await Promise.race([exited, sleep(10_000)]);
    return {
      label, n: names.length, seconds: (t1 - t0) / 1000, cpu: c1 - c0, rssPeak, upsdCpu: u1 - u0,
      polls: stopped.polls, ok: stopped.ok, errors: stopped.errors, rounds: stopped.rounds, lastError: stopped.lastError,
    };
  } finally {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    ourChildren.delete(child);
  }
}

async function partB(): Promise<{ runs: LoadRun[]; idle: LoadRun; upsCount: number; peerStartMs: number }> {
  const ups: Record<string, Record<string, string>> = {};
  for (let i = 1; i <= UPS_COUNT; i++) ups[`u${i}`] = { ...DEFAULT_UPS_VARS };
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-bench-'));
  tempDirs.add(tmp);
  let peer: NutPeer | undefined;
  try {
    const script = bundleChild(tmp);
    const t = now();
    peer = await NutPeer.start({ ups });
    const peerStartMs = now() - t;
    const upsdPid = peer.pids().upsd;
    if (upsdPid === undefined) throw new Error('NutPeer reports no upsd pid');
    const all = peer.upsNames;
    const idle = await loadRun(script, 'idle', 'idle child (node, nothing started)', [], peer.port, upsdPid, IDLE_SECONDS);
    const runs: LoadRun[] = [];
    for (const n of N_VALUES) {
      // Reuse names if the peer has fewer UPSes than n.
      const names = Array.from({ length: n }, (_, i) => all[i % all.length]);
      runs.push(await loadRun(script, 'ours', 'ours: UpsDevice (persistent conn, LIST VAR)', names, peer.port, upsdPid, BENCH_SECONDS));
      runs.push(await loadRun(script, 'upsc', 'upsc spawned per UPS per second', names, peer.port, upsdPid, BENCH_SECONDS));
    }
    return { runs, idle, upsCount: all.length, peerStartMs };
  } finally {
    await peer?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
    tempDirs.delete(tmp);
  }
}

// ---------------------------------------------------------------------------------------------

function cpuModel(): string {
  return os.cpus()[0]?.model?.trim() ?? 'unknown CPU';
}

async function main(): Promise<void> {
  const nproc = cp.execFileSync('nproc', { encoding: 'utf8' }).trim();
  const started = now();
  console.log('node-red-contrib-ups-orchestrator benchmark');
  console.log(
    `machine: nproc ${nproc} (${cpuModel()}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, node ${process.version}, ` +
      `${os.type()} ${os.release()}; BENCH_SECONDS=${BENCH_SECONDS}; CLK_TCK=${CLK_TCK}`,
  );
  console.log('');

  const a = await partA();
  console.log(`(a) Detection latency: UPS status change visible at upsd -> message out (ms); ${CHANGES} changes OL<->OB, poll interval 1 s`);
  const latRow = (what: string, xs: number[], missed: number) => [what, fmt(median(xs)), fmt(pct(xs, 95)), fmt(Math.max(...xs)), fmt(Math.min(...xs)), `${xs.length}${missed ? ` (${missed} missed)` : ''}`];
  console.log(
    table(['', 'median', 'p95', 'max', 'min', 'n'], [
      latRow('UPS in node (Node-RED runtime, UpsDevice + LIST VAR)', a.ours, a.oursMissed),
      latRow('  of which: wait until the next poll starts', a.oursWait, 0),
      latRow('  of which: poll start -> node.send (one poll + processing)', a.oursReaction, 0),
      latRow('raw poller (1 GET VAR ups.status per second, 1 connection)', a.raw, a.rawMissed),
      latRow('  of which: wait until the next poll starts', a.rawWait, 0),
      latRow('  of which: request sent -> change seen', a.rawReaction, 0),
    ]),
  );
  console.log(
    `reference: probe GET VAR every ${fmt(a.probeInterval, 2)} ms (median interval, round trip ${fmt(a.probeRtt, 2)} ms), so "visible at upsd" is late by up to that much; ` +
      `setVars -> visible at upsd: median ${fmt(median(a.visibleAfterSetVars), 0)} ms (dummy-ups re-reads its file once a second)`,
  );
  console.log(
    'The wait for the next poll is uniform over 0-1000 ms for both (random phase), so with 20 changes their medians differ by chance ' +
      '(standard error of a median of 20 such draws ~ 110 ms); compare the per-poll rows.',
  );
  console.log(
    `UPS in device poll period: median ${fmt(a.oursPollPeriod, 1)} ms between read starts (configured 1000); node.send -> helper node input: median ${fmt(median(a.delivered), 2)} ms`,
  );
  if (a.probeErrors || a.oursOther) console.log(`note: probe errors ${a.probeErrors}; UPS in state messages other than OL/OB: ${a.oursOther}`);
  console.log('');
  console.log(`Cost of one poll on a persistent connection (round trip, ms; median / p95 / max)`);
  const mpm = (xs: number[]) => `${fmt(median(xs), 2)} / ${fmt(pct(xs, 95), 2)} / ${fmt(Math.max(...xs), 2)}`;
  console.log(
    table(
      ['request', `back to back, 10 ms apart (n=${POLL_COST_SAMPLES})`, `1 s apart like a 1 Hz poll (n=${SPACED_SAMPLES})`],
      a.cost.map((c) => [c.what, mpm(c.backToBack), mpm(c.spaced)]),
    ),
  );
  console.log('');

  const b = await partB();
  console.log(
    `(b) Cost of polling N UPSes at 1 Hz for ${BENCH_SECONDS} s, each client in its own child process ` +
      `(one upsd, ${b.upsCount} dummy-ups UPSes, peer started in ${fmt(b.peerStartMs / 1000, 1)} s)`,
  );
  const pctCore = (cpu: number, s: number) => fmt((100 * cpu) / s, 2);
  const rows: string[][] = [];
  const runRow = (r: LoadRun, n: string) => [
    n, r.label, fmt(r.seconds, 1), `${r.ok}/${r.polls}`, fmt(r.ok / Math.max(1, r.n) / r.seconds, 2), fmt(r.cpu, 2), pctCore(r.cpu, r.seconds),
    r.ok ? fmt((1000 * r.cpu) / r.ok, 2) : '-', fmt(r.rssPeak, 1), fmt(r.upsdCpu, 2), pctCore(r.upsdCpu, r.seconds),
  ];
  rows.push(runRow(b.idle, '0'));
  for (const n of N_VALUES) {
    const ours = b.runs.find((r) => r.n === n && r.label.startsWith('ours'))!;
    const upsc = b.runs.find((r) => r.n === n && r.label.startsWith('upsc'))!;
    rows.push(runRow(ours, String(n)), runRow(upsc, String(n)));
    const ratio = (x: number, y: number) => (y > 0 ? `${fmt(x / y, 1)}x` : '-');
    rows.push([
      '', 'ratio upsc/ours', '', '', '', ratio(upsc.cpu, ours.cpu), ratio(upsc.cpu / upsc.seconds, ours.cpu / ours.seconds),
      ratio(upsc.cpu / Math.max(1, upsc.ok), ours.cpu / Math.max(1, ours.ok)), ratio(upsc.rssPeak, ours.rssPeak),
      ratio(upsc.upsdCpu, ours.upsdCpu), ratio(upsc.upsdCpu / upsc.seconds, ours.upsdCpu / ours.seconds),
    ]);
  }
  console.log(
    table(['N', 'client', 'window s', 'reads ok/all', 'reads/s/UPS', 'CPU s', '% core', 'CPU ms/read', 'peak RSS MB', 'upsd CPU s', 'upsd % core'], rows, 2),
  );
  const errs = [b.idle, ...b.runs].filter((r) => r.errors);
  for (const r of errs) console.log(`note: N=${r.n} ${r.label}: ${r.errors} failed reads, last: ${r.lastError}`);
  console.log(
    'CPU = utime+stime+cutime+cstime of the client process over the window (cutime/cstime: its reaped children, i.e. the upsc processes); ' +
      'peak RSS = VmHWM of the client process (a bare node process is the N=0 row); upsd CPU = its own utime+stime delta in the same window. ' +
      'The clients run bench/load-child.ts bundled to plain JS by esbuild.',
  );
  console.log(`total bench time ${fmt((now() - started) / 1000, 0)} s`);
}

let exitCode = 0;
main()
  .catch((err) => {
    console.error(`bench failed: ${(err as Error)?.stack ?? err}`);
    exitCode = 1;
  })
  .finally(() => {
    killOurChildren();
    // Node-RED's runtime keeps handles open; everything of ours is stopped, so exit explicitly.
    process.exit(exitCode);
  });
