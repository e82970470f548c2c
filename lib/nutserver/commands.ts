/**
 * Where the instant commands of a served UPS go, by the source of its UPS device:
 * - NUT: to its upsd, on a connection of its own with the UPS device's credentials
 *   (USERNAME, PASSWORD, INSTCMD), so upsd's own access rules apply as well;
 * - SNMP: the MIB profile's control writes (lib/command: the same writes the UPS command node
 *   sends), under the NUT names snmp-ups gives them;
 * - simulated: `test.failure.start` / `test.failure.stop` cut and restore its mains;
 * - Home Assistant entities: none (LIST CMD is empty, INSTCMD answers ERR CMD-NOT-SUPPORTED,
 *   as upsd for a driver without commands). Nothing but a NUT source ever opens a NUT connection.
 * Also the TYPE / DESC / CMDDESC of a NUT source, asked of its upsd (nutMeta).
 */
import { NutConnection } from '../nut/connection';
import { NutError, assertWord, quote, tokenize } from '../nut/protocol';
import { TlsSettings } from '../net/tls';
import { InstantCommands, UpstreamMeta } from './server';
import { DeviceConfig, DeviceCredentials } from '../ups/config';
import { snmpTarget } from '../snmp/config';
import { snmpCommandNames } from '../command/snmp';
import { UpsCommandDriver } from '../command/driver';
import { parseCommandConfig } from '../command/config';

export interface NutForwardOptions {
  host: string;
  port: number;
  ups: string;
  username?: string;
  password?: string;
  starttls?: boolean;
  tls?: TlsSettings;
  timeoutMs?: number;
  /** How long the upstream command list is reused (ms). Default 60 s. */
  listCacheMs?: number;
}

/**
 * A command list read from the source at most once per `ttlMs`, with one read in flight however
 * many clients ask at once (a failed read is not kept: the next ask reads again).
 */
function cachedList(ttlMs: number, read: (signal?: AbortSignal) => Promise<string[]>): (signal?: AbortSignal) => string[] | Promise<string[]> {
  let cache: { at: number; cmds: string[] } | null = null;
  let loading: Promise<string[]> | null = null;
  return (signal) => {
    if (cache && Date.now() - cache.at < ttlMs) return cache.cmds;
    loading ??= read(signal)
      .then((cmds) => {
        cache = { at: Date.now(), cmds };
        return cmds;
      })
      .finally(() => {
        loading = null;
      });
    return loading;
  };
}

export function nutCommands(o: NutForwardOptions): InstantCommands {
  const connect = (signal?: AbortSignal) => NutConnection.connect({ host: o.host, port: o.port, timeoutMs: o.timeoutMs ?? 5000, starttls: o.starttls, tls: o.tls, signal });
  return {
    list: cachedList(o.listCacheMs ?? 60_000, async (signal) => {
      const conn = await connect(signal);
      try {
        return await conn.listCmd(o.ups);
      } finally {
        await conn.close();
      }
    }),
    async run(cmd: string, param: string | undefined, signal: AbortSignal): Promise<void> {
      if (!o.username) throw new Error(`the UPS device has no username: upsd at ${o.host}:${o.port} needs one with "instcmds" rights to run ${cmd}`);
      const conn = await connect(signal);
      const onAbort = () => void conn.close();
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        await conn.authenticate(o.username, o.password ?? '');
        const line = `INSTCMD ${assertWord(o.ups, 'UPS name')} ${assertWord(cmd, 'command')}${param === undefined ? '' : ' ' + quote(param)}`;
        await conn.command(line, `INSTCMD ${cmd}`);
      } catch (e) {
        if (e instanceof NutError) throw new Error(`upsd at ${o.host}:${o.port} refused ${cmd}: ${e.message}`);
        throw e;
      } finally {
        signal.removeEventListener('abort', onAbort);
        await conn.close();
      }
    },
  };
}

/** NUT instant commands a simulated UPS understands, and the simulator command each one is. */
export const SIM_INSTCMDS: Readonly<Record<string, string>> = {
  'test.failure.start': 'power-lost',
  'test.failure.stop': 'power-restored',
};

export function simCommands(simulate: (command: string, value: unknown) => Promise<void>): InstantCommands {
  return {
    list: () => Object.keys(SIM_INSTCMDS),
    run: async (cmd) => {
      const sim = SIM_INSTCMDS[cmd.toLowerCase()];
      if (!sim) throw new Error(`a simulated UPS does not support ${cmd}`);
      await simulate(sim, undefined);
    },
  };
}

/** Entries kept per kind of upstream answer: variable and command names of one UPS. */
const META_CACHE_MAX = 512;

/**
 * TYPE, DESC and CMDDESC of a NUT source, asked of its upsd once per name and then remembered
 * (drivers set them at start). Only successful answers are kept; an ERR reply means "no answer".
 */
export function nutMeta(o: NutForwardOptions): UpstreamMeta {
  const cache = new Map<string, string | null>();
  const loading = new Map<string, Promise<string | null>>();
  const ask = (kind: 'TYPE' | 'DESC' | 'CMDDESC', name: string, signal: AbortSignal, pick: (words: string[]) => string | null): Promise<string | null> => {
    const key = `${kind} ${name.toLowerCase()}`;
    if (cache.has(key)) return Promise.resolve(cache.get(key)!);
    let p = loading.get(key);
    if (!p) {
      p = (async () => {
        const conn = await NutConnection.connect({ host: o.host, port: o.port, timeoutMs: o.timeoutMs ?? 5000, starttls: o.starttls, tls: o.tls, signal });
        const onAbort = () => void conn.close();
        signal.addEventListener('abort', onAbort, { once: true });
        try {
          let value: string | null;
          try {
            value = pick(tokenize(await conn.command(`GET ${kind} ${assertWord(o.ups, 'UPS name')} ${assertWord(name, 'name')}`, `GET ${kind}`)));
          } catch (e) {
            if (!(e instanceof NutError)) throw e;
            value = null;
          }
          if (cache.size >= META_CACHE_MAX) cache.clear();
          cache.set(key, value);
          return value;
        } finally {
          signal.removeEventListener('abort', onAbort);
          await conn.close();
        }
      })().finally(() => loading.delete(key));
      loading.set(key, p);
    }
    return p;
  };
  return {
    // `TYPE <ups> <var> [RW] [ENUM] [RANGE] STRING:n|NUMBER`: nothing is writable through this server.
    type: (name, signal) => ask('TYPE', name, signal, (w) => (w[0] === 'TYPE' ? w.slice(3).filter((x) => !['RW', 'ENUM', 'RANGE'].includes(x)).join(' ') || null : null)),
    desc: (name, signal) => ask('DESC', name, signal, (w) => (w[0] === 'DESC' && w.length >= 4 ? w[3] : null)),
    cmddesc: (name, signal) => ask('CMDDESC', name, signal, (w) => (w[0] === 'CMDDESC' && w.length >= 4 ? w[3] : null)),
  };
}

export interface SnmpForwardOptions {
  device: DeviceConfig;
  credentials: DeviceCredentials;
  /** Every SNMP request (ms). */
  timeoutMs: number;
  /** How long a detected profile's command list is reused (ms). Default 10 min. */
  listCacheMs?: number;
}

/**
 * Instant commands of an SNMP UPS: the names its MIB profile has (detected once when the device
 * says "auto"), each run as the UPS command node runs it (control write, then read back).
 */
export function snmpCommands(o: SnmpForwardOptions): InstantCommands {
  const c = o.device;
  const access = () => ({ kind: 'snmp' as const, name: 'served UPS', snmp: snmpTarget(c, o.credentials, o.timeoutMs), profile: c.snmpProfile });
  const detected = cachedList(o.listCacheMs ?? 600_000, async (signal) => {
    const driver = new UpsCommandDriver(access(), parseCommandConfig({ ups: 'served', mode: 'return' }));
    try {
      return (await driver.offered(signal ?? new AbortController().signal)).commands;
    } finally {
      await driver.close();
    }
  });
  return {
    list(signal?: AbortSignal): string[] | Promise<string[]> {
      return c.snmpProfile !== 'auto' ? snmpCommandNames(c.snmpProfile) : detected(signal);
    },
    async run(cmd: string, param: string | undefined, signal: AbortSignal): Promise<void> {
      const driver = new UpsCommandDriver(access(), parseCommandConfig({ ups: 'served', mode: 'instcmd', command: cmd, param: param ?? '', timeout: Math.min(120, Math.max(0.5, o.timeoutMs / 1000)) }));
      try {
        const [target] = await driver.list(signal);
        await driver.act(target, { operation: 'command', timeoutMs: o.timeoutMs, force: false }, signal);
      } finally {
        await driver.close();
      }
    },
  };
}

/** The instant commands (and upstream metadata) of a served UPS, chosen by its device's source. */
export function commandsFor(
  device: DeviceConfig,
  credentials: DeviceCredentials,
  simulate: (command: string, value: unknown) => Promise<void>,
): { commands?: InstantCommands; meta?: UpstreamMeta } {
  const timeoutMs = device.timeout * 1000;
  switch (device.source) {
    case 'sim':
      return { commands: simCommands(simulate) };
    case 'nut': {
      const o: NutForwardOptions = {
        host: device.host, port: device.port, ups: device.upsName, username: credentials.username || undefined, password: credentials.password || undefined,
        starttls: device.starttls, tls: { verify: device.tlsVerify, fingerprint: device.tlsFingerprint || undefined }, timeoutMs,
      };
      return { commands: nutCommands(o), meta: nutMeta(o) };
    }
    case 'snmp':
      return { commands: snmpCommands({ device, credentials, timeoutMs }) };
    default:
      // Home Assistant entities: HA offers no UPS commands.
      return {};
  }
}
