/**
 * "NUT secondaries" action: raises FSD on a UPS served by a NUT server node, then waits until the
 * NAS boxes and upsmon secondaries logged in to it have logged out, or its timeout passes; one
 * result per client says who left and who did not, and an expected client that is not logged in
 * fails the step. Startup clears FSD.
 */
import { NodeAPI, errorText } from './red';
import { ActionNode, ActionSpec, setupActionNode } from './action-node';
import { NutServerNode } from './nut-server-types';
import { NutSecondariesDriver } from '../lib/nutserver/secondaries';
import { parseSecondariesConfig } from '../lib/nutserver/config';
import { NutServer } from '../lib/nutserver/server';

export = function register(RED: NodeAPI): void {
  function NutSecondariesNode(this: ActionNode, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    let spec: ActionSpec | null = null;
    let configError: string | undefined;
    try {
      const cfg = parseSecondariesConfig(raw);
      const chosen = RED.nodes.getNode(cfg.server) as NutServerNode | null;
      if (!chosen) throw new Error('the selected NUT server does not exist (deleted or not deployed)');
      if (chosen.configError) throw new Error(`NUT server: ${chosen.configError}`);
      const server = (): NutServer => {
        const n = RED.nodes.getNode(cfg.server) as NutServerNode | null;
        if (!n) throw new Error('the selected NUT server does not exist (deleted or not deployed)');
        if (n.configError) throw new Error(`NUT server: ${n.configError}`);
        if (!n.upsorchNutServer) throw new Error('the NUT server is stopped');
        return n.upsorchNutServer;
      };
      spec = {
        createDriver: () => new NutSecondariesDriver(server(), { ups: cfg.ups, expected: cfg.expected }),
        operationFor: (direction) => (direction === 'shutdown' ? 'shutdown' : cfg.clearOnStartup ? 'start' : 'none'),
        // The UPS (FSD), every logged-in client and every expected one missing: chosen in the driver.
        selection: { patterns: ['*'] },
        options: (op) => ({ operation: op, timeoutMs: cfg.timeoutMs, force: false }),
        // Every client waits at the same time, as upsmon's HOSTSYNC does.
        concurrency: 1000,
        connectTimeoutMs: 5000,
        targetTimeoutMs: cfg.timeoutMs + 5000,
        expectedTargets: 1,
      };
    } catch (err) {
      configError = errorText(err);
    }
    setupActionNode(RED, this, spec, configError);
  }

  RED.nodes.registerType('upsorch-nut-secondaries', NutSecondariesNode);
};
