/**
 * vSphere connection config node (vCenter or standalone ESXi): one logged-in SOAP session shared
 * by every vSphere action that uses it, opened with the first run, reused (cookie) between runs,
 * logged out after the last user is gone or when the flow stops.
 */
import { HttpRequest, HttpResponse, NodeAPI, UNCHANGED_PASSWORD, errorText, rememberEndpoint, storedCredentials } from './red';
import { VsphereConnectionNode } from './hypervisor-types';
import { VSPHERE_ENDPOINT_KEYS, VsphereCredentials, parseVsphereConnection, testVsphere, vsphereEndpoint, vsphereSettings } from '../lib/vsphere/config';
import { VsphereSession } from '../lib/vsphere/session';

export = function register(RED: NodeAPI): void {
  function VsphereConnection(this: VsphereConnectionNode, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    const node = this;
    let session: VsphereSession | null = null;
    const users = new Set<string>();
    try {
      node.config = parseVsphereConnection(raw);
      // The parsed config, TLS checks included: a Test connection gets the stored password only for this peer, checked this way.
      rememberEndpoint(node, vsphereEndpoint(node.config), VSPHERE_ENDPOINT_KEYS);
    } catch (err) {
      node.configError = errorText(err);
      node.error(node.configError);
    }

    node.upsorchClient = () => {
      if (!node.config) throw new Error(node.configError ?? 'invalid vSphere connection');
      session ??= new VsphereSession(vsphereSettings(node.config, (node.credentials ?? {}) as VsphereCredentials));
      return session;
    };
    node.upsorchRegister = (user) => {
      users.add(user);
    };
    node.upsorchDeregister = async (user) => {
      users.delete(user);
      if (users.size === 0 && session) {
        const s = session;
        session = null;
        await s.close();
      }
    };

    node.on('close', (_removed, done) => {
      const s = session;
      session = null;
      users.clear();
      // Logout is bounded to a few seconds inside close().
      void (s ? s.close() : Promise.resolve()).finally(() => done());
    });
  }

  RED.nodes.registerType('upsorch-vsphere', VsphereConnection, {
    credentials: { username: { type: 'text' }, password: { type: 'password' } },
  });

  RED.httpAdmin.post('/upsorch-vsphere/test', RED.auth.needsPermission('upsorch-vsphere.write'), (req: HttpRequest, res: HttpResponse) => {
    void test(RED, req.body ?? {}).then((r) => res.json(r));
  });
};

async function test(RED: NodeAPI, body: Record<string, unknown>) {
  try {
    const config = parseVsphereConnection(body);
    const stored = storedCredentials(RED, { id: body.id, ...vsphereEndpoint(config) }, 'upsorch-vsphere', VSPHERE_ENDPOINT_KEYS);
    const username = typeof body.username === 'string' && body.username ? body.username : stored.username;
    // The stored password belongs to the stored user at the deployed address, nobody else.
    const typed = typeof body.password === 'string' && body.password !== UNCHANGED_PASSWORD ? body.password : undefined;
    const creds: VsphereCredentials = { username, password: typed ?? (username === stored.username ? stored.password : undefined) };
    return await testVsphere(vsphereSettings(config, creds), config.timeout * 1000 * 4 + 5000);
  } catch (err) {
    return { ok: false, message: errorText(err) };
  }
}
