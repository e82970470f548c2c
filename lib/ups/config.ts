/**
 * The UPS device configuration as the editor stores it, validated at the edge with zod, and the
 * factory that turns it into a running device. Editor values arrive as strings or numbers.
 */
import { z } from 'zod';
import { NutSource } from '../nut/source';
import { SimSource } from '../sim/source';
import { SIM_DEFAULTS } from '../sim/battery';
import { UpsDevice } from './device';
import { VoltageThresholds } from './events';
import { UpsSource } from './source';
import { normaliseFingerprint } from '../net/tls';
import { ENTITY_ID_PATTERN, HaSource, entityMap } from '../ha/source';
import { SNMP_CONFIG_FIELDS, createSnmpSource, snmpConfigIssues } from '../snmp/config';
import { SnmpSource } from '../snmp/source';

/** A number field from the editor: a number, or a numeric string; empty → the default. */
export const numberField = (min: number, max: number, dflt: number, what: string) =>
  z.preprocess(
    (v) => (v === '' || v === undefined || v === null ? dflt : typeof v === 'string' ? Number(v) : v),
    z.number({ error: `${what} must be a number` }).refine((n) => Number.isFinite(n) && n >= min && n <= max, `${what} must be between ${min} and ${max}`),
  );

/** An optional number: empty → null. */
const optionalNumber = (min: number, max: number, what: string) =>
  z.preprocess(
    (v) => (v === '' || v === undefined || v === null ? null : typeof v === 'string' ? Number(v) : v),
    z.number({ error: `${what} must be a number` }).refine((n) => Number.isFinite(n) && n >= min && n <= max, `${what} must be between ${min} and ${max}`).nullable(),
  );

const bool = z.preprocess((v) => v === true || v === 'true', z.boolean());

/** A Home Assistant entity id (`sensor.ups_battery_charge`); empty = derived from the prefix. */
const haEntity = (what: string, pattern: RegExp = ENTITY_ID_PATTERN) =>
  z.string().trim().optional().default('').refine((v) => v === '' || pattern.test(v), `${what}: a Home Assistant entity id such as sensor.myups_battery_charge`);

export const UPS_NAME_PATTERN = /^[A-Za-z0-9._:@+\-]+$/;

export const DeviceConfigSchema = z
  .object({
    name: z.string().optional().default(''),
    source: z.enum(['sim', 'nut', 'ha', 'snmp'], { error: 'source must be "sim" (simulated), "nut", "ha" (Home Assistant entities) or "snmp"' }).default('sim'),
    host: z.string().trim().optional().default('127.0.0.1'),
    port: numberField(1, 65535, 3493, 'port'),
    upsName: z.string().trim().optional().default('').refine((v) => v === '' || UPS_NAME_PATTERN.test(v), 'UPS name may contain only letters, digits and . _ : @ + -'),
    starttls: bool.default(false),
    tlsVerify: z.preprocess((v) => v !== false && v !== 'false', z.boolean()).default(true),
    tlsFingerprint: z.string().trim().optional().default('').refine((v) => {
      try {
        normaliseFingerprint(v);
        return true;
      } catch {
        return false;
      }
    }, 'a SHA-256 fingerprint has 64 hex digits (colons allowed)'),
    pollInterval: numberField(0.1, 3600, 1, 'poll interval (s)'),
    pollIntervalOnBattery: numberField(0.1, 3600, 1, 'poll interval on battery (s)'),
    commTolerance: numberField(0, 600, 0, 'stale-data tolerance (s)'),
    timeout: numberField(0.5, 60, 5, 'timeout (s)'),
    brownoutBelow: optionalNumber(1, 1000, 'brownout threshold (V)'),
    overvoltageAbove: optionalNumber(1, 1000, 'overvoltage threshold (V)'),
    simCapacityWh: numberField(1, 1e6, SIM_DEFAULTS.capacityWh, 'battery capacity (Wh)'),
    simRatedPowerW: numberField(1, 1e6, SIM_DEFAULTS.ratedPowerW, 'rated power (W)'),
    simLoad: numberField(0, 200, SIM_DEFAULTS.load, 'load (%)'),
    simChargeLow: numberField(0, 100, SIM_DEFAULTS.chargeLow, 'low-battery charge (%)'),
    simRuntimeLow: numberField(0, 86400, SIM_DEFAULTS.runtimeLow, 'low-battery runtime (s)'),
    simRechargeHours: numberField(0.001, 1000, SIM_DEFAULTS.rechargeHours, 'recharge time (h)'),
    simSpeed: numberField(0.01, 10000, SIM_DEFAULTS.speed, 'speed factor'),
    // Home Assistant entities (source 'ha'): the server config node and the entity mapping.
    haServer: z.string().trim().optional().default(''),
    haEntityPrefix: haEntity('entity prefix', /^[a-z_]+\.[a-z0-9_]+$/),
    haStatusEntity: haEntity('status entity'),
    haChargeEntity: haEntity('battery charge entity'),
    haRuntimeEntity: haEntity('battery runtime entity'),
    haLoadEntity: haEntity('load entity'),
    haInputVoltageEntity: haEntity('input voltage entity'),
    haOutputVoltageEntity: haEntity('output voltage entity'),
    haRealPowerEntity: haEntity('real power entity'),
    haTemperatureEntity: haEntity('temperature entity'),
    // SNMP agent (source 'snmp'); community and v3 keys are credentials.
    ...SNMP_CONFIG_FIELDS,
  })
  .superRefine((c, ctx) => {
    if (c.source === 'nut') {
      if (!c.host) ctx.addIssue({ code: 'custom', path: ['host'], message: 'host is required for a NUT UPS' });
      if (!c.upsName) ctx.addIssue({ code: 'custom', path: ['upsName'], message: 'UPS name is required for a NUT UPS (the name in upsd\'s ups.conf, e.g. "ups")' });
    }
    if (c.source === 'snmp') for (const i of snmpConfigIssues(c)) ctx.addIssue({ code: 'custom', path: [i.path], message: i.message });
    if (c.source === 'ha') {
      if (!c.haServer) ctx.addIssue({ code: 'custom', path: ['haServer'], message: 'choose the Home Assistant server to read the UPS from' });
      if (!c.haEntityPrefix && !c.haStatusEntity) ctx.addIssue({ code: 'custom', path: ['haEntityPrefix'], message: 'enter the entity prefix (e.g. sensor.myups for HA\'s NUT integration) or at least the status entity' });
    }
  });

export type DeviceConfig = z.infer<typeof DeviceConfigSchema>;

export interface DeviceCredentials {
  username?: string;
  password?: string;
  /** SNMP v1/v2c community and v3 keys. */
  community?: string;
  authKey?: string;
  privKey?: string;
}

/** Validate editor config; throws an Error listing every problem in plain words. */
export function parseDeviceConfig(raw: unknown): DeviceConfig {
  const r = DeviceConfigSchema.safeParse(raw);
  if (r.success) return r.data;
  throw new Error('invalid UPS device configuration: ' + r.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ` : '') + i.message).join('; '));
}

/**
 * Credentials checked against the configuration; throws like parseDeviceConfig. NUT sends the
 * username as one unquoted word (`USERNAME <name>`), so it takes the same characters as a UPS name.
 */
export function checkDeviceCredentials(c: DeviceConfig, creds: DeviceCredentials): void {
  if (c.source === 'nut' && creds.username && !UPS_NAME_PATTERN.test(creds.username)) {
    throw new Error('invalid UPS device configuration: username: a NUT username may contain only letters, digits and . _ : @ + - (no spaces)');
  }
}

/** The name states and events carry: the configured name, else the UPS name, else "simulated". */
export function displayName(c: DeviceConfig): string {
  if (c.source === 'ha') return c.name || (c.haEntityPrefix || c.haStatusEntity).replace(/^[a-z_]+\./, '');
  if (c.source === 'snmp') return c.name || c.host;
  return c.name || (c.source === 'nut' ? c.upsName : 'simulated');
}

export function createSource(c: DeviceConfig, creds: DeviceCredentials, now = Date.now()): UpsSource {
  if (c.source === 'snmp') return createSnmpSource(c, creds);
  if (c.source === 'ha') {
    return new HaSource({
      serverId: c.haServer,
      timeoutMs: c.timeout * 1000,
      entities: entityMap(c.haEntityPrefix, {
        status: c.haStatusEntity, charge: c.haChargeEntity, runtime: c.haRuntimeEntity, load: c.haLoadEntity, inputVoltage: c.haInputVoltageEntity,
        outputVoltage: c.haOutputVoltageEntity, realPower: c.haRealPowerEntity, temperature: c.haTemperatureEntity,
      }),
    });
  }
  if (c.source === 'sim') {
    return new SimSource(displayName(c), {
      capacityWh: c.simCapacityWh,
      ratedPowerW: c.simRatedPowerW,
      load: c.simLoad,
      chargeLow: c.simChargeLow,
      runtimeLow: c.simRuntimeLow,
      rechargeHours: c.simRechargeHours,
      speed: c.simSpeed,
    }, now);
  }
  return new NutSource({
    host: c.host,
    port: c.port,
    ups: c.upsName,
    username: creds.username || undefined,
    password: creds.password || undefined,
    starttls: c.starttls,
    tls: { verify: c.tlsVerify, fingerprint: c.tlsFingerprint || undefined },
    timeoutMs: c.timeout * 1000,
  });
}

export function createDevice(c: DeviceConfig, creds: DeviceCredentials): UpsDevice {
  const source = createSource(c, creds);
  const device = new UpsDevice(source, {
    name: displayName(c),
    pollMs: c.pollInterval * 1000,
    pollOnBatteryMs: c.pollIntervalOnBattery * 1000,
    commToleranceMs: c.commTolerance * 1000,
  });
  // A UPS trap (on battery, power restored, low battery…) means: read now, not at the next poll.
  if (source instanceof SnmpSource) source.onTrap = () => void device.pollNow().catch(() => undefined);
  return device;
}

export function voltageThresholds(c: DeviceConfig): VoltageThresholds {
  return { brownoutBelow: c.brownoutBelow, overvoltageAbove: c.overvoltageAbove };
}
