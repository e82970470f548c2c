/**
 * A UPS source that reads a UPS Home Assistant already knows (typically through HA's NUT
 * integration), from its entities over the shared HA websocket: `subscribe_entities` keeps the
 * states current, every read maps them to NUT variable names so the one normaliser serves it.
 *
 * Default entity ids follow the NUT integration's names for a device called `<x>`:
 * `sensor.<x>_status_data` (the raw `ups.status`, e.g. `OL CHRG`), `sensor.<x>_battery_charge`,
 * `sensor.<x>_battery_runtime`, `sensor.<x>_load`, `sensor.<x>_input_voltage`,
 * `sensor.<x>_output_voltage`, `sensor.<x>_real_power`, `sensor.<x>_ups_temperature`,
 * `sensor.<x>_alarms`. Each can be set explicitly. Units are taken from the entity's
 * `unit_of_measurement` (runtime in s/min/h, temperature in °C/°F).
 *
 * HA's NUT integration creates battery runtime, real power and temperature disabled: a disabled
 * entity has no state at all, so without a word the runtime would stay null and no runtime threshold
 * could ever fire. A missing runtime or charge entity, and any entity chosen explicitly, is named in
 * `warning` (shown on the UPS in node and logged once). Other readings derived from the prefix may
 * simply not exist for this UPS (no temperature probe) and are left out quietly.
 */
import { SourceError, UpsReading, UpsSource } from '../ups/source';
import { HaClient } from './client';
import { EntityState } from './entities';
import { getHaServer } from './registry';

export interface HaEntityMap {
  /** Required: the UPS status (NUT flags like `OL CHRG`, or the NUT integration's status words). */
  status: string;
  charge?: string;
  runtime?: string;
  load?: string;
  inputVoltage?: string;
  outputVoltage?: string;
  realPower?: string;
  temperature?: string;
  alarm?: string;
}

/** Suffixes of the NUT integration's entity ids. */
const DEFAULT_SUFFIX: Record<keyof HaEntityMap, string> = {
  status: '_status_data',
  charge: '_battery_charge',
  runtime: '_battery_runtime',
  load: '_load',
  inputVoltage: '_input_voltage',
  outputVoltage: '_output_voltage',
  realPower: '_real_power',
  temperature: '_ups_temperature',
  alarm: '_alarms',
};

export const HA_ENTITY_FIELDS = Object.keys(DEFAULT_SUFFIX) as Array<keyof HaEntityMap>;

/** Readings the decisions depend on: their absence is always worth a warning. */
const NEEDED: ReadonlySet<keyof HaEntityMap> = new Set(['charge', 'runtime']);

/** What each reading is called in a warning. */
const FIELD_WORDS: Record<Exclude<keyof HaEntityMap, 'status'>, string> = {
  charge: 'battery charge', runtime: 'battery runtime', load: 'load', inputVoltage: 'input voltage', outputVoltage: 'output voltage',
  realPower: 'real power', temperature: 'temperature', alarm: 'alarms',
};

/** Entities HA's NUT integration creates disabled. */
const DISABLED_BY_DEFAULT: ReadonlySet<keyof HaEntityMap> = new Set(['runtime', 'realPower', 'temperature']);

/**
 * The warning for mapped entities Home Assistant does not have (null when all are there):
 * `sensor.rack_battery_runtime (battery runtime) is not in Home Assistant: enable it there …`.
 */
export function missingEntitiesWarning(missing: ReadonlyArray<{ field: Exclude<keyof HaEntityMap, 'status'>; id: string }>): string | null {
  if (!missing.length) return null;
  const list = missing.map((m) => `${m.id} (${FIELD_WORDS[m.field]})`).join(', ');
  const one = missing.length === 1;
  const hint = missing.some((m) => DISABLED_BY_DEFAULT.has(m.field)) ? '; HA\'s NUT integration creates it disabled' : '';
  const runtime = missing.some((m) => m.field === 'runtime') ? '; runtime thresholds cannot fire without it' : '';
  return `${list} ${one ? 'is' : 'are'} not in Home Assistant: enable ${one ? 'it' : 'them'} in Home Assistant (Settings → Devices & services → Entities)${hint}${runtime}, or correct the entity id in the UPS device`;
}

export const ENTITY_ID_PATTERN = /^[a-z_]+\.[a-z0-9_]+$/;

/** `sensor.ups` + overrides → the full map (an override wins; empty means "derive from the prefix"). */
export function entityMap(prefix: string, overrides: Partial<Record<keyof HaEntityMap, string>> = {}): HaEntityMap {
  const p = prefix.trim();
  const out: Partial<HaEntityMap> = {};
  for (const f of HA_ENTITY_FIELDS) {
    const o = overrides[f]?.trim();
    if (o) out[f] = o;
    else if (p) out[f] = p + DEFAULT_SUFFIX[f];
  }
  if (!out.status) throw new Error('the status entity is required (or an entity prefix such as sensor.myups)');
  return out as HaEntityMap;
}

/** Which NUT variable each entity feeds. */
const NUT_VAR: Record<Exclude<keyof HaEntityMap, 'status'>, string> = {
  charge: 'battery.charge',
  runtime: 'battery.runtime',
  load: 'ups.load',
  inputVoltage: 'input.voltage',
  outputVoltage: 'output.voltage',
  realPower: 'ups.realpower',
  temperature: 'ups.temperature',
  alarm: 'ups.alarm',
};

const NUT_FLAGS = new Set(['OL', 'OB', 'LB', 'HB', 'RB', 'CHRG', 'DISCHRG', 'BYPASS', 'CAL', 'OFF', 'OVER', 'TRIM', 'BOOST', 'FSD', 'ALARM', 'WAIT', 'ECO', 'TEST']);

/** Status words of HA's NUT integration (`ups.status.display`) and of apcupsd, → NUT flags. Longest first. */
const STATUS_WORDS: Array<[string, string]> = ([
  ['battery needs replaced', 'RB'], ['battery needs replacing', 'RB'], ['replace battery', 'RB'],
  ['battery discharging', 'DISCHRG'], ['battery charging', 'CHRG'], ['runtime calibration', 'CAL'],
  ['trimming voltage', 'TRIM'], ['boosting voltage', 'BOOST'], ['forced shutdown', 'FSD'], ['shutting down', 'FSD'],
  ['bypass active', 'BYPASS'], ['on battery', 'OB'], ['low battery', 'LB'], ['high battery', 'HB'],
  ['discharging', 'DISCHRG'], ['charging', 'CHRG'], ['overloaded', 'OVER'], ['overload', 'OVER'], ['calibration', 'CAL'],
  ['onbatt', 'OB'], ['lowbatt', 'LB'], ['replacebatt', 'RB'], ['online', 'OL'], ['offline', 'OFF'], ['alarm', 'ALARM'],
] as Array<[string, string]>).sort((a, b) => b[0].length - a[0].length);

/** A status entity's state → NUT flags; null when it cannot be read. */
export function statusFlags(state: string): string[] | null {
  const t = state.trim();
  if (!t) return null;
  const tokens = t.split(/\s+/);
  if (tokens.every((x) => NUT_FLAGS.has(x))) return tokens;
  let rest = ` ${t.toLowerCase().replace(/[,;/]+/g, ' ').replace(/\s+/g, ' ')} `;
  const flags: string[] = [];
  for (const [words, flag] of STATUS_WORDS) {
    const needle = ` ${words} `;
    if (rest.includes(needle)) {
      rest = rest.split(needle).join(' ');
      if (!flags.includes(flag)) flags.push(flag);
    }
  }
  return flags.length ? flags : null;
}

const RUNTIME_FACTOR: Record<string, number> = { s: 1, sec: 1, min: 60, h: 3600, d: 86400, ms: 0.001 };

function numericValue(e: EntityState | undefined, field: keyof HaEntityMap): string | undefined {
  if (!e || e.state === 'unavailable' || e.state === 'unknown' || e.state === '') return undefined;
  let n = Number(e.state);
  if (!Number.isFinite(n)) return field === 'alarm' ? e.state : undefined;
  const unit = typeof e.attributes.unit_of_measurement === 'string' ? e.attributes.unit_of_measurement : '';
  if (field === 'runtime' && unit && RUNTIME_FACTOR[unit] !== undefined) n = n * RUNTIME_FACTOR[unit];
  if (field === 'temperature' && unit === '°F') n = ((n - 32) * 5) / 9;
  if (field === 'temperature' && unit === 'K') n = n - 273.15;
  return String(Math.round(n * 1000) / 1000);
}

export interface HaSourceOptions {
  /** The HA server config node id (looked up in the registry at read time). */
  serverId: string;
  entities: HaEntityMap;
  /** How long the first read waits for the connection and the first states (ms). */
  timeoutMs?: number;
  /** For tests: where to find the client. */
  lookup?: (id: string) => HaClient | undefined;
}

export class HaSource implements UpsSource {
  readonly kind = 'ha' as const;
  readonly label: string;
  /** Mapped entities Home Assistant does not have (see missingEntitiesWarning), from the last read. */
  warning: string | null = null;
  private client: HaClient | null = null;
  private unwatch: (() => void) | null = null;
  private closed = false;

  constructor(private readonly opts: HaSourceOptions) {
    this.label = `${opts.entities.status} (Home Assistant)`;
  }

  private get ids(): string[] {
    return Object.values(this.opts.entities).filter((v): v is string => typeof v === 'string' && v.length > 0);
  }

  private attach(client: HaClient): void {
    this.unwatch?.();
    this.client = client;
    this.unwatch = client.watchEntities(this.ids, () => undefined);
  }

  async read(): Promise<UpsReading> {
    if (this.closed) throw new SourceError('source closed', 'lost');
    const client = (this.opts.lookup ?? getHaServer)(this.opts.serverId);
    if (!client) throw new SourceError('the Home Assistant server of this UPS is not deployed (check the UPS device\'s Home Assistant server)', 'lost');
    const first = client !== this.client;
    if (first) this.attach(client);
    // The first read (and the first after a reconnect) waits for the states; otherwise never block a poll.
    if (first || (client.connected && !client.entitiesReady)) await this.waitReady(client);
    if (!client.connected) throw new SourceError(`Home Assistant: ${client.status.text}`, 'lost');
    if (!client.entitiesReady) throw new SourceError('Home Assistant has not sent the entity states yet', 'lost');
    const e = this.opts.entities;
    const status = client.entity(e.status);
    if (!status) throw new SourceError(`entity ${e.status} not found in Home Assistant (check the entity ids; HA's NUT integration names it sensor.<ups>_status_data)`, 'lost');
    if (status.state === 'unavailable') throw new SourceError(`Home Assistant reports ${e.status} unavailable (its integration cannot reach the UPS)`, 'lost');
    if (status.state === 'unknown') throw new SourceError(`Home Assistant does not know the state of ${e.status} yet`, 'stale');
    const flags = statusFlags(status.state);
    if (!flags) throw new SourceError(`cannot read the UPS status "${status.state}" of ${e.status} (expected NUT flags such as "OL CHRG")`, 'lost');
    const vars: Record<string, string> = { 'ups.status': flags.join(' ') };
    const missing: Array<{ field: keyof typeof NUT_VAR; id: string }> = [];
    for (const field of Object.keys(NUT_VAR) as Array<keyof typeof NUT_VAR>) {
      const id = e[field];
      if (!id) continue;
      const entity = client.entity(id);
      // An id with the integration's own suffix came from the prefix (or is the same as if it had).
      if (!entity && (NEEDED.has(field) || !id.endsWith(DEFAULT_SUFFIX[field]))) missing.push({ field, id });
      const v = numericValue(entity, field);
      if (v !== undefined) vars[NUT_VAR[field]] = v;
    }
    this.warning = missingEntitiesWarning(missing);
    return { vars };
  }

  /** Wait until the client is connected and delivered the entities (bounded by the timeout). */
  private async waitReady(client: HaClient): Promise<void> {
    const deadline = Date.now() + (this.opts.timeoutMs ?? 5000);
    while (!this.closed && Date.now() < deadline && !(client.connected && client.entitiesReady)) {
      if (client.status.state === 'auth_failed') return;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unwatch?.();
    this.unwatch = null;
    this.client = null;
  }
}
