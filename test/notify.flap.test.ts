/**
 * Flapping power on its own (lib/notify/flap.ts), on clock values: whatever the sequence of
 * changes, once it has been quiet the last state the user was told is the real last state.
 */
import { strict as assert } from 'node:assert';
import { FLAP_DEFAULTS, FlapGuard, FlapSettings } from '../lib/notify/flap';
import { Notification, fromUpsEvent } from '../lib/notify/format';
import { normalise } from '../lib/ups/state';

const T0 = Date.UTC(2025, 0, 15, 9, 0, 0);

/** A UPS event as UPS in sends it: ONBATT or ONLINE with the matching state. */
function change(onBattery: boolean, at: number): Notification {
  const vars = { 'ups.status': onBattery ? 'OB DISCHRG' : 'OL', 'battery.charge': '90', 'battery.runtime': '1800' };
  const state = normalise({ ups: 'rack', source: 'sim', vars, ts: at, secondsOnBattery: 0 });
  return fromUpsEvent({ event: onBattery ? 'ONBATT' : 'ONLINE', ups: 'rack', ts: at, state }, at);
}

/** What a message told the user about mains power: the event it carries (a notice or digest carries the latest). */
function told(n: Notification): string {
  return String(n.ctx.event);
}

/** Feed changes (seconds after T0, alternating from ONBATT) and let it go quiet; every message sent, with its time. */
function replay(times: number[], settings: FlapSettings = FLAP_DEFAULTS): { sent: Array<{ at: number; n: Notification }>; last: string } {
  const guard = new FlapGuard(settings);
  const sent: Array<{ at: number; n: Notification }> = [];
  const until = (t: number) => {
    for (;;) {
      const wake = guard.wakeAt();
      if (wake === null || wake > t) return;
      for (const d of guard.due(wake)) sent.push({ at: wake, n: d });
    }
  };
  let onBattery = false;
  for (const s of times) {
    const at = T0 + s * 1000;
    until(at);
    onBattery = !onBattery;
    for (const n of guard.offer(change(onBattery, at), at)) sent.push({ at, n });
  }
  until(Number.MAX_SAFE_INTEGER);
  return { sent, last: onBattery ? 'ONBATT' : 'ONLINE' };
}

describe('notify: flapping power never leaves a wrong last word', () => {
  it('a new episode right after a digest: the change the "flapping" notice held back comes in the next digest', () => {
    // Changes at 0/10/20/30 s, digest at 150 s; then on battery at 160, mains at 170, battery at 180.
    const { sent } = replay([0, 10, 20, 30, 160, 170, 180]);
    assert.deepEqual(sent.map((s) => `${(s.at - T0) / 1000} ${s.n.key} ${told(s.n)}`), [
      '0 ONBATT ONBATT',
      '10 ONLINE ONLINE',
      '20 flapping ONBATT',
      '150 digest ONLINE',
      '160 ONBATT ONBATT',
      '170 ONLINE ONLINE',
      // No second "flapping" notice within the window, but the user learns the UPS is on battery.
      '300 digest ONBATT',
    ]);
    const digest = sent[6].n;
    assert.equal(digest.ctx.power, 'on battery');
    assert.equal(digest.severity, 'warning');
    assert.equal(digest.resolved, false);
  });

  it('after any sequence of changes, once quiet, the last message says the real last state', () => {
    let seed = 12345;
    const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    const settings = [FLAP_DEFAULTS, { windowMs: 60_000, threshold: 1, quietMs: 20_000 }, { windowMs: 600_000, threshold: 4, quietMs: 5_000 }];
    for (let trial = 0; trial < 600; trial++) {
      const s = settings[trial % settings.length];
      const times: number[] = [];
      let t = 0;
      const count = 1 + Math.floor(rand() * 25);
      for (let i = 0; i < count; i++) {
        // Mostly quick flaps, sometimes a pause longer than the quiet time.
        t += rand() < 0.2 ? Math.floor(rand() * 400) : 1 + Math.floor(rand() * 40);
        times.push(t);
      }
      const { sent, last } = replay(times, s);
      assert.ok(sent.length > 0, `trial ${trial}: nothing was sent`);
      const final = sent[sent.length - 1].n;
      assert.equal(told(final), last, `trial ${trial} (${JSON.stringify(s)}), changes at ${times.join(',')} s: the user was last told ${told(final)} (${final.key})`);
      // And never a flood: at most threshold + 1 messages per window plus digests.
      assert.ok(sent.length <= count, `trial ${trial}: ${sent.length} messages for ${count} changes`);
    }
  });
});
