/**
 * Configuration of the NUT server and the "NUT secondaries" action as the editor stores it,
 * validated with zod at the edge. The server has four UPS slots and four user slots; a slot
 * without a UPS device (or without a username) is unused. Passwords arrive separately (Node-RED
 * credentials) and are checked here too.
 */
import * as net from 'node:net';
import { z } from 'zod';
import { numberField } from '../ups/config';
import { NutUser, UpsmonRole } from './users';
import { parseCidr } from './allow';

export const SLOTS = [1, 2, 3, 4] as const;

/** NUT UPS names a client can write as `name@host`: no `@`, `:`, spaces or quotes. */
export const SERVED_NAME_PATTERN = /^[A-Za-z0-9._+-]{1,64}$/;
/** upsmon and most NUT clients send USERNAME and PASSWORD unquoted: one word of plain ASCII. */
export const USERNAME_PATTERN = /^[A-Za-z0-9._@+-]{1,64}$/;
export const PASSWORD_PATTERN = /^[!$-<>-\[\]-~]{1,64}$/;
const INSTCMD_PATTERN = /^[A-Za-z0-9._-]+$/;

const text = z.preprocess((v) => (v === undefined || v === null ? '' : String(v)), z.string()).transform((s) => s.trim());
const bool = (dflt: boolean) => z.preprocess((v) => (v === undefined || v === '' ? dflt : v === true || v === 'true'), z.boolean());

/** A comma/newline separated list from the editor (or an array). */
export function splitList(v: unknown): string[] {
  const arr = Array.isArray(v) ? v.map(String) : typeof v === 'string' ? v.split(/[,\n\s]+/) : [];
  return arr.map((x) => x.trim()).filter(Boolean);
}

const slotFields: Record<string, z.ZodType> = {};
for (const i of SLOTS) {
  slotFields[`device${i}`] = text;
  slotFields[`upsName${i}`] = text;
  slotFields[`desc${i}`] = text;
  slotFields[`user${i}`] = text;
  slotFields[`role${i}`] = z.preprocess((v) => (v === undefined || v === '' ? 'secondary' : v), z.enum(['secondary', 'primary', 'none'], { error: `user ${i}: role must be secondary, primary or none` }));
  slotFields[`fsd${i}`] = bool(false);
  slotFields[`instcmds${i}`] = text;
}

export const ServerConfigSchema = z.object({
  name: text,
  host: text,
  port: numberField(1, 65535, 3493, 'port'),
  allow: text,
  idleTimeout: numberField(5, 86400, 60, 'idle timeout (s)'),
  maxConnections: numberField(1, 10000, 100, 'connection limit'),
  ...slotFields,
});

export interface ServedSlot {
  device: string;
  name: string;
  description: string;
}

export interface ServerConfig {
  name: string;
  host: string;
  port: number;
  allow: string[];
  idleTimeoutMs: number;
  maxConnections: number;
  ups: ServedSlot[];
  users: NutUser[];
  /** Users entered without a password yet: they cannot log in (a warning, not an error). */
  usersWithoutPassword: string[];
}

export type ServerCredentials = Partial<Record<`password${1 | 2 | 3 | 4}`, string>>;

/** Validate editor config and credentials; throws an Error listing every problem in plain words. */
export function parseServerConfig(raw: unknown, creds: ServerCredentials = {}): ServerConfig {
  const r = ServerConfigSchema.safeParse(raw);
  const problems: string[] = [];
  if (!r.success) {
    throw new Error('invalid NUT server configuration: ' + r.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ` : '') + i.message).join('; '));
  }
  const c = r.data as Record<string, unknown> & z.infer<typeof ServerConfigSchema>;
  if (c.host !== 'localhost' && net.isIP(c.host) === 0) {
    problems.push('host: listen address must be an IP address of this machine (127.0.0.1 for this machine only, 0.0.0.0 or :: for all interfaces) or "localhost"');
  }
  const allow = splitList(c.allow);
  for (const a of allow) {
    try {
      parseCidr(a);
    } catch (e) {
      problems.push(`allow-list: ${(e as Error).message}`);
    }
  }
  const ups: ServedSlot[] = [];
  const names = new Set<string>();
  for (const i of SLOTS) {
    const device = c[`device${i}`] as string;
    if (!device || device === '_ADD_') continue;
    const name = (c[`upsName${i}`] as string) || 'ups';
    if (!SERVED_NAME_PATTERN.test(name)) problems.push(`UPS ${i}: the NUT name "${name}" may contain only letters, digits and . _ + -`);
    else if (names.has(name.toLowerCase())) problems.push(`UPS ${i}: the NUT name "${name}" is used twice (names are not case-sensitive)`);
    names.add(name.toLowerCase());
    ups.push({ device, name, description: c[`desc${i}`] as string });
  }
  if (ups.length === 0) problems.push('choose at least one UPS device to serve');
  const users: NutUser[] = [];
  const usersWithoutPassword: string[] = [];
  for (const i of SLOTS) {
    const username = c[`user${i}`] as string;
    if (!username) continue;
    const password = creds[`password${i}` as keyof ServerCredentials] ?? '';
    if (!USERNAME_PATTERN.test(username)) problems.push(`user ${i}: the username may contain only letters, digits and . _ @ + -`);
    else if (users.some((u) => u.username === username) || usersWithoutPassword.includes(username)) problems.push(`user ${i}: "${username}" is defined twice`);
    // An imported example names its user and leaves the password to be set: serve, but refuse that LOGIN.
    if (!password) {
      usersWithoutPassword.push(username);
      continue;
    }
    if (!PASSWORD_PATTERN.test(password)) problems.push(`user ${i} ("${username}"): NUT clients send the password unquoted, so it must be 1 to 64 printable ASCII characters without spaces and without " # \\ =`);
    const instcmds = splitList(c[`instcmds${i}`]).map((x) => x.toLowerCase());
    const badCmd = instcmds.find((x) => !INSTCMD_PATTERN.test(x));
    if (badCmd) problems.push(`user ${i}: "${badCmd}" is not an instant command name (e.g. test.failure.start, or all)`);
    users.push({ username, password, upsmon: c[`role${i}`] as UpsmonRole, fsd: c[`fsd${i}`] as boolean, instcmds });
  }
  if (problems.length) throw new Error('invalid NUT server configuration: ' + problems.join('; '));
  return {
    name: c.name,
    host: c.host,
    port: c.port as number,
    allow,
    idleTimeoutMs: (c.idleTimeout as number) * 1000,
    maxConnections: c.maxConnections as number,
    ups,
    users,
    usersWithoutPassword,
  };
}

/** Listening on every interface without an allow-list deserves a warning in the log. */
export function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '::0';
}

/** What a NAS or upsmon needs: `ups@192.168.1.10:3493`. */
export function connectionString(ups: string, host: string, port: number): string {
  const h = net.isIP(host) === 6 ? `[${host}]` : host;
  return port === 3493 ? `${ups}@${h}` : `${ups}@${h}:${port}`;
}

export const SecondariesConfigSchema = z.object({
  name: text,
  server: z.string({ error: 'no NUT server selected' }).min(1, 'no NUT server selected'),
  ups: text,
  timeout: numberField(1, 3600, 120, 'wait for secondaries (s)'),
  clearOnStartup: bool(true),
  expected: text,
});

/** Who must be logged in when FSD is raised: at least `count` clients, and each of `names`. */
export interface ExpectedClients {
  count: number;
  /** Each a username, an address, or `username@address`. */
  names: string[];
}

export interface SecondariesConfig {
  name: string;
  server: string;
  /** NUT names; empty = every UPS the server serves. */
  ups: string[];
  timeoutMs: number;
  clearOnStartup: boolean;
  expected: ExpectedClients;
}

const EXPECTED_NAME = /^(?:[A-Za-z0-9._@+-]{1,64}|[A-Za-z0-9._+-]{1,64}@[0-9A-Fa-f:.]+|[0-9A-Fa-f:.]+)$/;

/** "2" (at least two clients) or "nas1, 192.168.1.20, monuser@192.168.1.21" (each of these). */
export function parseExpected(text: string): ExpectedClients {
  const t = text.trim();
  if (!t) return { count: 0, names: [] };
  if (/^\d+$/.test(t)) {
    const n = Number(t);
    if (n > 1000) throw new Error('expected clients: at most 1000');
    return { count: n, names: [] };
  }
  const names = splitList(t);
  const bad = names.find((n) => !EXPECTED_NAME.test(n));
  if (bad) throw new Error(`expected clients: "${bad}" is neither a number, a NUT username, an address nor username@address`);
  return { count: 0, names: [...new Set(names)] };
}

export function parseSecondariesConfig(raw: unknown): SecondariesConfig {
  const r = SecondariesConfigSchema.safeParse(raw);
  if (!r.success) {
    throw new Error('invalid NUT secondaries configuration: ' + r.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ` : '') + i.message).join('; '));
  }
  const ups = splitList(r.data.ups);
  const bad = ups.find((u) => !SERVED_NAME_PATTERN.test(u));
  if (bad) throw new Error(`invalid NUT secondaries configuration: "${bad}" is not a NUT UPS name`);
  let expected: ExpectedClients;
  try {
    expected = parseExpected(r.data.expected);
  } catch (e) {
    throw new Error(`invalid NUT secondaries configuration: ${(e as Error).message}`);
  }
  return { name: r.data.name, server: r.data.server, ups, timeoutMs: (r.data.timeout as number) * 1000, clearOnStartup: r.data.clearOnStartup as boolean, expected };
}
