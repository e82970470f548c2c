/**
 * Benchmark of the run machinery's own overhead (issue: "200 fast targets over 4 phases against the
 * ideal"). The platform is an in-memory inventory whose act() takes a fixed simulated time, so any
 * time above the ideal (phases × ceil(targets per phase / concurrency) × act time) is ours:
 * selection, concurrency pool, timeouts, results, timeline, events, and the run record written to
 * disk (atomic write + fsync) before every target. Prints figures; asserts nothing.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Plan } from '../lib/plan/runner';
import { PlanStore } from '../lib/plan/store';
import { ActionHandle, PhaseHandle, PhaseSettings, RunReport } from '../lib/plan/types';
import { ActionDriver, Target, abortableSleep } from '../lib/actions/contract';
import { runAction } from '../lib/actions/run';

const PHASES = 4;
const TARGETS = 200;

function inventory(names: string[], actMs: number): ActionDriver {
  const power = new Map(names.map((n) => [n, 'on' as 'on' | 'off']));
  return {
    repeatable: true,
    async list(): Promise<Target[]> {
      return names.map((n) => ({ id: n, name: n, power: power.get(n)! }));
    },
    async check() {
      return 'ok';
    },
    async act(t, _o, signal) {
      if (actMs > 0) await abortableSleep(actMs, signal);
      power.set(t.name, 'off');
      return { method: 'graceful', after: 'off' };
    },
    async close() {},
  };
}

const SETTINGS: PhaseSettings = { mode: 'parallel', stepDelayMs: 0, wait: true, onFailure: 'continue', timeoutMs: null, pointOfNoReturn: false, direction: 'both' };

async function run(actMs: number, concurrency: number, persist: boolean): Promise<{ ms: number; ideal: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-bench-plan-'));
  const per = TARGETS / PHASES;
  const phases: PhaseHandle[] = [];
  for (let p = 0; p < PHASES; p++) {
    const names = Array.from({ length: per }, (_, i) => `vm-${p}-${i}`);
    const driver = inventory(names, actMs);
    const action: ActionHandle = {
      id: `a${p}`,
      name: `action ${p}`,
      budgetMs: () => 60_000,
      perform: (step) =>
        runAction(driver, {
          selection: { patterns: [`vm-${p}-*`] },
          options: { operation: 'shutdown', timeoutMs: 10_000, force: true },
          dryRun: false,
          concurrency,
          connectTimeoutMs: 5000,
          previous: step.previous,
          interrupted: step.interrupted,
          hooks: step.hooks,
          signal: step.signal,
        }),
    };
    phases.push({ id: `p${p}`, name: `phase ${p}`, settings: SETTINGS, gate: null, gateText: null, actions: () => [action], update: () => undefined, finished: () => undefined });
  }
  const plan = new Plan({ id: 'bench', name: 'bench', store: persist ? new PlanStore(dir, 'bench') : null, allowRemote: false, armed: true });
  const report = await new Promise<RunReport>((resolve) => {
    plan.subscribe((e) => e.type === 'run-report' && resolve(e.report!));
    plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, () => phases);
  });
  if (report.totals.ok !== TARGETS) throw new Error(`expected ${TARGETS} targets done, got ${JSON.stringify(report.totals)}`);
  await plan.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return { ms: report.ms, ideal: PHASES * Math.ceil(per / concurrency) * actMs };
}

async function main(): Promise<void> {
  console.log(`\n## Run machinery overhead: ${TARGETS} targets over ${PHASES} phases (${os.cpus().length} cores, Node ${process.version})`);
  console.log('| act time | concurrency | run record on disk | wall time | ideal | overhead | per target |');
  console.log('|---|---|---|---|---|---|---|');
  await run(0, 8, false); // warm-up
  for (const [actMs, conc] of [[0, 8], [5, 8], [5, 1], [20, 16]] as const) {
    for (const persist of [false, true]) {
      const best = [];
      for (let i = 0; i < 3; i++) best.push(await run(actMs, conc, persist));
      const r = best.sort((a, b) => a.ms - b.ms)[1]; // median of 3
      const over = r.ms - r.ideal;
      console.log(`| ${actMs} ms | ${conc} | ${persist ? 'yes (fsync per step)' : 'no'} | ${r.ms} ms | ${r.ideal} ms | ${over} ms | ${(over / TARGETS).toFixed(2)} ms |`);
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
