/**
 * The NUT variables a served UPS shows, mapped back from the normalised UPS state: every variable
 * the source reported (`raw`, NUT names for every source kind) first, then, for sources other than
 * NUT, whatever the normalised fields know and `raw` lacks. `ups.status` comes from the status flags, with `FSD` in front while
 * the server holds FSD for that UPS (as upsd does).
 */
import { UpsState } from '../ups/state';

/** A served variable list: sorted the way upsd walks its tree (case-insensitive by name). */
export type VarList = ReadonlyArray<readonly [name: string, value: string]>;

/** Flags in the order upsd's drivers usually report them; used when a source gave no flag list. */
const FLAG_ORDER: Array<[keyof UpsState, string]> = [
  ['calibrating', 'CAL'],
  ['trim', 'TRIM'],
  ['boost', 'BOOST'],
  ['online', 'OL'],
  ['onBattery', 'OB'],
  ['off', 'OFF'],
  ['overload', 'OVER'],
  ['bypass', 'BYPASS'],
  ['lowBattery', 'LB'],
  ['replaceBattery', 'RB'],
  ['charging', 'CHRG'],
  ['discharging', 'DISCHRG'],
  ['alarm', 'ALARM'],
];

/** A number the way NUT drivers print it: integers plain, others with one decimal. */
function numText(n: number | null): string | undefined {
  if (n === null || !Number.isFinite(n)) return undefined;
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

export function statusText(state: UpsState, fsd: boolean): string {
  let flags = state.flags.length ? [...state.flags] : FLAG_ORDER.filter(([f]) => state[f] === true).map(([, flag]) => flag);
  if (state.fsd && !flags.includes('FSD')) flags = ['FSD', ...flags];
  if (fsd && !flags.includes('FSD')) flags = ['FSD', ...flags];
  return flags.join(' ');
}

/** upsd compares variable names with strcasecmp; its tree walk gives this order. */
export function compareNames(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Every variable of a UPS in this state, sorted as upsd lists them. */
export function varsOf(state: UpsState, fsd: boolean): VarList {
  const vars = new Map<string, string>();
  const seen = new Set<string>();
  const put = (name: string, value: string | null | undefined) => {
    if (value === undefined || value === null) return;
    const key = name.toLowerCase();
    if (seen.has(key)) return;
    seen.add(key);
    vars.set(name, value);
  };
  put('ups.status', statusText(state, fsd));
  for (const [k, v] of Object.entries(state.raw)) put(k, v);
  // A NUT source's variables are upsd's own: serve exactly those, nothing derived.
  if (state.source === 'nut') return sorted(vars);
  put('battery.charge', numText(state.charge));
  put('battery.runtime', state.runtime === null ? undefined : String(Math.round(state.runtime)));
  put('input.voltage', numText(state.inputVoltage));
  put('output.voltage', numText(state.outputVoltage));
  put('ups.load', numText(state.load));
  put('ups.realpower', numText(state.realPower));
  put('ups.temperature', numText(state.temperature));
  put('ups.alarm', state.alarmText);
  put('device.mfr', state.device.mfr);
  put('device.model', state.device.model);
  put('device.serial', state.device.serial);
  put('ups.mfr', state.device.mfr);
  put('ups.model', state.device.model);
  put('ups.serial', state.device.serial);
  put('device.type', 'ups');
  return sorted(vars);
}

function sorted(vars: Map<string, string>): VarList {
  return [...vars.entries()].sort((a, b) => compareNames(a[0], b[0]));
}

/** Case-insensitive lookup, as upsd's tree does. */
export function findVar(list: VarList, name: string): string | undefined {
  const key = name.toLowerCase();
  for (const [k, v] of list) if (k.toLowerCase() === key) return v;
  return undefined;
}

/** Text variables, flagged as strings whatever their value looks like (a serial may be all digits). */
const STRING_VARS = new Set([
  'device.mfr', 'device.model', 'device.serial', 'device.type', 'device.part', 'device.description', 'device.contact', 'device.location',
  'ups.mfr', 'ups.model', 'ups.serial', 'ups.firmware', 'ups.firmware.aux', 'ups.id', 'ups.mfr.date', 'ups.productid', 'ups.vendorid',
  'ups.test.result', 'ups.beeper.status', 'ups.type', 'battery.type', 'battery.date', 'battery.mfr.date', 'battery.charger.status',
  'driver.name', 'driver.version', 'driver.version.internal', 'driver.version.data', 'driver.parameter.port',
]);

/** The field size snmp-ups gives its string variables (SU_INFOSIZE). */
const STRING_AUX = 128;

/**
 * GET TYPE for sources other than NUT, answered as upsd answers for a driver that flags its text
 * variables ST_FLAG_STRING with a field size, as snmp-ups does: `STRING:128` for text, `NUMBER`
 * for numbers, and `NUMBER` for ups.status and the alarm variables, which drivers set without a
 * type flag (upsd calls every unflagged variable a NUMBER). Nothing is writable here, so there is
 * never RW, ENUM or RANGE. A NUT source's upsd is asked instead (ServedUps.meta).
 */
export function typeOf(name: string, value: string): string {
  const n = name.toLowerCase();
  if (n === 'ups.status' || n === 'ups.alarm' || n.endsWith('.alarm')) return 'NUMBER';
  if (STRING_VARS.has(n) || !/^\s*[-+]?(\d+\.?\d*|\.\d+)\s*$/.test(value)) return `STRING:${STRING_AUX}`;
  return 'NUMBER';
}

/** Short descriptions for GET DESC, in the spirit of NUT's docs/nut-names.txt. */
const VAR_DESCRIPTIONS: Record<string, string> = {
  'ups.status': 'UPS status',
  'ups.alarm': 'UPS alarms',
  'ups.load': 'Load on UPS (percent of full)',
  'ups.realpower': 'Current value of real power (Watts)',
  'ups.realpower.nominal': 'Nominal value of real power (Watts)',
  'ups.power': 'Current value of apparent power (Volt-Amps)',
  'ups.power.nominal': 'Nominal value of apparent power (Volt-Amps)',
  'ups.temperature': 'UPS temperature (degrees C)',
  'ups.mfr': 'UPS manufacturer',
  'ups.model': 'UPS model',
  'ups.serial': 'UPS serial number',
  'ups.firmware': 'UPS firmware',
  'ups.beeper.status': 'UPS beeper status',
  'ups.test.result': 'Results of last self test',
  'ups.delay.shutdown': 'Interval to wait after shutdown with delay command (seconds)',
  'ups.delay.start': 'Interval to wait before (re)starting the load (seconds)',
  'ups.timer.shutdown': 'Time before the load will be shutdown (seconds)',
  'ups.timer.start': 'Time before the load will be started (seconds)',
  'device.mfr': 'Device manufacturer',
  'device.model': 'Device model',
  'device.serial': 'Device serial number',
  'device.type': 'Device type (ups, pdu, scd, psu, ats)',
  'battery.charge': 'Battery charge (percent of full)',
  'battery.charge.low': 'Remaining battery level when UPS switches to LB (percent)',
  'battery.charge.warning': 'Battery level when UPS switches to Warning state (percent)',
  'battery.runtime': 'Battery runtime (seconds)',
  'battery.runtime.low': 'Remaining battery runtime when UPS switches to LB (seconds)',
  'battery.voltage': 'Battery voltage (V)',
  'battery.voltage.nominal': 'Nominal battery voltage (V)',
  'battery.temperature': 'Battery temperature (degrees C)',
  'battery.charger.status': 'Status of the battery charger',
  'input.voltage': 'Input voltage (V)',
  'input.voltage.nominal': 'Nominal input voltage (V)',
  'input.frequency': 'Input line frequency (Hz)',
  'input.transfer.low': 'Low voltage transfer point (V)',
  'input.transfer.high': 'High voltage transfer point (V)',
  'output.voltage': 'Output voltage (V)',
  'output.voltage.nominal': 'Nominal output voltage (V)',
  'output.current': 'Output current (A)',
  'output.frequency': 'Output frequency (Hz)',
};

const CMD_DESCRIPTIONS: Record<string, string> = {
  'load.off': 'Turn off the load immediately',
  'load.on': 'Turn on the load immediately',
  'shutdown.return': 'Turn off the load and return when power is back',
  'shutdown.stayoff': 'Turn off the load and remain off',
  'shutdown.stop': 'Stop a shutdown in progress',
  'test.battery.start': 'Start a battery test',
  'test.battery.stop': 'Stop the battery test',
  'test.failure.start': 'Start a simulated power failure',
  'test.failure.stop': 'Stop simulating a power failure',
  'beeper.enable': 'Enable the UPS beeper',
  'beeper.disable': 'Disable the UPS beeper',
  'beeper.mute': 'Temporarily mute the UPS beeper',
};

export function varDescription(name: string): string {
  return VAR_DESCRIPTIONS[name.toLowerCase()] ?? 'Description unavailable';
}

export function cmdDescription(name: string): string {
  return CMD_DESCRIPTIONS[name.toLowerCase()] ?? 'Description unavailable';
}
