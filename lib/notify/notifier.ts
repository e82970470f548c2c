/**
 * The notify node's logic: turn an incoming message (UPS event, plan run message, custom text)
 * into notifications, keep flapping power from flooding anyone (./flap.ts), pick the template
 * (the user's override or the default), and hand each notification to its channel(s).
 *
 * Crisis mode: between a run's `run-started` and its `run-report`, every step of the run (phase
 * started, each target done, phase done) is sent at once — to the crisis channel if one is set, else to the main
 * channel, where a target that went off as planned is left to its phase-done count — and everything else also
 * goes to the crisis channel, so that it tells the whole story.
 */
import { Clock, TimerHandle, systemClock } from './clock';
import { FLAP_DEFAULTS, FlapGuard, FlapSettings } from './flap';
import {
  DEFAULT_TEMPLATES,
  Notification,
  PlanTopic,
  Template,
  TemplateKey,
  duration,
  fromCustom,
  fromPlanMessage,
  fromUpsEvent,
  isPlanMessage,
  isUpsEventPayload,
} from './format';
import { Severity, UpsEventName } from '../ups/events';

/** A channel as the notifier sees it (a ChannelQueue, or anything that queues). */
export interface NotifyTarget {
  readonly name: string;
  /** `urgent`: a message of a plan run, sent at once rather than held back by the rate limit. */
  enqueue(n: Notification, t: Template, o?: { urgent?: boolean }): Promise<unknown>;
}

export interface NotifierOptions {
  main: NotifyTarget;
  crisis?: NotifyTarget | null;
  /** Report every step of a plan run. */
  crisisMode?: boolean;
  /** UPS events to notify about; empty = all. */
  events?: readonly UpsEventName[];
  flap?: FlapSettings;
  templates?: Partial<Record<TemplateKey, Partial<Template>>>;
  clock?: Clock;
  /** A digest could not be queued (disk full…): the node logs it. */
  onError?: (err: Error) => void;
}

export interface HandleResult {
  /** Messages queued (counting each channel). */
  queued: number;
  /** Why nothing was queued, when nothing was. */
  note?: string;
}

export class InputError extends Error {}

/** What arrives at the input: msg.topic, msg.payload and (from a phase's done output) msg.run. */
export interface InputMessage {
  topic?: unknown;
  payload?: unknown;
  run?: unknown;
}

const SEVERITIES: readonly Severity[] = ['info', 'warning', 'critical'];

/** Parse what arrives at the notify node's input into one notification; throws InputError. */
export function notificationFrom(msg: InputMessage, now: number): Notification {
  const p = msg.payload;
  if (isUpsEventPayload(p)) return fromUpsEvent(p, now);
  if (isPlanMessage(msg.topic, p, msg.run)) return fromPlanMessage(msg.topic as PlanTopic, p as Record<string, unknown>, now, msg.run);
  if (typeof p === 'string' && p.trim()) {
    return fromCustom({ message: p, ...(typeof msg.topic === 'string' && msg.topic.trim() ? { title: msg.topic } : {}) }, now);
  }
  if (p && typeof p === 'object' && typeof (p as Record<string, unknown>).message === 'string') {
    const o = p as Record<string, unknown>;
    if (o.severity !== undefined && !SEVERITIES.includes(o.severity as Severity)) throw new InputError(`severity must be info, warning or critical, got ${JSON.stringify(o.severity)}`);
    if (o.title !== undefined && typeof o.title !== 'string') throw new InputError('title must be text');
    return fromCustom({ message: o.message as string, title: o.title as string | undefined, severity: o.severity as Severity | undefined }, now);
  }
  throw new InputError('expected a UPS event (from a UPS in node), a plan run message (run-started, phase-started, phase-done, target-done, target-failed, run-report, run-refused), or msg.payload = text or {title, message, severity}');
}

export class Notifier {
  private readonly guard: FlapGuard;
  private readonly clock: Clock;
  private timer: TimerHandle | null = null;
  private readonly runs = new Set<string>();
  /** When each UPS went on battery, for "back on mains after …" (the ONLINE state reads 0 s). */
  private readonly onBatterySince = new Map<string, number>();
  private closed = false;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: NotifierOptions) {
    this.guard = new FlapGuard(o.flap ?? FLAP_DEFAULTS);
    this.clock = o.clock ?? systemClock;
  }

  /** The template for a notification: message-supplied, the user's override, or the default. */
  template(n: Notification): Template {
    const d = DEFAULT_TEMPLATES[n.key];
    const u = this.o.templates?.[n.key] ?? {};
    return { title: n.title ?? u.title ?? d.title, body: n.body ?? u.body ?? d.body };
  }

  /** A run is in progress (crisis mode applies). */
  get inCrisis(): boolean {
    return this.runs.size > 0;
  }

  get flapping(): string[] {
    return this.guard.flapping;
  }

  /**
   * Handle one input message; resolves once everything it caused is queued on disk. Messages are
   * handled one after another, so that each channel gets them in the order they arrived.
   */
  handle(msg: InputMessage): Promise<HandleResult> {
    const run = this.chain.then(() => this.handleOne(msg));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async handleOne(msg: InputMessage): Promise<HandleResult> {
    if (this.closed) return { queued: 0, note: 'closed' };
    const now = this.clock.now();
    const n = notificationFrom(msg, now);
    if (n.kind === 'ups-event') {
      this.trackBattery(n);
      if (this.o.events?.length && !this.o.events.includes(n.key as UpsEventName)) return { queued: 0, note: `${n.key} is not in this node's event list` };
      const out = this.guard.offer(n, now);
      this.schedule();
      if (!out.length) return { queued: 0, note: `${n.key} summarised (flapping)` };
      let queued = 0;
      for (const x of out) queued += await this.route(x);
      return { queued };
    }
    if (n.kind === 'plan') return { queued: await this.routePlan(n) };
    return { queued: await this.route(n) };
  }

  private trackBattery(n: Notification): void {
    const ups = String(n.ctx.ups);
    const state = n.ctx.state as { secondsOnBattery?: number; ts?: number } | undefined;
    const secs = state?.secondsOnBattery ?? 0;
    if (n.key === 'ONBATT') this.onBatterySince.set(ups, n.ts - secs * 1000);
    else if (n.key === 'ONLINE') {
      const since = this.onBatterySince.get(ups);
      this.onBatterySince.delete(ups);
      if (secs > 0) return;
      n.ctx.elapsed = since === undefined ? 'an unknown time' : duration((n.ts - since) / 1000);
      const i = n.facts.findIndex((f) => f.name === 'On battery for');
      if (since !== undefined) {
        if (i >= 0) n.facts[i].value = String(n.ctx.elapsed);
        else n.facts.push({ name: 'Was on battery for', value: String(n.ctx.elapsed) });
      }
    }
  }

  private async routePlan(n: Notification): Promise<number> {
    const runId = String((n.ctx.run as { id?: string } | undefined)?.id ?? '') || `plan:${String(n.ctx.plan)}`;
    // A refusal starts no run (and its run reference is the plan's last run, maybe long finished).
    if (n.key === 'run-report') this.runs.delete(runId);
    else if (n.key !== 'run-refused') this.runs.add(runId);
    const crisis = this.crisisTarget();
    if (n.step) {
      if (this.o.crisisMode === false) return 0;
      // One message per target that went off as planned belongs on a crisis channel (a phone); on the
      // main channel alone (often email) a 200-VM plan would be 200 mails, and phase-done counts them.
      if (!crisis && n.key === 'target-done' && n.severity === 'info') return 0;
      return this.send(crisis ?? this.o.main, n);
    }
    let queued = await this.send(this.o.main, n);
    if (crisis && this.o.crisisMode !== false) queued += await this.send(crisis, n);
    return queued;
  }

  /** UPS events, custom messages and digests: the main channel, and the crisis channel during a run. */
  private async route(n: Notification): Promise<number> {
    let queued = await this.send(this.o.main, n);
    const crisis = this.crisisTarget();
    if (crisis && this.inCrisis && this.o.crisisMode !== false) queued += await this.send(crisis, n);
    return queued;
  }

  private crisisTarget(): NotifyTarget | null {
    const c = this.o.crisis;
    return c && c !== this.o.main ? c : null;
  }

  private async send(target: NotifyTarget, n: Notification): Promise<number> {
    // While a plan runs (and for its refusals and report), nothing it says waits for the rate limit.
    await target.enqueue(n, this.template(n), { urgent: n.kind === 'plan' || this.inCrisis });
    return 1;
  }

  /** Sleep until the next digest is due. */
  private schedule(): void {
    this.timer?.cancel();
    this.timer = null;
    if (this.closed) return;
    const at = this.guard.wakeAt();
    if (at === null) return;
    this.timer = this.clock.setTimer(() => {
      this.timer = null;
      const digests = this.guard.due(this.clock.now());
      this.schedule();
      for (const d of digests) {
        const run = this.chain.then(() => this.route(d));
        this.chain = run.catch((err: Error) => this.o.onError?.(err));
      }
    }, at - this.clock.now());
  }

  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.timer = null;
  }
}
