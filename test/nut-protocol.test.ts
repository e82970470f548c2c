import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import {
  LineSplitter, ListReader, MAX_LINE_BYTES, MAX_LIST_ROWS, NutError, NutProtocolError, NUT_ERRORS, parseErrorLine, quote, tokenize, varsFromList,
} from '../lib/nut/protocol';
import { LOGOUT_WAIT_MS, NutConnection, NutConnectionError } from '../lib/nut/connection';
import { NutSource } from '../lib/nut/source';
import { UpsDevice } from '../lib/ups/device';
import { SourceError } from '../lib/ups/source';
import { lineServer } from './util/nut-raw';

/** Deterministic PRNG (mulberry32) so a failing fuzz case can be replayed. */
function rng(seed: number): () => number {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('NUT protocol parser', () => {
  it('splits words and keeps quoted values with spaces', () => {
    assert.deepEqual(tokenize('VAR sim ups.status "OB LB"'), ['VAR', 'sim', 'ups.status', 'OB LB']);
    assert.deepEqual(tokenize('UPS sim "Description unavailable"'), ['UPS', 'sim', 'Description unavailable']);
    assert.deepEqual(tokenize('VAR sim x ""'), ['VAR', 'sim', 'x', '']);
  });

  it('unescapes backslash sequences as upsd writes them (\\" \\\\ \\#)', () => {
    assert.deepEqual(tokenize('VAR sim ups.alarm "said \\"hi\\" \\\\ \\#1"'), ['VAR', 'sim', 'ups.alarm', 'said "hi" \\ #1']);
  });

  it('quote() round-trips through tokenize()', () => {
    const r = rng(7);
    for (let i = 0; i < 2000; i++) {
      const s = Array.from({ length: Math.floor(r() * 20) }, () => String.fromCharCode(32 + Math.floor(r() * 95))).join('');
      assert.deepEqual(tokenize(`SET VAR ups x ${quote(s)}`), ['SET', 'VAR', 'ups', 'x', s]);
    }
  });

  it('rejects broken quoting', () => {
    assert.throws(() => tokenize('VAR sim x "open'), NutProtocolError);
    assert.throws(() => tokenize('VAR sim x "a"b'), NutProtocolError);
    assert.throws(() => tokenize('VAR sim x ab"c"'), NutProtocolError);
    assert.throws(() => tokenize('VAR sim x "ends in escape\\'), NutProtocolError);
  });

  it('maps every ERR code to a sentence and keeps unknown codes', () => {
    for (const code of Object.keys(NUT_ERRORS)) {
      const err = parseErrorLine(`ERR ${code}`, 'GET VAR')!;
      assert.ok(err instanceof NutError);
      assert.equal(err.code, code);
      assert.match(err.message, new RegExp(`^GET VAR: .+ \\(ERR ${code}\\)$`));
    }
    const odd = parseErrorLine('ERR SOMETHING-NEW extra words')!;
    assert.equal(odd.code, 'SOMETHING-NEW');
    assert.equal(odd.extra, 'extra words');
    assert.equal(parseErrorLine('ERRATIC'), undefined);
    assert.equal(parseErrorLine('VAR sim x "ERR"'), undefined);
  });

  it('reads a LIST VAR block and checks its framing', () => {
    const r = new ListReader(['VAR', 'sim'], 'VAR', 'LIST VAR sim');
    assert.equal(r.accept('BEGIN LIST VAR sim'), undefined);
    assert.equal(r.accept('VAR sim ups.status "OL"'), undefined);
    assert.equal(r.accept('VAR sim battery.charge "100"'), undefined);
    const block = r.accept('END LIST VAR sim')!;
    assert.deepEqual(varsFromList(block, 'sim'), { 'ups.status': 'OL', 'battery.charge': '100' });
  });

  it('rejects a block with a wrong header, foreign rows or a mismatched end', () => {
    assert.throws(() => new ListReader(['VAR', 'sim'], 'VAR', 'x').accept('BEGIN LIST VAR other'), NutProtocolError);
    const r = new ListReader(['VAR', 'sim'], 'VAR', 'x');
    r.accept('BEGIN LIST VAR sim');
    assert.throws(() => r.accept('UPS sim "x"'), NutProtocolError);
    const r2 = new ListReader(['VAR', 'sim'], 'VAR', 'x');
    r2.accept('BEGIN LIST VAR sim');
    assert.throws(() => r2.accept('END LIST VAR other'), NutProtocolError);
    const r3 = new ListReader(['VAR', 'sim'], 'VAR', 'x');
    assert.throws(() => r3.accept('ERR UNKNOWN-UPS'), (e: unknown) => e instanceof NutError && e.code === 'UNKNOWN-UPS');
  });

  it('accepts END LIST CMD <ups> as upsd really sends it', () => {
    const r = new ListReader(['CMD', 'sim'], 'CMD', 'x');
    r.accept('BEGIN LIST CMD sim');
    r.accept('CMD sim load.off');
    assert.deepEqual(r.accept('END LIST CMD sim')!.rows, [['CMD', 'sim', 'load.off']]);
  });

  it('splits a stream cut at any byte into the same lines, CRLF included', () => {
    const text = 'BEGIN LIST VAR sim\r\nVAR sim ups.status "OB LB"\nVAR sim battery.charge "9"\nEND LIST VAR sim\n';
    for (let cut = 0; cut <= text.length; cut++) {
      const s = new LineSplitter();
      const lines = [...s.push(text.slice(0, cut)), ...s.push(text.slice(cut))];
      assert.deepEqual(lines, ['BEGIN LIST VAR sim', 'VAR sim ups.status "OB LB"', 'VAR sim battery.charge "9"', 'END LIST VAR sim']);
    }
  });

  it('refuses an oversized line, with or without a newline, and keeps nothing of it', () => {
    const s = new LineSplitter();
    assert.throws(() => s.push('x'.repeat(MAX_LINE_BYTES + 1)), /longer than/);
    assert.equal(s.pending, 0);
    const s2 = new LineSplitter();
    assert.throws(() => s2.push('VAR ' + 'y'.repeat(MAX_LINE_BYTES) + '\n'), /longer than/);
  });

  it('a LIST reply of more than MAX_LIST_ROWS rows is a protocol error; exactly that many is read', () => {
    const full = new ListReader(['VAR', 'sim'], 'VAR', 'x');
    full.accept('BEGIN LIST VAR sim');
    for (let i = 0; i < MAX_LIST_ROWS; i++) assert.equal(full.accept(`VAR sim v${i} "1"`), undefined);
    assert.equal(full.accept('END LIST VAR sim')!.rows.length, MAX_LIST_ROWS);
    const over = new ListReader(['VAR', 'sim'], 'VAR', 'x');
    over.accept('BEGIN LIST VAR sim');
    for (let i = 0; i < MAX_LIST_ROWS; i++) over.accept(`VAR sim v${i} "1"`);
    assert.throws(() => over.accept('VAR sim one.too.many "1"'), (e: unknown) => e instanceof NutProtocolError && /more than 10000 rows/.test(e.message));
  });

  it('fuzz: 50 000 random and mutated lines, whole or as a byte stream cut at random points, only ever give protocol errors, the same either way', () => {
    const r = rng(12345);
    const seeds = ['BEGIN LIST VAR sim', 'VAR sim ups.status "OB LB"', 'END LIST VAR sim', 'ERR DATA-STALE', 'VAR sim ups.alarm "a \\"b\\""', 'UPS sim "desc"'];
    const alphabet = ' "\\#\tABCVERLISTOBLB.0123456789\u00e9\u0000\r';
    let parsed = 0;
    let rejected = 0;
    let cuts = 0;
    /** What the client makes of these reply lines: the variables, or the class and text of the error. */
    const outcome = (lines: string[]): string => {
      const reader = new ListReader(['VAR', 'sim'], 'VAR', 'fuzz');
      try {
        for (const l of lines) {
          tokenize(l);
          const block = reader.accept(l);
          if (block) return 'vars ' + JSON.stringify(varsFromList(block, 'sim'));
        }
        return 'incomplete';
      } catch (err) {
        assert.ok(err instanceof NutProtocolError || err instanceof NutError, `lines ${JSON.stringify(lines)} threw ${(err as Error)?.name}: ${(err as Error)?.message}`);
        return `${(err as Error).name}: ${(err as Error).message}`;
      }
    };
    for (let i = 0; i < 50000; i++) {
      let line: string;
      if (r() < 0.5) {
        line = Array.from({ length: Math.floor(r() * 60) }, () => alphabet[Math.floor(r() * alphabet.length)]).join('');
      } else {
        const chars = seeds[Math.floor(r() * seeds.length)].split('');
        for (let k = 0, m = 1 + Math.floor(r() * 4); k < m; k++) {
          const at = Math.floor(r() * (chars.length + 1));
          const op = r();
          if (op < 0.33) chars.splice(at, 1);
          else if (op < 0.66) chars.splice(at, 0, alphabet[Math.floor(r() * alphabet.length)]);
          else chars.splice(at, 0, '"');
        }
        line = chars.join('');
      }
      // Whole lines, as the splitter would hand them over (a CR before the LF is dropped).
      const whole = ['BEGIN LIST VAR sim', line.replace(/\r$/, ''), 'END LIST VAR sim'];
      const expected = outcome(whole);
      if (expected.startsWith('vars')) parsed++;
      else rejected++;
      // The same reply as bytes off the socket, cut anywhere (inside a UTF-8 sequence too), decoded
      // and split the way the connection does it.
      const bytes = Buffer.from(`BEGIN LIST VAR sim\n${line}\nEND LIST VAR sim\n`, 'utf8');
      const decoder = new StringDecoder('utf8');
      const splitter = new LineSplitter();
      const lines: string[] = [];
      for (let at = 0; at < bytes.length;) {
        const next = Math.min(bytes.length, at + 1 + Math.floor(r() * 12));
        lines.push(...splitter.push(decoder.write(bytes.subarray(at, next))));
        at = next;
        cuts++;
      }
      assert.equal(splitter.pending, 0);
      assert.equal(outcome(lines), expected, `line ${JSON.stringify(line)}`);
    }
    assert.ok(parsed > 1000 && rejected > 1000, `both paths exercised (parsed ${parsed}, rejected ${rejected})`);
    assert.ok(cuts > 50000 * 3, `streams were cut (${cuts} chunks)`);
  });
});

describe('NUT connection against a misbehaving server', () => {
  it('a reply cut off mid-list, then the socket closed: rejects with a connection error', async () => {
    const srv = await lineServer((_l, s) => s.end('BEGIN LIST VAR sim\nVAR sim ups.status "O'));
    try {
      const c = await NutConnection.connect({ host: '127.0.0.1', port: srv.port, timeoutMs: 2000 });
      await assert.rejects(c.listVar('sim'), NutConnectionError);
      assert.ok(c.closed);
    } finally {
      await srv.close();
    }
  });

  it('an endless line: rejected as oversized, connection closed', async () => {
    const srv = await lineServer((_l, s) => s.write('VAR sim x "' + 'z'.repeat(MAX_LINE_BYTES * 2)));
    try {
      const c = await NutConnection.connect({ host: '127.0.0.1', port: srv.port, timeoutMs: 2000 });
      await assert.rejects(c.listVar('sim'), /longer than/);
      assert.ok(c.closed);
    } finally {
      await srv.close();
    }
  });

  it('silence: the request times out within its bound and the connection closes', async () => {
    const srv = await lineServer(() => undefined);
    try {
      const c = await NutConnection.connect({ host: '127.0.0.1', port: srv.port, timeoutMs: 300 });
      const t0 = Date.now();
      await assert.rejects(c.listVar('sim'), /did not answer/);
      assert.ok(Date.now() - t0 < 2000);
      assert.ok(c.closed);
    } finally {
      await srv.close();
    }
  });

  it('garbage and unsolicited lines: every pending request is rejected, nothing thrown elsewhere', async () => {
    const r = rng(99);
    const srv = await lineServer((_l, s) => {
      const junk = Array.from({ length: 200 }, () => String.fromCharCode(Math.floor(r() * 256))).join('');
      s.write(junk + '\nVAR sim x "y"\nEND LIST VAR sim\n');
    });
    try {
      for (let i = 0; i < 50; i++) {
        const c = await NutConnection.connect({ host: '127.0.0.1', port: srv.port, timeoutMs: 1000 });
        const results = await Promise.allSettled([c.listVar('sim'), c.getVar('sim', 'ups.status'), c.listUps()]);
        for (const res of results) assert.equal(res.status, 'rejected');
        assert.ok(c.closed);
      }
    } finally {
      await srv.close();
    }
  });

  it('stopping a device while upsd hangs on a request takes no time and leaves no timer', async () => {
    const srv = await lineServer(() => undefined);
    try {
      const before = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
      const device = new UpsDevice(new NutSource({ host: '127.0.0.1', port: srv.port, ups: 'sim', username: 'u', password: 'p', timeoutMs: 30000 }), { name: 'sim', pollMs: 1000, pollOnBatteryMs: 1000 });
      const states: string[] = [];
      const unsubscribe = device.subscribe((s) => states.push(s.comm));
      await new Promise((r) => setTimeout(r, 300)); // USERNAME sent, no answer: a request is in flight
      const t0 = Date.now();
      await unsubscribe();
      assert.ok(Date.now() - t0 < 500, `stop took ${Date.now() - t0} ms`);
      await new Promise((r) => setTimeout(r, 50));
      const after = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
      assert.ok(after <= before, `timers before ${before}, after ${after}`);
    } finally {
      await srv.close();
    }
  });

  it('a LIST reply that never ends is cut off at MAX_LIST_ROWS rows and the connection closed', async () => {
    const rows = Array.from({ length: MAX_LIST_ROWS + 5 }, (_, i) => `VAR sim v${i} "1"\n`).join('');
    const srv = await lineServer((_l, s) => s.write('BEGIN LIST VAR sim\n' + rows));
    try {
      const c = await NutConnection.connect({ host: '127.0.0.1', port: srv.port, timeoutMs: 5000 });
      await assert.rejects(c.listVar('sim'), (e: unknown) => e instanceof NutProtocolError && /more than 10000 rows/.test(e.message));
      assert.ok(c.closed);
    } finally {
      await srv.close();
    }
  });

  it('a server that accepts and hangs up at once: reconnects back off instead of one connection per poll', async () => {
    let accepted = 0;
    const server = net.createServer((s) => {
      accepted++;
      s.on('error', () => undefined);
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const device = new UpsDevice(new NutSource({ host: '127.0.0.1', port, ups: 'sim', timeoutMs: 2000, backoffMinMs: 200, backoffMaxMs: 800 }), { name: 'sim', pollMs: 50, pollOnBatteryMs: 50 });
    const states: Array<{ comm: string; commError: string | null }> = [];
    const unsubscribe = device.subscribe((st) => states.push(st));
    try {
      await new Promise((r) => setTimeout(r, 3000));
    } finally {
      await unsubscribe();
      await new Promise<void>((r) => server.close(() => r()));
    }
    // Polling every 50 ms, one connection per poll would be ~60; backing off 200 → 400 → 800 ms gives ~6.
    assert.ok(accepted >= 2 && accepted <= 10, `${accepted} connections in 3 s`);
    assert.ok(states.length > 2 * accepted, `every poll still reports (${states.length} states)`);
    assert.ok(states.every((st) => st.comm === 'lost' && /closed the connection/.test(st.commError ?? '')), JSON.stringify(states.slice(0, 3)));
  });

  /** A stand-in upsd that answers the login with `answers` and LIST VAR with a small list; records what it was sent. */
  async function loginServer(answers: Record<string, string | null>) {
    const seen: string[] = [];
    let hungUp = 0;
    const srv = await lineServer((line, s) => {
      if (seen.length === 0) s.on('close', () => hungUp++);
      seen.push(line);
      const word = line.split(' ')[0];
      if (word === 'LIST') return s.write('BEGIN LIST VAR sim\nVAR sim ups.status "OL"\nEND LIST VAR sim\n');
      const answer = word in answers ? answers[word] : 'OK';
      if (answer !== null) s.write(answer + '\n');
    });
    return { ...srv, seen, hungUp: () => hungUp };
  }

  it('a login answered with something other than OK: hung up and reported as lost, never read without the login', async () => {
    const srv = await loginServer({ PASSWORD: 'OK maybe', LOGIN: 'WHAT?' });
    const source = new NutSource({ host: '127.0.0.1', port: srv.port, ups: 'sim', username: 'monuser', password: 'p', timeoutMs: 2000, backoffMinMs: 60000 });
    try {
      const first = await source.read(Date.now()).then(() => null, (e: unknown) => e as SourceError);
      assert.ok(first instanceof SourceError, 'the read fails');
      assert.equal(first.comm, 'lost');
      assert.match(first.message, /unexpected reply to LOGIN: "WHAT\?"/);
      // Within the backoff the next read neither reconnects nor reads on the old connection.
      const second = await source.read(Date.now()).then(() => null, (e: unknown) => e as SourceError);
      assert.equal(second?.message, first.message);
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(srv.seen, ['USERNAME monuser', 'PASSWORD "p"', 'LOGIN sim']);
      assert.equal(srv.hungUp(), 1, 'the connection was closed');
    } finally {
      await source.close();
      await srv.close();
    }
  });

  it('a username NUT cannot send (a space): nothing is read without the login', async () => {
    const srv = await loginServer({});
    const source = new NutSource({ host: '127.0.0.1', port: srv.port, ups: 'sim', username: 'mon user', password: 'p', timeoutMs: 2000, backoffMinMs: 50, backoffMaxMs: 50 });
    try {
      for (let i = 0; i < 3; i++) {
        await assert.rejects(source.read(Date.now()), (e: unknown) => e instanceof SourceError && e.comm === 'lost' && /username "mon user" contains characters NUT does not allow/.test(e.message));
        await new Promise((r) => setTimeout(r, 80));
      }
      assert.deepEqual(srv.seen, []);
      assert.equal(source.warning, null);
    } finally {
      await source.close();
      await srv.close();
    }
  });

  it('close() with a upsd that never answers LOGOUT hangs up after LOGOUT_WAIT_MS, not the request timeout', async () => {
    const srv = await loginServer({ LOGOUT: null });
    const source = new NutSource({ host: '127.0.0.1', port: srv.port, ups: 'sim', username: 'monuser', password: 'p', timeoutMs: 30000 });
    try {
      assert.equal((await source.read(Date.now())).vars['ups.status'], 'OL');
      const t0 = Date.now();
      await source.close();
      const ms = Date.now() - t0;
      assert.ok(ms >= LOGOUT_WAIT_MS - 50, `LOGOUT was waited for (${ms} ms)`);
      assert.ok(ms < LOGOUT_WAIT_MS + 3000, `close took ${ms} ms (request timeout 30 s, Node-RED allows 15 s)`);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(srv.seen.at(-1), 'LOGOUT');
      assert.equal(srv.hungUp(), 1);
    } finally {
      await srv.close();
    }
  });

  it('connection refused: a sentence that says what to check', async () => {
    const srv = await lineServer(() => undefined);
    const port = srv.port;
    await srv.close();
    await assert.rejects(NutConnection.connect({ host: '127.0.0.1', port, timeoutMs: 1000 }), /connection refused at 127\.0\.0\.1:\d+: is upsd running/);
  });
});
