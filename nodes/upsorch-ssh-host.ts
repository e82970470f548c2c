/**
 * SSH host config node: where and how to log in (host, port, user, key or password, pinned host
 * key). Every node using it at the same time shares one SSH connection, opened on demand and closed
 * after the last user.
 */
import { HttpRequest, HttpResponse, Node, NodeAPI, UNCHANGED_PASSWORD, errorText } from './red';
import { SshCredentials, parseSshHostConfig, sshTarget } from '../lib/ssh/config';
import { SshError, SshSession, fetchHostKey } from '../lib/ssh/client';
import { SharedSsh, SshHostHandle } from '../lib/ssh/shared';

interface SshHostNode extends Node {
  upsorchSsh?: SshHostHandle;
  configError?: string;
}

/** A handle that fails every use with the configuration error. */
function brokenHandle(label: string, host: string, port: number, error: string): SshHostHandle {
  return {
    label,
    host,
    port,
    username: '',
    connectTimeoutMs: 10_000,
    acquire: () => Promise.reject(new Error(error)),
    probe: () => Promise.resolve('unreachable' as const),
    close: () => Promise.resolve(),
  };
}

export = function register(RED: NodeAPI): void {
  function SshHostConfigNode(this: SshHostNode, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    const node = this;
    const label = String(raw.name || raw.host || 'SSH host');
    try {
      const config = parseSshHostConfig(raw);
      node.upsorchSsh = new SharedSsh(sshTarget(config, (node.credentials ?? {}) as SshCredentials), config.name || config.host);
    } catch (err) {
      node.configError = errorText(err);
      node.upsorchSsh = brokenHandle(label, String(raw.host ?? ''), Number(raw.port) || 22, node.configError);
      node.error(node.configError);
    }
    node.on('close', (_removed, done) => {
      const h = node.upsorchSsh;
      delete node.upsorchSsh;
      Promise.resolve(h?.close()).catch(() => undefined).finally(() => done());
    });
  }

  RED.nodes.registerType('upsorch-ssh-host', SshHostConfigNode, {
    credentials: { privateKey: { type: 'password' }, passphrase: { type: 'password' }, password: { type: 'password' } },
  });

  // "Fetch fingerprint": reads the host key WITHOUT trusting it, for the user to compare and confirm.
  RED.httpAdmin.post('/upsorch-ssh-host/fingerprint', RED.auth.needsPermission('upsorch-ssh-host.write'), (req: HttpRequest, res: HttpResponse) => {
    void fetchFingerprint(req.body ?? {}).then((r) => res.json(r));
  });
  // "Test connection": verifies the pinned key, logs in and runs `echo`.
  RED.httpAdmin.post('/upsorch-ssh-host/test', RED.auth.needsPermission('upsorch-ssh-host.write'), (req: HttpRequest, res: HttpResponse) => {
    void testConnection(RED, req.body ?? {}).then((r) => res.json(r));
  });
};

async function fetchFingerprint(body: Record<string, unknown>): Promise<{ ok: boolean; message: string; fingerprint?: string; keyType?: string }> {
  const host = typeof body.host === 'string' ? body.host.trim() : '';
  const port = Number(body.port === '' || body.port === undefined ? 22 : body.port);
  const timeout = Number(body.timeout === '' || body.timeout === undefined ? 10 : body.timeout);
  if (!host) return { ok: false, message: 'enter the host first' };
  if (!Number.isInteger(port) || port < 1 || port > 65535) return { ok: false, message: 'port must be between 1 and 65535' };
  try {
    const k = await fetchHostKey(host, port, Math.min(Math.max(timeout, 1), 120) * 1000);
    return { ok: true, message: `${host}:${port} presents a ${k.keyType} key`, fingerprint: k.fingerprint, keyType: k.keyType };
  } catch (err) {
    return { ok: false, message: errorText(err) };
  }
}

interface TestResult {
  ok: boolean;
  message: string;
  fingerprint?: string;
  auth?: string;
}

async function testConnection(RED: NodeAPI, body: Record<string, unknown>): Promise<TestResult> {
  const stored = typeof body.id === 'string' ? RED.nodes.getCredentials(body.id) ?? {} : {};
  const typed = (k: keyof SshCredentials): string | undefined => {
    const v = body[k];
    return typeof v === 'string' && v !== UNCHANGED_PASSWORD ? v : stored[k];
  };
  let session: SshSession | undefined;
  try {
    const config = parseSshHostConfig(body);
    const target = sshTarget(config, { privateKey: typed('privateKey'), passphrase: typed('passphrase'), password: typed('password') });
    session = await SshSession.connect(target);
    const r = await session.exec('echo upsorch-ok', { timeoutMs: target.connectTimeoutMs, maxOutput: 4096 });
    if (r.code !== 0 || !r.stdout.includes('upsorch-ok')) {
      const why = r.stderr.trim().split('\n').slice(-2).join(' ') || (r.code === null ? 'no exit status' : `exit code ${r.code}`);
      return { ok: false, message: `logged in as ${session.where}, but a test command failed: ${why}`, fingerprint: session.hostKey.fingerprint, auth: session.authMethod };
    }
    const how = session.authMethod === 'publickey' ? 'key' : 'password';
    return { ok: true, message: `logged in as ${session.where} with the ${how}; host key matches the pin; commands run`, fingerprint: session.hostKey.fingerprint, auth: session.authMethod };
  } catch (err) {
    return { ok: false, message: err instanceof SshError || err instanceof Error ? err.message : errorText(err) };
  } finally {
    await session?.close();
  }
}
