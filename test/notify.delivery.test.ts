/**
 * Notify delivery edge cases in the real Node-RED runtime against real peers on loopback: a mail
 * server refusing one of the recipients, a broken crisis channel, "Send test" and where stored
 * secrets may go, plain SMTP with AUTH, and an HTTPS pin that must fail before the request is sent.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { SMTPServer } from 'smtp-server';
import { helper, notifyNodes, send, sleep } from './util/red';
import { HttpRecorder, TestCert, makeCert } from './peers/notify-services';
import { channel, errorsOfNode, notify, waitForStatusOf, warningsOfNode } from './util/notify-flow';

/** An SMTP server (no TLS, no AUTH) that refuses the addresses in `refuse` at RCPT TO, recording what it accepts. */
async function refusingSmtp(refuse: string[]): Promise<{ port: number; mails: Array<{ to: string[] }>; stop: () => Promise<void> }> {
  const mails: Array<{ to: string[] }> = [];
  const server = new SMTPServer({
    logger: false,
    disabledCommands: ['AUTH', 'STARTTLS'],
    authOptional: true,
    onRcptTo(address, _session, cb) {
      if (refuse.includes(address.address)) {
        const err = new Error('5.1.1 mailbox unavailable') as Error & { responseCode: number };
        err.responseCode = 550;
        return cb(err);
      }
      cb();
    },
    onData(stream, session, cb) {
      stream.on('data', () => undefined);
      stream.on('end', () => {
        mails.push({ to: session.envelope.rcptTo.map((r) => r.address) });
        cb();
      });
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.server.address() as net.AddressInfo).port;
  return { port, mails, stop: () => new Promise<void>((r) => server.close(() => r())) };
}

describe('notify delivery (Node-RED runtime, real peers)', function () {
  this.timeout(30000);
  let userDir: string;

  before(() => {
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-notify-delivery-'));
    helper.settings({ userDir });
  });
  after(() => {
    helper.settings({});
    fs.rmSync(userDir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await helper.unload();
    fs.rmSync(path.join(userDir, 'upsorch-notify'), { recursive: true, force: true });
  });

  describe('email: a server refusing some recipients', () => {
    it('delivers once to the others and warns which address was refused (no re-sending)', async () => {
      const smtp = await refusingSmtp(['nobody@example.org']);
      try {
        await helper.load(notifyNodes, [
          channel('ch', { kind: 'email', smtpHost: '127.0.0.1', smtpPort: smtp.port, smtpSecurity: 'none', from: 'ups@example.org', to: 'ops@example.org, nobody@example.org' }),
          notify('n', 'ch'),
        ]);
        send('n', { payload: 'power check' });
        const st = await waitForStatusOf('n', (s) => /sent 1/.test(s.text ?? ''));
        assert.equal(st.fill, 'yellow');
        assert.match(st.text ?? '', /^sent 1 · the mail server refused nobody@example\.org \(550/);
        // Retries (every second for this channel) would have re-sent it to ops@ by now.
        await sleep(3000);
        assert.deepEqual(smtp.mails, [{ to: ['ops@example.org'] }]);
        assert.ok(warningsOfNode('ch').some((w) => /sent message custom, but the mail server refused nobody@example\.org/.test(w)), warningsOfNode('ch').join('\n'));
      } finally {
        await smtp.stop();
      }
    });

    it('every recipient refused is a failure shown in red, nothing delivered', async () => {
      const smtp = await refusingSmtp(['nobody@example.org']);
      try {
        await helper.load(notifyNodes, [
          channel('ch', { kind: 'email', smtpHost: '127.0.0.1', smtpPort: smtp.port, smtpSecurity: 'none', from: 'ups@example.org', to: 'nobody@example.org' }),
          notify('n', 'ch'),
        ]);
        send('n', { payload: 'power check' });
        const st = await waitForStatusOf('n', (s) => s.fill === 'red');
        assert.match(st.text ?? '', /^1 queued · failing: the SMTP server refused the message, check from and to/);
        assert.equal(smtp.mails.length, 0);
      } finally {
        await smtp.stop();
      }
    });
  });

  describe('"Send test" and the stored secrets', () => {
    let deployed: HttpRecorder;
    let elsewhere: HttpRecorder;
    beforeEach(async () => {
      deployed = await HttpRecorder.start();
      elsewhere = await HttpRecorder.start();
    });
    afterEach(async () => {
      await deployed.stop();
      await elsewhere.stop();
    });

    it('uses the stored bot token only for the deployed Bot API; another host gets nothing unless the token is typed', async () => {
      await helper.load(notifyNodes, [channel('ch', { kind: 'telegram', telegramApi: deployed.url, telegramChat: '42' }), notify('n', 'ch')], { ch: { token: '123:StoredSecret' } });
      const body = { id: 'ch', kind: 'telegram', telegramApi: deployed.url, telegramChat: '42', token: '__PWRD__', timeout: 5 };
      const ok = await helper.request().post('/upsorch-notify-channel/test').send(body).expect(200);
      assert.deepEqual(ok.body, { ok: true, message: 'sent to Telegram chat 42' });
      assert.equal((await deployed.waitForCount(1))[0].path, '/bot123:StoredSecret/sendMessage');
      // The same dialog pointed at another server: the stored token stays home.
      const moved = await helper.request().post('/upsorch-notify-channel/test').send({ ...body, telegramApi: elsewhere.url }).expect(200);
      assert.equal(moved.body.ok, false);
      assert.equal(moved.body.message, 'the destination differs from the deployed channel\'s: type the token again to test it (stored secrets are only sent where the deployed channel sends them)');
      // Turning TLS verification off is a change of where it may end up, too.
      const unverified = await helper.request().post('/upsorch-notify-channel/test').send({ ...body, tlsVerify: false }).expect(200);
      assert.equal(unverified.body.ok, false);
      await sleep(300);
      assert.equal(elsewhere.requests.length, 0);
      assert.equal(deployed.requests.length, 1);
      // A token typed in the dialog may go anywhere: the user has it.
      const typed = await helper.request().post('/upsorch-notify-channel/test').send({ ...body, telegramApi: elsewhere.url, token: '555:Typed' }).expect(200);
      assert.equal(typed.body.ok, true);
      assert.equal((await elsewhere.waitForCount(1))[0].path, '/bot555:Typed/sendMessage');
      assert.doesNotMatch(JSON.stringify([ok.body, moved.body, unverified.body, typed.body]), /StoredSecret|Typed/);
    });
  });

  describe('HTTPS with a pinned certificate', () => {
    let cert: TestCert;
    before(() => {
      cert = makeCert();
    });
    after(() => {
      fs.rmSync(cert.dir, { recursive: true, force: true });
    });

    it('a wrong pin fails the connection before the request is sent: the server receives not a byte', async () => {
      // A TLS server that records everything a client sends after the handshake. TLS 1.2, where the
      // server's side of the handshake completes before the client checks the certificate, so a
      // request written too early would arrive here.
      let received = 0;
      let handshakes = 0;
      const server = tls.createServer({ key: cert.key, cert: cert.cert, maxVersion: 'TLSv1.2' }, (socket) => {
        handshakes++;
        socket.on('data', (d: Buffer) => (received += d.length));
        socket.on('error', () => undefined);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      const port = (server.address() as net.AddressInfo).port;
      try {
        await helper.load(notifyNodes, [
          channel('ch', { url: `https://127.0.0.1:${port}/hook/SeCrEtPath`, secretHeader1: 'Authorization', tlsFingerprint: 'AB'.repeat(32) }),
          notify('n', 'ch'),
        ], { ch: { secretValue1: 'Bearer s3cret' } });
        send('n', { payload: 'power check' });
        const st = await waitForStatusOf('n', (s) => s.fill === 'red');
        assert.match(st.text ?? '', /^1 queued · failing: https:\/\/127\.0\.0\.1:\d+: certificate fingerprint mismatch: the server presented/);
        assert.ok(warningsOfNode('ch').concat(errorsOfNode('ch')).some((w) => /the server presented SHA-256 [0-9A-F]{64}, the pin is (AB){32}/.test(w)));
        // Let it retry a few times (every second here): never a byte of the request.
        await sleep(2500);
        assert.ok(handshakes >= 2, `${handshakes} handshakes`);
        assert.equal(received, 0);
        assert.doesNotMatch(st.text ?? '', /SeCrEtPath|s3cret/);
      } finally {
        await new Promise<void>((r) => server.close(() => r()));
      }
    });

    it('the right pin: the request goes through to the self-signed server', async () => {
      const got: Array<{ url?: string; auth?: string }> = [];
      const server = https.createServer({ key: cert.key, cert: cert.cert }, (req, res) => {
        got.push({ url: req.url, auth: req.headers.authorization });
        req.resume();
        res.end('ok');
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      const port = (server.address() as net.AddressInfo).port;
      try {
        await helper.load(notifyNodes, [
          channel('ch', { url: `https://127.0.0.1:${port}/hook`, secretHeader1: 'Authorization', tlsFingerprint: cert.fingerprint }),
          notify('n', 'ch'),
        ], { ch: { secretValue1: 'Bearer s3cret' } });
        send('n', { payload: 'power check' });
        await waitForStatusOf('n', (s) => s.text === 'sent 1');
        assert.deepEqual(got, [{ url: '/hook', auth: 'Bearer s3cret' }]);
      } finally {
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
      }
    });
  });

  describe('a broken crisis channel', () => {
    let http: HttpRecorder;
    beforeEach(async () => {
      http = await HttpRecorder.start();
    });
    afterEach(async () => {
      await http.stop();
    });

    it('does not silence the main channel: messages go out, the status and log name the crisis channel\'s problem', async () => {
      await helper.load(notifyNodes, [
        channel('main', { url: `${http.url}/main` }),
        channel('phone', { url: 'ftp://phone.example' }),
        notify('n', 'main', { crisisChannel: 'phone' }),
      ]);
      const ready = await waitForStatusOf('n', (s) => s.fill === 'yellow');
      assert.match(ready.text ?? '', /^ready · crisis channel "webhook": invalid notification channel configuration: url/);
      assert.ok(errorsOfNode('n').some((e) => /crisis channel "webhook": invalid .*; sending everything to the main channel until it is fixed/.test(e)), errorsOfNode('n').join('\n'));
      send('n', { payload: 'power check' });
      const [r] = await http.waitForCount(1);
      assert.equal(r.path, '/main');
      assert.equal(r.json.message, 'power check');
      await waitForStatusOf('n', (s) => /^sent 1 · crisis channel/.test(s.text ?? '') && s.fill === 'yellow');
    });
  });
});
