/**
 * vSphere startup after an outage, the part vcsim cannot play: vCenter is up before the ESXi host
 * of a VM is reconnected (the VM is `disconnected`, or the power-on task fails with
 * HostNotConnected). The startup waits for the host instead of failing; a shutdown does not wait.
 * A scripted session stands in for vCenter (the VM's state, the task's end).
 */
import { strict as assert } from 'node:assert';
import { VsphereDriver } from '../lib/vsphere/driver';
import { VsphereSession } from '../lib/vsphere/session';
import { runAction } from '../lib/actions/run';
import { Target } from '../lib/actions/contract';

const VM: Target = { id: 'vm-7', name: 'db-1', power: 'off' };

interface Script {
  /** The VM's runtime.connectionState at each read. */
  connection: () => string;
  /** The power-on task's fault, or null for success. */
  taskFault: () => string | null;
}

function vcenter(script: Script) {
  const calls: string[] = [];
  const session = {
    settings: { username: 'admin' },
    label: 'vcenter',
    properties: async (type: string, refs: { value: string }[]) => {
      assert.equal(type, 'VirtualMachine');
      const props = { 'runtime.powerState': 'poweredOff', 'guest.toolsRunningStatus': 'guestToolsNotRunning', 'runtime.connectionState': script.connection() };
      return new Map([[refs[0].value, { obj: { type, value: refs[0].value }, props, missing: {} }]]);
    },
    call: async (method: string) => {
      calls.push(method);
      if (method === 'PowerOnVM_Task') return { returnval: { '@type': 'Task', '#text': `task-${calls.length}` } };
      return {};
    },
    // The watcher's poll: the task has ended.
    retrieve: async (spec: string) => {
      const task = /<obj type="Task">([^<]+)<\/obj>/.exec(spec)?.[1] ?? 'task-0';
      const fault = script.taskFault();
      const info = fault ? { state: 'error', error: { fault: { '@xsi:type': fault }, localizedMessage: 'Host is not connected' } } : { state: 'success' };
      return [{ obj: { type: 'Task', value: task }, props: { info }, missing: {} }];
    },
  } as unknown as VsphereSession;
  const d = new VsphereDriver(session, { kind: 'vm', pollMs: 50 });
  // Listing is vcsim's business (test/vsphere.vcsim.test.ts): here the VM is listed as it was last seen.
  const driver = { repeatable: true, label: d.label, list: async () => [VM], act: d.act.bind(d), check: d.check.bind(d), close: () => d.close() };
  return { driver, calls };
}

/** A start of db-1: in a startup run (waits for the platform), or a manual `start` (does not). */
function start(direction?: 'startup') {
  return { selection: { names: ['db-1'] }, options: { operation: 'start' as const, timeoutMs: 10_000, force: true }, dryRun: false, concurrency: 1, connectTimeoutMs: 5000, targetTimeoutMs: 20_000, direction, signal: new AbortController().signal };
}

describe('vSphere startup: a VM whose ESXi host vCenter has not reconnected yet', function () {
  this.timeout(20_000);

  it('a disconnected VM is waited for and powered on once its host is back', async () => {
    const t0 = Date.now();
    const { driver, calls } = vcenter({ connection: () => (Date.now() - t0 < 1500 ? 'disconnected' : 'connected'), taskFault: () => null });
    const r = await runAction(driver, start('startup'));
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.results[0].method, 'graceful');
    assert.match(r.results[0].detail ?? '', /^powered on \(after waiting [0-9.]+ s for vcenter to come back\)$/);
    assert.deepEqual(calls, ['PowerOnVM_Task'], 'no power-on was sent while the host was disconnected');
  });

  it('a power-on task that fails with HostNotConnected is tried again; a manual start of a disconnected VM fails at once', async () => {
    let tasks = 0;
    const { driver, calls } = vcenter({ connection: () => 'connected', taskFault: () => (++tasks === 1 ? 'HostNotConnected' : null) });
    const r = await runAction(driver, start('startup'));
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.match(r.results[0].detail ?? '', /^powered on \(after waiting [0-9.]+ s for vcenter to come back\)$/);
    assert.deepEqual(calls, ['PowerOnVM_Task', 'PowerOnVM_Task']);

    const manual = vcenter({ connection: () => 'disconnected', taskFault: () => null });
    const t0 = Date.now();
    const m = await runAction(manual.driver, start());
    assert.ok(Date.now() - t0 < 1900, `failed after ${Date.now() - t0} ms`);
    assert.equal(m.ok, false);
    assert.equal(m.results[0].error, 'db-1: its host is not connected to vCenter (yet)');
    assert.deepEqual(manual.calls, []);
  });
});
