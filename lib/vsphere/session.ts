/**
 * A vSphere session (vCenter or standalone ESXi): RetrieveServiceContent (managed object ids are
 * read, never assumed), Login, the session cookie reused by every call, one re-login when the
 * server says NotAuthenticated (expired or terminated session), Logout on close. Every call has a
 * deadline and honours an AbortSignal. Shared by every action of one connection config node.
 */
import { HttpsClient } from '../net/https-client';
import { TlsSettings } from '../net/tls';
import { MoRef, SoapEndpoint, VimFault, asArray, decodeVal, esc, parseRef, refXml, text, xsiType } from './soap';

export interface VsphereSettings {
  /** `vcenter.lan`, `esx1:443`, or `https://host[:port]/sdk`. */
  url: string;
  username: string;
  password: string;
  tls: TlsSettings;
  /** Deadline for one SOAP request, ms. */
  timeoutMs: number;
  /** maxObjects per RetrievePropertiesEx page (default 1000). */
  pageSize?: number;
  /** Parallel HTTPS connections (default 16). */
  maxSockets?: number;
  /** What to call the server in messages ("waiting for vcenter to come back"): the connection's name or host. */
  label?: string;
}

export interface Endpoint {
  host: string;
  port: number;
  path: string;
}

/** Host, port and path of the SDK endpoint; throws on anything that is not https. */
export function parseEndpoint(raw: string): Endpoint {
  const s = raw.trim();
  if (!s) throw new Error('the vCenter / ESXi address is empty');
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      throw new Error(`"${s}" is not a valid URL`);
    }
    if (u.protocol !== 'https:') throw new Error(`vSphere is reached over https, not ${u.protocol.replace(':', '')}`);
    return { host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port ? Number(u.port) : 443, path: u.pathname && u.pathname !== '/' ? u.pathname : '/sdk' };
  }
  const m = /^(\[[^\]]+\]|[^:/\s]+)(?::(\d{1,5}))?(\/.*)?$/.exec(s);
  if (!m) throw new Error(`"${s}" is not a host name, host:port or https URL`);
  const port = m[2] ? Number(m[2]) : 443;
  if (port < 1 || port > 65535) throw new Error(`port ${port} is out of range`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port, path: m[3] || '/sdk' };
}

export interface ServiceContent {
  rootFolder: MoRef;
  propertyCollector: MoRef;
  viewManager: MoRef;
  sessionManager: MoRef;
  licenseManager: MoRef | null;
  authorizationManager: MoRef | null;
  about: { name: string; fullName: string; version: string; build: string; apiType: string; apiVersion: string; instanceUuid: string };
}

export interface ObjectContent {
  obj: MoRef;
  props: Record<string, unknown>;
  /** Properties that could not be read, with the fault type. */
  missing: Record<string, string>;
}

const SERVICE_INSTANCE: MoRef = { type: 'ServiceInstance', value: 'ServiceInstance' };

/** Race a promise against a signal (the promise itself keeps running). */
export function raceSignal<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) {
    p.catch(() => undefined); // nobody else may await it: its rejection must not go unhandled
    return Promise.reject(reasonOf(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(reasonOf(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

function reasonOf(signal: AbortSignal): Error {
  const r = signal.reason;
  return r instanceof Error ? r : new Error(typeof r === 'string' ? r : 'aborted');
}

export class VsphereSession {
  readonly endpoint: Endpoint;
  readonly http: HttpsClient;
  /** The SOAP endpoint (its cookie is the session). */
  readonly soap: SoapEndpoint;
  private content: ServiceContent | null = null;
  private contentP: Promise<ServiceContent> | null = null;
  private loginP: Promise<void> | null = null;
  private loggedIn = false;
  /** Increments with every login, so concurrent callers re-login once, not once each. */
  private generation = 0;
  private closed = false;
  private readonly life = new AbortController();
  /** The key of the current session (UserSession.key). */
  sessionKey: string | null = null;
  logins = 0;
  /** RetrievePropertiesEx / ContinueRetrievePropertiesEx pages read. */
  pages = 0;

  constructor(readonly settings: VsphereSettings) {
    this.endpoint = parseEndpoint(settings.url);
    this.http = new HttpsClient({
      host: this.endpoint.host,
      port: this.endpoint.port,
      tls: settings.tls,
      connectTimeoutMs: Math.min(settings.timeoutMs, 15_000),
      maxSockets: settings.maxSockets,
    });
    this.soap = new SoapEndpoint(this.http, this.endpoint.path);
  }

  get where(): string {
    return this.http.where;
  }

  /** The connection's name, else its host. */
  get label(): string {
    return this.settings.label || this.endpoint.host;
  }

  /** SOAP requests sent so far. */
  get requests(): number {
    return this.http.requests;
  }

  private opts(signal?: AbortSignal, timeoutMs?: number) {
    return { timeoutMs: timeoutMs ?? this.settings.timeoutMs, signal: signal ? AbortSignal.any([signal, this.life.signal]) : this.life.signal };
  }

  async serviceContent(signal?: AbortSignal): Promise<ServiceContent> {
    if (this.content) return this.content;
    this.assertOpen();
    this.contentP ??= this.soap
      .invoke('RetrieveServiceContent', SERVICE_INSTANCE, '', this.opts())
      .then((r) => {
        const c = parseServiceContent(r.returnval);
        if (c.about.apiVersion) this.soap.apiVersion = c.about.apiVersion;
        this.content = c;
        return c;
      })
      .finally(() => {
        this.contentP = null;
      });
    return raceSignal(this.contentP, signal);
  }

  /** Log in if not logged in; one login however many callers wait. */
  async login(signal?: AbortSignal): Promise<void> {
    if (this.loggedIn) return;
    this.assertOpen();
    this.loginP ??= (async () => {
      const sc = await this.serviceContent();
      this.soap.cookie = null;
      try {
        const r = await this.soap.invoke(
          'Login',
          sc.sessionManager,
          `<userName>${esc(this.settings.username)}</userName><password>${esc(this.settings.password)}</password>`,
          this.opts(),
        );
        const us = (r.returnval ?? {}) as Record<string, unknown>;
        this.sessionKey = text(us.key) || null;
        this.loggedIn = true;
        this.generation++;
        this.logins++;
      } catch (err) {
        throw explain(err, this.settings.username);
      }
    })().finally(() => {
      this.loginP = null;
    });
    return raceSignal(this.loginP, signal);
  }

  /** Invoke a method in the session; re-login once on NotAuthenticated. */
  async call(method: string, thisRef: MoRef, params: string, signal?: AbortSignal, timeoutMs?: number): Promise<Record<string, unknown>> {
    await this.login(signal);
    const gen = this.generation;
    try {
      return await this.soap.invoke(method, thisRef, params, this.opts(signal, timeoutMs));
    } catch (err) {
      if (err instanceof VimFault && err.faultType === 'NotAuthenticated' && !this.closed) {
        // The session expired or was terminated: log in again (once for all callers) and retry.
        if (this.generation === gen) this.loggedIn = false;
        await this.login(signal);
        try {
          return await this.soap.invoke(method, thisRef, params, this.opts(signal, timeoutMs));
        } catch (err2) {
          throw explain(err2, this.settings.username);
        }
      }
      throw explain(err, this.settings.username);
    }
  }

  /**
   * RetrievePropertiesEx with its continuation pages (ContinueRetrievePropertiesEx). `specSet`
   * is the inner XML of one or more <specSet> elements.
   */
  async retrieve(specSet: string, signal?: AbortSignal): Promise<ObjectContent[]> {
    const sc = await this.serviceContent(signal);
    const out: ObjectContent[] = [];
    const pageSize = this.settings.pageSize ?? 1000;
    let r = await this.call('RetrievePropertiesEx', sc.propertyCollector, `${specSet}<options><maxObjects>${pageSize}</maxObjects></options>`, signal);
    for (;;) {
      this.pages++;
      const rv = r.returnval as Record<string, unknown> | undefined;
      if (!rv) break;
      for (const o of asArray(rv.objects as Record<string, unknown>[])) out.push(parseObjectContent(o));
      const token = text(rv.token);
      if (!token) break;
      if (signal?.aborted) {
        void this.call('CancelRetrievePropertiesEx', sc.propertyCollector, `<token>${esc(token)}</token>`).catch(() => undefined);
        throw reasonOf(signal);
      }
      r = await this.call('ContinueRetrievePropertiesEx', sc.propertyCollector, `<token>${esc(token)}</token>`, signal);
    }
    return out;
  }

  /** Properties of some objects of one type (one request). */
  async properties(type: string, refs: MoRef[], paths: string[], signal?: AbortSignal): Promise<Map<string, ObjectContent>> {
    const out = new Map<string, ObjectContent>();
    if (!refs.length) return out;
    const spec = `<specSet><propSet><type>${esc(type)}</type>${paths.map((p) => `<pathSet>${esc(p)}</pathSet>`).join('')}</propSet>${refs.map((r) => `<objectSet>${refXml('obj', r)}<skip>false</skip></objectSet>`).join('')}<reportMissingObjectsInResults>true</reportMissingObjectsInResults></specSet>`;
    for (const o of await this.retrieve(spec, signal)) out.set(o.obj.value, o);
    return out;
  }

  async logout(): Promise<void> {
    if (!this.loggedIn || !this.content) return;
    this.loggedIn = false;
    try {
      await this.soap.invoke('Logout', this.content.sessionManager, '', { timeoutMs: Math.min(this.settings.timeoutMs, 3000) });
    } catch {
      /* the session ends with the server's idle timeout anyway */
    }
    this.soap.cookie = null;
    this.sessionKey = null;
  }

  /** Log out (bounded to a few seconds) and close every connection. Never rejects. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.logout().catch(() => undefined);
    this.closed = true;
    this.life.abort(new Error('the vSphere connection is closed'));
    this.http.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('the vSphere connection is closed');
  }
}

function parseServiceContent(rv: unknown): ServiceContent {
  const o = (rv ?? {}) as Record<string, any>;
  const ref = (k: string) => parseRef(o[k]);
  const must = (k: string) => {
    const r = ref(k);
    if (!r) throw new Error(`the server's ServiceContent has no ${k}: not a vSphere endpoint?`);
    return r;
  };
  const a = (o.about ?? {}) as Record<string, unknown>;
  return {
    rootFolder: must('rootFolder'),
    propertyCollector: must('propertyCollector'),
    viewManager: must('viewManager'),
    sessionManager: must('sessionManager'),
    licenseManager: ref('licenseManager'),
    authorizationManager: ref('authorizationManager'),
    about: {
      name: text(a.name),
      fullName: text(a.fullName),
      version: text(a.version),
      build: text(a.build),
      apiType: text(a.apiType),
      apiVersion: text(a.apiVersion),
      instanceUuid: text(a.instanceUuid),
    },
  };
}

function parseObjectContent(o: Record<string, unknown>): ObjectContent {
  const props: Record<string, unknown> = {};
  for (const p of asArray(o.propSet as Record<string, unknown>[])) props[text(p.name)] = decodeVal(p.val);
  const missing: Record<string, string> = {};
  for (const m of asArray(o.missingSet as Record<string, any>[])) {
    missing[text(m.path)] = xsiType(m.fault?.fault) || 'unknown';
  }
  return { obj: parseRef(o.obj) ?? { type: '?', value: '?' }, props, missing };
}

/** Faults in words a user can act on. */
export function explain(err: unknown, username: string): Error {
  if (!(err instanceof VimFault)) return err instanceof Error ? err : new Error(String(err));
  const d = err.detail as Record<string, any>;
  switch (err.faultType) {
    case 'InvalidLogin':
      return new VimFault(err.faultType, `vSphere refused the login of "${username}": wrong username or password`, d);
    case 'NoPermission':
    case 'NotAuthenticated': {
      const priv = text(d.privilegeId);
      const obj = parseRef(d.object);
      if (err.faultType === 'NotAuthenticated') return new VimFault(err.faultType, `the vSphere session is not logged in (${err.message})`, d);
      return new VimFault(err.faultType, `"${username}" lacks the vSphere privilege ${priv || '(unknown)'}${obj ? ` on ${obj.type} ${obj.value}` : ''}`, d);
    }
    case 'RestrictedVersion':
      return new VimFault(
        err.faultType,
        'the licence of this ESXi host makes its API read-only (free vSphere Hypervisor): it cannot power VMs or the host off through the API; use a paid licence or vCenter, or the SSH action',
        d,
      );
    default:
      return err;
  }
}
