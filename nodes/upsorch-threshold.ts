/**
 * Runtime threshold: decides when to shut down, cancel and restore. Outputs: 1 shutdown, 2 cancel,
 * 3 restore, each with the reason. States come from UPS in nodes (msg.payload) and/or straight
 * from the UPS devices listed under supplies. All decisions are the engine's (lib/decide).
 */
import { NodeAPI, Node, NodeMessage, UpsDeviceNode, errorText, shortStatus } from './red';
import { DecisionEngine, Decision, EngineOutput } from '../lib/decide/engine';
import { UpsStateShape, configWarnings, engineConfig, parseThresholdConfig } from '../lib/decide/config';
import { UpsState } from '../lib/ups/state';

const OUTPUT: Record<Decision['decision'], number> = { shutdown: 0, cancel: 1, restore: 2 };

/**
 * The engine's clock: monotonic, so that an NTP step of the wall clock neither fires a hold time
 * early nor delays one. Wall-clock time appears only in output messages, for display.
 */
const monotonic = (): number => performance.timeOrigin + performance.now();

export = function register(RED: NodeAPI): void {
  function ThresholdNode(this: Node, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    const node = this;
    let engine: DecisionEngine | undefined;
    let timer: NodeJS.Timeout | undefined;
    const unsubscribes: Array<() => Promise<void>> = [];
    let closed = false;
    let lastDecision: Decision | null = null;

    const showStatus = () => {
      if (!engine) return;
      if (!Object.values(engine.states()).some(Boolean)) return; // still "waiting for UPS states…"
      const now = monotonic();
      switch (engine.phase) {
        case 'idle':
          node.status(lastDecision?.decision === 'restore'
            ? { fill: 'green', shape: 'dot', text: 'idle · restored' }
            : { fill: 'green', shape: 'dot', text: lastDecision?.decision === 'cancel' ? 'idle · shutdown cancelled' : 'idle · on mains' });
          return;
        case 'armed':
          node.status({ fill: 'yellow', shape: 'dot', text: shortStatus(`armed · ${engine.nearest(now) ?? 'watching'}`) });
          return;
        case 'shutdown':
          node.status({ fill: 'red', shape: 'dot', text: shortStatus(`shutdown · ${engine.lastDecision?.reason.message ?? ''} · can cancel`) });
          return;
        case 'committed':
          node.status({ fill: 'red', shape: 'ring', text: shortStatus(`shutdown · ${engine.lastDecision?.reason.message ?? ''} · waiting for mains`) });
      }
    };

    const apply = (out: EngineOutput) => {
      if (closed || !engine) return;
      for (const w of out.warnings) node.warn(w.message);
      for (const d of out.decisions) {
        lastDecision = d;
        const msg: NodeMessage = { topic: d.decision, payload: { ...d, ts: Date.now(), states: engine.states() } };
        const outputs: Array<NodeMessage | null> = [null, null, null];
        outputs[OUTPUT[d.decision]] = msg;
        node.send(outputs);
      }
      if (timer) clearTimeout(timer);
      timer = undefined;
      if (out.wakeAt !== null) {
        const e = engine;
        timer = setTimeout(() => {
          timer = undefined;
          apply(e.tick(monotonic()));
        }, Math.max(0, out.wakeAt - monotonic()));
      }
      showStatus();
    };

    const feed = (state: UpsState) => {
      if (engine && !closed) apply(engine.update(state, monotonic()));
    };

    try {
      const cfg = parseThresholdConfig(raw);
      for (const w of configWarnings(cfg)) node.warn(w);
      const devices: UpsDeviceNode[] = [];
      for (const s of cfg.supplies) {
        if (!s.device) continue;
        const d = RED.nodes.getNode(s.device) as UpsDeviceNode | null;
        if (!d) throw new Error(`supply ${s.device}: the UPS device does not exist (deleted or not deployed)`);
        if (d.configError) throw new Error(d.configError);
        // The engine tells UPSes apart by name: two devices with one name would be merged silently.
        const twin = devices.find((x) => x.upsName === d.upsName);
        if (twin) throw new Error(`two supplies are named "${d.upsName}": give the UPS devices distinct names`);
        devices.push(d);
      }
      engine = new DecisionEngine(engineConfig(cfg, (id) => (RED.nodes.getNode(id) as UpsDeviceNode | null)?.upsName), monotonic());
      node.status({ fill: 'grey', shape: 'ring', text: devices.length ? 'waiting for UPS states…' : 'waiting for UPS states on the input…' });
      // Start the clock of listed UPSes that never report (they stop counting as healthy).
      apply(engine.tick(monotonic()));
      for (const d of devices) unsubscribes.push(d.subscribe(feed));
    } catch (err) {
      node.status({ fill: 'red', shape: 'ring', text: shortStatus(errorText(err)) });
      node.error(errorText(err));
    }

    node.on('input', (msg, _send, done) => {
      if (!engine) {
        done(new Error('this node has no valid configuration; fix it and deploy again'));
        return;
      }
      const topic = typeof msg.topic === 'string' ? msg.topic : '';
      const now = monotonic();
      if (topic === 'plan-duration') {
        const secs = typeof msg.payload === 'string' ? Number(msg.payload) : msg.payload;
        if (typeof secs !== 'number' || !Number.isFinite(secs) || secs < 0) {
          done(new Error(`plan-duration needs msg.payload = the plan's expected duration in seconds, got ${JSON.stringify(msg.payload)}`));
          return;
        }
        engine.setPlanDuration(secs);
        apply(engine.tick(now));
        done();
        return;
      }
      if (topic === 'point-of-no-return' || topic === 'commit') {
        apply(engine.commit(now));
        done();
        return;
      }
      if (topic === 'reset') {
        engine.reset(now);
        lastDecision = null;
        apply(engine.tick(now));
        done();
        return;
      }
      const parsed = UpsStateShape.safeParse(msg.payload);
      if (!parsed.success) {
        const err = new Error('expected a UPS state in msg.payload (from a UPS in node), or topic plan-duration / point-of-no-return / reset');
        node.status({ fill: 'red', shape: 'ring', text: shortStatus(err.message) });
        done(err);
        return;
      }
      apply(engine.update(parsed.data as unknown as UpsState, now));
      done();
    });

    node.on('close', (_removed, done) => {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      Promise.all(unsubscribes.splice(0).map((u) => u().catch(() => undefined))).finally(() => done());
    });
  }

  RED.nodes.registerType('upsorch-threshold', ThresholdNode);
};
