/**
 * Home Assistant server config node: one websocket connection (home-assistant-js-websocket over
 * `ws`) for everything that talks to this Home Assistant: publish state (events), the UPS source
 * reading HA entities, notify (`node.client.callService(domain, service, data, target)`).
 */
import { NodeAPI, HttpRequest, HttpResponse, UNCHANGED_PASSWORD, errorText, rememberEndpoint, storedCredentials } from './red';
import { HaServerNode } from './ha-mqtt-types';
import { HaClient } from '../lib/ha/client';
import { HA_ENDPOINT_KEYS, haClientOptions, haEndpoint, parseHaServerConfig } from '../lib/ha/config';

const TYPE = 'upsorch-ha-server';
import { registerHaServer, unregisterHaServer } from '../lib/ha/registry';

export = function register(RED: NodeAPI): void {
  function HaServerConfigNode(this: HaServerNode, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    const node = this;
    try {
      const config = parseHaServerConfig(raw);
      rememberEndpoint(node, haEndpoint(config), HA_ENDPOINT_KEYS);
      node.client = new HaClient(haClientOptions(config, node.credentials.token));
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

  RED.nodes.registerType(TYPE, HaServerConfigNode, {
    credentials: { token: { type: 'password' } },
  });

  // "Test connection": connect and authenticate with the dialog's settings, report HA's version and
  // how many entities it has; the token never travels back. The stored token is used only for the
  // Home Assistant it was deployed for, never for a URL typed in the dialog.
  RED.httpAdmin.post(`/${TYPE}/test`, RED.auth.needsPermission(`${TYPE}.write`), (req: HttpRequest, res: HttpResponse) => {
    void (async () => {
      const body = req.body ?? {};
      let client: HaClient | undefined;
      try {
        const config = parseHaServerConfig(body);
        const stored = storedCredentials(RED, { id: body.id, ...haEndpoint(config) }, TYPE, HA_ENDPOINT_KEYS);
        const typed = typeof body.token === 'string' && body.token !== '' && body.token !== UNCHANGED_PASSWORD;
        const token = typed ? (body.token as string) : stored.token;
        if (!token && body.token === UNCHANGED_PASSWORD) {
          res.json({ ok: false, message: 'the stored token is sent only to the deployed Home Assistant URL; enter the token again to test this one' });
          return;
        }
        client = new HaClient({ ...haClientOptions(config, token), backoffMaxMs: 60_000, pingIntervalMs: 0 });
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
