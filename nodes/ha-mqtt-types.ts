/**
 * How flow nodes see the MQTT broker and Home Assistant server config nodes, and the bit of the
 * runtime API (walking the deployed flows) the publish node needs beyond nodes/red.ts.
 */
import { Node } from './red';
import { MqttBroker } from '../lib/mqtt/broker';
import { HaClient } from '../lib/ha/client';

/** nodes/upsorch-mqtt-broker.ts */
export interface MqttBrokerNode extends Node {
  /** The shared connection; undefined when the configuration is invalid (see configError). */
  broker?: MqttBroker;
  configError?: string;
}

/** nodes/upsorch-ha-server.ts */
export interface HaServerNode extends Node {
  /** The shared connection: `client.callService(domain, service, data, target)`, `client.fireEvent(…)`. */
  client?: HaClient;
  configError?: string;
}

/** A node's configuration as deployed (what RED.nodes.eachNode hands out). */
export type FlowNodeConfig = Record<string, unknown> & { id: string; type: string; wires?: string[][]; d?: boolean };

export interface EachNode {
  eachNode(cb: (n: FlowNodeConfig) => void): void;
}
