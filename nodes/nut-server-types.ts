/** The NUT server config node as the nodes that use it see it (nodes/upsorch-nut-server.ts). */
import { Node } from './red';
import { NutServer } from '../lib/nutserver/server';

export interface NutServerNode extends Node {
  /** The running server; undefined when the configuration is invalid or the node is closed. */
  upsorchNutServer?: NutServer;
  configError?: string;
  /** Why the server is not listening (port in use…), once known. */
  listenError?: string;
}
