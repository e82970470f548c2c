/**
 * The SSH host and SSH action configurations as the editor stores them, validated with zod at the
 * edge. Editor values arrive as strings or numbers.
 */
import { z } from 'zod';
import { numberField } from '../ups/config';
import { SshTarget, normaliseSshFingerprint } from './client';
import { PresetCommand, SSH_PRESETS, presetCommand } from './presets';
import { WOL_DEFAULT_ADDRESS, WakeTarget, normaliseMac, wolAddressProblem } from './wol';

const bool = (dflt: boolean) => z.preprocess((v) => (v === undefined || v === '' ? dflt : v === true || v === 'true'), z.boolean());

function issues(what: string, err: z.ZodError): Error {
  return new Error(`invalid ${what}: ` + err.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ` : '') + i.message).join('; '));
}

export const SshHostConfigSchema = z.object({
  name: z.string().optional().default(''),
  host: z.string({ error: 'host is required' }).trim().min(1, 'host is required'),
  port: numberField(1, 65535, 22, 'port'),
  username: z.string().trim().optional().default('root').transform((v) => v || 'root'),
  fingerprint: z
    .string()
    .trim()
    .optional()
    .default('')
    .superRefine((v, ctx) => {
      try {
        if (!normaliseSshFingerprint(v)) ctx.addIssue({ code: 'custom', message: 'pin the host key: use "Fetch fingerprint", compare it with the host (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and save it' });
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
      }
    })
    .transform((v) => normaliseSshFingerprint(v) ?? ''),
  timeout: numberField(1, 120, 10, 'connect timeout (s)'),
});
export type SshHostConfig = z.infer<typeof SshHostConfigSchema>;

export interface SshCredentials {
  privateKey?: string;
  passphrase?: string;
  password?: string;
}

export function parseSshHostConfig(raw: unknown): SshHostConfig {
  const r = SshHostConfigSchema.safeParse(raw);
  if (r.success) return r.data;
  throw issues('SSH host', r.error);
}

/**
 * A pasted key as ssh2 reads it: CRLF line ends made LF, and a key whose line breaks were lost
 * (pasted into a one-line field: "-----BEGIN … KEY----- b64 b64 -----END … KEY-----") rebuilt.
 */
export function normalisePrivateKey(key: string): string {
  const k = key.replace(/\r\n?/g, '\n').trim();
  const m = /^(-----BEGIN [A-Z0-9 ]+-----)\s*([\s\S]+?)\s*(-----END [A-Z0-9 ]+-----)$/.exec(k);
  if (!m || k.split('\n').length > 2) return k + '\n';
  // PEM headers such as "Proc-Type: 4,ENCRYPTED" cannot be recovered from one line: leave those alone.
  if (/:/.test(m[2])) return k + '\n';
  const body = m[2].replace(/\s+/g, '');
  return [m[1], ...(body.match(/.{1,70}/g) ?? []), m[3], ''].join('\n');
}

/** The connection settings for ssh2; throws when neither a key nor a password is set. */
export function sshTarget(c: SshHostConfig, creds: SshCredentials): SshTarget {
  const privateKey = creds.privateKey?.trim() ? normalisePrivateKey(creds.privateKey) : undefined;
  if (!privateKey && !creds.password) throw new Error('invalid SSH host: set a private key or a password');
  return {
    host: c.host,
    port: c.port,
    username: c.username,
    privateKey,
    passphrase: creds.passphrase || undefined,
    password: creds.password || undefined,
    fingerprint: c.fingerprint,
    connectTimeoutMs: c.timeout * 1000,
  };
}

export const SshActionConfigSchema = z
  .object({
    name: z.string().optional().default(''),
    preset: z.enum(SSH_PRESETS, { error: `preset must be one of ${SSH_PRESETS.join(', ')}` }).default('linux'),
    command: z.string().optional().default(''),
    dockerTimeout: numberField(0, 3600, 30, 'docker stop timeout (s)'),
    umountPath: z.string().trim().optional().default(''),
    umountTimeout: numberField(1, 3600, 30, 'unmount timeout (s)'),
    reason: z.string().optional().default(''),
    timeout: numberField(1, 86400, 60, 'command timeout (s)'),
    waitDown: bool(false),
    waitDownTimeout: numberField(1, 86400, 180, 'wait-until-down timeout (s)'),
    startup: z.enum(['none', 'command'], { error: 'startup must be "none" or "command"' }).default('none'),
    startupCommand: z.string().optional().default(''),
    customPowersOff: bool(false),
    // Unset: a node saved before this option existed, whose startup did not wait: it still does not.
    // New nodes get it from the editor (ticked for presets that power the host off).
    waitUp: bool(false),
    waitUpTimeout: numberField(1, 86400, 600, 'wait-until-up timeout (s)'),
    wolMac: z.string().trim().optional().default(''),
    wolAddress: z.string().trim().optional().default(WOL_DEFAULT_ADDRESS).transform((v) => v || WOL_DEFAULT_ADDRESS),
    wolPort: numberField(1, 65535, 9, 'Wake-on-LAN port'),
  })
  .superRefine((c, ctx) => {
    if (c.preset === 'custom' && !c.command.trim()) ctx.addIssue({ code: 'custom', path: ['command'], message: 'a custom command is required' });
    if (c.preset === 'umount' && !c.umountPath.startsWith('/')) ctx.addIssue({ code: 'custom', path: ['umountPath'], message: 'the mount point must be an absolute path, e.g. /mnt/backup' });
    if (c.startup === 'command' && !c.startupCommand.trim()) ctx.addIssue({ code: 'custom', path: ['startupCommand'], message: 'a startup command is required (or choose "nothing")' });
    if (c.wolMac) {
      try {
        normaliseMac(c.wolMac);
      } catch (err) {
        ctx.addIssue({ code: 'custom', path: ['wolMac'], message: (err as Error).message });
      }
      const why = wolAddressProblem(c.wolAddress);
      if (why) ctx.addIssue({ code: 'custom', path: ['wolAddress'], message: why });
    }
  });
export type SshActionConfig = z.infer<typeof SshActionConfigSchema>;

export function parseSshActionConfig(raw: unknown): SshActionConfig {
  const r = SshActionConfigSchema.safeParse(raw);
  if (r.success) return r.data;
  throw issues('SSH action', r.error);
}

/** The shutdown command of an SSH action for a user. */
export function shutdownCommand(c: SshActionConfig, username: string): PresetCommand {
  return presetCommand(c.preset, {
    username,
    command: c.command,
    dockerTimeout: c.dockerTimeout,
    umountPath: c.umountPath,
    umountTimeout: c.umountTimeout,
    reason: c.reason || undefined,
    customPowersOff: c.customPowersOff,
  });
}

/** Where the magic packet goes, or undefined without a MAC address. */
export function wakeTarget(c: SshActionConfig): WakeTarget | undefined {
  const mac = normaliseMac(c.wolMac);
  return mac ? { mac, address: c.wolAddress, port: c.wolPort } : undefined;
}
