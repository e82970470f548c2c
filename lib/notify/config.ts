/**
 * The configuration of a notification channel (`upsorch-notify-channel`) and of the notify node
 * (`upsorch-notify`), as the editor stores them, validated at the edge with zod, and the factory
 * that turns a channel's configuration and credentials into its driver.
 */
import { z } from 'zod';
import { numberField } from '../ups/config';
import { normaliseFingerprint } from '../net/tls';
import { UPS_EVENTS } from '../ups/events';
import { DEFAULT_TEMPLATES, TEMPLATE_KEYS, Template, TemplateKey, fromCustom } from './format';
import { ChannelKind, Driver, QueueSettings } from './queue';
import { EmailDriver } from './channels/email';
import { WebhookDriver, webhookContext } from './channels/webhook';
import { jsonString, render } from './template';
import { DiscordDriver } from './channels/discord';
import { NtfyDriver } from './channels/ntfy';
import { TelegramDriver } from './channels/telegram';
import { HaDriver, HaServiceCaller } from './channels/ha';
import { FlapSettings } from './flap';

export const CHANNEL_KINDS = ['email', 'webhook', 'discord', 'ntfy', 'telegram', 'ha'] as const;

const bool = (dflt: boolean) => z.preprocess((v) => (v === undefined || v === '' || v === null ? dflt : v === true || v === 'true'), z.boolean());
const text = (dflt = '') => z.preprocess((v) => (v === undefined || v === null ? dflt : String(v)), z.string().trim());

const fingerprint = text().refine((v) => {
  try {
    normaliseFingerprint(v);
    return true;
  } catch {
    return false;
  }
}, 'a SHA-256 fingerprint has 64 hex digits (colons allowed)');

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function isUrl(v: string): boolean {
  try {
    const u = new URL(v);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

/** This machine: a plain connection to it never crosses a network. */
export function isLoopback(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h.endsWith('.localhost') || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === '::1' || /^::ffff:127\./.test(h);
}

/** `Name: value` per line → headers; throws on a malformed line. */
export function parseHeaderLines(textBlock: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [i, raw] of textBlock.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (!line) continue;
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (!m || !HEADER_NAME.test(m[1].trim())) throw new Error(`header line ${i + 1} is not "Name: value"`);
    out[m[1].trim()] = m[2];
  }
  return out;
}

/** A JSON body template must give JSON for any message: try it on a sample (quotes and line breaks included). */
function checkBodyTemplate(template: string, headerLines: string): string | undefined {
  let headers: Record<string, string> = {};
  try {
    headers = parseHeaderLines(headerLines);
  } catch {
    /* reported on its own */
  }
  const ct = Object.entries(headers).find(([k]) => k.toLowerCase() === 'content-type')?.[1];
  if (ct && !/json/i.test(ct)) return undefined;
  const sample = fromCustom({ title: 'Title "quoted"', message: 'line 1\nline 2', severity: 'warning' }, Date.now());
  try {
    JSON.parse(render(template, webhookContext(sample, DEFAULT_TEMPLATES.custom), jsonString));
    return undefined;
  } catch (err) {
    return `the body template does not give valid JSON (${(err as Error).message}); put placeholders inside quotes, e.g. {"text": "{{text}}"}`;
  }
}

export const ChannelConfigSchema = z
  .object({
    name: text(),
    kind: z.enum(CHANNEL_KINDS, { error: `kind must be one of ${CHANNEL_KINDS.join(', ')}` }),
    // delivery
    rateLimit: numberField(0, 600, 20, 'rate limit (messages per minute)'),
    maxAge: numberField(0.01, 720, 24, 'maximum age (hours)'),
    retryMax: numberField(1, 3600, 60, 'longest retry interval (s)'),
    timeout: numberField(1, 120, 15, 'timeout (s)'),
    tlsVerify: bool(true),
    tlsFingerprint: fingerprint,
    // email
    smtpHost: text(),
    smtpPort: numberField(1, 65535, 587, 'SMTP port'),
    smtpSecurity: z.enum(['starttls', 'tls', 'none'], { error: 'security must be starttls, tls or none' }).default('starttls'),
    from: text(),
    to: text(),
    // webhook
    url: text(),
    method: z.enum(['POST', 'PUT', 'PATCH'], { error: 'method must be POST, PUT or PATCH' }).default('POST'),
    headers: text(),
    secretHeader1: text(),
    secretHeader2: text(),
    bodyTemplate: z.preprocess((v) => (v === undefined || v === null ? '' : String(v)), z.string()),
    // discord
    discordUsername: text(),
    // ntfy
    ntfyServer: text('https://ntfy.sh'),
    ntfyTopic: text(),
    ntfyPriority: z.enum(['auto', '1', '2', '3', '4', '5'], { error: 'priority must be auto or 1 to 5' }).default('auto'),
    // telegram
    telegramApi: text('https://api.telegram.org'),
    telegramChat: text(),
    // home assistant
    haServer: text(),
    haService: text(),
    haCritical: z.enum(['never', 'critical', 'warning'], { error: 'critical alerts must be never, critical or warning' }).default('critical'),
    haPersistent: bool(false),
  })
  .superRefine((c, ctx) => {
    const need = (field: keyof typeof c, message: string) => {
      if (!c[field]) ctx.addIssue({ code: 'custom', path: [field], message });
    };
    switch (c.kind) {
      case 'email':
        need('smtpHost', 'SMTP host is required');
        need('from', 'the sender address (from) is required');
        need('to', 'at least one recipient (to) is required');
        for (const a of splitAddresses(c.to)) if (!/^[^\s@<>]+@[^\s@<>]+$/.test(a.replace(/^.*<([^>]+)>$/, '$1'))) ctx.addIssue({ code: 'custom', path: ['to'], message: `"${a}" is not an email address` });
        break;
      case 'webhook':
        if (!isUrl(c.url)) ctx.addIssue({ code: 'custom', path: ['url'], message: 'the webhook URL must be an http:// or https:// URL' });
        try {
          parseHeaderLines(c.headers);
        } catch (err) {
          ctx.addIssue({ code: 'custom', path: ['headers'], message: (err as Error).message });
        }
        if (c.bodyTemplate.trim()) {
          const err = checkBodyTemplate(c.bodyTemplate, c.headers);
          if (err) ctx.addIssue({ code: 'custom', path: ['bodyTemplate'], message: err });
        }
        for (const f of ['secretHeader1', 'secretHeader2'] as const) {
          if (c[f] && !HEADER_NAME.test(c[f])) ctx.addIssue({ code: 'custom', path: [f], message: `"${c[f]}" is not a header name` });
        }
        break;
      case 'ntfy':
        if (!isUrl(c.ntfyServer)) ctx.addIssue({ code: 'custom', path: ['ntfyServer'], message: 'the ntfy server must be an http:// or https:// URL' });
        if (!/^[-_A-Za-z0-9]{1,64}$/.test(c.ntfyTopic)) ctx.addIssue({ code: 'custom', path: ['ntfyTopic'], message: 'the ntfy topic is 1–64 letters, digits, - or _' });
        break;
      case 'telegram':
        if (!isUrl(c.telegramApi)) ctx.addIssue({ code: 'custom', path: ['telegramApi'], message: 'the Telegram API URL must be an http:// or https:// URL' });
        if (!/^(-?\d+|@[A-Za-z][A-Za-z0-9_]{3,})$/.test(c.telegramChat)) ctx.addIssue({ code: 'custom', path: ['telegramChat'], message: 'the chat id is a number (e.g. -1001234567890) or @channelname' });
        break;
      case 'ha':
        need('haServer', 'no Home Assistant server selected');
        if (c.haService && !/^notify\.[a-z0-9_]+$/.test(c.haService)) ctx.addIssue({ code: 'custom', path: ['haService'], message: 'the notify service is written notify.<name>, e.g. notify.mobile_app_pixel_8' });
        if (!c.haService && !c.haPersistent) ctx.addIssue({ code: 'custom', path: ['haService'], message: 'choose a notify service, a persistent notification, or both' });
        break;
      case 'discord':
        break;
    }
  });

export type ChannelConfig = z.infer<typeof ChannelConfigSchema>;

export interface ChannelCredentials {
  user?: string;
  password?: string;
  secretValue1?: string;
  secretValue2?: string;
  webhookUrl?: string;
  token?: string;
}

function issuesText(e: z.ZodError): string {
  return e.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ` : '') + i.message).join('; ');
}

export function parseChannelConfig(raw: unknown): ChannelConfig {
  const r = ChannelConfigSchema.safeParse(raw);
  if (r.success) return r.data;
  throw new Error('invalid notification channel configuration: ' + issuesText(r.error));
}

export function splitAddresses(v: string): string[] {
  return v.split(/[,;\n]/).map((s) => s.trim()).filter(Boolean);
}

export function queueSettings(c: ChannelConfig): QueueSettings {
  return {
    maxAgeMs: c.maxAge * 3600_000,
    retryMinMs: Math.min(1000, c.retryMax * 1000),
    retryMaxMs: c.retryMax * 1000,
    perMinute: c.rateLimit,
    timeoutMs: c.timeout * 1000,
    closeGraceMs: 3000,
  };
}

/** The name a channel is shown by: its name, else what it sends to (no secrets). */
export function channelName(c: ChannelConfig): string {
  if (c.name) return c.name;
  switch (c.kind) {
    case 'email': return `mail ${splitAddresses(c.to)[0] ?? ''}`.trim();
    case 'webhook': return 'webhook';
    case 'discord': return 'Discord';
    case 'ntfy': return `ntfy ${c.ntfyTopic}`;
    case 'telegram': return `Telegram ${c.telegramChat}`;
    case 'ha': return c.haService || 'HA notification';
  }
}

export interface DriverDeps {
  /** Home Assistant: resolves the server config node's client (lazily: it may start after this channel). */
  ha?: () => HaServiceCaller;
}

/** The driver for a channel; throws with a clear message when a needed secret is missing. */
export function createDriver(c: ChannelConfig, creds: ChannelCredentials, deps: DriverDeps = {}): Driver {
  const tls = { verify: c.tlsVerify, fingerprint: c.tlsFingerprint || undefined };
  switch (c.kind) {
    case 'email':
      if (creds.password && !creds.user) throw new Error('a password is set but no user');
      if (c.smtpSecurity === 'none' && creds.user && !isLoopback(c.smtpHost)) {
        throw new Error(`SMTP security "none" would send the password in clear text to ${c.smtpHost}: choose STARTTLS or TLS (AUTH without TLS only to a relay on this machine: localhost, 127.0.0.1, ::1)`);
      }
      return new EmailDriver({
        host: c.smtpHost,
        port: c.smtpPort,
        security: c.smtpSecurity,
        tlsVerify: c.tlsVerify,
        fingerprint: c.tlsFingerprint || undefined,
        from: c.from,
        to: splitAddresses(c.to),
        user: creds.user || undefined,
        password: creds.password || undefined,
        timeoutMs: c.timeout * 1000,
      });
    case 'webhook': {
      const secretHeaders: Record<string, string> = {};
      if (c.secretHeader1) {
        if (!creds.secretValue1) throw new Error(`no value for the secret header ${c.secretHeader1}`);
        secretHeaders[c.secretHeader1] = creds.secretValue1;
      }
      if (c.secretHeader2) {
        if (!creds.secretValue2) throw new Error(`no value for the secret header ${c.secretHeader2}`);
        secretHeaders[c.secretHeader2] = creds.secretValue2;
      }
      return new WebhookDriver({ url: c.url, method: c.method, headers: parseHeaderLines(c.headers), secretHeaders, bodyTemplate: c.bodyTemplate, tls });
    }
    case 'discord':
      if (!creds.webhookUrl || !isUrl(creds.webhookUrl)) throw new Error('the Discord webhook URL (https://discord.com/api/webhooks/…) is missing or not a URL');
      return new DiscordDriver({ webhookUrl: creds.webhookUrl, username: c.discordUsername, tls });
    case 'ntfy':
      return new NtfyDriver({ server: c.ntfyServer, topic: c.ntfyTopic, priority: c.ntfyPriority === 'auto' ? 'auto' : (Number(c.ntfyPriority) as 1 | 2 | 3 | 4 | 5), token: creds.token || undefined, tls });
    case 'telegram':
      if (!creds.token || !/^\d+:[A-Za-z0-9_-]+$/.test(creds.token)) throw new Error('the Telegram bot token (123456:ABC…) is missing or malformed');
      return new TelegramDriver({ apiBase: c.telegramApi, token: creds.token, chatId: c.telegramChat, tls });
    case 'ha':
      if (!deps.ha) throw new Error('no Home Assistant server');
      return new HaDriver({ service: c.haService, critical: c.haCritical, persistent: c.haPersistent }, deps.ha);
  }
}

// ---- the notify node ----

const templateRow = z.object({
  event: z.enum(TEMPLATE_KEYS as [TemplateKey, ...TemplateKey[]], { error: 'unknown event for a template' }),
  title: z.string().default(''),
  body: z.string().default(''),
});

export const NotifyConfigSchema = z.object({
  name: text(),
  channel: z.string({ error: 'no channel selected' }).min(1, 'no channel selected'),
  crisisChannel: text(),
  /** A plan (config node) whose run events this node follows without wiring. */
  plan: text(),
  /** Report every step of a plan run (crisis mode). */
  crisis: bool(true),
  /** UPS events to notify about; empty = all. */
  events: z.preprocess(
    (v) => (v === undefined || v === '' || v === null ? [] : v === 'none' ? null : typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v),
    z.array(z.enum(UPS_EVENTS, { error: 'unknown UPS event in the event list' }), { error: 'choose at least one UPS event' }),
  ),
  flapWindow: numberField(10, 86400, 300, 'flapping window (s)'),
  flapThreshold: numberField(1, 100, 2, 'changes sent one by one'),
  flapQuiet: numberField(5, 86400, 120, 'quiet time before the digest (s)'),
  templates: z.preprocess((v) => {
    if (v === undefined || v === null || v === '') return [];
    if (typeof v === 'string') {
      try {
        return JSON.parse(v);
      } catch {
        return v;
      }
    }
    return v;
  }, z.array(templateRow, { error: 'templates must be a list of {event, title, body}' })),
});

export type NotifyConfig = z.infer<typeof NotifyConfigSchema>;

export function parseNotifyConfig(raw: unknown): NotifyConfig {
  const r = NotifyConfigSchema.safeParse(raw);
  if (r.success) return r.data;
  throw new Error('invalid notify configuration: ' + issuesText(r.error));
}

export function flapSettings(c: NotifyConfig): FlapSettings {
  return { windowMs: c.flapWindow * 1000, threshold: c.flapThreshold, quietMs: c.flapQuiet * 1000 };
}

/** The user's template overrides: an empty title or body keeps the default one. */
export function templateOverrides(c: NotifyConfig): Partial<Record<TemplateKey, Partial<Template>>> {
  const out: Partial<Record<TemplateKey, Partial<Template>>> = {};
  for (const row of c.templates) {
    out[row.event] = { ...(row.title.trim() ? { title: row.title } : {}), ...(row.body.trim() ? { body: row.body } : {}) };
  }
  return out;
}

export type { ChannelKind };
