import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { NutPeer, NutError, session } from './nut';

/** Poll until `get` rejects with an error whose message matches `re`; resolves with the ms elapsed. */
async function waitForError(peer: NutPeer, ups: string, re: RegExp, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  let last = '';
  for (;;) {
    try {
      last = `value ${await peer.get(ups, 'ups.status')}`;
    } catch (e) {
      if (re.test((e as Error).message)) return Date.now() - t0;
      last = (e as Error).message;
    }
    if (Date.now() - t0 > timeoutMs) throw new Error(`no error matching ${re} after ${timeoutMs} ms (last: ${last})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}


function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const timing = (what: string, ms: number): void => console.log(`      [nut timing] ${what}: ${ms} ms`);

describe('NutPeer (real upsd + dummy-ups on loopback)', function () {
  this.timeout(60_000);
  let peer: NutPeer | undefined;

  afterEach(async () => {
    if (peer) await peer.stop();
    peer = undefined;
  });

  it('runs one UPS through values, driver faults and upsd restarts, and leaves nothing behind', async () => {
    let t0 = Date.now();
    peer = await NutPeer.start();
    timing('start()', Date.now() - t0);
    assert.equal(peer.host, '127.0.0.1');
    assert.ok(peer.port > 0);
    assert.ok(fs.existsSync(peer.dir));
    assert.equal(await peer.get('sim', 'ups.status'), 'OL');
    assert.equal(await peer.get('sim', 'device.model'), 'SimUPS 1500');
    assert.equal(await peer.get('sim', 'ups.temperature'), '30.5');
    await assert.rejects(peer.get('sim', 'no.such.var'), /VAR-NOT-SUPPORTED/);
    await assert.rejects(peer.get('nosuch', 'ups.status'), /UNKNOWN-UPS/);

    // values through the .dev file
    await peer.setVars('sim', { 'ups.status': 'OB', 'battery.charge': '87' });
    timing('setVars OB -> visible', await peer.waitFor('sim', 'ups.status', 'OB'));
    assert.equal(await peer.get('sim', 'battery.charge'), '87');
    // two edits within one second must both land (mtime bump)
    await peer.setVars('sim', { 'ups.status': 'OB LB', 'battery.charge': '9' });
    timing('second setVars (same second) -> visible', await peer.waitFor('sim', 'ups.status', 'OB LB'));
    assert.equal(await peer.get('sim', 'battery.charge'), '9');

    // removeVars (restarts that driver: dummy-ups never forgets a variable otherwise)
    t0 = Date.now();
    await peer.removeVars('sim', ['ups.temperature']);
    timing('removeVars (driver restart)', Date.now() - t0);
    await assert.rejects(peer.get('sim', 'ups.temperature'), /VAR-NOT-SUPPORTED/);
    assert.equal(await peer.get('sim', 'ups.status'), 'OB LB');

    // driver killed -> DRIVER-NOT-CONNECTED
    const drvPid = peer.pids().drivers.sim;
    await peer.killDriver('sim');
    assert.equal(alive(drvPid), false);
    timing('killDriver -> DRIVER-NOT-CONNECTED', await waitForError(peer, 'sim', /DRIVER-NOT-CONNECTED/, 5000));
    const err = await peer.get('sim', 'ups.status').then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof NutError && err.code === 'DRIVER-NOT-CONNECTED', String(err));
    t0 = Date.now();
    await peer.startDriver('sim');
    timing('startDriver -> served again', Date.now() - t0);
    assert.equal(await peer.get('sim', 'ups.status'), 'OB LB');

    // driver paused -> DATA-STALE, resumed -> fresh
    peer.pauseDriver('sim');
    const staleMs = await waitForError(peer, 'sim', /DATA-STALE/, 12_000);
    timing('pauseDriver -> DATA-STALE (MAXAGE 5)', staleMs);
    assert.ok(staleMs <= 10_000, `DATA-STALE took ${staleMs} ms`);
    peer.resumeDriver('sim');
    timing('resumeDriver -> fresh', await peer.waitFor('sim', 'ups.status', 'OB LB', 10_000));

    // upsd stopped -> connection refused; started -> recovers
    await peer.stopUpsd();
    await assert.rejects(peer.get('sim', 'ups.status'), (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED');
    t0 = Date.now();
    await peer.startUpsd();
    timing('startUpsd -> served', Date.now() - t0);
    assert.equal(await peer.get('sim', 'ups.status'), 'OB LB');

    // full restart
    t0 = Date.now();
    await peer.restart();
    timing('restart()', Date.now() - t0);
    assert.equal(await peer.get('sim', 'ups.status'), 'OB LB');

    // stop leaves no process and no directory; stop is idempotent
    const pids = peer.pids();
    const all = [pids.upsd!, ...Object.values(pids.drivers)];
    assert.equal(all.length, 2);
    for (const pid of all) assert.ok(alive(pid), `pid ${pid} should be alive before stop`);
    const dir = peer.dir;
    t0 = Date.now();
    await peer.stop();
    timing('stop()', Date.now() - t0);
    await peer.stop();
    for (const pid of all) assert.equal(alive(pid), false, `pid ${pid} still alive after stop`);
    assert.equal(fs.existsSync(dir), false);
    await assert.rejects(peer.get('sim', 'ups.status'), /ECONNREFUSED/);
  });

  it('serves two UPSes independently', async () => {
    const t0 = Date.now();
    peer = await NutPeer.start({
      ups: {
        alpha: { 'ups.status': 'OL', 'battery.charge': '100', 'device.model': 'Alpha 1000' },
        beta: { 'ups.status': 'OB', 'battery.charge': '55', 'device.model': 'Beta 2000' },
      },
      maxAge: 3,
    });
    timing('start() with 2 UPSes', Date.now() - t0);
    assert.equal(await peer.get('alpha', 'ups.status'), 'OL');
    assert.equal(await peer.get('beta', 'ups.status'), 'OB');
    assert.equal(await peer.get('beta', 'device.model'), 'Beta 2000');
    await peer.setVars('beta', { 'ups.status': 'OL CHRG' });
    timing('setVars beta -> visible', await peer.waitFor('beta', 'ups.status', 'OL CHRG'));
    assert.equal(await peer.get('alpha', 'ups.status'), 'OL');
    await peer.killDriver('alpha');
    await waitForError(peer, 'alpha', /DRIVER-NOT-CONNECTED/, 5000);
    assert.equal(await peer.get('beta', 'ups.status'), 'OL CHRG');
    const pids = peer.pids();
    assert.equal(pids.drivers.alpha, undefined);
    const all = [pids.upsd!, pids.drivers.beta];
    await peer.stop();
    for (const pid of all) assert.equal(alive(pid), false);
  });

  it('has working admin and upsmon users; restart() clears the FSD latch', async () => {
    peer = await NutPeer.start();
    const { admin, monitor } = peer.users;
    const a = await session(peer, [`USERNAME ${admin.username}`, `PASSWORD ${admin.password}`, 'SET VAR sim ups.load 77', 'LOGOUT']);
    assert.deepEqual(a.slice(0, 3), ['OK', 'OK', 'OK']);
    await peer.waitFor('sim', 'ups.load', '77');
    const m = await session(peer, [`USERNAME ${monitor.username}`, `PASSWORD ${monitor.password}`, 'LOGIN sim', 'FSD sim', 'GET NUMLOGINS sim']);
    assert.deepEqual(m, ['OK', 'OK', 'OK', 'OK FSD-SET', 'NUMLOGINS sim 1']);
    timing('FSD visible', await peer.waitFor('sim', 'ups.status', 'FSD OL'));
    const t0 = Date.now();
    await peer.restart();
    timing('restart() clearing FSD', Date.now() - t0);
    assert.equal(await peer.get('sim', 'ups.status'), 'OL');
    assert.equal(await peer.get('sim', 'ups.load'), '25'); // back to the .dev value
  });

  it('can start without upsd (drivers only), then start upsd', async () => {
    peer = await NutPeer.start({ startUpsd: false });
    assert.equal(peer.pids().upsd, undefined);
    await assert.rejects(peer.get('sim', 'ups.status'), /ECONNREFUSED/);
    const t0 = Date.now();
    await peer.startUpsd();
    timing('startUpsd after startUpsd:false', Date.now() - t0);
    assert.equal(await peer.get('sim', 'ups.status'), 'OL');
  });

  it('rejects bad input clearly', async () => {
    await assert.rejects(NutPeer.start({ ups: { 'bad name': {} } }), /invalid UPS name/);
    peer = await NutPeer.start();
    await assert.rejects(peer.setVars('sim', { 'ups.status': 'say "hi"' }), /cannot represent/);
    await assert.rejects(peer.setVars('nosuch', { 'ups.status': 'OL' }), /unknown UPS/);
  });
});
