/**
 * The UPS command node's configuration as the editor stores it, validated with zod at the edge.
 */
import { z } from 'zod';

const numberField = (min: number, max: number, dflt: number, what: string) =>
  z.preprocess(
    (v) => (v === '' || v === undefined || v === null ? dflt : typeof v === 'string' ? Number(v) : v),
    z.number({ error: `${what} must be a number` }).refine((n) => Number.isFinite(n) && n >= min && n <= max, `${what} must be between ${min} and ${max}`),
  );
const bool = (dflt: boolean) => z.preprocess((v) => (v === undefined || v === '' ? dflt : v === true || v === 'true'), z.boolean());

/** NUT command and variable names: words of letters, digits, dots, dashes, underscores. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export const COMMAND_MODES = ['return', 'instcmd', 'setvar', 'fsd'] as const;
export type CommandMode = (typeof COMMAND_MODES)[number];

/** NUT instant commands that cut the UPS output: never part of a startup run. */
export const POWER_OFF_COMMANDS = /^(shutdown\.(return|stayoff|reboot|reboot\.graceful)|load\.off(\.delay)?)$/;

/**
 * Why this command must not be sent in a startup run (null when it may): powering the UPS off, or
 * raising FSD, while the hosts are starting would cut them off again.
 */
export function startupRefusal(c: { mode: CommandMode; command: string }): string | null {
  if (c.mode === 'return') return 'power off with return belongs to the shutdown direction: in a startup run it would power off the hosts as they start';
  if (c.mode === 'fsd') return 'FSD belongs to the shutdown direction: in a startup run it would shut the NUT clients down again';
  if (c.mode === 'instcmd' && POWER_OFF_COMMANDS.test(c.command)) return `${c.command} powers the UPS off: send it in the shutdown direction only`;
  return null;
}

export const CommandConfigSchema = z
  .object({
    name: z.string().optional().default(''),
    ups: z.string().trim().min(1, 'choose the UPS device'),
    /** return = the "power off with return" preset; instcmd / setvar / fsd as NUT names them. */
    mode: z.enum(COMMAND_MODES, { error: 'mode must be return, instcmd, setvar or fsd' }).default('return'),
    command: z.string().trim().optional().default(''),
    param: z.string().trim().optional().default(''),
    variable: z.string().trim().optional().default(''),
    value: z.string().trim().optional().default(''),
    delayShutdown: numberField(0, 86400, 20, 'shutdown delay (s)'),
    delayStart: numberField(0, 86400, 30, 'start delay (s)'),
    /** Preset: write the delays before the command (where the UPS has them). */
    setDelays: bool(true),
    /** How long to wait for the UPS to confirm (TRACKING result, timer read back). */
    confirmTimeout: numberField(1, 600, 15, 'confirmation timeout (s)'),
    /** Every connection and request. */
    timeout: numberField(0.5, 120, 10, 'timeout (s)'),
    /** In which run direction the command is sent. */
    runOn: z.enum(['shutdown', 'startup', 'both'], { error: 'run on must be shutdown, startup or both' }).default('shutdown'),
  })
  .superRefine((c, ctx) => {
    if (c.mode === 'instcmd' && !NAME_PATTERN.test(c.command)) ctx.addIssue({ code: 'custom', path: ['command'], message: 'enter the instant command, e.g. shutdown.return or beeper.mute' });
    if (c.mode === 'setvar') {
      if (!NAME_PATTERN.test(c.variable)) ctx.addIssue({ code: 'custom', path: ['variable'], message: 'enter the variable, e.g. ups.delay.shutdown' });
      if (c.value === '') ctx.addIssue({ code: 'custom', path: ['value'], message: 'enter the value to set' });
      if (/["\\\n]/.test(c.value)) ctx.addIssue({ code: 'custom', path: ['value'], message: 'the value may not contain quotes, backslashes or line breaks' });
    }
    if (c.runOn !== 'shutdown') {
      const why = startupRefusal(c);
      if (why) ctx.addIssue({ code: 'custom', path: ['runOn'], message: why });
    }
    if (/["\\\n]/.test(c.param)) ctx.addIssue({ code: 'custom', path: ['param'], message: 'the parameter may not contain quotes, backslashes or line breaks' });
  });

export type CommandConfig = z.infer<typeof CommandConfigSchema>;

export function parseCommandConfig(raw: unknown): CommandConfig {
  const r = CommandConfigSchema.safeParse(raw);
  if (r.success) return r.data;
  throw new Error('invalid UPS command configuration: ' + r.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ` : '') + i.message).join('; '));
}

/** What the node does, in a few words (status, reports). */
export function describeCommand(c: CommandConfig): string {
  switch (c.mode) {
    case 'return':
      return `power off with return (off after ${c.delayShutdown} s, on ${c.delayStart} s after mains)`;
    case 'instcmd':
      return `INSTCMD ${c.command}${c.param ? ' ' + c.param : ''}`;
    case 'setvar':
      return `SET ${c.variable} = ${c.value}`;
    case 'fsd':
      return 'FSD';
  }
}
