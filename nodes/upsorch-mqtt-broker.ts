/**
 * MQTT broker config node: one mqtt.js connection for every node that uses this broker (the first
 * user connects, the last disconnects), with the package's own availability topic as last will.
 */
import { NodeAPI, HttpRequest, HttpResponse, UNCHANGED_PASSWORD, errorText } from './red';
import { MqttBrokerNode } from './ha-mqtt-types';
import { MqttBroker, testBroker } from '../lib/mqtt/broker';
import { BrokerCredentials, brokerSettings, parseBrokerConfig } from '../lib/mqtt/config';

export = function register(RED: NodeAPI): void {
  function MqttBrokerConfigNode(this: MqttBrokerNode, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    const node = this;
    try {
      node.broker = new MqttBroker(brokerSettings(parseBrokerConfig(raw), node.credentials as BrokerCredentials, node.id));
    } catch (err) {
      node.configError = errorText(err);
      node.error(node.configError);
    }
    node.on('close', (_removed, done) => {
      // Users deregister in their own close handlers; whatever is left is stopped here (bounded: ~5 s).
      (node.broker ? node.broker.dispose() : Promise.resolve()).catch(() => undefined).finally(() => done());
    });
  }

  RED.nodes.registerType('upsorch-mqtt-broker', MqttBrokerConfigNode, {
    credentials: { username: { type: 'text' }, password: { type: 'password' }, key: { type: 'password' } },
  });

  // "Test connection": one connect with the dialog's settings; never echoes a secret.
  RED.httpAdmin.post('/upsorch-mqtt-broker/test', RED.auth.needsPermission('upsorch-mqtt-broker.write'), (req: HttpRequest, res: HttpResponse) => {
    void (async () => {
      const body = req.body ?? {};
      try {
        const stored = typeof body.id === 'string' ? RED.nodes.getCredentials(body.id) ?? {} : {};
        const secret = (k: 'password' | 'key') => (typeof body[k] === 'string' && body[k] !== UNCHANGED_PASSWORD && body[k] !== '' ? (body[k] as string) : stored[k]);
        const creds: BrokerCredentials = {
          username: typeof body.username === 'string' ? body.username : stored.username,
          password: secret('password'),
          key: secret('key'),
        };
        const settings = brokerSettings(parseBrokerConfig(body), creds, typeof body.id === 'string' ? body.id : 'test');
        res.json(await testBroker({ ...settings, connectTimeoutMs: 8000 }));
      } catch (err) {
        res.json({ ok: false, message: errorText(err) });
      }
    })();
  });
};
