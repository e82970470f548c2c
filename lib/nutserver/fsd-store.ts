/**
 * Where a NUT server keeps its FSD latches: one small JSON file per server node, written
 * atomically (temp file, fsync, rename), so FSD raised mid-shutdown is still raised after
 * Node-RED restarts. Without it a NAS that had not shut down yet would see FSD vanish and stay
 * up until a later phase cuts its power.
 *
 * Writes are synchronous on purpose: they happen only when FSD is raised or cleared, the file is
 * tiny, and the action may report "FSD raised" only once the latch is on disk.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** One raised FSD: who raised it and when (ms since the epoch). */
export interface FsdLatch {
  by: string;
  at: number;
}

/** Latches by served UPS (NUT name, lower case). */
export type FsdLatches = Record<string, FsdLatch>;

export interface FsdStore {
  /** The saved latches; {} when there are none. Throws when the file exists but cannot be read. */
  load(): FsdLatches;
  /** Replace the saved latches. Throws when the file cannot be written. */
  save(latches: FsdLatches): void;
}

interface FsdFile {
  version: 1;
  fsd: FsdLatches;
}

export class FileFsdStore implements FsdStore {
  constructor(readonly file: string) {}

  load(): FsdLatches {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
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
    return out;
  }

  save(latches: FsdLatches): void {
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    const body: FsdFile = { version: 1, fsd: latches };
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeFileSync(fd, JSON.stringify(body, null, 1), 'utf8');
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, this.file);
  }
}

/** The file of one NUT server config node under the Node-RED user dir. */
export function fsdStoreFile(dir: string, nodeId: string): string {
  return path.join(dir, `nut-server-${nodeId.replace(/[^A-Za-z0-9._-]/g, '_')}.json`);
}
