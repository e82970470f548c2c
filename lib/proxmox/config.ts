/**
 * The Proxmox VE connection and action configurations as the editor stores them, validated with
 * zod at the edge, plus the Test connection and target listing the editor asks for.
 */
import { z } from 'zod';
import { numberField } from '../ups/config';
import { normaliseFingerprint } from '../net/tls';
import { TargetSelection, parseSelection, withTimeout } from '../actions/contract';
import { ProxmoxClient, ProxmoxSettings, TOKEN_ID } from './client';
import { ProxmoxKind, listProxmox } from './driver';

const bool = (dflt: boolean) => z.preprocess((v) => (v === undefined || v === '' || v === null ? dflt : v === true || v === 'true'), z.boolean());
const text = z.preprocess((v) => (v === undefined || v === null ? '' : v), z.union([z.string(), z.array(z.string())]));

export const ProxmoxConnectionSchema = z.object({
  name: z.string().optional().default(''),
  host: z
    .string({ error: 'the Proxmox host is required' })
    .trim()
    .min(1, 'the Proxmox host is required')
    .refine((v) => !/[\s/]/.test(v) && !/^https?:/i.test(v), 'enter the host name or address only (no https://, no path)'),
  port: numberField(1, 65535, 8006, 'port'),
  tokenId: z
    .string({ error: 'the API token id is required' })
    .trim()
    .refine((v) => TOKEN_ID.test(v), 'the API token id looks like USER@REALM!TOKENID, e.g. root@pam!upsorch'),
  tlsVerify: bool(true),
  tlsFingerprint: z
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
    }, 'a SHA-256 fingerprint has 64 hex digits (colons allowed)'),
  timeout: numberField(1, 300, 15, 'request timeout (s)'),
});

export type ProxmoxConnectionConfig = z.infer<typeof ProxmoxConnectionSchema>;

export interface ProxmoxCredentials {
  secret?: string;
}

function issues(what: string, e: z.ZodError): Error {
  return new Error(`invalid ${what}: ` + e.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ` : '') + i.message).join('; '));
}

export function parseProxmoxConnection(raw: unknown): ProxmoxConnectionConfig {
  const r = ProxmoxConnectionSchema.safeParse(raw);
  if (!r.success) throw issues('Proxmox connection', r.error);
  return r.data;
}

/**
 * What a Test connection must match to be given the stored token secret: the peer, the token, and
 * how the peer is checked. A dialog that switches certificate checks off, or pins another
 * certificate, at the same address may be talking to someone else; it must bring its own secret.
 */
export const PROXMOX_ENDPOINT_KEYS = ['host', 'port', 'tokenId', 'tlsVerify', 'tlsFingerprint'] as const;

/** Those fields normalised (host case and IPv6 brackets, fingerprint spelling). */
export function proxmoxEndpoint(c: ProxmoxConnectionConfig): Record<(typeof PROXMOX_ENDPOINT_KEYS)[number], unknown> {
  return { host: c.host.replace(/^\[|\]$/g, '').toLowerCase(), port: c.port, tokenId: c.tokenId, tlsVerify: c.tlsVerify, tlsFingerprint: normaliseFingerprint(c.tlsFingerprint) ?? '' };
}

export function proxmoxSettings(c: ProxmoxConnectionConfig, creds: ProxmoxCredentials): ProxmoxSettings {
  if (!creds.secret) throw new Error('the Proxmox connection has no API token secret');
  return {
    host: c.host.replace(/^\[|\]$/g, ''),
    port: c.port,
    tokenId: c.tokenId,
    secret: creds.secret,
    tls: { verify: c.tlsVerify, fingerprint: c.tlsFingerprint || undefined },
    timeoutMs: c.timeout * 1000,
    label: c.name || c.host.replace(/^\[|\]$/g, ''),
  };
}

export const PROXMOX_SHUTDOWN_OPS = { guest: ['shutdown', 'stop', 'suspend', 'none'], node: ['shutdown', 'suspend', 'host-shutdown', 'none'] } as const;

export const ProxmoxActionSchema = z
  .object({
    name: z.string().optional().default(''),
    connection: z.string({ error: 'choose a Proxmox connection' }).min(1, 'choose a Proxmox connection'),
    kind: z.enum(['guest', 'node'], { error: 'targets must be "guest" or "node"' }).default('guest'),
    shutdownOp: z.enum(['shutdown', 'stop', 'suspend', 'host-shutdown', 'none'], { error: 'unknown shutdown operation' }).default('shutdown'),
    startupOp: z.enum(['start', 'none'], { error: 'startup operation must be start or none' }).default('start'),
    names: text,
    patterns: text,
    tags: text,
    exclude: text,
    allRunning: bool(false),
    timeout: numberField(1, 7200, 120, 'timeout (s)'),
    force: bool(true),
    haStopFirst: bool(false),
    startAllForce: bool(false),
    concurrency: numberField(1, 64, 4, 'concurrency'),
    connectTimeout: numberField(1, 600, 30, 'connect timeout (s)'),
    poll: numberField(0.2, 60, 1, 'poll interval (s)'),
  })
  .superRefine((c, ctx) => {
    if (!(PROXMOX_SHUTDOWN_OPS[c.kind] as readonly string[]).includes(c.shutdownOp)) {
      ctx.addIssue({ code: 'custom', path: ['shutdownOp'], message: `"${c.shutdownOp}" does not apply to ${c.kind === 'guest' ? 'guests' : 'nodes'} (use ${PROXMOX_SHUTDOWN_OPS[c.kind].join(', ')})` });
    }
  });

export type ProxmoxActionConfig = z.infer<typeof ProxmoxActionSchema> & { selection: TargetSelection };

export function parseProxmoxAction(raw: unknown): ProxmoxActionConfig {
  const r = ProxmoxActionSchema.safeParse(raw);
  if (!r.success) throw issues('Proxmox action', r.error);
  const c = r.data;
  let selection: TargetSelection;
  try {
    selection = parseSelection({ names: c.names, patterns: c.patterns, tags: c.tags, exclude: c.exclude, allRunning: c.allRunning });
  } catch (err) {
    throw new Error('invalid Proxmox action: ' + (err as Error).message);
  }
  if (!selection.names?.length && !selection.patterns?.length && !selection.tags?.length && !selection.allRunning) {
    throw new Error(`invalid Proxmox action: choose the ${c.kind === 'guest' ? 'guests' : 'nodes'} (vmids or names, patterns, tags or "all running")`);
  }
  return { ...c, selection };
}

export interface ProxmoxTestResult {
  ok: boolean;
  message: string;
  version?: string;
  nodes?: number;
  guests?: number;
  warning?: string | null;
}

/** "Test connection": version, the token's view of the cluster, and whether it may power guests. */
export async function testProxmox(settings: ProxmoxSettings, timeoutMs = 30_000): Promise<ProxmoxTestResult> {
  let client: ProxmoxClient | undefined;
  const ac = new AbortController();
  try {
    client = new ProxmoxClient(settings);
    const c = client;
    return await withTimeout('testing the connection', timeoutMs, ac.signal, async (signal) => {
      const v = await c.request<{ version: string; release: string }>('GET', '/version', {}, signal);
      const all = await listProxmox(c, signal);
      const perms = await c.request<Record<string, Record<string, number>>>('GET', '/access/permissions', { path: '/' }, signal).catch(() => null);
      const have = perms?.['/'] ?? {};
      const missing = perms ? ['VM.PowerMgmt', 'VM.Audit', 'Sys.Audit'].filter((p) => !(p in have)) : [];
      return {
        ok: true,
        message: `connected to Proxmox VE ${v.version} as ${settings.tokenId}: ${all.nodes.length} node${all.nodes.length === 1 ? '' : 's'}, ${all.guests.length} guests`,
        version: v.version,
        nodes: all.nodes.length,
        guests: all.guests.length,
        warning: missing.length ? `the token lacks ${missing.join(', ')} on / (it may still hold them on single guests or pools)` : null,
      };
    });
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  } finally {
    client?.close();
  }
}

export async function listProxmoxTargets(settings: ProxmoxSettings, kind: ProxmoxKind, timeoutMs = 30_000) {
  let client: ProxmoxClient | undefined;
  const ac = new AbortController();
  try {
    client = new ProxmoxClient(settings);
    const c = client;
    const all = await withTimeout('listing targets', timeoutMs, ac.signal, (s) => listProxmox(c, s));
    const targets = kind === 'guest' ? all.guests : all.nodes;
    return { ok: true, message: `${targets.length} ${kind === 'guest' ? 'guests' : 'nodes'} on ${c.where}`, targets };
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  } finally {
    client?.close();
  }
}
