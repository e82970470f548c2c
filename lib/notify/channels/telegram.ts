/**
 * Telegram bot: sendMessage to one chat, as HTML (bold title, escaped text), silent for info
 * messages, link previews off. The bot token comes from the credentials when sending; it is part of
 * the request path, so errors name only the API's origin. The API base URL is configurable (a
 * self-hosted Bot API server, or a loopback server in the tests).
 */
import { TlsSettings } from '../../net/tls';
import { Notification, Template } from '../format';
import { httpFailure, httpRequest } from '../http';
import { DeliveryError, Driver } from '../queue';
import { html, render } from '../template';

export interface TelegramSettings {
  apiBase: string;
  token: string;
  chatId: string;
  tls: TlsSettings;
}

export interface TelegramPayload {
  text: string;
  parse_mode: 'HTML';
  disable_notification: boolean;
  link_preview_options: { is_disabled: boolean };
}

const MAX_TEXT = 4096;

/** Cut HTML text without splitting an entity (`&amp;`). */
function cutHtml(s: string, max: number): string {
  if (s.length <= max) return s;
  return s.slice(0, max - 1).replace(/&[a-z#0-9]*$/i, '') + '…';
}

export class TelegramDriver implements Driver<TelegramPayload> {
  readonly kind = 'telegram' as const;
  readonly label: string;
  private readonly base: URL;

  constructor(private readonly s: TelegramSettings) {
    this.base = new URL(s.apiBase);
    this.label = `Telegram chat ${s.chatId}`;
  }

  prepare(n: Notification, t: Template): TelegramPayload {
    const title = render(t.title, n.ctx, html).replace(/\s+/g, ' ').trim();
    const body = render(t.body, n.ctx, html).trim();
    const head = `<b>${title.slice(0, 500).replace(/&[a-z#0-9]*$/i, '')}</b>\n`;
    return {
      text: head + cutHtml(body, MAX_TEXT - head.length),
      parse_mode: 'HTML',
      disable_notification: n.severity === 'info',
      link_preview_options: { is_disabled: true },
    };
  }

  async deliver(p: TelegramPayload, signal: AbortSignal): Promise<void> {
    const url = new URL(`${this.base.pathname.replace(/\/$/, '')}/bot${this.s.token}/sendMessage`, this.base);
    const chat = /^-?\d+$/.test(this.s.chatId) ? Number(this.s.chatId) : this.s.chatId;
    const res = await httpRequest(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'User-Agent': 'node-red-contrib-ups-orchestrator' },
      body: JSON.stringify({ chat_id: chat, ...p }),
      tls: this.s.tls,
      signal,
    });
    let ok = false;
    try {
      ok = JSON.parse(res.body)?.ok === true;
    } catch {
      /* not JSON */
    }
    if (res.status === 200 && ok) return;
    const err = httpFailure('Telegram', res, (j) => (typeof j.description === 'string' ? j.description : undefined));
    // Telegram says 400 for a chat it does not know: that is the settings, not the message.
    if (res.status === 400 && /chat not found|chat_id is empty|not enough rights|bot was kicked|group chat was upgraded/i.test(err.message)) {
      throw new DeliveryError(err.message.replace(/^Telegram: /, 'Telegram: check the chat id and that the bot is in the chat: '), 'config');
    }
    throw err;
  }
}
