/**
 * TLS settings shared by every client of the package: verification on by default, or a pinned
 * SHA-256 certificate fingerprint for self-signed devices (then the chain is not checked, the pin is).
 */
import * as tls from 'node:tls';

export interface TlsSettings {
  /** Verify the certificate chain and host name (default true). Ignored when a fingerprint is pinned. */
  verify?: boolean;
  /** PEM CA bundle to trust in addition to the system store. */
  ca?: string;
  /** SHA-256 fingerprint of the server certificate, hex with or without colons. */
  fingerprint?: string;
  /** Name to check the certificate against (defaults to the host). */
  servername?: string;
}

/** `AA:bb:01…` or `aabb01…` → `AABB01…`; undefined when empty. Throws on anything else. */
export function normaliseFingerprint(fp: string | undefined): string | undefined {
  if (!fp || !fp.trim()) return undefined;
  const hex = fp.trim().replace(/^sha256[:=]/i, '').replace(/[:\s]/g, '').toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) throw new Error('a SHA-256 fingerprint has 64 hex digits (colons allowed)');
  return hex;
}

export function tlsConnectOptions(host: string, settings: TlsSettings): tls.ConnectionOptions {
  const pin = normaliseFingerprint(settings.fingerprint);
  const isIp = /^[0-9.]+$|:/.test(host);
  return {
    servername: settings.servername || (isIp ? undefined : host),
    ca: settings.ca ? [...tls.rootCertificates, settings.ca] : undefined,
    rejectUnauthorized: pin ? false : settings.verify !== false,
  };
}

/** After the handshake: the error to fail with when a pinned fingerprint does not match, else undefined. */
export function checkPinnedFingerprint(socket: tls.TLSSocket, settings: TlsSettings): Error | undefined {
  const pin = normaliseFingerprint(settings.fingerprint);
  if (!pin) return undefined;
  const cert = socket.getPeerCertificate();
  const seen = cert?.fingerprint256 ? cert.fingerprint256.replace(/:/g, '').toUpperCase() : '';
  if (seen !== pin) {
    return new Error(`certificate fingerprint mismatch: the server presented SHA-256 ${seen || '(none)'}, the pin is ${pin}`);
  }
  return undefined;
}
