/**
 * The plan setting "after a cancelled shutdown, start again what it turned off" as the editor saves
 * it (ticked, unticked, or absent in a plan saved before the setting existed), through the real plan
 * config node in Node-RED. The run itself is driven on the node's plan with a stand-in action (the
 * run machinery is tested in plan-engine.test.ts).
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { helper } from './util/red';
import type { Plan } from '../lib/plan/runner';
import type { ActionHandle, ActionStep, PhaseHandle, RunEvent, RunReport } from '../lib/plan/types';
import type { ActionReport } from '../lib/actions/run';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const planNode = require('../nodes/upsorch-plan');

/** One action over vm1: shutdown turns it off and then holds until `release` (so a cancel lands mid-phase); startup turns it on. */
function vmAction(calls: string[]) {
  let release: () => void = () => undefined;
  const held = new Promise<void>((r) => (release = r));
  const handle: ActionHandle = {
    id: 'a-vms',
    name: 'VMs',
    budgetMs: () => 5000,
    async perform(step: ActionStep): Promise<ActionReport> {
      const up = step.run.direction === 'startup';
      const names = up ? (step.only ?? ['vm1']) : ['vm1'];
      const results = [];
      for (const name of names) {
        await step.hooks.beforeTarget?.({ id: name, name, power: up ? 'off' : 'on' });
        calls.push(`${up ? 'start' : 'shutdown'} ${name}`);
        const r = { target: name, before: up ? 'off' : 'on', after: up ? 'on' : 'off', method: 'graceful', ms: 1, ok: true } as const;
        await step.hooks.onResult?.(r);
        results.push(r);
      }
      if (!up) await held;
      return { operation: up ? 'start' : 'shutdown', dryRun: false, ok: true, aborted: false, results, ms: 1 };
    },
  };
  return { handle, release: () => release() };
}

function phaseHandle(id: string, actions: ActionHandle[]): PhaseHandle {
  return {
    id,
    name: id,
    settings: { mode: 'parallel', stepDelayMs: 0, wait: true, onFailure: 'continue', timeoutMs: null, pointOfNoReturn: false, direction: 'both' },
    gate: null,
    gateText: null,
    actions: () => actions,
    update: () => undefined,
    finished: () => undefined,
  };
}

describe('plan setting: start again after a cancelled shutdown (Node-RED)', function () {
  this.timeout(30000);
  let userDir: string;
  beforeEach(() => {
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-restore-cancel-'));
    helper.settings({ userDir });
  });
  afterEach(async () => {
    await helper.unload();
    fs.rmSync(userDir, { recursive: true, force: true });
  });
  after(() => helper.settings({ userDir: undefined }));

  /** Load a plan saved with `over`, cancel a shutdown after vm1 went off; the reports (waits for `expected`, then a moment for more). */
  async function cancelledShutdown(over: Record<string, unknown>, expected: number): Promise<{ reports: RunReport[]; calls: string[]; warned: string[] }> {
    await helper.load([planNode], [{ id: 'plan', type: 'upsorch-plan', name: 'homelab', armed: true, allowRemote: false, stateDir: '', ...over }]);
    const node = helper.getNode('plan');
    const plan = node.plan as Plan;
    const calls: string[] = [];
    const vm = vmAction(calls);
    const chain = [phaseHandle('vms', [vm.handle]), phaseHandle('hosts', [])];
    const reports: RunReport[] = [];
    plan.subscribe((e: RunEvent) => e.type === 'run-report' && reports.push(e.report!));
    // The node loads its saved state first: a request meanwhile is held and answered once it is loaded.
    let r = plan.request({ direction: 'shutdown', dryRun: false, origin: 'local', topic: 'shutdown' }, (d) => (d === 'shutdown' ? chain : [...chain].reverse()));
    if (!r.started && r.later) r = await r.later;
    assert.equal(r.started, true);
    const deadline = Date.now() + 5000;
    while (!calls.includes('shutdown vm1')) {
      if (Date.now() > deadline) throw new Error('vm1 was not shut down');
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(plan.cancel('runtime threshold').ok, true);
    vm.release();
    while (reports.length < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 300));
    const warned = node.warn.getCalls().filter((c: any) => c.thisValue === node).map((c: any) => String(c.args[0]));
    return { reports, calls, warned };
  }

  it('a plan saved before the setting existed (no value) starts again what the cancelled shutdown turned off', async () => {
    const { reports, calls } = await cancelledShutdown({}, 2);
    assert.deepEqual(reports.map((r) => [r.direction, r.state, r.trigger.topic]), [['shutdown', 'cancelled', 'shutdown'], ['startup', 'done', 'cancel-restore']]);
    assert.deepEqual(calls, ['shutdown vm1', 'start vm1']);
  });

  it('ticked (as a new plan saves it) does the same', async () => {
    const { reports, calls } = await cancelledShutdown({ restoreOnCancel: true }, 2);
    assert.equal(reports[1]?.trigger.topic, 'cancel-restore');
    assert.deepEqual(calls, ['shutdown vm1', 'start vm1']);
  });

  it('unticked: nothing starts, and the plan warns once that vm1 stays off', async () => {
    const { reports, calls, warned } = await cancelledShutdown({ restoreOnCancel: false }, 1);
    assert.deepEqual(reports.map((r) => r.direction), ['shutdown']);
    assert.deepEqual(calls, ['shutdown vm1']);
    assert.deepEqual(warned.filter((w) => /stay off/.test(w)), ['plan "homelab": the cancelled shutdown turned off vm1; they stay off until a startup is run ("start again after a cancel" is off)']);
  });
});
