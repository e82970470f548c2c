/**
 * One measured client for part (b) of bench/bench.ts, in its own process so that its CPU time
 * (including reaped children such as upsc) and its peak RSS are its own.
 *
 *   node --import tsx bench/load-child.ts <ours|upsc|idle> <port> <ups,ups,...>
 *
 * Talks to the parent over IPC: sends {type:'ready'} once set up; on 'go' starts polling; on 'stop'
 * stops (waiting for work in flight) and answers {type:'stopped', ...counts}; on 'exit' exits.
 */
import { execFile } from 'node:child_process';

type Mode = 'ours' | 'upsc' | 'idle';

const [modeArg, portArg, namesArg = ''] = process.argv.slice(2);
const mode = modeArg as Mode;
const port = Number(portArg);
const names = namesArg.split(',').filter(Boolean);

if (!process.send) {
  console.error('load-child: must be started with an IPC channel (by bench/bench.ts)');
  process.exit(2);
}
if (!['ours', 'upsc', 'idle'].includes(mode) || !Number.isInteger(port)) {
  console.error(`load-child: bad arguments ${JSON.stringify(process.argv.slice(2))}`);
  process.exit(2);
}

const counts = { polls: 0, ok: 0, errors: 0, rounds: 0, lastError: '' };

interface Client {
  start(): void;
  stop(): Promise<void>;
}

/** Ours: N UpsDevice instances (createDevice, source nut, 1 s), one subscriber each. */
function oursClient(): Client {
  // Loaded only in this mode, so the idle/upsc children do not pay for it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createDevice, parseDeviceConfig } = require('../lib/ups/config') as typeof import('../lib/ups/config');
  const devices = names.map((ups) =>
    createDevice(parseDeviceConfig({ source: 'nut', host: '127.0.0.1', port, upsName: ups, pollInterval: 1, pollIntervalOnBattery: 1, timeout: 5 }), {}),
  );
  const unsubscribes: Array<() => Promise<void>> = [];
  return {
    start() {
      for (const d of devices) {
        unsubscribes.push(
          d.subscribe((s) => {
            counts.polls++;
            if (s.comm === 'ok') counts.ok++;
            else {
              counts.errors++;
              counts.lastError = s.commError ?? s.comm;
            }
          }),
        );
      }
    },
    async stop() {
      await Promise.all(unsubscribes.map((u) => u()));
    },
  };
}

/** The popular script's way: every second, `upsc <ups>@127.0.0.1:<port>` once per UPS, all in parallel. */
function upscClient(): Client {
  let running = false;
  let loop: Promise<void> = Promise.resolve();
  let wake: (() => void) | null = null;
  const sleep = (ms: number) =>
    new Promise<void>((r) => {
      const t = setTimeout(() => ((wake = null), r()), ms);
      wake = () => (clearTimeout(t), (wake = null), r());
    });
  const upsc = (ups: string) =>
    new Promise<void>((resolve) => {
      execFile('upsc', [`${ups}@127.0.0.1:${port}`], { encoding: 'utf8', timeout: 10_000 }, (err, stdout) => {
        counts.polls++;
        if (!err && /^ups\.status: /m.test(stdout)) counts.ok++;
        else {
          counts.errors++;
          counts.lastError = err ? err.message.split('\n')[0] : 'no ups.status in output';
        }
        resolve();
      });
    });
  return {
    start() {
      running = true;
      loop = (async () => {
        while (running) {
          const t0 = Date.now();
          await Promise.all(names.map(upsc));
          counts.rounds++;
          const wait = t0 + 1000 - Date.now();
          if (running && wait > 0) await sleep(wait);
        }
      })();
    },
    async stop() {
      running = false;
      wake?.();
      await loop;
    },
  };
}

const client: Client =
  mode === 'ours' ? oursClient() : mode === 'upsc' ? upscClient() : { start() {}, stop: async () => undefined };

// Keep the process alive while waiting for the parent (IPC keeps it alive too; this is explicit).
const keepAlive = setInterval(() => undefined, 1 << 30);

process.on('message', (m: unknown) => {
  if (m === 'go') client.start();
  else if (m === 'stop') {
    client.stop().then(
      () => process.send!({ type: 'stopped', ...counts }),
      (err) => process.send!({ type: 'stopped', ...counts, lastError: String(err) }),
    );
  } else if (m === 'exit') {
    clearInterval(keepAlive);
    process.exit(0);
  }
});
// If the parent dies, do not linger.
process.on('disconnect', () => process.exit(0));

process.send({ type: 'ready' });
