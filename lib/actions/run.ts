/**
 * runAction: the one place where an action's targets are resolved and acted on, the same way for
 * every platform — bounded concurrency, a timeout around every step, idempotency ("already off"),
 * dry-run, one result per target, resume without acting twice, and abort on close.
 */
import { setMaxListeners } from 'events';
import {
  ActionDriver,
  ActOptions,
  Target,
  TargetResult,
  TargetSelection,
  Interrupted,
  abortError,
  formatSeconds,
  selectTargets,
  unmatchedNames,
  wantedState,
  withTimeout,
} from './contract';

export interface ActionHooks {
  /** Called (and awaited) before a target is acted on: the plan persists "started" here. */
  beforeTarget?(target: Target): Promise<void>;
  /** Called with every result as soon as it is known. */
  onResult?(result: TargetResult): void | Promise<void>;
  /** Called whenever the counts change, for live status ("running 3/12"). */
  onProgress?(p: ActionProgress): void;
}

export interface ActionProgress {
  total: number;
  done: number;
  failed: number;
  running: number;
}

export interface ActionRequest {
  selection: TargetSelection;
  options: ActOptions;
  dryRun: boolean;
  /** How many targets are acted on at once (≥ 1). */
  concurrency: number;
  /** Bound for connecting and listing. */
  connectTimeoutMs: number;
  /** Bound for one target from first call to result; default: options.timeoutMs + 60 s. */
  targetTimeoutMs?: number;
  /** Results this run already has (after a restart): those targets are not acted on again. */
  previous?: TargetResult[];
  /** Targets that had started but not finished when Node-RED stopped. */
  interrupted?: string[];
  /** Act only on these of the selected targets (a mirrored startup: what the shutdown turned off). */
  only?: string[];
  hooks?: ActionHooks;
  signal: AbortSignal;
}

export interface ActionReport {
  operation: string;
  dryRun: boolean;
  /** True when every target succeeded (already, graceful, forced, skipped or dry-run without error). */
  ok: boolean;
  /** A failure before any target could be acted on (connect, authenticate, list). */
  error?: string;
  /** The run stopped early (timeout, cancel, node closed). */
  aborted: boolean;
  /** Stopped because Node-RED is stopping: targets without a result resume after the restart. */
  interrupted?: boolean;
  results: TargetResult[];
  ms: number;
}

/** A budget for a whole action, so a phase can derive its own timeout. */
export function actionBudgetMs(req: Pick<ActionRequest, 'options' | 'concurrency' | 'connectTimeoutMs' | 'targetTimeoutMs'>, targets: number): number {
  const per = req.targetTimeoutMs ?? req.options.timeoutMs + 60_000;
  return req.connectTimeoutMs + Math.ceil(Math.max(1, targets) / Math.max(1, req.concurrency)) * per;
}

export async function runAction(driver: ActionDriver, req: ActionRequest): Promise<ActionReport> {
  const t0 = Date.now();
  // Every target in flight listens on the run's signal (its timeout, its sleeps): that is by design.
  setMaxListeners(Math.max(50, req.concurrency * 4 + 10), req.signal);
  const op = req.options.operation;
  const results: TargetResult[] = [];
  const report = (extra: Partial<ActionReport> = {}): ActionReport => ({
    operation: op,
    dryRun: req.dryRun,
    ok: !extra.error && !extra.aborted && results.every((r) => r.ok),
    aborted: false,
    results,
    ms: Date.now() - t0,
    ...extra,
  });
  const push = async (r: TargetResult) => {
    results.push(r);
    await req.hooks?.onResult?.(r);
  };

  // Nothing to do in this direction: do not even connect (the host may well be off).
  if (op === 'none') {
    for (const n of req.selection.names ?? []) await push({ target: n, before: 'unknown', after: 'unknown', method: 'skipped', ms: 0, ok: true, detail: 'nothing to do in this direction' });
    return report();
  }
  let all: Target[];
  try {
    all = await withTimeout('connecting and listing targets', req.connectTimeoutMs, req.signal, (s) => driver.list(s, op));
  } catch (err) {
    if (req.signal.aborted) return report({ aborted: true, interrupted: req.signal.reason instanceof Interrupted, error: abortError(req.signal).message });
    const msg = (err as Error).message || String(err);
    // Name the targets the user asked for, so the run report says which ones were not reached.
    for (const n of req.selection.names ?? []) await push({ target: n, before: 'unknown', after: 'unknown', method: 'skipped', ms: 0, ok: false, error: msg });
    return report({ error: msg });
  }

  for (const n of unmatchedNames(all, req.selection)) {
    await push({ target: n, before: 'unknown', after: 'unknown', method: 'skipped', ms: 0, ok: false, error: `no target named "${n}" (found: ${all.map((t) => t.name).join(', ') || 'none'})` });
  }
  const only = req.only ? new Set(req.only) : null;
  const selected = selectTargets(all, req.selection, op).filter((t) => !only || only.has(t.name));
  const previous = new Map((req.previous ?? []).map((r) => [r.target, r]));
  const interrupted = new Set(req.interrupted ?? []);
  const progress: ActionProgress = { total: selected.length, done: 0, failed: 0, running: 0 };
  const tick = () => req.hooks?.onProgress?.({ ...progress });
  tick();

  const one = async (t: Target): Promise<TargetResult> => {
    const started = Date.now();
    const base = { target: t.name, id: t.id, before: t.power, ...(t.undoOnStartup ? { undoOnStartup: true } : {}) };
    const prev = previous.get(t.name);
    if (prev) return prev;
    const wanted = wantedState(op);
    if (req.dryRun) {
      try {
        const what = await withTimeout(`checking ${t.name}`, req.connectTimeoutMs, req.signal, (s) => driver.check(t, req.options, s));
        const already = wanted !== null && t.power === wanted;
        return { ...base, after: t.power, method: 'dry-run', ms: Date.now() - started, ok: true, detail: already ? `already ${wanted}; nothing would be done` : what };
      } catch (err) {
        return { ...base, after: t.power, method: 'dry-run', ms: Date.now() - started, ok: false, error: (err as Error).message };
      }
    }
    if (wanted !== null && t.power === wanted) return { ...base, after: t.power, method: 'already', ms: 0, ok: true, detail: `already ${wanted}` };
    if (interrupted.has(t.name) && !driver.repeatable) {
      return { ...base, after: t.power, method: 'skipped', ms: 0, ok: false, error: 'Node-RED stopped while this target was being acted on; a one-shot command is not repeated — check it by hand' };
    }
    await req.hooks?.beforeTarget?.(t);
    const limit = req.targetTimeoutMs ?? req.options.timeoutMs + 60_000;
    try {
      const opts = interrupted.has(t.name) ? { ...req.options, resumed: true } : req.options;
      const out = await withTimeout(`${op} ${t.name}`, limit, req.signal, (s) => driver.act(t, opts, s));
      return { ...base, after: out.after, method: out.method, ms: Date.now() - started, ok: true, detail: out.detail };
    } catch (err) {
      const msg = (err as Error).message || String(err);
      return { ...base, after: 'unknown', method: 'skipped', ms: Date.now() - started, ok: false, error: req.signal.aborted ? `aborted: ${msg}` : msg };
    }
  };

  // A fixed pool of workers over the selection keeps at most `concurrency` targets in flight.
  let next = 0;
  const worker = async () => {
    while (next < selected.length && !req.signal.aborted) {
      const t = selected[next++];
      progress.running++;
      tick();
      const r = await one(t);
      progress.running--;
      // A target cut short by Node-RED stopping has no result: it resumes after the restart.
      if (req.signal.aborted && req.signal.reason instanceof Interrupted && !previous.has(t.name) && !r.ok) {
        tick();
        continue;
      }
      progress.done++;
      if (!r.ok) progress.failed++;
      await push(r);
      tick();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(req.concurrency, selected.length || 1)) }, worker));
  if (req.signal.aborted) {
    // Targets never started because of a timeout or cancel are reported; an interrupted run resumes them.
    if (!(req.signal.reason instanceof Interrupted)) {
      const seen = new Set(results.map((r) => r.target));
      for (const t of selected) {
        if (!seen.has(t.name)) await push({ target: t.name, id: t.id, before: t.power, after: t.power, method: 'skipped', ms: 0, ok: false, error: `not started: ${abortError(req.signal).message}` });
      }
      return report({ aborted: true, error: abortError(req.signal).message });
    }
    return report({ aborted: true, interrupted: true });
  }
  return report();
}

/** A one-line summary for node status and logs: "3 off (1 forced), 1 already, 1 failed". */
export function summarise(r: ActionReport): string {
  if (r.error && r.results.every((x) => !x.ok)) return `failed: ${r.error}`;
  const c = countMethods(r.results);
  const parts: string[] = [];
  if (r.dryRun) parts.push(`${c['dry-run']} checked`);
  if (c.graceful) parts.push(`${c.graceful} done`);
  if (c.forced) parts.push(`${c.forced} forced`);
  if (c.already) parts.push(`${c.already} already`);
  if (c.skippedOk) parts.push(`${c.skippedOk} skipped`);
  if (c.failed) parts.push(`${c.failed} failed`);
  if (!parts.length) parts.push('no targets');
  return parts.join(', ') + ` in ${formatSeconds(r.ms)}`;
}

export function countMethods(results: TargetResult[]): Record<string, number> & { failed: number; skippedOk: number } {
  const c: Record<string, number> = { graceful: 0, forced: 0, already: 0, 'dry-run': 0, skippedOk: 0, failed: 0 };
  for (const r of results) {
    if (!r.ok) c.failed++;
    else if (r.method === 'skipped') c.skippedOk++;
    else c[r.method]++;
  }
  return c as Record<string, number> & { failed: number; skippedOk: number };
}
