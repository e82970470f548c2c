/**
 * FakeHaServer: a fake Home Assistant websocket API (`ws://127.0.0.1:<port>/api/websocket`) for the
 * tests, because no Home Assistant can run here. Written from the protocol as Home Assistant's
 * developer docs (docs/api/websocket.md), core's websocket_api (commands.py, messages.py,
 * auth.py) and home-assistant-js-websocket describe it (summary: reference/protocols.md §4).
 *
 * What it models:
 * - auth phase: `auth_required` (with ha_version) on connect; `auth` with the right long-lived
 *   token → `auth_ok`; a wrong token → `auth_invalid` "Invalid access token or password" and close;
 *   a first message that is not an auth message → `auth_invalid` "Auth message incorrectly
 *   formatted" and close; no auth within 10 s → close.
 * - command phase: every message needs an integer `id` greater than the previous one on that
 *   connection (else error `id_reuse`) and a `type` (else `invalid_format`); results are
 *   `{id, type:"result", success:true, result}` or `{…, success:false, error:{code, message}}`;
 *   unknown commands → `unknown_command`.
 * - supported_features, ping/pong, get_states, get_config, get_services, subscribe_events (one event
 *   type or all) / unsubscribe_events, subscribe_entities with its compressed format (`a` full state
 *   on subscribe and for new entities, `c` with `+` {s, a, c, lc | lu} and `-` {a}, `r` removed;
 *   `lu` only when it differs from `lc`), call_service (unknown service → `not_found`; custom
 *   handlers may return a response or throw `{code, message}`, e.g. `service_validation_error`;
 *   result `{context}` plus `response` when `return_response`), fire_event (result `{context}`, and
 *   the event goes to subscribe_events subscribers like on HA's bus), state_changed events for
 *   setState().
 * - restarts (`restart()` keeps states and recordings, drops every connection) and dead
 *   connections (`dropConnections()`).
 *
 * What it does not model: coalesced (batched) replies, api_password auth, admin-only commands and
 * user permissions, include/exclude filters of subscribe_entities, templates, triggers, the REST API,
 * login rate limits / IP bans, message size limits, and anything HA does in response to a service
 * call (a notify call is only recorded).
 *
 * Reusable: `FakeHaServer.start({token, states})`, `url`, `stop()`, `setState()`, and the records
 * `serviceCalls`, `firedEvents`, `received`, `authAttempts`.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { randomUUID } from 'node:crypto';
import { WebSocket, WebSocketServer } from 'ws';

export const FAKE_HA_VERSION = '2025.1.0';
const AUTH_TIMEOUT_MS = 10_000;

export interface FakeEntity {
  entity_id: string;
  state: string;
  attributes: Record<string, unknown>;
  /** Epoch seconds. */
  last_changed: number;
  last_updated: number;
  context_id: string;
}

export interface ServiceCall {
  at: number;
  domain: string;
  service: string;
  service_data: Record<string, unknown> | undefined;
  target: Record<string, unknown> | undefined;
  return_response: boolean;
}

export interface FiredEvent {
  at: number;
  event_type: string;
  event_data: Record<string, unknown>;
}

/** A service handler: return the service response (for return_response), or throw {code, message}. */
export type ServiceHandler = (data: Record<string, unknown> | undefined, target: Record<string, unknown> | undefined) => unknown;

export interface FakeHaOptions {
  token?: string;
  port?: number;
  haVersion?: string;
  states?: Array<{ entity_id: string; state: string; attributes?: Record<string, unknown> }>;
  /** Services that exist (`domain.service`); handlers may be added with onService(). */
  services?: string[];
  /** Serve https/wss with this certificate (PEM), like Home Assistant with its own certificate. */
  tls?: { key: string; cert: string };
}

interface Client {
  n: number;
  ws: WebSocket;
  authed: boolean;
  lastId: number;
  /** subscription id → what it is */
  subs: Map<number, { kind: 'events'; eventType: string | null } | { kind: 'entities'; ids: Set<string> | null }>;
}

const DEFAULT_SERVICES = ['persistent_notification.create', 'persistent_notification.dismiss', 'notify.notify', 'notify.persistent_notification', 'homeassistant.update_entity'];

const nowS = () => Date.now() / 1000;
const iso = (s: number) => new Date(s * 1000).toISOString();
const context = (id = randomUUID().replace(/-/g, '').slice(0, 26).toUpperCase()) => ({ id, parent_id: null, user_id: null });

export class FakeHaServer {
  readonly token: string;
  readonly haVersion: string;
  port = 0;
  private server: http.Server | null = null;
  private readonly tlsOpts: FakeHaOptions['tls'];
  private wss: WebSocketServer | null = null;
  private readonly clients = new Set<Client>();
  private nextConn = 0;
  readonly entities = new Map<string, FakeEntity>();
  private readonly services = new Map<string, ServiceHandler | null>();
  /** Every message received after authentication, in order. */
  readonly received: Array<{ at: number; conn: number; msg: Record<string, unknown> }> = [];
  readonly serviceCalls: ServiceCall[] = [];
  readonly firedEvents: FiredEvent[] = [];
  readonly authAttempts: Array<{ at: number; ok: boolean }> = [];
  private waiters: Array<() => void> = [];

  private constructor(opts: FakeHaOptions) {
    this.token = opts.token ?? 'fake-long-lived-token';
    this.haVersion = opts.haVersion ?? FAKE_HA_VERSION;
    this.port = opts.port ?? 0;
    this.tlsOpts = opts.tls;
    for (const s of opts.states ?? []) this.setState(s.entity_id, s.state, s.attributes ?? {});
    for (const s of [...DEFAULT_SERVICES, ...(opts.services ?? [])]) this.services.set(s, null);
  }

  static async start(opts: FakeHaOptions = {}): Promise<FakeHaServer> {
    const f = new FakeHaServer(opts);
    await f.listen();
    return f;
  }

  /** Base URL as a user types it into the server config. */
  get url(): string {
    return `${this.tlsOpts ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  /** Authenticated connections now open. */
  get connections(): number {
    return [...this.clients].filter((c) => c.authed).length;
  }

  private listen(): Promise<void> {
    const notFound = (_req: http.IncomingMessage, res: http.ServerResponse) => {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('404: Not Found');
    };
    const server: http.Server = this.tlsOpts ? https.createServer({ key: this.tlsOpts.key, cert: this.tlsOpts.cert }, notFound) : http.createServer(notFound);
    const wss = new WebSocketServer({ noServer: true });
    server.on('upgrade', (req, socket, head) => {
      if ((req.url ?? '').split('?')[0] !== '/api/websocket') {
        socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws));
    });
    this.server = server;
    this.wss = wss;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => {
        server.removeListener('error', reject);
        const a = server.address();
        this.port = typeof a === 'object' && a ? a.port : this.port;
        resolve();
      });
    });
  }

  private accept(ws: WebSocket): void {
    const c: Client = { n: ++this.nextConn, ws, authed: false, lastId: 0, subs: new Map() };
    this.clients.add(c);
    const authTimer = setTimeout(() => ws.close(), AUTH_TIMEOUT_MS);
    ws.on('close', () => {
      clearTimeout(authTimer);
      this.clients.delete(c);
      this.wake();
    });
    ws.on('error', () => undefined);
    ws.on('message', (data) => {
      let msg: unknown;
      try {
        msg = JSON.parse(data.toString());
      } catch {
        msg = undefined;
      }
      if (!c.authed) {
        clearTimeout(authTimer);
        const m = msg as { type?: unknown; access_token?: unknown } | undefined;
        if (!m || m.type !== 'auth' || typeof m.access_token !== 'string') {
          this.send(c, { type: 'auth_invalid', message: 'Auth message incorrectly formatted: required key not provided @ data[\'access_token\']' });
          ws.close();
          return;
        }
        const ok = m.access_token === this.token;
        this.authAttempts.push({ at: Date.now(), ok });
        if (!ok) {
          this.send(c, { type: 'auth_invalid', message: 'Invalid access token or password' });
          ws.close();
        } else {
          c.authed = true;
          this.send(c, { type: 'auth_ok', ha_version: this.haVersion });
        }
        this.wake();
        return;
      }
      this.handle(c, msg);
    });
    this.send(c, { type: 'auth_required', ha_version: this.haVersion });
  }

  private send(c: Client, msg: unknown): void {
    if (c.ws.readyState === WebSocket.OPEN) c.ws.send(JSON.stringify(msg));
  }

  private result(c: Client, id: number, result: unknown): void {
    this.send(c, { id, type: 'result', success: true, result });
  }

  private error(c: Client, id: number | undefined, code: string, message: string): void {
    this.send(c, { id, type: 'result', success: false, error: { code, message } });
  }

  private handle(c: Client, raw: unknown): void {
    const msg = raw as Record<string, unknown> | undefined;
    if (!msg || typeof msg !== 'object' || Array.isArray(msg) || typeof msg.id !== 'number' || !Number.isInteger(msg.id) || typeof msg.type !== 'string') {
      this.error(c, typeof msg?.id === 'number' ? msg.id : undefined, 'invalid_format', 'Message incorrectly formatted.');
      return;
    }
    const id = msg.id;
    this.received.push({ at: Date.now(), conn: c.n, msg });
    this.wake();
    if (id <= c.lastId) {
      this.error(c, id, 'id_reuse', 'Identifier values have to increase.');
      return;
    }
    c.lastId = id;
    switch (msg.type) {
      case 'supported_features':
        return this.result(c, id, null);
      case 'ping':
        return this.send(c, { id, type: 'pong' });
      case 'get_states':
        return this.result(c, id, [...this.entities.values()].map((e) => this.full(e)));
      case 'get_config':
        return this.result(c, id, { version: this.haVersion, location_name: 'Home', time_zone: 'UTC', state: 'RUNNING', components: ['mqtt', 'nut', 'notify', 'persistent_notification'], unit_system: { temperature: '°C', length: 'km', mass: 'kg', volume: 'L', pressure: 'Pa', wind_speed: 'm/s', accumulated_precipitation: 'mm' } });
      case 'get_services': {
        const out: Record<string, Record<string, unknown>> = {};
        for (const key of this.services.keys()) {
          const [d, s] = key.split('.');
          (out[d] ??= {})[s] = { name: s, description: '', fields: {} };
        }
        return this.result(c, id, out);
      }
      case 'subscribe_events': {
        const eventType = typeof msg.event_type === 'string' ? msg.event_type : null;
        c.subs.set(id, { kind: 'events', eventType });
        return this.result(c, id, null);
      }
      case 'unsubscribe_events': {
        const sub = msg.subscription;
        if (typeof sub !== 'number' || !c.subs.has(sub)) return this.error(c, id, 'not_found', 'Subscription not found.');
        c.subs.delete(sub);
        return this.result(c, id, null);
      }
      case 'subscribe_entities': {
        const ids = Array.isArray(msg.entity_ids) && msg.entity_ids.length ? new Set(msg.entity_ids.map(String)) : null;
        c.subs.set(id, { kind: 'entities', ids });
        this.result(c, id, null);
        const a: Record<string, unknown> = {};
        for (const e of this.entities.values()) if (!ids || ids.has(e.entity_id)) a[e.entity_id] = compressed(e);
        this.send(c, { id, type: 'event', event: { a } });
        return;
      }
      case 'call_service': {
        const domain = msg.domain;
        const service = msg.service;
        if (typeof domain !== 'string' || typeof service !== 'string') return this.error(c, id, 'invalid_format', 'required key not provided @ data[\'domain\']');
        const call: ServiceCall = {
          at: Date.now(),
          domain,
          service,
          service_data: msg.service_data as Record<string, unknown> | undefined,
          target: msg.target as Record<string, unknown> | undefined,
          return_response: msg.return_response === true,
        };
        const key = `${domain}.${service}`;
        if (!this.services.has(key)) {
          this.serviceCalls.push(call);
          this.wake();
          return this.error(c, id, 'not_found', `Action ${key} not found.`);
        }
        let response: unknown = null;
        try {
          const h = this.services.get(key);
          response = h ? h(call.service_data, call.target) : null;
        } catch (err) {
          this.serviceCalls.push(call);
          this.wake();
          const e = err as { code?: string; message?: string };
          return this.error(c, id, e.code ?? 'home_assistant_error', e.message ?? String(err));
        }
        this.serviceCalls.push(call);
        this.wake();
        return this.result(c, id, call.return_response ? { context: context(), response } : { context: context() });
      }
      case 'fire_event': {
        const eventType = msg.event_type;
        if (typeof eventType !== 'string') return this.error(c, id, 'invalid_format', 'required key not provided @ data[\'event_type\']');
        const data = (msg.event_data ?? {}) as Record<string, unknown>;
        this.firedEvents.push({ at: Date.now(), event_type: eventType, event_data: data });
        this.wake();
        const ctx = context();
        this.result(c, id, { context: ctx });
        this.busEvent(eventType, data, ctx);
        return;
      }
      default:
        return this.error(c, id, 'unknown_command', 'Unknown command.');
    }
  }

  private full(e: FakeEntity): Record<string, unknown> {
    return { entity_id: e.entity_id, state: e.state, attributes: e.attributes, last_changed: iso(e.last_changed), last_updated: iso(e.last_updated), context: context(e.context_id) };
  }

  /** Deliver an event to subscribe_events subscribers (all events, or that type). */
  private busEvent(eventType: string, data: Record<string, unknown>, ctx = context()): void {
    const event = { event_type: eventType, data, origin: 'LOCAL', time_fired: new Date().toISOString(), context: ctx };
    for (const c of this.clients) {
      for (const [sid, sub] of c.subs) {
        if (sub.kind === 'events' && (sub.eventType === null || sub.eventType === eventType)) this.send(c, { id: sid, type: 'event', event });
      }
    }
  }

  /** Fire an event from Home Assistant's side (as an automation or integration would). */
  fireHaEvent(eventType: string, data: Record<string, unknown> = {}): void {
    this.busEvent(eventType, data);
  }

  /** Create or update an entity; subscribers get state_changed and the compressed diff. */
  setState(entityId: string, state: string, attributes?: Record<string, unknown>): void {
    const old = this.entities.get(entityId);
    const t = nowS();
    const attrs = attributes ?? old?.attributes ?? {};
    const next: FakeEntity = {
      entity_id: entityId,
      state,
      attributes: { ...attrs },
      last_changed: old && old.state === state ? old.last_changed : t,
      last_updated: t,
      context_id: context().id,
    };
    this.entities.set(entityId, next);
    if (!this.server) return;
    this.busEvent('state_changed', { entity_id: entityId, old_state: old ? this.full(old) : null, new_state: this.full(next) });
    for (const c of this.clients) {
      for (const [sid, sub] of c.subs) {
        if (sub.kind !== 'entities' || (sub.ids && !sub.ids.has(entityId))) continue;
        if (!old) {
          this.send(c, { id: sid, type: 'event', event: { a: { [entityId]: compressed(next) } } });
          continue;
        }
        const plus: Record<string, unknown> = {};
        if (old.state !== next.state) plus.s = next.state;
        if (old.last_changed !== next.last_changed) plus.lc = next.last_changed;
        else plus.lu = next.last_updated;
        plus.c = next.context_id;
        const changedAttrs: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(next.attributes)) if (JSON.stringify(old.attributes[k]) !== JSON.stringify(v)) changedAttrs[k] = v;
        if (Object.keys(changedAttrs).length) plus.a = changedAttrs;
        const removed = Object.keys(old.attributes).filter((k) => !(k in next.attributes));
        const diff: Record<string, unknown> = { '+': plus };
        if (removed.length) diff['-'] = { a: removed };
        this.send(c, { id: sid, type: 'event', event: { c: { [entityId]: diff } } });
      }
    }
  }

  /** Remove an entity (subscribe_entities gets `r`). */
  removeEntity(entityId: string): void {
    const old = this.entities.get(entityId);
    if (!old) return;
    this.entities.delete(entityId);
    this.busEvent('state_changed', { entity_id: entityId, old_state: this.full(old), new_state: null });
    for (const c of this.clients) {
      for (const [sid, sub] of c.subs) {
        if (sub.kind === 'entities' && (!sub.ids || sub.ids.has(entityId))) this.send(c, { id: sid, type: 'event', event: { r: [entityId] } });
      }
    }
  }

  /** Make a service exist, optionally with a handler (return a response, or throw {code, message}). */
  onService(key: string, handler: ServiceHandler | null = null): void {
    this.services.set(key, handler);
  }

  /** Cut every connection without a close handshake (a dead network, a HA crash). */
  dropConnections(): void {
    for (const c of this.clients) c.ws.terminate();
  }

  /** Stop listening and drop every connection. States and recordings stay. */
  async stop(): Promise<void> {
    for (const c of this.clients) c.ws.terminate();
    this.clients.clear();
    const server = this.server;
    this.server = null;
    this.wss?.close();
    this.wss = null;
    if (server) {
      server.closeAllConnections?.();
      await new Promise<void>((r) => server.close(() => r()));
    }
  }

  /** Like a Home Assistant restart: every connection drops, the same port comes back after `downMs`. */
  async restart(downMs = 0): Promise<void> {
    await this.stop();
    if (downMs) await new Promise((r) => setTimeout(r, downMs));
    await this.listen();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Wait until `pred()` is true (checked on every recorded message), or reject after `ms`. */
  async waitFor(pred: () => boolean, ms = 5000, what = 'the condition'): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`fake HA: timed out after ${ms} ms waiting for ${what}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 100));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
}

function compressed(e: FakeEntity): Record<string, unknown> {
  const out: Record<string, unknown> = { s: e.state, a: e.attributes, c: e.context_id, lc: e.last_changed };
  if (e.last_updated !== e.last_changed) out.lu = e.last_updated;
  return out;
}
