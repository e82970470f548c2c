/**
 * The small part of the Node-RED runtime API the nodes use, typed here (the published @types are
 * for Node-RED 1.x), plus helpers every node shares.
 */
export interface NodeStatus {
  fill?: 'red' | 'green' | 'yellow' | 'blue' | 'grey';
  shape?: 'ring' | 'dot';
  text?: string;
}

export type NodeMessage = Record<string, unknown> & { _msgid?: string; topic?: unknown; payload?: unknown };
export type SendFn = (msg: NodeMessage | null | Array<NodeMessage | null>) => void;
export type DoneFn = (err?: Error) => void;

export interface Node {
  id: string;
  type: string;
  name?: string;
  /** Output wiring: wires[i] lists the node ids output i goes to. */
  wires?: string[][];
  credentials: Record<string, string | undefined>;
  on(event: 'input', cb: (msg: NodeMessage, send: SendFn, done: DoneFn) => void): void;
  on(event: 'close', cb: (removed: boolean, done: () => void) => void): void;
  send: SendFn;
  status(s: NodeStatus): void;
  log(msg: unknown): void;
  warn(msg: unknown): void;
  error(msg: unknown, m?: NodeMessage): void;
}

export interface NodeAPI {
  nodes: {
    createNode(node: Node, config: Record<string, unknown>): void;
    getNode(id: string): Node | null;
    getCredentials(id: string): Record<string, string> | undefined;
    registerType<T extends Node>(type: string, ctor: (this: T, config: Record<string, unknown>) => void, opts?: { credentials?: Record<string, { type: 'text' | 'password' }> }): void;
  };
  httpAdmin: {
    post(path: string, ...handlers: Array<(req: HttpRequest, res: HttpResponse, next?: () => void) => void>): void;
  };
  auth: { needsPermission(permission: string): (req: HttpRequest, res: HttpResponse, next?: () => void) => void };
  log: { info(m: string): void; warn(m: string): void; error(m: string): void };
  _(key: string, subs?: Record<string, unknown>): string;
  settings: { userDir?: string } & Record<string, unknown>;
  /** Runtime events; `flows:started` fires once every node of a deploy exists. */
  events: { on(ev: string, fn: (...a: unknown[]) => void): void; removeListener(ev: string, fn: (...a: unknown[]) => void): void };
}

export interface HttpRequest {
  body: Record<string, unknown>;
  params: Record<string, string>;
}

export interface HttpResponse {
  json(body: unknown): void;
  status(code: number): HttpResponse;
}

/** The UPS device config node as flow nodes see it (nodes/upsorch-device.ts). */
export interface UpsDeviceNode extends Node {
  /** Validated configuration, or undefined when the configuration is invalid (see configError). */
  config?: import('../lib/ups/config').DeviceConfig;
  configError?: string;
  upsName: string;
  thresholds: import('../lib/ups/events').VoltageThresholds;
  /** The shared device; created on first use. Throws when the configuration is invalid. */
  device(): import('../lib/ups/device').UpsDevice;
  subscribe(listener: import('../lib/ups/device').StateListener): () => Promise<void>;
  /** Drive the simulated UPS; throws for other sources or invalid commands. */
  simulate(command: string, value: unknown): Promise<void>;
}

/** Node-RED sends this placeholder back for a password field the user did not change. */
export const UNCHANGED_PASSWORD = '__PWRD__';

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Node status text is shown in one line under the node; keep it short. */
export function shortStatus(text: string, max = 100): string {
  return text.length > max ? text.slice(0, max - 1) + '…' : text;
}

/** The plan config node as phases, Home Assistant and notify see it (nodes/upsorch-plan.ts). */
export interface PlanNode extends Node {
  plan: import('../lib/plan/runner').Plan;
  configError?: string;
  /** Start a run (the chain is found from the phases' wiring). */
  request(req: import('../lib/plan/runner').RunRequest): import('../lib/plan/runner').RequestResult;
  cancel(by: string): { ok: boolean; reason: string };
  /** The longest the plan may take in a direction, from its phases' timeouts (time budget). */
  expectedDurationMs(direction: 'shutdown' | 'startup'): number;
  registerPhase(p: import('../lib/plan/types').PhaseHandle & { chainNode(): import('../lib/plan/chain').ChainNode }): void;
  deregisterPhase(id: string): void;
}

const ENDPOINT = Symbol('upsorch.endpoint');

function endpointOf(config: Record<string, unknown>, keys: readonly string[]): string {
  return JSON.stringify(keys.map((k) => (config[k] === undefined || config[k] === null ? '' : String(config[k]).trim())));
}

/**
 * Remember where a deployed config node connects (host, port, URL…), so an editor "Test connection"
 * can tell whether it is testing that same endpoint. Call from the node's constructor with the
 * fields that name the peer its secrets are sent to.
 */
export function rememberEndpoint(node: Node, config: Record<string, unknown>, keys: readonly string[]): void {
  (node as unknown as Record<symbol, string>)[ENDPOINT] = endpointOf(config, keys);
}

/**
 * The stored credentials of a deployed config node, for an editor "Test connection" or "Send test".
 * Given only when `body.id` is a deployed node of `type` whose endpoint (the `keys` of
 * `rememberEndpoint`) equals the request's: otherwise an editor user could send the stored password
 * or token to a host of their choosing. A dialog testing a changed endpoint must send the secrets.
 */
export function storedCredentials(RED: NodeAPI, body: Record<string, unknown>, type: string, keys: readonly string[]): Record<string, string> {
  if (typeof body.id !== 'string' || body.id === '') return {};
  const node = RED.nodes.getNode(body.id);
  if (!node || node.type !== type) return {};
  const deployed = (node as unknown as Record<symbol, string | undefined>)[ENDPOINT];
  if (deployed === undefined || deployed !== endpointOf(body, keys)) return {};
  return RED.nodes.getCredentials(body.id) ?? {};
}
