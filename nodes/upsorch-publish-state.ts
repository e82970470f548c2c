/**
 * "Publish state": UPSes and plans as Home Assistant devices over MQTT discovery, plan controls
 * from Home Assistant, and UPS events / run steps fired on Home Assistant's event bus over its
 * websocket. Input: UPS states and events from UPS in nodes; it can also subscribe to UPS devices
 * and plans directly. Output: one message per command from Home Assistant, with its outcome.
 */
import { z } from 'zod';
import { Node, NodeAPI, NodeMessage, PlanNode, UpsDeviceNode, errorText, shortStatus } from './red';
import { EachNode, FlowNodeConfig, HaServerNode, MqttBrokerNode } from './ha-mqtt-types';
import { UpsState } from '../lib/ups/state';
import { EventTracker, UpsEvent } from '../lib/ups/events';
import { DiscoveryContext, UPS_ENTITIES, packageOrigin, upsDeviceBlock, upsDeviceId, upsDiscovery, upsStatePayload, upsStateTopic } from '../lib/mqtt/discovery';
import { DiscoveryPublisher, sweepUnknownPublishers } from '../lib/mqtt/publisher';
import { numberField } from '../lib/ups/config';
import { CommandReport, PlanControl, PlanHandle, planDeviceId, planTopic } from '../lib/mqtt/plan';
import { parseInput } from '../lib/mqtt/ups-input';
import { slug } from '../lib/mqtt/topics';
import { UpsRef, upsNames } from '../lib/mqtt/ups-names';
import { HA_EVENT_TYPE, runEventData, upsEventData } from '../lib/ha/events';
import { RunEvent } from '../lib/plan/types';

const ref = z.preprocess((v) => (typeof v === 'string' ? v.trim() : ''), z.string());
const PublishConfig = z
  .object({
    broker: ref,
    haServer: ref,
    ups1: ref,
    ups2: ref,
    ups3: ref,
    ups4: ref,
    plan1: ref,
    plan2: ref,
    haEvents: z.preprocess((v) => v !== false && v !== 'false', z.boolean()).default(true),
    /** Days without a state after which a UPS of unknown origin leaves Home Assistant; 0 = never. */
    forgetAfter: numberField(0, 3650, 7, 'remove UPSes without a state after (days)'),
  })
  .refine((c) => c.broker || c.haServer, 'choose an MQTT broker (for Home Assistant discovery) and/or a Home Assistant server (for events)');

/** How long deleting the node may spend removing its entities (Node-RED allows 15 s for close). */
const REMOVE_TIMEOUT_MS = 5000;
const DAY_MS = 24 * 3600_000;

const daysAgo = (ms: number): string => {
  const d = ms / DAY_MS;
  return d >= 1 ? `${Math.round(d * 10) / 10} day${d >= 1.05 ? 's' : ''}` : `${Math.max(1, Math.round(ms / 60_000))} min`;
};

export = function register(RED: NodeAPI): void {
  function PublishStateNode(this: Node, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    const node = this;
    const problems: string[] = [];
    const parsed = PublishConfig.safeParse(raw);
    if (!parsed.success) problems.push(parsed.error.issues[0]?.message ?? 'invalid configuration');
    const cfg = parsed.success ? parsed.data : undefined;

    const lookup = <T>(id: string, what: string): T | null => {
      if (!id) return null;
      const n = RED.nodes.getNode(id) as (T & { configError?: string }) | null;
      if (!n) problems.push(`the selected ${what} does not exist (deleted or not deployed)`);
      else if (n.configError) problems.push(`${what}: ${n.configError}`);
      return n && !n.configError ? n : null;
    };
    const brokerNode = cfg ? lookup<MqttBrokerNode>(cfg.broker, 'MQTT broker') : null;
    const haNode = cfg ? lookup<HaServerNode>(cfg.haServer, 'Home Assistant server') : null;
    const devices = cfg ? [cfg.ups1, cfg.ups2, cfg.ups3, cfg.ups4].map((id) => lookup<UpsDeviceNode>(id, 'UPS device')).filter((d): d is UpsDeviceNode => !!d) : [];
    const planNodes = cfg ? [cfg.plan1, cfg.plan2].map((id) => lookup<PlanNode>(id, 'plan')).filter((p): p is PlanNode => !!p) : [];

    const broker = brokerNode?.broker ?? null;
    const ha = haNode?.client ?? null;
    const ctx: DiscoveryContext | null = broker
      ? { baseTopic: broker.settings.baseTopic, discoveryPrefix: broker.settings.discoveryPrefix, availabilityTopic: broker.availabilityTopic, origin: packageOrigin() }
      : null;
    const forgetAfterMs = (cfg?.forgetAfter ?? 7) * DAY_MS;
    // A UPS of unknown origin left Home Assistant for want of states (lib/mqtt/publisher.ts).
    const forgotten = (id: string, name: string | undefined, lastStateAt: number) => {
      forgetLocal(id);
      node.log(`removed UPS "${name ?? id}" from Home Assistant: no state for ${daysAgo(Date.now() - lastStateAt)}`);
      showStatus();
    };
    const publisher = broker && ctx ? new DiscoveryPublisher(broker, ctx, { publisherId: node.id, warn: (t) => node.warn(t), forgetAfterMs, forgotten }) : null;

    // ---- status: MQTT and HA connection, what is published
    let mqttStatus = broker?.status ?? null;
    let haStatus = ha?.status ?? null;
    let inputError: string | null = null;
    /** Several UPS devices with one name (lib/mqtt/ups-names.ts). */
    let nameWarning: string | null = null;
    const upsStates = new Map<string, UpsState>();
    const controls: PlanControl[] = [];
    const showStatus = () => {
      if (problems.length) return node.status({ fill: 'red', shape: 'ring', text: shortStatus(problems[0]) });
      const what = `${upsStates.size} UPS${controls.length ? ` · ${controls.length} plan${controls.length > 1 ? 's' : ''}` : ''}`;
      const bad = [mqttStatus && mqttStatus.state !== 'connected' ? `MQTT: ${mqttStatus.text}` : null, haStatus && haStatus.state !== 'connected' ? `HA: ${haStatus.text}` : null].filter(Boolean) as string[];
      if (inputError) return node.status({ fill: 'red', shape: 'ring', text: shortStatus(`${what} · ${inputError}`) });
      if (bad.length) {
        const failing = (mqttStatus && mqttStatus.state === 'disconnected') || (haStatus && (haStatus.state === 'disconnected' || haStatus.state === 'auth_failed'));
        return node.status({ fill: failing ? 'red' : 'yellow', shape: 'ring', text: shortStatus(bad.join(' · ')) });
      }
      if (nameWarning) return node.status({ fill: 'yellow', shape: 'ring', text: shortStatus(`${what} · ${nameWarning}`) });
      node.status({ fill: 'green', shape: 'dot', text: `${what} · ${[broker ? 'MQTT' : null, ha ? 'HA' : null].filter(Boolean).join(' + ')} connected` });
    };
    if (problems.length) {
      node.error(problems.join('; '));
      showStatus();
    }

    // ---- which name each UPS is published under: two UPS devices called the same must not merge
    const upsRef = (d: UpsDeviceNode, direct: boolean): UpsRef => {
      let where = d.upsName;
      try {
        where = d.device().source.label;
      } catch {
        /* invalid device: its own node says why */
      }
      return { sourceId: d.id, name: d.upsName, where, direct };
    };
    const directRefs = devices.map((d) => upsRef(d, true));
    // Decided once from the node's own UPS list, so a redeploy of other nodes never renames a device.
    const { alias, ambiguous } = upsNames(directRefs);
    const publishedName = (d: UpsDeviceNode) => alias.get(d.id) ?? d.upsName;
    const warnedNames = new Set<string>();
    const checkNames = (wired: UpsDeviceNode[]) => {
      const w = upsNames([...directRefs, ...wired.map((d) => upsRef(d, false))]).warnings;
      for (const text of w) if (!warnedNames.has(text)) node.warn(`Home Assistant: ${text}`);
      warnedNames.clear();
      for (const text of w) warnedNames.add(text);
      nameWarning = w[0] ?? null;
    };
    checkNames([]);

    // ---- UPS devices on MQTT
    const shapes = new Map<string, string>();
    /** Devices that arrived as messages (removed when their UPS in node is deleted). */
    const fromMsg = new Set<string>();
    let expected = new Set<string>();
    const forgetLocal = (id: string) => {
      fromMsg.delete(id);
      upsStates.delete(id);
      shapes.delete(id);
    };

    const publishUps = (s: UpsState) => {
      if (!ctx || !publisher) return;
      const id = upsDeviceId(ctx, s.ups);
      upsStates.set(id, s);
      // Configs change only with the device's identity or which readings it reports.
      const shape = JSON.stringify([upsDeviceBlock(ctx, s), UPS_ENTITIES.map((d) => (d.whenPresent ? s[d.whenPresent] !== null : true))]);
      if (shape !== shapes.get(id) || !publisher.hasDevice(id)) {
        shapes.set(id, shape);
        publisher.setDevice(id, (seen) => upsDiscovery(ctx, upsStates.get(id) ?? s, seen), upsStateTopic(ctx, s.ups), upsStatePayload(s), s.ups);
      } else {
        publisher.setState(id, upsStatePayload(s));
      }
      for (const c of controls) c.refresh();
    };

    const lowestRuntime = (): number | null => {
      let min: number | null = null;
      for (const s of upsStates.values()) {
        if (s.comm !== 'ok' || s.runtime === null || s.untrusted.includes('runtime')) continue;
        min = min === null ? s.runtime : Math.min(min, s.runtime);
      }
      return min;
    };

    // ---- events: MQTT event topics and Home Assistant's event bus
    let lastFireError: string | null = null;
    const fire = (data: Record<string, unknown>): Promise<void> => {
      if (!ha || !cfg?.haEvents) return Promise.resolve();
      return ha.fireEvent(HA_EVENT_TYPE, data).then(
        () => {
          lastFireError = null;
        },
        (err) => {
          const text = `cannot fire ${HA_EVENT_TYPE}: ${errorText(err)}`;
          if (text !== lastFireError) node.warn(text);
          lastFireError = text;
          throw err;
        },
      );
    };
    const upsEvent = (e: UpsEvent, s?: UpsState): Promise<void> => {
      if (ctx && broker?.connected) {
        broker.publish(`${ctx.baseTopic}/ups/${slug(e.ups)}/event`, JSON.stringify({ event: e.event, severity: e.severity, message: e.message, at: new Date(e.ts).toISOString() })).catch(() => undefined);
      }
      return fire(upsEventData(e, s ?? [...upsStates.values()].find((x) => x.ups === e.ups)));
    };
    const runEvent = (e: RunEvent) => {
      if (e.type === 'plan-state') return;
      if (ctx && broker?.connected) {
        broker.publish(`${planTopic(ctx, e.plan.id)}/event`, JSON.stringify(runEventData(e))).catch(() => undefined);
      }
      fire(runEventData(e)).catch(() => undefined);
    };

    // ---- entities of publish nodes deleted while the broker was unreachable: swept at start and
    // after every deploy, for publishers on this broker (host, port) and base topic only
    let flowsStarted = false;
    let sweeping = false;
    const closing = new AbortController();
    const sameBroker = (b: MqttBrokerNode | null): boolean | null => {
      const s = b?.broker?.settings;
      if (!s || !broker) return null;
      return s.host.toLowerCase() === broker.settings.host.toLowerCase() && s.port === broker.settings.port && s.baseTopic === broker.settings.baseTopic;
    };
    const sweep = () => {
      if (!broker || !ctx || !flowsStarted || sweeping || !broker.connected) return;
      sweeping = true;
      const known = new Set<string>();
      (RED.nodes as unknown as EachNode).eachNode((n) => {
        if (n.type !== 'upsorch-publish-state') return;
        // Deployed here on another broker or base topic: its index on this broker is a leftover too.
        const other = sameBroker(typeof n.broker === 'string' ? (RED.nodes.getNode(n.broker) as MqttBrokerNode | null) : null) === false;
        if (!other || n.id === node.id) known.add(slug(n.id));
      });
      sweepUnknownPublishers(broker, ctx, (id) => known.has(id), { warn: (t) => node.warn(t), signal: closing.signal })
        .then((ids) => {
          if (ids.length) node.log(`removed the Home Assistant entities left by ${ids.length} deleted publish node${ids.length > 1 ? 's' : ''} (${ids.join(', ')})`);
        })
        .finally(() => {
          sweeping = false;
        });
    };

    // ---- wiring it up
    const stops: Array<() => void | Promise<void>> = [];
    const working = !problems.length && !!cfg;
    if (working) {
      if (broker && publisher) {
        publisher.start();
        if (forgetAfterMs > 0) {
          // A quarter of the grace period, at most hourly: a removal is at most that late.
          const every = Math.max(1000, Math.min(3600_000, forgetAfterMs / 4));
          const timer = setInterval(() => publisher.checkStale(), every);
          stops.push(() => clearInterval(timer));
        }
        let lastWarned = '';
        const user = {
          status: (s: typeof mqttStatus) => {
            mqttStatus = s;
            showStatus();
            // The status line is short; the full reason goes to the log once per distinct problem.
            if (s && s.state === 'disconnected' && s.text !== 'not connected' && s.text !== lastWarned) node.warn(`MQTT: ${s.text}`);
            if (s) lastWarned = s.state === 'connected' ? '' : s.text === 'not connected' ? lastWarned : s.text;
          },
          connected: () => {
            publisher.connected();
            sweep();
          },
        };
        broker.register(user);
        stops.push(() => broker.deregister(user));
      }
      if (ha) {
        let lastWarned = '';
        const user = {
          status: (s: typeof haStatus) => {
            haStatus = s;
            showStatus();
            if (s && (s.state === 'disconnected' || s.state === 'auth_failed') && s.text !== 'not connected' && s.text !== lastWarned) node.warn(`Home Assistant: ${s.text}`);
            if (s) lastWarned = s.state === 'connected' ? '' : s.text === 'not connected' ? lastWarned : s.text;
          },
        };
        ha.register(user);
        stops.push(() => ha.deregister(user));
      }
      for (const dev of devices) {
        const tracker = new EventTracker(dev.thresholds);
        const name = alias.get(dev.id);
        try {
          const unsubscribe = dev.subscribe((read) => {
            const s = name ? { ...read, ups: name } : read;
            inputError = null; // a bad input message shows until the next state
            publishUps(s);
            if (!ctx) upsStates.set(s.ups, s);
            for (const e of tracker.update(s)) upsEvent(e, s).catch(() => undefined);
            showStatus();
          });
          stops.push(unsubscribe);
        } catch (err) {
          problems.push(errorText(err));
        }
      }
      for (const p of planNodes) {
        const handle = planHandle(p);
        if (publisher) {
          const control = new PlanControl(broker!, publisher, handle, {
            runtime: lowestRuntime,
            onCommand: (r) => commandReport(r),
          });
          control.start();
          controls.push(control);
          stops.push(() => control.stop());
        }
        stops.push(p.plan.subscribe(runEvent));
      }
      showStatus();
    }

    function commandReport(r: CommandReport): void {
      if (!r.accepted) node.warn(`Home Assistant: plan "${r.plan.name}": ${r.message}`);
      node.send({ topic: 'command', payload: r } as NodeMessage);
      fire({ kind: 'command', plan: r.plan.name, plan_id: r.plan.id, command: r.command, accepted: r.accepted, message: r.message, at: new Date().toISOString() }).catch(() => undefined);
    }

    // ---- which devices may keep their entities: configured UPSes and plans, and the UPSes of the
    // UPS in nodes wired (directly or through other nodes) to this one. Re-evaluated on every deploy,
    // so deleting a UPS in node removes its UPS from Home Assistant.
    const computeExpected = (): { ids: Set<string>; wired: UpsDeviceNode[] } => {
      const ids = new Set<string>();
      const wired: UpsDeviceNode[] = [];
      if (!ctx) return { ids, wired };
      for (const d of devices) ids.add(upsDeviceId(ctx, publishedName(d)));
      for (const p of planNodes) ids.add(planDeviceId(ctx, p.id));
      const all = new Map<string, FlowNodeConfig>();
      (RED.nodes as unknown as EachNode).eachNode((n) => all.set(n.id, n));
      const preds = new Map<string, string[]>();
      const edge = (from: string, to: string) => {
        const l = preds.get(to);
        if (l) l.push(from);
        else preds.set(to, [from]);
      };
      for (const n of all.values()) {
        if (n.d === true) continue;
        for (const out of n.wires ?? []) for (const to of out ?? []) edge(n.id, to);
        if (n.type === 'link in' && Array.isArray(n.links)) for (const from of n.links as string[]) edge(from, n.id);
      }
      const seen = new Set<string>([node.id]);
      const queue = [node.id];
      while (queue.length) {
        const cur = queue.shift()!;
        for (const p of preds.get(cur) ?? []) {
          if (seen.has(p)) continue;
          seen.add(p);
          queue.push(p);
          const cfgNode = all.get(p);
          if (cfgNode?.type === 'upsorch-ups-in' && typeof cfgNode.ups === 'string') {
            const dev = RED.nodes.getNode(cfgNode.ups) as UpsDeviceNode | null;
            if (dev) {
              ids.add(upsDeviceId(ctx, dev.upsName));
              if (!dev.configError && !wired.includes(dev)) wired.push(dev);
            }
          }
        }
      }
      return { ids, wired };
    };
    const onFlowsStarted = () => {
      if (!publisher || !working) return;
      flowsStarted = true;
      sweep();
      const { ids: next, wired } = computeExpected();
      checkNames(wired);
      // A UPS that came as messages from a wired UPS in node that was deleted or unwired goes now;
      // one of unknown origin stays (it goes after the grace period without a state, or on 'forget').
      for (const id of [...fromMsg]) {
        if (expected.has(id) && !next.has(id)) {
          forgetLocal(id);
          publisher.removeDevice(id);
        }
      }
      expected = next;
      publisher.setExpected(next);
      showStatus();
    };
    RED.events.on('flows:started', onFlowsStarted);

    node.on('input', (msg, send, done) => {
      if (!working) {
        done(new Error(`this node is not working: ${problems[0] ?? 'invalid configuration'}`));
        return;
      }
      if (msg.topic === 'forget') {
        forget(msg.payload, done);
        return;
      }
      const input = parseInput(msg.payload);
      if (input.kind === 'invalid') {
        inputError = input.error;
        showStatus();
        done(new Error(input.error));
        return;
      }
      inputError = null;
      // Several UPS devices of this node's list share this name: it has their states, each under its own name.
      if (ambiguous.has(slug(input.kind === 'state' ? input.state.ups : input.event.ups))) {
        done();
        return;
      }
      if (input.kind === 'state') {
        if (ctx) fromMsg.add(upsDeviceId(ctx, input.state.ups));
        publishUps(input.state);
        if (!ctx) upsStates.set(input.state.ups, input.state);
        showStatus();
        done();
        return;
      }
      upsEvent(input.event).then(() => done(), (err) => done(err instanceof Error ? err : new Error(errorText(err))));
    });

    /** msg.topic `forget`: remove a UPS of unknown origin from Home Assistant now. */
    function forget(payload: unknown, done: (err?: Error) => void): void {
      const name = typeof payload === 'string' ? payload.trim() : payload && typeof payload === 'object' && typeof (payload as { ups?: unknown }).ups === 'string' ? ((payload as { ups: string }).ups).trim() : '';
      if (!name) return done(new Error('forget: msg.payload must be the name of the UPS to remove from Home Assistant'));
      if (!ctx || !publisher) return done(new Error('forget: this node publishes no Home Assistant devices (no MQTT broker chosen)'));
      const id = upsDeviceId(ctx, name);
      if (expected.has(id)) {
        return done(new Error(`forget: "${name}" comes from this node's UPS list or a wired UPS in node and would come back at once; remove it there and deploy`));
      }
      if (publisher.knows(id) === false) return done(new Error(`forget: this node has no UPS called "${name}" in Home Assistant`));
      forgetLocal(id);
      publisher.removeDevice(id);
      node.log(`removed UPS "${name}" from Home Assistant (forget); a new state for it adds it again`);
      showStatus();
      done();
    }

    node.on('close', (removed, done) => {
      RED.events.removeListener('flows:started', onFlowsStarted);
      closing.abort();
      const finish = async () => {
        if (removed && publisher && broker?.connected) {
          // The node was deleted: its devices leave Home Assistant (empty retained configs).
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([publisher.removeAll(), new Promise((r) => (timer = setTimeout(r, REMOVE_TIMEOUT_MS)))]).catch(() => undefined);
          clearTimeout(timer);
        }
        publisher?.stop();
        for (const s of stops.splice(0).reverse()) {
          try {
            await s();
          } catch {
            /* keep closing */
          }
        }
      };
      finish().finally(() => done());
    });
  }

  RED.nodes.registerType('upsorch-publish-state', PublishStateNode);
};

/** The plan config node as the Home Assistant layer sees it (lib/mqtt/plan.ts PlanHandle). */
function planHandle(p: PlanNode): PlanHandle {
  return {
    id: p.id,
    get name() {
      return p.plan.name;
    },
    status: () => p.plan.status(),
    subscribe: (fn) => p.plan.subscribe(fn),
    request: (req) => p.request(req),
    cancel: (by) => p.cancel(by),
    setArmed: (armed, by) => p.plan.setArmed(armed, by),
    expectedDurationMs: (direction) => p.expectedDurationMs(direction),
  };
}
