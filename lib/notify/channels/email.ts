/**
 * Email over SMTP with nodemailer: STARTTLS (port 587, required: never falls back to plain text),
 * implicit TLS (465) or plain (25, only for a relay on a trusted network); certificate verification
 * on by default, or a pinned SHA-256 fingerprint for a self-signed server; AUTH with user and
 * password from the channel's credentials.
 *
 * The TCP connection is opened here (nodemailer's getSocket) so that closing the channel can cut a
 * send short. A pinned certificate is checked in two steps, because nodemailer's STARTTLS offers no
 * hook between handshake and AUTH: a probe reads the server's certificate and compares it with the
 * pin, then the real session trusts exactly that certificate (as its only CA) and checks the
 * fingerprint again; a server presenting any other certificate fails the handshake before AUTH.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import * as nodemailer from 'nodemailer';
import { normaliseFingerprint } from '../../net/tls';
import { Notification, Template } from '../format';
import { DeliveryError, DeliveryNote, Driver } from '../queue';
import { oneLine, plain, render } from '../template';

export type SmtpSecurity = 'starttls' | 'tls' | 'none';

export interface EmailSettings {
  host: string;
  port: number;
  security: SmtpSecurity;
  tlsVerify: boolean;
  fingerprint?: string;
  from: string;
  to: string[];
  user?: string;
  password?: string;
  timeoutMs: number;
}

export interface EmailPayload {
  subject: string;
  text: string;
}

export class EmailDriver implements Driver<EmailPayload> {
  readonly kind = 'email' as const;
  readonly label: string;
  private pinnedCa: string[] | null = null;

  constructor(private readonly s: EmailSettings) {
    this.label = `mail to ${s.to.join(', ')} via ${s.host}:${s.port}`;
  }

  prepare(n: Notification, t: Template): EmailPayload {
    const subject = render(t.title, n.ctx, oneLine).trim() || 'UPS orchestrator';
    const text = render(t.body, n.ctx, plain).trim() + '\n\n-- \nUPS orchestrator (Node-RED)\n';
    return { subject: subject.slice(0, 250), text };
  }

  async deliver(p: EmailPayload, signal: AbortSignal): Promise<void | DeliveryNote> {
    const sockets = new Set<net.Socket>();
    const onAbort = () => sockets.forEach((s) => s.destroy());
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const pin = normaliseFingerprint(this.s.fingerprint);
      if (pin && this.s.security !== 'none' && !this.pinnedCa) {
        this.pinnedCa = await probeCertificate(this.s, pin, sockets, signal);
      }
      const transport = nodemailer.createTransport({
        host: this.s.host,
        port: this.s.port,
        secure: this.s.security === 'tls',
        requireTLS: this.s.security === 'starttls',
        ignoreTLS: this.s.security === 'none',
        auth: this.s.user ? { user: this.s.user, pass: this.s.password ?? '' } : undefined,
        connectionTimeout: this.s.timeoutMs,
        greetingTimeout: this.s.timeoutMs,
        socketTimeout: this.s.timeoutMs,
        tls: this.tlsOptions(pin),
        getSocket: (_opts: unknown, cb: (err: Error | null, socketOptions: unknown) => void) => {
          const socket = net.connect({ host: this.s.host, port: this.s.port });
          sockets.add(socket);
          if (signal.aborted) socket.destroy();
          socket.once('connect', () => cb(null, { connection: socket }));
          socket.once('error', (err) => cb(err, null));
        },
      } as nodemailer.TransportOptions);
      const sending = transport.sendMail({ from: this.s.from, to: this.s.to, subject: p.subject, text: p.text });
      const aborted = new Promise<never>((_r, reject) => {
        if (signal.aborted) reject(signal.reason);
        signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
      aborted.catch(() => undefined);
      try {
        const info = await Promise.race([sending, aborted]);
        const why = new Map(((info as { rejectedErrors?: Array<{ recipient?: string; response?: string }> }).rejectedErrors ?? []).map((e) => [e.recipient ?? '', (e.response ?? '').replace(/\s+/g, ' ').trim().slice(0, 120)]));
        const refused = (info.rejected ?? []).map(address).map((a) => (why.get(a) ? `${a} (${why.get(a)})` : a));
        // Some recipients refused: the others have the mail, so it is delivered (sending it again
        // would repeat it to them until it expires); say who did not get it. All refused: a failure.
        if (refused.length && !(info.accepted ?? []).length) throw new DeliveryError(`the mail server refused every recipient (${refused.join(', ')}), check "to"`, 'config');
        if (refused.length) return { warning: `the mail server refused ${refused.join(', ')}` };
      } catch (err) {
        sending.catch(() => undefined);
        // A certificate that changed since the probe: read it again next time.
        if (/certificate|fingerprint/i.test((err as Error).message)) this.pinnedCa = null;
        throw signal.aborted ? signal.reason : smtpError(err, this.s);
      } finally {
        transport.close();
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      sockets.forEach((s) => s.destroy());
    }
  }

  private tlsOptions(pin: string | undefined): tls.ConnectionOptions {
    const servername = net.isIP(this.s.host) ? undefined : this.s.host;
    if (pin && this.pinnedCa) {
      return {
        servername,
        ca: this.pinnedCa,
        rejectUnauthorized: true,
        // The pin replaces the host name check: only this exact certificate is accepted.
        checkServerIdentity: (_host, cert) => (fingerprintOf(cert) === pin ? undefined : new Error(`certificate fingerprint mismatch: the server presented SHA-256 ${fingerprintOf(cert)}, the pin is ${pin}`)),
      };
    }
    return { servername, rejectUnauthorized: this.s.tlsVerify };
  }
}

function address(a: string | { address?: string }): string {
  return typeof a === 'string' ? a : a.address ?? String(a);
}

function fingerprintOf(cert: tls.PeerCertificate): string {
  return (cert.fingerprint256 ?? '').replace(/:/g, '').toUpperCase();
}

function smtpError(err: unknown, s: EmailSettings): DeliveryError {
  if (err instanceof DeliveryError) return err;
  const e = err as Error & { code?: string; responseCode?: number; response?: string; command?: string };
  const code = e.code ?? '';
  const where = `${s.host}:${s.port}`;
  const response = e.response ? e.response.replace(/\s+/g, ' ').trim().slice(0, 200) : '';
  // The advice first: a node's status shows only the start of it.
  if (code === 'EAUTH') return new DeliveryError(`SMTP authentication failed, check user and password (${where}: ${response || e.message})`, 'config');
  if (e.responseCode === 530 || /authentication required/i.test(response)) {
    return new DeliveryError(`the SMTP server requires authentication, set user and password (${where}: ${response || e.responseCode})`, 'config');
  }
  if (/certificate|self[- ]signed|fingerprint|UNABLE_TO|CERT_/i.test(e.message)) {
    return new DeliveryError(`TLS certificate not accepted, pin its SHA-256 fingerprint if it is self-signed (${where}: ${e.message})`, 'config');
  }
  if (code === 'ETLS' || /STARTTLS/i.test(e.message)) return new DeliveryError(`TLS failed, check the security setting: STARTTLS on 587, TLS on 465 (${where}: ${e.message})`, 'config');
  if (code === 'EENVELOPE' || code === 'EMESSAGE') {
    const rc = e.responseCode ?? 0;
    if (rc >= 400 && rc < 500) return new DeliveryError(`the SMTP server refused for now (${where}: ${response || e.message})`, 'retry');
    return new DeliveryError(`the SMTP server refused the message, check from and to (${where}: ${response || e.message})`, code === 'EENVELOPE' ? 'config' : 'rejected');
  }
  if (code === 'EDNS') return new DeliveryError(`SMTP host name not found (${where}: ${e.message})`, 'retry');
  return new DeliveryError(`cannot send mail via ${where}: ${e.message}`, 'retry');
}

/**
 * Read the server's certificate chain (after STARTTLS, or at once for implicit TLS) and compare the
 * leaf's SHA-256 fingerprint with the pin. Returns the chain as PEM, to be trusted as the only CA.
 */
export function probeCertificate(s: EmailSettings, pin: string, sockets: Set<net.Socket>, signal: AbortSignal): Promise<string[]> {
  const where = `${s.host}:${s.port}`;
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err: Error | null, pems?: string[]) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      plainSocket.destroy();
      if (err) reject(err);
      else resolve(pems as string[]);
    };
    const timer = setTimeout(() => finish(new DeliveryError(`${where}: no TLS handshake within ${s.timeoutMs / 1000} s`, 'retry')), s.timeoutMs);
    const plainSocket = net.connect({ host: s.host, port: s.port });
    sockets.add(plainSocket);
    if (signal.aborted) plainSocket.destroy();
    plainSocket.once('error', (err) => finish(new DeliveryError(`cannot send mail via ${where}: ${err.message}`, 'retry')));
    plainSocket.once('close', () => finish(new DeliveryError(`cannot send mail via ${where}: connection closed`, 'retry')));
    const handshake = () => {
      const t = tls.connect({ socket: plainSocket, servername: net.isIP(s.host) ? undefined : s.host, rejectUnauthorized: false });
      sockets.add(t);
      t.once('error', (err) => finish(new DeliveryError(`${where}: TLS failed: ${err.message}`, 'retry')));
      t.once('secureConnect', () => {
        const chain: string[] = [];
        let cert = t.getPeerCertificate(true) as tls.DetailedPeerCertificate;
        const leaf = fingerprintOf(cert);
        const seen = new Set<string>();
        while (cert?.raw && !seen.has(cert.fingerprint256)) {
          seen.add(cert.fingerprint256);
          chain.push(toPem(cert.raw));
          cert = cert.issuerCertificate;
        }
        t.destroy();
        if (leaf !== pin) finish(new DeliveryError(`certificate fingerprint mismatch at ${where}: the server presented SHA-256 ${leaf || '(none)'}, the pin is ${pin}`, 'config'));
        else finish(null, chain);
      });
    };
    if (s.security === 'tls') {
      plainSocket.once('connect', handshake);
      return;
    }
    // STARTTLS: greeting, EHLO, STARTTLS, then the handshake on the same connection.
    let buf = '';
    let step: 'greeting' | 'ehlo' | 'starttls' = 'greeting';
    const onData = (chunk: Buffer) => {
      buf += chunk.toString('latin1');
      for (;;) {
        const m = /^(\d{3})([ -])(.*)\r?\n/m.exec(buf);
        if (!m) return;
        buf = buf.slice(m.index + m[0].length);
        if (m[2] === '-') continue;
        const code = Number(m[1]);
        if (step === 'greeting') {
          if (code !== 220) return finish(new DeliveryError(`${where}: unexpected greeting: ${m[0].trim()}`, 'retry'));
          step = 'ehlo';
          plainSocket.write('EHLO upsorch.local\r\n');
        } else if (step === 'ehlo') {
          if (code !== 250) return finish(new DeliveryError(`${where}: EHLO refused: ${m[0].trim()}`, 'retry'));
          step = 'starttls';
          plainSocket.write('STARTTLS\r\n');
        } else {
          if (code !== 220) return finish(new DeliveryError(`the SMTP server does not offer STARTTLS (${where}: ${m[0].trim()})`, 'config'));
          plainSocket.removeListener('data', onData);
          handshake();
          return;
        }
      }
    };
    plainSocket.on('data', onData);
  });
}

function toPem(der: Buffer): string {
  const b64 = der.toString('base64').match(/.{1,64}/g)?.join('\n') ?? '';
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}
