/**
 * The decision engine of the runtime threshold node: when to shut down, when to cancel, when to
 * restore. Pure and deterministic: it sees normalised UPS states and a clock value, never a timer.
 * After every call it says when it next needs to look (`wakeAt`), so a caller can sleep until then.
 *
 * Per UPS, each enabled vector is a condition that must hold continuously for its hold time. A UPS
 * on which a vector has held is *critical*. The policy turns critical UPSes into one decision:
 * any, all, or NUT's MINSUPPLIES rule (the power values of the healthy UPSes add up to less than the
 * minimum). The guards keep false alarms out: LB on mains with normal input voltage, implausible
 * runtime/charge readings (flagged by the normaliser, or a runtime that jumps up on battery without
 * the load falling), and lost communication while on mains are warnings, never a shutdown.
 *
 * Phases: idle (mains) → armed (some UPS on battery or a vector pending) → shutdown (decided) →
 * committed (past the point of no return) → restore (mains back for S seconds and charged) → idle.
 * From shutdown, mains back (stable for `cancelAfter`) before the point of no return → cancel.
 *
 * Mains counts as back only once it has held for `cancelAfter` seconds. A shorter return (flapping
 * power) does not end the outage: hold times keep their start (they complete only on a battery
 * reading), time on battery pauses instead of starting over, and the depletion samples stay. Else a
 * battery drained by flapping power would never be acted on, while NUT's upsmon acts on the first OB LB.
 *
 * `now` must come from a monotonic clock: the engine measures durations with it.
 */
import { UpsState } from '../ups/state';

export const VECTORS = ['fsd', 'obLb', 'runtime', 'charge', 'timeOnBattery', 'depletion', 'commLost', 'budget'] as const;
export type VectorName = (typeof VECTORS)[number];
export type Policy = 'any' | 'all' | 'min';
export type Phase = 'idle' | 'armed' | 'shutdown' | 'committed';

export interface ThresholdConfig {
  fsd: { enabled: boolean; hold: number };
  obLb: { enabled: boolean; hold: number };
  /** Runtime (s) at or below which the UPS is critical. */
  runtime: { enabled: boolean; below: number; hold: number };
  /** Charge (%) at or below which the UPS is critical. */
  charge: { enabled: boolean; below: number; hold: number };
  /** Seconds on battery after which the UPS is critical. */
  timeOnBattery: { enabled: boolean; after: number };
  /** Charge falling at `rate` %/min or faster, measured over `window` s, once `grace` s on battery. */
  depletion: { enabled: boolean; rate: number; window: number; grace: number; hold: number };
  /** Communication lost or stale for `after` s while last seen on battery (failsafe). */
  commLost: { enabled: boolean; after: number };
  /** Runtime minus the plan's expected duration (s) at or below `margin` (s). */
  budget: { enabled: boolean; planDuration: number; margin: number; hold: number };
  policy: Policy;
  /** For policy `min`: the sum of healthy power values must stay at least this. */
  minSupplies: number;
  /** Power value per UPS name (default 1); listed UPSes count even before they report. */
  supplies: Record<string, number>;
  /** Restore: mains back on every UPS for this many seconds … */
  restoreAfter: number;
  /** … and every UPS charged to at least this (%). */
  restoreCharge: number;
  /**
   * Cancel: mains back on every UPS for this many seconds before the point of no return. Also how
   * long mains must hold before an outage is over (shorter returns continue it).
   */
  cancelAfter: number;
  /** Seconds after the shutdown decision at which it can no longer be cancelled (0 = at once). */
  noReturnAfter: number;
}

export const DEFAULT_CONFIG: ThresholdConfig = {
  fsd: { enabled: true, hold: 0 },
  obLb: { enabled: true, hold: 3 },
  runtime: { enabled: true, below: 300, hold: 10 },
  charge: { enabled: false, below: 30, hold: 10 },
  timeOnBattery: { enabled: false, after: 600 },
  depletion: { enabled: false, rate: 5, window: 60, grace: 30, hold: 10 },
  commLost: { enabled: true, after: 15 },
  budget: { enabled: false, planDuration: 300, margin: 120, hold: 10 },
  policy: 'any',
  minSupplies: 1,
  supplies: {},
  restoreAfter: 60,
  restoreCharge: 50,
  cancelAfter: 10,
  noReturnAfter: 30,
};

/** Why a vector fired: which vector, on which UPS, with which values. */
export interface Reason {
  /** The vector that fired; `mains` for cancel and restore. */
  vector: VectorName | 'mains';
  ups: string;
  values: Record<string, number | string | boolean | null>;
  message: string;
}

export type DecisionKind = 'shutdown' | 'cancel' | 'restore';

export interface Decision {
  decision: DecisionKind;
  /** Engine clock (monotonic ms); the node replaces it by the wall clock for display. */
  ts: number;
  /** The reason that completed the decision. */
  reason: Reason;
  /** Every reason in force (all critical UPSes for shutdown). */
  reasons: Reason[];
  policy: Policy;
  /** UPSes counted as not healthy because they have not answered (policies all and min). */
  notAnswering: string[];
}

export interface Warning {
  ups: string;
  code: 'untrusted-runtime' | 'untrusted-charge' | 'runtime-jump' | 'comm-on-mains' | 'lb-on-mains' | 'unknown-ups' | 'supply-silent' | 'restore-without-charge';
  message: string;
  ts: number;
}

export interface EngineOutput {
  decisions: Decision[];
  /** New warnings (each reported once while its condition lasts). */
  warnings: Warning[];
  /** When the engine next needs tick(), or null when nothing is pending. */
  wakeAt: number | null;
}

/** What one vector is doing on one UPS right now. */
interface VectorTrack {
  since: number | null;
  /** The reason it would give, from the latest evaluation. */
  reason: Reason | null;
  /** The condition holds on the latest reading (false while paused by a short return of mains). */
  live: boolean;
}

interface UpsTrack {
  state: UpsState | null;
  vectors: Record<VectorName, VectorTrack>;
  /** (ts, charge) samples during this outage, for the depletion rate. */
  samples: Array<{ ts: number; charge: number }>;
  /** Lowest trusted runtime seen during this outage, and the load then. */
  minRuntime: { runtime: number; load: number | null } | null;
  runtimeJump: boolean;
  /** Start of this outage (null: no outage). */
  onBatterySince: number | null;
  /** Start of the current stretch on battery within the outage (null while mains is back). */
  stretchSince: number | null;
  /** Time on battery (ms) of the earlier stretches of this outage. */
  onBatteryMs: number;
  /** Mains back since, while the outage is not yet over (mains has not held for cancelAfter). */
  mainsSince: number | null;
  commBadSince: number | null;
  warned: Set<string>;
}

function emptyVectors(): Record<VectorName, VectorTrack> {
  const v = {} as Record<VectorName, VectorTrack>;
  for (const n of VECTORS) v[n] = { since: null, reason: null, live: false };
  return v;
}

const fmtMin = (s: number) => (s >= 60 ? `${Math.round(s / 60)} min` : `${Math.round(s)} s`);

export class DecisionEngine {
  private readonly ups = new Map<string, UpsTrack>();
  private phaseValue: Phase = 'idle';
  private shutdownAt: number | null = null;
  private calmSince: number | null = null;
  private lastShutdown: Decision | null = null;
  private planDuration: number;
  private now = 0;
  /** When the engine started watching: listed UPSes that never report count from here. */
  private startedAt: number | null;

  constructor(readonly config: ThresholdConfig, now?: number) {
    this.planDuration = config.budget.planDuration;
    this.startedAt = now ?? null;
    for (const name of Object.keys(config.supplies)) this.track(name);
  }

  private clock(now: number): void {
    this.now = Math.max(this.now, now);
    this.startedAt ??= now;
  }

  get phase(): Phase {
    return this.phaseValue;
  }

  get lastDecision(): Decision | null {
    return this.lastShutdown;
  }

  /** The plan's expected duration (s), when the plan (or a message) knows better than the config. */
  setPlanDuration(seconds: number): void {
    this.planDuration = seconds;
  }

  private track(name: string): UpsTrack {
    let t = this.ups.get(name);
    if (!t) {
      t = { state: null, vectors: emptyVectors(), samples: [], minRuntime: null, runtimeJump: false, onBatterySince: null, stretchSince: null, onBatteryMs: 0, mainsSince: null, commBadSince: null, warned: new Set() };
      this.ups.set(name, t);
    }
    return t;
  }

  /** A new state of one UPS. */
  update(state: UpsState, now: number): EngineOutput {
    this.clock(now);
    const listed = Object.keys(this.config.supplies);
    const warnings: Warning[] = [];
    if (listed.length && !Object.hasOwn(this.config.supplies, state.ups) && !this.ups.get(state.ups)?.warned.has('unknown-ups')) {
      warnings.push({ ups: state.ups, code: 'unknown-ups', ts: now, message: `UPS ${state.ups} is not listed under UPSes (${listed.join(', ')}): it counts with power value 1; check the UPS name` });
    }
    const t = this.track(state.ups);
    if (warnings.length) t.warned.add('unknown-ups');
    t.state = state;
    t.warned.delete('supply-silent');

    // outage bookkeeping (only from fresh readings)
    if (state.comm === 'ok') {
      t.commBadSince = null;
      t.warned.delete('comm-on-mains');
      if (state.onBattery) {
        if (t.onBatterySince === null) {
          this.endOutage(t);
          t.onBatterySince = now - state.secondsOnBattery * 1000;
          t.stretchSince = t.onBatterySince;
        } else if (t.stretchSince === null) {
          t.stretchSince = now; // back on battery after a short return of mains: the same outage
        }
        t.mainsSince = null;
      } else if (t.onBatterySince !== null) {
        // Mains is back, but the outage is over only once mains has held (see evaluate).
        if (t.stretchSince !== null) t.onBatteryMs += now - t.stretchSince;
        t.stretchSince = null;
        t.mainsSince ??= now;
      }
      this.trackReadings(t, state, now, warnings);
    } else {
      t.commBadSince ??= now;
      if (!state.onBattery && !t.warned.has('comm-on-mains')) {
        t.warned.add('comm-on-mains');
        warnings.push({ ups: state.ups, code: 'comm-on-mains', ts: now, message: `communication with UPS ${state.ups} is ${state.comm} while it was on mains: no shutdown, but check it (${state.commError ?? 'no answer'})` });
      }
    }
    if (state.lowBattery && !state.onBattery && state.comm === 'ok' && !this.mainsAbnormal(state) && !t.warned.has('lb-on-mains')) {
      t.warned.add('lb-on-mains');
      const input = state.inputVoltage === null ? 'no input voltage reported' : `normal input voltage (${state.inputVoltage} V)`;
      warnings.push({ ups: state.ups, code: 'lb-on-mains', ts: now, message: `UPS ${state.ups} reports low battery while on mains with ${input}: ignored` });
    } else if (!state.lowBattery) t.warned.delete('lb-on-mains');
    const out = this.evaluate(now);
    out.warnings.unshift(...warnings);
    return out;
  }

  /** Time passes: hold times complete, the failsafe and restore timers run. */
  tick(now: number): EngineOutput {
    this.clock(now);
    return this.evaluate(now);
  }

  /** Tell the engine the plan passed its point of no return (cancel is no longer possible). */
  commit(now: number): EngineOutput {
    this.clock(now);
    if (this.phaseValue === 'shutdown') this.phaseValue = 'committed';
    return this.evaluate(now);
  }

  /**
   * Forget the current decision (e.g. the operator cancelled the plan by hand). Every vector starts
   * timing again from `now`, time on battery and the depletion samples too: else a UPS still on
   * battery would fire again at once.
   */
  reset(now: number = this.now): void {
    this.clock(now);
    this.phaseValue = 'idle';
    this.shutdownAt = null;
    this.calmSince = null;
    for (const t of this.ups.values()) {
      const onBattery = t.onBatterySince !== null && !!t.state?.onBattery;
      t.vectors = emptyVectors();
      this.endOutage(t);
      if (onBattery) {
        t.onBatterySince = now;
        t.stretchSince = now;
      }
      if (t.commBadSince !== null) t.commBadSince = now;
    }
  }

  /** The outage on this UPS is over (or a new one starts): forget its bookkeeping. */
  private endOutage(t: UpsTrack): void {
    t.onBatterySince = null;
    t.stretchSince = null;
    t.onBatteryMs = 0;
    t.mainsSince = null;
    t.samples = [];
    t.minRuntime = null;
    t.runtimeJump = false;
  }

  /** Seconds actually on battery during this outage (short returns of mains pause the count). */
  private secondsOnBattery(t: UpsTrack, now: number): number {
    return (t.onBatteryMs + (t.stretchSince === null ? 0 : now - t.stretchSince)) / 1000;
  }

  /** Has this UPS not answered (or never reported) for commLost.after? Then it is not healthy. */
  private silent(t: UpsTrack, now: number): boolean {
    const since = this.silentSince(t);
    return since !== null && now >= since + this.config.commLost.after * 1000;
  }

  private silentSince(t: UpsTrack): number | null {
    if (!t.state) return this.startedAt;
    return t.state.comm !== 'ok' ? t.commBadSince : null;
  }

  /** On battery, or claims mains while its input voltage says otherwise. */
  private effectiveOnBattery(s: UpsState): boolean {
    return s.onBattery || (s.lowBattery && this.mainsAbnormal(s));
  }

  private mainsAbnormal(s: UpsState): boolean {
    const low = Number(s.raw['input.transfer.low']);
    if (s.inputVoltage === null) return false;
    if (s.inputVoltage <= 0) return true;
    return Number.isFinite(low) && low > 0 && s.inputVoltage < low;
  }

  private trackReadings(t: UpsTrack, s: UpsState, now: number, warnings: Warning[]): void {
    const runtimeOk = s.runtime !== null && !s.untrusted.includes('runtime');
    const chargeOk = s.charge !== null && !s.untrusted.includes('charge');
    if (s.onBattery) {
      if (chargeOk) {
        t.samples.push({ ts: now, charge: s.charge! });
        const keepFrom = now - this.config.depletion.window * 1000 * 2;
        while (t.samples.length > 2 && t.samples[0].ts < keepFrom) t.samples.shift();
      }
      if (runtimeOk) {
        const m = t.minRuntime;
        // A runtime that rises on battery is plausible only if the load fell about as much.
        const loadRatio = m && m.load && s.load ? m.load / s.load : 1;
        if (m && s.runtime! > m.runtime * 1.25 * Math.max(1, loadRatio) && s.runtime! - m.runtime > 60) {
          t.runtimeJump = true;
          if (!t.warned.has('runtime-jump')) {
            t.warned.add('runtime-jump');
            warnings.push({ ups: s.ups, code: 'runtime-jump', ts: now, message: `UPS ${s.ups} runtime jumped from ${fmtMin(m.runtime)} to ${fmtMin(s.runtime!)} on battery without the load falling: runtime not trusted during this outage` });
          }
        } else if (!m || s.runtime! < m.runtime) {
          t.minRuntime = { runtime: s.runtime!, load: s.load };
        }
      }
    }
    for (const field of ['runtime', 'charge'] as const) {
      const code = field === 'runtime' ? 'untrusted-runtime' : 'untrusted-charge';
      if (s.untrusted.includes(field)) {
        if (!t.warned.has(code)) {
          t.warned.add(code);
          warnings.push({ ups: s.ups, code, ts: now, message: `UPS ${s.ups} reports an implausible ${field} (${field === 'runtime' ? s.runtime + ' s' : s.charge + ' %'}): not used for decisions` });
        }
      } else t.warned.delete(code);
    }
  }

  /** The condition of one vector on one UPS now: a reason when it holds, else null. */
  private condition(name: VectorName, t: UpsTrack, now: number): Reason | null {
    const s = t.state;
    if (!s) return null;
    const c = this.config;
    const ups = s.ups;
    const fresh = s.comm === 'ok';
    const onBattery = s.onBattery;
    const runtimeOk = s.runtime !== null && !s.untrusted.includes('runtime') && !t.runtimeJump;
    const chargeOk = s.charge !== null && !s.untrusted.includes('charge');
    switch (name) {
      case 'fsd':
        return s.fsd ? { vector: name, ups, values: { fsd: true }, message: `UPS ${ups} is in forced shutdown (FSD)` } : null;
      case 'obLb': {
        const lowOnMains = !onBattery && s.lowBattery && this.mainsAbnormal(s);
        if (!((onBattery || lowOnMains) && s.lowBattery && !s.calibrating)) return null;
        return { vector: name, ups, values: { onBattery, lowBattery: true, charge: s.charge, runtime: s.runtime }, message: `UPS ${ups} is on battery with low battery` };
      }
      case 'runtime':
        if (!onBattery || !fresh || !runtimeOk || s.runtime! > c.runtime.below) return null;
        return { vector: name, ups, values: { runtime: s.runtime, below: c.runtime.below }, message: `UPS ${ups} runtime ${fmtMin(s.runtime!)} ≤ ${fmtMin(c.runtime.below)}` };
      case 'charge':
        if (!onBattery || !fresh || !chargeOk || s.charge! > c.charge.below) return null;
        return { vector: name, ups, values: { charge: s.charge, below: c.charge.below }, message: `UPS ${ups} charge ${s.charge}% ≤ ${c.charge.below}%` };
      case 'timeOnBattery': {
        if (t.onBatterySince === null || t.stretchSince === null || !onBattery) return null;
        const secs = this.secondsOnBattery(t, now);
        if (secs < c.timeOnBattery.after) return null;
        return { vector: name, ups, values: { secondsOnBattery: Math.round(secs), after: c.timeOnBattery.after }, message: `UPS ${ups} on battery for ${fmtMin(secs)} ≥ ${fmtMin(c.timeOnBattery.after)}` };
      }
      case 'depletion': {
        const rate = this.depletionRate(t, now);
        if (rate === null || rate < c.depletion.rate) return null;
        return { vector: name, ups, values: { ratePerMin: Math.round(rate * 100) / 100, threshold: c.depletion.rate, charge: s.charge }, message: `UPS ${ups} charge falling at ${rate.toFixed(1)} %/min ≥ ${c.depletion.rate} %/min` };
      }
      case 'commLost': {
        if (fresh || !onBattery || t.commBadSince === null) return null;
        const secs = (now - t.commBadSince) / 1000;
        if (secs < c.commLost.after) return null;
        return { vector: name, ups, values: { comm: s.comm, seconds: Math.round(secs), after: c.commLost.after, commError: s.commError }, message: `UPS ${ups} not answering for ${fmtMin(secs)} while last seen on battery` };
      }
      case 'budget': {
        if (!onBattery || !fresh || !runtimeOk) return null;
        const left = s.runtime! - this.planDuration;
        if (left > c.budget.margin) return null;
        return { vector: name, ups, values: { runtime: s.runtime, planDuration: this.planDuration, margin: c.budget.margin, left }, message: `UPS ${ups} runtime ${fmtMin(s.runtime!)} minus plan ${fmtMin(this.planDuration)} leaves ${fmtMin(left)} ≤ margin ${fmtMin(c.budget.margin)}` };
      }
    }
  }

  /** %/min over the configured window, once past the grace period; null when it cannot be known yet. */
  private depletionRate(t: UpsTrack, now: number): number | null {
    const c = this.config.depletion;
    const s = t.state;
    if (!s || !s.onBattery || s.comm !== 'ok' || t.onBatterySince === null) return null;
    if ((now - t.onBatterySince) / 1000 < c.grace) return null;
    const from = now - c.window * 1000;
    const inWindow = t.samples.filter((x) => x.ts >= from);
    if (inWindow.length < 2) return null;
    const first = inWindow[0];
    const last = inWindow[inWindow.length - 1];
    const minutes = (last.ts - first.ts) / 60000;
    // at least half the window must be covered, or a single noisy step decides
    if (minutes < c.window / 120) return null;
    return (first.charge - last.charge) / minutes;
  }

  private holdOf(name: VectorName): number {
    const v = this.config[name] as { hold?: number };
    return v.hold ?? 0;
  }

  private enabled(name: VectorName): boolean {
    return (this.config[name] as { enabled: boolean }).enabled;
  }

  /** Reasons of vectors that have held long enough on this UPS. */
  private critical(t: UpsTrack, now: number, wake: (at: number) => void): Reason[] {
    const out: Reason[] = [];
    for (const name of VECTORS) {
      const v = t.vectors[name];
      const reason = this.enabled(name) ? this.condition(name, t, now) : null;
      if (!reason) {
        v.live = false;
        // A short return of mains pauses a pending vector: it keeps its start but cannot complete
        // until the UPS is on battery again (a blip alone never fires). FSD does not depend on mains.
        if (t.mainsSince !== null && v.since !== null && name !== 'fsd') continue;
        v.since = null;
        v.reason = null;
        // time-driven vectors become true by time alone: wake then
        this.timeDriven(name, t, wake);
        continue;
      }
      v.since ??= now;
      v.reason = reason;
      v.live = true;
      const due = v.since + this.holdOf(name) * 1000;
      if (now >= due) out.push(reason);
      else wake(due);
    }
    return out;
  }

  private timeDriven(name: VectorName, t: UpsTrack, wake: (at: number) => void): void {
    const s = t.state;
    if (!s || !this.enabled(name)) return;
    if (name === 'timeOnBattery' && t.stretchSince !== null && s.onBattery) wake(t.stretchSince + this.config.timeOnBattery.after * 1000 - t.onBatteryMs);
    if (name === 'commLost' && t.commBadSince !== null && s.onBattery) wake(t.commBadSince + this.config.commLost.after * 1000);
    if (name === 'depletion' && t.onBatterySince !== null && s.onBattery) wake(t.onBatterySince + this.config.depletion.grace * 1000);
  }

  private evaluate(now: number): EngineOutput {
    let wakeAt: number | null = null;
    const wake = (at: number) => {
      if (at > now && (wakeAt === null || at < wakeAt)) wakeAt = at;
    };
    const decisions: Decision[] = [];
    const warnings: Warning[] = [];
    const mainsHold = this.config.cancelAfter * 1000;
    for (const t of this.ups.values()) {
      // mains has held long enough: this outage is over
      if (t.mainsSince !== null && t.state?.comm === 'ok') {
        if (now >= t.mainsSince + mainsHold) this.endOutage(t); // paused vectors then reset below
        else wake(t.mainsSince + mainsHold);
      }
    }
    const criticalReasons: Reason[] = [];
    const criticalUps = new Set<string>();
    for (const [name, t] of this.ups) {
      const r = this.critical(t, now, wake);
      if (r.length) {
        criticalUps.add(name);
        criticalReasons.push(...r);
      }
    }
    const notAnswering = this.notAnswering(criticalUps, now, wake, warnings);
    const fire = this.policyFires(criticalUps, new Set(notAnswering));
    const reporting = [...this.ups.values()].filter((t) => t.state);
    const anyOnBattery = reporting.some((t) => this.effectiveOnBattery(t.state!) || t.state!.comm !== 'ok');
    // Calm: every UPS answers and is on mains, and no vector holds. Cancel and restore count their
    // stable time from the moment it became calm (mains back, or FSD cleared). Vectors paused by the
    // return of mains do not hold it back; they end with the outage, after cancelAfter at the latest.
    const liveAny = reporting.some((t) => VECTORS.some((v) => t.vectors[v].live));
    const pendingAny = reporting.some((t) => t.onBatterySince !== null || VECTORS.some((v) => t.vectors[v].since !== null));
    const calm = reporting.length > 0 && !anyOnBattery && !liveAny;
    if (!calm) this.calmSince = null;
    else this.calmSince ??= now;
    const calmSince = this.calmSince;

    switch (this.phaseValue) {
      case 'idle':
      case 'armed':
        if (fire) {
          const reason = this.completing(criticalReasons);
          const d: Decision = { decision: 'shutdown', ts: now, reason, reasons: criticalReasons, policy: this.config.policy, notAnswering };
          decisions.push(d);
          this.lastShutdown = d;
          this.shutdownAt = now;
          this.calmSince = null;
          this.phaseValue = this.config.noReturnAfter <= 0 ? 'committed' : 'shutdown';
          if (this.phaseValue === 'shutdown') wake(now + this.config.noReturnAfter * 1000);
        } else {
          this.phaseValue = anyOnBattery || pendingAny ? 'armed' : 'idle';
        }
        break;
      case 'shutdown': {
        if (now >= this.shutdownAt! + this.config.noReturnAfter * 1000) {
          this.phaseValue = 'committed';
          return this.evaluate(now);
        }
        wake(this.shutdownAt! + this.config.noReturnAfter * 1000);
        if (calmSince !== null) {
          const due = calmSince + this.config.cancelAfter * 1000;
          if (now >= due) {
            decisions.push({ decision: 'cancel', ts: now, reason: this.mainsReason('cancel', calmSince, now), reasons: [], policy: this.config.policy, notAnswering: [] });
            this.reset(now);
          } else wake(due);
        }
        break;
      }
      case 'committed': {
        if (calmSince === null) break;
        // A UPS that reports no trusted charge (none, or e.g. 255 %) cannot hold restore back for
        // ever: mains stability decides there, with a warning.
        const uncharged = [...this.ups.values()].filter((t) => t.state && !trustedCharge(t.state));
        const charged = [...this.ups.values()].every((t) => !t.state || this.config.restoreCharge <= 0 || !trustedCharge(t.state)
          || t.state.charge! >= this.config.restoreCharge);
        const due = calmSince + Math.max(this.config.restoreAfter, this.config.cancelAfter) * 1000;
        if (now < due) wake(due);
        else if (charged) {
          if (this.config.restoreCharge > 0) {
            for (const t of uncharged) {
              const s = t.state!;
              warnings.push({ ups: s.ups, code: 'restore-without-charge', ts: now, message: `UPS ${s.ups} reports ${s.charge === null ? 'no charge' : `an implausible charge (${s.charge} %)`}: restore decided on stable mains alone, without waiting for ${this.config.restoreCharge} %` });
            }
          }
          decisions.push({ decision: 'restore', ts: now, reason: this.mainsReason('restore', calmSince, now), reasons: [], policy: this.config.policy, notAnswering: [] });
          this.reset(now);
        }
        // not charged yet: the next state (charge rising) re-evaluates
        break;
      }
    }
    return { decisions, warnings, wakeAt };
  }

  /**
   * UPSes that do not count as healthy because they have not answered for commLost.after (or, when
   * listed under supplies, never reported). Only the policies all and min use this, and only
   * alongside a critical UPS: silence alone never fires (under any it is the commLost vector's job).
   */
  private notAnswering(critical: Set<string>, now: number, wake: (at: number) => void, warnings: Warning[]): string[] {
    const out: string[] = [];
    const after = this.config.commLost.after * 1000;
    for (const [name, t] of this.ups) {
      const since = this.silentSince(t);
      if (since === null) continue;
      if (now < since + after) {
        wake(since + after);
        continue;
      }
      if (!t.state && !t.warned.has('supply-silent')) {
        t.warned.add('supply-silent');
        warnings.push({ ups: name, code: 'supply-silent', ts: now, message: `UPS ${name} is listed under UPSes but has sent no state for ${fmtMin(this.config.commLost.after)}: it counts as not healthy` });
      }
      if (this.config.policy !== 'any' && !critical.has(name)) out.push(name);
    }
    return out;
  }

  private policyFires(critical: Set<string>, notAnswering: Set<string>): boolean {
    const names = [...this.ups.keys()];
    if (critical.size === 0 || names.length === 0) return false;
    switch (this.config.policy) {
      case 'any':
        return true;
      case 'all':
        return names.every((n) => critical.has(n) || notAnswering.has(n));
      case 'min': {
        const healthy = names.filter((n) => !critical.has(n) && !notAnswering.has(n)).reduce((sum, n) => sum + (Object.hasOwn(this.config.supplies, n) ? this.config.supplies[n] : 1), 0);
        return healthy < this.config.minSupplies;
      }
    }
  }

  /** The reason that completed the decision: the one whose hold ended last (ties: vector order). */
  private completing(reasons: Reason[]): Reason {
    let best = reasons[0];
    let bestAt = -Infinity;
    for (const r of reasons) {
      const v = this.ups.get(r.ups)!.vectors[r.vector as VectorName];
      const at = (v.since ?? 0) + this.holdOf(r.vector as VectorName) * 1000;
      if (at > bestAt) {
        best = r;
        bestAt = at;
      }
    }
    return best;
  }

  private mainsReason(kind: 'cancel' | 'restore', since: number, now: number): Reason {
    const states = [...this.ups.values()].map((t) => t.state).filter((s): s is UpsState => !!s);
    const minCharge = states.filter(trustedCharge).reduce<number | null>((m, s) => (m === null ? s.charge : Math.min(m, s.charge!)), null);
    const secs = Math.round((now - since) / 1000);
    return {
      vector: 'mains',
      ups: states.map((s) => s.ups).join(', '),
      values: { mainsForSeconds: secs, charge: minCharge },
      message: kind === 'cancel'
        ? `mains back for ${secs} s before the point of no return: shutdown cancelled`
        : minCharge === null
          ? `mains back for ${secs} s (no trusted charge reading): restore`
          : `mains back for ${secs} s and charge ${minCharge}% ≥ ${this.config.restoreCharge}%: restore`,
    };
  }

  /**
   * The vector closest to firing, for the status badge: `runtime 23m > 5m`. Null when nothing is
   * on battery.
   */
  nearest(now: number): string | null {
    let best: { score: number; text: string } | null = null;
    const c = this.config;
    const consider = (score: number, text: string) => {
      if (!best || score < best.score) best = { score, text };
    };
    for (const t of this.ups.values()) {
      const s = t.state;
      if (!s || !(s.onBattery || s.comm !== 'ok')) continue;
      const runtimeOk = s.runtime !== null && !s.untrusted.includes('runtime') && !t.runtimeJump;
      if (c.runtime.enabled && runtimeOk) consider(s.runtime! / Math.max(1, c.runtime.below), `runtime ${short(s.runtime!)} > ${short(c.runtime.below)}`);
      if (c.charge.enabled && s.charge !== null && !s.untrusted.includes('charge')) consider(s.charge / Math.max(1, c.charge.below), `charge ${Math.round(s.charge)}% > ${c.charge.below}%`);
      if (c.budget.enabled && runtimeOk) consider((s.runtime! - this.planDuration) / Math.max(1, c.budget.margin), `budget ${short(s.runtime! - this.planDuration)} > ${short(c.budget.margin)}`);
      if (c.timeOnBattery.enabled && t.onBatterySince !== null) {
        const secs = this.secondsOnBattery(t, now);
        consider(c.timeOnBattery.after / Math.max(1, secs), `on battery ${short(secs)} < ${short(c.timeOnBattery.after)}`);
      }
      if (c.depletion.enabled) {
        const r = this.depletionRate(t, now);
        if (r !== null && r > 0) consider(c.depletion.rate / r, `depletion ${r.toFixed(1)} < ${c.depletion.rate} %/min`);
      }
      if (c.commLost.enabled && t.commBadSince !== null && s.onBattery) {
        const secs = (now - t.commBadSince) / 1000;
        consider(c.commLost.after / Math.max(1, secs), `no answer ${short(secs)} < ${short(c.commLost.after)}`);
      }
    }
    if (best) return (best as { text: string }).text;
    // mains is back but has not held long enough to end the outage
    for (const t of this.ups.values()) {
      if (t.mainsSince !== null) return `mains back ${short((now - t.mainsSince) / 1000)} < ${short(c.cancelAfter)}`;
    }
    return null;
  }

  /** Latest state per UPS, for output messages. */
  states(): Record<string, UpsState | null> {
    const out: Record<string, UpsState | null> = {};
    for (const [n, t] of this.ups) out[n] = t.state;
    return out;
  }
}

function trustedCharge(s: UpsState): boolean {
  return s.charge !== null && !s.untrusted.includes('charge');
}

function short(seconds: number): string {
  const s = Math.round(seconds);
  if (Math.abs(s) < 60) return `${s}s`;
  return `${Math.round(s / 60)}m`;
}
