/**
 * The Home Assistant server config as the editor stores it, validated with zod at the edge.
 */
import { X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { normaliseFingerprint } from '../net/tls';
import { HaClientOptions, websocketUrl } from './client';

const bool = (dflt: boolean) => z.preprocess((v) => (v === undefined || v === '' ? dflt : v === true || v === 'true'), z.boolean());

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * What is wrong with a CA certificate text (one or more PEM certificates), or null when it is fine
 * or empty. Each certificate is parsed, so a cut-off paste is refused here, not as a TLS failure.
 */
export function caProblem(text: string): string | null {
  const t = text.trim();
  if (!t) return null;
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(t)) return 'this is a private key: paste the CA certificate (-----BEGIN CERTIFICATE-----), never a key';
  const blocks = t.match(CERT_BLOCK);
  if (!blocks) return 'must be PEM text: -----BEGIN CERTIFICATE----- … -----END CERTIFICATE-----';
  for (const [i, b] of blocks.entries()) {
    try {
      new X509Certificate(b);
    } catch {
      return `${blocks.length > 1 ? `certificate ${i + 1}` : 'the certificate'} cannot be read (cut off or changed while copying?)`;
    }
  }
  return null;
}

export const HaServerConfigSchema = z.object({
  name: z.string().optional().default(''),
  url: z.string().trim().min(1, 'the Home Assistant URL is required (e.g. http://homeassistant.local:8123)').superRefine((v, ctx) => {
    try {
      websocketUrl(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  }),
  tlsVerify: bool(true),
  tlsFingerprint: z.string().trim().optional().default('').refine((v) => {
    try {
      normaliseFingerprint(v);
      return true;
    } catch {
      return false;
    }
  }, 'a SHA-256 fingerprint has 64 hex digits (colons allowed)'),
  /** PEM CA certificate(s) trusted besides the system store, for wss:// with verification. */
  ca: z.preprocess((v) => (typeof v === 'string' ? v : ''), z.string()).superRefine((v, ctx) => {
    const problem = caProblem(v);
    if (problem) ctx.addIssue({ code: 'custom', message: `CA certificate: ${problem}` });
  }),
});

export type HaServerConfig = z.infer<typeof HaServerConfigSchema>;

export function parseHaServerConfig(raw: unknown): HaServerConfig {
  const r = HaServerConfigSchema.safeParse(raw);
  if (r.success) return r.data;
  throw new Error('invalid Home Assistant server configuration: ' + r.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ` : '') + i.message).join('; '));
}

/** The fields that name the peer the token is sent to (the URL and how TLS checks it). */
export const HA_ENDPOINT_KEYS = ['url', 'tlsVerify', 'tlsFingerprint', 'ca'] as const;

/** Those fields normalised (`http://h:8123` and `ws://h:8123/api/websocket` are the same peer). */
export function haEndpoint(c: HaServerConfig): Record<(typeof HA_ENDPOINT_KEYS)[number], unknown> {
  const url = websocketUrl(c.url);
  const t = url.startsWith('wss:');
  return { url, tlsVerify: t ? c.tlsVerify : '', tlsFingerprint: t ? normaliseFingerprint(c.tlsFingerprint) ?? '' : '', ca: t ? c.ca.trim() : '' };
}

export function haClientOptions(c: HaServerConfig, token: string | undefined): HaClientOptions {
  if (!token?.trim()) throw new Error('no access token: create a long-lived access token in Home Assistant (your profile → Security) and enter it here');
  return { url: c.url, token: token.trim(), tls: { verify: c.tlsVerify, fingerprint: c.tlsFingerprint || undefined, ca: c.ca.trim() || undefined } };
}
