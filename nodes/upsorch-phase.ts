/**
 * "Phase": one step of a plan. Output 1 goes to its action nodes (the phase drives them and waits
 * for each to report); output 2, "done", goes to the next phase (that wiring is the plan's order)
 * and carries the phase record, and at the end of a run the run report. Any phase of a plan takes
 * the run commands: shutdown, startup / restore, dry-run, cancel, arm, disarm.
 */
import { z } from 'zod';
import { NodeAPI, Node, NodeMessage, PlanNode, UpsDeviceNode, errorText, shortStatus } from './red';
import { ActionNode } from './action-node';
import { ActionHandle, Gate, PhaseHandle, PhaseRecord, PhaseSettings, RunEvent, RunRef, RunReport } from '../lib/plan/types';
import { ChainNode } from '../lib/plan/chain';
import { RunRequest } from '../lib/plan/runner';
import { numberField } from '../lib/ups/config';
import { UpsState } from '../lib/ups/state';

const bool = (dflt: boolean) => z.preprocess((v) => (v === undefined || v === '' ? dflt : v === true || v === 'true'), z.boolean());

const PhaseConfig = z
  .object({
    plan: z.string({ error: 'no plan selected' }).min(1, 'no plan selected'),
    mode: z.enum(['parallel', 'sequential'], { error: 'mode must be parallel or sequential' }).default('parallel'),
    stepDelay: numberField(0, 3600, 0, 'step delay (s)'),
    wait: bool(true),
    onFailure: z.enum(['continue', 'stop'], { error: 'on failure must be continue or stop' }).default('continue'),
    timeout: z.preprocess((v) => (v === '' || v === undefined || v === null ? null : Number(v)), z.number({ error: 'timeout (s) must be a number' }).min(1, 'timeout must be at least 1 s').max(86400, 'timeout must be at most 86400 s').nullable()),
    pointOfNoReturn: bool(false),
    direction: z.enum(['both', 'shutdown', 'startup'], { error: 'direction must be both, shutdown or startup' }).default('both'),
    gate: bool(false),
    gateUps: z.string().optional().default(''),
    gateRuntime: numberField(0, 1440, 10, 'gate runtime (min)'),
  })
  .superRefine((c, ctx) => {
    if (c.gate && !c.gateUps) ctx.addIssue({ code: 'custom', path: ['gateUps'], message: 'the gate needs a UPS device' });
  });

/** Commands a phase accepts, and what they ask of the plan. */
const COMMANDS: Record<string, { direction: 'shutdown' | 'startup'; dryRun: boolean } | 'cancel' | 'arm' | 'disarm' | 'status'> = {
  shutdown: { direction: 'shutdown', dryRun: false },
  startup: { direction: 'startup', dryRun: false },
  restore: { direction: 'startup', dryRun: false },
  'dry-run': { direction: 'shutdown', dryRun: true },
  'dry-run-startup': { direction: 'startup', dryRun: true },
  cancel: 'cancel',
  arm: 'arm',
  disarm: 'disarm',
  status: 'status',
};

export = function register(RED: NodeAPI): void {
  function PhaseNode(this: Node, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    const node = this;
    const name = (typeof raw.name === 'string' && raw.name) || 'phase';
    const parsed = PhaseConfig.safeParse(raw);
    const planNode = parsed.success ? (RED.nodes.getNode(parsed.data.plan) as PlanNode | null) : null;
    let configError: string | undefined;
    if (!parsed.success) configError = parsed.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ` : '') + i.message).join('; ');
    else if (!planNode) configError = 'the selected plan does not exist (deleted or not deployed)';
    else if (planNode.configError) configError = planNode.configError;
    const gateDevice = parsed.success && parsed.data.gate ? (RED.nodes.getNode(parsed.data.gateUps) as UpsDeviceNode | null) : null;
    if (!configError && parsed.success && parsed.data.gate && (!gateDevice || gateDevice.configError)) configError = gateDevice?.configError ?? 'the gate\'s UPS device does not exist';
    if (configError) {
      node.status({ fill: 'red', shape: 'ring', text: shortStatus(configError) });
      node.error(configError);
    }
    const cfg = parsed.success ? parsed.data : null;
    let closing = false;

    const settings: PhaseSettings | null = cfg
      ? {
          mode: cfg.mode,
          stepDelayMs: cfg.stepDelay * 1000,
          wait: cfg.wait,
          onFailure: cfg.onFailure,
          timeoutMs: cfg.timeout === null ? null : cfg.timeout * 1000,
          pointOfNoReturn: cfg.pointOfNoReturn,
          direction: cfg.direction,
        }
      : null;

    /** The action nodes wired to output 1 that implement the action contract. */
    const actions = (): ActionHandle[] => {
      const ids = node.wires?.[0] ?? [];
      const out: ActionHandle[] = [];
      for (const id of ids) {
        const a = (RED.nodes.getNode(id) as ActionNode | null)?.upsorchAction;
        if (a) out.push(a);
      }
      return out;
    };

    const gate: Gate | null = cfg && cfg.gate && gateDevice ? runtimeGate(gateDevice, cfg.gateRuntime) : null;

    /** The phase's action nodes show pending until they run, and skipped (with why) if they never do. */
    const showActions = (rec: PhaseRecord, run: RunRef) => {
      for (const a of actions()) {
        const ar = rec.actions.find((x) => x.id === a.id);
        const state = ar ? ar.state : rec.state === 'pending' || rec.state === 'waiting' ? 'pending' : rec.state === 'skipped' ? 'skipped' : null;
        if (state === 'pending' || state === 'skipped') a.showState?.(state, ar?.error ?? rec.note, run.dryRun);
      }
    };

    const show = (rec: PhaseRecord, run: RunRef) => {
      if (closing) return;
      showActions(rec, run);
      const results = rec.actions.flatMap((a) => a.results);
      const failed = results.filter((r) => !r.ok).length;
      const known = rec.actions.reduce((n, a) => n + Math.max(a.total ?? 0, a.results.length, a.started.length), 0);
      const dr = run.dryRun ? 'dry-run: ' : '';
      switch (rec.state) {
        case 'pending':
          return node.status({ fill: 'grey', shape: 'ring', text: `${dr}pending` });
        case 'waiting':
          return node.status({ fill: 'yellow', shape: 'ring', text: shortStatus(`${dr}${rec.note ?? 'waiting'}`) });
        case 'running':
          return node.status({ fill: 'blue', shape: 'dot', text: `${dr}running ${results.length}/${known}${failed ? `, ${failed} failed` : ''}` });
        case 'done':
          return node.status({ fill: run.dryRun ? 'blue' : 'green', shape: run.dryRun ? 'ring' : 'dot', text: `${dr}done ${results.length}/${known}` });
        case 'failed':
          return node.status({ fill: 'red', shape: 'dot', text: shortStatus(`${dr}failed${failed ? ` (${failed}/${known})` : ''}${rec.note ? `: ${rec.note}` : ''}`) });
        case 'skipped':
          return node.status({ fill: 'grey', shape: 'dot', text: shortStatus(`${dr}skipped${rec.note ? `: ${rec.note}` : ''}`) });
      }
    };

    const handle: PhaseHandle & { chainNode(): ChainNode } = {
      id: node.id,
      name,
      settings: settings ?? { mode: 'parallel', stepDelayMs: 0, wait: true, onFailure: 'continue', timeoutMs: null, pointOfNoReturn: false, direction: 'both' },
      gate,
      gateText: cfg && cfg.gate ? `runtime on ${gateDevice?.upsName ?? 'the UPS'} ≤ ${cfg.gateRuntime} min` : null,
      actions,
      update: show,
      finished: (rec: PhaseRecord, run: RunRef, report: RunReport | null) => {
        if (closing) return;
        const msg: NodeMessage = report ? { topic: 'run-report', payload: report, run } : { topic: 'phase-done', payload: rec, run };
        node.send([null, msg]);
      },
      chainNode: () => ({ id: node.id, name, direction: handle.settings.direction, next: node.wires?.[1] ?? [] }),
    };

    let unsubscribe: (() => void) | undefined;
    if (!configError && planNode) {
      planNode.registerPhase(handle);
      // Show "pending" on every phase of a run as it starts.
      unsubscribe = planNode.plan.subscribe((e: RunEvent) => {
        if (e.type !== 'run-started' && e.type !== 'run-resumed') return;
        const rec = planNode.plan.lastRun()?.phases.find((p) => p.id === node.id);
        if (rec && e.run) show(rec, e.run);
      });
    }

    node.on('input', (msg, _send, done) => {
      const t = typeof msg.topic === 'string' ? msg.topic.trim() : '';
      // The previous phase's done output: the plan drives the order, this is only the wiring
      // (a status answer travels along it too).
      const run = msg.run as Partial<RunRef> | undefined;
      if (t === 'plan-status' || ((t === 'phase-done' || t === 'run-report') && run && typeof run === 'object')) return done();
      if (configError || !planNode) return done(new Error(configError ?? 'no plan'));
      const key = t || (typeof msg.payload === 'string' ? msg.payload.trim() : '');
      const cmd = COMMANDS[key];
      if (!cmd) return done(new Error(`unknown command "${key}": use topic ${Object.keys(COMMANDS).join(', ')}`));
      try {
        if (cmd === 'cancel') {
          const r = planNode.cancel(`message to ${name}`);
          if (!r.ok) node.warn(`cancel: ${r.reason}`);
          return done();
        }
        if (cmd === 'arm' || cmd === 'disarm') {
          planNode.plan.setArmed(cmd === 'arm', `message to ${name}`).then(() => done(), (err) => done(err));
          return;
        }
        if (cmd === 'status') {
          node.send([null, { topic: 'plan-status', payload: planNode.plan.status() }]);
          return done();
        }
        const req: RunRequest = { direction: cmd.direction, dryRun: cmd.dryRun, origin: 'local', topic: key, ...(msg.payload !== undefined && typeof msg.payload === 'object' ? { reason: msg.payload } : {}) };
        const r = planNode.request(req);
        // Held while the plan loads its saved state: warn with what became of it.
        if (!r.started && r.later) void r.later.then((r2) => !r2.started && !closing && node.warn(`${key}: ${r2.reason}`));
        else if (!r.started) node.warn(`${key}: ${r.reason}`);
        done();
      } catch (err) {
        node.status({ fill: 'red', shape: 'ring', text: shortStatus(errorText(err)) });
        done(err instanceof Error ? err : new Error(errorText(err)));
      }
    });

    node.on('close', (_removed: boolean, done: () => void) => {
      closing = true;
      unsubscribe?.();
      planNode?.deregisterPhase(node.id);
      done();
    });
  }

  RED.nodes.registerType('upsorch-phase', PhaseNode);
};

/**
 * Start only when the runtime on a UPS is at or below N minutes. Lost or stale readings open the
 * gate (failsafe: better act than wait blind); mains coming back closes it (the phase is skipped).
 */
function runtimeGate(device: UpsDeviceNode, minutes: number): Gate {
  return (signal) =>
    new Promise<string>((resolve, reject) => {
      let unsub: (() => Promise<void>) | undefined;
      let settled = false;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        const u = unsub;
        unsub = undefined;
        void u?.();
        fn();
      };
      const onAbort = () => finish(() => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted')));
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      let seenOnBattery = false;
      const check = (s: UpsState) => {
        if (s.comm !== 'ok') return finish(() => resolve(`readings of ${s.ups} are ${s.comm}: starting now (failsafe)`));
        if (s.onBattery) seenOnBattery = true;
        // The gate only opens during an outage: on mains it would wait forever (even past the point of no return).
        if (!s.onBattery && s.online) return finish(() => reject(new Error(seenOnBattery ? `mains is back on ${s.ups}` : `${s.ups} is on mains: the gate opens only on battery`)));
        if (s.runtime !== null && !s.untrusted.includes('runtime') && s.runtime <= minutes * 60) {
          return finish(() => resolve(`runtime on ${s.ups} is ${Math.round(s.runtime! / 60)} min ≤ ${minutes} min`));
        }
      };
      try {
        unsub = device.subscribe(check);
        if (settled) void unsub();
      } catch (err) {
        finish(() => reject(err instanceof Error ? err : new Error(errorText(err))));
      }
    });
}
