/**
 * The MQTT broker config as the editor stores it, validated with zod at the edge.
 */
import { z } from 'zod';
import { numberField } from '../ups/config';
import { normaliseFingerprint } from '../net/tls';
import { BrokerSettings } from './broker';
import { cleanBaseTopic, slug } from './topics';

const bool = (dflt: boolean) => z.preprocess((v) => (v === undefined || v === '' ? dflt : v === true || v === 'true'), z.boolean());

const topicField = (dflt: string, what: string) =>
  z.preprocess((v) => (typeof v === 'string' && v.trim() ? v : dflt), z.string()).superRefine((v, ctx) => {
    try {
      cleanBaseTopic(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `${what}: ${(err as Error).message}` });
    }
  }).transform((v) => cleanBaseTopic(v));

const pem = (what: string) =>
  z.string().optional().default('').refine((v) => !v.trim() || /-----BEGIN [A-Z ]+-----/.test(v), `${what} must be PEM text (-----BEGIN …-----)`);

export const BrokerConfigSchema = z.object({
  name: z.string().optional().default(''),
  host: z.string().trim().min(1, 'host is required'),
  port: numberField(1, 65535, 1883, 'port'),
  tls: bool(false),
  tlsVerify: bool(true),
  tlsFingerprint: z.string().trim().optional().default('').refine((v) => {
    try {
      normaliseFingerprint(v);
      return true;
    } catch {
      return false;
    }
  }, 'a SHA-256 fingerprint has 64 hex digits (colons allowed)'),
  ca: pem('CA certificate'),
  cert: pem('client certificate'),
  clientId: z.string().trim().optional().default('').refine((v) => !/[\s]/.test(v), 'client id must not contain spaces'),
  baseTopic: topicField('ups-orchestrator', 'base topic'),
  discoveryPrefix: topicField('homeassistant', 'discovery prefix'),
  keepalive: numberField(5, 3600, 60, 'keepalive (s)'),
});

export type BrokerConfig = z.infer<typeof BrokerConfigSchema>;

export interface BrokerCredentials {
  username?: string;
  password?: string;
  /** PEM private key of the client certificate. */
  key?: string;
}

export function parseBrokerConfig(raw: unknown): BrokerConfig {
  const r = BrokerConfigSchema.safeParse(raw);
  if (r.success) return r.data;
  throw new Error('invalid MQTT broker configuration: ' + r.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ` : '') + i.message).join('; '));
}

/** The fields that name the peer the username and password are sent to (host, port and how TLS checks it). */
export const BROKER_ENDPOINT_KEYS = ['host', 'port', 'tls', 'tlsVerify', 'tlsFingerprint', 'ca'] as const;

/**
 * Those fields normalised, so a flow that leaves a default out compares equal to the dialog (the TLS
 * checks count only with TLS on).
 */
export function brokerEndpoint(c: BrokerConfig): Record<(typeof BROKER_ENDPOINT_KEYS)[number], unknown> {
  const t = c.tls;
  return { host: c.host.toLowerCase(), port: c.port, tls: t, tlsVerify: t ? c.tlsVerify : '', tlsFingerprint: t ? normaliseFingerprint(c.tlsFingerprint) ?? '' : '', ca: t ? c.ca.trim() : '' };
}

export function brokerSettings(c: BrokerConfig, creds: BrokerCredentials, nodeId: string): BrokerSettings {
  if (c.cert.trim() && !creds.key?.trim()) throw new Error('invalid MQTT broker configuration: a client certificate needs its private key');
  return {
    host: c.host,
    port: c.port,
    tls: c.tls,
    tlsVerify: c.tlsVerify,
    tlsFingerprint: c.tlsFingerprint || undefined,
    ca: c.ca.trim() || undefined,
    cert: c.cert.trim() || undefined,
    key: creds.key?.trim() || undefined,
    username: creds.username || undefined,
    password: creds.password || undefined,
    clientId: c.clientId || `upsorch_${slug(nodeId)}`,
    baseTopic: c.baseTopic,
    discoveryPrefix: c.discoveryPrefix,
    keepalive: c.keepalive,
  };
}
