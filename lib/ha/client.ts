/**
 * One Home Assistant websocket connection per server config, shared by its users (Node-RED's MQTT
 * broker model), built on home-assistant-js-websocket with `ws` as the socket (Node 20 has no
 * WebSocket of its own for it): `createConnection` with our own `createSocket`, which does the
 * auth phase (auth_required → auth → auth_ok / auth_invalid) and checks TLS the package's way
 * (verification on, or a pinned SHA-256 fingerprint checked before the token is sent).
 *
 * Reconnecting is done here, not by the library: its timers cannot be cancelled when Node-RED closes
 * the node. After a lost connection: 1 s, doubling to 30 s. A refused token is not retried (Home
 * Assistant bans addresses after repeated failed logins); the status says what to fix.
 *
 * API for other parts of the package (notify, publish state, the HA UPS source):
 * `callService(domain, service, data?, target?)`, `fireEvent(type, data)`, `getStates()`,
 * `watchEntities(ids, cb)`, `entity(id)`.
 */
import * as tls from 'node:tls';
import WebSocket from 'ws';
import { Connection, HassEntity, HassServiceTarget, createConnection } from 'home-assistant-js-websocket';
import { TlsSettings, normaliseFingerprint } from '../net/tls';
import { EntitiesEvent, EntityState, applyEntitiesEvent } from './entities';

export interface HaClientOptions {
  /** `http(s)://host:8123` (or the websocket URL itself). */
  url: string;
  /** Long-lived access token. */
  token: string;
  tls?: TlsSettings;
  /** Connect + auth (ms). */
  connectTimeoutMs?: number;
  /** One command (ms). */
  requestTimeoutMs?: number;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** Heartbeat: a ping every N ms; no pong within requestTimeoutMs drops the connection. 0 = off. */
  pingIntervalMs?: number;
}

export type HaState = 'connecting' | 'connected' | 'disconnected' | 'auth_failed';

export interface HaStatus {
  state: HaState;
  /** For people: `connected to Home Assistant 2025.1.0`, `authentication failed: …`. */
  text: string;
}

export interface HaUser {
  status?(s: HaStatus): void;
  connected?(): void;
}

/** A failed command: `code` is Home Assistant's error code, or one of ours (not_connected, timeout, invalid_auth, cannot_connect). */
export class HaError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'HaError';
  }
}

/** `http://h:8123` → `ws://h:8123/api/websocket`; ws(s) URLs are kept. */
export function websocketUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url.trim());
  } catch {
    throw new Error(`"${url}" is not a URL (e.g. http://homeassistant.local:8123)`);
  }
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new Error(`"${url}": use http://, https://, ws:// or wss://`);
  if (!/\/api\/websocket\/?$/.test(u.pathname)) u.pathname = u.pathname.replace(/\/+$/, '') + '/api/websocket';
  return u.toString();
}

type HaSocket = WebSocket & { haVersion: string };

/** Open a socket and authenticate. Rejects with HaError('invalid_auth' | 'cannot_connect'). */
export function openSocket(o: HaClientOptions): Promise<HaSocket> {
  const url = websocketUrl(o.url);
  const timeoutMs = o.connectTimeoutMs ?? 10_000;
  const settings = o.tls ?? {};
  const pin = normaliseFingerprint(settings.fingerprint);
  const where = url.replace(/\/api\/websocket$/, '');
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      handshakeTimeout: timeoutMs,
      rejectUnauthorized: pin ? false : settings.verify !== false,
      ca: settings.ca ? [...tls.rootCertificates, settings.ca] : undefined,
      perMessageDeflate: false,
    }) as HaSocket;
    let settled = false;
    const onError = (e: Error & { code?: string }) => fail(new HaError('cannot_connect', describeSocketError(e, where)));
    const cleanup = () => {
      clearTimeout(timer);
      ws.removeListener('message', onMessage);
      ws.removeListener('close', onClose);
      ws.removeListener('error', onError);
      ws.removeListener('upgrade', onUpgrade);
      ws.removeListener('unexpected-response', onUnexpected);
      ws.on('error', () => undefined); // after the hand-over the library listens for close only
    };
    const fail = (err: HaError) => {
      if (settled) return;
      settled = true;
      cleanup();
      ws.terminate();
      reject(err);
    };
    const timer = setTimeout(() => fail(new HaError('cannot_connect', `no answer from Home Assistant at ${where} within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
    const onUpgrade = (res: { socket: unknown }) => {
      if (!pin) return;
      const sock = res.socket as tls.TLSSocket;
      const seen = typeof sock.getPeerCertificate === 'function' ? (sock.getPeerCertificate()?.fingerprint256 ?? '').replace(/:/g, '').toUpperCase() : '';
      if (seen !== pin) fail(new HaError('cannot_connect', `certificate fingerprint mismatch: ${where} presented SHA-256 ${seen || '(none: not TLS)'}, the pin is ${pin}`));
    };
    const onUnexpected = (_req: unknown, res: { statusCode?: number }) =>
      fail(new HaError('cannot_connect', `${where} answered HTTP ${res.statusCode} instead of a websocket (is this Home Assistant's URL?)`));
    const onClose = (code: number) => fail(new HaError('cannot_connect', `Home Assistant at ${where} closed the connection during login (code ${code})`));
    const onMessage = (data: WebSocket.RawData) => {
      let msg: { type?: string; ha_version?: string; message?: string };
      try {
        msg = JSON.parse(data.toString());
      } catch {
        return fail(new HaError('cannot_connect', `${where} sent something that is not JSON: not Home Assistant?`));
      }
      if (msg.type === 'auth_required') {
        ws.send(JSON.stringify({ type: 'auth', access_token: o.token }));
      } else if (msg.type === 'auth_ok') {
        if (settled) return;
        settled = true;
        cleanup();
        ws.haVersion = msg.ha_version ?? '';
        resolve(ws);
      } else if (msg.type === 'auth_invalid') {
        fail(new HaError('invalid_auth', `authentication failed: ${msg.message ?? 'invalid access token'} (check the long-lived access token)`));
      }
    };
    ws.on('upgrade', onUpgrade);
    ws.on('unexpected-response', onUnexpected);
    ws.on('message', onMessage);
    ws.on('close', onClose);
    ws.on('error', onError);
  });
}

function describeSocketError(e: Error & { code?: string }, where: string): string {
  if (e.code === 'ECONNREFUSED') return `cannot connect to ${where}: connection refused (is Home Assistant running, is the port right?)`;
  if (e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN') return `cannot resolve the host of ${where}`;
  const code = e.code ?? '';
  if (/SELF_SIGNED|UNABLE_TO_GET_ISSUER|UNABLE_TO_VERIFY|CERT_UNTRUSTED|CERT_SIGNATURE_FAILURE|INVALID_CA/.test(code)) {
    return `TLS: the certificate of ${where} is not trusted (${e.message}): add the CA certificate that signed it, or pin the certificate's SHA-256 fingerprint`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `TLS: the certificate of ${where} is not for this host (${e.message}): use the name it was issued for in the URL`;
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return `TLS: the certificate of ${where} ${code === 'CERT_HAS_EXPIRED' ? 'has expired' : 'is not valid yet'} (check Home Assistant's certificate and this machine's clock)`;
  if (/CERT|ERR_TLS|ERR_SSL/.test(code)) return `TLS: ${e.message} (${where}; check the CA certificate, or pin the certificate's SHA-256 fingerprint)`;
  return `${e.message} (${where})`;
}

/** Home Assistant's `{code, message}` or the library's numeric codes → HaError. */
function toHaError(err: unknown): HaError {
  if (err instanceof HaError) return err;
  if (typeof err === 'number') return new HaError(err === 3 ? 'connection_lost' : 'cannot_connect', err === 3 ? 'the connection to Home Assistant was lost' : `Home Assistant client error ${err}`);
  const e = err as { code?: unknown; message?: unknown; error?: unknown };
  // The library rejects commands cut off by a lost connection with a whole result message.
  if (e && typeof e === 'object' && e.error && typeof e.error === 'object') return toHaError(e.error);
  if (e && typeof e === 'object' && typeof e.message === 'string') {
    if (e.code === 3) return new HaError('connection_lost', 'the connection to Home Assistant was lost');
    const code = typeof e.code === 'string' ? e.code : String(e.code ?? 'error');
    return new HaError(code, `Home Assistant: ${e.message} (${code})`);
  }
  return new HaError('error', String(err));
}

interface Watcher {
  ids: Set<string>;
  cb: (changed: string[]) => void;
}

export class HaClient {
  private conn: Connection | null = null;
  private socket: HaSocket | null = null;
  private readonly users = new Set<HaUser>();
  private current: HaStatus = { state: 'disconnected', text: 'not connected' };
  private running = false;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private pingTimer: NodeJS.Timeout | null = null;
  private generation = 0;
  private readonly watchers = new Set<Watcher>();
  private readonly entities = new Map<string, EntityState>();
  private entitiesSub: (() => Promise<void>) | null = null;
  private subscribedKey = '';
  /** Set by dispose(): the config node that owned it is gone; it never connects again. */
  private disposed = false;
  /** True once the current subscription delivered its first (full) event. */
  entitiesReady = false;
  haVersion = '';

  constructor(readonly opts: HaClientOptions) {}

  get status(): HaStatus {
    return this.current;
  }

  get connected(): boolean {
    return this.current.state === 'connected' && !!this.conn?.connected;
  }

  get userCount(): number {
    return this.users.size;
  }

  /** Add a user; the first one connects. */
  register(user: HaUser): void {
    this.users.add(user);
    safe(() => user.status?.(this.current));
    if (!this.running) this.start();
    else if (this.connected) setImmediate(() => this.users.has(user) && safe(() => user.connected?.()));
  }

  /** Remove a user; after the last one, disconnect. */
  async deregister(user: HaUser): Promise<void> {
    this.users.delete(user);
    if (this.users.size === 0 && this.watchers.size === 0) await this.stop();
  }

  private setStatus(state: HaState, text: string): void {
    if (this.current.state === state && this.current.text === text) return;
    this.current = { state, text };
    for (const u of [...this.users]) safe(() => u.status?.(this.current));
  }

  private start(): void {
    if (this.disposed) {
      this.setStatus('disconnected', 'this Home Assistant server config was redeployed or deleted');
      return;
    }
    this.running = true;
    this.attempt = 0;
    this.connect();
  }

  private connect(): void {
    if (!this.running) return;
    const gen = ++this.generation;
    this.setStatus('connecting', `connecting to ${this.where}…`);
    let opened: HaSocket | null = null;
    createConnection({
      setupRetry: 0,
      createSocket: async () => {
        opened = await openSocket(this.opts);
        return opened as never;
      },
    }).then(
      (conn) => {
        if (gen !== this.generation || !this.running) {
          conn.close();
          opened?.terminate();
          return;
        }
        this.conn = conn;
        this.socket = opened;
        this.attempt = 0;
        this.haVersion = conn.haVersion;
        conn.addEventListener('disconnected', () => this.lost(conn, 'the connection to Home Assistant was lost'));
        this.setStatus('connected', `connected to Home Assistant ${conn.haVersion} at ${this.where}`);
        this.startPing(conn);
        this.resubscribeEntities();
        for (const u of [...this.users]) safe(() => u.connected?.());
      },
      (err) => {
        if (gen !== this.generation || !this.running) return;
        const e = toHaError(err);
        if (e.code === 'invalid_auth') {
          // No retry: Home Assistant bans addresses after repeated failed logins.
          this.setStatus('auth_failed', e.message);
          return;
        }
        this.setStatus('disconnected', e.message);
        this.scheduleRetry();
      },
    );
  }

  get where(): string {
    return websocketUrl(this.opts.url).replace(/\/api\/websocket$/, '');
  }

  private lost(conn: Connection, why: string): void {
    if (conn !== this.conn) return;
    // Stop the library's own reconnect loop: reconnecting is ours (cancellable).
    conn.close();
    this.conn = null;
    this.socket = null;
    this.entitiesSub = null;
    this.subscribedKey = '';
    this.entitiesReady = false;
    this.stopPing();
    this.setStatus('disconnected', `${why}; reconnecting`);
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (!this.running || this.retryTimer) return;
    const min = this.opts.backoffMinMs ?? 1000;
    const max = this.opts.backoffMaxMs ?? 30_000;
    const delay = Math.min(max, min * 2 ** this.attempt);
    this.attempt++;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  private startPing(conn: Connection): void {
    const every = this.opts.pingIntervalMs ?? 30_000;
    if (!every) return;
    this.stopPing();
    this.pingTimer = setInterval(() => {
      this.request(() => conn.ping(), 'ping').catch(() => {
        if (conn !== this.conn) return;
        // No pong: the TCP connection is dead; drop it so the reconnect starts now.
        this.socket?.terminate();
      });
    }, every);
  }

  private stopPing(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  /** The owner (the server config node) closes: disconnect for good; later users get a clear status. */
  dispose(): Promise<void> {
    this.disposed = true;
    return this.stop();
  }

  /** Disconnect and stop reconnecting (a later user connects again). Safe to call twice. */
  async stop(): Promise<void> {
    this.running = false;
    this.generation++;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.stopPing();
    const conn = this.conn;
    const sock = this.socket;
    this.conn = null;
    this.socket = null;
    this.entitiesSub = null;
    this.subscribedKey = '';
    this.entitiesReady = false;
    if (conn) conn.close();
    sock?.terminate();
    if (this.current.state !== 'auth_failed') this.setStatus('disconnected', 'not connected');
  }

  /**
   * Resolves once connected, or rejects after `timeoutMs`, on a refused token, and with `failFast`
   * (Test connection) at the first failed attempt.
   */
  whenConnected(timeoutMs: number, failFast = false): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const user: HaUser = {
        connected: () => finish(null),
        status: (s) => {
          if (s.state === 'auth_failed') finish(new HaError('invalid_auth', s.text));
          else if (failFast && s.state === 'disconnected') finish(new HaError('cannot_connect', s.text));
        },
      };
      const timer = setTimeout(() => finish(new HaError('not_connected', `not connected to Home Assistant: ${this.current.text}`)), timeoutMs);
      const finish = (err: HaError | null) => {
        clearTimeout(timer);
        this.users.delete(user);
        if (err) reject(err);
        else resolve();
      };
      this.users.add(user);
      if (!this.running) this.start();
    });
  }

  private request<T>(fn: () => Promise<T>, what: string): Promise<T> {
    if (!this.conn || !this.connected) return Promise.reject(new HaError('not_connected', `${what}: not connected to Home Assistant (${this.current.text})`));
    const ms = this.opts.requestTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new HaError('timeout', `${what}: no answer from Home Assistant within ${Math.round(ms / 1000)} s`)), ms);
    });
    return Promise.race([fn(), timeout]).catch((err) => {
      throw toHaError(err);
    }).finally(() => clearTimeout(timer));
  }

  /**
   * Call a Home Assistant service, e.g. `callService('notify', 'mobile_app_phone', {title, message})`
   * or `callService('persistent_notification', 'create', {message, notification_id})`.
   * Resolves with Home Assistant's result (`{context}`); rejects with HaError.
   */
  callService(domain: string, service: string, data?: Record<string, unknown>, target?: HassServiceTarget): Promise<unknown> {
    const conn = this.conn;
    return this.request(
      () => conn!.sendMessagePromise({ type: 'call_service', domain, service, ...(data ? { service_data: data } : {}), ...(target ? { target } : {}) }),
      `call ${domain}.${service}`,
    );
  }

  /** Fire an event on Home Assistant's event bus (automations trigger on it). */
  fireEvent(eventType: string, data: Record<string, unknown>): Promise<unknown> {
    const conn = this.conn;
    return this.request(() => conn!.sendMessagePromise({ type: 'fire_event', event_type: eventType, event_data: data }), `fire ${eventType}`);
  }

  getStates(): Promise<HassEntity[]> {
    const conn = this.conn;
    return this.request(() => conn!.sendMessagePromise<HassEntity[]>({ type: 'get_states' }), 'get_states');
  }

  /** The last known state of an entity watched with watchEntities(). */
  entity(id: string): EntityState | undefined {
    return this.entities.get(id);
  }

  /**
   * Keep the states of `ids` up to date (subscribe_entities, re-subscribed after every reconnect);
   * `cb` gets the ids that changed. Watching also keeps the connection up. Returns the undo function.
   */
  watchEntities(ids: string[], cb: (changed: string[]) => void): () => void {
    const w: Watcher = { ids: new Set(ids), cb };
    this.watchers.add(w);
    if (!this.running) this.start();
    this.resubscribeEntities();
    return () => {
      this.watchers.delete(w);
      this.resubscribeEntities();
      if (this.users.size === 0 && this.watchers.size === 0) void this.stop();
    };
  }

  private resubscribeEntities(): void {
    const conn = this.conn;
    if (!conn || !this.connected) return;
    const ids = [...new Set([...this.watchers].flatMap((w) => [...w.ids]))].sort();
    const key = ids.join(',');
    if (key === this.subscribedKey && this.entitiesSub) return;
    const old = this.entitiesSub;
    this.entitiesSub = null;
    this.subscribedKey = key;
    this.entitiesReady = false;
    if (old) old().catch(() => undefined);
    if (!ids.length) return;
    const gen = this.generation;
    conn
      .subscribeMessage<EntitiesEvent>(
        (ev) => {
          if (gen !== this.generation || key !== this.subscribedKey) return;
          if (!this.entitiesReady) {
            // The first event is the full picture: forget entities that are gone.
            for (const id of ids) if (!ev.a || !(id in ev.a)) this.entities.delete(id);
          }
          const changed = applyEntitiesEvent(this.entities, ev);
          this.entitiesReady = true;
          for (const w of [...this.watchers]) {
            const mine = changed.filter((id) => w.ids.has(id));
            if (mine.length || changed.length === 0) safe(() => w.cb(mine));
          }
        },
        { type: 'subscribe_entities', entity_ids: ids },
        { resubscribe: false },
      )
      .then(
        (unsub) => {
          if (gen === this.generation && key === this.subscribedKey) this.entitiesSub = unsub;
          else unsub().catch(() => undefined);
        },
        () => {
          if (key === this.subscribedKey) this.subscribedKey = '';
        },
      );
  }
}

function safe(fn: () => void): void {
  try {
    fn();
  } catch {
    /* a user's bug must not break the connection */
  }
}
