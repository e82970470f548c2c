/**
 * Plans, phases and runs: the shapes the run machinery persists, reports and hands to actions.
 * A plan is a chain of phases; a run walks it in one direction, records every phase and target,
 * and is written to disk on every step so that it resumes after a restart.
 */
import { ActionHooks, ActionReport } from '../actions/run';
import { TargetResult } from '../actions/contract';

export type Direction = 'shutdown' | 'startup';
export type RunState = 'running' | 'done' | 'failed' | 'cancelled';
export type PhaseState = 'pending' | 'waiting' | 'running' | 'done' | 'failed' | 'skipped';
export type ActionState = 'pending' | 'running' | 'done' | 'failed' | 'skipped';
export type Origin = 'local' | 'remote';

export interface RunRef {
  id: string;
  plan: string;
  planName: string;
  direction: Direction;
  dryRun: boolean;
}

export interface ActionRecord {
  /** The action node's id. */
  id: string;
  name: string;
  state: ActionState;
  startedAt?: number;
  endedAt?: number;
  /** Targets acted on (written before acting), so a restart never acts on them twice. */
  started: string[];
  results: TargetResult[];
  /** Targets the action resolved (known once it has listed them). */
  total?: number;
  summary?: string;
  error?: string;
}

export interface PhaseRecord {
  id: string;
  name: string;
  state: PhaseState;
  startedAt?: number;
  endedAt?: number;
  actions: ActionRecord[];
  /** Why it was skipped or failed, or what its gate waited for. */
  note?: string;
}

export interface TimelineEntry {
  at: number;
  event: string;
  phase?: string;
  target?: string;
  text: string;
}

export interface RunRecord {
  version: 1;
  id: string;
  plan: string;
  planName: string;
  direction: Direction;
  dryRun: boolean;
  origin: Origin;
  /** What started it: the message topic, and the threshold's reason if it came from one. */
  trigger: { topic: string; reason?: unknown };
  state: RunState;
  startedAt: number;
  endedAt?: number;
  /** Phases in the order this run executes them (mirrored for startup). */
  phases: PhaseRecord[];
  timeline: TimelineEntry[];
  cancelRequested?: { at: number; by: string };
  /** Set once a phase marked as the point of no return has started: cancel is then refused. */
  pastPointOfNoReturn?: boolean;
  /** Times this run was resumed after Node-RED restarted. */
  resumed: number[];
  /** Startup runs: what the last shutdown turned off; only that is started. */
  restrict?: Restore;
  /** A startup run or dry-run stopped because a real shutdown took over (state `cancelled`). */
  preemptedBy?: { at: number; topic: string; origin: Origin };
  /** Shutdown runs that stopped a startup: the targets whose start may still land (see Settle). */
  settle?: Settle;
}

/**
 * What a startup stopped by a shutdown had asked to start (or was starting): the platform may still
 * carry such a start out (virsh start sent, a power-on task accepted), so the shutdown waits a
 * bounded time for those it finds off to come up, then shuts them down.
 */
export interface Settle {
  /** When the startup was stopped (ms since the epoch, Date.now()): the settle window counts from here. */
  at: number;
  /** The startup run that was stopped. */
  from: string;
  /** Per action node id, the target names. */
  actions: Record<string, string[]>;
}

/** What a real shutdown run turned off, for the mirrored startup. */
export interface Restore {
  /** Per action node id, the targets turned off (graceful or forced). */
  actions: Record<string, string[]>;
  /** Phases the shutdown never ran (cancelled, stopped, cut short): their actions start nothing. */
  phasesNotRun: string[];
}

export interface RunTotals {
  phases: number;
  targets: number;
  ok: number;
  failed: number;
  graceful: number;
  forced: number;
  already: number;
  skipped: number;
  dryRun: number;
}

/** The message that leaves the last phase at the end of a run. */
export interface RunReport extends RunRecord {
  ms: number;
  totals: RunTotals;
}

/** What a phase asks of one of its action nodes. */
export interface ActionStep {
  run: RunRef;
  phase: { id: string; name: string };
  /** Results already recorded for this action in this run (after a restart). */
  previous: TargetResult[];
  /** Targets started but without result when Node-RED stopped. */
  interrupted: string[];
  /** Act only on these of the selected targets (startup: what the shutdown turned off). */
  only?: string[];
  /** Shutdown after a stopped startup: targets whose start may still land (ActionRequest.settle). */
  settle?: { names: string[]; since: number };
  hooks: ActionHooks;
  signal: AbortSignal;
}

/** An action node as the run machinery sees it. */
export interface ActionHandle {
  id: string;
  name: string;
  /**
   * The longest this action may take, from its own timeouts (for the phase's timeout), for
   * `targets` targets once it has resolved them; before that, for its own guess. `direction`: the
   * run's (a startup also waits for its platform to come back); default the run in progress, else shutdown.
   */
  budgetMs(targets?: number, direction?: Direction): number;
  perform(step: ActionStep): Promise<ActionReport>;
  /** Show a state the phase knows before or instead of running this action. */
  showState?(state: 'pending' | 'skipped', note: string | undefined, dryRun: boolean): void;
}

export interface PhaseSettings {
  mode: 'parallel' | 'sequential';
  /** Pause between starting one action and the next (sequential: between actions). */
  stepDelayMs: number;
  /** Wait for the actions before handing on to the next phase. */
  wait: boolean;
  onFailure: 'continue' | 'stop';
  /** Explicit phase timeout; null derives it from the actions' budgets. */
  timeoutMs: number | null;
  /** Once this phase starts, a cancel no longer stops the run. */
  pointOfNoReturn: boolean;
  /** Which runs include this phase; 'startup' phases form a separate startup chain. */
  direction: 'both' | 'shutdown' | 'startup';
}

/** Waits until the phase may start (e.g. runtime on a UPS ≤ N min); resolves with why. */
export type Gate = (signal: AbortSignal) => Promise<string>;

/** A phase node as the run machinery sees it. */
export interface PhaseHandle {
  id: string;
  name: string;
  settings: PhaseSettings;
  gate: Gate | null;
  /** Describes the gate for dry-run reports ("runtime on ups1 ≤ 10 min"). */
  gateText: string | null;
  /** The action nodes this phase feeds, in wiring order. */
  actions(): ActionHandle[];
  /** Live record of this phase (status display). */
  update(rec: PhaseRecord, run: RunRef): void;
  /** The phase finished: emit on its done output; `report` is set on the run's last phase. */
  finished(rec: PhaseRecord, run: RunRef, report: RunReport | null): void;
}

/** Run events for subscribers (Home Assistant, notify, status). */
export type RunEventType =
  | 'run-started'
  | 'run-resumed'
  | 'phase-started'
  | 'phase-done'
  | 'target-done'
  | 'target-failed'
  | 'run-report'
  | 'run-refused'
  | 'run-queued'
  | 'cancel-requested'
  | 'plan-state';

export interface RunEvent {
  type: RunEventType;
  plan: { id: string; name: string };
  run?: RunRef;
  phase?: { id: string; name: string; state: PhaseState; note?: string };
  target?: TargetResult & { action: string };
  report?: RunReport;
  /** run-refused / run-queued: what was asked for and why it did not start (cancel: `cancel`). */
  refused?: { what: Direction | 'dry-run' | 'cancel'; reason: string; by?: string; duplicate?: boolean };
  /** One line for people: "Run 3f2a (shutdown) started by threshold: runtime 280 s ≤ 300 s". */
  message: string;
  at: number;
}

/** The plan as a dashboard shows it. */
export interface PlanStatus {
  state: 'idle' | 'armed' | 'running' | 'done' | 'failed';
  armed: boolean;
  allowRemote: boolean;
  run: RunRef | null;
  currentPhase: string | null;
  progress: { phasesDone: number; phases: number; targetsDone: number; targets: number } | null;
  lastResult: { id: string; direction: Direction; dryRun: boolean; state: RunState; endedAt: number; totals: RunTotals } | null;
}
