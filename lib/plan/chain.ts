/**
 * A plan's order comes from the wiring: each phase's "done" output goes to the next phase. This
 * turns the phases of one plan and their done-wires into the shutdown and startup chains.
 */
export interface ChainNode {
  id: string;
  name: string;
  direction: 'both' | 'shutdown' | 'startup';
  /** Node ids the done output is wired to (other nodes are ignored). */
  next: string[];
}

/** Order the given phases by their done-wires into one chain; throws on branches, cycles or gaps. */
export function orderChain(phases: ChainNode[]): string[] {
  if (phases.length === 0) return [];
  const ids = new Set(phases.map((p) => p.id));
  const byId = new Map(phases.map((p) => [p.id, p]));
  const incoming = new Map<string, number>(phases.map((p) => [p.id, 0]));
  for (const p of phases) {
    const nexts = p.next.filter((n) => ids.has(n));
    if (nexts.length > 1) throw new Error(`phase "${p.name}" hands on to ${nexts.length} phases; a plan is one chain (wire its done output to one phase)`);
    for (const n of nexts) incoming.set(n, (incoming.get(n) ?? 0) + 1);
  }
  for (const [id, n] of incoming) {
    if (n > 1) throw new Error(`phase "${byId.get(id)!.name}" is reached from ${n} phases; a plan is one chain`);
  }
  const heads = phases.filter((p) => incoming.get(p.id) === 0);
  if (heads.length === 0) throw new Error('the phases of this plan are wired in a loop');
  if (heads.length > 1) throw new Error(`this plan has ${heads.length} first phases (${heads.map((h) => `"${h.name}"`).join(', ')}); wire each phase's done output to the next`);
  const order: string[] = [];
  let cur: ChainNode | undefined = heads[0];
  while (cur) {
    if (order.includes(cur.id)) throw new Error('the phases of this plan are wired in a loop');
    order.push(cur.id);
    const nxt: string | undefined = cur.next.find((n) => ids.has(n));
    cur = nxt ? byId.get(nxt) : undefined;
  }
  if (order.length !== phases.length) throw new Error('the phases of this plan are wired in a loop');
  return order;
}

/**
 * The phases a run walks, in order. Shutdown: the chain of 'both' and 'shutdown' phases. Startup:
 * the chain of 'startup' phases if there are any, else the shutdown chain mirrored (without the
 * shutdown-only phases, such as powering the UPS off).
 */
export function chainFor(direction: 'shutdown' | 'startup', phases: ChainNode[]): string[] {
  // Links are followed through phases of the other direction, so a startup-only phase may sit anywhere.
  const pick = (keep: (p: ChainNode) => boolean): string[] => {
    const kept = phases.filter(keep);
    const keptIds = new Set(kept.map((p) => p.id));
    const byId = new Map(phases.map((p) => [p.id, p]));
    const nextKept = (p: ChainNode, seen: Set<string>): string[] => {
      const out: string[] = [];
      for (const n of p.next) {
        if (keptIds.has(n)) out.push(n);
        else if (byId.has(n) && !seen.has(n)) {
          seen.add(n);
          out.push(...nextKept(byId.get(n)!, seen));
        }
      }
      return out;
    };
    return orderChain(kept.map((p) => ({ ...p, next: nextKept(p, new Set([p.id])) })));
  };
  const shutdownChain = () => pick((p) => p.direction !== 'startup');
  if (direction === 'shutdown') return shutdownChain();
  if (phases.some((p) => p.direction === 'startup')) return pick((p) => p.direction === 'startup');
  const byId = new Map(phases.map((p) => [p.id, p]));
  return shutdownChain().reverse().filter((id) => byId.get(id)!.direction === 'both');
}
