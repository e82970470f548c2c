/**
 * The NUT server (lib/nutserver) on its own, in this process, talked to over real TCP sockets on
 * loopback: the request parser, upsd 2.8.0's replies and error codes, FSD, instant commands, and
 * that no client can disturb another. The same server against real NUT clients and side by side
 * with the real upsd: test/nut-server.nut.test.ts.
 */
import { strict as assert } from 'node:assert';
import { CommandParser, CommandTooLong, quoteValue } from '../lib/nutserver/parse';
import { NutServer, ServedUps } from '../lib/nutserver/server';
import { varsOf } from '../lib/nutserver/vars';
import { allowList } from '../lib/nutserver/allow';
import { parseServerConfig, parseSecondariesConfig, connectionString } from '../lib/nutserver/config';
import { FileFsdStore } from '../lib/nutserver/fsd-store';
import { commandsFor } from '../lib/nutserver/commands';
import { parseDeviceConfig } from '../lib/ups/config';
import { Interrupted } from '../lib/actions/contract';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { NutSecondariesDriver } from '../lib/nutserver/secondaries';
import { runAction } from '../lib/actions/run';
import { UpsState, normalise, withComm } from '../lib/ups/state';
import { RawClient } from './util/nut-raw';

const parse = (text: string | Buffer): string[][] => new CommandParser().push(Buffer.isBuffer(text) ? text : Buffer.from(text, 'latin1'));

const VARS = {
  'ups.status': 'OL CHRG',
  'battery.charge': '97',
  'battery.runtime': '3120',
  'input.voltage': '231.0',
  'output.voltage': '230.0',
  'ups.load': '23',
  'ups.realpower': '150',
  'ups.temperature': '30.5',
  'device.mfr': 'Acme "Power" #1',
  'device.model': 'Backup 1500',
  'device.serial': 'SN-42',
};

/** A served UPS whose state the test sets. */
class FakeSource {
  state: UpsState | undefined;
  ran: Array<{ cmd: string; param?: string }> = [];
  failNext = false;
  constructor(readonly name: string, vars: Record<string, string> = VARS, source: UpsState['source'] = 'sim') {
    this.set(vars, source);
  }
  set(vars: Record<string, string>, source: UpsState['source'] = 'sim'): void {
    this.state = normalise({ ups: this.name, source, vars, ts: Date.now(), secondsOnBattery: 0 });
  }
  touch(): void {
    if (this.state) this.state = { ...this.state, ts: Date.now() };
  }
  served(extra: Partial<ServedUps> = {}): ServedUps {
    return {
      name: this.name,
      description: `${this.name} "desc"`,
      state: () => this.state,
      commands: {
        list: () => ['test.failure.start', 'test.failure.stop'],
        run: async (cmd, param) => {
          if (this.failNext) {
            this.failNext = false;
            throw new Error('refused by the source');
          }
          this.ran.push({ cmd, param });
        },
      },
      ...extra,
    };
  }
}

const USERS = [
  { username: 'monuser', password: 'secret', upsmon: 'secondary' as const, fsd: false, instcmds: [] },
  { username: 'prim', password: 'primpass', upsmon: 'primary' as const, fsd: false, instcmds: [] },
  { username: 'admin', password: 'adminpass', upsmon: 'none' as const, fsd: true, instcmds: ['test.failure.start'] },
];

async function startServer(ups: ServedUps[], over: Partial<ConstructorParameters<typeof NutServer>[0]> = {}): Promise<NutServer> {
  const s = new NutServer({ host: '127.0.0.1', port: 0, ups, users: USERS, ...over });
  await s.listen();
  return s;
}

async function until(pred: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('NUT server: requests are read as upsd 2.8.0 reads them (parseconf)', () => {
  it('splits words on spaces, tabs and CR, and groups quoted words', () => {
    assert.deepEqual(parse('GET VAR ups ups.status\n'), [['GET', 'VAR', 'ups', 'ups.status']]);
    assert.deepEqual(parse('\tGET\tVAR  ups\r\n'), [['GET', 'VAR', 'ups']]);
    assert.deepEqual(parse('PASSWORD "pa ss"\n'), [['PASSWORD', 'pa ss']]);
    assert.deepEqual(parse('"VER"\n'), [['VER']]);
    assert.deepEqual(parse('X "" y\n'), [['X', '', 'y']]);
  });

  it('takes the character after a backslash literally, inside and outside quotes', () => {
    assert.deepEqual(parse('GET VAR ups ups\\.status\n'), [['GET', 'VAR', 'ups', 'ups.status']]);
    assert.deepEqual(parse('X "a\\"b\\\\c"\n'), [['X', 'a"b\\c']]);
    assert.deepEqual(parse('X a\\ b\n'), [['X', 'a b']]);
  });

  it('treats a quote after a word start as part of the word, and a closed quote as a word end', () => {
    assert.deepEqual(parse('VER x"y\n'), [['VER', 'x"y']]);
    assert.deepEqual(parse('X "a"b\n'), [['X', 'a', 'b']]);
  });

  it('starts a comment at # outside quotes (even mid-word), keeps # inside quotes', () => {
    assert.deepEqual(parse('GET VAR ups ups.status # note\n'), [['GET', 'VAR', 'ups', 'ups.status']]);
    assert.deepEqual(parse('VER#x\n'), [['VER']]);
    assert.deepEqual(parse('X "a#b"\n'), [['X', 'a#b']]);
  });

  it('makes = a word of its own', () => {
    assert.deepEqual(parse('VER=\n'), [['VER', '=']]);
    assert.deepEqual(parse('a=b\n'), [['a', '=', 'b']]);
  });

  it('drops control characters and bytes above 0x7f, keeps DEL', () => {
    assert.deepEqual(parse(Buffer.from('VER\x01\x02\n', 'latin1')), [['VER']]);
    assert.deepEqual(parse(Buffer.from('VÄER\n', 'utf8')), [['VER']]);
    assert.deepEqual(parse(Buffer.from('V\x7fER\n', 'latin1')), [['V\x7fER']]);
  });

  it('continues a command over a line break inside quotes or after a backslash', () => {
    assert.deepEqual(parse('X "a\nb"\n'), [['X', 'ab']]);
    assert.deepEqual(parse('VER \\\nNETVER\n'), [['VER', 'NETVER']]);
  });

  it('returns empty commands for empty and blank lines, and commands split across chunks', () => {
    const p = new CommandParser();
    assert.deepEqual(p.push(Buffer.from('\n   \nGET VA')), [[], []]);
    assert.deepEqual(p.push(Buffer.from('R ups x\n')), [['GET', 'VAR', 'ups', 'x']]);
  });

  it('keeps at most 32 words of 512 characters, and refuses a command over 8 KiB', () => {
    assert.equal(parse('X ' + 'a '.repeat(40) + '\n')[0].length, 32);
    assert.equal(parse('X ' + 'b'.repeat(600) + '\n')[0][1].length, 512);
    assert.throws(() => new CommandParser().push(Buffer.alloc(8193, 0x41)), CommandTooLong);
    assert.doesNotThrow(() => new CommandParser().push(Buffer.from('A'.repeat(8191) + '\n')));
  });

  it('quotes values as upsd does: \\" \\\\ \\# escaped, control characters dropped', () => {
    assert.equal(quoteValue('a "b" \\ #1\n'), '"a \\"b\\" \\\\ \\#1"');
  });
});

describe('NUT server: variables from the normalised state', () => {
  it('serves every raw variable, sorted like upsd, with FSD in front of the status', () => {
    const src = new FakeSource('ups');
    const vars = varsOf(src.state!, true);
    const names = vars.map(([k]) => k);
    assert.deepEqual(names, [...names].sort((a, b) => (a.toLowerCase() < b.toLowerCase() ? -1 : 1)));
    assert.equal(vars.find(([k]) => k === 'ups.status')![1], 'FSD OL CHRG');
    for (const [k, v] of Object.entries(VARS)) if (k !== 'ups.status') assert.equal(vars.find(([n]) => n === k)?.[1], v, k);
  });

  it('maps the normalised fields back to NUT names when a source has no raw variables', () => {
    const base = normalise({ ups: 'ha', source: 'ha', vars: {}, ts: Date.now(), secondsOnBattery: 0 });
    const s: UpsState = { ...base, onBattery: true, lowBattery: true, discharging: true, charge: 18.5, runtime: 301.4, inputVoltage: 0, load: 40, realPower: 360, temperature: 31, device: { mfr: 'Acme', model: 'X', serial: 'S1' } };
    const m = Object.fromEntries(varsOf(s, false));
    assert.equal(m['ups.status'], 'OB LB DISCHRG');
    assert.equal(m['battery.charge'], '18.5');
    assert.equal(m['battery.runtime'], '301');
    assert.equal(m['input.voltage'], '0');
    assert.equal(m['ups.load'], '40');
    assert.equal(m['ups.realpower'], '360');
    assert.equal(m['ups.temperature'], '31');
    assert.equal(m['device.mfr'], 'Acme');
    assert.equal(m['device.model'], 'X');
    assert.equal(m['device.serial'], 'S1');
    assert.equal(m['device.type'], 'ups');
  });

  it('serves a NUT source with exactly its upsd variables, nothing derived', () => {
    const src = new FakeSource('ups', { 'ups.status': 'OL', 'device.mfr': 'A' }, 'nut');
    assert.deepEqual(varsOf(src.state!, false), [['device.mfr', 'A'], ['ups.status', 'OL']]);
  });
});

describe('NUT server: replies and error codes as upsd 2.8.0', function () {
  this.timeout(20000);
  let src: FakeSource;
  let other: FakeSource;
  let server: NutServer;
  let port: number;
  const clients: RawClient[] = [];
  const client = async () => {
    const c = await RawClient.connect(port);
    clients.push(c);
    return c;
  };

  beforeEach(async () => {
    src = new FakeSource('ups');
    other = new FakeSource('spare', { 'ups.status': 'OB DISCHRG', 'battery.charge': '50' });
    server = await startServer([src.served(), other.served({ description: undefined, commands: undefined })]);
    port = server.address!.port;
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    await server.close();
  });

  it('answers VER, NETVER, PROTVER and HELP, and refuses arguments to them', async () => {
    const c = await client();
    assert.deepEqual(await c.ask(['VER', 'NETVER', 'PROTVER', 'HELP', 'VER x', 'HELP x', 'NETVER x', 'ver']), [
      'Network UPS Tools upsd 2.8.0 - http://www.networkupstools.org/',
      '1.3',
      '1.3',
      'Commands: HELP VER GET LIST SET INSTCMD LOGIN LOGOUT USERNAME PASSWORD STARTTLS',
      'ERR INVALID-ARGUMENT',
      'ERR INVALID-ARGUMENT',
      'ERR INVALID-ARGUMENT',
      'Network UPS Tools upsd 2.8.0 - http://www.networkupstools.org/',
    ]);
  });

  it('lists the UPSes with their descriptions, quoted and escaped', async () => {
    const c = await client();
    assert.deepEqual(await c.askList('LIST UPS'), ['BEGIN LIST UPS', 'UPS ups "ups \\"desc\\""', 'UPS spare "Description unavailable"', 'END LIST UPS']);
    assert.deepEqual(await c.ask(['GET UPSDESC ups', 'GET UPSDESC spare', 'GET UPSDESC nosuch']), ['UPSDESC ups "ups \\"desc\\""', 'UPSDESC spare "Unavailable"', 'ERR UNKNOWN-UPS']);
  });

  it('lists every variable, sorted, values escaped, and answers GET VAR case-insensitively with the names as asked', async () => {
    const c = await client();
    const list = await c.askList('LIST VAR ups');
    assert.equal(list[0], 'BEGIN LIST VAR ups');
    assert.equal(list[list.length - 1], 'END LIST VAR ups');
    assert.ok(list.includes('VAR ups device.mfr "Acme \\"Power\\" \\#1"'));
    assert.ok(list.includes('VAR ups ups.status "OL CHRG"'));
    assert.deepEqual(await c.ask(['GET VAR ups battery.charge', 'get var UPS Battery.Charge', 'GET VAR ups nosuch', 'GET VAR nosuch ups.status']), [
      'VAR ups battery.charge "97"',
      'VAR UPS Battery.Charge "97"',
      'ERR VAR-NOT-SUPPORTED',
      'ERR UNKNOWN-UPS',
    ]);
  });

  it('answers server.info and server.version for any UPS name', async () => {
    const c = await client();
    assert.deepEqual(await c.ask(['GET VAR nosuch server.version', 'GET VAR x server.info', 'GET VAR ups server.other']), [
      'VAR nosuch server.version "2.8.0"',
      'VAR x server.info "Network UPS Tools upsd 2.8.0 - http://www.networkupstools.org/"',
      'ERR VAR-NOT-SUPPORTED',
    ]);
  });

  it('answers the other GET and LIST forms and their argument errors', async () => {
    const c = await client();
    assert.deepEqual(await c.ask(['GET', 'GET VAR', 'GET VAR ups', 'GET BOGUS ups x', 'GET TYPE ups battery.charge', 'GET TYPE ups device.model', 'GET TYPE ups nosuch',
      'GET TYPE ups ups.status', 'GET TYPE ups device.serial',
      'GET DESC ups ups.status', 'GET DESC ups no.such', 'GET CMDDESC ups test.failure.start', 'GET NUMLOGINS ups', 'GET NUMLOGINS nosuch', 'LIST', 'LIST VAR', 'LIST BOGUS ups', 'LIST VAR nosuch', 'LIST ENUM ups nosuch', 'GET TRACKING']), [
      'ERR INVALID-ARGUMENT', 'ERR INVALID-ARGUMENT', 'ERR INVALID-ARGUMENT', 'ERR INVALID-ARGUMENT', 'TYPE ups battery.charge NUMBER', 'TYPE ups device.model STRING:128', 'ERR VAR-NOT-SUPPORTED',
      // As upsd for snmp-ups: text flagged STRING with its field size, the status unflagged (NUMBER).
      'TYPE ups ups.status NUMBER', 'TYPE ups device.serial STRING:128',
      'DESC ups ups.status "UPS status"', 'DESC ups no.such "Description unavailable"', 'CMDDESC ups test.failure.start "Start a simulated power failure"', 'NUMLOGINS ups 0', 'ERR UNKNOWN-UPS',
      'ERR INVALID-ARGUMENT', 'ERR INVALID-ARGUMENT', 'ERR INVALID-ARGUMENT', 'ERR UNKNOWN-UPS', 'ERR VAR-NOT-SUPPORTED', 'OFF',
    ]);
    assert.deepEqual(await c.askList('LIST CMD ups'), ['BEGIN LIST CMD ups', 'CMD ups test.failure.start', 'CMD ups test.failure.stop', 'END LIST CMD ups']);
    assert.deepEqual(await c.askList('LIST CMD spare'), ['BEGIN LIST CMD spare', 'END LIST CMD spare']);
    assert.deepEqual(await c.askList('LIST RW ups'), ['BEGIN LIST RW ups', 'END LIST RW ups']);
    assert.deepEqual(await c.askList('LIST ENUM ups ups.status'), ['BEGIN LIST ENUM ups ups.status', 'END LIST ENUM ups ups.status']);
    assert.deepEqual(await c.askList('LIST RANGE ups ups.status'), ['BEGIN LIST RANGE ups ups.status', 'END LIST RANGE ups ups.status']);
  });

  it('answers unknown, empty and comment-only lines with ERR UNKNOWN-COMMAND', async () => {
    const c = await client();
    assert.deepEqual(await c.ask(['bogus', 'FOO bar', '', '   ', '# just a comment', 'ATTACH ups']), Array(6).fill('ERR UNKNOWN-COMMAND'));
  });

  it('asks for USERNAME, then PASSWORD, before privileged commands, and refuses setting them twice', async () => {
    const c = await client();
    assert.deepEqual(await c.ask(['LOGIN ups', 'FSD ups', 'PRIMARY ups', 'INSTCMD ups x', 'SET VAR ups x 1', 'USERNAME monuser', 'LOGIN ups', 'PASSWORD secret', 'USERNAME again', 'PASSWORD again', 'USERNAME', 'PASSWORD a b']), [
      'ERR USERNAME-REQUIRED', 'ERR USERNAME-REQUIRED', 'ERR USERNAME-REQUIRED', 'ERR USERNAME-REQUIRED', 'ERR USERNAME-REQUIRED', 'OK', 'ERR PASSWORD-REQUIRED', 'OK',
      'ERR ALREADY-SET-USERNAME', 'ERR ALREADY-SET-PASSWORD', 'ERR INVALID-ARGUMENT', 'ERR INVALID-ARGUMENT',
    ]);
  });

  it('accepts a wrong password and refuses it at the privileged command (ERR ACCESS-DENIED), as upsd', async () => {
    const c = await client();
    assert.deepEqual(await c.ask(['USERNAME monuser', 'PASSWORD wrong', 'LOGIN ups', 'FSD ups', 'GET NUMLOGINS ups']), ['OK', 'OK', 'ERR ACCESS-DENIED', 'ERR ACCESS-DENIED', 'NUMLOGINS ups 0']);
    const d = await client();
    assert.deepEqual(await d.ask(['USERNAME nobody', 'PASSWORD secret', 'LOGIN ups']), ['OK', 'OK', 'ERR ACCESS-DENIED']);
  });

  it('logs a secondary in: NUMLOGINS and LIST CLIENT count it, LOGOUT says goodbye and closes', async () => {
    const c = await client();
    assert.deepEqual(await c.ask(['USERNAME monuser', 'PASSWORD secret', 'LOGIN', 'LOGIN nosuch', 'LOGIN UPS', 'LOGIN ups', 'GET NUMLOGINS ups']), [
      'OK', 'OK', 'ERR INVALID-ARGUMENT', 'ERR UNKNOWN-UPS', 'OK', 'ERR ALREADY-LOGGED-IN', 'NUMLOGINS ups 1',
    ]);
    assert.deepEqual(await c.askList('LIST CLIENT ups'), ['BEGIN LIST CLIENT ups', 'CLIENT ups 127.0.0.1', 'END LIST CLIENT ups']);
    assert.deepEqual(server.clients('ups').map((x) => x.username), ['monuser']);
    assert.deepEqual(await c.ask(['LOGOUT x', 'LOGOUT']), ['ERR INVALID-ARGUMENT', 'OK Goodbye']);
    assert.ok(await c.waitClosed(3000), 'closed after LOGOUT');
    assert.equal(server.numLogins('ups'), 0);
  });

  it('counts a client that disconnects without LOGOUT as gone', async () => {
    const c = await client();
    await c.ask(['USERNAME monuser', 'PASSWORD secret', 'LOGIN ups']);
    assert.equal(server.numLogins('ups'), 1);
    const left = new Promise<{ reason: string }>((r) => server.once('logout', r));
    c.destroy();
    assert.equal((await left).reason, 'closed');
    assert.equal(server.numLogins('ups'), 0);
  });

  it('grants PRIMARY/MASTER to primaries only', async () => {
    const s = await client();
    assert.deepEqual(await s.ask(['USERNAME monuser', 'PASSWORD secret', 'PRIMARY ups', 'MASTER ups']), ['OK', 'OK', 'ERR ACCESS-DENIED', 'ERR ACCESS-DENIED']);
    const p = await client();
    assert.deepEqual(await p.ask(['USERNAME prim', 'PASSWORD primpass', 'PRIMARY ups', 'MASTER ups', 'PRIMARY nosuch', 'PRIMARY']), ['OK', 'OK', 'OK PRIMARY-GRANTED', 'OK MASTER-GRANTED', 'ERR UNKNOWN-UPS', 'ERR INVALID-ARGUMENT']);
  });

  it('raises FSD for a primary or an FSD user, shows it in ups.status, and keeps it until cleared', async () => {
    const s = await client();
    assert.deepEqual(await s.ask(['USERNAME monuser', 'PASSWORD secret', 'FSD ups']), ['OK', 'OK', 'ERR ACCESS-DENIED']);
    const a = await client();
    const raised = new Promise<{ ups: string; by: string }>((r) => server.once('fsd', r));
    assert.deepEqual(await a.ask(['USERNAME admin', 'PASSWORD adminpass', 'FSD nosuch', 'FSD UPS', 'GET VAR ups ups.status', 'GET VAR spare ups.status']), [
      'OK', 'OK', 'ERR UNKNOWN-UPS', 'OK FSD-SET', 'VAR ups ups.status "FSD OL CHRG"', 'VAR spare ups.status "OB DISCHRG"',
    ]);
    assert.deepEqual(await raised, { ups: 'ups', by: 'admin@127.0.0.1' });
    src.set({ ...VARS, 'ups.status': 'OB DISCHRG' });
    assert.deepEqual(await s.ask(['GET VAR ups ups.status']), ['VAR ups ups.status "FSD OB DISCHRG"']);
    assert.ok((await s.askList('LIST VAR ups')).includes('VAR ups ups.status "FSD OB DISCHRG"'));
    assert.equal(server.clearFsd('ups'), true);
    assert.deepEqual(await s.ask(['GET VAR ups ups.status']), ['VAR ups ups.status "OB DISCHRG"']);
  });

  it('forwards an allowed instant command to the source, refuses others clearly', async () => {
    const c = await client();
    assert.deepEqual(await c.ask(['USERNAME admin', 'PASSWORD adminpass', 'INSTCMD ups', 'INSTCMD nosuch x', 'INSTCMD ups load.off', 'INSTCMD ups test.failure.stop', 'INSTCMD spare test.failure.start', 'INSTCMD ups TEST.FAILURE.START', 'INSTCMD ups test.failure.start 5']), [
      'OK', 'OK', 'ERR INVALID-ARGUMENT', 'ERR UNKNOWN-UPS', 'ERR CMD-NOT-SUPPORTED', 'ERR ACCESS-DENIED', 'ERR CMD-NOT-SUPPORTED', 'OK', 'OK',
    ]);
    assert.deepEqual(src.ran, [{ cmd: 'test.failure.start', param: undefined }, { cmd: 'test.failure.start', param: '5' }]);
    src.failNext = true;
    assert.deepEqual(await c.ask(['INSTCMD ups test.failure.start']), ['ERR INSTCMD-FAILED']);
  });

  it('tracks instant commands when asked (SET TRACKING ON, GET TRACKING <id>)', async () => {
    const c = await client();
    assert.deepEqual(await c.ask(['SET TRACKING ON', 'USERNAME admin', 'PASSWORD adminpass', 'GET TRACKING x', 'SET TRACKING x', 'SET TRACKING on', 'GET TRACKING']), [
      'ERR USERNAME-REQUIRED', 'OK', 'OK', 'ERR FEATURE-NOT-CONFIGURED', 'ERR INVALID-ARGUMENT', 'OK', 'ON',
    ]);
    const [reply] = await c.ask(['INSTCMD ups test.failure.start']);
    const id = /^OK TRACKING ([0-9A-F-]{36})$/.exec(reply)?.[1];
    assert.ok(id, reply);
    await until(() => src.ran.length === 1);
    assert.deepEqual(await c.ask([`GET TRACKING ${id}`, `GET TRACKING ${id!.toLowerCase()}`, 'GET TRACKING 00000000-0000-0000-0000-000000000000']), ['SUCCESS', 'SUCCESS', 'ERR UNKNOWN']);
    assert.deepEqual(await c.ask(['SET TRACKING OFF', `GET TRACKING ${id}`]), ['OK', 'ERR FEATURE-NOT-CONFIGURED']);
  });

  it('refuses SET VAR (nothing is writable) after the upsd checks', async () => {
    const c = await client();
    assert.deepEqual(await c.ask(['USERNAME admin', 'PASSWORD adminpass', 'SET', 'SET VAR ups x', 'SET VAR nosuch x 1', 'SET VAR ups ups.status OB', 'SET BOGUS a b']), [
      'OK', 'OK', 'ERR INVALID-ARGUMENT', 'ERR INVALID-ARGUMENT', 'ERR UNKNOWN-UPS', 'ERR ACCESS-DENIED', 'ERR INVALID-ARGUMENT',
    ]);
  });

  it('refuses STARTTLS with ERR FEATURE-NOT-CONFIGURED and carries on in plain text', async () => {
    const c = await client();
    assert.deepEqual(await c.ask(['STARTTLS', 'GET VAR ups ups.status']), ['ERR FEATURE-NOT-CONFIGURED', 'VAR ups ups.status "OL CHRG"']);
  });

  it('answers ERR DATA-STALE while the source is stale, lost or old, except for UPSDESC, LIST CLIENT and LOGIN', async () => {
    const c = await client();
    await c.ask(['USERNAME admin', 'PASSWORD adminpass']);
    src.state = withComm(src.state, { ups: 'ups', source: 'sim', ts: Date.now() }, 'stale', 'old data');
    assert.deepEqual(await c.ask(['GET VAR ups ups.status', 'GET NUMLOGINS ups', 'GET TYPE ups ups.status', 'GET DESC ups ups.status', 'INSTCMD ups test.failure.start', 'SET VAR ups x 1', 'GET UPSDESC ups', 'FSD ups', 'GET VAR spare ups.status']), [
      'ERR DATA-STALE', 'ERR DATA-STALE', 'ERR DATA-STALE', 'ERR DATA-STALE', 'ERR DATA-STALE', 'ERR DATA-STALE', 'UPSDESC ups "ups \\"desc\\""', 'OK FSD-SET', 'VAR spare ups.status "OB DISCHRG"',
    ]);
    assert.deepEqual(await c.askList('LIST VAR ups'), ['ERR DATA-STALE']);
    assert.deepEqual(await c.askList('LIST CLIENT ups'), ['BEGIN LIST CLIENT ups', 'END LIST CLIENT ups']);
    src.state = withComm(src.state, { ups: 'ups', source: 'sim', ts: Date.now() }, 'lost', 'no answer');
    assert.deepEqual(await c.ask(['GET VAR ups ups.status']), ['ERR DATA-STALE']);
    src.set(VARS);
    assert.deepEqual(await c.ask(['GET VAR ups ups.status']), ['VAR ups ups.status "FSD OL CHRG"']);
    src.state = { ...src.state!, ts: Date.now() - 16_000 };
    assert.deepEqual(await c.ask(['GET VAR ups ups.status']), ['ERR DATA-STALE'], 'a state older than 15 s is stale');
    src.state = undefined;
    assert.deepEqual(await c.ask(['GET VAR ups ups.status']), ['ERR DATA-STALE'], 'no reading yet');
  });
});

describe('NUT server: one client never affects another', function () {
  this.timeout(60000);
  let src: FakeSource;
  let server: NutServer;
  let port: number;
  let ticker: NodeJS.Timeout;
  const clients: RawClient[] = [];
  const client = async (localAddress?: string) => {
    const c = await RawClient.connect(port, '127.0.0.1', localAddress);
    clients.push(c);
    return c;
  };

  async function start(over: Partial<ConstructorParameters<typeof NutServer>[0]> = {}): Promise<void> {
    server = await startServer([src.served()], over);
    port = server.address!.port;
  }

  beforeEach(() => {
    src = new FakeSource('ups');
    ticker = setInterval(() => src.touch(), 500);
  });
  afterEach(async () => {
    clearInterval(ticker);
    for (const c of clients.splice(0)) c.destroy();
    await server?.close();
  });

  /** A well-behaved client polls while `during` runs; every answer must be right. */
  async function pollWhile(during: () => Promise<void>): Promise<number> {
    const good = await client();
    let answers = 0;
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        const [r] = await good.ask(['GET VAR ups ups.status'], 1, 3000);
        assert.equal(r, 'VAR ups ups.status "OL CHRG"');
        answers++;
        await new Promise((res) => setTimeout(res, 20));
      }
    })();
    try {
      await during();
    } finally {
      stop = true;
      await loop;
    }
    return answers;
  }

  it('closes a connection that sends a line over 8 KiB, and only that one', async () => {
    await start();
    const answers = await pollWhile(async () => {
      const bad = await client();
      bad.write('GET VAR ups ' + 'x'.repeat(10_000));
      assert.ok(await bad.waitClosed(5000), 'oversized line closes the connection');
    });
    assert.ok(answers > 0);
    assert.equal(server.stats.violations, 1);
  });

  it('closes a connection that floods garbage, and only that one', async () => {
    await start();
    const answers = await pollWhile(async () => {
      const bad = await client();
      let seed = 42;
      const junk = Buffer.alloc(256 * 1024);
      for (let i = 0; i < junk.length; i++) {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        junk[i] = seed & 0xff;
      }
      // Never read the replies: the flood must end in a closed connection, not in a growing buffer.
      bad.socket.pause();
      for (let i = 0; i < 40 && !bad.closed; i++) {
        bad.write(junk);
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.ok(await bad.waitClosed(10_000), 'garbage flood closes the connection');
    });
    assert.ok(answers > 0);
  });

  it('a client that sends STARTTLS and stalls, or stops mid-line, holds up nobody', async () => {
    await start();
    const answers = await pollWhile(async () => {
      const tls = await client();
      assert.deepEqual(await tls.ask(['STARTTLS']), ['ERR FEATURE-NOT-CONFIGURED']);
      tls.write('\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03'); // the start of a TLS ClientHello, then silence
      const half = await client();
      half.write('GET VAR ups ups.sta');
      await new Promise((r) => setTimeout(r, 1500));
    });
    assert.ok(answers >= 10, `the polling client got ${answers} answers meanwhile`);
  });

  it('drops a client that pipelines requests without reading the replies, and only that one', async () => {
    await start();
    const answers = await pollWhile(async () => {
      const greedy = await client();
      greedy.socket.pause();
      const burst = 'LIST VAR ups\n'.repeat(60);
      for (let i = 0; i < 2000 && !greedy.closed; i++) {
        greedy.write(burst);
        if (i % 50 === 0) await new Promise((r) => setTimeout(r, 5));
      }
      assert.ok(await greedy.waitClosed(20_000), 'a client that never reads is dropped');
    });
    assert.ok(answers > 0);
  });

  it('closes idle connections after the timeout, and half-closed ones once answered', async () => {
    await start({ idleTimeoutMs: 1000 });
    const idle = await client();
    await idle.ask(['VER']);
    const t0 = Date.now();
    assert.ok(await idle.waitClosed(5000), 'idle connection closed');
    assert.ok(Date.now() - t0 >= 900);
    const half = await client();
    half.socket.end('GET VAR ups ups.status\nINSTCMD ups test.failure.start\n');
    assert.ok(await half.waitClosed(5000), 'half-closed connection closed');
    assert.deepEqual(half.received, ['VAR ups ups.status "OL CHRG"', 'ERR USERNAME-REQUIRED']);
    await until(() => server.connectionCount === 0, 3000, 'no connections left');
  });

  it('refuses connections beyond the cap', async () => {
    await start({ maxConnections: 3 });
    const ok = await Promise.all([client(), client(), client()]);
    for (const c of ok) assert.deepEqual(await c.ask(['NETVER']), ['1.3']);
    const extra = await client();
    assert.ok(await extra.waitClosed(3000), 'the fourth connection is closed');
    assert.equal(server.stats.refusedCap, 1);
    assert.deepEqual(await ok[0].ask(['NETVER']), ['1.3']);
  });

  it('turns away clients outside the allow-list with ERR ACCESS-DENIED', async () => {
    await start({ allow: ['127.0.0.1/32', '::1'] });
    const inside = await client();
    assert.deepEqual(await inside.ask(['NETVER']), ['1.3']);
    // All of 127.0.0.0/8 is loopback on Linux: 127.0.0.2 is a different client address.
    const outside = await client('127.0.0.2');
    const reply = await outside.ask(['GET VAR ups ups.status'], 1);
    assert.deepEqual(reply, ['ERR ACCESS-DENIED']);
    assert.ok(await outside.waitClosed(5000));
    assert.equal(server.stats.refusedAllowList, 1);
  });

  it('serves 200 concurrent logged-in clients polling every second, and keeps nothing of them once they are gone', async function () {
    this.timeout(60000);
    await start({ maxConnections: 256 });
    const internals = server as unknown as { tracking: Map<string, unknown>; refused: Set<unknown>; entries: Map<string, { logins: Set<unknown> }> };
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    const n = 200;
    const rounds = 3;
    const all = await Promise.all(Array.from({ length: n }, () => client()));
    // Half log in as upsmon does; the other half send 12 tracked commands each: 1200 tracking ids, more than are kept.
    await Promise.all(all.map(async (c, i) => {
      if (i % 2 === 0) {
        assert.deepEqual(await c.ask(['USERNAME monuser', 'PASSWORD secret', 'LOGIN ups'], 3, 10_000), ['OK', 'OK', 'OK']);
        return;
      }
      assert.deepEqual(await c.ask(['USERNAME admin', 'PASSWORD adminpass', 'SET TRACKING ON'], 3, 10_000), ['OK', 'OK', 'OK']);
      const ids = await c.ask(Array.from({ length: 12 }, () => 'INSTCMD ups test.failure.start'), 12, 10_000);
      assert.ok(ids.every((l) => /^OK TRACKING [0-9A-F-]{36}$/.test(l)), ids.join());
    }));
    assert.equal(server.clients('ups').length, n / 2);
    assert.equal(server.numLogins('ups'), n / 2);
    assert.equal(server.pendingClients().length, n / 2);
    assert.ok(internals.tracking.size <= 1024, `tracking ids kept: ${internals.tracking.size}`);
    let answers = 0;
    await Promise.all(all.map(async (c, i) => {
      await new Promise((r) => setTimeout(r, (i * 5) % 1000));
      for (let k = 0; k < rounds; k++) {
        const t = Date.now();
        const [status, charge] = await c.ask(['GET VAR ups ups.status', 'GET VAR ups battery.charge'], 2, 10_000);
        assert.equal(status, 'VAR ups ups.status "OL CHRG"');
        assert.equal(charge, 'VAR ups battery.charge "97"');
        answers++;
        await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - t))));
      }
    }));
    assert.equal(answers, n * rounds);
    assert.equal(server.connectionCount, n);
    for (const c of all) c.destroy();
    await until(() => server.connectionCount === 0, 5000, 'all connections gone');
    // Nothing of the 200 stays behind: no login, no pending client, no refused socket.
    assert.equal(server.numLogins('ups'), 0);
    assert.deepEqual(server.clients(), []);
    assert.deepEqual(server.pendingClients(), []);
    assert.equal(internals.refused.size, 0);
    assert.equal(internals.entries.get('ups')!.logins.size, 0);
    assert.equal(server.stats.connections, 0);
    if (gc) {
      gc();
      const grown = process.memoryUsage().heapUsed - heapBefore;
      assert.ok(grown < 16 * 1024 * 1024, `heap grew by ${Math.round(grown / 1024)} KiB`);
    }
  });
});

describe('NUT server: configuration', () => {
  const base = { host: '127.0.0.1', port: '3493', device1: 'dev1', upsName1: 'ups', user1: 'monuser', role1: 'secondary' };

  it('accepts a minimal configuration with defaults', () => {
    const c = parseServerConfig(base, { password1: 'secret' });
    assert.equal(c.port, 3493);
    assert.equal(c.idleTimeoutMs, 60_000);
    assert.deepEqual(c.ups, [{ device: 'dev1', name: 'ups', description: '' }]);
    assert.deepEqual(c.users, [{ username: 'monuser', password: 'secret', upsmon: 'secondary', fsd: false, instcmds: [] }]);
  });

  it('explains every problem in one message', () => {
    assert.throws(() => parseServerConfig({ ...base, host: '' }, { password1: 'x' }), /listen address must be an IP address/);
    assert.throws(() => parseServerConfig({ ...base, device1: '' }, { password1: 'x' }), /at least one UPS/);
    assert.throws(() => parseServerConfig({ ...base, device2: 'd2', upsName2: 'UPS' }, { password1: 'x' }), /"UPS" is used twice/);
    assert.throws(() => parseServerConfig({ ...base, user2: 'monuser' }, { password1: 'x' }), /"monuser" is defined twice/);
    assert.throws(() => parseServerConfig(base, { password1: 'has space' }), /without spaces/);
    assert.throws(() => parseServerConfig({ ...base, allow: '10.0.0.0/33, nonsense' }, { password1: 'x' }), /prefix length must be 0 to 32.*nonsense/);
    assert.throws(() => parseServerConfig({ ...base, port: 70000 }, { password1: 'x' }), /port must be between 1 and 65535/);
  });

  it('serves with a user whose password is not set yet, and names that user so the node can warn', () => {
    const c = parseServerConfig({ ...base, user2: 'nas', role2: 'secondary' }, { password1: 'secret' });
    assert.deepEqual(c.users.map((u) => u.username), ['monuser'], 'a user without a password cannot log in');
    assert.deepEqual(c.usersWithoutPassword, ['nas']);
  });

  it('writes the connection string a NAS needs', () => {
    assert.equal(connectionString('ups', '192.168.1.10', 3493), 'ups@192.168.1.10');
    assert.equal(connectionString('ups', '192.168.1.10', 3494), 'ups@192.168.1.10:3494');
    assert.equal(connectionString('ups', 'fd00::5', 3494), 'ups@[fd00::5]:3494');
  });

  it('matches allow-list entries for IPv4, IPv6 and IPv4-mapped addresses', () => {
    const a = allowList(['192.168.1.0/24', 'fd00::/8']);
    assert.equal(a.allows('192.168.1.77'), true);
    assert.equal(a.allows('::ffff:192.168.1.77'), true);
    assert.equal(a.allows('192.168.2.1'), false);
    assert.equal(a.allows('fd12::1'), true);
    assert.equal(a.allows('2001:db8::1'), false);
    assert.equal(allowList([]).allows('203.0.113.9'), true);
  });

  it('validates the NUT secondaries action', () => {
    assert.deepEqual(parseSecondariesConfig({ server: 's', ups: 'ups, ups2', timeout: '30' }), { name: '', server: 's', ups: ['ups', 'ups2'], timeoutMs: 30_000, clearOnStartup: true, expected: { count: 0, names: [] } });
    assert.deepEqual(parseSecondariesConfig({ server: 's', expected: '2' }).expected, { count: 2, names: [] });
    assert.deepEqual(parseSecondariesConfig({ server: 's', expected: 'nas1, 192.168.1.20\nmonuser@fd00::7' }).expected, { count: 0, names: ['nas1', '192.168.1.20', 'monuser@fd00::7'] });
    assert.throws(() => parseSecondariesConfig({ server: 's', expected: 'nas#1' }), /expected clients: "nas#1" is neither/);
    assert.throws(() => parseSecondariesConfig({ server: '' }), /no NUT server selected/);
    assert.throws(() => parseSecondariesConfig({ server: 's', ups: 'a@b' }), /not a NUT UPS name/);
  });
});

describe('NUT secondaries action (through the action contract)', function () {
  this.timeout(20000);
  let src: FakeSource;
  let server: NutServer;
  const clients: RawClient[] = [];
  const secondary = async (user = 'monuser', pass = 'secret') => {
    const c = await RawClient.connect(server.address!.port);
    clients.push(c);
    assert.deepEqual(await c.ask([`USERNAME ${user}`, `PASSWORD ${pass}`, 'LOGIN ups']), ['OK', 'OK', 'OK']);
    return c;
  };
  const request = (over: Partial<Parameters<typeof runAction>[1]> = {}): Parameters<typeof runAction>[1] => ({
    selection: { patterns: ['*'] },
    options: { operation: 'shutdown', timeoutMs: 3000, force: false },
    dryRun: false,
    concurrency: 100,
    connectTimeoutMs: 2000,
    signal: new AbortController().signal,
    ...over,
  });

  beforeEach(async () => {
    src = new FakeSource('ups');
    server = await startServer([src.served()]);
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    await server.close();
  });

  it('dry-run lists the clients that would be told, without raising FSD', async () => {
    await secondary();
    await secondary('prim', 'primpass');
    const report = await runAction(new NutSecondariesDriver(server, { ups: [] }), request({ dryRun: true }));
    assert.equal(report.ok, true);
    assert.deepEqual(report.results.map((r) => [r.target, r.method]), [['ups', 'dry-run'], ['monuser@127.0.0.1', 'dry-run'], ['prim@127.0.0.1', 'dry-run']]);
    assert.match(report.results[0].detail!, /would raise FSD on ups \(2 logged-in clients/);
    assert.match(report.results[1].detail!, /would be told to shut down/);
    assert.equal(server.fsd('ups').set, false);
  });

  it('raises FSD, reports who left and after how long, and who did not', async () => {
    const leaves = await secondary();
    await secondary('prim', 'primpass');
    // The first client reacts to FSD like upsmon: it sees FSD in ups.status and logs out.
    const watcher = (async () => {
      for (;;) {
        const [s] = await leaves.ask(['GET VAR ups ups.status']);
        if (s.includes('FSD')) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      await leaves.ask(['LOGOUT']);
    })();
    const report = await runAction(new NutSecondariesDriver(server, { ups: ['UPS'] }), request());
    await watcher;
    assert.equal(report.ok, false, 'a client that stays is a failed target');
    const byName = Object.fromEntries(report.results.map((r) => [r.target, r]));
    assert.equal(byName.ups.method, 'graceful');
    assert.match(byName.ups.detail!, /FSD raised on ups; 2 logged-in clients/);
    assert.equal(byName['monuser@127.0.0.1'].ok, true);
    assert.equal(byName['monuser@127.0.0.1'].after, 'off');
    assert.match(byName['monuser@127.0.0.1'].detail!, /^logged out \d+\.\d s after FSD on ups$/);
    assert.equal(byName['prim@127.0.0.1'].ok, false);
    assert.match(byName['prim@127.0.0.1'].error!, /still logged in 3 s after FSD on ups/);
    assert.equal(server.fsd('ups').set, true);
  });

  it('reports FSD as already raised, and clears it in the startup direction', async () => {
    server.setFsd('ups', 'someone');
    let report = await runAction(new NutSecondariesDriver(server, { ups: [] }), request());
    assert.equal(report.results[0].method, 'already');
    report = await runAction(new NutSecondariesDriver(server, { ups: [] }), request({ options: { operation: 'start', timeoutMs: 3000, force: false } }));
    assert.equal(report.ok, true);
    assert.equal(report.results[0].method, 'graceful');
    assert.equal(report.results[0].detail, 'FSD cleared on ups');
    assert.equal(server.fsd('ups').set, false);
  });

  it('marks the UPS target undoOnStartup, so a mirrored startup clears FSD it found already raised', async () => {
    server.setFsd('ups', 'boss@10.0.0.2');
    const report = await runAction(new NutSecondariesDriver(server, { ups: [] }), request());
    assert.deepEqual(report.results.map((r) => [r.target, r.method, r.undoOnStartup]), [['ups', 'already', true]]);
  });

  it('a client we cut off for a protocol error has failed, not left', async () => {
    const bad = await secondary();
    const run = runAction(new NutSecondariesDriver(server, { ups: [] }), request());
    await until(() => server.fsd('ups').set, 2000, 'FSD');
    bad.write('X'.repeat(9000));
    const report = await run;
    const r = report.results.find((x) => x.target === 'monuser@127.0.0.1')!;
    assert.equal(r.ok, false);
    assert.match(r.error!, /was disconnected for a protocol error .* without logging out: it may not be shutting down/);
    assert.equal(report.ok, false);
  });

  it('the server stopping is no leave: with Node-RED stopping the client has no result (the resumed run checks it), else it fails', async () => {
    await secondary();
    const ac = new AbortController();
    let run = runAction(new NutSecondariesDriver(server, { ups: [] }), request({ signal: ac.signal }));
    await until(() => server.fsd('ups').set, 2000, 'FSD');
    await server.close();
    ac.abort(new Interrupted());
    let report = await run;
    assert.equal(report.interrupted, true);
    assert.deepEqual(report.results.map((r) => r.target), ['ups'], 'no result for the client');

    server = await startServer([src.served()]);
    await secondary();
    run = runAction(new NutSecondariesDriver(server, { ups: [] }), request({ options: { operation: 'shutdown', timeoutMs: 1000, force: false } }));
    await until(() => server.fsd('ups').set, 2000, 'FSD');
    await server.close();
    report = await run;
    const r = report.results.find((x) => x.target === 'monuser@127.0.0.1')!;
    assert.equal(r.ok, false);
    assert.match(r.error!, /the NUT server stopped while waiting for monuser@127\.0\.0\.1/);
  });

  it('a resumed shutdown raises FSD again, also when the UPS target was done before the restart', async () => {
    await secondary();
    const previous = [{ target: 'ups', before: 'on' as const, after: 'off' as const, method: 'graceful' as const, ms: 1, ok: true, detail: 'FSD raised on ups' }];
    const run = runAction(new NutSecondariesDriver(server, { ups: [] }), request({ previous, interrupted: ['monuser@127.0.0.1'], options: { operation: 'shutdown', timeoutMs: 1000, force: false } }));
    await until(() => server.fsd('ups').set, 2000, 'FSD raised again by the resumed run');
    await run;
  });

  it('fails the step for an expected client that is not logged in, and says why (a refused LOGIN)', async () => {
    await secondary();
    const nas = await RawClient.connect(server.address!.port);
    clients.push(nas);
    assert.deepEqual(await nas.ask(['USERNAME nas1', 'PASSWORD wrong', 'LOGIN ups']), ['OK', 'OK', 'ERR ACCESS-DENIED']);
    const driver = () => new NutSecondariesDriver(server, { ups: [], expected: { count: 0, names: ['monuser', 'nas1', '192.168.1.99'] } });
    const dry = await runAction(driver(), request({ dryRun: true }));
    assert.equal(dry.ok, false, 'the dry-run shows the step would fail');
    const byName = Object.fromEntries(dry.results.map((r) => [r.target, r]));
    assert.equal(byName['monuser@127.0.0.1'].ok, true, 'monuser is there');
    assert.match(byName.nas1.error!, /expected, but not logged in to ups: it cannot be told to shut down; nas1@127\.0\.0\.1 \(LOGIN ups refused: ACCESS-DENIED: wrong password or unknown user\)/);
    assert.match(byName['192.168.1.99'].error!, /not connected: check the NAS points at this server/);
    assert.match(byName.ups.detail!, /connected without logging in \(not told\): nas1@127\.0\.0\.1/);
    assert.equal(server.fsd('ups').set, false);

    const real = await runAction(driver(), request({ options: { operation: 'shutdown', timeoutMs: 500, force: false } }));
    assert.equal(real.ok, false);
    assert.equal(server.fsd('ups').set, true, 'those that are there are told all the same');
    assert.deepEqual(real.results.filter((r) => !r.ok).map((r) => r.target).sort(), ['192.168.1.99', 'monuser@127.0.0.1', 'nas1']);
  });

  it('fails the step when fewer clients than expected are logged in, and says when none is', async () => {
    await secondary();
    const count = await runAction(new NutSecondariesDriver(server, { ups: [], expected: { count: 2, names: [] } }), request({ dryRun: true }));
    assert.equal(count.ok, false);
    assert.match(count.results.find((r) => r.target === '2 expected clients')!.error!, /1 of 2 expected clients logged in to ups: 1 cannot be told to shut down/);
    for (const c of clients.splice(0)) c.destroy();
    await until(() => server.numLogins('ups') === 0, 2000, 'logout');
    const none = await runAction(new NutSecondariesDriver(server, { ups: [] }), request({ dryRun: true }));
    assert.match(none.results[0].detail!, /0 logged-in clients would be told to shut down\): nothing follows this UPS/);
  });

  it('names a UPS the server does not serve', async () => {
    const report = await runAction(new NutSecondariesDriver(server, { ups: ['nas'] }), request());
    assert.equal(report.ok, false);
    assert.match(report.error!, /does not serve a UPS named "nas" \(it serves: ups\)/);
  });

  it('stops waiting at once when the run is aborted', async () => {
    await secondary();
    const ac = new AbortController();
    const t0 = Date.now();
    setTimeout(() => ac.abort(new Error('cancelled')), 300);
    const report = await runAction(new NutSecondariesDriver(server, { ups: [] }), request({ signal: ac.signal, options: { operation: 'shutdown', timeoutMs: 10_000, force: false } }));
    assert.ok(Date.now() - t0 < 5000);
    assert.equal(report.aborted, true);
  });
});


describe('NUT server: FSD survives a restart', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-fsd-'));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a server started again with FSD raised serves FSD, and clearing it is kept too', async () => {
    const file = path.join(dir, 'nut-server-x.json');
    const src = new FakeSource('ups');
    let server = await startServer([src.served()], { fsdStore: new FileFsdStore(file) });
    assert.equal(server.setFsd('ups', 'NUT secondaries action'), true);
    await server.close();
    assert.deepEqual(fs.readdirSync(dir), ['nut-server-x.json'], 'written by rename, no temp file left');

    server = await startServer([src.served()], { fsdStore: new FileFsdStore(file) });
    try {
      assert.deepEqual(server.fsd('ups'), { set: true, by: 'NUT secondaries action' });
      assert.deepEqual(server.restoredFsd.map((r) => [r.ups, r.by]), [['ups', 'NUT secondaries action']]);
      const c = await RawClient.connect(server.address!.port);
      assert.deepEqual(await c.ask(['GET VAR ups ups.status']), ['VAR ups ups.status "FSD OL CHRG"']);
      c.destroy();
      assert.equal(server.clearFsd('ups'), true);
    } finally {
      await server.close();
    }
    server = await startServer([src.served()], { fsdStore: new FileFsdStore(file) });
    assert.equal(server.fsd('ups').set, false);
    await server.close();
  });

  it('the file says which boot of the machine and when it was written', async () => {
    const file = path.join(dir, 'nut-server-x.json');
    const server = await startServer([new FakeSource('ups').served()], { fsdStore: new FileFsdStore(file, { bootId: () => 'boot-a', now: () => 1234 }), now: () => 1000 });
    server.setFsd('ups', 'NUT secondaries action');
    await server.close();
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), { version: 1, savedAt: 1234, bootId: 'boot-a', fsd: { ups: { by: 'NUT secondaries action', at: 1000 } } });
  });

  it('a damaged file is reported, FSD starts cleared, and the next change replaces the file', async () => {
    const file = path.join(dir, 'nut-server-x.json');
    fs.writeFileSync(file, '{"version":1,"fsd":');
    const server = await startServer([new FakeSource('ups').served()], { fsdStore: new FileFsdStore(file) });
    try {
      assert.match(server.storeError!, /is damaged/);
      assert.equal(server.fsd('ups').set, false);
      server.setFsd('ups', 'x');
      assert.deepEqual(new FileFsdStore(file).load(), { latches: { ups: { by: 'x', at: JSON.parse(fs.readFileSync(file, 'utf8')).fsd.ups.at } }, earlierBoot: {} });
    } finally {
      await server.close();
    }
  });

  it('a file that cannot be written is an error event; FSD is raised all the same', async () => {
    const errors: Error[] = [];
    const server = await startServer([new FakeSource('ups').served()], { fsdStore: { load: () => ({ latches: {}, earlierBoot: {} }), save: () => { throw new Error('disk full'); } } });
    server.on('error', (e) => errors.push(e));
    try {
      assert.equal(server.setFsd('ups', 'x'), true);
      assert.equal(server.fsd('ups').set, true);
      assert.match(errors[0]?.message ?? '', /FSD could not be saved, it will not survive a restart: disk full/);
    } finally {
      await server.close();
    }
  });
});

describe('NUT server: FSD does not outlive a restart of the machine (the power came back)', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-fsd-boot-'));
    file = path.join(dir, 'nut-server-x.json');
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A NUT server started with `store`, FSD raised by the NUT secondaries action, stopped. */
  async function raisedIn(store: FileFsdStore): Promise<void> {
    const server = await startServer([new FakeSource('ups').served()], { fsdStore: store });
    server.setFsd('ups', 'NUT secondaries action');
    await server.close();
  }

  async function statusOf(server: NutServer): Promise<string[]> {
    const c = await RawClient.connect(server.address!.port);
    try {
      return await c.ask(['GET VAR ups ups.status']);
    } finally {
      c.destroy();
    }
  }

  it('Node-RED restarted in the same boot: FSD is served again', async () => {
    await raisedIn(new FileFsdStore(file, { bootId: () => 'boot-a' }));
    const server = await startServer([new FakeSource('ups').served()], { fsdStore: new FileFsdStore(file, { bootId: () => 'boot-a' }) });
    try {
      assert.deepEqual(server.fsd('ups'), { set: true, by: 'NUT secondaries action' });
      assert.deepEqual(server.restoredFsd.map((r) => r.ups), ['ups']);
      assert.deepEqual(server.droppedFsd, []);
      assert.deepEqual(await statusOf(server), ['VAR ups ups.status "FSD OL CHRG"']);
    } finally {
      await server.close();
    }
  });

  it('the machine restarted (other boot id): FSD is not raised, reported as dropped, and gone from disk', async () => {
    await raisedIn(new FileFsdStore(file, { bootId: () => 'boot-a' }));
    const server = await startServer([new FakeSource('ups').served()], { fsdStore: new FileFsdStore(file, { bootId: () => 'boot-b' }) });
    try {
      assert.deepEqual(server.fsd('ups'), { set: false, by: null });
      assert.deepEqual(server.restoredFsd, []);
      assert.deepEqual(server.droppedFsd.map((r) => [r.ups, r.by]), [['ups', 'NUT secondaries action']]);
      assert.equal(server.storeError, undefined);
      assert.deepEqual(await statusOf(server), ['VAR ups ups.status "OL CHRG"'], 'a NAS that boots and logs in stays up');
    } finally {
      await server.close();
    }
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')).fsd, {});
    // Node-RED restarts again in the new boot: nothing left to drop or to report.
    const again = await startServer([new FakeSource('ups').served()], { fsdStore: new FileFsdStore(file, { bootId: () => 'boot-b' }) });
    assert.deepEqual([again.fsd('ups').set, again.droppedFsd.length], [false, 0]);
    await again.close();
  });

  it('FSD raised after the machine restarted is kept across Node-RED restarts of that boot', async () => {
    await raisedIn(new FileFsdStore(file, { bootId: () => 'boot-a' }));
    const store = new FileFsdStore(file, { bootId: () => 'boot-b' });
    await raisedIn(store);
    const server = await startServer([new FakeSource('ups').served()], { fsdStore: new FileFsdStore(file, { bootId: () => 'boot-b' }) });
    assert.deepEqual([server.fsd('ups').set, server.droppedFsd.length], [true, 0]);
    await server.close();
  });

  it('without a boot id, a save older than the machine\'s boot time is dropped, a newer one kept', async () => {
    const noId = (bootTime: number) => new FileFsdStore(file, { bootId: () => null, bootTime: () => bootTime, now: () => 5_000 });
    await raisedIn(noId(1_000));
    assert.equal(JSON.parse(fs.readFileSync(file, 'utf8')).bootId, undefined);
    assert.deepEqual(noId(4_000).load().latches.ups?.by, 'NUT secondaries action', 'Node-RED restarted, the machine did not');
    const server = await startServer([new FakeSource('ups').served()], { fsdStore: noId(6_000) });
    assert.deepEqual([server.fsd('ups').set, server.droppedFsd.map((r) => r.ups)], [false, ['ups']]);
    await server.close();
  });

  it('a file saved before boot ids were kept is judged by when FSD was raised', () => {
    fs.writeFileSync(file, JSON.stringify({ version: 1, fsd: { ups: { by: 'old', at: 5_000 } } }));
    const at = (bootTime: number) => new FileFsdStore(file, { bootId: () => 'boot-b', bootTime: () => bootTime }).load();
    assert.deepEqual(at(4_000), { latches: { ups: { by: 'old', at: 5_000 } }, earlierBoot: {} });
    assert.deepEqual(at(6_000), { latches: {}, earlierBoot: { ups: { by: 'old', at: 5_000 } } });
  });
});

describe('NUT server: where instant commands and TYPE / DESC go', function () {
  this.timeout(20000);

  it('an SNMP UPS lists its MIB profile\'s commands and runs them over SNMP, never opening a NUT connection', async () => {
    // A TCP listener on the device's NUT port and a UDP socket on its SNMP port: only the latter may hear from us.
    const nutConnections: net.Socket[] = [];
    const nutTrap = net.createServer((s) => {
      nutConnections.push(s);
      s.destroy();
    });
    await new Promise<void>((r) => nutTrap.listen(0, '127.0.0.1', r));
    const agent = dgram.createSocket('udp4');
    let snmpPackets = 0;
    agent.on('message', () => snmpPackets++);
    await new Promise<void>((r) => agent.bind(0, '127.0.0.1', r));
    try {
      const device = parseDeviceConfig({
        source: 'snmp', host: '127.0.0.1', port: (nutTrap.address() as net.AddressInfo).port, snmpPort: agent.address().port, snmpProfile: 'apc', snmpVersion: 'v2c', timeout: 0.5, snmpRetries: 0,
      });
      const { commands, meta } = commandsFor(device, { community: 'public' }, async () => undefined);
      assert.equal(meta, undefined, 'TYPE / DESC are answered here, not asked of a NUT server');
      const names = await commands!.list();
      assert.ok(names.includes('shutdown.return') && names.includes('load.off'), names.join());
      const ac = new AbortController();
      await assert.rejects(commands!.run('test.battery.start', undefined, ac.signal));
      assert.ok(snmpPackets > 0, 'the command went to the SNMP agent');

      // Served: INSTCMD goes the same way, and a command the profile lacks is CMD-NOT-SUPPORTED.
      const src = new FakeSource('ups', VARS, 'snmp');
      const server = await startServer([src.served({ commands, meta })], { instcmdTimeoutMs: 5000 });
      try {
        const c = await RawClient.connect(server.address!.port);
        assert.deepEqual(await c.ask(['USERNAME admin', 'PASSWORD adminpass', 'INSTCMD ups test.failure.start']), ['OK', 'OK', 'ERR CMD-NOT-SUPPORTED']);
        assert.ok((await c.askList('LIST CMD ups')).includes('CMD ups shutdown.return'));
        c.destroy();
      } finally {
        await server.close();
      }
      assert.equal(nutConnections.length, 0, 'no NUT connection to the device\'s host');
    } finally {
      nutTrap.close();
      agent.close();
    }
  });

  it('a Home Assistant UPS has no instant commands: LIST CMD is empty, INSTCMD is CMD-NOT-SUPPORTED', async () => {
    const device = parseDeviceConfig({ source: 'ha', haServer: 'x', haStatusEntity: 'sensor.ups_status_data' });
    const picked = commandsFor(device, {}, async () => undefined);
    assert.deepEqual(picked, {});
    const server = await startServer([new FakeSource('ups', VARS, 'ha').served({ commands: picked.commands })]);
    try {
      const c = await RawClient.connect(server.address!.port);
      assert.deepEqual(await c.askList('LIST CMD ups'), ['BEGIN LIST CMD ups', 'END LIST CMD ups']);
      assert.deepEqual(await c.ask(['USERNAME admin', 'PASSWORD adminpass', 'INSTCMD ups test.failure.start']), ['OK', 'OK', 'ERR CMD-NOT-SUPPORTED']);
      c.destroy();
    } finally {
      await server.close();
    }
  });

  it('passes a NUT source\'s TYPE, DESC and CMDDESC through (without RW), and answers itself when upstream fails', async () => {
    let fail = false;
    const meta = {
      type: async (name: string) => (fail ? Promise.reject(new Error('down')) : name === 'device.model' ? 'STRING:32' : null),
      desc: async (name: string) => (fail ? null : `upstream "${name}"`),
      cmddesc: async () => 'upstream \\ command',
    };
    const server = await startServer([new FakeSource('ups', VARS, 'nut').served({ meta })]);
    try {
      const c = await RawClient.connect(server.address!.port);
      assert.deepEqual(await c.ask(['GET TYPE ups device.model', 'GET TYPE ups battery.charge', 'GET DESC ups ups.load', 'GET CMDDESC ups load.off', 'GET TYPE ups nosuch']), [
        'TYPE ups device.model STRING:32', 'TYPE ups battery.charge NUMBER', 'DESC ups ups.load "upstream \\"ups.load\\""', 'CMDDESC ups load.off "upstream \\\\ command"', 'ERR VAR-NOT-SUPPORTED',
      ]);
      fail = true;
      assert.deepEqual(await c.ask(['GET TYPE ups device.model', 'GET DESC ups ups.load']), ['TYPE ups device.model STRING:128', 'DESC ups ups.load "Load on UPS (percent of full)"']);
      c.destroy();
    } finally {
      await server.close();
    }
  });

  it('close() ends a forwarded instant command at once: its source sees the abort, nothing waits 15 s', async () => {
    let aborted = false;
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const src = new FakeSource('ups');
    const server = await startServer([src.served({
      commands: {
        list: () => ['test.failure.start'],
        run: (_cmd, _param, signal) => new Promise<void>((_, reject) => {
          started();
          signal.addEventListener('abort', () => {
            aborted = true;
            reject(signal.reason);
          }, { once: true });
        }),
      },
    })]);
    const events: Array<{ ok: boolean; error?: string }> = [];
    server.on('instcmd', (e) => events.push(e));
    const c = await RawClient.connect(server.address!.port);
    c.ask(['USERNAME admin', 'PASSWORD adminpass', 'INSTCMD ups test.failure.start']).catch(() => undefined);
    await running;
    const t0 = Date.now();
    await server.close();
    await until(() => aborted, 1000, 'the command to be aborted');
    assert.ok(Date.now() - t0 < 1000);
    await until(() => events.length === 1, 1000, 'the instcmd event');
    assert.equal(events[0].ok, false);
    assert.match(events[0].error!, /the NUT server stopped/);
    c.destroy();
  });
});
