/**
 * The one routine that writes state files (plan runs, FSD latches, notify outbox): after a power
 * cut the file is the old version or the new one, never half of one, and a write reported done
 * stays done (the folder is fsync'ed after the rename, or the rename may be lost).
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeFileAtomic, writeFileAtomicSync } from '../lib/fs/atomic';

/** Records, in order, which paths were fsync'ed and renamed, while `fn` runs. */
async function traced(fn: () => Promise<void> | void): Promise<string[]> {
  const log: string[] = [];
  const fds = new Map<number, string>();
  const orig = { openSync: fs.openSync, fsyncSync: fs.fsyncSync, renameSync: fs.renameSync, open: fs.promises.open, rename: fs.promises.rename };
  // The module object itself (a namespace import only has getters); the code under test reads through to it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const f = require('node:fs');
  f.openSync = (p: string, ...a: unknown[]) => {
    const fd = (orig.openSync as any)(p, ...a);
    fds.set(fd, String(p));
    return fd;
  };
  f.fsyncSync = (fd: number) => {
    log.push(`fsync ${fds.get(fd)}`);
    return orig.fsyncSync(fd);
  };
  f.renameSync = (a: string, b: string) => {
    log.push(`rename ${b}`);
    return orig.renameSync(a, b);
  };
  f.promises.open = async (p: string, ...a: unknown[]) => {
    const fh = await (orig.open as any)(p, ...a);
    const sync = fh.sync.bind(fh);
    fh.sync = () => {
      log.push(`fsync ${p}`);
      return sync();
    };
    return fh;
  };
  f.promises.rename = (a: string, b: string) => {
    log.push(`rename ${b}`);
    return orig.rename(a, b);
  };
  try {
    await fn();
  } finally {
    Object.assign(f, { openSync: orig.openSync, fsyncSync: orig.fsyncSync, renameSync: orig.renameSync });
    Object.assign(f.promises, { open: orig.open, rename: orig.rename });
  }
  return log;
}

for (const [name, write] of [
  ['writeFileAtomic', writeFileAtomic],
  ['writeFileAtomicSync', async (file: string, text: string, o?: { tmp?: string }) => writeFileAtomicSync(file, text, o)],
] as const) {
  describe(`state files: ${name}`, () => {
    let dir: string;
    beforeEach(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-atomic-'));
    });
    afterEach(() => {
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('writes the temp file to disk, renames it over the file, then makes the rename durable', async () => {
      const file = path.join(dir, 'sub', 'state.json');
      const tmp = `${file}.${process.pid}.tmp`;
      const log = await traced(() => write(file, '{"a":1}'));
      assert.deepEqual(log, [`fsync ${tmp}`, `rename ${file}`, `fsync ${path.dirname(file)}`]);
      assert.equal(fs.readFileSync(file, 'utf8'), '{"a":1}');
      assert.deepEqual(fs.readdirSync(path.dirname(file)), ['state.json'], 'the folder is created, no temp file is left');
    });

    it('the file is readable by its owner only', async function () {
      if (process.platform === 'win32') this.skip();
      const file = path.join(dir, 'state.json');
      await write(file, 'x');
      assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    });

    it('replaces the old version whole', async () => {
      const file = path.join(dir, 'state.json');
      await write(file, 'old version, longer than the new one');
      await write(file, 'new');
      assert.equal(fs.readFileSync(file, 'utf8'), 'new');
    });

    it('a write that fails keeps the old version and leaves no temp file behind', async () => {
      const file = path.join(dir, 'state');
      // A folder where the file should go: the rename fails after the temp file was written.
      fs.mkdirSync(path.join(file, 'inside'), { recursive: true });
      await assert.rejects(async () => write(file, 'new'));
      assert.deepEqual(fs.readdirSync(dir), ['state']);
      assert.ok(fs.statSync(file).isDirectory());
    });

    it('uses the temp name it is given (the outbox recognises its own by name)', async () => {
      const file = path.join(dir, '000000000001.json');
      const tmp = path.join(dir, '.tmp-000000000001.json-1');
      const log = await traced(() => write(file, '{}', { tmp }));
      assert.equal(log[0], `fsync ${tmp}`);
      assert.deepEqual(fs.readdirSync(dir), ['000000000001.json']);
    });
  });
}
