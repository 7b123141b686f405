import type { Ingest } from '../ingest/ingest.js';
import type { Clock, TimerHandle } from '../runtime/clock.js';
import type { SimulatorSourceConfig } from './config.js';
import { type Source, SourceStats, type SourceStatus } from './source.js';

/** mulberry32: a small, fast, seedable PRNG, so a simulated run can be reproduced. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface SimDevice {
  id: string;
  phase: number;
  humidity: number;
  powerLevel: number;
}

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;

/**
 * Synthetic devices so the gateway does something useful out of the box (SPEC §3): each emits
 * `temperature` (a daily-ish sine with noise, °C), `humidity` (a bounded random walk, %) and
 * `power` (steps between levels, W). A share of readings arrives out of order (a few intervals
 * behind) or late (a minute behind), to exercise watermarks and lateness.
 */
export class SimulatorSource implements Source {
  readonly type = 'simulator';
  private readonly stats: SourceStats;
  private readonly random: () => number;
  private readonly devices: SimDevice[];
  private timer: TimerHandle | null = null;

  constructor(
    private readonly config: SimulatorSourceConfig,
    private readonly deps: { ingest: Ingest; clock: Clock },
  ) {
    this.stats = new SourceStats(config.id, 'simulator');
    this.random = prng(config.seed);
    this.devices = Array.from({ length: config.devices }, (_, i) => ({
      id: `${config.prefix}-${i + 1}`,
      phase: this.random() * 2 * Math.PI,
      humidity: 40 + this.random() * 20,
      powerLevel: Math.floor(this.random() * 4),
    }));
  }

  get id(): string {
    return this.config.id;
  }

  async start(): Promise<void> {
    this.timer = this.deps.clock.setInterval(() => this.tick(), this.config.interval);
    this.stats.state = 'connected';
  }

  async stop(): Promise<void> {
    this.timer?.cancel();
    this.timer = null;
    this.stats.state = 'stopped';
  }

  status(): SourceStatus {
    return this.stats.snapshot();
  }

  /** One round: every device emits its metrics. Public so tests can drive it without timers. */
  tick(): void {
    const now = this.deps.clock.now();
    let accepted = 0;
    for (const d of this.devices) {
      let ts = now;
      const r = this.random();
      if (r < this.config.late) ts = now - 60_000;
      else if (r < this.config.late + this.config.outOfOrder)
        ts = now - this.config.interval * (1 + Math.floor(this.random() * 3));
      d.humidity = Math.min(95, Math.max(5, d.humidity + (this.random() - 0.5) * 2));
      if (this.random() < 0.02) d.powerLevel = Math.floor(this.random() * 4);
      const temperature =
        21 + 4 * Math.sin(d.phase + (2 * Math.PI * now) / 3_600_000) + (this.random() - 0.5) * 0.4;
      const power = d.powerLevel * 500 + (d.powerLevel > 0 ? (this.random() - 0.5) * 20 : 0);
      const readings = [
        { device: d.id, metric: 'temperature', value: round(temperature, 2), ts, unit: '°C' },
        { device: d.id, metric: 'humidity', value: round(d.humidity, 1), ts, unit: '%' },
        { device: d.id, metric: 'power', value: round(power, 1), ts, unit: 'W' },
      ];
      for (const r of readings)
        if (this.deps.ingest.accept(this.config.id, r, now) === 'accepted') accepted++;
    }
    this.stats.delivered(accepted, now);
  }
}
