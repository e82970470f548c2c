/**
 * vSphere actions against VMware's own simulator (vcsim from govmomi 0.24, built by the test bed
 * with the extensions in test/peers/vcsim/upsorch_ext.go), in the Node-RED runtime and through the
 * library: vCenter and standalone ESXi models, each test on a fresh simulator where it changes state.
 *
 * vCenter model used here: datacenter DC0; standalone host DC0_H0 with VMs web-1 and notools-app;
 * cluster DC0_C0 (hosts DC0_C0_H0..2) with VMs hang-legacy and db-1, both on DC0_C0_H2; web-1 and
 * db-1 in folder "prod". notools-* VMs never run VMware Tools; hang-* guests ignore the shutdown
 * request; other guests power off 1 s after ShutdownGuest (their Tools stop half-way). A host
 * enters maintenance mode only once none of its VMs is powered on.
 */
import { strict as assert } from 'node:assert';
import * as cp from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { VcsimPeer, buildVcsim } from './peers/vcsim';
import { clientConnections } from './peers/proc';
import { Collector, helper, sleep, statuses, waitForStatus } from './util/red';
import { VsphereSession } from '../lib/vsphere/session';
import { VsphereDriver, listAll } from '../lib/vsphere/driver';
import { testVsphere } from '../lib/vsphere/config';
import { SoapEndpoint, SoapProtocolError, VimFault } from '../lib/vsphere/soap';
import { ConnectError } from '../lib/net/https-client';
import { isNotReachable, runAction } from '../lib/actions/run';

const vsphereNodes = [require('../nodes/upsorch-vsphere'), require('../nodes/upsorch-vsphere-action')];

const VPX_ARGS = [
  '-guest-shutdown-delay', '1s',
  '-rename', 'DC0_H0_VM0=web-1,DC0_H0_VM1=notools-app,DC0_C0_RP0_VM0=hang-legacy,DC0_C0_RP0_VM1=db-1',
  '-no-tools', 'notools',
  '-ignore-shutdown', 'hang',
  '-folder', 'prod=web-1+db-1',
  '-place', 'hang-legacy=DC0_C0_H2,db-1=DC0_C0_H2',
];

function vcenter(extra: string[] = []): Promise<VcsimPeer> {
  return VcsimPeer.start({ args: [...VPX_ARGS, ...extra] });
}

interface Flow {
  peer: VcsimPeer;
  fingerprint?: string;
  conn?: Record<string, unknown>;
  action?: Record<string, unknown>;
  creds?: Record<string, unknown>;
}

async function load(f: Flow): Promise<void> {
  const fp = f.fingerprint ?? (await f.peer.fingerprint());
  await helper.load(
    vsphereNodes,
    [
      { id: 'vc', type: 'upsorch-vsphere', name: 'vCenter sim', url: f.peer.url, tlsVerify: true, tlsFingerprint: fp, timeout: 5, pageSize: 500, ...f.conn },
      {
        id: 'act', type: 'upsorch-vsphere-action', name: '', connection: 'vc', kind: 'vm', shutdownOp: 'shutdown', startupOp: 'start',
        names: [], patterns: [], tags: [], exclude: [], allRunning: false, timeout: 10, force: true, waitForTools: false, toolsTimeout: 30,
        maintenanceFirst: false, concurrency: 4, connectTimeout: 15, poll: 0.3, wires: [['out']], ...f.action,
      },
      { id: 'out', type: 'helper' },
    ],
    { vc: { username: f.peer.username, password: f.peer.password, ...f.creds } },
  );
}

/** Send a request to the action and wait for its report. */
async function request(msg: Record<string, unknown>, ms = 30_000): Promise<any> {
  const out = new Collector('out');
  const from = out.received.length;
  helper.getNode('act').receive(msg);
  const { msg: m } = await out.waitFor((x) => x.topic === 'action-report' || x.topic === 'status', ms, from, 'the action report');
  return m.payload;
}

function byName(report: any): Record<string, any> {
  return Object.fromEntries(report.results.map((r: any) => [r.target, r]));
}

async function session(peer: VcsimPeer, over: Partial<ConstructorParameters<typeof VsphereSession>[0]> = {}): Promise<VsphereSession> {
  return new VsphereSession({ url: peer.url, username: peer.username, password: peer.password, tls: { fingerprint: await peer.fingerprint() }, timeoutMs: 5000, ...over });
}

/** The VM's guest.toolsRunningStatus as the server reports it now. */
async function toolsOf(peer: VcsimPeer, vm: string): Promise<string> {
  const s = await session(peer);
  try {
    return String((await listAll(s)).vms.find((t) => t.name === vm)?.info?.tools);
  } finally {
    await s.close();
  }
}

function shutdownRequest(over: Partial<Parameters<typeof runAction>[1]> = {}): Parameters<typeof runAction>[1] {
  return { selection: { names: ['web-1'] }, options: { operation: 'shutdown', timeoutMs: 10_000, force: true }, dryRun: false, concurrency: 1, connectTimeoutMs: 10_000, signal: new AbortController().signal, ...over };
}

async function power(peer: VcsimPeer): Promise<Record<string, string>> {
  const s = await session(peer);
  try {
    const all = await listAll(s);
    return Object.fromEntries([...all.vms, ...all.hosts].map((t) => [t.name, t.info?.kind === 'host' && t.info.maintenance ? `${t.power}+maintenance` : t.power]));
  } finally {
    await s.close();
  }
}

/** A loopback port with nothing listening (for now). */
function closedPort(): Promise<number> {
  return new Promise((res) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => res(p));
    });
  });
}

/** A self-signed certificate for 127.0.0.1, so vcsim and its front can serve the same one. */
function selfSigned(): { cert: string; key: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-vc-cert-'));
  try {
    cp.execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'), '-days', '2', '-subj', '/CN=vcenter-boot', '-addext', 'subjectAltName=IP:127.0.0.1'],
      { stdio: 'ignore', timeout: 15_000 },
    );
    return { cert: fs.readFileSync(path.join(dir, 'cert.pem'), 'utf8'), key: fs.readFileSync(path.join(dir, 'key.pem'), 'utf8') };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * vcsim behind a loopback front that plays a vCenter booting after an outage: `down` (nothing
 * listening: connection refused), `starting` (its reverse proxy is up but vpxd is not: every request
 * gets rhttpproxy's 503, with vcsim's certificate), `up` (the bytes go through to vcsim).
 */
class BootingVcenter {
  mode: 'down' | 'starting' | 'up' = 'down';
  /** 503 answers sent while starting. */
  unavailable = 0;
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  private readonly proxy: https.Server;

  private constructor(
    readonly port: number,
    private readonly to: number,
    tlsPair: { cert: string; key: string },
  ) {
    this.proxy = https.createServer(tlsPair, (req, res) => {
      req.resume();
      this.unavailable++;
      res.writeHead(503, 'Service Unavailable', { 'Content-Type': 'text/plain', Connection: 'close' });
      res.end('503 Service Unavailable (Failed to connect to endpoint: [N7Vmacore4Http20NamedPipeServiceSpecE:0x0000] _serverNamespace = /sdk action = Allow _pipeName =/var/run/vmware/proxy-sdk.sock)');
    });
    this.proxy.on('tlsClientError', () => undefined);
  }

  static async create(to: number, tlsPair: { cert: string; key: string }): Promise<BootingVcenter> {
    return new BootingVcenter(await closedPort(), to, tlsPair);
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}/sdk`;
  }

  async set(mode: 'down' | 'starting' | 'up'): Promise<void> {
    this.mode = mode;
    for (const s of this.sockets) s.destroy(); // a new phase: connections made in the old one go
    if (mode === 'down') return this.close();
    if (this.server) return;
    const server = net.createServer((sock) => {
      this.sockets.add(sock);
      sock.on('close', () => this.sockets.delete(sock));
      sock.on('error', () => undefined);
      if (this.mode === 'starting') return void this.proxy.emit('connection', sock);
      const up = net.connect(this.to, '127.0.0.1');
      this.sockets.add(up);
      up.on('close', () => this.sockets.delete(up));
      up.on('error', () => sock.destroy());
      sock.pipe(up).pipe(sock);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }
}

/** Power a VM off before a startup test (vcsim starts every VM powered on). */
async function powerOff(peer: VcsimPeer, name: string): Promise<void> {
  const s = await session(peer);
  try {
    const r = await runAction(new VsphereDriver(s, { kind: 'vm', pollMs: 200 }), { ...shutdownRequest(), selection: { names: [name] }, options: { operation: 'stop', timeoutMs: 10_000, force: true } });
    assert.equal(r.ok, true, JSON.stringify(r));
  } finally {
    await s.close();
  }
}

describe('vSphere actions against vcsim (VMware vCenter / ESXi simulator)', function () {
  this.timeout(120_000);
  let peer: VcsimPeer | undefined;

  before(async function () {
    this.timeout(420_000); // a cold build of vcsim takes about a minute on two cores
    await buildVcsim();
  });
  afterEach(async () => {
    await helper.unload();
    await peer?.stop();
    peer = undefined;
  });

  describe('VM shutdown', () => {
    it('asks the guest to shut down when VMware Tools run, and reports it off (graceful)', async () => {
      peer = await vcenter();
      await load({ peer, action: { names: ['web-1'] } });
      const report = await request({ topic: 'shutdown' });
      assert.equal(report.ok, true, JSON.stringify(report));
      const r = byName(report)['web-1'];
      assert.equal(r.method, 'graceful');
      assert.equal(r.before, 'on');
      assert.equal(r.after, 'off');
      assert.match(r.detail, /^guest shutdown: off after \d/);
      assert.ok(r.ms >= 900, `a guest needs about 1 s here, took ${r.ms} ms`);
      assert.equal((await power(peer))['web-1'], 'off');
      const st = statuses('act').pop();
      assert.equal(st?.fill, 'green');
      assert.match(st?.text ?? '', /^1 done in /);
    });

    it('powers a VM without VMware Tools off at once (forced), or refuses when forcing is disabled', async () => {
      peer = await vcenter();
      await load({ peer, action: { names: ['notools-app'], force: false } });
      const refused = await request({ topic: 'shutdown' });
      assert.equal(refused.ok, false);
      assert.match(byName(refused)['notools-app'].error, /VMware Tools are not running in notools-app: it cannot be shut down gracefully and forced power-off is disabled/);
      assert.equal((await power(peer))['notools-app'], 'on');
      await helper.unload();

      await load({ peer, action: { names: ['notools-app'], force: true } });
      const report = await request({ topic: 'shutdown' });
      const r = byName(report)['notools-app'];
      assert.equal(report.ok, true);
      assert.equal(r.method, 'forced');
      assert.equal(r.detail, 'VMware Tools not running: powered off at once');
      assert.equal((await power(peer))['notools-app'], 'off');
    });

    it('powers off a guest that ignores the shutdown request after the timeout', async () => {
      peer = await vcenter();
      await load({ peer, action: { names: ['hang-legacy', 'db-1'], timeout: 3 } });
      const t0 = Date.now();
      const report = await request({ topic: 'shutdown' });
      const r = byName(report);
      assert.equal(report.ok, true, JSON.stringify(report));
      assert.equal(r['hang-legacy'].method, 'forced');
      assert.equal(r['hang-legacy'].detail, 'guest did not shut down within 3 s: powered off');
      assert.ok(r['hang-legacy'].ms >= 3000);
      assert.equal(r['db-1'].method, 'graceful');
      assert.ok(Date.now() - t0 < 20_000);
      const p = await power(peer);
      assert.equal(p['hang-legacy'], 'off');
      assert.equal(p['db-1'], 'off');
    });

    it('fails (and leaves the VM on) when the guest ignores the request and forcing is disabled', async () => {
      peer = await vcenter();
      await load({ peer, action: { names: ['hang-legacy'], timeout: 2, force: false } });
      const report = await request({ topic: 'shutdown' });
      assert.equal(report.ok, false);
      assert.match(byName(report)['hang-legacy'].error, /hang-legacy: still running 2 s after the guest shutdown request, and forcing is disabled/);
      assert.equal((await power(peer))['hang-legacy'], 'on');
      assert.equal(statuses('act').pop()?.fill, 'red');
    });

    it('reports a VM that is already off as "already", without acting', async () => {
      peer = await vcenter();
      await load({ peer, action: { names: ['web-1'] } });
      await request({ topic: 'stop' });
      const report = await request({ topic: 'shutdown' });
      const r = byName(report)['web-1'];
      assert.equal(report.ok, true);
      assert.equal(r.method, 'already');
      assert.equal(r.before, 'off');
      assert.equal(r.ms, 0);
    });

    it('Tools that are running a script count as running: the guest is asked to shut down, not powered off', async () => {
      peer = await vcenter(['-tools-scripts', 'web']);
      await load({ peer, action: { names: ['web-1'], force: true } });
      const [st] = await request({ topic: 'status' });
      assert.equal(st.info.tools, 'guestToolsExecutingScripts');
      assert.equal(st.info.toolsRunning, true);
      const dry = await request({ topic: 'dry-run' });
      assert.match(byName(dry)['web-1'].detail, /^would ask the guest to shut down \(VMware Tools running\)/);
      const r = byName(await request({ topic: 'shutdown' }))['web-1'];
      assert.equal(r.method, 'graceful', JSON.stringify(r));
      assert.match(r.detail, /^guest shutdown: off after/);
    });

    it('a resumed run gives a guest it had asked to shut down (Tools already stopped) the timeout, instead of powering it off', async () => {
      peer = await vcenter(['-guest-shutdown-delay', '6s']);
      const s = await session(peer);
      try {
        const web = (await listAll(s)).vms.find((t) => t.name === 'web-1')!;
        // The first run asked the guest to shut down, then Node-RED stopped; the guest OS goes
        // down and its Tools stop before the VM powers off.
        await s.call('ShutdownGuest', { type: 'VirtualMachine', value: web.id }, '');
        for (let i = 0; i < 100 && (await toolsOf(peer, 'web-1')) !== 'guestToolsNotRunning'; i++) await sleep(100);
        assert.equal(await toolsOf(peer, 'web-1'), 'guestToolsNotRunning');
        const d = new VsphereDriver(s, { kind: 'vm', pollMs: 200 });
        const r = await runAction(d, shutdownRequest({ interrupted: ['web-1'] }));
        await d.close();
        assert.equal(r.results[0].method, 'graceful', JSON.stringify(r.results));
        assert.match(r.results[0].detail!, /^guest shutdown \(requested before the restart\): off after/);

        // Without the resume, a VM without running Tools is powered off at once.
        const db = (await listAll(s)).vms.find((t) => t.name === 'db-1')!;
        await s.call('ShutdownGuest', { type: 'VirtualMachine', value: db.id }, '');
        for (let i = 0; i < 100 && (await toolsOf(peer, 'db-1')) !== 'guestToolsNotRunning'; i++) await sleep(100);
        const d2 = new VsphereDriver(s, { kind: 'vm', pollMs: 200 });
        const r2 = await runAction(d2, shutdownRequest({ selection: { names: ['db-1'] } }));
        await d2.close();
        assert.equal(r2.results[0].method, 'forced', JSON.stringify(r2.results));
        assert.equal(r2.results[0].detail, 'VMware Tools not running: powered off at once');
      } finally {
        await s.close();
      }
    });

    it('selects by folder and host tags, all running, minus exclusions', async () => {
      peer = await vcenter();
      await load({ peer, action: { names: [], tags: ['folder:prod'], exclude: ['db-*'] } });
      const report = await request({ topic: 'dry-run' });
      assert.deepEqual(report.results.map((r: any) => r.target), ['web-1']);
      assert.equal(report.results[0].method, 'dry-run');
      assert.match(report.results[0].detail, /would ask the guest to shut down \(VMware Tools running\), then power off after 10 s/);
      await helper.unload();

      await load({ peer, action: { names: [], allRunning: true, exclude: ['hang-*'], force: false } });
      const dry = await request({ topic: 'dry-run' });
      const r = byName(dry);
      assert.deepEqual(Object.keys(r).sort(), ['db-1', 'notools-app', 'web-1']);
      assert.equal(r['notools-app'].ok, false);
      assert.match(r['notools-app'].error, /VMware Tools are not running/);
      // A dry-run changes nothing.
      assert.deepEqual(await power(peer), { 'db-1': 'on', 'hang-legacy': 'on', 'notools-app': 'on', 'web-1': 'on', DC0_C0_H0: 'on', DC0_C0_H1: 'on', DC0_C0_H2: 'on', DC0_H0: 'on' });
    });
  });

  describe('VM start and status', () => {
    it('powers VMs on and waits until VMware Tools run; already-on VMs are "already"', async () => {
      peer = await vcenter();
      await load({ peer, action: { names: ['web-1', 'db-1'], waitForTools: true, toolsTimeout: 10 } });
      await request({ topic: 'stop', targets: { names: ['web-1'] } });
      const report = await request({ topic: 'startup' });
      const r = byName(report);
      assert.equal(report.operation, 'start');
      assert.equal(report.ok, true, JSON.stringify(report));
      assert.equal(r['web-1'].method, 'graceful');
      assert.match(r['web-1'].detail, /^powered on, VMware Tools running after/);
      assert.equal(r['db-1'].method, 'already');
      assert.equal((await power(peer))['web-1'], 'on');
    });

    it('fails a start that waits for Tools when they never run', async () => {
      peer = await vcenter();
      await load({ peer, action: { names: ['notools-app'], waitForTools: true, toolsTimeout: 2 } });
      await request({ topic: 'stop' });
      const report = await request({ topic: 'start' });
      assert.equal(report.ok, false);
      assert.match(byName(report)['notools-app'].error, /notools-app powered on, but VMware Tools were not running within 2 s/);
    });

    it('status reports power, Tools, host, folder and uptime per VM without acting', async () => {
      peer = await vcenter();
      await load({ peer, action: { names: [], allRunning: true } });
      await sleep(1100);
      const list: any[] = await request({ topic: 'status' });
      const web = list.find((t) => t.name === 'web-1');
      assert.equal(list.length, 4);
      assert.equal(web.power, 'on');
      assert.deepEqual(web.tags, ['host:DC0_H0', 'datacenter:DC0', 'folder:prod']);
      assert.equal(web.info.tools, 'guestToolsRunning');
      assert.equal(web.info.host, 'DC0_H0');
      assert.equal(web.info.folder, '/prod');
      assert.ok(web.info.uptimeSeconds >= 1, `uptime ${web.info.uptimeSeconds}`);
      assert.equal(list.find((t) => t.name === 'notools-app').info.toolsRunning, false);
      assert.ok(list.find((t) => t.name === 'db-1').tags.includes('cluster:DC0_C0'));
    });
  });

  describe('hosts', () => {
    it('refuses to shut a host down outside maintenance mode without force; maintenance first, then shutdown', async () => {
      peer = await vcenter();
      await load({ peer, action: { kind: 'host', shutdownOp: 'host-shutdown', names: ['DC0_C0_H0'], force: false, maintenanceFirst: false, timeout: 10 } });
      const refused = await request({ topic: 'shutdown' });
      assert.equal(refused.ok, false);
      assert.match(byName(refused).DC0_C0_H0.error, /DC0_C0_H0 is not in maintenance mode: refusing to shut it down without force/);
      assert.equal((await power(peer)).DC0_C0_H0, 'on');

      const maint = await request({ topic: 'maintenance' });
      assert.equal(maint.ok, true);
      assert.equal(byName(maint).DC0_C0_H0.method, 'graceful');
      assert.match(byName(maint).DC0_C0_H0.detail, /^in maintenance mode after/);
      assert.equal(byName(await request({ topic: 'maintenance' })).DC0_C0_H0.method, 'already');

      const down = await request({ topic: 'shutdown' });
      assert.equal(down.ok, true, JSON.stringify(down));
      assert.equal(byName(down).DC0_C0_H0.method, 'graceful');
      assert.equal(byName(down).DC0_C0_H0.after, 'off');
      assert.equal((await power(peer)).DC0_C0_H0, 'off+maintenance');
      assert.equal(byName(await request({ topic: 'shutdown' })).DC0_C0_H0.method, 'already');
    });

    it('"enter maintenance mode first" and "force" both let a host shut down', async () => {
      peer = await vcenter();
      await load({ peer, action: { kind: 'host', shutdownOp: 'host-shutdown', names: ['DC0_C0_H1'], force: false, maintenanceFirst: true } });
      const a = byName(await request({ topic: 'shutdown' })).DC0_C0_H1;
      assert.equal(a.ok, true, JSON.stringify(a));
      assert.equal(a.detail, 'entered maintenance mode, shut down');
      await helper.unload();

      await load({ peer, action: { kind: 'host', shutdownOp: 'host-shutdown', names: ['DC0_H0'], force: true, maintenanceFirst: false } });
      const b = byName(await request({ topic: 'shutdown' })).DC0_H0;
      assert.equal(b.ok, true, JSON.stringify(b));
      assert.equal(b.method, 'forced');
      const p = await power(peer);
      assert.equal(p.DC0_H0, 'off');
      // The host powered its running VMs off with it.
      assert.equal(p['web-1'], 'off');
      assert.equal(p['notools-app'], 'off');
    });

    it('startup takes a host out of maintenance mode', async () => {
      peer = await vcenter();
      await load({ peer, action: { kind: 'host', shutdownOp: 'maintenance', startupOp: 'start', names: ['DC0_C0_H1'], force: false } });
      await request({ topic: 'shutdown' });
      assert.equal((await power(peer)).DC0_C0_H1, 'on+maintenance');
      const up = byName(await request({ topic: 'startup' })).DC0_C0_H1;
      assert.equal(up.ok, true, JSON.stringify(up));
      assert.equal(up.before, 'suspended');
      assert.match(up.detail, /^exited maintenance mode/);
      assert.equal((await power(peer)).DC0_C0_H1, 'on');
      assert.equal(byName(await request({ topic: 'startup' })).DC0_C0_H1.method, 'already');
    });

    it('maintenance mode waits while VMs run on the host, and is reached once they are off', async () => {
      peer = await vcenter();
      const s = await session(peer);
      try {
        const vms = (await listAll(s)).vms.filter((t) => t.name === 'db-1' || t.name === 'hang-legacy');
        const d = new VsphereDriver(s, { kind: 'host', pollMs: 200 });
        const pending = runAction(d, { selection: { names: ['DC0_C0_H2'] }, options: { operation: 'maintenance', timeoutMs: 30_000, force: false }, dryRun: false, concurrency: 1, connectTimeoutMs: 10_000, signal: new AbortController().signal });
        await sleep(1500);
        assert.equal((await power(peer)).DC0_C0_H2, 'on', 'not in maintenance mode while db-1 and hang-legacy run');
        for (const vm of vms) await s.call('PowerOffVM_Task', { type: 'VirtualMachine', value: vm.id }, '');
        const r = await pending;
        await d.close();
        assert.equal(r.ok, true, JSON.stringify(r));
        assert.match(r.results[0].detail!, /^in maintenance mode after \d/);
        assert.ok(r.results[0].ms >= 1500, `took ${r.results[0].ms} ms`);
        assert.equal((await power(peer)).DC0_C0_H2, 'on+maintenance');
      } finally {
        await s.close();
      }
    });

    it('a host whose VMs keep running fails maintenance mode; with force it is shut down anyway, reported as forced with the reason', async () => {
      peer = await vcenter();
      await load({ peer, action: { kind: 'host', shutdownOp: 'host-shutdown', names: ['DC0_C0_H2'], force: false, maintenanceFirst: true, timeout: 2 } });
      const refused = byName(await request({ topic: 'shutdown' })).DC0_C0_H2;
      assert.equal(refused.ok, false);
      assert.match(refused.error, /^DC0_C0_H2 entering maintenance mode failed: Timedout: Operation timed out\. \(2 powered-on VMs: (db-1, hang-legacy|hang-legacy, db-1)\)$/);
      assert.equal((await power(peer)).DC0_C0_H2, 'on', 'without force the host stays on');
      await helper.unload();

      await load({ peer, action: { kind: 'host', shutdownOp: 'host-shutdown', names: ['DC0_C0_H2'], force: true, maintenanceFirst: true, timeout: 2 } });
      const dry = byName(await request({ topic: 'dry-run' })).DC0_C0_H2;
      assert.equal(dry.detail, 'would enter maintenance mode (up to 2 s), then shut the host down; if maintenance mode is not reached, shut it down with force');
      const r = byName(await request({ topic: 'shutdown' })).DC0_C0_H2;
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.equal(r.method, 'forced');
      assert.match(r.detail, /^shut down \(forced: maintenance mode not reached \(DC0_C0_H2 entering maintenance mode failed: Timedout: Operation timed out\. \(2 powered-on VMs: .+\)\)\)$/);
      const p = await power(peer);
      assert.equal(p.DC0_C0_H2, 'off');
      assert.equal(p['db-1'], 'off');
      assert.equal(p['hang-legacy'], 'off');
    });
  });

  describe('connection problems', () => {
    it('a wrong password fails the run with the login refused, and the node shows it in red', async () => {
      peer = await vcenter();
      await load({ peer, action: { names: ['web-1'] }, creds: { password: 'Not-The-Pass-42' } });
      const report = await request({ topic: 'shutdown' });
      assert.equal(report.ok, false);
      assert.equal(report.error, 'vSphere refused the login of "admin": wrong username or password');
      assert.equal(byName(report)['web-1'].method, 'skipped');
      const st = statuses('act').pop();
      assert.equal(st?.fill, 'red');
      assert.match(st?.text ?? '', /refused the login/);
      assert.ok(!JSON.stringify(report).includes('Not-The-Pass-42'), 'the password never appears');
    });

    it('a certificate that does not match the pin is refused before anything is sent', async () => {
      peer = await vcenter();
      const real = await peer.fingerprint();
      const wrong = real.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'));
      await load({ peer, fingerprint: wrong, action: { names: ['web-1'] } });
      const report = await request({ topic: 'shutdown' });
      assert.equal(report.ok, false);
      assert.match(report.error, /certificate fingerprint mismatch at 127\.0\.0\.1:\d+: the server presented SHA-256 [0-9A-F:]{95}, the pin is/);
      assert.equal((await power(peer))['web-1'], 'on');
    });

    it('verification on without a pin refuses the self-signed certificate and names its fingerprint', async () => {
      peer = await vcenter();
      const fp = (await peer.fingerprint()).match(/../g)!.join(':');
      const r = await testVsphere({ url: peer.url, username: 'admin', password: 'secret', tls: { verify: true }, timeoutMs: 5000 });
      assert.equal(r.ok, false);
      assert.match(r.message, /the certificate of 127\.0\.0\.1:\d+ is not trusted \(.+\); if it is the server's own self-signed certificate, pin its SHA-256 fingerprint/);
      assert.ok(r.message.includes(fp), r.message);
    });

    it('an unreachable host (nothing listening) and a host that never answers give clear errors, quickly', async () => {
      peer = await vcenter(); // only so afterEach has something to stop
      const closed = await new Promise<number>((res) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
          const p = (s.address() as net.AddressInfo).port;
          s.close(() => res(p));
        });
      });
      const refused = await testVsphere({ url: `127.0.0.1:${closed}`, username: 'a', password: 'b', tls: { verify: false }, timeoutMs: 3000 });
      assert.equal(refused.ok, false);
      assert.equal(refused.message, `connection refused by 127.0.0.1:${closed} (service not running, or wrong port?)`);

      const silent = net.createServer((sock) => sock.on('error', () => undefined)).listen(0, '127.0.0.1');
      await new Promise((r) => silent.once('listening', r));
      const port = (silent.address() as net.AddressInfo).port;
      try {
        const t0 = Date.now();
        const hung = await testVsphere({ url: `127.0.0.1:${port}`, username: 'a', password: 'b', tls: { verify: false }, timeoutMs: 1500 });
        assert.equal(hung.ok, false);
        assert.match(hung.message, /no connection to 127\.0\.0\.1:\d+ within 1\.5 s|did not answer/);
        assert.ok(Date.now() - t0 < 15_000, `took ${Date.now() - t0} ms`);
      } finally {
        silent.close();
      }
    });

    it('logs in again once when the server ends the session, and logs out on close', async () => {
      peer = await vcenter();
      const s = await session(peer);
      const other = await session(peer);
      try {
        await listAll(s);
        assert.equal(s.logins, 1);
        // An administrator (or the idle timeout) ends our session.
        await other.login();
        const sc = await other.serviceContent();
        await other.call('TerminateSession', sc.sessionManager, `<sessionId>${s.sessionKey}</sessionId>`);
        const all = await listAll(s);
        assert.equal(all.vms.length, 4);
        assert.equal(s.logins, 2);
        const cookie = s.soap.cookie;
        assert.ok(cookie);
        await s.close();
        // The old cookie no longer opens anything: Logout happened.
        const raw = new SoapEndpoint(other.http, '/sdk');
        raw.cookie = cookie;
        await assert.rejects(raw.invoke('CreateContainerView', sc.viewManager, `<container type="Folder">${sc.rootFolder.value}</container><type>VirtualMachine</type><recursive>true</recursive>`, { timeoutMs: 5000 }), (e: unknown) => e instanceof VimFault && e.faultType === 'NotAuthenticated');
      } finally {
        await s.close();
        await other.close();
      }
    });

    it('closing the flow mid-shutdown aborts the wait and leaves no connection open', async () => {
      peer = await vcenter();
      await load({ peer, action: { names: ['hang-legacy'], timeout: 600 } });
      helper.getNode('act').receive({ topic: 'shutdown' });
      await sleep(1500);
      assert.ok(clientConnections(peer.port) > 0);
      const t0 = Date.now();
      await helper.unload();
      assert.ok(Date.now() - t0 < 14_000, `close took ${Date.now() - t0} ms (Node-RED allows 15 s)`);
      for (let i = 0; i < 30 && clientConnections(peer.port) > 0; i++) await sleep(100);
      assert.equal(clientConnections(peer.port), 0);
      assert.equal((await power(peer))['hang-legacy'], 'on');
    });
  });

  describe('startup after an outage', () => {
    it('vCenter still booting (connection refused, then 503 while vpxd starts): the startup waits, says so, and powers the VM on once it answers', async () => {
      const cert = selfSigned();
      peer = await VcsimPeer.start({ args: VPX_ARGS, cert });
      await powerOff(peer, 'web-1');
      const front = await BootingVcenter.create(peer.port, cert);
      try {
        await load({ peer, conn: { url: front.url }, action: { names: ['web-1'] } });
        const out = new Collector('out');
        const from = out.received.length;
        helper.getNode('act').receive({ topic: 'startup' });
        await waitForStatus('act', (st) => st.fill === 'yellow' && /^start: waiting for vCenter sim to come back… \d+ s$/.test(st.text ?? ''), 10_000);
        await front.set('starting');
        for (let i = 0; i < 100 && front.unavailable === 0; i++) await sleep(100);
        assert.ok(front.unavailable > 0, 'the startup asked while vpxd was starting');
        assert.equal(statuses('act').pop()?.fill, 'yellow', 'a 503 is waited for, not a failure');
        await front.set('up');
        const report = (await out.waitFor((m) => m.topic === 'action-report', 30_000, from, 'the action report')).msg.payload;
        assert.equal(report.ok, true, JSON.stringify(report));
        const r = byName(report)['web-1'];
        assert.equal(r.method, 'graceful');
        assert.equal(r.before, 'off');
        assert.match(r.detail, /^powered on \(after waiting [0-9.]+ s for vCenter sim to come back\)$/);
        assert.equal((await power(peer))['web-1'], 'on');
        await waitForStatus('act', (st) => st.fill === 'green');
      } finally {
        await helper.unload();
        await front.close();
      }
    });

    it('a wrong password or a certificate that does not match the pin fails the startup at once: waiting would not fix it', async () => {
      peer = await vcenter();
      await powerOff(peer, 'web-1');
      await load({ peer, action: { names: ['web-1'] }, creds: { password: 'Not-The-Pass-42' } });
      let t0 = Date.now();
      const refused = await request({ topic: 'startup' });
      assert.ok(Date.now() - t0 < 1900, `failed after ${Date.now() - t0} ms (the first retry would be after 2 s)`);
      assert.equal(refused.ok, false);
      assert.equal(refused.error, 'vSphere refused the login of "admin": wrong username or password');
      assert.ok(!statuses('act').some((st) => /waiting/.test(st.text ?? '')), JSON.stringify(statuses('act')));
      await helper.unload();

      const wrong = (await peer.fingerprint()).replace(/^./, (c) => (c === 'A' ? 'B' : 'A'));
      await load({ peer, fingerprint: wrong, action: { names: ['web-1'] } });
      t0 = Date.now();
      const impostor = await request({ topic: 'startup' });
      assert.ok(Date.now() - t0 < 1900, `failed after ${Date.now() - t0} ms`);
      assert.match(impostor.error, /^certificate fingerprint mismatch at 127\.0\.0\.1:\d+/);
      assert.equal((await power(peer))['web-1'], 'off');
    });

    it('what counts as "not reachable yet": socket errors, 502/503/504 without SOAP, a vCenter that cannot reach the host; never a login, privilege or certificate fault', () => {
      peer = undefined;
      assert.equal(isNotReachable(new ConnectError('connection refused', 'ECONNREFUSED')), true);
      assert.equal(isNotReachable(new SoapProtocolError('503', 503)), true);
      assert.equal(isNotReachable(new SoapProtocolError('not SOAP', 200)), false);
      assert.equal(isNotReachable(new SoapProtocolError('not found', 404)), false);
      for (const f of ['HostNotConnected', 'HostNotReachable', 'HostCommunication']) assert.equal(isNotReachable(new VimFault(f, f)), true, f);
      for (const f of ['InvalidLogin', 'NoPermission', 'NotAuthenticated', 'InvalidState', 'RestrictedVersion']) assert.equal(isNotReachable(new VimFault(f, f)), false, f);
      assert.equal(isNotReachable(new ConnectError('pin', 'FINGERPRINT_MISMATCH')), false);
      assert.equal(isNotReachable(new ConnectError('untrusted', 'CERT_UNTRUSTED')), false);
    });
  });

  describe('inventory', () => {
    it('lists 120 VMs across continuation pages of 7 objects', async () => {
      peer = await VcsimPeer.start({ args: ['-vm', '60', '-host', '2'] });
      const s = await session(peer, { pageSize: 7 });
      try {
        const d = new VsphereDriver(s, { kind: 'vm' });
        const all = await d.list(new AbortController().signal);
        await d.close();
        assert.equal(all.length, 120);
        assert.equal(new Set(all.map((t) => t.id)).size, 120);
        // 120 VMs + hosts, folders, datacenter, compute resources: well over 17 pages.
        assert.ok(s.pages >= 18, `pages: ${s.pages}`);
        assert.ok(all.every((t) => t.power === 'on' && /^host:/.test(t.tags![0])));
      } finally {
        await s.close();
      }
    });

    it('the editor lists targets and tests the connection through the admin endpoints, without secrets', async () => {
      peer = await vcenter();
      await load({ peer, action: { names: ['web-1'] } });
      const fp = await peer.fingerprint();
      const t = await helper.request().post('/upsorch-vsphere/test').send({ id: 'vc', url: peer.url, tlsVerify: true, tlsFingerprint: fp, timeout: 5, pageSize: 500, username: 'admin', password: '__PWRD__' }).expect(200);
      assert.equal(t.body.ok, true, JSON.stringify(t.body));
      assert.match(t.body.message, /^logged in to .* \(vCenter, API [\d.]+\) as admin: 4 VMs, 4 hosts$/);
      assert.ok(!JSON.stringify(t.body).includes('secret'));
      const bad = await helper.request().post('/upsorch-vsphere/test').send({ id: 'vc', url: peer.url, tlsFingerprint: fp, username: 'admin', password: 'nope' }).expect(200);
      assert.equal(bad.body.ok, false);
      assert.match(bad.body.message, /refused the login/);

      // The stored password goes only to the deployed address, for the deployed user: another
      // vCenter that would accept it (same user and password) gets none.
      const other = await vcenter();
      try {
        const ofp = await other.fingerprint();
        const elsewhere = await helper.request().post('/upsorch-vsphere/test').send({ id: 'vc', url: other.url, tlsFingerprint: ofp, timeout: 5, username: 'admin', password: '__PWRD__' }).expect(200);
        assert.equal(elsewhere.body.ok, false, JSON.stringify(elsewhere.body));
        assert.match(elsewhere.body.message, /refused the login of "admin"/);
        const typed = await helper.request().post('/upsorch-vsphere/test').send({ id: 'vc', url: other.url, tlsFingerprint: ofp, timeout: 5, username: 'admin', password: 'secret' }).expect(200);
        assert.equal(typed.body.ok, true, JSON.stringify(typed.body));
      } finally {
        await other.stop();
      }
      const otherUser = await helper.request().post('/upsorch-vsphere/test').send({ id: 'vc', url: peer.url, tlsFingerprint: fp, timeout: 5, username: 'root', password: '__PWRD__' }).expect(200);
      assert.equal(otherUser.body.ok, false);
      assert.match(otherUser.body.message, /refused the login of "root"/);

      // Same address with the certificate checks switched off (or another pin): whoever answers at
      // that name could be someone else, so the stored password is not sent. vcsim would have
      // accepted it, so a login refused proves none was sent.
      for (const tls of [{ tlsVerify: false, tlsFingerprint: '' }, { tlsVerify: false }, { tlsVerify: true, tlsFingerprint: 'AB'.repeat(32) }]) {
        const off: { body: { ok: boolean; message: string } } = await helper.request().post('/upsorch-vsphere/test').send({ id: 'vc', url: peer.url, timeout: 5, username: 'admin', password: '__PWRD__', ...tls }).expect(200);
        assert.equal(off.body.ok, false, `${JSON.stringify(tls)}: ${JSON.stringify(off.body)}`);
        if (tls.tlsVerify === false) assert.match(off.body.message, /refused the login of "admin"/);
      }
      // The same peer and checks, written differently (no scheme, default path, pin in lower case with colons), is the deployed one.
      const sameSpelledOtherwise = await helper.request().post('/upsorch-vsphere/test').send({ id: 'vc', url: peer.url.replace(/^https:\/\//, '').replace(/\/sdk$/, ''), tlsVerify: 'true', tlsFingerprint: fp.toLowerCase().match(/../g)!.join(':'), timeout: 5, username: 'admin', password: '__PWRD__' }).expect(200);
      assert.equal(sameSpelledOtherwise.body.ok, true, JSON.stringify(sameSpelledOtherwise.body));

      const l = await helper.request().post('/upsorch-vsphere-action/targets').send({ connection: 'vc', kind: 'vm' }).expect(200);
      assert.equal(l.body.ok, true, JSON.stringify(l.body));
      assert.deepEqual(l.body.targets.map((x: any) => x.name), ['db-1', 'hang-legacy', 'notools-app', 'web-1']);
      const h = await helper.request().post('/upsorch-vsphere-action/targets').send({ connection: 'vc', kind: 'host' }).expect(200);
      assert.deepEqual(h.body.targets.map((x: any) => x.name), ['DC0_C0_H0', 'DC0_C0_H1', 'DC0_C0_H2', 'DC0_H0']);
      assert.ok(!JSON.stringify(l.body).includes('secret'));
    });
  });

  describe('standalone ESXi', () => {
    it('shuts a VM down and the host after maintenance mode, with ids read from the service content', async () => {
      peer = await VcsimPeer.start({ esx: true, password: 'esxpass', args: ['-vm', '2', '-guest-shutdown-delay', '500ms'] });
      const s = await session(peer);
      try {
        const sc = await s.serviceContent();
        assert.equal(sc.about.apiType, 'HostAgent');
        assert.equal(sc.rootFolder.value, 'ha-folder-root');
        const vms = new VsphereDriver(s, { kind: 'vm' });
        const r = await runAction(vms, { selection: { allRunning: true }, options: { operation: 'shutdown', timeoutMs: 10_000, force: true }, dryRun: false, concurrency: 2, connectTimeoutMs: 10_000, signal: new AbortController().signal });
        await vms.close();
        assert.equal(r.ok, true, JSON.stringify(r));
        assert.deepEqual(r.results.map((x) => x.method), ['graceful', 'graceful']);
        const hosts = new VsphereDriver(s, { kind: 'host' });
        const h = await runAction(hosts, { selection: { patterns: ['*'] }, options: { operation: 'host-shutdown', timeoutMs: 10_000, force: false, extra: { maintenanceFirst: true } }, dryRun: false, concurrency: 1, connectTimeoutMs: 10_000, signal: new AbortController().signal });
        await hosts.close();
        assert.equal(h.ok, true, JSON.stringify(h));
        // The host serves the API: it stops answering once it accepted the shutdown.
        assert.equal(h.results[0].method, 'graceful');
        assert.equal(h.results[0].detail, 'entered maintenance mode, shutting down: the server stopped answering after accepting it');
        await assert.rejects(listAll(s), (e: unknown) => e instanceof ConnectError);
      } finally {
        await s.close();
      }
    });

    it('a free-licence ESXi fails Test connection with the read-only licence, and its dry-run says so', async () => {
      peer = await VcsimPeer.start({ esx: true, args: ['-vm', '1', '-free-license'] });
      const fp = await peer.fingerprint();
      const t = await testVsphere({ url: peer.url, username: 'root', password: 'secret', tls: { fingerprint: fp }, timeoutMs: 5000 });
      assert.equal(t.ok, false);
      assert.match(t.message, /^this ESXi host runs the free vSphere Hypervisor licence \(VMware vSphere 7 Hypervisor\): its API is read-only/);
      assert.deepEqual(t.licences, ['VMware vSphere 7 Hypervisor']);

      await load({ peer, action: { names: [], allRunning: true } });
      const dry = await request({ topic: 'dry-run' });
      assert.equal(dry.ok, false);
      assert.match(dry.results[0].error, /free vSphere Hypervisor licence/);
      // A real run fails with the server's RestrictedVersion fault, in words.
      const run = await request({ topic: 'shutdown' });
      assert.equal(run.ok, false);
      assert.match(run.results[0].error, /the licence of this ESXi host makes its API read-only/);
    });
  });
});
