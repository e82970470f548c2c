/**
 * Did this machine restart since a state file was written? A Node-RED restart alone must keep a
 * shutdown in progress going (resume the plan run, keep FSD raised). A restart of the machine
 * itself means the power was cut (the UPS switched off last, as designed) or the host rebooted:
 * the outage is over, and what was in progress must not start again on what has just come back up.
 */
import { readFileSync } from 'node:fs';
import * as os from 'node:os';

/** When a state file was written: saved with it, compared on start. */
export interface BootStamp {
  /** When it was written, ms since the epoch. */
  savedAt?: number;
  /** The boot id when it was written. */
  bootId?: string;
}

/** This boot, as the comparison needs it (injectable in tests). */
export interface ThisBoot {
  /** This boot's id, or null where there is none (not Linux, no /proc). */
  bootId: string | null;
  /** When the machine booted, ms since the epoch. */
  bootTime: () => number;
}

/** The kernel's id of this boot (Linux: /proc/sys/kernel/random/boot_id); null where it cannot be read. */
export function readBootId(): string | null {
  try {
    const id = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return id || null;
  } catch {
    return null;
  }
}

/** When the machine booted (ms since the epoch), from the OS uptime. */
export function bootTime(): number {
  return Date.now() - os.uptime() * 1000;
}

/**
 * Did the machine restart since `saved`? The boot id says so for certain; the clock is only the
 * fallback where there is no boot id (a Raspberry Pi without RTC boots with an old clock, which
 * makes a power cut look like a mere Node-RED restart). Without either: not restarted.
 */
export function restartedSince(saved: BootStamp, current: ThisBoot): boolean {
  if (saved.bootId && current.bootId) return saved.bootId !== current.bootId;
  return saved.savedAt !== undefined && saved.savedAt < current.bootTime();
}

/** What to save with a state file, for restartedSince on the next start. */
export function bootStamp(current: Pick<ThisBoot, 'bootId'>, now: number = Date.now()): BootStamp {
  return { savedAt: now, ...(current.bootId ? { bootId: current.bootId } : {}) };
}
