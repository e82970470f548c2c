/**
 * No flooding when the power flaps. UPS events are counted per UPS and per family (mains power,
 * communication, overload, bypass; other events each on their own). Up to `threshold` changes within
 * `window` go out one message each, at once. The next change inside the window says "flapping" once
 * (with the latest state) and from then on changes are only counted; once the family has been quiet
 * for `quiet`, one digest says what happened and how things stand now. Every change yields at most
 * one message, and ten minutes of flapping yield a handful, not hundreds.
 *
 * Pure and deterministic: it sees notifications and clock values, never a timer; `wakeAt()` says
 * when the next digest falls due, so the caller can sleep until then.
 */
import { UpsEventName, Severity } from '../ups/events';
import { EVENT_TEXT, Notification, clockTime, duration, familyOf } from './format';

export interface FlapSettings {
  /** Changes counted within this many ms (default 5 min). */
  windowMs: number;
  /** Changes within the window sent one by one (default 2: on battery, back on mains). */
  threshold: number;
  /** Quiet time after which the digest is sent (default 2 min). */
  quietMs: number;
}

export const FLAP_DEFAULTS: FlapSettings = { windowMs: 5 * 60_000, threshold: 2, quietMs: 2 * 60_000 };

interface Family {
  ups: string;
  family: string;
  changes: number[];
  flapping: boolean;
  /** When the last "flapping" notice went out. */
  noticeAt: number | null;
  /** The episode being summarised. */
  from: number;
  lastChangeAt: number;
  counts: Map<UpsEventName, number>;
  suppressed: number;
  total: number;
  last: Notification | null;
}

export class FlapGuard {
  private readonly families = new Map<string, Family>();

  constructor(private readonly settings: FlapSettings = FLAP_DEFAULTS) {}

  /** What to send now for this notification: itself, a flapping notice, or nothing. */
  offer(n: Notification, now: number): Notification[] {
    if (n.kind !== 'ups-event') return [n];
    const event = n.key as UpsEventName;
    const ups = String(n.ctx.ups ?? '');
    const family = familyOf(event);
    const key = `${ups}\u0000${family}`;
    let f = this.families.get(key);
    if (!f) {
      f = { ups, family, changes: [], flapping: false, noticeAt: null, from: now, lastChangeAt: now, counts: new Map(), suppressed: 0, total: 0, last: null };
      this.families.set(key, f);
    }
    f.changes = f.changes.filter((t) => t > now - this.settings.windowMs);
    f.changes.push(now);
    f.lastChangeAt = now;
    if (f.flapping) {
      f.counts.set(event, (f.counts.get(event) ?? 0) + 1);
      f.suppressed++;
      f.total++;
      f.last = n;
      return [];
    }
    if (f.changes.length <= this.settings.threshold) return [n];
    // Flapping starts with this change.
    f.flapping = true;
    f.from = now;
    f.counts = new Map([[event, 1]]);
    f.suppressed = 0;
    f.total = 1;
    f.last = n;
    if (f.noticeAt !== null && now - f.noticeAt < this.settings.windowMs) {
      // No second notice so soon; but this change was not told, so the digest must tell it.
      f.suppressed = 1;
      return [];
    }
    f.noticeAt = now;
    return [this.notice(f, n)];
  }

  /** Digests that are due at `now` (families quiet for long enough). */
  due(now: number): Notification[] {
    const out: Notification[] = [];
    for (const f of this.families.values()) {
      if (!f.flapping || now - f.lastChangeAt < this.settings.quietMs) continue;
      f.flapping = false;
      // A new episode starts from scratch: the next real change goes out at once.
      f.changes = [];
      if (f.suppressed > 0 && f.last) out.push(this.digest(f, now));
      f.last = null;
    }
    return out;
  }

  /** When the next digest falls due, or null. */
  wakeAt(): number | null {
    let next: number | null = null;
    for (const f of this.families.values()) {
      if (!f.flapping) continue;
      const at = f.lastChangeAt + this.settings.quietMs;
      if (next === null || at < next) next = at;
    }
    return next;
  }

  get flapping(): string[] {
    return [...this.families.values()].filter((f) => f.flapping).map((f) => `${f.ups}: ${f.family}`);
  }

  private notice(f: Family, n: Notification): Notification {
    return {
      ...n,
      key: 'flapping',
      kind: 'flapping',
      resolved: false,
      ctx: {
        ...n.ctx,
        family: f.family,
        changes: f.changes.length,
        window: duration(this.settings.windowMs / 1000),
        quiet: duration(this.settings.quietMs / 1000),
      },
      facts: [...n.facts, { name: 'Flapping', value: `${f.changes.length} changes of ${f.family} within ${duration(this.settings.windowMs / 1000)}` }],
    };
  }

  private digest(f: Family, now: number): Notification {
    const last = f.last as Notification;
    const counts = [...f.counts.entries()].map(([e, c]) => `${EVENT_TEXT[e]} ×${c}`).join(', ');
    const severity: Severity = last.resolved ? 'info' : last.severity;
    return {
      ...last,
      key: 'digest',
      kind: 'digest',
      severity,
      ts: now,
      ctx: {
        ...last.ctx,
        family: f.family,
        changes: f.total,
        times: `${f.total} time${f.total === 1 ? '' : 's'}`,
        counts,
        from: clockTime(f.from),
        to: clockTime(f.lastChangeAt),
        time: clockTime(now),
        severity,
      },
      facts: [...last.facts, { name: 'Flapped', value: `${f.total} changes: ${counts}` }],
    };
  }
}
