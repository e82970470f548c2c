/**
 * vSphere library pieces that need no server: the signal race of the session, the watcher's
 * failure counting, the free-licence detection and the driver's licence check, each against a
 * stand-in for the few session methods they use.
 */
import { strict as assert } from 'node:assert';
import { raceSignal, VsphereSession } from '../lib/vsphere/session';
import { Watcher } from '../lib/vsphere/watch';
import { readLicences } from '../lib/vsphere/inventory';
import { VsphereDriver } from '../lib/vsphere/driver';
import { ConnectError } from '../lib/net/https-client';
import { ObjectContent } from '../lib/vsphere/session';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Collect unhandled rejections while `fn` runs (and a moment after). */
async function unhandledDuring(fn: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  const on = (r: unknown) => seen.push(r);
  process.on('unhandledRejection', on);
  try {
    await fn();
    await sleep(50);
  } finally {
    process.off('unhandledRejection', on);
  }
  return seen;
}

const HOST_AGENT = { rootFolder: { type: 'Folder', value: 'ha-folder-root' }, licenseManager: { type: 'LicenseManager', value: 'ha-license-manager' }, authorizationManager: null, about: { apiType: 'HostAgent' } };

function licences(...items: Array<{ editionKey: string; name: string }>): Map<string, ObjectContent> {
  return new Map([['ha-license-manager', { obj: HOST_AGENT.licenseManager, props: { licenses: items }, missing: {} }]]);
}

describe('vSphere library without a server', () => {
  it('a call raced against an already-aborted signal rejects with the abort, and its own later failure is not unhandled', async () => {
    const ac = new AbortController();
    ac.abort(new Error('closing'));
    const seen = await unhandledDuring(async () => {
      const late = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('socket closed')), 10));
      await assert.rejects(raceSignal(late, ac.signal), /closing/);
      await sleep(30);
    });
    assert.deepEqual(seen, []);
  });

  it('the watcher fails a waiter after three failed polls, and a waiter that joins later gets its own three', async () => {
    let down = true;
    let polls = 0;
    const session = {
      retrieve: async () => {
        polls++;
        if (down) throw new ConnectError('127.0.0.1:1 did not answer', 'ETIMEDOUT');
        return [{ obj: { type: 'VirtualMachine', value: 'vm-1' }, props: { 'runtime.powerState': 'poweredOff' }, missing: {} }];
      },
    } as unknown as VsphereSession;
    const w = new Watcher(session, 20, 0);
    const signal = new AbortController().signal;
    const ref = { type: 'VirtualMachine', value: 'vm-1' };
    const off = (p: Record<string, unknown>) => (p['runtime.powerState'] === 'poweredOff' ? true : undefined);
    try {
      await assert.rejects(w.until(ref, off, 10_000, signal), (e: unknown) => e instanceof ConnectError);
      assert.equal(polls, 3);
      // Still down for this waiter's first poll, then back: one failure is a blip, not the end.
      const later = w.until(ref, off, 10_000, signal);
      while (polls < 4) await sleep(5);
      down = false;
      assert.equal(await later, true);
    } finally {
      w.close();
    }
  });

  it('recognises the free vSphere Hypervisor licence by its real edition keys, and not a paid one', async () => {
    const cases: Array<[{ editionKey: string; name: string }, boolean]> = [
      [{ editionKey: 'esx.hypervisor.cpuPackageCoreLimited', name: 'VMware vSphere 7 Hypervisor' }, true],
      [{ editionKey: 'esx.hypervisor.cpuPackage', name: 'VMware vSphere 6 Hypervisor' }, true],
      [{ editionKey: 'esxBasic', name: 'VMware vSphere 5 Hypervisor' }, true],
      [{ editionKey: 'esx.enterprisePlus.cpuPackage', name: 'VMware vSphere 7 Enterprise Plus' }, false],
      [{ editionKey: 'esx.standard.cpuPackageCoreLimited', name: 'VMware vSphere 8 Standard' }, false],
      [{ editionKey: 'eval', name: 'Evaluation Mode' }, false],
    ];
    for (const [lic, free] of cases) {
      const session = { serviceContent: async () => HOST_AGENT, properties: async () => licences(lic) } as unknown as VsphereSession;
      const l = await readLicences(session);
      assert.equal(!!l.readOnly, free, `${lic.editionKey}: ${l.readOnly}`);
      if (free) assert.match(l.readOnly!, new RegExp(`free vSphere Hypervisor licence \\(${lic.name}\\)`));
    }
  });

  it('a licence that could not be read is read again at the next check, not taken as writable for good', async () => {
    let licenceReads = 0;
    const session = {
      settings: { username: 'root' },
      serviceContent: async () => HOST_AGENT,
      properties: async (type: string) => {
        if (type === 'LicenseManager') {
          if (++licenceReads === 1) throw new ConnectError('127.0.0.1:1 did not answer', 'ETIMEDOUT');
          return licences({ editionKey: 'esx.hypervisor.cpuPackageCoreLimited', name: 'VMware vSphere 7 Hypervisor' });
        }
        return new Map([['1', { obj: { type: 'VirtualMachine', value: '1' }, props: { 'runtime.powerState': 'poweredOn', 'guest.toolsRunningStatus': 'guestToolsRunning' }, missing: {} }]]);
      },
    } as unknown as VsphereSession;
    const d = new VsphereDriver(session, { kind: 'vm' });
    const target = { id: '1', name: 'vm1', power: 'on' as const };
    const opts = { operation: 'shutdown' as const, timeoutMs: 10_000, force: true };
    try {
      assert.match(await d.check(target, opts, new AbortController().signal), /^would ask the guest to shut down/);
      await assert.rejects(d.check(target, opts, new AbortController().signal), /free vSphere Hypervisor licence/);
      await assert.rejects(d.check(target, opts, new AbortController().signal), /free vSphere Hypervisor licence/);
      assert.equal(licenceReads, 2, 'read once more after the failure, then kept');
    } finally {
      await d.close();
    }
  });
});
