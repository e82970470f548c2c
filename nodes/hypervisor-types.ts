/** How the vSphere and Proxmox action nodes see their connection config nodes. */
import { Node } from './red';
import { VsphereConnectionConfig } from '../lib/vsphere/config';
import { VsphereSession } from '../lib/vsphere/session';
import { ProxmoxConnectionConfig } from '../lib/proxmox/config';
import { ProxmoxClient } from '../lib/proxmox/client';

/** Shared connection, reference-counted by the action nodes that use it (MQTT broker model). */
interface SharedConnection<T> extends Node {
  configError?: string;
  /** The shared client; throws when the configuration or credentials are invalid. */
  upsorchClient?: () => T;
  upsorchRegister?: (user: string) => void;
  upsorchDeregister?: (user: string) => Promise<void>;
}

export interface VsphereConnectionNode extends SharedConnection<VsphereSession> {
  config?: VsphereConnectionConfig;
}

export interface ProxmoxConnectionNode extends SharedConnection<ProxmoxClient> {
  config?: ProxmoxConnectionConfig;
}
