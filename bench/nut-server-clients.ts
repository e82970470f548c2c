/**
 * The client side of bench/nut-server.ts, in its own process: N persistent NUT connections, each
 * polling once a second like upsmon (GET VAR ups.status, battery.charge, battery.runtime; a
 * LIST VAR every tenth round, like a NAS's status page), plus optional misbehaving clients.
 *
 *   node --import tsx bench/nut-server-clients.ts   (started by bench/nut-server.ts over IPC)
 *
 * Receives {port, ups, clients, seconds, abuse}; replies {type:'done', ...} with every latency.
 */
import * as net from 'node:net';

interface Job {
  port: number;
  ups: string;
  clients: number;
  seconds: number;
  /** Add one client that sends STARTTLS and stalls, one that floods garbage, one that never reads. */
  abuse: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class Poller {
  private buf = '';
  private want = 0;
  private got: string[] = [];
  private resolve: ((lines: string[]) => void) | null = null;
  readonly socket: net.Socket;
  errors = 0;
  closed = false;

  constructor(port: number) {
    this.socket = net.connect({ host: '127.0.0.1', port });
    this.socket.setNoDelay(true);
    this.socket.setEncoding('latin1');
    this.socket.on('data', (d: string) => {
      this.buf += d;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        this.got.push(this.buf.slice(0, nl));
        this.buf = this.buf.slice(nl + 1);
      }
      this.check();
    });
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closed = true;
      this.check();
    });
  }

  ready(): Promise<void> {
    return new Promise((res, rej) => {
      this.socket.once('connect', () => res());
      this.socket.once('error', rej);
    });
  }

  private check(): void {
    if (!this.resolve) return;
    const ended = this.want < 0 ? this.got.findIndex((l) => l.startsWith('END LIST') || l.startsWith('ERR ')) : this.want - 1;
    if ((ended >= 0 && this.got.length > ended) || this.closed) {
      const r = this.resolve;
      this.resolve = null;
      const lines = this.got.splice(0, ended + 1);
      r(lines);
    }
  }

  /** Send lines; resolve with `want` reply lines (or, with want < 0, up to END LIST). */
  ask(text: string, want: number): Promise<string[]> {
    return new Promise((res) => {
      this.want = want;
      this.resolve = res;
      this.socket.write(text);
      this.check();
    });
  }
}

async function main(job: Job): Promise<void> {
  const pollers = Array.from({ length: job.clients }, () => new Poller(job.port));
  await Promise.all(pollers.map((p) => p.ready()));
  process.send!({ type: 'connected' });
  const abusers: net.Socket[] = [];
  let abuseTimer: NodeJS.Timeout | undefined;
  if (job.abuse) {
    const stall = net.connect({ host: '127.0.0.1', port: job.port }, () => stall.write('STARTTLS\n\x16\x03\x01\x00\xa5\x01\x00'));
    const greedy = net.connect({ host: '127.0.0.1', port: job.port }, () => greedy.pause());
    abusers.push(stall, greedy);
    for (const s of abusers) s.on('error', () => undefined);
    let seed = 7;
    const junk = Buffer.alloc(64 * 1024);
    abuseTimer = setInterval(() => {
      // A fresh garbage connection every 2 s (each is closed by the server), and the greedy one asks for more.
      const g = net.connect({ host: '127.0.0.1', port: job.port }, () => {
        for (let i = 0; i < junk.length; i++) {
          seed = (seed * 1103515245 + 12345) & 0x7fffffff;
          junk[i] = seed & 0xff;
        }
        g.write(junk);
        g.write(Buffer.alloc(9000, 0x41));
      });
      g.on('error', () => undefined);
      abusers.push(g);
      if (!greedy.destroyed) greedy.write(`LIST VAR ${job.ups}\n`.repeat(200));
    }, 2000);
  }
  const latencies: number[] = [];
  let wrong = 0;
  let dropped = 0;
  const deadline = Date.now() + job.seconds * 1000;
  const status = `GET VAR ${job.ups} ups.status\nGET VAR ${job.ups} battery.charge\nGET VAR ${job.ups} battery.runtime\n`;
  await Promise.all(pollers.map(async (p, i) => {
    await sleep((i * 1000) / job.clients);
    for (let round = 0; Date.now() < deadline; round++) {
      const t0 = performance.now();
      if (p.closed) {
        dropped++;
        return;
      }
      const lines = round % 10 === 9 ? await p.ask(`LIST VAR ${job.ups}\n`, -1) : await p.ask(status, 3);
      latencies.push(performance.now() - t0);
      if (!lines.length || lines.some((l) => l.startsWith('ERR'))) wrong++;
      await sleep(Math.max(0, 1000 - (performance.now() - t0)));
    }
  }));
  clearInterval(abuseTimer);
  for (const s of abusers) s.destroy();
  for (const p of pollers) p.socket.destroy();
  process.send!({ type: 'done', latencies, wrong, dropped });
}

process.on('message', (job: Job) => {
  main(job).catch((e) => {
    process.send!({ type: 'error', message: String(e?.stack ?? e) });
  });
});
process.on('disconnect', () => process.exit(0));
