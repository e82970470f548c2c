/**
 * Test utilities around node-red-node-test-helper: the real Node-RED 4.1 runtime with our nodes
 * loaded from their TypeScript sources, and a collector that records what nodes send.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const helper = require('node-red-node-test-helper');
helper.init(require.resolve('node-red'));

export const deviceNode = require('../../nodes/upsorch-device');
export const upsInNode = require('../../nodes/upsorch-ups-in');
export const thresholdNode = require('../../nodes/upsorch-threshold');
export const ourNodes = [deviceNode, upsInNode, thresholdNode];

export interface Received {
  at: number;
  msg: any;
}

/** Records every message that reaches a helper node. */
export class Collector {
  readonly received: Received[] = [];
  private waiters: Array<() => void> = [];

  constructor(nodeId: string) {
    const n = helper.getNode(nodeId);
    if (!n) throw new Error(`no node ${nodeId} in the flow`);
    n.on('input', (msg: any) => {
      this.received.push({ at: Date.now(), msg });
      for (const w of this.waiters.splice(0)) w();
    });
  }

  get messages(): any[] {
    return this.received.map((r) => r.msg);
  }

  /** Resolves with the first message (from index `from`) matching `pred`, or rejects after `ms`. */
  waitFor(pred: (msg: any) => boolean, ms = 5000, from = 0, what = 'a matching message'): Promise<Received> {
    const deadline = Date.now() + ms;
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.received.slice(from).find((r) => pred(r.msg));
        if (hit) return resolve(hit);
        if (Date.now() >= deadline) {
          const seen = this.received.slice(from).map((r) => r.msg.topic + ':' + (r.msg.payload?.flags?.join(' ') ?? r.msg.payload?.event ?? '')).join(', ');
          return reject(new Error(`timed out after ${ms} ms waiting for ${what}; saw [${seen}]`));
        }
        const timer = setTimeout(check, Math.min(100, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(timer);
          check();
        });
      };
      check();
    });
  }
}

/** Status calls of a node, as Node-RED recorded them. */
export function statuses(nodeId: string): Array<{ fill?: string; shape?: string; text?: string }> {
  const n = helper.getNode(nodeId);
  return callsOf(n, 'status').map((c: any) => c.args[0]);
}

/**
 * The test helper spies on Node.prototype, so a spy's calls are every node's: keep this node's own,
 * or a wait for one node's status could be satisfied by another's.
 */
function callsOf(n: any, method: 'status' | 'error' | 'warn'): any[] {
  const spy = n?.[method];
  return spy?.getCalls ? spy.getCalls().filter((c: any) => c.thisValue === n) : [];
}

/** Wait until a node's latest status matches. */
export async function waitForStatus(nodeId: string, pred: (s: { fill?: string; shape?: string; text?: string }) => boolean, ms = 5000): Promise<{ fill?: string; text?: string }> {
  const deadline = Date.now() + ms;
  for (;;) {
    const all = statuses(nodeId);
    const last = all[all.length - 1];
    if (last && pred(last)) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for status; last was ${JSON.stringify(last)}`);
    await sleep(50);
  }
}

/** Warnings a node logged (node.warn), its own only. */
export function warningsOf(nodeId: string): string[] {
  return callsOf(helper.getNode(nodeId), 'warn').map((c: any) => String(c.args[0]));
}

/** Errors a node reported (node.error / done(err)). */
export function errorsOf(nodeId: string): string[] {
  const n = helper.getNode(nodeId);
  return callsOf(n, 'error').map((c: any) => String(c.args[0]?.message ?? c.args[0]));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function send(nodeId: string, msg: Record<string, unknown>): void {
  helper.getNode(nodeId).receive(msg);
}

/** A device config node with defaults, overridden by `over`. */
export function deviceConfig(id: string, over: Record<string, unknown>): Record<string, unknown> {
  return {
    id, type: 'upsorch-device', name: '', source: 'sim', host: '127.0.0.1', port: 3493, upsName: 'sim', starttls: false, tlsVerify: true,
    tlsFingerprint: '', pollInterval: 1, pollIntervalOnBattery: 1, commTolerance: 0, timeout: 2, brownoutBelow: '', overvoltageAbove: '',
    simCapacityWh: 250, simRatedPowerW: 900, simLoad: 25, simChargeLow: 20, simRuntimeLow: 120, simRechargeHours: 4, simSpeed: 1, ...over,
  };
}

/** A UPS in node wired to two helper nodes: `${id}-state` and `${id}-events`. */
export function upsIn(id: string, device: string, over: Record<string, unknown> = {}): Record<string, unknown>[] {
  return [
    { id, type: 'upsorch-ups-in', name: '', ups: device, interval: 0, events: true, wires: [[`${id}-state`], [`${id}-events`]], ...over },
    { id: `${id}-state`, type: 'helper' },
    { id: `${id}-events`, type: 'helper' },
  ];
}

/** A runtime threshold node wired to helpers `${id}-shutdown`, `${id}-cancel`, `${id}-restore`. */
export function threshold(id: string, over: Record<string, unknown> = {}): Record<string, unknown>[] {
  return [
    { id, type: 'upsorch-threshold', name: '', wires: [[`${id}-shutdown`], [`${id}-cancel`], [`${id}-restore`]], ...over },
    { id: `${id}-shutdown`, type: 'helper' },
    { id: `${id}-cancel`, type: 'helper' },
    { id: `${id}-restore`, type: 'helper' },
  ];
}

// Home Assistant and MQTT (issue 6): broker and HA server config nodes, publish state.
export const mqttBrokerNode = require('../../nodes/upsorch-mqtt-broker');
export const haServerNode = require('../../nodes/upsorch-ha-server');
export const publishStateNode = require('../../nodes/upsorch-publish-state');
export const haMqttNodes = [deviceNode, upsInNode, mqttBrokerNode, haServerNode, publishStateNode];

// SSH and libvirt actions (issue 4): SSH host config node, SSH action, libvirt action.
export const sshHostNode = require('../../nodes/upsorch-ssh-host');
export const sshActionNode = require('../../nodes/upsorch-ssh');
export const libvirtActionNode = require('../../nodes/upsorch-libvirt');
export const sshNodes = [sshHostNode, sshActionNode, libvirtActionNode];

// NUT server and NUT secondaries action (issue 9).
export const nutServerNode = require('../../nodes/upsorch-nut-server');
export const nutSecondariesNode = require('../../nodes/upsorch-nut-secondaries');
export const nutServerNodes = [deviceNode, upsInNode, nutServerNode, nutSecondariesNode];

// Notify (issue 7): channel config node and notify node.
export const notifyChannelNode = require('../../nodes/upsorch-notify-channel');
export const notifyNode = require('../../nodes/upsorch-notify');
export const notifyNodes = [deviceNode, upsInNode, notifyChannelNode, notifyNode];

// SNMP source and UPS command (issue 8): the UPS command action node.
export const upsCommandNode = require('../../nodes/upsorch-ups-command');
export const upsCommandNodes = [deviceNode, upsInNode, upsCommandNode];

// vSphere and Proxmox VE actions (issue 5): connection config nodes and action nodes.
export const vsphereNode = require('../../nodes/upsorch-vsphere');
export const vsphereActionNode = require('../../nodes/upsorch-vsphere-action');
export const proxmoxNode = require('../../nodes/upsorch-proxmox');
export const proxmoxActionNode = require('../../nodes/upsorch-proxmox-action');
export const hypervisorNodes = [vsphereNode, vsphereActionNode, proxmoxNode, proxmoxActionNode];
