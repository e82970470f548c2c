/**
 * Notification channel config node: one channel (email, webhook, Discord, ntfy, Telegram, Home
 * Assistant) with its durable outbox and delivery loop, shared by every notify node that uses it.
 * Messages queued before a restart are sent when it starts again. "Send test" in the dialog sends
 * one message with the dialog's settings (admin endpoint, permission-checked, secrets never echoed).
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import { NodeAPI, HttpRequest, HttpResponse, UNCHANGED_PASSWORD, errorText, rememberEndpoint, storedCredentials } from './red';
import { NotifyChannelNode } from './notify-types';
import { ChannelConfig, ChannelCredentials, DriverDeps, channelName, createDriver, parseChannelConfig, queueSettings } from '../lib/notify/config';
import { ChannelQueue } from '../lib/notify/queue';
import { Outbox } from '../lib/notify/outbox';
import { DEFAULT_TEMPLATES, testNotification } from '../lib/notify/format';
import { getHaServer } from '../lib/ha/registry';
import { HaClient, HaUser } from '../lib/ha/client';

type Settings = { settings?: { userDir?: string } };

const SECRET_FIELDS = ['user', 'password', 'secretValue1', 'secretValue2', 'webhookUrl', 'token'] as const;

/**
 * Where this channel's secrets go (and how they are protected on the way): "Send test" uses the
 * stored secrets only while these equal the deployed channel's, so that an editor user cannot send
 * the stored password or token to a host of their choosing. (A Discord webhook URL is itself the
 * secret; a Home Assistant token belongs to the server config node named here.)
 */
const ENDPOINT_KEYS = ['kind', 'smtpHost', 'smtpPort', 'smtpSecurity', 'url', 'ntfyServer', 'telegramApi', 'haServer', 'tlsVerify', 'tlsFingerprint'] as const;

/** Home Assistant: the server config node's client, found when needed (it may start after this node). */
function haDeps(c: ChannelConfig, found: (client: HaClient) => void = () => undefined): DriverDeps {
  return {
    ha: () => {
      const client = getHaServer(c.haServer);
      if (!client) throw new Error('the Home Assistant server of this channel is not deployed (or its configuration is invalid)');
      found(client);
      return client;
    },
  };
}

export = function register(RED: NodeAPI): void {
  const userDir = () => (RED as NodeAPI & Settings).settings?.userDir || path.join(os.homedir(), '.node-red');

  function NotifyChannelConfigNode(this: NotifyChannelNode, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    const node = this;
    node.channelName = String(raw.name || raw.kind || 'channel');
    node.kind = (raw.kind as NotifyChannelNode['kind']) ?? 'webhook';
    let haClient: HaClient | undefined;
    let haTimer: NodeJS.Timeout | undefined;
    // Keep the Home Assistant connection up while this channel exists; send what waits once it is.
    const haUser: HaUser = { connected: () => node.queue?.retryNow() };
    const attachHa = (client: HaClient) => {
      if (haClient === client) return;
      if (haClient) void haClient.deregister(haUser);
      haClient = client;
      client.register(haUser);
    };
    const dir = path.join(userDir(), 'upsorch-notify', node.id);
    // Compared in its parsed form (defaults filled in), as "Send test" compares the dialog's.
    rememberEndpoint(node, raw, ENDPOINT_KEYS);
    try {
      const cfg = parseChannelConfig(raw);
      rememberEndpoint(node, cfg, ENDPOINT_KEYS);
      node.channelName = channelName(cfg);
      node.kind = cfg.kind;
      const driver = createDriver(cfg, node.credentials as ChannelCredentials, haDeps(cfg, attachHa));
      const log = (level: 'info' | 'warn' | 'error', text: string) => (level === 'info' ? node.log(text) : level === 'warn' ? node.warn(text) : node.error(text));
      const outbox = new Outbox(dir, (t) => node.warn(`${node.channelName}: ${t}`));
      const queue = new ChannelQueue(node.channelName, driver, outbox, queueSettings(cfg), log);
      node.queue = queue;
      queue.open().catch((err) => {
        node.configError = `cannot open the outbox in ${dir}: ${errorText(err)}`;
        node.error(node.configError);
      });
      if (cfg.kind === 'ha') {
        // The server config node may start after this one: look for it for a few seconds.
        const attach = (tries: number) => {
          haTimer = undefined;
          const client = getHaServer(cfg.haServer);
          if (client) attachHa(client);
          else if (tries > 0) haTimer = setTimeout(() => attach(tries - 1), 500);
        };
        haTimer = setTimeout(() => attach(20), 0);
      }
    } catch (err) {
      node.configError = errorText(err);
      node.error(node.configError);
    }

    node.on('close', (removed, done) => {
      if (haTimer) clearTimeout(haTimer);
      const q = node.queue;
      node.queue = undefined;
      Promise.resolve(q?.close())
        .then(() => haClient?.deregister(haUser))
        // A channel deleted from the flows takes its queued messages with it.
        .then(() => (removed ? fsp.rm(dir, { recursive: true, force: true }) : undefined))
        .catch(() => undefined)
        .finally(() => done());
    });
  }

  RED.nodes.registerType('upsorch-notify-channel', NotifyChannelConfigNode, {
    credentials: {
      user: { type: 'text' },
      password: { type: 'password' },
      secretValue1: { type: 'password' },
      secretValue2: { type: 'password' },
      webhookUrl: { type: 'password' },
      token: { type: 'password' },
    },
  });

  // "Send test" from the channel dialog: one message, straight to the service (not through the outbox).
  RED.httpAdmin.post('/upsorch-notify-channel/test', RED.auth.needsPermission('upsorch-notify-channel.write'), (req: HttpRequest, res: HttpResponse) => {
    sendTest(RED, req.body ?? {})
      .then((r) => res.json(r))
      .catch((err: unknown) => res.status(500).json({ ok: false, message: errorText(err) }));
  });
};

async function sendTest(RED: NodeAPI, body: Record<string, unknown>): Promise<{ ok: boolean; message: string }> {
  let cfg: ChannelConfig;
  try {
    cfg = parseChannelConfig(body);
  } catch (err) {
    return { ok: false, message: errorText(err) };
  }
  const id = typeof body.id === 'string' ? body.id : '';
  const stored = storedCredentials(RED, { ...cfg, id }, 'upsorch-notify-channel', ENDPOINT_KEYS);
  const kept = SECRET_FIELDS.filter((f) => body[f] === UNCHANGED_PASSWORD);
  if (kept.length && !Object.keys(stored).length && id && Object.values(RED.nodes.getCredentials(id) ?? {}).some(Boolean)) {
    return { ok: false, message: `the destination differs from the deployed channel's: type the ${kept.join(', ')} again to test it (stored secrets are only sent where the deployed channel sends them)` };
  }
  const creds: ChannelCredentials = {};
  for (const f of SECRET_FIELDS) {
    const typed = body[f];
    creds[f] = typeof typed === 'string' && typed !== '' && typed !== UNCHANGED_PASSWORD ? typed : stored[f];
  }
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error(`no answer within ${cfg.timeout} s`)), cfg.timeout * 1000);
  // Home Assistant: a server nobody uses yet is not connected; connect it for the test.
  const haUser: HaUser = {};
  const ha = cfg.kind === 'ha' ? getHaServer(cfg.haServer) : undefined;
  let registered = false;
  try {
    if (ha && !ha.connected) {
      ha.register(haUser);
      registered = true;
      await ha.whenConnected(cfg.timeout * 1000, true);
    }
    const driver = createDriver(cfg, creds, haDeps(cfg));
    const n = testNotification(channelName(cfg), Date.now());
    await driver.deliver(driver.prepare(n, DEFAULT_TEMPLATES.test), ac.signal);
    await driver.close?.();
    return { ok: true, message: `sent to ${driver.label}` };
  } catch (err) {
    return { ok: false, message: ac.signal.aborted ? errorText(ac.signal.reason) : errorText(err) };
  } finally {
    clearTimeout(timer);
    if (ha && registered) await ha.deregister(haUser).catch(() => undefined);
  }
}
