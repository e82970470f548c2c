/**
 * The example flow "UPS and plan on the HA dashboard" as a user imports it, pointed at a real
 * Mosquitto broker: both devices appear in discovery, and the Dry-run button runs the plan.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MosquittoPeer } from './peers/mosquitto';
import { MqttObserver } from './util/mqtt-observer';
import { haMqttNodes, helper, send, waitForStatus } from './util/red';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const NODES = [...haMqttNodes, require('../nodes/upsorch-plan'), require('../nodes/upsorch-phase')];
const EXAMPLE = path.join(__dirname, '..', 'examples', '05 UPS and plan on the HA dashboard.json');

describe('example flow "UPS and plan on the HA dashboard" (real Mosquitto)', function () {
  this.timeout(60000);
  let peer: MosquittoPeer;
  let userDir: string;
  before(async () => {
    peer = await MosquittoPeer.start();
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'upsorch-example-ha-'));
    helper.settings({ userDir });
  });
  after(async () => {
    await helper.unload();
    helper.settings({ userDir: undefined });
    fs.rmSync(userDir, { recursive: true, force: true });
    await peer.dispose();
  });

  it('deploys: the UPS and the plan appear in Home Assistant; Dry-run runs the plan; Run shutdown is refused', async () => {
    const flow = JSON.parse(fs.readFileSync(EXAMPLE, 'utf8')) as Array<Record<string, any>>;
    for (const n of flow) {
      // core nodes are not loaded in the test runtime: inject, debug and comment become helpers
      if (['inject', 'debug', 'comment'].includes(n.type)) n.type = 'helper';
      if (n.type === 'upsorch-mqtt-broker') Object.assign(n, { host: '127.0.0.1', port: peer.port });
    }
    const o = await MqttObserver.connect(peer.port, ['homeassistant/#', 'ups-orchestrator/#']);
    try {
      await helper.load(NODES, flow);
      const pub = flow.find((n) => n.type === 'upsorch-publish-state')!.id;
      await waitForStatus(pub, (x) => x.fill === 'green' && x.text === '1 UPS · 1 plan · MQTT connected', 10000);
      await o.waitFor((s) => s.topic === 'homeassistant/sensor/upsorch_ups_orchestrator_ups_rack_ups_battery_charge/config', 5000);
      const planId = flow.find((n) => n.type === 'upsorch-plan')!.id;
      const base = `ups-orchestrator/plan/${planId}`;
      await o.waitFor((s) => s.topic === `homeassistant/button/upsorch_ups_orchestrator_plan_${planId}_dry_run/config`, 5000);
      await o.publish(`${base}/set/dry_run`, 'PRESS');
      const report = flow.find((n) => n.name === 'run report')!.id;
      await new Promise<void>((resolve) => helper.getNode(report).on('input', (m: any) => m.topic === 'run-report' && resolve()));
      const from = o.seen.length;
      await o.publish(`${base}/set/run_shutdown`, 'PRESS');
      const st = await o.waitFor((s) => s.topic === `${base}/state` && /refused/.test(JSON.parse(s.payload).last_command ?? ''), 5000, from);
      assert.match(JSON.parse(st.payload).last_command, /^shutdown refused: remote runs are not allowed/);
      // what the "power lost" inject button sends: the simulated UPS's state reaches Home Assistant
      const lost = flow.find((n) => n.name === 'power lost')!;
      send(lost.wires[0][0], { topic: lost.topic });
      await o.waitFor((s) => s.topic === 'ups-orchestrator/ups/rack_ups/state' && JSON.parse(s.payload).on_battery === 'ON', 5000);
    } finally {
      await o.close();
    }
  });
});
