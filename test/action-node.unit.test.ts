/**
 * The shared action-node wiring (nodes/action-node.ts) without the Node-RED runtime: a driver that
 * cannot even be created must fail the message (done(err), red status), never throw out of the
 * input handler, for a `status` request as for a run.
 */
import { strict as assert } from 'node:assert';
import { EventEmitter } from 'node:events';
import { setupActionNode, ActionNode, ActionSpec } from '../nodes/action-node';
import { NodeAPI, NodeStatus } from '../nodes/red';

function fakeNode(): ActionNode & { statuses: NodeStatus[]; emitter: EventEmitter } {
  const emitter = new EventEmitter();
  const statuses: NodeStatus[] = [];
  return {
    id: 'a1',
    type: 'upsorch-test',
    credentials: {},
    on: (ev: string, cb: (...args: any[]) => void) => emitter.on(ev, cb),
    send: () => undefined,
    status: (s: NodeStatus) => statuses.push(s),
    log: () => undefined,
    warn: () => undefined,
    error: () => undefined,
    statuses,
    emitter,
  } as unknown as ActionNode & { statuses: NodeStatus[]; emitter: EventEmitter };
}

const spec: ActionSpec = {
  createDriver: () => {
    throw new Error('no SSH host configured');
  },
  operationFor: (d) => (d === 'shutdown' ? 'shutdown' : 'start'),
  selection: { names: ['vm1'] },
  options: (op) => ({ operation: op, timeoutMs: 1000, force: true }),
  concurrency: 1,
  connectTimeoutMs: 1000,
};

function input(node: ReturnType<typeof fakeNode>, msg: Record<string, unknown>): Promise<Error | undefined> {
  return new Promise((resolve) => node.emitter.emit('input', msg, () => undefined, (err?: Error) => resolve(err)));
}

describe('action node wiring (nodes/action-node.ts)', () => {
  it('a driver that cannot be created fails a status request with its reason, in red', async () => {
    const node = fakeNode();
    setupActionNode({} as NodeAPI, node, spec);
    const err = await input(node, { topic: 'status' });
    assert.equal(err?.message, 'no SSH host configured');
    assert.equal(node.statuses.at(-1)?.fill, 'red');
  });

  it('…and a run asked for by message, and one driven by a phase', async () => {
    const node = fakeNode();
    setupActionNode({} as NodeAPI, node, spec);
    const err = await input(node, { topic: 'shutdown' });
    assert.equal(err?.message, 'no SSH host configured');
    await assert.rejects(
      node.upsorchAction!.perform({ run: { id: 'r', plan: 'p', planName: 'p', direction: 'shutdown', dryRun: false }, phase: { id: 'ph', name: 'ph' }, previous: [], interrupted: [], hooks: {}, signal: new AbortController().signal }),
      /no SSH host configured/,
    );
    // Nothing left in flight: closing finishes at once.
    const t0 = Date.now();
    await new Promise<void>((r) => node.emitter.emit('close', false, r));
    assert.ok(Date.now() - t0 < 1000, 'close did not wait for a run that never started');
  });
});
