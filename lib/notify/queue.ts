/**
 * One channel's delivery: its durable outbox, sent strictly in order (the oldest message first, the
 * next only after it), retried with backoff while the service cannot be reached, held back by the
 * channel's rate limit, dropped (with a log entry) when older than the configured age. Status for
 * the nodes that use the channel: queued, sent, failing and why.
 *
 * Exactly once: a message leaves the outbox (on disk) only after the service accepted it; closing
 * gives a send in flight a moment to finish before aborting it, so a message the service already
 * took is not sent again after a restart.
 */
import { Clock, TimerHandle, systemClock } from './clock';
import { Outbox, OutboxEntry } from './outbox';
import { Notification, Template, clockTime, duration } from './format';

export type ChannelKind = 'email' | 'webhook' | 'discord' | 'ntfy' | 'telegram' | 'ha';

/** Why a send failed, and what to do about it. */
export type FailureKind =
  /** The service could not be reached or had a problem (network, timeout, 5xx): retry. */
  | 'retry'
  /** The channel settings are wrong (credentials, URL, chat): retry, the user must fix them. */
  | 'config'
  /** The service refused this message itself (400, 413): dropped after a few attempts. */
  | 'rejected';

export class DeliveryError extends Error {
  constructor(message: string, readonly failure: FailureKind = 'retry', readonly retryAfterMs?: number) {
    super(message);
    this.name = 'DeliveryError';
  }
}

export interface DeliveryNote {
  warning?: string;
}

export interface EnqueueOptions {
  /** A step of a plan run in progress: sent at once, not held back by the rate limit. */
  urgent?: boolean;
}

/** A channel as the queue sees it: how to turn a notification into a queued payload and send it. */
export interface Driver<P = unknown> {
  readonly kind: ChannelKind;
  /** Where it goes, without secrets: "mail to ops@example.com via smtp.example.com:587". */
  readonly label: string;
  /** What to queue for this notification (no secrets: those are added when sending). */
  prepare(n: Notification, t: Template): P;
  /**
   * Send one queued payload; throws a DeliveryError (or any error: then retried). Resolves with a
   * warning when the service took the message but not entirely (a mail server refusing one of the
   * recipients): it counts as delivered, since sending it again would repeat it to the others.
   */
  deliver(payload: P, signal: AbortSignal): Promise<void | DeliveryNote>;
  close?(): Promise<void>;
}

export interface QueueSettings {
  /** Messages older than this are dropped (ms). */
  maxAgeMs: number;
  /** First retry after this (ms), doubling … */
  retryMinMs: number;
  /** … up to this (ms). */
  retryMaxMs: number;
  /**
   * Messages per minute at most (0 = no limit); a burst of this many may go at once. Urgent
   * messages (the steps of a plan run) are not held back by it: they take a token when there is
   * one, and go at once, ahead of messages waiting for one, when there is none.
   */
  perMinute: number;
  /** One send may take this long (ms). */
  timeoutMs: number;
  /** On close, a send in flight may finish within this (ms) before it is aborted. */
  closeGraceMs: number;
}

export const QUEUE_DEFAULTS: QueueSettings = {
  maxAgeMs: 24 * 3600_000,
  retryMinMs: 1000,
  retryMaxMs: 60_000,
  perMinute: 20,
  timeoutMs: 15_000,
  closeGraceMs: 3000,
};

/** Attempts a rejected message gets before it is dropped. */
const REJECT_ATTEMPTS = 3;

export interface QueueStatus {
  queued: number;
  /** Delivered since this queue started. */
  sent: number;
  dropped: number;
  /** Why the oldest message cannot be sent, or null. */
  failing: string | null;
  failure: FailureKind | null;
  /** When the next attempt is due (ms since epoch), while failing. */
  retryAt: number | null;
  lastSentAt: number | null;
  /** The last message was delivered, but not entirely (recipients refused), or null. */
  warning: string | null;
}

export type Logger = (level: 'info' | 'warn' | 'error', text: string) => void;

export class ChannelQueue<P = unknown> {
  private running = false;
  private closed = false;
  private timer: TimerHandle | null = null;
  private inFlight: Promise<void> | null = null;
  private abort: AbortController | null = null;
  private readonly listeners = new Set<(s: QueueStatus) => void>();
  private tokens: number;
  private tokensAt: number;
  private attempts = 0;
  private rejects = 0;
  private opening: Promise<void> | null = null;
  private unexpected = false;
  /** The timer waits for the rate limit (not for a retry after a failure). */
  private rateWait = false;
  private st: QueueStatus = { queued: 0, sent: 0, dropped: 0, failing: null, failure: null, retryAt: null, lastSentAt: null, warning: null };

  constructor(
    readonly name: string,
    readonly driver: Driver<P>,
    readonly outbox: Outbox<P>,
    private readonly settings: QueueSettings = QUEUE_DEFAULTS,
    private readonly log: Logger = () => undefined,
    private readonly clock: Clock = systemClock,
  ) {
    this.tokens = settings.perMinute;
    this.tokensAt = clock.now();
  }

  /** Load what was queued before a restart and start sending it. */
  open(): Promise<void> {
    this.opening ??= this.outbox.open().then((entries) => {
      if (entries.length) this.log('info', `${this.name}: ${entries.length} message${entries.length === 1 ? '' : 's'} queued from before; sending`);
      this.update({ queued: this.outbox.size });
      this.pump();
    });
    return this.opening;
  }

  get status(): QueueStatus {
    return { ...this.st };
  }

  onStatus(listener: (s: QueueStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Queue a notification for this channel; resolves once it is on disk. */
  async enqueue(n: Notification, t: Template, o: EnqueueOptions = {}): Promise<OutboxEntry<P>> {
    if (this.closed) throw new Error(`${this.name}: channel is closed`);
    await this.open();
    const payload = this.driver.prepare(n, t);
    const entry = await this.outbox.add(`${n.key}`, payload, this.clock.now(), this.driver.kind, o.urgent === true);
    this.update({ queued: this.outbox.size });
    if (this.timer && o.urgent && this.rateWait) {
      // Only the rate limit holds the queue: an urgent message need not wait for it.
      this.timer.cancel();
      this.timer = null;
    }
    if (!this.timer) this.pump();
    return entry;
  }

  /** Try again now (the service is reachable again, e.g. Home Assistant reconnected). */
  retryNow(): void {
    if (this.closed || !this.outbox.size) return;
    this.timer?.cancel();
    this.timer = null;
    this.pump();
  }

  /** Send the queue in order until it is empty, a send fails, or the rate limit says wait. */
  private pump(): void {
    if (this.running || this.closed) return;
    this.running = true;
    this.inFlight = this.drain()
      .catch((err: unknown) => {
        this.unexpected = true;
        this.log('error', `${this.name}: delivery stopped unexpectedly (${err instanceof Error ? err.message : String(err)}); retrying`);
      })
      .finally(() => {
        this.running = false;
        this.inFlight = null;
        // Something went wrong outside a send (disk): look again later rather than stall.
        if (this.unexpected && !this.closed && !this.timer && this.outbox.size) this.sleep(this.settings.retryMaxMs);
        this.unexpected = false;
      });
  }

  private async drain(): Promise<void> {
    while (!this.closed) {
      let head = this.outbox.head();
      if (!head) return;
      const now = this.clock.now();
      if (await this.dropIfStale(head, now)) continue;
      const wait = this.takeToken(now, head.urgent === true);
      if (wait > 0) {
        // Held back by the rate limit; a step of a plan run that is queued behind goes first.
        const urgent = this.outbox.list().find((e) => e.urgent && e !== head);
        if (!urgent) {
          this.sleep(wait, true);
          return;
        }
        if (await this.dropIfStale(urgent, now)) continue;
        head = urgent;
      }
      const ac = new AbortController();
      this.abort = ac;
      const timeout = setTimeout(() => ac.abort(new DeliveryError(`no answer within ${duration(this.settings.timeoutMs / 1000)}`, 'retry')), this.settings.timeoutMs);
      let note: void | DeliveryNote;
      try {
        note = await this.driver.deliver(head.payload, ac.signal);
      } catch (err) {
        if (this.closed) return;
        // An aborted send reports the abort's reason (the timeout), not the library's AbortError.
        await this.failed(head, ac.signal.aborted && ac.signal.reason instanceof DeliveryError ? ac.signal.reason : err);
        return;
      } finally {
        clearTimeout(timeout);
        this.abort = null;
      }
      await this.delivered(head, note?.warning ?? null);
    }
  }

  private async delivered(head: OutboxEntry<P>, warning: string | null): Promise<void> {
    const wasFailing = this.st.failing;
    const tries = this.attempts + 1;
    this.attempts = 0;
    this.rejects = 0;
    try {
      await this.outbox.remove(head);
    } catch (err) {
      // Sent, but still on disk: it would go out again after a restart. Say so; never resend now.
      this.log('error', `${this.name}: sent message ${head.label}, but could not remove it from the outbox (${(err as Error).message}); it may be sent again after a restart`);
    }
    if (wasFailing) this.log('info', `${this.name}: delivering again (after ${tries} attempt${tries === 1 ? '' : 's'})`);
    if (warning) this.log('warn', `${this.name}: sent message ${head.label}, but ${warning}`);
    this.update({ queued: this.outbox.size, sent: this.st.sent + 1, failing: null, failure: null, retryAt: null, lastSentAt: this.clock.now(), warning });
  }

  private async failed(head: OutboxEntry<P>, err: unknown): Promise<void> {
    const e = err instanceof DeliveryError ? err : new DeliveryError(err instanceof Error ? err.message : String(err), 'retry');
    this.attempts++;
    if (e.failure === 'rejected') {
      this.rejects++;
      if (this.rejects >= REJECT_ATTEMPTS) {
        this.rejects = 0;
        this.attempts = 0;
        await this.drop(head, `rejected by the service ${REJECT_ATTEMPTS} times: ${e.message}`, 'error');
        this.update({ failing: null, failure: null, retryAt: null });
        if (!this.timer) this.pump();
        return;
      }
    }
    const backoff = Math.min(this.settings.retryMaxMs, this.settings.retryMinMs * 2 ** Math.min(20, this.attempts - 1));
    const delay = Math.max(backoff, e.retryAfterMs ?? 0);
    if (this.st.failing !== e.message) {
      this.log(e.failure === 'config' ? 'error' : 'warn', `${this.name}: cannot send (${this.outbox.size} queued, retrying): ${e.message}`);
    }
    this.update({ failing: e.message, failure: e.failure, retryAt: this.clock.now() + delay });
    this.sleep(delay);
  }

  /** Drop a message that expired or was queued for another kind of channel; true when dropped. */
  private async dropIfStale(e: OutboxEntry<P>, now: number): Promise<boolean> {
    if (now - e.createdAt > this.settings.maxAgeMs) {
      await this.drop(e, `expired: queued at ${clockTime(e.createdAt)}, older than ${duration(this.settings.maxAgeMs / 1000)}`, 'warn');
      return true;
    }
    if (e.kind && e.kind !== this.driver.kind) {
      await this.drop(e, `queued for a ${e.kind} channel; this channel is now ${this.driver.kind}`, 'warn');
      return true;
    }
    return false;
  }

  private async drop(head: OutboxEntry<P>, why: string, level: 'warn' | 'error'): Promise<void> {
    await this.outbox.remove(head).catch(() => undefined);
    this.log(level, `${this.name}: dropped message ${head.label} (${why})`);
    this.update({ queued: this.outbox.size, dropped: this.st.dropped + 1 });
  }

  private sleep(ms: number, rateWait = false): void {
    this.timer?.cancel();
    this.rateWait = rateWait;
    this.timer = this.clock.setTimer(() => {
      this.timer = null;
      this.pump();
    }, ms);
  }

  /**
   * Token bucket: 0 when a message may go now (and takes a token), else ms until one may. An
   * urgent message always may: it takes a token if there is one, else goes without.
   */
  private takeToken(now: number, urgent = false): number {
    const rate = this.settings.perMinute;
    if (rate <= 0) return 0;
    this.tokens = Math.min(rate, this.tokens + ((now - this.tokensAt) * rate) / 60_000);
    this.tokensAt = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    if (urgent) return 0;
    return Math.ceil(((1 - this.tokens) * 60_000) / rate);
  }

  private update(patch: Partial<QueueStatus>): void {
    this.st = { ...this.st, ...patch };
    const s = this.status;
    for (const l of this.listeners) {
      try {
        l(s);
      } catch {
        /* a status listener must not stop delivery */
      }
    }
  }

  /**
   * Stop: no new sends; a send in flight may finish within the close grace (so it is recorded as
   * sent), then it is aborted and stays queued on disk for the next start.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.timer?.cancel();
    this.timer = null;
    await this.opening?.catch(() => undefined);
    const inFlight = this.inFlight;
    if (inFlight) {
      let t: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((r) => {
        t = setTimeout(r, this.settings.closeGraceMs);
      });
      await Promise.race([inFlight.catch(() => undefined), grace]);
      clearTimeout(t);
      this.abort?.abort(new Error('channel closed'));
      await inFlight.catch(() => undefined);
    }
    await this.outbox.flush().catch(() => undefined);
    await this.driver.close?.().catch(() => undefined);
    this.listeners.clear();
  }
}
