/**
 * SSH action node: runs a shutdown command (a preset or your own) on one host over SSH, checks its
 * exit code, optionally waits until the host is down; on startup it can wake the host, wait until
 * SSH login works again, and run a command.
 */
import { Node, NodeAPI, errorText } from './red';
import { ActionNode, ActionSpec, setupActionNode } from './action-node';
import { ActOptions, Operation } from '../lib/actions/contract';
import { parseSshActionConfig, shutdownCommand, wakeTarget } from '../lib/ssh/config';
import { SshActionDriver, SshCommandExtra } from '../lib/ssh/action';
import { SshHostHandle } from '../lib/ssh/shared';

interface SshHostNode extends Node {
  upsorchSsh?: SshHostHandle;
  configError?: string;
}

export = function register(RED: NodeAPI): void {
  function SshActionNode(this: ActionNode, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    let spec: ActionSpec | null = null;
    let configError: string | undefined;
    try {
      const cfg = parseSshActionConfig(raw);
      const hostNode = typeof raw.host === 'string' && raw.host ? (RED.nodes.getNode(raw.host) as SshHostNode | null) : null;
      if (!hostNode?.upsorchSsh) throw new Error('choose an SSH host');
      if (hostNode.configError) throw new Error(`SSH host "${hostNode.name || hostNode.upsorchSsh.label}": ${hostNode.configError}`);
      const host = hostNode.upsorchSsh;
      const down = shutdownCommand(cfg, host.username);
      // A command that powers the host off (or is waited for until it has) is a host shutdown: an
      // unreachable host then counts as already off.
      const shutdownOp: Operation = down.powersOff || cfg.waitDown ? 'host-shutdown' : 'command';
      const waitUp = cfg.waitUp;
      const wake = wakeTarget(cfg);
      // 'start' for the startup command, the wait for the host or waking it: the host's power is
      // unknown, so it is always run.
      const startupOp: Operation = cfg.startup === 'command' || waitUp || wake ? 'start' : 'none';
      const timeoutMs = cfg.timeout * 1000;
      const waitDownTimeoutMs = cfg.waitDownTimeout * 1000;
      const waitUpTimeoutMs = cfg.waitUpTimeout * 1000;
      spec = {
        createDriver: () => new SshActionDriver(host, { unreachableIsDown: cfg.waitDown, startupWaits: waitUp || !!wake }),
        operationFor: (direction) => (direction === 'shutdown' ? shutdownOp : startupOp),
        selection: { names: [host.label] },
        options: (op: Operation): ActOptions => {
          let extra: SshCommandExtra | undefined;
          if (op === 'start') extra = { command: cfg.startup === 'command' ? cfg.startupCommand.trim() : '', powersOff: false, waitDown: false, waitDownTimeoutMs, waitUp, waitUpTimeoutMs, wake };
          else if (op === shutdownOp) extra = { command: down.command, powersOff: down.powersOff, waitDown: cfg.waitDown, waitDownTimeoutMs };
          return { operation: op, timeoutMs, force: false, extra: extra as Record<string, unknown> | undefined };
        },
        concurrency: 1,
        // Room for the SSH connect timeout itself, so that an unreachable host is reported as such.
        connectTimeoutMs: host.connectTimeoutMs + 5000,
        // One bound for either direction: a target either waits for the host to go down or to come back.
        targetTimeoutMs: host.connectTimeoutMs + timeoutMs + Math.max(cfg.waitDown ? waitDownTimeoutMs : 0, waitUp ? waitUpTimeoutMs : 0) + 30_000,
        // "Wait at most" is the startup's whole wait for the host (runAction ends it, counted in the phase's timeout).
        ...(waitUp || wake ? { reachableWaitMs: waitUpTimeoutMs } : {}),
        expectedTargets: 1,
      };
    } catch (err) {
      configError = errorText(err);
    }
    setupActionNode(RED, this, spec, configError);
  }

  RED.nodes.registerType('upsorch-ssh', SshActionNode);
};
