/**
 * UPS device config node: owns one UpsDevice (one connection, one poll loop) for every node that
 * uses this UPS. Polling starts with the first user and stops after the last.
 */
import { NodeAPI, UpsDeviceNode, HttpRequest, HttpResponse, UNCHANGED_PASSWORD, errorText, rememberEndpoint, storedCredentials } from './red';
import {
  DeviceConfig, DeviceCredentials, checkDeviceCredentials, createDevice, createSource, displayName, parseDeviceConfig, voltageThresholds,
} from '../lib/ups/config';
import { UpsDevice } from '../lib/ups/device';
import { SimSource } from '../lib/sim/source';
import { normalise } from '../lib/ups/state';
import { SourceError } from '../lib/ups/source';
import { SnmpSource } from '../lib/snmp/source';
import { UpsSource } from '../lib/ups/source';

/**
 * The settings that decide where the device's secrets go, per source: a dialog test uses the stored
 * password, community or v3 keys only while these equal the deployed node's.
 */
function endpointKeys(source: unknown): string[] {
  if (source === 'nut') return ['source', 'host', 'port', 'starttls', 'tlsVerify', 'tlsFingerprint'];
  if (source === 'snmp') return ['source', 'host', 'snmpPort', 'snmpVersion', 'snmpUser', 'snmpSecLevel', 'snmpAuthProtocol', 'snmpPrivProtocol'];
  if (source === 'ha') return ['source', 'haServer'];
  return ['source'];
}

export = function register(RED: NodeAPI): void {
  function UpsDeviceConfigNode(this: UpsDeviceNode, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    const node = this;
    let device: UpsDevice | undefined;
    const stops = new Set<() => Promise<void>>();
    try {
      const config = parseDeviceConfig(raw);
      node.upsName = displayName(config);
      node.thresholds = voltageThresholds(config);
      checkDeviceCredentials(config, (node.credentials ?? {}) as DeviceCredentials);
      node.config = config;
      // Compared in parsed form, so "3493" and 3493 or a stray space are the same endpoint.
      rememberEndpoint(node, config, endpointKeys(config.source));
    } catch (err) {
      node.configError = errorText(err);
      node.upsName = String(raw.name || raw.upsName || 'UPS');
      node.thresholds = {};
      node.error(node.configError);
    }

    node.device = () => {
      if (!node.config) throw new Error(node.configError ?? 'invalid UPS device configuration');
      device ??= createDevice(node.config, node.credentials as DeviceCredentials);
      return device;
    };

    node.subscribe = (listener) => {
      const unsubscribe = node.device().subscribe(listener);
      stops.add(unsubscribe);
      return () => {
        stops.delete(unsubscribe);
        return unsubscribe();
      };
    };

    node.simulate = async (command, value) => {
      const d = node.device();
      if (!(d.source instanceof SimSource)) {
        throw new Error(`"${command}" drives a simulated UPS only; UPS device "${node.upsName}" reads ${d.source.label}`);
      }
      d.source.sim.command(command, value, Date.now());
      if (d.subscribers > 0) await d.poll();
    };

    node.on('close', (_removed, done) => {
      // Users unsubscribe in their own close handlers; stop whatever is left, bounded by the source timeouts.
      const pending = [...stops].map((s) => s());
      stops.clear();
      Promise.all(pending).then(() => device?.stop()).catch(() => undefined).finally(() => done());
    });
  }

  RED.nodes.registerType('upsorch-device', UpsDeviceConfigNode, {
    credentials: { username: { type: 'text' }, password: { type: 'password' }, community: { type: 'password' }, authKey: { type: 'password' }, privKey: { type: 'password' } },
  });

  // "Test connection" from the config dialog: one read with the settings in the dialog, never echoing secrets.
  RED.httpAdmin.post('/upsorch-device/test', RED.auth.needsPermission('upsorch-device.write'), (req: HttpRequest, res: HttpResponse) => {
    // Always an answer: the dialog waits for one.
    testConnection(RED, req.body ?? {}).then(
      (result) => res.json(result),
      (err) => res.json({ ok: false, message: errorText(err) }),
    );
  });
};

interface TestResult {
  ok: boolean;
  message: string;
  model?: string | null;
  status?: string;
  charge?: number | null;
  runtime?: number | null;
  warning?: string | null;
  /** SNMP: the MIB profile in use, the agent's sysDescr, and the values read. */
  profile?: string | null;
  details?: string[];
}

async function testConnection(RED: NodeAPI, body: Record<string, unknown>): Promise<TestResult> {
  let config: DeviceConfig;
  let source: UpsSource;
  try {
    config = parseDeviceConfig(body);
    // Stored secrets only for the endpoint the deployed node talks to; a changed host must send its own.
    const stored = storedCredentials(RED, { ...config, id: body.id }, 'upsorch-device', endpointKeys(config.source));
    const creds: DeviceCredentials = {
      username: typeof body.username === 'string' ? body.username : stored.username,
      password: typeof body.password === 'string' && body.password !== UNCHANGED_PASSWORD ? body.password : stored.password,
    };
    for (const k of ['community', 'authKey', 'privKey'] as const) {
      creds[k] = typeof body[k] === 'string' && body[k] !== UNCHANGED_PASSWORD && body[k] !== '' ? (body[k] as string) : stored[k];
    }
    checkDeviceCredentials(config, creds);
    // A test read never binds the trap port (the running device may own it).
    source = createSource(config.source === 'snmp' ? { ...config, snmpTraps: false } : config, creds);
  } catch (err) {
    return { ok: false, message: errorText(err) };
  }
  try {
    const now = Date.now();
    const reading = await source.read(now);
    const state = normalise({ ups: displayName(config), source: source.kind, vars: reading.vars, ts: now, secondsOnBattery: 0 });
    return {
      ok: true,
      message: `connected to ${source.label}`,
      model: [state.device.mfr, state.device.model].filter(Boolean).join(' ') || null,
      status: state.flags.join(' '),
      charge: state.charge,
      runtime: state.runtime,
      warning: source.warning,
      ...(source instanceof SnmpSource ? snmpDetails(source, state) : {}),
    };
  } catch (err) {
    return { ok: false, message: err instanceof SourceError ? err.message : errorText(err) };
  } finally {
    await source.close().catch(() => undefined);
  }
}

/** What the dialog shows for an SNMP agent: the profile in use and the values it gave. */
function snmpDetails(source: SnmpSource, state: ReturnType<typeof normalise>): Pick<TestResult, 'profile' | 'details'> {
  const v = (label: string, n: number | null, unit: string) => (n === null ? null : `${label} ${n}${unit}`);
  return {
    profile: source.profile ? `${source.profile.label}${source.opts.profile === 'auto' ? ' (detected)' : ''}` : null,
    details: [
      source.sysDescr ? `agent: ${source.sysDescr}` : null,
      v('input', state.inputVoltage, ' V'), v('output', state.outputVoltage, ' V'), v('load', state.load, ' %'),
      v('battery', state.raw['battery.voltage'] === undefined ? null : Number(state.raw['battery.voltage']), ' V'),
      v('temperature', state.temperature, ' °C'), state.alarmText ? `alarm: ${state.alarmText}` : null,
    ].filter((x): x is string => x !== null),
  };
}
