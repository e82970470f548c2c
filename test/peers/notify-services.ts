/**
 * Real peers for the notify tests, inside the test process on loopback:
 * - `HttpRecorder`: an HTTP server standing in for a webhook receiver, Discord, ntfy and the
 *   Telegram Bot API. It records every request (method, path, headers, body) and answers like the
 *   service does (Telegram `{ok:true,result}`, Discord's message for `?wait=true`, ntfy's message
 *   JSON); it can answer with a chosen status on demand, and be taken down and brought back on the
 *   same port (connection refused in between, as when the router is down).
 * - `SmtpPeer`: npm `smtp-server` capturing messages, with or without AUTH, with STARTTLS or
 *   implicit TLS on a certificate made by openssl at test time.
 * What they do not model: the services' rate limits and validation of every field, DKIM, SPF.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { SMTPServer, SMTPServerOptions } from 'smtp-server';

export interface RecordedRequest {
  at: number;
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  json: any;
}

export type Responder = (req: RecordedRequest) => { status: number; body?: unknown; headers?: Record<string, string> } | undefined;

/** The answer a service gives on success, by the path it was called on. */
function serviceAnswer(r: RecordedRequest): { status: number; body: unknown } {
  if (/\/bot[^/]+\/sendMessage$/.test(r.path)) {
    return { status: 200, body: { ok: true, result: { message_id: Math.floor(Math.random() * 1e6), date: Math.floor(Date.now() / 1000), chat: { id: r.json?.chat_id }, text: r.json?.text } } };
  }
  if (/\/api\/webhooks\//.test(r.path)) return r.path.includes('wait=true') ? { status: 200, body: { id: String(Date.now()), type: 0, embeds: r.json?.embeds ?? [] } } : { status: 204, body: '' };
  if (r.json?.topic) return { status: 200, body: { id: 'x' + Date.now(), time: Math.floor(Date.now() / 1000), event: 'message', topic: r.json.topic, message: r.json.message } };
  return { status: 200, body: { received: true } };
}

export class HttpRecorder {
  readonly requests: RecordedRequest[] = [];
  /** Overrides the answer; return undefined for the normal one. */
  responder: Responder | null = null;
  private server: http.Server | null = null;
  private sockets = new Set<net.Socket>();
  private waiters: Array<() => void> = [];
  port = 0;

  static async start(): Promise<HttpRecorder> {
    const r = new HttpRecorder();
    await r.listen(0);
    return r;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private listen(port: number): Promise<void> {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let json: any;
        try {
          json = JSON.parse(body);
        } catch {
          json = undefined;
        }
        const rec: RecordedRequest = { at: Date.now(), method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, json };
        const custom = this.responder?.(rec);
        // Only requests the service accepted count as delivered.
        const answer = custom ?? serviceAnswer(rec);
        if (answer.status >= 200 && answer.status < 300) this.requests.push(rec);
        const text = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body ?? {});
        res.writeHead(answer.status, { 'Content-Type': 'application/json', ...(custom?.headers ?? {}) });
        res.end(text);
        for (const w of this.waiters.splice(0)) w();
      });
    });
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        this.port = (server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  /** Stop answering: the port refuses connections until up(). */
  async down(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    for (const sock of this.sockets) sock.destroy();
    await new Promise<void>((r) => s.close(() => r()));
  }

  /** Listen again on the same port. */
  async up(): Promise<void> {
    if (!this.server) await this.listen(this.port);
  }

  async stop(): Promise<void> {
    await this.down();
  }

  /** Resolves when `n` accepted requests are recorded; rejects after `ms`. */
  waitForCount(n: number, ms = 10000): Promise<RecordedRequest[]> {
    const deadline = Date.now() + ms;
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.requests.length >= n) return resolve(this.requests.slice(0, n));
        if (Date.now() > deadline) return reject(new Error(`timed out after ${ms} ms waiting for ${n} requests; got ${this.requests.length}: ${this.requests.map((r) => r.path).join(', ')}`));
        const t = setTimeout(check, Math.min(100, Math.max(1, deadline - Date.now())));
        this.waiters.push(() => {
          clearTimeout(t);
          check();
        });
      };
      check();
    });
  }
}

// ---- SMTP ----

export interface CapturedMail {
  from: string;
  to: string[];
  user: string | null;
  secure: boolean;
  raw: string;
  headers: Record<string, string>;
  subject: string;
  text: string;
}

export interface SmtpPeerOptions {
  /** Require AUTH with this user and password (PLAIN/LOGIN). Without it, AUTH is not offered. */
  auth?: { user: string; pass: string };
  /** Offer STARTTLS with this certificate. */
  starttls?: TestCert;
  /** Implicit TLS (SMTPS) with this certificate. */
  implicitTls?: TestCert;
}

export interface TestCert {
  key: string;
  cert: string;
  /** SHA-256 fingerprint, colon-separated hex. */
  fingerprint: string;
  dir: string;
}

/** A self-signed certificate for localhost / 127.0.0.1, made by openssl now. */
export function makeCert(): TestCert {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-smtp-cert-'));
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2',
    '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ], { stdio: 'ignore', timeout: 30000 });
  const cert = fs.readFileSync(path.join(dir, 'cert.pem'), 'utf8');
  return { key: fs.readFileSync(path.join(dir, 'key.pem'), 'utf8'), cert, fingerprint: new X509Certificate(cert).fingerprint256, dir };
}

export class SmtpPeer {
  readonly messages: CapturedMail[] = [];
  readonly authAttempts: Array<{ user: string; ok: boolean }> = [];
  port = 0;
  private waiters: Array<() => void> = [];

  private constructor(private readonly server: SMTPServer) {}

  static async start(o: SmtpPeerOptions = {}): Promise<SmtpPeer> {
    const tlsCert = o.starttls ?? o.implicitTls;
    let peer: SmtpPeer | undefined;
    const options: SMTPServerOptions = {
      logger: false,
      secure: !!o.implicitTls,
      ...(tlsCert ? { key: tlsCert.key, cert: tlsCert.cert } : {}),
      hideSTARTTLS: !o.starttls,
      disabledCommands: [...(o.auth ? [] : ['AUTH']), ...(o.starttls ? [] : ['STARTTLS'])],
      authOptional: !o.auth,
      allowInsecureAuth: false,
      size: 1024 * 1024,
      onAuth(auth, _session, cb) {
        const ok = !!o.auth && auth.username === o.auth.user && auth.password === o.auth.pass;
        peer?.authAttempts.push({ user: auth.username ?? '', ok });
        if (!ok) return cb(new Error('Invalid username or password'));
        cb(null, { user: auth.username });
      },
      onData(stream, session, cb) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8');
          peer?.capture(raw, session);
          cb();
        });
      },
    };
    const server = new SMTPServer(options);
    peer = new SmtpPeer(server);
    server.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      server.server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    peer.port = (server.server.address() as net.AddressInfo).port;
    return peer;
  }

  private capture(raw: string, session: any): void {
    const split = raw.indexOf('\r\n\r\n');
    const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ');
    const headers: Record<string, string> = {};
    for (const line of head.split('\r\n')) {
      const m = /^([^:]+):\s*(.*)$/.exec(line);
      if (m) headers[m[1].toLowerCase()] = m[2];
    }
    let body = raw.slice(split + 4);
    if (/quoted-printable/i.test(headers['content-transfer-encoding'] ?? '')) body = decodeQp(body);
    else if (/base64/i.test(headers['content-transfer-encoding'] ?? '')) body = Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
    this.messages.push({
      from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
      to: session.envelope.rcptTo.map((r: { address: string }) => r.address),
      user: session.user ?? null,
      secure: !!session.secure,
      raw,
      headers,
      subject: decodeWords(headers.subject ?? ''),
      text: body.replace(/\r\n/g, '\n'),
    });
    for (const w of this.waiters.splice(0)) w();
  }

  waitForCount(n: number, ms = 10000): Promise<CapturedMail[]> {
    const deadline = Date.now() + ms;
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.messages.length >= n) return resolve(this.messages.slice(0, n));
        if (Date.now() > deadline) return reject(new Error(`timed out after ${ms} ms waiting for ${n} mails; got ${this.messages.length}`));
        const t = setTimeout(check, 100);
        this.waiters.push(() => {
          clearTimeout(t);
          check();
        });
      };
      check();
    });
  }

  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

function decodeQp(s: string): string {
  const bytes: number[] = [];
  const t = s.replace(/=\r?\n/g, '');
  for (let i = 0; i < t.length; i++) {
    if (t[i] === '=' && /^[0-9A-F]{2}$/i.test(t.slice(i + 1, i + 3))) {
      bytes.push(parseInt(t.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(...Buffer.from(t[i], 'utf8'));
  }
  return Buffer.from(bytes).toString('utf8');
}

/** RFC 2047 encoded words (=?UTF-8?Q?…?= / ?B?), as nodemailer writes non-ASCII subjects. */
function decodeWords(s: string): string {
  return s
    .replace(/\?=\s+=\?/g, '?==?')
    .replace(/=\?([^?]+)\?([QB])\?([^?]*)\?=/gi, (_m, _cs, enc: string, text: string) =>
      enc.toUpperCase() === 'B' ? Buffer.from(text, 'base64').toString('utf8') : decodeQp(text.replace(/_/g, ' ')),
    );
}
