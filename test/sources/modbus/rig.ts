import { Ingest } from '../../../src/ingest/ingest.js';
import type { Reading } from '../../../src/model/reading.js';
import { type Clock, systemClock } from '../../../src/runtime/clock.js';
import { EventBus } from '../../../src/runtime/events.js';
import { RateLimitedLog, silentLogger } from '../../../src/runtime/log.js';
import { Metrics } from '../../../src/runtime/metrics.js';
import { type ModbusSourceConfig, modbusSourceSchema } from '../../../src/sources/modbus/config.js';
import { type Profile, profileSchema } from '../../../src/sources/modbus/profile.js';
import { ModbusSource } from '../../../src/sources/modbus/source.js';
import { openDatabase } from '../../../src/store/database.js';
import { ReadingWriter } from '../../../src/store/reading-writer.js';

/** A Modbus source wired to a real Ingest (in-memory store) that records what it accepted. */
export interface ModbusRig {
  source: ModbusSource;
  ingest: Ingest;
  metrics: Metrics;
  readings: Reading[];
  /** Readings of one device (and metric). */
  of(device: string, metric?: string): Reading[];
  /** The latest value of device/metric, or undefined. */
  latest(device: string, metric: string): number | undefined;
  close(): Promise<void>;
}

export function profile(input: unknown): Profile {
  return profileSchema.parse(input);
}

export function modbusConfig(input: Record<string, unknown>): ModbusSourceConfig {
  return modbusSourceSchema.parse({ id: 'mb', type: 'modbus', ...input });
}

export function modbusRig(
  config: ModbusSourceConfig,
  profiles: Profile[],
  clock: Clock = systemClock,
): ModbusRig {
  const db = openDatabase(':memory:', { synchronous: 'normal' });
  const metrics = new Metrics();
  const bus = new EventBus();
  const log = silentLogger();
  const writer = new ReadingWriter(
    db,
    { batchSize: 1000, flushInterval: 200, maxPending: 1_000_000, storeReadings: true },
    { clock, metrics, log },
  );
  const warn = new RateLimitedLog(log, () => clock.now());
  const ingest = new Ingest({ maxFutureSkew: 300_000 }, { clock, metrics, warn, bus, writer });
  const readings: Reading[] = [];
  bus.on('reading', (r) => readings.push(r));
  const source = new ModbusSource(config, {
    ingest,
    clock,
    metrics,
    log,
    warn,
    profiles: new Map(profiles.map((p) => [p.profile, p])),
  });
  return {
    source,
    ingest,
    metrics,
    readings,
    of: (device, metric) => readings.filter((r) => r.device === device && (!metric || r.metric === metric)),
    latest(device, metric) {
      for (let i = readings.length - 1; i >= 0; i--) {
        const r = readings[i] as Reading;
        if (r.device === device && r.metric === metric) return r.value;
      }
      return undefined;
    },
    async close() {
      await source.stop();
      db.close();
    },
  };
}

export async function counterValue(
  metrics: Metrics,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const metric = metrics.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))
    .reduce((sum, v) => sum + v.value, 0);
}
