/**
 * The run machinery alone (lib/plan + lib/actions/run), without Node-RED: order, one run at a time,
 * cancel, mirrored startup, persistence and resume, timeouts. The "platform" here is an in-memory
 * inventory written for this test (it records every call); the real platforms (SSH, libvirt, …)
 * are tested against real peers in their own files and through phases in plan.*.test.ts.
 */
import assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Plan } from '../lib/plan/runner';
import { PlanStore } from '../lib/plan/store';
import { chainFor } from '../lib/plan/chain';
import { ActionHandle, PhaseHandle, PhaseRecord, PhaseSettings, RunEvent, RunRecord, RunReport } from '../lib/plan/types';
import { ActionDriver, ActOptions, Interrupted, Target, TargetSelection, abortableSleep, gracefulThenForce, withTimeout } from '../lib/actions/contract';
import { ActionProgress, ActionRequest, NotReachable, actionBudgetMs, runAction } from '../lib/actions/run';

/** An in-memory platform: targets with power states; shutdown takes `delayMs`; names in `stuck` ignore it. */
class Inventory {
  calls: string[] = [];
  power = new Map<string, 'on' | 'off'>();
  stuck = new Set<string>();
  /** Targets listed with undoOnStartup (like a NUT server's FSD latched by someone else). */
  undo = new Set<string>();
  /**
   * Set: a start is accepted by the platform and lands this many ms later whatever becomes of our
   * wait (virsh start sent, PowerOnVM_Task accepted); null: it is accepted but never lands.
   */
  startLands: number | null | undefined = undefined;
  constructor(names: string[], readonly delayMs = 20) {
    for (const n of names) this.power.set(n, 'on');
  }
  driver(): ActionDriver {
    const inv = this;
    return {
      repeatable: true,
      async list(): Promise<Target[]> {
        return [...inv.power].map(([name, power]) => ({ id: name, name, power, ...(inv.undo.has(name) ? { undoOnStartup: true } : {}) }));
      },
      async check(t: Target, o: ActOptions): Promise<string> {
        return `would ${o.operation} ${t.name}`;
      },
      async act(t: Target, o: ActOptions, signal: AbortSignal) {
        inv.calls.push(`${o.operation} ${t.name}`);
        if (o.operation === 'start' && inv.startLands !== undefined) {
          const lands = inv.startLands;
          if (lands !== null) setTimeout(() => inv.power.set(t.name, 'on'), lands);
          await abortableSleep((lands ?? 60_000) + 20, signal); // our wait ends on abort; the start does not
          return { method: 'graceful' as const, after: 'on' as const };
        }
        if (o.operation === 'start') {
          await abortableSleep(inv.delayMs, signal);
          inv.power.set(t.name, 'on');
          return { method: 'graceful' as const, after: 'on' as const };
        }
        return gracefulThenForce({
          what: t.name,
          graceful: async () => {
            if (!inv.stuck.has(t.name)) setTimeout(() => inv.power.set(t.name, 'off'), inv.delayMs);
          },
          isOff: async () => inv.power.get(t.name) === 'off',
          force: o.force
            ? async () => {
                inv.calls.push(`force ${t.name}`);
                inv.power.set(t.name, 'off');
              }
            : null,
          timeoutMs: o.timeoutMs,
          pollMs: 10,
          signal,
        });
      },
      async close() {},
    };
  }
}

function action(id: string, inv: Inventory, names: string[], timeoutMs = 2000, selection: TargetSelection = { names }): ActionHandle {
  const req = { concurrency: 4, connectTimeoutMs: 1000 };
  return {
    id,
    name: id,
    budgetMs: () => actionBudgetMs({ ...req, options: { operation: 'shutdown', timeoutMs, force: true } }, names.length),
    perform: (step) =>
      runAction(inv.driver(), {
        ...req,
        selection,
        options: { operation: step.run.direction === 'startup' ? 'start' : 'shutdown', timeoutMs, force: true },
        dryRun: step.run.dryRun,
        direction: step.run.direction,
        previous: step.previous,
        interrupted: step.interrupted,
        only: step.only,
        settle: step.settle,
        hooks: step.hooks,
        signal: step.signal,
        targetTimeoutMs: timeoutMs + 1000,
      }),
  };
}

const SETTINGS: PhaseSettings = { mode: 'parallel', stepDelayMs: 0, wait: true, onFailure: 'continue', timeoutMs: null, pointOfNoReturn: false, direction: 'both' };

interface TestPhase extends PhaseHandle {
  finishedWith: Array<{ rec: PhaseRecord; report: RunReport | null }>;
  next: string[];
}

function phase(id: string, acts: ActionHandle[], s: Partial<PhaseSettings> = {}, next: string[] = []): TestPhase {
  const p: TestPhase = {
    id,
    name: id,
    settings: { ...SETTINGS, ...s },
    gate: null,
    gateText: null,
    actions: () => acts,
    update: () => undefined,
    finished: (rec, _run, report) => p.finishedWith.push({ rec: JSON.parse(JSON.stringify(rec)), report }),
    finishedWith: [],
    next,
  };
  return p;
}

function resolver(phases: TestPhase[]) {
  return (direction: 'shutdown' | 'startup') => chainFor(direction, phases.map((p) => ({ id: p.id, name: p.name, direction: p.settings.direction, next: p.next }))).map((id) => phases.find((p) => p.id === id)!);
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function reportOf(plan: Plan): Promise<RunReport> {
  return new Promise((resolve) => {
    const off = plan.subscribe((e: RunEvent) => {
      if (e.type === 'run-report') {
        off();
        resolve(e.report!);
      }
    });
  });
}

describe('plan run machinery (lib/plan)', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-plan-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const newPlan = (o: Partial<ConstructorParameters<typeof Plan>[0]> = {}) => new Plan({ id: 'p1', name: 'homelab', store: new PlanStore(dir, 'p1'), allowRemote: false, armed: true, ...o });

  it('walks the phases in wiring order; each starts only after the previous reported; a run report at the end', async () => {
    const inv = new Inventory(['vm1', 'vm2', 'nas', 'host']);
    const phases = [phase('host-phase', [action('a3', inv, ['host'])]), phase('vms', [action('a1', inv, ['vm1', 'vm2'])], {}, ['nas-phase']), phase('nas-phase', [action('a2', inv, ['nas'])], {}, ['host-phase'])];
    const plan = newPlan();
    const done = reportOf(plan);
    const r = plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(phases));
    assert.equal(r.started, true);
    const report = await done;
    assert.deepEqual(report.phases.map((p) => p.name), ['vms', 'nas-phase', 'host-phase']);
    assert.equal(report.state, 'done');
    assert.deepEqual(inv.calls.slice(2), ['shutdown nas', 'shutdown host']);
    assert.deepEqual(inv.calls.slice(0, 2).sort(), ['shutdown vm1', 'shutdown vm2']);
    const [p1, p2, p3] = report.phases;
    assert.ok(p2.startedAt! >= p1.endedAt!, 'phase 2 starts after phase 1 ended');
    assert.ok(p3.startedAt! >= p2.endedAt!);
    assert.deepEqual(report.totals, { phases: 3, targets: 4, ok: 4, failed: 0, graceful: 4, forced: 0, already: 0, skipped: 0, dryRun: 0 });
    assert.equal(phases[1].finishedWith.length, 1);
    assert.equal(phases[1].finishedWith[0].report, null, 'a phase that is not the last hands on its own record');
    assert.equal(phases[1].finishedWith[0].rec.state, 'done');
    assert.equal(phases[0].finishedWith.length, 1);
    assert.equal(phases[0].finishedWith[0].report?.id, report.id, 'the report leaves the last phase');
    assert.ok(report.timeline.some((t) => t.event === 'target-done' && t.target === 'nas'));
    const saved = JSON.parse(fs.readFileSync(path.join(dir, 'plan-p1.json'), 'utf8'));
    assert.equal(saved.run.state, 'done');
  });

  it('a target already off is "already"; a target ignoring shutdown is forced after the timeout', async () => {
    const inv = new Inventory(['vm1', 'vm2', 'stubborn']);
    inv.power.set('vm2', 'off');
    inv.stuck.add('stubborn');
    const plan = newPlan();
    const done = reportOf(plan);
    plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver([phase('vms', [action('a1', inv, ['vm1', 'vm2', 'stubborn'], 300)])]));
    const report = await done;
    const by = Object.fromEntries(report.phases[0].actions[0].results.map((r) => [r.target, r.method]));
    assert.deepEqual(by, { vm1: 'graceful', vm2: 'already', stubborn: 'forced' });
    assert.ok(!inv.calls.includes('shutdown vm2'), 'nothing sent to a target already off');
  });

  it('dry-run resolves every target and changes nothing', async () => {
    const inv = new Inventory(['vm1', 'vm2']);
    const plan = newPlan({ armed: false });
    const done = reportOf(plan);
    const r = plan.request({ direction: 'shutdown', dryRun: true, origin: 'remote', topic: 'dry-run' }, resolver([phase('vms', [action('a1', inv, ['vm1', 'vm2', 'ghost'])])]));
    assert.equal(r.started, true, 'dry-run is allowed remotely and while disarmed');
    const report = await done;
    assert.deepEqual(inv.calls, []);
    const res = report.phases[0].actions[0].results;
    assert.deepEqual(res.map((x) => [x.target, x.method, x.ok]).sort(), [['ghost', 'skipped', false], ['vm1', 'dry-run', true], ['vm2', 'dry-run', true]]);
    assert.match(res.find((x) => x.target === 'ghost')!.error!, /no target named "ghost"/);
  });

  it('one run at a time; a startup during a shutdown is queued and follows it; cancel skips phases not started', async () => {
    const inv = new Inventory(['a', 'b'], 150);
    const phases = [phase('one', [action('x1', inv, ['a'])], {}, ['two']), phase('two', [action('x2', inv, ['b'])])];
    const plan = newPlan();
    const events: RunEvent[] = [];
    plan.subscribe((e) => events.push(e));
    const first = reportOf(plan);
    const phaseStarted = new Promise<void>((r) => plan.subscribe((e) => e.type === 'phase-started' && r()));
    assert.equal(plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(phases)).started, true);
    await phaseStarted;
    const second = plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(phases));
    assert.equal(second.started, false);
    assert.match((second as { reason: string }).reason, /is in progress/);
    const startup = plan.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'restore' }, resolver(phases));
    assert.deepEqual(startup, { started: false, queued: true, reason: startup.started ? '' : startup.reason });
    assert.deepEqual(plan.cancel('test'), { ok: true, reason: 'phases not yet started will be skipped' });
    const report = await first;
    assert.equal(report.state, 'cancelled');
    assert.deepEqual(report.phases.map((p) => p.state), ['done', 'skipped']);
    const next = await reportOf(plan);
    assert.equal(next.direction, 'startup', 'the queued startup follows');
    assert.deepEqual(next.phases.map((p) => p.name), ['two', 'one']);
    assert.deepEqual(inv.calls, ['shutdown a', 'start a']);
    const refusal = events.find((e) => e.type === 'run-refused');
    assert.deepEqual(refusal?.refused && { ...refusal.refused, reason: undefined }, { what: 'shutdown', reason: undefined, by: 'local', duplicate: true }, 'a second shutdown says it is one');
    assert.match(refusal!.refused!.reason, /is in progress/);
    assert.deepEqual(events.find((e) => e.type === 'run-queued')?.refused?.what, 'startup');
  });

  describe('mains back before the point of no return (the threshold cancels the shutdown)', () => {
    const vmsAndStorage = (inv: Inventory) => [phase('vms', [action('a1', inv, ['vm1', 'vm2', 'old'])], {}, ['storage']), phase('storage', [action('a2', inv, ['nas'])])];
    /** Start a real shutdown and cancel it while phase 1 is shutting its VMs down. */
    async function cancelDuringPhase1(plan: Plan, inv: Inventory, phases: TestPhase[]): Promise<RunReport> {
      const down = reportOf(plan);
      plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(phases));
      await until(() => inv.calls.includes('shutdown vm1') && inv.calls.includes('shutdown vm2'));
      assert.equal(plan.cancel('runtime threshold').ok, true);
      return down;
    }
    /** vm1, vm2 and old (off before the outage) in phase 1, nas in phase 2. */
    const homelab = () => {
      const inv = new Inventory(['vm1', 'vm2', 'old', 'nas'], 150);
      inv.power.set('old', 'off');
      return inv;
    };
    const starts = (inv: Inventory) => inv.calls.filter((c) => c.startsWith('start')).sort();

    it('a cancel after phase 1 started: a startup follows by itself and starts only what phase 1 turned off', async () => {
      const inv = homelab();
      const plan = newPlan();
      const reports: RunReport[] = [];
      plan.subscribe((e) => e.type === 'run-report' && reports.push(e.report!));
      const down = await cancelDuringPhase1(plan, inv, vmsAndStorage(inv));
      assert.equal(down.state, 'cancelled');
      assert.deepEqual(down.phases.map((p) => [p.name, p.state]), [['vms', 'done'], ['storage', 'skipped']]);
      assert.match(down.timeline.find((t) => t.event === 'restore-queued')!.text, /start again what this run turned off: vm1, vm2/);
      await until(() => reports.length === 2);
      const up = reports[1];
      assert.equal(up.direction, 'startup');
      assert.equal(up.dryRun, false);
      assert.equal(up.state, 'done');
      assert.equal(up.origin, 'local');
      assert.equal(up.trigger.topic, 'cancel-restore');
      assert.match(String(up.trigger.reason), /^the shutdown run [0-9a-f]{8} was cancelled by runtime threshold before its point of no return: starting again what it turned off \(vm1, vm2\)$/);
      assert.ok(up.timeline.some((t) => t.event === 'restore-after-cancel' && t.text === up.trigger.reason), 'the startup\'s timeline says why it ran');
      assert.deepEqual(starts(inv), ['start vm1', 'start vm2']);
      assert.equal(inv.power.get('vm1'), 'on');
      assert.equal(inv.power.get('old'), 'off', 'a VM that was off before the outage stays off');
      assert.equal(inv.power.get('nas'), 'on');
      assert.ok(!inv.calls.some((c) => c.endsWith(' nas')), 'the phase the cancel skipped is not touched either way');
      assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'plan-p1.json'), 'utf8')).queued, null);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(reports.length, 2, 'one startup, no more');
    });

    it('Node-RED stops right as the cancelled shutdown ends: the startup is saved and runs once the flow is back', async () => {
      const inv = homelab();
      const plan = newPlan({ bootId: () => 'boot-1' });
      let closing: Promise<void> | undefined;
      plan.subscribe((e) => {
        if (e.type === 'run-report' && e.report!.direction === 'shutdown') closing = plan.close();
      });
      await cancelDuringPhase1(plan, inv, vmsAndStorage(inv));
      await until(() => !!closing);
      await closing;
      assert.deepEqual(starts(inv), [], 'nothing started while stopping');
      assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'plan-p1.json'), 'utf8')).queued?.topic, 'cancel-restore');
      const again = newPlan({ bootId: () => 'boot-1' });
      assert.equal(await again.init(), null);
      const up = reportOf(again);
      assert.equal(again.startQueued(resolver(vmsAndStorage(inv))), true);
      const r = await up;
      assert.equal(r.trigger.topic, 'cancel-restore');
      assert.deepEqual(starts(inv), ['start vm1', 'start vm2'], 'only what the cancelled shutdown turned off');
    });

    it('with "start again after a cancel" off nothing starts, and the log says once what stays off', async () => {
      const inv = homelab();
      const logs: string[] = [];
      const plan = newPlan({ restoreOnCancel: false, log: (_level, text) => logs.push(text) });
      const down = await cancelDuringPhase1(plan, inv, vmsAndStorage(inv));
      assert.equal(down.state, 'cancelled');
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(starts(inv), []);
      assert.equal(plan.lastRun()!.id, down.id, 'no run after the cancelled one');
      assert.equal(inv.power.get('vm1'), 'off');
      const said = logs.filter((l) => /stay off/.test(l));
      assert.deepEqual(said, ['plan "homelab": the cancelled shutdown turned off vm1, vm2; they stay off until a startup is run ("start again after a cancel" is off)']);
      // A startup asked for by hand still starts exactly those.
      const up = reportOf(plan);
      plan.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'startup' }, resolver(vmsAndStorage(inv)));
      assert.equal((await up).state, 'done');
      assert.deepEqual(starts(inv), ['start vm1', 'start vm2']);
    });

    it('a cancel before any target was acted on (phase 1 still at its gate) starts nothing', async () => {
      const inv = new Inventory(['vm1', 'nas']);
      const gated = phase('vms', [action('a1', inv, ['vm1'])], {}, ['storage']);
      // Holds until the cancel (which may come before the gate is even asked).
      gated.gate = (signal) => new Promise((_resolve, reject) => (signal.aborted ? reject(signal.reason) : signal.addEventListener('abort', () => reject(signal.reason), { once: true })));
      gated.gateText = 'runtime on ups1 ≤ 5 min';
      const phases = [gated, phase('storage', [action('a2', inv, ['nas'])])];
      const plan = newPlan();
      const down = reportOf(plan);
      plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(phases));
      await until(() => plan.lastRun()?.phases[0].state === 'waiting');
      plan.cancel('runtime threshold');
      const r = await down;
      assert.equal(r.state, 'cancelled');
      assert.ok(!r.timeline.some((t) => t.event === 'restore-queued'));
      await new Promise((res) => setTimeout(res, 300));
      assert.equal(plan.lastRun()!.id, r.id, 'no startup followed');
      assert.deepEqual(inv.calls, []);
    });
  });

  it('power fails again during the startup: the real shutdown takes over at once; the next startup still starts what the first shutdown turned off', async () => {
    const inv = new Inventory(['web', 'nas'], 200);
    const phases = [phase('vms', [action('a1', inv, ['web'])], {}, ['storage']), phase('storage', [action('a2', inv, ['nas'])])];
    const plan = newPlan();
    let done = reportOf(plan);
    plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(phases));
    assert.equal((await done).state, 'done');
    // Mains returns: the startup begins with the NAS (mirrored order)…
    const startup = reportOf(plan);
    plan.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'restore' }, resolver(phases));
    await until(() => inv.calls.includes('start nas'));
    // …and fails again: the threshold fires shutdown once.
    const r = plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(phases));
    assert.equal(r.started, true, 'the shutdown is not refused');
    const stopped = await startup;
    assert.equal(stopped.direction, 'startup');
    assert.equal(stopped.state, 'cancelled');
    assert.equal(stopped.preemptedBy?.topic, 'shutdown');
    assert.deepEqual(stopped.phases.map((p) => [p.name, p.state]), [['storage', 'failed'], ['vms', 'skipped']]);
    assert.match(stopped.phases[0].note!, /a shutdown \(shutdown, local\) took over/);
    assert.ok(stopped.timeline.some((t) => t.event === 'run-preempted'));
    done = reportOf(plan);
    const down = await done;
    assert.equal(down.direction, 'shutdown');
    assert.equal(down.state, 'done');
    assert.equal(plan.lastRun()!.id, down.id);
    assert.equal(inv.power.get('nas'), 'off');
    assert.equal(inv.power.get('web'), 'off');
    // Mains back for good: both come back, though the second shutdown found them already off.
    inv.calls = [];
    done = reportOf(plan);
    plan.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'restore' }, resolver(phases));
    assert.equal((await done).state, 'done');
    assert.deepEqual(inv.calls, ['start nas', 'start web']);
  });

  it('startup: waiting for a host to come back is told in the run timeline, when it starts and when the host answered or the wait gave up', async () => {
    /** A host that answers only after `upAfterMs` (from the first try), for listing or for acting. */
    const booting = (id: string, label: string, upAfterMs: number, where: 'list' | 'act', timeoutMs: number): ActionHandle => {
      let first = 0;
      const up = () => (first ||= Date.now()) && Date.now() - first >= upAfterMs;
      const driver: ActionDriver & { label: string } = {
        label,
        repeatable: true,
        async list() {
          if (where === 'list' && !up()) throw new NotReachable(`${label}: connection refused`);
          return [{ id: label, name: label, power: 'off' }];
        },
        async check() {
          return 'would wait';
        },
        async act() {
          if (where === 'act' && !up()) throw new NotReachable(`${label}: connection refused`);
          return { method: 'graceful', after: 'on', detail: `${label} is back` };
        },
        async close() {},
      };
      return {
        id,
        name: id,
        budgetMs: () => 60_000,
        perform: (step) =>
          runAction(driver, {
            selection: { names: [label] },
            options: { operation: step.run.direction === 'startup' ? 'start' : 'shutdown', timeoutMs, force: false },
            dryRun: step.run.dryRun,
            direction: step.run.direction,
            concurrency: 1,
            connectTimeoutMs: 1000,
            targetTimeoutMs: timeoutMs + 1000,
            hooks: step.hooks,
            signal: step.signal,
          }),
      };
    };
    const phases = [
      phase('hosts', [booting('kvm', 'kvm1', 1500, 'list', 20_000), booting('nas', 'nas1', 1500, 'act', 20_000), booting('old', 'old1', 60_000, 'list', 2000)], { direction: 'startup' }),
    ];
    const plan = newPlan();
    const done = reportOf(plan);
    plan.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'restore' }, resolver(phases));
    const r = await done;
    const waits = r.timeline.filter((t) => t.event === 'wait-started' || t.event === 'wait-ended').map((t) => `${t.event} ${t.text}`);
    const of = (who: string) => waits.filter((w) => w.includes(`${who}: `));
    assert.equal(of('kvm').length, 2, waits.join('\n'));
    assert.match(of('kvm')[0], /^wait-started kvm: waiting for kvm1 to come back \(kvm1: connection refused\); up to 21 s$/);
    assert.match(of('kvm')[1], /^wait-ended kvm: kvm1 answered after \d+(\.\d)? s$/);
    assert.equal(of('nas').length, 2, waits.join('\n'));
    assert.match(of('nas')[0], /^wait-started nas: waiting for nas1 to come back \(nas1: connection refused\)/);
    assert.match(of('nas')[1], /^wait-ended nas: nas1 answered after \d+(\.\d)? s$/);
    assert.equal(r.timeline.find((t) => t.event === 'wait-started' && t.text.startsWith('nas:'))?.target, 'nas1', 'a wait for one target names it');
    assert.equal(of('old').length, 2, waits.join('\n'));
    assert.match(of('old')[1], /^wait-ended old: gave up waiting for old1 after \d+(\.\d)? s: old1 did not come back within 3 s: old1: connection refused$/);
    const res = Object.fromEntries(r.phases[0].actions.flatMap((a) => a.results).map((x) => [x.target, x]));
    assert.equal(res.kvm1.ok, true);
    assert.equal(res.nas1.ok, true);
    assert.equal(res.old1.ok, false);
  });

  describe('startup: reaching a host is not acting on it', () => {
    /**
     * A NAS as the SSH action sees it: off (not answering) until `up`; reaching it is waiting for
     * the login; acting runs a one-shot command (not repeatable), which needs the host up as well.
     */
    const nas = { up: false, sent: [] as string[] };
    const nasDriver = (): ActionDriver & { label: string } => ({
      label: 'nas',
      repeatable: false,
      async list() {
        return [{ id: 'nas', name: 'nas', power: nas.up ? 'unknown' : 'off' }];
      },
      async check() {
        return 'would wait, then run the startup command';
      },
      async reach() {
        if (!nas.up) throw new NotReachable('nas: connection refused');
      },
      async act() {
        if (!nas.up) throw new NotReachable('nas: connection refused');
        nas.sent.push('startup command');
        return { method: 'graceful', after: 'on', detail: 'startup command exited 0' };
      },
      async close() {},
    });
    const nasAction = (): ActionHandle => ({
      id: 'ssh',
      name: 'ssh',
      budgetMs: () => 60_000,
      perform: (step) =>
        runAction(nasDriver(), {
          selection: { names: ['nas'] },
          options: { operation: 'start', timeoutMs: 20_000, force: false },
          dryRun: step.run.dryRun,
          direction: step.run.direction,
          concurrency: 1,
          connectTimeoutMs: 1000,
          targetTimeoutMs: 30_000,
          previous: step.previous,
          interrupted: step.interrupted,
          hooks: step.hooks,
          signal: step.signal,
        }),
    });
    beforeEach(() => {
      nas.up = false;
      nas.sent = [];
    });

    it('Node-RED restarts while the startup waits for the NAS: the resumed run waits again, then runs its one-shot command once', async () => {
      const phases = [phase('hosts', [nasAction()], { direction: 'startup' })];
      const plan = newPlan();
      plan.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'restore' }, resolver(phases));
      await until(() => !!plan.lastRun()?.timeline.some((t) => t.event === 'wait-started' && t.target === 'nas'));
      await plan.close(); // Node-RED stops during the wait
      const saved = JSON.parse(fs.readFileSync(path.join(dir, 'plan-p1.json'), 'utf8')).run as RunRecord;
      assert.equal(saved.state, 'running');
      // Not marked as started: a shutdown stopping this startup does not count it as asked to start either.
      assert.deepEqual(saved.phases[0].actions[0].started, [], 'waiting for the host is not acting on it');
      assert.deepEqual(nas.sent, []);

      const again = newPlan();
      const rec = await again.init();
      assert.ok(rec, 'a run to resume');
      const done = reportOf(again);
      again.resume(rec, (id) => phases.find((p) => p.id === id));
      await until(() => (again.lastRun()?.timeline.filter((t) => t.event === 'wait-started' && t.target === 'nas').length ?? 0) >= 2);
      nas.up = true; // the NAS has booted
      const r = await done;
      assert.equal(r.state, 'done', JSON.stringify(r.phases, null, 1));
      const res = r.phases[0].actions[0].results;
      assert.equal(res.length, 1);
      assert.equal(res[0].ok, true, JSON.stringify(res[0]));
      assert.equal(res[0].method, 'graceful');
      assert.deepEqual(nas.sent, ['startup command'], 'sent once, after the host was back');
      assert.ok(r.timeline.some((t) => t.event === 'wait-ended' && /nas answered after/.test(t.text)));
    });

    it('a startup whose host answers only at the end of its wait still finishes within the budget derived for a startup; no target count is sent before listing', async () => {
      let upAt = 0;
      const progress: ActionProgress[] = [];
      const slow: ActionDriver & { label: string } = {
        label: 'kvm1',
        repeatable: true,
        async list() {
          if (Date.now() < upAt) throw new NotReachable('kvm1: connection refused');
          return [{ id: 'vm', name: 'vm', power: 'off' }];
        },
        async check() {
          return 'would start vm';
        },
        async act(_t, _o, signal) {
          await abortableSleep(1500, signal); // booting the VM takes most of its limit
          return { method: 'graceful', after: 'on' };
        },
        async close() {},
      };
      const req: Omit<ActionRequest, 'signal'> = {
        selection: { names: ['vm'] },
        options: { operation: 'start', timeoutMs: 1500, force: false },
        dryRun: false,
        direction: 'startup',
        concurrency: 1,
        connectTimeoutMs: 400,
        targetTimeoutMs: 2500,
        reachableWaitMs: 2000,
        hooks: { onProgress: (p) => void progress.push({ ...p }) },
      };
      const budget = actionBudgetMs(req, 1);
      const t0 = Date.now();
      upAt = t0 + 1800; // the try at the end of the 2 s wait gets an answer
      const report = await withTimeout('the phase', budget, new AbortController().signal, (signal) => runAction(slow, { ...req, signal }));
      const ms = Date.now() - t0;
      assert.equal(report.ok, true, JSON.stringify(report));
      assert.equal(report.results[0].method, 'graceful');
      assert.ok(ms > actionBudgetMs({ ...req, direction: 'shutdown' }, 1), `took ${ms} ms: more than a budget without the wait would allow`);
      // While listing waits, how many targets there are is not known: no total, not 0.
      const waiting = progress.filter((p) => p.waiting);
      assert.ok(waiting.length >= 1, JSON.stringify(progress));
      for (const p of waiting) assert.equal('total' in p, false, JSON.stringify(p));
      assert.equal(progress[progress.length - 1].total, 1);
    });
  });

  describe('power fails again while the startup is starting targets (a start the platform accepted still lands)', () => {
    /** Shut everything down, then begin the startup and let the shutdown take over once `starting` are in flight. */
    async function preemptedWhileStarting(plan: Plan, inv: Inventory, phases: TestPhase[], starting: string[]): Promise<{ down: Promise<RunReport> }> {
      let done = reportOf(plan);
      plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(phases));
      assert.equal((await done).state, 'done');
      inv.calls = [];
      const startup = reportOf(plan);
      plan.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'restore' }, resolver(phases));
      await until(() => starting.every((n) => inv.calls.includes(`start ${n}`)));
      for (const n of starting) assert.equal(inv.power.get(n), 'off', `${n} is still starting`);
      assert.equal(plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(phases)).started, true);
      const stopped = await startup;
      assert.equal(stopped.state, 'cancelled');
      return { down: reportOf(plan) };
    }

    it('by name: the shutdown finds them off, waits until they are up, and shuts them down; they stay off', async () => {
      const inv = new Inventory(['web', 'db']);
      inv.startLands = 1000;
      const phases = [phase('vms', [action('a1', inv, ['web', 'db'], 5000)])];
      const plan = newPlan();
      const t0 = Date.now();
      const down = await (await preemptedWhileStarting(plan, inv, phases, ['web', 'db'])).down;
      assert.equal(down.direction, 'shutdown');
      assert.equal(down.state, 'done', JSON.stringify(down.phases, null, 1));
      const res = down.phases[0].actions[0].results;
      for (const n of ['web', 'db']) {
        const r = res.find((x) => x.target === n)!;
        assert.equal(r.method, 'graceful', `${n}: ${JSON.stringify(r)}`);
        assert.equal(r.before, 'on');
        assert.match(r.detail!, /came up .* into this run: the start the stopped startup had asked for went through/);
      }
      assert.deepEqual(inv.calls.filter((c) => c.startsWith('shutdown')).sort(), ['shutdown db', 'shutdown web']);
      assert.equal(down.settle?.actions.a1?.slice().sort().join(), 'db,web', 'the run record says which targets it waited for');
      const waits = down.timeline.filter((t) => t.event === 'wait-started' || t.event === 'wait-ended');
      assert.deepEqual(waits.map((t) => [t.event, t.target]).sort(), [['wait-ended', 'db'], ['wait-ended', 'web'], ['wait-started', 'db'], ['wait-started', 'web']]);
      assert.ok(waits.some((t) => /web is off, but the startup this shutdown stopped had asked to start it/.test(t.text)), waits.map((t) => t.text).join('\n'));
      assert.ok(down.timeline.some((t) => t.event === 'settle' && /had asked to start/.test(t.text)));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(inv.power.get('web'), 'off', 'web stays off');
      assert.equal(inv.power.get('db'), 'off', 'db stays off');
      assert.ok(Date.now() - t0 < 20_000);
      // Mains back for good: what this shutdown turned off is started again.
      inv.startLands = undefined;
      inv.calls = [];
      const up = reportOf(plan);
      plan.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'restore' }, resolver(phases));
      assert.equal((await up).state, 'done');
      assert.deepEqual(inv.calls.sort(), ['start db', 'start web']);
    });

    it('"all running": a target still starting is not missed; one off before the outage stays out', async () => {
      const inv = new Inventory(['web', 'db', 'old']);
      inv.power.set('old', 'off');
      inv.startLands = 1000;
      const phases = [phase('vms', [action('a1', inv, [], 5000, { allRunning: true })])];
      const plan = newPlan();
      // The first shutdown turns off web and db; old was off already.
      const down = await (await preemptedWhileStarting(plan, inv, phases, ['web', 'db'])).down;
      assert.equal(down.state, 'done', JSON.stringify(down.phases, null, 1));
      const by = Object.fromEntries(down.phases[0].actions[0].results.map((r) => [r.target, r.method]));
      assert.deepEqual(by, { web: 'graceful', db: 'graceful' });
      assert.equal(inv.power.get('web'), 'off');
      assert.equal(inv.power.get('db'), 'off');
      assert.ok(!inv.calls.includes('shutdown old'));
    });

    it('a start that never lands: the shutdown waits only its bounded window, then reports it already off and says why', async () => {
      const inv = new Inventory(['web']);
      inv.startLands = null;
      const phases = [phase('vms', [action('a1', inv, ['web'], 2500)])];
      const plan = newPlan();
      const t0 = Date.now();
      const down = await (await preemptedWhileStarting(plan, inv, phases, ['web'])).down;
      const r = down.phases[0].actions[0].results[0];
      assert.equal(r.method, 'already', JSON.stringify(r));
      assert.equal(r.ok, true);
      assert.match(r.detail!, /^already off; waited .* for the start the stopped startup had asked for, it did not come up$/);
      assert.ok(Date.now() - t0 < 15_000, 'bounded by the settle window (the action timeout, 2.5 s)');
      assert.ok(down.timeline.some((t) => t.event === 'wait-ended' && /web stayed off for/.test(t.text)));
      assert.ok(!inv.calls.includes('shutdown web'));
    });

    it('Node-RED restarts while the shutdown waits for a start to land: the resumed run still waits for it and shuts it down', async () => {
      const inv = new Inventory(['web']);
      inv.startLands = 3000;
      const phases = [phase('vms', [action('a1', inv, ['web'], 8000)])];
      const plan = newPlan();
      await preemptedWhileStarting(plan, inv, phases, ['web']);
      await until(() => !!plan.lastRun()?.timeline.some((t) => t.event === 'wait-started' && t.target === 'web'));
      await plan.close();
      const saved = JSON.parse(fs.readFileSync(path.join(dir, 'plan-p1.json'), 'utf8')).run as RunRecord;
      assert.equal(saved.direction, 'shutdown');
      assert.equal(saved.state, 'running');
      assert.deepEqual(saved.settle?.actions.a1, ['web'], 'the targets to wait for are saved with the run');
      const again = newPlan();
      const rec = await again.init();
      assert.ok(rec);
      const done = reportOf(again);
      again.resume(rec, (id) => phases.find((p) => p.id === id));
      const r = await done;
      assert.equal(r.state, 'done', JSON.stringify(r.phases, null, 1));
      assert.equal(r.phases[0].actions[0].results[0].method, 'graceful', JSON.stringify(r.phases[0].actions[0].results));
      assert.equal(inv.power.get('web'), 'off');
    });
  });

  it('a real shutdown stops a dry-run in progress and runs at once', async () => {
    const inv = new Inventory(['vm1']);
    let release: () => void = () => undefined;
    const slow: ActionHandle = {
      id: 'slow',
      name: 'slow',
      budgetMs: () => 60_000,
      perform: (step) =>
        step.run.dryRun
          ? new Promise((resolve) => {
              const report = { operation: 'shutdown', dryRun: true, ok: false, aborted: true, results: [], ms: 0 };
              release = () => resolve(report);
              step.signal.addEventListener('abort', release, { once: true });
            })
          : Promise.resolve({ operation: 'shutdown', dryRun: false, ok: true, aborted: false, results: [], ms: 0 }),
    };
    const phases = [phase('check', [slow], {}, ['vms']), phase('vms', [action('a1', inv, ['vm1'])])];
    const plan = newPlan();
    const dry = reportOf(plan);
    plan.request({ direction: 'shutdown', dryRun: true, origin: 'remote', topic: 'dry-run' }, resolver(phases));
    await until(() => plan.status().currentPhase === 'check');
    assert.equal(plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(phases)).started, true);
    const d = await dry;
    assert.equal(d.dryRun, true);
    assert.equal(d.state, 'cancelled');
    assert.equal(d.phases[1].state, 'skipped');
    const real = await reportOf(plan);
    assert.equal(real.dryRun, false);
    assert.equal(real.state, 'done');
    assert.deepEqual(inv.calls, ['shutdown vm1']);
    release();
  });

  it('a restore arriving during a dry-run (someone pressed it in HA as mains came back) takes over: the startup runs', async () => {
    const inv = new Inventory(['vm1']);
    inv.power.set('vm1', 'off');
    const hold: ActionHandle = {
      id: 'hold',
      name: 'hold',
      budgetMs: () => 60_000,
      perform: (step) =>
        step.run.dryRun
          ? new Promise((resolve) => step.signal.addEventListener('abort', () => resolve({ operation: 'shutdown', dryRun: true, ok: false, aborted: true, results: [], ms: 0 }), { once: true }))
          : Promise.resolve({ operation: 'start', dryRun: false, ok: true, aborted: false, results: [], ms: 0 }),
    };
    const phases = [phase('vms', [action('a1', inv, ['vm1'])], {}, ['check']), phase('check', [hold])];
    const plan = newPlan();
    const dry = reportOf(plan);
    plan.request({ direction: 'shutdown', dryRun: true, origin: 'remote', topic: 'dry-run' }, resolver(phases));
    await until(() => plan.status().currentPhase === 'check');
    const r = plan.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'restore' }, resolver(phases));
    assert.equal(r.started, true, 'the restore is not refused behind a dry-run');
    const d = await dry;
    assert.equal(d.state, 'cancelled');
    assert.match(d.phases[1].note!, /a startup \(restore, local\) took over/);
    const up = await reportOf(plan);
    assert.equal(up.direction, 'startup');
    assert.equal(up.state, 'done');
    assert.deepEqual(inv.calls, ['start vm1']);
  });

  it('power fails again while a startup waits behind the shutdown: the queued startup is dropped, nothing starts on battery', async () => {
    const inv = new Inventory(['a', 'b'], 150);
    const phases = [phase('one', [action('x1', inv, ['a'])], {}, ['two']), phase('two', [action('x2', inv, ['b'])])];
    const plan = newPlan();
    const first = reportOf(plan);
    plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(phases));
    await until(() => inv.calls.includes('shutdown a'));
    assert.equal((plan.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'restore' }, resolver(phases)) as { queued?: boolean }).queued, true);
    // The threshold fires shutdown again (mains failed once more): refused as a duplicate, and the startup is off.
    assert.equal(plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(phases)).started, false);
    const report = await first;
    assert.equal(report.direction, 'shutdown');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(plan.lastRun()!.id, report.id, 'no startup followed');
    assert.deepEqual(inv.calls, ['shutdown a', 'shutdown b']);
  });

  it('a real shutdown paused by a redeploy is not replaced by a dry-run pressed meanwhile; it resumes when its node is back', async () => {
    const inv = new Inventory(['vm1']);
    let redeployed = true;
    const flaky: ActionHandle = {
      id: 'vms',
      name: 'vms',
      budgetMs: () => 10_000,
      // The first time, the action node is redeployed under the run (Interrupted); then it is back.
      perform: (step) => (redeployed ? ((redeployed = false), Promise.reject(new Interrupted())) : action('vms', inv, ['vm1']).perform(step)),
    };
    const phases = [phase('vms', [flaky])];
    const plan = newPlan();
    plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(phases));
    await until(() => !plan.running() && plan.lastRun()?.state === 'running');
    const dry = plan.request({ direction: 'shutdown', dryRun: true, origin: 'remote', topic: 'dry-run' }, resolver(phases));
    assert.equal(dry.started, false, 'the dry-run does not replace the paused shutdown');
    assert.match((dry as { reason: string }).reason, /\(shutdown\) is in progress/);
    const report = reportOf(plan);
    assert.equal(plan.resumeStalled((id) => phases.find((p) => p.id === id)), true);
    const done = await report;
    assert.equal(done.direction, 'shutdown');
    assert.equal(done.dryRun, false);
    assert.equal(done.state, 'done');
    assert.deepEqual(inv.calls, ['shutdown vm1']);
  });

  it('a dry-run or a second startup during a startup is still refused', async () => {
    const inv = new Inventory(['vm1'], 300);
    inv.power.set('vm1', 'off');
    const phases = [phase('vms', [action('a1', inv, ['vm1'])])];
    const plan = newPlan();
    const done = reportOf(plan);
    plan.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'startup' }, resolver(phases));
    assert.equal(plan.request({ direction: 'shutdown', dryRun: true, origin: 'local', topic: 'dry-run' }, resolver(phases)).started, false);
    assert.equal(plan.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'startup' }, resolver(phases)).started, false);
    assert.equal((await done).state, 'done');
  });

  it('startup mirrors the shutdown order, leaving out shutdown-only phases; a startup chain replaces the mirror', async () => {
    const inv = new Inventory(['vm', 'nas', 'ups']);
    for (const n of inv.power.keys()) inv.power.set(n, 'off');
    const phases = [phase('vms', [action('a1', inv, ['vm'])], {}, ['nas']), phase('nas', [action('a2', inv, ['nas'])], {}, ['ups']), phase('ups', [action('a3', inv, ['ups'])], { direction: 'shutdown' })];
    const plan = newPlan();
    let done = reportOf(plan);
    plan.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'restore' }, resolver(phases));
    let report = await done;
    assert.deepEqual(report.phases.map((p) => p.name), ['nas', 'vms']);
    assert.deepEqual(inv.calls, ['start nas', 'start vm']);

    const own = [...phases, phase('wake', [action('a4', inv, ['vm'])], { direction: 'startup' })];
    inv.calls = [];
    inv.power.set('vm', 'off');
    done = reportOf(plan);
    plan.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'startup' }, resolver(own));
    report = await done;
    assert.deepEqual(report.phases.map((p) => p.name), ['wake']);
  });

  it('refuses real runs from remote unless allowed, and while disarmed', async () => {
    const inv = new Inventory(['a']);
    const plan = newPlan();
    const r = plan.request({ direction: 'shutdown', dryRun: false, origin: 'remote', topic: 'shutdown' }, resolver([phase('one', [action('x', inv, ['a'])])]));
    assert.equal(r.started, false);
    assert.match((r as { reason: string }).reason, /remote runs are not allowed/);
    await plan.setArmed(false, 'test');
    const r2 = plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver([phase('one', [action('x', inv, ['a'])])]));
    assert.match((r2 as { reason: string }).reason, /disarmed/);
    assert.deepEqual(inv.calls, []);
    const reloaded = newPlan();
    await reloaded.init();
    assert.equal(reloaded.isArmed(), false, 'the armed switch survives a restart');
  });

  it('a restart mid-run resumes where it stopped; no target is acted on twice', async () => {
    const inv = new Inventory(['a1', 'a2', 'b1'], 100);
    const mk = () => [phase('one', [action('x1', inv, ['a1', 'a2'])], { mode: 'sequential' }, ['two']), phase('two', [action('x2', inv, ['b1'])])];
    const plan = newPlan();
    plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(mk()));
    await until(() => inv.calls.includes('shutdown a1') && inv.calls.includes('shutdown a2'));
    await plan.close(); // Node-RED stops while both targets of phase one are shutting down
    const saved: RunRecord = JSON.parse(fs.readFileSync(path.join(dir, 'plan-p1.json'), 'utf8')).run;
    assert.equal(saved.state, 'running');
    assert.deepEqual(saved.phases[0].actions[0].started.sort(), ['a1', 'a2']);
    // Node-RED comes back; the targets finished shutting down meanwhile.
    await until(() => inv.power.get('a1') === 'off' && inv.power.get('a2') === 'off');
    const again = newPlan();
    const rec = await again.init();
    assert.ok(rec, 'a run to resume');
    const phases2 = mk();
    const done = reportOf(again);
    again.resume(rec!, (id) => phases2.find((p) => p.id === id));
    const report = await done;
    assert.equal(report.state, 'done');
    assert.deepEqual(report.resumed.length, 1);
    assert.deepEqual(inv.calls.filter((c) => c.startsWith('shutdown')).sort(), ['shutdown a1', 'shutdown a2', 'shutdown b1']);
    const methods = Object.fromEntries(report.phases.flatMap((p) => p.actions.flatMap((a) => a.results)).map((r) => [r.target, r.method]));
    assert.deepEqual(methods, { a1: 'already', a2: 'already', b1: 'graceful' });
  });

  it('a restart while a phase waits at its gate: after the resume it waits again, and acts only when the gate opens', async () => {
    const inv = new Inventory(['vm', 'ups'], 20);
    let open: (() => void) | null = null;
    const gated = (): TestPhase => {
      const p = phase('ups-off', [action('a2', inv, ['ups'])]);
      p.gate = (signal) =>
        new Promise((resolve, reject) => {
          if (signal.aborted) return reject(signal.reason);
          open = () => resolve('runtime ≤ 5 min');
          signal.addEventListener('abort', () => reject(signal.reason), { once: true });
        });
      p.gateText = 'runtime on ups ≤ 5 min';
      return p;
    };
    const mk = () => [phase('vms', [action('a1', inv, ['vm'])], {}, ['ups-off']), gated()];
    const plan = newPlan();
    plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(mk()));
    await until(() => plan.lastRun()?.phases[1].state === 'waiting');
    await plan.close(); // Node-RED stops while "ups-off" waits at its gate
    const again = newPlan();
    const rec = await again.init();
    assert.equal(rec!.phases[1].state, 'waiting');
    open = null;
    const phases2 = mk();
    const done = reportOf(again);
    again.resume(rec!, (id) => phases2.find((p) => p.id === id));
    await until(() => open !== null);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(inv.calls, ['shutdown vm'], 'the UPS is not powered off before its gate opens');
    assert.equal(again.lastRun()!.phases[1].state, 'waiting');
    open!();
    const report = await done;
    assert.equal(report.state, 'done');
    assert.deepEqual(inv.calls, ['shutdown vm', 'shutdown ups']);
    assert.match(report.phases[1].note!, /gate opened: runtime ≤ 5 min/);
  });

  it('a startup queued behind a shutdown survives a restart of Node-RED and follows the resumed shutdown', async () => {
    const inv = new Inventory(['a1', 'b1'], 150);
    const mk = () => [phase('one', [action('x1', inv, ['a1'])], {}, ['two']), phase('two', [action('x2', inv, ['b1'])])];
    const plan = newPlan({ bootId: () => 'boot-1' });
    plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(mk()));
    await until(() => inv.calls.includes('shutdown a1'));
    const q = plan.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'restore' }, resolver(mk()));
    assert.equal(q.started === false && q.queued, true);
    await plan.close();
    const saved = JSON.parse(fs.readFileSync(path.join(dir, 'plan-p1.json'), 'utf8'));
    assert.equal(saved.queued?.direction, 'startup', 'the queued startup is in the plan file');
    const again = newPlan({ bootId: () => 'boot-1' });
    const rec = await again.init();
    const phases2 = mk();
    const down = reportOf(again);
    again.resume(rec!, (id) => phases2.find((p) => p.id === id), resolver(phases2));
    assert.equal((await down).direction, 'shutdown');
    const up = await reportOf(again);
    assert.equal(up.direction, 'startup', 'the queued startup followed');
    assert.equal(up.trigger.topic, 'restore');
    assert.deepEqual(inv.calls.filter((c) => c.startsWith('start')), ['start b1', 'start a1']);
    assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'plan-p1.json'), 'utf8')).queued, null);
  });

  it('a startup queued behind a shutdown cut short by a power cut runs once the flow is back', async () => {
    const inv = new Inventory(['a1', 'b1'], 150);
    const mk = () => [phase('one', [action('x1', inv, ['a1'])], {}, ['two']), phase('two', [action('x2', inv, ['b1'])])];
    const plan = newPlan({ bootId: () => 'boot-1' });
    plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(mk()));
    await until(() => inv.calls.includes('shutdown a1'));
    plan.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'restore' }, resolver(mk()));
    await plan.close();
    await until(() => inv.power.get('a1') === 'off');
    const again = newPlan({ bootId: () => 'boot-2' });
    assert.equal(await again.init(), null, 'the shutdown is not resumed');
    const up = reportOf(again);
    assert.equal(again.startQueued(resolver(mk())), true);
    const r = await up;
    assert.equal(r.direction, 'startup');
    assert.deepEqual(inv.calls, ['shutdown a1', 'start a1'], 'it starts what the cut-short shutdown turned off');
  });

  it('a request while the saved state is loading waits for it and sees the saved switch; resume is refused while a run is active', async () => {
    const inv = new Inventory(['a1']);
    const first = newPlan();
    await first.setArmed(false, 'Home Assistant');
    const again = newPlan(); // configured armed, as before: the saved "disarmed" holds
    const events: RunEvent[] = [];
    again.subscribe((e) => events.push(e));
    const loading = again.init();
    const r = again.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver([phase('one', [action('x', inv, ['a1'])])]));
    assert.equal(r.started, false);
    assert.match((r as { reason: string }).reason, /loading its saved state/);
    await loading;
    assert.ok(events.some((e) => e.type === 'run-refused' && /disarmed/.test(e.message)), 'refused with the saved switch, once loaded');
    await new Promise((res) => setTimeout(res, 100));
    assert.deepEqual(inv.calls, []);

    // A run is active: resuming another record must not start a second loop beside it.
    await again.setArmed(true, 'test');
    const slow = new Inventory(['s1'], 300);
    const phases = [phase('one', [action('x', slow, ['s1'])])];
    const done = reportOf(again);
    assert.equal(again.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(phases)).started, true);
    const stale = { ...again.lastRun()!, id: 'other-run' };
    assert.equal(again.resume(stale, (id) => phases.find((p) => p.id === id)), null);
    const report = await done;
    assert.notEqual(report.id, 'other-run');
    assert.deepEqual(slow.calls, ['shutdown s1']);
  });

  it('the startup after a shutdown starts only what that shutdown turned off, not what was off before the outage', async () => {
    const inv = new Inventory(['web', 'db', 'old']);
    inv.power.set('old', 'off'); // off before the outage
    const phases = [phase('vms', [action('a1', inv, ['web', 'db', 'old'])])];
    const plan = newPlan();
    let done = reportOf(plan);
    plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(phases));
    await done;
    // Node-RED restarts in between: what to restore is on disk.
    await plan.close();
    const again = newPlan();
    await again.init();
    done = reportOf(again);
    again.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'restore' }, resolver(phases));
    const r = await done;
    assert.deepEqual(inv.calls.filter((c) => c.startsWith('start')).sort(), ['start db', 'start web']);
    assert.equal(inv.power.get('old'), 'off', 'a VM that was off before the outage stays off');
    assert.deepEqual(r.restrict!.phasesNotRun, []);
    assert.deepEqual(r.restrict!.actions.a1.sort(), ['db', 'web']);
  });

  it('a target found already off but marked undoOnStartup (FSD latched by someone else) is undone by the startup', async () => {
    const inv = new Inventory(['web', 'fsd', 'old']);
    inv.power.set('fsd', 'off');
    inv.undo.add('fsd');
    inv.power.set('old', 'off');
    const phases = [phase('vms', [action('a1', inv, ['web', 'fsd', 'old'])])];
    const plan = newPlan();
    let done = reportOf(plan);
    plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(phases));
    const down = await done;
    const fsd = down.phases[0].actions[0].results.find((r) => r.target === 'fsd')!;
    assert.equal(fsd.method, 'already');
    assert.equal(fsd.undoOnStartup, true, 'the result carries the target\'s undoOnStartup');
    assert.equal(down.phases[0].actions[0].results.find((r) => r.target === 'old')!.undoOnStartup, undefined);
    done = reportOf(plan);
    plan.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'restore' }, resolver(phases));
    await done;
    assert.deepEqual(inv.calls.filter((c) => c.startsWith('start')).sort(), ['start fsd', 'start web']);
    assert.equal(inv.power.get('old'), 'off', 'a plain "already off" target stays off');
  });

  it('after a power cut (the machine rebooted since the record was written) a shutdown run is not resumed', async () => {
    const inv = new Inventory(['a1', 'b1'], 100);
    const mk = () => [phase('one', [action('x1', inv, ['a1'])], {}, ['two']), phase('two', [action('x2', inv, ['b1'])])];
    const plan = newPlan({ bootId: () => 'boot-1' });
    plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(mk()));
    await until(() => inv.calls.includes('shutdown a1'));
    await plan.close();
    // The machine booted since the record was last written: another boot id. Its clock is that of
    // a Raspberry Pi without RTC, far in the past, so the clock alone would say "same boot".
    const again = newPlan({ bootId: () => 'boot-2', bootTime: () => 0 });
    const rec = await again.init();
    assert.equal(rec, null, 'nothing to resume');
    const last = again.lastRun()!;
    assert.equal(last.state, 'failed');
    assert.match(last.timeline[last.timeline.length - 1].text, /the machine restarted during this shutdown run/);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(inv.calls, ['shutdown a1'], 'nothing more was shut down');
    // (When only Node-RED restarted, the machine did not, the run resumes: see the test above.)
  });

  it('whether the machine restarted is told by the boot id, not the clock; without a boot id, by the clock', async () => {
    const inv = new Inventory(['a1', 'b1'], 100);
    const mk = () => [phase('one', [action('x1', inv, ['a1'])], {}, ['two']), phase('two', [action('x2', inv, ['b1'])])];
    const interrupt = async (bootId: string | null) => {
      const plan = newPlan({ bootId: () => bootId });
      plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(mk()));
      await until(() => inv.calls.includes('shutdown a1'));
      await plan.close();
      inv.calls = [];
      inv.power.set('a1', 'on');
      return JSON.parse(fs.readFileSync(path.join(dir, 'plan-p1.json'), 'utf8'));
    };
    // Same boot, though the clock was stepped so that the boot time looks later than the record:
    // only Node-RED restarted, the run resumes.
    let saved = await interrupt('boot-1');
    assert.equal(saved.bootId, 'boot-1', 'the boot id is in the plan file');
    let again = newPlan({ bootId: () => 'boot-1', bootTime: () => Date.now() + 60_000 });
    let rec = await again.init();
    assert.ok(rec, 'resumed: same boot');
    await again.close();
    // No boot id readable (not Linux): the clock decides, and says the machine booted since.
    saved = await interrupt(null);
    assert.equal(saved.bootId, undefined);
    again = newPlan({ bootId: () => null, bootTime: () => Date.now() + 60_000 });
    rec = await again.init();
    assert.equal(rec, null, 'not resumed: the clock says the machine booted after the record');
    assert.equal(again.lastRun()!.state, 'failed');
  });

  it('a phase that runs out of time fails with the reason; "stop" skips the rest of the plan', async () => {
    const inv = new Inventory(['slow', 'later'], 5000);
    const phases = [phase('one', [action('x1', inv, ['slow'], 10_000)], { timeoutMs: 300, onFailure: 'stop' }, ['two']), phase('two', [action('x2', inv, ['later'])])];
    const plan = newPlan();
    const done = reportOf(plan);
    plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(phases));
    const report = await done;
    assert.equal(report.state, 'failed');
    assert.equal(report.phases[0].state, 'failed');
    assert.match(report.phases[0].note!, /timed out after 300 ms/);
    assert.equal(report.phases[1].state, 'skipped');
    assert.match(report.phases[1].note!, /failed and is set to stop the plan/);
    assert.ok(!inv.calls.includes('shutdown later'));
  });

  it('a derived phase timeout grows to the number of targets a pattern resolved (12, not the guessed 2)', async () => {
    const names = Array.from({ length: 12 }, (_, i) => `vm-${i}`);
    const inv = new Inventory(names, 100);
    const req = { concurrency: 1, connectTimeoutMs: 1000, targetTimeoutMs: 400 };
    const opts = { operation: 'shutdown' as const, timeoutMs: 300, force: true };
    const vms: ActionHandle = {
      id: 'vms',
      name: 'VMs',
      // Like the libvirt node: a pattern cannot be counted before listing, so it guesses.
      budgetMs: (targets) => (targets ?? 2) * 400,
      perform: (step) => runAction(inv.driver(), { ...req, selection: { patterns: ['vm-*'] }, options: opts, dryRun: false, previous: step.previous, interrupted: step.interrupted, hooks: step.hooks, signal: step.signal }),
    };
    const plan = newPlan({ phaseMarginMs: 100 });
    const done = reportOf(plan);
    plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver([phase('vms', [vms])]));
    const report = await done;
    assert.equal(report.state, 'done', report.phases[0].note);
    const res = report.phases[0].actions[0].results;
    assert.equal(res.length, 12);
    assert.ok(res.every((r) => r.ok && r.method === 'graceful'), 'no VM was cut off as "not started"');
    assert.ok(report.timeline.some((t) => t.event === 'phase-timeout' && /timeout now 4\.9 s \(VMs resolved 12 targets\)/.test(t.text)));
  });

  it('a damaged plan file is moved aside with the reason, not overwritten; the plan starts afresh', async () => {
    const file = path.join(dir, 'plan-p1.json');
    fs.writeFileSync(file, '{"version":1,"armed":tr');
    const logs: string[] = [];
    const plan = newPlan({ log: (_l, t) => logs.push(t) });
    assert.equal(await plan.init(), null);
    const aside = fs.readdirSync(dir).filter((f) => f.startsWith('plan-p1.json.damaged-'));
    assert.equal(aside.length, 1, fs.readdirSync(dir).join(', '));
    assert.equal(fs.readFileSync(path.join(dir, aside[0]), 'utf8'), '{"version":1,"armed":tr', 'kept as it was');
    assert.ok(logs.some((l) => /is damaged .* it was moved to .*\.damaged-/.test(l)), logs.join('\n'));
    await plan.setArmed(true, 'test');
    assert.equal(JSON.parse(fs.readFileSync(file, 'utf8')).armed, true, 'a new file is written');
    assert.equal(fs.readFileSync(path.join(dir, aside[0]), 'utf8'), '{"version":1,"armed":tr');
  });

  it('wiring that is not one chain is refused with the reason', () => {
    const inv = new Inventory(['a']);
    const phases = [phase('one', [action('x', inv, ['a'])], {}, ['two', 'three']), phase('two', []), phase('three', [])];
    const plan = newPlan();
    const r = plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, resolver(phases));
    assert.equal(r.started, false);
    assert.match((r as { reason: string }).reason, /hands on to 2 phases/);
  });
});
