/**
 * vSphere Web Services (SOAP, vim25) on the wire: envelopes, managed object references, values of
 * the property collector, and faults. The same for vCenter and standalone ESXi.
 */
import { XMLParser } from 'fast-xml-parser';
import { HttpsClient } from '../net/https-client';

export interface MoRef {
  type: string;
  value: string;
}

/**
 * Faults of a vCenter that cannot talk to the ESXi host of the object yet (the host is still
 * booting or reconnecting after an outage): waiting fixes them, so a startup waits (see
 * isNotReachable in lib/actions/run.ts). HostNotConnected and HostNotReachable are subtypes of
 * HostCommunication; a fault's xsi:type is its most derived type.
 */
const HOST_NOT_REACHABLE_FAULTS = new Set(['HostCommunication', 'HostNotConnected', 'HostNotReachable']);

/** A SOAP fault from the server: `faultType` is the vim25 fault name (InvalidLogin, NotAuthenticated…). */
export class VimFault extends Error {
  /** An answer from the server: never "not reachable", except for the host-communication faults. */
  readonly notReachable: boolean;
  constructor(
    readonly faultType: string,
    message: string,
    readonly detail: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'VimFault';
    this.notReachable = HOST_NOT_REACHABLE_FAULTS.has(faultType);
  }
}

/**
 * An answer that is neither a result nor a SOAP fault (a proxy's error page, a wrong URL). Its
 * HTTP `status` lets a 503 of a vCenter whose services are still starting (the reverse proxy's
 * "Failed to connect to endpoint" while vpxd starts) count as not reachable yet.
 */
export class SoapProtocolError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'SoapProtocolError';
  }
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  // Namespace prefixes on elements are dropped; attributes keep theirs (`@xsi:type` vs `@type`).
  transformTagName: (t: string) => t.replace(/^[^:]*:/, ''),
});

export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

export function refXml(tag: string, ref: MoRef): string {
  return `<${tag} type="${esc(ref.type)}">${esc(ref.value)}</${tag}>`;
}

export function asArray<T = unknown>(x: T | T[] | undefined | null): T[] {
  return x === undefined || x === null ? [] : Array.isArray(x) ? x : [x];
}

/** Text content of a parsed element (`<a>x</a>` or `<a attr="…">x</a>`). */
export function text(x: unknown): string {
  if (typeof x === 'string') return x;
  if (x && typeof x === 'object' && '#text' in x) return String((x as Record<string, unknown>)['#text']);
  return '';
}

export function parseRef(x: unknown): MoRef | null {
  if (!x || typeof x !== 'object') return null;
  const o = x as Record<string, unknown>;
  const type = o['@type'];
  return typeof type === 'string' ? { type, value: text(o) } : null;
}

export function sameRef(a: MoRef | null | undefined, b: MoRef | null | undefined): boolean {
  return !!a && !!b && a.type === b.type && a.value === b.value;
}

/**
 * The xsi:type of an element, without its prefix. Servers bind the XMLSchema-instance namespace
 * to different prefixes (`xsi:type`, Go's `XMLSchema-instance:type`), so any `prefix:type` counts.
 */
export function xsiType(x: unknown): string {
  if (!x || typeof x !== 'object') return '';
  for (const [k, v] of Object.entries(x as Record<string, unknown>)) {
    if (/^@[^:]+:type$/.test(k) && typeof v === 'string') return v.replace(/^[^:]*:/, '');
  }
  return '';
}

/** A property value as the property collector sends it, typed by its xsi:type. */
export function decodeVal(v: unknown): unknown {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return v;
  const o = v as Record<string, unknown>;
  const t = xsiType(o);
  if (t === 'ManagedObjectReference') return parseRef(o);
  if (t === 'ArrayOfManagedObjectReference') return asArray(o.ManagedObjectReference).map(parseRef).filter(Boolean);
  if (t.startsWith('ArrayOf')) {
    const key = Object.keys(o).find((k) => !k.startsWith('@'));
    return key ? asArray(o[key]) : [];
  }
  switch (t) {
    case 'boolean':
      return text(o) === 'true';
    case 'int':
    case 'long':
    case 'short':
    case 'byte':
    case 'float':
    case 'double':
      return Number(text(o));
    default:
      return Object.keys(o).every((k) => k.startsWith('@') || k === '#text') ? text(o) : o;
  }
}

const ENVELOPE_HEAD =
  '<?xml version="1.0" encoding="UTF-8"?>' +
  '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">' +
  '<soapenv:Body>';
const ENVELOPE_TAIL = '</soapenv:Body></soapenv:Envelope>';

export interface InvokeOptions {
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * One SOAP endpoint (`https://host/sdk`): sends `<Method xmlns="urn:vim25">…</Method>`, keeps the
 * session cookie, returns the parsed `<MethodResponse>` element or throws a VimFault.
 */
export class SoapEndpoint {
  /** `vmware_soap_session="…"`, set by Login. */
  cookie: string | null = null;
  /** about.apiVersion once known; selects the schema (SOAPAction urn:vim25/<version>). */
  apiVersion = '6.0';

  constructor(
    readonly http: HttpsClient,
    readonly path: string,
  ) {}

  async invoke(method: string, thisRef: MoRef, params: string, o: InvokeOptions): Promise<Record<string, unknown>> {
    const body = `${ENVELOPE_HEAD}<${method} xmlns="urn:vim25">${refXml('_this', thisRef)}${params}</${method}>${ENVELOPE_TAIL}`;
    const headers: Record<string, string> = {
      'Content-Type': 'text/xml; charset=utf-8',
      SOAPAction: `urn:vim25/${this.apiVersion}`,
      Accept: 'text/xml',
    };
    if (this.cookie) headers.Cookie = this.cookie;
    const res = await this.http.request({ method: 'POST', path: this.path, headers, body, timeoutMs: o.timeoutMs, signal: o.signal });
    const setCookie = asArray(res.headers['set-cookie']).find((c) => /^vmware_soap_session=/.test(c));
    if (setCookie) this.cookie = setCookie.split(';')[0];
    const isXml = /^\s*</.test(res.body);
    if (!isXml) {
      const starting = res.status === 502 || res.status === 503 || res.status === 504;
      throw new SoapProtocolError(
        starting
          ? `${this.http.where}${this.path} answered HTTP ${res.status} ${res.statusText}: its services are not up yet (vCenter / ESXi still starting?)`
          : `${this.http.where}${this.path} answered HTTP ${res.status} ${res.statusText} without SOAP (is this a vCenter/ESXi /sdk URL?)`,
        res.status,
      );
    }
    let doc: Record<string, any>;
    try {
      doc = parser.parse(res.body);
    } catch (err) {
      throw new SoapProtocolError(`${this.http.where}${this.path}: unreadable SOAP answer (${(err as Error).message})`, res.status);
    }
    const bodyEl = doc?.Envelope?.Body;
    if (!bodyEl) throw new SoapProtocolError(`${this.http.where}${this.path} answered HTTP ${res.status} with XML that is not SOAP`, res.status);
    if (bodyEl.Fault) throw parseFault(bodyEl.Fault);
    const out = bodyEl[`${method}Response`];
    if (out === undefined) throw new SoapProtocolError(`${this.http.where}: no ${method}Response in the answer (HTTP ${res.status})`, res.status);
    return typeof out === 'object' && out !== null ? out : {};
  }
}

function parseFault(f: Record<string, any>): VimFault {
  const message = text(f.faultstring).trim();
  const detail = f.detail && typeof f.detail === 'object' ? (f.detail as Record<string, any>) : {};
  const key = Object.keys(detail).find((k) => !k.startsWith('@'));
  const inner = key ? detail[key] : undefined;
  const type = (xsiType(inner) || (key ?? '').replace(/Fault$/, '') || 'ServerFault').trim();
  return new VimFault(type, message || type, inner && typeof inner === 'object' ? inner : {});
}
