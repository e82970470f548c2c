/**
 * The vSphere connection and action configurations as the editor stores them, validated with zod
 * at the edge, plus the Test connection and target listing the editor asks for.
 */
import { z } from 'zod';
import { numberField } from '../ups/config';
import { normaliseFingerprint } from '../net/tls';
import { TargetSelection, parseSelection, withTimeout } from '../actions/contract';
import { VsphereSession, VsphereSettings, parseEndpoint } from './session';
import { listAll, VsphereKind } from './driver';
import { missingPrivileges, readInventory, readLicences } from './inventory';

const bool = (dflt: boolean) => z.preprocess((v) => (v === undefined || v === '' || v === null ? dflt : v === true || v === 'true'), z.boolean());
const text = z.preprocess((v) => (v === undefined || v === null ? '' : v), z.union([z.string(), z.array(z.string())]));

const fingerprint = z
  .string()
  .trim()
  .optional()
  .default('')
  .refine((v) => {
    try {
      normaliseFingerprint(v);
      return true;
    } catch {
      return false;
    }
  }, 'a SHA-256 fingerprint has 64 hex digits (colons allowed)');

export const VsphereConnectionSchema = z.object({
  name: z.string().optional().default(''),
  url: z
    .string({ error: 'the vCenter / ESXi address is required' })
    .trim()
    .min(1, 'the vCenter / ESXi address is required')
    .superRefine((v, ctx) => {
      try {
        parseEndpoint(v);
      } catch (e) {
        ctx.addIssue({ code: 'custom', message: (e as Error).message });
      }
    }),
  tlsVerify: bool(true),
  tlsFingerprint: fingerprint,
  timeout: numberField(1, 300, 15, 'request timeout (s)'),
  pageSize: numberField(1, 10000, 500, 'page size'),
});

export type VsphereConnectionConfig = z.infer<typeof VsphereConnectionSchema>;

export interface VsphereCredentials {
  username?: string;
  password?: string;
}

function issues(what: string, e: z.ZodError): Error {
  return new Error(`invalid ${what}: ` + e.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ` : '') + i.message).join('; '));
}

export function parseVsphereConnection(raw: unknown): VsphereConnectionConfig {
  const r = VsphereConnectionSchema.safeParse(raw);
  if (!r.success) throw issues('vSphere connection', r.error);
  return r.data;
}

/**
 * What a Test connection must match to be given the stored password: the peer and how it is
 * checked. A dialog that switches certificate checks off, or pins another certificate, at the same
 * address may be talking to someone else; it must bring its own password.
 */
export const VSPHERE_ENDPOINT_KEYS = ['url', 'tlsVerify', 'tlsFingerprint'] as const;

/** Those fields normalised (`vc.lab`, `https://VC.lab/sdk` and `vc.lab:443` are the same peer). */
export function vsphereEndpoint(c: VsphereConnectionConfig): Record<(typeof VSPHERE_ENDPOINT_KEYS)[number], unknown> {
  const e = parseEndpoint(c.url);
  return { url: `${e.host.toLowerCase()}|${e.port}|${e.path}`, tlsVerify: c.tlsVerify, tlsFingerprint: normaliseFingerprint(c.tlsFingerprint) ?? '' };
}

export function vsphereSettings(c: VsphereConnectionConfig, creds: VsphereCredentials): VsphereSettings {
  if (!creds.username) throw new Error('the vSphere connection has no username');
  return {
    url: c.url,
    username: creds.username,
    password: creds.password ?? '',
    tls: { verify: c.tlsVerify, fingerprint: c.tlsFingerprint || undefined },
    timeoutMs: c.timeout * 1000,
    pageSize: c.pageSize,
    label: c.name || parseEndpoint(c.url).host,
  };
}

export const VSPHERE_SHUTDOWN_OPS = { vm: ['shutdown', 'stop', 'suspend', 'none'], host: ['maintenance', 'host-shutdown', 'none'] } as const;

export const VsphereActionSchema = z
  .object({
    name: z.string().optional().default(''),
    connection: z.string({ error: 'choose a vSphere connection' }).min(1, 'choose a vSphere connection'),
    kind: z.enum(['vm', 'host'], { error: 'targets must be "vm" or "host"' }).default('vm'),
    shutdownOp: z.enum(['shutdown', 'stop', 'suspend', 'maintenance', 'host-shutdown', 'none'], { error: 'unknown shutdown operation' }).default('shutdown'),
    startupOp: z.enum(['start', 'none'], { error: 'startup operation must be start or none' }).default('start'),
    names: text,
    patterns: text,
    tags: text,
    exclude: text,
    allRunning: bool(false),
    timeout: numberField(1, 86400, 120, 'timeout (s)'),
    force: bool(true),
    waitForTools: bool(false),
    toolsTimeout: numberField(1, 86400, 300, 'VMware Tools timeout (s)'),
    maintenanceFirst: bool(true),
    concurrency: numberField(1, 128, 8, 'concurrency'),
    connectTimeout: numberField(1, 600, 30, 'connect timeout (s)'),
    poll: numberField(0.2, 60, 1, 'poll interval (s)'),
  })
  .superRefine((c, ctx) => {
    const ok = (VSPHERE_SHUTDOWN_OPS[c.kind] as readonly string[]).includes(c.shutdownOp);
    if (!ok) ctx.addIssue({ code: 'custom', path: ['shutdownOp'], message: `"${c.shutdownOp}" does not apply to ${c.kind === 'vm' ? 'VMs' : 'hosts'} (use ${VSPHERE_SHUTDOWN_OPS[c.kind].join(', ')})` });
  });

export type VsphereActionConfig = z.infer<typeof VsphereActionSchema> & { selection: TargetSelection };

export function parseVsphereAction(raw: unknown): VsphereActionConfig {
  const r = VsphereActionSchema.safeParse(raw);
  if (!r.success) throw issues('vSphere action', r.error);
  const c = r.data;
  let selection: TargetSelection;
  try {
    selection = parseSelection({ names: c.names, patterns: c.patterns, tags: c.tags, exclude: c.exclude, allRunning: c.allRunning });
  } catch (err) {
    throw new Error('invalid vSphere action: ' + (err as Error).message);
  }
  if (!selection.names?.length && !selection.patterns?.length && !selection.tags?.length && !selection.allRunning) {
    throw new Error(`invalid vSphere action: choose the ${c.kind === 'vm' ? 'VMs' : 'hosts'} (names, patterns, tags or "all running")`);
  }
  return { ...c, selection };
}

export interface VsphereTestResult {
  ok: boolean;
  message: string;
  product?: string;
  apiType?: string;
  apiVersion?: string;
  vms?: number;
  hosts?: number;
  licences?: string[];
  warning?: string | null;
}

/**
 * "Test connection": service content, login, licence (a free ESXi's read-only API is an error
 * here, not at 3 a.m. during an outage), privileges on the root folder, inventory size. Logs out.
 */
export async function testVsphere(settings: VsphereSettings, timeoutMs = 30_000): Promise<VsphereTestResult> {
  const session = new VsphereSession(settings);
  const ac = new AbortController();
  try {
    return await withTimeout('testing the connection', timeoutMs, ac.signal, async (signal) => {
      const sc = await session.serviceContent(signal);
      await session.login(signal);
      const lic = await readLicences(session, signal).catch(() => ({ names: [] as string[], readOnly: null }));
      const base = { product: sc.about.fullName, apiType: sc.about.apiType, apiVersion: sc.about.apiVersion, licences: lic.names };
      if (lic.readOnly) return { ok: false, message: lic.readOnly, ...base };
      const inv = await readInventory(session, signal);
      const missing = await missingPrivileges(
        session,
        sc.rootFolder,
        ['VirtualMachine.Interact.PowerOn', 'VirtualMachine.Interact.PowerOff', 'Host.Config.Maintenance'],
        signal,
      ).catch(() => [] as string[]);
      const kind = sc.about.apiType === 'VirtualCenter' ? 'vCenter' : 'ESXi';
      return {
        ok: true,
        message: `logged in to ${sc.about.fullName || kind} (${kind}, API ${sc.about.apiVersion}) as ${settings.username}: ${inv.vms.filter((v) => !v.template).length} VMs, ${inv.hosts.length} hosts`,
        vms: inv.vms.filter((v) => !v.template).length,
        hosts: inv.hosts.length,
        warning: missing.length ? `missing privileges on the inventory root: ${missing.join(', ')}` : null,
        ...base,
      };
    });
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  } finally {
    await session.close();
  }
}

/** The editor's target picker: every VM or host the connection sees. */
export async function listVsphereTargets(settings: VsphereSettings, kind: VsphereKind, timeoutMs = 30_000) {
  const session = new VsphereSession(settings);
  const ac = new AbortController();
  try {
    const all = await withTimeout('listing targets', timeoutMs, ac.signal, (s) => listAll(session, s));
    const targets = kind === 'vm' ? all.vms : all.hosts;
    return { ok: true, message: `${targets.length} ${kind === 'vm' ? 'VMs' : 'hosts'} on ${session.where}`, targets };
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  } finally {
    await session.close();
  }
}
