/**
 * Shutdown commands for common systems. Commands are relative (found in the remote PATH), so the
 * remote system decides where its tools live. A user other than root gets `sudo -n` in front of
 * commands that need root: sudo must then allow them without a password (sudoers NOPASSWD), and
 * `-n` makes it fail at once instead of waiting for a password nobody can type.
 */
import { shellQuote } from './client';

export const SSH_PRESETS = ['linux', 'synology', 'truenas-scale', 'truenas-core', 'qnap', 'esxi', 'docker-stop', 'umount', 'custom'] as const;
export type SshPreset = (typeof SSH_PRESETS)[number];

export interface PresetParams {
  username: string;
  /** Custom command (preset `custom`). */
  command?: string;
  /** The custom command powers the host off (a dropped connection is then success). */
  customPowersOff?: boolean;
  /** `docker stop -t` seconds. */
  dockerTimeout?: number;
  /** Mount point to unmount. */
  umountPath?: string;
  /** Seconds before `timeout` gives up on umount. */
  umountTimeout?: number;
  /** Reason recorded by ESXi and TrueNAS. */
  reason?: string;
}

export interface PresetCommand {
  command: string;
  /** The command powers the host off: the connection may drop before it answers, and the host may be waited for. */
  powersOff: boolean;
}

export const DEFAULT_REASON = 'UPS power failure (Node-RED UPS orchestrator)';

/** The command line a preset sends. Throws with a plain message when a parameter is missing. */
export function presetCommand(preset: SshPreset, p: PresetParams): PresetCommand {
  const root = p.username === 'root';
  const sudo = (cmd: string) => (root ? cmd : `sudo -n ${cmd}`);
  const reason = shellQuote(p.reason || DEFAULT_REASON);
  switch (preset) {
    case 'linux':
      // `poweroff` works with systemd, sysvinit, OpenRC and BusyBox alike.
      return { command: sudo('poweroff'), powersOff: true };
    case 'synology':
      return { command: sudo('synoshutdown -s'), powersOff: true };
    case 'truenas-scale':
      // 25.04 and later require a reason; older releases take no argument.
      return { command: `${sudo(`midclt call system.shutdown ${reason}`)} || ${sudo('midclt call system.shutdown')}`, powersOff: true };
    case 'truenas-core':
      return { command: sudo('shutdown -p now'), powersOff: true };
    case 'qnap':
      return { command: sudo('poweroff'), powersOff: true };
    case 'esxi':
      // Shutting down needs maintenance mode; `;` so that a host already in it still shuts down.
      return { command: `esxcli system maintenanceMode set --enable true; esxcli system shutdown poweroff --reason ${reason}`, powersOff: true };
    case 'docker-stop': {
      const t = Math.round(p.dockerTimeout ?? 30);
      return { command: `docker ps -q | xargs -r docker stop -t ${t}`, powersOff: false };
    }
    case 'umount': {
      if (!p.umountPath) throw new Error('the unmount preset needs a mount point');
      const t = Math.round(p.umountTimeout ?? 30);
      return { command: sudo(`timeout ${t} umount ${shellQuote(p.umountPath)}`), powersOff: false };
    }
    case 'custom':
      if (!p.command || !p.command.trim()) throw new Error('a custom command is required');
      // Only the user knows what their command does: by default it leaves the host running.
      return { command: p.command.trim(), powersOff: p.customPowersOff === true };
  }
}
