/**
 * The SNMP source: reads a UPS's SNMP agent (card) with one GET per poll for every object its MIB
 * profile needs, and reports NUT variable names so the one normaliser serves it (lib/ups/state.ts).
 *
 * - First read: one GET of sysObjectID, sysDescr and each profile's probe object picks the profile
 *   (or the configured one is used). After that: one GET per poll. An alarm table is read (one
 *   GETBULK) only while the agent reports alarms.
 * - No answer (wrong community, wrong v3 user, access list, host down) → SourceError 'lost' saying
 *   what to check. SNMPv3 key errors say which key. Wrong value types are ignored and shown as a
 *   warning. APC's upsCommStatus noComm (card lost its UPS) → 'stale'.
 * - Optional traps: a shared trap listener (./traps.ts); an on-battery, power-restored or low-battery
 *   trap (any UPS trap of the MIB) calls `onTrap`, which the device wires to an immediate poll.
 */
import { SourceError, UpsReading, UpsSource } from '../ups/source';
import { SnmpClient, SnmpError, SnmpTarget, SnmpValue, describeTarget } from './client';
import { PROFILES, Profile, ProfileId, Reading, SYS_DESCR, SYS_OBJECT_ID, TrapKind, classifyTrap, detectProfile, detectionOids } from './profiles';
import { ReceivedTrap, TrapSubscription, subscribeTraps, trapReachProblem } from './traps';

export interface SnmpTrapOptions {
  /** Bind address; default 127.0.0.1. */
  address: string;
  port: number;
}

export interface SnmpSourceOptions extends SnmpTarget {
  profile: ProfileId | 'auto';
  traps?: SnmpTrapOptions | null;
  /** Most alarm rows read in one poll. */
  maxAlarmRows?: number;
}

export interface TrapEvent {
  kind: TrapKind;
  profile: ProfileId;
  oid: string;
  from: string;
  version: 'v1' | 'v2c' | 'v3';
  inform: boolean;
  at: number;
}

export class SnmpSource implements UpsSource {
  readonly kind = 'snmp' as const;
  readonly label: string;
  /** The profile in use (detected on the first read, or configured). */
  profile: Profile | null;
  sysDescr: string | null = null;
  sysObjectId: string | null = null;
  /** Called for every UPS trap from this agent (set by the device: poll at once). */
  onTrap: ((e: TrapEvent) => void) | null = null;
  lastTrap: TrapEvent | null = null;
  trapsReceived = 0;
  private client: SnmpClient | null = null;
  private typeWarning: string | null = null;
  private trapWarning: string | null = null;
  private traps: TrapSubscription | null = null;
  /** v1 agents fail a whole GET for one missing object: remember which are missing. */
  private readonly absent = new Set<string>();

  constructor(readonly opts: SnmpSourceOptions) {
    this.label = `${opts.host}:${opts.port}`;
    this.profile = opts.profile === 'auto' ? null : PROFILES[opts.profile];
  }

  get warning(): string | null {
    const t = this.opts.traps;
    const reach = t ? trapReachProblem(t.address, this.opts.host) : null;
    return [this.typeWarning, this.trapWarning, this.trapWarning ? null : reach].filter(Boolean).join(' · ') || null;
  }

  /** Start listening for traps (idempotent); a listener that cannot bind only warns. */
  private startTraps(): void {
    const t = this.opts.traps;
    if (!t || this.traps) return;
    const sub = subscribeTraps({
      address: t.address,
      port: t.port,
      community: this.opts.version === 'v3' ? undefined : this.opts.community,
      user: this.opts.version === 'v3' ? this.opts.user : undefined,
      agentHost: this.opts.host,
      onTrap: (trap) => this.handleTrap(trap),
    });
    this.traps = sub;
    sub.ready.then(
      () => {
        if (this.traps === sub) this.trapWarning = null;
      },
      (err: Error) => {
        if (this.traps !== sub) return;
        this.trapWarning = `traps off: ${err.message}`;
        this.traps = null;
        void sub.close();
      },
    );
  }

  /** Resolves once the trap listener is bound (or at once without traps); rejects if it cannot be. */
  async trapsReady(): Promise<void> {
    this.startTraps();
    if (this.traps) await this.traps.ready;
  }

  private handleTrap(trap: ReceivedTrap): void {
    const c = classifyTrap(trap, this.profile?.id ?? null);
    if (!c) return; // not a UPS trap (coldStart, linkUp…)
    const e: TrapEvent = { kind: c.kind, profile: c.profile, oid: trap.oid, from: trap.from, version: trap.version, inform: trap.inform, at: trap.at };
    this.lastTrap = e;
    this.trapsReceived++;
    try {
      this.onTrap?.(e);
    } catch {
      /* the device's own errors are its business */
    }
  }

  private getClient(): SnmpClient {
    if (!this.client) {
      try {
        this.client = new SnmpClient(this.opts);
      } catch (err) {
        throw new SourceError(`SNMP settings: ${(err as Error).message}`, 'lost');
      }
    }
    return this.client;
  }

  private async detect(client: SnmpClient): Promise<Profile> {
    const values = await client.get(detectionOids());
    const sys = values.get(SYS_OBJECT_ID);
    const descr = values.get(SYS_DESCR);
    this.sysObjectId = sys?.kind === 'oid' ? String(sys.value) : null;
    this.sysDescr = descr?.kind === 'string' ? String(descr.value) : null;
    const p = detectProfile(values);
    if (!p) {
      throw new SourceError(
        `the agent at ${this.label} answers but shows none of the UPS MIBs known here (sysObjectID ${this.sysObjectId ?? 'absent'}${this.sysDescr ? `, "${this.sysDescr}"` : ''}): is it a UPS card? Choose the MIB profile by hand if it uses RFC 1628 / APC / Eaton / CyberPower objects`,
        'lost',
      );
    }
    return p;
  }

  /** Read the alarm descriptions while the agent reports alarms (one GETBULK). */
  private async alarmOids(client: SnmpClient, profile: Profile, values: Map<string, SnmpValue | null>): Promise<string[]> {
    if (!profile.alarms) return [];
    const count = values.get(profile.objects[profile.alarms.countName]);
    if (!count || typeof count.value !== 'number' || count.value <= 0) return [];
    const rows = await client.column(profile.alarms.descrColumn, Math.min(count.value, this.opts.maxAlarmRows ?? 32));
    return rows.filter((r) => r.value?.kind === 'oid').map((r) => String(r.value!.value));
  }

  async read(_now: number): Promise<UpsReading> {
    this.startTraps();
    const client = this.getClient();
    try {
      if (!this.profile) this.profile = await this.detect(client);
      const profile = this.profile;
      const oids = Object.values(profile.objects).filter((o) => !this.absent.has(o));
      const values = await client.get(oids);
      if (this.opts.version === 'v1') for (const [oid, v] of values) if (v === null) this.absent.add(oid);
      if (![...values.values()].some((v) => v !== null)) {
        throw new SourceError(`the agent at ${this.label} answers but has none of the ${profile.label} objects: wrong MIB profile?`, 'lost');
      }
      const reading = new Reading(profile, values, await this.alarmOids(client, profile, values));
      const vars = profile.toVars(reading);
      if (profile.id === 'apc') {
        const comm = values.get(profile.objects.commStatus);
        if (comm?.kind === 'int' && comm.value === 2) {
          throw new SourceError(`the SNMP card at ${this.label} has lost contact with its UPS (upsCommStatus noComm): check the card-to-UPS cable`, 'stale');
        }
      }
      this.typeWarning = reading.problems.length ? `unexpected SNMP types: ${reading.problems.join('; ')}` : null;
      return { vars };
    } catch (err) {
      // A fresh socket (and, for v3, a fresh engine discovery) next time: the agent may have restarted.
      if (err instanceof SnmpError) {
        this.client?.close();
        this.client = null;
      }
      throw toSourceError(err, describeTarget(this.opts));
    }
  }

  /** Close the socket and stop listening for traps. The source can be read again later. */
  async close(): Promise<void> {
    this.client?.close();
    this.client = null;
    this.absent.clear();
    const traps = this.traps;
    this.traps = null;
    this.trapWarning = null;
    if (traps) await traps.close();
  }
}

export function toSourceError(err: unknown, where: string): SourceError {
  if (err instanceof SourceError) return err;
  if (err instanceof SnmpError) return new SourceError(err.message, 'lost');
  return new SourceError(`${where}: ${(err as Error)?.message ?? String(err)}`, 'lost');
}
