/**
 * A UPS device: one source, one poll loop, shared by every subscriber. The loop runs only while
 * somebody subscribes (first subscriber starts it, last one stops it and closes the connection),
 * as Node-RED's MQTT broker node does with its users.
 */
import { SourceError, UpsSource } from './source';
import { UpsState, normalise, withComm } from './state';

export interface DeviceOptions {
  /** The UPS name shown in states and events. */
  name: string;
  /** Poll interval on mains (ms). */
  pollMs: number;
  /** Poll interval while on battery (ms). */
  pollOnBatteryMs: number;
  /** How long failed reads are ridden out (last good state kept) before comm is declared bad (ms). */
  commToleranceMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

export type StateListener = (state: UpsState) => void;

export class UpsDevice {
  private readonly listeners = new Set<StateListener>();
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private inFlight: Promise<UpsState> | null = null;
  private current: UpsState | undefined;
  private lastGood: UpsState | undefined;
  private onBatterySince: number | null = null;
  private failingSince: number | null = null;
  private readonly now: () => number;
  /** Number of completed polls, for diagnostics and tests. */
  polls = 0;

  constructor(readonly source: UpsSource, readonly opts: DeviceOptions) {
    this.now = opts.now ?? Date.now;
  }

  get state(): UpsState | undefined {
    return this.current;
  }

  get subscribers(): number {
    return this.listeners.size;
  }

  /** Subscribe to every polled state; returns the unsubscribe function. Starts polling on the first. */
  subscribe(listener: StateListener): () => Promise<void> {
    this.listeners.add(listener);
    if (!this.running) {
      this.running = true;
      this.schedule(0);
    } else if (this.current) {
      const s = this.current;
      setImmediate(() => this.listeners.has(listener) && safeCall(listener, s));
    }
    return () => this.unsubscribe(listener);
  }

  private async unsubscribe(listener: StateListener): Promise<void> {
    this.listeners.delete(listener);
    if (this.listeners.size === 0) await this.stop();
  }

  private schedule(delay: number): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.poll().then(
        (s) => this.schedule(s.onBattery ? this.opts.pollOnBatteryMs : this.opts.pollMs),
        () => this.schedule(this.opts.pollMs),
      );
    }, delay);
  }

  /** Read now (joins a read already in flight) and deliver the state to every subscriber. */
  poll(): Promise<UpsState> {
    if (!this.inFlight) {
      this.inFlight = this.readOnce().finally(() => {
        this.inFlight = null;
      });
    }
    return this.inFlight;
  }

  /**
   * Read as soon as possible because something changed (an SNMP trap): a read already in flight
   * may predate the change, so a fresh read follows it. The regular poll schedule is not disturbed.
   */
  pollNow(): Promise<UpsState> {
    if (!this.running) return Promise.reject(new Error('the device is not polling'));
    const busy = this.inFlight;
    return busy ? busy.catch(() => undefined).then(() => this.poll()) : this.poll();
  }

  private async readOnce(): Promise<UpsState> {
    let state: UpsState;
    try {
      const reading = await this.source.read(this.now());
      const ts = this.now();
      const probe = normalise({ ups: this.opts.name, source: this.source.kind, vars: reading.vars, ts, secondsOnBattery: 0 });
      if (probe.onBattery) this.onBatterySince ??= ts;
      else this.onBatterySince = null;
      probe.secondsOnBattery = reading.secondsOnBattery ?? (this.onBatterySince === null ? 0 : (ts - this.onBatterySince) / 1000);
      state = probe;
      this.lastGood = state;
      this.failingSince = null;
    } catch (err) {
      const ts = this.now();
      const e = err instanceof SourceError ? err : new SourceError((err as Error)?.message ?? String(err), 'lost');
      this.failingSince ??= ts;
      const tolerance = this.opts.commToleranceMs ?? 0;
      if (this.lastGood && this.lastGood.comm === 'ok' && ts - this.failingSince < tolerance && this.current?.comm === 'ok') {
        state = { ...this.current, ts };
      } else {
        // Seconds on battery keep counting from the last time we saw it: the outage goes on.
        const prev = this.lastGood && this.onBatterySince !== null
          ? { ...this.lastGood, secondsOnBattery: (ts - this.onBatterySince) / 1000 }
          : this.lastGood;
        state = withComm(prev, { ups: this.opts.name, source: this.source.kind, ts }, e.comm, e.message);
      }
    }
    this.polls++;
    this.current = state;
    for (const l of [...this.listeners]) safeCall(l, state);
    return state;
  }

  /** Stop polling and close the source. Safe to call twice. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    // Close first: that fails a read in flight at once instead of waiting for its timeout.
    await this.source.close();
    if (this.inFlight) await this.inFlight.catch(() => undefined);
  }
}

function safeCall(l: StateListener, s: UpsState): void {
  try {
    l(s);
  } catch {
    /* a subscriber's bug must not stop the poll loop; subscribers report their own errors */
  }
}
