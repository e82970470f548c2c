/**
 * MQTT broker config with TLS against a real Mosquitto TLS listener (certificates made with
 * openssl by the test peer): CA verification, a pinned fingerprint, a wrong pin (nothing is sent,
 * not even the CONNECT with the password), client certificates; and the Test connection endpoint.
 */
import { strict as assert } from 'node:assert';
import { MosquittoPeer } from './peers/mosquitto';
import { deviceConfig, haMqttNodes, helper, sleep, waitForStatus } from './util/red';

function flow(port: number, over: Record<string, unknown>): Record<string, unknown>[] {
  return [
    {
      id: 'broker', type: 'upsorch-mqtt-broker', name: '', host: '127.0.0.1', port, tls: true, tlsVerify: true, tlsFingerprint: '', ca: '', cert: '',
      clientId: 'upsorch-tls-test', baseTopic: 'ups-orchestrator', discoveryPrefix: 'homeassistant', keepalive: 60, ...over,
    },
    deviceConfig('dev', { name: 'Rack UPS', source: 'sim' }),
    { id: 'pub', type: 'upsorch-publish-state', name: '', broker: 'broker', haServer: '', ups1: 'dev', ups2: '', ups3: '', ups4: '', plan1: '', plan2: '', haEvents: true, wires: [[]] },
  ];
}

const testBody = (port: number, over: Record<string, unknown>) => ({ host: '127.0.0.1', port, tls: true, tlsVerify: true, tlsFingerprint: '', ca: '', cert: '', clientId: '', baseTopic: 'ups-orchestrator', discoveryPrefix: 'homeassistant', keepalive: 60, ...over });

describe('MQTT broker with TLS (real Mosquitto TLS listener)', function () {
  this.timeout(60000);
  let peer: MosquittoPeer;
  before(async () => {
    peer = await MosquittoPeer.start({ tls: {}, users: { upsuser: 'upspass' } });
  });
  after(async () => {
    await peer.dispose();
  });
  afterEach(async () => {
    await helper.unload();
  });

  it('verifies the broker with the CA certificate from the dialog, and publishes', async () => {
    await helper.load(haMqttNodes, flow(peer.port, { ca: peer.tls!.ca }), { broker: { username: 'upsuser', password: 'upspass' } });
    await waitForStatus('pub', (x) => x.fill === 'green', 8000);
    assert.match(peer.log(), /New client connected from 127\.0\.0\.1:\d+ as upsorch-tls-test/);
  });

  it('without the CA the certificate is refused: a clear status', async () => {
    await helper.load(haMqttNodes, flow(peer.port, {}), { broker: { username: 'upsuser', password: 'upspass' } });
    const st = await waitForStatus('pub', (x) => x.fill === 'red', 8000);
    assert.match(st.text ?? '', /^MQTT: TLS: .*(self.signed|unable to (get|verify))/i);
  });

  it('a pinned SHA-256 fingerprint replaces the CA; a wrong pin sends nothing, not even the CONNECT', async () => {
    const ok = await helper.request().post('/upsorch-mqtt-broker/test').send(testBody(peer.port, { tlsFingerprint: peer.tls!.serverFingerprint256, username: 'upsuser', password: 'upspass' })).expect(200);
    assert.deepEqual(ok.body, { ok: true, message: `connected to mqtts://127.0.0.1:${peer.port}` });

    const before = peer.log();
    const wrong = 'AA:'.repeat(31) + 'AA';
    await helper.load(haMqttNodes, flow(peer.port, { tlsFingerprint: wrong, clientId: 'upsorch-wrong-pin' }), { broker: { username: 'upsuser', password: 'upspass' } });
    const st = await waitForStatus('pub', (x) => x.fill === 'red', 8000);
    assert.match(st.text ?? '', /^MQTT: certificate fingerprint mismatch: the server presented SHA-256 /);
    const n = helper.getNode('pub');
    const warned = n.warn.getCalls().filter((c: any) => c.thisValue === n).map((c: any) => String(c.args[0]));
    assert.ok(warned.some((w: string) => /^MQTT: certificate fingerprint mismatch: the server presented SHA-256 [0-9A-F]{64}, the pin is A{64}$/.test(w)), warned.join(' | '));
    await sleep(300);
    assert.doesNotMatch(peer.log().slice(before.length), /upsorch-wrong-pin/, 'the broker never saw our CONNECT');
  });

  it('Test connection reports a wrong password without echoing it', async () => {
    const r = await helper.request().post('/upsorch-mqtt-broker/test').send(testBody(peer.port, { ca: peer.tls!.ca, username: 'upsuser', password: 'not-the-password' })).expect(200);
    assert.deepEqual(r.body, { ok: false, message: 'refused: not authorized (check username and password)' });
  });
});

describe('MQTT broker with TLS client certificates (real Mosquitto, require_certificate)', function () {
  this.timeout(60000);
  let peer: MosquittoPeer;
  before(async () => {
    peer = await MosquittoPeer.start({ tls: { requireClientCert: true } });
  });
  after(async () => {
    await peer.dispose();
  });
  afterEach(async () => {
    await helper.unload();
  });

  it('connects with the client certificate and key; refused without', async () => {
    await helper.load(haMqttNodes, flow(peer.port, { ca: peer.tls!.ca, cert: peer.tls!.clientCert }), { broker: { key: peer.tls!.clientKey } });
    await waitForStatus('pub', (x) => x.fill === 'green', 8000);
    let retained = 0;
    for (let i = 0; i < 10 && retained < 12; i++) retained = await MqttObserverTls.retainedCount(peer);
    assert.equal(retained, 12, 'the UPS configs, read back over TLS with the client certificate');
    const without = await helper.request().post('/upsorch-mqtt-broker/test').send(testBody(peer.port, { ca: peer.tls!.ca })).expect(200);
    assert.equal(without.body.ok, false);
  });

  it('a client certificate without its key is a configuration error', async () => {
    await helper.load(haMqttNodes, flow(peer.port, { ca: peer.tls!.ca, cert: peer.tls!.clientCert }));
    const st = await waitForStatus('pub', (x) => x.fill === 'red', 5000);
    assert.match(st.text ?? '', /a client certificate needs its private key/);
  });
});

/** Count retained discovery configs over a TLS connection with the client certificate. */
const MqttObserverTls = {
  async retainedCount(peer: MosquittoPeer): Promise<number> {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { connect } = require('mqtt') as typeof import('mqtt');
    const c = connect({ host: '127.0.0.1', port: peer.port, protocol: 'mqtts', ca: peer.tls!.ca, cert: peer.tls!.clientCert, key: peer.tls!.clientKey, reconnectPeriod: 0 });
    let n = 0;
    try {
      await new Promise<void>((resolve, reject) => {
        c.once('connect', () => resolve());
        c.once('error', reject);
      });
      c.on('message', (_t, _p, packet) => packet.retain && n++);
      await new Promise<void>((resolve) => c.subscribe('homeassistant/#', () => resolve()));
      await sleep(500);
    } finally {
      c.end(true);
    }
    return n;
  },
};
