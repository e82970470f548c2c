/**
 * "Power off with return" against an upsd without TRACKING (NUT before 2.8: network protocol 1.2,
 * `SET TRACKING ON` is an unknown command). upsd's OK then only means it passed the command to the
 * driver, so the node reads ups.timer.shutdown back until it runs.
 *
 * The installed NUT (2.8.0) always tracks, so this upsd is a fake: a loopback TCP server that speaks
 * the protocol-1.2 subset the node uses (docs/net-protocol.txt: LIST VAR/CMD/RW, USERNAME, PASSWORD,
 * SET VAR, INSTCMD, LOGOUT) and answers `ERR UNKNOWN-COMMAND` to SET TRACKING as such an upsd does.
 * Its UPS either starts its shutdown timer after INSTCMD shutdown.return (a working driver) or not.
 */
import { strict as assert } from 'node:assert';
import { lineServer } from './util/nut-raw';
import { Collector, deviceConfig, helper, upsCommandNodes } from './util/red';

interface FakeUpsd {
  port: number;
  vars: Record<string, string>;
  received: string[];
  close(): Promise<void>;
}

/** A protocol-1.2 upsd serving UPS `old`; `timerStarts` decides what the "driver" does. */
async function fakeUpsd(timerStarts: boolean): Promise<FakeUpsd> {
  const vars: Record<string, string> = {
    'ups.status': 'OB', 'battery.charge': '60', 'ups.delay.shutdown': '20', 'ups.delay.start': '30', 'ups.timer.shutdown': '-1',
  };
  const received: string[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const list = (kind: string, rows: string[]) => [`BEGIN LIST ${kind} old`, ...rows, `END LIST ${kind} old`].join('\n');
  const answer = (line: string): string => {
    const w = line.match(/"[^"]*"|\S+/g) ?? [];
    if (line === 'LIST VAR old') return list('VAR', Object.entries(vars).map(([k, v]) => `VAR old ${k} "${v}"`));
    if (line === 'LIST CMD old') return list('CMD', ['CMD old shutdown.return', 'CMD old load.off']);
    if (line === 'LIST RW old') return list('RW', ['RW old ups.delay.shutdown "20"', 'RW old ups.delay.start "30"'].map((r) => r.replace(/"\d+"/, (m) => `"${vars[r.split(' ')[2]] ?? m}"`)));
    if (w[0] === 'USERNAME' || w[0] === 'PASSWORD') return 'OK';
    if (w[0] === 'SET' && w[1] === 'VAR' && w[2] === 'old' && w[3] in vars) {
      vars[w[3]] = (w[4] ?? '').replace(/^"|"$/g, '');
      return 'OK';
    }
    if (line === 'INSTCMD old shutdown.return') {
      if (timerStarts) {
        const t = setTimeout(() => (vars['ups.timer.shutdown'] = vars['ups.delay.shutdown']), 400);
        timers.add(t);
      }
      return 'OK';
    }
    if (w[0] === 'LOGOUT') return 'OK Goodbye';
    return 'ERR UNKNOWN-COMMAND';
  };
  const server = await lineServer((raw, s) => {
    const line = raw.trim();
    received.push(line);
    s.write(answer(line) + '\n');
  });
  return {
    port: server.port,
    vars,
    received,
    close: () => {
      for (const t of timers) clearTimeout(t);
      return server.close();
    },
  };
}

function flow(port: number, confirmTimeout: number): Record<string, unknown>[] {
  return [
    deviceConfig('dev', { source: 'nut', host: '127.0.0.1', port, upsName: 'old', timeout: 3 }),
    { id: 'cmd', type: 'upsorch-ups-command', name: '', ups: 'dev', mode: 'return', command: '', param: '', variable: '', value: '', delayShutdown: 25, delayStart: 30, setDelays: true, confirmTimeout, timeout: 3, runOn: 'shutdown', wires: [['out']] },
    { id: 'out', type: 'helper' },
  ];
}

async function shutdown(): Promise<any> {
  const out = new Collector('out');
  helper.getNode('cmd').receive({ topic: 'shutdown' });
  return (await out.waitFor((m) => m.topic === 'action-report', 30_000)).msg.payload;
}

describe('UPS command: power off with return on an upsd without TRACKING (protocol 1.2 fake)', function () {
  this.timeout(60_000);
  let upsd: FakeUpsd | undefined;
  afterEach(async () => {
    await helper.unload();
    await upsd?.close();
    upsd = undefined;
  });

  it('the shutdown timer starts: confirmed by reading ups.timer.shutdown back', async () => {
    upsd = await fakeUpsd(true);
    await helper.load(upsCommandNodes, flow(upsd.port, 5), { dev: { username: 'admin', password: 'pw' } });
    const r = await shutdown();
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.match(r.results[0].detail, /INSTCMD shutdown\.return accepted by upsd \(no tracking on this upsd\); confirmed: ups\.timer\.shutdown counting \(25 s\)/);
    assert.ok(upsd.received.includes('SET TRACKING ON'), 'tracking was asked for');
    assert.ok(upsd.received.includes('INSTCMD old shutdown.return'));
  });

  it('the timer never starts: the run fails within the confirmation time instead of reporting the UPS powered off', async () => {
    upsd = await fakeUpsd(false);
    await helper.load(upsCommandNodes, flow(upsd.port, 2), { dev: { username: 'admin', password: 'pw' } });
    const t0 = Date.now();
    const r = await shutdown();
    assert.equal(r.ok, false, JSON.stringify(r));
    assert.equal(r.results[0].error, 'upsd accepted INSTCMD shutdown.return (no TRACKING on this upsd) but ups.timer.shutdown still reads -1 after 2 s: the driver has not started the shutdown (see its log), so the UPS may stay on');
    assert.ok(Date.now() - t0 >= 2000, 'it waited for the confirmation time');
  });

  it('a UPS without ups.timer.shutdown: the report says plainly that nothing confirmed it', async () => {
    upsd = await fakeUpsd(false);
    delete upsd.vars['ups.timer.shutdown'];
    await helper.load(upsCommandNodes, flow(upsd.port, 2), { dev: { username: 'admin', password: 'pw' } });
    const r = await shutdown();
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.match(r.results[0].detail, /NOT CONFIRMED: upsd has no TRACKING and the UPS has no ups\.timer\.shutdown to read back/);
  });
});
