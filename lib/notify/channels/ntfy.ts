/**
 * ntfy: JSON publishing (POST to the server's root with topic, title, message, priority and tags),
 * priority from the severity unless fixed, an access token as `Authorization: Bearer` from the
 * credentials. Works with ntfy.sh and a self-hosted server (its URL, with TLS verification or a
 * pinned certificate).
 */
import { TlsSettings } from '../../net/tls';
import { Notification, Template } from '../format';
import { httpFailure, httpRequest, origin } from '../http';
import { Driver } from '../queue';
import { plain, render } from '../template';

export interface NtfySettings {
  server: string;
  topic: string;
  /** 1 (min) … 5 (max/urgent), or 'auto' from the severity. */
  priority: 'auto' | 1 | 2 | 3 | 4 | 5;
  token?: string;
  tls: TlsSettings;
}

export interface NtfyPayload {
  title: string;
  message: string;
  priority: number;
  tags: string[];
}

const PRIORITY = { critical: 5, warning: 4, info: 3 } as const;
const TAGS = { critical: 'rotating_light', warning: 'warning', info: 'information_source' } as const;

export class NtfyDriver implements Driver<NtfyPayload> {
  readonly kind = 'ntfy' as const;
  readonly label: string;
  private readonly url: URL;

  constructor(private readonly s: NtfySettings) {
    this.url = new URL(s.server);
    this.label = `ntfy ${origin(this.url)} topic ${s.topic}`;
  }

  prepare(n: Notification, t: Template): NtfyPayload {
    return {
      title: render(t.title, n.ctx, plain).replace(/\s+/g, ' ').trim().slice(0, 250),
      message: render(t.body, n.ctx, plain).trim().slice(0, 4000),
      priority: this.s.priority === 'auto' ? PRIORITY[n.severity] : this.s.priority,
      tags: [n.resolved ? 'white_check_mark' : TAGS[n.severity], 'ups'],
    };
  }

  async deliver(p: NtfyPayload, signal: AbortSignal): Promise<void> {
    const headers: Record<string, string> = { 'Content-Type': 'application/json', 'User-Agent': 'node-red-contrib-ups-orchestrator' };
    if (this.s.token) headers.Authorization = `Bearer ${this.s.token}`;
    const res = await httpRequest(this.url, { method: 'POST', headers, body: JSON.stringify({ topic: this.s.topic, ...p }), tls: this.s.tls, signal });
    if (res.status < 200 || res.status >= 300) throw httpFailure('ntfy', res, (j) => (typeof j.error === 'string' ? j.error : undefined));
  }
}
