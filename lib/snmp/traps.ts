/**
 * SNMP trap listener: a net-snmp receiver per bind address and port, shared (reference-counted) by
 * every UPS source that listens there, as a UPS card sends its traps to one manager port. It accepts
 * v1 and v2c traps with a subscriber's community and v3 traps and informs with a subscriber's USM
 * user (net-snmp answers informs and v3 discovery itself), and hands each trap to the subscribers
 * whose agent address it came from. Unknown communities/users and other senders are ignored.
 */
import * as dns from 'node:dns/promises';
import * as net from 'node:net';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const snmp = require('net-snmp');
import { SnmpV3User, decodeVarbind } from './client';
import { SNMP_TRAP_OID, TrapInfo } from './profiles';

export interface ReceivedTrap extends TrapInfo {
  /** Sender address (UDP source, or the v1 agent-addr field). */
  from: string;
  version: 'v1' | 'v2c' | 'v3';
  inform: boolean;
  /** Community (v1/v2c) or user name (v3). */
  principal: string;
  at: number;
}

export interface TrapSubscriberOptions {
  address: string;
  port: number;
  community?: string;
  user?: SnmpV3User;
  /** The agent's host (name or address): traps from other senders are not delivered. */
  agentHost: string;
  onTrap(trap: ReceivedTrap): void;
}

export interface TrapSubscription {
  /** Resolves when the socket is bound; rejects with a message a user can act on. */
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

interface Subscriber {
  opts: TrapSubscriberOptions;
  addresses: Set<string>;
}

const LEVEL: Record<string, number> = {
  noAuthNoPriv: snmp.SecurityLevel.noAuthNoPriv,
  authNoPriv: snmp.SecurityLevel.authNoPriv,
  authPriv: snmp.SecurityLevel.authPriv,
};

function toNetSnmpUser(u: SnmpV3User): Record<string, unknown> {
  const user: Record<string, unknown> = { name: u.name, level: LEVEL[u.level] };
  if (u.level !== 'noAuthNoPriv') {
    user.authProtocol = snmp.AuthProtocols[u.authProtocol!];
    user.authKey = u.authKey;
  }
  if (u.level === 'authPriv') {
    user.privProtocol = snmp.PrivProtocols[u.privProtocol!];
    user.privKey = u.privKey;
  }
  return user;
}

const unmap = (a: string) => a.replace(/^::ffff:/, '');

class TrapHub {
  readonly subscribers = new Set<Subscriber>();
  private receiver: any;
  readonly ready: Promise<void>;
  /** Traps received that no subscriber took (wrong sender); for diagnostics. */
  ignored = 0;

  constructor(readonly address: string, readonly port: number) {
    const transport = net.isIPv6(address) ? 'udp6' : 'udp4';
    let bound!: () => void;
    let failed!: (e: Error) => void;
    this.ready = new Promise<void>((res, rej) => {
      bound = res;
      failed = rej;
    });
    this.ready.catch(() => undefined);
    let listening = false;
    this.receiver = snmp.createReceiver({ port, address, transport, disableAuthorization: false, includeAuthentication: true }, (err: any, n: any) => {
      if (err) {
        // Before 'listening' only the socket can fail (bind, or a name lookup for the address):
        // whatever it is, the listener will not come up, and `ready` must say why.
        if (!listening || err.code === 'EADDRINUSE' || err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL' || err.syscall === 'bind') {
          failed(new Error(bindAdvice(err, address, port)));
        }
        return; // unauthorized or malformed packets: ignored
      }
      this.dispatch(n);
    });
    for (const socket of Object.values<any>(this.receiver.listener.sockets)) {
      socket.once('listening', () => {
        listening = true;
        bound();
      });
      socket.unref?.();
    }
  }

  authorize(s: Subscriber): void {
    const auth = this.receiver.getAuthorizer();
    if (s.opts.community) auth.addCommunity(s.opts.community);
    if (s.opts.user) auth.addUser(toNetSnmpUser(s.opts.user));
  }

  /** Re-register what the remaining subscribers need (a user's keys may be shared by name). */
  reauthorize(): void {
    const auth = this.receiver.getAuthorizer();
    for (const c of [...auth.getCommunities()]) auth.deleteCommunity(c);
    for (const u of [...auth.getUsers()]) auth.deleteUser(u.name);
    for (const s of this.subscribers) this.authorize(s);
  }

  private dispatch(n: any): void {
    const pdu = n?.pdu;
    if (!pdu) return;
    const varbinds: Array<{ oid: string; type: number; value: unknown }> = pdu.varbinds ?? [];
    let oid: string;
    let from = unmap(String(n.rinfo?.address ?? ''));
    let version: ReceivedTrap['version'];
    if (pdu.type === snmp.PduType.Trap) {
      version = 'v1';
      oid = pdu.generic === 6 ? `${pdu.enterprise}.0.${pdu.specific}` : `1.3.6.1.6.3.1.1.5.${(pdu.generic ?? 0) + 1}`;
      if (pdu.agentAddr && pdu.agentAddr !== '0.0.0.0') from = String(pdu.agentAddr);
    } else {
      version = pdu.user !== undefined ? 'v3' : 'v2c';
      const trapOid = varbinds.find((v) => v.oid === SNMP_TRAP_OID);
      oid = trapOid ? String(trapOid.value) : '';
    }
    const trap: ReceivedTrap = {
      oid,
      varbinds: varbinds.filter((v) => v.oid !== SNMP_TRAP_OID).map((v) => ({ oid: v.oid, value: decodeVarbind(v) })),
      from,
      version,
      inform: pdu.type === snmp.PduType.InformRequest,
      principal: String(pdu.community ?? pdu.user ?? ''),
      at: Date.now(),
    };
    const udpFrom = unmap(String(n.rinfo?.address ?? ''));
    let taken = false;
    for (const s of this.subscribers) {
      const credentialOk = version === 'v3' ? s.opts.user?.name === trap.principal : s.opts.community === trap.principal;
      if (!credentialOk || !(s.addresses.has(from) || s.addresses.has(udpFrom))) continue;
      taken = true;
      try {
        s.opts.onTrap(trap);
      } catch {
        /* a subscriber's failure must not stop the others */
      }
    }
    if (!taken) this.ignored++;
  }

  close(): Promise<void> {
    return new Promise<void>((resolve) => {
      const sockets = Object.values<any>(this.receiver.listener.sockets);
      let left = sockets.length;
      if (!left) return resolve();
      for (const socket of sockets) {
        try {
          socket.close(() => --left === 0 && resolve());
        } catch {
          if (--left === 0) resolve();
        }
      }
    });
  }
}

function bindAdvice(err: NodeJS.ErrnoException, address: string, port: number): string {
  if (!err || typeof err !== 'object') return `cannot listen for traps on ${address}:${port}: ${String(err)}`;
  if (err.code === 'EADDRINUSE') return `trap port ${address}:${port} is already in use (another trap receiver, e.g. snmptrapd?): choose another port`;
  if (err.code === 'EACCES') return `not allowed to listen on ${address}:${port}: ports below 1024 need privileges; use e.g. 16200 and point the UPS's trap receiver there`;
  if (err.code === 'EADDRNOTAVAIL') return `${address} is not an address of this machine: listen on 0.0.0.0 or one of its addresses`;
  if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN' || err.syscall === 'getaddrinfo') return `cannot listen for traps on "${address}": give an IP address of this machine (0.0.0.0 for all), not a host name`;
  return `cannot listen for traps on ${address}:${port}: ${err.message}`;
}

const hubs = new Map<string, TrapHub>();

/** Listen for a UPS's traps. The socket is shared by every subscriber of the same address and port. */
export function subscribeTraps(opts: TrapSubscriberOptions): TrapSubscription {
  const key = `${opts.address}|${opts.port}`;
  let hub = hubs.get(key);
  if (!hub) {
    const fresh = new TrapHub(opts.address, opts.port);
    hubs.set(key, fresh);
    // A socket that could not be bound is forgotten, so the next subscription tries again.
    fresh.ready.catch(() => hubs.get(key) === fresh && hubs.delete(key));
    hub = fresh;
  }
  const theHub = hub;
  const sub: Subscriber = { opts, addresses: new Set([unmap(opts.agentHost)]) };
  theHub.subscribers.add(sub);
  theHub.authorize(sub);
  // A host name: also accept the addresses it resolves to.
  if (!net.isIP(opts.agentHost)) {
    dns.lookup(opts.agentHost, { all: true }).then((all) => all.forEach((a) => sub.addresses.add(unmap(a.address))), () => undefined);
  } else if (opts.agentHost === '::1' || opts.agentHost === 'localhost') {
    sub.addresses.add('127.0.0.1');
  }
  let closed = false;
  return {
    ready: theHub.ready,
    async close() {
      if (closed) return;
      closed = true;
      theHub.subscribers.delete(sub);
      if (theHub.subscribers.size === 0) {
        if (hubs.get(key) === theHub) hubs.delete(key);
        await theHub.close();
      } else {
        theHub.reauthorize();
      }
    },
  };
}

/** For tests and diagnostics: how many trap sockets are open. */
export function openTrapListeners(): number {
  return hubs.size;
}

/** An address only this machine can send to (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[|\]$/g, '').replace(/^::ffff:/, '');
  return h === 'localhost' || h === '::1' || (net.isIPv4(h) && h.startsWith('127.'));
}

/**
 * Why traps from `agentHost` can never arrive at a listener bound to `address` (null when they
 * can): a card on the network cannot send to this machine's loopback address.
 */
export function trapReachProblem(address: string, agentHost: string): string | null {
  if (isLoopback(address) && !isLoopback(agentHost)) {
    return `traps: listening on ${address} only, which the card at ${agentHost} can never reach: listen on 0.0.0.0 or an address of this machine the card can send to`;
  }
  return null;
}
