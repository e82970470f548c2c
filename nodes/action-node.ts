/**
 * What every action node (SSH, libvirt, vSphere, Proxmox, UPS command, NUT secondaries) shares in
 * Node-RED: being driven by a phase (through `upsorchAction`, found by the phase from its wires),
 * being used alone with a message, live status, the report on its output, and abort on close.
 * The node file supplies only its config parsing and its platform driver.
 */
import { Node, NodeAPI, NodeMessage, DoneFn, SendFn, errorText, shortStatus } from './red';
import { ActionDriver, ActOptions, Interrupted, Operation, OPERATIONS, TargetSelection, parseSelection, selectTargets, withTimeout } from '../lib/actions/contract';
import { ActionReport, ActionRequest, actionBudgetMs, runAction, summarise } from '../lib/actions/run';
import { ActionHandle, ActionStep, Direction } from '../lib/plan/types';

/** What an action node file provides. */
export interface ActionSpec {
  /** The driver for one run; closed after it. Throws with a clear message on a bad setup. */
  createDriver(): ActionDriver;
  /** The operation this action performs in a run of that direction ('none' = nothing to do). */
  operationFor(direction: Direction): Operation;
  selection: TargetSelection;
  /** Options for an operation (timeouts, force, platform extras). */
  options(op: Operation): ActOptions;
  concurrency: number;
  connectTimeoutMs: number;
  /** Bound for one target; default options.timeoutMs + 60 s. */
  targetTimeoutMs?: number;
  /** Startup: how long the platform is waited for (listing and reaching targets); default the per-target bound. */
  reachableWaitMs?: number;
  /** Expected number of targets for the phase's timeout until the action has listed them (explicit names count; else this). */
  expectedTargets?: number;
  /** Topics this node reads its own way, over the shared ones (UPS command: `command` is a direction). */
  topics?: Record<string, ManualRequest>;
}

export interface ManualRequest {
  direction: Direction | null;
  op?: Operation;
  dryRun: boolean;
}

/** The property a phase looks for on the nodes wired to its action output. */
export interface ActionNode extends Node {
  upsorchAction?: ActionHandle;
}

const MANUAL_TOPICS: Record<string, ManualRequest> = {
  shutdown: { direction: 'shutdown', dryRun: false },
  startup: { direction: 'startup', dryRun: false },
  start: { direction: null, op: 'start', dryRun: false },
  stop: { direction: null, op: 'stop', dryRun: false },
  suspend: { direction: null, op: 'suspend', dryRun: false },
  'dry-run': { direction: 'shutdown', dryRun: true },
  'dry-run-startup': { direction: 'startup', dryRun: true },
};

/**
 * Wire a node up as an action. `spec` is null when the configuration is invalid: the node then
 * shows `configError` in red and every request fails with it.
 */
export function setupActionNode(RED: NodeAPI, node: ActionNode, spec: ActionSpec | null, configError?: string): void {
  const inFlight = new Set<AbortController>();
  let closing = false;
  const label = node.name || node.type.replace(/^upsorch-/, '');

  const fail = (text: string) => node.status({ fill: 'red', shape: 'ring', text: shortStatus(text) });
  if (!spec) {
    fail(configError ?? 'invalid configuration');
    node.error(configError ?? 'invalid configuration');
  } else {
    node.status({});
  }

  const execute = async (op: Operation, dryRun: boolean, extra: Pick<ActionRequest, 'previous' | 'interrupted' | 'hooks' | 'only' | 'settle' | 'direction'> & { selection?: TargetSelection }, signal: AbortSignal): Promise<ActionReport> => {
    if (!spec) throw new Error(configError ?? 'invalid configuration');
    const ac = new AbortController();
    const onAbort = () => ac.abort(signal.reason);
    if (signal.aborted) ac.abort(signal.reason);
    else signal.addEventListener('abort', onAbort, { once: true });
    let driver: ActionDriver | undefined;
    const prefix = dryRun ? 'dry-run' : op;
    try {
      inFlight.add(ac);
      driver = spec.createDriver();
      node.status({ fill: 'blue', shape: 'dot', text: `${prefix}: connecting…` });
      const report = await runAction(driver, {
        selection: extra.selection ?? spec.selection,
        options: spec.options(op),
        dryRun,
        concurrency: spec.concurrency,
        connectTimeoutMs: spec.connectTimeoutMs,
        targetTimeoutMs: spec.targetTimeoutMs,
        reachableWaitMs: spec.reachableWaitMs,
        previous: extra.previous,
        interrupted: extra.interrupted,
        only: extra.only,
        settle: extra.settle,
        direction: extra.direction,
        signal: ac.signal,
        hooks: {
          ...extra.hooks,
          onProgress: (p) => {
            extra.hooks?.onProgress?.(p);
            if (closing) return;
            if (p.waiting) node.status({ fill: 'yellow', shape: 'ring', text: shortStatus(`${prefix}: ${p.waiting}`) });
            else node.status({ fill: 'blue', shape: 'dot', text: `${prefix}: running ${p.done}/${p.total ?? '?'}${p.failed ? `, ${p.failed} failed` : ''}` });
          },
        },
      });
      if (!closing) {
        const text = shortStatus(`${dryRun ? 'dry-run: ' : ''}${summarise(report)}`);
        node.status(report.ok ? { fill: dryRun ? 'blue' : 'green', shape: dryRun ? 'ring' : 'dot', text } : { fill: 'red', shape: 'dot', text });
      }
      return report;
    } finally {
      signal.removeEventListener('abort', onAbort);
      inFlight.delete(ac);
      await driver?.close().catch(() => undefined);
    }
  };

  // The phase step being performed: a budget asked for meanwhile fits its direction and its settle.
  let current: ActionStep | null = null;
  const budget = (targets?: number, direction?: Direction): number => {
    if (!spec) return 0;
    const run = direction === undefined || direction === current?.run.direction ? current : null;
    const dir = direction ?? current?.run.direction ?? 'shutdown';
    const op = spec.operationFor(dir);
    if (op === 'none') return 0; // nothing to do in this direction: not even a connect
    // Resolved targets when the run knows them; else explicit names, or the node's guess for a pattern.
    const n = targets !== undefined ? Math.max(targets, 1) : Math.max(spec.selection.names?.length ?? 0, spec.expectedTargets ?? 1, 1);
    return actionBudgetMs(
      {
        options: spec.options(op),
        concurrency: spec.concurrency,
        connectTimeoutMs: spec.connectTimeoutMs,
        targetTimeoutMs: spec.targetTimeoutMs,
        reachableWaitMs: spec.reachableWaitMs,
        direction: dir,
        dryRun: run?.run.dryRun,
        settle: run?.settle,
      },
      n,
    );
  };

  // What the phase knows before this action runs (pending) or when it never will (skipped).
  let shown = '';
  const showState = (state: 'pending' | 'skipped', note: string | undefined, dryRun: boolean) => {
    const text = shortStatus(`${dryRun ? 'dry-run: ' : ''}${state}${state === 'skipped' && note ? `: ${note}` : ''}`);
    if (closing || inFlight.size > 0 || text === shown) return;
    shown = text;
    node.status({ fill: 'grey', shape: state === 'pending' ? 'ring' : 'dot', text });
  };

  node.upsorchAction = {
    id: node.id,
    name: label,
    budgetMs: budget,
    showState,
    perform: async (step: ActionStep): Promise<ActionReport> => {
      if (!spec) throw new Error(configError ?? 'invalid configuration');
      const op = spec.operationFor(step.run.direction);
      shown = '';
      current = step;
      let report: ActionReport;
      try {
        report = await execute(op, step.run.dryRun, { ...step, direction: step.run.direction }, step.signal);
      } finally {
        if (current === step) current = null;
      }
      if (!closing) node.send({ topic: 'action-report', payload: report, run: step.run, phase: step.phase } as NodeMessage);
      return report;
    },
  };

  // Topic `status`: what the connection sees of the selected targets (power, and platform facts
  // such as guest tools or uptime in `info`), without acting on anything.
  const status = (msg: NodeMessage, send: SendFn, done: DoneFn) => {
    if (!spec) {
      const err = new Error(configError ?? 'invalid configuration');
      fail(err.message);
      return done(err);
    }
    let selection: TargetSelection;
    try {
      selection = msg.targets === undefined ? spec.selection : parseSelection(msg.targets);
    } catch (err) {
      fail(errorText(err));
      return done(err as Error);
    }
    let driver: ActionDriver;
    try {
      driver = spec.createDriver();
    } catch (err) {
      fail(errorText(err));
      return done(err instanceof Error ? err : new Error(errorText(err)));
    }
    const ac = new AbortController();
    inFlight.add(ac);
    const any = !!(selection.names?.length || selection.patterns?.length || selection.tags?.length || selection.allRunning);
    withTimeout('listing targets', spec.connectTimeoutMs, ac.signal, (s) => driver.list(s, 'none'))
      .then(
        (all) => {
          if (closing) return done();
          const targets = any ? selectTargets(all, selection, 'none') : all.filter((t) => !selection.exclude?.length || selectTargets([t], { ...selection, patterns: ['*'] }, 'none').length);
          send({ ...msg, topic: 'status', payload: targets });
          done();
        },
        (err) => {
          if (!closing) fail(errorText(err));
          done(err instanceof Error ? err : new Error(errorText(err)));
        },
      )
      .finally(() => {
        inFlight.delete(ac);
        void driver.close().catch(() => undefined);
      });
  };

  node.on('input', (msg: NodeMessage, send: SendFn, done: DoneFn) => {
    const topic = typeof msg.topic === 'string' ? msg.topic.trim() : '';
    const requested = typeof msg.operation === 'string' ? msg.operation : topic;
    if (requested === 'status') return status(msg, send, done);
    const manual = spec?.topics?.[requested] ?? MANUAL_TOPICS[requested] ?? ((OPERATIONS as readonly string[]).includes(requested) ? { direction: null, op: requested as Operation, dryRun: msg.dryRun === true } : null);
    if (!manual) {
      const err = new Error(`unknown request "${requested}": use topic ${Object.keys(MANUAL_TOPICS).join(', ')} (or msg.operation)`);
      fail(err.message);
      return done(err);
    }
    if (!spec) {
      const err = new Error(configError ?? 'invalid configuration');
      fail(err.message);
      return done(err);
    }
    let selection: TargetSelection | undefined;
    try {
      selection = msg.targets === undefined ? undefined : parseSelection(msg.targets);
    } catch (err) {
      fail(errorText(err));
      return done(err as Error);
    }
    const op = manual.op ?? spec.operationFor(manual.direction ?? 'shutdown');
    const dryRun = manual.dryRun || msg.dryRun === true;
    const ac = new AbortController();
    // A manual start is a startup too: it waits for a platform that is still booting.
    const direction = manual.direction ?? (op === 'start' ? 'startup' : 'shutdown');
    execute(op, dryRun, { selection, direction }, ac.signal).then(
      (report) => {
        if (closing) return done();
        send({ ...msg, topic: 'action-report', payload: report });
        done(report.ok ? undefined : new Error(`${label}: ${summarise(report)}`));
      },
      (err) => {
        if (!closing) fail(errorText(err));
        done(err instanceof Error ? err : new Error(errorText(err)));
      },
    );
  });

  node.on('close', (_removed: boolean, done: () => void) => {
    closing = true;
    for (const ac of inFlight) ac.abort(new Interrupted());
    delete node.upsorchAction;
    // Drivers end their sockets on abort; give them a moment, well inside Node-RED's 15 s.
    const t0 = Date.now();
    const wait = () => (inFlight.size === 0 || Date.now() - t0 > 5000 ? done() : setTimeout(wait, 20));
    wait();
  });
}

/** Parse a comma/newline separated list from the editor. */
export function listField(v: unknown): string[] {
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string').map((x) => x.trim()).filter(Boolean);
  if (typeof v !== 'string') return [];
  return v.split(/[,\n]/).map((x) => x.trim()).filter(Boolean);
}
