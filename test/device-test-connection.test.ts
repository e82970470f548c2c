/**
 * The UPS device dialog's Test connection: stored secrets go only to the endpoint the deployed node
 * reads. An SNMP v1/v2c community travels in clear in every packet, so a recording UDP socket on
 * another loopback port shows whether it was sent there.
 */
import { strict as assert } from 'node:assert';
import * as dgram from 'node:dgram';
import { deviceConfig, helper, ourNodes } from './util/red';

describe('UPS device Test connection: stored secrets only for the deployed endpoint', function () {
  this.timeout(20000);
  let socket: dgram.Socket;
  let received: Buffer[] = [];

  before(async () => {
    socket = dgram.createSocket('udp4');
    socket.on('message', (m) => received.push(m));
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
    await helper.startServer();
  });
  after(async () => {
    socket.close();
    await helper.stopServer();
  });
  afterEach(async () => {
    received = [];
    await helper.unload();
  });

  const snmp = (over: Record<string, unknown> = {}) =>
    deviceConfig('dev', { source: 'snmp', host: '127.0.0.1', snmpPort: 1, snmpVersion: 'v2c', snmpRetries: 0, timeout: 0.5, ...over });
  const sent = () => Buffer.concat(received).toString('latin1');

  it('SNMP: a test naming another port sends "public", never the stored community', async () => {
    await helper.load(ourNodes, [snmp()], { dev: { community: 'stored-secret-community' } });
    const port = socket.address().port;
    const res = await helper.request().post('/upsorch-device/test').send({ ...snmp({ snmpPort: port }), id: 'dev', community: '__PWRD__' }).expect(200);
    assert.equal(res.body.ok, false);
    assert.ok(received.length > 0, 'the test did reach the other port');
    assert.ok(sent().includes('public'));
    assert.ok(!sent().includes('stored-secret-community'), 'stored community sent to another port');
  });

  it('SNMP: the deployed endpoint is tested with the stored community', async () => {
    const port = socket.address().port;
    await helper.load(ourNodes, [snmp({ snmpPort: port })], { dev: { community: 'stored-secret-community' } });
    const res = await helper.request().post('/upsorch-device/test').send({ ...snmp({ snmpPort: String(port), host: ' 127.0.0.1 ' }), id: 'dev', community: '__PWRD__' }).expect(200);
    assert.equal(res.body.ok, false); // nobody answers on the recording socket
    assert.ok(sent().includes('stored-secret-community'), 'same endpoint (port as text, host with spaces) uses the stored community');
  });

  it('SNMP: changing the version on the same port drops the stored secrets too', async () => {
    const port = socket.address().port;
    await helper.load(ourNodes, [snmp({ snmpPort: port })], { dev: { community: 'stored-secret-community' } });
    await helper.request().post('/upsorch-device/test').send({ ...snmp({ snmpPort: port, snmpVersion: 'v1' }), id: 'dev', community: '__PWRD__' }).expect(200);
    assert.ok(received.length > 0);
    assert.ok(!sent().includes('stored-secret-community'));
  });

  it('an id that is not a UPS device, or no id, gets no stored secrets and still an answer', async () => {
    const port = socket.address().port;
    await helper.load(ourNodes, [snmp({ snmpPort: port })], { dev: { community: 'stored-secret-community' } });
    for (const id of ['nosuch', undefined]) {
      const res = await helper.request().post('/upsorch-device/test').send({ ...snmp({ snmpPort: port }), id, community: '__PWRD__' }).expect(200);
      assert.equal(res.body.ok, false);
    }
    assert.ok(!sent().includes('stored-secret-community'));
  });
});
