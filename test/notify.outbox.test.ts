/**
 * The durable outbox in the real Node-RED runtime: notifications that cannot be sent (the receiving
 * server is down, or fails) are kept on disk and retried, then delivered once each and in order;
 * notifications still queued when Node-RED stops are sent after it starts again (same user dir),
 * and none is sent twice.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { helper, notifyNodes, send, sleep } from './util/red';
import { HttpRecorder } from './peers/notify-services';
import { channel, errorsOfNode, notify, statusesOf, waitForStatusOf } from './util/notify-flow';

describe('notify outbox (Node-RED runtime, real HTTP peer)', function () {
  this.timeout(30000);
  let userDir: string;
  let http: HttpRecorder;
  const outboxFiles = () => {
    const dir = path.join(userDir, 'upsorch-notify', 'ch');
    return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.json')) : [];
  };
  const flow = () => [channel('ch', { url: `${http.url}/hook`, retryMax: 1 }), notify('n', 'ch')];

  beforeEach(async () => {
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-notify-outbox-'));
    helper.settings({ userDir });
    http = await HttpRecorder.start();
  });
  afterEach(async () => {
    await helper.unload();
    await http.stop();
    helper.settings({});
    fs.rmSync(userDir, { recursive: true, force: true });
  });

  it('receiving server down: messages queue (status says so), it comes back: all delivered once, in order', async () => {
    await helper.load(notifyNodes, flow());
    send('n', { payload: 'm1' });
    await http.waitForCount(1);
    await http.down();
    for (const m of ['m2', 'm3', 'm4']) send('n', { payload: m });
    const st = await waitForStatusOf('n', (s) => s.fill === 'red' && /^3 queued/.test(s.text ?? ''), 8000);
    assert.match(st.text ?? '', new RegExp(`^3 queued · failing: cannot reach http://127\\.0\\.0\\.1:${http.port}: connect ECONNREFUSED`));
    assert.equal(outboxFiles().length, 3, 'the three messages are on disk');
    await sleep(2500); // a few retries against the dead port
    await http.up();
    await http.waitForCount(4, 10000);
    await waitForStatusOf('n', (s) => s.fill === 'green' && s.text === 'sent 4', 5000);
    await sleep(1500);
    assert.deepEqual(http.requests.map((r) => r.json.message), ['m1', 'm2', 'm3', 'm4']);
    assert.equal(new Set(http.requests.map((r) => r.headers['idempotency-key'])).size, 4);
    assert.deepEqual(outboxFiles(), []);
    assert.ok(errorsOfNode('ch').length === 0, 'a network outage is a warning, not an error');
  });

  it('a receiver answering 503 for a while: retried with backoff, then delivered once each, in order', async () => {
    let attempts = 0;
    http.responder = () => (++attempts <= 4 ? { status: 503, body: { error: 'maintenance' } } : undefined);
    await helper.load(notifyNodes, flow());
    for (const m of ['a', 'b', 'c']) send('n', { payload: m });
    await waitForStatusOf('n', (s) => s.fill === 'red' && /failing: webhook: 503 Service Unavailable \(maintenance\)/.test(s.text ?? ''), 5000);
    await http.waitForCount(3, 15000);
    await sleep(1000);
    assert.deepEqual(http.requests.map((r) => r.json.message), ['a', 'b', 'c']);
    assert.equal(attempts, 7, '4 failed attempts of the first message, then one each');
  });

  it('Node-RED restarts with messages queued: they are sent after the restart, none twice', async () => {
    await helper.load(notifyNodes, flow());
    send('n', { payload: 'before 1' });
    send('n', { payload: 'before 2' });
    await http.waitForCount(2);
    await waitForStatusOf('n', (s) => s.text === 'sent 2');
    await http.down();
    for (const m of ['queued 1', 'queued 2', 'queued 3']) send('n', { payload: m });
    await waitForStatusOf('n', (s) => /^3 queued/.test(s.text ?? ''), 8000);
    // Node-RED stops (flows unloaded) with three messages in the outbox…
    await helper.unload();
    assert.equal(outboxFiles().length, 3);
    // … the network is back, Node-RED starts again with the same user dir and the same flow.
    await http.up();
    await helper.load(notifyNodes, flow());
    await http.waitForCount(5, 10000);
    await waitForStatusOf('n', (s) => s.text === 'sent 3', 5000);
    await sleep(1500);
    assert.deepEqual(http.requests.map((r) => r.json.message), ['before 1', 'before 2', 'queued 1', 'queued 2', 'queued 3']);
    assert.equal(new Set(http.requests.map((r) => r.headers['idempotency-key'])).size, 5, 'no message sent twice');
    assert.deepEqual(outboxFiles(), []);
    // A second restart sends nothing again.
    await helper.unload();
    await helper.load(notifyNodes, flow());
    await sleep(1500);
    assert.equal(http.requests.length, 5);
    assert.ok(statusesOf('n').every((s) => s.text === 'ready'), JSON.stringify(statusesOf('n')));
  });

  it('a channel deleted from the flows takes its queued messages with it', async () => {
    await http.down();
    await helper.load(notifyNodes, flow());
    send('n', { payload: 'x' });
    await waitForStatusOf('n', (s) => /^1 queued/.test(s.text ?? ''), 5000);
    assert.equal(outboxFiles().length, 1);
    // Node-RED closes a node deleted in a deploy with removed = true.
    await helper.getNode('ch').close(true);
    assert.equal(fs.existsSync(path.join(userDir, 'upsorch-notify', 'ch')), false);
  });
});
