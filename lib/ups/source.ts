/**
 * A UPS source reads one UPS. Every kind (NUT, simulated; later SNMP and Home Assistant) reports NUT
 * variable names so that one normaliser serves them all.
 */
import { SourceKind } from './state';

export interface UpsReading {
  vars: Record<string, string>;
  /** Sources that keep their own clock (the simulator) say how long they have been on battery. */
  secondsOnBattery?: number;
}

/** A failed read: `stale` (the UPS is known but its data is old) or `lost` (no answer at all). */
export class SourceError extends Error {
  constructor(message: string, readonly comm: 'stale' | 'lost') {
    super(message);
    this.name = 'SourceError';
  }
}

export interface UpsSource {
  readonly kind: SourceKind;
  /** Where it reads from, for messages: `sim@127.0.0.1:3493`. */
  readonly label: string;
  /** A problem that does not stop reading (e.g. LOGIN refused), in words a user can act on. */
  readonly warning: string | null;
  /** One reading. Rejects with SourceError. Must finish within its own timeout. */
  read(now: number): Promise<UpsReading>;
  /** Release connections. Never rejects. */
  close(): Promise<void>;
}
