/**
 * PveFake: a protocol-faithful fake of the Proxmox VE API for the tests (no real Proxmox can run
 * here). It serves HTTPS on loopback with a certificate made for it (openssl), under /api2/json,
 * and is driven by the official API schema: pve-endpoints.json next to this file, the 27 endpoints
 * extracted from proxmox/pve-docs api-viewer/apidata.js (copied from the project's reference).
 *
 * What it models, from that schema and pve-manager / qemu-server / pve-http-server behaviour:
 * - every request is checked against the schema: path, method (unknown → 501), parameter names
 *   (unknown → 400 "property is not defined in schema…"), required parameters, types (integer,
 *   number, boolean as 0/1/true/false…, string enum / maxLength / pattern / minimum / maximum),
 *   with PVE's 400 body `{data:null, errors:{param:msg}, message:"Parameter verification failed.\n"}`;
 * - API-token auth only: `Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET` (401 otherwise),
 *   and privileges per token: the schema's `check: ["perm", path, [privs]]` plus the documented
 *   rules for stopall/startall/suspendall (VM.PowerMgmt on /) and ACL-filtered listings; a missing
 *   privilege answers 403 "Permission check failed (/vms/100, VM.PowerMgmt)";
 * - responses `{"data": …}` whose shape is checked against the schema's `returns` (required
 *   properties, types) before they are sent: a mismatch is a bug in this fake and fails loudly;
 * - UPIDs in the real format, tasks on the node they name, running for a while and ending with
 *   `OK`, `WARNINGS: n` or the real error texts ("VM quit/powerdown failed - got timeout", "VM is
 *   paused - cannot shutdown", the lxc-stop failure), 500 for "VM 100 not running" and friends;
 * - guests that shut down after a delay, ignore the request (ACPI ignored), are paused or
 *   hibernated (lock "suspended"); HA-managed guests whose power calls only queue an HA request
 *   (hastop / hastart tasks that end at once) while the guest changes state later, and
 *   PUT /cluster/ha/resources/{sid} state=stopped|started;
 * - stopall / startall / suspendall on a node, node shutdown (the node goes offline, its guests
 *   stop; requests for it then get 595; when it is the node serving the API, the API goes away);
 * - a cluster without quorum (`quorate = false`, a node that booted before the others): power
 *   calls fail with 500 "cluster not ready - no quorum?" (PVE::Cluster::check_cfs_quorum), reads work.
 *
 * What it does not model: tickets and CSRF (tokens need neither), privilege-separated tokens as an
 * intersection with the user's ACLs (a token simply holds its privileges, on / or on paths),
 * pools as ACL paths, storage, migration, HA recovery on other nodes, the task log beyond a few
 * lines, corosync membership, rate limits, and the exact wording of messages it does not produce.
 */
import * as cp from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

type Json = any;

interface ParamDef {
  type?: string;
  optional?: number;
  enum?: string[];
  minimum?: number;
  maximum?: number;
  maxLength?: number;
  pattern?: string;
  format?: string;
}

interface MethodDef {
  method: string;
  allowtoken?: number;
  parameters?: { additionalProperties?: number; properties?: Record<string, ParamDef> };
  permissions?: { check?: Json[]; user?: string; description?: string };
  returns?: Json;
}

const SCHEMA: Record<string, Record<string, MethodDef>> = JSON.parse(fs.readFileSync(path.join(__dirname, 'pve-endpoints.json'), 'utf8'));

const ROUTES = Object.keys(SCHEMA)
  .map((template) => {
    const names: string[] = [];
    const re = new RegExp('^' + template.replace(/[.+^$()|[\]\\]/g, '\\$&').replace(/\{(\w+)\}/g, (_, n: string) => (names.push(n), '([^/]+)')) + '$');
    return { template, re, names };
  })
  // Literal paths before templated ones.
  .sort((a, b) => a.names.length - b.names.length);

export interface FakeGuest {
  vmid: number;
  type: 'qemu' | 'lxc';
  node: string;
  name: string;
  status: 'running' | 'stopped';
  /** qemu: paused in RAM (qmpstatus "paused"). */
  paused?: boolean;
  /** "suspended" after a hibernation. */
  lock?: string;
  tags?: string[];
  pool?: string;
  /** HA-managed (resource vm:<vmid> / ct:<vmid>). */
  ha?: boolean;
  haState?: 'started' | 'stopped';
  agent?: boolean;
  onboot?: boolean;
  template?: boolean;
  /** How long a graceful shutdown takes (default 300 ms). */
  shutdownMs?: number;
  /** The guest ignores shutdown requests (ACPI ignored, no agent). */
  ignoresShutdown?: boolean;
  startedAt?: number;
}

export interface FakeToken {
  /** USER@REALM!TOKENID */
  id: string;
  secret: string;
  /** Privileges on / (propagating), e.g. ['VM.Audit', 'VM.PowerMgmt', 'Sys.Audit']; '*' = all. */
  privileges: string[];
  /** Further privileges on single paths: { '/vms/100': ['VM.PowerMgmt'] }. */
  paths?: Record<string, string[]>;
}

export interface PveFakeOptions {
  nodes: string[];
  guests: FakeGuest[];
  tokens: FakeToken[];
  /** The node whose shutdown takes the API down (default: none). */
  apiNode?: string;
  /** Duration of quick tasks (start, stop, hastop), ms. Default 150. */
  taskMs?: number;
  /** Listen on this loopback port (default: a free one), e.g. one a client is already trying. */
  port?: number;
  /** Serve this certificate (PveFake.certificate()) instead of a new one, so its pin is known before it starts. */
  cert?: { cert: string; key: string };
}

interface Task {
  upid: string;
  node: string;
  type: string;
  id: string;
  user: string;
  pid: number;
  pstart: number;
  starttime: number;
  status: 'running' | 'stopped';
  exitstatus?: string;
  log: string[];
}

export interface LoggedRequest {
  method: string;
  path: string;
  params: Record<string, string>;
  token: string | null;
  status: number;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors?: Record<string, string>,
  ) {
    super(message);
  }
}

const ALL_PRIVS = ['VM.Audit', 'VM.PowerMgmt', 'VM.Config.Disk', 'VM.GuestAgent.Audit', 'Sys.Audit', 'Sys.PowerMgmt', 'Sys.Console', 'Datastore.AllocateSpace'];

function hex(n: number, w: number): string {
  return n.toString(16).toUpperCase().padStart(w, '0');
}

function makeCert(dir: string): { cert: string; key: string } {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  cp.execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=pve-fake', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
    { stdio: 'ignore', timeout: 15_000 },
  );
  return { cert: fs.readFileSync(cert, 'utf8'), key: fs.readFileSync(key, 'utf8') };
}

export class PveFake {
  readonly requests: LoggedRequest[] = [];
  readonly guests = new Map<number, FakeGuest>();
  readonly nodes = new Map<string, { status: 'online' | 'offline' }>();
  readonly tasks = new Map<string, Task>();
  readonly haResources = new Map<string, { state: string }>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly sockets = new Set<net.Socket>();
  private nextPid = 0x1000;
  private server!: https.Server;
  port = 0;
  certPem = '';
  /** SHA-256 of the certificate, hex without colons. */
  fingerprint = '';
  /** Set to make every answer wait this long (ms), to test timeouts. */
  delayMs = 0;
  /** false: the cluster has no quorum (pmxcfs read-only), power calls fail with 500. */
  quorate = true;

  private constructor(private readonly o: PveFakeOptions) {
    for (const n of o.nodes) this.nodes.set(n, { status: 'online' });
    for (const g of o.guests) {
      this.guests.set(g.vmid, { shutdownMs: 300, ...g, startedAt: g.status === 'running' ? Date.now() - 3_600_000 : undefined });
      if (g.ha) this.haResources.set(`${g.type === 'qemu' ? 'vm' : 'ct'}:${g.vmid}`, { state: g.haState ?? (g.status === 'running' ? 'started' : 'stopped') });
    }
  }

  /** A certificate for `cert`, with its SHA-256 fingerprint (hex, no colons). */
  static certificate(): { cert: string; key: string; fingerprint: string } {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pve-fake-'));
    try {
      const { cert, key } = makeCert(dir);
      return { cert, key, fingerprint: new crypto.X509Certificate(cert).fingerprint256.replace(/:/g, '') };
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  static async start(o: PveFakeOptions): Promise<PveFake> {
    const f = new PveFake(o);
    const { cert, key, fingerprint } = o.cert ? { ...o.cert, fingerprint: new crypto.X509Certificate(o.cert.cert).fingerprint256.replace(/:/g, '') } : PveFake.certificate();
    f.certPem = cert;
    f.fingerprint = fingerprint;
    f.server = https.createServer({ cert, key }, (req, res) => void f.handle(req, res));
    f.server.on('connection', (s: net.Socket) => {
      f.sockets.add(s);
      s.on('close', () => f.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      f.server.once('error', reject);
      f.server.listen(o.port ?? 0, '127.0.0.1', () => resolve());
    });
    f.port = (f.server.address() as net.AddressInfo).port;
    return f;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server.listening ? this.server.close(() => r()) : r()));
  }

  guest(vmid: number): FakeGuest {
    const g = this.guests.get(vmid);
    if (!g) throw new Error(`no guest ${vmid}`);
    return g;
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private get taskMs(): number {
    return this.o.taskMs ?? 150;
  }

  // -------------------------------------------------------------------------------------------
  // HTTP

  private async handle(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const url = new URL(req.url ?? '/', 'https://pve');
    const logged: LoggedRequest = { method: req.method ?? 'GET', path: url.pathname, params: {}, token: null, status: 0 };
    this.requests.push(logged);
    const send = (status: number, statusText: string, body: Json) => {
      logged.status = status;
      const out = () => {
        if (res.destroyed) return;
        res.writeHead(status, statusText, { 'Content-Type': 'application/json;charset=UTF-8' });
        res.end(JSON.stringify(body));
      };
      if (this.delayMs) this.later(this.delayMs, out);
      else out();
    };
    try {
      if (!url.pathname.startsWith('/api2/json/')) throw new HttpError(501, `Unsupported format '${url.pathname.split('/')[2] ?? ''}'`);
      const apiPath = url.pathname.slice('/api2/json'.length).replace(/\/$/, '');
      const route = ROUTES.find((r) => r.re.test(apiPath));
      const method = (req.method ?? 'GET').toUpperCase();
      const def = route ? SCHEMA[route.template][method] : undefined;
      if (!route || !def) throw new HttpError(501, `Method '${method} /api2/json${apiPath}' not implemented`);

      // Authentication: API tokens only.
      const auth = String(req.headers.authorization ?? '');
      const m = /^PVEAPIToken=(([^\s@!=]+)@([A-Za-z][A-Za-z0-9.\-_]+)!([A-Za-z][A-Za-z0-9.\-_]+))=(\S+)$/.exec(auth);
      if (!m) throw new HttpError(401, 'No ticket');
      const token = this.o.tokens.find((t) => t.id === m[1] && t.secret === m[5]);
      if (!token) throw new HttpError(401, 'authentication failure');
      logged.token = token.id;
      if (def.allowtoken === 0) throw new HttpError(401, 'API tokens are not allowed for this endpoint');

      // Parameters: path, query, and (POST/PUT) a form or JSON body.
      const params: Record<string, string> = {};
      url.searchParams.forEach((v, k) => (params[k] = v));
      const raw = Buffer.concat(chunks).toString('utf8');
      if (raw) {
        const ct = String(req.headers['content-type'] ?? '');
        if (/json/.test(ct)) for (const [k, v] of Object.entries(JSON.parse(raw) as Record<string, unknown>)) params[k] = typeof v === 'boolean' ? (v ? '1' : '0') : String(v);
        else new URLSearchParams(raw).forEach((v, k) => (params[k] = v));
      }
      const pm = route.re.exec(apiPath)!;
      route.names.forEach((n, i) => (params[n] = decodeURIComponent(pm[i + 1])));
      logged.params = params;
      const typed = this.validate(def, params);

      this.authorize(def, route.template, typed, token);
      const node = typeof typed.node === 'string' ? typed.node : null;
      if (node && !this.nodes.has(node)) throw new HttpError(500, `hostname lookup '${node}' failed - failed to get address info for: ${node}: Name or service not known`);
      if (node && this.nodes.get(node)!.status !== 'online') throw new HttpError(595, `Connection refused`);
      if (!this.quorate && method !== 'GET') throw new HttpError(500, 'cluster not ready - no quorum?');

      const data = this.dispatch(`${method} ${route.template}`, typed, token);
      const problem = checkShape(def.returns, data, 'data');
      if (problem) throw new Error(`pve fake bug: ${method} ${route.template} answer violates the schema: ${problem}`);
      send(200, 'OK', { data });
    } catch (err) {
      if (err instanceof HttpError) {
        const body: Json = { data: null, message: `${err.message}\n` };
        if (err.errors) body.errors = err.errors;
        send(err.status, err.message.split('\n')[0], body);
      } else {
        send(500, 'fake failure', { data: null, message: `${(err as Error).message}\n` });
      }
    }
  }

  /** Schema checks; returns the parameters with their types. */
  private validate(def: MethodDef, params: Record<string, string>): Record<string, string | number | boolean> {
    const props = def.parameters?.properties ?? {};
    const errors: Record<string, string> = {};
    const out: Record<string, string | number | boolean> = {};
    for (const [k, v] of Object.entries(params)) {
      const p = props[k] ?? props[k.replace(/\d+$/, '[n]')];
      if (!p) {
        if (!def.parameters?.additionalProperties) errors[k] = 'property is not defined in schema and the schema does not allow additional properties';
        continue;
      }
      const r = checkValue(p, v);
      if (typeof r === 'string') errors[k] = r;
      else out[k] = r.value;
    }
    for (const [k, p] of Object.entries(props)) {
      if (!p.optional && !(k in params) && !k.includes('[n]')) errors[k] = 'property is missing and it is not optional';
    }
    if (Object.keys(errors).length) throw new HttpError(400, 'Parameter verification failed.', errors);
    return out;
  }

  private has(token: FakeToken, p: string, priv: string): boolean {
    if (token.privileges.includes('*') || token.privileges.includes(priv)) return true;
    return Object.entries(token.paths ?? {}).some(([prefix, privs]) => (p === prefix || p.startsWith(prefix + '/')) && privs.includes(priv));
  }

  private privilegesOn(token: FakeToken, p: string): string[] {
    return ALL_PRIVS.filter((x) => this.has(token, p, x));
  }

  private authorize(def: MethodDef, template: string, params: Record<string, string | number | boolean>, token: FakeToken): void {
    const check = def.permissions?.check;
    const need = (p: string, privs: string[], any: boolean) => {
      const ok = any ? privs.some((x) => this.has(token, p, x)) : privs.every((x) => this.has(token, p, x));
      if (!ok) throw new HttpError(403, `Permission check failed (${p}, ${privs.find((x) => !this.has(token, p, x))})`);
    };
    if (check && check[0] === 'perm') {
      const p = String(check[1]).replace(/\{(\w+)\}/g, (_, k: string) => String(params[k]));
      need(p, check[2] as string[], check[3] === 'any');
    }
    // Documented rules for endpoints whose schema says "user: all" with a description.
    if (/\/(stopall|startall|suspendall)$/.test(template)) {
      const vms = typeof params.vms === 'string' ? params.vms.split(/[,;\s]+/).filter(Boolean) : [];
      if (!this.has(token, '/', 'VM.PowerMgmt') && (!vms.length || !vms.every((id) => this.has(token, `/vms/${id}`, 'VM.PowerMgmt')))) {
        throw new HttpError(403, `Permission check failed (/, VM.PowerMgmt)`);
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Endpoints

  private dispatch(key: string, p: Record<string, any>, token: FakeToken): Json {
    const user = token.id;
    switch (key) {
      case 'GET /version':
        return { version: '8.4.1', release: '8.4', repoid: '2a5fa54a8503f96d', console: 'xtermjs' };
      case 'GET /nodes':
        return [...this.nodes].map(([node, n]) => ({ node, status: n.status, level: '', ...(n.status === 'online' ? { uptime: 86400, cpu: 0.02, maxcpu: 8, mem: 4e9, maxmem: 32e9 } : {}) }));
      case 'GET /cluster/resources':
        return this.resources(p.type as string | undefined, token);
      case 'GET /cluster/status':
        return [...this.nodes].map(([name, n], i) => ({ id: `node/${name}`, name, type: 'node', online: n.status === 'online', nodeid: i + 1, local: name === this.o.apiNode }));
      case 'GET /nodes/{node}/qemu':
      case 'GET /nodes/{node}/lxc': {
        const type = key.endsWith('qemu') ? 'qemu' : 'lxc';
        return [...this.guests.values()]
          .filter((g) => g.type === type && g.node === p.node && this.has(token, `/vms/${g.vmid}`, 'VM.Audit'))
          .map((g) => ({ vmid: g.vmid, name: g.name, status: g.status, ...(type === 'qemu' ? { qmpstatus: this.qmp(g) } : {}), uptime: this.uptime(g), tags: (g.tags ?? []).join(';'), template: g.template ? 1 : 0 }));
      }
      case 'GET /nodes/{node}/qemu/{vmid}/status/current':
      case 'GET /nodes/{node}/lxc/{vmid}/status/current': {
        const g = this.find(p, key);
        const sid = this.sid(g);
        const ha = g.ha ? { managed: 1, state: this.haResources.get(sid)?.state ?? 'started' } : { managed: 0 };
        return {
          vmid: g.vmid,
          name: g.name,
          status: g.status,
          ha,
          uptime: this.uptime(g),
          ...(g.type === 'qemu' ? { qmpstatus: this.qmp(g), agent: g.agent ? 1 : 0 } : {}),
          ...(g.lock ? { lock: g.lock } : {}),
          ...(g.tags?.length ? { tags: g.tags.join(';') } : {}),
        };
      }
      case 'POST /nodes/{node}/qemu/{vmid}/status/shutdown':
      case 'POST /nodes/{node}/lxc/{vmid}/status/shutdown':
        return this.shutdownGuest(this.find(p, key), p, user);
      case 'POST /nodes/{node}/qemu/{vmid}/status/stop':
      case 'POST /nodes/{node}/lxc/{vmid}/status/stop':
        return this.stopGuest(this.find(p, key), user);
      case 'POST /nodes/{node}/qemu/{vmid}/status/start':
      case 'POST /nodes/{node}/lxc/{vmid}/status/start':
        return this.startGuest(this.find(p, key), user);
      case 'POST /nodes/{node}/qemu/{vmid}/status/suspend':
        return this.suspendGuest(this.find(p, key), p.todisk === true, user);
      case 'POST /nodes/{node}/stopall':
        return this.stopAll(p.node, p, user);
      case 'POST /nodes/{node}/startall':
        return this.startAll(p.node, p, user);
      case 'POST /nodes/{node}/suspendall':
        return this.suspendAll(p.node, p, user);
      case 'POST /nodes/{node}/status':
        this.nodePower(p.node, p.command);
        return null;
      case 'GET /nodes/{node}/tasks/{upid}/status': {
        const t = this.tasks.get(p.upid);
        if (!t || t.node !== p.node) throw new HttpError(500, `unable to open file - No such file or directory`);
        return { upid: t.upid, node: t.node, pid: t.pid, pstart: t.pstart, starttime: t.starttime, type: t.type, id: t.id, user: t.user, status: t.status, ...(t.exitstatus ? { exitstatus: t.exitstatus } : {}) };
      }
      case 'GET /nodes/{node}/tasks/{upid}/log': {
        const t = this.tasks.get(p.upid);
        if (!t) throw new HttpError(500, `unable to open file - No such file or directory`);
        return t.log.map((text, i) => ({ n: i + 1, t: text }));
      }
      case 'GET /access/permissions': {
        const at = typeof p.path === 'string' ? p.path : '/';
        return { [at]: Object.fromEntries(this.privilegesOn(token, at).map((x) => [x, 1])) };
      }
      case 'GET /cluster/ha/resources':
        return [...this.haResources].map(([sid, r]) => ({ sid, state: r.state, type: sid.split(':')[0] }));
      case 'GET /cluster/ha/resources/{sid}': {
        const sid = this.normSid(p.sid);
        const r = this.haResources.get(sid);
        if (!r) throw new HttpError(500, `no such resource '${sid}'`);
        return { sid, type: sid.split(':')[0], state: r.state, digest: crypto.createHash('sha1').update(sid + r.state).digest('hex') };
      }
      case 'PUT /cluster/ha/resources/{sid}':
        this.setHaState(this.normSid(p.sid), p.state);
        return null;
      case 'GET /cluster/ha/status/current':
        return [
          { id: 'quorum', node: this.o.apiNode ?? [...this.nodes.keys()][0], status: this.quorate ? 'OK' : 'No quorum on node', type: 'quorum', quorate: this.quorate ? 1 : 0 },
          ...[...this.haResources].map(([sid, r]) => {
            const g = this.guest(Number(sid.split(':')[1]));
            return { id: `service:${sid}`, sid, node: g.node, status: `${g.status === 'running' ? 'started' : 'stopped'}`, type: 'service', request_state: r.state, crm_state: g.status === 'running' ? 'started' : 'stopped' };
          }),
        ];
      default:
        throw new HttpError(501, `Method '${key}' not implemented (by this fake)`);
    }
  }

  private resources(type: string | undefined, token: FakeToken): Json[] {
    const out: Json[] = [];
    if (!type || type === 'node') {
      for (const [node, n] of this.nodes) out.push({ id: `node/${node}`, type: 'node', node, status: n.status, level: '', ...(n.status === 'online' ? { uptime: 86400, maxcpu: 8, maxmem: 32e9 } : {}) });
    }
    if (!type || type === 'vm') {
      for (const g of this.guests.values()) {
        if (!this.has(token, `/vms/${g.vmid}`, 'VM.Audit')) continue;
        out.push({
          id: `${g.type}/${g.vmid}`,
          type: g.type,
          vmid: g.vmid,
          node: g.node,
          name: g.name,
          status: g.status,
          template: g.template ? 1 : 0,
          uptime: this.uptime(g),
          maxmem: 2 * 2 ** 30,
          ...(g.tags?.length ? { tags: g.tags.join(';') } : {}),
          ...(g.pool ? { pool: g.pool } : {}),
          ...(g.lock ? { lock: g.lock } : {}),
          ...(g.ha ? { hastate: this.haResources.get(this.sid(g))?.state ?? 'started' } : {}),
        });
      }
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Guests, tasks, nodes

  private find(p: Record<string, any>, key: string): FakeGuest {
    const type = key.includes('/lxc/') ? 'lxc' : 'qemu';
    const g = this.guests.get(Number(p.vmid));
    if (!g || g.type !== type || g.node !== p.node) {
      throw new HttpError(500, type === 'qemu' ? `Configuration file 'nodes/${p.node}/qemu-server/${p.vmid}.conf' does not exist` : `Configuration file 'nodes/${p.node}/lxc/${p.vmid}.conf' does not exist`);
    }
    return g;
  }

  private sid(g: FakeGuest): string {
    return `${g.type === 'qemu' ? 'vm' : 'ct'}:${g.vmid}`;
  }

  private normSid(sid: string): string {
    if (/^\d+$/.test(sid)) {
      const g = this.guests.get(Number(sid));
      return g ? this.sid(g) : `vm:${sid}`;
    }
    return sid;
  }

  private qmp(g: FakeGuest): string {
    return g.status === 'running' ? (g.paused ? 'paused' : 'running') : 'stopped';
  }

  private uptime(g: FakeGuest): number {
    return g.status === 'running' && g.startedAt ? Math.floor((Date.now() - g.startedAt) / 1000) : 0;
  }

  private label(g: FakeGuest): string {
    return g.type === 'qemu' ? 'VM' : 'CT';
  }

  private task(node: string, type: string, id: string, user: string, run: (finish: (exit: string) => void, log: (l: string) => void) => void): string {
    const pid = this.nextPid++;
    const starttime = Math.floor(Date.now() / 1000);
    const pstart = 0x1ca6ea + pid;
    const upid = `UPID:${node}:${hex(pid, 8)}:${hex(pstart, 8)}:${hex(starttime, 8)}:${type}:${id}:${user}:`;
    const t: Task = { upid, node, type, id, user, pid, pstart, starttime, status: 'running', log: [] };
    this.tasks.set(upid, t);
    let done = false;
    run(
      (exit) => {
        if (done) return;
        done = true;
        t.status = 'stopped';
        t.exitstatus = exit;
        t.log.push(exit === 'OK' ? 'TASK OK' : /^WARNINGS/.test(exit) ? `TASK ${exit}` : `TASK ERROR: ${exit}`);
      },
      (l) => t.log.push(l),
    );
    return upid;
  }

  private setPower(g: FakeGuest, status: 'running' | 'stopped'): void {
    g.status = status;
    g.paused = false;
    g.startedAt = status === 'running' ? Date.now() : undefined;
    if (status === 'running') delete g.lock;
  }

  private shutdownGuest(g: FakeGuest, p: Record<string, any>, user: string): string {
    if (g.status !== 'running') throw new HttpError(500, `${this.label(g)} ${g.vmid} not running`);
    const timeoutS = typeof p.timeout === 'number' ? p.timeout : 60;
    if (g.ha) {
      // `ha-manager crm-command stop <sid> <timeout>`: the task only queues the request.
      const sid = this.sid(g);
      return this.task(g.node, 'hastop', String(g.vmid), user, (finish) => {
        this.later(30, () => {
          this.haResources.set(sid, { state: 'stopped' });
          this.haStop(g, timeoutS);
          finish('OK');
        });
      });
    }
    const force = p.forceStop === true;
    const type = g.type === 'qemu' ? 'qmshutdown' : 'vzshutdown';
    return this.task(g.node, type, String(g.vmid), user, (finish, log) => {
      if (g.paused && !force) return this.later(50, () => finish('VM is paused - cannot shutdown'));
      const fail = () => {
        if (g.status !== 'running') return finish('OK');
        if (force) {
          log(g.type === 'qemu' ? 'VM quit/powerdown failed - terminating now with SIGTERM' : 'shutdown timed out, killing container');
          this.setPower(g, 'stopped');
          return finish('OK');
        }
        finish(g.type === 'qemu' ? 'VM quit/powerdown failed - got timeout' : `command 'lxc-stop -n ${g.vmid} --nokill --timeout ${timeoutS}' failed: exit code 1`);
      };
      if (g.ignoresShutdown || g.paused || (g.shutdownMs ?? 300) > timeoutS * 1000) return this.later(timeoutS * 1000, fail);
      this.later(g.shutdownMs ?? 300, () => {
        if (g.status === 'running') this.setPower(g, 'stopped');
        finish('OK');
      });
    });
  }

  /** The HA manager stopping a guest: a shutdown request, a hard stop after `timeoutS`. */
  private haStop(g: FakeGuest, timeoutS: number): void {
    if (g.status !== 'running') return;
    if (timeoutS === 0) return this.later(this.taskMs, () => this.setPower(g, 'stopped'));
    if (!g.ignoresShutdown) this.later(g.shutdownMs ?? 300, () => this.setPower(g, 'stopped'));
    this.later(timeoutS * 1000, () => g.status === 'running' && this.setPower(g, 'stopped'));
  }

  private setHaState(sid: string, state: string | undefined): void {
    const r = this.haResources.get(sid);
    if (!r) throw new HttpError(500, `service '${sid}' not defined`);
    const s = state === 'enabled' ? 'started' : state ?? 'started';
    r.state = s;
    const g = this.guest(Number(sid.split(':')[1]));
    if (s === 'stopped' || s === 'disabled') this.haStop(g, 180);
    if (s === 'started' && g.status !== 'running') this.later(this.taskMs * 2, () => this.setPower(g, 'running'));
  }

  private stopGuest(g: FakeGuest, user: string): string {
    if (g.status !== 'running') throw new HttpError(500, `${this.label(g)} ${g.vmid} not running`);
    if (g.ha) {
      const sid = this.sid(g);
      return this.task(g.node, 'hastop', String(g.vmid), user, (finish) => {
        this.later(30, () => {
          this.haResources.set(sid, { state: 'stopped' });
          this.haStop(g, 0);
          finish('OK');
        });
      });
    }
    return this.task(g.node, g.type === 'qemu' ? 'qmstop' : 'vzstop', String(g.vmid), user, (finish) =>
      this.later(this.taskMs, () => {
        this.setPower(g, 'stopped');
        finish('OK');
      }),
    );
  }

  private startGuest(g: FakeGuest, user: string): string {
    if (g.status === 'running') throw new HttpError(500, `${this.label(g)} ${g.vmid} already running`);
    if (g.ha) {
      const sid = this.sid(g);
      return this.task(g.node, 'hastart', String(g.vmid), user, (finish) => {
        this.later(30, () => {
          this.haResources.set(sid, { state: 'started' });
          this.later(this.taskMs * 2, () => this.setPower(g, 'running'));
          finish('OK');
        });
      });
    }
    return this.task(g.node, g.type === 'qemu' ? 'qmstart' : 'vzstart', String(g.vmid), user, (finish, log) =>
      this.later(this.taskMs, () => {
        if (g.lock === 'suspended') log('resuming suspended VM');
        this.setPower(g, 'running');
        finish('OK');
      }),
    );
  }

  private suspendGuest(g: FakeGuest, toDisk: boolean, user: string): string {
    if (g.status !== 'running') throw new HttpError(500, `VM ${g.vmid} not running`);
    return this.task(g.node, 'qmsuspend', String(g.vmid), user, (finish) =>
      this.later(this.taskMs, () => {
        if (toDisk) {
          this.setPower(g, 'stopped');
          g.lock = 'suspended';
        } else {
          g.paused = true;
        }
        finish('OK');
      }),
    );
  }

  private pick(node: string, p: Record<string, any>, include: (g: FakeGuest) => boolean): FakeGuest[] {
    const vms = typeof p.vms === 'string' ? new Set(p.vms.split(/[,;\s]+/).filter(Boolean).map(Number)) : null;
    return [...this.guests.values()].filter((g) => g.node === node && !g.template && (vms ? vms.has(g.vmid) : !g.ha) && include(g));
  }

  private stopAll(node: string, p: Record<string, any>, user: string): string {
    const timeoutS = typeof p.timeout === 'number' ? p.timeout : 180;
    const force = p['force-stop'] !== false;
    const list = this.pick(node, p, (g) => g.status === 'running');
    return this.task(node, 'stopall', '', user, (finish, log) => {
      let left = list.length;
      let warnings = 0;
      if (!left) return this.later(20, () => finish('OK'));
      for (const g of list) {
        log(`Stopping ${this.label(g)} ${g.vmid} (timeout = ${timeoutS} seconds)`);
        const end = (ok: boolean) => {
          if (!ok) {
            warnings++;
            log(`unable to stop ${this.label(g)} ${g.vmid} - got timeout`);
          }
          if (--left === 0) finish(warnings ? `WARNINGS: ${warnings}` : 'OK');
        };
        if (g.ignoresShutdown || (g.shutdownMs ?? 300) > timeoutS * 1000) {
          this.later(timeoutS * 1000, () => {
            if (force) this.setPower(g, 'stopped');
            end(force);
          });
        } else {
          this.later(g.shutdownMs ?? 300, () => {
            this.setPower(g, 'stopped');
            end(true);
          });
        }
      }
    });
  }

  private startAll(node: string, p: Record<string, any>, user: string): string {
    const list = this.pick(node, p, (g) => g.status !== 'running' && (p.force === true || g.onboot === true));
    return this.task(node, 'startall', '', user, (finish, log) =>
      this.later(this.taskMs, () => {
        for (const g of list) {
          log(`Starting ${this.label(g)} ${g.vmid}`);
          this.setPower(g, 'running');
        }
        finish('OK');
      }),
    );
  }

  private suspendAll(node: string, p: Record<string, any>, user: string): string {
    const list = this.pick(node, p, (g) => g.type === 'qemu' && g.status === 'running');
    return this.task(node, 'suspendall', '', user, (finish) =>
      this.later(this.taskMs, () => {
        for (const g of list) {
          this.setPower(g, 'stopped');
          g.lock = 'suspended';
        }
        finish('OK');
      }),
    );
  }

  private nodePower(node: string, command: string): void {
    this.later(300, () => {
      if (command === 'reboot') return;
      this.nodes.get(node)!.status = 'offline';
      for (const g of this.guests.values()) if (g.node === node && g.status === 'running') this.setPower(g, 'stopped');
      if (node === this.o.apiNode) {
        // The node serving the API is gone: refuse connections from now on.
        this.server.close();
        for (const s of this.sockets) s.destroy();
      }
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Schema helpers

function checkValue(p: ParamDef, v: string): { value: string | number | boolean } | string {
  switch (p.type) {
    case 'integer': {
      if (!/^[+-]?\d+$/.test(v)) return `type check ('integer') failed - got '${v}'`;
      const n = Number(v);
      if (p.minimum !== undefined && n < p.minimum) return `value must have a minimum value of ${p.minimum}`;
      if (p.maximum !== undefined && n > p.maximum) return `value must have a maximum value of ${p.maximum}`;
      return { value: n };
    }
    case 'number': {
      if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v)) return `type check ('number') failed - got '${v}'`;
      return { value: Number(v) };
    }
    case 'boolean':
      if (/^(1|true|yes|on)$/i.test(v)) return { value: true };
      if (/^(0|false|no|off)$/i.test(v)) return { value: false };
      return `type check ('boolean') failed - got '${v}'`;
    default: {
      if (p.enum && !p.enum.includes(v)) return `value '${v}' does not have a value in the enumeration '${p.enum.join(', ')}'`;
      if (p.maxLength !== undefined && v.length > p.maxLength) return `value may only be ${p.maxLength} characters long`;
      if (p.pattern) {
        let re: RegExp | null = null;
        try {
          re = new RegExp(p.pattern.replace(/\(\?\^:/g, '(?:'));
        } catch {
          re = null;
        }
        if (re && !re.test(v)) return `value does not match the regex pattern`;
      }
      if (p.format === 'pve-vmid-list' && !/^\d+([,;\s]+\d+)*$/.test(v)) return `invalid format - value does not look like a valid VM ID list`;
      if (p.format === 'pve-node' && !/^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/.test(v)) return `invalid format - value does not look like a valid node name`;
      if (p.format === 'pve-ha-resource-or-vm-id' && !/^((vm|ct):\d+|\d+)$/.test(v)) return `invalid format - value does not look like a valid ha resource id`;
      return { value: v };
    }
  }
}

/** Null when `value` fits the schema's `returns` (types and required properties), else what does not. */
export function checkShape(schema: Json, value: Json, at: string): string | null {
  if (!schema || !schema.type) return null;
  const t = schema.type;
  if (t === 'null') return value === null ? null : `${at}: expected null`;
  if (value === null || value === undefined) return schema.optional ? null : `${at}: missing`;
  switch (t) {
    case 'string':
      return typeof value === 'string' ? (schema.enum && !schema.enum.includes(value) ? `${at}: '${value}' not in ${schema.enum.join('|')}` : null) : `${at}: expected string`;
    case 'integer':
      return Number.isInteger(value) ? null : `${at}: expected integer`;
    case 'number':
      return typeof value === 'number' ? null : `${at}: expected number`;
    case 'boolean':
      return value === 0 || value === 1 || typeof value === 'boolean' ? null : `${at}: expected boolean (0/1)`;
    case 'array': {
      if (!Array.isArray(value)) return `${at}: expected array`;
      for (let i = 0; i < value.length; i++) {
        const r = checkShape(schema.items, value[i], `${at}[${i}]`);
        if (r) return r;
      }
      return null;
    }
    case 'object': {
      if (typeof value !== 'object' || Array.isArray(value)) return `${at}: expected object`;
      for (const [k, p] of Object.entries((schema.properties ?? {}) as Record<string, Json>)) {
        if (!(k in value)) {
          if (!p.optional) return `${at}.${k}: required property missing`;
          continue;
        }
        const r = checkShape(p, value[k], `${at}.${k}`);
        if (r) return r;
      }
      return null;
    }
    default:
      return null;
  }
}
