/**
 * The SSH host config node and the SSH action node in the Node-RED runtime against a real OpenSSH
 * server on loopback (test/peers/sshd.ts: every command is logged, power tools are fakes that only
 * log, anything that could reach a real one is refused).
 */
import { strict as assert } from 'node:assert';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Server } from 'ssh2';
import { SshdPeer } from './peers/sshd';
import { freePort, waitUntil } from './peers/proc';
import { Collector, errorsOf, helper, ourNodes, sleep, sshNodes, statuses, waitForStatus } from './util/red';
import { presetCommand } from '../lib/ssh/presets';
import { SshSession, shellQuote } from '../lib/ssh/client';
import { magicPacket, normaliseMac } from '../lib/ssh/wol';
import * as os from 'node:os';
import { ActionStep, PhaseHandle, RunEvent, RunRecord, RunReport } from '../lib/plan/types';
import { TargetResult } from '../lib/actions/contract';
import { runAction } from '../lib/actions/run';
import { Plan } from '../lib/plan/runner';
import { PlanStore } from '../lib/plan/store';
import { SshActionDriver } from '../lib/ssh/action';
import { SharedSsh, SshHostHandle } from '../lib/ssh/shared';
import { parseSshActionConfig, shutdownCommand } from '../lib/ssh/config';

const REASON = "'UPS power failure (Node-RED UPS orchestrator)'";

describe('SSH action with a real OpenSSH server', function () {
  this.timeout(60000);
  let peer: SshdPeer;

  before(async function () {
    this.timeout(60000);
    peer = await SshdPeer.start();
  });
  after(async () => {
    await peer?.stop();
  });
  afterEach(async () => {
    await helper.unload();
    await peer.comeUp();
    peer.clearLogs();
  });

  const hostConfig = (over: Record<string, unknown> = {}) => ({
    id: 'h1', type: 'upsorch-ssh-host', name: 'nas', host: '127.0.0.1', port: peer.port, username: 'root', fingerprint: peer.hostKeyFingerprint, timeout: 5, ...over,
  });
  const action = (over: Record<string, unknown> = {}) => [
    { id: 'a1', type: 'upsorch-ssh', name: '', host: 'h1', preset: 'linux', timeout: 10, waitDown: false, waitDownTimeout: 20, startup: 'none', wires: [['out']], ...over },
    { id: 'out', type: 'helper' },
  ];
  async function load(actionOver: Record<string, unknown> = {}, hostOver: Record<string, unknown> = {}, creds: Record<string, string> = {}) {
    await helper.load([...ourNodes, ...sshNodes], [hostConfig(hostOver), ...action(actionOver)], { h1: { privateKey: peer.clientKey, ...creds } });
    return new Collector('out');
  }
  /** Send a request to the action node and wait for its report. */
  async function request(out: Collector, msg: Record<string, unknown>, ms = 20000) {
    const from = out.received.length;
    helper.getNode('a1').receive(msg);
    return (await out.waitFor((m) => m.topic === 'action-report', ms, from, 'the action report')).msg.payload;
  }

  it('the test server refuses commands that could reach a real power tool (probes that are harmless if run)', async () => {
    const s = await SshSession.connect({ host: '127.0.0.1', port: peer.port, username: 'root', privateKey: peer.clientKey, fingerprint: peer.hostKeyFingerprint, connectTimeoutMs: 5000 });
    try {
      // Each would be refused before a real tool could be reached; each is harmless even if it ran.
      const probes = ['ls /sbin', 'ls /usr/sbin', '/usr/bin/systemctl --version', 'echo init', 'echo telinit', 'echo kexec', 'cat /proc/sysrq-trigger', 'kill -0 1', 'PATH=/tmp true', 'busybox true'];
      for (const p of probes) {
        const r = await s.exec(p, { timeoutMs: 5000 });
        assert.equal(r.code, 126, `${p} was not refused`);
        assert.match(r.stderr, /^test sshd: refused/);
      }
      assert.equal(peer.refused().length, probes.length);
      const fake = await s.exec('poweroff; systemctl poweroff; sudo -n shutdown -h now', { timeoutMs: 5000 });
      assert.equal(fake.code, 0);
      assert.deepEqual(peer.fakeCalls(), ['poweroff ', 'systemctl poweroff', 'sudo -n shutdown -h now', 'shutdown -h now']);
    } finally {
      await s.close();
    }
  });

  describe('shutdown presets', () => {
    const cases: Array<{ preset: string; over?: Record<string, unknown>; command: string; fake: string[] }> = [
      { preset: 'linux', command: 'poweroff', fake: ['poweroff '] },
      { preset: 'synology', command: 'synoshutdown -s', fake: ['synoshutdown -s'] },
      { preset: 'truenas-scale', command: `midclt call system.shutdown ${REASON} || midclt call system.shutdown`, fake: ['midclt call system.shutdown UPS power failure (Node-RED UPS orchestrator)'] },
      { preset: 'truenas-core', command: 'shutdown -p now', fake: ['shutdown -p now'] },
      { preset: 'qnap', command: 'poweroff', fake: ['poweroff '] },
      {
        preset: 'esxi',
        command: `esxcli system maintenanceMode set --enable true; esxcli system shutdown poweroff --reason ${REASON}`,
        fake: ['esxcli system maintenanceMode set --enable true', 'esxcli system shutdown poweroff --reason UPS power failure (Node-RED UPS orchestrator)'],
      },
      { preset: 'docker-stop', over: { dockerTimeout: 45 }, command: 'docker ps -q | xargs -r docker stop -t 45', fake: ['docker ps -q', 'docker stop -t 45 c0ffee000001 c0ffee000002'] },
      { preset: 'umount', over: { umountPath: "/mnt/back up's", umountTimeout: 20 }, command: "timeout 20 umount '/mnt/back up'\\''s'", fake: ["umount /mnt/back up's"] },
      { preset: 'custom', over: { command: 'echo custom-ran; docker ps -q' }, command: 'echo custom-ran; docker ps -q', fake: ['docker ps -q'] },
    ];
    for (const c of cases) {
      it(`${c.preset}: the host receives exactly "${c.command}" and the run reports it`, async () => {
        const out = await load({ preset: c.preset, ...c.over });
        const report = await request(out, { topic: 'shutdown' });
        assert.deepEqual(peer.commands(), [c.command]);
        assert.deepEqual(peer.fakeCalls(), c.fake);
        assert.equal(report.ok, true, JSON.stringify(report));
        assert.equal(report.results.length, 1);
        const r = report.results[0];
        assert.equal(r.target, 'nas');
        assert.equal(r.method, 'graceful');
        assert.equal(r.ok, true);
        // A power-off without waiting: whether it is off yet is not known; a plain command leaves it on.
        assert.equal(r.after, ['docker-stop', 'umount', 'custom'].includes(c.preset) ? 'on' : 'unknown');
        assert.match(r.detail, /exited 0/);
        assert.deepEqual(errorsOf('a1'), []);
        await waitForStatus('a1', (s) => s.fill === 'green' && /1 done/.test(s.text ?? ''));
      });
    }

    it('puts sudo -n in front of commands that need root when the user is not root', () => {
      assert.equal(presetCommand('linux', { username: 'admin' }).command, 'sudo -n poweroff');
      assert.equal(presetCommand('synology', { username: 'admin' }).command, 'sudo -n synoshutdown -s');
      assert.equal(presetCommand('truenas-scale', { username: 'admin' }).command, `sudo -n midclt call system.shutdown ${REASON} || sudo -n midclt call system.shutdown`);
      assert.equal(presetCommand('umount', { username: 'admin', umountPath: '/mnt/x', umountTimeout: 5 }).command, 'sudo -n timeout 5 umount /mnt/x');
      assert.equal(presetCommand('docker-stop', { username: 'admin', dockerTimeout: 10 }).command, 'docker ps -q | xargs -r docker stop -t 10');
      assert.equal(presetCommand('esxi', { username: 'root' }).powersOff, true);
      assert.equal(presetCommand('docker-stop', { username: 'root' }).powersOff, false);
    });

    it('shell-quotes with single quotes, writing a quote as \'\\\'\'', () => {
      assert.equal(shellQuote('web01'), 'web01');
      assert.equal(shellQuote(''), "''");
      assert.equal(shellQuote("it's"), "'it'\\''s'");
      assert.equal(shellQuote('a b;$(x)`y`'), "'a b;$(x)`y`'");
    });
  });

  describe('failures', () => {
    it('a non-zero exit code fails the target with the tail of stderr', async () => {
      const out = await load({ preset: 'custom', command: 'echo "umount: /mnt/data: target is busy" >&2; exit 32' });
      const report = await request(out, { topic: 'shutdown' });
      assert.equal(report.ok, false);
      const r = report.results[0];
      assert.equal(r.ok, false);
      assert.match(r.error, /failed with exit code 32: umount: \/mnt\/data: target is busy/);
      await waitUntil('the error', 2000, () => errorsOf('a1').length > 0);
      assert.match(errorsOf('a1')[0], /1 failed/);
      await waitForStatus('a1', (s) => s.fill === 'red');
    });

    it('a wrong pinned host key fails at once with both fingerprints, and nothing is run', async () => {
      const out = await load({}, { fingerprint: peer.otherFingerprint });
      const t0 = Date.now();
      const report = await request(out, { topic: 'shutdown' });
      assert.ok(Date.now() - t0 < 5000, 'fails well before the 5 s connect timeout');
      assert.equal(report.ok, false);
      assert.equal(report.error, `host key mismatch: expected ${peer.otherFingerprint}, got ${peer.hostKeyFingerprint} (ssh-ed25519) from 127.0.0.1:${peer.port}`);
      assert.equal(report.results[0].target, 'nas');
      assert.equal(report.results[0].ok, false);
      assert.deepEqual(peer.commands(), []);
      await waitForStatus('a1', (s) => s.fill === 'red' && /host key mismatch/.test(s.text ?? ''));
    });

    it('a key the server does not accept fails with an authentication error', async () => {
      const out = await load({}, {}, { privateKey: peer.otherKey });
      const report = await request(out, { topic: 'shutdown' });
      assert.equal(report.ok, false);
      assert.equal(report.error, `authentication failed for user "root" on 127.0.0.1:${peer.port}: the server refused the private key`);
      assert.deepEqual(peer.commands(), []);
    });

    it('a key pasted without its line breaks (or with CRLF) still logs in', async () => {
      for (const key of [peer.clientKey.replace(/\n/g, ' '), peer.clientKey.replace(/\n/g, '\r\n')]) {
        const out = await load({ preset: 'custom', command: 'echo ok' }, {}, { privateKey: key });
        const report = await request(out, { topic: 'shutdown' });
        assert.equal(report.ok, true, JSON.stringify(report));
        await helper.unload();
      }
    });

    it('a host without a pinned fingerprint is refused before connecting', async () => {
      await helper.load([...ourNodes, ...sshNodes], [hostConfig({ fingerprint: '' }), ...action()], { h1: { privateKey: peer.clientKey } });
      await waitForStatus('a1', (s) => s.fill === 'red' && /pin the host key/.test(s.text ?? ''));
      assert.match(errorsOf('h1')[0], /fingerprint: pin the host key/);
    });

    it('an unreachable host (closed port) fails with "connection refused"', async () => {
      const closed = await freePort();
      const out = await load({}, { port: closed });
      const t0 = Date.now();
      const report = await request(out, { topic: 'shutdown' });
      assert.ok(Date.now() - t0 < 5000);
      assert.equal(report.error, `cannot connect to 127.0.0.1:${closed}: connection refused (is SSH running on that port?)`);
      assert.equal(report.results[0].ok, false);
    });

    it('a host that accepts but never speaks SSH fails after the connect timeout', async () => {
      const sockets = new Set<net.Socket>();
      const silent = net.createServer((s) => sockets.add(s));
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
      const port = (silent.address() as net.AddressInfo).port;
      try {
        const out = await load({}, { port, timeout: 2 });
        const t0 = Date.now();
        const report = await request(out, { topic: 'shutdown' });
        const ms = Date.now() - t0;
        assert.ok(ms >= 1900 && ms < 6000, `gave up after ${ms} ms`);
        assert.equal(report.error, `no SSH answer from 127.0.0.1:${port} within 2 s`);
      } finally {
        for (const s of sockets) s.destroy();
        silent.close();
      }
    });

    it('a command that hangs is given up after the command timeout and its connection closed', async () => {
      const out = await load({ preset: 'custom', command: 'hang 60', timeout: 2 });
      const t0 = Date.now();
      const report = await request(out, { topic: 'shutdown' });
      const ms = Date.now() - t0;
      assert.ok(ms >= 1900 && ms < 10000, `gave up after ${ms} ms`);
      assert.equal(report.results[0].ok, false);
      assert.equal(report.results[0].error, '"hang 60" on nas did not finish within 2 s');
      await waitUntil('our SSH connection to close', 5000, () => peer.connections() === 0);
    });
  });

  describe('wait until the host is down', () => {
    it('succeeds once the SSH port stops answering after the command', async () => {
      const out = await load({ preset: 'linux', waitDown: true, waitDownTimeout: 30 });
      const from = out.received.length;
      helper.getNode('a1').receive({ topic: 'shutdown' });
      await peer.waitForCommand((c) => c === 'poweroff');
      await sleep(300);
      await peer.goDown(); // the host "powers off": sshd stops listening
      const report = (await out.waitFor((m) => m.topic === 'action-report', 20000, from)).msg.payload;
      assert.equal(report.ok, true, JSON.stringify(report));
      const r = report.results[0];
      assert.equal(r.method, 'graceful');
      assert.equal(r.after, 'off');
      assert.match(r.detail, new RegExp(`^"poweroff" exited 0; port ${peer.port} closed after [0-9.]+ (ms|s)$`));
    });

    it('fails when the host still answers after the wait', async () => {
      const out = await load({ preset: 'linux', waitDown: true, waitDownTimeout: 2 });
      const report = await request(out, { topic: 'shutdown' });
      assert.equal(report.results[0].ok, false);
      assert.equal(report.results[0].error, `nas still answers on port ${peer.port} 2 s after "poweroff"`);
    });

    it('an unreachable host counts as already off; without the wait it is an error', async () => {
      await peer.goDown();
      let out = await load({ preset: 'linux', waitDown: true });
      let report = await request(out, { topic: 'shutdown' });
      assert.equal(report.ok, true, JSON.stringify(report));
      assert.deepEqual(
        { method: report.results[0].method, before: report.results[0].before, after: report.results[0].after, ok: report.results[0].ok },
        { method: 'already', before: 'off', after: 'off', ok: true },
      );
      await helper.unload();
      out = await load({ preset: 'linux', waitDown: false });
      report = await request(out, { topic: 'shutdown' });
      assert.equal(report.ok, false);
      assert.match(report.error, /connection refused/);
      assert.deepEqual(peer.commands(), []);
    });
  });

  describe('dry-run, startup, abort', () => {
    it('dry-run connects and authenticates but sends no command', async () => {
      const logBefore = fs.readFileSync(path.join(peer.dir, 'sshd.log'), 'utf8').length;
      const out = await load({ preset: 'linux', waitDown: true, waitDownTimeout: 60 });
      const report = await request(out, { topic: 'dry-run' });
      assert.equal(report.dryRun, true);
      assert.equal(report.ok, true);
      const r = report.results[0];
      assert.equal(r.method, 'dry-run');
      assert.equal(r.detail, `would run "poweroff" as root@127.0.0.1:${peer.port}, then wait until port ${peer.port} stops answering (up to 60 s)`);
      assert.deepEqual(peer.commands(), [], 'no command reached the host');
      const sshdLog = fs.readFileSync(path.join(peer.dir, 'sshd.log'), 'utf8').slice(logBefore);
      assert.match(sshdLog, /Accepted publickey for root from 127\.0\.0\.1/);
      await waitForStatus('a1', (s) => s.fill === 'blue' && /dry-run/.test(s.text ?? ''));
    });

    it('startup runs the startup command; "nothing" does not even connect', async () => {
      let out = await load({ preset: 'linux', startup: 'command', startupCommand: 'docker start web' });
      let report = await request(out, { topic: 'startup' });
      assert.equal(report.ok, true);
      assert.equal(report.operation, 'start');
      assert.deepEqual(peer.commands(), ['docker start web']);
      await helper.unload();
      peer.clearLogs();
      await peer.goDown();
      out = await load({ preset: 'linux', startup: 'none', waitUp: false });
      report = await request(out, { topic: 'startup' });
      assert.equal(report.ok, true);
      assert.deepEqual(report.results.map((r: TargetResult) => [r.target, r.method, r.detail]), [['nas', 'skipped', 'nothing to do in this direction']]);
    });

    it('example 10: the startup of "stop containers" succeeds when no container is labelled for autostart, and starts those that are', async () => {
      const shipped = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'examples', '10 SSH shutdown.json'), 'utf8')) as Array<Record<string, any>>;
      const node = shipped.find((n) => n.type === 'upsorch-ssh' && n.name === 'stop containers')!;
      const cfg = { preset: node.preset, dockerTimeout: node.dockerTimeout, startup: node.startup, startupCommand: node.startupCommand, waitUp: node.waitUp };
      try {
        // The old `docker start $(docker ps -aq …)` failed here: docker start without a name exits 1.
        peer.setContainers([]);
        let out = await load(cfg);
        let report = await request(out, { topic: 'startup' });
        assert.equal(report.ok, true, JSON.stringify(report));
        assert.deepEqual(peer.fakeCalls(), ['docker ps -aq --filter label=autostart=true']);
        await helper.unload();
        peer.clearLogs();
        peer.setContainers(['c0ffee0000aa', 'c0ffee0000bb']);
        out = await load(cfg);
        report = await request(out, { topic: 'startup' });
        assert.equal(report.ok, true, JSON.stringify(report));
        assert.deepEqual(peer.fakeCalls(), ['docker ps -aq --filter label=autostart=true', 'docker start c0ffee0000aa c0ffee0000bb']);
        // The fake behaves like docker: a start without a name fails.
        await helper.unload();
        peer.setContainers([]);
        out = await load({ ...cfg, startupCommand: 'docker start $(docker ps -aq --filter label=autostart=true)' });
        report = await request(out, { topic: 'startup' });
        assert.equal(report.ok, false);
        assert.match(report.results[0].error, /exit code 1: "docker start" requires at least 1 argument/);
      } finally {
        peer.setContainers(null);
      }
    });

    it('closing the node aborts a running command and closes the connection', async () => {
      const out = await load({ preset: 'custom', command: 'hang 60', timeout: 60 });
      helper.getNode('a1').receive({ topic: 'shutdown' });
      await peer.waitForCommand((c) => c === 'hang 60');
      await waitUntil('the connection', 2000, () => peer.connections() === 1);
      const t0 = Date.now();
      await helper.unload();
      assert.ok(Date.now() - t0 < 6000, 'closed within the close budget');
      await waitUntil('our SSH connection to close', 5000, () => peer.connections() === 0);
      assert.equal(out.messages.filter((m) => m.topic === 'action-report').length, 0, 'no report after close');
    });
  });

  describe('startup: wait until the host is back, Wake-on-LAN', () => {
    /** A UDP listener on loopback that collects what arrives: the "network card" of the sleeping host. */
    async function udpListener() {
      const sock = dgram.createSocket('udp4');
      const got: Buffer[] = [];
      sock.on('message', (m) => got.push(m));
      await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
      return { port: sock.address().port, got, close: () => new Promise<void>((r) => sock.close(() => r())) };
    }
    const MAC = '52:54:00:AB:cd:01';

    it('a host still booting is waited for (status says so), then the startup command runs', async () => {
      await peer.goDown();
      const out = await load({ preset: 'linux', startup: 'command', startupCommand: 'echo back', waitUp: true, waitUpTimeout: 60 });
      const from = out.received.length;
      const t0 = Date.now();
      helper.getNode('a1').receive({ topic: 'startup' });
      await waitForStatus('a1', (st) => st.fill === 'yellow' && /^start: waiting for nas to come back… \d+ s$/.test(st.text ?? ''), 10_000);
      await sleep(2500);
      await peer.comeUp(); // the host has booted
      const report = (await out.waitFor((m) => m.topic === 'action-report', 40_000, from)).msg.payload;
      assert.equal(report.ok, true, JSON.stringify(report));
      assert.ok(Date.now() - t0 >= 2500, 'it waited for the host');
      const r = report.results[0];
      assert.deepEqual([r.target, r.before, r.after, r.method], ['nas', 'off', 'on', 'graceful']);
      assert.match(r.detail, /^nas is back: SSH login works; "echo back" exited 0 \(after waiting [0-9.]+ s for nas to come back\)$/);
      assert.deepEqual(peer.commands(), ['echo back']);
      await waitForStatus('a1', (st) => st.fill === 'green');
    });

    it('a preset that powers the host off, with the wait ticked (a new node\'s default), waits for it even without a startup command', async () => {
      await peer.goDown();
      const out = await load({ preset: 'synology', startup: 'none', waitUp: true });
      const from = out.received.length;
      helper.getNode('a1').receive({ topic: 'startup' });
      await waitForStatus('a1', (st) => /waiting for nas to come back/.test(st.text ?? ''), 10_000);
      await peer.comeUp();
      const report = (await out.waitFor((m) => m.topic === 'action-report', 40_000, from)).msg.payload;
      assert.equal(report.ok, true, JSON.stringify(report));
      assert.equal(report.operation, 'start');
      assert.match(report.results[0].detail, /^nas is back: SSH login works/);
      assert.deepEqual(peer.commands(), [], 'nothing is run: logging in is the proof');
    });

    it('a host that never comes back fails after "wait at most" with a clear message', async () => {
      await peer.goDown();
      const out = await load({ preset: 'linux', waitUp: true, waitUpTimeout: 3 });
      const t0 = Date.now();
      const report = await request(out, { topic: 'startup' }, 40_000);
      const ms = Date.now() - t0;
      assert.ok(ms >= 3000 && ms < 30_000, `gave up after ${ms} ms`);
      assert.equal(report.ok, false);
      assert.equal(report.results[0].error, `nas did not come back within 3 s: cannot connect to 127.0.0.1:${peer.port}: connection refused (is SSH running on that port?)`);
      await waitForStatus('a1', (st) => st.fill === 'red');
    });

    it('a key the host refuses is not waited for: the startup fails at once', async () => {
      const out = await load({ preset: 'linux', startup: 'command', startupCommand: 'echo back' }, {}, { privateKey: peer.otherKey });
      const t0 = Date.now();
      const report = await request(out, { topic: 'startup' });
      assert.ok(Date.now() - t0 < 5000, 'no retries');
      assert.equal(report.ok, false);
      assert.match(report.error, /^authentication failed for user "root"/);
      assert.ok(!statuses('a1').some((st) => /waiting/.test(st.text ?? '')), 'never showed a wait');
    });

    it('wakes the host with magic packets (6 × FF, 16 × MAC) until it is back', async () => {
      const udp = await udpListener();
      try {
        await peer.goDown();
        const out = await load({ preset: 'linux', wolMac: MAC, wolAddress: '127.0.0.1', wolPort: udp.port, waitUp: true, waitUpTimeout: 60 });
        const from = out.received.length;
        helper.getNode('a1').receive({ topic: 'startup' });
        await waitUntil('two magic packets', 15_000, () => udp.got.length >= 2);
        await peer.comeUp();
        const report = (await out.waitFor((m) => m.topic === 'action-report', 40_000, from)).msg.payload;
        assert.equal(report.ok, true, JSON.stringify(report));
        const mac = Buffer.from('525400abcd01', 'hex');
        const expected = Buffer.concat([Buffer.alloc(6, 0xff), ...Array(16).fill(mac)]);
        assert.equal(expected.length, 102);
        for (const p of udp.got) assert.deepEqual(p, expected);
        assert.deepEqual(magicPacket(MAC), expected);
        assert.match(report.results[0].detail, /^nas is back: SSH login works; Wake-on-LAN sent \d+×/);
      } finally {
        await udp.close();
      }
    });

    it('dry-run of the startup sends no packet and says it would', async () => {
      const udp = await udpListener();
      try {
        await peer.goDown();
        const out = await load({ preset: 'linux', wolMac: MAC, wolAddress: '127.0.0.1', wolPort: udp.port, waitUp: true, waitUpTimeout: 120 });
        const report = await request(out, { topic: 'dry-run-startup' });
        assert.equal(report.ok, true, JSON.stringify(report));
        assert.equal(
          report.results[0].detail,
          `would send a Wake-on-LAN packet to 52:54:00:ab:cd:01 via 127.0.0.1:${udp.port} (none sent in a dry-run); then nas does not answer on port ${peer.port} now: would wait until SSH login works (up to 120 s)`,
        );
        await sleep(300);
        assert.equal(udp.got.length, 0, 'no packet in a dry-run');
      } finally {
        await udp.close();
      }
    });

    it('an invalid MAC address or broadcast address is a red status naming the field', async () => {
      await load({ wolMac: '52:54:00:ab:cd' });
      await waitForStatus('a1', (st) => st.fill === 'red' && /wolMac: "52:54:00:ab:cd" is not a MAC address/.test(st.text ?? ''));
      await helper.unload();
      await load({ wolMac: '52-54-00-ab-cd-01', wolAddress: 'ff02::1' });
      await waitForStatus('a1', (st) => st.fill === 'red' && /wolAddress: the Wake-on-LAN broadcast address must be an IPv4 address/.test(st.text ?? ''));
      assert.equal(normaliseMac('5254.00ab.cd01'), '52:54:00:ab:cd:01');
      assert.throws(() => normaliseMac('ff:ff:ff:ff:ff:ff'), /not the MAC address of a network card/);
    });
  });

  describe('driven by a phase (upsorchAction.perform)', () => {
    const step = (over: Partial<ActionStep> = {}, log: string[] = []): ActionStep => ({
      run: { id: 'run1', plan: 'p1', planName: 'Plan', direction: 'shutdown', dryRun: false },
      phase: { id: 'ph1', name: 'Hosts' },
      previous: [],
      interrupted: [],
      hooks: { beforeTarget: async (t) => void log.push(`start ${t.name}`), onResult: (r) => void log.push(`result ${r.target} ${r.method}`) },
      signal: new AbortController().signal,
      ...over,
    });

    it('runs the shutdown command, calls the hooks and sends the report with the run', async () => {
      const out = await load({ preset: 'synology' });
      const node = helper.getNode('a1');
      assert.equal(node.upsorchAction.name, 'ssh');
      assert.ok(node.upsorchAction.budgetMs() >= 10_000 + 5_000);
      const log: string[] = [];
      const report = await node.upsorchAction.perform(step({}, log));
      assert.equal(report.ok, true);
      assert.equal(report.operation, 'host-shutdown');
      assert.deepEqual(log, ['start nas', 'result nas graceful']);
      assert.deepEqual(peer.commands(), ['synoshutdown -s']);
      const { msg } = await out.waitFor((m) => m.topic === 'action-report', 2000);
      assert.equal(msg.run.id, 'run1');
      assert.equal(msg.phase.name, 'Hosts');
    });

    it('does not repeat a one-shot command that was interrupted by a restart', async () => {
      await load({ preset: 'linux' });
      const report = await helper.getNode('a1').upsorchAction.perform(step({ interrupted: ['nas'] }));
      assert.equal(report.ok, false);
      assert.equal(report.results[0].method, 'skipped');
      assert.match(report.results[0].error, /one-shot command is not repeated/);
      assert.deepEqual(peer.commands(), []);
    });

    it('a dry-run run reports what it would do without running anything', async () => {
      await load({ preset: 'esxi' });
      const report = await helper.getNode('a1').upsorchAction.perform(step({ run: { id: 'run2', plan: 'p1', planName: 'Plan', direction: 'shutdown', dryRun: true } }));
      assert.equal(report.ok, true);
      assert.equal(report.results[0].method, 'dry-run');
      assert.match(report.results[0].detail, /^would run "esxcli system maintenanceMode set --enable true; esxcli system shutdown poweroff --reason/);
      assert.deepEqual(peer.commands(), []);
    });
  });

  describe('after a restart, a dropped connection, or loading an older flow', () => {
    const mkPlan = (dir: string) => new Plan({ id: 'p1', name: 'homelab', store: new PlanStore(dir, 'p1'), allowRemote: false, armed: true });
    const hostsPhase = (): PhaseHandle => ({
      id: 'hosts',
      name: 'hosts',
      settings: { mode: 'parallel', stepDelayMs: 0, wait: true, onFailure: 'continue', timeoutMs: null, pointOfNoReturn: false, direction: 'startup' },
      gate: null,
      gateText: null,
      actions: () => [helper.getNode('a1').upsorchAction],
      update: () => undefined,
      finished: () => undefined,
    });
    const reportOf = (plan: Plan) =>
      new Promise<RunReport>((resolve) => {
        const off = plan.subscribe((e: RunEvent) => {
          if (e.type === 'run-report') {
            off();
            resolve(e.report!);
          }
        });
      });

    it('Node-RED restarts while the startup waits for the host: the resumed run waits for it again and runs the startup command once', async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-ssh-plan-'));
      const cfg = { preset: 'linux', startup: 'command', startupCommand: 'echo back', waitUp: true, waitUpTimeout: 60 };
      try {
        await peer.goDown();
        await load(cfg);
        const plan = mkPlan(dir);
        plan.request({ direction: 'startup', dryRun: false, origin: 'local', topic: 'restore' }, () => [hostsPhase()]);
        await waitForStatus('a1', (st) => /^start: waiting for nas to come back/.test(st.text ?? ''), 10_000);
        // Node-RED stops: the plan and then the flow close.
        await plan.close();
        await helper.unload();
        const saved = JSON.parse(fs.readFileSync(path.join(dir, 'plan-p1.json'), 'utf8')).run as RunRecord;
        assert.equal(saved.state, 'running');
        assert.deepEqual(saved.phases[0].actions[0].started, [], 'nothing was sent to the host: it is not marked as acted on');

        await load(cfg); // Node-RED is back; the host is still booting
        const again = mkPlan(dir);
        const rec = await again.init();
        assert.ok(rec, 'the startup resumes');
        const done = reportOf(again);
        again.resume(rec, () => hostsPhase());
        await waitForStatus('a1', (st) => /^start: waiting for nas to come back/.test(st.text ?? ''), 10_000);
        await peer.comeUp(); // the host has booted
        const r = await done;
        assert.equal(r.state, 'done', JSON.stringify(r.phases, null, 1));
        const res = r.phases[0].actions[0].results;
        assert.equal(res.length, 1);
        assert.equal(res[0].ok, true, JSON.stringify(res[0]));
        assert.match(res[0].detail ?? '', /^nas is back: SSH login works; "echo back" exited 0/);
        assert.deepEqual(peer.commands(), ['echo back'], 'the startup command ran once');
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it('a connection that drops between listing and acting is replaced: the command runs once on a fresh one (shutdown and startup)', async () => {
      // A TCP relay in front of sshd that can reset every connection through it, as a rebooting
      // switch or a NAT table flush would.
      const through = new Set<net.Socket>();
      const relay = net.createServer((c) => {
        const up = net.connect(peer.port, '127.0.0.1');
        through.add(c);
        c.pipe(up);
        up.pipe(c);
        const end = () => {
          through.delete(c);
          c.destroy();
          up.destroy();
        };
        for (const s of [c, up]) s.on('error', end).on('close', end);
      });
      await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
      const shared = new SharedSsh(
        { host: '127.0.0.1', port: (relay.address() as net.AddressInfo).port, username: 'root', privateKey: peer.clientKey, fingerprint: peer.hostKeyFingerprint, connectTimeoutMs: 3000 },
        'nas',
      );
      const sessions: SshSession[] = [];
      const host: SshHostHandle = {
        label: shared.label,
        host: shared.host,
        port: shared.port,
        username: shared.username,
        connectTimeoutMs: shared.connectTimeoutMs,
        acquire: async (signal) => {
          const lease = await shared.acquire(signal);
          sessions.push(lease.session);
          return lease;
        },
        probe: (ms, signal) => shared.probe(ms, signal),
        close: () => shared.close(),
      };
      try {
        const cases = [
          { direction: 'shutdown', operation: 'command', command: 'echo down', extra: {} },
          { direction: 'startup', operation: 'start', command: 'echo up', extra: { waitUp: true, waitUpTimeoutMs: 8000 } },
        ] as const;
        for (const c of cases) {
          peer.clearLogs();
          sessions.length = 0;
          const driver = new SshActionDriver(host, { unreachableIsDown: false, startupWaits: c.operation === 'start' });
          const report = await runAction(driver, {
            selection: { names: ['nas'] },
            options: { operation: c.operation, timeoutMs: 5000, force: false, extra: { command: c.command, powersOff: false, waitDown: false, waitDownTimeoutMs: 1000, ...c.extra } },
            dryRun: false,
            direction: c.direction,
            concurrency: 1,
            connectTimeoutMs: 5000,
            targetTimeoutMs: 8000,
            hooks: {
              // Listed (and reached): now the connection is reset before the command is sent.
              beforeTarget: async () => {
                for (const s of through) s.resetAndDestroy();
                await waitUntil('our end to see the reset', 3000, () => sessions.length > 0 && sessions.every((s) => s.closed));
              },
            },
            signal: new AbortController().signal,
          });
          await driver.close();
          assert.equal(report.ok, true, `${c.direction}: ${JSON.stringify(report)}`);
          assert.equal(sessions.length, 2, `${c.direction}: one new connection after the reset`);
          assert.deepEqual(peer.commands(), [c.command], `${c.direction}: sent once`);
        }
      } finally {
        await shared.close();
        for (const s of through) s.destroy();
        await new Promise<void>((r) => relay.close(() => r()));
      }
    });

    it('a node saved before "wait until up" existed keeps its startup: a power-off preset with startup "nothing" does nothing', async () => {
      // As saved by an earlier version: no waitUp at all.
      const old = { id: 'a1', type: 'upsorch-ssh', name: '', host: 'h1', preset: 'synology', command: '', timeout: 60, waitDown: true, waitDownTimeout: 180, startup: 'none', startupCommand: '' };
      assert.equal(parseSshActionConfig(old).waitUp, false);
      assert.equal(parseSshActionConfig({ ...old, waitUp: '' }).waitUp, false, 'a new node never opened in the editor');
      assert.equal(parseSshActionConfig({ ...old, waitUp: true }).waitUp, true);
      await peer.goDown();
      const out = await load({ preset: 'synology', startup: 'none', waitDown: true, waitUp: undefined });
      const t0 = Date.now();
      const report = await request(out, { topic: 'startup' });
      assert.ok(Date.now() - t0 < 2000, 'no wait for the host');
      assert.equal(report.ok, true, JSON.stringify(report));
      assert.deepEqual(report.results.map((r: TargetResult) => [r.target, r.method, r.detail]), [['nas', 'skipped', 'nothing to do in this direction']]);
      assert.ok(!statuses('a1').some((st) => /waiting/.test(st.text ?? '')), 'never showed a wait');
    });

    it('the shipped examples that should wait for their hosts say so explicitly', () => {
      for (const file of ['06 Homelab plan.json', '10 SSH shutdown.json']) {
        const flow = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'examples', file), 'utf8')) as Array<Record<string, unknown>>;
        for (const n of flow.filter((x) => x.type === 'upsorch-ssh')) {
          const cfg = parseSshActionConfig(n);
          if (shutdownCommand(cfg, 'root').powersOff) assert.equal(n.waitUp, true, `${file}: "${n.name}" powers its host off and waits for it on startup`);
        }
      }
    });

    it("a phase's derived timeout for a startup makes room for the wait (\"wait at most\"), a shutdown's does not", async () => {
      await load({ preset: 'linux', waitUp: true, waitUpTimeout: 300, timeout: 10 });
      const a = helper.getNode('a1').upsorchAction;
      const down = a.budgetMs(undefined, 'shutdown');
      const up = a.budgetMs(undefined, 'startup');
      assert.ok(up >= down + 300_000, `startup ${up} ms, shutdown ${down} ms`);
      await helper.unload();
      await load({ preset: 'linux', startup: 'none', waitUp: false });
      assert.equal(helper.getNode('a1').upsorchAction.budgetMs(undefined, 'startup'), 0, 'nothing to do on startup: no time needed');
    });
  });

  // OpenSSH would need a system user with a password for this (UsePAM no checks /etc/shadow), and the
  // tests create no system users: password logins are tested against ssh2's own SSH server, a
  // complete SSH-2 implementation that accepts one user/password and records the exec requests.
  describe('password login (ssh2 server)', () => {
    let server: Server;
    let port = 0;
    const received: string[] = [];
    before(async () => {
      server = new Server({ hostKeys: [fs.readFileSync(path.join(peer.dir, 'hostkey'))] }, (client) => {
        client.on('error', () => undefined);
        client.on('authentication', (ctx) => {
          if (ctx.method === 'password' && ctx.username === 'admin' && ctx.password === 's3cret pass') return ctx.accept();
          ctx.reject(['password']);
        });
        client.on('ready', () => {
          client.on('session', (accept) => {
            accept().on('exec', (acceptExec, _reject, info) => {
              received.push(info.command);
              const ch = acceptExec();
              // A host powering off: the connection drops before any exit status.
              if (info.command.startsWith('my-poweroff')) return void setTimeout(() => client.end(), 50);
              ch.exit(0);
              ch.end();
            });
          });
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      port = (server.address() as net.AddressInfo).port;
    });
    after(() => new Promise<void>((r) => server.close(() => r())));

    it('logs in with the password and, as a user other than root, sends "sudo -n poweroff"', async () => {
      received.length = 0;
      await helper.load([...ourNodes, ...sshNodes], [hostConfig({ port, username: 'admin' }), ...action({ preset: 'linux' })], { h1: { password: 's3cret pass' } });
      const out = new Collector('out');
      const report = await request(out, { topic: 'shutdown' });
      assert.equal(report.ok, true, JSON.stringify(report));
      assert.deepEqual(received, ['sudo -n poweroff']);
      assert.ok(!JSON.stringify(report).includes('s3cret'), 'the password is nowhere in the report');
    });

    it('a custom command whose connection drops fails, unless it is marked as powering the host off', async () => {
      const hostCfg = hostConfig({ port, username: 'admin' });
      for (const [customPowersOff, ok] of [[false, false], [true, true]] as const) {
        received.length = 0;
        await helper.load([...ourNodes, ...sshNodes], [hostCfg, ...action({ preset: 'custom', command: 'my-poweroff --now', customPowersOff })], { h1: { password: 's3cret pass' } });
        const report = await request(new Collector('out'), { topic: 'shutdown' });
        assert.deepEqual(received, ['my-poweroff --now']);
        assert.equal(report.ok, ok, JSON.stringify(report));
        if (ok) {
          assert.equal(report.operation, 'host-shutdown');
          assert.equal(report.results[0].detail, '"my-poweroff --now" sent; the host closed the connection');
        } else {
          assert.equal(report.operation, 'command');
          assert.equal(report.results[0].error, 'the connection to nas closed before "my-poweroff --now" finished');
        }
        await helper.unload();
      }
    });

    it('a wrong password fails with an authentication error that does not repeat it', async () => {
      received.length = 0;
      await helper.load([...ourNodes, ...sshNodes], [hostConfig({ port, username: 'admin' }), ...action({ preset: 'linux' })], { h1: { password: 'wrong-one' } });
      const out = new Collector('out');
      const report = await request(out, { topic: 'shutdown' });
      assert.equal(report.error, `authentication failed for user "admin" on 127.0.0.1:${port}: the server refused the password`);
      assert.deepEqual(received, []);
      assert.ok(!JSON.stringify(report).includes('wrong-one'));
    });
  });

  describe('SSH host dialog endpoints', () => {
    before(async () => {
      await helper.startServer();
    });
    after(async () => {
      await helper.stopServer();
    });

    it('"Fetch fingerprint" returns the host key as ssh-keygen prints it, without logging in', async () => {
      await load();
      const res = await helper.request().post('/upsorch-ssh-host/fingerprint').send({ host: '127.0.0.1', port: peer.port, timeout: 5 }).expect(200);
      assert.deepEqual(res.body, { ok: true, message: `127.0.0.1:${peer.port} presents a ssh-ed25519 key`, fingerprint: peer.hostKeyFingerprint, keyType: 'ssh-ed25519' });
      assert.deepEqual(peer.commands(), []);
      const closed = await freePort();
      const bad = await helper.request().post('/upsorch-ssh-host/fingerprint').send({ host: '127.0.0.1', port: closed }).expect(200);
      assert.equal(bad.body.ok, false);
      assert.match(bad.body.message, /connection refused/);
    });

    it('"Test connection" checks the pin, logs in with the stored key and runs a command; never returns the key', async () => {
      await load();
      const body = { ...hostConfig(), id: 'h1', privateKey: '__PWRD__', password: '', passphrase: '' };
      const ok = await helper.request().post('/upsorch-ssh-host/test').send(body).expect(200);
      assert.equal(ok.body.ok, true, JSON.stringify(ok.body));
      assert.equal(ok.body.message, `logged in as root@127.0.0.1:${peer.port} with the key; host key matches the pin; commands run`);
      assert.deepEqual(peer.commands(), ['echo upsorch-ok']);
      assert.ok(!JSON.stringify(ok.body).includes('PRIVATE KEY'));

      const mismatch = await helper.request().post('/upsorch-ssh-host/test').send({ ...body, fingerprint: peer.otherFingerprint }).expect(200);
      assert.equal(mismatch.body.ok, false);
      assert.match(mismatch.body.message, /^host key mismatch: expected /);

      const wrongKey = await helper.request().post('/upsorch-ssh-host/test').send({ ...body, privateKey: peer.otherKey }).expect(200);
      assert.equal(wrongKey.body.ok, false);
      assert.match(wrongKey.body.message, /^authentication failed for user "root"/);
      assert.ok(!JSON.stringify(wrongKey.body).includes('PRIVATE KEY'));

      const garbage = await helper.request().post('/upsorch-ssh-host/test').send({ ...body, privateKey: 'not a key' }).expect(200);
      assert.equal(garbage.body.ok, false);
      assert.match(garbage.body.message, /^the private key cannot be read/);
    });
  });
});
