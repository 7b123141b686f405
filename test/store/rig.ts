import assert from 'node:assert/strict';
import type { Reading } from '../../src/model/reading.js';
import { ManualClock } from '../../src/runtime/clock.js';
import { silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { CommitBatchBuilder, type CommitCore } from '../../src/store/commit-core.js';
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

/** Watches a map's size across a flood: the most it reached and how often it fell (started over). */
export class SizeWatch {
  most = 0;
  drops = 0;
  private previous = 0;

  see(size: number): void {
    this.most = Math.max(this.most, size);
    if (size < this.previous) this.drops++;
    this.previous = size;
  }
}

/**
 * Commits one reading per series through `core`, in `order`, in batches of `size` (value: the
 * series' index in `series`; source 'flood'), calling `after` after each commit.
 */
export function commitEach(
  core: CommitCore,
  series: readonly { device: string; metric: string }[],
  order: readonly number[],
  ts: number,
  size: number,
  after: () => void,
): void {
  for (let start = 0; start < order.length; start += size) {
    const builder = new CommitBatchBuilder();
    for (const i of order.slice(start, start + size)) {
      const s = series[i] as { device: string; metric: string };
      builder.add(s.device, s.metric, i, ts, null, null, 'flood', ts);
    }
    const batch = builder.batch;
    batch.now = ts;
    assert.equal(core.commit(batch), Math.min(size, order.length - start));
    after();
  }
}

/**
 * Client-chosen series, two readings each (the second pass backwards: a series comes back long after
 * a cache forgot it), `perMs` readings per ms of event time from T0: a unit on two of three series,
 * tags on every fifth reading.
 */
export function floodReadings(n: number, perMs = 1): Reading[] {
  const series = Array.from({ length: n }, (_, i) => ({
    device: `dev-${i % 97}`,
    metric: `m-${Math.floor(i / 97)}`,
    ...(i % 3 === 0 ? {} : { unit: `u-${i % 3}` }),
  }));
  const order = [...series.keys(), ...[...series.keys()].reverse()];
  return order.map((i, k) => {
    const s = series[i] as (typeof series)[number];
    const extra: Partial<Reading> = s.unit === undefined ? {} : { unit: s.unit };
    if (k % 5 === 0) extra.tags = { k: String(k) };
    return reading(s.device, s.metric, k, T0 + Math.floor(k / perMs), extra);
  });
}

/** n series over 1,000 devices, for the floods past a default cap. */
export function manySeries(n: number): { device: string; metric: string }[] {
  return Array.from({ length: n }, (_, i) => ({
    device: `dev-${i % 1000}`,
    metric: `m-${Math.floor(i / 1000)}`,
  }));
}
