/**
 * Messages the publish node accepts, validated at the edge: a normalised UPS state (UPS in,
 * output 1) or a UPS event (UPS in, output 2).
 */
import { z } from 'zod';
import { UpsState } from '../ups/state';
import { UpsEvent } from '../ups/events';

const nnum = z.number().nullable().default(null);

export const UpsStateInput = z
  .object({
    ups: z.string().min(1),
    source: z.enum(['nut', 'sim', 'snmp', 'ha']).catch('nut'),
    ts: z.number().default(() => Date.now()),
    flags: z.array(z.string()),
    comm: z.enum(['ok', 'stale', 'lost']),
    commError: z.string().nullable().default(null),
    online: z.boolean().default(false),
    onBattery: z.boolean(),
    lowBattery: z.boolean().default(false),
    replaceBattery: z.boolean().default(false),
    charge: nnum,
    runtime: nnum,
    load: nnum,
    inputVoltage: nnum,
    outputVoltage: nnum,
    realPower: nnum,
    temperature: nnum,
    secondsOnBattery: z.number().default(0),
    untrusted: z.array(z.enum(['runtime', 'charge'])).default([]),
    alarmText: z.string().nullable().default(null),
    device: z.object({ mfr: z.string().nullable().default(null), model: z.string().nullable().default(null), serial: z.string().nullable().default(null) }).default({ mfr: null, model: null, serial: null }),
  })
  .passthrough();

export const UpsEventInput = z.object({
  event: z.string().min(1),
  ups: z.string().min(1),
  ts: z.number().default(() => Date.now()),
  severity: z.enum(['info', 'warning', 'critical']).catch('info'),
  message: z.string().default(''),
});

export type ParsedInput = { kind: 'state'; state: UpsState } | { kind: 'event'; event: UpsEvent } | { kind: 'invalid'; error: string };

export function parseInput(payload: unknown): ParsedInput {
  if (payload && typeof payload === 'object' && 'flags' in payload) {
    const r = UpsStateInput.safeParse(payload);
    if (r.success) return { kind: 'state', state: r.data as unknown as UpsState };
    return { kind: 'invalid', error: 'msg.payload looks like a UPS state but ' + r.error.issues.map((i) => `${i.path.join('.') || 'it'}: ${i.message}`).join('; ') };
  }
  if (payload && typeof payload === 'object' && 'event' in payload) {
    const r = UpsEventInput.safeParse(payload);
    if (r.success) return { kind: 'event', event: r.data as UpsEvent };
    return { kind: 'invalid', error: 'msg.payload looks like a UPS event but ' + r.error.issues.map((i) => `${i.path.join('.') || 'it'}: ${i.message}`).join('; ') };
  }
  return { kind: 'invalid', error: 'msg.payload is neither a UPS state (UPS in, output 1) nor a UPS event (UPS in, output 2)' };
}
