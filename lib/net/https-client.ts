/**
 * A small HTTPS client for the hypervisor APIs (vSphere SOAP, Proxmox REST): keep-alive connections
 * per server, certificate checks done before a single byte of the request is written (CA + host
 * name, or a pinned SHA-256 fingerprint), a deadline for every request, and an AbortSignal.
 * Errors say in plain words what to check, and a certificate that is not trusted names its
 * fingerprint so the user can pin it.
 */
import * as https from 'node:https';
import * as tls from 'node:tls';
import * as net from 'node:net';
import { Duplex } from 'node:stream';
import { TlsSettings, normaliseFingerprint } from './tls';

export interface HttpsTarget {
  host: string;
  port: number;
  tls: TlsSettings;
  /** Bound for TCP connect + TLS handshake, ms. */
  connectTimeoutMs: number;
  /** Parallel connections to this server (default 16). */
  maxSockets?: number;
}

export interface HttpsResponse {
  status: number;
  statusText: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A failure to reach or trust the server (as opposed to an answer from it). */
export class ConnectError extends Error {
  constructor(message: string, readonly code?: string) {
    super(message);
    this.name = 'ConnectError';
  }
}

/** SHA-256 fingerprint as AA:BB:… */
function colonHex(hex: string): string {
  return hex.match(/../g)?.join(':') ?? hex;
}

/**
 * https.Agent that owns the TLS handshake: the socket is handed to the request only after the
 * certificate passed (or matched the pin), so no request (and no password) reaches an impostor.
 */
class CheckedAgent extends https.Agent {
  private readonly pending = new Set<tls.TLSSocket>();
  private destroyed = false;

  constructor(private readonly target: HttpsTarget) {
    super({ keepAlive: true, maxSockets: target.maxSockets ?? 16, maxFreeSockets: 4, timeout: 60_000, scheduling: 'lifo' });
  }

  override createConnection(_options: https.RequestOptions, cb?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    const t = this.target;
    const pin = normaliseFingerprint(t.tls.fingerprint);
    const isIp = net.isIP(t.host) !== 0;
    const where = `${t.host}:${t.port}`;
    const done = once((err: Error | null, socket?: Duplex) => cb?.(err, socket as Duplex));
    if (this.destroyed) {
      done(new ConnectError(`connection to ${where} is closed`));
      return undefined;
    }
    const socket = tls.connect({
      host: t.host,
      port: t.port,
      servername: t.tls.servername || (isIp ? undefined : t.host),
      ca: t.tls.ca ? [...tls.rootCertificates, t.tls.ca] : undefined,
      // Checked below, before the socket is used: lets the error name the fingerprint.
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
    });
    this.pending.add(socket);
    const timer = setTimeout(() => socket.destroy(new ConnectError(`no connection to ${where} within ${t.connectTimeoutMs / 1000} s (host down or a firewall dropping packets?)`, 'ETIMEDOUT')), t.connectTimeoutMs);
    const finish = (err: Error | null) => {
      clearTimeout(timer);
      this.pending.delete(socket);
      socket.removeListener('error', onError);
      if (err) {
        socket.destroy();
        done(err);
      } else {
        done(null, socket);
      }
    };
    const onError = (err: NodeJS.ErrnoException) => finish(err instanceof ConnectError ? err : new ConnectError(describeSocketError(err, where), err.code));
    socket.once('error', onError);
    socket.once('secureConnect', () => {
      const cert = socket.getPeerCertificate();
      const seen = cert?.fingerprint256 ? cert.fingerprint256.replace(/:/g, '').toUpperCase() : '';
      if (pin) {
        if (seen !== pin) {
          return finish(new ConnectError(`certificate fingerprint mismatch at ${where}: the server presented SHA-256 ${colonHex(seen) || '(none)'}, the pin is ${colonHex(pin)}`, 'FINGERPRINT_MISMATCH'));
        }
      } else if (t.tls.verify !== false && !socket.authorized) {
        const why = String(socket.authorizationError ?? 'unknown reason');
        return finish(new ConnectError(`the certificate of ${where} is not trusted (${why}); if it is the server's own self-signed certificate, pin its SHA-256 fingerprint ${colonHex(seen)} (or turn verification off)`, 'CERT_UNTRUSTED'));
      }
      finish(null);
    });
    return undefined;
  }

  override destroy(): void {
    this.destroyed = true;
    for (const s of this.pending) s.destroy();
    this.pending.clear();
    super.destroy();
  }
}

function once<A extends unknown[]>(fn: (...a: A) => void): (...a: A) => void {
  let called = false;
  return (...a: A) => {
    if (called) return;
    called = true;
    fn(...a);
  };
}

export function describeSocketError(err: NodeJS.ErrnoException, where: string): string {
  switch (err.code) {
    case 'ECONNREFUSED':
      return `connection refused by ${where} (service not running, or wrong port?)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `host not found: ${where.replace(/:\d+$/, '')} (check the name or DNS)`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${where} is unreachable (host down or no route)`;
    case 'ETIMEDOUT':
      return `no connection to ${where} (timed out)`;
    case 'ECONNRESET':
    case 'EPIPE':
      return `${where} closed the connection (${err.code}); is it the HTTPS port?`;
    default:
      if (/wrong version number|packet length too long|unknown protocol/i.test(err.message)) return `${where} does not speak TLS (plain HTTP port?)`;
      return `cannot connect to ${where}: ${err.message}`;
  }
}

export interface RequestOptions {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
  /** Deadline for the whole request (queueing, connect, answer), ms. */
  timeoutMs: number;
  signal?: AbortSignal;
}

/** One server: a keep-alive pool with the certificate checks above. */
export class HttpsClient {
  private agent: CheckedAgent;
  /** Requests sent (for benchmarks and tests). */
  requests = 0;

  constructor(readonly target: HttpsTarget) {
    this.agent = new CheckedAgent(target);
  }

  get where(): string {
    return `${this.target.host}:${this.target.port}`;
  }

  request(o: RequestOptions): Promise<HttpsResponse> {
    return new Promise((resolve, reject) => {
      if (o.signal?.aborted) return reject(abortReason(o.signal));
      this.requests++;
      let settled = false;
      const settle = (err: Error | null, res?: HttpsResponse) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        o.signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(res!);
      };
      const headers: Record<string, string> = { ...o.headers };
      if (o.body !== undefined) headers['Content-Length'] = String(Buffer.byteLength(o.body));
      const req = https.request({ host: this.target.host, port: this.target.port, method: o.method, path: o.path, headers, agent: this.agent });
      const timer = setTimeout(() => {
        const e = new ConnectError(`${this.where} did not answer ${o.method} ${o.path.replace(/\?.*/, '')} within ${+(o.timeoutMs / 1000).toFixed(1)} s`, 'ETIMEDOUT');
        settle(e);
        req.destroy(e);
      }, o.timeoutMs);
      const onAbort = () => {
        settle(abortReason(o.signal!));
        req.destroy();
      };
      o.signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', (err: NodeJS.ErrnoException) => settle(err instanceof ConnectError ? err : new ConnectError(describeSocketError(err, this.where), err.code)));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        // The server going away mid-answer (restarting) keeps its socket code (ECONNRESET).
        res.on('error', (err: NodeJS.ErrnoException) => settle(new ConnectError(`${this.where}: answer cut off (${err.message})`, err.code ?? 'ECONNRESET')));
        res.on('end', () => settle(null, { status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      });
      req.end(o.body);
    });
  }

  /** Close every connection; later requests fail. */
  close(): void {
    this.agent.destroy();
  }
}

function abortReason(signal: AbortSignal): Error {
  const r = signal.reason;
  return r instanceof Error ? r : new Error(typeof r === 'string' ? r : 'aborted');
}
