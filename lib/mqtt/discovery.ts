/**
 * Home Assistant MQTT discovery payloads, built the zigbee2mqtt way: static lookup tables give each
 * entity its component, device class, unit, state class and entity category; one builder turns a
 * device into its discovery configs, each with a stable `unique_id`, a `device` block, the `origin`
 * and the availability list (the package's own last-will topic). Pure functions: no MQTT here.
 *
 * Topics (base topic `ups-orchestrator`, discovery prefix `homeassistant`):
 * - config: `homeassistant/<component>/<unique_id>/config` (retained; object id = unique id, no node id)
 * - UPS state: `ups-orchestrator/ups/<ups>/state` (retained JSON; entities pick their field with a template)
 * - availability: `ups-orchestrator/status` (`online` / `offline`, retained, last will)
 *
 * `object_id` is deprecated in Home Assistant (2025.10); entities suggest their id with
 * `default_entity_id` (`sensor.<ups>_battery_charge`) instead.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UpsState } from '../ups/state';
import { slug } from './topics';

export type Component = 'sensor' | 'binary_sensor' | 'button' | 'switch';

/** One entity of a device, as the lookup tables describe it. */
export interface EntityDef {
  /** Stable key: the last part of unique_id and default_entity_id. */
  key: string;
  component: Component;
  name: string;
  /** JSON field of the device's state topic this entity shows. */
  field?: string;
  device_class?: string;
  unit_of_measurement?: string;
  state_class?: 'measurement' | 'total' | 'total_increasing';
  entity_category?: 'diagnostic' | 'config';
  icon?: string;
  suggested_display_precision?: number;
  /** Published only when this reading is present (not null) in the state. */
  whenPresent?: keyof UpsState;
  /** Extra attributes from the state topic (JSON template producing an object). */
  attributes?: string;
  /** Values of an `enum` sensor. */
  options?: readonly string[];
}

export interface DiscoveryContext {
  baseTopic: string;
  discoveryPrefix: string;
  availabilityTopic: string;
  origin: { name: string; sw_version?: string; support_url?: string };
}

export interface DiscoveryConfig {
  topic: string;
  /** Which device it belongs to (for removal). */
  device: string;
  payload: Record<string, unknown>;
}

/** The UPS entities (zigbee2mqtt-style lookup table). Order is the order HA lists them in. */
export const UPS_ENTITIES: readonly EntityDef[] = [
  { key: 'status', component: 'sensor', name: 'Status', field: 'status', icon: 'mdi:power-plug-battery', attributes: '{{ {"flags": value_json.flags, "comm": value_json.comm, "comm_error": value_json.comm_error, "alarm": value_json.alarm, "untrusted": value_json.untrusted, "seconds_on_battery": value_json.seconds_on_battery} | tojson }}' },
  { key: 'battery_charge', component: 'sensor', name: 'Battery charge', field: 'battery_charge', device_class: 'battery', unit_of_measurement: '%', state_class: 'measurement', whenPresent: 'charge' },
  { key: 'battery_runtime', component: 'sensor', name: 'Battery runtime', field: 'battery_runtime', device_class: 'duration', unit_of_measurement: 's', state_class: 'measurement', whenPresent: 'runtime' },
  { key: 'load', component: 'sensor', name: 'Load', field: 'load', unit_of_measurement: '%', state_class: 'measurement', icon: 'mdi:gauge', whenPresent: 'load' },
  { key: 'input_voltage', component: 'sensor', name: 'Input voltage', field: 'input_voltage', device_class: 'voltage', unit_of_measurement: 'V', state_class: 'measurement', whenPresent: 'inputVoltage' },
  { key: 'output_voltage', component: 'sensor', name: 'Output voltage', field: 'output_voltage', device_class: 'voltage', unit_of_measurement: 'V', state_class: 'measurement', whenPresent: 'outputVoltage' },
  { key: 'real_power', component: 'sensor', name: 'Real power', field: 'real_power', device_class: 'power', unit_of_measurement: 'W', state_class: 'measurement', whenPresent: 'realPower' },
  { key: 'temperature', component: 'sensor', name: 'Temperature', field: 'temperature', device_class: 'temperature', unit_of_measurement: '°C', state_class: 'measurement', entity_category: 'diagnostic', whenPresent: 'temperature' },
  { key: 'on_battery', component: 'binary_sensor', name: 'On battery', field: 'on_battery', icon: 'mdi:power-plug-off' },
  { key: 'low_battery', component: 'binary_sensor', name: 'Low battery', field: 'low_battery', device_class: 'battery' },
  { key: 'comm_problem', component: 'binary_sensor', name: 'Communication problem', field: 'comm_problem', device_class: 'problem', entity_category: 'diagnostic' },
  { key: 'replace_battery', component: 'binary_sensor', name: 'Replace battery', field: 'replace_battery', device_class: 'problem' },
];

/** NUT status flags in words, for the status sensor. */
const FLAG_WORDS: Record<string, string> = {
  OL: 'Online', OB: 'On battery', LB: 'Low battery', HB: 'High battery', RB: 'Replace battery', CHRG: 'Charging',
  DISCHRG: 'Discharging', BYPASS: 'Bypass', CAL: 'Calibrating', OFF: 'Off', OVER: 'Overloaded', TRIM: 'Trimming voltage',
  BOOST: 'Boosting voltage', FSD: 'Forced shutdown', ALARM: 'Alarm', WAIT: 'Waiting', ECO: 'Eco mode', TEST: 'Testing',
};

/** `OL CHRG` → `Online, charging`; communication problems first. */
export function statusText(s: UpsState): string {
  if (s.comm === 'lost') return 'Communication lost';
  if (s.comm === 'stale') return 'Data stale';
  if (!s.flags.length) return 'Unknown';
  return s.flags
    .map((f, i) => {
      const w = FLAG_WORDS[f];
      if (!w) return f; // unknown flags as the UPS gave them
      return i === 0 ? w : w.charAt(0).toLowerCase() + w.slice(1);
    })
    .join(', ');
}

const onOff = (b: boolean) => (b ? 'ON' : 'OFF');

/** Home Assistant keeps at most 255 characters of a sensor's state (a longer state is rejected). */
export const HA_STATE_MAX = 255;

/** Text for a sensor state, cut to what Home Assistant accepts. */
export function stateText(t: string | null): string | null {
  if (t === null) return null;
  const chars = [...t];
  return chars.length > HA_STATE_MAX ? chars.slice(0, HA_STATE_MAX - 1).join('') + '…' : t;
}

/** The JSON on a UPS's state topic. Clocks are left out so an unchanged UPS publishes nothing new. */
export function upsStatePayload(s: UpsState): Record<string, unknown> {
  return {
    status: stateText(statusText(s)),
    flags: s.flags.join(' '),
    comm: s.comm,
    comm_error: s.commError,
    battery_charge: s.charge,
    battery_runtime: s.runtime,
    load: s.load,
    input_voltage: s.inputVoltage,
    output_voltage: s.outputVoltage,
    real_power: s.realPower,
    temperature: s.temperature,
    on_battery: onOff(s.onBattery),
    low_battery: onOff(s.lowBattery),
    comm_problem: onOff(s.comm !== 'ok'),
    replace_battery: onOff(s.replaceBattery),
    alarm: s.alarmText,
    untrusted: s.untrusted,
    seconds_on_battery: Math.round(s.secondsOnBattery),
  };
}

export function upsDeviceId(ctx: DiscoveryContext, ups: string): string {
  return `upsorch_${slug(ctx.baseTopic)}_ups_${slug(ups)}`;
}

export function upsStateTopic(ctx: DiscoveryContext, ups: string): string {
  return `${ctx.baseTopic}/ups/${slug(ups)}/state`;
}

export function configTopic(ctx: DiscoveryContext, component: Component, uniqueId: string): string {
  return `${ctx.discoveryPrefix}/${component}/${uniqueId}/config`;
}

/** One entity's discovery config. */
export function entityConfig(
  ctx: DiscoveryContext,
  def: EntityDef,
  dev: { id: string; objectPrefix: string; block: Record<string, unknown>; stateTopic: string; commandTopic?: string },
): DiscoveryConfig {
  const uniqueId = `${dev.id}_${def.key}`;
  const p: Record<string, unknown> = {
    name: def.name,
    unique_id: uniqueId,
    default_entity_id: `${def.component}.${dev.objectPrefix}_${def.key}`,
  };
  if (def.component !== 'button') {
    p.state_topic = dev.stateTopic;
    if (def.field) p.value_template = `{{ value_json.${def.field} }}`;
  }
  if (def.attributes) {
    p.json_attributes_topic = dev.stateTopic;
    p.json_attributes_template = def.attributes;
  }
  if (def.device_class) p.device_class = def.device_class;
  if (def.options) p.options = [...def.options];
  if (def.unit_of_measurement) p.unit_of_measurement = def.unit_of_measurement;
  if (def.state_class) p.state_class = def.state_class;
  if (def.suggested_display_precision !== undefined) p.suggested_display_precision = def.suggested_display_precision;
  if (def.entity_category) p.entity_category = def.entity_category;
  if (def.icon) p.icon = def.icon;
  if (def.component === 'binary_sensor') {
    p.payload_on = 'ON';
    p.payload_off = 'OFF';
  }
  if (def.component === 'button' || def.component === 'switch') {
    p.command_topic = `${dev.commandTopic}/${def.key}`;
    if (def.component === 'button') p.payload_press = 'PRESS';
    else {
      p.payload_on = 'ON';
      p.payload_off = 'OFF';
      p.state_on = 'ON';
      p.state_off = 'OFF';
    }
  }
  p.availability = [{ topic: ctx.availabilityTopic }];
  p.device = dev.block;
  p.origin = ctx.origin;
  return { topic: configTopic(ctx, def.component, uniqueId), device: dev.id, payload: p };
}

/** The device block of a UPS: identity when the UPS reports it. */
export function upsDeviceBlock(ctx: DiscoveryContext, s: UpsState): Record<string, unknown> {
  const block: Record<string, unknown> = { identifiers: [upsDeviceId(ctx, s.ups)], name: s.ups };
  if (s.device.mfr) block.manufacturer = s.device.mfr;
  if (s.device.model) block.model = s.device.model;
  if (s.device.serial) block.serial_number = s.device.serial;
  return block;
}

/**
 * Every discovery config of one UPS. Sensors for readings the UPS does not report are left out;
 * `seen` (config topics already retained) keeps an entity once it existed, so a reading that drops
 * out for a moment (communication lost) does not remove and re-create the entity.
 */
export function upsDiscovery(ctx: DiscoveryContext, s: UpsState, seen: ReadonlySet<string> = new Set()): DiscoveryConfig[] {
  const dev = { id: upsDeviceId(ctx, s.ups), objectPrefix: slug(s.ups), block: upsDeviceBlock(ctx, s), stateTopic: upsStateTopic(ctx, s.ups) };
  return UPS_ENTITIES.map((d) => ({ d, c: entityConfig(ctx, d, dev) }))
    .filter(({ d, c }) => !d.whenPresent || s[d.whenPresent] !== null || seen.has(c.topic))
    .map(({ c }) => c);
}

/** The origin block: this package, its version, where to get help (read from package.json). */
export function packageOrigin(): DiscoveryContext['origin'] {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    const file = path.join(dir, 'package.json');
    try {
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: string; version?: string; homepage?: string; repository?: { url?: string } };
      if (pkg.name === 'node-red-contrib-ups-orchestrator') {
        const repo = (pkg.homepage || pkg.repository?.url || '').replace(/^git\+/, '').replace(/\.git$/, '');
        return { name: 'UPS orchestrator (node-red-contrib-ups-orchestrator)', sw_version: pkg.version, ...(repo ? { support_url: repo } : {}) };
      }
    } catch {
      /* not here */
    }
    dir = path.dirname(dir);
  }
  return { name: 'UPS orchestrator (node-red-contrib-ups-orchestrator)' };
}
