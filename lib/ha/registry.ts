/**
 * The Home Assistant connections of the running flows, by server config node id. The server config
 * node registers its client here; parts of the package that only know the config id (the UPS source
 * reading HA entities, notify) look it up at the moment they need it, so the order in which Node-RED
 * starts config nodes does not matter, and a redeployed server config is picked up.
 */
import { HaClient } from './client';

const servers = new Map<string, HaClient>();

export function registerHaServer(id: string, client: HaClient): void {
  servers.set(id, client);
}

/** Remove it, unless another client took the id meanwhile (a redeploy starts the new one first). */
export function unregisterHaServer(id: string, client: HaClient): void {
  if (servers.get(id) === client) servers.delete(id);
}

export function getHaServer(id: string): HaClient | undefined {
  return servers.get(id);
}
