/**
 * The durable outbox of one channel: every message is on disk before anyone tries to send it, so a
 * message that could not go out during the outage (router down, mail server unreachable) survives a
 * Node-RED restart and is sent after it.
 *
 * One file per message in the channel's folder, named by a sequence number that fixes the order.
 * A file is written as a temporary file, fsync'ed, renamed into place and the folder fsync'ed
 * (lib/fs/atomic): a message is either completely there or not at all. Delivered messages are unlinked (folder
 * fsync'ed again), so they are not sent twice after a restart. Payloads never hold secrets (tokens,
 * passwords and webhook URLs are added by the channel when sending).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { syncDir, writeFileAtomic } from '../fs/atomic';

export interface OutboxEntry<P = unknown> {
  id: string;
  seq: number;
  /** When the message was queued (ms since epoch): its age decides when it expires. */
  createdAt: number;
  /** What it is about, for logs and status: "ONBATT: UPS lab: on battery". Never a secret. */
  label: string;
  /** The channel kind that prepared the payload (email, webhook…): a payload only fits its own kind. */
  kind?: string;
  /** A step of a plan run in progress: not held back by the channel's rate limit. */
  urgent?: boolean;
  payload: P;
}

const NAME = /^(\d{12})\.json$/;

export class Outbox<P = unknown> {
  private entries: OutboxEntry<P>[] = [];
  private nextSeq = 1;
  private chain: Promise<unknown> = Promise.resolve();
  private opened = false;

  /** `onProblem` hears about files that could not be read (they are set aside, not deleted). */
  constructor(readonly dir: string, private readonly onProblem: (text: string) => void = () => undefined) {}

  /** Load what is queued on disk (after a restart), in order. */
  async open(): Promise<readonly OutboxEntry<P>[]> {
    await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const names = (await fsp.readdir(this.dir)).sort();
    const loaded: OutboxEntry<P>[] = [];
    for (const name of names) {
      const full = path.join(this.dir, name);
      if (name.startsWith('.tmp-')) {
        // A write that never completed: the message was never acknowledged as queued.
        await fsp.rm(full, { force: true });
        continue;
      }
      const m = NAME.exec(name);
      if (!m) continue;
      try {
        const entry = JSON.parse(await fsp.readFile(full, 'utf8')) as OutboxEntry<P>;
        if (typeof entry.id !== 'string' || entry.seq !== Number(m[1]) || typeof entry.createdAt !== 'number') throw new Error('not an outbox entry');
        loaded.push(entry);
      } catch (err) {
        this.onProblem(`outbox file ${name} is unreadable (${(err as Error).message}); set aside as ${name}.bad`);
        await fsp.rename(full, full + '.bad').catch(() => undefined);
      }
      this.nextSeq = Math.max(this.nextSeq, Number(m[1]) + 1);
    }
    loaded.sort((a, b) => a.seq - b.seq);
    this.entries = loaded;
    this.opened = true;
    return this.entries;
  }

  get size(): number {
    return this.entries.length;
  }

  /** The oldest message, next to send. */
  head(): OutboxEntry<P> | undefined {
    return this.entries[0];
  }

  list(): readonly OutboxEntry<P>[] {
    return this.entries;
  }

  /** Queue a message; resolves once it is durably on disk. Adds are written one after another. */
  add(label: string, payload: P, createdAt: number, kind?: string, urgent = false): Promise<OutboxEntry<P>> {
    if (!this.opened) return Promise.reject(new Error('outbox is not open'));
    const entry: OutboxEntry<P> = { id: randomUUID(), seq: this.nextSeq++, createdAt, label, ...(kind ? { kind } : {}), ...(urgent ? { urgent } : {}), payload };
    const run = this.chain.then(async () => {
      // The temp name starts with .tmp-, so open() knows a write that never completed.
      const tmp = path.join(this.dir, `.tmp-${fileName(entry.seq)}-${process.pid}`);
      await writeFileAtomic(path.join(this.dir, fileName(entry.seq)), JSON.stringify(entry), { tmp });
      this.entries.push(entry);
      return entry;
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Forget a message (delivered, expired or rejected); resolves once that is on disk. */
  remove(entry: OutboxEntry<P>): Promise<void> {
    this.entries = this.entries.filter((e) => e.id !== entry.id);
    const run = this.chain.then(async () => {
      await fsp.rm(path.join(this.dir, fileName(entry.seq)), { force: true });
      await syncDir(this.dir);
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Resolves when every write and removal started so far is on disk. */
  flush(): Promise<void> {
    return this.chain.then(() => undefined);
  }
}

function fileName(seq: number): string {
  return String(seq).padStart(12, '0') + '.json';
}
