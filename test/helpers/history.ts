import type { Reading } from '../../src/model/reading.js';
import { ManualClock } from '../../src/runtime/clock.js';
import { silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { prng } from '../../src/sources/simulator.js';
import { openDatabase } from '../../src/store/database.js';
import { ReadingWriter } from '../../src/store/reading-writer.js';

/** A stored history for backtests and exports: `devices` devices, one `metric` reading each per step. */
export interface HistorySpec {
  devices: number;
  /** Readings in all. */
  readings: number;
  /** The first reading's time (epoch ms). */
  start: number;
  /** Between one device's readings (ms); every device reads at each step. */
  step: number;
  metric?: string;
  /** Another metric, every `otherEvery` steps, that a `temp` rule must ignore. */
  otherEvery?: number;
}

export { prng };

/**
 * The readings of a spec, in time order: a slow sine per device with noise and spikes (so that
 * thresholds fire now and then), and pauses of a few minutes now and then (so that sessions end).
 */
export function* historyReadings(spec: HistorySpec): Generator<Reading> {
  const random = prng(42);
  const metric = spec.metric ?? 'temp';
  const pausedUntil = new Array<number>(spec.devices).fill(0);
  let n = 0;
  for (let step = 0; n < spec.readings; step++) {
    const ts = spec.start + step * spec.step;
    for (let d = 0; d < spec.devices && n < spec.readings; d++) {
      if (ts < (pausedUntil[d] as number)) continue;
      if (random() < 0.0005) pausedUntil[d] = ts + 120_000 + Math.floor(random() * 300_000);
      const spike = random() < 0.01 ? 30 : 0;
      const value = Math.round((50 + 20 * Math.sin(step / 500 + d) + 5 * random() + spike) * 100) / 100;
      const r: Reading = { device: `dev-${String(d).padStart(2, '0')}`, metric, value, ts };
      if (d % 7 === 0) r.unit = '°C';
      if (d % 5 === 0) r.tags = { zone: d % 2 === 0 ? 'north' : 'south, "annex"' };
      yield r;
      n++;
      if (spec.otherEvery && step % spec.otherEvery === 0 && n < spec.readings) {
        yield { device: r.device, metric: 'humidity', value: Math.round(random() * 1000) / 10, ts };
        n++;
      }
    }
  }
}

/**
 * Writes readings into the store file at `path` (created if needed) in the order given, which is
 * their arrival order (seq), committing every 50,000; returns how many were written.
 */
export function writeReadings(
  path: string,
  readings: Iterable<Reading>,
  start: number,
  source = 'history',
): number {
  const db = openDatabase(path, { synchronous: 'off' });
  const writer = new ReadingWriter(
    db,
    {
      batchSize: 50_000,
      flushInterval: 60_000,
      maxPending: 200_000,
      storeReadings: true,
      summaryInterval: 0,
    },
    { clock: new ManualClock(start), metrics: new Metrics(), log: silentLogger() },
  );
  let n = 0;
  for (const r of readings) {
    writer.add(r, source);
    if (++n % 50_000 === 0) writer.flush();
  }
  writer.flush();
  writer.stop();
  db.close();
  return n;
}

/** Writes a spec's history into the store file at `path` (created if needed); returns the readings written. */
export function fillStore(path: string, spec: HistorySpec): number {
  return writeReadings(path, historyReadings(spec), spec.start);
}
