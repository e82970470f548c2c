/**
 * MQTT broker config node: one mqtt.js connection for every node that uses this broker (the first
 * user connects, the last disconnects), with the package's own availability topic as last will.
 */
import { NodeAPI, HttpRequest, HttpResponse, UNCHANGED_PASSWORD, errorText, rememberEndpoint, storedCredentials } from './red';
import { MqttBrokerNode } from './ha-mqtt-types';
import { MqttBroker, testBroker } from '../lib/mqtt/broker';
import { BROKER_ENDPOINT_KEYS, BrokerCredentials, brokerEndpoint, brokerSettings, parseBrokerConfig } from '../lib/mqtt/config';

const TYPE = 'upsorch-mqtt-broker';

export = function register(RED: NodeAPI): void {
  function MqttBrokerConfigNode(this: MqttBrokerNode, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    const node = this;
    try {
      const config = parseBrokerConfig(raw);
      rememberEndpoint(node, brokerEndpoint(config), BROKER_ENDPOINT_KEYS);
      node.broker = new MqttBroker(brokerSettings(config, node.credentials as BrokerCredentials, node.id));
    } catch (err) {
      node.configError = errorText(err);
      node.error(node.configError);
    }
    node.on('close', (_removed, done) => {
      // Users deregister in their own close handlers; whatever is left is stopped here (bounded: ~5 s).
      (node.broker ? node.broker.dispose() : Promise.resolve()).catch(() => undefined).finally(() => done());
    });
  }

  RED.nodes.registerType(TYPE, MqttBrokerConfigNode, {
    credentials: { username: { type: 'text' }, password: { type: 'password' }, key: { type: 'password' } },
  });

  // "Test connection": one connect with the dialog's settings; never echoes a secret. The stored
  // password and key are used only for the broker they were deployed for: an editor user must not be
  // able to send them to a host of their choosing.
  RED.httpAdmin.post(`/${TYPE}/test`, RED.auth.needsPermission(`${TYPE}.write`), (req: HttpRequest, res: HttpResponse) => {
    void (async () => {
      const body = req.body ?? {};
      try {
        const config = parseBrokerConfig(body);
        const stored = storedCredentials(RED, { id: body.id, ...brokerEndpoint(config) }, TYPE, BROKER_ENDPOINT_KEYS);
        const typed = (k: 'password' | 'key') => typeof body[k] === 'string' && body[k] !== UNCHANGED_PASSWORD && body[k] !== '';
        const secret = (k: 'password' | 'key') => (typed(k) ? (body[k] as string) : stored[k]);
        const creds: BrokerCredentials = {
          username: typeof body.username === 'string' ? body.username : stored.username,
          password: secret('password'),
          key: secret('key'),
        };
        const withheld = (['password', 'key'] as const).filter((k) => body[k] === UNCHANGED_PASSWORD && !stored[k]);
        const settings = brokerSettings(config, creds, typeof body.id === 'string' ? body.id : 'test');
        const r = await testBroker({ ...settings, connectTimeoutMs: 8000 });
        res.json(withheld.length ? { ...r, message: `${r.message} (the stored ${withheld.join(' and ')} ${withheld.length > 1 ? 'are' : 'is'} sent only to the deployed broker; type ${withheld.length > 1 ? 'them' : 'it'} again to test this one)` } : r);
      } catch (err) {
        res.json({ ok: false, message: errorText(err) });
      }
    })();
  });
};
