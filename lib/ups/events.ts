/**
 * UPS events (ONBATT, ONLINE, LOWBATT, …): one per change of condition, never repeated while the
 * condition holds. Each consumer keeps its own tracker, so a node deployed during an outage still
 * learns ONBATT from the first state it sees. The names follow NUT's upsmon NOTIFY events.
 */
import { UpsState } from './state';

export const UPS_EVENTS = [
  'ONBATT', 'ONLINE', 'LOWBATT', 'FSD', 'COMMBAD', 'COMMOK', 'REPLBATT', 'OVERLOAD', 'NOTOVERLOAD',
  'BYPASS', 'NOTBYPASS', 'TRIM', 'BOOST', 'CAL', 'OFF', 'BROWNOUT', 'OVERVOLTAGE', 'ALARM',
] as const;
export type UpsEventName = (typeof UPS_EVENTS)[number];
export type Severity = 'info' | 'warning' | 'critical';

export interface UpsEvent {
  event: UpsEventName;
  ups: string;
  ts: number;
  severity: Severity;
  /** One sentence for people (notifications, logs). */
  message: string;
}

export interface VoltageThresholds {
  /** BROWNOUT when input voltage falls below this (V). Default: the UPS's input.transfer.low. */
  brownoutBelow?: number | null;
  /** OVERVOLTAGE when input voltage rises above this (V). Default: the UPS's input.transfer.high. */
  overvoltageAbove?: number | null;
  /** Volts the reading must come back past the threshold before the condition clears. */
  hysteresis?: number;
}

type Condition = 'onBattery' | 'lowBattery' | 'fsd' | 'commBad' | 'replaceBattery' | 'overload' | 'bypass' | 'trim' | 'boost' | 'calibrating' | 'off' | 'alarm' | 'brownout' | 'overvoltage';

/** condition → [event when it starts, event when it ends (or null)] */
const TRANSITIONS: Array<[Condition, UpsEventName, UpsEventName | null, Severity]> = [
  ['commBad', 'COMMBAD', 'COMMOK', 'warning'],
  ['onBattery', 'ONBATT', 'ONLINE', 'warning'],
  ['lowBattery', 'LOWBATT', null, 'critical'],
  ['fsd', 'FSD', null, 'critical'],
  ['replaceBattery', 'REPLBATT', null, 'warning'],
  ['overload', 'OVERLOAD', 'NOTOVERLOAD', 'warning'],
  ['bypass', 'BYPASS', 'NOTBYPASS', 'warning'],
  ['trim', 'TRIM', null, 'info'],
  ['boost', 'BOOST', null, 'info'],
  ['calibrating', 'CAL', null, 'info'],
  ['off', 'OFF', null, 'warning'],
  ['brownout', 'BROWNOUT', null, 'warning'],
  ['overvoltage', 'OVERVOLTAGE', null, 'warning'],
  ['alarm', 'ALARM', null, 'warning'],
];

/** `onBatterySecs`: how long the UPS was on battery, from its last state on battery (ONLINE only). */
function describe(event: UpsEventName, s: UpsState, onBatterySecs = 0): string {
  const charge = s.charge === null ? 'unknown charge' : `charge ${Math.round(s.charge)}%`;
  const runtime = s.runtime === null ? 'runtime unknown' : `runtime ${Math.round(s.runtime / 60)} min`;
  const v = s.inputVoltage === null ? '' : ` (input ${s.inputVoltage} V)`;
  switch (event) {
    case 'ONBATT': return `UPS ${s.ups} is on battery: ${charge}, ${runtime}`;
    case 'ONLINE': return `UPS ${s.ups} is back on mains power${onBatterySecs > 0 ? ` after ${duration(onBatterySecs)} on battery` : ''}: ${charge}`;
    case 'LOWBATT': return `UPS ${s.ups} reports low battery: ${charge}, ${runtime}`;
    case 'FSD': return `UPS ${s.ups} is in forced shutdown (FSD)`;
    case 'COMMBAD': return `Communication with UPS ${s.ups} ${s.comm === 'stale' ? 'is stale' : 'is lost'}: ${s.commError ?? 'no answer'}`;
    case 'COMMOK': return `Communication with UPS ${s.ups} is restored`;
    case 'REPLBATT': return `UPS ${s.ups} says its battery needs replacing`;
    case 'OVERLOAD': return `UPS ${s.ups} is overloaded${s.load === null ? '' : ` (load ${s.load}%)`}`;
    case 'NOTOVERLOAD': return `UPS ${s.ups} is no longer overloaded`;
    case 'BYPASS': return `UPS ${s.ups} is on bypass: the load is not protected`;
    case 'NOTBYPASS': return `UPS ${s.ups} is no longer on bypass`;
    case 'TRIM': return `UPS ${s.ups} is trimming high input voltage${v}`;
    case 'BOOST': return `UPS ${s.ups} is boosting low input voltage${v}`;
    case 'CAL': return `UPS ${s.ups} is calibrating its runtime`;
    case 'OFF': return `UPS ${s.ups} output is off`;
    case 'BROWNOUT': return `Input voltage at UPS ${s.ups} is low${v}`;
    case 'OVERVOLTAGE': return `Input voltage at UPS ${s.ups} is high${v}`;
    case 'ALARM': return `UPS ${s.ups} raised an alarm${s.alarmText ? `: ${s.alarmText}` : ''}`;
  }
}

export class EventTracker {
  private prev: Record<Condition, boolean> | undefined;
  /** Seconds on battery in the last state seen on battery: the ONLINE state itself says 0. */
  private onBatterySecs = 0;

  constructor(private readonly thresholds: VoltageThresholds = {}) {}

  private conditions(s: UpsState): Record<Condition, boolean> {
    const commBad = s.comm !== 'ok';
    const last = this.prev;
    const hyst = this.thresholds.hysteresis ?? 2;
    const low = this.thresholds.brownoutBelow ?? numOrNull(s.raw['input.transfer.low']);
    const high = this.thresholds.overvoltageAbove ?? numOrNull(s.raw['input.transfer.high']);
    const v = s.inputVoltage;
    // While comm is bad the readings are the last known ones: voltage conditions hold as they were.
    const brownout = commBad ? !!last?.brownout : v !== null && low !== null && v > 0 && (last?.brownout ? v < low + hyst : v < low);
    const overvoltage = commBad ? !!last?.overvoltage : v !== null && high !== null && (last?.overvoltage ? v > high - hyst : v > high);
    return {
      commBad,
      onBattery: s.onBattery,
      lowBattery: s.lowBattery,
      fsd: s.fsd,
      replaceBattery: s.replaceBattery,
      overload: s.overload,
      bypass: s.bypass,
      trim: s.trim,
      boost: s.boost,
      calibrating: s.calibrating,
      off: s.off,
      alarm: s.alarm,
      brownout,
      overvoltage,
    };
  }

  /** Events caused by this state, in a stable order (comm first, then power, then the rest). */
  update(s: UpsState): UpsEvent[] {
    const now = this.conditions(s);
    const before = this.prev;
    this.prev = now;
    const events: UpsEvent[] = [];
    if (s.onBattery) this.onBatterySecs = s.secondsOnBattery;
    for (const [cond, onEvent, offEvent, severity] of TRANSITIONS) {
      const was = before ? before[cond] : false;
      if (now[cond] && !was) events.push({ event: onEvent, ups: s.ups, ts: s.ts, severity, message: describe(onEvent, s) });
      else if (!now[cond] && was && offEvent) events.push({ event: offEvent, ups: s.ups, ts: s.ts, severity: 'info', message: describe(offEvent, s, this.onBatterySecs) });
    }
    if (!s.onBattery) this.onBatterySecs = 0;
    return events;
  }
}

/** 95 → "1 min 35 s", 3600 → "60 min", 42 → "42 s". */
function duration(secs: number): string {
  const r = Math.round(secs);
  if (r < 60) return `${r} s`;
  const m = Math.floor(r / 60);
  return r % 60 ? `${m} min ${r % 60} s` : `${m} min`;
}

function numOrNull(v: string | undefined): number | null {
  if (v === undefined) return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}
