/**
 * Plan and phase nodes in the real Node-RED runtime, without actions: what the editor's settings
 * and the input commands do as a user sees it (status, warnings, errors, what leaves the done
 * output). The plan's state file goes to a temporary Node-RED user dir. Runs with real SSH / libvirt
 * actions are tested elsewhere.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Collector, deviceConfig, errorsOf, helper, ourNodes, send, sleep, statuses, waitForStatus, warningsOf } from './util/red';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const planNode = require('../nodes/upsorch-plan');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const phaseNode = require('../nodes/upsorch-phase');
const NODES = [planNode, phaseNode];

/** The plan config node as the editor saves it. */
function plan(id: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { id, type: 'upsorch-plan', name: 'homelab', armed: true, allowRemote: false, stateDir: '', ...over };
}

/** A phase as the editor saves it (defaults of the dialog); `done` lists what its done output is wired to. */
function phase(id: string, name: string, done: string[], over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id, type: 'upsorch-phase', name, plan: 'plan', mode: 'parallel', stepDelay: 0, wait: true, onFailure: 'continue', timeout: '',
    pointOfNoReturn: false, direction: 'both', gate: false, gateUps: '', gateRuntime: 10, wires: [[], done], ...over,
  };
}

/** Two phases in a chain: "VMs" → "hosts"; each done output also goes to a helper `<id>-done`. */
function chain(planOver: Record<string, unknown> = {}): Record<string, unknown>[] {
  return [
    plan('plan', planOver),
    phase('p1', 'VMs', ['p2', 'p1-done']),
    phase('p2', 'hosts', ['p2-done']),
    { id: 'p1-done', type: 'helper' },
    { id: 'p2-done', type: 'helper' },
  ];
}

async function waitUntil(what: string, pred: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting until ${what}`);
    await sleep(50);
  }
}

/** Ask the plan for its status through a phase; resolves with the `plan-status` payload. */
async function planStatus(phaseId: string, out: Collector): Promise<any> {
  const from = out.received.length;
  send(phaseId, { topic: 'status' });
  const got = await out.waitFor((m) => m.topic === 'plan-status', 5000, from, 'plan-status');
  return got.msg.payload;
}

describe('plan and phase nodes in Node-RED (no actions)', function () {
  this.timeout(30000);
  let userDir: string;

  beforeEach(() => {
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-phase-userdir-'));
    helper.settings({ userDir });
  });
  afterEach(async () => {
    await helper.unload();
    fs.rmSync(userDir, { recursive: true, force: true });
  });
  after(() => {
    helper.settings({ userDir: undefined });
  });

  it('a phase without a plan shows a red status and reports the error; its input fails with it', async () => {
    await helper.load(NODES, [phase('p1', 'VMs', ['p1-done'], { plan: '' }), { id: 'p1-done', type: 'helper' }]);
    const st = await waitForStatus('p1', (s) => s.fill === 'red');
    assert.equal(st.text, 'plan: no plan selected');
    assert.ok(errorsOf('p1').includes('plan: no plan selected'), `errors: ${errorsOf('p1').join(' | ')}`);
    send('p1', { topic: 'dry-run' });
    await waitUntil('the input failed', () => errorsOf('p1').length >= 2);
    assert.equal(errorsOf('p1')[1], 'plan: no plan selected');
  });

  it('a phase whose gate has no UPS device is invalid', async () => {
    await helper.load(NODES, [plan('plan'), phase('p1', 'VMs', [], { gate: true, gateUps: '' })]);
    const st = await waitForStatus('p1', (s) => s.fill === 'red');
    assert.equal(st.text, 'gateUps: the gate needs a UPS device');
  });

  it('dry-run through two chained phases without actions: phase-done from the first, the run report from the last', async () => {
    await helper.load(NODES, chain());
    const first = new Collector('p1-done');
    const last = new Collector('p2-done');
    const reason = { vector: 'runtime', ups: 'rack', message: 'UPS rack runtime 4 min ≤ 5 min' };
    // Sent to the last phase: a run always starts at the first phase of the chain.
    send('p2', { topic: 'dry-run', payload: reason });

    const report = (await last.waitFor((m) => m.topic === 'run-report', 10000, 0, 'the run report')).msg;
    assert.equal(report.run.dryRun, true);
    assert.equal(report.run.direction, 'shutdown');
    assert.equal(report.run.planName, 'homelab');
    const r = report.payload;
    assert.equal(r.state, 'done');
    assert.equal(r.dryRun, true);
    assert.deepEqual(r.trigger, { topic: 'dry-run', reason });
    assert.deepEqual(r.phases.map((p: any) => [p.name, p.state]), [['VMs', 'done'], ['hosts', 'done']]);
    assert.deepEqual(r.totals, { phases: 2, targets: 0, ok: 0, failed: 0, graceful: 0, forced: 0, already: 0, skipped: 0, dryRun: 0 });
    assert.ok(r.timeline.some((e: any) => e.event === 'run-started' && /VMs → hosts/.test(e.text)), 'the timeline names the chain');
    assert.equal(typeof r.ms, 'number');

    // The first phase handed on with its record; the last sent only the report.
    const done = first.messages.filter((m) => m.topic === 'phase-done');
    assert.equal(done.length, 1);
    assert.equal(done[0].payload.name, 'VMs');
    assert.equal(done[0].payload.state, 'done');
    assert.equal(done[0].run.id, report.run.id);
    assert.deepEqual(last.messages.map((m) => m.topic), ['run-report']);

    // Status under each phase: pending, then done, marked as a dry-run.
    await waitForStatus('p1', (s) => s.text === 'dry-run: done 0/0' && s.fill === 'blue' && s.shape === 'ring');
    await waitForStatus('p2', (s) => s.text === 'dry-run: done 0/0');
    assert.ok(statuses('p1').some((s) => s.text === 'dry-run: pending'), `p1 statuses: ${statuses('p1').map((s) => s.text).join(', ')}`);

    // The record is on disk under <userDir>/ups-orchestrator.
    const file = path.join(userDir, 'ups-orchestrator', 'plan-plan.json');
    await waitUntil('the state file says done', () => fs.existsSync(file) && JSON.parse(fs.readFileSync(file, 'utf8')).run?.state === 'done');
    assert.deepEqual(errorsOf('p1'), []);
    assert.deepEqual(errorsOf('p2'), []);
  });

  it('a command in msg.payload when the topic is empty', async () => {
    await helper.load(NODES, chain());
    const last = new Collector('p2-done');
    send('p1', { payload: 'dry-run' });
    const report = (await last.waitFor((m) => m.topic === 'run-report', 10000)).msg.payload;
    assert.equal(report.trigger.topic, 'dry-run');
    assert.equal(report.trigger.reason, undefined);
  });

  it('status answers on the done output with the plan status', async () => {
    await helper.load(NODES, chain());
    const out = new Collector('p1-done');
    const s = await planStatus('p1', out);
    assert.equal(s.state, 'armed');
    assert.equal(s.armed, true);
    assert.equal(s.allowRemote, false);
    assert.equal(s.run, null);
    assert.equal(s.lastResult, null);

    // After a dry-run: its result.
    const last = new Collector('p2-done');
    send('p1', { topic: 'dry-run' });
    await last.waitFor((m) => m.topic === 'run-report', 10000);
    const after = await planStatus('p1', out);
    assert.equal(after.state, 'done');
    assert.equal(after.lastResult.dryRun, true);
    assert.equal(after.lastResult.state, 'done');
    assert.equal(after.lastResult.totals.phases, 2);
    // The answer also reached the next phase along the done wire: ignored there, not an error.
    await sleep(200);
    assert.deepEqual(errorsOf('p2'), []);
  });

  it('disarm, then shutdown: warned "disarmed", nothing runs; a dry-run still does', async () => {
    await helper.load(NODES, chain());
    const first = new Collector('p1-done');
    const last = new Collector('p2-done');
    send('p1', { topic: 'disarm' });
    assert.equal((await planStatus('p1', first)).armed, false);

    send('p1', { topic: 'shutdown' });
    await waitUntil('a warning', () => warningsOf('p1').length > 0);
    assert.deepEqual(warningsOf('p1'), ['shutdown: the plan is disarmed']);
    await sleep(500);
    assert.deepEqual(first.messages.map((m) => m.topic), ['plan-status'], 'no phase ran');
    assert.deepEqual(last.messages, []);
    assert.equal((await planStatus('p1', first)).run, null);
    assert.ok(!statuses('p1').some((s) => /pending|running|done/.test(s.text ?? '')), 'no run status shown');

    send('p1', { topic: 'dry-run' });
    await last.waitFor((m) => m.topic === 'run-report', 10000, 0, 'the dry-run report');

    // Armed again: the switch is back on.
    send('p1', { topic: 'arm' });
    assert.equal((await planStatus('p1', first)).armed, true);
  });

  it('the armed switch survives a redeploy; changing "Armed" in the dialog wins over it', async () => {
    /** Deploy, and wait until the plan has read its state file (each file here holds a dry-run). */
    const deploy = async (planOver: Record<string, unknown> = {}) => {
      await helper.load(NODES, chain(planOver));
      await waitUntil('the plan read its state file', () => helper.getNode('plan').plan.lastRun() !== null);
      return { first: new Collector('p1-done'), last: new Collector('p2-done') };
    };
    const dryRun = async (last: Collector) => {
      send('p1', { topic: 'dry-run' });
      await last.waitFor((m) => m.topic === 'run-report', 10000);
    };

    await helper.load(NODES, chain());
    const last = new Collector('p2-done');
    send('p1', { topic: 'disarm' });
    await dryRun(last); // allowed while disarmed; the state file now holds both
    await helper.unload();

    // Same settings redeployed (or Node-RED restarted): still disarmed.
    let out = await deploy();
    assert.equal((await planStatus('p1', out.first)).armed, false);
    await helper.unload();

    // "Armed" changed to off in the dialog and deployed, then back on: the dialog's setting applies.
    out = await deploy({ armed: false });
    assert.equal((await planStatus('p1', out.first)).armed, false);
    await dryRun(out.last);
    await helper.unload();
    out = await deploy({ armed: true });
    assert.equal((await planStatus('p1', out.first)).armed, true, 'ticking "Armed" in the dialog arms the plan');
  });

  it('an unknown command fails the message with a clear error', async () => {
    await helper.load(NODES, chain());
    send('p1', { topic: 'reboot' });
    await waitUntil('an error', () => errorsOf('p1').length > 0);
    assert.equal(errorsOf('p1')[0], 'unknown command "reboot": use topic shutdown, startup, restore, dry-run, dry-run-startup, cancel, arm, disarm, status');
  });

  it('a phase whose done output goes to two phases: the run is refused with the reason', async () => {
    await helper.load(NODES, [
      plan('plan'),
      phase('p1', 'VMs', ['p2', 'p3']),
      phase('p2', 'NAS', ['p2-done']),
      phase('p3', 'hosts', ['p3-done']),
      { id: 'p2-done', type: 'helper' },
      { id: 'p3-done', type: 'helper' },
    ]);
    const a = new Collector('p2-done');
    const b = new Collector('p3-done');
    send('p1', { topic: 'dry-run' });
    await waitUntil('a warning', () => warningsOf('p1').length > 0);
    assert.deepEqual(warningsOf('p1'), ['dry-run: phase "VMs" hands on to 2 phases; a plan is one chain (wire its done output to one phase)']);
    await sleep(300);
    assert.deepEqual([...a.messages, ...b.messages], [], 'nothing ran');
  });

  it('cancel without a run is refused with a warning', async () => {
    await helper.load(NODES, chain());
    send('p1', { topic: 'cancel' });
    await waitUntil('a warning', () => warningsOf('p1').length > 0);
    assert.deepEqual(warningsOf('p1'), ['cancel: no run in progress']);
  });

  describe('the gate (runtime on a simulated UPS ≤ 5 min)', () => {
    /** "VMs" gated on the simulated UPS (about 66 min of runtime at 25 % load), then "hosts". */
    async function gated() {
      await helper.load([...ourNodes, ...NODES], [
        deviceConfig('dev', { source: 'sim', name: 'rack' }),
        plan('plan'),
        phase('p1', 'VMs', ['p2', 'p1-done'], { gate: true, gateUps: 'dev', gateRuntime: 5 }),
        phase('p2', 'hosts', ['p2-done']),
        { id: 'p1-done', type: 'helper' },
        { id: 'p2-done', type: 'helper' },
      ]);
      const out = { first: new Collector('p1-done'), last: new Collector('p2-done') };
      const simulate = (command: string) => helper.getNode('dev').simulate(command, null);
      return { out, simulate };
    }
    const report = async (last: Collector) => (await last.waitFor((m) => m.topic === 'run-report', 10000, 0, 'the run report')).msg.payload;

    it('a real run waits at the gate (yellow); cancel skips the phase and the next, and the phase still hands on', async () => {
      const { out, simulate } = await gated();
      await simulate('power-lost');
      send('p1', { topic: 'shutdown' });
      const st = await waitForStatus('p1', (x) => x.fill === 'yellow');
      assert.match(st.text ?? '', /^waiting until runtime on .+ ≤ 5 min$/);
      await sleep(300);
      assert.deepEqual(out.first.messages, [], 'nothing handed on while waiting');
      send('p1', { topic: 'cancel' });
      const r = await report(out.last);
      assert.equal(r.state, 'cancelled');
      assert.deepEqual(r.phases.map((p: any) => [p.name, p.state]), [['VMs', 'skipped'], ['hosts', 'skipped']]);
      const handed = await out.first.waitFor((m) => m.topic === 'phase-done', 2000, 0, 'phase-done from the skipped phase');
      assert.equal(handed.msg.payload.state, 'skipped');
      await waitForStatus('p1', (x) => x.fill === 'grey' && /^skipped: cancelled by message to VMs while waiting/.test(x.text ?? ''));
    });

    it('lost readings open the gate at once (failsafe)', async () => {
      const { out, simulate } = await gated();
      await simulate('power-lost');
      send('p1', { topic: 'shutdown' });
      await waitForStatus('p1', (x) => x.fill === 'yellow');
      await simulate('comm-lost');
      const r = await report(out.last);
      assert.equal(r.state, 'done');
      assert.match(r.phases[0].note, /^gate opened: readings of .+ are lost: starting now \(failsafe\)$/);
    });

    it('mains back after being on battery skips the gated phase; the next phase still runs', async () => {
      const { out, simulate } = await gated();
      await simulate('power-lost');
      send('p1', { topic: 'shutdown' });
      await waitForStatus('p1', (x) => x.fill === 'yellow');
      await simulate('power-restored');
      const r = await report(out.last);
      assert.deepEqual(r.phases.map((p: any) => [p.name, p.state]), [['VMs', 'skipped'], ['hosts', 'done']]);
      assert.match(r.phases[0].note, /^gate failed: mains is back on /);
      assert.equal(r.state, 'done');
    });

    it('on mains the gate does not open: the gated phase is skipped (it would otherwise wait forever)', async () => {
      const { out } = await gated();
      send('p1', { topic: 'shutdown' });
      const r = await report(out.last);
      assert.deepEqual(r.phases.map((p: any) => [p.name, p.state]), [['VMs', 'skipped'], ['hosts', 'done']]);
      assert.match(r.phases[0].note, /^gate failed: .+ is on mains: the gate opens only on battery$/);
    });

    it('a dry-run does not wait at the gate; it notes what it would wait for', async () => {
      const { out } = await gated();
      send('p1', { topic: 'dry-run' });
      const r = await report(out.last);
      assert.deepEqual(r.phases.map((p: any) => p.state), ['done', 'done']);
      assert.match(r.phases[0].note, /^gate: would wait until runtime on .+ ≤ 5 min$/);
    });
  });

  describe('the example flow "04 Plan and phases"', () => {
    const file = path.join(__dirname, '..', 'examples', '04 Plan and phases.json');
    /** The example as shipped, its inject and debug nodes replaced by helpers; the simulated UPS faster. */
    function example(simSpeed?: number): { flow: any[]; id: (name: string) => string } {
      const flow: any[] = JSON.parse(fs.readFileSync(file, 'utf8')).map((n: any) => {
        if (n.type === 'inject' || n.type === 'debug') return { id: n.id, z: n.z, type: 'helper', name: n.name, wires: n.wires ?? [] };
        if (n.type === 'upsorch-device' && simSpeed) return { ...n, simSpeed };
        return n;
      });
      const id = (name: string) => {
        const hits = flow.filter((n) => n.name === name);
        assert.equal(hits.length, 1, `one node named "${name}" in the example`);
        return hits[0].id;
      };
      return { flow, id };
    }

    it('dry-run walks VMs → hosts → UPS off, noting the gate; dry-run-startup walks hosts → VMs', async () => {
      const { flow, id } = example();
      await helper.load([...ourNodes, ...NODES], flow);
      const report = new Collector(id('run report'));
      send(id('VMs'), { topic: 'dry-run' });
      let r = (await report.waitFor((m) => m.topic === 'run-report', 10000)).msg.payload;
      assert.deepEqual(r.phases.map((p: any) => [p.name, p.state]), [['VMs', 'done'], ['hosts', 'done'], ['UPS off', 'done']]);
      assert.match(r.phases[2].note, /^gate: would wait until runtime on .+ ≤ 5 min$/);
      await waitForStatus(id('UPS off'), (st) => st.text === 'dry-run: done 0/0');

      // Startup mirrors the chain without the shutdown-only phase; its report leaves the phase run last.
      const vmsDone = new Collector(id('VMs done / plan status'));
      send(id('VMs'), { topic: 'dry-run-startup' });
      r = (await vmsDone.waitFor((m) => m.topic === 'run-report', 10000)).msg.payload;
      assert.equal(r.direction, 'startup');
      assert.deepEqual(r.phases.map((p: any) => p.name), ['hosts', 'VMs']);
    });

    it('a simulated outage: the threshold starts the shutdown, UPS off waits at its gate until runtime ≤ 5 min', async function () {
      this.timeout(90000);
      // 30× real time, 80 % load, charge 55 %: about 11 min of runtime. The threshold (≤ 10 min, held
      // for 5 s = 2.5 simulated min) decides after a few seconds, the gate opens some seconds later.
      const { flow, id } = example(30);
      await helper.load([...ourNodes, ...NODES], flow);
      const report = new Collector(id('run report'));
      const upsIn = flow.find((n) => n.type === 'upsorch-ups-in').id;
      send(upsIn, { topic: 'set-load', payload: 80 });
      send(upsIn, { topic: 'set-charge', payload: 55 });
      send(upsIn, { topic: 'power-lost', payload: Date.now() });
      const waiting = await waitForStatus(id('UPS off'), (st) => st.fill === 'yellow', 60000);
      assert.match(waiting.text ?? '', /^waiting until runtime on .+ ≤ 5 min$/);
      assert.equal(statuses(id('VMs')).pop()?.text, 'done 0/0');
      const r = (await report.waitFor((m) => m.topic === 'run-report', 60000)).msg.payload;
      assert.equal(r.dryRun, false);
      assert.equal(r.state, 'done');
      assert.equal(r.trigger.topic, 'shutdown');
      assert.equal(r.trigger.reason.decision, 'shutdown');
      assert.deepEqual(r.phases.map((p: any) => [p.name, p.state]), [['VMs', 'done'], ['hosts', 'done'], ['UPS off', 'done']]);
      assert.match(r.phases[2].note, /^gate opened: runtime on .+ is \d+ min ≤ 5 min$/);
      assert.ok(r.timeline.some((e: any) => e.event === 'point-of-no-return'), 'UPS off is the point of no return');
    });

    it('cancel while UPS off waits at its gate: the phase is skipped, the run ends cancelled', async function () {
      this.timeout(90000);
      const { flow, id } = example(30);
      await helper.load([...ourNodes, ...NODES], flow);
      const report = new Collector(id('run report'));
      const upsIn = flow.find((n) => n.type === 'upsorch-ups-in').id;
      send(upsIn, { topic: 'set-load', payload: 80 });
      send(upsIn, { topic: 'set-charge', payload: 55 });
      send(upsIn, { topic: 'power-lost', payload: Date.now() });
      await waitForStatus(id('UPS off'), (st) => st.fill === 'yellow', 60000);
      send(id('VMs'), { topic: 'cancel' });
      const r = (await report.waitFor((m) => m.topic === 'run-report', 10000)).msg.payload;
      assert.equal(r.state, 'cancelled');
      assert.deepEqual(r.phases.map((p: any) => [p.name, p.state]), [['VMs', 'done'], ['hosts', 'done'], ['UPS off', 'skipped']]);
      assert.match(r.phases[2].note, /^cancelled by message to VMs while waiting$/);
      await waitForStatus(id('UPS off'), (st) => st.fill === 'grey' && /^skipped: cancelled/.test(st.text ?? ''));
      assert.deepEqual(warningsOf(id('VMs')), []);
    });
  });
});
