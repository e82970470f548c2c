/**
 * The libvirt action configuration as the editor stores it, validated with zod at the edge.
 */
import { z } from 'zod';
import { numberField } from '../ups/config';
import { TargetSelection, parseSelection } from '../actions/contract';
import { SHUTDOWN_MODES } from './driver';

const bool = (dflt: boolean) => z.preprocess((v) => (v === undefined || v === '' ? dflt : v === true || v === 'true'), z.boolean());
const text = z.preprocess((v) => (v === undefined || v === null ? '' : v), z.union([z.string(), z.array(z.string())]));

export const LibvirtConfigSchema = z
  .object({
    name: z.string().optional().default(''),
    connection: z.enum(['ssh', 'local'], { error: 'connection must be "ssh" or "local"' }).default('ssh'),
    sshHost: z.string().optional().default(''),
    uri: z
      .string()
      .trim()
      .optional()
      .default('qemu:///system')
      .refine((v) => !/[\s\0]/.test(v), 'the libvirt URI must not contain spaces'),
    names: text,
    patterns: text,
    exclude: text,
    allRunning: bool(false),
    shutdownOp: z.enum(['shutdown', 'suspend', 'stop', 'none'], { error: 'shutdown operation must be shutdown, suspend, stop or none' }).default('shutdown'),
    startupOp: z.enum(['start', 'none'], { error: 'startup operation must be start or none' }).default('start'),
    mode: z.enum(SHUTDOWN_MODES, { error: 'shutdown mode must be empty (default), acpi or agent' }).default(''),
    timeout: numberField(1, 86400, 120, 'shutdown timeout (s)'),
    force: bool(true),
    concurrency: numberField(1, 64, 4, 'concurrency'),
    commandTimeout: numberField(1, 600, 30, 'virsh timeout (s)'),
    poll: numberField(0.2, 60, 2, 'poll interval (s)'),
  })
  .superRefine((c, ctx) => {
    if (c.connection === 'ssh' && !c.sshHost) ctx.addIssue({ code: 'custom', path: ['sshHost'], message: 'choose the SSH host that runs virsh (or connection "local")' });
  });

export type LibvirtConfig = z.infer<typeof LibvirtConfigSchema> & { selection: TargetSelection };

export function parseLibvirtConfig(raw: unknown): LibvirtConfig {
  const r = LibvirtConfigSchema.safeParse(raw);
  if (!r.success) throw new Error('invalid libvirt action: ' + r.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ` : '') + i.message).join('; '));
  const c = r.data;
  let selection: TargetSelection;
  try {
    selection = parseSelection({ names: c.names, patterns: c.patterns, exclude: c.exclude, allRunning: c.allRunning });
  } catch (err) {
    throw new Error('invalid libvirt action: ' + (err as Error).message);
  }
  if (!selection.names?.length && !selection.patterns?.length && !selection.allRunning) {
    throw new Error('invalid libvirt action: choose the domains (names, patterns or "all running")');
  }
  return { ...c, selection };
}
