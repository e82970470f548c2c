/**
 * The run machinery of one plan: one run at a time, phases walked in order (mirrored for startup),
 * actions driven and awaited, every step recorded and written to disk before it is acted on, resume
 * after a restart without acting on any target twice, cancel of the phases not yet started, and a
 * run report at the end. No Node-RED in here: phases and actions are handed in as handles.
 */
import { randomUUID } from 'crypto';
import { Interrupted, TargetResult, abortError, abortableSleep, formatSeconds } from '../actions/contract';
import { ActionReport, summarise } from '../actions/run';
import { PlanFile, PlanStore } from './store';
import { bootStamp, bootTime, readBootId, restartedSince } from '../machine/boot';
import {
  ActionHandle,
  ActionRecord,
  Direction,
  Origin,
  PhaseHandle,
  PhaseRecord,
  PlanStatus,
  Restore,
  RunEvent,
  RunRecord,
  RunRef,
  RunReport,
  RunTotals,
  Settle,
} from './types';

export interface PlanOptions {
  id: string;
  name: string;
  /** null: keep state in memory only (tests of the engine alone). */
  store: PlanStore | null;
  allowRemote: boolean;
  armed: boolean;
  now?: () => number;
  /** When the machine booted (ms since the epoch); default from os.uptime(). Used only without a boot id. */
  bootTime?: () => number;
  /** This boot's id (Linux: /proc/sys/kernel/random/boot_id), or null where there is none. */
  bootId?: () => string | null;
  /** Added to a phase's derived timeout (connecting, dispatch, status); default 10 s. */
  phaseMarginMs?: number;
  /** After a shutdown run cancelled on request, start again what it turned off (default on). */
  restoreOnCancel?: boolean;
  log?: (level: 'info' | 'warn' | 'error', text: string) => void;
}

export interface RunRequest {
  direction: Direction;
  dryRun: boolean;
  origin: Origin;
  /** The topic that asked for it (shutdown, startup, dry-run, restore, a HA button…). */
  topic: string;
  /** The threshold's reason, when it came from one. */
  reason?: unknown;
}

export type RequestResult =
  | { started: true; run: RunRef }
  /** `later`: the request was held while the saved state loaded; resolves with what became of it. */
  | { started: false; queued: boolean; reason: string; later?: Promise<RequestResult> };

/** Finds the phases of a direction in run order; throws when the wiring is not one chain. */
export type ChainResolver = (direction: Direction) => PhaseHandle[];

const TIMELINE_MAX = 5000;
/** Added to a phase's derived timeout: connecting, dispatch and status overhead. */
const PHASE_MARGIN_MS = 10_000;
/** The topic of the startup a plan starts itself after a cancelled shutdown (restoreOnCancel). */
export const CANCEL_RESTORE_TOPIC = 'cancel-restore';
/** How long a preempting shutdown waits for the run it replaced to let go of its targets. */
const PREEMPT_SETTLE_MS = 5000;

/** Why a startup run or a dry-run was stopped: a real shutdown took over. Not a restart (Interrupted). */
class Preempted extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Preempted';
  }
}

export class Plan {
  readonly id: string;
  name: string;
  allowRemote: boolean;
  private armed: boolean;
  private readonly configuredArmed: boolean;
  private readonly store: PlanStore | null;
  private readonly now: () => number;
  private readonly log: (level: 'info' | 'warn' | 'error', text: string) => void;
  private record: RunRecord | null = null;
  private active: Promise<void> | null = null;
  private runAc: AbortController | null = null;
  private cancelAc: AbortController | null = null;
  /** The phases of the run in progress (to finish a run that is preempted). */
  private handles: Map<string, PhaseHandle> | null = null;
  /** A startup waiting for the shutdown run to end; saved, so it survives a restart (resolve comes back with resume()). */
  private queued: { req: RunRequest; resolve: ChainResolver | null } | null = null;
  /**
   * Until the saved state is loaded (and a run found there resumed), requests are held: they must
   * see the saved armed switch and must not start a run beside the one about to resume.
   */
  private settling = false;
  private held: Array<{ req: RunRequest; resolve: ChainResolver; answer: (r: RequestResult) => void }> = [];
  private listeners = new Set<(e: RunEvent) => void>();
  private persistFailed = false;
  private closed = false;
  private interruptedRun = false;
  private stalled: RunRecord | null = null;
  private readonly bootTime: () => number;
  private readonly bootId: string | null;
  private readonly phaseMarginMs: number;
  /** What the last real shutdown turned off, per action id (see PlanFile.restore). */
  private restore: Restore | null = null;
  /** A finished run is shown as done/failed until the plan is armed, disarmed or runs again. */
  private showLast = false;
  private readonly restoreOnCancel: boolean;
  /** The chain resolver of the run in progress (the one it was requested or resumed with): the startup after a cancel uses it. */
  private runResolve: ChainResolver | null = null;

  constructor(o: PlanOptions) {
    this.id = o.id;
    this.name = o.name;
    this.allowRemote = o.allowRemote;
    this.armed = o.armed;
    this.configuredArmed = o.armed;
    this.store = o.store;
    this.now = o.now ?? Date.now;
    this.log = o.log ?? (() => undefined);
    this.bootTime = o.bootTime ?? bootTime;
    this.bootId = (o.bootId ?? readBootId)();
    this.phaseMarginMs = o.phaseMarginMs ?? PHASE_MARGIN_MS;
    this.restoreOnCancel = o.restoreOnCancel ?? true;
  }

  /** Did the machine itself restart since `saved` was written (lib/machine/boot.ts)? */
  private machineRestartedSince(saved: PlanFile): boolean {
    return restartedSince(saved, { bootId: this.bootId, bootTime: this.bootTime });
  }

  /** Load saved state. Returns the run that was in progress when Node-RED stopped, if any. */
  async init(): Promise<RunRecord | null> {
    this.settling = true;
    let rec: RunRecord | null = null;
    try {
      rec = await this.load();
    } catch (err) {
      this.log('error', `plan "${this.name}": cannot load the saved state: ${(err as Error).message}`);
    }
    // Held requests run now, or right after the resume when there is a run to resume.
    if (!rec) this.settle();
    return rec;
  }

  private async load(): Promise<RunRecord | null> {
    if (!this.store) return null;
    let saved: PlanFile | null = null;
    try {
      saved = await this.store.load();
    } catch (err) {
      this.log('error', (err as Error).message);
    }
    if (!saved) return null;
    // The saved switch (arm/disarm, Home Assistant) survives restarts, unless the node's setting was changed since.
    const changed = saved.configuredArmed !== undefined && saved.configuredArmed !== this.configuredArmed;
    this.armed = changed ? this.configuredArmed : saved.armed;
    this.record = saved.run;
    this.restore = saved.restore ?? null;
    if (saved.queued && !this.queued) this.queued = { req: saved.queued, resolve: null };
    const rec = saved.run;
    // The machine itself restarted since the record was written: the power was cut (or the host
    // rebooted) mid-shutdown. Resuming would shut down again what has just come back up.
    if (rec && rec.state === 'running' && rec.direction === 'shutdown' && !rec.dryRun && this.machineRestartedSince(saved)) {
      rec.state = 'failed';
      rec.endedAt = this.now();
      this.addTimeline(rec, 'run-not-resumed', 'the machine restarted during this shutdown run (power cut or reboot): not resumed, so nothing that came back up is shut down again');
      this.log('warn', `plan "${this.name}": the shutdown run ${short(rec.id)} was cut short by a restart of this machine; it is not resumed`);
      this.restore = mergeRestore(this.restore, restoreOf(rec));
      await this.persist();
      this.emitState();
      return null;
    }
    this.emitState();
    return rec?.state === 'running' ? rec : null;
  }

  subscribe(fn: (e: RunEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  isArmed(): boolean {
    return this.armed;
  }

  running(): RunRef | null {
    return this.record?.state === 'running' && this.active ? refOf(this.record) : null;
  }

  /** The run in progress, or one paused by a redeploy (it resumes when its nodes are back): a dry-run must not replace a paused real shutdown. */
  private inProgress(): RunRef | null {
    return this.running() ?? (this.stalled && this.stalled === this.record ? refOf(this.stalled) : null);
  }

  /** The current or last run record (a copy). */
  /**
   * The longest the phases may take, one after another: each phase's own timeout, or the one derived
   * from its actions as a run derives it, counting the targets each action resolved in the last run
   * (a pattern or "all running" cannot be counted before listing). The time budget's plan duration.
   */
  expectedDurationMs(chain: PhaseHandle[], direction: Direction = 'shutdown'): number {
    const known = new Map<string, number>();
    for (const p of this.lastRun()?.phases ?? []) for (const a of p.actions) if (a.total !== undefined) known.set(a.id, a.total);
    return chain.reduce((sum, h) => sum + (h.settings.timeoutMs ?? derivedPhaseMs(h.settings, h.actions(), (a) => known.get(a.id), this.phaseMarginMs, direction)), 0);
  }

  lastRun(): RunRecord | null {
    return this.record ? (JSON.parse(JSON.stringify(this.record)) as RunRecord) : null;
  }

  status(): PlanStatus {
    const r = this.record;
    const running = !!(r && r.state === 'running' && this.active);
    const last = r && r.state !== 'running' ? r : null;
    let state: PlanStatus['state'] = this.armed ? 'armed' : 'idle';
    if (running) state = 'running';
    else if (last && this.showLast) state = last.state === 'failed' ? 'failed' : 'done';
    const current = running ? r!.phases.find((p) => p.state === 'running' || p.state === 'waiting') : undefined;
    const targets = r ? r.phases.flatMap((p) => p.actions.flatMap((a) => a.results)) : [];
    return {
      state,
      armed: this.armed,
      allowRemote: this.allowRemote,
      run: running ? refOf(r!) : null,
      currentPhase: current?.name ?? null,
      progress: running
        ? {
            phasesDone: r!.phases.filter((p) => p.state === 'done' || p.state === 'failed' || p.state === 'skipped').length,
            phases: r!.phases.length,
            targetsDone: targets.length,
            targets: Math.max(targets.length, r!.phases.reduce((n, p) => n + p.actions.reduce((m, a) => m + Math.max(a.started.length, a.results.length), 0), 0)),
          }
        : null,
      lastResult: last ? { id: last.id, direction: last.direction, dryRun: last.dryRun, state: last.state, endedAt: last.endedAt ?? last.startedAt, totals: totalsOf(last) } : null,
    };
  }

  async setArmed(armed: boolean, by: string): Promise<void> {
    this.armed = armed;
    this.showLast = false;
    this.log('info', `plan "${this.name}" ${armed ? 'armed' : 'disarmed'} by ${by}`);
    this.emitState();
    await this.persist();
  }

  /** Start a run, unless one is running (then a startup is queued, anything else refused). */
  request(req: RunRequest, resolve: ChainResolver): RequestResult {
    const refuse = (reason: string, queued = false): RequestResult => {
      this.log(queued ? 'info' : 'warn', `plan "${this.name}": ${req.dryRun ? 'dry-run' : req.direction} (${req.topic}, ${req.origin}) ${queued ? 'queued' : 'not started'}: ${reason}`);
      const what = req.dryRun ? 'dry-run' : req.direction;
      // A shutdown asked for while a real shutdown runs is no news: that run is doing it.
      const running = this.inProgress();
      const duplicate = what === 'shutdown' && !!running && running.direction === 'shutdown' && !running.dryRun;
      this.emit({ type: queued ? 'run-queued' : 'run-refused', refused: { what, reason, by: req.origin, duplicate }, message: `${what} ${queued ? 'queued' : 'not started'}: ${reason}` });
      return { started: false, queued, reason };
    };
    if (this.closed) return refuse('the plan is stopping');
    if (this.settling) {
      const reason = 'the plan is loading its saved state; this request runs as soon as it is loaded';
      this.log('info', `plan "${this.name}": ${req.dryRun ? 'dry-run' : req.direction} (${req.topic}, ${req.origin}) held: ${reason}`);
      let answer: (r: RequestResult) => void = () => undefined;
      const later = new Promise<RequestResult>((r) => (answer = r));
      this.held.push({ req, resolve, answer });
      return { started: false, queued: true, reason, later };
    }
    if (req.origin === 'remote' && !req.dryRun && !this.allowRemote) return refuse('remote runs are not allowed for this plan (enable "allow runs from Home Assistant / MQTT")');
    // Power failed again while a startup waited for the shutdown to end: that startup must not follow.
    if (req.direction === 'shutdown' && !req.dryRun && this.queued) {
      this.log('warn', `plan "${this.name}": the queued startup is dropped: a shutdown was asked for again (${req.topic}, ${req.origin})`);
      this.queued = null;
      void this.persist();
    }
    if (!req.dryRun && !this.armed) return refuse('the plan is disarmed');
    const cur = this.inProgress();
    // A real shutdown never waits behind a startup or a dry-run (the power may be failing again), and a
    // real startup never waits behind a dry-run (the restore comes once; a dry-run changes nothing).
    const preempts = !!cur && !req.dryRun && (cur.dryRun || (req.direction === 'shutdown' && cur.direction === 'startup'));
    if (cur && !preempts) {
      if (req.direction === 'startup' && cur.direction === 'shutdown' && !req.dryRun && !cur.dryRun) {
        this.queued = { req: { ...req }, resolve };
        void this.persist();
        return refuse(`a shutdown run (${short(cur.id)}) is in progress; the startup follows when it ends`, true);
      }
      return refuse(`run ${short(cur.id)} (${cur.dryRun ? 'dry-run' : cur.direction}) is in progress`);
    }
    let chain: PhaseHandle[];
    try {
      chain = resolve(req.direction);
    } catch (err) {
      return refuse((err as Error).message);
    }
    if (chain.length === 0) return refuse(`the plan has no ${req.direction} phases`);
    let settled: Promise<void> | undefined;
    let settle: Settle | null = null;
    if (preempts) ({ settled, settle } = this.preempt(req));
    if (this.stalled) {
      // A run paused by a redeploy is replaced by this one: it must not come back after it.
      this.log('warn', `plan "${this.name}": paused run ${short(this.stalled.id)} is dropped: run of ${req.direction} started instead`);
      this.stalled = null;
    }
    const now = this.now();
    const rec: RunRecord = {
      version: 1,
      id: randomUUID(),
      plan: this.id,
      planName: this.name,
      direction: req.direction,
      dryRun: req.dryRun,
      origin: req.origin,
      trigger: { topic: req.topic, ...(req.reason !== undefined ? { reason: req.reason } : {}) },
      state: 'running',
      startedAt: now,
      phases: chain.map((h) => ({ id: h.id, name: h.name, state: 'pending', actions: [] })),
      timeline: [],
      resumed: [],
      // A startup mirrors the last shutdown: only what it turned off is started.
      ...(req.direction === 'startup' && this.restore ? { restrict: this.restore } : {}),
      ...(settle && req.direction === 'shutdown' ? { settle } : {}),
    };
    this.record = rec;
    this.runResolve = resolve;
    this.showLast = false;
    const what = `${req.dryRun ? 'dry-run of the ' : ''}${req.direction} run ${short(rec.id)}`;
    this.addTimeline(rec, 'run-started', `${what} started (${req.topic}, ${req.origin}): ${chain.map((h) => h.name).join(' → ')}`);
    if (req.topic === CANCEL_RESTORE_TOPIC && typeof req.reason === 'string') this.addTimeline(rec, 'restore-after-cancel', req.reason);
    if (rec.settle) {
      const names = [...new Set(Object.values(rec.settle.actions).flat())];
      this.addTimeline(rec, 'settle', `the stopped startup ${short(rec.settle.from)} had asked to start ${names.join(', ')}: a start may still go through, so those found off are waited for (bounded) and shut down once up`);
    }
    this.log('info', `plan "${this.name}": ${what} started by ${req.topic} (${req.origin})`);
    this.emit({ type: 'run-started', message: `${what} started by ${req.topic}` });
    this.startLoop(rec, new Map(chain.map((h) => [h.id, h])), settled);
    return { started: true, run: refOf(rec) };
  }

  /**
   * Stop the run in progress because a real run takes over (a shutdown over a startup or a dry-run, a
   * startup over a dry-run): its work in
   * flight is aborted, phases and actions not finished are closed with the reason, and its report
   * (state cancelled, `preemptedBy`) is sent. Resolves when its loop has let go (bounded).
   */
  private preempt(req: RunRequest): { settled: Promise<void>; settle: Settle | null } {
    const old = this.record!;
    // Read before the run is closed below: which targets its actions had asked to start.
    const settle = !old.dryRun && old.direction === 'startup' && !req.dryRun && req.direction === 'shutdown' ? settleOf(old) : null;
    const handles = this.handles ?? new Map<string, PhaseHandle>();
    const loop = this.active ?? Promise.resolve();
    const now = this.now();
    const why = `stopped: a ${req.direction} (${req.topic}, ${req.origin}) took over`;
    this.runAc?.abort(new Preempted(why));
    for (const p of old.phases) {
      if (p.state === 'done' || p.state === 'failed' || p.state === 'skipped') continue;
      for (const a of p.actions) {
        if (a.state !== 'pending' && a.state !== 'running') continue;
        a.state = a.state === 'running' ? 'failed' : 'skipped';
        a.error = why;
        a.endedAt = now;
      }
      p.state = p.state === 'running' ? 'failed' : 'skipped';
      p.note = why;
      p.endedAt = now;
    }
    old.state = 'cancelled';
    old.endedAt = now;
    old.preemptedBy = { at: now, topic: req.topic, origin: req.origin };
    const text = `${old.dryRun ? 'dry-run of the ' : ''}${old.direction} run ${short(old.id)} ${why}`;
    this.addTimeline(old, 'run-preempted', text);
    this.log('warn', `plan "${this.name}": ${text}`);
    // What this startup did start needs no starting after the next shutdown.
    if (!old.dryRun && old.direction === 'startup' && this.restore) this.restore = withoutStarted(this.restore, old);
    const report: RunReport = { ...(JSON.parse(JSON.stringify(old)) as RunRecord), ms: now - old.startedAt, totals: totalsOf(old) };
    const ref = refOf(old);
    for (const p of old.phases) handles.get(p.id)?.update(p, ref);
    const last = old.phases[old.phases.length - 1];
    handles.get(last.id)?.finished(last, ref, report);
    this.emit({ type: 'run-report', run: ref, report, message: text });
    let timer: NodeJS.Timeout | undefined;
    const settled = Promise.race([loop, new Promise<void>((r) => (timer = setTimeout(r, PREEMPT_SETTLE_MS)))]).finally(() => clearTimeout(timer));
    return { settled, settle };
  }

  /** Run the requests held while the saved state was loading, in order, under the usual rules. */
  private settle(): void {
    this.settling = false;
    const held = this.held.splice(0);
    for (const h of held) h.answer(this.request(h.req, h.resolve));
  }

  /**
   * Start the saved queued startup when no run is left to precede it (its shutdown was not
   * resumed: the machine itself restarted). Returns true if there was one.
   */
  startQueued(resolve: ChainResolver): boolean {
    const q = this.queued;
    if (!q || this.active || this.closed || this.settling || this.record?.state === 'running') return false;
    this.queued = null;
    this.log('info', `plan "${this.name}": starting the startup queued before the restart`);
    const r = this.request(q.req, q.resolve ?? resolve);
    if (!r.started) void this.persist();
    return true;
  }

  /** Resume the run that was in progress when Node-RED stopped. Refused while a run is active. */
  resume(rec: RunRecord, find: (phaseId: string) => PhaseHandle | undefined, resolve?: ChainResolver): RunRef | null {
    if (this.active) {
      this.log('warn', `plan "${this.name}": run ${short(rec.id)} not resumed: run ${short(this.record?.id ?? '')} is in progress`);
      this.settle();
      return null;
    }
    if (resolve && this.queued && !this.queued.resolve) this.queued.resolve = resolve;
    // A run paused by a redeploy keeps the resolver it had; one resumed after a restart gets this one.
    if (resolve) this.runResolve = resolve;
    this.record = rec;
    rec.resumed.push(this.now());
    const handles = new Map<string, PhaseHandle>();
    for (const p of rec.phases) {
      const h = find(p.id);
      if (h) handles.set(p.id, h);
    }
    this.addTimeline(rec, 'run-resumed', `resumed after a restart (${rec.phases.filter((p) => p.state === 'done' || p.state === 'failed' || p.state === 'skipped').length}/${rec.phases.length} phases finished)`);
    this.log('warn', `plan "${this.name}": resuming ${rec.direction} run ${short(rec.id)} after a restart`);
    this.emit({ type: 'run-resumed', message: `${rec.dryRun ? 'dry-run ' : ''}${rec.direction} run ${short(rec.id)} resumed after a restart` });
    this.startLoop(rec, handles);
    this.settle();
    return refOf(rec);
  }

  /** Skip the phases not yet started. Refused after the point of no return. */
  cancel(by: string): { ok: boolean; reason: string } {
    const rec = this.record;
    if (!rec || rec.state !== 'running' || !this.active) {
      if (this.queued) {
        this.queued = null;
        void this.persist();
        return { ok: true, reason: 'the queued startup was dropped' };
      }
      return { ok: false, reason: 'no run in progress' };
    }
    if (rec.pastPointOfNoReturn && !rec.dryRun) {
      this.addTimeline(rec, 'cancel-refused', `cancel by ${by} refused: the run is past its point of no return`);
      this.emit({ type: 'run-refused', refused: { what: 'cancel', reason: 'past the point of no return', by }, message: `cancel by ${by} refused: past the point of no return` });
      void this.persist();
      return { ok: false, reason: 'the run is past its point of no return' };
    }
    if (!rec.cancelRequested) rec.cancelRequested = { at: this.now(), by };
    this.addTimeline(rec, 'cancel-requested', `cancel requested by ${by}: phases not yet started are skipped`);
    this.emit({ type: 'cancel-requested', message: `cancel requested by ${by}` });
    this.cancelAc?.abort(new Error(`cancelled by ${by}`));
    void this.persist();
    return { ok: true, reason: 'phases not yet started will be skipped' };
  }

  /** Node-RED is stopping: abort work in flight, keep the record as "running" so it resumes. */
  async close(): Promise<void> {
    this.closed = true;
    // A queued startup stays in the saved state: it follows the resumed shutdown after the restart.
    for (const h of this.held.splice(0)) h.answer({ started: false, queued: false, reason: 'the plan is stopping' });
    this.runAc?.abort(new Interrupted());
    const active = this.active;
    if (active) await Promise.race([active, new Promise((r) => setTimeout(r, 8000).unref())]);
    await this.persist();
    this.listeners.clear();
  }

  // ---- the run loop ----

  private startLoop(rec: RunRecord, handles: Map<string, PhaseHandle>, after?: Promise<void>): void {
    this.runAc = new AbortController();
    this.cancelAc = new AbortController();
    this.handles = handles;
    if (rec.cancelRequested) this.cancelAc.abort(new Error(`cancelled by ${rec.cancelRequested.by}`));
    const runSignal = this.runAc.signal;
    const cancelSignal = this.cancelAc.signal;
    this.emitState();
    const loop = (after ?? Promise.resolve()).then(() => this.walk(rec, handles, runSignal, cancelSignal)).catch((err) => {
      // Never reached in normal operation: the walk records failures itself.
      this.log('error', `plan "${this.name}": run ${short(rec.id)} stopped by an internal error: ${(err as Error).stack ?? err}`);
      rec.state = 'failed';
      rec.endedAt = this.now();
      return this.persist();
    });
    const active: Promise<void> = loop.finally(() => {
      // A preempted run's loop ends after its successor started: it must not touch the plan's state.
      if (this.active !== active) return;
      this.active = null;
      this.handles = null;
      this.emitState();
      // The queued startup follows a shutdown that ended, not one paused by a redeploy.
      const q = this.queued;
      if (q?.resolve && !this.closed && !runSignal.aborted && rec.state !== 'running') {
        this.queued = null;
        const r = this.request(q.req, q.resolve);
        if (!r.started) void this.persist();
      }
    });
    this.active = active;
  }

  private async walk(rec: RunRecord, handles: Map<string, PhaseHandle>, runSignal: AbortSignal, cancelSignal: AbortSignal): Promise<void> {
    await this.persist();
    const ref = refOf(rec);
    const background: Promise<void>[] = [];
    let stopReason: string | null = null;
    const lastIndex = rec.phases.length - 1;
    for (let i = 0; i < rec.phases.length; i++) {
      if (runSignal.aborted) return this.stall(rec);
      const ph = rec.phases[i];
      const h = handles.get(ph.id);
      if (ph.state === 'done' || ph.state === 'failed' || ph.state === 'skipped') continue;
      const skip = (note: string) => {
        ph.state = 'skipped';
        ph.note = note;
        ph.endedAt = this.now();
        this.addTimeline(rec, 'phase-skipped', `${ph.name}: skipped (${note})`, ph.name);
        this.emit({ type: 'phase-done', phase: phaseRef(ph), message: `phase ${ph.name} skipped: ${note}` });
        h?.update(ph, ref);
        if (h && i !== lastIndex) h.finished(ph, ref, null);
      };
      if (!h) {
        ph.state = 'failed';
        ph.note = 'this phase is no longer in the flow';
        ph.endedAt = this.now();
        this.addTimeline(rec, 'phase-failed', `${ph.name}: ${ph.note}`, ph.name);
        continue;
      }
      if (stopReason) {
        skip(stopReason);
        continue;
      }
      if (cancelSignal.aborted && ph.state !== 'running') {
        skip(`cancelled by ${rec.cancelRequested?.by ?? 'request'}`);
        continue;
      }
      const outcome = this.runPhase(rec, ph, h, runSignal, cancelSignal);
      if (h.settings.wait) {
        await outcome;
        if (runSignal.aborted || this.interruptedRun) return this.stall(rec);
        if ((ph.state as string) === 'failed' && h.settings.onFailure === 'stop') stopReason = `phase ${ph.name} failed and is set to stop the plan`;
      } else {
        // Hand on at once; the run ends only when this phase's actions have reported too.
        background.push(outcome);
      }
      await this.persist();
    }
    await Promise.all(background);
    if (runSignal.aborted || this.interruptedRun) return this.stall(rec);
    await this.finish(rec, handles);
  }

  /**
   * The walk stopped without finishing (Node-RED stopping, or a phase or action node redeployed
   * mid-run). The record stays "running"; it resumes at the next start, or as soon as the
   * redeployed nodes are back (resumeStalled).
   */
  private stall(rec: RunRecord): void {
    if (this.record !== rec) return; // preempted: already closed with its reason
    this.stalled = this.closed ? null : rec;
    this.interruptedRun = false;
    if (this.stalled) this.log('warn', `plan "${this.name}": run ${short(rec.id)} paused: a node of the run was redeployed; it resumes when the node is back`);
  }

  /** Resume a run paused by a partial redeploy; returns true if it did. */
  resumeStalled(find: (phaseId: string) => PhaseHandle | undefined): boolean {
    const rec = this.stalled;
    if (!rec || this.active || this.closed) return false;
    this.stalled = null;
    this.resume(rec, find);
    return true;
  }

  private async runPhase(rec: RunRecord, ph: PhaseRecord, h: PhaseHandle, runSignal: AbortSignal, cancelSignal: AbortSignal): Promise<void> {
    const ref = refOf(rec);
    // The gate: a real run waits until its condition holds; a cancel during the wait skips the phase.
    // A phase saved while waiting (Node-RED restarted) waits again: the gate had not opened.
    if (h.gate && (ph.state === 'pending' || ph.state === 'waiting')) {
      if (rec.dryRun) {
        ph.note = `gate: would wait until ${h.gateText}`;
      } else {
        const again = ph.state === 'waiting';
        ph.state = 'waiting';
        ph.note = `waiting until ${h.gateText}`;
        this.addTimeline(rec, 'phase-waiting', `${ph.name}: ${again ? 'waiting again after the restart' : 'waiting'} until ${h.gateText}`, ph.name);
        h.update(ph, ref);
        this.emitState();
        await this.persist();
        const both = anySignal([runSignal, cancelSignal]);
        try {
          const why = await h.gate(both.signal);
          ph.note = `gate opened: ${why}`;
          this.addTimeline(rec, 'gate-open', `${ph.name}: ${why}`, ph.name);
        } catch (err) {
          if (runSignal.aborted) return;
          ph.state = 'skipped';
          ph.note = cancelSignal.aborted ? `cancelled by ${rec.cancelRequested?.by ?? 'request'} while waiting` : `gate failed: ${(err as Error).message}`;
          ph.endedAt = this.now();
          this.addTimeline(rec, 'phase-skipped', `${ph.name}: ${ph.note}`, ph.name);
          h.update(ph, ref);
          this.emit({ type: 'phase-done', phase: phaseRef(ph), message: `phase ${ph.name} skipped: ${ph.note}` });
          if (rec.phases[rec.phases.length - 1].id !== ph.id) h.finished(ph, ref, null);
          return;
        } finally {
          both.dispose();
        }
      }
    } else if (h.gate && rec.dryRun) {
      ph.note = `gate: would wait until ${h.gateText}`;
    }

    if (h.settings.pointOfNoReturn && !rec.pastPointOfNoReturn) {
      rec.pastPointOfNoReturn = true;
      this.addTimeline(rec, 'point-of-no-return', `${ph.name}: point of no return passed; cancel no longer applies`, ph.name);
    }
    const resumed = ph.state === 'running';
    ph.state = 'running';
    ph.startedAt ??= this.now();
    const actions = h.actions();
    const mirrored = rec.direction === 'startup' && h.settings.direction === 'both';
    const ordered = mirrored && h.settings.mode === 'sequential' ? [...actions].reverse() : actions;
    for (const a of ordered) {
      if (!ph.actions.some((x) => x.id === a.id)) ph.actions.push({ id: a.id, name: a.name, state: 'pending', started: [], results: [] });
    }
    for (const x of ph.actions) {
      if (!ordered.some((a) => a.id === x.id) && (x.state === 'pending' || x.state === 'running')) {
        x.state = 'skipped';
        x.error = 'this action is no longer wired to the phase';
      }
    }
    if (!resumed) this.addTimeline(rec, 'phase-started', `${ph.name}: started (${ordered.length} action${ordered.length === 1 ? '' : 's'}, ${h.settings.mode})`, ph.name);
    this.emit({ type: 'phase-started', phase: phaseRef(ph), message: `phase ${ph.name} ${resumed ? 'resumed' : 'started'}` });
    h.update(ph, ref);
    this.emitState();
    await this.persist();

    // A derived timeout starts from each action's guess of its targets (a pattern or "all running"
    // cannot be counted before listing) and grows once an action reports how many it resolved.
    const totals = new Map<string, number>();
    for (const x of ph.actions) if (x.total !== undefined) totals.set(x.id, x.total);
    const derive = () => derivedPhaseMs(h.settings, ordered, (a) => totals.get(a.id), this.phaseMarginMs, rec.direction);
    let limit = h.settings.timeoutMs ?? derive();
    const phaseAc = new AbortController();
    const onRun = () => phaseAc.abort(runSignal.reason);
    runSignal.addEventListener('abort', onRun, { once: true });
    const phaseStart = Date.now();
    const onTimeout = () => phaseAc.abort(new Error(`phase ${ph.name} timed out after ${formatSeconds(limit)}`));
    let timer = setTimeout(onTimeout, limit);
    let phaseOver = false;
    const countKnown = (a: ActionHandle, total: number) => {
      if (totals.get(a.id) === total) return;
      totals.set(a.id, total);
      if (h.settings.timeoutMs !== null || phaseOver || phaseAc.signal.aborted) return;
      const next = derive();
      if (next <= limit) return;
      limit = next;
      clearTimeout(timer);
      timer = setTimeout(onTimeout, Math.max(0, phaseStart + limit - Date.now()));
      this.addTimeline(rec, 'phase-timeout', `${ph.name}: timeout now ${formatSeconds(limit)} (${a.name} resolved ${total} target${total === 1 ? '' : 's'})`, ph.name);
    };

    let interrupted = false;
    const runOne = async (a: ActionHandle): Promise<void> => {
      const arec = ph.actions.find((x) => x.id === a.id)!;
      if (arec.state === 'done' || arec.state === 'failed' || arec.state === 'skipped') return;
      arec.state = 'running';
      arec.startedAt ??= this.now();
      h.update(ph, ref);
      const done = new Set(arec.results.map((r) => r.target));
      let report: ActionReport;
      try {
        report = await a.perform({
          run: ref,
          phase: { id: ph.id, name: ph.name },
          previous: [...arec.results],
          interrupted: arec.started.filter((t) => !done.has(t)),
          ...restrictionFor(rec.restrict, ph.id, a.id),
          ...(rec.settle?.actions[a.id]?.length ? { settle: { names: rec.settle.actions[a.id], since: rec.settle.at } } : {}),
          signal: phaseAc.signal,
          hooks: {
            onWaiting: (w) => {
              if (this.record !== rec) return;
              this.addTimeline(rec, w.state === 'waiting' ? 'wait-started' : 'wait-ended', `${a.name}: ${w.text}`, ph.name, w.target);
              void this.persist();
            },
            onProgress: (p) => {
              if (this.record !== rec) return; // preempted: closed already
              // No total while an action still waits for its platform to answer: it has not listed yet.
              if (p.total !== undefined) {
                arec.total = p.total;
                countKnown(a, p.total);
              }
              h.update(ph, ref);
            },
            beforeTarget: async (t) => {
              if (this.record !== rec) return;
              if (!arec.started.includes(t.name)) arec.started.push(t.name);
              this.addTimeline(rec, 'target-started', `${a.name}: ${t.name} (${t.power})`, ph.name, t.name);
              await this.persist();
            },
            onResult: async (r) => {
              if (this.record !== rec) return;
              if (arec.results.some((x) => x.target === r.target)) return; // a result carried over from before a restart
              arec.results.push(r);
              this.addTimeline(rec, r.ok ? 'target-done' : 'target-failed', `${a.name}: ${r.target} ${r.ok ? r.method : 'failed'}${r.error ? `: ${r.error}` : r.detail ? `: ${r.detail}` : ''}`, ph.name, r.target);
              this.emit({ type: r.ok ? 'target-done' : 'target-failed', phase: phaseRef(ph), target: { ...r, action: a.name }, message: `${a.name}: ${r.target} ${r.ok ? r.method : `failed: ${r.error}`}` });
              h.update(ph, ref);
              this.emitState();
              await this.persist();
            },
          },
        });
      } catch (err) {
        if (runSignal.aborted) return;
        if (err instanceof Interrupted) {
          interrupted = true;
          return;
        }
        arec.state = 'failed';
        arec.error = (err as Error).message || String(err);
        arec.endedAt = this.now();
        this.addTimeline(rec, 'action-failed', `${a.name}: ${arec.error}`, ph.name);
        return;
      }
      // Interrupted (Node-RED stopping, or the action node redeployed): resumes, is not a failure.
      if (report.interrupted || (report.aborted && runSignal.aborted)) {
        interrupted = true;
        return;
      }
      arec.state = report.ok ? 'done' : 'failed';
      arec.summary = summarise(report);
      if (report.error) arec.error = report.error;
      arec.endedAt = this.now();
      this.addTimeline(rec, report.ok ? 'action-done' : 'action-failed', `${a.name}: ${arec.summary}`, ph.name);
      h.update(ph, ref);
    };

    try {
      if (h.settings.mode === 'parallel') {
        const running: Promise<void>[] = [];
        for (let k = 0; k < ordered.length; k++) {
          if (k > 0 && h.settings.stepDelayMs > 0) await abortableSleep(h.settings.stepDelayMs, phaseAc.signal).catch(() => undefined);
          if (phaseAc.signal.aborted) break;
          running.push(runOne(ordered[k]));
        }
        await Promise.all(running);
      } else {
        for (let k = 0; k < ordered.length; k++) {
          if (phaseAc.signal.aborted) break;
          const arec = ph.actions.find((x) => x.id === ordered[k].id)!;
          const wasPending = arec.state === 'pending';
          if (k > 0 && h.settings.stepDelayMs > 0 && wasPending) await abortableSleep(h.settings.stepDelayMs, phaseAc.signal).catch(() => undefined);
          await runOne(ordered[k]);
          if (arec.state === 'failed' && h.settings.onFailure === 'stop') break;
        }
      }
    } finally {
      phaseOver = true;
      clearTimeout(timer);
      runSignal.removeEventListener('abort', onRun);
    }
    if (runSignal.aborted) return;
    if (interrupted) {
      this.interruptedRun = true;
      return;
    }
    // Actions never started (timeout, stop on failure) are recorded as skipped with the reason.
    for (const x of ph.actions) {
      if (x.state === 'pending' || x.state === 'running') {
        x.state = x.state === 'running' ? 'failed' : 'skipped';
        x.error = phaseAc.signal.aborted ? abortError(phaseAc.signal).message : 'not started: an earlier action of this phase failed';
        x.endedAt = this.now();
      }
    }
    ph.state = ph.actions.every((x) => x.state === 'done' || (x.state === 'skipped' && !x.error)) ? 'done' : 'failed';
    if (phaseAc.signal.aborted && ph.state === 'failed') ph.note = abortError(phaseAc.signal).message;
    ph.endedAt = this.now();
    const failedTargets = ph.actions.reduce((n, x) => n + x.results.filter((r) => !r.ok).length, 0);
    const summary = `${ph.name}: ${ph.state}${failedTargets ? ` (${failedTargets} target${failedTargets === 1 ? '' : 's'} failed)` : ''} in ${formatSeconds(ph.endedAt - (ph.startedAt ?? ph.endedAt))}`;
    this.addTimeline(rec, ph.state === 'done' ? 'phase-done' : 'phase-failed', summary, ph.name);
    this.emit({ type: 'phase-done', phase: phaseRef(ph), message: `phase ${summary}` });
    h.update(ph, ref);
    this.emitState();
    await this.persist();
    if (rec.phases[rec.phases.length - 1].id !== ph.id) h.finished(ph, ref, null);
  }

  private async finish(rec: RunRecord, handles: Map<string, PhaseHandle>): Promise<void> {
    const failed = rec.phases.some((p) => p.state === 'failed');
    const cancelled = !!rec.cancelRequested && rec.phases.some((p) => p.state === 'skipped' && p.note?.startsWith('cancelled'));
    rec.state = failed ? 'failed' : cancelled ? 'cancelled' : 'done';
    rec.endedAt = this.now();
    const report: RunReport = { ...(JSON.parse(JSON.stringify(rec)) as RunRecord), ms: rec.endedAt - rec.startedAt, totals: totalsOf(rec) };
    const t = report.totals;
    const text = `${rec.dryRun ? 'dry-run of the ' : ''}${rec.direction} run ${short(rec.id)} ${rec.state} in ${formatSeconds(report.ms)}: ${t.targets} target${t.targets === 1 ? '' : 's'}, ${t.failed} failed`;
    this.addTimeline(rec, 'run-' + rec.state, text);
    this.log(rec.state === 'failed' ? 'warn' : 'info', `plan "${this.name}": ${text}`);
    this.restoreAfterCancel(rec);
    report.timeline = rec.timeline.slice();
    this.showLast = true;
    // A shutdown adds to what an earlier one (not yet undone by a complete startup) turned off.
    if (!rec.dryRun && rec.direction === 'shutdown') this.restore = mergeRestore(this.restore, restoreOf(rec));
    else if (!rec.dryRun && rec.direction === 'startup' && rec.state === 'done') this.restore = null;
    else if (!rec.dryRun && rec.direction === 'startup' && this.restore) this.restore = withoutStarted(this.restore, rec);
    await this.persist();
    const last = rec.phases[rec.phases.length - 1];
    handles.get(last.id)?.finished(last, refOf(rec), report);
    this.emit({ type: 'run-report', report, message: text });
  }

  /**
   * A real shutdown cancelled on request (mains came back before the point of no return) that turned
   * something off: the startup that starts it again is queued, so it follows this run as soon as its
   * loop ends, under the usual rules (armed, one run at a time, dropped by a new shutdown), and is
   * saved with the plan, so a restart right now still runs it. Off: it is said once what stays off.
   */
  private restoreAfterCancel(rec: RunRecord): void {
    if (rec.dryRun || rec.direction !== 'shutdown' || rec.state !== 'cancelled' || !rec.cancelRequested || rec.preemptedBy) return;
    const off = [...new Set(Object.values(restoreOf(rec).actions).flat())];
    if (!off.length) return;
    const by = rec.cancelRequested.by;
    if (!this.restoreOnCancel) {
      const text = `the cancelled shutdown turned off ${off.join(', ')}; they stay off until a startup is run ("start again after a cancel" is off)`;
      this.addTimeline(rec, 'restore-not-queued', text);
      this.log('warn', `plan "${this.name}": ${text}`);
      return;
    }
    // A startup already waiting for this run (someone asked for one) starts the same: it is not doubled.
    if (this.queued) return;
    const reason = `the shutdown run ${short(rec.id)} was cancelled by ${by} before its point of no return: starting again what it turned off (${off.join(', ')})`;
    this.queued = { req: { direction: 'startup', dryRun: false, origin: 'local', topic: CANCEL_RESTORE_TOPIC, reason }, resolve: this.runResolve };
    this.addTimeline(rec, 'restore-queued', `a startup follows to start again what this run turned off: ${off.join(', ')}`);
    this.log('info', `plan "${this.name}": ${reason}`);
  }

  // ---- recording ----

  private addTimeline(rec: RunRecord, event: string, text: string, phase?: string, target?: string): void {
    rec.timeline.push({ at: this.now(), event, text, ...(phase ? { phase } : {}), ...(target ? { target } : {}) });
    if (rec.timeline.length > TIMELINE_MAX) rec.timeline.splice(0, rec.timeline.length - TIMELINE_MAX);
  }

  /** Write the state; a failing disk is reported once, never stops a shutdown. */
  private async persist(): Promise<void> {
    if (!this.store) return;
    try {
      await this.store.save({
        version: 1,
        armed: this.armed,
        configuredArmed: this.configuredArmed,
        run: this.record,
        restore: this.restore,
        queued: this.queued?.req ?? null,
        ...bootStamp({ bootId: this.bootId }, this.now()),
      });
      if (this.persistFailed) this.log('info', `plan "${this.name}": the run record is written again`);
      this.persistFailed = false;
    } catch (err) {
      if (!this.persistFailed) this.log('error', `plan "${this.name}": cannot write the run record (${(err as Error).message}); the run goes on, but will not resume after a restart`);
      this.persistFailed = true;
    }
  }

  private emit(e: Omit<RunEvent, 'plan' | 'at' | 'run'> & { run?: RunRef }): void {
    const event: RunEvent = { plan: { id: this.id, name: this.name }, at: this.now(), ...(this.record ? { run: refOf(this.record) } : {}), ...e };
    for (const fn of this.listeners) {
      try {
        fn(event);
      } catch (err) {
        this.log('error', `plan "${this.name}": a run event listener failed: ${(err as Error).message}`);
      }
    }
  }

  private emitState(): void {
    this.emit({ type: 'plan-state', message: `plan ${this.status().state}` });
  }
}

/** A phase's timeout when it has none of its own: its actions' budgets (parallel: the longest, sequential: their sum), the step delays between them, and a margin. */
function derivedPhaseMs(settings: PhaseHandle['settings'], actions: ActionHandle[], targetsOf: (a: ActionHandle) => number | undefined, marginMs: number, direction: Direction): number {
  const budgets = actions.map((a) => a.budgetMs(targetsOf(a), direction));
  const delays = settings.stepDelayMs * Math.max(0, actions.length - 1);
  return (settings.mode === 'parallel' ? Math.max(0, ...budgets) : budgets.reduce((s, b) => s + b, 0)) + delays + marginMs;
}

/**
 * What a shutdown run turned off (graceful or forced, or found off but marked undoOnStartup), per
 * action, and the phases it never ran.
 */
function restoreOf(rec: RunRecord): Restore {
  const actions: Record<string, string[]> = {};
  const phasesNotRun: string[] = [];
  for (const p of rec.phases) {
    if (p.state === 'pending' || p.state === 'waiting' || (p.state === 'skipped' && p.actions.length === 0)) phasesNotRun.push(p.id);
    for (const a of p.actions) {
      const off = a.results.filter((r) => r.ok && (r.method === 'graceful' || r.method === 'forced' || (r.method === 'already' && r.undoOnStartup))).map((r) => r.target);
      // Acted on but no result: the run was cut short (power cut) while it went down; the startup checks it.
      const inFlight = a.started.filter((t) => !a.results.some((r) => r.target === t));
      actions[a.id] = [...off, ...inFlight];
    }
  }
  return { actions, phasesNotRun };
}

/** Two shutdowns without a complete startup between them: the startup must undo both. */
function mergeRestore(prev: Restore | null, next: Restore): Restore {
  if (!prev) return next;
  const actions: Record<string, string[]> = { ...prev.actions };
  for (const [id, names] of Object.entries(next.actions)) actions[id] = [...new Set([...(actions[id] ?? []), ...names])];
  // A phase counts as never run only if neither shutdown ran it (actions listed above take precedence anyway).
  return { actions, phasesNotRun: prev.phasesNotRun.filter((id) => next.phasesNotRun.includes(id)) };
}

/** What is left to undo after a startup that did not finish: the targets it started are done. */
function withoutStarted(r: Restore, startup: RunRecord): Restore {
  const actions: Record<string, string[]> = { ...r.actions };
  for (const p of startup.phases) {
    for (const a of p.actions) {
      if (!actions[a.id]) continue;
      const started = new Set(a.results.filter((x) => x.ok && x.method !== 'skipped' && x.method !== 'dry-run').map((x) => x.target));
      actions[a.id] = actions[a.id].filter((n) => !started.has(n));
    }
  }
  return { actions, phasesNotRun: r.phasesNotRun };
}

/**
 * What a startup being stopped had asked its actions to start: every target marked started (that
 * mark is written before acting), except those it found already on. A failed start is kept: it may
 * have been accepted before it timed out. Null when there is none.
 */
function settleOf(startup: RunRecord): Settle | null {
  const actions: Record<string, string[]> = {};
  for (const p of startup.phases) {
    for (const a of p.actions) {
      const names = a.started.filter((n) => a.results.find((r) => r.target === n)?.method !== 'already');
      if (names.length) actions[a.id] = [...new Set([...(actions[a.id] ?? []), ...names])];
    }
  }
  // Date.now(), not the plan's clock: runAction compares it with Date.now().
  return Object.keys(actions).length ? { at: Date.now(), from: startup.id, actions } : null;
}

/** The `only` of an action in a startup run; none (act on the selection) for actions the shutdown did not know. */
function restrictionFor(r: Restore | undefined, phaseId: string, actionId: string): { only?: string[] } {
  if (!r) return {};
  if (r.actions[actionId]) return { only: r.actions[actionId] };
  if (r.phasesNotRun.includes(phaseId)) return { only: [] };
  return {};
}

export function refOf(rec: RunRecord): RunRef {
  return { id: rec.id, plan: rec.plan, planName: rec.planName, direction: rec.direction, dryRun: rec.dryRun };
}

function phaseRef(ph: PhaseRecord): { id: string; name: string; state: PhaseRecord['state']; note?: string } {
  return { id: ph.id, name: ph.name, state: ph.state, ...(ph.note ? { note: ph.note } : {}) };
}

export function totalsOf(rec: RunRecord): RunTotals {
  const results: TargetResult[] = rec.phases.flatMap((p) => p.actions.flatMap((a: ActionRecord) => a.results));
  const t: RunTotals = { phases: rec.phases.length, targets: results.length, ok: 0, failed: 0, graceful: 0, forced: 0, already: 0, skipped: 0, dryRun: 0 };
  for (const r of results) {
    if (r.ok) t.ok++;
    else t.failed++;
    if (r.method === 'graceful') t.graceful++;
    else if (r.method === 'forced') t.forced++;
    else if (r.method === 'already') t.already++;
    else if (r.method === 'skipped') t.skipped++;
    else if (r.method === 'dry-run') t.dryRun++;
  }
  return t;
}

function short(id: string): string {
  return id.slice(0, 8);
}

function anySignal(signals: AbortSignal[]): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const subs: Array<() => void> = [];
  for (const s of signals) {
    if (s.aborted) {
      ac.abort(s.reason);
      break;
    }
    const on = () => ac.abort(s.reason);
    s.addEventListener('abort', on, { once: true });
    subs.push(() => s.removeEventListener('abort', on));
  }
  return { signal: ac.signal, dispose: () => subs.forEach((f) => f()) };
}
