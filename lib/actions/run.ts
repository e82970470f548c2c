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
  abortableSleep,
  selectTargets,
  unmatchedNames,
  wantedState,
  withTimeout,
} from './contract';

/**
 * The one way a driver says "the platform does not answer (yet)": an error with
 * `notReachable === true` (SshError of kind 'unreachable', a virsh that cannot reach libvirtd, or
 * this class). Errors of the shared network layers are recognised by their socket error code or an
 * HTTP gateway status, so a driver built on them needs nothing extra. Authentication, host-key and
 * certificate errors never count: waiting would not fix them.
 */
export class NotReachable extends Error {
  readonly notReachable = true;
  constructor(message: string) {
    super(message);
    this.name = 'NotReachable';
  }
}

/** Socket errors of a host that is down, booting, or not routed yet. */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE']);
/** Gateway answers of an API whose backend is not up yet (Proxmox 595/596: node not reachable). */
const UNREACHABLE_STATUS = new Set([502, 503, 504, 595, 596]);

export function isNotReachable(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as { notReachable?: unknown; code?: unknown; status?: unknown };
  if (typeof e.notReachable === 'boolean') return e.notReachable;
  if (typeof e.code === 'string' && UNREACHABLE_CODES.has(e.code)) return true;
  return typeof e.status === 'number' && UNREACHABLE_STATUS.has(e.status);
}

/** Pause between attempts while a platform comes back: 2 s, doubling, at most 15 s. */
export const REACH_RETRY = { firstMs: 2000, maxMs: 15_000 };

/**
 * A shutdown after a stopped startup: how often targets whose start was still in flight are listed
 * again, and the longest they are waited for (from when the startup was stopped; at most the
 * action's own timeout).
 */
export const SETTLE = { pollMs: 2000, maxMs: 60_000 };

/** A wait worth telling in the run's timeline: for a platform to come back, or for a start to land. */
export interface WaitNote {
  /** `waiting` once when it starts; then once `answered` or `gave-up` (time out, error, abort). */
  state: 'waiting' | 'answered' | 'gave-up';
  /** `reachable`: startup, the platform did not answer yet; `settle`: shutdown, a start still in flight. */
  kind: 'reachable' | 'settle';
  /** The target, when the wait is for one (not for connecting and listing). */
  target?: string;
  /** How long it has waited so far. */
  ms: number;
  text: string;
}

export interface ActionHooks {
  /** Called (and awaited) before a target is acted on: the plan persists "started" here. */
  beforeTarget?(target: Target): Promise<void>;
  /** Called with every result as soon as it is known. */
  onResult?(result: TargetResult): void | Promise<void>;
  /** Called whenever the counts change, for live status ("running 3/12"). */
  onProgress?(p: ActionProgress): void;
  /** Called when a wait starts and when it ends, for the run's timeline. */
  onWaiting?(w: WaitNote): void;
}

export interface ActionProgress {
  /** Targets selected; undefined until listing succeeded (a startup may wait for that first). */
  total?: number;
  done: number;
  failed: number;
  running: number;
  /** Startup only: the platform does not answer yet and the action waits ("waiting for kvm1 to come back… 40 s"). */
  waiting?: string;
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
  /**
   * The run's direction. In a startup (not a dry-run), a platform that is not reachable yet is
   * waited for: listing and acting are retried with backoff instead of failing at once.
   */
  direction?: 'shutdown' | 'startup';
  /**
   * Startup: how long the platform is waited for, from the start of the action, shared by listing
   * and by reaching each target (one deadline, not one per step); default the per-target bound.
   */
  reachableWaitMs?: number;
  /**
   * Shutdown only: targets a stopped startup had asked to start (or was starting) at `since` (ms
   * since the epoch). The platform may still carry such a start out after we stopped waiting for
   * it (virsh start sent, a power-on task accepted): found off, or not matched by "all running"
   * because off, they are listed again until they are on, then shut down; if they stay off until
   * `since` + the settle window (settleWindowMs), they are `already` off.
   */
  settle?: { names: string[]; since: number };
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

/** How long a shutdown waits for starts a stopped startup may still carry out (from `settle.since`). */
export function settleWindowMs(options: ActOptions): number {
  return Math.min(SETTLE.maxMs, options.timeoutMs);
}

/**
 * A budget for a whole action, so a phase can derive its own timeout: listing, then every target
 * in turn of `concurrency`. A startup adds its wait for the platform (and one last try after it);
 * a shutdown that stopped a startup adds the settle window.
 */
export function actionBudgetMs(
  req: Pick<ActionRequest, 'options' | 'concurrency' | 'connectTimeoutMs' | 'targetTimeoutMs'> & Partial<Pick<ActionRequest, 'direction' | 'dryRun' | 'reachableWaitMs' | 'settle'>>,
  targets: number,
): number {
  const per = req.targetTimeoutMs ?? req.options.timeoutMs + 60_000;
  const acting = req.connectTimeoutMs + Math.ceil(Math.max(1, targets) / Math.max(1, req.concurrency)) * per;
  if (req.dryRun) return acting;
  if (req.direction === 'startup') return acting + (req.reachableWaitMs ?? per) + req.connectTimeoutMs;
  if (req.direction === 'shutdown' && req.settle?.names.length) return acting + settleWindowMs(req.options);
  return acting;
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
  // A listener's mistake must not end the action.
  const note = (w: WaitNote) => {
    try {
      req.hooks?.onWaiting?.(w);
    } catch {
      /* the timeline misses one entry; the action goes on */
    }
  };

  // Nothing to do in this direction: do not even connect (the host may well be off).
  if (op === 'none') {
    for (const n of req.selection.names ?? []) await push({ target: n, before: 'unknown', after: 'unknown', method: 'skipped', ms: 0, ok: true, detail: 'nothing to do in this direction' });
    return report();
  }
  const limit = req.targetTimeoutMs ?? req.options.timeoutMs + 60_000;
  // After mains returns, hosts boot for minutes: a startup waits for them instead of failing.
  const waits = req.direction === 'startup' && !req.dryRun;
  const waitMs = req.reachableWaitMs ?? limit;
  // One deadline for the whole wait (listing and reaching every target), as actionBudgetMs counts it.
  const reachUntil = t0 + waitMs;
  /** The pause before the next try, cut to end at `until`; null when no try is left before it. */
  const nextPause = (pause: number, until: number): number | null => {
    const left = until - Date.now();
    return left <= 0 ? null : Math.min(pause, left);
  };
  // What the action connects to, when the driver says (`label`), for "waiting for kvm1…".
  const label = typeof (driver as { label?: unknown }).label === 'string' ? ((driver as { label?: string }).label as string) : '';
  const listing = 'connecting and listing targets';
  const listTimeout = `${listing}: no answer within ${formatSeconds(req.connectTimeoutMs)}`;
  let all: Target[] = [];
  let listWaited = 0;
  const t1 = Date.now();
  let listWaitNoted = false;
  try {
    for (let pause = REACH_RETRY.firstMs; ; pause = Math.min(pause * 2, REACH_RETRY.maxMs)) {
      try {
        all = await withTimeout(listing, req.connectTimeoutMs, req.signal, (s) => driver.list(s, op));
        break;
      } catch (err) {
        if (req.signal.aborted || !waits) throw err;
        const silent = isNotReachable(err) || (err instanceof Error && err.message === listTimeout);
        const waited = Date.now() - t1;
        if (!silent) throw err;
        const wait = nextPause(pause, reachUntil);
        if (wait === null) throw new NotReachable(`${label || 'the connection'} did not come back within ${formatSeconds(waitMs)}: ${(err as Error).message || String(err)}`);
        if (!listWaitNoted) {
          listWaitNoted = true;
          note({ state: 'waiting', kind: 'reachable', ms: waited, text: `waiting for ${label || 'the connection'} to come back (${(err as Error).message || String(err)}); up to ${formatSeconds(waitMs)}` });
        }
        // No total yet: how many targets there are is not known before listing.
        req.hooks?.onProgress?.({ done: 0, failed: 0, running: 0, waiting: waitingText(label || 'the connection', waited) });
        await abortableSleep(wait, req.signal);
        listWaited = Date.now() - t1;
      }
    }
    if (listWaitNoted) note({ state: 'answered', kind: 'reachable', ms: Date.now() - t1, text: `${label || 'the connection'} answered after ${formatSeconds(Date.now() - t1)}` });
  } catch (err) {
    if (listWaitNoted) note({ state: 'gave-up', kind: 'reachable', ms: Date.now() - t1, text: stoppedWaiting(label || 'the connection', Date.now() - t1, req.signal, err) });
    if (req.signal.aborted) return report({ aborted: true, interrupted: req.signal.reason instanceof Interrupted, error: abortError(req.signal).message });
    const msg = (err as Error).message || String(err);
    // Name the targets the user asked for, so the run report says which ones were not reached.
    for (const n of req.selection.names ?? []) await push({ target: n, before: 'unknown', after: 'unknown', method: 'skipped', ms: 0, ok: false, error: msg });
    return report({ error: msg });
  }

  for (const n of unmatchedNames(all, req.selection)) {
    await push({ target: n, before: 'unknown', after: 'unknown', method: 'skipped', ms: 0, ok: false, error: `no target named "${n}" (found: ${all.map((t) => t.name).join(', ') || 'none'})` });
  }
  const listedAt = Date.now();
  const previous = new Map((req.previous ?? []).map((r) => [r.target, r]));
  const interrupted = new Set(req.interrupted ?? []);
  const wanted = wantedState(op);
  // Starts a stopped startup may still carry out. Not those this run already acted on (a resumed
  // shutdown): those are off because this run turned them off.
  const settling = new Set(
    req.direction === 'shutdown' && !req.dryRun && wanted !== null && wanted !== 'on' && req.settle ? req.settle.names.filter((n) => !previous.has(n) && !interrupted.has(n)) : [],
  );
  const notUp = (t: Target) => t.power === 'off' || t.power === 'suspended';
  const mayComeUp = (t: Target) => settling.has(t.name) && notUp(t);
  const settleUntil = req.settle ? req.settle.since + settleWindowMs(req.options) : 0;
  // "All running" counts a target that may still come up as running: it would otherwise be missed.
  const view = all.map((t) => (mayComeUp(t) && listedAt < settleUntil ? { ...t, power: 'on' as const } : t));
  const picked = new Set(selectTargets(view, req.selection, op));
  const only = req.only ? new Set(req.only) : null;
  const inSelection = all.filter((t, i) => picked.has(view[i]) && (!only || only.has(t.name)));
  // Those go last: the others are shut down meanwhile, and their start has had longer to land.
  const selected = [...inSelection.filter((t) => !mayComeUp(t)), ...inSelection.filter(mayComeUp)];
  const progress: ActionProgress = { total: selected.length, done: 0, failed: 0, running: 0 };
  // Targets waiting for their platform to come back, with what to show.
  const waiting = new Map<string, string>();
  const tick = () => {
    const w = [...waiting.values()];
    req.hooks?.onProgress?.({ ...progress, ...(w.length ? { waiting: w.length > 1 ? `${w[0]} (+${w.length - 1} more)` : w[0] } : {}) });
  };
  tick();

  // One listing at a time for every target waiting to come up, at most every SETTLE.pollMs.
  let latest = { at: listedAt, all };
  let polling: Promise<void> | null = null;
  const relist = (): Promise<void> =>
    (polling ??= (async () => {
      const pause = Math.min(latest.at + SETTLE.pollMs, settleUntil) - Date.now();
      if (pause > 0) await abortableSleep(pause, req.signal);
      try {
        latest = { at: Date.now(), all: await withTimeout(listing, req.connectTimeoutMs, req.signal, (s) => driver.list(s, op)) };
      } catch (err) {
        if (req.signal.aborted) throw err;
        latest = { at: Date.now(), all: latest.all }; // no answer this time: still as last seen
      }
    })().finally(() => {
      polling = null;
    }));
  /** Wait (bounded) for a target a stopped startup was starting; resolves with how it was last listed. */
  const comeUp = async (t: Target): Promise<{ target: Target; up: boolean }> => {
    for (;;) {
      const cur = latest.all.find((x) => x.id === t.id) ?? latest.all.find((x) => x.name === t.name) ?? t;
      if (!notUp(cur)) return { target: cur, up: true };
      if (Date.now() >= settleUntil) return { target: cur, up: false };
      await relist();
    }
  };

  const one = async (listed: Target): Promise<TargetResult> => {
    let t = listed;
    const prev = previous.get(t.name);
    if (prev) return prev;
    let settled: { detail: string } | null = null;
    if (!req.dryRun && mayComeUp(t) && Date.now() >= settleUntil) {
      // Its time is over (a later phase, a resumed run): had the start gone through, it would be on.
      settled = { detail: `${t.power}; the start the stopped startup had asked for did not bring it up` };
    } else if (!req.dryRun && mayComeUp(t)) {
      const t2 = Date.now();
      const left = Math.max(0, settleUntil - t2);
      note({ state: 'waiting', kind: 'settle', target: t.name, ms: 0, text: `${t.name} is ${t.power}, but the startup this shutdown stopped had asked to start it: waiting up to ${formatSeconds(left)} for it to come up, to shut it down` });
      waiting.set(t.name, `waiting for ${t.name} to finish starting…`);
      tick();
      try {
        const s = await comeUp(t);
        const ms = Date.now() - t2;
        if (s.up) {
          note({ state: 'answered', kind: 'settle', target: t.name, ms, text: `${t.name} came up after ${formatSeconds(ms)} (the stopped startup's start went through): shutting it down` });
          settled = { detail: `came up ${formatSeconds(ms)} into this run: the start the stopped startup had asked for went through` };
        } else {
          note({ state: 'gave-up', kind: 'settle', target: t.name, ms, text: `${t.name} stayed ${s.target.power} for ${formatSeconds(ms)}: the stopped startup's start did not bring it up` });
          settled = { detail: `${s.target.power}; waited ${formatSeconds(ms)} for the start the stopped startup had asked for, it did not come up` };
        }
        t = s.target;
      } catch (err) {
        const ms = Date.now() - t2;
        note({ state: 'gave-up', kind: 'settle', target: t.name, ms, text: stoppedWaiting(t.name, ms, req.signal, err) });
        return { target: t.name, id: t.id, before: t.power, after: t.power, method: 'skipped', ms, ok: false, error: `aborted: ${abortError(req.signal).message}` };
      } finally {
        if (waiting.delete(t.name)) tick();
      }
    }
    const started = Date.now();
    const base = { target: t.name, id: t.id, before: t.power, ...(t.undoOnStartup ? { undoOnStartup: true } : {}) };
    if (req.dryRun) {
      try {
        const what = await withTimeout(`checking ${t.name}`, req.connectTimeoutMs, req.signal, (s) => driver.check(t, req.options, s));
        const already = wanted !== null && t.power === wanted;
        return { ...base, after: t.power, method: 'dry-run', ms: Date.now() - started, ok: true, detail: already ? `already ${wanted}; nothing would be done` : what };
      } catch (err) {
        return { ...base, after: t.power, method: 'dry-run', ms: Date.now() - started, ok: false, error: (err as Error).message };
      }
    }
    if (wanted !== null && t.power === wanted) return { ...base, after: t.power, method: 'already', ms: 0, ok: true, detail: settled ? `already ${settled.detail}` : `already ${wanted}` };
    if (interrupted.has(t.name) && !driver.repeatable) {
      return { ...base, after: t.power, method: 'skipped', ms: 0, ok: false, error: 'Node-RED stopped while this target was being acted on; a one-shot command is not repeated — check it by hand' };
    }
    const who = label || t.name;
    const opts = interrupted.has(t.name) ? { ...req.options, resumed: true } : req.options;
    // Waiting for the platform at this target: the retries stop at the shared deadline or a second
    // before the target's own limit, whichever comes first.
    const giveUpAt = Math.min(reachUntil, started + limit - 1000);
    let waitNoted = false;
    let answeredAfter = 0;
    /**
     * One step on this target. In a startup it is tried again while the platform does not answer
     * yet: a step that could not reach it did nothing.
     */
    const attempt = async <T>(s: AbortSignal, fn: () => Promise<T>): Promise<T> => {
      for (let pause = REACH_RETRY.firstMs; ; pause = Math.min(pause * 2, REACH_RETRY.maxMs)) {
        const tried = Date.now();
        try {
          const r = await fn();
          if (waitNoted) answeredAfter = tried - started;
          return r;
        } catch (err) {
          if (!waits || s.aborted || !isNotReachable(err)) throw err;
          const waited = Date.now() - started;
          const wait = nextPause(pause, giveUpAt);
          if (wait === null) throw new NotReachable(`${who} did not come back within ${formatSeconds(giveUpAt - t0)}: ${(err as Error).message || String(err)}`);
          if (!waitNoted) {
            waitNoted = true;
            note({ state: 'waiting', kind: 'reachable', target: t.name, ms: waited, text: `waiting for ${who} to come back (${(err as Error).message || String(err)}); up to ${formatSeconds(Math.max(0, giveUpAt - Date.now()))}` });
          }
          waiting.set(t.name, waitingText(who, waited));
          tick();
          await abortableSleep(wait, s);
        }
      }
    };
    try {
      // One bound for the target from the first call to its result.
      const out = await withTimeout(`${op} ${t.name}`, limit, req.signal, async (s) => {
        // Reaching the target is not acting on it: it is not marked started, so a restart during
        // the wait leaves it to be reached again, not reported as interrupted.
        if (driver.reach) await attempt(s, () => driver.reach!(t, opts, s));
        await req.hooks?.beforeTarget?.(t);
        return attempt(s, () => driver.act(t, opts, s));
      }).finally(() => {
        if (waiting.delete(t.name)) tick();
      });
      if (waitNoted) note({ state: 'answered', kind: 'reachable', target: t.name, ms: answeredAfter, text: `${who} answered after ${formatSeconds(answeredAfter)}` });
      const waited = listWaited + answeredAfter;
      let detail = waited ? `${out.detail ?? out.method} (after waiting ${formatSeconds(waited)} for ${who} to come back)` : out.detail;
      if (settled) detail = `${detail ?? out.method} (${settled.detail})`;
      return { ...base, after: out.after, method: out.method, ms: Date.now() - started, ok: true, detail };
    } catch (err) {
      const msg = (err as Error).message || String(err);
      if (waitNoted) note({ state: 'gave-up', kind: 'reachable', target: t.name, ms: Date.now() - started, text: stoppedWaiting(who, Date.now() - started, req.signal, err) });
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

function waitingText(what: string, ms: number): string {
  return `waiting for ${what} to come back… ${Math.round(ms / 1000)} s`;
}

/** How a wait ended without an answer: given up (its time ran out, an error) or stopped (cancel, timeout, Node-RED stopping). */
function stoppedWaiting(what: string, ms: number, signal: AbortSignal, err: unknown): string {
  if (signal.aborted) return `stopped waiting for ${what} after ${formatSeconds(ms)}: ${abortError(signal).message}`;
  return `gave up waiting for ${what} after ${formatSeconds(ms)}: ${(err as Error)?.message || String(err)}`;
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
