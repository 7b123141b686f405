import type { Statement } from 'better-sqlite3';
import { readingToJson } from '../model/reading.js';
import type { Db } from './database.js';
import { ForwardedBuckets } from './forwarded-buckets.js';
import { minuteOf } from './minutes.js';
import { OUTBOX_APPEND_SQL } from './outbox.js';
import { StatementCache } from './statements.js';
import { type BatchSummaries, emptyBatch, type Rollup, Summaries } from './summaries.js';

/**
 * One group commit as the thread that writes receives it: the readings in columns (cheap to post
 * to a worker: a few arrays rather than an object per reading), then the statements the other
 * batch parts (rule outputs, their outbox rows) asked for, run after the readings in the same
 * transaction.
 *
 * A reading names its series by an index into the batch's table of series (device, metric, unit
 * and source, each combination once): the names cross to the worker once per batch rather than
 * once per reading, and the worker looks each series up once per batch.
 */
export interface CommitBatch {
  seriesDevice: string[];
  seriesMetric: string[];
  seriesUnit: (string | null)[];
  seriesSource: string[];
  /** Per reading, in arrival order: its entry in the series table, value, ts, tags, arrival. */
  series: number[];
  value: number[];
  ts: number[];
  /** JSON, or null. */
  tags: (string | null)[];
  arrivedAt: number[];
  /** Distinct SQL texts of the parts' statements; `opSql[i]` indexes it. */
  sql: string[];
  opSql: number[];
  opParams: unknown[][];
  /** The writer's clock when the batch was cut. */
  now: number;
}

export function emptyCommitBatch(): CommitBatch {
  return {
    seriesDevice: [],
    seriesMetric: [],
    seriesUnit: [],
    seriesSource: [],
    series: [],
    value: [],
    ts: [],
    tags: [],
    arrivedAt: [],
    sql: [],
    opSql: [],
    opParams: [],
    now: 0,
  };
}

/** Adds readings to a batch, each series' entry in its table made once (see CommitBatch). */
export class CommitBatchBuilder {
  /**
   * device → metric → its entry in the batch's series table, or its entries when readings of the
   * series came with more than one unit or source (rare). Not posted; bounded by the batch.
   */
  private readonly index = new Map<string, Map<string, number | number[]>>();

  constructor(readonly batch: CommitBatch = emptyCommitBatch()) {
    for (let k = 0; k < batch.seriesDevice.length; k++) this.indexEntry(k);
  }

  /** Readings in the batch. */
  get readings(): number {
    return this.batch.series.length;
  }

  add(
    device: string,
    metric: string,
    value: number,
    ts: number,
    unit: string | null,
    tags: string | null,
    source: string,
    arrivedAt: number,
  ): void {
    const b = this.batch;
    b.series.push(this.entry(device, metric, unit, source));
    b.value.push(value);
    b.ts.push(ts);
    b.tags.push(tags);
    b.arrivedAt.push(arrivedAt);
  }

  /** `later`'s readings after this batch's (a batch that failed, put back before the new ones). */
  append(later: CommitBatch): void {
    for (let i = 0; i < later.series.length; i++) {
      const k = later.series[i] as number;
      this.add(
        later.seriesDevice[k] as string,
        later.seriesMetric[k] as string,
        later.value[i] as number,
        later.ts[i] as number,
        later.seriesUnit[k] ?? null,
        later.tags[i] ?? null,
        later.seriesSource[k] as string,
        later.arrivedAt[i] as number,
      );
    }
  }

  /** The series table's entry for (device, metric, unit, source), made if new. */
  private entry(device: string, metric: string, unit: string | null, source: string): number {
    const b = this.batch;
    const known = this.index.get(device)?.get(metric);
    if (typeof known === 'number') {
      if (b.seriesUnit[known] === unit && b.seriesSource[known] === source) return known;
    } else if (known !== undefined)
      for (let j = 0; j < known.length; j++) {
        const k = known[j] as number;
        if (b.seriesUnit[k] === unit && b.seriesSource[k] === source) return k;
      }
    const k = b.seriesDevice.length;
    b.seriesDevice.push(device);
    b.seriesMetric.push(metric);
    b.seriesUnit.push(unit);
    b.seriesSource.push(source);
    this.indexEntry(k);
    return k;
  }

  private indexEntry(k: number): void {
    const device = this.batch.seriesDevice[k] as string;
    const metric = this.batch.seriesMetric[k] as string;
    let byMetric = this.index.get(device);
    if (byMetric === undefined) {
      byMetric = new Map();
      this.index.set(device, byMetric);
    }
    const known = byMetric.get(metric);
    if (known === undefined) byMetric.set(metric, k);
    else if (typeof known === 'number') byMetric.set(metric, [known, k]);
    else known.push(k);
  }
}

/**
 * Where a batch part puts the statements it wants run in the group commit, after the readings:
 * they run in this order, on the connection that writes (maybe in the writer's worker).
 */
export class StatementSink {
  private readonly index = new Map<string, number>();

  constructor(private readonly batch: CommitBatch) {}

  run(sql: string, ...params: unknown[]): void {
    let i = this.index.get(sql);
    if (i === undefined) {
      i = this.batch.sql.length;
      this.batch.sql.push(sql);
      this.index.set(sql, i);
    }
    this.batch.opSql.push(i);
    this.batch.opParams.push(params);
  }
}

export interface CommitCoreOptions {
  storeReadings: boolean;
  /** Forward raw readings through the outbox: at most one per series per `interval` ms of event time (0: all). */
  forwardReadingsInterval: number | null;
  summaryInterval: number;
  /** Series ids kept in memory before the cache starts again (default MAX_CACHED_SERIES; tests flood a smaller one). */
  maxCachedSeries?: number;
  /** Series whose last forwarded bucket is remembered (default: ForwardedBuckets'; tests flood a smaller one). */
  maxForwardedSeries?: number;
  /** Devices remembered as written (default: Summaries'; tests flood a smaller one). */
  maxDevicesWritten?: number;
}

/** Series ids kept in memory (the series a publisher can invent are unbounded). */
const MAX_CACHED_SERIES = 50_000;

/**
 * The writing half of the store's writer, on the one connection that writes readings: series ids,
 * the readings, their summaries (held back, see Summaries), the raw readings forwarded through the
 * outbox, and the other parts' statements, all in one transaction per batch. It runs in the writer's
 * worker thread (a file store) or in the gateway's thread (`:memory:`, tests): the same code.
 */
export class CommitCore {
  /** device → metric → series id: no key string built per reading. */
  private readonly seriesIds = new Map<string, Map<string, number>>();
  private cachedCount = 0;
  private readonly maxCachedSeries: number;
  private readonly forwardedBucket: ForwardedBuckets;
  private readonly summaries: Summaries;
  private readonly statements: StatementCache;
  /** The newest event time stored since start: summaries of readings near it are held back. */
  private newestTs = Number.NEGATIVE_INFINITY;
  /** The arrival order of stored readings: continues after the largest seq in the store. */
  private seq: number;
  private readonly stmt: {
    insertSeries: Statement;
    selectSeries: Statement;
    insertReading: Statement;
    appendOutbox: Statement;
    maxTs: Statement;
  };

  constructor(
    private readonly db: Db,
    private readonly options: CommitCoreOptions,
    now: number,
  ) {
    this.maxCachedSeries = options.maxCachedSeries ?? MAX_CACHED_SERIES;
    this.forwardedBucket = new ForwardedBuckets(options.maxForwardedSeries);
    this.stmt = {
      insertSeries: db.prepare(
        'INSERT INTO series (device, metric, unit) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
      ),
      selectSeries: db.prepare('SELECT id FROM series WHERE device = ? AND metric = ?').pluck(),
      insertReading: db.prepare(
        'INSERT OR IGNORE INTO readings (ts, series_id, value, seq, tags) VALUES (?, ?, ?, ?, ?)',
      ),
      appendOutbox: db.prepare(OUTBOX_APPEND_SQL),
      maxTs: db.prepare('SELECT id, last_ts AS ts FROM series WHERE device = ? AND metric = ?'),
    };
    this.statements = new StatementCache(db);
    // Before the largest seq is read: after a crash it recomputes the latest values.
    this.summaries = new Summaries(
      db,
      {
        interval: options.summaryInterval,
        holdBack: options.storeReadings,
        maxDevicesWritten: options.maxDevicesWritten,
      },
      now,
    );
    this.seq = db.prepare('SELECT coalesce(max(last_seq), 0) FROM series').pluck().get() as number;
  }

  /** Series ids in memory now, counted in the maps themselves (the flood test's view of the cap). */
  get cachedSeriesIds(): number {
    let n = 0;
    for (const byMetric of this.seriesIds.values()) n += byMetric.size;
    return n;
  }

  /** Series whose last forwarded bucket is remembered (the flood test's view of its cap). */
  get forwardedSeries(): number {
    return this.forwardedBucket.size;
  }

  /** Devices the summaries remember as written (the flood test's view of their cap). */
  get devicesWritten(): number {
    return this.summaries.devicesRemembered;
  }

  /**
   * Writes the batch in one transaction; returns how many new raw readings were stored. On an error
   * nothing of it is written, and what this keeps in memory is as before (then it throws).
   */
  commit(batch: CommitBatch): number {
    const summary: BatchSummaries = emptyBatch();
    let stored = 0;
    let seq = this.seq;
    let newest = this.newestTs;
    const forwardInterval = this.options.forwardReadingsInterval;
    try {
      this.db
        .transaction(() => {
          // Each series of the batch is looked up (or made) once, in the order readings met them.
          const ids: number[] = [];
          for (let k = 0; k < batch.seriesDevice.length; k++)
            ids.push(
              this.seriesId(
                batch.seriesDevice[k] as string,
                batch.seriesMetric[k] as string,
                batch.seriesUnit[k] ?? null,
              ),
            );
          const n = batch.series.length;
          for (let i = 0; i < n; i++) {
            const k = batch.series[i] as number;
            const device = batch.seriesDevice[k] as string;
            const value = batch.value[i] as number;
            const ts = batch.ts[i] as number;
            const unit = batch.seriesUnit[k] ?? null;
            const arrivedAt = batch.arrivedAt[i] as number;
            const id = ids[k] as number;
            let isNew = true;
            if (this.options.storeReadings) {
              isNew =
                this.stmt.insertReading.run(ts, id, value, seq + 1, batch.tags[i] ?? null).changes === 1;
              if (isNew) {
                seq++;
                stored++;
                if (ts > newest) newest = ts;
                addToRollup(summary.rollups, id, ts, value);
              }
            }
            // The batch's own entries are updated in place: no object per reading.
            const heard = summary.devices.get(device);
            const source = batch.seriesSource[k] as string;
            if (heard === undefined) summary.devices.set(device, { source, at: arrivedAt });
            else {
              heard.source = source;
              heard.at = arrivedAt;
            }
            // A duplicate changes nothing but the device's last_seen.
            if (!isNew) continue;
            if (forwardInterval !== null) this.forward(id, batch, i, forwardInterval);
            const l = summary.latest.get(id);
            if (l === undefined) summary.latest.set(id, { ts, value, unit, seq });
            else if (l.ts <= ts) {
              l.ts = ts;
              l.value = value;
              l.unit = unit;
              l.seq = seq;
            } else l.seq = seq;
          }
          // Near the newest reading, and never ahead of the clock (a device whose clock runs ahead).
          this.summaries.write(summary, batch.now, Math.min(batch.now, newest));
          for (let i = 0; i < batch.opSql.length; i++) {
            this.statements
              .get(batch.sql[batch.opSql[i] as number] as string)
              .run(...(batch.opParams[i] ?? []));
          }
        })
        .immediate();
    } catch (err) {
      // The series cache may name rows the rollback removed.
      this.seriesIds.clear();
      this.cachedCount = 0;
      this.forwardedBucket.rolledBack();
      this.summaries.rolledBack();
      throw err;
    }
    this.seq = seq;
    this.newestTs = newest;
    this.forwardedBucket.committed();
    this.summaries.committed();
    return stored;
  }

  /** Something is held back and its interval has passed. */
  summariesDue(now: number): boolean {
    return this.summaries.due(now);
  }

  /** Writes the summaries held back, in a transaction of its own. */
  syncSummaries(now: number): void {
    this.summaries.sync(now);
  }

  /** The newest ts committed for a series (kept even without raw readings, held back or written), or null. */
  storedMaxTs(device: string, metric: string): number | null {
    const row = this.stmt.maxTs.get(device, metric) as { id: number; ts: number | null } | undefined;
    if (row === undefined) return null;
    const held = this.summaries.heldTs(row.id);
    return held !== undefined && (row.ts === null || held > row.ts) ? held : row.ts;
  }

  private forward(seriesId: number, batch: CommitBatch, i: number, interval: number): void {
    const ts = batch.ts[i] as number;
    if (interval > 0 && !this.forwardedBucket.take(seriesId, Math.floor(ts / interval))) return;
    const tags = batch.tags[i];
    const k = batch.series[i] as number;
    const body = readingToJson({
      device: batch.seriesDevice[k] as string,
      metric: batch.seriesMetric[k] as string,
      value: batch.value[i] as number,
      ts,
      unit: batch.seriesUnit[k],
      tags: tags == null ? null : (JSON.parse(tags) as Record<string, string>),
    });
    this.stmt.appendOutbox.run('reading', null, JSON.stringify(body), batch.arrivedAt[i]);
  }

  private seriesId(device: string, metric: string, unit: string | null): number {
    let byMetric = this.seriesIds.get(device);
    let id = byMetric?.get(metric);
    if (id !== undefined) return id;
    id = this.stmt.selectSeries.get(device, metric) as number | undefined;
    if (id === undefined) {
      const inserted = this.stmt.insertSeries.run(device, metric, unit);
      id =
        inserted.changes === 1
          ? Number(inserted.lastInsertRowid)
          : (this.stmt.selectSeries.get(device, metric) as number);
    }
    // A cache, not the truth: past its cap it starts again, and misses are looked up in the store.
    if (this.cachedCount >= this.maxCachedSeries) {
      this.seriesIds.clear();
      this.cachedCount = 0;
      byMetric = undefined;
    }
    if (byMetric === undefined) {
      byMetric = new Map();
      this.seriesIds.set(device, byMetric);
    }
    byMetric.set(metric, id);
    this.cachedCount++;
    return id;
  }
}

function addToRollup(
  rollups: Map<number, Map<number, Rollup>>,
  seriesId: number,
  ts: number,
  value: number,
): void {
  const minute = minuteOf(ts);
  let bySeries = rollups.get(minute);
  if (bySeries === undefined) {
    bySeries = new Map();
    rollups.set(minute, bySeries);
  }
  const agg = bySeries.get(seriesId);
  if (agg === undefined) bySeries.set(seriesId, { count: 1, sum: value, min: value, max: value });
  else {
    agg.count++;
    agg.sum += value;
    if (value < agg.min) agg.min = value;
    if (value > agg.max) agg.max = value;
  }
}
