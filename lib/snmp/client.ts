/**
 * A small SNMP manager over npm `net-snmp`: v1 and v2c (community) and v3 (USM), GET and SET with
 * typed values, and failures turned into errors that say what to check. One UDP socket per client,
 * opened on first use, closed by close() (which also fails requests in flight at once).
 *
 * Missing objects: v2c/v3 agents answer noSuchObject/noSuchInstance per varbind; those come back as
 * `null` (absent), never as 0. A v1 agent fails the whole request with noSuchName and names the
 * object; get() then drops that object, marks it absent and asks again (bounded by the list length).
 * An agent that answers tooBig (its answer would not fit a datagram) is asked in halves.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const snmp = require('net-snmp');
import { installDesFallback } from './des';

installDesFallback(snmp);

export type SnmpVersion = 'v1' | 'v2c' | 'v3';
export type SecurityLevel = 'noAuthNoPriv' | 'authNoPriv' | 'authPriv';
export type AuthProtocol = 'md5' | 'sha' | 'sha224' | 'sha256' | 'sha384' | 'sha512';
/** aes = AES-128 (RFC 3826); aes256b / aes256r = AES-256 with Blumenthal / Reeder (Cisco) key extension. */
export type PrivProtocol = 'des' | 'aes' | 'aes256b' | 'aes256r';

export const AUTH_PROTOCOLS: readonly AuthProtocol[] = ['md5', 'sha', 'sha224', 'sha256', 'sha384', 'sha512'];
export const PRIV_PROTOCOLS: readonly PrivProtocol[] = ['des', 'aes', 'aes256b', 'aes256r'];

export interface SnmpV3User {
  name: string;
  level: SecurityLevel;
  authProtocol?: AuthProtocol;
  authKey?: string;
  privProtocol?: PrivProtocol;
  privKey?: string;
}

export interface SnmpTarget {
  host: string;
  port: number;
  version: SnmpVersion;
  /** v1/v2c. */
  community?: string;
  /** v3. */
  user?: SnmpV3User;
  /** v3 context name ('' = default context). */
  context?: string;
  /** Per attempt (ms). */
  timeoutMs: number;
  /** Extra attempts after the first. */
  retries: number;
}

/** What an SNMP value is, reduced to what a UPS profile needs to know. */
export type SnmpKind = 'int' | 'gauge' | 'counter' | 'timeticks' | 'string' | 'oid' | 'ip' | 'other';

export interface SnmpValue {
  kind: SnmpKind;
  /** The ASN.1 type name as net-snmp calls it (Integer, Gauge, TimeTicks, OctetString, OID…). */
  type: string;
  /** Numbers for the integer kinds, strings for string/oid/ip; null for `other`. */
  value: number | string | null;
}

export type FailureKind = 'timeout' | 'auth' | 'agent' | 'config' | 'closed' | 'network';

export class SnmpError extends Error {
  constructor(message: string, readonly kind: FailureKind, readonly oid?: string) {
    super(message);
    this.name = 'SnmpError';
  }
}

export interface SetVarbind {
  oid: string;
  type: 'int' | 'gauge' | 'timeticks' | 'string' | 'oid';
  value: number | string;
}

const NUMERIC_KIND: Record<number, SnmpKind> = {
  [snmp.ObjectType.Integer]: 'int',
  [snmp.ObjectType.Gauge]: 'gauge',
  [snmp.ObjectType.Counter]: 'counter',
  [snmp.ObjectType.TimeTicks]: 'timeticks',
};

/** A varbind as net-snmp hands it over → SnmpValue, or null when the agent has no such object. */
export function decodeVarbind(vb: { oid: string; type: number; value: unknown }): SnmpValue | null {
  if (snmp.isVarbindError(vb)) return null;
  const type = String(snmp.ObjectType[vb.type] ?? vb.type);
  const numeric = NUMERIC_KIND[vb.type];
  if (numeric && typeof vb.value === 'number') return { kind: numeric, type, value: vb.value };
  if (vb.type === snmp.ObjectType.Counter64 && Buffer.isBuffer(vb.value)) {
    let n = 0n;
    for (const b of vb.value) n = (n << 8n) | BigInt(b);
    return { kind: 'counter', type, value: Number(n) };
  }
  if (vb.type === snmp.ObjectType.OctetString) {
    const text = Buffer.isBuffer(vb.value) ? vb.value.toString('utf8') : String(vb.value ?? '');
    // Display strings: drop NULs and control characters some agents pad with.
    return { kind: 'string', type, value: text.replace(/[\u0000-\u001f\u007f]/g, '').trim() };
  }
  if (vb.type === snmp.ObjectType.OID) return { kind: 'oid', type, value: String(vb.value) };
  if (vb.type === snmp.ObjectType.IpAddress) return { kind: 'ip', type, value: String(vb.value) };
  return { kind: 'other', type, value: null };
}

const LEVEL: Record<SecurityLevel, number> = {
  noAuthNoPriv: snmp.SecurityLevel.noAuthNoPriv,
  authNoPriv: snmp.SecurityLevel.authNoPriv,
  authPriv: snmp.SecurityLevel.authPriv,
};

/** Checks a target before any packet is sent; throws SnmpError('config') with a plain message. */
export function checkTarget(t: SnmpTarget): void {
  if (t.version === 'v3') {
    const u = t.user;
    if (!u || !u.name) throw new SnmpError('SNMPv3 needs a user name', 'config');
    if (u.level !== 'noAuthNoPriv') {
      if (!u.authProtocol || !AUTH_PROTOCOLS.includes(u.authProtocol)) throw new SnmpError(`SNMPv3 user "${u.name}": choose an authentication protocol`, 'config');
      if (!u.authKey || u.authKey.length < 8) throw new SnmpError(`SNMPv3 user "${u.name}": the authentication key must have at least 8 characters (RFC 3414)`, 'config');
    }
    if (u.level === 'authPriv') {
      if (!u.privProtocol || !PRIV_PROTOCOLS.includes(u.privProtocol)) throw new SnmpError(`SNMPv3 user "${u.name}": choose a privacy protocol`, 'config');
      if (!u.privKey || u.privKey.length < 8) throw new SnmpError(`SNMPv3 user "${u.name}": the privacy key must have at least 8 characters (RFC 3414)`, 'config');
    }
  } else if (!t.community) {
    throw new SnmpError(`SNMP ${t.version} needs a community`, 'config');
  }
}

export function describeTarget(t: SnmpTarget): string {
  return `${t.host}:${t.port} (SNMP ${t.version}${t.version === 'v3' && t.user ? ` user "${t.user.name}"` : ''})`;
}

export class SnmpClient {
  private session: any = null;
  private closed = false;
  private readonly inFlight = new Set<(err: Error) => void>();

  constructor(readonly target: SnmpTarget) {
    checkTarget(target);
  }

  get where(): string {
    return describeTarget(this.target);
  }

  private open(): any {
    if (this.closed) throw new SnmpError('SNMP client closed', 'closed');
    if (this.session) return this.session;
    const t = this.target;
    const transport = t.host.includes(':') ? 'udp6' : 'udp4';
    const options = { port: t.port, retries: t.retries, timeout: t.timeoutMs, transport, idBitsSize: 32, backoff: 1 };
    let session: any;
    if (t.version === 'v3') {
      const u = t.user!;
      const user: Record<string, unknown> = { name: u.name, level: LEVEL[u.level] };
      if (u.level !== 'noAuthNoPriv') {
        user.authProtocol = snmp.AuthProtocols[u.authProtocol!];
        user.authKey = u.authKey;
      }
      if (u.level === 'authPriv') {
        user.privProtocol = snmp.PrivProtocols[u.privProtocol!];
        user.privKey = u.privKey;
      }
      session = snmp.createV3Session(t.host, user, { ...options, version: snmp.Version3, context: t.context ?? '' });
    } else {
      session = snmp.createSession(t.host, t.community, { ...options, version: t.version === 'v1' ? snmp.Version1 : snmp.Version2c });
    }
    // A socket error must never become an unhandled 'error' event; requests in flight fail with it.
    session.on('error', (err: Error) => this.failAll(new SnmpError(`SNMP socket error talking to ${this.where}: ${err.message}`, 'network')));
    this.session = session;
    return session;
  }

  private failAll(err: Error): void {
    for (const reject of [...this.inFlight]) reject(err);
    this.inFlight.clear();
    this.dropSession();
  }

  private dropSession(): void {
    const s = this.session;
    this.session = null;
    if (s) {
      try {
        s.close();
      } catch {
        /* already closed */
      }
    }
  }

  /** One request; rejects with SnmpError. The overall bound is (retries + 1) × timeout plus a margin. */
  private request<T>(what: string, run: (session: any, cb: (err: Error | null, result?: T) => void) => void, signal?: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) return reject(new SnmpError(`${what}: aborted`, 'closed'));
      let session: any;
      try {
        session = this.open();
      } catch (err) {
        return reject(err);
      }
      let settled = false;
      const finish = (err: Error | null, result?: T) => {
        if (settled) return;
        settled = true;
        clearTimeout(guard);
        this.inFlight.delete(fail);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(result as T);
      };
      const fail = (err: Error) => finish(err);
      const onAbort = () => {
        finish(new SnmpError(`${what}: aborted`, 'closed'));
        // The only way to abandon a net-snmp request is to close its socket; the next request reopens.
        this.dropSession();
      };
      // net-snmp has its own timeout; this guard only catches a request it would never finish.
      const bound = (this.target.retries + 1) * this.target.timeoutMs + 2000;
      const guard = setTimeout(() => {
        finish(new SnmpError(`no answer from ${this.where} within ${bound} ms`, 'timeout'));
        this.dropSession();
      }, bound);
      this.inFlight.add(fail);
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        run(session, (err, result) => finish(err ? this.classify(err, what) : null, result));
      } catch (err) {
        finish(this.classify(err as Error, what));
      }
    });
  }

  /** Turn a net-snmp error into one that says what to check. */
  classify(err: Error, what: string): SnmpError {
    if (err instanceof SnmpError) return err;
    const name = (err as { name?: string }).name ?? err.constructor?.name;
    const t = this.target;
    const msg = err.message ?? String(err);
    if (name === 'RequestTimedOutError') {
      const who = t.version === 'v3'
        ? `the SNMPv3 user "${t.user?.name}", its keys and security level`
        : `the community (an agent ignores requests with a wrong community)`;
      return new SnmpError(
        `no answer from ${t.host}:${t.port} (SNMP ${t.version}) within ${t.timeoutMs * (t.retries + 1)} ms: check ${who}, the agent's access list (allowed managers), host, port and firewall`,
        'timeout',
      );
    }
    if (name === 'ResponseInvalidError') {
      const code = (err as { code?: number }).code;
      if (code === snmp.ResponseInvalidCode.EAuthFailure) {
        if (/Unsupported Security Level/i.test(msg)) {
          return new SnmpError(`the agent refused security level ${t.user?.level} for SNMPv3 user "${t.user?.name}": use the level the user is configured with on the agent`, 'auth');
        }
        if (/digest/i.test(msg)) {
          return new SnmpError(`SNMPv3 authentication failed for user "${t.user?.name}": wrong authentication key or protocol (${t.user?.authProtocol})`, 'auth');
        }
        return new SnmpError(`SNMPv3 authentication failed for user "${t.user?.name}": ${msg}`, 'auth');
      }
      if (code === snmp.ResponseInvalidCode.ECouldNotDecrypt) {
        return new SnmpError(`SNMPv3 answer from ${t.host}:${t.port} could not be decrypted: wrong privacy key or protocol, or wrong authentication protocol, for user "${t.user?.name}"`, 'auth');
      }
      if (code === snmp.ResponseInvalidCode.ENotInTimeWindow) {
        return new SnmpError(`SNMPv3 answer from ${t.host}:${t.port} is outside the time window (agent rebooted?); it will be retried`, 'auth');
      }
      return new SnmpError(`invalid SNMP answer from ${t.host}:${t.port} to ${what}: ${msg}`, 'agent');
    }
    if (name === 'RequestFailedError') {
      const m = /^(\w+): ([0-9.]+)$/.exec(msg);
      if (m) return new SnmpError(`the agent at ${t.host}:${t.port} answered ${m[1]} for ${m[2]} (${what})`, 'agent', m[2]);
      if (/Local user not found/i.test(msg)) return new SnmpError(`SNMPv3: ${msg}`, 'auth');
      return new SnmpError(`the agent at ${t.host}:${t.port} answered ${msg} (${what})`, 'agent');
    }
    if (name === 'RequestInvalidError') return new SnmpError(`invalid SNMP request (${what}): ${msg}`, 'config');
    if (/Socket forcibly closed/i.test(msg)) return new SnmpError(`${what}: aborted`, 'closed');
    if ((err as NodeJS.ErrnoException).code === 'ENOTFOUND' || (err as NodeJS.ErrnoException).code === 'EAI_AGAIN') {
      return new SnmpError(`host name "${t.host}" could not be resolved`, 'network');
    }
    if ((err as NodeJS.ErrnoException).code === 'ERR_OSSL_EVP_UNSUPPORTED') {
      return new SnmpError(`this Node.js cannot do the configured SNMPv3 privacy protocol (${t.user?.privProtocol}): ${msg}`, 'config');
    }
    return new SnmpError(`SNMP ${what} to ${t.host}:${t.port} failed: ${msg}`, 'network');
  }

  /**
   * GET all `oids` in one request. Absent objects map to null. For v1, objects the agent does not
   * have are dropped one by one (each noSuchName names one) and reported in `absent`.
   */
  async get(oids: string[], signal?: AbortSignal): Promise<Map<string, SnmpValue | null>> {
    const out = new Map<string, SnmpValue | null>();
    let ask = [...new Set(oids)];
    for (let attempt = 0; ask.length > 0; attempt++) {
      try {
        const varbinds = await this.request<Array<{ oid: string; type: number; value: unknown }>>('GET', (s, cb) => s.get(ask, cb), signal);
        varbinds.forEach((vb, i) => out.set(ask[i], decodeVarbind(vb)));
        return out;
      } catch (err) {
        const e = err as SnmpError;
        // An agent whose answer would not fit one datagram (tooBig): ask in halves, in order.
        if (e.kind === 'agent' && /answered TooBig/.test(e.message) && ask.length > 1) {
          const half = Math.ceil(ask.length / 2);
          for (const part of [ask.slice(0, half), ask.slice(half)]) for (const [k, v] of await this.get(part, signal)) out.set(k, v);
          return out;
        }
        if (this.target.version === 'v1' && e.kind === 'agent' && e.oid && ask.includes(e.oid) && attempt < oids.length) {
          out.set(e.oid, null);
          ask = ask.filter((o) => o !== e.oid);
          continue;
        }
        throw err;
      }
    }
    return out;
  }

  /** GETBULK (v2c/v3) or a GETNEXT walk (v1) of one table column, at most `max` rows. */
  async column(base: string, max: number, signal?: AbortSignal): Promise<Array<{ oid: string; value: SnmpValue | null }>> {
    const prefix = base + '.';
    const rows: Array<{ oid: string; value: SnmpValue | null }> = [];
    let from = base;
    while (rows.length < max) {
      const want = Math.min(max - rows.length, 20);
      type Vb = { oid: string; type: number; value: unknown };
      let vbs: Vb[];
      if (this.target.version === 'v1') {
        vbs = await this.request<Vb[]>('GETNEXT', (s, cb) => s.getNext([from], cb), signal).catch((err: SnmpError) => {
          if (err.kind === 'agent') return [] as Vb[]; // v1 end of MIB: noSuchName
          throw err;
        });
      } else {
        // One repeater: net-snmp answers [[row, row, …]].
        const answer = await this.request<Array<Vb | Vb[]>>('GETBULK', (s, cb) => s.getBulk([from], 0, want, cb), signal);
        vbs = answer.flat() as Vb[];
      }
      let advanced = false;
      for (const vb of vbs) {
        if (!vb || typeof vb.oid !== 'string' || !vb.oid.startsWith(prefix) || snmp.isVarbindError(vb)) return rows;
        rows.push({ oid: vb.oid, value: decodeVarbind(vb) });
        from = vb.oid;
        advanced = true;
        if (rows.length >= max) break;
      }
      if (!advanced) break;
    }
    return rows;
  }

  /** SET; rejects with SnmpError naming the object the agent refused. */
  async set(varbinds: SetVarbind[], signal?: AbortSignal): Promise<void> {
    const typeOf = { int: snmp.ObjectType.Integer, gauge: snmp.ObjectType.Gauge, timeticks: snmp.ObjectType.TimeTicks, string: snmp.ObjectType.OctetString, oid: snmp.ObjectType.OID };
    const vbs = varbinds.map((v) => ({ oid: v.oid, type: typeOf[v.type], value: v.value }));
    const answer = await this.request<Array<{ oid: string; type: number; value: unknown }>>('SET', (s, cb) => s.set(vbs, cb), signal);
    for (const vb of answer ?? []) {
      if (snmp.isVarbindError(vb)) {
        throw new SnmpError(`the agent at ${this.target.host}:${this.target.port} refused to write ${vb.oid} (${snmp.ObjectType[vb.type] ?? vb.type}): may this community / v3 user write, and is the object writable on this card?`, 'agent', vb.oid);
      }
    }
  }

  /** Close the socket; requests in flight fail at once. The client can not be used again. */
  close(): void {
    this.closed = true;
    this.failAll(new SnmpError('SNMP client closed', 'closed'));
  }
}
