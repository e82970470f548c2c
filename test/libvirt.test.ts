/**
 * The libvirt action node in the Node-RED runtime against a real libvirtd (test driver only,
 * test/peers/libvirt.ts), reached through a real OpenSSH server (test/peers/sshd.ts) whose virsh
 * shim makes domains named stubborn* ignore shutdown, as a guest without ACPI support would; and
 * with virsh run locally.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SshdPeer } from './peers/sshd';
import { LibvirtPeer } from './peers/libvirt';
import { waitUntil } from './peers/proc';
import * as os from 'node:os';
import { Collector, errorsOf, helper, ourNodes, sshNodes, statuses, waitForStatus } from './util/red';
import { virshNotReachable } from '../lib/libvirt/virsh';
import { ActionStep } from '../lib/plan/types';
import { TargetResult } from '../lib/actions/contract';

const ODD = `odd vm 'q' "dq" $(touch pwned) ;&`;

describe('libvirt action with a real libvirtd (test driver) over a real SSH server', function () {
  this.timeout(60000);
  let sshd: SshdPeer;
  let lv: LibvirtPeer;

  before(async function () {
    this.timeout(60000);
    [sshd, lv] = await Promise.all([SshdPeer.start(), LibvirtPeer.start()]);
  });
  after(async () => {
    await Promise.all([sshd?.stop(), lv?.stop()]);
  });
  afterEach(async () => {
    await helper.unload();
    sshd.clearLogs();
  });

  /** Domains for one test, defined fresh with unique names so tests do not share state. */
  let seq = 0;
  async function domains(specs: Array<[string, 'running' | 'shut off' | 'paused']>): Promise<string[]> {
    seq++;
    const names: string[] = [];
    for (const [base, state] of specs) {
      const name = base.startsWith('odd') || /^\d+$/.test(base) ? base : `${base}-t${seq}`;
      await lv.define(name, state !== 'shut off');
      if (state === 'paused') await lv.setState(name, 'paused');
      names.push(name);
    }
    return names;
  }

  const host = () => ({ id: 'h1', type: 'upsorch-ssh-host', name: 'kvm1', host: '127.0.0.1', port: sshd.port, username: 'root', fingerprint: sshd.hostKeyFingerprint, timeout: 5 });
  async function load(over: Record<string, unknown>) {
    await helper.load(
      [...ourNodes, ...sshNodes],
      [
        host(),
        { id: 'l1', type: 'upsorch-libvirt', name: '', connection: 'ssh', sshHost: 'h1', uri: lv.uri, names: [], patterns: [], exclude: [], allRunning: false, shutdownOp: 'shutdown', startupOp: 'start', mode: '', timeout: 10, force: true, concurrency: 4, commandTimeout: 10, poll: 0.2, wires: [['out']], ...over },
        { id: 'out', type: 'helper' },
      ],
      { h1: { privateKey: sshd.clientKey } },
    );
    return new Collector('out');
  }
  async function request(out: Collector, msg: Record<string, unknown>, ms = 30000) {
    const from = out.received.length;
    helper.getNode('l1').receive(msg);
    return (await out.waitFor((m) => m.topic === 'action-report', ms, from, 'the action report')).msg.payload;
  }
  const byTarget = (report: { results: TargetResult[] }) => Object.fromEntries(report.results.map((r) => [r.target, r]));
  const step = (over: Partial<ActionStep> = {}, log: string[] = []): ActionStep => ({
    run: { id: 'run1', plan: 'p1', planName: 'Plan', direction: 'shutdown', dryRun: false },
    phase: { id: 'ph1', name: 'VMs' },
    previous: [],
    interrupted: [],
    hooks: { beforeTarget: async (t) => void log.push(`start ${t.name}`), onResult: (r) => void log.push(`result ${r.target}`) },
    signal: new AbortController().signal,
    ...over,
  });

  it('shuts two domains down in parallel; both end shut off', async () => {
    const [a, b] = await domains([['web', 'running'], ['db', 'running']]);
    await load({ names: [a, b], concurrency: 2 });
    const log: string[] = [];
    const report = await helper.getNode('l1').upsorchAction.perform(step({}, log));
    assert.equal(report.ok, true, JSON.stringify(report));
    assert.equal(report.operation, 'shutdown');
    const r = byTarget(report);
    for (const n of [a, b]) {
      assert.equal(r[n].method, 'graceful');
      assert.equal(r[n].before, 'on');
      assert.equal(r[n].after, 'off');
      assert.match(r[n].detail!, /^shutdown: off after [0-9.]+ s$/);
      assert.equal(await lv.state(n), 'shut off');
      assert.match(lv.events(), new RegExp(`domain '${n}': Stopped Shutdown`));
    }
    // Both were under way before either finished.
    assert.deepEqual(log.slice(0, 2).sort(), [`start ${a}`, `start ${b}`].sort());
    const shutdowns = sshd.commands().filter((c) => / shutdown --domain /.test(c));
    assert.deepEqual(shutdowns.map((c) => c.replace(/.* --domain /, '')).sort(), [a, b].sort());
    assert.ok(shutdowns.every((c) => c.startsWith(`env LC_ALL=C virsh -c '${lv.uri}' shutdown --domain `)), shutdowns.join('\n'));
  });

  it('destroys a domain that ignores shutdown after the timeout and reports it forced', async () => {
    const [s, w] = await domains([['stubborn', 'running'], ['web', 'running']]);
    const out = await load({ names: [s, w], timeout: 2 });
    const t0 = Date.now();
    const report = await request(out, { topic: 'shutdown' });
    assert.ok(Date.now() - t0 >= 2000);
    assert.equal(report.ok, true, JSON.stringify(report));
    const r = byTarget(report);
    assert.equal(r[s].method, 'forced');
    assert.equal(r[s].after, 'off');
    assert.equal(r[s].detail, 'shutdown: forced off after 2 s');
    assert.equal(r[w].method, 'graceful');
    assert.equal(await lv.state(s), 'shut off');
    assert.ok(sshd.fakeCalls().includes(`virsh shutdown ${s} (the guest ignores it)`));
    assert.ok(sshd.commands().some((c) => c.endsWith(`destroy --domain ${s}`)));
    assert.match(lv.events(), new RegExp(`domain '${s}': Stopped Destroyed`));
    await waitForStatus('l1', (st) => st.fill === 'green' && /1 done, 1 forced/.test(st.text ?? ''));
  });

  it('with forcing disabled, a domain that ignores shutdown fails and keeps running', async () => {
    const [s] = await domains([['stubborn', 'running']]);
    const out = await load({ names: [s], timeout: 1, force: false });
    const report = await request(out, { topic: 'shutdown' });
    assert.equal(report.ok, false);
    assert.equal(report.results[0].error, 'shutdown: still running after 1 s and forcing is disabled');
    assert.equal(await lv.state(s), 'running');
    assert.ok(!sshd.commands().some((c) => / destroy /.test(c)));
    await waitUntil('the error', 2000, () => errorsOf('l1').length > 0);
  });

  it('a domain that is already shut off is reported as already, without a shutdown request', async () => {
    const [off, on] = await domains([['off', 'shut off'], ['web', 'running']]);
    const out = await load({ names: [off, on] });
    const report = await request(out, { topic: 'shutdown' });
    const r = byTarget(report);
    assert.deepEqual([r[off].method, r[off].before, r[off].after, r[off].ok], ['already', 'off', 'off', true]);
    assert.equal(r[on].method, 'graceful');
    assert.ok(!sshd.commands().some((c) => c.endsWith(`shutdown --domain ${off}`)));
  });

  it('startup starts shut-off domains, resumes a paused one, and leaves a running one alone', async () => {
    const [off, paused, on] = await domains([['app', 'shut off'], ['cache', 'paused'], ['web', 'running']]);
    const out = await load({ names: [off, paused, on] });
    const report = await request(out, { topic: 'startup' });
    assert.equal(report.ok, true, JSON.stringify(report));
    assert.equal(report.operation, 'start');
    const r = byTarget(report);
    assert.deepEqual([r[off].method, r[off].after, r[off].detail], ['graceful', 'on', 'started']);
    assert.deepEqual([r[paused].method, r[paused].before, r[paused].after, r[paused].detail], ['graceful', 'suspended', 'on', 'resumed']);
    assert.deepEqual([r[on].method, r[on].after], ['already', 'on']);
    for (const n of [off, paused, on]) assert.equal(await lv.state(n), 'running');
  });

  it('startup while the KVM host is still booting: waits (status says so) and starts the domains once SSH answers', async () => {
    const [a, b] = await domains([['web', 'shut off'], ['db', 'shut off']]);
    await sshd.goDown();
    try {
      const out = await load({ names: [a, b] });
      const from = out.received.length;
      helper.getNode('l1').receive({ topic: 'startup' });
      await waitForStatus('l1', (s) => s.fill === 'yellow' && /^start: waiting for kvm1 to come back… \d+ s$/.test(s.text ?? ''), 10_000);
      await new Promise((r) => setTimeout(r, 3000));
      await sshd.comeUp();
      const report = (await out.waitFor((m) => m.topic === 'action-report', 45_000, from, 'the action report')).msg.payload;
      assert.equal(report.ok, true, JSON.stringify(report));
      const r = byTarget(report);
      for (const n of [a, b]) {
        assert.equal(r[n].method, 'graceful');
        assert.match(r[n].detail ?? "", /^started \(after waiting [0-9.]+ s for kvm1 to come back\)$/);
        assert.equal(await lv.state(n), 'running');
      }
      await waitForStatus('l1', (s) => s.fill === 'green');
    } finally {
      await sshd.comeUp();
    }
  });

  it('startup: a KVM host that never comes back fails after the action\'s own time, saying it was not reachable', async () => {
    const [a] = await domains([['web', 'shut off']]);
    await sshd.goDown();
    try {
      // Own time per target: timeout 1 s + 4 × virsh 1 s + 10 s.
      const out = await load({ names: [a], timeout: 1, commandTimeout: 1 });
      const t0 = Date.now();
      const report = await request(out, { topic: 'startup' }, 60_000);
      const ms = Date.now() - t0;
      assert.ok(ms >= 10_000 && ms < 40_000, `gave up after ${ms} ms`);
      assert.equal(report.ok, false);
      assert.match(report.error, new RegExp(`^kvm1 did not come back within [0-9.]+ s: cannot connect to 127\\.0\\.0\\.1:${sshd.port}: connection refused \\(is SSH running on that port\\?\\)$`));
      assert.equal(byTarget(report)[a].ok, false);
      assert.equal(await lv.state(a), 'shut off');
    } finally {
      await sshd.comeUp();
    }
  });

  it('a dry-run of the startup does not wait: an unreachable host is reported at once', async () => {
    await sshd.goDown();
    try {
      const out = await load({ names: ['web'] });
      const t0 = Date.now();
      const report = await request(out, { topic: 'dry-run-startup' });
      assert.ok(Date.now() - t0 < 5000);
      assert.match(report.error, /connection refused/);
    } finally {
      await sshd.comeUp();
    }
  });

  it('stop destroys and suspend pauses, each idempotent', async () => {
    const [a, b] = await domains([['web', 'running'], ['db', 'running']]);
    let out = await load({ names: [a] });
    let report = await request(out, { topic: 'stop' });
    assert.deepEqual([report.results[0].method, report.results[0].after], ['forced', 'off']);
    report = await request(out, { topic: 'stop' });
    assert.equal(report.results[0].method, 'already');
    await helper.unload();
    out = await load({ names: [b] });
    report = await request(out, { topic: 'suspend' });
    assert.deepEqual([report.results[0].method, report.results[0].after], ['graceful', 'suspended']);
    assert.equal(await lv.state(b), 'paused');
    report = await request(out, { topic: 'suspend' });
    assert.equal(report.results[0].method, 'already');
  });

  it('dry-run changes nothing and says what it would do', async () => {
    const [on, off] = await domains([['web', 'running'], ['off', 'shut off']]);
    const out = await load({ names: [on, off], timeout: 90 });
    const report = await request(out, { topic: 'dry-run' });
    assert.equal(report.ok, true);
    const r = byTarget(report);
    assert.equal(r[on].method, 'dry-run');
    assert.equal(r[on].detail, `would run virsh shutdown on "${on}" (on), wait up to 90 s for "shut off", then destroy it`);
    assert.equal(r[off].detail, 'already off; nothing would be done');
    assert.equal(await lv.state(on), 'running');
    assert.equal(await lv.state(off), 'shut off');
    const verbs = sshd.commands().map((c) => / virsh -c \S+ (\S+)/.exec(c)?.[1]);
    assert.ok(verbs.every((v) => v === 'list' || v === 'domstate'), `only listing and state queries, saw ${verbs.join(', ')}`);
    await waitForStatus('l1', (s) => s.fill === 'blue' && /dry-run/.test(s.text ?? ''));
  });

  it('names with spaces, quotes and shell syntax are passed safely; numeric names go by UUID', async () => {
    const [odd, num] = await domains([[ODD, 'running'], ['4242', 'running']]);
    const out = await load({ names: [odd, num] });
    const report = await request(out, { topic: 'shutdown' });
    assert.equal(report.ok, true, JSON.stringify(report));
    assert.equal(await lv.state(odd), 'shut off');
    assert.equal(await lv.state(num), 'shut off');
    assert.ok(sshd.commands().some((c) => c.endsWith(` shutdown --domain 'odd vm '\\''q'\\'' "dq" $(touch pwned) ;&'`)), sshd.commands().join('\n'));
    assert.equal(fs.existsSync(path.join(sshd.dir, 'pwned')), false, 'nothing from the name was executed');
    const uuid = (await lv.virsh(['domuuid', '--domain', num])).stdout.trim();
    assert.ok(sshd.commands().some((c) => c.endsWith(` shutdown --domain ${uuid}`)), 'the numeric name is addressed by its UUID');
    assert.deepEqual(sshd.refused(), []);
  });

  it('selects by pattern, all running and exclusions; names that match nothing are reported', async () => {
    const [w1, w2, d1, s1] = await domains([['sel-web1', 'running'], ['sel-web2', 'shut off'], ['sel-db1', 'running'], ['sel-stubborn', 'running']]);
    const out = await load({ patterns: [`sel-web*-t${seq}`, `/^sel-db\\d-t${seq}$/`], names: ['nosuch'], exclude: [], timeout: 5 });
    const report = await request(out, { topic: 'dry-run' });
    assert.deepEqual(report.results.map((r: TargetResult) => r.target).sort(), ['nosuch', w1, w2, d1].sort());
    assert.match(byTarget(report).nosuch.error!, /^no target named "nosuch" \(found: /);
    await helper.unload();
    const out2 = await load({ allRunning: true, exclude: ['test', 'odd*', '/^\\d+$/', `sel-stubborn-t${seq}`] });
    const report2 = await request(out2, { topic: 'dry-run' });
    const picked = report2.results.map((r: TargetResult) => r.target);
    assert.ok(picked.includes(w1) && picked.includes(d1), picked.join(', '));
    assert.ok(!picked.includes(w2), 'shut-off domains are not "running"');
    assert.ok(!picked.includes(s1) && !picked.includes('test'), 'excluded');
  });

  it('a restarted run acts again on an interrupted domain (virsh shutdown is repeatable)', async () => {
    const [a] = await domains([['web', 'running']]);
    await load({ names: [a] });
    const report = await helper.getNode('l1').upsorchAction.perform(step({ interrupted: [a] }));
    assert.equal(report.results[0].method, 'graceful');
    assert.equal(await lv.state(a), 'shut off');
  });

  it('an unknown shutdown mode for the driver surfaces virsh\'s own error', async () => {
    const [a] = await domains([['web', 'running']]);
    const out = await load({ names: [a], mode: 'acpi' });
    const report = await request(out, { topic: 'shutdown' });
    assert.equal(report.ok, false);
    // The test driver supports no shutdown modes; a real QEMU domain accepts acpi and agent.
    assert.match(report.results[0].error, /^virsh shutdown: Failed to shutdown domain '.*': unsupported flags \(0x1\)/);
    assert.ok(sshd.commands().some((c) => c.endsWith(`shutdown --mode acpi --domain ${a}`)));
  });

  it('runs virsh on the Node-RED machine with connection "local"', async () => {
    const [a] = await domains([['local', 'running']]);
    await helper.load(
      [...ourNodes, ...sshNodes],
      [
        { id: 'l1', type: 'upsorch-libvirt', connection: 'local', sshHost: '', uri: lv.uri, names: [a], timeout: 10, force: true, concurrency: 2, commandTimeout: 10, poll: 0.2, wires: [['out']] },
        { id: 'out', type: 'helper' },
      ],
    );
    const out = new Collector('out');
    let report = await request(out, { topic: 'shutdown' });
    assert.equal(report.ok, true, JSON.stringify(report));
    assert.equal(await lv.state(a), 'shut off');
    report = await request(out, { topic: 'startup' });
    assert.equal(report.results[0].method, 'graceful');
    assert.equal(await lv.state(a), 'running');
    assert.deepEqual(sshd.commands(), [], 'nothing went over SSH');
  });

  it('an invalid configuration shows a red status and fails every request', async () => {
    await helper.load([...ourNodes, ...sshNodes], [{ id: 'l1', type: 'upsorch-libvirt', connection: 'ssh', sshHost: '', uri: lv.uri, names: [], wires: [['out']] }, { id: 'out', type: 'helper' }]);
    await waitForStatus('l1', (s) => s.fill === 'red' && /choose the SSH host/.test(s.text ?? ''));
    helper.getNode('l1').receive({ topic: 'shutdown' });
    await waitUntil('the error', 2000, () => errorsOf('l1').some((e) => /choose the SSH host/.test(e)));
  });

  describe('refused, not unreachable: a startup does not wait for a misconfigured host', () => {
    it('virsh\'s permission and authentication failures are never taken for a host still booting', () => {
      // Messages as virsh 8–10 prints them (LC_ALL=C).
      const refused = [
        "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/var/run/libvirt/libvirt-sock': Permission denied",
        "error: failed to connect to the hypervisor\nerror: authentication unavailable: no polkit agent available to authenticate action 'org.libvirt.unix.manage'",
        'error: failed to connect to the hypervisor\nerror: authentication failed: access denied by policy',
        'error: failed to connect to the hypervisor\nerror: Cannot recv data: root@kvm1: Permission denied (publickey).: Connection reset by peer',
        'error: failed to connect to the hypervisor\nerror: Cannot recv data: Host key verification failed.: Connection reset by peer',
        "error: failed to connect to the hypervisor\nerror: access denied: 'connect' denied by ACL",
      ];
      for (const m of refused) assert.equal(virshNotReachable(m), false, m);
      const booting = [
        "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory",
        "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/var/run/libvirt/virtqemud-sock': Connection refused",
        'error: failed to connect to the hypervisor\nerror: Cannot recv data: ssh: connect to host kvm1 port 22: Connection refused: Connection reset by peer',
        'error: failed to connect to the hypervisor\nerror: End of file while reading data: Input/output error',
      ];
      for (const m of booting) assert.equal(virshNotReachable(m), true, m);
      // A domain error is neither.
      assert.equal(virshNotReachable("error: failed to get domain 'web'"), false);
    });

    it('a qemu+ssh:// URI whose key the host refuses, or whose host key is unknown, fails the startup at once', async () => {
      const [a] = await domains([['web', 'shut off']]);
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-virsh-ssh-'));
      try {
        // The ssh virsh runs: its own known_hosts, nothing read from or written to the user's ~/.ssh.
        const sshWith = (known: string) => {
          const f = path.join(dir, `ssh-${path.basename(known)}`);
          fs.writeFileSync(f, `#!/bin/sh\nexec ssh -F /dev/null -o UserKnownHostsFile=${known} -o GlobalKnownHostsFile=/dev/null -o BatchMode=yes "$@"\n`, { mode: 0o755 });
          return f;
        };
        const hostKey = fs.readFileSync(path.join(sshd.dir, 'hostkey.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ');
        fs.writeFileSync(path.join(dir, 'known'), `[127.0.0.1]:${sshd.port} ${hostKey}\n`);
        fs.writeFileSync(path.join(dir, 'empty'), '');
        fs.writeFileSync(path.join(dir, 'refused-key'), sshd.otherKey, { mode: 0o600 });
        fs.writeFileSync(path.join(dir, 'key'), sshd.clientKey, { mode: 0o600 });
        const cases = [
          { key: 'refused-key', known: 'known', error: /Permission denied \(publickey\)/ },
          { key: 'key', known: 'empty', error: /Host key verification failed/ },
        ];
        for (const c of cases) {
          const uri = `qemu+ssh://root@127.0.0.1:${sshd.port}/system?keyfile=${path.join(dir, c.key)}&command=${sshWith(path.join(dir, c.known))}`;
          await helper.load(
            [...ourNodes, ...sshNodes],
            [
              { id: 'l1', type: 'upsorch-libvirt', connection: 'local', sshHost: '', uri, names: [a], timeout: 60, force: true, concurrency: 1, commandTimeout: 10, poll: 0.2, wires: [['out']] },
              { id: 'out', type: 'helper' },
            ],
          );
          const t0 = Date.now();
          const report = await request(new Collector('out'), { topic: 'startup' });
          assert.ok(Date.now() - t0 < 10_000, `${c.key}/${c.known}: failed after ${Date.now() - t0} ms, not after waiting`);
          assert.equal(report.ok, false);
          assert.match(report.error, c.error);
          assert.ok(!statuses('l1').some((s) => /waiting/.test(s.text ?? '')), 'never showed a wait');
          await helper.unload();
        }
        assert.deepEqual(sshd.commands(), [], 'no virsh ran on the host');
        assert.equal(await lv.state(a), 'shut off');
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('the editor\'s domain list', () => {
    before(async () => {
      await helper.startServer();
    });
    after(async () => {
      await helper.stopServer();
    });

    it('lists every domain with its state through the deployed SSH host', async () => {
      const [on, off, paused] = await domains([['list-on', 'running'], ['list-off', 'shut off'], ['list-paused', 'paused']]);
      await load({ names: [on] });
      const res = await helper.request().post('/upsorch-libvirt/domains').send({ connection: 'ssh', sshHost: 'h1', uri: lv.uri }).expect(200);
      assert.equal(res.body.ok, true, JSON.stringify(res.body));
      const d = Object.fromEntries(res.body.domains.map((x: { name: string; power: string; state: string }) => [x.name, [x.power, x.state]]));
      assert.deepEqual(d[on], ['on', 'running']);
      assert.deepEqual(d[off], ['off', 'shut off']);
      assert.deepEqual(d[paused], ['suspended', 'paused']);
      assert.deepEqual(d[ODD] ?? null, d[ODD] ? ['off', 'shut off'] : null);
      assert.match(res.body.message, /^\d+ domains on root@127\.0\.0\.1:\d+$/);
      const missing = await helper.request().post('/upsorch-libvirt/domains').send({ connection: 'ssh', sshHost: 'nosuch', uri: lv.uri }).expect(200);
      assert.deepEqual(missing.body, { ok: false, message: 'choose an SSH host (deploy it first to list domains)' });
      const local = await helper.request().post('/upsorch-libvirt/domains').send({ connection: 'local', uri: lv.uri }).expect(200);
      assert.equal(local.body.domains.length, res.body.domains.length);
    });
  });
});
