/**
 * A plain MQTT client for the tests: plays Home Assistant's part (reads discovery configs and
 * states, presses buttons, announces `homeassistant/status`) and records every message it sees.
 */
import { MqttClient, connect } from 'mqtt';

export interface Seen {
  at: number;
  topic: string;
  payload: string;
  /** True only for messages the broker had retained when we subscribed. */
  retain: boolean;
}

export class MqttObserver {
  readonly seen: Seen[] = [];
  private waiters: Array<() => void> = [];

  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload, packet) => {
      this.seen.push({ at: Date.now(), topic, payload: payload.toString(), retain: packet.retain });
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async connect(port: number, filters: string[], opts: { username?: string; password?: string } = {}): Promise<MqttObserver> {
    const client = connect({ host: '127.0.0.1', port, reconnectPeriod: 0, connectTimeout: 5000, clientId: `observer-${Math.random().toString(16).slice(2)}`, ...opts });
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    const o = new MqttObserver(client);
    if (filters.length) await new Promise<void>((resolve, reject) => client.subscribe(filters, { qos: 1 }, (err) => (err ? reject(err) : resolve())));
    return o;
  }

  /** Everything retained under `filters` right now (a fresh subscription, 400 ms to collect). */
  static async retained(port: number, filters: string[]): Promise<Map<string, string>> {
    const o = await MqttObserver.connect(port, filters);
    await new Promise((r) => setTimeout(r, 400));
    await o.close();
    const out = new Map<string, string>();
    for (const s of o.seen) if (s.retain) out.set(s.topic, s.payload);
    return out;
  }

  publish(topic: string, payload: string, retain = false): Promise<void> {
    return new Promise((resolve, reject) => this.client.publish(topic, payload, { qos: 1, retain }, (err) => (err ? reject(err) : resolve())));
  }

  /** Messages (from index `from`) matching. */
  find(pred: (s: Seen) => boolean, from = 0): Seen[] {
    return this.seen.slice(from).filter(pred);
  }

  async waitFor(pred: (s: Seen) => boolean, ms = 5000, from = 0, what = 'a matching message'): Promise<Seen> {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = this.seen.slice(from).find(pred);
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`MQTT: timed out after ${ms} ms waiting for ${what}; saw ${this.seen.slice(from).map((s) => `${s.topic}${s.retain ? ' (r)' : ''}`).slice(-15).join(', ')}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 100));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.client.end(true, {}, () => resolve()));
  }
}
