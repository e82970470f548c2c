/**
 * Where a plan keeps its state on disk: the current (or last) run record and the armed switch, in
 * one JSON file per plan, written atomically (lib/fs/atomic: temp file, fsync, rename, folder
 * fsync) so a power cut mid-write leaves the previous version, never half a file. Writes are
 * serialised and coalesced: callers await a write that contains their change.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { Restore, RunRecord } from './types';
import { writeFileAtomic } from '../fs/atomic';

export interface PlanFile {
  version: 1;
  armed: boolean;
  /** The plan node's configured "armed" when this was written: a changed setting wins over the saved switch. */
  configuredArmed?: boolean;
  run: RunRecord | null;
  /** When this was written (ms since the epoch): compared with the machine's boot time on start when there is no boot id. */
  savedAt?: number;
  /** The Linux boot id when this was written: a different one on start means the machine restarted. */
  bootId?: string;
  /**
   * What the last real shutdown run turned off, per action node id (target names): the mirrored
   * startup starts these, not what was already off before the outage.
   */
  restore?: Restore | null;
  /** A startup asked for during a shutdown run: it follows that run, also after a restart. */
  queued?: QueuedRequest | null;
}

/** A run request as saved (the fields of RunRequest). */
export interface QueuedRequest {
  direction: 'shutdown' | 'startup';
  dryRun: boolean;
  origin: 'local' | 'remote';
  topic: string;
  reason?: unknown;
}

export class PlanStore {
  private latest: PlanFile | null = null;
  private writing: Promise<void> | null = null;
  private pending: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  readonly file: string;

  constructor(dir: string, planId: string) {
    this.file = path.join(dir, `plan-${planId.replace(/[^A-Za-z0-9._-]/g, '_')}.json`);
  }

  /**
   * The saved state, or null when there is none. A damaged file is an error, not silence: it is
   * moved aside to `<file>.damaged-<time>` (kept for inspection, never overwritten by the next write).
   */
  async load(): Promise<PlanFile | null> {
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new Error(`cannot read the plan state ${this.file}: ${(err as Error).message}`);
    }
    try {
      const data = JSON.parse(text) as PlanFile;
      if (data?.version !== 1 || typeof data.armed !== 'boolean') throw new Error('unknown format');
      return data;
    } catch (err) {
      const aside = `${this.file}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      const moved = await fs.rename(this.file, aside).then(
        () => `it was moved to ${aside}`,
        (e: Error) => `it could not be moved aside (${e.message}) and will be replaced`,
      );
      throw new Error(`the plan state ${this.file} is damaged (${(err as Error).message}); ${moved}; the plan starts without a saved run or switch`);
    }
  }

  /** Write `data` (a snapshot is taken now). Resolves once a write containing it is on disk. */
  save(data: PlanFile): Promise<void> {
    this.latest = JSON.parse(JSON.stringify(data)) as PlanFile;
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      if (!this.writing) this.writing = this.flush();
    });
  }

  private async flush(): Promise<void> {
    while (this.pending.length) {
      const waiters = this.pending.splice(0);
      const snapshot = this.latest!;
      try {
        await writeFileAtomic(this.file, JSON.stringify(snapshot, null, 1));
        for (const w of waiters) w.resolve();
      } catch (err) {
        for (const w of waiters) w.reject(err as Error);
      }
    }
    this.writing = null;
  }

  async remove(): Promise<void> {
    await this.writing;
    await fs.rm(this.file, { force: true });
  }
}
