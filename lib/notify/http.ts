/**
 * One HTTP(S) request for the web channels (webhook, Discord, ntfy, Telegram): a bounded time
 * (the caller's abort signal), TLS verification on by default or a pinned SHA-256 fingerprint, no
 * connection kept open afterwards, and errors that never show the URL's path or query (Discord
 * webhook URLs and Telegram bot tokens are secrets that live there).
 */
import * as http from 'node:http';
import * as https from 'node:https';
import * as tls from 'node:tls';
import { TlsSettings, checkPinnedFingerprint, tlsConnectOptions } from '../net/tls';
import { DeliveryError } from './queue';

export interface HttpRequestOptions {
  method: string;
  headers: Record<string, string>;
  body?: string;
  tls?: TlsSettings;
  signal: AbortSignal;
}

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

const MAX_BODY = 64 * 1024;

/** "https://api.telegram.org" — never the path (it may hold a token). */
export function origin(url: URL): string {
  return `${url.protocol}//${url.host}`;
}

export function httpRequest(url: URL, o: HttpRequestOptions): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    if (o.signal.aborted) return reject(o.signal.reason ?? new Error('aborted'));
    const where = origin(url);
    const secure = url.protocol === 'https:';
    if (!secure && url.protocol !== 'http:') return reject(new DeliveryError(`unsupported URL scheme ${url.protocol} (use http: or https:)`, 'config'));
    const body = o.body === undefined ? undefined : Buffer.from(o.body, 'utf8');
    const headers: Record<string, string> = { ...o.headers, ...(body ? { 'Content-Length': String(body.length) } : {}) };
    const base: http.RequestOptions = {
      method: o.method,
      hostname: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port || (secure ? 443 : 80),
      path: url.pathname + url.search,
      headers,
      agent: false,
      signal: o.signal,
    };
    let settled = false;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      reject(err);
    };
    const req = secure
      ? https.request({ ...base, ...tlsConnectOptions(url.hostname, o.tls ?? {}) } as https.RequestOptions)
      : http.request(base);
    req.on('socket', (socket) => {
      if (!secure) return;
      socket.once('secureConnect', () => {
        const pinError = checkPinnedFingerprint(socket as tls.TLSSocket, o.tls ?? {});
        if (pinError) req.destroy(new DeliveryError(`${where}: ${pinError.message}`, 'config'));
      });
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= MAX_BODY) chunks.push(c);
      });
      res.on('end', () => {
        if (settled) return;
        settled = true;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', (err) => fail(networkError(where, err, o.signal)));
    });
    req.on('error', (err) => fail(networkError(where, err, o.signal)));
    req.end(body);
  });
}

function networkError(where: string, err: unknown, signal: AbortSignal): unknown {
  if (err instanceof DeliveryError) return err;
  if (signal.aborted) return signal.reason ?? err;
  const e = err as NodeJS.ErrnoException;
  const code = e.code ?? '';
  if (/CERT|SELF_SIGNED|UNABLE_TO|ERR_TLS|HOSTNAME/.test(code) || /certificate/i.test(e.message)) {
    return new DeliveryError(`${where}: TLS certificate not accepted (${e.message}); pin its SHA-256 fingerprint or add it to the trusted CAs`, 'config');
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return new DeliveryError(`${where}: host name not found (${code})`, 'retry');
  const text = e.message && !/^https?:/.test(e.message) ? e.message : code || 'network error';
  return new DeliveryError(`cannot reach ${where}: ${text}`, 'retry');
}

/**
 * A service's answer that is not a success, as a DeliveryError: 429 with its retry time, 401/403/404
 * as a settings problem, 408 and 5xx to retry, any other 4xx as a refusal of the message itself.
 * `detail` picks the service's own explanation out of its JSON answer.
 */
export function httpFailure(service: string, res: HttpResult, detail?: (json: Record<string, unknown>) => string | undefined): DeliveryError {
  let json: Record<string, unknown> | undefined;
  try {
    const parsed = JSON.parse(res.body);
    if (parsed && typeof parsed === 'object') json = parsed;
  } catch {
    /* not JSON */
  }
  const said = (json && detail?.(json)) || (json ? undefined : res.body.trim().slice(0, 200)) || '';
  const statusText = `${res.status}${http.STATUS_CODES[res.status] ? ' ' + http.STATUS_CODES[res.status] : ''}`;
  const tail = said ? ` (${said})` : '';
  const what = `${service}: ${statusText}${tail}`;
  // The advice first: a node's status shows only the start of the text.
  if (res.status === 429) return new DeliveryError(`${service}: rate limited, ${statusText}${tail}`, 'retry', retryAfterMs(res, json));
  if (res.status === 401 || res.status === 403) return new DeliveryError(`${service}: ${statusText}, check the credentials${tail}`, 'config');
  if (res.status === 404) return new DeliveryError(`${service}: ${statusText}, check the URL, topic or chat${tail}`, 'config');
  if (res.status === 408 || res.status >= 500 || res.status < 200) return new DeliveryError(what, 'retry');
  return new DeliveryError(what, 'rejected');
}

/** Retry-After (seconds or an HTTP date), Discord's `retry_after` (s) or Telegram's `parameters.retry_after` (s). */
function retryAfterMs(res: HttpResult, json: Record<string, unknown> | undefined): number | undefined {
  const h = res.headers['retry-after'];
  if (typeof h === 'string') {
    const s = Number(h);
    if (Number.isFinite(s)) return Math.max(0, s * 1000);
    const at = Date.parse(h);
    if (Number.isFinite(at)) return Math.max(0, at - Date.now());
  }
  const fromJson = json?.retry_after ?? (json?.parameters as Record<string, unknown> | undefined)?.retry_after;
  return typeof fromJson === 'number' && Number.isFinite(fromJson) ? fromJson * 1000 : undefined;
}
