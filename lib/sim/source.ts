/** The simulated UPS as a source: same NUT variables, same normalised state as a real UPS. */
import { SimConfig, SimulatedUps } from './battery';
import { SourceError, UpsReading, UpsSource } from '../ups/source';

export class SimSource implements UpsSource {
  readonly kind = 'sim' as const;
  readonly label: string;
  readonly warning = null;
  readonly sim: SimulatedUps;

  constructor(name: string, config: Partial<SimConfig>, now: number) {
    this.label = `simulated UPS "${name}"`;
    this.sim = new SimulatedUps(config, now);
  }

  async read(now: number): Promise<UpsReading> {
    this.sim.advance(now);
    if (this.sim.commLost) throw new SourceError(`${this.label}: communication lost (simulated)`, 'lost');
    return { vars: this.sim.vars(now), secondsOnBattery: this.sim.secondsOnBattery() };
  }

  async close(): Promise<void> {
    /* nothing to release */
  }
}
