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

export const UPS_NAME_PATTERN = /^[A-Za-z0-9._:@+\-]+$/;

export const DeviceConfigSchema = z
  .object({
    name: z.string().optional().default(''),
    source: z.enum(['sim', 'nut'], { error: 'source must be "sim" (simulated) or "nut"' }).default('sim'),
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
  })
  .superRefine((c, ctx) => {
    if (c.source === 'nut') {
      if (!c.host) ctx.addIssue({ code: 'custom', path: ['host'], message: 'host is required for a NUT UPS' });
      if (!c.upsName) ctx.addIssue({ code: 'custom', path: ['upsName'], message: 'UPS name is required for a NUT UPS (the name in upsd\'s ups.conf, e.g. "ups")' });
    }
  });

export type DeviceConfig = z.infer<typeof DeviceConfigSchema>;

export interface DeviceCredentials {
  username?: string;
  password?: string;
}

/** Validate editor config; throws an Error listing every problem in plain words. */
export function parseDeviceConfig(raw: unknown): DeviceConfig {
  const r = DeviceConfigSchema.safeParse(raw);
  if (r.success) return r.data;
  throw new Error('invalid UPS device configuration: ' + r.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ` : '') + i.message).join('; '));
}

/** The name states and events carry: the configured name, else the UPS name, else "simulated". */
export function displayName(c: DeviceConfig): string {
  return c.name || (c.source === 'nut' ? c.upsName : 'simulated');
}

export function createSource(c: DeviceConfig, creds: DeviceCredentials, now = Date.now()): UpsSource {
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
  return new UpsDevice(createSource(c, creds), {
    name: displayName(c),
    pollMs: c.pollInterval * 1000,
    pollOnBatteryMs: c.pollIntervalOnBattery * 1000,
    commToleranceMs: c.commTolerance * 1000,
  });
}

export function voltageThresholds(c: DeviceConfig): VoltageThresholds {
  return { brownoutBelow: c.brownoutBelow, overvoltageAbove: c.overvoltageAbove };
}
