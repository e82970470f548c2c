/**
 * The inventory an action selects from: every VM (name, power, Tools, host, cluster, folder,
 * uuid, uptime) and every host (power, maintenance mode, connection), read through one
 * ContainerView over the root folder and RetrievePropertiesEx with its continuation pages.
 */
import { MoRef, asArray, esc, refXml, text } from './soap';
import { ObjectContent, VsphereSession } from './session';

export type VmPower = 'poweredOn' | 'poweredOff' | 'suspended';

export interface VmInfo {
  ref: MoRef;
  name: string;
  power: VmPower;
  /** guest.toolsRunningStatus: guestToolsRunning, guestToolsNotRunning, guestToolsExecutingScripts. */
  tools: string;
  host: string | null;
  hostRef: MoRef | null;
  cluster: string | null;
  datacenter: string | null;
  /** Folders from the datacenter's VM folder down, e.g. ['prod', 'web']. */
  folders: string[];
  uuid: string | null;
  uptimeSeconds: number | null;
  template: boolean;
}

export interface HostInfo {
  ref: MoRef;
  name: string;
  /** runtime.powerState: poweredOn, poweredOff, standBy, unknown. */
  power: string;
  maintenance: boolean;
  /** runtime.connectionState: connected, notResponding, disconnected. */
  connection: string;
  cluster: string | null;
  datacenter: string | null;
}

export interface Inventory {
  vms: VmInfo[];
  hosts: HostInfo[];
}

const TYPES: Record<string, string[]> = {
  VirtualMachine: [
    'name',
    'parent',
    'runtime.powerState',
    'runtime.host',
    'guest.toolsRunningStatus',
    'config.uuid',
    'config.template',
    'summary.runtime.bootTime',
    'summary.quickStats.uptimeSeconds',
  ],
  HostSystem: ['name', 'parent', 'runtime.powerState', 'runtime.inMaintenanceMode', 'runtime.connectionState'],
  Folder: ['name', 'parent'],
  Datacenter: ['name', 'parent'],
  ComputeResource: ['name', 'parent'],
  ClusterComputeResource: ['name', 'parent'],
};

function specSet(view: MoRef): string {
  const propSets = Object.entries(TYPES)
    .map(([type, paths]) => `<propSet><type>${type}</type>${paths.map((p) => `<pathSet>${esc(p)}</pathSet>`).join('')}</propSet>`)
    .join('');
  return (
    `<specSet>${propSets}<objectSet>${refXml('obj', view)}<skip>true</skip>` +
    '<selectSet xsi:type="TraversalSpec"><name>traverseView</name><type>ContainerView</type><path>view</path><skip>false</skip></selectSet>' +
    '</objectSet></specSet>'
  );
}

export async function readInventory(session: VsphereSession, signal?: AbortSignal): Promise<Inventory> {
  const sc = await session.serviceContent(signal);
  const created = await session.call(
    'CreateContainerView',
    sc.viewManager,
    `${refXml('container', sc.rootFolder)}${Object.keys(TYPES).map((t) => `<type>${t}</type>`).join('')}<recursive>true</recursive>`,
    signal,
  );
  const view = { type: 'ContainerView', value: text(created.returnval) };
  let objects: ObjectContent[];
  try {
    objects = await session.retrieve(specSet(view), signal);
  } finally {
    void session.call('DestroyView', view, '').catch(() => undefined);
  }
  return buildInventory(objects);
}

export function buildInventory(objects: ObjectContent[]): Inventory {
  const byRef = new Map<string, ObjectContent>();
  for (const o of objects) byRef.set(`${o.obj.type}:${o.obj.value}`, o);
  const get = (r: unknown) => {
    const ref = r as MoRef | null;
    return ref ? byRef.get(`${ref.type}:${ref.value}`) : undefined;
  };
  const str = (o: ObjectContent | undefined, p: string) => {
    const v = o?.props[p];
    return typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v);
  };
  /** Walk up parents: the datacenter, and the folder names below the datacenter's own folders. */
  const ancestry = (start: unknown): { datacenter: string | null; folders: string[] } => {
    const folders: string[] = [];
    let cur = get(start);
    for (let i = 0; cur && i < 64; i++) {
      if (cur.obj.type === 'Datacenter') {
        folders.shift(); // the datacenter's hidden vm / host folder
        return { datacenter: str(cur, 'name'), folders };
      }
      if (cur.obj.type === 'Folder') folders.unshift(str(cur, 'name'));
      cur = get(cur.props.parent);
    }
    return { datacenter: null, folders: [] };
  };

  const hosts: HostInfo[] = [];
  const hostByRef = new Map<string, HostInfo>();
  for (const o of objects) {
    if (o.obj.type !== 'HostSystem') continue;
    const parent = get(o.props.parent);
    const where = ancestry(parent?.props.parent);
    const h: HostInfo = {
      ref: o.obj,
      name: str(o, 'name'),
      power: str(o, 'runtime.powerState') || 'unknown',
      maintenance: o.props['runtime.inMaintenanceMode'] === true,
      connection: str(o, 'runtime.connectionState') || 'unknown',
      cluster: parent?.obj.type === 'ClusterComputeResource' ? str(parent, 'name') : null,
      datacenter: where.datacenter,
    };
    hosts.push(h);
    hostByRef.set(o.obj.value, h);
  }

  const vms: VmInfo[] = [];
  const now = Date.now();
  for (const o of objects) {
    if (o.obj.type !== 'VirtualMachine') continue;
    const hostRef = (o.props['runtime.host'] as MoRef | null) ?? null;
    const host = hostRef ? hostByRef.get(hostRef.value) : undefined;
    const where = ancestry(o.props.parent);
    const uptime = o.props['summary.quickStats.uptimeSeconds'];
    const boot = str(o, 'summary.runtime.bootTime');
    const power = (str(o, 'runtime.powerState') || 'poweredOff') as VmPower;
    // quickStats are refreshed every 20 s or so (and left at 0 by some servers): the boot time is the fallback.
    let uptimeSeconds: number | null = typeof uptime === 'number' && Number.isFinite(uptime) && uptime > 0 ? uptime : null;
    if (uptimeSeconds === null && boot && power === 'poweredOn') {
      const t = Date.parse(boot);
      if (Number.isFinite(t)) uptimeSeconds = Math.max(0, Math.round((now - t) / 1000));
    }
    vms.push({
      ref: o.obj,
      name: str(o, 'name'),
      power,
      tools: str(o, 'guest.toolsRunningStatus') || 'guestToolsNotRunning',
      host: host?.name ?? null,
      hostRef,
      cluster: host?.cluster ?? null,
      datacenter: where.datacenter ?? host?.datacenter ?? null,
      folders: where.folders,
      uuid: str(o, 'config.uuid') || null,
      uptimeSeconds: power === 'poweredOn' ? uptimeSeconds : null,
      template: o.props['config.template'] === true,
    });
  }
  vms.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
  hosts.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
  return { vms, hosts };
}

/** The licences of a standalone ESXi host, and whether they make its API read-only. */
export interface LicenceInfo {
  names: string[];
  /** Set when every licence is the free vSphere Hypervisor (API read-only). */
  readOnly: string | null;
}

/**
 * Edition keys of the free vSphere Hypervisor: `esxBasic` (older hosts) and
 * `esx.hypervisor.cpuPackageCoreLimited` / `esx.hypervisor.cpuPackage` (free ESXi 6, 7 and 8,
 * named "VMware vSphere 7 Hypervisor" and the like). Paid editions are esx.standard.*,
 * esx.enterprisePlus.* …; evaluation mode is `eval`.
 */
const FREE_EDITION = /^esxBasic|^esx\.hypervisor\.|(^|\.)free($|\.)|hypervisor\.free/i;
const FREE_NAME = /^(VMware )?vSphere \d+(\.\d+)? Hypervisor$/i;

export async function readLicences(session: VsphereSession, signal?: AbortSignal): Promise<LicenceInfo> {
  const sc = await session.serviceContent(signal);
  if (!sc.licenseManager) return { names: [], readOnly: null };
  const got = await session.properties('LicenseManager', [sc.licenseManager], ['licenses'], signal);
  const raw = got.get(sc.licenseManager.value)?.props.licenses;
  const items = asArray(raw as Record<string, unknown>[] | undefined).map((l) => ({ edition: text(l?.editionKey), name: text(l?.name) }));
  const names = items.map((l) => l.name || l.edition).filter(Boolean);
  const free = items.length > 0 && items.every((l) => FREE_EDITION.test(l.edition) || (!l.edition && FREE_NAME.test(l.name.trim())));
  // Only a standalone host enforces this; a vCenter never manages a free-licensed host.
  const readOnly =
    free && sc.about.apiType !== 'VirtualCenter'
      ? `this ESXi host runs the free vSphere Hypervisor licence (${items.map((l) => l.name || l.edition).join(', ')}): its API is read-only, so VMs and the host cannot be shut down or started through it. Use a paid licence or vCenter, or shut it down with the SSH action (ESXi preset).`
      : null;
  return { names, readOnly };
}

/** Privileges the session holds on an entity (HasPrivilegeOnEntity); missing ones are returned. */
export async function missingPrivileges(session: VsphereSession, entity: MoRef, privileges: string[], signal?: AbortSignal): Promise<string[]> {
  const sc = await session.serviceContent(signal);
  if (!sc.authorizationManager || !privileges.length) return [];
  await session.login(signal);
  if (!session.sessionKey) return [];
  const r = await session.call(
    'HasPrivilegeOnEntity',
    sc.authorizationManager,
    `${refXml('entity', entity)}<sessionId>${esc(session.sessionKey)}</sessionId>${privileges.map((p) => `<privId>${esc(p)}</privId>`).join('')}`,
    signal,
  );
  const granted = asArray(r.returnval as unknown[]).map((x) => text(x) === 'true');
  return privileges.filter((_, i) => granted[i] === false);
}
