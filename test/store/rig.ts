import type { Reading } from '../../src/model/reading.js';
import { ManualClock } from '../../src/runtime/clock.js';
import { silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { type Db, openDatabase } from '../../src/store/database.js';
import { ReadingWriter, type ReadingWriterOptions } from '../../src/store/reading-writer.js';
import { ReadingsQuery } from '../../src/store/readings-query.js';

export const T0 = Date.parse('2026-11-24T10:00:00.000Z');

/** An in-memory store with a writer and a query on a manual clock. */
export interface StoreRig {
  db: Db;
  clock: ManualClock;
  metrics: Metrics;
  writer: ReadingWriter;
  query: ReadingsQuery;
  close(): void;
}

export function storeRig(options: Partial<ReadingWriterOptions> = {}, db?: Db): StoreRig {
  const database = db ?? openDatabase(':memory:', { synchronous: 'normal' });
  const clock = new ManualClock(T0);
  const metrics = new Metrics();
  const writer = new ReadingWriter(
    database,
    { batchSize: 1000, flushInterval: 200, maxPending: 100_000, storeReadings: true, ...options },
    { clock, metrics, log: silentLogger() },
  );
  return {
    db: database,
    clock,
    metrics,
    writer,
    query: new ReadingsQuery(database),
    close() {
      writer.stop();
      database.close();
    },
  };
}

export function reading(
  device: string,
  metric: string,
  value: number,
  ts: number,
  extra: Partial<Reading> = {},
): Reading {
  return { device, metric, value, ts, ...extra };
}

export function rowCount(db: Db): number {
  return db.prepare('SELECT count(*) FROM readings').pluck().get() as number;
}

export async function metricValue(metrics: Metrics, name: string): Promise<number> {
  const m = metrics.registry.getSingleMetric(name);
  if (!m) throw new Error(`no metric ${name}`);
  const { values } = await m.get();
  return values[0]?.value ?? 0;
}
