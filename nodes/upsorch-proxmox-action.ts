/**
 * Proxmox VE action node: shuts qemu VMs and lxc containers down (then stops them after a
 * timeout), starts, stops or suspends them, handles HA-managed guests, or runs stopall / startall
 * and node shutdown, through a shared Proxmox connection (API token).
 */
import { HttpRequest, HttpResponse, NodeAPI, errorText } from './red';
import { ActionNode, ActionSpec, setupActionNode } from './action-node';
import { ProxmoxConnectionNode } from './hypervisor-types';
import { Operation } from '../lib/actions/contract';
import { ProxmoxDriver, nodeTaskBudgetMs } from '../lib/proxmox/driver';
import { ProxmoxCredentials, listProxmoxTargets, parseProxmoxAction, proxmoxSettings } from '../lib/proxmox/config';

function connectionOf(RED: NodeAPI, id: unknown): ProxmoxConnectionNode {
  const n = typeof id === 'string' && id ? (RED.nodes.getNode(id) as ProxmoxConnectionNode | null) : null;
  if (!n?.upsorchClient) throw new Error('choose a Proxmox connection (deploy it first)');
  if (n.configError) throw new Error(`Proxmox connection "${n.name || n.id}": ${n.configError}`);
  return n;
}

/** Guests per node until a listing told (for the phase's time before the first run). */
const ASSUMED_GUESTS = 8;

export = function register(RED: NodeAPI): void {
  function ProxmoxAction(this: ActionNode, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    const node = this;
    let spec: ActionSpec | null = null;
    let configError: string | undefined;
    let conn: ProxmoxConnectionNode | undefined;
    try {
      const cfg = parseProxmoxAction(raw);
      const c = (conn = connectionOf(RED, cfg.connection));
      const requestMs = c.upsorchClient!().settings.timeoutMs;
      c.upsorchRegister?.(node.id);
      // Guests per node as last listed (a node's stopall takes longer the more guests it has).
      const seen = new Map<string, number>();
      const nodeGuests = (): number => {
        const names = cfg.selection.names?.length ? cfg.selection.names : [...seen.keys()];
        const counts = names.map((n) => seen.get(n)).filter((n): n is number => n !== undefined);
        return counts.length ? Math.max(...counts) : ASSUMED_GUESTS;
      };
      spec = {
        createDriver: () => new ProxmoxDriver(c.upsorchClient!(), { kind: cfg.kind, pollMs: cfg.poll * 1000, seen }),
        operationFor: (direction) => (direction === 'shutdown' ? cfg.shutdownOp : cfg.startupOp) as Operation,
        selection: cfg.selection,
        options: (op) => ({ operation: op, timeoutMs: cfg.timeout * 1000, force: cfg.force, extra: { haStopFirst: cfg.haStopFirst, startAllForce: cfg.startAllForce } }),
        concurrency: cfg.concurrency,
        connectTimeoutMs: cfg.connectTimeout * 1000,
        // Guests: the graceful wait, then the stop task. Nodes: stopall for the guests last seen
        // there, or the wait until the node is offline. Each request bounded.
        get targetTimeoutMs() {
          const work = cfg.kind === 'node' ? nodeTaskBudgetMs('shutdown', nodeGuests(), cfg.timeout * 1000) : cfg.timeout * 1000;
          return work + 4 * requestMs + 120_000;
        },
        expectedTargets: cfg.selection.names?.length || 4,
      };
    } catch (err) {
      configError = errorText(err);
    }
    setupActionNode(RED, node, spec, configError);
    node.on('close', (_removed, done) => {
      void (conn?.upsorchDeregister?.(node.id) ?? Promise.resolve()).catch(() => undefined).finally(() => done());
    });
  }

  RED.nodes.registerType('upsorch-proxmox-action', ProxmoxAction);

  // The editor's target picker: the guests or nodes the (deployed) connection's token sees.
  RED.httpAdmin.post('/upsorch-proxmox-action/targets', RED.auth.needsPermission('upsorch-proxmox-action.write'), (req: HttpRequest, res: HttpResponse) => {
    void targets(RED, req.body ?? {}).then((r) => res.json(r));
  });
};

async function targets(RED: NodeAPI, body: Record<string, unknown>) {
  try {
    const conn = connectionOf(RED, body.connection);
    const settings = proxmoxSettings(conn.config!, (conn.credentials ?? {}) as ProxmoxCredentials);
    return await listProxmoxTargets(settings, body.kind === 'node' ? 'node' : 'guest', settings.timeoutMs * 2 + 5000);
  } catch (err) {
    return { ok: false, message: errorText(err) };
  }
}
