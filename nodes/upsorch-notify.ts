/**
 * Notify: tells people what the UPS and the plan are doing, through a channel config node (email,
 * webhook, Discord, ntfy, Telegram, Home Assistant) and optionally a crisis channel for the steps
 * of a plan run. Input: UPS events (UPS in, output 2), plan run messages, or custom text. All logic
 * is in lib/notify; this node reads its configuration, feeds the notifier and shows the channels'
 * delivery state (queued / sent / failing).
 */
import { NodeAPI, Node, PlanNode, errorText, shortStatus } from './red';
import { NotifyChannelNode } from './notify-types';
import { InputError, Notifier, NotifyTarget } from '../lib/notify/notifier';
import { flapSettings, parseNotifyConfig, templateOverrides } from '../lib/notify/config';
import { ChannelQueue, QueueStatus } from '../lib/notify/queue';
import { PLAN_TOPICS } from '../lib/notify/format';
import { RunEvent } from '../lib/plan/types';

function part(s: QueueStatus): { text: string; level: number } {
  if (s.failing) return { text: `${s.queued} queued · failing: ${s.failing}`, level: 3 };
  if (s.queued > 0) return { text: `sending, ${s.queued} queued`, level: 2 };
  // Delivered, but not to everyone (a refused recipient): yellow until a message goes out whole.
  if (s.warning) return { text: `sent ${s.sent} · ${s.warning}`, level: 2 };
  if (s.sent > 0) return { text: `sent ${s.sent}${s.dropped ? ` · dropped ${s.dropped}` : ''}`, level: 1 };
  return { text: s.dropped ? `dropped ${s.dropped}` : 'ready', level: 0 };
}

export = function register(RED: NodeAPI): void {
  function NotifyNode(this: Node, raw: Record<string, unknown>): void {
    RED.nodes.createNode(this, raw);
    const node = this;
    let notifier: Notifier | undefined;
    let followedPlan = '';
    /** The last input could not be read: shown until an input is read again. */
    let inputError = '';
    /** The crisis channel cannot be used: the node runs without it and says so. */
    let crisisProblem = '';
    const unsubscribes: Array<() => void> = [];
    const channels: Array<{ name: string; queue: ChannelQueue }> = [];

    const fail = (text: string) => {
      node.status({ fill: 'red', shape: 'ring', text: shortStatus(text) });
      node.error(text);
    };

    const show = () => {
      if (!notifier) return;
      if (inputError) {
        node.status({ fill: 'red', shape: 'ring', text: shortStatus(inputError) });
        return;
      }
      const parts = channels.map((c) => ({ ...part(c.queue.status), name: c.name }));
      const level = Math.max(0, ...parts.map((p) => p.level));
      const flapping = notifier.flapping;
      const flapNote = flapping.length ? ` · flapping: ${flapping.join(', ')}` : '';
      const crisisNote = crisisProblem ? ` · ${crisisProblem}` : '';
      const text = (parts.length === 1 ? parts[0].text : parts.map((p) => `${p.name}: ${p.text}`).join(' | ')) + crisisNote + flapNote + (notifier.inCrisis ? ' · run in progress' : '');
      const lvl = crisisProblem ? Math.max(level, 2) : level;
      node.status({ fill: lvl === 3 ? 'red' : lvl === 2 ? 'yellow' : 'green', shape: lvl === 3 || lvl === 0 ? 'ring' : 'dot', text: shortStatus(text) });
    };

    const channelOf = (id: string, what: string): ChannelQueue => {
      const c = RED.nodes.getNode(id) as NotifyChannelNode | null;
      if (!c) throw new Error(`the ${what} does not exist (deleted or not deployed)`);
      if (c.configError || !c.queue) throw new Error(`${what} "${c.channelName}": ${c.configError ?? 'not working'}`);
      if (!channels.some((x) => x.queue === c.queue)) {
        channels.push({ name: c.channelName, queue: c.queue });
        unsubscribes.push(c.queue.onStatus(show));
      }
      return c.queue;
    };

    try {
      const cfg = parseNotifyConfig(raw);
      const main: NotifyTarget = channelOf(cfg.channel, 'channel');
      let crisis: NotifyTarget | null = null;
      if (cfg.crisisChannel) {
        // A broken crisis channel must not silence the main one: start without it and say so.
        try {
          crisis = channelOf(cfg.crisisChannel, 'crisis channel');
        } catch (err) {
          crisisProblem = errorText(err);
          node.error(`${crisisProblem}; sending everything to the main channel until it is fixed`);
        }
      }
      notifier = new Notifier({
        main,
        crisis,
        crisisMode: cfg.crisis,
        events: cfg.events,
        flap: flapSettings(cfg),
        templates: templateOverrides(cfg),
        onError: (err) => node.error(`a digest could not be queued: ${err.message}`),
      });
      if (cfg.plan) {
        const planNode = RED.nodes.getNode(cfg.plan) as PlanNode | null;
        if (!planNode?.plan) throw new Error('the selected plan does not exist (deleted or not deployed)');
        followedPlan = cfg.plan;
        const n = notifier;
        unsubscribes.push(planNode.plan.subscribe((e: RunEvent) => {
          if (!(PLAN_TOPICS as readonly string[]).includes(e.type)) return;
          // The run's trigger (the threshold's reason) is in the run record, not in the event.
          const trigger = e.type === 'run-started' || e.type === 'run-resumed' ? planNode.plan.lastRun()?.trigger : undefined;
          n.handle({ topic: e.type, payload: { ...e, ...(trigger ? { trigger } : {}) } }).then(show, (err: unknown) => node.error(`plan ${e.type}: ${errorText(err)}`));
        }));
      }
      show();
    } catch (err) {
      fail(errorText(err));
    }

    node.on('input', (msg, _send, done) => {
      if (!notifier) {
        done(new Error('this node has no working channel; fix its configuration and deploy again'));
        return;
      }
      const n = notifier;
      // Run messages of the plan this node follows directly arrive through the subscription already.
      const run = (msg.run ?? (msg.payload as { run?: unknown } | undefined)?.run) as { plan?: string } | undefined;
      if (followedPlan && run?.plan === followedPlan && (PLAN_TOPICS as readonly string[]).includes(String(msg.topic))) {
        done();
        return;
      }
      n.handle(msg).then(
        () => {
          inputError = '';
          show();
          done();
        },
        (err: unknown) => {
          const e = err instanceof Error ? err : new Error(errorText(err));
          if (err instanceof InputError) {
            inputError = e.message;
            show();
          }
          done(e);
        },
      );
    });

    node.on('close', (_removed, done) => {
      notifier?.close();
      notifier = undefined;
      for (const u of unsubscribes.splice(0)) u();
      done();
    });
  }

  RED.nodes.registerType('upsorch-notify', NotifyNode);
};
