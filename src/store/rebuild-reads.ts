import type { Reading } from '../model/reading.js';
import type { Db } from './database.js';

/** What the rebuild after a restart reads from the store (rules/rebuild.ts). */

/** The event time of the newest stored reading; null when none is stored. */
export function newestReadingTs(db: Db): number | null {
  return db.prepare('SELECT max(ts) FROM readings').pluck().get() as number | null;
}

/** A window whose result was stored, with its last revision. */
export interface StoredWindowResult {
  rule: string;
  key: string;
  start: number;
  end: number;
  revision: number;
}

/** Every window with a stored result that ends at `from` or later, with its last revision. */
export function storedResultsEndingFrom(db: Db, from: number): StoredWindowResult[] {
  return db
    .prepare(
      `SELECT rule, key, start, "end", max(revision) AS revision FROM results WHERE "end" >= ?
       GROUP BY rule, key, start, "end"`,
    )
    .all(from) as StoredWindowResult[];
}

/** The stored readings with ts ≥ `from`, in arrival order. */
export function* readingsInArrivalOrder(db: Db, from: number): Generator<Reading> {
  const rows = db
    .prepare(
      `SELECT s.device, s.metric, r.value, r.ts, r.tags FROM readings r JOIN series s ON s.id = r.series_id
       WHERE r.ts >= ? ORDER BY r.seq`,
    )
    .iterate(from) as IterableIterator<{
    device: string;
    metric: string;
    value: number;
    ts: number;
    tags: string | null;
  }>;
  for (const row of rows) {
    const reading: Reading = { device: row.device, metric: row.metric, value: row.value, ts: row.ts };
    if (row.tags) reading.tags = JSON.parse(row.tags) as Record<string, string>;
    yield reading;
  }
}
