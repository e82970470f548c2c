/**
 * A plan as a Home Assistant device over MQTT: state, current phase, progress, last result,
 * time-budget margin and the last command's outcome as sensors; buttons run shutdown, run startup,
 * dry-run and cancel; a switch arms and disarms it.
 *
 * Commands from Home Assistant reach the plan with origin `remote`: a dry-run and arming are always
 * allowed; a real run, disarming and cancelling a real run only when the plan allows remote runs.
 * Anyone who can publish to the broker can press these, so without that setting nobody on MQTT can
 * start a shutdown, nor stop one (or keep the next one from happening) either. A refusal is shown on
 * the "Last command" sensor and reported to the caller. Retained command messages are ignored: a
 * stale retained PRESS must never start a shutdown after a restart.
 *
 * Topics: state `<base>/plan/<plan>/state` (retained JSON), commands `<base>/plan/<plan>/set/<key>`.
 */
import { Direction, PlanStatus, RunEvent } from '../plan/types';
import { DiscoveryConfig, DiscoveryContext, EntityDef, entityConfig, stateText } from './discovery';
import { ConfigBuilder, DiscoveryPublisher, PublisherBroker } from './publisher';
import { slug } from './topics';

/**
 * What the Home Assistant layer needs of a plan (the plan config node offers it; see
 * nodes/upsorch-publish-state.ts for the adapter).
 */
export interface PlanHandle {
  id: string;
  name: string;
  status(): PlanStatus;
  subscribe(fn: (e: RunEvent) => void): () => void;
  request(req: { direction: Direction; dryRun: boolean; origin: 'remote'; topic: string }): PlanRequestResult;
  cancel(by: string): { ok: boolean; reason: string };
  setArmed(armed: boolean, by: string): Promise<void>;
  /** Expected duration of a run in this direction (ms), for the time-budget margin. */
  expectedDurationMs(direction: Direction): number;
}

/** A request's answer; `later` when it was held while the plan loaded its saved state. */
export type PlanRequestResult = { started: true; run: { id: string } } | { started: false; queued: boolean; reason: string; later?: Promise<PlanRequestResult> };

export const PLAN_STATES = ['idle', 'armed', 'running', 'done', 'failed'] as const;

export const PLAN_ENTITIES: readonly EntityDef[] = [
  { key: 'state', component: 'sensor', name: 'State', field: 'state', device_class: 'enum', options: PLAN_STATES, icon: 'mdi:state-machine' },
  { key: 'current_phase', component: 'sensor', name: 'Current phase', field: 'current_phase', icon: 'mdi:format-list-numbered' },
  { key: 'progress', component: 'sensor', name: 'Progress', field: 'progress', unit_of_measurement: '%', state_class: 'measurement', icon: 'mdi:progress-clock' },
  { key: 'last_result', component: 'sensor', name: 'Last result', field: 'last_result', icon: 'mdi:clipboard-check-outline', attributes: '{{ {"run_id": value_json.last_run_id, "direction": value_json.last_run_direction, "dry_run": value_json.last_run_dry_run, "state": value_json.last_run_state, "ended_at": value_json.last_run_ended_at} | tojson }}' },
  { key: 'time_budget_margin', component: 'sensor', name: 'Time-budget margin', field: 'time_budget_margin', device_class: 'duration', unit_of_measurement: 's', state_class: 'measurement', icon: 'mdi:timer-sand' },
  { key: 'last_command', component: 'sensor', name: 'Last command', field: 'last_command', entity_category: 'diagnostic', icon: 'mdi:message-reply-text' },
  { key: 'remote_runs', component: 'binary_sensor', name: 'Remote runs allowed', field: 'remote_runs', entity_category: 'diagnostic', icon: 'mdi:remote' },
  { key: 'run_shutdown', component: 'button', name: 'Run shutdown', icon: 'mdi:power' },
  { key: 'run_startup', component: 'button', name: 'Run startup', icon: 'mdi:play-circle-outline' },
  { key: 'dry_run', component: 'button', name: 'Dry-run', icon: 'mdi:test-tube' },
  { key: 'cancel', component: 'button', name: 'Cancel', icon: 'mdi:cancel' },
  { key: 'armed', component: 'switch', name: 'Armed', field: 'armed', icon: 'mdi:shield-check' },
];

export function planDeviceId(ctx: DiscoveryContext, planId: string): string {
  return `upsorch_${slug(ctx.baseTopic)}_plan_${slug(planId)}`;
}

export function planTopic(ctx: DiscoveryContext, planId: string): string {
  return `${ctx.baseTopic}/plan/${slug(planId)}`;
}

export function planDiscovery(ctx: DiscoveryContext, plan: { id: string; name: string }): DiscoveryConfig[] {
  const base = planTopic(ctx, plan.id);
  const dev = {
    id: planDeviceId(ctx, plan.id),
    objectPrefix: `plan_${slug(plan.name)}`,
    block: { identifiers: [planDeviceId(ctx, plan.id)], name: `Plan ${plan.name}`, manufacturer: 'UPS orchestrator', model: 'Shutdown and startup plan' },
    stateTopic: `${base}/state`,
    commandTopic: `${base}/set`,
  };
  return PLAN_ENTITIES.map((d) => entityConfig(ctx, d, dev));
}

const onOff = (b: boolean) => (b ? 'ON' : 'OFF');

/** Why a control that needs "allow remote runs" was refused (the plan's own words for a refused run). */
export const REMOTE_NOT_ALLOWED = 'remote control of real runs is not allowed for this plan (enable "allow runs from Home Assistant / MQTT")';

/** `shutdown done: 12 ok, 1 failed` (`dry-run of shutdown done: …`). */
export function resultText(r: NonNullable<PlanStatus['lastResult']>): string {
  const what = r.dryRun ? `dry-run of ${r.direction}` : r.direction;
  const t = r.totals;
  return `${what} ${r.state}: ${t.ok} ok, ${t.failed} failed${t.skipped ? `, ${t.skipped} skipped` : ''}`;
}

export function planStatePayload(st: PlanStatus, marginS: number | null, lastCommand: string | null): Record<string, unknown> {
  const p = st.progress;
  const last = st.lastResult;
  return {
    state: st.state,
    armed: onOff(st.armed),
    remote_runs: onOff(st.allowRemote),
    current_phase: stateText(st.currentPhase),
    progress: p && p.phases ? Math.round((p.phasesDone / p.phases) * 100) : null,
    phases_done: p?.phasesDone ?? null,
    phases: p?.phases ?? null,
    targets_done: p?.targetsDone ?? null,
    targets: p?.targets ?? null,
    run_id: st.run?.id ?? null,
    run_direction: st.run?.direction ?? null,
    run_dry_run: st.run ? st.run.dryRun : null,
    last_result: last ? stateText(resultText(last)) : null,
    last_run_id: last?.id ?? null,
    last_run_direction: last?.direction ?? null,
    last_run_dry_run: last?.dryRun ?? null,
    last_run_state: last?.state ?? null,
    last_run_ended_at: last ? new Date(last.endedAt).toISOString() : null,
    time_budget_margin: marginS === null ? null : Math.round(marginS),
    last_command: stateText(lastCommand),
  };
}

/** What happened to a command from Home Assistant. */
export interface CommandReport {
  plan: { id: string; name: string };
  command: string;
  accepted: boolean;
  /** One line for people. */
  message: string;
  runId?: string;
}

export interface PlanControlOptions {
  /** Lowest trusted runtime (s) of the UPSes this publisher knows, for the time-budget margin. */
  runtime(): number | null;
  /** Every command and its outcome (the node warns on refusals and sends a message). */
  onCommand?(r: CommandReport): void;
}

const COMMANDS: Record<string, { direction: Direction; dryRun: boolean; what: string }> = {
  run_shutdown: { direction: 'shutdown', dryRun: false, what: 'shutdown' },
  run_startup: { direction: 'startup', dryRun: false, what: 'startup' },
  dry_run: { direction: 'shutdown', dryRun: true, what: 'dry-run' },
};

export class PlanControl {
  readonly deviceId: string;
  readonly base: string;
  private lastCommand: string | null = null;
  private unsubscribePlan: (() => void) | null = null;
  private unsubscribeCommands: (() => void) | null = null;

  constructor(
    private readonly broker: PublisherBroker,
    private readonly publisher: DiscoveryPublisher,
    private readonly plan: PlanHandle,
    private readonly opts: PlanControlOptions,
  ) {
    this.deviceId = planDeviceId(publisher.ctx, plan.id);
    this.base = planTopic(publisher.ctx, plan.id);
  }

  start(): void {
    const build: ConfigBuilder = () => planDiscovery(this.publisher.ctx, { id: this.plan.id, name: this.plan.name });
    this.publisher.setDevice(this.deviceId, build, `${this.base}/state`, this.payload());
    this.unsubscribePlan = this.plan.subscribe(() => this.refresh());
    this.unsubscribeCommands = this.broker.subscribe(`${this.base}/set/+`, (topic, payload, retained) => {
      if (retained) return;
      const key = topic.slice(`${this.base}/set/`.length);
      this.command(key, payload.toString().trim()).catch((err) => {
        // A bug or a plan that is closing: report it like a refusal, never as an unhandled rejection.
        this.lastCommand = `${key} failed: ${(err as Error)?.message ?? String(err)}`;
        this.refresh();
        this.opts.onCommand?.({ plan: { id: this.plan.id, name: this.plan.name }, command: key, accepted: false, message: this.lastCommand });
      });
    });
  }

  stop(): void {
    this.unsubscribePlan?.();
    this.unsubscribeCommands?.();
    this.unsubscribePlan = null;
    this.unsubscribeCommands = null;
  }

  private marginS(): number | null {
    const runtime = this.opts.runtime();
    if (runtime === null) return null;
    return runtime - this.plan.expectedDurationMs('shutdown') / 1000;
  }

  private payload(): Record<string, unknown> {
    return planStatePayload(this.plan.status(), this.marginS(), this.lastCommand);
  }

  /** Publish the plan's state if it changed (plan events, UPS runtime changes). */
  refresh(): void {
    this.publisher.setState(this.deviceId, this.payload());
  }

  /** Handle one command from Home Assistant. Exported for tests through the MQTT topic only. */
  private async command(key: string, payload: string): Promise<void> {
    const plan = { id: this.plan.id, name: this.plan.name };
    let report: CommandReport;
    const run = COMMANDS[key];
    if (run) {
      if (payload !== 'PRESS') return;
      let r = this.plan.request({ direction: run.direction, dryRun: run.dryRun, origin: 'remote', topic: `homeassistant:${key}` });
      // Held while the plan loads its saved state: report what finally became of it, not "queued".
      if (!r.started && r.later) r = await r.later;
      report = r.started
        ? { plan, command: key, accepted: true, message: `${run.what} started by Home Assistant (run ${r.run.id.slice(0, 8)})`, runId: r.run.id }
        : { plan, command: key, accepted: false, message: `${run.what} ${r.queued ? 'queued' : 'refused'}: ${r.reason}` };
    } else if (key === 'cancel') {
      if (payload !== 'PRESS') return;
      const st = this.plan.status();
      if (!st.allowRemote && !st.run) {
        // Without remote control nothing but a dry-run may be cancelled; a queued real startup neither.
        report = { plan, command: key, accepted: false, message: 'cancel refused: no run in progress' };
      } else if (!st.allowRemote && !st.run!.dryRun) {
        report = { plan, command: key, accepted: false, message: `cancel refused: ${REMOTE_NOT_ALLOWED}` };
      } else {
        const r = this.plan.cancel('Home Assistant');
        report = { plan, command: key, accepted: r.ok, message: r.ok ? `cancel requested by Home Assistant${r.reason ? `: ${r.reason}` : ''}` : `cancel refused: ${r.reason}` };
      }
    } else if (key === 'armed') {
      if (payload !== 'ON' && payload !== 'OFF') return;
      const arm = payload === 'ON';
      if (!arm && !this.plan.status().allowRemote) {
        // A disarm is persisted: it would silently keep the next real shutdown from running.
        report = { plan, command: key, accepted: false, message: `disarming refused: ${REMOTE_NOT_ALLOWED}` };
      } else {
        try {
          await this.plan.setArmed(arm, 'Home Assistant');
          report = { plan, command: key, accepted: true, message: `${arm ? 'armed' : 'disarmed'} by Home Assistant` };
        } catch (err) {
          report = { plan, command: key, accepted: false, message: `${arm ? 'arming' : 'disarming'} failed: ${(err as Error).message}` };
        }
      }
    } else {
      return;
    }
    this.lastCommand = report.message;
    this.refresh();
    this.opts.onCommand?.(report);
  }
}
