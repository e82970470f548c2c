/**
 * Notify in the real Node-RED runtime, one test per channel against a real peer on loopback: a
 * recording HTTP server in the roles of webhook receiver, Discord, ntfy and the Telegram Bot API,
 * and an SMTP server (npm smtp-server) with and without AUTH, STARTTLS and implicit TLS on a
 * certificate made by openssl. Asserts the payloads the services document and what a user sees.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Collector, deviceConfig, helper, notifyNodes, send, sleep, upsIn } from './util/red';
import { HttpRecorder, SmtpPeer, TestCert, makeCert } from './peers/notify-services';
import { channel, errorsOfNode, notify, visibleOf, waitForStatusOf } from './util/notify-flow';

describe('notify channels (Node-RED runtime, real peers)', function () {
  this.timeout(30000);
  let userDir: string;
  let http: HttpRecorder;

  before(() => {
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-notify-userdir-'));
    helper.settings({ userDir });
  });
  after(() => {
    helper.settings({});
    fs.rmSync(userDir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    http = await HttpRecorder.start();
  });
  afterEach(async () => {
    await helper.unload();
    await http.stop();
    // Each test starts with empty outboxes (what one test left queued would be sent in the next).
    fs.rmSync(path.join(userDir, 'upsorch-notify'), { recursive: true, force: true });
  });

  describe('webhook', () => {
    it('a UPS going on battery reaches the webhook as JSON, with custom and secret headers', async () => {
      await helper.load(notifyNodes, [
        deviceConfig('dev', { name: 'rack', pollInterval: 0.2, pollIntervalOnBattery: 0.2 }),
        ...upsIn('in', 'dev', { wires: [['in-state'], ['in-events', 'n']] }),
        channel('ch', { url: `${http.url}/hooks/ups?src=nr`, headers: 'X-Site: lab\nX-Env: test', secretHeader1: 'Authorization', secretHeader2: 'X-Api-Key' }),
        notify('n', 'ch'),
      ], { ch: { secretValue1: 'Bearer s3cret-token', secretValue2: 'k3y-value' } });
      const events = new Collector('in-events');
      await sleep(300);
      send('in', { topic: 'power-lost' });
      await events.waitFor((m) => m.topic === 'ONBATT', 5000);
      const [req] = await http.waitForCount(1);
      assert.equal(req.method, 'POST');
      assert.equal(req.path, '/hooks/ups?src=nr');
      assert.match(String(req.headers['content-type']), /^application\/json/);
      assert.equal(req.headers['x-site'], 'lab');
      assert.equal(req.headers['x-env'], 'test');
      assert.equal(req.headers.authorization, 'Bearer s3cret-token');
      assert.equal(req.headers['x-api-key'], 'k3y-value');
      assert.match(String(req.headers['idempotency-key']), /^[0-9a-f-]{36}$/);
      const b = req.json;
      assert.equal(b.event, 'ONBATT');
      assert.equal(b.kind, 'ups-event');
      assert.equal(b.severity, 'warning');
      assert.equal(b.title, 'UPS rack: on battery');
      assert.match(b.message, /^UPS rack lost mains power at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d and is running on battery\.\nCharge 100% · runtime 1 h 00 min · load 25%$/);
      assert.equal(b.state.ups, 'rack');
      assert.equal(b.state.onBattery, true);
      assert.deepEqual(Object.keys(b.facts), ['UPS', 'Power', 'Charge', 'Runtime', 'Load', 'On battery for']);
      await waitForStatusOf('n', (s) => s.fill === 'green' && s.text === 'sent 1');
      const shown = visibleOf(['n', 'ch']);
      assert.doesNotMatch(shown, /s3cret-token|k3y-value/);
      // Secrets never reach the outbox on disk either.
      const disk = fs.readdirSync(path.join(userDir, 'upsorch-notify', 'ch')).map((f) => fs.readFileSync(path.join(userDir, 'upsorch-notify', 'ch', f), 'utf8')).join('');
      assert.doesNotMatch(disk, /s3cret-token|k3y-value/);
    });

    it('a user body template gets JSON-escaped values; custom messages with title and severity', async () => {
      const tpl = '{"text": "{{title}}: {{text}}", "level": "{{severity}}", "at": {{ts}}}';
      await helper.load(notifyNodes, [channel('ch', { url: `${http.url}/hook`, method: 'PUT', bodyTemplate: tpl }), notify('n', 'ch')]);
      send('n', { payload: { title: 'Rack "A"', message: 'line 1\nline 2 \\ done', severity: 'critical' } });
      const [req] = await http.waitForCount(1);
      assert.equal(req.method, 'PUT');
      assert.deepEqual(Object.keys(req.json), ['text', 'level', 'at']);
      assert.equal(req.json.text, 'Rack "A": line 1\nline 2 \\ done');
      assert.equal(req.json.level, 'critical');
      assert.equal(typeof req.json.at, 'number');
    });

    it('template overrides per event replace the defaults', async () => {
      await helper.load(notifyNodes, [
        channel('ch', { url: `${http.url}/hook` }),
        notify('n', 'ch', { templates: [{ event: 'custom', title: 'ALERT {{title}}', body: 'msg={{message}} sev={{severity}}' }] }),
      ]);
      send('n', { topic: 'Lab', payload: 'hello' });
      const [req] = await http.waitForCount(1);
      assert.equal(req.json.title, 'ALERT Lab');
      assert.equal(req.json.message, 'msg=hello sev=info');
    });

    it('an input it cannot read is an error for Catch nodes and a red status', async () => {
      await helper.load(notifyNodes, [channel('ch', { url: `${http.url}/hook` }), notify('n', 'ch')]);
      send('n', { payload: 42 });
      await waitForStatusOf('n', (s) => s.fill === 'red' && /^expected a UPS event/.test(s.text ?? ''));
      assert.ok(errorsOfNode('n').some((e) => /expected a UPS event \(from a UPS in node\)/.test(e)));
    });

    it('an invalid channel gives a red status with the reason, no crash', async () => {
      await helper.load(notifyNodes, [channel('ch', { url: 'ftp://x', headers: 'no colon here' }), notify('n', 'ch')]);
      const st = await waitForStatusOf('n', (s) => s.fill === 'red');
      assert.match(st.text ?? '', /invalid notification channel configuration: url: the webhook URL must be an http/);
      assert.ok(errorsOfNode('ch').join(' ').includes('headers: header line 1 is not "Name: value"'));
    });
  });

  describe('Discord', () => {
    it('posts one colour-coded embed with the facts as fields; the webhook URL never shows', async () => {
      const secretPath = '/api/webhooks/123456/AbCdEf-SeCrEt';
      await helper.load(notifyNodes, [
        deviceConfig('dev', { name: 'rack', pollInterval: 0.2, pollIntervalOnBattery: 0.2 }),
        ...upsIn('in', 'dev', { wires: [['in-state'], ['in-events', 'n']] }),
        channel('ch', { kind: 'discord', discordUsername: 'UPS bot' }),
        notify('n', 'ch'),
      ], { ch: { webhookUrl: http.url + secretPath } });
      await sleep(300);
      send('in', { topic: 'power-lost' });
      await http.waitForCount(1);
      send('in', { topic: 'power-restored' });
      const [onbatt, online] = await http.waitForCount(2);
      assert.equal(onbatt.path, secretPath + '?wait=true');
      const body = onbatt.json;
      assert.equal(body.username, 'UPS bot');
      assert.deepEqual(body.allowed_mentions, { parse: [] });
      assert.equal(body.embeds.length, 1);
      const e = body.embeds[0];
      assert.equal(e.title, 'UPS rack: on battery');
      assert.equal(e.color, 0xf39c12, 'warning = orange');
      assert.match(e.description, /^UPS rack lost mains power at .* and is running on battery\.\nCharge 100% · runtime 1 h 00 min · load 25%$/);
      assert.match(e.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.deepEqual(e.fields.slice(0, 4), [
        { name: 'UPS', value: 'rack', inline: true },
        { name: 'Power', value: 'on battery', inline: true },
        { name: 'Charge', value: '100%', inline: true },
        { name: 'Runtime', value: '1 h 00 min', inline: true },
      ]);
      assert.equal(online.json.embeds[0].color, 0x2ecc71, 'resolved = green');
      assert.equal(online.json.embeds[0].title, 'UPS rack: mains power restored');
      await waitForStatusOf('n', (s) => s.text === 'sent 2');
      assert.doesNotMatch(visibleOf(['n', 'ch']), /SeCrEt/);
    });

    it('Discord refusing the webhook (404 Unknown Webhook) is a settings problem shown on the node, without the URL', async () => {
      http.responder = () => ({ status: 404, body: { message: 'Unknown Webhook', code: 10015 } });
      await helper.load(notifyNodes, [channel('ch', { kind: 'discord' }), notify('n', 'ch')], { ch: { webhookUrl: `${http.url}/api/webhooks/1/SeCrEt` } });
      send('n', { payload: 'hello' });
      const st = await waitForStatusOf('n', (s) => s.fill === 'red', 5000);
      assert.equal(st.text, '1 queued · failing: Discord: 404 Not Found, the webhook URL is wrong or the webhook was deleted (Un…');
      assert.ok(errorsOfNode('ch').includes('Discord: cannot send (1 queued, retrying): Discord: 404 Not Found, the webhook URL is wrong or the webhook was deleted (Unknown Webhook)'), errorsOfNode('ch').join('\n'));
      assert.doesNotMatch(visibleOf(['n', 'ch']), /SeCrEt/);
    });
  });

  describe('ntfy', () => {
    it('publishes JSON to the server root with topic, title, message, priority and tags; token as Bearer', async () => {
      await helper.load(notifyNodes, [
        channel('ch', { kind: 'ntfy', ntfyServer: http.url, ntfyTopic: 'ups-alerts', ntfyPriority: 'auto' }),
        notify('n', 'ch'),
      ], { ch: { token: 'tk_secret123' } });
      send('n', { payload: { title: 'Battery', message: 'runtime 4 min', severity: 'critical' } });
      send('n', { payload: 'just info' });
      const [a, b] = await http.waitForCount(2);
      assert.equal(a.method, 'POST');
      assert.equal(a.path, '/');
      assert.equal(a.headers.authorization, 'Bearer tk_secret123');
      assert.deepEqual(a.json, { topic: 'ups-alerts', title: 'Battery', message: 'runtime 4 min', priority: 5, tags: ['rotating_light', 'ups'] });
      assert.deepEqual(b.json, { topic: 'ups-alerts', title: 'UPS orchestrator', message: 'just info', priority: 3, tags: ['information_source', 'ups'] });
      assert.doesNotMatch(visibleOf(['n', 'ch']), /tk_secret123/);
    });

    it('a fixed priority overrides the severity', async () => {
      await helper.load(notifyNodes, [channel('ch', { kind: 'ntfy', ntfyServer: http.url + '/', ntfyTopic: 't', ntfyPriority: '2' }), notify('n', 'ch')]);
      send('n', { payload: { message: 'x', severity: 'critical' } });
      const [a] = await http.waitForCount(1);
      assert.equal(a.json.priority, 2);
      assert.equal(a.headers.authorization, undefined);
    });
  });

  describe('Telegram', () => {
    it('calls sendMessage on the configured API base with chat_id and HTML text', async () => {
      await helper.load(notifyNodes, [
        channel('ch', { kind: 'telegram', telegramApi: http.url, telegramChat: '-1001234567890' }),
        notify('n', 'ch'),
      ], { ch: { token: '123456:ABC-def_ghi' } });
      send('n', { payload: { title: 'Rack <A> & B', message: 'charge 40% < 50%', severity: 'warning' } });
      const [r] = await http.waitForCount(1);
      assert.equal(r.path, '/bot123456:ABC-def_ghi/sendMessage');
      assert.deepEqual(r.json, {
        chat_id: -1001234567890,
        text: '<b>Rack &lt;A&gt; &amp; B</b>\ncharge 40% &lt; 50%',
        parse_mode: 'HTML',
        disable_notification: false,
        link_preview_options: { is_disabled: true },
      });
      await waitForStatusOf('n', (s) => s.text === 'sent 1');
    });

    it('a wrong bot token: red status says so, the token is not shown, the message stays queued', async () => {
      http.responder = () => ({ status: 401, body: { ok: false, error_code: 401, description: 'Unauthorized' } });
      await helper.load(notifyNodes, [channel('ch', { kind: 'telegram', telegramApi: http.url, telegramChat: '42' }), notify('n', 'ch')], { ch: { token: '999:WrongToken' } });
      send('n', { payload: 'hello' });
      const st = await waitForStatusOf('n', (s) => s.fill === 'red');
      assert.equal(st.text, '1 queued · failing: Telegram: 401 Unauthorized, check the credentials (Unauthorized)');
      assert.doesNotMatch(visibleOf(['n', 'ch']), /WrongToken/);
    });
  });

  describe('email (SMTP)', function () {
    let cert: TestCert;
    let smtp: SmtpPeer | undefined;
    before(() => {
      cert = makeCert();
    });
    after(() => fs.rmSync(cert.dir, { recursive: true, force: true }));
    afterEach(async () => {
      await smtp?.stop();
      smtp = undefined;
    });

    it('without AUTH or TLS (a trusted relay): right subject, body, sender and recipients', async () => {
      smtp = await SmtpPeer.start();
      await helper.load(notifyNodes, [
        deviceConfig('dev', { name: 'rack', pollInterval: 0.2, pollIntervalOnBattery: 0.2 }),
        ...upsIn('in', 'dev', { wires: [['in-state'], ['in-events', 'n']] }),
        channel('ch', { kind: 'email', smtpHost: '127.0.0.1', smtpPort: smtp.port, smtpSecurity: 'none', from: 'UPS <ups@example.org>', to: 'ops@example.org, boss@example.org' }),
        notify('n', 'ch'),
      ]);
      await sleep(300);
      send('in', { topic: 'power-lost' });
      const [mail] = await smtp.waitForCount(1);
      assert.equal(mail.from, 'ups@example.org');
      assert.deepEqual(mail.to, ['ops@example.org', 'boss@example.org']);
      assert.equal(mail.subject, 'UPS rack: on battery');
      assert.match(mail.headers.to, /ops@example\.org, boss@example\.org/);
      assert.match(mail.text, /^UPS rack lost mains power at .* and is running on battery\.\nCharge 100% · runtime 1 h 00 min · load 25%\n\n-- \nUPS orchestrator \(Node-RED\)\n$/);
      assert.equal(mail.user, null);
      await waitForStatusOf('n', (s) => s.text === 'sent 1');
    });

    it('STARTTLS with AUTH on a self-signed certificate pinned by its SHA-256 fingerprint', async () => {
      smtp = await SmtpPeer.start({ starttls: cert, auth: { user: 'alerts', pass: 'p@ss w0rd' } });
      await helper.load(notifyNodes, [
        channel('ch', { kind: 'email', smtpHost: '127.0.0.1', smtpPort: smtp.port, smtpSecurity: 'starttls', tlsFingerprint: cert.fingerprint, from: 'ups@example.org', to: 'ops@example.org' }),
        notify('n', 'ch'),
      ], { ch: { user: 'alerts', password: 'p@ss w0rd' } });
      send('n', { payload: { title: 'Über-Test ✓', message: 'Grüße · 100%' } });
      const [mail] = await smtp.waitForCount(1);
      assert.equal(mail.secure, true, 'the session was upgraded with STARTTLS');
      assert.equal(mail.user, 'alerts');
      assert.equal(mail.subject, 'Über-Test ✓');
      assert.match(mail.text, /^Grüße · 100%\n/);
      assert.doesNotMatch(visibleOf(['n', 'ch']), /p@ss w0rd/);
    });

    it('implicit TLS (SMTPS) with the pin; a wrong pin refuses before AUTH', async () => {
      smtp = await SmtpPeer.start({ implicitTls: cert, auth: { user: 'alerts', pass: 'secret' } });
      await helper.load(notifyNodes, [
        channel('good', { kind: 'email', smtpHost: '127.0.0.1', smtpPort: smtp.port, smtpSecurity: 'tls', tlsFingerprint: cert.fingerprint, from: 'ups@example.org', to: 'ops@example.org' }),
        channel('bad', { kind: 'email', smtpHost: '127.0.0.1', smtpPort: smtp.port, smtpSecurity: 'tls', tlsFingerprint: 'AA'.repeat(32), from: 'ups@example.org', to: 'ops@example.org' }),
        notify('n1', 'good'),
        notify('n2', 'bad'),
      ], { good: { user: 'alerts', password: 'secret' }, bad: { user: 'alerts', password: 'secret' } });
      send('n1', { payload: 'over TLS' });
      send('n2', { payload: 'to an impostor' });
      const [mail] = await smtp.waitForCount(1);
      assert.equal(mail.secure, true);
      const st = await waitForStatusOf('n2', (s) => s.fill === 'red');
      assert.match(st.text ?? '', /^1 queued · failing: certificate fingerprint mismatch at 127\.0\.0\.1:\d+: the server presented/);
      assert.ok(errorsOfNode('bad').some((e) => /certificate fingerprint mismatch at 127\.0\.0\.1:\d+: the server presented SHA-256 [0-9A-F]{64}, the pin is A{64}$/.test(e)), errorsOfNode('bad').join('\n'));
      await sleep(500);
      assert.equal(smtp.messages.length, 1);
      assert.deepEqual(smtp.authAttempts.map((a) => a.ok), [true], 'the wrong-pin channel never sent its password');
    });

    it('verification on (the default) refuses a self-signed certificate with a clear status', async () => {
      smtp = await SmtpPeer.start({ starttls: cert });
      await helper.load(notifyNodes, [
        channel('ch', { kind: 'email', smtpHost: '127.0.0.1', smtpPort: smtp.port, smtpSecurity: 'starttls', from: 'ups@example.org', to: 'ops@example.org' }),
        notify('n', 'ch'),
      ]);
      send('n', { payload: 'x' });
      const st = await waitForStatusOf('n', (s) => s.fill === 'red', 8000);
      assert.match(st.text ?? '', /^1 queued · failing: TLS certificate not accepted, pin its SHA-256 fingerprint if it is self-signed/);
      assert.ok(errorsOfNode('ch').some((e) => /TLS certificate not accepted.*\(127\.0\.0\.1:\d+: .*self[- ]signed/i.test(e)), errorsOfNode('ch').join('\n'));
      assert.equal(smtp.messages.length, 0);
    });

    it('wrong credentials: red status "authentication failed … check user and password"; nothing sent', async () => {
      smtp = await SmtpPeer.start({ starttls: cert, auth: { user: 'alerts', pass: 'right' } });
      await helper.load(notifyNodes, [
        channel('ch', { kind: 'email', smtpHost: '127.0.0.1', smtpPort: smtp.port, smtpSecurity: 'starttls', tlsFingerprint: cert.fingerprint, from: 'ups@example.org', to: 'ops@example.org' }),
        notify('n', 'ch'),
      ], { ch: { user: 'alerts', password: 'wrong' } });
      send('n', { payload: 'x' });
      const st = await waitForStatusOf('n', (s) => s.fill === 'red', 8000);
      assert.match(st.text ?? '', /^1 queued · failing: SMTP authentication failed, check user and password \(127\.0\.0\.1:\d+: 535 /);
      assert.ok(smtp.authAttempts.length >= 1 && smtp.authAttempts.every((a) => !a.ok));
      assert.equal(smtp.messages.length, 0);
      assert.doesNotMatch(visibleOf(['n', 'ch']), /wrong/);
    });

    it('a server that requires AUTH, with none configured, says so', async () => {
      smtp = await SmtpPeer.start({ starttls: cert, auth: { user: 'alerts', pass: 'right' } });
      await helper.load(notifyNodes, [
        channel('ch', { kind: 'email', smtpHost: '127.0.0.1', smtpPort: smtp.port, smtpSecurity: 'starttls', tlsFingerprint: cert.fingerprint, from: 'ups@example.org', to: 'ops@example.org' }),
        notify('n', 'ch'),
      ]);
      send('n', { payload: 'x' });
      const st = await waitForStatusOf('n', (s) => s.fill === 'red', 8000);
      assert.match(st.text ?? '', /^1 queued · failing: the SMTP server requires authentication, set user and password \(127\.0\.0\.1:/);
      assert.ok(errorsOfNode('ch').some((e) => /requires authentication, set user and password \(127\.0\.0\.1:\d+: 530 /.test(e)), errorsOfNode('ch').join('\n'));
    });
  });

  describe('send test (admin endpoint)', () => {
    it('sends one test message with the dialog settings and stored secrets, and never returns a secret', async () => {
      await helper.load(notifyNodes, [channel('ch', { kind: 'telegram', telegramApi: http.url, telegramChat: '42' }), notify('n', 'ch')], { ch: { token: '123:StoredSecret' } });
      const body = { id: 'ch', kind: 'telegram', telegramApi: http.url, telegramChat: '77', token: '__PWRD__', timeout: 5 };
      const res = await helper.request().post('/upsorch-notify-channel/test').send(body).expect(200);
      assert.deepEqual(res.body, { ok: true, message: 'sent to Telegram chat 77' });
      const [r] = await http.waitForCount(1);
      assert.equal(r.path, '/bot123:StoredSecret/sendMessage');
      assert.equal(r.json.chat_id, 77);
      assert.match(r.json.text, /^<b>Test notification from UPS orchestrator<\/b>\nIf you can read this, the channel "Telegram 77" works/);
      // A failing test reports why, without the token.
      http.responder = () => ({ status: 403, body: { ok: false, description: 'Forbidden: bot was blocked by the user' } });
      const bad = await helper.request().post('/upsorch-notify-channel/test').send({ ...body, token: '555:TypedSecret' }).expect(200);
      assert.equal(bad.body.ok, false);
      assert.equal(bad.body.message, 'Telegram: 403 Forbidden, check the credentials (Forbidden: bot was blocked by the user)');
      assert.doesNotMatch(JSON.stringify(bad.body), /TypedSecret|StoredSecret/);
      const invalid = await helper.request().post('/upsorch-notify-channel/test').send({ kind: 'ntfy', ntfyServer: 'nope', ntfyTopic: 'a b' }).expect(200);
      assert.equal(invalid.body.ok, false);
      assert.match(invalid.body.message, /ntfyServer: the ntfy server must be an http/);
    });
  });
  describe('example flow', () => {
    it('"07 Notifications" loads, and a power loss reaches ntfy and email (pointed at loopback)', async () => {
      const smtp = await SmtpPeer.start();
      try {
        const flow = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'examples', '07 Notifications.json'), 'utf8')) as Array<Record<string, any>>;
        const ours = flow.filter((n) => String(n.type).startsWith('upsorch-') || n.type === 'tab');
        for (const n of ours) {
          if (n.type === 'upsorch-notify-channel' && n.kind === 'ntfy') n.ntfyServer = http.url;
          if (n.type === 'upsorch-notify-channel' && n.kind === 'email') Object.assign(n, { smtpHost: '127.0.0.1', smtpPort: smtp.port, smtpSecurity: 'none' });
          if (n.type === 'upsorch-device') Object.assign(n, { pollInterval: 0.2, pollIntervalOnBattery: 0.2 });
        }
        await helper.load(notifyNodes, ours);
        const upsIn = ours.find((n) => n.type === 'upsorch-ups-in')!.id;
        await sleep(400);
        send(upsIn, { topic: 'power-lost' });
        const [push] = await http.waitForCount(1);
        assert.equal(push.json.topic, 'ups-orchestrator-demo-change-me');
        assert.equal(push.json.title, '⚡ Demo UPS on battery');
        assert.match(push.json.message, /^Charge 100%, runtime 1 h 00 min, load 25% \(/);
        const [mail] = await smtp.waitForCount(1);
        assert.equal(mail.subject, 'UPS Demo UPS: on battery');
        assert.deepEqual(mail.to, ['ops@example.org']);
      } finally {
        await smtp.stop();
      }
    });
  });
});
