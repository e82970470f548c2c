/** Flow builders for the notify tests: a channel config node and a notify node with defaults. */

/** A notification channel config node (webhook unless `kind` says otherwise), fast retries, no rate limit. */
export function channel(id: string, over: Record<string, unknown>): Record<string, unknown> {
  return { id, type: 'upsorch-notify-channel', name: '', kind: 'webhook', rateLimit: 0, maxAge: 24, retryMax: 1, timeout: 5, tlsVerify: true, tlsFingerprint: '', ...over };
}

/** A notify node using channel `channelId`. */
export function notify(id: string, channelId: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { id, type: 'upsorch-notify', name: '', channel: channelId, crisisChannel: '', plan: '', crisis: true, events: '', flapWindow: 300, flapThreshold: 2, flapQuiet: 120, templates: [], wires: [], ...over };
}

// The test helper's spies are shared by all nodes: these look at one node's own calls.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { helper } = require('./red');

export type Status = { fill?: string; shape?: string; text?: string };

function callsOf(nodeId: string, method: string): any[] {
  const n = helper.getNode(nodeId);
  if (!n?.[method]?.getCalls) return [];
  return n[method].getCalls().filter((c: any) => c.thisValue === n);
}

/** One node's status calls, oldest first. */
export function statusesOf(nodeId: string): Status[] {
  return callsOf(nodeId, 'status').map((c) => c.args[0]);
}

/** One node's node.error / done(err) messages. */
export function errorsOfNode(nodeId: string): string[] {
  return callsOf(nodeId, 'error').map((c) => String(c.args[0]?.message ?? c.args[0]));
}

export function warningsOfNode(nodeId: string): string[] {
  return callsOf(nodeId, 'warn').map((c) => String(c.args[0]?.message ?? c.args[0]));
}

/** Everything one node showed or logged (status, error, warn, log), to check that no secret leaks. */
export function visibleOf(nodeIds: string[]): string {
  return nodeIds.flatMap((id) => ['status', 'error', 'warn', 'log'].flatMap((m) => callsOf(id, m).map((c) => JSON.stringify(c.args)))).join('\n');
}

/** Waits until one node's latest status matches. */
export async function waitForStatusOf(nodeId: string, pred: (s: Status) => boolean, ms = 5000): Promise<Status> {
  const deadline = Date.now() + ms;
  for (;;) {
    const last = statusesOf(nodeId).pop();
    if (last && pred(last)) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for the status of ${nodeId}; last was ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
