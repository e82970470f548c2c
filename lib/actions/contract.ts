/**
 * The action contract: the one interface every action (SSH, libvirt, vSphere, Proxmox, UPS command,
 * NUT secondaries) implements. Platform code only says how to list targets and how to act on one
 * target; selection, concurrency, timeouts, idempotency, dry-run, results and abort handling live in
 * `runAction` (./run.ts), so every action behaves the same way in a phase.
 */

/** What a plan asks of its actions. `shutdown` is graceful first, then forced unless forbidden. */
export const OPERATIONS = ['shutdown', 'start', 'stop', 'suspend', 'maintenance', 'host-shutdown', 'command', 'none'] as const;
export type Operation = (typeof OPERATIONS)[number];

/** How a target ended up where it is. */
export const METHODS = ['graceful', 'forced', 'already', 'skipped', 'dry-run'] as const;
export type Method = (typeof METHODS)[number];

/** Power state as a platform sees it; `unknown` where it cannot tell (a plain SSH host before acting). */
export type PowerState = 'on' | 'off' | 'suspended' | 'unknown' | 'unreachable';

/** One thing an action can act on: a VM, a container, a host, a UPS, a group of NUT clients. */
export interface Target {
  /** Stable identifier on its platform (vmid, moref, domain UUID, host:port). */
  id: string;
  /** The name users know and select by. */
  name: string;
  tags?: string[];
  power: PowerState;
  /** Free-form facts for dry-run reports and the editor (host, node, tools status…). */
  info?: Record<string, string | number | boolean | null>;
  /**
   * The startup undoes this target even when the shutdown found it already in the shutdown state,
   * e.g. FSD latched by someone else: left alone it would stay that way after mains returns.
   */
  undoOnStartup?: boolean;
}

/** Which targets an action acts on. Empty lists mean "no constraint of that kind". */
export interface TargetSelection {
  /** Exact names or ids. */
  names?: string[];
  /** Globs (`web-*`, `db?`) or regular expressions written `/…/flags`. */
  patterns?: string[];
  tags?: string[];
  /** Every target whose power is `on` (or `suspended` for start). */
  allRunning?: boolean;
  /** Names, ids or patterns never acted on. */
  exclude?: string[];
}

/** The result of one target, the same shape for every platform. */
export interface TargetResult {
  target: string;
  id?: string;
  before: PowerState;
  after: PowerState;
  method: Method;
  ms: number;
  ok: boolean;
  error?: string;
  /** What was (or, in a dry-run, would be) done, in words: "ACPI shutdown, shut off after 4.2 s". */
  detail?: string;
  /** Copied from the target: the mirrored startup undoes it even when this result is `already`. */
  undoOnStartup?: boolean;
}

/** What the platform says it did to one target. */
export interface ActOutcome {
  method: Exclude<Method, 'skipped' | 'dry-run'>;
  after: PowerState;
  detail?: string;
}

export interface ActOptions {
  operation: Operation;
  /** Graceful-shutdown wait (and the bound for any single operation) in ms. */
  timeoutMs: number;
  /** After the graceful timeout, force the target off (destroy / power off / forceStop). */
  force: boolean;
  /** Per-platform extras the node passes through (mode acpi/agent, preset command…). */
  extra?: Record<string, unknown>;
  /** Set by the runner: this target was being acted on when Node-RED stopped (a resumed run). */
  resumed?: boolean;
}

/**
 * A platform. One driver per action node and run; `close()` ends its sessions.
 * Every method must honour `signal` and never hang: the runner also bounds each call by a timeout.
 */
export interface ActionDriver {
  /**
   * Connect and authenticate if needed, then list what can be acted on. `operation` is the one
   * about to run, for platforms where a target's power depends on it (a hypervisor host in
   * maintenance mode is "on" for host shutdown but not yet started for "start").
   */
  list(signal: AbortSignal, operation?: Operation): Promise<Target[]>;
  /**
   * Dry-run checks for one target and operation: privileges, guest tools, command presence.
   * Resolves with what would be done ("would run ACPI shutdown, then destroy after 120 s"),
   * rejects with a clear error when the operation could not be done.
   */
  check(target: Target, opts: ActOptions, signal: AbortSignal): Promise<string>;
  /**
   * Act on one target and return how it ended. Must be idempotent where the platform allows:
   * a target already in the wanted state resolves with method `already`.
   */
  act(target: Target, opts: ActOptions, signal: AbortSignal): Promise<ActOutcome>;
  /**
   * Optional: get within reach of acting on one target without acting on it (wait until SSH login
   * works, wake the host). Runs before the target is marked as started, so a restart meanwhile
   * leaves it untouched: the resumed run reaches it again instead of calling it interrupted. In a
   * startup, runAction retries it while it rejects with a not-reachable error (run.ts NotReachable).
   * Must be harmless to repeat.
   */
  reach?(target: Target, opts: ActOptions, signal: AbortSignal): Promise<void>;
  /**
   * True if acting again on a target that was mid-action when Node-RED stopped is harmless
   * (virsh shutdown, vSphere ShutdownGuest…). False (the default) for one-shot commands: such a
   * target is then reported as interrupted instead of repeated.
   */
  readonly repeatable?: boolean;
  /** Release sessions and sockets. Never rejects. */
  close(): Promise<void>;
}

/** The power state an operation leaves a target in, for "already" checks. */
export function wantedState(op: Operation): PowerState | null {
  switch (op) {
    case 'shutdown':
    case 'stop':
    case 'host-shutdown':
      return 'off';
    case 'start':
      return 'on';
    case 'suspend':
      return 'suspended';
    default:
      return null;
  }
}

/** A glob (`*`, `?`) or `/regex/flags` as a RegExp matching whole names. */
export function patternToRegExp(p: string): RegExp {
  const re = /^\/(.+)\/([a-z]*)$/.exec(p);
  if (re) return new RegExp(re[1], re[2]);
  const body = p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

function matchesAny(t: Target, items: string[]): boolean {
  return items.some((p) => p === t.name || p === t.id || patternToRegExp(p).test(t.name));
}

/** Which of `all` a selection picks, in the platform's listing order. */
export function selectTargets(all: Target[], sel: TargetSelection, op: Operation): Target[] {
  const names = sel.names ?? [];
  const patterns = sel.patterns ?? [];
  const tags = sel.tags ?? [];
  const runningFor = (t: Target) => (op === 'start' ? t.power === 'off' || t.power === 'suspended' : t.power === 'on');
  return all.filter((t) => {
    if (sel.exclude?.length && matchesAny(t, sel.exclude)) return false;
    if (names.includes(t.name) || names.includes(t.id)) return true;
    if (patterns.length && patterns.some((p) => patternToRegExp(p).test(t.name))) return true;
    if (tags.length && (t.tags ?? []).some((g) => tags.includes(g))) return true;
    if (sel.allRunning && runningFor(t)) return true;
    return false;
  });
}

/** Names in the selection that match nothing: a typo must not pass silently. */
export function unmatchedNames(all: Target[], sel: TargetSelection): string[] {
  return (sel.names ?? []).filter((n) => !all.some((t) => t.name === n || t.id === n));
}

/** Validate a selection from the editor or a message; throws with a plain message. */
export function parseSelection(raw: unknown): TargetSelection {
  if (raw === undefined || raw === null || raw === '') return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new Error('targets must be an object { names, patterns, tags, allRunning, exclude }');
  const r = raw as Record<string, unknown>;
  const list = (k: string): string[] | undefined => {
    const v = r[k];
    if (v === undefined || v === null || v === '') return undefined;
    const arr = typeof v === 'string' ? v.split(/[,\n]/) : v;
    if (!Array.isArray(arr) || !arr.every((x) => typeof x === 'string')) throw new Error(`targets.${k} must be a list of strings`);
    const out = arr.map((x) => x.trim()).filter(Boolean);
    if (k === 'patterns' || k === 'exclude') {
      for (const p of out) {
        try {
          patternToRegExp(p);
        } catch (e) {
          throw new Error(`targets.${k}: "${p}" is not a valid pattern (${(e as Error).message})`);
        }
      }
    }
    return out;
  };
  return {
    names: list('names'),
    patterns: list('patterns'),
    tags: list('tags'),
    allRunning: r.allRunning === true || r.allRunning === 'true',
    exclude: list('exclude'),
  };
}

/**
 * The common graceful-then-force pattern: ask nicely, poll until off, force after the timeout
 * unless forbidden. Platforms supply the three steps.
 */
export async function gracefulThenForce(p: {
  graceful: () => Promise<void>;
  isOff: () => Promise<boolean>;
  force: (() => Promise<void>) | null;
  timeoutMs: number;
  pollMs: number;
  signal: AbortSignal;
  what: string;
}): Promise<ActOutcome> {
  const t0 = Date.now();
  await p.graceful();
  for (;;) {
    if (await p.isOff()) return { method: 'graceful', after: 'off', detail: `${p.what}: off after ${((Date.now() - t0) / 1000).toFixed(1)} s` };
    if (Date.now() - t0 >= p.timeoutMs) break;
    await abortableSleep(Math.min(p.pollMs, Math.max(0, p.timeoutMs - (Date.now() - t0))), p.signal);
  }
  if (!p.force) throw new Error(`${p.what}: still running after ${Math.round(p.timeoutMs / 1000)} s and forcing is disabled`);
  await p.force();
  if (!(await p.isOff())) throw new Error(`${p.what}: still running after the forced power-off`);
  return { method: 'forced', after: 'off', detail: `${p.what}: forced off after ${Math.round(p.timeoutMs / 1000)} s` };
}

/**
 * The reason a signal carries when Node-RED stops or redeploys mid-run: work cut short by it is
 * not a failure, it resumes after the restart.
 */
export class Interrupted extends Error {
  constructor(message = 'Node-RED is stopping') {
    super(message);
    this.name = 'Interrupted';
  }
}

/** Sleep that ends early (rejecting) when the signal aborts. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(abortError(signal));
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export function abortError(signal: AbortSignal): Error {
  const r = signal.reason;
  return r instanceof Error ? r : new Error(typeof r === 'string' ? r : 'aborted');
}

/**
 * Run `fn` with a signal that aborts when `parent` aborts or `ms` passes; rejects with a timeout
 * error naming `what` if the time runs out, even if `fn` ignores its signal.
 */
export async function withTimeout<T>(what: string, ms: number, parent: AbortSignal, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const timeoutErr = new Error(`${what}: no answer within ${formatSeconds(ms)}`);
  let timer: NodeJS.Timeout | undefined;
  const onParent = () => ac.abort(parent.reason ?? new Error('aborted'));
  if (parent.aborted) throw abortError(parent);
  parent.addEventListener('abort', onParent, { once: true });
  try {
    return await Promise.race([
      fn(ac.signal),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          ac.abort(timeoutErr);
          reject(timeoutErr);
        }, ms);
        ac.signal.addEventListener('abort', () => reject(abortError(ac.signal)), { once: true });
      }),
    ]);
  } finally {
    clearTimeout(timer);
    parent.removeEventListener('abort', onParent);
    if (!ac.signal.aborted) ac.abort(new Error('finished'));
  }
}

export function formatSeconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${+(ms / 1000).toFixed(1)} s`;
}
