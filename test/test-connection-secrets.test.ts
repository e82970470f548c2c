/**
 * "Test connection" of the MQTT broker and Home Assistant server dialogs: the stored password,
 * client key or token is sent only to the endpoint the config node was deployed for. An editor user
 * who points the dialog at another host (here: a second loopback listener that records what
 * arrives) gets the test without the stored secret, and is told to type it again.
 */
import { strict as assert } from 'node:assert';
import * as net from 'node:net';
import { WebSocketServer } from 'ws';
import { haMqttNodes, helper } from './util/red';

const SECRET = 'stored-secret-9f3c';

/** A TCP listener that records every byte a client sends, then hangs up. */
async function recorder(): Promise<{ port: number; received: () => string; close: () => Promise<void> }> {
  const chunks: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('data', (d) => {
      chunks.push(d);
      sock.destroy();
    });
    sock.on('error', () => undefined);
    sock.on('close', () => sockets.delete(sock));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    received: () => Buffer.concat(chunks).toString('latin1'),
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A websocket listener that asks for auth like Home Assistant, records the token, refuses it. */
async function haRecorder(): Promise<{ url: string; tokens: string[]; close: () => Promise<void> }> {
  const tokens: string[] = [];
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  wss.on('connection', (ws) => {
    ws.send(JSON.stringify({ type: 'auth_required', ha_version: '2025.1.0' }));
    ws.on('message', (m) => {
      const msg = JSON.parse(m.toString()) as { access_token?: string };
      tokens.push(String(msg.access_token ?? ''));
      ws.send(JSON.stringify({ type: 'auth_invalid', message: 'Invalid access token or password' }));
      ws.close();
    });
  });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  return {
    url: `http://127.0.0.1:${(wss.address() as net.AddressInfo).port}`,
    tokens,
    close: () => {
      for (const c of wss.clients) c.terminate();
      return new Promise<void>((r) => wss.close(() => r()));
    },
  };
}

const broker = (port: number) => ({
  id: 'broker', type: 'upsorch-mqtt-broker', name: '', host: '127.0.0.1', port, tls: false, tlsVerify: true, tlsFingerprint: '', ca: '', cert: '',
  clientId: '', baseTopic: 'ups-orchestrator', discoveryPrefix: 'homeassistant', keepalive: 60,
});

describe('Test connection sends stored secrets only to the deployed endpoint', function () {
  this.timeout(30000);
  afterEach(async () => {
    await helper.unload();
  });

  it('MQTT broker: the stored password goes to the deployed host, not to another one typed in the dialog', async () => {
    const deployed = await recorder();
    const other = await recorder();
    try {
      await helper.load(haMqttNodes, [broker(deployed.port)], { broker: { username: 'upsuser', password: SECRET } });
      // the deployed endpoint, password unchanged: the stored one is used (so this test can fail)
      await helper.request().post('/upsorch-mqtt-broker/test').send({ ...broker(deployed.port), username: 'upsuser', password: '__PWRD__', key: '' }).expect(200);
      assert.ok(deployed.received().includes(SECRET), 'the deployed broker got the stored password');

      // another port on the same host, password unchanged: the CONNECT carries no password
      const r = await helper.request().post('/upsorch-mqtt-broker/test').send({ ...broker(other.port), username: 'upsuser', password: '__PWRD__', key: '' }).expect(200);
      assert.ok(other.received().includes('MQTT'), 'the other listener got a CONNECT');
      assert.ok(!other.received().includes(SECRET), 'the stored password never reached the other listener');
      assert.equal(r.body.ok, false);
      assert.match(r.body.message, /\(the stored password is sent only to the deployed broker; type it again to test this one\)$/);
      assert.doesNotMatch(JSON.stringify(r.body), new RegExp(SECRET));

      // a password typed in the dialog is used wherever the dialog points
      await helper.request().post('/upsorch-mqtt-broker/test').send({ ...broker(other.port), username: 'upsuser', password: 'typed-now', key: '' }).expect(200);
      assert.ok(other.received().includes('typed-now'));
    } finally {
      await deployed.close();
      await other.close();
    }
  });

  it('MQTT broker: turning TLS verification off for the deployed host withholds the stored password too', async () => {
    const deployed = await recorder();
    try {
      await helper.load(haMqttNodes, [{ ...broker(deployed.port), tls: true }], { broker: { username: 'upsuser', password: SECRET } });
      const r = await helper.request().post('/upsorch-mqtt-broker/test').send({ ...broker(deployed.port), tls: true, tlsVerify: false, username: 'upsuser', password: '__PWRD__' }).expect(200);
      assert.equal(r.body.ok, false);
      assert.match(r.body.message, /the stored password is sent only to the deployed broker/);
    } finally {
      await deployed.close();
    }
  });

  it('Home Assistant server: the stored token goes to the deployed URL only', async () => {
    const deployed = await haRecorder();
    const other = await haRecorder();
    try {
      const ha = (url: string) => ({ id: 'ha', type: 'upsorch-ha-server', name: '', url, tlsVerify: true, tlsFingerprint: '' });
      await helper.load(haMqttNodes, [ha(deployed.url)], { ha: { token: SECRET } });
      // the same peer written as its websocket URL counts as the deployed one
      await helper.request().post('/upsorch-ha-server/test').send({ ...ha(deployed.url.replace('http:', 'ws:') + '/api/websocket'), token: '__PWRD__' }).expect(200);
      assert.deepEqual(deployed.tokens, [SECRET]);

      const r = await helper.request().post('/upsorch-ha-server/test').send({ ...ha(other.url), token: '__PWRD__' }).expect(200);
      assert.deepEqual(r.body, { ok: false, message: 'the stored token is sent only to the deployed Home Assistant URL; enter the token again to test this one' });
      assert.deepEqual(other.tokens, [], 'nothing was sent to the other URL');

      // a test for an id that is not a deployed HA server gets no stored token either
      const foreign = await helper.request().post('/upsorch-ha-server/test').send({ ...ha(deployed.url), id: 'broker', token: '__PWRD__' }).expect(200);
      assert.equal(foreign.body.ok, false);
      assert.deepEqual(deployed.tokens, [SECRET]);
    } finally {
      await deployed.close();
      await other.close();
    }
  });
});
