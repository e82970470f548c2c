/**
 * Keeps Home Assistant's view of our devices in step with what we have, with as little traffic as
 * possible (zigbee2mqtt's model):
 * - discovery configs are retained and compared before publishing: an unchanged config is never
 *   published again, also not after a restart of the flow;
 * - every config is re-sent when Home Assistant announces itself (`homeassistant/status` = `online`);
 * - entities of a device that is gone are removed with an empty retained config;
 * - device states are retained and published when they change.
 *
 * What is on the broker is recorded in a retained index topic of this publisher
 * (`<base>/publisher/<id>/index`: config topic → hash and device, and under `$devices` where each
 * device came from and when it last had a state). It is read back after every connect, so removal
 * and "no duplicate configs" work after a restart of Node-RED, and a broker that lost its retained
 * messages (restarted without persistence) gets everything again.
 *
 * When a device that is not live is removed: a device of a known origin (the node's UPS list, a
 * wired UPS in node, a plan) as soon as the owner no longer expects it, since its origin was
 * deleted; a device of unknown origin (states from an MQTT in or a function node) only after
 * `forgetAfterMs` without a state, or when told to: nothing tells us its source is gone, and
 * removing it on every restart would make Home Assistant drop its registry entries (renames,
 * areas, dashboard cards).
 */
import { createHash } from 'node:crypto';
import { MessageHandler, PublishOptions } from './broker';
import { DiscoveryConfig, DiscoveryContext } from './discovery';
import { slug } from './topics';

/** The part of the shared broker connection the publisher needs. */
export interface PublisherBroker {
  readonly connected: boolean;
  publish(topic: string, payload: string | Buffer, opts?: PublishOptions): Promise<void>;
  subscribe(filter: string, handler: MessageHandler): () => void;
  subscribeAcked(filter: string, handler: MessageHandler): Promise<() => void>;
}

/** Key of the device records in the index (never a topic: we publish nothing under `$`). */
export const DEVICES_KEY = '$devices';

/** Per device, in the index. */
export interface DeviceMeta {
  /** Origin: `node` = the owner expects it (UPS list, wired UPS in, plan); `msg` = unknown. */
  o: 'node' | 'msg';
  /** Last state seen (epoch ms); refreshed in the index at most every STATE_SEEN_REFRESH_MS. */
  s: number;
  /** Its name, for the log. */
  n?: string;
}

/** How stale the last-state time in the index may get (one index publish an hour at most). */
const STATE_SEEN_REFRESH_MS = 3600_000;

interface IndexEntry {
  /** Hash of the retained payload; `state` for a state topic. */
  h: string;
  /** The device it belongs to. */
  d: string;
}

/** Builds a device's configs; `seen` = its config topics already retained on the broker. */
export type ConfigBuilder = (seen: ReadonlySet<string>) => DiscoveryConfig[];

interface DeviceRecord {
  build: ConfigBuilder;
  stateTopic: string | null;
  statePayload: string | null;
  /** The payload last published on the state topic in this session. */
  statePublished: string | null;
}

export interface PublisherOptions {
  /** Stable id of the owner (the publish node's id): names the index topic. */
  publisherId: string;
  /** Delay before re-sending everything after Home Assistant came online (ms; HA recommends a short random delay). */
  resendDelayMs?: number;
  /** How long to wait for the retained index after subscribing (ms). */
  indexWaitMs?: number;
  /** Problems worth telling the user (publish failures). */
  warn?(text: string): void;
  /** Devices of unknown origin are removed after this long without a state (ms); 0 = never. Default 7 days. */
  forgetAfterMs?: number;
  /** A device of unknown origin was removed for want of states (live: it had reported in this session). */
  forgotten?(id: string, name: string | undefined, lastStateAt: number, live: boolean): void;
  /** The clock (tests). */
  now?(): number;
}

export const DEFAULT_FORGET_AFTER_MS = 7 * 24 * 3600_000;

const STATE = 'state';

/**
 * Remove what publishers that no longer exist left on the broker: a publish node deleted while the
 * broker was unreachable could not clear its entities, and nothing else ever would. Reads every
 * retained index under `<base>/publisher/+/index`; for each whose publisher id `isKnown` rejects,
 * clears every topic it lists (empty retained payloads) and then the index itself. Relies on one
 * base topic per Node-RED instance (another instance's publishers would look unknown here).
 * Resolves with the ids swept; never rejects.
 */
export async function sweepUnknownPublishers(
  broker: PublisherBroker,
  ctx: Pick<DiscoveryContext, 'baseTopic' | 'discoveryPrefix'>,
  isKnown: (publisherSlug: string) => boolean,
  opts: { waitMs?: number; warn?(text: string): void; signal?: AbortSignal } = {},
): Promise<string[]> {
  const signal = opts.signal;
  const { baseTopic, discoveryPrefix } = ctx;
  const prefix = `${baseTopic}/publisher/`;
  const found = new Map<string, string>();
  try {
    const undo = await broker.subscribeAcked(`${prefix}+/index`, (topic, payload, retained) => {
      if (retained && payload.length) found.set(topic, payload.toString());
    });
    // Retained messages follow the SUBACK at once; a short wait collects them (cut short by a close).
    await new Promise<void>((r) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        r();
      };
      const timer = setTimeout(done, opts.waitMs ?? 500);
      signal?.addEventListener('abort', done);
    });
    undo();
  } catch (err) {
    opts.warn?.(`MQTT: cannot look for entities of deleted publish nodes: ${(err as Error).message}`);
    return [];
  }
  const swept: string[] = [];
  for (const [indexTopic, json] of found) {
    if (signal?.aborted) break;
    const id = indexTopic.slice(prefix.length, -'/index'.length);
    if (!id || id.includes('/') || isKnown(id)) continue;
    let topics: string[] = [];
    try {
      topics = Object.keys(JSON.parse(json) as Record<string, unknown>);
    } catch {
      /* unreadable: only the index goes */
    }
    try {
      // Only topics of this base topic or of discovery configs: a damaged index must not clear anything else.
      const ours = (t: string) => !/[+#]/.test(t) && (t.startsWith(`${baseTopic}/`) || (t.startsWith(`${discoveryPrefix}/`) && t.endsWith('/config')));
      for (const t of topics) if (ours(t)) await broker.publish(t, '', { retain: true, qos: 1 });
      await broker.publish(indexTopic, '', { retain: true, qos: 1 });
      swept.push(id);
    } catch (err) {
      opts.warn?.(`MQTT: cannot remove the entities of deleted publish node ${id}: ${(err as Error).message}`);
      return swept;
    }
  }
  return swept;
}

export function hashPayload(payload: string): string {
  return createHash('sha256').update(payload).digest('hex').slice(0, 16);
}

export class DiscoveryPublisher {
  readonly indexTopic: string;
  readonly haStatusTopic: string;
  /** What is retained on the broker, as far as we know (from the index, plus what we published). */
  private published = new Map<string, IndexEntry>();
  private indexLoaded = false;
  private readonly devices = new Map<string, DeviceRecord>();
  /** Origin and last state of every device we have or had entities of (persisted in the index). */
  private meta = new Map<string, DeviceMeta>();
  /** When each live device last had a state in this session. */
  private readonly lastState = new Map<string, number>();
  private readonly names = new Map<string, string>();
  /** Devices allowed to keep their entities while they have not reported yet; null = unknown, remove nothing. */
  private expected: Set<string> | null = null;
  private readonly removed = new Set<string>();
  private queue: Promise<void> = Promise.resolve();
  private pending = false;
  private forceNext = false;
  private resendTimer: NodeJS.Timeout | null = null;
  private unsubscribeHa: (() => void) | null = null;
  private stopped = false;
  /** Wakes a wait in progress (the index read) when the publisher stops. */
  private readonly stopWaiters = new Set<() => void>();
  /** Counters for tests and the node status. */
  readonly stats = { configsPublished: 0, configsRemoved: 0, statesPublished: 0, resends: 0 };

  constructor(private readonly broker: PublisherBroker, readonly ctx: DiscoveryContext, private readonly opts: PublisherOptions) {
    this.indexTopic = `${ctx.baseTopic}/publisher/${slug(opts.publisherId)}/index`;
    this.haStatusTopic = `${ctx.discoveryPrefix}/status`;
  }

  /** Listen for Home Assistant's birth message. Call once; then call connected() after every connect. */
  start(): void {
    this.unsubscribeHa = this.broker.subscribe(this.haStatusTopic, (_t, payload, retained) => {
      // A retained birth message is an old one (HA does not retain it); only a live `online` is a restart.
      if (retained || payload.toString() !== 'online') return;
      this.scheduleResend();
    });
  }

  /** The broker (re)connected: read the index back and bring the broker up to date. */
  connected(): void {
    this.indexLoaded = false;
    for (const d of this.devices.values()) d.statePublished = null;
    this.sync();
  }

  private scheduleResend(): void {
    if (this.resendTimer || this.stopped) return;
    const base = this.opts.resendDelayMs ?? 500;
    this.resendTimer = setTimeout(() => {
      this.resendTimer = null;
      this.stats.resends++;
      this.forceNext = true;
      for (const d of this.devices.values()) d.statePublished = null;
      this.sync();
    }, base + Math.floor(Math.random() * base));
  }

  /**
   * Set a device's configs and current state. Configs are published when they differ from what is
   * retained; the state when it differs from what was last published.
   */
  setDevice(id: string, build: ConfigBuilder, stateTopic: string | null, state: Record<string, unknown> | null, name?: string): void {
    this.removed.delete(id);
    if (name) this.names.set(id, name);
    if (state) this.lastState.set(id, this.now());
    const prev = this.devices.get(id);
    this.devices.set(id, {
      build,
      stateTopic,
      statePayload: state ? JSON.stringify(state) : prev?.statePayload ?? null,
      statePublished: prev?.statePublished ?? null,
    });
    this.sync();
  }

  /** Only the state changed (cheaper than setDevice: no config comparison). */
  setState(id: string, state: Record<string, unknown>): void {
    const d = this.devices.get(id);
    if (!d) return;
    this.lastState.set(id, this.now());
    d.statePayload = JSON.stringify(state);
    if (d.statePayload !== d.statePublished) this.sync();
  }

  hasDevice(id: string): boolean {
    return this.devices.has(id);
  }

  /** Whether this publisher has or had entities of a device; null while its index is not read yet. */
  knows(id: string): boolean | null {
    if (this.devices.has(id) || this.meta.has(id)) return true;
    for (const e of this.published.values()) if (e.d === id) return true;
    return this.indexLoaded ? false : null;
  }

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  private get forgetAfterMs(): number {
    return this.opts.forgetAfterMs ?? DEFAULT_FORGET_AFTER_MS;
  }

  /** Look for devices of unknown origin whose grace period ran out (call now and then). */
  checkStale(): void {
    this.sync();
  }

  /** Config topics of a device retained on the broker (so entities are never dropped and re-created). */
  private seenTopics(id: string): Set<string> {
    const topics = new Set<string>();
    for (const [topic, e] of this.published) if (e.d === id && e.h !== STATE) topics.add(topic);
    return topics;
  }

  /**
   * The devices that may keep their entities even before they report (configured UPSes, wired UPS in
   * nodes, plans). Entities of any other device that is not live are removed at the next sync.
   */
  setExpected(ids: Iterable<string>): void {
    this.expected = new Set(ids);
    this.sync();
  }

  /** Remove one device's entities and state now. */
  removeDevice(id: string): void {
    this.devices.delete(id);
    this.lastState.delete(id);
    this.removed.add(id);
    this.expected?.delete(id);
    this.sync();
  }

  /** Remove every entity this publisher owns, and its index (the node was deleted). Resolves when done. */
  async removeAll(): Promise<void> {
    for (const id of [...this.devices.keys()]) this.removed.add(id);
    for (const id of this.meta.keys()) this.removed.add(id);
    this.devices.clear();
    this.lastState.clear();
    this.expected = new Set();
    for (const e of this.published.values()) this.removed.add(e.d);
    this.sync();
    await this.idle();
    if (this.broker.connected && this.indexLoaded) {
      await this.broker.publish(this.indexTopic, '', { retain: true, qos: 1 }).catch(() => undefined);
    }
  }

  /** Resolves when every queued sync has finished. */
  async idle(): Promise<void> {
    let q: Promise<void>;
    do {
      q = this.queue;
      await q;
    } while (q !== this.queue);
  }

  /** Stop: no more publishing; a sync in progress ends at its next step. Leaves no timer behind. */
  stop(): void {
    this.stopped = true;
    for (const w of [...this.stopWaiters]) w();
    this.stopWaiters.clear();
    if (this.resendTimer) clearTimeout(this.resendTimer);
    this.resendTimer = null;
    this.unsubscribeHa?.();
    this.unsubscribeHa = null;
  }

  /** Queue one sync; several requests while one is queued collapse into it. */
  private sync(): void {
    if (this.pending) return;
    this.pending = true;
    this.queue = this.queue.then(async () => {
      this.pending = false;
      if (!this.broker.connected || this.stopped) return;
      try {
        await this.syncOnce();
      } catch (err) {
        if (!this.stopped) this.opts.warn?.(`MQTT discovery: ${(err as Error).message}`);
      }
    });
  }

  private async loadIndex(): Promise<void> {
    const wait = this.opts.indexWaitMs ?? 500;
    let got: string | null = null;
    let wake: () => void = () => undefined;
    const arrived = new Promise<void>((r) => (wake = r));
    const undo = await this.broker.subscribeAcked(this.indexTopic, (_t, payload) => {
      got = payload.toString();
      wake();
    });
    let timer: NodeJS.Timeout | undefined;
    let onStop: () => void = () => undefined;
    await Promise.race([arrived, new Promise<void>((r) => (timer = setTimeout(r, wait))), new Promise<void>((r) => this.stopWaiters.add((onStop = r)))]);
    clearTimeout(timer);
    this.stopWaiters.delete(onStop);
    undo();
    if (this.stopped) throw new Error('stopped');
    const index = new Map<string, IndexEntry>();
    const meta = new Map<string, DeviceMeta>();
    if (got) {
      try {
        const parsed = JSON.parse(got) as Record<string, unknown>;
        for (const [topic, e] of Object.entries(parsed)) {
          if (topic === DEVICES_KEY) continue;
          const x = e as Partial<IndexEntry> | null;
          if (x && typeof x.h === 'string' && typeof x.d === 'string') index.set(topic, { h: x.h, d: x.d });
        }
        const devs = parsed[DEVICES_KEY];
        if (devs && typeof devs === 'object') {
          for (const [id, m] of Object.entries(devs as Record<string, Partial<DeviceMeta>>)) {
            if (!m || (m.o !== 'node' && m.o !== 'msg') || typeof m.s !== 'number') continue;
            meta.set(id, { o: m.o, s: m.s, ...(typeof m.n === 'string' ? { n: m.n } : {}) });
          }
        }
      } catch {
        /* unreadable index: treat as empty (everything is re-published once) */
      }
    }
    this.published = index;
    this.meta = meta;
    this.indexLoaded = true;
  }

  private async syncOnce(): Promise<void> {
    if (!this.indexLoaded) await this.loadIndex();
    const force = this.forceNext;
    this.forceNext = false;
    const now = this.now();
    const grace = this.forgetAfterMs;
    let indexChanged = false;

    // 0. live devices of unknown origin that have had no state for the grace period
    if (this.expected !== null && grace > 0) {
      for (const id of [...this.devices.keys()]) {
        if (this.expected.has(id)) continue;
        const at = this.lastState.get(id);
        if (at === undefined || now - at <= grace) continue;
        this.devices.delete(id);
        this.lastState.delete(id);
        this.removed.add(id);
        this.opts.forgotten?.(id, this.names.get(id) ?? this.meta.get(id)?.n, at, true);
      }
    }

    const desired = new Map<string, DiscoveryConfig>();
    for (const [id, d] of this.devices) for (const c of d.build(this.seenTopics(id))) desired.set(c.topic, c);

    // 1. configs that are new or changed (all of them after Home Assistant restarted)
    for (const [topic, c] of desired) {
      const json = JSON.stringify(c.payload);
      const h = hashPayload(json);
      const known = this.published.get(topic);
      if (!force && known && known.h === h) continue;
      if (this.stopped) return;
      await this.broker.publish(topic, json, { retain: true, qos: 1 });
      this.stats.configsPublished++;
      if (!known || known.h !== h || known.d !== c.device) indexChanged = true;
      this.published.set(topic, { h, d: c.device });
    }

    // 2. states (retained), after the configs so HA has the entities when the state arrives
    for (const [id, d] of this.devices) {
      if (!d.stateTopic || d.statePayload === null || d.statePayload === d.statePublished) continue;
      if (this.stopped) return;
      await this.broker.publish(d.stateTopic, d.statePayload, { retain: true, qos: 0 });
      this.stats.statesPublished++;
      d.statePublished = d.statePayload;
      const known = this.published.get(d.stateTopic);
      if (!known || known.d !== id || known.h !== STATE) {
        this.published.set(d.stateTopic, { h: STATE, d: id });
        indexChanged = true;
      }
    }

    // 3. entities of devices that are gone: removed explicitly; of a known origin that is no longer
    // expected (that origin was deleted); of unknown origin and silent for the grace period
    const live = new Set(this.devices.keys());
    const verdict = new Map<string, boolean>();
    const goes = (d: string): boolean => {
      let v = verdict.get(d);
      if (v !== undefined) return v;
      const m = this.meta.get(d);
      if (this.removed.has(d)) v = true;
      // No record: an index written before there were any; origin unknown, keep it (recorded below).
      else if (live.has(d) || this.expected === null || this.expected.has(d) || !m) v = false;
      else if (m.o === 'node') v = true;
      else {
        v = grace > 0 && now - m.s > grace;
        if (v) this.opts.forgotten?.(d, m.n, m.s, false);
      }
      verdict.set(d, v);
      return v;
    };
    for (const [topic, e] of [...this.published]) {
      if (desired.has(topic)) continue;
      const dev = this.devices.get(e.d);
      if (dev && (e.h === STATE ? dev.stateTopic === topic : false)) continue;
      // A config a live device no longer has (its table changed) goes too.
      const dropped = live.has(e.d) && e.h !== STATE;
      if (!dropped && !goes(e.d)) continue;
      await this.broker.publish(topic, '', { retain: true, qos: 1 });
      if (e.h !== STATE) this.stats.configsRemoved++;
      this.published.delete(topic);
      indexChanged = true;
    }

    // 4. where each device came from and when it last had a state (what step 3 decides after a restart)
    if (this.updateMeta(now, grace)) indexChanged = true;

    if (indexChanged) {
      const index: Record<string, unknown> = Object.fromEntries(this.published);
      if (this.meta.size) index[DEVICES_KEY] = Object.fromEntries([...this.meta].sort(([a], [b]) => a.localeCompare(b)));
      await this.broker.publish(this.indexTopic, JSON.stringify(index), { retain: true, qos: 1 });
    }
  }

  /** Bring the device records in step with what is published; true when they changed. */
  private updateMeta(now: number, grace: number): boolean {
    let changed = false;
    const owners = new Set<string>();
    for (const e of this.published.values()) owners.add(e.d);
    for (const id of [...this.meta.keys()]) {
      if (!owners.has(id)) {
        this.meta.delete(id);
        changed = true;
      }
    }
    const refresh = grace > 0 ? Math.min(STATE_SEEN_REFRESH_MS, grace / 10) : STATE_SEEN_REFRESH_MS;
    for (const id of owners) {
      const m = this.meta.get(id);
      const last = this.lastState.get(id);
      const isLive = this.devices.has(id);
      // Until the owner says what it expects (flows started), a known origin is kept as it was.
      const o: DeviceMeta['o'] = this.expected?.has(id) ? 'node' : isLive && this.expected !== null ? 'msg' : m?.o ?? 'msg';
      let s = m?.s ?? last ?? now;
      if (last !== undefined && (!m || m.o !== o || (o === 'msg' && last - m.s >= refresh))) s = last;
      const n = this.names.get(id) ?? m?.n;
      if (m && m.o === o && m.s === s && m.n === n) continue;
      this.meta.set(id, { o, s, ...(n ? { n } : {}) });
      changed = true;
    }
    return changed;
  }
}
