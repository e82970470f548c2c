/**
 * A raw NUT client for protocol tests: writes exactly the bytes it is given and reads reply lines,
 * every wait bounded. Knows nothing of the protocol beyond "one reply line per line".
 */
import * as net from 'node:net';

export class RawClient {
  private buf = '';
  private readonly lines: string[] = [];
  private waiters: Array<() => void> = [];
  closed = false;
  readonly closedAt: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buf += d;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        this.lines.push(this.buf.slice(0, nl));
        this.buf = this.buf.slice(nl + 1);
      }
      this.wake();
    });
    socket.on('error', () => undefined);
    this.closedAt = new Promise((resolve) =>
      socket.on('close', () => {
        this.closed = true;
        this.wake();
        resolve();
      }),
    );
  }

  static connect(port: number, host = '127.0.0.1', localAddress?: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port, localAddress });
      const timer = setTimeout(() => (s.destroy(), reject(new Error('connect timeout'))), 5000);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(new RawClient(s));
      });
      s.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  write(data: string | Buffer): void {
    if (!this.closed) this.socket.write(data);
  }

  /** Send lines (each gets `\n`) and wait for `expect` reply lines (default: one per line sent). */
  async ask(lines: string[], expect = lines.length, ms = 5000): Promise<string[]> {
    const from = this.lines.length;
    this.write(lines.map((l) => l + '\n').join(''));
    await this.waitLines(from + expect, ms);
    return this.lines.slice(from, from + expect);
  }

  /** Reads a LIST reply: lines up to and including `END LIST …` (or a single ERR line). */
  async askList(line: string, ms = 5000): Promise<string[]> {
    const from = this.lines.length;
    this.write(line + '\n');
    const deadline = Date.now() + ms;
    for (;;) {
      const got = this.lines.slice(from);
      if (got.length && (got[0].startsWith('ERR ') || got.some((l) => l.startsWith('END LIST')))) {
        const end = got[0].startsWith('ERR ') ? 1 : got.findIndex((l) => l.startsWith('END LIST')) + 1;
        return got.slice(0, end);
      }
      if (this.closed || Date.now() > deadline) throw new Error(`no complete list reply to "${line}"; got ${JSON.stringify(got)}`);
      await this.wait(deadline - Date.now());
    }
  }

  get received(): string[] {
    return [...this.lines];
  }

  async waitLines(n: number, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.lines.length < n) {
      if (this.closed) throw new Error(`connection closed after ${this.lines.length} lines (wanted ${n}): ${JSON.stringify(this.lines.slice(-5))}`);
      if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms with ${this.lines.length} of ${n} lines: ${JSON.stringify(this.lines.slice(-5))}`);
      await this.wait(deadline - Date.now());
    }
  }

  /** Resolves true when the server closed the connection within `ms`. */
  async waitClosed(ms = 5000): Promise<boolean> {
    if (this.closed) return true;
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([this.closedAt.then(() => true), new Promise<boolean>((res) => (timer = setTimeout(() => res(false), ms)))]);
    clearTimeout(timer);
    return r;
  }

  private wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(1, Math.min(ms, 200)));
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/**
 * A stand-in "upsd" on loopback that hands each request line to `answer` (which writes what the
 * test scripts): a misbehaving server (real upsd never sends garbage), or an older upsd.
 */
export function lineServer(answer: (line: string, socket: net.Socket) => void): Promise<{ port: number; close: () => Promise<void> }> {
  return new Promise((resolve) => {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
      let buf = '';
      s.on('data', (d) => {
        buf += d.toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          answer(line, s);
        }
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      resolve({ port, close: () => new Promise((r) => { sockets.forEach((s) => s.destroy()); server.close(() => r()); }) });
    });
  });
}
