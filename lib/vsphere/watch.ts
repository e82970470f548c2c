/**
 * Waiting for many objects at once with few requests: every VM waiting to power off and every
 * task waiting to finish is read in ONE RetrievePropertiesEx per poll interval, however many
 * targets an action runs in parallel. A waiter resolves as soon as its condition holds, or with
 * `null` when its own deadline passes; it is rejected with the last error after three failed
 * polls in a row that it took part in (a waiter that joins later starts counting afresh).
 */
import { MoRef, esc, refXml } from './soap';
import { VsphereSession } from './session';

export const WATCH_PATHS: Record<string, string[]> = {
  VirtualMachine: ['runtime.powerState', 'guest.toolsRunningStatus'],
  HostSystem: ['runtime.powerState', 'runtime.inMaintenanceMode', 'runtime.connectionState'],
  Task: ['info'],
};

type Props = Record<string, unknown>;

interface Waiter {
  ref: MoRef;
  test: (p: Props) => unknown;
  deadline: number;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  misses: number;
  /** Failed polls in a row this waiter was part of. */
  fails: number;
  cleanup: () => void;
}

export class Watcher {
  private waiters = new Set<Waiter>();
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  private closed = false;
  /** Requests this watcher sent. */
  polls = 0;

  constructor(
    private readonly session: VsphereSession,
    /** Between polls while something waits. */
    private readonly intervalMs = 1000,
    /** Before the first poll after a quiet period, so a fast change is seen fast. */
    private readonly firstMs = 150,
  ) {}

  /**
   * Resolve with `test(props)` once it returns something other than undefined, or with null at
   * `timeoutMs`. Rejects when the signal aborts, the object vanishes, or polls keep failing.
   */
  until<T>(ref: MoRef, test: (p: Props) => T | undefined, timeoutMs: number, signal: AbortSignal): Promise<T | null> {
    if (!WATCH_PATHS[ref.type]) return Promise.reject(new Error(`cannot watch ${ref.type}`));
    if (this.closed) return Promise.reject(new Error('the action is closed'));
    if (signal.aborted) return Promise.reject(reason(signal));
    return new Promise<T | null>((resolve, reject) => {
      const onAbort = () => {
        w.cleanup();
        reject(reason(signal));
      };
      const w: Waiter = {
        ref,
        test,
        deadline: Date.now() + timeoutMs,
        resolve: (v) => {
          w.cleanup();
          resolve(v as T | null);
        },
        reject: (e) => {
          w.cleanup();
          reject(e);
        },
        misses: 0,
        fails: 0,
        cleanup: () => {
          this.waiters.delete(w);
          signal.removeEventListener('abort', onAbort);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(w);
      this.schedule(this.firstMs);
    });
  }

  private schedule(ms: number): void {
    if (this.timer || this.busy || this.closed || this.waiters.size === 0) return;
    const next = Math.min(ms, ...[...this.waiters].map((w) => Math.max(0, w.deadline - Date.now())));
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.poll();
    }, next);
  }

  private async poll(): Promise<void> {
    if (this.closed || this.waiters.size === 0) return;
    this.busy = true;
    const batch = [...this.waiters];
    const byType = new Map<string, MoRef[]>();
    for (const w of batch) {
      const list = byType.get(w.ref.type) ?? [];
      if (!list.some((r) => r.value === w.ref.value)) list.push(w.ref);
      byType.set(w.ref.type, list);
    }
    const spec =
      '<specSet>' +
      [...byType.keys()].map((t) => `<propSet><type>${t}</type>${WATCH_PATHS[t].map((p) => `<pathSet>${esc(p)}</pathSet>`).join('')}</propSet>`).join('') +
      [...byType.values()].flat().map((r) => `<objectSet>${refXml('obj', r)}<skip>false</skip></objectSet>`).join('') +
      '<reportMissingObjectsInResults>true</reportMissingObjectsInResults></specSet>';
    try {
      this.polls++;
      const got = await this.session.retrieve(spec);
      const seen = new Map(got.map((o) => [`${o.obj.type}:${o.obj.value}`, o.props]));
      const now = Date.now();
      for (const w of batch) {
        if (!this.waiters.has(w)) continue;
        w.fails = 0;
        const props = seen.get(`${w.ref.type}:${w.ref.value}`);
        if (!props) {
          if (++w.misses >= 3) w.reject(new Error(`${w.ref.type} ${w.ref.value} is no longer known to the server`));
          continue;
        }
        let v: unknown;
        try {
          v = w.test(props);
        } catch (e) {
          w.reject(e as Error);
          continue;
        }
        if (v !== undefined) w.resolve(v);
        else if (now >= w.deadline) w.resolve(null);
      }
    } catch (err) {
      // A blip is retried at the next poll; three failures in a row fail a waiter.
      const now = Date.now();
      for (const w of batch) {
        if (!this.waiters.has(w)) continue;
        if (++w.fails >= 3) w.reject(err as Error);
        else if (now >= w.deadline) w.resolve(null);
      }
    } finally {
      this.busy = false;
      this.schedule(this.intervalMs);
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const w of [...this.waiters]) w.reject(new Error('the action is closed'));
  }
}

function reason(signal: AbortSignal): Error {
  const r = signal.reason;
  return r instanceof Error ? r : new Error(typeof r === 'string' ? r : 'aborted');
}
