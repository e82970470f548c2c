/**
 * Home Assistant server config node: one websocket connection (home-assistant-js-websocket over
 * `ws`) for everything that talks to this Home Assistant: publish state (events), the UPS source
 * reading HA entities, notify (`node.client.callService(domain, service, data, target)`).
 */
import { NodeAPI, HttpRequest, HttpResponse, UNCHANGED_PASSWORD, errorText } from './red';
import { HaServerNode } from './ha-mqtt-types';
import { HaClient } from '../lib/ha/client';
import { haClientOptions, parseHaServerConfig } from '../lib/ha/config';
import { registerHaServer, unregisterHaServer } from '../lib/ha/registry';

export = function register(RED: NodeAPI): void {
  function HaServerConfigNode(this: HaServerNode, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    const node = this;
    try {
      node.client = new HaClient(haClientOptions(parseHaServerConfig(raw), node.credentials.token));
      registerHaServer(node.id, node.client);
    } catch (err) {
      node.configError = errorText(err);
      node.error(node.configError);
    }
    node.on('close', (_removed, done) => {
      const client = node.client;
      if (!client) return done();
      unregisterHaServer(node.id, client);
      client.dispose().catch(() => undefined).finally(() => done());
    });
  }

  RED.nodes.registerType('upsorch-ha-server', HaServerConfigNode, {
    credentials: { token: { type: 'password' } },
  });

  // "Test connection": connect and authenticate with the dialog's settings, report HA's version and
  // how many entities it has; the token never travels back.
  RED.httpAdmin.post('/upsorch-ha-server/test', RED.auth.needsPermission('upsorch-ha-server.write'), (req: HttpRequest, res: HttpResponse) => {
    void (async () => {
      const body = req.body ?? {};
      let client: HaClient | undefined;
      try {
        const stored = typeof body.id === 'string' ? RED.nodes.getCredentials(body.id) ?? {} : {};
        const token = typeof body.token === 'string' && body.token !== '' && body.token !== UNCHANGED_PASSWORD ? body.token : stored.token;
        client = new HaClient({ ...haClientOptions(parseHaServerConfig(body), token), backoffMaxMs: 60_000, pingIntervalMs: 0 });
        await client.whenConnected(10_000, true);
        const states = await client.getStates();
        res.json({ ok: true, message: `${client.status.text}; ${states.length} entities`, version: client.haVersion });
      } catch (err) {
        res.json({ ok: false, message: errorText(err) });
      } finally {
        await client?.stop();
      }
    })();
  });
};
