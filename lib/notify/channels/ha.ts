/**
 * Home Assistant: a notify service (e.g. notify.mobile_app_pixel_8) through the HA server config
 * node's websocket connection, and/or a persistent notification in HA's sidebar (one per UPS or
 * plan, replaced by the next: notification_id). Messages at or above the chosen severity go out as
 * critical alerts: for iOS `push.sound` with `critical: 1` (rings through silent mode and focus),
 * for Android `ttl: 0`, `priority: high` and the `alarm_stream` channel (the alarm volume) — both
 * sets in one `data`, as the companion apps ignore the other platform's keys.
 */
import { Severity } from '../../ups/events';
import { Notification, Template } from '../format';
import { DeliveryError, Driver } from '../queue';
import { plain, render } from '../template';

/** The part of the HA client (lib/ha/client.ts) this channel uses. */
export interface HaServiceCaller {
  callService(domain: string, service: string, data?: Record<string, unknown>, target?: Record<string, unknown>): Promise<unknown>;
}

export interface HaSettings {
  /** notify.<name>, or '' for none. */
  service: string;
  /** Critical alerts from this severity on: never, critical only, or warning and critical. */
  critical: 'never' | 'critical' | 'warning';
  /** Also create a persistent notification. */
  persistent: boolean;
}

export interface HaPayload {
  id: string;
  title: string;
  message: string;
  critical: boolean;
  group: string;
}

const RANK: Record<Severity, number> = { info: 0, warning: 1, critical: 2 };

/** `data` for the companion apps: critical alert keys for iOS and Android, grouped by UPS/plan. */
export function notifyData(p: HaPayload): Record<string, unknown> {
  const data: Record<string, unknown> = { group: 'ups-orchestrator', 'thread-id': 'ups-orchestrator' };
  if (p.critical) {
    data.push = { sound: { name: 'default', critical: 1, volume: 1.0 } };
    data.ttl = 0;
    data.priority = 'high';
    data.channel = 'alarm_stream';
  }
  return data;
}

export class HaDriver implements Driver<HaPayload> {
  readonly kind = 'ha' as const;
  readonly label: string;
  /** Parts of a message already done (notify sent, persistent created), so a retry does not repeat them. */
  private readonly done = new Set<string>();

  constructor(private readonly s: HaSettings, private readonly client: () => HaServiceCaller) {
    this.label = [s.service, s.persistent ? 'persistent notification' : ''].filter(Boolean).join(' + ');
  }

  prepare(n: Notification, t: Template): HaPayload {
    const threshold = this.s.critical === 'never' ? Infinity : RANK[this.s.critical];
    return {
      id: `${n.key}-${n.ts}-${Math.random().toString(36).slice(2, 10)}`,
      title: render(t.title, n.ctx, plain).replace(/\s+/g, ' ').trim(),
      message: render(t.body, n.ctx, plain).trim(),
      critical: !n.resolved && RANK[n.severity] >= threshold,
      group: n.group.replace(/[^A-Za-z0-9_]+/g, '_').toLowerCase(),
    };
  }

  async deliver(p: HaPayload, signal: AbortSignal): Promise<void> {
    const call = async (part: string, domain: string, service: string, data: Record<string, unknown>) => {
      const key = `${p.id}:${part}`;
      if (this.done.has(key)) return;
      if (signal.aborted) throw signal.reason;
      let client: HaServiceCaller;
      try {
        client = this.client();
      } catch (err) {
        throw new DeliveryError((err as Error).message, 'retry');
      }
      const aborted = new Promise<never>((_r, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
      aborted.catch(() => undefined);
      try {
        await Promise.race([client.callService(domain, service, data), aborted]);
      } catch (err) {
        throw signal.aborted ? signal.reason : haError(err, `${domain}.${service}`);
      }
      this.done.add(key);
    };
    if (this.s.service) {
      const [, name] = this.s.service.split('.');
      await call('notify', 'notify', name, { title: p.title, message: p.message, data: notifyData(p) });
    }
    if (this.s.persistent) {
      await call('persistent', 'persistent_notification', 'create', { title: p.title, message: p.message, notification_id: `upsorch_${p.group}` });
    }
    this.done.delete(`${p.id}:notify`);
    this.done.delete(`${p.id}:persistent`);
  }
}

function haError(err: unknown, service: string): DeliveryError {
  const e = err as Error & { code?: string };
  const text = String(e.message).replace(/^Home Assistant: /, '');
  const msg = `Home Assistant: ${text.includes(service) ? text : `${service}: ${text}`}`;
  switch (e.code) {
    case 'not_found':
      return new DeliveryError(`Home Assistant has no ${service} (a phone's is notify.mobile_app_<device>)`, 'config');
    case 'invalid_auth':
    case 'unauthorized':
      return new DeliveryError(`${msg} (check the Home Assistant token)`, 'config');
    case 'invalid_format':
    case 'service_validation_error':
      return new DeliveryError(msg, 'rejected');
    default:
      return new DeliveryError(msg, 'retry');
  }
}
