/**
 * Proxmox VE connection config node: one HTTPS client (keep-alive, certificate checks, API token)
 * shared by every Proxmox action that uses it, closed after the last user or when the flow stops.
 */
import { HttpRequest, HttpResponse, NodeAPI, UNCHANGED_PASSWORD, errorText, rememberEndpoint, storedCredentials } from './red';
import { ProxmoxConnectionNode } from './hypervisor-types';
import { PROXMOX_ENDPOINT_KEYS, ProxmoxCredentials, parseProxmoxConnection, proxmoxEndpoint, proxmoxSettings, testProxmox } from '../lib/proxmox/config';
import { ProxmoxClient } from '../lib/proxmox/client';

export = function register(RED: NodeAPI): void {
  function ProxmoxConnection(this: ProxmoxConnectionNode, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    const node = this;
    let client: ProxmoxClient | null = null;
    const users = new Set<string>();
    try {
      node.config = parseProxmoxConnection(raw);
      // The parsed config, TLS checks included: a Test connection gets the stored secret only for this peer, checked this way.
      rememberEndpoint(node, proxmoxEndpoint(node.config), PROXMOX_ENDPOINT_KEYS);
    } catch (err) {
      node.configError = errorText(err);
      node.error(node.configError);
    }

    node.upsorchClient = () => {
      if (!node.config) throw new Error(node.configError ?? 'invalid Proxmox connection');
      client ??= new ProxmoxClient(proxmoxSettings(node.config, (node.credentials ?? {}) as ProxmoxCredentials));
      return client;
    };
    node.upsorchRegister = (user) => {
      users.add(user);
    };
    node.upsorchDeregister = async (user) => {
      users.delete(user);
      if (users.size === 0 && client) {
        client.close();
        client = null;
      }
    };

    node.on('close', (_removed, done) => {
      client?.close();
      client = null;
      users.clear();
      done();
    });
  }

  RED.nodes.registerType('upsorch-proxmox', ProxmoxConnection, {
    credentials: { secret: { type: 'password' } },
  });

  RED.httpAdmin.post('/upsorch-proxmox/test', RED.auth.needsPermission('upsorch-proxmox.write'), (req: HttpRequest, res: HttpResponse) => {
    void test(RED, req.body ?? {}).then((r) => res.json(r));
  });
};

async function test(RED: NodeAPI, body: Record<string, unknown>) {
  try {
    const config = parseProxmoxConnection(body);
    const stored = storedCredentials(RED, { id: body.id, ...proxmoxEndpoint(config) }, 'upsorch-proxmox', PROXMOX_ENDPOINT_KEYS);
    const secret = typeof body.secret === 'string' && body.secret !== UNCHANGED_PASSWORD && body.secret ? body.secret : stored.secret;
    return await testProxmox(proxmoxSettings(config, { secret }), config.timeout * 1000 * 4 + 5000);
  } catch (err) {
    return { ok: false, message: errorText(err) };
  }
}
