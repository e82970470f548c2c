/**
 * The example flows "15 vSphere cluster" and "16 Proxmox homelab", imported as a user would and
 * pointed at the test peers (vcsim, the Proxmox fake): a dry-run through the plan, then a real
 * shutdown run, checked on the peers. The UPS side is left out (the run is started at the first
 * phase, as the example's inject does).
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { VcsimPeer, buildVcsim } from './peers/vcsim';
import { PveFake } from './fakes/pve-server';
import { freePort } from './peers/proc';
import { Collector, helper, hypervisorNodes, sshNodes } from './util/red';
import { VsphereSession } from '../lib/vsphere/session';
import { listAll } from '../lib/vsphere/driver';

const planNodes = [require('../nodes/upsorch-plan'), require('../nodes/upsorch-phase')];

function example(file: string): any[] {
  return JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'examples', file), 'utf8'));
}

/** The example's plan part: phases and actions; debug nodes become helpers; no UPS, threshold or injects. */
function planPart(flow: any[], stateDir: string, patch: (n: any) => void): any[] {
  const out = flow.filter((n) => !['inject', 'upsorch-ups-in', 'upsorch-threshold', 'upsorch-device', 'tab'].includes(n.type)).map((n) => ({ ...n }));
  for (const n of out) {
    delete n.z;
    delete n.x; // a node with a position but no tab is not started outside the editor
    delete n.y;
    if (n.type === 'debug') Object.assign(n, { type: 'helper' });
    if (n.type === 'upsorch-plan') n.stateDir = stateDir;
    patch(n);
  }
  return out;
}

async function run(phaseId: string, reportNode: string, topic: string, ms = 60_000): Promise<any> {
  const out = new Collector(reportNode);
  helper.getNode(phaseId).receive({ topic });
  return (await out.waitFor((m) => m.topic === 'run-report', ms, 0, 'the run report')).msg.payload;
}

describe('example flows with hypervisor actions', function () {
  this.timeout(120_000);
  let dir: string;

  before(async function () {
    this.timeout(420_000);
    await buildVcsim();
  });
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-examples-'));
  });
  afterEach(async () => {
    await helper.unload();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('"vSphere cluster": dry-run, then apps, databases, the hosts, and last the host running vCenter go down in that order', async () => {
    // The vCenter appliance runs on DC0_C0_H0 and serves the API: while it is off, nothing answers
    // (for 3 s here, so the test can read the end state afterwards).
    const peer = await VcsimPeer.start({
      args: [
        '-guest-shutdown-delay', '500ms',
        '-folder', 'apps=DC0_H0_VM0+DC0_C0_RP0_VM0;databases=DC0_H0_VM1+vcenter-appliance',
        '-rename', 'DC0_C0_RP0_VM1=vcenter-appliance',
        '-place', 'vcenter-appliance=DC0_C0_H0',
        '-api-vm', 'vcenter-appliance',
        '-api-down-for', '3s',
      ],
    });
    try {
      const fp = await peer.fingerprint();
      const flow = planPart(example('15 vSphere cluster.json'), dir, (n) => {
        if (n.type === 'upsorch-vsphere') Object.assign(n, { url: peer.url, tlsFingerprint: fp, timeout: 5 });
        if (n.type === 'upsorch-vsphere-action') Object.assign(n, { timeout: 10, poll: 0.3 });
        // The example's placeholder for the host running vCenter.
        if (n.type === 'upsorch-vsphere-action' && n.kind === 'host') {
          n.names = n.names.map((x: string) => (x === 'esx01.lan' ? 'DC0_C0_H0' : x));
          n.exclude = n.exclude.map((x: string) => (x === 'esx01.lan' ? 'DC0_C0_H0' : x));
        }
      });
      const conn = flow.find((n) => n.type === 'upsorch-vsphere');
      const first = flow.find((n) => n.type === 'upsorch-phase' && n.name === 'application VMs');
      const report = flow.find((n) => n.name === 'run report');
      await helper.load([...hypervisorNodes, ...planNodes], flow, { [conn.id]: { username: 'admin', password: 'secret' } });

      const dry = await run(first.id, report.id, 'dry-run');
      assert.equal(dry.state, 'done', JSON.stringify(dry.phases));
      assert.deepEqual(dry.phases.map((p: any) => p.name), ['application VMs', 'databases', 'ESXi hosts', 'vCenter host']);
      const dryTargets = dry.phases.flatMap((p: any) => p.actions.flatMap((a: any) => a.results.map((r: any) => r.target).sort()));
      // The vCenter appliance is in "databases" but excluded by name; its host goes last.
      assert.deepEqual(dryTargets, ['DC0_C0_RP0_VM0', 'DC0_H0_VM0', 'DC0_H0_VM1', 'DC0_C0_H1', 'DC0_C0_H2', 'DC0_H0', 'DC0_C0_H0']);
      assert.equal(dry.phases[3].actions[0].results[0].detail, 'would shut the host down (forced, VMs still running are powered off)');

      const real = await run(first.id, report.id, 'shutdown');
      assert.equal(real.state, 'done', JSON.stringify(real.phases, null, 1));
      assert.equal(real.totals.failed, 0);
      const hosts = real.phases[2].actions[0].results;
      assert.deepEqual(hosts.map((r: any) => [r.target, r.method, r.detail]).sort(), [
        ['DC0_C0_H1', 'graceful', 'entered maintenance mode, shut down'],
        ['DC0_C0_H2', 'graceful', 'entered maintenance mode, shut down'],
        ['DC0_H0', 'graceful', 'entered maintenance mode, shut down'],
      ]);
      const last = real.phases[3].actions[0].results;
      assert.deepEqual(last.map((r: any) => [r.target, r.method, r.detail]), [
        ['DC0_C0_H0', 'forced', 'shutting down (forced, not in maintenance mode): the server stopped answering after accepting it'],
      ]);
      const s = new VsphereSession({ url: peer.url, username: 'admin', password: 'secret', tls: { fingerprint: fp }, timeoutMs: 5000 });
      try {
        for (let i = 0; i < 100; i++) {
          if (await listAll(s).then(() => true, () => false)) break;
          await new Promise((r) => setTimeout(r, 100)); // vCenter "comes back" after 3 s here
        }
        const all = await listAll(s);
        const power = Object.fromEntries([...all.vms, ...all.hosts].map((t) => [t.name, t.power]));
        assert.deepEqual(power, { DC0_C0_RP0_VM0: 'off', DC0_H0_VM0: 'off', DC0_H0_VM1: 'off', 'vcenter-appliance': 'off', DC0_C0_H0: 'off', DC0_C0_H1: 'off', DC0_C0_H2: 'off', DC0_H0: 'off' });
      } finally {
        await s.close();
      }
    } finally {
      await helper.unload();
      await peer.stop();
    }
  });

  it('"Proxmox homelab": guests (HA ones through their HA state), then the NAS, then the node', async () => {
    const fake = await PveFake.start({
      nodes: ['pve'],
      apiNode: 'pve',
      guests: [
        { vmid: 100, type: 'qemu', node: 'pve', name: 'home-assistant', status: 'running', ha: true, shutdownMs: 300 },
        { vmid: 101, type: 'lxc', node: 'pve', name: 'pihole', status: 'running' },
        { vmid: 102, type: 'qemu', node: 'pve', name: 'old-win', status: 'stopped' },
      ],
      tokens: [{ id: 'root@pam!upsorch', secret: 'sekret-token-value', privileges: ['*'] }],
    });
    const sshPort = await freePort(); // nothing listens: the NAS step fails fast, the run goes on
    try {
      const flow = planPart(example('16 Proxmox homelab.json'), dir, (n) => {
        if (n.type === 'upsorch-proxmox') Object.assign(n, { host: '127.0.0.1', port: fake.port, tlsFingerprint: fake.fingerprint, timeout: 5 });
        if (n.type === 'upsorch-proxmox-action') Object.assign(n, { timeout: 10, poll: 0.2 });
        if (n.type === 'upsorch-ssh-host') Object.assign(n, { host: '127.0.0.1', port: sshPort, timeout: 3 });
      });
      const conn = flow.find((n) => n.type === 'upsorch-proxmox');
      const ssh = flow.find((n) => n.type === 'upsorch-ssh-host');
      const first = flow.find((n) => n.type === 'upsorch-phase' && n.name === 'guests');
      const report = flow.find((n) => n.name === 'run report');
      await helper.load([...hypervisorNodes, ...sshNodes, ...planNodes], flow, { [conn.id]: { secret: 'sekret-token-value' }, [ssh.id]: { password: 'x' } });

      const dry = await run(first.id, report.id, 'dry-run');
      assert.deepEqual(dry.phases.map((p: any) => p.name), ['guests', 'NAS', 'Proxmox node']);
      const guests = dry.phases[0].actions[0].results;
      assert.deepEqual(guests.map((r: any) => [r.target, r.detail]), [
        ['home-assistant', 'HA-managed: would set the HA state to stopped and watch the guest for up to 10 s, then stop it'],
        ['pihole', 'would shut down, wait up to 10 s, then stop it'],
      ]);
      assert.equal(fake.guest(100).status, 'running');

      const real = await run(first.id, report.id, 'shutdown');
      const byPhase = Object.fromEntries(real.phases.map((p: any) => [p.name, p]));
      assert.equal(byPhase.guests.state, 'done', JSON.stringify(byPhase.guests));
      assert.equal(byPhase.NAS.state, 'failed');
      assert.equal(byPhase['Proxmox node'].state, 'done', JSON.stringify(byPhase['Proxmox node']));
      assert.equal(fake.haResources.get('vm:100')?.state, 'stopped');
      assert.equal(fake.guest(101).status, 'stopped');
      assert.equal(fake.nodes.get('pve')?.status, 'offline');
    } finally {
      await helper.unload();
      await fake.stop();
    }
  });
});
