/**
 * NUT server config node: serves up to four UPS devices over the NUT network protocol, so NAS
 * boxes and stock upsmon secondaries follow this orchestrator (FSD included). One TCP server per
 * config node; it subscribes to its UPS devices for as long as it runs. The "NUT secondaries"
 * action finds the running server through this node.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HttpRequest, HttpResponse, NodeAPI, UpsDeviceNode, errorText } from './red';
import { NutServer, ServedUps } from '../lib/nutserver/server';
import { ServerCredentials, connectionString, isWildcard, parseServerConfig } from '../lib/nutserver/config';
import { commandsFor } from '../lib/nutserver/commands';
import { FileFsdStore, fsdStoreFile } from '../lib/nutserver/fsd-store';
import { DeviceCredentials } from '../lib/ups/config';
import { UpsState } from '../lib/ups/state';
import { NutServerNode } from './nut-server-types';

/** upsd's MAXAGE is 15 s; a device polled less often than that must not look stale between polls. */
function maxAgeFor(dev: UpsDeviceNode): number {
  const c = dev.config!;
  return Math.max(15_000, 3 * Math.max(c.pollInterval, c.pollIntervalOnBattery) * 1000 + c.timeout * 1000);
}

export = function register(RED: NodeAPI): void {
  function NutServerConfigNode(this: NutServerNode, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    const node = this;
    const unsubscribes: Array<() => Promise<void>> = [];
    let server: NutServer | undefined;
    const fsdFile = fsdStoreFile(path.join(RED.settings.userDir || path.join(os.homedir(), '.node-red'), 'ups-orchestrator'), node.id);
    const refusedLogged = new Map<string, number>();
    try {
      const cfg = parseServerConfig(raw, (node.credentials ?? {}) as ServerCredentials);
      const served: ServedUps[] = cfg.ups.map((slot, i) => {
        const dev = RED.nodes.getNode(slot.device) as UpsDeviceNode | null;
        if (!dev) throw new Error(`UPS ${i + 1} ("${slot.name}"): the selected UPS device does not exist (deleted or not deployed)`);
        if (dev.configError || !dev.config) throw new Error(`UPS ${i + 1} ("${slot.name}"): ${dev.configError ?? 'invalid UPS device'}`);
        let latest: UpsState | undefined;
        unsubscribes.push(dev.subscribe((s) => (latest = s)));
        const { commands, meta } = commandsFor(dev.config, (dev.credentials ?? {}) as DeviceCredentials, (cmd, value) => dev.simulate(cmd, value));
        return { name: slot.name, description: slot.description || undefined, state: () => latest, maxAgeMs: maxAgeFor(dev), commands, meta };
      });
      // FSD is kept on disk: after a Node-RED restart mid-shutdown the NAS boxes still see it; after
      // a restart of this machine (the UPS went off last) it is not raised again.
      server = new NutServer({
        host: cfg.host, port: cfg.port, ups: served, users: cfg.users, allow: cfg.allow, idleTimeoutMs: cfg.idleTimeoutMs, maxConnections: cfg.maxConnections,
        fsdStore: new FileFsdStore(fsdFile),
      });
      if (server.storeError) node.error(`NUT server: ${server.storeError}`);
      for (const r of server.droppedFsd) {
        node.log(`FSD on ${r.ups} from before this machine restarted is not raised again (raised by ${r.by}, ${new Date(r.at).toISOString()}): the power came back, so clients that log in now stay up`);
      }
      for (const r of server.restoredFsd) {
        node.warn(`FSD on ${r.ups} is still raised (by ${r.by}, ${new Date(r.at).toISOString()}), kept across the restart of Node-RED: clients that log in shut down; the startup direction of NUT secondaries or Clear FSD clears it`);
      }
      for (const u of cfg.usersWithoutPassword) node.warn(`user "${u}" has no password yet: it cannot log in until one is set in the NUT server dialog`);
      node.upsorchNutServer = server;
      server.on('login', (c) => node.log(`${c.username}@${c.address} logged in to ${c.ups}`));
      server.on('logout', (c) => node.log(`${c.username}@${c.address} left ${c.ups} (${c.reason})`));
      server.on('fsd', (e) => node.warn(`FSD raised on ${e.ups} by ${e.by}`));
      server.on('fsd-cleared', (e) => node.log(`FSD cleared on ${e.ups}`));
      server.on('instcmd', (e) => (e.ok ? node.log(`${e.by} ran ${e.cmd} on ${e.ups}`) : node.warn(`${e.by} ran ${e.cmd} on ${e.ups}: failed: ${e.error}`)));
      server.on('refused', (e) => {
        // One line per address and minute: a scanner must not flood the log.
        const now = Date.now();
        if (now - (refusedLogged.get(e.address) ?? 0) < 60_000) return;
        refusedLogged.set(e.address, now);
        if (refusedLogged.size > 1000) refusedLogged.clear();
        node.warn(`refused a connection from ${e.address}: ${e.reason}`);
      });
      server.on('error', (e) => node.error(`NUT server: ${errorText(e)}`));
      if (isWildcard(cfg.host) && cfg.allow.length === 0) {
        node.warn(`listening on every interface (${cfg.host}) without an allow-list: any host that reaches port ${cfg.port} can read the UPS`);
      }
      server.listen().then(
        (a) => node.log(`serving ${cfg.ups.map((u) => u.name).join(', ')} on ${a.address}:${a.port}`),
        (e) => {
          node.listenError = errorText(e);
          node.error(`NUT server: ${node.listenError}`);
        },
      );
    } catch (err) {
      node.configError = errorText(err);
      node.error(node.configError);
    }

    node.on('close', (removed, done) => {
      // A deleted server leaves no FSD behind for a later node that might reuse the id.
      if (removed) fs.rm(fsdFile, { force: true }, () => undefined);
      const s = server;
      server = undefined;
      delete node.upsorchNutServer;
      // Free the port first (a redeploy binds it again at once), then let the devices go.
      const pending = unsubscribes.splice(0).map((u) => u().catch(() => undefined));
      (s ? s.close() : Promise.resolve()).then(() => Promise.all(pending)).finally(() => done());
    });
  }

  const credentials: Record<string, { type: 'password' }> = {};
  for (const i of [1, 2, 3, 4]) credentials[`password${i}`] = { type: 'password' };
  RED.nodes.registerType('upsorch-nut-server', NutServerConfigNode, { credentials });

  // The dialog's live view: where it listens, what a NAS must enter, who is logged in. No secrets.
  RED.httpAdmin.post('/upsorch-nut-server/status', RED.auth.needsPermission('upsorch-nut-server.write'), (req: HttpRequest, res: HttpResponse) => {
    res.json(status(RED, req.body ?? {}));
  });
  RED.httpAdmin.post('/upsorch-nut-server/clear-fsd', RED.auth.needsPermission('upsorch-nut-server.write'), (req: HttpRequest, res: HttpResponse) => {
    const n = typeof req.body?.id === 'string' ? (RED.nodes.getNode(req.body.id) as NutServerNode | null) : null;
    const s = n?.upsorchNutServer;
    if (!s) return res.json({ ok: false, message: 'this NUT server is not deployed' });
    try {
      const cleared = s.upsNames.filter((u) => s.clearFsd(u));
      res.json({ ok: true, message: cleared.length ? `FSD cleared on ${cleared.join(', ')}` : 'FSD was not raised' });
    } catch (e) {
      res.json({ ok: false, message: errorText(e) });
    }
  });
};

/** Addresses of this machine a NAS could use, for the connection string of a wildcard bind. */
function ownAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal && a.family === 'IPv4') out.push(a.address);
  }
  return out;
}

function status(RED: NodeAPI, body: Record<string, unknown>): Record<string, unknown> {
  const n = typeof body.id === 'string' ? (RED.nodes.getNode(body.id) as NutServerNode | null) : null;
  if (!n) return { ok: false, deployed: false, message: 'not deployed yet: deploy to start the server' };
  if (n.configError) return { ok: false, deployed: true, message: n.configError };
  const s = n.upsorchNutServer;
  if (!s) return { ok: false, deployed: true, message: 'the server is stopped' };
  const bound = s.address;
  if (!bound) return { ok: false, deployed: true, message: n.listenError ?? 'starting…' };
  const hosts = isWildcard(s.opts.host) ? ownAddresses() : [bound.address];
  return {
    ok: true,
    deployed: true,
    address: bound.address,
    port: bound.port,
    localOnly: bound.address === '127.0.0.1' || bound.address === '::1',
    connections: s.connectionCount,
    stats: s.stats,
    // Connected without a login: a NAS whose LOGIN is refused shows here with the reason.
    pending: s.pendingClients().map((p) => ({ username: p.username, address: p.address, since: p.since, ...(p.loginFailed ? { loginFailed: p.loginFailed } : {}) })),
    ups: s.upsNames.map((u) => ({
      name: u,
      connect: hosts.map((h) => connectionString(u, h, bound.port)),
      fsd: s.fsd(u),
      clients: s.clients(u).map((c) => ({ username: c.username, address: c.address, since: c.since })),
    })),
  };
}
