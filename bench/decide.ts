/**
 * Benchmark of the runtime threshold: (1) decisions per second of the engine alone (states per
 * second it evaluates with every vector enabled), (2) the latency the node adds, from a state
 * entering the runtime threshold node to the shutdown message leaving it, in the real Node-RED
 * runtime (node-red-node-test-helper). Prints figures; asserts nothing.
 */
import * as os from 'node:os';
import { DEFAULT_CONFIG, DecisionEngine, ThresholdConfig } from '../lib/decide/engine';
import { normalise, UpsState } from '../lib/ups/state';

function config(): ThresholdConfig {
  const c = structuredClone(DEFAULT_CONFIG);
  for (const v of ['charge', 'timeOnBattery', 'depletion', 'budget'] as const) c[v].enabled = true;
  c.runtime.below = 1; // never fires: measure evaluation, not the phase change
  c.charge.below = 0;
  c.timeOnBattery.after = 1e6;
  c.depletion.rate = 100;
  c.budget.planDuration = 0;
  c.budget.margin = 0; // obLb stays on: the states below carry no LB
  return c;
}

function state(ups: string, i: number): UpsState {
  return normalise({
    ups, source: 'nut', ts: i * 1000, secondsOnBattery: i,
    vars: { 'ups.status': 'OB DISCHRG', 'battery.charge': String(100 - (i % 5000) / 100), 'battery.runtime': String(3600 - (i % 3000)), 'ups.load': '30', 'input.voltage': '0' },
  });
}

function engineThroughput(upsCount: number, n: number): number {
  const engine = new DecisionEngine(config());
  const states = Array.from({ length: 1000 }, (_, i) => state(`ups${i % upsCount}`, i));
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const s = states[i % states.length];
    engine.update({ ...s, ts: i * 1000 }, i * 1000);
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return n / secs;
}

async function nodeLatency(samples: number): Promise<number[]> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const helper = require('node-red-node-test-helper');
  helper.init(require.resolve('node-red'));
  const nodes = [require('../nodes/upsorch-device'), require('../nodes/upsorch-ups-in'), require('../nodes/upsorch-threshold')];
  const out: number[] = [];
  for (let i = 0; i < samples; i++) {
    await helper.load(nodes, [
      { id: 'th', type: 'upsorch-threshold', fsdEnabled: true, fsdHold: 0, obLbEnabled: true, obLbHold: 0, runtimeEnabled: true, runtimeBelow: 300, runtimeHold: 0, commLostEnabled: true, noReturnAfter: 30, wires: [['sink'], [], []] },
      { id: 'sink', type: 'helper' },
    ]);
    const sink = helper.getNode('sink');
    const th = helper.getNode('th');
    const got = new Promise<bigint>((resolve) => sink.on('input', () => resolve(process.hrtime.bigint())));
    const s = normalise({ ups: 'ups', source: 'nut', ts: Date.now(), secondsOnBattery: 10, vars: { 'ups.status': 'OB DISCHRG LB', 'battery.charge': '10', 'battery.runtime': '100' } });
    const t0 = process.hrtime.bigint();
    th.receive({ payload: s });
    const t1 = await got;
    out.push(Number(t1 - t0) / 1e6);
    await helper.unload();
  }
  return out;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function main(): Promise<void> {
  console.log(`\n== Runtime threshold (decision engine) — ${os.cpus().length} cores, node ${process.version}`);
  engineThroughput(1, 50_000); // warm-up
  const rows: Array<[string, string]> = [];
  for (const n of [1, 4, 20]) {
    const rate = engineThroughput(n, 400_000);
    rows.push([`${n} UPS${n > 1 ? 'es' : ''}, all 8 vectors on`, `${Math.round(rate).toLocaleString('en-US')} states/s`]);
  }
  const lat = await nodeLatency(40);
  rows.push(['state in → shutdown out (node, median of 40)', `${pct(lat, 50).toFixed(3)} ms`]);
  rows.push(['state in → shutdown out (node, p95 / max)', `${pct(lat, 95).toFixed(3)} / ${Math.max(...lat).toFixed(3)} ms`]);
  const w = Math.max(...rows.map((r) => r[0].length));
  console.log(`${'measure'.padEnd(w)}  value`);
  for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
}

main().then(() => process.exit(0), (err) => {
  console.error(err);
  process.exit(1);
});
