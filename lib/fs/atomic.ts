/**
 * Writing a small state file so that a power cut mid-write leaves either the old version or the
 * new one, never half a file: a temp file in the same folder, fsync, rename over the target, then
 * fsync the folder. Without the last step the rename itself may not be on disk yet, and a power
 * cut brings the old version back although the write was reported done.
 *
 * One routine for every state file (plan runs, FSD latches, notify outbox), async and sync: the
 * FSD latch is written synchronously because "FSD raised" may be reported only once it is on disk.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface AtomicWriteOptions {
  /** The temp file, in the target's folder; default `<file>.<pid>.tmp`. */
  tmp?: string;
  /** The file's mode; default 0o600 (state files say who did what, not for everyone to read). */
  mode?: number;
}

/** Write `text` to `file` atomically and durably; the folder is created when missing. */
export async function writeFileAtomic(file: string, text: string, o: AtomicWriteOptions = {}): Promise<void> {
  const dir = path.dirname(file);
  const tmp = o.tmp ?? `${file}.${process.pid}.tmp`;
  await fs.promises.mkdir(dir, { recursive: true });
  try {
    const fh = await fs.promises.open(tmp, 'w', o.mode ?? 0o600);
    try {
      await fh.writeFile(text, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.promises.rename(tmp, file);
  } catch (err) {
    // A disk that is full must not also fill up with temp files, one per failed write.
    await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await syncDir(dir);
}

/** writeFileAtomic, synchronously. */
export function writeFileAtomicSync(file: string, text: string, o: AtomicWriteOptions = {}): void {
  const dir = path.dirname(file);
  const tmp = o.tmp ?? `${file}.${process.pid}.tmp`;
  fs.mkdirSync(dir, { recursive: true });
  try {
    const fd = fs.openSync(tmp, 'w', o.mode ?? 0o600);
    try {
      fs.writeFileSync(fd, text, 'utf8');
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      /* the write's own error is the one to report */
    }
    throw err;
  }
  syncDirSync(dir);
}

/**
 * Make a rename or unlink in `dir` durable. Never throws: some file systems (and Windows) cannot
 * fsync a folder; the rename is atomic there all the same, only perhaps not yet durable.
 */
export async function syncDir(dir: string): Promise<void> {
  const fh = await fs.promises.open(dir, 'r').catch(() => null);
  if (!fh) return;
  await fh.sync().catch(() => undefined);
  await fh.close().catch(() => undefined);
}

/** syncDir, synchronously. */
export function syncDirSync(dir: string): void {
  let fd: number;
  try {
    fd = fs.openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    fs.fsyncSync(fd);
  } catch {
    /* see syncDir */
  } finally {
    fs.closeSync(fd);
  }
}
