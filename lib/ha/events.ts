/**
 * What the package fires on Home Assistant's event bus: one `ups_orchestrator_event` per UPS event
 * and per run step, so HA automations can trigger on it:
 *
 *   trigger: { platform: event, event_type: ups_orchestrator_event, event_data: { kind: ups, event: ONBATT } }
 *
 * UPS events: `{kind:'ups', event, ups, severity, message, at, charge, runtime, flags}`.
 * Run steps: `{kind:'run', type, plan, plan_id, run_id, direction, dry_run, phase, phase_state,
 * target, target_ok, target_method, message, at}` (type: run-started, phase-started, phase-done,
 * target-done, target-failed, run-report, run-refused, run-queued, cancel-requested, run-resumed).
 */
import { UpsEvent } from '../ups/events';
import { UpsState } from '../ups/state';
import { RunEvent } from '../plan/types';

export const HA_EVENT_TYPE = 'ups_orchestrator_event';

export function upsEventData(e: UpsEvent, s?: UpsState): Record<string, unknown> {
  return {
    kind: 'ups',
    event: e.event,
    ups: e.ups,
    severity: e.severity,
    message: e.message,
    at: new Date(e.ts).toISOString(),
    charge: s?.charge ?? null,
    runtime: s?.runtime ?? null,
    flags: s ? s.flags.join(' ') : null,
  };
}

export function runEventData(e: RunEvent): Record<string, unknown> {
  return {
    kind: 'run',
    type: e.type,
    plan: e.plan.name,
    plan_id: e.plan.id,
    run_id: e.run?.id ?? null,
    direction: e.run?.direction ?? null,
    dry_run: e.run?.dryRun ?? null,
    phase: e.phase?.name ?? null,
    phase_state: e.phase?.state ?? null,
    target: e.target?.target ?? null,
    target_ok: e.target ? e.target.ok : null,
    target_method: e.target?.method ?? null,
    message: e.message,
    at: new Date(e.at).toISOString(),
  };
}
