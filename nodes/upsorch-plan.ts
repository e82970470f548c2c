/**
 * "Plan" config node: names a plan, owns its run machinery (lib/plan/runner.ts) and its state file
 * under the Node-RED user dir, knows its phases (they register here) and resumes a run that was in
 * progress when Node-RED stopped, once every phase of the deploy exists.
 */
import * as os from 'os';
import * as path from 'path';
import { z } from 'zod';
import { NodeAPI, PlanNode, errorText } from './red';
import { Plan, RunRequest, RequestResult } from '../lib/plan/runner';
import { PlanStore } from '../lib/plan/store';
import { chainFor, ChainNode } from '../lib/plan/chain';
import { Direction, PhaseHandle, RunRecord } from '../lib/plan/types';

const bool = (dflt: boolean) => z.preprocess((v) => (v === undefined || v === '' ? dflt : v === true || v === 'true'), z.boolean());

const PlanConfig = z.object({
  name: z.string().optional().default(''),
  armed: bool(true),
  allowRemote: bool(false),
  // Plans saved before this setting existed have none: on, since a cancelled false alarm must not leave machines off.
  restoreOnCancel: bool(true),
  stateDir: z.string().trim().optional().default(''),
});

type PhaseEntry = PhaseHandle & { chainNode(): ChainNode };

/** Resume waits at most this long for the deploy's phases to exist. */
const RESUME_WAIT_MS = 5000;

export = function register(RED: NodeAPI): void {
  function PlanConfigNode(this: PlanNode, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    const node = this;
    const phases = new Map<string, PhaseEntry>();
    const parsed = PlanConfig.safeParse(raw);
    const cfg = parsed.success ? parsed.data : PlanConfig.parse({});
    if (!parsed.success) node.configError = 'invalid plan configuration: ' + parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    const label = cfg.name || `plan ${node.id}`;
    const dir = cfg.stateDir || path.join(RED.settings.userDir || path.join(os.homedir(), '.node-red'), 'ups-orchestrator');

    node.plan = new Plan({
      id: node.id,
      name: label,
      store: new PlanStore(dir, node.id),
      allowRemote: cfg.allowRemote,
      armed: cfg.armed,
      restoreOnCancel: cfg.restoreOnCancel,
      log: (level, text) => (level === 'error' ? node.error(text) : level === 'warn' ? node.warn(text) : node.log(text)),
    });

    const resolve = (direction: Direction): PhaseHandle[] => {
      const entries = [...phases.values()];
      const order = chainFor(direction, entries.map((p) => p.chainNode()));
      return order.map((id) => phases.get(id)!);
    };

    let stallTimer: NodeJS.Timeout | undefined;
    node.registerPhase = (p) => {
      phases.set(p.id, p);
      // A phase redeployed mid-run: pick the paused run up again once the deploy settles.
      clearTimeout(stallTimer);
      stallTimer = setTimeout(() => node.plan.resumeStalled((id) => phases.get(id)), 200);
    };
    node.deregisterPhase = (id) => phases.delete(id);
    node.request = (req: RunRequest): RequestResult => node.plan.request(req, resolve);
    node.cancel = (by: string) => node.plan.cancel(by);
    node.expectedDurationMs = (direction) => {
      try {
        return node.plan.expectedDurationMs(resolve(direction), direction);
      } catch {
        return 0; // a chain that does not resolve (mis-wired) has no duration to offer
      }
    };

    // Resume: the state file is read asynchronously; phases register while the deploy starts.
    let pending: RunRecord | null = null;
    let resumeTimer: NodeJS.Timeout | undefined;
    let closed = false;
    const tryResume = (force: boolean) => {
      if (!pending || closed) return;
      const rec = pending;
      const missing = rec.phases.filter((p) => !phases.has(p.id));
      if (missing.length && !force) return;
      pending = null;
      clearTimeout(resumeTimer);
      if (missing.length) node.warn(`resuming run ${rec.id.slice(0, 8)} without ${missing.map((p) => `"${p.name}"`).join(', ')}: no longer in the flow`);
      node.plan.resume(rec, (id) => phases.get(id), resolve);
    };
    // A startup queued before the restart behind a shutdown that is not resumed runs once the phases exist.
    let flowsStarted = false;
    const onFlowsStarted = () =>
      setImmediate(() => {
        flowsStarted = true;
        if (closed) return;
        tryResume(true);
        node.plan.resumeStalled((id) => phases.get(id));
        node.plan.startQueued(resolve);
      });
    RED.events.on('flows:started', onFlowsStarted);
    node.plan.init().then(
      (rec) => {
        if (closed) return;
        if (!rec) {
          if (flowsStarted) node.plan.startQueued(resolve);
          return;
        }
        pending = rec;
        tryResume(false);
        if (pending) resumeTimer = setTimeout(() => tryResume(true), RESUME_WAIT_MS);
      },
      (err) => node.error(`cannot load the plan state: ${errorText(err)}`),
    );

    node.on('close', (removed: boolean, done: () => void) => {
      closed = true;
      clearTimeout(resumeTimer);
      clearTimeout(stallTimer);
      RED.events.removeListener('flows:started', onFlowsStarted);
      node.plan.close().then(
        () => done(),
        () => done(),
      );
      void removed;
    });
  }

  RED.nodes.registerType('upsorch-plan', PlanConfigNode);
};
