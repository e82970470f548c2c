/**
 * Discord webhook: one embed per message, colour-coded by severity (red critical, orange warning,
 * blue info, green when something is resolved), the facts as inline fields, Markdown in the text
 * escaped, mentions disabled. The webhook URL is the secret (it holds the token): it comes from the
 * credentials when sending and never appears in errors, logs or the outbox.
 */
import { TlsSettings } from '../../net/tls';
import { Notification, Template } from '../format';
import { httpFailure, httpRequest } from '../http';
import { DeliveryError, Driver } from '../queue';
import { markdown, render } from '../template';

export interface DiscordSettings {
  webhookUrl: string;
  /** Overrides the webhook's default user name. */
  username: string;
  tls: TlsSettings;
}

export const DISCORD_COLOURS = { critical: 0xe74c3c, warning: 0xf39c12, info: 0x3498db, resolved: 0x2ecc71 } as const;

export interface DiscordPayload {
  username?: string;
  allowed_mentions: { parse: string[] };
  embeds: Array<{
    title: string;
    description: string;
    color: number;
    timestamp: string;
    fields: Array<{ name: string; value: string; inline: boolean }>;
    footer: { text: string };
  }>;
}

const cut = (s: string, n: number) => (s.length > n ? s.slice(0, n - 1) + '…' : s);

export class DiscordDriver implements Driver<DiscordPayload> {
  readonly kind = 'discord' as const;
  readonly label = 'Discord webhook';
  private readonly url: URL;

  constructor(private readonly s: DiscordSettings) {
    this.url = new URL(s.webhookUrl);
    this.url.searchParams.set('wait', 'true');
  }

  prepare(n: Notification, t: Template): DiscordPayload {
    const color = n.resolved ? DISCORD_COLOURS.resolved : DISCORD_COLOURS[n.severity];
    return {
      ...(this.s.username ? { username: cut(this.s.username, 80) } : {}),
      allowed_mentions: { parse: [] },
      embeds: [
        {
          title: cut(render(t.title, n.ctx, markdown).replace(/\s+/g, ' ').trim(), 256),
          description: cut(render(t.body, n.ctx, markdown).trim(), 4096),
          color,
          timestamp: new Date(n.ts).toISOString(),
          fields: n.facts.slice(0, 25).map((f) => ({ name: cut(f.name, 256), value: cut(markdown(f.value) || '-', 1024), inline: true })),
          footer: { text: `UPS orchestrator · ${n.severity}` },
        },
      ],
    };
  }

  async deliver(p: DiscordPayload, signal: AbortSignal): Promise<void> {
    const res = await httpRequest(this.url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'User-Agent': 'node-red-contrib-ups-orchestrator' },
      body: JSON.stringify(p),
      tls: this.s.tls,
      signal,
    });
    if (res.status === 200 || res.status === 204) return;
    const err = httpFailure('Discord', res, (j) => (typeof j.message === 'string' ? j.message : undefined));
    // Discord answers 404 "Unknown Webhook" for a deleted webhook: a settings problem.
    throw res.status === 404 ? new DeliveryError(err.message.replace('check the URL, topic or chat', 'the webhook URL is wrong or the webhook was deleted'), 'config') : err;
  }
}
