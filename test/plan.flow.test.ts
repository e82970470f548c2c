/**
 * A whole plan in the real Node-RED runtime, against real peers: inject → phase 1 (libvirt: two
 * domains in parallel, through a real sshd to a real libvirtd test driver) → phase 2 (SSH: NAS
 * preset) → phase 3 (SSH: host). What a user sees: the order, the domains' states, the commands that
 * reach the hosts, the run report, dry-run, one run at a time, cancel, a restart mid-run, the
 * mirrored startup, and failures (host key, client key, unreachable host, a hanging command).
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SshdPeer } from './peers/sshd';
import { LibvirtPeer } from './peers/libvirt';
import { NutPeer } from './peers/nut';
import { Collector, helper, ourNodes, sleep, sshNodes, upsCommandNodes } from './util/red';
import { waitUntil } from './peers/proc';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const planNode = require('../nodes/upsorch-plan');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const phaseNode = require('../nodes/upsorch-phase');
const NODES = [...ourNodes, ...sshNodes, planNode, phaseNode];

describe('a plan of phases with real SSH and libvirt actions', function () {
  this.timeout(90_000);
  let sshd: SshdPeer;
  let lv: LibvirtPeer;
  let userDir: string;
  let seq = 0;

  before(async function () {
    this.timeout(60_000);
    [sshd, lv] = await Promise.all([SshdPeer.start(), LibvirtPeer.start()]);
  });
  after(async () => {
    await Promise.all([sshd?.stop(), lv?.stop()]);
  });
  beforeEach(() => {
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-plan-flow-'));
    helper.settings({ userDir });
  });
  afterEach(async () => {
    await helper.unload();
    sshd.clearLogs();
    fs.rmSync(userDir, { recursive: true, force: true });
    helper.settings({ userDir: undefined });
  });

  /** Fresh domains for one test (the libvirtd is shared by the file). */
  async function domains(bases: string[], running = true): Promise<string[]> {
    seq++;
    const names = bases.map((b) => `${b}-p${seq}`);
    for (const n of names) await lv.define(n, running);
    return names;
  }

  const sshHost = (id: string, name: string, over: Record<string, unknown> = {}) => ({ id, type: 'upsorch-ssh-host', name, host: '127.0.0.1', port: sshd.port, username: 'root', fingerprint: sshd.hostKeyFingerprint, timeout: 5, ...over });
  const phase = (id: string, name: string, actions: string[], done: string[], over: Record<string, unknown> = {}) => ({
    id, type: 'upsorch-phase', name, plan: 'plan', mode: 'parallel', stepDelay: 0, wait: true, onFailure: 'continue', timeout: '', pointOfNoReturn: false,
    direction: 'both', gate: false, gateUps: '', gateRuntime: 10, wires: [actions, done], ...over,
  });
  const libvirt = (id: string, names: string[], over: Record<string, unknown> = {}) => ({
    id, type: 'upsorch-libvirt', name: 'VMs', connection: 'ssh', sshHost: 'kvm', uri: lv.uri, names, patterns: [], exclude: [], allRunning: false,
    shutdownOp: 'shutdown', startupOp: 'start', mode: '', timeout: 10, force: true, concurrency: 4, commandTimeout: 10, poll: 0.2, wires: [[]], ...over,
  });
  const ssh = (id: string, name: string, host: string, preset: string, over: Record<string, unknown> = {}) => ({
    id, type: 'upsorch-ssh', name, host, preset, timeout: 10, waitDown: false, waitDownTimeout: 20, startup: 'none', wires: [[]], ...over,
  });

  /** VMs (libvirt, two domains) → NAS (SSH, Synology preset) → host (SSH, Linux poweroff). */
  function homelab(vms: string[], over: { vms?: Record<string, unknown>; nas?: Record<string, unknown>; host?: Record<string, unknown>; phases?: Record<string, Record<string, unknown>>; hosts?: Record<string, Record<string, unknown>> } = {}) {
    return [
      { id: 'plan', type: 'upsorch-plan', name: 'homelab', armed: true, allowRemote: false, stateDir: '' },
      sshHost('kvm', 'kvm1', over.hosts?.kvm),
      sshHost('nas-host', 'nas', over.hosts?.nas),
      sshHost('srv-host', 'server', over.hosts?.srv),
      phase('p1', 'VMs', ['a-vms'], ['p2', 'out1'], over.phases?.p1),
      libvirt('a-vms', vms, over.vms),
      phase('p2', 'NAS', ['a-nas'], ['p3', 'out2'], over.phases?.p2),
      ssh('a-nas', 'NAS', 'nas-host', 'synology', over.nas),
      phase('p3', 'host', ['a-host'], ['out3'], over.phases?.p3),
      ssh('a-host', 'host', 'srv-host', 'linux', over.host),
      { id: 'out1', type: 'helper' },
      { id: 'out2', type: 'helper' },
      { id: 'out3', type: 'helper' },
    ];
  }
  const creds = (hosts: Record<string, string> = {}) => ({ kvm: { privateKey: hosts.kvm ?? sshd.clientKey }, 'nas-host': { privateKey: hosts.nas ?? sshd.clientKey }, 'srv-host': { privateKey: hosts.srv ?? sshd.clientKey } });
  async function load(flow: Record<string, unknown>[], c = creds()) {
    await helper.load(NODES, flow, c);
    return { first: new Collector('out1'), second: new Collector('out2'), last: new Collector('out3') };
  }
  const report = async (c: Collector, from = 0, ms = 60_000) => (await c.waitFor((m) => m.topic === 'run-report', ms, from, 'the run report')).msg.payload;
  const results = (r: any) => Object.fromEntries(r.phases.flatMap((p: any) => p.actions.flatMap((a: any) => a.results)).map((x: any) => [x.target, x]));
  const powerCommands = () => sshd.commands().filter((c) => / (shutdown|destroy|start) --domain |synoshutdown|poweroff/.test(c));

  it('inject → VMs (two domains in parallel) → NAS → host: in order, each phase after the previous reported; domains end shut off', async () => {
    const [a, b] = await domains(['web', 'db']);
    const out = await load(homelab([a, b]));
    helper.getNode('p1').receive({ topic: 'shutdown' });
    const r = await report(out.last);
    assert.equal(r.state, 'done', JSON.stringify(r.phases, null, 1));
    assert.equal(r.direction, 'shutdown');
    assert.deepEqual(r.phases.map((p: any) => [p.name, p.state]), [['VMs', 'done'], ['NAS', 'done'], ['host', 'done']]);
    const [p1, p2, p3] = r.phases;
    assert.ok(p2.startedAt >= p1.endedAt, 'the NAS phase starts after the VMs phase reported');
    assert.ok(p3.startedAt >= p2.endedAt, 'the host phase starts after the NAS phase reported');
    assert.equal(await lv.state(a), 'shut off');
    assert.equal(await lv.state(b), 'shut off');
    const res = results(r);
    assert.deepEqual([res[a].method, res[b].method, res.nas.method, res.server.method], ['graceful', 'graceful', 'graceful', 'graceful']);
    // The commands reached the hosts in the plan's order: both domains, then the NAS, then the host.
    const cmds = powerCommands();
    assert.equal(cmds.length, 4, cmds.join('\n'));
    assert.deepEqual(cmds.slice(0, 2).map((c) => c.replace(/.* --domain /, '')).sort(), [a, b].sort());
    assert.equal(cmds[2], 'synoshutdown -s');
    assert.equal(cmds[3], 'poweroff');
    assert.deepEqual(r.totals, { phases: 3, targets: 4, ok: 4, failed: 0, graceful: 4, forced: 0, already: 0, skipped: 0, dryRun: 0 });
    // The first two phases hand on their records; the last sends the report.
    assert.equal(out.first.messages[0].topic, 'phase-done');
    assert.equal(out.second.messages[0].topic, 'phase-done');
    assert.deepEqual(r.timeline.map((t: any) => t.event).filter((e: string) => e.startsWith('phase-')), ['phase-started', 'phase-done', 'phase-started', 'phase-done', 'phase-started', 'phase-done']);
  });

  it('a domain that ignores shutdown is destroyed after the timeout (forced); one already off is "already"', async () => {
    const [s] = await domains(['stubborn']);
    const [off] = await domains(['old'], false);
    const out = await load(homelab([s, off], { vms: { timeout: 2 } }));
    helper.getNode('p1').receive({ topic: 'shutdown' });
    const r = await report(out.last);
    const res = results(r);
    assert.equal(res[s].method, 'forced');
    assert.equal(res[s].ok, true);
    assert.equal(res[off].method, 'already');
    assert.equal(await lv.state(s), 'shut off');
    assert.ok(!sshd.commands().some((c) => c.endsWith(`--domain ${off}`) && / (shutdown|destroy) /.test(c)), 'nothing sent to the domain already off');
    assert.equal(r.totals.forced, 1);
    assert.equal(r.totals.already, 1);
    // Mains is back: the mirrored startup starts what the shutdown turned off, not the domain
    // that was already off before the outage.
    helper.getNode('p3').receive({ topic: 'restore' });
    const up = await report(out.first);
    assert.equal(up.direction, 'startup');
    assert.equal(await lv.state(s), 'running');
    assert.equal(await lv.state(off), 'shut off', 'a domain that was off before the outage stays off');
    assert.ok(!sshd.commands().some((c) => c.endsWith(`start --domain ${off}`)));
  });

  it('dry-run: every target resolved and reported; nothing changes on libvirtd or the hosts', async () => {
    const [a, b] = await domains(['web', 'db']);
    const out = await load(homelab([a, b]));
    helper.getNode('p1').receive({ topic: 'dry-run' });
    const r = await report(out.last);
    assert.equal(r.dryRun, true);
    assert.equal(r.state, 'done');
    const res = results(r);
    assert.deepEqual(Object.keys(res).sort(), [a, b, 'nas', 'server'].sort());
    for (const x of Object.values(res) as any[]) {
      assert.equal(x.method, 'dry-run');
      assert.equal(x.ok, true, JSON.stringify(x));
      assert.ok(x.detail, 'says what it would do');
    }
    assert.equal(await lv.state(a), 'running');
    assert.equal(await lv.state(b), 'running');
    assert.deepEqual(powerCommands(), [], 'no power command reached any host');
    assert.deepEqual(sshd.fakeCalls(), []);
  });

  it('a second trigger during a run starts nothing; cancel skips the phases not yet started', async () => {
    const [s] = await domains(['stubborn']);
    const out = await load(homelab([s], { vms: { timeout: 3 } }));
    helper.getNode('p1').receive({ topic: 'shutdown' });
    await sshd.waitForCommand((c) => c.endsWith(`shutdown --domain ${s}`));
    helper.getNode('p2').receive({ topic: 'shutdown' }); // any phase of the plan takes the command
    helper.getNode('p1').receive({ topic: 'cancel' });
    const r = await report(out.last);
    assert.equal(r.state, 'cancelled');
    assert.deepEqual(r.phases.map((p: any) => p.state), ['done', 'skipped', 'skipped']);
    assert.match(r.phases[1].note, /^cancelled by /);
    assert.equal(r.timeline.filter((t: any) => t.event === 'run-started').length, 1, 'one run only');
    const warned = helper.getNode('p2').warn.getCalls().map((c: any) => String(c.args[0]));
    assert.ok(warned.some((w: string) => /^shutdown: run [0-9a-f]{8} \(shutdown\) is in progress$/.test(w)), warned.join('\n'));
    assert.ok(!sshd.commands().some((c) => /synoshutdown|poweroff/.test(c)), 'NAS and host were not touched');
    // The action nodes of the phases that never ran say so.
    const own = (id: string) => helper.getNode(id).status.getCalls().filter((c: any) => c.thisValue === helper.getNode(id)).map((c: any) => c.args[0].text ?? '');
    assert.ok(own('a-nas').includes('pending'), own('a-nas').join(' | '));
    // (Not the last status: the startup that follows the cancel shows its own.)
    assert.ok(own('a-nas').some((t: string) => /^skipped: cancelled by /.test(t)), own('a-nas').join(' | '));
    assert.ok(own('a-host').some((t: string) => /^skipped: cancelled by /.test(t)), own('a-host').join(' | '));
  });

  it('Node-RED restarts mid-run: the run resumes where it stopped, and no target is acted on twice', async () => {
    const [a, s] = await domains(['web', 'stubborn']);
    const flow = homelab([a, s], { vms: { timeout: 6 } });
    let out = await load(flow);
    const file = path.join(userDir, 'ups-orchestrator', 'plan-plan.json');
    const onDisk = (): any => {
      try {
        return JSON.parse(fs.readFileSync(file, 'utf8')).run;
      } catch {
        return null; // not written yet
      }
    };
    helper.getNode('p1').receive({ topic: 'shutdown' });
    await sshd.waitForCommand((c) => c.endsWith(`shutdown --domain ${s}`));
    // Stop Node-RED once the run record says web is done and the stubborn domain is still "shutting down".
    await waitUntil(`${a} done in the run record`, 20_000, () => !!onDisk()?.phases[0].actions[0]?.results.some((x: any) => x.target === a));
    await helper.unload();
    const saved = onDisk();
    assert.equal(saved.state, 'running');
    assert.equal(saved.phases[0].state, 'running');
    const vms = saved.phases[0].actions[0];
    assert.deepEqual(vms.results.map((x: any) => [x.target, x.method]), [[a, 'graceful']]);
    assert.ok(vms.started.includes(s), 'the stubborn domain was being acted on when Node-RED stopped');
    assert.equal(await lv.state(s), 'running', 'and it was still running');
    out = await load(flow); // ...and starts again with the same user dir
    const r = await report(out.last);
    assert.equal(r.state, 'done');
    assert.equal(r.resumed.length, 1);
    assert.equal(r.id, saved.id, 'the same run');
    const cmds = powerCommands();
    const count = (re: RegExp) => cmds.filter((c) => re.test(c)).length;
    assert.equal(count(new RegExp(`shutdown --domain ${a}$`)), 1, `${a} was asked to shut down once: ${cmds.join(' | ')}`);
    assert.equal(count(/synoshutdown -s/), 1, 'the NAS once');
    assert.equal(count(/^poweroff$/), 1, 'the host once');
    assert.equal(results(r)[a].method, 'graceful');
    // The interrupted domain: virsh shutdown is harmless to repeat, so the resumed run asks again,
    // waits its timeout once more, and destroys it.
    assert.equal(results(r)[s].method, 'forced', JSON.stringify(results(r)[s]));
    assert.equal(results(r)[s].ok, true);
    assert.equal(count(new RegExp(`shutdown --domain ${s}$`)), 2, `asked before and after the restart: ${cmds.join(' | ')}`);
    assert.equal(count(new RegExp(`destroy --domain ${s}$`)), 1, 'destroyed once, after the restart');
    assert.equal(await lv.state(s), 'shut off');
  });

  it('startup runs the phases in mirrored order and starts the domains', async () => {
    const [a, b] = await domains(['web', 'db'], false);
    const out = await load(homelab([a, b], { nas: { startup: 'command', startupCommand: 'echo nas-up' }, host: { startup: 'command', startupCommand: 'echo host-up' } }));
    helper.getNode('p3').receive({ topic: 'restore' });
    // The report leaves the last phase of this run: the first phase of the chain.
    const r = await report(out.first);
    assert.equal(r.direction, 'startup');
    assert.deepEqual(r.phases.map((p: any) => p.name), ['host', 'NAS', 'VMs']);
    assert.equal(r.state, 'done', JSON.stringify(r.phases, null, 1));
    assert.equal(await lv.state(a), 'running');
    assert.equal(await lv.state(b), 'running');
    const order = sshd.commands().filter((c) => /host-up|nas-up| start --domain /.test(c)).map((c) => (c.includes('host-up') ? 'host' : c.includes('nas-up') ? 'nas' : 'vm'));
    assert.deepEqual(order, ['host', 'nas', 'vm', 'vm']);
  });

  it('power fails again during the startup: the shutdown stops the startup at once and shuts everything down', async () => {
    const [a] = await domains(['web'], false);
    const out = await load(homelab([a], { host: { startup: 'command', startupCommand: 'hang 30', timeout: 20 } }));
    helper.getNode('p3').receive({ topic: 'restore' });
    await sshd.waitForCommand((c) => c.startsWith('hang'));
    await lv.start(a); // someone started the VM by hand meanwhile
    const t0 = Date.now();
    helper.getNode('p1').receive({ topic: 'shutdown', payload: { vector: 'runtime' } });
    const stopped = await report(out.first); // the startup's last phase is the chain's first
    assert.equal(stopped.direction, 'startup');
    assert.equal(stopped.state, 'cancelled');
    assert.equal(stopped.preemptedBy.topic, 'shutdown');
    assert.deepEqual(stopped.phases.map((p: any) => [p.name, p.state]), [['host', 'failed'], ['NAS', 'skipped'], ['VMs', 'skipped']]);
    assert.match(stopped.phases[0].note, /a shutdown \(shutdown, local\) took over/);
    const r = await report(out.last);
    assert.equal(r.direction, 'shutdown');
    assert.equal(r.state, 'done', JSON.stringify(r.phases, null, 1));
    assert.ok(Date.now() - t0 < 30_000, 'the shutdown did not wait for the hanging startup command');
    assert.equal(await lv.state(a), 'shut off');
    const warned = helper.getNode('p1').warn.getCalls().map((c: any) => String(c.args[0]));
    assert.ok(!warned.some((w: string) => /in progress/.test(w)), warned.join('\n'));
    assert.ok(!sshd.commands().some((c) => / start --domain /.test(c)), 'no VM was started');
    assert.ok(sshd.commands().includes('poweroff'), 'the host was shut down');
  });

  it('power fails again while virsh start is on its way: the start lands after the shutdown listed the domain; the shutdown waits for it and shuts it down', async () => {
    const [d] = await domains(['late']);
    // A virsh on this machine's PATH that plays a hypervisor which accepted the start: the start
    // lands 1.5 s later whatever becomes of the virsh call we are waiting on (killed on abort).
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-virsh-'));
    const sent = path.join(bin, 'starts.log');
    fs.writeFileSync(
      path.join(bin, 'virsh'),
      [
        '#!/bin/sh',
        'case "$2" in test*) ;; *) echo "test virsh: test URIs only" >&2; exit 126 ;; esac',
        'if [ "$3" = start ] && [ "$4" = --domain ]; then',
        `  echo "$5" >> '${sent}'`,
        '  ( sleep 1.5; exec /usr/bin/virsh "$@" ) </dev/null >/dev/null 2>&1 &',
        '  exec sleep 8',
        'fi',
        'exec /usr/bin/virsh "$@"',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    const PATH = process.env.PATH;
    process.env.PATH = `${bin}:${PATH}`;
    try {
      const flow = [
        { id: 'plan', type: 'upsorch-plan', name: 'homelab', armed: true, allowRemote: false, stateDir: '' },
        phase('p1', 'VMs', ['a-vms'], ['out1']),
        libvirt('a-vms', [d], { connection: 'local', sshHost: '' }),
        { id: 'out1', type: 'helper' },
      ];
      await helper.load(NODES, flow, {});
      const out = new Collector('out1');
      const runReport = async (direction: string) => (await out.waitFor((m) => m.topic === 'run-report' && m.payload.direction === direction, 60_000, out.messages.length, `the ${direction} report`)).msg.payload;
      let pending = runReport('shutdown');
      helper.getNode('p1').receive({ topic: 'shutdown' });
      assert.equal((await pending).state, 'done');
      assert.equal(await lv.state(d), 'shut off');
      // Mains returns: virsh start is sent…
      const stopped = runReport('startup');
      helper.getNode('p1').receive({ topic: 'restore' });
      await waitUntil('virsh start to be sent', 20_000, () => fs.existsSync(sent) && fs.readFileSync(sent, 'utf8').includes(d));
      assert.equal(await lv.state(d), 'shut off', 'not started yet');
      // …and the power fails again before it has landed.
      pending = runReport('shutdown');
      helper.getNode('p1').receive({ topic: 'shutdown' });
      const s = await stopped;
      assert.equal(s.state, 'cancelled');
      const r = await pending;
      assert.equal(r.state, 'done', JSON.stringify(r.phases, null, 1));
      const res = results(r)[d];
      assert.equal(res.method, 'graceful', JSON.stringify(res));
      assert.match(res.detail, /came up .* into this run: the start the stopped startup had asked for went through/);
      assert.ok(r.timeline.some((t: any) => t.event === 'wait-started' && t.target === d), 'the wait is in the timeline');
      await sleep(2500); // longer than the start takes to land: nothing comes up behind the shutdown
      assert.equal(await lv.state(d), 'shut off', 'the domain stays off');
    } finally {
      process.env.PATH = PATH;
      fs.rmSync(bin, { recursive: true, force: true });
    }
  });

  it('wrong host key, wrong client key, unreachable host, a hanging command: clear errors in bounded time; "continue" goes on, "stop" ends the plan', async () => {
    const [a] = await domains(['web']);
    const t0 = Date.now();
    let out = await load(
      homelab([a], {
        hosts: { kvm: { fingerprint: sshd.otherFingerprint }, srv: { port: 1 } },
        nas: { preset: 'custom', command: 'hang 60', timeout: 2 },
      }),
      creds({ nas: sshd.otherKey }),
    );
    helper.getNode('p1').receive({ topic: 'shutdown' });
    let r = await report(out.last);
    assert.ok(Date.now() - t0 < 40_000, 'bounded');
    assert.equal(r.state, 'failed');
    assert.deepEqual(r.phases.map((p: any) => p.state), ['failed', 'failed', 'failed'], 'each failed, and the plan went on (continue)');
    const res = results(r);
    assert.match(res[a].error, /host key mismatch: expected .*, got /);
    assert.match(res.nas.error, /authentication|rejected|denied/i);
    assert.match(res.server.error, /refused/i);
    assert.equal(await lv.state(a), 'running', 'nothing was done to a host whose key did not match');
    await helper.unload();

    // A hanging command with the right key: a timeout; with "stop", the host phase is skipped.
    out = await load(homelab([a], { nas: { preset: 'custom', command: 'hang 60', timeout: 2 }, phases: { p2: { onFailure: 'stop' } } }));
    const t1 = Date.now();
    helper.getNode('p2').receive({ topic: 'shutdown' });
    r = await report(out.last);
    assert.ok(Date.now() - t1 < 30_000, 'bounded');
    assert.deepEqual(r.phases.map((p: any) => p.state), ['done', 'failed', 'skipped']);
    assert.match(results(r).nas.error, /did not finish within 2 s/);
    assert.match(r.phases[2].note, /NAS failed and is set to stop the plan/);
    assert.ok(!sshd.commands().includes('poweroff'), 'the host was not touched');
  });

  /** Example 06 as shipped, pointed at the test peers the way a user fills in their own hosts. */
  async function loadExample06(nut: NutPeer, names: string[]) {
    const shipped = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'examples', '06 Homelab plan.json'), 'utf8')) as Array<Record<string, any>>;
    const flow = shipped.map((n) => (n.type === 'inject' || n.type === 'debug' ? { id: n.id, z: n.z, type: 'helper', name: n.name, wires: n.wires ?? [] } : n));
    const byType = (t: string) => flow.filter((n) => n.type === t);
    for (const h of byType('upsorch-ssh-host')) Object.assign(h, { host: '127.0.0.1', port: sshd.port, username: 'root', fingerprint: sshd.hostKeyFingerprint, timeout: 5 });
    for (const l of byType('upsorch-libvirt')) Object.assign(l, { uri: lv.uri, names });
    for (const d of byType('upsorch-device')) Object.assign(d, { host: nut.host, port: nut.port, upsName: 'sim' });
    const tab = flow.find((n) => n.type === 'tab')!.id;
    flow.push({ id: 'report', type: 'helper', z: tab }, { id: 'up-report', type: 'helper', z: tab });
    byType('upsorch-phase').find((p) => p.name === 'UPS off')!.wires[1].push('report');
    byType('upsorch-phase').find((p) => p.name === 'VMs')!.wires[1].push('up-report');
    const credentials: Record<string, unknown> = {};
    for (const h of byType('upsorch-ssh-host')) credentials[h.id] = { privateKey: sshd.clientKey };
    for (const d of byType('upsorch-device')) credentials[d.id] = { username: nut.users.admin.username, password: nut.users.admin.password };
    await helper.load([...NODES, ...upsCommandNodes.filter((n) => !NODES.includes(n))], flow, credentials);
    return { shipped, flow, byType, down: new Collector('report'), up: new Collector('up-report'), first: byType('upsorch-phase').find((p) => p.name === 'VMs')!.id };
  }

  it('example 06 as shipped: its upsd is not on a host the plan shuts down before "UPS off", and the host phases wait for the hosts on startup', () => {
    const shipped = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'examples', '06 Homelab plan.json'), 'utf8')) as Array<Record<string, any>>;
    const device = shipped.find((n) => n.type === 'upsorch-device')!;
    const sshHosts = shipped.filter((n) => n.type === 'upsorch-ssh-host').map((h) => h.host);
    assert.ok(!sshHosts.includes(device.host), `the UPS device (${device.host}) would be shut down with ${sshHosts.join(', ')} before the UPS is powered off`);
    assert.equal(device.host, 'localhost');
    for (const a of shipped.filter((n) => n.type === 'upsorch-ssh')) {
      assert.equal(a.waitDown, true, `${a.name} waits until down`);
      assert.equal(a.waitUp, true, `${a.name} waits until up on startup`);
    }
  });

  it('example 06: the mirrored startup after a real outage waits for kvm1 to boot (sshd stopped, back 3 s later), then the NAS, then starts the VMs', async () => {
    const nut = await NutPeer.start();
    try {
      const [a, b] = await domains(['web01', 'db01'], false);
      await sshd.goDown(); // the hosts are still booting when mains is back
      const ex = await loadExample06(nut, [a, b]);
      const t0 = Date.now();
      helper.getNode(ex.byType('upsorch-phase').find((p) => p.name === 'host')!.id).receive({ topic: 'startup' });
      const hostAction = ex.byType('upsorch-ssh').find((n) => n.name === 'kvm1 host')!.id;
      await waitUntil('the host action to wait', 10_000, () => helper.getNode(hostAction).status.getCalls().some((c: any) => c.thisValue === helper.getNode(hostAction) && /waiting for kvm1 to come back/.test(c.args[0].text ?? '')));
      await sleep(3000);
      await sshd.comeUp();
      const r = (await ex.up.waitFor((m) => m.topic === 'run-report', 60_000, 0, 'the startup report')).msg.payload;
      assert.equal(r.direction, 'startup');
      assert.deepEqual(r.phases.map((p: any) => [p.name, p.state]), [['host', 'done'], ['NAS', 'done'], ['VMs', 'done']], JSON.stringify(r.phases, null, 1));
      assert.ok(Date.now() - t0 >= 3000, 'the run waited for the host');
      // The run report tells the story: when the wait began, and when kvm1 answered.
      const waits = r.timeline.filter((t: any) => t.phase === 'host' && (t.event === 'wait-started' || t.event === 'wait-ended')).map((t: any) => `${t.event} ${t.text}`);
      assert.equal(waits.length, 2, waits.join('\n'));
      assert.match(waits[0], /^wait-started kvm1 host: waiting for kvm1 to come back \(/);
      assert.match(waits[1], /^wait-ended kvm1 host: kvm1 answered after \d+(\.\d)? s$/);
      const res = results(r);
      assert.match(res.kvm1.detail, /^kvm1 is back: SSH login works/);
      assert.equal(res.NAS.method, 'already', 'the NAS was up by the time its phase ran');
      assert.equal(await lv.state(a), 'running');
      assert.equal(await lv.state(b), 'running');
      const [host, nas, vms] = r.phases;
      assert.ok(nas.startedAt >= host.endedAt && vms.startedAt >= nas.endedAt, 'each phase waited for the one before');
    } finally {
      await sshd.comeUp();
      await helper.unload();
      await nut.stop();
    }
  });

  it('the example "06 Homelab plan", pointed at the test peers, dry-runs every phase: VMs → NAS → host → UPS off', async () => {
    const nut = await NutPeer.start();
    try {
      const [a, b] = await domains(['web01', 'db01']);
      const shipped = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'examples', '06 Homelab plan.json'), 'utf8')) as Array<Record<string, any>>;
      // The example as shipped, its inject and debug nodes replaced by helper nodes.
      const flow = shipped.map((n) => (n.type === 'inject' || n.type === 'debug' ? { id: n.id, z: n.z, type: 'helper', name: n.name, wires: n.wires ?? [] } : n));
      const byType = (t: string) => flow.filter((n) => n.type === t);
      // What a user fills in after importing: their hosts, keys and fingerprints, their upsd.
      for (const h of byType('upsorch-ssh-host')) Object.assign(h, { host: '127.0.0.1', port: sshd.port, username: 'root', fingerprint: sshd.hostKeyFingerprint });
      for (const l of byType('upsorch-libvirt')) Object.assign(l, { uri: lv.uri, names: [a, b] });
      for (const d of byType('upsorch-device')) Object.assign(d, { host: nut.host, port: nut.port, upsName: 'sim' });
      const plan = byType('upsorch-phase').find((p) => p.name === 'UPS off')!;
      flow.push({ id: 'report', type: 'helper', z: flow.find((n) => n.type === 'tab')!.id });
      plan.wires[1].push('report');
      const credentials: Record<string, unknown> = {};
      for (const h of byType('upsorch-ssh-host')) credentials[h.id] = { privateKey: sshd.clientKey };
      for (const d of byType('upsorch-device')) credentials[d.id] = { username: nut.users.admin.username, password: nut.users.admin.password };
      await helper.load([...NODES, ...upsCommandNodes.filter((n) => !NODES.includes(n))], flow, credentials);
      const out = new Collector('report');
      const first = byType('upsorch-phase').find((p) => p.name === 'VMs')!;
      helper.getNode(first.id).receive({ topic: 'dry-run' });
      const r = await report(out);
      assert.equal(r.dryRun, true);
      assert.deepEqual(r.phases.map((p: any) => p.name), ['VMs', 'NAS', 'host', 'UPS off']);
      assert.deepEqual(r.phases.slice(0, 3).map((p: any) => p.state), ['done', 'done', 'done'], JSON.stringify(r.phases, null, 1));
      const res = results(r);
      for (const n of [a, b, 'NAS', 'kvm1']) assert.equal(res[n]?.method, 'dry-run', `${n}: ${JSON.stringify(res[n])}`);
      const upsOff = r.phases[3].actions[0].results;
      assert.equal(upsOff.length, 1, 'the UPS is resolved as the target of the last phase');
      assert.equal(upsOff[0].method, 'dry-run');
      assert.deepEqual(powerCommands(), [], 'nothing was shut down');
      assert.equal(await lv.state(a), 'running');
      await helper.unload();

      // dry-run-startup: mirrored, the hosts would be waited for, nothing is started.
      await lv.setState(a, 'shut off');
      const ex = await loadExample06(nut, [a, b]);
      helper.getNode(ex.first).receive({ topic: 'dry-run-startup' });
      const up = (await ex.up.waitFor((m) => m.topic === 'run-report', 60_000, 0, 'the startup report')).msg.payload;
      assert.equal(up.dryRun, true);
      assert.deepEqual(up.phases.map((p: any) => [p.name, p.state]), [['host', 'done'], ['NAS', 'done'], ['VMs', 'done']], JSON.stringify(up.phases, null, 1));
      const ur = results(up);
      assert.equal(ur.kvm1.detail, 'kvm1 is up (SSH login works): nothing to wait for');
      assert.equal(ur[a].detail, `would start "${a}" (off)`);
      assert.equal(await lv.state(a), 'shut off', 'nothing was started');
    } finally {
      await helper.unload();
      await nut.stop();
    }
  });
});
