/**
 * Where a NUT server keeps its FSD latches: one small JSON file per server node, written
 * atomically (lib/fs/atomic), so FSD raised mid-shutdown is still raised after Node-RED restarts.
 * Without it a NAS that had not shut down yet would see FSD vanish and stay up until a later
 * phase cuts its power.
 *
 * Only a restart of Node-RED keeps FSD, not a restart of the machine: the UPS is switched off
 * last, so this machine loses power too, and when the mains returns every NAS boots while the
 * outage is over. A latch kept then would shut every NAS down again at each boot (upsd forgets FSD
 * when it restarts, for the same reason). So the boot id is saved with the latches, and latches of
 * an earlier boot are handed back apart, not to be raised.
 *
 * Writes are synchronous on purpose: they happen only when FSD is raised or cleared, the file is
 * tiny, and the action may report "FSD raised" only once the latch is on disk.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomicSync } from '../fs/atomic';
import { BootStamp, ThisBoot, bootStamp, bootTime, readBootId, restartedSince } from '../machine/boot';

/** One raised FSD: who raised it and when (ms since the epoch). */
export interface FsdLatch {
  by: string;
  at: number;
}

/** Latches by served UPS (NUT name, lower case). */
export type FsdLatches = Record<string, FsdLatch>;

export interface SavedFsd {
  /** Saved during this boot of the machine (Node-RED restarted, or the node was redeployed): raised again. */
  latches: FsdLatches;
  /** Saved before this machine restarted (power cut, reboot): the outage is over, not raised again. */
  earlierBoot: FsdLatches;
}

export interface FsdStore {
  /** The saved latches; none when there are none. Throws when the file exists but cannot be read. */
  load(): SavedFsd;
  /** Replace the saved latches. Throws when the file cannot be written. */
  save(latches: FsdLatches): void;
}

interface FsdFile extends BootStamp {
  version: 1;
  fsd: FsdLatches;
}

export interface FileFsdStoreOptions {
  /** This boot's id; default from /proc (tests give their own). */
  bootId?: () => string | null;
  /** When the machine booted, used only without a boot id; default from the OS uptime. */
  bootTime?: () => number;
  now?: () => number;
}

export class FileFsdStore implements FsdStore {
  private readonly boot: ThisBoot;
  private readonly now: () => number;

  constructor(readonly file: string, o: FileFsdStoreOptions = {}) {
    this.boot = { bootId: (o.bootId ?? readBootId)(), bootTime: o.bootTime ?? bootTime };
    this.now = o.now ?? Date.now;
  }

  load(): SavedFsd {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { latches: {}, earlierBoot: {} };
      throw new Error(`cannot read the saved FSD state ${this.file}: ${(err as Error).message}`);
    }
    let data: FsdFile;
    try {
      data = JSON.parse(text) as FsdFile;
      if (data?.version !== 1 || typeof data.fsd !== 'object' || data.fsd === null) throw new Error('unknown format');
    } catch (err) {
      throw new Error(`the saved FSD state ${this.file} is damaged (${(err as Error).message}); FSD starts cleared and the file is replaced at the next change`);
    }
    const out: FsdLatches = {};
    for (const [k, v] of Object.entries(data.fsd)) {
      if (v && typeof v.by === 'string' && typeof v.at === 'number') out[k.toLowerCase()] = { by: v.by, at: v.at };
    }
    // A file written before the boot id was saved: the latest latch tells when it was written.
    const latest = Math.max(0, ...Object.values(out).map((l) => l.at));
    const stamp: BootStamp = {
      savedAt: typeof data.savedAt === 'number' ? data.savedAt : Object.keys(out).length ? latest : undefined,
      bootId: typeof data.bootId === 'string' ? data.bootId : undefined,
    };
    return restartedSince(stamp, this.boot) ? { latches: {}, earlierBoot: out } : { latches: out, earlierBoot: {} };
  }

  save(latches: FsdLatches): void {
    const body: FsdFile = { version: 1, ...bootStamp(this.boot, this.now()), fsd: latches };
    writeFileAtomicSync(this.file, JSON.stringify(body, null, 1));
  }
}

/** The file of one NUT server config node under the Node-RED user dir. */
export function fsdStoreFile(dir: string, nodeId: string): string {
  return path.join(dir, `nut-server-${nodeId.replace(/[^A-Za-z0-9._-]/g, '_')}.json`);
}
