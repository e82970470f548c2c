/**
 * `npm run bench` (vSphere part): shut down 500 VMs on vcsim (VMware's simulator, vCenter model,
 * 2 clusters × 3 hosts) through one vSphere action, once per concurrency level and way of running
 * it, each on a fresh simulator: `action` calls runAction + VsphereDriver directly; `phase` runs the
 * same action as the one phase of a plan (lib/plan: run record written to disk before every
 * target, timeline, events), so the phase's own overhead is in the figure. Prints wall time and
 * SOAP requests per VM side by side. Measures and prints; never asserts timings.
 *
 * Guests power off BENCH_VSPHERE_GUEST_MS (default 100) ms after ShutdownGuest; the action polls
 * every BENCH_VSPHERE_POLL_MS (default 200) ms. BENCH_VSPHERE_VMS (default 500, even) VMs in all;
 * BENCH_VSPHERE_CONCURRENCY (default "1,8,32") the levels compared; BENCH_VSPHERE_MODES (default
 * "action,phase") the ways.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { VcsimPeer } from '../test/peers/vcsim';
import { VsphereSession } from '../lib/vsphere/session';
import { VsphereDriver } from '../lib/vsphere/driver';
import { ActionReport, ActionRequest, runAction } from '../lib/actions/run';
import { Plan } from '../lib/plan/runner';
import { PlanStore } from '../lib/plan/store';
import { ActionHandle, PhaseHandle, RunReport } from '../lib/plan/types';

function envNumber(name: string, dflt: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`${name} must be a positive number, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return n;
}

const VMS = Math.max(2, Math.round(envNumber('BENCH_VSPHERE_VMS', 500) / 2) * 2);
const GUEST_MS = envNumber('BENCH_VSPHERE_GUEST_MS', 100);
const POLL_MS = envNumber('BENCH_VSPHERE_POLL_MS', 200);
const LEVELS = (process.env.BENCH_VSPHERE_CONCURRENCY || '1,8,32')
  .split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => Number.isInteger(n) && n > 0);
type Mode = 'action' | 'phase';
const MODES = (process.env.BENCH_VSPHERE_MODES || 'action,phase')
  .split(',')
  .map((s) => s.trim())
  .filter((m): m is Mode => m === 'action' || m === 'phase');

/** The action as the one phase of a plan, with its run record on disk; resolves with the action's report. */
async function throughPlan(driver: VsphereDriver, req: Omit<ActionRequest, 'signal' | 'previous' | 'interrupted' | 'hooks'>): Promise<{ report: ActionReport; run: RunReport }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-bench-vsphere-'));
  let report: ActionReport | null = null;
  const action: ActionHandle = {
    id: 'vms',
    name: 'all VMs',
    budgetMs: () => 30 * 60_000,
    perform: async (step) => (report = await runAction(driver, { ...req, previous: step.previous, interrupted: step.interrupted, hooks: step.hooks, signal: step.signal })),
  };
  const phase: PhaseHandle = {
    id: 'p1',
    name: 'VMs',
    settings: { mode: 'parallel', stepDelayMs: 0, wait: true, onFailure: 'continue', timeoutMs: null, pointOfNoReturn: false, direction: 'both' },
    gate: null,
    gateText: null,
    actions: () => [action],
    update: () => undefined,
    finished: () => undefined,
  };
  const plan = new Plan({ id: 'bench', name: 'bench', store: new PlanStore(dir, 'bench'), allowRemote: false, armed: true });
  try {
    const run = await new Promise<RunReport>((resolve) => {
      plan.subscribe((e) => e.type === 'run-report' && resolve(e.report!));
      plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, () => [phase]);
    });
    if (!report) throw new Error(`the phase did not run its action: ${JSON.stringify(run.phases)}`);
    return { report, run };
  } finally {
    await plan.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

interface Row {
  mode: Mode;
  concurrency: number;
  ok: number;
  failed: number;
  wallMs: number;
  listMs: number;
  requests: number;
  perVm: number;
  vmsPerSecond: number;
}

async function one(mode: Mode, concurrency: number): Promise<Row> {
  // 2 clusters × 3 hosts, VMS/2 VMs in each cluster's resource pool, spread over its hosts.
  const peer = await VcsimPeer.start({ args: ['-cluster', '2', '-host', '3', '-standalone-host', '0', '-vm', String(VMS / 2), '-guest-shutdown-delay', `${GUEST_MS}ms`] });
  const session = new VsphereSession({ url: peer.url, username: peer.username, password: peer.password, tls: { fingerprint: await peer.fingerprint() }, timeoutMs: 30_000, maxSockets: Math.max(4, Math.min(concurrency, 32)) });
  try {
    const driver = new VsphereDriver(session, { kind: 'vm', pollMs: POLL_MS });
    const list0 = performance.now();
    await driver.list(new AbortController().signal);
    const listMs = performance.now() - list0;
    const before = session.requests;
    const t0 = performance.now();
    const req = { selection: { allRunning: true }, options: { operation: 'shutdown' as const, timeoutMs: 60_000, force: true }, dryRun: false, concurrency, connectTimeoutMs: 60_000 };
    const report = mode === 'action' ? await runAction(driver, { ...req, signal: new AbortController().signal }) : (await throughPlan(driver, req)).report;
    const wallMs = performance.now() - t0;
    const requests = session.requests - before;
    await driver.close();
    const ok = report.results.filter((r) => r.ok).length;
    return { mode, concurrency, ok, failed: report.results.length - ok, wallMs, listMs, requests, perVm: requests / Math.max(1, report.results.length), vmsPerSecond: report.results.length / (wallMs / 1000) };
  } finally {
    await session.close();
    await peer.stop();
  }
}

async function main(): Promise<void> {
  console.log(`\n== vSphere: shut down ${VMS} VMs on vcsim (vCenter model, 2 clusters x 3 hosts) through one action, alone and as a plan's phase ==`);
  console.log(`guest shutdown takes ${GUEST_MS} ms, state polled every ${POLL_MS} ms; requests = SOAP calls incl. the listing the run does`);
  const rows: Row[] = [];
  for (const c of LEVELS) {
    for (const m of MODES) {
      process.stdout.write(`${m}, concurrency ${c}… `);
      const r = await one(m, c);
      rows.push(r);
      console.log(`${(r.wallMs / 1000).toFixed(1)} s`);
    }
  }
  const pad = (s: string, n: number) => s.padStart(n);
  console.log(`\n${pad('way', 6)} ${pad('concurrency', 11)} ${pad('wall', 9)} ${pad('VMs/s', 7)} ${pad('requests', 9)} ${pad('req/VM', 7)} ${pad('ok', 5)} ${pad('failed', 6)}`);
  for (const r of rows) {
    console.log(`${pad(r.mode, 6)} ${pad(String(r.concurrency), 11)} ${pad((r.wallMs / 1000).toFixed(1) + ' s', 9)} ${pad(r.vmsPerSecond.toFixed(1), 7)} ${pad(String(r.requests), 9)} ${pad(r.perVm.toFixed(2), 7)} ${pad(String(r.ok), 5)} ${pad(String(r.failed), 6)}`);
  }
  for (const m of MODES) {
    const base = rows.find((r) => r.mode === m && r.concurrency === 1);
    if (base) for (const r of rows.filter((x) => x.mode === m && x !== base)) console.log(`${m}, concurrency ${r.concurrency}: ${(base.wallMs / r.wallMs).toFixed(1)}x faster than concurrency 1, ${(r.perVm / base.perVm).toFixed(2)}x the requests per VM`);
  }
  for (const c of LEVELS) {
    const a = rows.find((r) => r.mode === 'action' && r.concurrency === c);
    const p = rows.find((r) => r.mode === 'phase' && r.concurrency === c);
    if (a && p) console.log(`concurrency ${c}: the phase adds ${((p.wallMs - a.wallMs) / 1000).toFixed(1)} s (${(((p.wallMs - a.wallMs) / Math.max(1, a.wallMs)) * 100).toFixed(1)} %) to the action alone`);
  }
  console.log(`(listing ${VMS} VMs once: ${(rows[0]?.listMs ?? 0).toFixed(0)} ms)`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
