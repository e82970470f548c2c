/**
 * libvirt action node: shuts down, starts, stops or suspends KVM/QEMU domains with virsh, on a host
 * reached over SSH or on the Node-RED machine itself.
 */
import { HttpRequest, HttpResponse, Node, NodeAPI, errorText } from './red';
import { ActionNode, ActionSpec, setupActionNode } from './action-node';
import { Operation, withTimeout } from '../lib/actions/contract';
import { LibvirtDriver } from '../lib/libvirt/driver';
import { parseLibvirtConfig } from '../lib/libvirt/config';
import { LocalVirsh, SshVirsh, Virsh } from '../lib/libvirt/virsh';
import { SshHostHandle } from '../lib/ssh/shared';

interface SshHostNode extends Node {
  upsorchSsh?: SshHostHandle;
  configError?: string;
}

function sshHandle(RED: NodeAPI, id: unknown): SshHostHandle {
  const n = typeof id === 'string' && id ? (RED.nodes.getNode(id) as SshHostNode | null) : null;
  if (!n?.upsorchSsh) throw new Error('choose an SSH host (deploy it first to list domains)');
  if (n.configError) throw new Error(`SSH host "${n.name || n.upsorchSsh.label}": ${n.configError}`);
  return n.upsorchSsh;
}

export = function register(RED: NodeAPI): void {
  function LibvirtActionNode(this: ActionNode, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    let spec: ActionSpec | null = null;
    let configError: string | undefined;
    try {
      const cfg = parseLibvirtConfig(raw);
      let makeVirsh: () => Virsh;
      let connectMs = 0;
      if (cfg.connection === 'ssh') {
        const host = sshHandle(RED, cfg.sshHost);
        makeVirsh = () => new SshVirsh(host, cfg.uri);
        connectMs = host.connectTimeoutMs;
      } else {
        makeVirsh = () => new LocalVirsh(cfg.uri);
      }
      const commandMs = cfg.commandTimeout * 1000;
      spec = {
        createDriver: () => new LibvirtDriver(makeVirsh(), { commandTimeoutMs: commandMs, pollMs: cfg.poll * 1000 }),
        operationFor: (direction) => (direction === 'shutdown' ? cfg.shutdownOp : cfg.startupOp) as Operation,
        selection: cfg.selection,
        options: (op) => ({ operation: op, timeoutMs: cfg.timeout * 1000, force: cfg.force, extra: { mode: cfg.mode } }),
        concurrency: cfg.concurrency,
        // Connecting, then up to four listings in parallel and a domstate for odd states.
        connectTimeoutMs: connectMs + 2 * commandMs + 5000,
        // The graceful wait plus shutdown, destroy and final checks, each bounded by the virsh timeout.
        targetTimeoutMs: cfg.timeout * 1000 + 4 * commandMs + 10_000,
        expectedTargets: cfg.selection.names?.length || 4,
      };
    } catch (err) {
      configError = errorText(err);
    }
    setupActionNode(RED, this, spec, configError);
  }

  RED.nodes.registerType('upsorch-libvirt', LibvirtActionNode);

  // The editor's domain picker: what the connection sees, with each domain's state.
  RED.httpAdmin.post('/upsorch-libvirt/domains', RED.auth.needsPermission('upsorch-libvirt.write'), (req: HttpRequest, res: HttpResponse) => {
    void listDomains(RED, req.body ?? {}).then((r) => res.json(r));
  });
};

async function listDomains(RED: NodeAPI, body: Record<string, unknown>): Promise<{ ok: boolean; message: string; domains?: Array<{ name: string; id: string; power: string; state: unknown }> }> {
  let virsh: Virsh | undefined;
  try {
    const uri = typeof body.uri === 'string' ? body.uri.trim() : '';
    if (/[\s\0]/.test(uri)) throw new Error('the libvirt URI must not contain spaces');
    const commandMs = Math.min(Math.max(Number(body.commandTimeout) || 30, 1), 600) * 1000;
    let connectMs = 0;
    if (body.connection === 'local') virsh = new LocalVirsh(uri);
    else {
      const host = sshHandle(RED, body.sshHost);
      connectMs = host.connectTimeoutMs;
      virsh = new SshVirsh(host, uri);
    }
    const driver = new LibvirtDriver(virsh, { commandTimeoutMs: commandMs, pollMs: 1000 });
    const ac = new AbortController();
    const all = await withTimeout('listing domains', connectMs + 2 * commandMs + 5000, ac.signal, (s) => driver.list(s));
    return {
      ok: true,
      message: `${all.length} domain${all.length === 1 ? '' : 's'} on ${virsh.where}`,
      domains: all.map((d) => ({ name: d.name, id: d.id, power: d.power, state: d.info?.state ?? null })),
    };
  } catch (err) {
    return { ok: false, message: errorText(err) };
  } finally {
    await virsh?.close();
  }
}
