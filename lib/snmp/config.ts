/**
 * The SNMP part of the UPS device configuration (lib/ups/config.ts spreads these fields into its
 * schema): editor values validated with zod, and the factory for an SnmpSource. Secrets (community,
 * v3 keys) are Node-RED credentials and arrive separately.
 */
import * as net from 'node:net';
import { z } from 'zod';
import { AUTH_PROTOCOLS, PRIV_PROTOCOLS, AuthProtocol, PrivProtocol, SecurityLevel, SnmpTarget } from './client';
import { ProfileId } from './profiles';
import { SnmpSource } from './source';

const numberField = (min: number, max: number, dflt: number, what: string) =>
  z.preprocess(
    (v) => (v === '' || v === undefined || v === null ? dflt : typeof v === 'string' ? Number(v) : v),
    z.number({ error: `${what} must be a number` }).refine((n) => Number.isFinite(n) && n >= min && n <= max, `${what} must be between ${min} and ${max}`),
  );
const bool = z.preprocess((v) => v === true || v === 'true', z.boolean());

/** Fields of the device config that only SNMP uses (all with defaults, so NUT/sim configs stay valid). */
export const SNMP_CONFIG_FIELDS = {
  snmpPort: numberField(1, 65535, 161, 'SNMP port'),
  snmpVersion: z.enum(['v1', 'v2c', 'v3'], { error: 'SNMP version must be v1, v2c or v3' }).default('v2c'),
  snmpRetries: numberField(0, 10, 1, 'SNMP retries'),
  snmpProfile: z.enum(['auto', 'ietf', 'apc', 'eaton', 'cyberpower'], { error: 'MIB profile must be auto, ietf, apc, eaton or cyberpower' }).default('auto'),
  snmpUser: z.string().trim().optional().default(''),
  snmpSecLevel: z.enum(['noAuthNoPriv', 'authNoPriv', 'authPriv'], { error: 'security level must be noAuthNoPriv, authNoPriv or authPriv' }).default('authPriv'),
  snmpAuthProtocol: z.enum(AUTH_PROTOCOLS as [AuthProtocol, ...AuthProtocol[]], { error: `authentication protocol must be one of ${AUTH_PROTOCOLS.join(', ')}` }).default('sha'),
  snmpPrivProtocol: z.enum(PRIV_PROTOCOLS as [PrivProtocol, ...PrivProtocol[]], { error: `privacy protocol must be one of ${PRIV_PROTOCOLS.join(', ')}` }).default('aes'),
  snmpContext: z.string().trim().optional().default(''),
  snmpTraps: bool.default(false),
  snmpTrapAddress: z.string().trim().optional().default('127.0.0.1').transform((v) => v || '127.0.0.1'),
  snmpTrapPort: numberField(1, 65535, 16200, 'trap port'),
};

export interface SnmpConfig {
  host: string;
  timeout: number;
  snmpPort: number;
  snmpVersion: 'v1' | 'v2c' | 'v3';
  snmpRetries: number;
  snmpProfile: ProfileId | 'auto';
  snmpUser: string;
  snmpSecLevel: SecurityLevel;
  snmpAuthProtocol: AuthProtocol;
  snmpPrivProtocol: PrivProtocol;
  snmpContext: string;
  snmpTraps: boolean;
  snmpTrapAddress: string;
  snmpTrapPort: number;
}

export interface SnmpCredentials {
  community?: string;
  authKey?: string;
  privKey?: string;
}

/** Cross-field checks for source "snmp"; issues go to zod's context. */
export function snmpConfigIssues(c: SnmpConfig): Array<{ path: string; message: string }> {
  const issues: Array<{ path: string; message: string }> = [];
  if (!c.host) issues.push({ path: 'host', message: 'host is required for an SNMP UPS' });
  if (c.snmpVersion === 'v3' && !c.snmpUser) issues.push({ path: 'snmpUser', message: 'SNMPv3 needs a user name' });
  // The listener binds to it: a host name is not an address of this machine (and fails late).
  if (c.snmpTraps && !net.isIP(c.snmpTrapAddress)) {
    issues.push({ path: 'snmpTrapAddress', message: `the trap listen address must be an IP address of this machine (0.0.0.0 for all), not "${c.snmpTrapAddress}"` });
  }
  return issues;
}

/** The agent to talk to (address, version, credentials, timeouts) from the device config. */
export function snmpTarget(c: SnmpConfig, creds: SnmpCredentials, timeoutMs = c.timeout * 1000): SnmpTarget {
  return {
    host: c.host,
    port: c.snmpPort,
    version: c.snmpVersion,
    community: c.snmpVersion === 'v3' ? undefined : creds.community || 'public',
    user: c.snmpVersion === 'v3'
      ? { name: c.snmpUser, level: c.snmpSecLevel, authProtocol: c.snmpAuthProtocol, authKey: creds.authKey, privProtocol: c.snmpPrivProtocol, privKey: creds.privKey }
      : undefined,
    context: c.snmpContext,
    timeoutMs,
    retries: c.snmpRetries,
  };
}

export function createSnmpSource(c: SnmpConfig, creds: SnmpCredentials): SnmpSource {
  return new SnmpSource({
    ...snmpTarget(c, creds),
    profile: c.snmpProfile,
    traps: c.snmpTraps ? { address: c.snmpTrapAddress, port: c.snmpTrapPort } : null,
  });
}
