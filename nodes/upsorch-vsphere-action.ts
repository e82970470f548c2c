/**
 * vSphere action node: shuts VMs down (guest shutdown, power off after a timeout), starts,
 * stops or suspends them, or puts hosts into maintenance mode and shuts them down, through a
 * shared vSphere connection (vCenter or standalone ESXi).
 */
import { HttpRequest, HttpResponse, NodeAPI, errorText } from './red';
import { ActionNode, ActionSpec, setupActionNode } from './action-node';
import { VsphereConnectionNode } from './hypervisor-types';
import { Operation } from '../lib/actions/contract';
import { VsphereDriver } from '../lib/vsphere/driver';
import { VsphereCredentials, listVsphereTargets, parseVsphereAction, vsphereSettings } from '../lib/vsphere/config';

function connectionOf(RED: NodeAPI, id: unknown): VsphereConnectionNode {
  const n = typeof id === 'string' && id ? (RED.nodes.getNode(id) as VsphereConnectionNode | null) : null;
  if (!n?.upsorchClient) throw new Error('choose a vSphere connection (deploy it first)');
  if (n.configError) throw new Error(`vSphere connection "${n.name || n.id}": ${n.configError}`);
  return n;
}

export = function register(RED: NodeAPI): void {
  function VsphereAction(this: ActionNode, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    const node = this;
    let spec: ActionSpec | null = null;
    let configError: string | undefined;
    let conn: VsphereConnectionNode | undefined;
    try {
      const cfg = parseVsphereAction(raw);
      const c = (conn = connectionOf(RED, cfg.connection));
      const session = c.upsorchClient!();
      conn.upsorchRegister?.(node.id);
      const requestMs = session.settings.timeoutMs;
      spec = {
        createDriver: () => new VsphereDriver(c.upsorchClient!(), { kind: cfg.kind, pollMs: cfg.poll * 1000 }),
        operationFor: (direction) => (direction === 'shutdown' ? cfg.shutdownOp : cfg.startupOp) as Operation,
        selection: cfg.selection,
        options: (op) => ({
          operation: op,
          timeoutMs: cfg.timeout * 1000,
          force: cfg.force,
          extra: { waitForTools: cfg.waitForTools, toolsTimeoutMs: cfg.toolsTimeout * 1000, maintenanceFirst: cfg.maintenanceFirst },
        }),
        concurrency: cfg.concurrency,
        connectTimeoutMs: cfg.connectTimeout * 1000,
        // VMs: the graceful wait, the power-off task, plus Tools for start. Hosts: maintenance mode
        // (its timeout and our slack), the shutdown task, then the polls that see the host go.
        targetTimeoutMs:
          cfg.kind === 'host'
            ? cfg.timeout * 1000 + (cfg.maintenanceFirst ? 30_000 : 0) + 6 * requestMs + 90_000
            : cfg.timeout * 1000 + (cfg.waitForTools ? cfg.toolsTimeout * 1000 : 0) + 4 * requestMs + 60_000,
        expectedTargets: cfg.selection.names?.length || 8,
      };
    } catch (err) {
      configError = errorText(err);
    }
    setupActionNode(RED, node, spec, configError);
    node.on('close', (_removed, done) => {
      void (conn?.upsorchDeregister?.(node.id) ?? Promise.resolve()).catch(() => undefined).finally(() => done());
    });
  }

  RED.nodes.registerType('upsorch-vsphere-action', VsphereAction);

  // The editor's target picker: the VMs or hosts the (deployed) connection sees, with their state.
  RED.httpAdmin.post('/upsorch-vsphere-action/targets', RED.auth.needsPermission('upsorch-vsphere-action.write'), (req: HttpRequest, res: HttpResponse) => {
    void targets(RED, req.body ?? {}).then((r) => res.json(r));
  });
};

async function targets(RED: NodeAPI, body: Record<string, unknown>) {
  try {
    const conn = connectionOf(RED, body.connection);
    const settings = vsphereSettings(conn.config!, (conn.credentials ?? {}) as VsphereCredentials);
    return await listVsphereTargets(settings, body.kind === 'host' ? 'host' : 'vm', settings.timeoutMs * 4 + 5000);
  } catch (err) {
    return { ok: false, message: errorText(err) };
  }
}
