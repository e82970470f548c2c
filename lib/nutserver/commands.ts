/**
 * Where the instant commands of a served UPS go:
 * - a NUT source: to its upsd, on a connection of its own with the UPS device's credentials
 *   (USERNAME, PASSWORD, INSTCMD), so upsd's own access rules apply as well;
 * - a simulated UPS: `test.failure.start` / `test.failure.stop` cut and restore its mains.
 * Other sources have none: INSTCMD answers ERR CMD-NOT-SUPPORTED.
 */
import { NutConnection } from '../nut/connection';
import { NutError, assertWord, quote } from '../nut/protocol';
import { TlsSettings } from '../net/tls';
import { InstantCommands } from './server';

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

export function nutCommands(o: NutForwardOptions): InstantCommands {
  let cache: { at: number; cmds: string[] } | null = null;
  let loading: Promise<string[]> | null = null;
  const connect = () => NutConnection.connect({ host: o.host, port: o.port, timeoutMs: o.timeoutMs ?? 5000, starttls: o.starttls, tls: o.tls });
  return {
    list(): Promise<string[]> {
      if (cache && Date.now() - cache.at < (o.listCacheMs ?? 60_000)) return Promise.resolve(cache.cmds);
      loading ??= (async () => {
        const conn = await connect();
        try {
          const cmds = await conn.listCmd(o.ups);
          cache = { at: Date.now(), cmds };
          return cmds;
        } finally {
          await conn.close();
        }
      })().finally(() => {
        loading = null;
      });
      return loading;
    },
    async run(cmd: string, param: string | undefined, signal: AbortSignal): Promise<void> {
      if (!o.username) throw new Error(`the UPS device has no username: upsd at ${o.host}:${o.port} needs one with "instcmds" rights to run ${cmd}`);
      const conn = await connect();
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
