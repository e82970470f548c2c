/**
 * A simulated UPS with a simple energy model, for demos and rehearsals. It reports NUT variables,
 * so it goes through the same normaliser as a real UPS.
 *
 * Model: the battery stores `health × capacityWh` when full. On battery it loses load × ratedPower
 * (W) divided by the inverter efficiency; on mains it recharges from empty to full in
 * `rechargeHours`. The reported charge is the fraction of what the (possibly aged) battery can
 * hold. The reported runtime is what UPS firmware estimates: charge × the *nominal* capacity ÷
 * power, which is why an aged battery dies earlier than its runtime reading says. Time runs at
 * `speed` simulated seconds per real second, for rehearsals.
 */

export interface SimConfig {
  /** Usable battery energy of a new battery (Wh). */
  capacityWh: number;
  /** Output power at 100 % load (W). */
  ratedPowerW: number;
  /** Load in percent of ratedPowerW. */
  load: number;
  /** Charge (%) at or below which LB is raised while on battery. */
  chargeLow: number;
  /** Runtime (s) at or below which LB is raised while on battery. */
  runtimeLow: number;
  /** Hours to recharge from empty to full. */
  rechargeHours: number;
  /** Simulated seconds per real second. */
  speed: number;
  /** 1 = new battery; 0.33 = holds a third of its rated energy. */
  health: number;
  /** Charge at start (%). */
  initialCharge: number;
  /** Mains voltage when present (V). */
  nominalVoltage: number;
  /** Inverter efficiency on battery (0–1). */
  efficiency: number;
}

export const SIM_DEFAULTS: SimConfig = {
  capacityWh: 250,
  ratedPowerW: 900,
  load: 25,
  chargeLow: 20,
  runtimeLow: 120,
  rechargeHours: 4,
  speed: 1,
  health: 1,
  initialCharge: 100,
  nominalVoltage: 230,
  efficiency: 0.9,
};

/** The model caps its runtime estimate here (an idle UPS would otherwise report days). */
const MAX_RUNTIME_S = 60000;
/** Health below which the simulated UPS asks for a new battery (RB). */
const REPLACE_BELOW = 0.6;

export type SimCommand =
  | 'power-lost' | 'power-restored' | 'set-load' | 'battery-ages' | 'replace-battery' | 'speed'
  | 'set-charge' | 'set-input-voltage' | 'comm-lost' | 'comm-restored';

export const SIM_COMMANDS: readonly SimCommand[] = [
  'power-lost', 'power-restored', 'set-load', 'battery-ages', 'replace-battery', 'speed', 'set-charge',
  'set-input-voltage', 'comm-lost', 'comm-restored',
];

export class SimulatedUps {
  private readonly cfg: SimConfig;
  /** Stored energy (Wh). */
  private energy: number;
  private mains = true;
  private inputVoltage: number;
  private outputOff = false;
  private last: number;
  /** Simulated seconds since power was lost (0 on mains). */
  private simOnBattery = 0;
  commLost = false;

  constructor(config: Partial<SimConfig>, now: number) {
    this.cfg = { ...SIM_DEFAULTS, ...config };
    validate(this.cfg);
    this.energy = this.fullEnergy() * clamp(this.cfg.initialCharge, 0, 100) / 100;
    this.inputVoltage = this.cfg.nominalVoltage;
    this.last = now;
  }

  get config(): Readonly<SimConfig> {
    return this.cfg;
  }

  private fullEnergy(): number {
    return this.cfg.capacityWh * this.cfg.health;
  }

  private powerW(): number {
    return (this.cfg.ratedPowerW * this.cfg.load) / 100;
  }

  /** Charge in percent of what the battery can hold now. */
  charge(): number {
    const full = this.fullEnergy();
    return full > 0 ? clamp((this.energy / full) * 100, 0, 100) : 0;
  }

  /** The firmware's runtime estimate (s): assumes the nominal capacity. */
  runtimeEstimate(): number {
    const p = this.powerW();
    if (p <= 0) return MAX_RUNTIME_S;
    const s = ((this.charge() / 100) * this.cfg.capacityWh * this.cfg.efficiency * 3600) / p;
    return Math.min(MAX_RUNTIME_S, s);
  }

  /** What is really left (s) at the present load. */
  trueRuntime(): number {
    const p = this.powerW();
    if (p <= 0) return MAX_RUNTIME_S;
    return Math.min(MAX_RUNTIME_S, (this.energy * this.cfg.efficiency * 3600) / p);
  }

  /** Move the model forward to `now` (ms, real clock). */
  advance(now: number): void {
    const dt = (Math.max(0, now - this.last) / 1000) * this.cfg.speed;
    this.last = now;
    if (dt === 0) return;
    if (!this.mains) {
      this.simOnBattery += dt;
      if (!this.outputOff) {
        this.energy -= (this.powerW() / this.cfg.efficiency) * (dt / 3600);
        if (this.energy <= 0) {
          this.energy = 0;
          this.outputOff = true; // a depleted UPS drops its load
        }
      }
    } else {
      const rate = this.fullEnergy() / (this.cfg.rechargeHours * 3600);
      this.energy = Math.min(this.fullEnergy(), this.energy + rate * dt);
    }
  }

  lowBattery(): boolean {
    return !this.mains && (this.charge() <= this.cfg.chargeLow || this.runtimeEstimate() <= this.cfg.runtimeLow);
  }

  status(): string[] {
    const flags: string[] = [];
    if (this.mains) {
      flags.push('OL');
      if (this.charge() < 99.95) flags.push('CHRG');
    } else {
      flags.push('OB');
      if (!this.outputOff) flags.push('DISCHRG');
    }
    if (this.lowBattery()) flags.push('LB');
    if (this.outputOff) flags.push('OFF');
    if (this.cfg.load > 100) flags.push('OVER');
    if (this.cfg.health < REPLACE_BELOW) flags.push('RB');
    const v = this.mains ? this.inputVoltage : 0;
    if (this.mains && v > 0 && v < this.cfg.nominalVoltage * 0.9 && v >= this.cfg.nominalVoltage * 0.8) flags.push('BOOST');
    if (this.mains && v > this.cfg.nominalVoltage * 1.1 && v <= this.cfg.nominalVoltage * 1.2) flags.push('TRIM');
    return flags;
  }

  secondsOnBattery(): number {
    return this.simOnBattery;
  }

  /** NUT variables as a real UPS would report them. */
  vars(now: number): Record<string, string> {
    this.advance(now);
    const nominal = this.cfg.nominalVoltage;
    const out = this.outputOff ? 0 : nominal;
    const load = this.outputOff ? 0 : this.cfg.load;
    return {
      'device.mfr': 'node-red-contrib-ups-orchestrator',
      'device.model': 'Simulated UPS',
      'device.type': 'ups',
      'ups.mfr': 'node-red-contrib-ups-orchestrator',
      'ups.model': 'Simulated UPS',
      'ups.status': this.status().join(' '),
      'battery.charge': this.charge().toFixed(1),
      'battery.charge.low': String(this.cfg.chargeLow),
      'battery.runtime': String(Math.round(this.runtimeEstimate())),
      'battery.runtime.low': String(this.cfg.runtimeLow),
      'battery.charger.status': this.mains ? (this.charge() < 99.95 ? 'charging' : 'resting') : 'discharging',
      'input.voltage': (this.mains ? this.inputVoltage : 0).toFixed(1),
      'input.voltage.nominal': String(nominal),
      'input.transfer.low': String(Math.round(nominal * 0.8)),
      'input.transfer.high': String(Math.round(nominal * 1.2)),
      'output.voltage': out.toFixed(1),
      'ups.load': load.toFixed(1),
      'ups.realpower': String(Math.round((this.cfg.ratedPowerW * load) / 100)),
      'ups.realpower.nominal': String(this.cfg.ratedPowerW),
      'ups.temperature': (25 + load / 10).toFixed(1),
    };
  }

  /**
   * Apply a command (from a message). Values are validated; an invalid one throws with a message
   * that says what is allowed.
   */
  command(cmd: string, value: unknown, now: number): void {
    this.advance(now);
    switch (cmd) {
      case 'power-lost':
        if (this.mains) this.simOnBattery = 0;
        this.mains = false;
        return;
      case 'power-restored':
        this.mains = true;
        this.outputOff = false;
        this.simOnBattery = 0;
        this.inputVoltage = this.cfg.nominalVoltage;
        return;
      case 'set-load':
        this.cfg.load = numberIn(value, 0, 200, 'load (%)');
        return;
      case 'battery-ages':
        this.setHealth(numberIn(value, 0.05, 1, 'battery health (1 = new, 0.5 = half the capacity)'));
        return;
      case 'replace-battery':
        this.setHealth(1);
        return;
      case 'speed':
        this.cfg.speed = numberIn(value, 0.01, 10000, 'speed factor');
        return;
      case 'set-charge':
        this.energy = (this.fullEnergy() * numberIn(value, 0, 100, 'charge (%)')) / 100;
        if (this.energy > 0 && !this.mains) this.outputOff = false;
        return;
      case 'set-input-voltage':
        this.inputVoltage = numberIn(value, 0, 400, 'input voltage (V)');
        if (this.inputVoltage < this.cfg.nominalVoltage * 0.8 || this.inputVoltage > this.cfg.nominalVoltage * 1.2) {
          // outside the transfer limits a UPS goes on battery
          if (this.mains) this.simOnBattery = 0;
          this.mains = false;
        } else if (!this.mains) {
          this.mains = true;
          this.outputOff = false;
          this.simOnBattery = 0;
        }
        return;
      case 'comm-lost':
        this.commLost = true;
        return;
      case 'comm-restored':
        this.commLost = false;
        return;
      default:
        throw new Error(`unknown simulator command "${cmd}"; use one of ${SIM_COMMANDS.join(', ')}`);
    }
  }

  private setHealth(h: number): void {
    const charge = this.charge();
    this.cfg.health = h;
    this.energy = (this.fullEnergy() * charge) / 100;
  }
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}

function numberIn(value: unknown, lo: number, hi: number, what: string): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < lo || n > hi) {
    throw new Error(`${what} must be a number from ${lo} to ${hi}, got ${JSON.stringify(value)}`);
  }
  return n;
}

function validate(c: SimConfig): void {
  numberIn(c.capacityWh, 1, 1e6, 'battery capacity (Wh)');
  numberIn(c.ratedPowerW, 1, 1e6, 'rated power (W)');
  numberIn(c.load, 0, 200, 'load (%)');
  numberIn(c.chargeLow, 0, 100, 'low-battery charge (%)');
  numberIn(c.runtimeLow, 0, 86400, 'low-battery runtime (s)');
  numberIn(c.rechargeHours, 0.001, 1000, 'recharge time (h)');
  numberIn(c.speed, 0.01, 10000, 'speed factor');
  numberIn(c.health, 0.05, 1, 'battery health');
  numberIn(c.initialCharge, 0, 100, 'initial charge (%)');
  numberIn(c.nominalVoltage, 1, 1000, 'nominal voltage (V)');
  numberIn(c.efficiency, 0.1, 1, 'efficiency');
}
