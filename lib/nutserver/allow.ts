/**
 * The client allow-list: addresses and CIDR blocks (IPv4 and IPv6). IPv4 clients that reach an
 * IPv6 socket appear as `::ffff:a.b.c.d` and are matched as IPv4.
 */
import * as net from 'node:net';

export interface AllowList {
  /** True when the list is empty (everyone allowed) or the address is in it. */
  allows(address: string): boolean;
  readonly entries: readonly string[];
}

/** `::ffff:192.0.2.1` → `192.0.2.1`; other addresses unchanged. */
export function plainAddress(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1] : address;
}

/** Parse one entry: `192.168.1.0/24`, `10.0.0.5`, `fd00::/8`, `::1`. Throws with a plain message. */
export function parseCidr(entry: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const [addr, bits, extra] = entry.trim().split('/');
  const kind = net.isIP(addr ?? '');
  if (extra !== undefined || kind === 0) throw new Error(`"${entry}" is not an IP address or CIDR block (e.g. 192.168.1.0/24)`);
  const max = kind === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : Number(bits);
  if (!/^\d+$/.test(bits ?? String(max)) || prefix < 0 || prefix > max) throw new Error(`"${entry}": the prefix length must be 0 to ${max}`);
  return { address: addr, prefix, family: kind === 4 ? 'ipv4' : 'ipv6' };
}

export function allowList(entries: readonly string[]): AllowList {
  const list = new net.BlockList();
  const clean = entries.map((e) => e.trim()).filter(Boolean);
  for (const e of clean) {
    const c = parseCidr(e);
    list.addSubnet(c.address, c.prefix, c.family);
  }
  return {
    entries: clean,
    allows(address: string): boolean {
      if (clean.length === 0) return true;
      const a = plainAddress(address);
      const kind = net.isIP(a);
      if (kind === 0) return false;
      return list.check(a, kind === 4 ? 'ipv4' : 'ipv6');
    },
  };
}
