/**
 * Proxmox VE REST client with an API token: `Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET`
 * (token requests need no ticket and no CSRF token), JSON answers `{ "data": … }`, form-encoded
 * parameters, keep-alive HTTPS with CA or pinned-fingerprint checks, a deadline per request, and
 * errors in words: 401 (token), 403 (which privilege on which path), 500 (the server's message).
 */
import { HttpsClient } from '../net/https-client';
import { TlsSettings } from '../net/tls';

export interface ProxmoxSettings {
  host: string;
  port: number;
  /** `USER@REALM!TOKENID`. */
  tokenId: string;
  secret: string;
  tls: TlsSettings;
  /** Deadline for one request, ms. */
  timeoutMs: number;
  maxSockets?: number;
  /** What to call the server in messages ("waiting for pve1 to come back"): the connection's name or host. */
  label?: string;
}

export const TOKEN_ID = /^[^\s:/@!]+@[A-Za-z][A-Za-z0-9.\-_]+![A-Za-z][A-Za-z0-9.\-_]+$/;

/**
 * A cluster node that booted before the others has no quorum yet: pmxcfs is read-only and every
 * power call fails with 500 "cluster not ready - no quorum?" until enough nodes are back.
 */
const NO_QUORUM = /cluster not ready - no quorum/i;

/**
 * An error answer from the API. A startup waits (lib/actions/run.ts isNotReachable) on the
 * gateway statuses (595/596: the node that owns the guest cannot be reached through the cluster;
 * 502/503/504) and on a cluster without quorum; never on 401/403 or a rejected request.
 */
export class ProxmoxError extends Error {
  readonly notReachable: boolean;
  constructor(
    readonly status: number,
    message: string,
    /** Parameter errors of a 400 answer. */
    readonly errors: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ProxmoxError';
    this.notReachable = [502, 503, 504, 595, 596].includes(status) || (status === 500 && NO_QUORUM.test(message));
  }
}

export type Params = Record<string, string | number | boolean | undefined>;

function encode(params: Params): string {
  return Object.entries(params)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(typeof v === 'boolean' ? (v ? '1' : '0') : String(v))}`)
    .join('&');
}

/** `/nodes/{node}/qemu/{vmid}` with each value URL-encoded. */
export function apiPath(template: string, values: Record<string, string | number>): string {
  return template.replace(/\{(\w+)\}/g, (_, k: string) => {
    if (values[k] === undefined) throw new Error(`missing path value ${k}`);
    return encodeURIComponent(String(values[k]));
  });
}

export class ProxmoxClient {
  readonly http: HttpsClient;
  private closed = false;
  private readonly life = new AbortController();

  constructor(readonly settings: ProxmoxSettings) {
    if (!TOKEN_ID.test(settings.tokenId)) throw new Error(`the API token id must look like USER@REALM!TOKENID (e.g. root@pam!upsorch), not "${settings.tokenId}"`);
    this.http = new HttpsClient({ host: settings.host, port: settings.port, tls: settings.tls, connectTimeoutMs: Math.min(settings.timeoutMs, 15_000), maxSockets: settings.maxSockets });
  }

  get where(): string {
    return this.http.where;
  }

  /** The connection's name, else its host. */
  get label(): string {
    return this.settings.label || this.settings.host;
  }

  get requests(): number {
    return this.http.requests;
  }

  /** One API call; resolves with `data`. `path` is below /api2/json and already encoded. */
  async request<T = unknown>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, params: Params = {}, signal?: AbortSignal): Promise<T> {
    if (this.closed) throw new Error('the Proxmox connection is closed');
    const query = encode(params);
    const withBody = method === 'POST' || method === 'PUT';
    const headers: Record<string, string> = {
      Authorization: `PVEAPIToken=${this.settings.tokenId}=${this.settings.secret}`,
      Accept: 'application/json',
    };
    if (withBody) headers['Content-Type'] = 'application/x-www-form-urlencoded';
    const res = await this.http.request({
      method,
      path: `/api2/json${path}${!withBody && query ? `?${query}` : ''}`,
      headers,
      body: withBody ? query : undefined,
      timeoutMs: this.settings.timeoutMs,
      signal: signal ? AbortSignal.any([signal, this.life.signal]) : this.life.signal,
    });
    let body: { data?: unknown; message?: string; errors?: Record<string, string> } | null = null;
    try {
      body = res.body ? JSON.parse(res.body) : null;
    } catch {
      body = null;
    }
    if (res.status >= 200 && res.status < 300) {
      if (!body || !('data' in body)) throw new ProxmoxError(res.status, `${this.where} answered ${method} ${path} without a JSON "data" field (is this the Proxmox API port?)`);
      return body.data as T;
    }
    throw this.explain(res.status, res.statusText, body, method, path);
  }

  private explain(status: number, statusText: string, body: { message?: string; errors?: Record<string, string> } | null, method: string, path: string): ProxmoxError {
    const msg = (body?.message ?? statusText ?? '').trim() || `HTTP ${status}`;
    switch (status) {
      case 401:
        return new ProxmoxError(status, `Proxmox refused the API token ${this.settings.tokenId} (${msg}): check the token id and secret, and that the token is not expired`);
      case 403: {
        const m = /\(([^,()]+),\s*([^()]+)\)/.exec(msg);
        return new ProxmoxError(status, m ? `the API token ${this.settings.tokenId} lacks the privilege ${m[2].trim()} on ${m[1].trim()} (${msg})` : `the API token ${this.settings.tokenId} is not allowed to ${method} ${path}: ${msg}`);
      }
      case 400: {
        const errs = body?.errors ?? {};
        const detail = Object.entries(errs).map(([k, v]) => `${k}: ${String(v).trim()}`).join('; ');
        return new ProxmoxError(status, `Proxmox rejected ${method} ${path}: ${msg}${detail ? ` (${detail})` : ''}`, errs);
      }
      case 595:
      case 596:
        return new ProxmoxError(status, `Proxmox could not reach the node for ${path}: ${msg}`);
      case 501:
        return new ProxmoxError(status, `this Proxmox does not know ${method} ${path} (${msg}); is it an older version?`);
      default:
        return new ProxmoxError(status, `Proxmox: ${msg} (HTTP ${status}, ${method} ${path})`);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.life.abort(new Error('the Proxmox connection is closed'));
    this.http.close();
  }
}
