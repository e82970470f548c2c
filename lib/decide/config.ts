/**
 * The runtime threshold node's configuration as the editor stores it (flat fields), validated with
 * zod and turned into the engine's ThresholdConfig. Times are seconds, charge and rates percent.
 */
import { z } from 'zod';
import { DEFAULT_CONFIG, ThresholdConfig } from './engine';
import { numberField } from '../ups/config';

const num = numberField;
const flag = (dflt: boolean) => z.preprocess((v) => (v === undefined || v === '' ? dflt : v === true || v === 'true'), z.boolean());

const D = DEFAULT_CONFIG;
const DAY = 86400;

export const SupplySchema = z.object({
  /** A UPS device config node to read directly (optional: states can also arrive as messages). */
  device: z.string().optional().default(''),
  /** The UPS name as it appears in states (for UPSes that arrive as messages). */
  ups: z.string().trim().optional().default(''),
  power: num(0, 100, 1, 'power value'),
});

export const ThresholdNodeConfigSchema = z.object({
  name: z.string().optional().default(''),
  fsdEnabled: flag(D.fsd.enabled),
  fsdHold: num(0, DAY, D.fsd.hold, 'FSD hold time (s)'),
  obLbEnabled: flag(D.obLb.enabled),
  obLbHold: num(0, DAY, D.obLb.hold, 'OB+LB hold time (s)'),
  runtimeEnabled: flag(D.runtime.enabled),
  runtimeBelow: num(0, DAY, D.runtime.below, 'runtime threshold (s)'),
  runtimeHold: num(0, DAY, D.runtime.hold, 'runtime hold time (s)'),
  chargeEnabled: flag(D.charge.enabled),
  chargeBelow: num(0, 100, D.charge.below, 'charge threshold (%)'),
  chargeHold: num(0, DAY, D.charge.hold, 'charge hold time (s)'),
  timeOnBatteryEnabled: flag(D.timeOnBattery.enabled),
  timeOnBatteryAfter: num(1, DAY, D.timeOnBattery.after, 'time on battery (s)'),
  depletionEnabled: flag(D.depletion.enabled),
  depletionRate: num(0.01, 100, D.depletion.rate, 'depletion rate (%/min)'),
  depletionWindow: num(10, 3600, D.depletion.window, 'depletion window (s)'),
  depletionGrace: num(0, DAY, D.depletion.grace, 'depletion grace period (s)'),
  depletionHold: num(0, DAY, D.depletion.hold, 'depletion hold time (s)'),
  commLostEnabled: flag(D.commLost.enabled),
  commLostAfter: num(1, DAY, D.commLost.after, 'communication-lost time (s)'),
  budgetEnabled: flag(D.budget.enabled),
  budgetPlanDuration: num(0, DAY, D.budget.planDuration, 'expected plan duration (s)'),
  budgetMargin: num(0, DAY, D.budget.margin, 'time-budget margin (s)'),
  budgetHold: num(0, DAY, D.budget.hold, 'time-budget hold time (s)'),
  policy: z.enum(['any', 'all', 'min'], { error: 'policy must be any, all or min' }).default(D.policy),
  minSupplies: num(0, 1000, D.minSupplies, 'minimum supplies'),
  supplies: z.array(SupplySchema).optional().default([]),
  restoreAfter: num(0, DAY, D.restoreAfter, 'restore after stable mains (s)'),
  restoreCharge: num(0, 100, D.restoreCharge, 'restore charge (%)'),
  cancelAfter: num(0, DAY, D.cancelAfter, 'cancel after stable mains (s)'),
  noReturnAfter: num(0, DAY, D.noReturnAfter, 'point of no return (s)'),
}).superRefine((c, ctx) => {
  // 0 would never shut down. (Above the sum is only warned about: see configWarnings.)
  if (c.policy === 'min' && c.minSupplies <= 0) ctx.addIssue({ code: 'custom', path: ['minSupplies'], message: 'minimum power must be more than 0 (0 would never shut down)' });
});

/**
 * What is odd but still protects: a minimum above the sum of the power values makes the first
 * critical UPS shut down (policy any in disguise). The dialog refuses it; a saved flow keeps running
 * with the minimum taken as the sum, and this warning, rather than losing its protection.
 */
export function configWarnings(c: ThresholdNodeConfig): string[] {
  const sum = c.supplies.reduce((a, s) => a + s.power, 0);
  if (c.policy !== 'min' || !c.supplies.length || c.minSupplies <= sum) return [];
  return [`minimum power ${c.minSupplies} is more than the UPSes' power values add up to (${sum}): the first UPS that turns critical shuts down; lower the minimum, or raise their power values`];
}

export type ThresholdNodeConfig = z.infer<typeof ThresholdNodeConfigSchema>;

export function parseThresholdConfig(raw: unknown): ThresholdNodeConfig {
  const r = ThresholdNodeConfigSchema.safeParse(raw);
  if (r.success) {
    const c = r.data;
    const enabled = [c.fsdEnabled, c.obLbEnabled, c.runtimeEnabled, c.chargeEnabled, c.timeOnBatteryEnabled, c.depletionEnabled, c.commLostEnabled, c.budgetEnabled];
    if (!enabled.some(Boolean)) throw new Error('invalid runtime threshold configuration: enable at least one vector, or nothing will ever shut down');
    return c;
  }
  throw new Error('invalid runtime threshold configuration: ' + r.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ` : '') + i.message).join('; '));
}

/** The engine's configuration; `upsName(device)` resolves a supply's device id to its UPS name. */
export function engineConfig(c: ThresholdNodeConfig, upsName: (deviceId: string) => string | undefined): ThresholdConfig {
  const supplies: Record<string, number> = {};
  for (const s of c.supplies) {
    const name = (s.device && upsName(s.device)) || s.ups;
    if (name) supplies[name] = s.power;
  }
  return {
    fsd: { enabled: c.fsdEnabled, hold: c.fsdHold },
    obLb: { enabled: c.obLbEnabled, hold: c.obLbHold },
    runtime: { enabled: c.runtimeEnabled, below: c.runtimeBelow, hold: c.runtimeHold },
    charge: { enabled: c.chargeEnabled, below: c.chargeBelow, hold: c.chargeHold },
    timeOnBattery: { enabled: c.timeOnBatteryEnabled, after: c.timeOnBatteryAfter },
    depletion: { enabled: c.depletionEnabled, rate: c.depletionRate, window: c.depletionWindow, grace: c.depletionGrace, hold: c.depletionHold },
    commLost: { enabled: c.commLostEnabled, after: c.commLostAfter },
    budget: { enabled: c.budgetEnabled, planDuration: c.budgetPlanDuration, margin: c.budgetMargin, hold: c.budgetHold },
    policy: c.policy,
    minSupplies: c.supplies.length ? Math.min(c.minSupplies, c.supplies.reduce((a, s) => a + s.power, 0)) : c.minSupplies,
    supplies,
    restoreAfter: c.restoreAfter,
    restoreCharge: c.restoreCharge,
    cancelAfter: c.cancelAfter,
    noReturnAfter: c.noReturnAfter,
  };
}

/** Is this message payload a normalised UPS state? (shape check at the edge) */
export const UpsStateShape = z.looseObject({
  ups: z.string().min(1),
  ts: z.number(),
  comm: z.enum(['ok', 'stale', 'lost']),
  onBattery: z.boolean(),
  lowBattery: z.boolean(),
  fsd: z.boolean(),
  flags: z.array(z.string()),
  charge: z.number().nullable(),
  runtime: z.number().nullable(),
  secondsOnBattery: z.number(),
  untrusted: z.array(z.string()),
  raw: z.record(z.string(), z.string()),
});
