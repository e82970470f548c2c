/**
 * A UPS's Home Assistant device is named, and its ids derived, from the UPS name. Two UPS devices
 * with one name (NUT calls many UPSes just `ups`, on different hosts) would merge into one HA
 * device that flips between their readings. So among the UPS devices a publish node knows:
 * - the first with a name keeps it (its ids stay what they were: no churn for existing users);
 * - every further one that this node reads itself (chosen in its UPS list) is published as
 *   `<name> (<where it reads from>)`, e.g. `ups (ups@10.0.0.2:3493)`, a device of its own;
 * - UPSes that arrive as messages (wired UPS in nodes) carry only their name and cannot be told
 *   apart: that is reported, with what to do. Messages with the name of UPSes this node reads
 *   itself under several names are left out (the node has their states already, each under its own
 *   name; a message could be from any of them).
 */
import { slug } from './topics';

export interface UpsRef {
  /** The UPS device config node's id. */
  sourceId: string;
  /** The UPS name its states carry. */
  name: string;
  /** Where it reads from (`ups@10.0.0.2:3493`). */
  where: string;
  /** Read by the publish node itself (true), or known only from wired UPS in nodes (false). */
  direct: boolean;
}

export interface UpsNames {
  /** The name to publish a directly read UPS under, by source id (absent = its own name). */
  alias: Map<string, string>;
  /** One line per name shared by several UPS devices, for the log and the node status. */
  warnings: string[];
  /** Slugs of names whose messages are left out (see above). */
  ambiguous: Set<string>;
}

/** Decide the published names; `refs` in priority order (the node's UPS list first). */
export function upsNames(refs: readonly UpsRef[]): UpsNames {
  const groups = new Map<string, UpsRef[]>();
  for (const r of refs) {
    const k = slug(r.name);
    const g = groups.get(k) ?? [];
    const same = g.find((x) => x.sourceId === r.sourceId);
    if (!same) g.push({ ...r });
    else if (r.direct) same.direct = true;
    groups.set(k, g);
  }
  const alias = new Map<string, string>();
  const warnings: string[] = [];
  const ambiguous = new Set<string>();
  const taken = new Set(groups.keys());
  for (const [k, g] of groups) {
    if (g.length < 2) continue;
    const [first, ...rest] = g;
    const renamed: string[] = [];
    const merged: UpsRef[] = [];
    for (const r of rest) {
      if (!r.direct) {
        merged.push(r);
        continue;
      }
      const sameWhere = g.some((x) => x !== r && x.where === r.where);
      let name = `${r.name} (${sameWhere ? r.sourceId : r.where})`;
      if (taken.has(slug(name))) name = `${r.name} (${r.sourceId})`;
      taken.add(slug(name));
      alias.set(r.sourceId, name);
      renamed.push(`"${name}"`);
    }
    if (renamed.length) ambiguous.add(k);
    const all = g.map((x) => x.where).join(', ');
    let text = `${g.length} UPS devices are called "${first.name}" (${all})`;
    if (renamed.length) text += `: Home Assistant shows ${renamed.join(', ')} besides "${first.name}" (${first.where})`;
    if (merged.length) {
      const fate = renamed.length ? 'are left out' : `merge into "${first.name}" in Home Assistant`;
      text += `${renamed.length ? ';' : ':'} ${merged.map((x) => x.where).join(', ')} reach${merged.length > 1 ? '' : 'es'} this node only as messages, which carry the name alone, and ${fate} – choose ${merged.length > 1 ? 'them' : 'it'} in this node's UPS list instead of wiring`;
    }
    warnings.push(`${text}; or give each UPS device its own name`);
  }
  return { alias, warnings, ambiguous };
}
