/**
 * UPS command node: an action (the project's action contract, nodes/action-node.ts) with one
 * target, the UPS of a UPS device config (NUT or SNMP): the "power off with return" preset for the
 * last phase of a plan, a NUT instant command or its SNMP control write, SET VAR, or FSD.
 */
import { NodeAPI, HttpRequest, HttpResponse, UpsDeviceNode, errorText } from './red';
import { ActionNode, ActionSpec, setupActionNode } from './action-node';
import { CommandConfig, parseCommandConfig } from '../lib/command/config';
import { UpsAccess, UpsCommandDriver } from '../lib/command/driver';
import { snmpTarget } from '../lib/snmp/config';
import { snmpCommandDescription } from '../lib/command/snmp';
import { withTimeout } from '../lib/actions/contract';

/** How to reach the UPS of a deployed UPS device config node, with its credentials. */
function accessOf(RED: NodeAPI, deviceId: string, timeoutMs: number): UpsAccess {
  const dev = RED.nodes.getNode(deviceId) as UpsDeviceNode | null;
  if (!dev) throw new Error('the selected UPS device does not exist (deleted, or not deployed yet)');
  if (!dev.config) throw new Error(`UPS device: ${dev.configError ?? 'invalid configuration'}`);
  const c = dev.config;
  const creds = dev.credentials ?? {};
  if (c.source === 'nut') {
    return {
      kind: 'nut',
      name: dev.upsName,
      nut: {
        host: c.host, port: c.port, ups: c.upsName, username: creds.username || undefined, password: creds.password || undefined,
        starttls: c.starttls, tls: { verify: c.tlsVerify, fingerprint: c.tlsFingerprint || undefined }, timeoutMs,
      },
    };
  }
  if (c.source === 'snmp') {
    return { kind: 'snmp', name: dev.upsName, snmp: snmpTarget(c, creds, timeoutMs), profile: c.snmpProfile };
  }
  throw new Error(`UPS device "${dev.upsName}" is ${c.source === 'sim' ? 'a simulated UPS' : 'read from Home Assistant'}: commands go to a NUT or SNMP UPS`);
}

export = function register(RED: NodeAPI): void {
  function UpsCommandNode(this: ActionNode, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    let spec: ActionSpec | null = null;
    let configError: string | undefined;
    try {
      const cfg: CommandConfig = parseCommandConfig(raw);
      const timeoutMs = cfg.timeout * 1000;
      const confirmMs = cfg.confirmTimeout * 1000;
      spec = {
        // The device is looked up when the run lists its target: a problem there is the run's error.
        createDriver: () => new UpsCommandDriver(() => accessOf(RED, cfg.ups, timeoutMs), cfg),
        operationFor: (direction) => (cfg.runOn === 'both' || cfg.runOn === direction ? 'command' : 'none'),
        // Topic `command` is the shutdown direction, so "Send in" decides for it as for `shutdown`.
        topics: { command: { direction: 'shutdown', dryRun: false } },
        // The one target: the UPS of the device, by its name where the device is deployed, so a
        // direction it is not sent in reports the UPS as skipped rather than "no targets".
        get selection() {
          const dev = RED.nodes.getNode(cfg.ups) as UpsDeviceNode | null;
          return dev?.upsName ? { names: [dev.upsName] } : { patterns: ['*'] };
        },
        options: (op) => ({ operation: op, timeoutMs: confirmMs, force: false }),
        concurrency: 1,
        // SNMP: detection, first read and the write client; NUT: connect and LIST VAR.
        connectTimeoutMs: timeoutMs * 3 + 2000,
        // Delays, the command and its confirmation: a handful of requests plus the tracking wait.
        targetTimeoutMs: timeoutMs * 6 + confirmMs * 3 + 5000,
        expectedTargets: 1,
      };
    } catch (err) {
      configError = errorText(err);
    }
    setupActionNode(RED, this, spec, configError);
  }

  RED.nodes.registerType('upsorch-ups-command', UpsCommandNode);

  // The dialog's command list: what this UPS offers (NUT LIST CMD / LIST RW; the SNMP profile's commands).
  RED.httpAdmin.post('/upsorch-ups-command/commands', RED.auth.needsPermission('upsorch-ups-command.write'), (req: HttpRequest, res: HttpResponse) => {
    void listCommands(RED, req.body ?? {}).then((r) => res.json(r));
  });
};

interface CommandList {
  ok: boolean;
  message: string;
  source?: 'nut' | 'snmp';
  commands?: Array<{ name: string; description: string | null }>;
  variables?: string[];
}

async function listCommands(RED: NodeAPI, body: Record<string, unknown>): Promise<CommandList> {
  let driver: UpsCommandDriver | undefined;
  try {
    const id = typeof body.ups === 'string' ? body.ups : '';
    if (!id) throw new Error('choose the UPS device first');
    const timeoutMs = Math.min(Math.max(Number(body.timeout) || 10, 0.5), 120) * 1000;
    const access = accessOf(RED, id, timeoutMs);
    driver = new UpsCommandDriver(access, parseCommandConfig({ ups: id, mode: 'return' }));
    const ac = new AbortController();
    const offered = await withTimeout('listing commands', timeoutMs * 4 + 2000, ac.signal, (s) => driver!.offered(s));
    return {
      ok: true,
      message: `${offered.commands.length} command${offered.commands.length === 1 ? '' : 's'} on ${access.name}${offered.profile ? ` (${offered.profile})` : ''}`,
      source: access.kind,
      commands: offered.commands.map((name) => ({
        name,
        description: offered.profileId ? snmpCommandDescription(offered.profileId, name) : null,
      })),
      variables: offered.variables,
    };
  } catch (err) {
    return { ok: false, message: errorText(err) };
  } finally {
    await driver?.close();
  }
}
