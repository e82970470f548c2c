/**
 * Home Assistant entity states as `subscribe_entities` delivers them (HA ≥ 2022.4): a compressed
 * format to keep the traffic small. The first event adds every subscribed entity, later events carry
 * only differences:
 * - `a`: added, `{ entity_id: { s: state, a: attributes, c: context, lc: last_changed, lu?: last_updated } }`
 *   (`lu` is left out when it equals `lc`; times are epoch seconds; `c` is a context id or object)
 * - `c`: changed, `{ entity_id: { "+": { s?, a?: changed attributes, c?, lc?, lu? }, "-": { a: [removed attribute names] } } }`
 * - `r`: removed, `[entity_id]`
 */

export interface EntityState {
  entity_id: string;
  state: string;
  attributes: Record<string, unknown>;
  /** Epoch seconds. */
  last_changed: number;
  last_updated: number;
}

interface Compressed {
  s?: string;
  a?: Record<string, unknown>;
  c?: unknown;
  lc?: number;
  lu?: number;
}

export interface EntitiesEvent {
  a?: Record<string, Compressed>;
  c?: Record<string, { '+'?: Compressed; '-'?: { a?: string[] } }>;
  r?: string[];
}

/** Apply one subscribe_entities event to `map`; returns the entity ids that changed. */
export function applyEntitiesEvent(map: Map<string, EntityState>, ev: EntitiesEvent): string[] {
  const changed: string[] = [];
  for (const [id, e] of Object.entries(ev.a ?? {})) {
    const lc = typeof e.lc === 'number' ? e.lc : 0;
    map.set(id, { entity_id: id, state: String(e.s ?? ''), attributes: { ...(e.a ?? {}) }, last_changed: lc, last_updated: typeof e.lu === 'number' ? e.lu : lc });
    changed.push(id);
  }
  for (const [id, diff] of Object.entries(ev.c ?? {})) {
    const cur = map.get(id);
    if (!cur) continue; // a change for an entity we never got: nothing to apply it to
    const next: EntityState = { ...cur, attributes: { ...cur.attributes } };
    const plus = diff['+'];
    if (plus) {
      if (plus.s !== undefined) next.state = String(plus.s);
      if (plus.a) Object.assign(next.attributes, plus.a);
      if (typeof plus.lc === 'number') {
        next.last_changed = plus.lc;
        next.last_updated = plus.lc;
      }
      if (typeof plus.lu === 'number') next.last_updated = plus.lu;
    }
    for (const name of diff['-']?.a ?? []) delete next.attributes[name];
    map.set(id, next);
    changed.push(id);
  }
  for (const id of ev.r ?? []) {
    if (map.delete(id)) changed.push(id);
  }
  return changed;
}
