/**
 * The Home Assistant server config as the editor stores it, validated with zod at the edge.
 */
import { z } from 'zod';
import { normaliseFingerprint } from '../net/tls';
import { HaClientOptions, websocketUrl } from './client';

const bool = (dflt: boolean) => z.preprocess((v) => (v === undefined || v === '' ? dflt : v === true || v === 'true'), z.boolean());

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
});

export type HaServerConfig = z.infer<typeof HaServerConfigSchema>;

export function parseHaServerConfig(raw: unknown): HaServerConfig {
  const r = HaServerConfigSchema.safeParse(raw);
  if (r.success) return r.data;
  throw new Error('invalid Home Assistant server configuration: ' + r.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ` : '') + i.message).join('; '));
}

/** The fields that name the peer the token is sent to (the URL and how TLS checks it). */
export const HA_ENDPOINT_KEYS = ['url', 'tlsVerify', 'tlsFingerprint'] as const;

/** Those fields normalised (`http://h:8123` and `ws://h:8123/api/websocket` are the same peer). */
export function haEndpoint(c: HaServerConfig): Record<(typeof HA_ENDPOINT_KEYS)[number], unknown> {
  const url = websocketUrl(c.url);
  const t = url.startsWith('wss:');
  return { url, tlsVerify: t ? c.tlsVerify : '', tlsFingerprint: t ? normaliseFingerprint(c.tlsFingerprint) ?? '' : '' };
}

export function haClientOptions(c: HaServerConfig, token: string | undefined): HaClientOptions {
  if (!token?.trim()) throw new Error('no access token: create a long-lived access token in Home Assistant (your profile → Security) and enter it here');
  return { url: c.url, token: token.trim(), tls: { verify: c.tlsVerify, fingerprint: c.tlsFingerprint || undefined } };
}
