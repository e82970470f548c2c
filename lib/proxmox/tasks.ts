/**
 * Proxmox tasks: every power call answers with a UPID at once; the work runs as a task on the
 * node named inside the UPID, polled there until `stopped`. Exit status `OK` or `WARNINGS: n` is
 * success, anything else is the error text (pve-common PVE/UPID.pm).
 */
import { abortableSleep, formatSeconds } from '../actions/contract';
import { ProxmoxClient, apiPath } from './client';

export interface Upid {
  node: string;
  type: string;
  id: string;
  user: string;
  starttime: number;
}

const UPID_RE = /^UPID:([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$/;

export function parseUpid(upid: string): Upid {
  const m = UPID_RE.exec(upid);
  if (!m) throw new Error(`not a Proxmox task id (UPID): ${JSON.stringify(upid).slice(0, 120)}`);
  return { node: m[1], starttime: parseInt(m[5], 16), type: m[6], id: m[7], user: m[8] };
}

/** A task that ended with an error exit status. */
export class TaskFailed extends Error {
  constructor(
    readonly upid: string,
    readonly exitstatus: string,
  ) {
    super(exitstatus);
    this.name = 'TaskFailed';
  }
}

export function taskOk(exitstatus: string | undefined): boolean {
  return exitstatus === 'OK' || /^WARNINGS: \d+$/.test(exitstatus ?? '');
}

export interface TaskEnd {
  exitstatus: string;
  ms: number;
}

/**
 * Poll the task on its node until it stopped. Resolves with its exit status when it is OK or
 * WARNINGS, rejects with TaskFailed otherwise, or with a timeout error after `timeoutMs`.
 */
export async function waitTask(client: ProxmoxClient, upid: string, timeoutMs: number, signal: AbortSignal, pollMs = 1000): Promise<TaskEnd> {
  const u = parseUpid(upid);
  const t0 = Date.now();
  const path = apiPath('/nodes/{node}/tasks/{upid}/status', { node: u.node, upid });
  let wait = Math.min(200, pollMs);
  for (;;) {
    const st = await client.request<{ status: string; exitstatus?: string }>('GET', path, {}, signal);
    if (st.status === 'stopped') {
      const exit = st.exitstatus ?? 'unknown';
      if (!taskOk(exit)) throw new TaskFailed(upid, exit);
      return { exitstatus: exit, ms: Date.now() - t0 };
    }
    const left = timeoutMs - (Date.now() - t0);
    if (left <= 0) throw new Error(`task ${u.type} ${u.id} on ${u.node} still running after ${formatSeconds(timeoutMs)}`);
    await abortableSleep(Math.min(wait, left), signal);
    wait = Math.min(pollMs, wait * 2);
  }
}
