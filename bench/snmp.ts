/**
 * `npm run bench` (SNMP part): measures and prints; never asserts timings.
 *
 * (a) Cost of one poll, SNMP next to NUT, against real peers on loopback (snmpsim; upsd + dummy-ups):
 *     our SnmpSource (one GET with every object of the APC profile; v2c and v3 authPriv SHA/AES) and
 *     our NutSource (LIST VAR on a persistent connection). Wall time per poll back to back (10 ms
 *     apart) and 1 s apart as a 1 Hz poll sends them; CPU per poll of this process and of the peer
 *     (snmpsimd, upsd) from /proc.
 * (b) Trap-to-message latency in the real Node-RED runtime: a UPS device (SNMP, poll every 60 s,
 *     trap listener on) and a UPS in node; the agent is switched to on-battery / on-line and a trap
 *     is sent (net-snmp, from this process); the time until the UPS in node sends the new state.
 *
 * Needs root and Debian's snmpsim, nut-server, nut-client (as the test suite).
 */
import * as cp from 'node:child_process';
import * as fs from 'node:fs';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const snmp = require('net-snmp');
import { SnmpPeer, freeUdpPort } from '../test/peers/snmp';
import { STATES, allAgents } from '../test/peers/snmp-ups-agents';
import { DEFAULT_UPS_VARS, NutPeer } from '../test/peers/nut';
import { SnmpSource } from '../lib/snmp/source';
import { NutSource } from '../lib/nut/source';
import { UpsSource } from '../lib/ups/source';

const BENCH_SECONDS = Number(process.env.BENCH_SECONDS) > 0 ? Number(process.env.BENCH_SECONDS) : 60;
const BACK_TO_BACK = 100;
const SPACED = Math.max(5, Math.min(30, Math.round(BENCH_SECONDS / 2)));
const TRAPS = 20;

const now = (): number => performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const CLK_TCK = Number(cp.execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const fmt = (x: number, d = 2): string => (Number.isFinite(x) ? x.toFixed(d) : '-');

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ').trimEnd();
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

interface Cost {
  what: string;
  objects: number;
  backToBack: number[];
  spaced: number[];
  ourCpuMs: number;
  peerCpuMs: number;
}

async function pollCost(what: string, source: UpsSource, peerPid: number): Promise<Cost> {
  let objects = 0;
  for (let i = 0; i < 5; i++) objects = Object.keys((await source.read(Date.now())).vars).length;
  const backToBack: number[] = [];
  const cpu0 = process.cpuUsage();
  const peer0 = cpuSeconds(peerPid);
  for (let i = 0; i < BACK_TO_BACK; i++) {
    const t = now();
    await source.read(Date.now());
    backToBack.push(now() - t);
    await sleep(10);
  }
  const cpu = process.cpuUsage(cpu0);
  const peerCpu = cpuSeconds(peerPid) - peer0;
  const spaced: number[] = [];
  for (let i = 0; i < SPACED; i++) {
    const t = now();
    await source.read(Date.now());
    spaced.push(now() - t);
    await sleep(Math.max(0, t + 1000 - now()));
  }
  return { what, objects, backToBack, spaced, ourCpuMs: (cpu.user + cpu.system) / 1000 / BACK_TO_BACK, peerCpuMs: (peerCpu * 1000) / BACK_TO_BACK };
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const red = (): typeof import('../test/util/red') => require('../test/util/red');

async function trapLatency(agent: SnmpPeer): Promise<{ latencies: number[]; polls: number }> {
  const { helper, ourNodes, deviceConfig, upsIn, Collector } = red();
  const trapPort = await freeUdpPort();
  await new Promise<void>((resolve) => helper.startServer(resolve));
  try {
    await helper.load(ourNodes, [
      deviceConfig('dev', {
        source: 'snmp', host: agent.host, snmpPort: agent.port, snmpVersion: 'v2c', timeout: 2, snmpRetries: 0,
        pollInterval: 60, pollIntervalOnBattery: 60, snmpTraps: true, snmpTrapAddress: '127.0.0.1', snmpTrapPort: trapPort,
      }),
      ...upsIn('in', 'dev'),
    ], { dev: { community: 'apc' } });
    const states = new Collector('in-state');
    await states.waitFor((m: any) => m.payload.online, 10_000);
    const dev = helper.getNode('dev').device();
    await dev.source.trapsReady();
    const session = snmp.createSession('127.0.0.1', 'apc', { version: snmp.Version2c, trapPort });
    const latencies: number[] = [];
    try {
      for (let i = 0; i < TRAPS; i++) {
        const onBattery = i % 2 === 0;
        await agent.set('apc', onBattery ? STATES.apc['on-battery'] : STATES.apc.online);
        const from = states.received.length;
        const tp = now();
        await new Promise<void>((resolve, reject) => session.trap(onBattery ? '1.3.6.1.4.1.318.0.5' : '1.3.6.1.4.1.318.0.9', [], (err: Error | null) => (err ? reject(err) : resolve())));
        await states.waitFor((m: any) => m.payload.onBattery === onBattery, 10_000, from);
        latencies.push(now() - tp);
        await sleep(200);
      }
    } finally {
      session.close();
    }
    return { latencies, polls: dev.polls };
  } finally {
    await helper.unload();
    await new Promise<void>((resolve) => helper.stopServer(resolve));
  }
}

async function main(): Promise<void> {
  console.log(`SNMP benchmark (BENCH_SECONDS=${BENCH_SECONDS}; ${BACK_TO_BACK} polls back to back, ${SPACED} polls 1 s apart)\n`);
  const agent = await SnmpPeer.start({ agents: allAgents(), v3Users: [{ name: 'bench', auth: 'SHA', authKey: 'authpass123', priv: 'AES', privKey: 'privpass123' }], defaultContext: 'apc' });
  const nut = await NutPeer.start({ ups: { sim: { ...DEFAULT_UPS_VARS } } });
  const sources: UpsSource[] = [];
  try {
    const v2c = new SnmpSource({ host: agent.host, port: agent.port, version: 'v2c', community: 'apc', timeoutMs: 2000, retries: 0, profile: 'auto' });
    const v3 = new SnmpSource({
      host: agent.host, port: agent.port, version: 'v3', timeoutMs: 2000, retries: 0, profile: 'auto',
      user: { name: 'bench', level: 'authPriv', authProtocol: 'sha', authKey: 'authpass123', privProtocol: 'aes', privKey: 'privpass123' },
    });
    const nutSource = new NutSource({ host: '127.0.0.1', port: nut.port, ups: 'sim', timeoutMs: 2000 });
    sources.push(v2c, v3, nutSource);
    const snmpPid = agent.pid!;
    const upsdPid = nut.pids().upsd!;
    const costs = [
      await pollCost('SNMP v2c, APC profile: 1 GET', v2c, snmpPid),
      await pollCost('SNMP v3 authPriv SHA/AES, APC profile: 1 GET', v3, snmpPid),
      await pollCost('NUT LIST VAR (persistent connection)', nutSource, upsdPid),
    ];
    const objects = Object.keys((v2c as SnmpSource).profile!.objects).length;
    console.log(`(a) Cost of one poll (the APC profile asks for ${objects} objects in its GET)\n`);
    console.log(table(
      ['poll', 'vars out', 'back-to-back median ms', 'p95 ms', '1 s apart median ms', 'p95 ms', 'our CPU ms/poll', 'peer CPU ms/poll'],
      costs.map((c) => [c.what, String(c.objects), fmt(median(c.backToBack)), fmt(pct(c.backToBack, 95)), fmt(median(c.spaced)), fmt(pct(c.spaced, 95)), fmt(c.ourCpuMs, 3), fmt(c.peerCpuMs, 3)]),
    ));
    console.log('\nPeer CPU is snmpsimd (Python) for SNMP and upsd (C) for NUT: it says more about the simulator than about a');
    console.log('UPS card. NUT\'s LIST VAR answer is multi-line, so upsd\'s Nagle and the client\'s delayed ACK can hold it');
    console.log('(see protocols.md); an SNMP GET is one datagram each way.\n');

    const { latencies, polls } = await trapLatency(agent);
    console.log(`(b) Trap to UPS in message, ${TRAPS} traps (v2c, alternately upsOnBattery / powerRestored), poll interval 60 s`);
    console.log(table(['', 'median ms', 'p95 ms', 'max ms'], [['trap sent → state message', fmt(median(latencies), 1), fmt(pct(latencies, 95), 1), fmt(Math.max(...latencies), 1)]]));
    console.log(`Polls in that time: ${polls} (the first, plus one per trap). Without traps a change waits for the next poll:`);
    console.log('on average half the poll interval (30 s here, 0.5 s at the default 1 s).');
  } finally {
    for (const s of sources) await s.close();
    await nut.stop();
    await agent.stop();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
