/**
 * The NUT server and NUT secondaries nodes in the Node-RED runtime, against real NUT software:
 * Debian's upsc, upscmd, upsrw and upsmon (nut-client 2.8.0) as clients, and the real upsd +
 * dummy-ups (NutPeer) side by side, answering the same transcripts line for line.
 */
import { strict as assert } from 'node:assert';
import * as cp from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { NutPeer, session } from './peers/nut';
import { UpsmonPeer } from './peers/upsmon';
import { RawClient } from './util/nut-raw';
import { Collector, deviceConfig, helper, nutServerNodes, sleep } from './util/red';
import { NutServer } from '../lib/nutserver/server';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const planNode = require('../nodes/upsorch-plan');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const phaseNode = require('../nodes/upsorch-phase');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a NUT client tool; never throws, bounded by 15 s. */
function run(bin: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    cp.execFile(bin, args, { timeout: 15_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0, stdout, stderr });
    });
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** `name: value` lines of `upsc ups@host` as a map. */
function upscVars(out: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const i = line.indexOf(': ');
    if (i > 0) vars[line.slice(0, i)] = line.slice(i + 2);
  }
  return vars;
}

async function until<T>(fn: () => T | Promise<T>, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await sleep(100);
  }
}

/** The flow's NUT server, once it listens. */
async function listening(id = 'srv'): Promise<NutServer> {
  return until<NutServer | undefined>(() => {
    const n = helper.getNode(id);
    return n?.upsorchNutServer?.address ? (n.upsorchNutServer as NutServer) : undefined;
  }, 5000, 'the NUT server to listen') as Promise<NutServer>;
}

const USERS = {
  user1: 'monuser', role1: 'secondary',
  user2: 'admin', role2: 'none', fsd2: true, instcmds2: 'all',
  user3: 'boss', role3: 'primary',
};
const PASSWORDS = { password1: 'secret', password2: 'adminpass', password3: 'bosspass' };

function serverConfig(port: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { id: 'srv', type: 'upsorch-nut-server', name: '', host: '127.0.0.1', port, allow: '', idleTimeout: 60, maxConnections: 100, device1: 'dev', upsName1: 'ups', desc1: 'Rack UPS', ...USERS, ...over };
}

/** A plan of one phase, NAS, whose action is the NUT secondaries of the served UPS. */
function planFlow(port: number): Record<string, unknown>[] {
  return [
    deviceConfig('dev', { source: 'sim' }),
    serverConfig(port),
    { id: 'plan', type: 'upsorch-plan', name: 'homelab', armed: true, allowRemote: false, stateDir: '' },
    {
      id: 'nas', type: 'upsorch-phase', name: 'NAS', plan: 'plan', mode: 'parallel', stepDelay: 0, wait: true, onFailure: 'continue', timeout: '',
      pointOfNoReturn: false, direction: 'both', gate: false, gateUps: '', gateRuntime: 10, wires: [['sec'], ['done']],
    },
    ...secondaries(),
    { id: 'done', type: 'helper' },
  ];
}

function secondaries(over: Record<string, unknown> = {}): Record<string, unknown>[] {
  return [
    { id: 'sec', type: 'upsorch-nut-secondaries', name: '', server: 'srv', ups: '', timeout: 20, clearOnStartup: true, wires: [['report']], ...over },
    { id: 'report', type: 'helper' },
  ];
}

/** A fresh Node-RED user dir per test: the NUT server keeps FSD there, and it must not leak between tests. */
function freshUserDir(): () => void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-nut-userdir-'));
  helper.settings({ userDir: dir });
  return () => {
    helper.settings({ userDir: undefined });
    fs.rmSync(dir, { recursive: true, force: true });
  };
}

describe('NUT server node with real NUT clients (upsc, upscmd, upsrw, upsmon)', function () {
  this.timeout(90_000);
  let port: number;
  let dropUserDir: () => void;

  beforeEach(async () => {
    port = await freePort();
    dropUserDir = freshUserDir();
  });
  afterEach(async () => {
    await helper.unload();
    dropUserDir();
  });

  const load = (flow: Record<string, unknown>[], creds: Record<string, unknown> = {}) =>
    helper.load(nutServerNodes, [deviceConfig('dev', { source: 'sim', pollInterval: 0.5, pollIntervalOnBattery: 0.5 }), ...flow], { srv: PASSWORDS, ...creds });

  it('upsc reads every variable of a simulated UPS, one by one and as a list', async () => {
    await load([serverConfig(port)]);
    await listening();
    const target = `ups@127.0.0.1:${port}`;
    const all = (await until(async () => {
      const r = await run('upsc', [target]);
      return r.code === 0 ? r : undefined;
    }, 5000, 'upsc to read the UPS'))!;
    const vars = upscVars(all.stdout);
    const state = helper.getNode('dev').device().state;
    assert.deepEqual(Object.keys(vars).sort(), Object.keys(state.raw).sort(), 'upsc lists exactly the variables of the source');
    for (const name of ['ups.status', 'battery.charge', 'battery.runtime', 'input.voltage', 'output.voltage', 'ups.load', 'ups.realpower', 'ups.temperature', 'device.mfr', 'device.model']) {
      assert.ok(vars[name] !== undefined, `${name} is served`);
    }
    assert.equal(vars['ups.status'], 'OL');
    assert.equal(vars['device.model'], 'Simulated UPS');
    for (const name of Object.keys(vars)) {
      const one = await run('upsc', [target, name]);
      assert.equal(one.code, 0, `upsc ${name}: ${one.stderr}`);
      // The battery model moves a little between reads (charge, temperature); the variable is there and readable.
      assert.ok(one.stdout.trim().length > 0, `${name} has a value`);
    }
    assert.equal((await run('upsc', [target, 'device.model'])).stdout.trim(), 'Simulated UPS');
    assert.equal((await run('upsc', ['-l', `127.0.0.1:${port}`])).stdout.trim(), 'ups');
    assert.equal((await run('upsc', ['-L', `127.0.0.1:${port}`])).stdout.trim(), 'ups: Rack UPS');
    const unknown = await run('upsc', [`nosuch@127.0.0.1:${port}`]);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /Error: Unknown UPS/);
    const novar = await run('upsc', [target, 'no.such.var']);
    assert.match(novar.stderr, /Error: Variable not supported by UPS/);
  });

  it('upscmd lists and runs instant commands on a simulated UPS; wrong passwords and rights are refused', async () => {
    await load([serverConfig(port)]);
    await listening();
    const target = `ups@127.0.0.1:${port}`;
    const list = await run('upscmd', ['-l', target]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /test\.failure\.start/);
    assert.match(list.stdout, /test\.failure\.stop/);
    const denied = await run('upscmd', ['-u', 'admin', '-p', 'wrong', target, 'test.failure.start']);
    // Word for word what upscmd prints against upsd 2.8.0.
    assert.notEqual(denied.code, 0);
    assert.equal(denied.stderr.trim(), 'Unexpected response from upsd: ERR ACCESS-DENIED');
    const noRight = await run('upscmd', ['-u', 'monuser', '-p', 'secret', target, 'test.failure.start']);
    assert.equal(noRight.stderr.trim(), 'Unexpected response from upsd: ERR ACCESS-DENIED');
    const unsupported = await run('upscmd', ['-u', 'admin', '-p', 'adminpass', target, 'load.off']);
    assert.equal(unsupported.stderr.trim(), 'Unexpected response from upsd: ERR CMD-NOT-SUPPORTED');
    const ok = await run('upscmd', ['-u', 'admin', '-p', 'adminpass', target, 'test.failure.start']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stderr.trim(), 'OK');
    await until(async () => /\bOB\b/.test((await run('upsc', [target, 'ups.status'])).stdout), 5000, 'the simulated UPS to go on battery');
    const back = await run('upscmd', ['-u', 'admin', '-p', 'adminpass', '-w', target, 'test.failure.stop']);
    assert.equal(back.code, 0, back.stderr);
    assert.equal(back.stderr.trim(), 'SUCCESS', 'upscmd -w follows the command by tracking');
    await until(async () => /^OL/.test((await run('upsc', [target, 'ups.status'])).stdout), 5000, 'mains back');
  });

  it('upsrw finds no writable variables', async () => {
    await load([serverConfig(port)]);
    await listening();
    const r = await run('upsrw', [`ups@127.0.0.1:${port}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '');
  });

  it('turns away a client outside the allow-list', async () => {
    await load([serverConfig(port, { allow: '10.0.0.0/8' })]);
    const server = await listening();
    const r = await run('upsc', [`ups@127.0.0.1:${port}`, 'ups.status']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Error: Access denied/);
    assert.equal(server.stats.refusedAllowList >= 1, true);
  });

  it('shows a source that stops answering as ERR DATA-STALE at the next poll, and recovers', async () => {
    await load([serverConfig(port)]);
    await listening();
    const target = `ups@127.0.0.1:${port}`;
    await until(async () => (await run('upsc', [target, 'ups.status'])).code === 0, 5000, 'a first reading');
    // simulate() applies the fault and polls once: the very next request sees it.
    await helper.getNode('dev').simulate('comm-lost', undefined);
    const stale = await run('upsc', [target, 'ups.status']);
    assert.notEqual(stale.code, 0);
    assert.match(stale.stderr, /Data stale/);
    const c = await RawClient.connect(port);
    assert.deepEqual(await c.ask(['GET VAR ups battery.charge', 'GET UPSDESC ups']), ['ERR DATA-STALE', 'UPSDESC ups "Rack UPS"']);
    c.destroy();
    await helper.getNode('dev').simulate('comm-restored', undefined);
    assert.equal((await run('upsc', [target, 'ups.status'])).stdout.trim(), 'OL');
  });

  it('fails clearly, without crashing, when the port is taken or the configuration is wrong', async () => {
    const blocker = net.createServer().listen(port, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    try {
      await load([serverConfig(port), { id: 'bad', type: 'upsorch-nut-server', host: '', port: 3493, device1: 'dev', user1: 'x' }]);
      const srvNode = helper.getNode('srv');
      await until(() => srvNode.listenError, 5000, 'the listen error');
      assert.match(srvNode.listenError, new RegExp(`127\\.0\\.0\\.1:${port} is already in use`));
      const bad = helper.getNode('bad');
      assert.match(bad.configError, /listen address must be an IP address/);
      assert.doesNotMatch(bad.configError, /password/, 'a user without a password yet is a warning, not an error');
      const res = await helper.request().post('/upsorch-nut-server/status').send({ id: 'srv' }).expect(200);
      assert.equal(res.body.ok, false);
      assert.match(res.body.message, /already in use/);
    } finally {
      blocker.close();
    }
  });

  it('the status endpoint shows where to connect and who is logged in, never a password', async () => {
    await load([serverConfig(port)]);
    await listening();
    const c = await RawClient.connect(port);
    assert.deepEqual(await c.ask(['USERNAME monuser', 'PASSWORD secret', 'LOGIN ups']), ['OK', 'OK', 'OK']);
    const nas = await RawClient.connect(port);
    assert.deepEqual(await nas.ask(['USERNAME admin', 'PASSWORD nosecret', 'LOGIN ups']), ['OK', 'OK', 'ERR ACCESS-DENIED']);
    const res = await helper.request().post('/upsorch-nut-server/status').send({ id: 'srv' }).expect(200);
    assert.equal(res.body.ok, true);
    assert.equal(res.body.localOnly, true);
    assert.deepEqual(res.body.ups[0].connect, [`ups@127.0.0.1:${port}`]);
    assert.deepEqual(res.body.ups[0].clients.map((x: { username: string; address: string }) => `${x.username}@${x.address}`), ['monuser@127.0.0.1']);
    // The NAS whose LOGIN was refused shows, with the reason.
    assert.deepEqual(res.body.pending.map((p: any) => [p.username, p.address, p.loginFailed]), [['admin', '127.0.0.1', { ups: 'ups', error: 'ACCESS-DENIED' }]]);
    assert.doesNotMatch(JSON.stringify(res.body), /secret|adminpass|bosspass/);
    c.destroy();
    nas.destroy();
  });

  it('a real upsmon secondary logs in, sees the FSD of the NUT secondaries action, runs its SHUTDOWNCMD and leaves', async function () {
    this.timeout(90_000);
    await load([serverConfig(port), ...secondaries()]);
    const server = await listening();
    const upsmon = UpsmonPeer.start({ system: `ups@127.0.0.1:${port}`, username: 'monuser', password: 'secret' });
    try {
      await until(() => server.clients('ups').length === 1, 15_000, `upsmon to log in; its log:\n${upsmon.log()}`);
      const reports = new Collector('report');

      // Dry-run: the client that would be told, nothing raised.
      helper.getNode('sec').receive({ topic: 'dry-run' });
      const dry = (await reports.waitFor((m) => m.payload?.dryRun === true, 10_000)).msg.payload;
      assert.equal(dry.ok, true);
      assert.deepEqual(dry.results.map((r: { target: string; method: string }) => [r.target, r.method]), [['ups', 'dry-run'], ['monuser@127.0.0.1', 'dry-run']]);
      assert.equal(server.fsd('ups').set, false);
      assert.equal(upsmon.shutdownRan, false);

      helper.getNode('sec').receive({ topic: 'shutdown' });
      const report = (await reports.waitFor((m) => m.payload?.dryRun === false, 40_000, 1)).msg.payload;
      assert.equal(report.ok, true, JSON.stringify(report.results));
      const byName = Object.fromEntries(report.results.map((r: { target: string }) => [r.target, r]));
      assert.match(byName.ups.detail, /FSD raised on ups; 1 logged-in client/);
      assert.equal(byName['monuser@127.0.0.1'].method, 'graceful');
      assert.match(byName['monuser@127.0.0.1'].detail, /(logged out|disconnected) \d+\.\d s after FSD on ups/);
      assert.equal(upsmon.shutdownRan, true, `upsmon ran its SHUTDOWNCMD; its log:\n${upsmon.log()}`);
      assert.match(upsmon.log(), /forced shutdown in progress/);
      assert.equal(server.numLogins('ups'), 0);
      assert.equal((await run('upsc', [`ups@127.0.0.1:${port}`, 'ups.status'])).stdout.trim(), 'FSD OL', 'FSD stays raised');

      // Startup clears FSD, so a NAS that boots again does not shut straight down.
      helper.getNode('sec').receive({ topic: 'startup' });
      const up = (await reports.waitFor((m) => m.payload?.operation === 'start', 10_000, 2)).msg.payload;
      assert.equal(up.ok, true);
      assert.equal(up.results[0].detail, 'FSD cleared on ups');
      assert.equal((await run('upsc', [`ups@127.0.0.1:${port}`, 'ups.status'])).stdout.trim(), 'OL');
    } finally {
      await upsmon.stop();
    }
  });

  it('in a plan: the phase "NAS" raises FSD, waits for the real upsmon to leave, and startup clears FSD', async function () {
    this.timeout(90_000);
    const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-nut-plan-'));
    helper.settings({ userDir });
    const upsmon = UpsmonPeer.start({ system: `ups@127.0.0.1:${port}`, username: 'monuser', password: 'secret' });
    try {
      await helper.load([...nutServerNodes, planNode, phaseNode], planFlow(port), { srv: PASSWORDS });
      const server = await listening();
      await until(() => server.clients('ups').length === 1, 15_000, `upsmon to log in; its log:\n${upsmon.log()}`);
      const done = new Collector('done');
      helper.getNode('nas').receive({ topic: 'shutdown' });
      const run = (await done.waitFor((m) => m.payload?.state === 'done' || m.payload?.state === 'failed', 40_000, 0, 'the run report')).msg.payload;
      const action = run.phases[0].actions[0];
      assert.equal(run.state, 'done', JSON.stringify(run.phases));
      assert.deepEqual(action.results.map((r: { target: string; ok: boolean }) => [r.target, r.ok]), [['ups', true], ['monuser@127.0.0.1', true]]);
      assert.equal(upsmon.shutdownRan, true, upsmon.log());
      assert.equal(server.fsd('ups').set, true);
      const from = done.received.length;
      helper.getNode('nas').receive({ topic: 'startup' });
      const up = (await done.waitFor((m) => m.payload?.direction === 'startup' && m.payload?.state === 'done', 20_000, from, 'the startup report')).msg.payload;
      assert.equal(up.phases[0].actions[0].results[0].detail, 'FSD cleared on ups');
      assert.equal(server.fsd('ups').set, false);
    } finally {
      await upsmon.stop();
      await helper.unload();
      helper.settings({ userDir: undefined });
      fs.rmSync(userDir, { recursive: true, force: true });
    }
  });

  it('FSD raised before a restart of the NUT server node is still raised after it, until startup clears it', async () => {
    {
      await load([serverConfig(port), ...secondaries()]);
      let server = await listening();
      const reports = new Collector('report');
      helper.getNode('sec').receive({ topic: 'shutdown' });
      await reports.waitFor((m) => m.topic === 'action-report', 10_000);
      assert.equal(server.fsd('ups').set, true);
      await helper.unload();

      // Node-RED starts again (the same flow, the same user dir).
      await load([serverConfig(port), ...secondaries()]);
      server = await listening();
      assert.deepEqual(server.fsd('ups'), { set: true, by: 'NUT secondaries action' });
      const srv = helper.getNode('srv');
      assert.ok(srv.warn.getCalls().some((c: any) => /FSD on ups is still raised .* kept across the restart/.test(String(c.args[0]))), 'the restored FSD is logged');
      assert.equal((await run('upsc', [`ups@127.0.0.1:${port}`, 'ups.status'])).stdout.trim(), 'FSD OL');

      const up = new Collector('report');
      helper.getNode('sec').receive({ topic: 'startup' });
      assert.equal((await up.waitFor((m) => m.payload?.operation === 'start', 10_000)).msg.payload.results[0].detail, 'FSD cleared on ups');
      await helper.unload();
      await load([serverConfig(port), ...secondaries()]);
      assert.equal((await listening()).fsd('ups').set, false, 'the cleared FSD is kept too');
    }
  });

  it('FSD saved before this machine restarted (the UPS went off last) is not raised again: upsc shows no FSD, the log says why', async () => {
    const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-nut-reboot-'));
    helper.settings({ userDir });
    try {
      // What the NUT secondaries action left on disk before the power went: another boot, an older time.
      const saved = { version: 1, savedAt: 1_000, bootId: 'a-boot-before-the-power-cut', fsd: { ups: { by: 'NUT secondaries action', at: 1_000 } } };
      fs.mkdirSync(path.join(userDir, 'ups-orchestrator'));
      fs.writeFileSync(path.join(userDir, 'ups-orchestrator', 'nut-server-srv.json'), JSON.stringify(saved));

      await load([serverConfig(port), ...secondaries()]);
      const server = await listening();
      assert.deepEqual(server.fsd('ups'), { set: false, by: null });
      assert.equal((await run('upsc', [`ups@127.0.0.1:${port}`, 'ups.status'])).stdout.trim(), 'OL', 'a NAS that boots and logs in stays up');
      const srv = helper.getNode('srv');
      const logged = srv.log.getCalls().map((c: any) => String(c.args[0]));
      assert.ok(logged.some((t: string) => /^FSD on ups from before this machine restarted is not raised again \(raised by NUT secondaries action, 1970-01-01T00:00:01\.000Z\)/.test(t)), `logged: ${logged.join(' | ')}`);
      assert.ok(!srv.warn.getCalls().some((c: any) => /still raised/.test(String(c.args[0]))));
      assert.deepEqual(JSON.parse(fs.readFileSync(path.join(userDir, 'ups-orchestrator', 'nut-server-srv.json'), 'utf8')).fsd, {}, 'gone from disk too');
    } finally {
      await helper.unload();
      helper.settings({ userDir: undefined });
      fs.rmSync(userDir, { recursive: true, force: true });
    }
  });

  it('in a plan: a shutdown that finds FSD already raised still clears it on the mirrored startup', async function () {
    {
      await helper.load([...nutServerNodes, planNode, phaseNode], planFlow(port), { srv: PASSWORDS });
      const server = await listening();
      // A NUT primary elsewhere (or an earlier run) raised FSD before the outage's shutdown.
      const c = await RawClient.connect(port);
      assert.deepEqual(await c.ask(['USERNAME boss', 'PASSWORD bosspass', 'FSD ups']), ['OK', 'OK', 'OK FSD-SET']);
      c.destroy();
      const done = new Collector('done');
      helper.getNode('nas').receive({ topic: 'shutdown' });
      const down = (await done.waitFor((m) => m.payload?.direction === 'shutdown' && (m.payload?.state === 'done' || m.payload?.state === 'failed'), 20_000, 0, 'the run report')).msg.payload;
      assert.deepEqual(down.phases[0].actions[0].results.map((r: { target: string; method: string }) => [r.target, r.method]), [['ups', 'already']]);
      const from = done.received.length;
      helper.getNode('nas').receive({ topic: 'startup' });
      const up = (await done.waitFor((m) => m.payload?.direction === 'startup' && m.payload?.state === 'done', 20_000, from, 'the startup report')).msg.payload;
      assert.equal(up.phases[0].actions[0].results[0].detail, 'FSD cleared on ups');
      assert.equal(server.fsd('ups').set, false);
      assert.equal((await run('upsc', [`ups@127.0.0.1:${port}`, 'ups.status'])).stdout.trim(), 'OL', 'a NAS booting now stays up');
    }
  });

  it('closing the flow while the action waits for a client ends the wait at once', async () => {
    await load([serverConfig(port), ...secondaries({ timeout: 600 })]);
    const server = await listening();
    const c = await RawClient.connect(port);
    assert.deepEqual(await c.ask(['USERNAME monuser', 'PASSWORD secret', 'LOGIN ups']), ['OK', 'OK', 'OK']);
    helper.getNode('sec').receive({ topic: 'shutdown' });
    await until(() => server.fsd('ups').set, 5000, 'FSD');
    const t0 = Date.now();
    await helper.unload();
    assert.ok(Date.now() - t0 < 8000, `closed in ${Date.now() - t0} ms`);
    assert.ok(await c.waitClosed(3000), 'the server dropped its clients on close');
  });

  it('a NUT primary elsewhere can raise FSD on the served UPS (upsmon-style FSD command)', async () => {
    await load([serverConfig(port)]);
    const server = await listening();
    const c = await RawClient.connect(port);
    assert.deepEqual(await c.ask(['USERNAME boss', 'PASSWORD bosspass', 'LOGIN ups', 'PRIMARY ups', 'FSD ups']), ['OK', 'OK', 'OK', 'OK PRIMARY-GRANTED', 'OK FSD-SET']);
    c.destroy();
    assert.deepEqual(server.fsd('ups'), { set: true, by: 'boss@127.0.0.1' });
    assert.equal((await run('upsc', [`ups@127.0.0.1:${port}`, 'ups.status'])).stdout.trim(), 'FSD OL');
    const res = await helper.request().post('/upsorch-nut-server/clear-fsd').send({ id: 'srv' }).expect(200);
    assert.deepEqual(res.body, { ok: true, message: 'FSD cleared on ups' });
  });
});

describe('NUT server side by side with the real upsd (same UPS, same transcripts)', function () {
  this.timeout(120_000);
  let peer: NutPeer;
  let port: number;

  let dropUserDir: () => void;

  before(async function () {
    this.timeout(60_000);
    dropUserDir = freshUserDir();
    peer = await NutPeer.start({
      ups: {
        sim: {
          'device.mfr': 'Simulated', 'device.model': 'SimUPS 1500', 'device.serial': 'SN123', 'device.type': 'ups', 'ups.status': 'OL CHRG',
          'battery.charge': '97', 'battery.charge.low': '20', 'battery.runtime': '3120', 'battery.runtime.low': '120',
          'input.voltage': '231.0', 'output.voltage': '229.5', 'ups.load': '023.4', 'ups.realpower': '150', 'ups.temperature': '30.5',
        },
      },
    });
    port = await freePort();
    // Our server serves the same UPS, read from that upsd as a NUT source, under the same name and
    // description, with users like the peer's upsd.users (admin: FSD + all commands; monuser: primary).
    await helper.load(nutServerNodes, [
      deviceConfig('dev', { source: 'nut', host: '127.0.0.1', port: peer.port, upsName: 'sim', pollInterval: 0.5, pollIntervalOnBattery: 0.5, timeout: 2 }),
      {
        id: 'srv', type: 'upsorch-nut-server', host: '127.0.0.1', port, device1: 'dev', upsName1: 'sim', desc1: 'NutPeer simulated UPS sim',
        user1: 'admin', role1: 'none', fsd1: true, instcmds1: 'all', user2: 'monuser', role2: 'primary',
      },
    ], { srv: { password1: 'adminpass', password2: 'monpass' } });
    await listening();
    await until(() => helper.getNode('dev').device().state?.comm === 'ok', 10_000, 'the NUT source to read upsd');
  });
  after(async () => {
    await helper.unload();
    await peer?.stop();
    dropUserDir();
  });

  const upsd = () => ({ host: peer.host, port: peer.port });
  const ours = () => ({ host: '127.0.0.1', port });

  /** One session, the same lines to both servers; LIST replies are read whole. */
  async function transcript(to: { host: string; port: number }, lines: string[]): Promise<string[]> {
    const c = await RawClient.connect(to.port, to.host);
    const out: string[] = [];
    try {
      for (const line of lines) {
        const words = line.trim().split(/\s+/);
        const isList = words[0]?.toUpperCase() === 'LIST' && words.length >= 2;
        out.push(`> ${line}`, ...(isList ? await c.askList(line) : await c.ask([line])));
      }
    } finally {
      c.destroy();
    }
    return out;
  }

  async function sameAnswers(lines: string[]): Promise<string[]> {
    const theirs = await transcript(upsd(), lines);
    const mine = await transcript(ours(), lines);
    assert.deepEqual(mine, theirs);
    return mine;
  }

  it('answers reads exactly as upsd: LIST UPS / VAR / CMD / CLIENT, GET VAR / UPSDESC / NUMLOGINS, case-insensitive names', async () => {
    const t = await sameAnswers([
      'LIST UPS', 'LIST VAR sim', 'LIST CMD sim', 'LIST CLIENT sim', 'LIST ENUM sim nosuch', 'GET VAR sim ups.status', 'GET VAR sim battery.charge', 'GET VAR SIM UPS.STATUS',
      'get var sim ups.load', 'GET UPSDESC sim', 'GET NUMLOGINS sim', 'GET VAR nosuch server.version', 'GET VAR x server.info', 'GET VAR sim ups\\.status', 'GET VAR "sim" "device.model" # comment',
    ]);
    assert.ok(t.includes('VAR sim ups.status "OL CHRG"'));
    assert.ok(t.filter((l) => l.startsWith('VAR sim ')).length >= 15, 'the whole variable list was compared');
  });

  it('answers errors exactly as upsd: unknown UPS, variable, command and argument errors', async () => {
    await sameAnswers([
      'GET VAR sim nosuch', 'GET VAR nosuch ups.status', 'LIST VAR nosuch', 'LIST CLIENT nosuch', 'GET UPSDESC nosuch', 'GET NUMLOGINS nosuch', 'GET VAR x server.bogus',
      'VER x', 'HELP x', 'NETVER x', 'bogus', '', '   ', 'FOO bar', 'GET', 'GET VAR', 'GET VAR sim', 'GET BOGUS sim x', 'LIST', 'LIST VAR', 'LIST BOGUS sim', 'GET TRACKING', 'GET TRACKING x',
      'VER=', 'VER x"y', 'STARTTLS',
    ]);
  });

  it('answers the authentication sequence exactly as upsd, a wrong password refused only at the privileged command', async () => {
    await sameAnswers([
      'LOGIN sim', 'FSD sim', 'PRIMARY sim', 'MASTER sim', 'INSTCMD sim load.off', 'SET VAR sim ups.status x', 'SET TRACKING ON',
      'USERNAME monuser', 'LOGIN sim', 'PASSWORD wrong', 'LOGIN sim', 'FSD sim', 'PRIMARY sim', 'INSTCMD sim load.off', 'PASSWORD again', 'USERNAME again',
      'SET TRACKING ON', 'GET TRACKING', 'SET TRACKING x', 'GET NUMLOGINS sim', 'LOGOUT',
    ]);
    await sameAnswers([
      'USERNAME', 'PASSWORD a b', 'USERNAME monuser', 'PASSWORD monpass', 'LOGIN', 'LOGIN nosuch', 'INSTCMD sim', 'INSTCMD nosuch x', 'INSTCMD sim load.off', 'SET VAR nosuch x y',
      'SET VAR sim ups.status x', 'PRIMARY sim', 'MASTER sim', 'PRIMARY nosuch', 'FSD', 'FSD nosuch', 'LOGOUT x',
    ]);
  });

  it('answers GET DESC and CMDDESC exactly as upsd, and GET TYPE as upsd less RW (nothing is writable here)', async () => {
    const lines = ['GET TYPE sim device.model', 'GET TYPE sim ups.status', 'GET TYPE sim battery.charge', 'GET TYPE sim ups.load', 'GET TYPE sim nosuch', 'GET TYPE nosuch x',
      'GET DESC sim ups.status', 'GET DESC sim battery.charge', 'GET DESC sim no.such.var', 'GET DESC nosuch x', 'GET CMDDESC sim load.off', 'GET CMDDESC sim test.failure.start',
      'GET CMDDESC sim no.such.cmd', 'GET DESC', 'GET TYPE sim'];
    const theirs = await transcript(upsd(), lines);
    const mine = await transcript(ours(), lines);
    // dummy-ups makes every variable writable; upsd then says RW, which this server never does.
    assert.deepEqual(mine, theirs.map((l) => l.replace(/^(TYPE \S+ \S+) RW /, '$1 ')));
    assert.ok(mine.includes('TYPE sim device.model STRING:32'), 'the type is upsd\'s, not a guess');
    assert.ok(theirs.some((l) => / RW /.test(l)), 'the comparison did see RW answers');
  });

  it('counts a logged-in client in NUMLOGINS and LIST CLIENT exactly as upsd', async () => {
    for (const to of [upsd(), ours()]) {
      const c = await RawClient.connect(to.port, to.host);
      assert.deepEqual(await c.ask(['USERNAME monuser', 'PASSWORD monpass', 'LOGIN sim', 'LOGIN sim']), ['OK', 'OK', 'OK', 'ERR ALREADY-LOGGED-IN']);
      const other = await RawClient.connect(to.port, to.host);
      const got = [...(await other.ask(['GET NUMLOGINS sim', 'GET NUMLOGINS SIM'])), ...(await other.askList('LIST CLIENT sim'))];
      assert.deepEqual(got, ['NUMLOGINS sim 1', 'NUMLOGINS SIM 1', 'BEGIN LIST CLIENT sim', 'CLIENT sim 127.0.0.1', 'END LIST CLIENT sim'], `${to.port === port ? 'ours' : 'upsd'}`);
      assert.deepEqual(await c.ask(['LOGOUT']), ['OK Goodbye']);
      assert.ok(await c.waitClosed(5000));
      await until(async () => (await other.ask(['GET NUMLOGINS sim']))[0] === 'NUMLOGINS sim 0', 5000, 'NUMLOGINS to drop');
      other.destroy();
    }
  });

  it('upsc prints the same as against upsd', async () => {
    const theirs = await run('upsc', [`sim@${peer.host}:${peer.port}`]);
    const mine = await run('upsc', [`sim@127.0.0.1:${port}`]);
    assert.equal(mine.code, 0, mine.stderr);
    assert.equal(mine.stdout, theirs.stdout);
    assert.equal((await run('upsc', ['-L', `127.0.0.1:${port}`])).stdout, (await run('upsc', ['-L', `${peer.host}:${peer.port}`])).stdout);
    assert.equal((await run('upscmd', ['-l', `sim@127.0.0.1:${port}`])).stdout.replace(/\S+:\d+/, 'X'), (await run('upscmd', ['-l', `sim@${peer.host}:${peer.port}`])).stdout.replace(/\S+:\d+/, 'X'));
  });

  it('a stale driver gives the same ERR DATA-STALE answers on both', async function () {
    this.timeout(60_000);
    peer.pauseDriver('sim');
    try {
      const lines = ['GET VAR sim ups.status', 'LIST VAR sim', 'GET NUMLOGINS sim', 'GET UPSDESC sim', 'LIST CLIENT sim', 'LIST CMD sim', 'GET TYPE sim ups.status'];
      await until(async () => (await session(upsd(), ['GET VAR sim ups.status']))[0] === 'ERR DATA-STALE', 20_000, 'upsd to call the driver stale');
      await until(async () => (await session(ours(), ['GET VAR sim ups.status']))[0] === 'ERR DATA-STALE', 5000, 'our server to follow within a poll');
      const t = await sameAnswers(lines);
      assert.equal(t.filter((l) => l === 'ERR DATA-STALE').length, 5);
    } finally {
      peer.resumeDriver('sim');
    }
    await until(async () => (await session(ours(), ['GET VAR sim ups.status']))[0] === 'VAR sim ups.status "OL CHRG"', 20_000, 'fresh data again');
  });

  it('raises FSD exactly as upsd: OK FSD-SET, then FSD in front of ups.status (last: FSD stays until upsd restarts)', async () => {
    const t = await sameAnswers(['USERNAME admin', 'PASSWORD adminpass', 'FSD nosuch', 'FSD sim', 'GET VAR sim ups.status', 'LIST VAR sim']);
    assert.ok(t.includes('VAR sim ups.status "FSD OL CHRG"'));
  });
});

describe('example flows "NUT server" and "NAS shutdown by FSD" as a user imports them', function () {
  this.timeout(60_000);
  let userDir: string;
  before(() => {
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-nut-examples-'));
    helper.settings({ userDir });
  });
  afterEach(async () => {
    await helper.unload();
  });
  after(() => {
    helper.settings({ userDir: undefined });
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  async function loadExample(file: string): Promise<{ flow: Array<Record<string, any>>; port: number }> {
    const flow = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'examples', file), 'utf8')) as Array<Record<string, any>>;
    const port = await freePort();
    for (const n of flow) {
      // Core nodes are not loaded in the test runtime: inject, debug and comment become helpers.
      if (['inject', 'debug', 'comment'].includes(n.type)) n.type = 'helper';
      // 3493 may be taken on a developer machine by a real upsd.
      if (n.type === 'upsorch-nut-server') n.port = port;
    }
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    await helper.load([...nutServerNodes, planNode, phaseNode, require('../nodes/upsorch-threshold')], flow);
    return { flow, port };
  }

  it('"NUT server": upsc reads the simulated UPS, power lost shows as OB, the secondaries node dry-runs', async () => {
    const { flow, port } = await loadExample('12 NUT server.json');
    const srvId = flow.find((n) => n.type === 'upsorch-nut-server')!.id;
    await listening(srvId);
    // The example names the NAS user; its password is the user's to set, and the log says so.
    assert.ok(helper.getNode(srvId).warn.getCalls().some((c: any) => /user "monuser" has no password yet/.test(String(c.args[0]))));
    const c = await RawClient.connect(port);
    assert.deepEqual(await c.ask(['USERNAME monuser', 'PASSWORD secret', 'LOGIN ups']), ['OK', 'OK', 'ERR ACCESS-DENIED']);
    c.destroy();
    const target = `ups@127.0.0.1:${port}`;
    await until(async () => (await run('upsc', [target, 'ups.status'])).stdout.trim() === 'OL', 5000, 'upsc to read OL');
    const lost = flow.find((n) => n.name === 'power lost')!;
    helper.getNode(lost.wires[0][0]).receive({ topic: lost.topic });
    await until(async () => /^OB/.test((await run('upsc', [target, 'ups.status'])).stdout), 5000, 'OB through upsc');
    const sec = flow.find((n) => n.type === 'upsorch-nut-secondaries')!;
    const report = new Collector(sec.wires[0][0]);
    helper.getNode(sec.id).receive({ topic: 'dry-run' });
    const r = (await report.waitFor((m) => m.topic === 'action-report', 5000)).msg.payload;
    assert.equal(r.ok, true);
    assert.deepEqual(r.results.map((x: { target: string }) => x.target), ['ups']);
  });

  it('"NAS shutdown by FSD": deploys, and a dry-run of the plan reaches the NUT secondaries action', async () => {
    const { flow } = await loadExample('13 NAS shutdown by FSD.json');
    await listening(flow.find((n) => n.type === 'upsorch-nut-server')!.id);
    const phase = flow.find((n) => n.type === 'upsorch-phase')!;
    const reports = new Collector(flow.find((n) => n.name === 'NAS report')!.id);
    helper.getNode(phase.id).receive({ topic: 'dry-run' });
    const r = (await reports.waitFor((m) => m.topic === 'action-report', 10_000)).msg.payload;
    assert.equal(r.dryRun, true);
    assert.match(r.results[0].detail, /would raise FSD on ups/);
    // No NAS here: the expected client is missing, and the dry-run says so before a real outage does.
    assert.equal(r.ok, false);
    assert.match(r.results.find((x: { target: string }) => x.target === '1 expected clients').error, /0 of 1 expected clients logged in to ups/);
  });
});

describe('NUT secondaries node with a broken NUT server', function () {
  this.timeout(20_000);
  let dropUserDir: () => void;
  beforeEach(() => {
    dropUserDir = freshUserDir();
  });
  afterEach(async () => {
    await helper.unload();
    dropUserDir();
  });

  it('shows the server\'s configuration error in red and fails every request with it', async () => {
    await helper.load(nutServerNodes, [
      deviceConfig('dev', { source: 'sim' }),
      { id: 'srv', type: 'upsorch-nut-server', host: '0.0.0.0.0', port: 3493, device1: 'dev', upsName1: 'ups' },
      ...secondaries(),
    ]);
    const sec = helper.getNode('sec');
    const last = sec.status.getCalls().filter((c: any) => c.thisValue === sec).pop()?.args[0];
    assert.equal(last.fill, 'red');
    assert.match(last.text, /NUT server: invalid NUT server configuration: host: listen address must be an IP address/);
    const failed = new Promise<any>((resolve) => sec.on('call:error', (call: any) => resolve(call)));
    sec.receive({ topic: 'shutdown' });
    const call = await failed;
    assert.match(String(call.args[0]?.message ?? call.args[0]), /NUT server: invalid NUT server configuration/);
  });
});
