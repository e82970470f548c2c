/**
 * Crisis mode in the real Node-RED runtime: a plan (plan + phase nodes) runs a dry-run whose SSH
 * action cannot reach its host (a closed loopback port), and the notify node following that plan
 * reports every step at once — run started, phase started, the failed target, phase done (failed),
 * next phase, run report — to the crisis channel, and the milestones (start, failures, report) to
 * the main channel. Also: the last phase's
 * done output wired straight to a notify node gives the run report.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { helper, notifyChannelNode, notifyNode, send, sleep, sshActionNode, sshHostNode } from './util/red';
import { HttpRecorder } from './peers/notify-services';
import { channel, notify, statusesOf } from './util/notify-flow';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const planNode = require('../nodes/upsorch-plan');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const phaseNode = require('../nodes/upsorch-phase');
const NODES = [planNode, phaseNode, sshHostNode, sshActionNode, notifyChannelNode, notifyNode];

function phase(id: string, name: string, actions: string[], done: string[]): Record<string, unknown> {
  return {
    id, type: 'upsorch-phase', name, plan: 'plan', mode: 'parallel', stepDelay: 0, wait: true, onFailure: 'continue', timeout: '',
    pointOfNoReturn: false, direction: 'both', gate: false, gateUps: '', gateRuntime: 10, wires: [actions, done],
  };
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe('notify crisis mode with a plan run (Node-RED runtime)', function () {
  this.timeout(30000);
  let userDir: string;
  let http: HttpRecorder;

  beforeEach(async () => {
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-notify-plan-'));
    helper.settings({ userDir });
    http = await HttpRecorder.start();
  });
  afterEach(async () => {
    await helper.unload();
    await http.stop();
    helper.settings({});
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  async function loadPlan(notifyOver: Record<string, unknown>, extra: Record<string, unknown>[] = [], planOver: Record<string, unknown> = {}) {
    const port = await closedPort();
    await helper.load(NODES, [
      { id: 'plan', type: 'upsorch-plan', name: 'homelab', armed: true, allowRemote: false, stateDir: '', ...planOver },
      phase('p1', 'VMs', ['a1'], ['p2']),
      phase('p2', 'hosts', [], extra.length ? ['n2'] : []),
      { id: 'h1', type: 'upsorch-ssh-host', name: 'nas', host: '127.0.0.1', port, username: 'root', fingerprint: 'SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s', timeout: 3 },
      { id: 'a1', type: 'upsorch-ssh', name: 'stop NAS', host: 'h1', preset: 'linux', timeout: 5, waitDown: false, waitDownTimeout: 20, startup: 'none', wires: [[]] },
      channel('main', { url: `${http.url}/main`, rateLimit: 0 }),
      channel('phone', { url: `${http.url}/phone`, rateLimit: 0 }),
      notify('n', 'main', notifyOver),
      ...extra,
    ], { h1: { password: 'not-used' } });
  }

  it('every step of the run goes to the crisis channel at once; the milestones to the main channel', async () => {
    await loadPlan({ crisisChannel: 'phone', plan: 'plan' });
    await sleep(300);
    send('p1', { topic: 'dry-run' });
    const deadline = Date.now() + 20000;
    while (!http.requests.some((r) => r.path === '/phone' && r.json.event === 'run-report') && Date.now() < deadline) await sleep(100);
    await sleep(500);
    const phone = http.requests.filter((r) => r.path === '/phone').map((r) => `${r.json.event}: ${r.json.title}`);
    const main = http.requests.filter((r) => r.path === '/main').map((r) => `${r.json.event}: ${r.json.title}`);
    assert.deepEqual(phone, [
      'run-started: Plan homelab: shutdown started (dry run)',
      'phase-started: Plan homelab: phase VMs started',
      'target-failed: Plan homelab: nas failed',
      'phase-done: Plan homelab: phase VMs failed',
      'phase-started: Plan homelab: phase hosts started',
      'phase-done: Plan homelab: phase hosts done',
      'run-report: Plan homelab: shutdown failed (dry run)',
    ]);
    assert.deepEqual(main, [
      'run-started: Plan homelab: shutdown started (dry run)',
      'target-failed: Plan homelab: nas failed',
      'phase-done: Plan homelab: phase VMs failed',
      'run-report: Plan homelab: shutdown failed (dry run)',
    ]);
    const report = http.requests.find((r) => r.path === '/main' && r.json.event === 'run-report')!.json;
    assert.equal(report.severity, 'critical');
    assert.match(report.message, /^The shutdown run \(dry run\) of plan homelab failed after \d+ (s|min)/);
    assert.match(report.message, /1 target, 0 ok, 1 failed/);
    assert.match(report.message, /Failed: nas: cannot connect to 127\.0\.0\.1:\d+: connection refused/);
    const target = http.requests.find((r) => r.path === '/phone' && r.json.event === 'target-failed')!.json;
    assert.equal(target.target, 'nas');
    assert.match(target.message, /^nas failed in phase VMs of the shutdown \(dry run\): cannot connect to 127\.0\.0\.1:\d+: connection refused/);
    const failed = http.requests.find((r) => r.path === '/main' && r.json.event === 'phase-done')!.json;
    assert.equal(failed.severity, 'warning');
    assert.equal(failed.phase, 'VMs');
    assert.equal(failed.plan, 'homelab');
    assert.deepEqual(failed.run.direction, 'shutdown');
    assert.equal(failed.run.dryRun, true);
    assert.match(failed.message, /^Phase VMs: failed/);
  });

  it('a shutdown the disarmed plan refuses is reported at once, as critical, on both channels', async () => {
    await loadPlan({ crisisChannel: 'phone', plan: 'plan' }, [], { armed: false });
    await sleep(300);
    send('p1', { topic: 'shutdown' });
    await http.waitForCount(2, 10000);
    await sleep(300);
    assert.deepEqual(http.requests.map((r) => `${r.path} ${r.json.event}: ${r.json.title}`), [
      '/main run-refused: Plan homelab: shutdown refused',
      '/phone run-refused: Plan homelab: shutdown refused',
    ]);
    const [r] = http.requests;
    assert.equal(r.json.severity, 'critical');
    assert.match(r.json.message, /^Plan homelab: The shutdown was not started: the plan is disarmed\. Nothing is being shut down\. \(\d{4}-/);
    // A refusal is not a run: nothing else follows, and the node is not "run in progress".
    const st = statusesOf('n').pop();
    assert.doesNotMatch(String(st?.text), /run in progress/);
  });

  it('crisis mode off: only the milestones', async () => {
    await loadPlan({ plan: 'plan', crisis: false });
    await sleep(300);
    send('p1', { topic: 'dry-run' });
    const deadline = Date.now() + 20000;
    while (!http.requests.some((r) => r.json.event === 'run-report') && Date.now() < deadline) await sleep(100);
    await sleep(300);
    assert.deepEqual(http.requests.map((r) => r.json.event + (r.json.phase ? ' ' + r.json.phase : '')), ['run-started', 'target-failed VMs', 'phase-done VMs', 'run-report']);
  });

  it('the last phase\'s done output wired to a notify node: the run report arrives as one message', async () => {
    await loadPlan({ plan: '' }, [notify('n2', 'phone')]);
    await sleep(300);
    send('p1', { topic: 'dry-run' });
    await http.waitForCount(1, 20000);
    await sleep(300);
    const [r] = http.requests;
    assert.equal(r.path, '/phone');
    assert.equal(r.json.event, 'run-report');
    assert.equal(r.json.title, 'Plan homelab: shutdown failed (dry run)');
    assert.match(r.json.message, /Failed: nas: cannot connect to 127\.0\.0\.1:\d+: connection refused/);
  });
});
