/**
 * Wake-on-LAN: the magic packet (6 × 0xFF, then the MAC address 16 times) sent as one UDP datagram
 * to a broadcast address, by default 255.255.255.255 port 9 ("discard"). A host that powered off
 * for the outage and does not power on by itself when mains returns is woken with it.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';

export interface WakeTarget {
  /** MAC address, normalised `aa:bb:cc:dd:ee:ff`. */
  mac: string;
  /** IPv4 broadcast address (or a host address), default 255.255.255.255. */
  address: string;
  port: number;
}

export const WOL_DEFAULT_ADDRESS = '255.255.255.255';
export const WOL_DEFAULT_PORT = 9;

/**
 * `AA:BB:CC:DD:EE:FF`, `aa-bb-cc-dd-ee-ff`, `aabb.ccdd.eeff` or `aabbccddeeff` → `aa:bb:cc:dd:ee:ff`;
 * undefined when empty. Throws with a plain message on anything else, and on the broadcast and
 * all-zero addresses, which no network card has.
 */
export function normaliseMac(raw: string | undefined | null): string | undefined {
  const v = (raw ?? '').trim();
  if (!v) return undefined;
  const m = /^([0-9a-f]{2})([:-]?)([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})$/i.exec(v);
  const dotted = /^([0-9a-f]{4})\.([0-9a-f]{4})\.([0-9a-f]{4})$/i.exec(v);
  let hex: string;
  if (m) hex = [m[1], m[3], m[4], m[5], m[6], m[7]].join('');
  else if (dotted) hex = dotted.slice(1).join('');
  else throw new Error(`"${v}" is not a MAC address: write it as six hex pairs, e.g. 52:54:00:12:34:56`);
  hex = hex.toLowerCase();
  if (hex === 'ffffffffffff' || hex === '000000000000') throw new Error(`${v} is not the MAC address of a network card`);
  return hex.match(/../g)!.join(':');
}

/** The magic packet for a MAC address: 6 bytes 0xFF, then the 6 address bytes 16 times (102 bytes). */
export function magicPacket(mac: string): Buffer {
  const norm = normaliseMac(mac);
  if (!norm) throw new Error('a MAC address is required for Wake-on-LAN');
  const addr = Buffer.from(norm.replace(/:/g, ''), 'hex');
  return Buffer.concat([Buffer.alloc(6, 0xff), ...Array.from({ length: 16 }, () => addr)]);
}

/** Checks the broadcast address: an IPv4 address (UDP broadcast has no IPv6 counterpart). */
export function wolAddressProblem(address: string): string | undefined {
  if (!net.isIPv4(address.trim())) return `the Wake-on-LAN broadcast address must be an IPv4 address such as 255.255.255.255 or 192.168.1.255, not "${address}"`;
  return undefined;
}

/** Send one magic packet. Resolves when the datagram left; rejects after `timeoutMs` or on a socket error. */
export function sendMagicPacket(t: WakeTarget, timeoutMs = 2000): Promise<void> {
  const packet = magicPacket(t.mac);
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.removeAllListeners();
      sock.on('error', () => undefined);
      try {
        sock.close();
      } catch {
        /* closed already */
      }
      if (err) reject(new Error(`Wake-on-LAN to ${t.address}:${t.port} failed: ${err.message}`));
      else resolve();
    };
    const timer = setTimeout(() => finish(new Error(`not sent within ${timeoutMs} ms`)), timeoutMs);
    sock.once('error', (err) => finish(err));
    sock.bind(0, () => {
      try {
        sock.setBroadcast(true);
      } catch (err) {
        return finish(err as Error);
      }
      sock.send(packet, t.port, t.address, (err) => finish(err ?? undefined));
    });
  });
}
