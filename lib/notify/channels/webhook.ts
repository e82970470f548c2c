/**
 * Generic webhook: an HTTP request (POST by default) with a JSON body — a standard one, or the
 * user's template whose placeholders are JSON-escaped — custom headers, and secret header values
 * (Authorization, API keys) taken from the channel's credentials when sending, never queued.
 * Every message carries an Idempotency-Key header, so a receiver can drop a repeat.
 */
import { randomUUID } from 'node:crypto';
import { TlsSettings } from '../../net/tls';
import { Notification, Template } from '../format';
import { httpFailure, httpRequest, origin } from '../http';
import { DeliveryError, Driver } from '../queue';
import { jsonString, plain, render } from '../template';

export interface WebhookSettings {
  url: string;
  method: 'POST' | 'PUT' | 'PATCH';
  /** Plain headers (from the node's configuration). */
  headers: Record<string, string>;
  /** Secret headers (from the credentials); added when sending. */
  secretHeaders: Record<string, string>;
  /** JSON body template; empty for the standard body. */
  bodyTemplate: string;
  tls: TlsSettings;
}

export interface WebhookPayload {
  messageId: string;
  body: string;
}

/** What the body template's placeholders see: the notification's context plus the rendered title and text. */
export function webhookContext(n: Notification, t: Template): Record<string, unknown> {
  const title = render(t.title, n.ctx, plain);
  const text = render(t.body, n.ctx, plain);
  return { ...n.ctx, title, text, severity: n.severity, resolved: n.resolved, event: n.key, ts: n.ts, isoTime: new Date(n.ts).toISOString(), facts: Object.fromEntries(n.facts.map((f) => [f.name, f.value])) };
}

export function standardBody(n: Notification, t: Template): Record<string, unknown> {
  const c = webhookContext(n, t);
  const body: Record<string, unknown> = {
    title: c.title,
    message: c.text,
    event: n.key,
    kind: n.kind,
    severity: n.severity,
    resolved: n.resolved,
    ts: n.ts,
    time: c.isoTime,
    facts: c.facts,
    source: 'node-red-contrib-ups-orchestrator',
  };
  if (n.ctx.state) body.state = n.ctx.state;
  if (n.kind === 'plan') {
    body.plan = n.ctx.plan;
    body.run = n.ctx.run;
    if (n.ctx.phase) body.phase = n.ctx.phase;
    if (n.ctx.target) body.target = n.ctx.target;
    if (n.ctx.result) body.result = n.ctx.result;
  }
  return body;
}

export class WebhookDriver implements Driver<WebhookPayload> {
  readonly kind = 'webhook' as const;
  readonly label: string;
  private readonly url: URL;
  private readonly json: boolean;

  constructor(private readonly s: WebhookSettings) {
    this.url = new URL(s.url);
    this.label = `webhook ${s.method} ${origin(this.url)}`;
    const ct = Object.entries({ ...s.headers, ...s.secretHeaders }).find(([k]) => k.toLowerCase() === 'content-type')?.[1];
    this.json = !ct || /json/i.test(ct);
  }

  prepare(n: Notification, t: Template): WebhookPayload {
    const body = this.s.bodyTemplate.trim() ? render(this.s.bodyTemplate, webhookContext(n, t), this.json ? jsonString : plain) : JSON.stringify(standardBody(n, t));
    return { messageId: randomUUID(), body };
  }

  async deliver(p: WebhookPayload, signal: AbortSignal): Promise<void> {
    if (this.json) {
      try {
        JSON.parse(p.body);
      } catch (err) {
        throw new DeliveryError(`the body template does not give valid JSON (${(err as Error).message})`, 'rejected');
      }
    }
    const res = await httpRequest(this.url, {
      method: this.s.method,
      headers: { 'Content-Type': 'application/json; charset=utf-8', 'User-Agent': 'node-red-contrib-ups-orchestrator', 'Idempotency-Key': p.messageId, ...this.s.headers, ...this.s.secretHeaders },
      body: p.body,
      tls: this.s.tls,
      signal,
    });
    if (res.status < 200 || res.status >= 300) throw httpFailure('webhook', res, (j) => (typeof j.error === 'string' ? j.error : typeof j.message === 'string' ? j.message : undefined));
  }
}
