/**
 * Proxmox VE actions against the schema-driven fake (test/fakes/pve-server.ts: HTTPS, API-token
 * auth, every request checked against the official API schema, tasks that take time and fail the
 * way Proxmox's do, HA-managed guests), in the Node-RED runtime and through the library.
 *
 * Cluster used here: nodes pve1 (serves the API) and pve2.
 *   100 web    qemu pve1 running, tags prod;web, pool prod, guest agent
 *   101 dns    lxc  pve1 running, tag infra
 *   102 legacy qemu pve1 running, ignores shutdown requests
 *   103 ha-db  qemu pve2 running, HA-managed
 *   104 backup lxc  pve2 stopped, start at boot
 *   105 win    qemu pve2 running
 *   900 tmpl   qemu pve2 template (never a target)
 */
import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import { FakeGuest, PveFake } from './fakes/pve-server';
import { Collector, helper, sleep, statuses, waitForStatus } from './util/red';
import { ProxmoxClient } from '../lib/proxmox/client';
import { ProxmoxDriver } from '../lib/proxmox/driver';
import { testProxmox } from '../lib/proxmox/config';
import { runAction } from '../lib/actions/run';

const proxmoxNodes = [require('../nodes/upsorch-proxmox'), require('../nodes/upsorch-proxmox-action')];

const TOKEN = { id: 'root@pam!upsorch', secret: '5b7e9f1c-3a41-4d2b-9b8e-0c6f2d1a7e55', privileges: ['*'] };
const READONLY = { id: 'monitor@pve!ro', secret: 'c0ffee00-1111-2222-3333-444455556666', privileges: ['VM.Audit', 'Sys.Audit'] };

function guests(): FakeGuest[] {
  return [
    { vmid: 100, type: 'qemu', node: 'pve1', name: 'web', status: 'running', tags: ['prod', 'web'], pool: 'prod', agent: true, shutdownMs: 400 },
    { vmid: 101, type: 'lxc', node: 'pve1', name: 'dns', status: 'running', tags: ['infra'], shutdownMs: 300 },
    { vmid: 102, type: 'qemu', node: 'pve1', name: 'legacy', status: 'running', ignoresShutdown: true },
    { vmid: 103, type: 'qemu', node: 'pve2', name: 'ha-db', status: 'running', ha: true, shutdownMs: 500 },
    { vmid: 104, type: 'lxc', node: 'pve2', name: 'backup', status: 'stopped', onboot: true },
    { vmid: 105, type: 'qemu', node: 'pve2', name: 'win', status: 'running', shutdownMs: 300 },
    { vmid: 900, type: 'qemu', node: 'pve2', name: 'tmpl', status: 'stopped', template: true },
  ];
}

function startFake(): Promise<PveFake> {
  return PveFake.start({ nodes: ['pve1', 'pve2'], apiNode: 'pve1', guests: guests(), tokens: [TOKEN, READONLY] });
}

async function load(fake: Pick<PveFake, 'port' | 'fingerprint'>, action: Record<string, unknown>, conn: Record<string, unknown> = {}, token = TOKEN): Promise<void> {
  await helper.load(
    proxmoxNodes,
    [
      { id: 'pve', type: 'upsorch-proxmox', name: 'homelab', host: '127.0.0.1', port: fake.port, tokenId: token.id, tlsVerify: true, tlsFingerprint: fake.fingerprint, timeout: 5, ...conn },
      {
        id: 'act', type: 'upsorch-proxmox-action', name: '', connection: 'pve', kind: 'guest', shutdownOp: 'shutdown', startupOp: 'start',
        names: [], patterns: [], tags: [], exclude: [], allRunning: false, timeout: 10, force: true, haStopFirst: false, startAllForce: false,
        concurrency: 4, connectTimeout: 15, poll: 0.2, wires: [['out']], ...action,
      },
      { id: 'out', type: 'helper' },
    ],
    { pve: { secret: token.secret } },
  );
}

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

function client(fake: PveFake, over: Partial<ConstructorParameters<typeof ProxmoxClient>[0]> = {}): ProxmoxClient {
  return new ProxmoxClient({ host: '127.0.0.1', port: fake.port, tokenId: TOKEN.id, secret: TOKEN.secret, tls: { fingerprint: fake.fingerprint }, timeoutMs: 5000, ...over });
}

describe('Proxmox VE actions against the schema-checked fake API', function () {
  this.timeout(60_000);
  let fake: PveFake;

  beforeEach(async () => {
    fake = await startFake();
  });
  afterEach(async () => {
    await helper.unload();
    await fake.stop();
  });

  describe('guests', () => {
    it('shuts a qemu VM and an lxc container down, polling each task on its node', async () => {
      await load(fake, { names: ['web', '101'] });
      const report = await request({ topic: 'shutdown' });
      assert.equal(report.ok, true, JSON.stringify(report));
      const r = byName(report);
      assert.equal(r.web.method, 'graceful');
      assert.equal(r.web.id, '100');
      assert.match(r.web.detail, /^shut down after \d/);
      assert.equal(r.dns.method, 'graceful');
      assert.equal(fake.guest(100).status, 'stopped');
      assert.equal(fake.guest(101).status, 'stopped');
      // What went over the wire: shutdown with our timeout, then the task status on the UPID's node.
      const post = fake.requests.find((q) => q.method === 'POST' && q.path === '/api2/json/nodes/pve1/qemu/100/status/shutdown')!;
      assert.deepEqual(post.params, { timeout: '10', forceStop: '0', node: 'pve1', vmid: '100' });
      const polls = fake.requests.filter((q) => q.path.startsWith('/api2/json/nodes/pve1/tasks/UPID%3Apve1%3A') || q.path.startsWith('/api2/json/nodes/pve1/tasks/UPID:pve1:'));
      assert.ok(polls.length >= 2, `task polls: ${polls.length}`);
      assert.ok(fake.requests.every((q) => q.status === 200), JSON.stringify(fake.requests.filter((q) => q.status !== 200)));
      assert.equal(statuses('act').pop()?.fill, 'green');
    });

    it('stops a guest whose shutdown task times out (forceStop), or fails when forcing is disabled', async () => {
      await load(fake, { names: ['legacy'], timeout: 2, force: false });
      const refused = await request({ topic: 'shutdown' });
      assert.equal(refused.ok, false);
      assert.equal(byName(refused).legacy.error, 'legacy: shutdown failed (VM quit/powerdown failed - got timeout) and forcing is disabled');
      assert.equal(fake.guest(102).status, 'running');
      await helper.unload();

      await load(fake, { names: ['legacy'], timeout: 2, force: true });
      const report = await request({ topic: 'shutdown' });
      const r = byName(report).legacy;
      assert.equal(report.ok, true, JSON.stringify(report));
      assert.equal(r.method, 'forced');
      assert.equal(r.detail, 'shutdown failed (VM quit/powerdown failed - got timeout): stopped');
      assert.ok(r.ms >= 2000);
      assert.equal(fake.guest(102).status, 'stopped');
      assert.ok(fake.requests.some((q) => q.method === 'POST' && q.path.endsWith('/qemu/102/status/stop')));
    });

    it('HA-managed guest: watches the guest (not the hastop task), and can set the HA state to stopped first', async () => {
      await load(fake, { names: ['ha-db'] });
      const report = await request({ topic: 'shutdown' });
      const r = byName(report)['ha-db'];
      assert.equal(report.ok, true, JSON.stringify(report));
      assert.equal(r.method, 'graceful');
      assert.match(r.detail, /^HA shutdown: off after/);
      assert.ok(r.ms >= 450, `the HA manager needs ~0.5 s, took ${r.ms}`);
      assert.equal(fake.guest(103).status, 'stopped');
      const after = fake.requests.findIndex((q) => q.method === 'POST' && q.path.endsWith('/qemu/103/status/shutdown'));
      assert.ok(fake.requests.slice(after).filter((q) => q.path.endsWith('/qemu/103/status/current')).length >= 2);

      const start = await request({ topic: 'startup' });
      assert.equal(byName(start)['ha-db'].detail.endsWith('(HA)'), true, JSON.stringify(start));
      assert.equal(fake.guest(103).status, 'running');
      await helper.unload();

      await load(fake, { names: ['ha-db'], haStopFirst: true });
      const viaHa = byName(await request({ topic: 'shutdown' }))['ha-db'];
      assert.equal(viaHa.ok, true, JSON.stringify(viaHa));
      assert.match(viaHa.detail, /^HA state set to stopped: off after/);
      const put = fake.requests.find((q) => q.method === 'PUT')!;
      assert.equal(put.path, '/api2/json/cluster/ha/resources/vm%3A103');
      assert.deepEqual(put.params, { state: 'stopped', sid: 'vm:103' });
      assert.equal(fake.haResources.get('vm:103')?.state, 'stopped');
    });

    it('suspends a VM to disk and resumes it on startup; containers cannot be suspended', async () => {
      await load(fake, { names: ['web', 'dns'], shutdownOp: 'suspend' });
      const report = await request({ topic: 'shutdown' });
      const r = byName(report);
      assert.equal(r.web.method, 'graceful');
      assert.equal(r.web.after, 'suspended');
      assert.equal(fake.guest(100).lock, 'suspended');
      assert.equal(r.dns.ok, false);
      assert.equal(r.dns.error, 'dns is a container: only qemu VMs can be suspended');
      const up = byName(await request({ topic: 'startup' }));
      assert.equal(up.web.before, 'suspended');
      assert.match(up.web.detail, /^resumed after/);
      assert.equal(up.dns.method, 'already');
      assert.equal(fake.guest(100).status, 'running');
    });

    it('selects by Proxmox tag, pool and node, all running, minus exclusions; templates never', async () => {
      await load(fake, { tags: ['pool:prod', 'infra'] });
      assert.deepEqual((await request({ topic: 'dry-run' })).results.map((r: any) => r.target), ['web', 'dns']);
      await helper.unload();
      await load(fake, { allRunning: true, tags: [], exclude: ['legacy', '/^ha-/'] });
      const dry = await request({ topic: 'dry-run' });
      assert.deepEqual(dry.results.map((r: any) => r.target), ['web', 'dns', 'win']);
      assert.equal(byName(dry).web.detail, 'would shut down through the guest agent, wait up to 10 s, then stop it');
      const status: any[] = await request({ topic: 'status', targets: { tags: ['node:pve2'] } });
      assert.deepEqual(status.map((t) => [t.name, t.power]), [['ha-db', 'on'], ['backup', 'off'], ['win', 'on']]);
      assert.deepEqual(status[0].tags, ['node:pve2', 'type:qemu', 'ha']);
      // The dry-run changed nothing.
      assert.ok(fake.requests.every((q) => q.method === 'GET'));
    });
  });

  describe('nodes', () => {
    it('stopall on a node stops its guests (HA-managed ones are left to HA); startall starts the "start at boot" ones', async () => {
      await load(fake, { kind: 'node', names: ['pve2'], shutdownOp: 'shutdown', timeout: 5 });
      const report = await request({ topic: 'shutdown' });
      assert.equal(report.ok, true, JSON.stringify(report));
      assert.match(byName(report).pve2.detail, /^stopall done after/);
      assert.equal(fake.guest(105).status, 'stopped');
      assert.equal(fake.guest(103).status, 'running', 'stopall without vms skips HA-managed guests');
      const post = fake.requests.find((q) => q.path.endsWith('/nodes/pve2/stopall'))!;
      assert.deepEqual(post.params, { timeout: '5', 'force-stop': '1', node: 'pve2' });

      const up = await request({ topic: 'startup' });
      assert.equal(up.ok, true, JSON.stringify(up));
      assert.equal(fake.guest(104).status, 'running', 'backup has start at boot');
      assert.equal(fake.guest(105).status, 'stopped', 'win has not');
    });

    it('a node action allows stopall time for every guest last seen on the node, one after the other', async () => {
      const many: FakeGuest[] = Array.from({ length: 20 }, (_, i) => ({ vmid: 200 + i, type: 'lxc' as const, node: 'big', name: `ct-${i}`, status: 'running' as const, shutdownMs: 50 }));
      const big = await PveFake.start({ nodes: ['pve1', 'big'], apiNode: 'pve1', guests: many, tokens: [TOKEN] });
      try {
        await load(big, { kind: 'node', names: ['big'], shutdownOp: 'shutdown', timeout: 5 });
        const action = (helper.getNode('act') as any).upsorchAction;
        const before = action.budgetMs();
        await request({ topic: 'status' });
        const after = action.budgetMs();
        // 20 guests × (5 s + 60 s for the hard stop) at least; before any listing 8 are assumed.
        assert.ok(after >= 20 * 65_000, `budget after listing ${after} ms`);
        assert.ok(before < after && before >= 8 * 65_000, `budget before listing ${before} ms`);
        const report = await request({ topic: 'shutdown' });
        assert.equal(report.ok, true, JSON.stringify(report));
        assert.ok(many.every((g) => big.guest(g.vmid).status === 'stopped'));
      } finally {
        await helper.unload();
        await big.stop();
      }
    });

    it('shuts a node down and sees it go offline; the node serving the API going away also counts', async () => {
      await load(fake, { kind: 'node', names: ['pve2'], shutdownOp: 'host-shutdown', timeout: 10 });
      const report = await request({ topic: 'shutdown' });
      assert.equal(report.ok, true, JSON.stringify(report));
      assert.match(byName(report).pve2.detail, /^node shut down: offline after/);
      assert.equal(byName(await request({ topic: 'shutdown' })).pve2.method, 'already');
      const last = await request({ topic: 'shutdown', targets: { names: ['pve1'] } });
      assert.equal(last.ok, true, JSON.stringify(last));
      assert.match(byName(last).pve1.detail, /^node shutting down: the API stopped answering after/);
      assert.equal(fake.nodes.get('pve2')?.status, 'offline');
      const post = fake.requests.find((q) => q.path.endsWith('/nodes/pve2/status') && q.method === 'POST')!;
      assert.deepEqual(post.params, { command: 'shutdown', node: 'pve2' });
    });
  });

  describe('errors', () => {
    it('a token without VM.PowerMgmt: the dry-run and the run both name the missing privilege', async () => {
      await load(fake, { names: ['web'] }, {}, READONLY);
      const dry = await request({ topic: 'dry-run' });
      assert.equal(byName(dry).web.error, 'the API token monitor@pve!ro lacks VM.PowerMgmt on /vms/100');
      const run = await request({ topic: 'shutdown' });
      assert.equal(run.ok, false);
      assert.equal(byName(run).web.error, 'the API token monitor@pve!ro lacks the privilege VM.PowerMgmt on /vms/100 (Permission check failed (/vms/100, VM.PowerMgmt))');
      assert.equal(fake.guest(100).status, 'running');
      assert.equal(statuses('act').pop()?.fill, 'red');
    });

    it('a wrong token secret is a 401 in words; the secret never appears in the report', async () => {
      await load(fake, { names: ['web'] }, {}, { ...TOKEN, secret: 'wrong-secret-0000' });
      const run = await request({ topic: 'shutdown' });
      assert.equal(run.ok, false);
      assert.equal(run.error, 'Proxmox refused the API token root@pam!upsorch (authentication failure): check the token id and secret, and that the token is not expired');
      assert.ok(!JSON.stringify(run).includes('wrong-secret-0000'));
    });

    it('a server error (500) comes through with its message', async () => {
      const c = client(fake);
      try {
        await assert.rejects(c.request('POST', '/nodes/pve2/lxc/104/status/stop'), (e: any) => e.status === 500 && e.message === 'Proxmox: CT 104 not running (HTTP 500, POST /nodes/pve2/lxc/104/status/stop)');
      } finally {
        c.close();
      }
    });

    it('an unreachable host and a certificate that does not match the pin give clear errors', async () => {
      const closed = await new Promise<number>((res) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
          const p = (s.address() as net.AddressInfo).port;
          s.close(() => res(p));
        });
      });
      const down = await testProxmox({ host: '127.0.0.1', port: closed, tokenId: TOKEN.id, secret: TOKEN.secret, tls: { verify: true }, timeoutMs: 3000 });
      assert.equal(down.message, `connection refused by 127.0.0.1:${closed} (service not running, or wrong port?)`);

      const wrong = fake.fingerprint.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'));
      await load(fake, { names: ['web'] }, { tlsFingerprint: wrong });
      const run = await request({ topic: 'shutdown' });
      assert.match(run.error, /^certificate fingerprint mismatch at 127\.0\.0\.1:\d+: the server presented SHA-256/);
      assert.equal(fake.requests.length, 0, 'nothing was sent to the impostor');

      const unpinned = await testProxmox({ host: '127.0.0.1', port: fake.port, tokenId: TOKEN.id, secret: TOKEN.secret, tls: { verify: true }, timeoutMs: 3000 });
      assert.match(unpinned.message, /is not trusted \(.*\); if it is the server's own self-signed certificate, pin its SHA-256 fingerprint/);
      assert.equal(fake.requests.length, 0);
    });

    it('a server that stops answering times out the request', async () => {
      fake.delayMs = 10_000;
      const c = client(fake, { timeoutMs: 800 });
      try {
        const t0 = Date.now();
        await assert.rejects(c.request('GET', '/version'), /did not answer GET \/api2\/json\/version within 0\.8 s/);
        assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);
      } finally {
        c.close();
      }
    });
  });

  describe('startup after an outage: waits for the Proxmox API and the cluster', () => {
    /** A loopback port with nothing listening (for now). */
    const closedPort = () =>
      new Promise<number>((res) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
          const p = (s.address() as net.AddressInfo).port;
          s.close(() => res(p));
        });
      });
    const stoppedGuests = () => guests().map((g) => (g.vmid === 100 || g.vmid === 105 ? { ...g, status: 'stopped' as const } : g));

    it('the API is not up yet (connection refused): the startup waits, says so, and starts the guests once it answers', async () => {
      const port = await closedPort();
      const cert = PveFake.certificate();
      await load({ port, fingerprint: cert.fingerprint }, { names: ['web', 'win'] });
      const out = new Collector('out');
      const from = out.received.length;
      helper.getNode('act').receive({ topic: 'startup' });
      await waitForStatus('act', (st) => st.fill === 'yellow' && /^start: waiting for homelab to come back… \d+ s$/.test(st.text ?? ''), 10_000);
      await sleep(3000);
      const late = await PveFake.start({ nodes: ['pve1', 'pve2'], apiNode: 'pve1', guests: stoppedGuests(), tokens: [TOKEN], cert, port });
      try {
        const report = (await out.waitFor((m) => m.topic === 'action-report', 30_000, from, 'the action report')).msg.payload;
        assert.equal(report.ok, true, JSON.stringify(report));
        assert.equal(report.operation, 'start');
        const r = byName(report);
        for (const [name, vmid] of [['web', 100], ['win', 105]] as const) {
          assert.equal(r[name].method, 'graceful');
          assert.match(r[name].detail, /^started after [0-9.]+ m?s \(after waiting [0-9.]+ s for homelab to come back\)$/);
          assert.equal(late.guest(vmid).status, 'running');
        }
        await waitForStatus('act', (st) => st.fill === 'green');
      } finally {
        await late.stop();
      }
    });

    it('the guest\'s node is not back in the cluster yet (595), then the cluster has no quorum (500): the startup waits through both', async () => {
      fake.guest(105).status = 'stopped';
      fake.nodes.get('pve2')!.status = 'offline';
      fake.quorate = false;
      await load(fake, { names: ['win'] });
      const out = new Collector('out');
      const from = out.received.length;
      helper.getNode('act').receive({ topic: 'startup' });
      await waitForStatus('act', (st) => st.fill === 'yellow' && /waiting for homelab to come back/.test(st.text ?? ''), 10_000);
      assert.ok(fake.requests.some((q) => q.path === '/api2/json/nodes/pve2/qemu/105/status/current' && q.status === 595));
      fake.nodes.get('pve2')!.status = 'online';
      // Up, but without quorum: the start itself is refused until the other nodes are back.
      const refused = () => fake.requests.some((q) => q.path === '/api2/json/nodes/pve2/qemu/105/status/start' && q.status === 500);
      for (let i = 0; i < 100 && !refused(); i++) await sleep(100);
      assert.ok(refused(), 'the start was tried while the cluster had no quorum');
      assert.equal(fake.guest(105).status, 'stopped');
      fake.quorate = true;
      const report = (await out.waitFor((m) => m.topic === 'action-report', 30_000, from, 'the action report')).msg.payload;
      assert.equal(report.ok, true, JSON.stringify(report));
      assert.match(byName(report).win.detail, /^started after [0-9.]+ m?s \(after waiting [0-9.]+ s for homelab to come back\)$/);
      assert.equal(fake.guest(105).status, 'running');
    });

    it('a wrong token secret or a missing privilege fails the startup at once: waiting would not fix it', async () => {
      fake.guest(100).status = 'stopped';
      await load(fake, { names: ['web'] }, {}, { ...TOKEN, secret: 'wrong-secret-0000' });
      let t0 = Date.now();
      const denied = await request({ topic: 'startup' });
      assert.ok(Date.now() - t0 < 1900, `failed after ${Date.now() - t0} ms (the first retry would be after 2 s)`);
      assert.equal(denied.ok, false);
      assert.equal(denied.error, 'Proxmox refused the API token root@pam!upsorch (authentication failure): check the token id and secret, and that the token is not expired');
      assert.ok(!statuses('act').some((st) => /waiting/.test(st.text ?? '')), JSON.stringify(statuses('act')));
      assert.equal(fake.requests.filter((q) => q.status === 401).length, 1, 'asked once');
      await helper.unload();

      await load(fake, { names: ['web'] }, {}, READONLY);
      t0 = Date.now();
      const forbidden = await request({ topic: 'startup' });
      assert.ok(Date.now() - t0 < 1900, `failed after ${Date.now() - t0} ms`);
      assert.equal(byName(forbidden).web.error, 'the API token monitor@pve!ro lacks the privilege VM.PowerMgmt on /vms/100 (Permission check failed (/vms/100, VM.PowerMgmt))');
      assert.equal(fake.guest(100).status, 'stopped');
    });

    it('a certificate that does not match the pin fails the startup at once, with nothing sent', async () => {
      const wrong = fake.fingerprint.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'));
      await load(fake, { names: ['web'] }, { tlsFingerprint: wrong });
      const t0 = Date.now();
      const run = await request({ topic: 'startup' });
      assert.ok(Date.now() - t0 < 1900, `failed after ${Date.now() - t0} ms`);
      assert.match(run.error, /^certificate fingerprint mismatch at 127\.0\.0\.1:\d+/);
      assert.equal(fake.requests.length, 0);
    });
  });

  describe('the fake follows the schema', () => {
    it('rejects unknown and mistyped parameters, unknown methods and missing tokens as Proxmox does', async () => {
      const c = client(fake);
      try {
        await assert.rejects(c.request('POST', '/nodes/pve1/qemu/100/status/shutdown', { timeout: 'soon' }), (e: any) => e.status === 400 && /timeout: type check \('integer'\) failed - got 'soon'/.test(e.message));
        await assert.rejects(c.request('POST', '/nodes/pve1/qemu/100/status/shutdown', { force: 1 }), (e: any) => e.status === 400 && e.errors.force === 'property is not defined in schema and the schema does not allow additional properties');
        await assert.rejects(c.request('POST', '/nodes/pve1/status', {}), (e: any) => e.status === 400 && e.errors.command === 'property is missing and it is not optional');
        await assert.rejects(c.request('GET', '/nodes/pve1/qemu/100/config'), (e: any) => e.status === 501);
        const upid = await c.request<string>('POST', '/nodes/pve1/lxc/101/status/stop');
        assert.match(upid, /^UPID:pve1:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:vzstop:101:root@pam!upsorch:$/);
      } finally {
        c.close();
      }
      const anon = new ProxmoxClient({ host: '127.0.0.1', port: fake.port, tokenId: 'nobody@pve!none', secret: 'z', tls: { fingerprint: fake.fingerprint }, timeoutMs: 3000 });
      try {
        await assert.rejects(anon.request('GET', '/version'), (e: any) => e.status === 401);
      } finally {
        anon.close();
      }
    });
  });

  describe('editor', () => {
    it('tests the connection and lists guests and nodes through the admin endpoints, without the secret', async () => {
      await load(fake, { names: ['web'] });
      const t = await helper.request().post('/upsorch-proxmox/test').send({ id: 'pve', host: '127.0.0.1', port: fake.port, tokenId: TOKEN.id, tlsVerify: true, tlsFingerprint: fake.fingerprint, timeout: 5, secret: '__PWRD__' }).expect(200);
      assert.equal(t.body.ok, true, JSON.stringify(t.body));
      assert.equal(t.body.message, 'connected to Proxmox VE 8.4.1 as root@pam!upsorch: 2 nodes, 6 guests');
      const ro = await helper.request().post('/upsorch-proxmox/test').send({ host: '127.0.0.1', port: fake.port, tokenId: READONLY.id, tlsFingerprint: fake.fingerprint, secret: READONLY.secret }).expect(200);
      assert.equal(ro.body.ok, true);
      assert.match(ro.body.warning, /lacks VM.PowerMgmt on \//);

      // The stored secret goes only to the deployed host and port, for the deployed token id.
      const other = await startFake();
      try {
        const elsewhere = await helper.request().post('/upsorch-proxmox/test').send({ id: 'pve', host: '127.0.0.1', port: other.port, tokenId: TOKEN.id, tlsFingerprint: other.fingerprint, timeout: 5, secret: '__PWRD__' }).expect(200);
        assert.equal(elsewhere.body.ok, false, JSON.stringify(elsewhere.body));
        assert.equal(elsewhere.body.message, 'the Proxmox connection has no API token secret');
        // It knows the token too, so a request with the stored secret would have been let in.
        assert.ok(other.requests.every((q) => q.token === null), JSON.stringify(other.requests));
      } finally {
        await other.stop();
      }
      const otherToken = await helper.request().post('/upsorch-proxmox/test').send({ id: 'pve', host: '127.0.0.1', port: fake.port, tokenId: READONLY.id, tlsFingerprint: fake.fingerprint, timeout: 5, secret: '__PWRD__' }).expect(200);
      assert.equal(otherToken.body.ok, false, JSON.stringify(otherToken.body));
      assert.equal(otherToken.body.message, 'the Proxmox connection has no API token secret');

      // Same host and port with the certificate checks switched off (or another pin): whoever
      // answers at that name could be someone else, so the stored secret is not sent.
      const before = fake.requests.length;
      for (const tls of [{ tlsVerify: false, tlsFingerprint: '' }, { tlsVerify: false }, { tlsVerify: true, tlsFingerprint: 'AB'.repeat(32) }]) {
        const off = await helper.request().post('/upsorch-proxmox/test').send({ id: 'pve', host: '127.0.0.1', port: fake.port, tokenId: TOKEN.id, timeout: 5, secret: '__PWRD__', ...tls }).expect(200);
        assert.equal(off.body.ok, false, `${JSON.stringify(tls)}: ${JSON.stringify(off.body)}`);
        assert.equal(off.body.message, 'the Proxmox connection has no API token secret');
      }
      assert.deepEqual(fake.requests.slice(before), [], 'not a request reached the server');
      // The same peer and checks, written differently (host case, pin in lower case with colons), is the deployed one.
      const sameSpelledOtherwise = await helper.request().post('/upsorch-proxmox/test').send({ id: 'pve', host: '127.0.0.1', port: String(fake.port), tokenId: TOKEN.id, tlsVerify: 'true', tlsFingerprint: fake.fingerprint.toLowerCase().match(/../g)!.join(':'), timeout: 5, secret: '__PWRD__' }).expect(200);
      assert.equal(sameSpelledOtherwise.body.ok, true, JSON.stringify(sameSpelledOtherwise.body));
      const g = await helper.request().post('/upsorch-proxmox-action/targets').send({ connection: 'pve', kind: 'guest' }).expect(200);
      assert.deepEqual(g.body.targets.map((x: any) => x.name), ['web', 'dns', 'legacy', 'ha-db', 'backup', 'win']);
      const n = await helper.request().post('/upsorch-proxmox-action/targets').send({ connection: 'pve', kind: 'node' }).expect(200);
      assert.deepEqual(n.body.targets.map((x: any) => x.name), ['pve1', 'pve2']);
      assert.ok(!JSON.stringify([t.body, g.body, n.body]).includes(TOKEN.secret));
    });
  });

  describe('library', () => {
    it('runs through runAction with bounded concurrency and reports every guest once', async () => {
      const c = client(fake);
      try {
        const d = new ProxmoxDriver(c, { kind: 'guest', pollMs: 200 });
        const r = await runAction(d, { selection: { allRunning: true, exclude: ['legacy'] }, options: { operation: 'shutdown', timeoutMs: 5000, force: true }, dryRun: false, concurrency: 2, connectTimeoutMs: 5000, signal: new AbortController().signal });
        assert.equal(r.ok, true, JSON.stringify(r));
        assert.deepEqual(r.results.map((x) => x.target).sort(), ['dns', 'ha-db', 'web', 'win']);
      } finally {
        c.close();
      }
    });
  });
});
