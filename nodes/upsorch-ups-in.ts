/**
 * "UPS in": output 1 = the normalised UPS state on change (and optionally every N seconds),
 * output 2 = one message per UPS event. Input: `refresh`, or a simulator command for a simulated UPS.
 */
import { NodeAPI, Node, NodeMessage, UpsDeviceNode, errorText, shortStatus } from './red';
import { UpsState, stateKey, statusOf } from '../lib/ups/state';
import { EventTracker } from '../lib/ups/events';
import { SIM_COMMANDS } from '../lib/sim/battery';
import { z } from 'zod';

const UpsInConfig = z.object({
  ups: z.string({ error: 'no UPS device selected' }).min(1, 'no UPS device selected'),
  interval: z.preprocess((v) => (v === '' || v === undefined ? 0 : Number(v)), z.number().min(0).max(86400)).default(0),
  events: z.preprocess((v) => v !== false && v !== 'false', z.boolean()).default(true),
});

export = function register(RED: NodeAPI): void {
  function UpsInNode(this: Node, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    const node = this;
    let unsubscribe: (() => Promise<void>) | undefined;
    let ticker: NodeJS.Timeout | undefined;
    let lastKey: string | undefined;
    let lastWarning: string | null = null;
    let latest: UpsState | undefined;
    /** An input error painted the status red: repaint from the next state even if it did not change. */
    let statusDirty = false;
    const inputError = (err: Error, done: (e?: Error) => void) => {
      node.status({ fill: 'red', shape: 'ring', text: shortStatus(err.message) });
      statusDirty = true;
      done(err);
    };

    const parsed = UpsInConfig.safeParse(raw);
    const device = parsed.success ? (RED.nodes.getNode(parsed.data.ups) as UpsDeviceNode | null) : null;
    const fail = (text: string) => {
      node.status({ fill: 'red', shape: 'ring', text: shortStatus(text) });
      node.error(text);
    };
    if (!parsed.success) fail(parsed.error.issues[0]?.message ?? 'invalid configuration');
    else if (!device) fail('the selected UPS device does not exist (deleted or not deployed)');
    else if (device.configError) fail(device.configError);

    const cfg = parsed.success ? parsed.data : undefined;
    const tracker = new EventTracker(device?.thresholds);
    const stateMsg = (s: UpsState): NodeMessage => ({ topic: s.ups, payload: s });

    if (cfg && device && !device.configError) {
      node.status({ fill: 'grey', shape: 'ring', text: 'connecting…' });
      const onState = (s: UpsState) => {
        latest = s;
        const warning = device.device().source.warning;
        const key = stateKey(s);
        if (key !== lastKey || warning !== lastWarning || statusDirty) node.status(statusOf(s, warning));
        statusDirty = false;
        if (warning && warning !== lastWarning) node.warn(warning);
        lastWarning = warning;
        if (cfg.events) {
          for (const e of tracker.update(s)) node.send([null, { topic: e.event, payload: { ...e, state: s } }]);
        }
        if (key !== lastKey) {
          lastKey = key;
          node.send([stateMsg(s), null]);
        }
      };
      try {
        unsubscribe = device.subscribe(onState);
      } catch (err) {
        fail(errorText(err));
      }
      if (cfg.interval > 0) {
        ticker = setInterval(() => latest && node.send([stateMsg(latest), null]), cfg.interval * 1000);
      }
    }

    node.on('input', (msg, send, done) => {
      const topic = typeof msg.topic === 'string' ? msg.topic.trim() : '';
      if (!device || device.configError || !unsubscribe) {
        done(new Error('this node has no working UPS device; fix its configuration'));
        return;
      }
      const reply = (s: UpsState) => send([{ ...msg, topic: s.ups, payload: s }, null]);
      if (topic === '' || topic === 'refresh') {
        device.device().poll().then(reply).then(() => done(), (err) => inputError(err, done));
        return;
      }
      if ((SIM_COMMANDS as readonly string[]).includes(topic)) {
        device.simulate(topic, msg.payload).then(() => done(), (err) => inputError(err instanceof Error ? err : new Error(errorText(err)), done));
        return;
      }
      inputError(new Error(`unknown topic "${topic}": send "refresh" (or no topic) for the current state, or for a simulated UPS one of ${SIM_COMMANDS.join(', ')}`), done);
    });

    node.on('close', (_removed, done) => {
      if (ticker) clearInterval(ticker);
      ticker = undefined;
      const u = unsubscribe;
      unsubscribe = undefined;
      (u ? u() : Promise.resolve()).catch(() => undefined).finally(() => done());
    });
  }

  RED.nodes.registerType('upsorch-ups-in', UpsInNode);
};
