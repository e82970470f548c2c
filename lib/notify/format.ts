/**
 * What a notification says: the template context built from a UPS event, a plan run message or a
 * custom message, the facts a reader needs (UPS, charge, runtime, reason, elapsed), and the default
 * en-US templates per event. Channels render the templates with their own escaping (./template.ts).
 */
import { UPS_EVENTS, UpsEventName, Severity } from '../ups/events';
import { UpsState } from '../ups/state';

/** Template keys: every UPS event, every plan run message, and the notifier's own messages. */
export const PLAN_TOPICS = ['run-started', 'run-resumed', 'phase-started', 'phase-done', 'target-done', 'target-failed', 'run-report', 'run-refused'] as const;
export type PlanTopic = (typeof PLAN_TOPICS)[number];
export const OWN_KEYS = ['custom', 'flapping', 'digest', 'test'] as const;
export type TemplateKey = UpsEventName | PlanTopic | (typeof OWN_KEYS)[number];
export const TEMPLATE_KEYS: readonly TemplateKey[] = [...UPS_EVENTS, ...PLAN_TOPICS, ...OWN_KEYS];

export interface Fact {
  name: string;
  value: string;
}

/** One notification, before a channel renders it. */
export interface Notification {
  key: TemplateKey;
  kind: 'ups-event' | 'plan' | 'custom' | 'flapping' | 'digest' | 'test';
  severity: Severity;
  /** A recovery (mains back, communication back, a run done): shown green where colours exist. */
  resolved: boolean;
  ts: number;
  /** What the template placeholders see. */
  ctx: Record<string, unknown>;
  /** The facts, for channels that show them as fields (Discord embeds, the default webhook body). */
  facts: Fact[];
  /** A step of a plan run (phase started / done): crisis-mode traffic. */
  step: boolean;
  /** Groups notifications about one thing (a UPS, a plan), e.g. as Home Assistant's notification tag. */
  group: string;
  /** Title and body templates given with the message itself (custom messages). */
  title?: string;
  body?: string;
}

export interface Template {
  title: string;
  body: string;
}

// ---- formatting ----

/** 45 s · 4 min 12 s · 1 h 05 min · unknown */
export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return 'unknown';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return s % 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s / 60} min`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h} h ${String(m).padStart(2, '0')} min`;
}

/** Local wall-clock time of the Node-RED host: 2025-01-15 10:04:12 */
export function clockTime(ts: number): string {
  const d = new Date(ts);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

const percent = (v: number | null | undefined) => (v === null || v === undefined || !Number.isFinite(v) ? 'unknown' : `${Math.round(v)}%`);

/** Short words for an event, used in titles and digests. */
export const EVENT_TEXT: Record<UpsEventName, string> = {
  ONBATT: 'on battery',
  ONLINE: 'mains power restored',
  LOWBATT: 'LOW BATTERY',
  FSD: 'forced shutdown (FSD)',
  COMMBAD: 'communication lost',
  COMMOK: 'communication restored',
  REPLBATT: 'replace battery',
  OVERLOAD: 'overloaded',
  NOTOVERLOAD: 'no longer overloaded',
  BYPASS: 'on bypass',
  NOTBYPASS: 'no longer on bypass',
  TRIM: 'trimming high input voltage',
  BOOST: 'boosting low input voltage',
  CAL: 'calibrating',
  OFF: 'output off',
  BROWNOUT: 'input voltage low',
  OVERVOLTAGE: 'input voltage high',
  ALARM: 'alarm',
};

const RESOLVING: ReadonlySet<string> = new Set(['ONLINE', 'COMMOK', 'NOTOVERLOAD', 'NOTBYPASS']);

/** Events that undo each other share a family: flapping is counted per family. */
export const EVENT_FAMILY: Partial<Record<UpsEventName, string>> = {
  ONBATT: 'mains power',
  ONLINE: 'mains power',
  COMMBAD: 'communication',
  COMMOK: 'communication',
  OVERLOAD: 'overload',
  NOTOVERLOAD: 'overload',
  BYPASS: 'bypass',
  NOTBYPASS: 'bypass',
};

export function familyOf(event: UpsEventName): string {
  return EVENT_FAMILY[event] ?? EVENT_TEXT[event];
}

/** The placeholders about a UPS: ups, charge, runtime, load, inputVoltage, power, elapsed, state. */
export function upsContext(s: UpsState): Record<string, unknown> {
  return {
    ups: s.ups,
    charge: percent(s.charge),
    runtime: duration(s.runtime),
    load: percent(s.load),
    inputVoltage: s.inputVoltage === null ? 'unknown' : `${s.inputVoltage} V`,
    power: s.comm !== 'ok' ? 'status unknown (no communication)' : s.onBattery ? 'on battery' : s.online ? 'on mains' : 'power state unknown',
    elapsed: duration(s.secondsOnBattery),
    state: s,
  };
}

function upsFacts(s: UpsState): Fact[] {
  const facts: Fact[] = [
    { name: 'UPS', value: s.ups },
    { name: 'Power', value: s.onBattery ? 'on battery' : s.online ? 'on mains' : (s.flags.join(' ') || 'unknown') },
    { name: 'Charge', value: percent(s.charge) },
    { name: 'Runtime', value: duration(s.runtime) },
  ];
  if (s.load !== null) facts.push({ name: 'Load', value: percent(s.load) });
  if (s.onBattery || s.secondsOnBattery > 0) facts.push({ name: 'On battery for', value: duration(s.secondsOnBattery) });
  if (s.comm !== 'ok') facts.push({ name: 'Communication', value: s.commError ?? s.comm });
  return facts;
}

// ---- UPS events ----

export interface UpsEventPayload {
  event: UpsEventName;
  ups?: string;
  ts?: number;
  severity?: Severity;
  message?: string;
  state: UpsState;
}

export function isUpsEventPayload(p: unknown): p is UpsEventPayload {
  if (!p || typeof p !== 'object') return false;
  const o = p as Record<string, unknown>;
  return typeof o.event === 'string' && (UPS_EVENTS as readonly string[]).includes(o.event) && !!o.state && typeof o.state === 'object' && typeof (o.state as Record<string, unknown>).ups === 'string';
}

export function fromUpsEvent(p: UpsEventPayload, now: number): Notification {
  const s = p.state;
  const ts = typeof p.ts === 'number' ? p.ts : now;
  const severity: Severity = p.severity ?? 'warning';
  return {
    key: p.event,
    kind: 'ups-event',
    severity,
    resolved: RESOLVING.has(p.event),
    ts,
    ctx: {
      ...upsContext(s),
      event: p.event,
      eventText: EVENT_TEXT[p.event],
      severity,
      message: p.message ?? `UPS ${s.ups}: ${EVENT_TEXT[p.event]}`,
      time: clockTime(ts),
    },
    facts: upsFacts(s),
    step: false,
    group: `ups-${s.ups}`,
  };
}

// ---- plan run messages ----

interface RunRefLike {
  id?: string;
  direction?: string;
  dryRun?: boolean;
  planName?: string;
}

export interface PlanTotalsLike {
  phases?: number;
  targets?: number;
  ok?: number;
  failed?: number;
  graceful?: number;
  forced?: number;
  already?: number;
  skipped?: number;
  dryRun?: number;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.trim() ? v : undefined);
const obj = (v: unknown): Record<string, unknown> | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);

/**
 * A plan run message. Three shapes arrive (lib/plan, nodes/upsorch-phase.ts):
 * - a run event from the plan (topic = its type; payload {type, plan {id, name}, run {id, plan,
 *   planName, direction, dryRun}, phase?, target?, report?, message, at}),
 * - a phase's done output: topic `phase-done`, payload = the phase record {id, name, state,
 *   startedAt, endedAt, actions, note}, msg.run = the run,
 * - the last phase's done output: topic `run-report`, payload = the run report {id, plan,
 *   planName, direction, dryRun, trigger, state, ms, phases, totals…}, msg.run = the run.
 */
export function isPlanMessage(topic: unknown, p: unknown, msgRun?: unknown): boolean {
  if (typeof topic !== 'string' || !(PLAN_TOPICS as readonly string[]).includes(topic) || !obj(p)) return false;
  const o = p as Record<string, unknown>;
  // A refusal of a plan that never ran carries no run, only the plan.
  if (topic === 'run-refused') return !!obj(o.plan) && typeof o.message === 'string';
  return !!obj(o.run) || !!obj(msgRun) || !!obj(o.report) || typeof o.direction === 'string';
}

function planName(p: Record<string, unknown>, run: RunRefLike | undefined, report: Record<string, unknown> | undefined): string {
  const plan = p.plan;
  if (typeof plan === 'string' && plan) return str(report?.planName) ?? str(run?.planName) ?? str(p.planName) ?? plan;
  const po = obj(plan);
  return str(po?.name) ?? str(run?.planName) ?? str(report?.planName) ?? str(p.planName) ?? str(po?.id) ?? 'plan';
}

function totalsText(t: PlanTotalsLike | undefined): string {
  if (!t) return '';
  const parts = [`${t.targets ?? 0} target${t.targets === 1 ? '' : 's'}`, `${t.ok ?? 0} ok`, `${t.failed ?? 0} failed`];
  const how = ([['graceful', t.graceful], ['forced', t.forced], ['already', t.already], ['skipped', t.skipped], ['dry-run', t.dryRun]] as Array<[string, number | undefined]>)
    .filter(([, n]) => (n ?? 0) > 0)
    .map(([k, n]) => `${n} ${k}`);
  return parts.join(', ') + (how.length ? ` (${how.join(', ')})` : '');
}

function reasonText(reason: unknown): string {
  if (typeof reason === 'string') return reason;
  const r = obj(reason);
  if (!r) return '';
  const inner = obj(r.reason);
  return str(r.message) ?? str(inner?.message) ?? str(r.vector) ?? '';
}

interface PhaseLike {
  name?: string;
  state?: string;
  note?: string;
  startedAt?: number;
  endedAt?: number;
  actions?: Array<{ name?: string; state?: string; results?: Array<{ target?: string; ok?: boolean; error?: string }>; error?: string }>;
  [k: string]: unknown;
}

/** "target: error" per failed target, or "action: error" when the action failed as a whole (host unreachable). */
function actionFailures(a: NonNullable<PhaseLike['actions']>[number] & { state?: string }): string[] {
  const failed = (a.results ?? []).filter((r) => r.ok === false).map((r) => `${r.target ?? a.name}: ${r.error ?? 'failed'}`);
  if (!failed.length && (a.state === 'failed' || (a.error && !(a.results ?? []).length))) failed.push(`${a.name ?? 'action'}: ${a.error ?? 'failed'}`);
  return failed;
}

/**
 * A run the plan did not start (disarmed, another run in progress, remote runs not allowed…) or a
 * cancel it refused. The event's `run` is the plan's last run, not the refused one: what was refused
 * is read from the plan's message ("shutdown not started: the plan is disarmed", "cancel by x
 * refused: past the point of no return"). A refused real shutdown is critical: nothing is being
 * shut down; a second shutdown while one runs is only a step of that run.
 */
function fromRefusal(payload: Record<string, unknown>, now: number): Notification {
  const plan = planName(payload, undefined, undefined);
  const message = str(payload.message) ?? 'refused';
  const ts = typeof payload.at === 'number' ? payload.at : now;
  // The plan says what it refused in `refused`; older senders only in words.
  const given = obj(payload.refused);
  const started = /^(shutdown|startup|dry-run) not started: (.*)$/s.exec(message);
  const cancel = /^cancel by (.*?) refused: (.*)$/s.exec(message);
  const refused = str(given?.what) ?? (started ? started[1] : cancel ? 'cancel' : 'request');
  const reason = (str(given?.reason) ?? started?.[2] ?? cancel?.[2] ?? message).trim();
  const by = str(given?.by) ?? cancel?.[1];
  const duplicate = given ? given.duplicate === true : refused === 'shutdown' && /\(shutdown\) is in progress/.test(reason);
  let severity: Severity = 'warning';
  let summary: string;
  if (refused === 'shutdown') {
    severity = duplicate ? 'info' : 'critical';
    summary = duplicate ? `A second shutdown was not started: ${reason}.` : `The shutdown was not started: ${reason}. Nothing is being shut down.`;
  } else if (refused === 'startup') summary = `The startup was not started: ${reason}. Nothing is being started.`;
  else if (refused === 'dry-run') {
    severity = 'info';
    summary = `The dry-run was not started: ${reason}.`;
  } else if (refused === 'cancel') summary = `Cancel requested by ${by ?? 'someone'} was refused: ${reason}; the run goes on.`;
  else summary = message;
  return {
    key: 'run-refused',
    kind: 'plan',
    severity,
    resolved: false,
    ts,
    ctx: { event: 'run-refused', severity, plan, refused, reason, summary, message, time: clockTime(ts) },
    facts: [{ name: 'Plan', value: plan }, { name: 'Refused', value: refused }, { name: 'Reason', value: reason }],
    step: duplicate,
    group: `plan-${plan}`,
  };
}

/** "off (graceful)", "already off", "checked (dry run)": what became of one target. */
function targetResult(t: Record<string, unknown> | undefined): string {
  const method = str(t?.method) ?? '';
  const after = str(t?.after);
  if (method === 'already') return `already ${after ?? 'done'}`;
  if (method === 'dry-run') return 'checked (dry run)';
  if (method === 'skipped') return 'skipped';
  return `${after ?? 'done'}${method ? ` (${method})` : ''}`;
}

export function fromPlanMessage(topic: PlanTopic, payload: Record<string, unknown>, now: number, msgRun?: unknown): Notification {
  if (topic === 'run-refused') return fromRefusal(payload, now);
  const report = obj(payload.report) ?? (topic === 'run-report' ? payload : undefined);
  const run = (obj(payload.run) ?? obj(msgRun) ?? (report ? { id: report.id, direction: report.direction, dryRun: report.dryRun, planName: report.planName } : {})) as RunRefLike;
  const plan = planName(payload, run, report);
  const direction = str(run.direction) ?? str(payload.direction) ?? str(report?.direction) ?? 'run';
  const dryRun = run.dryRun === true || payload.dryRun === true || report?.dryRun === true;
  const ts = typeof payload.at === 'number' ? payload.at : typeof report?.endedAt === 'number' && topic === 'run-report' ? report.endedAt : now;
  // A phase's done output carries the phase record itself as the payload.
  const phase = (obj(payload.phase) ?? (topic === 'phase-done' && typeof payload.name === 'string' && typeof payload.state === 'string' ? payload : undefined)) as PhaseLike | undefined;
  const target = obj(payload.target);
  const state = str(report?.state) ?? str(payload.state) ?? '';
  const ms = typeof report?.ms === 'number' ? report.ms : typeof payload.ms === 'number' ? payload.ms : null;
  const totals = (obj(report?.totals) ?? obj(payload.totals)) as PlanTotalsLike | undefined;
  const trigger = obj(report?.trigger) ?? obj(payload.trigger);
  const reason = reasonText(trigger?.reason ?? payload.reason) || (str(trigger?.topic) ? `requested by "${trigger?.topic}"` : '');
  const phases = (Array.isArray(report?.phases) ? report?.phases : Array.isArray(payload.phases) ? payload.phases : []) as PhaseLike[];
  const failures = phases.flatMap((ph) => (ph.actions ?? []).flatMap((a) => actionFailures(a)));
  const phaseElapsed = phase?.startedAt !== undefined && phase.endedAt !== undefined ? (phase.endedAt - phase.startedAt) / 1000 : null;
  const targetName = str(target?.target) ?? str(target?.id) ?? '';
  const error = str(target?.error) ?? str(payload.error) ?? '';

  let severity: Severity = 'info';
  let resolved = false;
  let result = '';
  switch (topic) {
    case 'run-started':
    case 'run-resumed':
      severity = dryRun || direction !== 'shutdown' ? 'info' : 'critical';
      break;
    case 'phase-started':
      break;
    case 'phase-done':
      result = phase?.state === 'failed' ? 'failed' : phase?.state === 'skipped' ? 'skipped' : 'done';
      severity = phase?.state === 'failed' ? 'warning' : 'info';
      break;
    case 'target-done':
      result = targetResult(target);
      // Forced off (graceful shutdown timed out) is worth a look afterwards.
      severity = target?.method === 'forced' ? 'warning' : 'info';
      break;
    case 'target-failed':
      severity = 'warning';
      result = 'failed';
      break;
    case 'run-report':
      result = state || 'done';
      severity = state === 'failed' ? 'critical' : state === 'cancelled' ? 'warning' : 'info';
      resolved = state === 'done';
      break;
  }
  const phaseTargets = (phase?.actions ?? []).flatMap((a) => a.results ?? []);
  const phaseFailed = (phase?.actions ?? []).flatMap((a) => actionFailures(a));
  let summary: string;
  if (topic === 'run-report') summary = [totalsText(totals), ...(failures.length ? [`Failed: ${failures.join('; ')}`] : [])].filter(Boolean).join('\n');
  else if (topic === 'phase-done' && phase) {
    summary = str(payload.message)?.replace(/^phase /, '') ??
      `${phase.name ?? 'phase'}: ${phase.state ?? 'done'}${phase.note ? ` (${phase.note})` : ''}${phaseTargets.length ? `, ${phaseTargets.length} target${phaseTargets.length === 1 ? '' : 's'}, ${phaseFailed.length} failed` : ''}${phaseElapsed !== null ? ` in ${duration(phaseElapsed)}` : ''}`;
    if (phaseFailed.length) summary += `\nFailed: ${phaseFailed.join('; ')}`;
  } else summary = str(payload.message) ?? '';
  const facts: Fact[] = [{ name: 'Plan', value: plan }, { name: 'Run', value: `${dryRun ? 'dry-run of the ' : ''}${direction}${run.id ? ` (${String(run.id).slice(0, 8)})` : ''}` }];
  if (phase?.name) facts.push({ name: 'Phase', value: phase.name });
  if (targetName) facts.push({ name: 'Target', value: targetName });
  if (error) facts.push({ name: 'Error', value: error });
  if (topic === 'run-report') {
    facts.push({ name: 'Result', value: result });
    facts.push({ name: 'Elapsed', value: duration(ms === null ? null : ms / 1000) });
    if (totals) facts.push({ name: 'Targets', value: totalsText(totals) });
  }
  if (reason && (topic === 'run-started' || topic === 'run-resumed')) facts.push({ name: 'Reason', value: reason });

  return {
    key: topic,
    kind: 'plan',
    severity,
    resolved,
    ts,
    ctx: {
      event: topic,
      severity,
      plan,
      run: { id: run.id ?? '', direction, dryRun },
      direction,
      dryRun: dryRun ? ' (dry run)' : '',
      phase: phase?.name ?? '',
      phaseState: phase?.state ?? '',
      note: phase?.note ?? '',
      target: targetName,
      error,
      result,
      reason: reason || 'not given',
      elapsed: duration(topic === 'run-report' ? (ms === null ? null : ms / 1000) : topic === 'target-done' && typeof target?.ms === 'number' ? target.ms / 1000 : phaseElapsed),
      totals: totals ?? {},
      summary,
      failures: failures.join('; '),
      message: str(payload.message) ?? summary,
      time: clockTime(ts),
      report: report ?? null,
    },
    facts,
    // A failed phase is a milestone, not only a step.
    step: topic === 'phase-started' || topic === 'target-done' || (topic === 'phase-done' && phase?.state !== 'failed'),
    group: `plan-${plan}`,
  };
}

// ---- custom and own messages ----

export function fromCustom(input: { title?: string; message: string; severity?: Severity }, now: number): Notification {
  const severity = input.severity ?? 'info';
  const title = input.title ?? 'UPS orchestrator';
  return {
    key: 'custom',
    kind: 'custom',
    severity,
    resolved: false,
    ts: now,
    ctx: { event: 'custom', severity, title, message: input.message, time: clockTime(now) },
    facts: [],
    step: false,
    group: 'custom',
  };
}

export function testNotification(channel: string, now: number): Notification {
  return {
    key: 'test',
    kind: 'test',
    severity: 'info',
    resolved: false,
    ts: now,
    ctx: { event: 'test', severity: 'info', channel, time: clockTime(now) },
    facts: [{ name: 'Channel', value: channel }],
    step: false,
    group: 'test',
  };
}

// ---- default templates (en-US) ----

const UPS_LINE = 'Charge {{charge}} · runtime {{runtime}} · load {{load}}';

export const DEFAULT_TEMPLATES: Record<TemplateKey, Template> = {
  ONBATT: { title: 'UPS {{ups}}: on battery', body: 'UPS {{ups}} lost mains power at {{time}} and is running on battery.\n' + UPS_LINE },
  ONLINE: { title: 'UPS {{ups}}: mains power restored', body: 'UPS {{ups}} is back on mains power after {{elapsed}} on battery ({{time}}).\nCharge {{charge}} · runtime {{runtime}}' },
  LOWBATT: { title: 'UPS {{ups}}: LOW BATTERY', body: 'UPS {{ups}} reports a low battery at {{time}}, after {{elapsed}} on battery.\n' + UPS_LINE },
  FSD: { title: 'UPS {{ups}}: forced shutdown (FSD)', body: 'UPS {{ups}} is in forced shutdown at {{time}}: the systems it powers are shutting down.\n' + UPS_LINE },
  COMMBAD: { title: 'UPS {{ups}}: communication lost', body: '{{message}} ({{time}}).\nLast readings: {{power}} · charge {{charge}} · runtime {{runtime}}' },
  COMMOK: { title: 'UPS {{ups}}: communication restored', body: '{{message}} ({{time}}).\nNow {{power}} · charge {{charge}} · runtime {{runtime}}' },
  REPLBATT: { title: 'UPS {{ups}}: replace the battery', body: '{{message}} ({{time}}).\nCharge {{charge}} · runtime {{runtime}}' },
  OVERLOAD: { title: 'UPS {{ups}}: overloaded', body: '{{message}} ({{time}}).\n' + UPS_LINE },
  NOTOVERLOAD: { title: 'UPS {{ups}}: no longer overloaded', body: '{{message}} ({{time}}).\nLoad {{load}}' },
  BYPASS: { title: 'UPS {{ups}}: on bypass', body: '{{message}} ({{time}}).' },
  NOTBYPASS: { title: 'UPS {{ups}}: no longer on bypass', body: '{{message}} ({{time}}).' },
  TRIM: { title: 'UPS {{ups}}: trimming high input voltage', body: '{{message}} ({{time}}).' },
  BOOST: { title: 'UPS {{ups}}: boosting low input voltage', body: '{{message}} ({{time}}).' },
  CAL: { title: 'UPS {{ups}}: calibrating', body: '{{message}} ({{time}}).' },
  OFF: { title: 'UPS {{ups}}: output off', body: '{{message}} ({{time}}).' },
  BROWNOUT: { title: 'UPS {{ups}}: input voltage low', body: '{{message}} ({{time}}).' },
  OVERVOLTAGE: { title: 'UPS {{ups}}: input voltage high', body: '{{message}} ({{time}}).' },
  ALARM: { title: 'UPS {{ups}}: alarm', body: '{{message}} ({{time}}).\n' + UPS_LINE },
  'run-started': { title: 'Plan {{plan}}: {{direction}} started{{dryRun}}', body: 'Plan {{plan}} started a {{direction}} run{{dryRun}} at {{time}}.\nReason: {{reason}}' },
  'run-resumed': { title: 'Plan {{plan}}: {{direction}} resumed{{dryRun}}', body: 'Plan {{plan}} resumed its {{direction}} run{{dryRun}} after a restart of Node-RED ({{time}}).' },
  'phase-started': { title: 'Plan {{plan}}: phase {{phase}} started', body: 'Phase {{phase}} of the {{direction}}{{dryRun}} started at {{time}}.' },
  'phase-done': { title: 'Plan {{plan}}: phase {{phase}} {{result}}', body: 'Phase {{summary}}.\n{{direction}} run{{dryRun}} of plan {{plan}}, {{time}}' },
  'target-done': { title: 'Plan {{plan}}: {{target}} {{result}}', body: '{{target}} {{result}} after {{elapsed}}, in phase {{phase}} of the {{direction}}{{dryRun}} ({{time}}).' },
  'target-failed': { title: 'Plan {{plan}}: {{target}} failed', body: '{{target}} failed in phase {{phase}} of the {{direction}}{{dryRun}}: {{error}} ({{time}}).' },
  'run-report': { title: 'Plan {{plan}}: {{direction}} {{result}}{{dryRun}}', body: 'The {{direction}} run{{dryRun}} of plan {{plan}} {{result}} after {{elapsed}} ({{time}}).\n{{summary}}' },
  'run-refused': { title: 'Plan {{plan}}: {{refused}} refused', body: 'Plan {{plan}}: {{summary}} ({{time}})' },
  custom: { title: '{{title}}', body: '{{message}}' },
  flapping: { title: 'UPS {{ups}}: {{family}} is flapping', body: '{{changes}} changes of {{family}} within {{window}}; the latest: {{eventText}} at {{time}}.\nFurther changes are summarised in one message once it has been quiet for {{quiet}}.' },
  digest: { title: 'UPS {{ups}}: {{family}} flapped {{times}}', body: 'Between {{from}} and {{to}}: {{counts}}.\nNow {{power}} · charge {{charge}} · runtime {{runtime}}' },
  test: { title: 'Test notification from UPS orchestrator', body: 'If you can read this, the channel "{{channel}}" works ({{time}}).' },
};
