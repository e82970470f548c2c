/**
 * The notify logic on its own (lib/notify), on a simulated clock where time matters: templates and
 * escaping per channel, ten minutes of flapping power, the rate limit, expiry, the outbox on disk,
 * crisis mode. Deliveries go to a real HTTP server on loopback.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ManualClock } from '../lib/notify/clock';
import { render, html, markdown, jsonString, oneLine } from '../lib/notify/template';
import { Outbox } from '../lib/notify/outbox';
import { ChannelQueue, QUEUE_DEFAULTS, QueueSettings } from '../lib/notify/queue';
import { WebhookDriver } from '../lib/notify/channels/webhook';
import { TelegramDriver } from '../lib/notify/channels/telegram';
import { DiscordDriver } from '../lib/notify/channels/discord';
import { Notifier } from '../lib/notify/notifier';
import { DEFAULT_TEMPLATES, duration, fromCustom } from '../lib/notify/format';
import { createDriver, parseChannelConfig, parseNotifyConfig } from '../lib/notify/config';
import { SimulatedUps } from '../lib/sim/battery';
import { normalise } from '../lib/ups/state';
import { EventTracker } from '../lib/ups/events';
import { HttpRecorder } from './peers/notify-services';

const tmpDirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-notify-lib-'));
  tmpDirs.push(d);
  return d;
}

after(() => {
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('notify: templates', () => {
  it('fills {{placeholders}} from the context, dotted paths included; missing values are empty', () => {
    const ctx = { ups: 'rack', state: { charge: 76, runtime: 1380 }, run: { id: 'r1' } };
    assert.equal(render('UPS {{ups}}: {{state.charge}}% · {{ state.runtime }} s · {{nothing.here}}!', ctx), 'UPS rack: 76% · 1380 s · !');
  });

  it('escapes values (not the template) for each channel; {{{triple}}} inserts raw', () => {
    const ctx = { ups: '<b>lab</b> & "co"', note: 'a*b_c `x` @everyone', q: 'say "hi"\nbye', s: 'evil\r\nBcc: x@y' };
    assert.equal(render('<i>{{ups}}</i>', ctx, html), '<i>&lt;b&gt;lab&lt;/b&gt; &amp; &quot;co&quot;</i>');
    assert.equal(render('{{{ups}}}', ctx, html), '<b>lab</b> & "co"');
    assert.equal(render('**{{note}}**', ctx, markdown), '**a\\*b\\_c \\`x\\` @\u200beveryone**');
    assert.equal(JSON.parse(render('{"t":"{{q}}"}', ctx, jsonString)).t, 'say "hi"\nbye');
    assert.equal(render('{{s}}', ctx, oneLine), 'evil Bcc: x@y');
  });

  it('formats durations as people read them', () => {
    assert.equal(duration(45), '45 s');
    assert.equal(duration(252), '4 min 12 s');
    assert.equal(duration(600), '10 min');
    assert.equal(duration(3900), '1 h 05 min');
    assert.equal(duration(null), 'unknown');
  });

  it('Telegram text is HTML with an escaped title and body; Discord is an embed with escaped Markdown', () => {
    const n = fromCustom({ title: 'R&D <lab>', message: 'load *high* & rising', severity: 'critical' }, Date.now());
    const tg = new TelegramDriver({ apiBase: 'http://127.0.0.1:1', token: '1:x', chatId: '42', tls: {} }).prepare(n, DEFAULT_TEMPLATES.custom);
    assert.equal(tg.text, '<b>R&amp;D &lt;lab&gt;</b>\nload *high* &amp; rising');
    assert.equal(tg.parse_mode, 'HTML');
    assert.equal(tg.disable_notification, false);
    const dc = new DiscordDriver({ webhookUrl: 'http://127.0.0.1:1/api/webhooks/1/x', username: '', tls: {} }).prepare(n, DEFAULT_TEMPLATES.custom);
    assert.equal(dc.embeds[0].description, 'load \\*high\\* & rising');
    assert.equal(dc.embeds[0].color, 0xe74c3c);
  });
});

/** A webhook channel queue on a simulated clock, delivering to a real HTTP server. */
async function webhookQueue(server: HttpRecorder, clock: ManualClock, settings: Partial<QueueSettings> = {}, logs: string[] = []) {
  const driver = new WebhookDriver({ url: server.url + '/hook', method: 'POST', headers: {}, secretHeaders: {}, bodyTemplate: '', tls: {} });
  const q = new ChannelQueue('webhook', driver, new Outbox(tmpDir()), { ...QUEUE_DEFAULTS, perMinute: 0, ...settings }, (l, t) => logs.push(`${l}: ${t}`), clock);
  await q.open();
  return q;
}

/** Advance the simulated clock in steps, letting real HTTP deliveries complete in between. */
async function run(clock: ManualClock, ms: number, step = 1000) {
  for (let t = 0; t < ms; t += step) {
    await clock.advance(Math.min(step, ms - t));
  }
}

describe('notify: no flooding (simulated clock)', function () {
  this.timeout(60000);
  let server: HttpRecorder;
  beforeEach(async () => {
    server = await HttpRecorder.start();
  });
  afterEach(async () => {
    await server.stop();
  });

  it('10 minutes of flapping power: one message per change at first, one "flapping" notice, one digest — not hundreds', async () => {
    const clock = new ManualClock();
    const q = await webhookQueue(server, clock);
    const notifier = new Notifier({ main: q, clock });
    // A simulated UPS whose mains drops and returns every 3–12 s for ten minutes.
    const ups = new SimulatedUps({}, clock.now());
    const tracker = new EventTracker();
    const feed = async () => {
      const now = clock.now();
      ups.advance(now);
      const s = normalise({ ups: 'rack', source: 'sim', vars: ups.vars(now), ts: now, secondsOnBattery: ups.secondsOnBattery() });
      for (const e of tracker.update(s)) await notifier.handle({ topic: e.event, payload: { ...e, state: s } });
    };
    await feed();
    let changes = 0;
    let seed = 7;
    const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    const end = clock.now() + 10 * 60_000;
    let onBattery = false;
    while (clock.now() < end) {
      await run(clock, 3000 + Math.floor(rand() * 9000));
      ups.command(onBattery ? 'power-restored' : 'power-lost', null, clock.now());
      onBattery = !onBattery;
      changes++;
      await feed();
    }
    if (onBattery) {
      ups.command('power-restored', null, clock.now());
      changes++;
      await feed();
    }
    assert.ok(changes >= 60, `the power changed ${changes} times`);
    // Quiet for the digest period (2 min) and a little more.
    await run(clock, 150_000);
    await server.waitForCount(4);
    await new Promise((r) => setTimeout(r, 300));
    const got = server.requests.map((r) => r.json);
    assert.deepEqual(got.map((b) => b.event), ['ONBATT', 'ONLINE', 'flapping', 'digest'], JSON.stringify(got.map((b) => b.title)));
    assert.equal(got[2].title, 'UPS rack: mains power is flapping');
    assert.equal(got[3].title, `UPS rack: mains power flapped ${changes - 2} times`);
    assert.match(got[3].message, new RegExp(`on battery ×${Math.floor((changes - 2) / 2)}, mains power restored ×${Math.ceil((changes - 2) / 2)}`));
    assert.match(got[3].message, /Now on mains · charge \d+% · runtime/);
    assert.equal(got[3].resolved, true);
    // After the digest a new outage is reported at once again.
    ups.command('power-lost', null, clock.now());
    await feed();
    await server.waitForCount(5);
    assert.equal(server.requests[4].json.event, 'ONBATT');
    notifier.close();
    await q.close();
  });

  it('a short outage is two messages at once (on battery, back on mains), no digest', async () => {
    const clock = new ManualClock();
    const q = await webhookQueue(server, clock);
    const notifier = new Notifier({ main: q, clock });
    const ups = new SimulatedUps({}, clock.now());
    const tracker = new EventTracker();
    const feed = async () => {
      const now = clock.now();
      ups.advance(now);
      const s = normalise({ ups: 'rack', source: 'sim', vars: ups.vars(now), ts: now, secondsOnBattery: ups.secondsOnBattery() });
      for (const e of tracker.update(s)) await notifier.handle({ topic: e.event, payload: { ...e, state: s } });
    };
    await feed();
    ups.command('power-lost', null, clock.now());
    await feed();
    await run(clock, 95_000);
    await feed();
    ups.command('power-restored', null, clock.now());
    await feed();
    await run(clock, 10 * 60_000, 5000);
    await server.waitForCount(2);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(server.requests.map((r) => r.json.event), ['ONBATT', 'ONLINE']);
    assert.match(server.requests[1].json.message, /back on mains power after 1 min 35 s on battery/);
    notifier.close();
    await q.close();
  });

  it('the rate limit spaces messages out instead of dropping them, in order', async () => {
    const clock = new ManualClock();
    const q = await webhookQueue(server, clock, { perMinute: 6 });
    for (let i = 1; i <= 10; i++) await q.enqueue(fromCustom({ message: `m${i}` }, clock.now()), DEFAULT_TEMPLATES.custom);
    await run(clock, 100, 100);
    await server.waitForCount(6);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(server.requests.length, 6, 'a burst of 6 at once');
    await run(clock, 10_000);
    await server.waitForCount(7);
    await run(clock, 30_000);
    await server.waitForCount(10);
    assert.deepEqual(server.requests.map((r) => r.json.message), ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8', 'm9', 'm10']);
    await q.close();
  });

  it('the steps of a plan run are not held back by the rate limit: they go at once, ahead of messages waiting for it', async () => {
    const clock = new ManualClock();
    const q = await webhookQueue(server, clock, { perMinute: 2 });
    const notifier = new Notifier({ main: q, clock });
    for (let i = 1; i <= 3; i++) await notifier.handle({ payload: `m${i}` });
    await run(clock, 100, 100);
    await server.waitForCount(2);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(server.requests.length, 2, 'm3 waits for the rate limit');
    // A run starts: its messages (and what arrives during it) go now, m3 still waits its turn.
    const run1 = { id: 'run-1', plan: 'p1', planName: 'homelab', direction: 'shutdown', dryRun: false };
    const step = (type: string, extra: Record<string, unknown> = {}) => notifier.handle({ topic: type, payload: { type, plan: { id: 'p1', name: 'homelab' }, run: run1, message: type, at: clock.now(), ...extra } });
    await step('run-started');
    await step('phase-started', { phase: { id: 'a', name: 'VMs', state: 'running' } });
    await step('target-done', { phase: { id: 'a', name: 'VMs', state: 'running' }, target: { target: 'db1', method: 'forced', after: 'off', ok: true, ms: 1000, action: 'virsh' } });
    await run(clock, 100, 100);
    await server.waitForCount(5);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(server.requests.map((r) => r.json.event === 'custom' ? r.json.message : r.json.event), ['m1', 'm2', 'run-started', 'phase-started', 'target-done']);
    await run(clock, 31_000);
    await server.waitForCount(6);
    assert.equal(server.requests[5].json.message, 'm3');
    notifier.close();
    await q.close();
  });

  it('messages older than the maximum age are dropped with a log entry; the rest are sent in order', async () => {
    const clock = new ManualClock();
    const logs: string[] = [];
    await server.down();
    const q = await webhookQueue(server, clock, { maxAgeMs: 60_000, retryMaxMs: 10_000 }, logs);
    await q.enqueue(fromCustom({ message: 'old' }, clock.now()), DEFAULT_TEMPLATES.custom);
    await run(clock, 45_000);
    await q.enqueue(fromCustom({ message: 'new' }, clock.now()), DEFAULT_TEMPLATES.custom);
    await run(clock, 20_000);
    await server.up();
    await run(clock, 11_000);
    await server.waitForCount(1);
    assert.deepEqual(server.requests.map((r) => r.json.message), ['new']);
    for (let i = 0; i < 50 && q.status.sent < 1; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(logs.some((l) => /^warn: webhook: dropped message custom \(expired: queued at .*, older than 1 min\)$/.test(l)), logs.join('\n'));
    assert.equal(q.status.dropped, 1);
    assert.equal(q.status.sent, 1);
    await q.close();
  });
});

describe('notify: durable outbox', () => {
  it('a message is on disk (one file, complete) before enqueue resolves; delivered ones are gone', async () => {
    const dir = tmpDir();
    const ob = new Outbox<{ n: number }>(dir);
    await ob.open();
    await ob.add('a', { n: 1 }, 1);
    await ob.add('b', { n: 2 }, 2);
    const files = fs.readdirSync(dir).sort();
    assert.deepEqual(files, ['000000000001.json', '000000000002.json']);
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, files[0]), 'utf8')).payload, { n: 1 });
    // A second process (a restart) sees the same queue, in order, and continues the numbering.
    const again = new Outbox<{ n: number }>(dir);
    assert.deepEqual((await again.open()).map((e) => e.payload.n), [1, 2]);
    await again.remove(again.head()!);
    await again.add('c', { n: 3 }, 3);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['000000000002.json', '000000000003.json']);
  });

  it('a half-written temporary file is discarded, an unreadable file set aside with a warning', async () => {
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, '.tmp-000000000001.json-123'), '{"id":');
    fs.writeFileSync(path.join(dir, '000000000002.json'), 'garbage');
    fs.writeFileSync(path.join(dir, '000000000003.json'), JSON.stringify({ id: 'x', seq: 3, createdAt: 5, label: 'ok', payload: {} }));
    const problems: string[] = [];
    const ob = new Outbox(dir, (t) => problems.push(t));
    const entries = await ob.open();
    assert.deepEqual(entries.map((e) => e.seq), [3]);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['000000000002.json.bad', '000000000003.json']);
    assert.match(problems[0], /000000000002\.json is unreadable/);
    const e = await ob.add('next', {}, 6);
    assert.equal(e.seq, 4);
  });
});

describe('notify: crisis mode', () => {
  const recorder = () => {
    const got: Array<{ ch: string; key: string; title: string }> = [];
    const target = (name: string) => ({
      name,
      enqueue: async (n: any, t: any) => {
        got.push({ ch: name, key: n.key, title: render(t.title, n.ctx) });
      },
    });
    return { got, target };
  };
  const ev = (type: string, extra: Record<string, unknown> = {}) => ({
    topic: type,
    payload: { type, plan: { id: 'p1', name: 'homelab' }, run: { id: 'run-1', plan: 'p1', planName: 'homelab', direction: 'shutdown', dryRun: false }, message: type, at: Date.now(), ...extra },
  });

  it('every step of a run goes to the crisis channel at once; milestones to both; UPS events to both while it runs', async () => {
    const { got, target } = recorder();
    const n = new Notifier({ main: target('mail'), crisis: target('phone') });
    await n.handle(ev('run-started'));
    assert.equal(n.inCrisis, true);
    await n.handle(ev('phase-started', { phase: { id: 'a', name: 'VMs', state: 'running' } }));
    await n.handle(ev('target-failed', { phase: { id: 'a', name: 'VMs', state: 'running' }, target: { target: 'db1', ok: false, error: 'timed out', action: 'ssh' } }));
    await n.handle(ev('phase-done', { phase: { id: 'a', name: 'VMs', state: 'done' }, message: 'phase VMs: done in 3 s' }));
    await n.handle({ topic: 'custom', payload: 'power is back' });
    await n.handle(ev('run-report', { report: { id: 'run-1', plan: 'p1', planName: 'homelab', direction: 'shutdown', dryRun: false, state: 'done', ms: 61000, phases: [], totals: { phases: 1, targets: 3, ok: 2, failed: 1 } } }));
    assert.equal(n.inCrisis, false);
    await n.handle({ payload: 'after the run' });
    assert.deepEqual(got.map((g) => `${g.ch} ${g.key}`), [
      'mail run-started', 'phone run-started',
      'phone phase-started',
      'mail target-failed', 'phone target-failed',
      'phone phase-done',
      'mail custom', 'phone custom',
      'mail run-report', 'phone run-report',
      'mail custom',
    ]);
    assert.equal(got[0].title, 'Plan homelab: shutdown started');
    assert.equal(got[3].title, 'Plan homelab: db1 failed');
    assert.equal(got[5].title, 'Plan homelab: phase VMs done');
    assert.equal(got[8].title, 'Plan homelab: shutdown done');
  });

  it('every target that succeeds is a step of its own (one message each); forced is a warning', async () => {
    const { got, target } = recorder();
    const n = new Notifier({ main: target('mail'), crisis: target('phone') });
    const vms = { id: 'a', name: 'VMs', state: 'running' };
    const result = (t: string, method: string, after = 'off') => ({ target: t, id: t, before: 'running', after, method, ms: 4200, ok: true, action: 'libvirt' });
    await n.handle(ev('run-started'));
    await n.handle(ev('phase-started', { phase: vms }));
    await n.handle(ev('target-done', { phase: vms, target: result('db1', 'graceful') }));
    await n.handle(ev('target-done', { phase: vms, target: result('web1', 'already') }));
    await n.handle(ev('target-done', { phase: vms, target: result('old', 'forced') }));
    await n.handle(ev('phase-done', { phase: { ...vms, state: 'done' } }));
    assert.deepEqual(got.map((g) => `${g.ch} ${g.key} ${g.title}`), [
      'mail run-started Plan homelab: shutdown started',
      'phone run-started Plan homelab: shutdown started',
      'phone phase-started Plan homelab: phase VMs started',
      'phone target-done Plan homelab: db1 off (graceful)',
      'phone target-done Plan homelab: web1 already off',
      'phone target-done Plan homelab: old off (forced)',
      'phone phase-done Plan homelab: phase VMs done',
    ]);
    const sev: string[] = [];
    const m = new Notifier({ main: { name: 'x', enqueue: async (x: any, t: any) => void sev.push(`${x.severity} ${render(t.body, x.ctx)}`) } });
    await m.handle(ev('target-done', { phase: vms, target: result('old', 'forced') }));
    assert.match(sev[0], /^warning old off \(forced\) after 4 s, in phase VMs of the shutdown \(/);
  });

  it('without a crisis channel the steps go to the main channel; crisis mode off sends milestones only', async () => {
    const a = recorder();
    const on = new Notifier({ main: a.target('mail') });
    const vm = (t: string, method: string) => ({ target: t, id: t, before: 'running', after: 'off', method, ms: 900, ok: true, action: 'libvirt' });
    await on.handle(ev('run-started'));
    await on.handle(ev('phase-started', { phase: { name: 'VMs', state: 'running' } }));
    // Targets that went off as planned are counted by phase-done, not mailed one by one; a forced one is told.
    for (let i = 0; i < 50; i++) await on.handle(ev('target-done', { phase: { name: 'VMs', state: 'running' }, target: vm(`vm${i}`, 'graceful') }));
    await on.handle(ev('target-done', { phase: { name: 'VMs', state: 'running' }, target: vm('stuck', 'forced') }));
    for (const t of ['phase-done', 'run-report']) await on.handle(ev(t, { phase: { name: 'VMs', state: 'done' }, state: 'done' }));
    assert.deepEqual(a.got.map((g) => g.key), ['run-started', 'phase-started', 'target-done', 'phase-done', 'run-report']);
    assert.match(a.got[2].title, /stuck off \(forced\)/);
    const b = recorder();
    const off = new Notifier({ main: b.target('mail'), crisisMode: false });
    for (const t of ['run-started', 'phase-started', 'phase-done', 'run-report']) await off.handle(ev(t, { phase: { name: 'VMs', state: 'done' }, state: 'done' }));
    assert.deepEqual(b.got.map((g) => g.key), ['run-started', 'run-report']);
  });
});

describe('notify: configuration at the edge', () => {
  const parseError = (raw: Record<string, unknown>) => {
    try {
      parseChannelConfig(raw);
    } catch (err) {
      return (err as Error).message;
    }
    return 'no error';
  };

  it('each kind says what it is missing, in plain words', () => {
    assert.match(parseError({ kind: 'email' }), /smtpHost: SMTP host is required; from: the sender address \(from\) is required; to: at least one recipient/);
    assert.match(parseError({ kind: 'email', smtpHost: 'h', from: 'a@b', to: 'ops@example.org, nope' }), /to: "nope" is not an email address/);
    assert.match(parseError({ kind: 'telegram', telegramChat: 'my chat' }), /telegramChat: the chat id is a number/);
    assert.match(parseError({ kind: 'ha', haService: 'mobile_app_x' }), /haServer: no Home Assistant server selected; haService: the notify service is written notify\.<name>/);
    assert.match(parseError({ kind: 'webhook', url: 'http://h/x', rateLimit: 'lots' }), /rateLimit: rate limit \(messages per minute\) must be a number/);
    assert.equal(parseError({ kind: 'discord' }), 'no error');
  });

  it('a webhook body template must give JSON for any message (placeholders inside quotes)', () => {
    assert.match(parseError({ kind: 'webhook', url: 'http://h/x', bodyTemplate: '{"text": {{text}}}' }), /bodyTemplate: the body template does not give valid JSON .*put placeholders inside quotes/);
    assert.equal(parseError({ kind: 'webhook', url: 'http://h/x', bodyTemplate: '{"text": "{{text}}", "n": {{ts}}}' }), 'no error');
    assert.equal(parseError({ kind: 'webhook', url: 'http://h/x', headers: 'Content-Type: text/plain', bodyTemplate: '{{text}}' }), 'no error');
  });

  it('a secret the kind needs must be in the credentials', () => {
    assert.throws(() => createDriver(parseChannelConfig({ kind: 'discord' }), {}), /Discord webhook URL .* is missing/);
    assert.throws(() => createDriver(parseChannelConfig({ kind: 'telegram', telegramChat: '42' }), { token: 'nope' }), /bot token .* missing or malformed/);
    assert.throws(() => createDriver(parseChannelConfig({ kind: 'webhook', url: 'http://h/', secretHeader1: 'Authorization' }), {}), /no value for the secret header Authorization/);
  });

  it('SMTP without TLS refuses to send a password anywhere but this machine', () => {
    const email = (smtpHost: string) => parseChannelConfig({ kind: 'email', smtpHost, smtpPort: 25, smtpSecurity: 'none', from: 'ups@example.org', to: 'ops@example.org' });
    assert.throws(() => createDriver(email('mail.example.org'), { user: 'alerts', password: 'pw' }), /^Error: SMTP security "none" would send the password in clear text to mail\.example\.org: choose STARTTLS or TLS/);
    assert.throws(() => createDriver(email('192.168.1.10'), { user: 'alerts', password: 'pw' }), /in clear text to 192\.168\.1\.10/);
    for (const host of ['127.0.0.1', 'localhost', '::1', '[::1]']) assert.equal(createDriver(email(host), { user: 'alerts', password: 'pw' }).kind, 'email', host);
    // A relay without AUTH on the network is fine: there is no password to give away.
    assert.equal(createDriver(email('relay.lan'), {}).kind, 'email');
    assert.equal(createDriver(parseChannelConfig({ kind: 'email', smtpHost: 'mail.example.org', smtpSecurity: 'starttls', from: 'a@b.c', to: 'ops@example.org' }), { user: 'u', password: 'p' }).kind, 'email');
  });

  it('the notify node: events list, templates', () => {
    assert.deepEqual(parseNotifyConfig({ channel: 'c', events: 'ONBATT,ONLINE' }).events, ['ONBATT', 'ONLINE']);
    assert.deepEqual(parseNotifyConfig({ channel: 'c', events: '' }).events, []);
    assert.throws(() => parseNotifyConfig({ channel: 'c', events: 'none' }), /events: choose at least one UPS event/);
    assert.throws(() => parseNotifyConfig({ channel: 'c', templates: [{ event: 'NOPE', title: 'x' }] }), /unknown event for a template/);
    assert.throws(() => parseNotifyConfig({}), /channel: no channel selected/);
  });
});
