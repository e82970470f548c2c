/**
 * One MQTT connection per broker config, shared by every node that uses it (Node-RED's MQTT broker
 * model): the first user connects, the last one disconnects. The connection carries the package's own
 * availability topic: a retained `online` after every connect, and a retained `offline` as last will
 * (the broker publishes it when the client dies) and on a clean stop.
 *
 * mqtt.js reconnects on its own at a fixed period; here the period doubles after every failed
 * attempt (1 s → 30 s) and resets after a successful connect, and a refused login (CONNACK error)
 * keeps retrying with the same backoff instead of giving up, so a fixed password file is picked up.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { IClientOptions, MqttClient } from 'mqtt';
import { checkPinnedFingerprint, normaliseFingerprint, tlsConnectOptions } from '../net/tls';
import { topicMatches } from './topics';

export interface BrokerSettings {
  host: string;
  port: number;
  /** Connect with TLS (mqtts). */
  tls: boolean;
  /** Verify the broker's certificate chain and host name (default true). */
  tlsVerify: boolean;
  /** Pin the broker certificate's SHA-256 fingerprint instead of verifying the chain. */
  tlsFingerprint?: string;
  /** PEM CA certificate(s) to trust in addition to the system store. */
  ca?: string;
  /** PEM client certificate and its key, for brokers that authenticate clients by certificate. */
  cert?: string;
  key?: string;
  username?: string;
  password?: string;
  clientId: string;
  /** Every topic of the package lives under it (default `ups-orchestrator`). */
  baseTopic: string;
  /** Home Assistant's discovery prefix (default `homeassistant`). */
  discoveryPrefix: string;
  /** MQTT keepalive (s). */
  keepalive?: number;
  /** Connect + CONNACK timeout (ms). */
  connectTimeoutMs?: number;
  /** Reconnect backoff: first delay and cap (ms). */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** Timeout for one publish / subscribe (ms). */
  requestTimeoutMs?: number;
}

export type BrokerState = 'connecting' | 'connected' | 'disconnected';

export interface BrokerStatus {
  state: BrokerState;
  /** For people: `connected to 127.0.0.1:1883`, `refused: not authorized (check username and password)`. */
  text: string;
}

/** A node that uses the connection. */
export interface BrokerUser {
  /** Called on every change of the connection state, and once at registration. */
  status?(s: BrokerStatus): void;
  /** Called after every (re)connect, once the availability topic says `online`. */
  connected?(): void;
}

export type MessageHandler = (topic: string, payload: Buffer, retained: boolean) => void;

export interface PublishOptions {
  retain?: boolean;
  qos?: 0 | 1;
}

/** The availability topic of a base topic: retained `online` / `offline`. */
export function availabilityTopic(baseTopic: string): string {
  return `${baseTopic}/status`;
}

export const AVAILABLE = 'online';
export const NOT_AVAILABLE = 'offline';

/** CONNACK return codes (MQTT 3.1.1) in words a user can act on. */
const CONNACK_ADVICE: Record<number, string> = {
  1: 'refused: the broker does not accept MQTT 3.1.1',
  2: 'refused: client id rejected (try another client id)',
  3: 'refused: broker unavailable',
  4: 'refused: bad username or password',
  5: 'refused: not authorized (check username and password)',
  134: 'refused: bad username or password',
  135: 'refused: not authorized (check username and password)',
};

export function describeMqttError(err: Error & { code?: unknown }, where: string): string {
  const code = err.code;
  if (typeof code === 'number' && CONNACK_ADVICE[code]) return CONNACK_ADVICE[code];
  if (code === 'ECONNREFUSED') return `cannot connect to ${where}: connection refused (is the broker running, is the port right?)`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `cannot resolve the broker host in ${where}`;
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return `cannot reach ${where}: no route to host`;
  if (code === 'ERR_TLS_CERT_FINGERPRINT') return err.message;
  if (typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) {
    return `TLS: ${err.message} (${where}; add the CA certificate, or pin the certificate's SHA-256 fingerprint)`;
  }
  return `${err.message} (${where})`;
}

/** Settings → mqtt.js options. Exported for tests. */
export function clientOptions(s: BrokerSettings, will: boolean): IClientOptions {
  return {
    clientId: s.clientId,
    username: s.username || undefined,
    password: s.password || undefined,
    keepalive: s.keepalive ?? 60,
    clean: true,
    protocolVersion: 4,
    connectTimeout: s.connectTimeoutMs ?? 10_000,
    reconnectPeriod: s.backoffMinMs ?? 1000,
    reconnectOnConnackError: true,
    resubscribe: true,
    queueQoSZero: false,
    will: will ? { topic: availabilityTopic(s.baseTopic), payload: Buffer.from(NOT_AVAILABLE), qos: 1, retain: true } : undefined,
  };
}

/**
 * The socket for one connection attempt. With a pinned fingerprint the socket stays corked until the
 * certificate has been checked, so not even the CONNECT packet (with the password) reaches a broker
 * that presents another certificate.
 */
function streamFor(s: BrokerSettings): () => net.Socket {
  return () => {
    if (!s.tls) return net.connect({ host: s.host, port: s.port });
    const settings = { verify: s.tlsVerify, fingerprint: s.tlsFingerprint, ca: s.ca || undefined };
    const sock = tls.connect({
      host: s.host,
      port: s.port,
      ...tlsConnectOptions(s.host, settings),
      cert: s.cert || undefined,
      key: s.key || undefined,
    });
    if (normaliseFingerprint(s.tlsFingerprint)) {
      sock.cork();
      sock.once('secureConnect', () => {
        const err = checkPinnedFingerprint(sock, settings);
        if (err) sock.destroy(Object.assign(err, { code: 'ERR_TLS_CERT_FINGERPRINT' }));
        else sock.uncork();
      });
    }
    return sock;
  };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer from the broker within ${Math.round(ms / 1000)} s`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export class MqttBroker {
  readonly availabilityTopic: string;
  private client: MqttClient | null = null;
  private readonly users = new Set<BrokerUser>();
  private readonly handlers = new Map<string, Set<MessageHandler>>();
  private current: BrokerStatus = { state: 'disconnected', text: 'not connected' };
  private lastError: string | null = null;
  private period: number;
  private stopping: Promise<void> | null = null;
  /** Set by dispose(): the config node that owned it is gone; it never connects again. */
  private disposed = false;

  constructor(readonly settings: BrokerSettings) {
    this.availabilityTopic = availabilityTopic(settings.baseTopic);
    this.period = settings.backoffMinMs ?? 1000;
  }

  get where(): string {
    return `${this.settings.tls ? 'mqtts' : 'mqtt'}://${this.settings.host}:${this.settings.port}`;
  }

  get status(): BrokerStatus {
    return this.current;
  }

  get connected(): boolean {
    return this.current.state === 'connected' && !!this.client?.connected;
  }

  get userCount(): number {
    return this.users.size;
  }

  /** Add a user; the first one connects. The user gets the current status at once. */
  register(user: BrokerUser): void {
    this.users.add(user);
    safe(() => user.status?.(this.current));
    // A stop in progress (the last user just left): connect again once it has finished.
    if (this.stopping) void this.stopping.then(() => this.users.size > 0 && !this.client && this.start());
    else if (!this.client) this.start();
    else if (this.connected) setImmediate(() => this.users.has(user) && safe(() => user.connected?.()));
  }

  /** Remove a user; after the last one, publish `offline` and disconnect. Never rejects. */
  async deregister(user: BrokerUser): Promise<void> {
    this.users.delete(user);
    if (this.users.size === 0) await this.stop();
  }

  /** Route messages on `filter` to `handler` (and subscribe on the broker); returns the undo function. */
  subscribe(filter: string, handler: MessageHandler): () => void {
    let set = this.handlers.get(filter);
    if (!set) {
      set = new Set();
      this.handlers.set(filter, set);
      if (this.client?.connected) this.client.subscribe(filter, { qos: 1 }, () => undefined);
    }
    set.add(handler);
    return () => {
      const s = this.handlers.get(filter);
      if (!s) return;
      s.delete(handler);
      if (s.size === 0) {
        this.handlers.delete(filter);
        if (this.client?.connected) this.client.unsubscribe(filter, () => undefined);
      }
    };
  }

  /** Subscribe and resolve once the broker acknowledged (retained messages follow right after). */
  subscribeAcked(filter: string, handler: MessageHandler): Promise<() => void> {
    const undo = this.subscribe(filter, handler);
    const client = this.client;
    if (!client?.connected) return Promise.reject(new Error('not connected to the MQTT broker'));
    const acked = new Promise<void>((resolve, reject) => {
      client.subscribe(filter, { qos: 1 }, (err) => (err ? reject(err) : resolve()));
    });
    return withTimeout(acked, this.settings.requestTimeoutMs ?? 10_000, `subscribe ${filter}`).then(() => undo, (err) => {
      undo();
      throw err;
    });
  }

  /** Publish; rejects when not connected (callers re-sync after the next connect). */
  publish(topic: string, payload: string | Buffer, opts: PublishOptions = {}): Promise<void> {
    const client = this.client;
    if (!client || !this.connected) return Promise.reject(new Error('not connected to the MQTT broker'));
    const p = new Promise<void>((resolve, reject) => {
      client.publish(topic, payload, { qos: opts.qos ?? 0, retain: opts.retain ?? false }, (err) => (err ? reject(err) : resolve()));
    });
    return withTimeout(p, this.settings.requestTimeoutMs ?? 10_000, `publish ${topic}`);
  }

  private setStatus(state: BrokerState, text: string): void {
    if (this.current.state === state && this.current.text === text) return;
    this.current = { state, text };
    for (const u of [...this.users]) safe(() => u.status?.(this.current));
  }

  private start(): void {
    if (this.disposed) {
      this.setStatus('disconnected', 'this MQTT broker config was redeployed or deleted');
      return;
    }
    const s = this.settings;
    this.stopping = null;
    this.lastError = null;
    this.setStatus('connecting', `connecting to ${this.where}…`);
    const client = new MqttClient(streamFor(s), clientOptions(s, true));
    this.client = client;
    client.on('connect', () => {
      this.period = s.backoffMinMs ?? 1000;
      client.options.reconnectPeriod = this.period;
      this.lastError = null;
      // Subscriptions made while offline; mqtt.js restores the ones it already knew itself.
      const filters = [...this.handlers.keys()];
      if (filters.length) client.subscribe(filters, { qos: 1 }, () => undefined);
      client.publish(this.availabilityTopic, AVAILABLE, { qos: 1, retain: true }, () => undefined);
      this.setStatus('connected', `connected to ${this.where}`);
      for (const u of [...this.users]) safe(() => u.connected?.());
    });
    client.on('message', (topic, payload, packet) => {
      for (const [filter, set] of this.handlers) {
        if (!topicMatches(filter, topic)) continue;
        for (const h of [...set]) safe(() => h(topic, payload, packet.retain));
      }
    });
    client.on('error', (err) => {
      this.lastError = describeMqttError(err as Error & { code?: unknown }, this.where);
      this.setStatus('disconnected', this.lastError);
    });
    client.on('close', () => {
      if (this.client !== client || this.stopping) return;
      // The reconnect timer for this round is already set with the current period; double it for the next.
      this.period = Math.min(s.backoffMaxMs ?? 30_000, this.period * 2);
      client.options.reconnectPeriod = this.period;
      this.setStatus('disconnected', this.lastError ?? `connection to ${this.where} lost; reconnecting`);
    });
    client.on('reconnect', () => {
      if (!this.lastError) this.setStatus('connecting', `reconnecting to ${this.where}…`);
    });
  }

  /** The owner (the broker config node) closes: disconnect for good. */
  dispose(): Promise<void> {
    this.disposed = true;
    return this.stop();
  }

  /** Publish `offline` (the availability topic) and disconnect. Safe to call twice; never rejects. */
  stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    const client = this.client;
    if (!client) return Promise.resolve();
    this.stopping = (async () => {
      if (client.connected) {
        await withTimeout(new Promise<void>((resolve) => {
          client.publish(this.availabilityTopic, NOT_AVAILABLE, { qos: 1, retain: true }, () => resolve());
        }), 2000, 'publish offline').catch(() => undefined);
      }
      await withTimeout(new Promise<void>((resolve) => client.end(false, {}, () => resolve())), 3000, 'disconnect').catch(async () => {
        await new Promise<void>((resolve) => client.end(true, {}, () => resolve()));
      });
      client.removeAllListeners();
      client.on('error', () => undefined);
      if (this.client === client) this.client = null;
      this.setStatus('disconnected', 'not connected');
    })().finally(() => {
      this.stopping = null;
    });
    return this.stopping;
  }
}

/** Test connection: one connect without will or retries; resolves with what the broker said. */
export async function testBroker(s: BrokerSettings): Promise<{ ok: boolean; message: string }> {
  const where = `${s.tls ? 'mqtts' : 'mqtt'}://${s.host}:${s.port}`;
  const client = new MqttClient(streamFor(s), { ...clientOptions(s, false), reconnectPeriod: 0, reconnectOnConnackError: false, clientId: `${s.clientId}-test-${process.pid}` });
  try {
    return await new Promise((resolve) => {
      let error: string | null = null;
      client.on('connect', () => resolve({ ok: true, message: `connected to ${where}` }));
      client.on('error', (err) => {
        error = describeMqttError(err as Error & { code?: unknown }, where);
        resolve({ ok: false, message: error });
      });
      client.on('close', () => resolve({ ok: false, message: error ?? `no answer from ${where}` }));
    });
  } finally {
    await new Promise<void>((resolve) => client.end(true, {}, () => resolve()));
    client.removeAllListeners();
    client.on('error', () => undefined);
  }
}

function safe(fn: () => void): void {
  try {
    fn();
  } catch {
    /* a user's bug must not break the connection */
  }
}
