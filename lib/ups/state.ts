/**
 * The one normalised UPS state every source (NUT, simulated, and later SNMP and Home Assistant)
 * produces, and the mapping from NUT variable names to it. Sources that are not NUT describe their
 * readings with NUT's variable names and go through the same `normalise()`.
 */

export type CommState = 'ok' | 'stale' | 'lost';
export type SourceKind = 'nut' | 'sim' | 'snmp' | 'ha';
/** Readings that may be untrusted (implausible) and so are never used for a decision. */
export type TrustedField = 'runtime' | 'charge';

export interface UpsState {
  /** The UPS name as the user configured it (NUT: the upsd UPS name). */
  ups: string;
  source: SourceKind;
  /** When this state was read (ms since epoch). */
  ts: number;
  /** When the UPS last answered (ms since epoch); null if it never did. */
  lastSeen: number | null;
  online: boolean;
  onBattery: boolean;
  lowBattery: boolean;
  fsd: boolean;
  charging: boolean;
  discharging: boolean;
  bypass: boolean;
  overload: boolean;
  trim: boolean;
  boost: boolean;
  calibrating: boolean;
  off: boolean;
  replaceBattery: boolean;
  alarm: boolean;
  /** Status flags exactly as the source gave them, unknown ones included. */
  flags: string[];
  /** Battery charge in percent. */
  charge: number | null;
  /** Estimated runtime on battery in seconds. */
  runtime: number | null;
  inputVoltage: number | null;
  outputVoltage: number | null;
  /** Load in percent of capacity. */
  load: number | null;
  /** Real power in W. */
  realPower: number | null;
  /** °C (UPS temperature, else battery temperature). */
  temperature: number | null;
  /** Seconds since the UPS went on battery (0 while on mains). */
  secondsOnBattery: number;
  comm: CommState;
  /** Why comm is not ok, in words a user can act on. */
  commError: string | null;
  /** Implausible readings: present in the state for display, never to be used for a decision. */
  untrusted: TrustedField[];
  /** ups.alarm text, when the UPS reports one. */
  alarmText: string | null;
  device: { mfr: string | null; model: string | null; serial: string | null };
  /** Every variable as the source reported it (NUT names). */
  raw: Record<string, string>;
}

/** Flags that map to a boolean field of the state. */
const FLAG_FIELDS: Record<string, keyof UpsState> = {
  OL: 'online',
  OB: 'onBattery',
  LB: 'lowBattery',
  FSD: 'fsd',
  CHRG: 'charging',
  DISCHRG: 'discharging',
  BYPASS: 'bypass',
  OVER: 'overload',
  TRIM: 'trim',
  BOOST: 'boost',
  CAL: 'calibrating',
  OFF: 'off',
  RB: 'replaceBattery',
  ALARM: 'alarm',
};

/** Parse a NUT number ("023.4", "230.0"); null for absent or non-numeric values. */
export function num(v: string | undefined): number | null {
  if (v === undefined) return null;
  const t = v.trim();
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t)) return null;
  const n = Number(t);
  return Number.isFinite(n) ? n : null;
}

export function parseFlags(status: string | undefined): string[] {
  if (!status) return [];
  return status.split(/\s+/).filter((f) => f.length > 0);
}

/** Runtimes above this (≈ 18 h; NUT drivers report 65535 or 0xFFFF·n for "unknown") are implausible. */
const MAX_PLAUSIBLE_RUNTIME = 65000;

export interface NormaliseInput {
  ups: string;
  source: SourceKind;
  vars: Record<string, string>;
  ts: number;
  /** Seconds on battery, tracked by the device across polls. */
  secondsOnBattery: number;
}

/**
 * A runtime of exactly 0 while the battery still holds charge is a driver's "unknown", not an
 * empty battery (an empty battery also shows a low charge or LB).
 */
function zeroRuntimeImplausible(s: UpsState): boolean {
  if (s.runtime !== 0) return false;
  if (s.charge !== null) return s.charge > 10;
  return !s.lowBattery;
}

/** Build the normalised state of a UPS that answered. */
export function normalise(input: NormaliseInput): UpsState {
  const { vars } = input;
  const flags = parseFlags(vars['ups.status']);
  const state: UpsState = {
    ups: input.ups,
    source: input.source,
    ts: input.ts,
    lastSeen: input.ts,
    online: false,
    onBattery: false,
    lowBattery: false,
    fsd: false,
    charging: false,
    discharging: false,
    bypass: false,
    overload: false,
    trim: false,
    boost: false,
    calibrating: false,
    off: false,
    replaceBattery: false,
    alarm: false,
    flags,
    charge: num(vars['battery.charge']),
    runtime: num(vars['battery.runtime']),
    inputVoltage: num(vars['input.voltage']),
    outputVoltage: num(vars['output.voltage']),
    load: num(vars['ups.load']),
    realPower: num(vars['ups.realpower']),
    temperature: num(vars['ups.temperature']) ?? num(vars['battery.temperature']),
    secondsOnBattery: input.secondsOnBattery,
    comm: 'ok',
    commError: null,
    untrusted: [],
    alarmText: vars['ups.alarm'] ?? null,
    device: {
      mfr: vars['device.mfr'] ?? vars['ups.mfr'] ?? null,
      model: vars['device.model'] ?? vars['ups.model'] ?? null,
      serial: vars['device.serial'] ?? vars['ups.serial'] ?? null,
    },
    raw: { ...vars },
  };
  for (const f of flags) {
    const field = FLAG_FIELDS[f];
    if (field) (state as unknown as Record<string, unknown>)[field] = true;
  }
  if (state.alarmText) state.alarm = true;
  // Newer drivers report the charger state separately from ups.status.
  const charger = vars['battery.charger.status'];
  if (charger === 'charging') state.charging = true;
  if (charger === 'discharging') state.discharging = true;
  if (state.charge !== null && (state.charge > 100 || state.charge < 0)) state.untrusted.push('charge');
  if (state.runtime !== null && (state.runtime < 0 || state.runtime >= MAX_PLAUSIBLE_RUNTIME || zeroRuntimeImplausible(state))) state.untrusted.push('runtime');
  return state;
}

/**
 * The state of a UPS that does not answer: last known readings kept (a decision needs to know it was
 * last seen on battery), comm marked, error explained.
 */
export function withComm(prev: UpsState | undefined, base: { ups: string; source: SourceKind; ts: number }, comm: 'stale' | 'lost', error: string): UpsState {
  if (prev) return { ...prev, ts: base.ts, comm, commError: error };
  return {
    ...normalise({ ups: base.ups, source: base.source, vars: {}, ts: base.ts, secondsOnBattery: 0 }),
    lastSeen: null,
    comm,
    commError: error,
  };
}

/** Compact badge text: `OB 76% 23m`, `OL CHRG 98% 1h02m`. */
export function formatRuntime(seconds: number | null): string {
  if (seconds === null) return '?';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  return `${h}h${String(m % 60).padStart(2, '0')}m`;
}

export function badge(state: UpsState): string {
  const status = state.flags.length ? state.flags.join(' ') : '?';
  const charge = state.charge === null ? '' : ` ${Math.round(state.charge)}%`;
  const runtime = state.runtime === null ? '' : ` ${formatRuntime(state.runtime)}`;
  const untrusted = state.untrusted.length ? ` (implausible ${state.untrusted.join(', ')})` : '';
  return `${status}${charge}${runtime}${untrusted}`;
}

/** The fields that make a state "changed" for output: everything but clocks and raw churn. */
export function stateKey(s: UpsState): string {
  return JSON.stringify([
    s.comm, s.commError, s.flags, s.charge, s.runtime, s.inputVoltage, s.outputVoltage, s.load, s.realPower,
    s.temperature, s.untrusted, s.alarmText, s.charging, s.discharging,
  ]);
}

/** What a node shows under itself for this state: colour, shape, badge text. */
export interface StatusView {
  fill: 'red' | 'green' | 'yellow' | 'grey';
  shape: 'dot' | 'ring';
  text: string;
}

export function statusOf(state: UpsState, warning: string | null, max = 100): StatusView {
  const clipText = (t: string) => (t.length > max ? t.slice(0, max - 1) + '…' : t);
  if (state.comm === 'lost') return { fill: 'red', shape: 'ring', text: clipText(`comm lost: ${state.commError ?? 'no answer'}`) };
  if (state.comm === 'stale') return { fill: 'yellow', shape: 'ring', text: clipText(`stale: ${state.commError ?? 'old data'}`) };
  const text = badge(state);
  if (warning) return { fill: 'red', shape: 'ring', text: clipText(`${text} · ${warning}`) };
  if (state.fsd || state.lowBattery || state.off) return { fill: 'red', shape: 'dot', text };
  if (state.onBattery || state.untrusted.length || state.replaceBattery || state.overload || state.bypass) return { fill: 'yellow', shape: 'dot', text };
  return { fill: 'green', shape: 'dot', text };
}
