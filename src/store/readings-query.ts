import type { Statement } from 'better-sqlite3';
import type { Db } from './database.js';
import { StatementCache, trimPage } from './statements.js';

export interface StoredReading {
  device: string;
  metric: string;
  value: number;
  ts: number;
  unit: string | null;
  tags: Record<string, string> | null;
}

export interface ReadingsFilter {
  devices?: string[];
  metrics?: string[];
  /** Inclusive, epoch ms. */
  from?: number;
  /** Exclusive, epoch ms. */
  to?: number;
  order: 'asc' | 'desc';
  limit: number;
  /** Continue after this position (from a previous page). */
  after?: ReadingsCursor;
}

/** A position in (ts, arrival) order: pages never skip or repeat a row, even with equal ts. */
export interface ReadingsCursor {
  ts: number;
  id: number;
}

export interface ReadingsPage {
  items: StoredReading[];
  next: ReadingsCursor | null;
}

export type DownsampleAgg = 'avg' | 'min' | 'max' | 'sum' | 'count' | 'first' | 'last';

export interface DownsampleFilter extends Omit<ReadingsFilter, 'after'> {
  /** Bucket width in ms; buckets are aligned to the Unix epoch. */
  step: number;
  agg: DownsampleAgg;
  /** Continue after this (bucket, series) position. */
  after?: { bucket: number; series: number };
}

export interface DownsampledPoint {
  device: string;
  metric: string;
  unit: string | null;
  /** Bucket start, epoch ms. */
  ts: number;
  value: number;
  count: number;
}

/** The SQL of each aggregate over a bucket; first/last use SQLite's bare column of min()/max(). */
const AGG_SQL: Record<DownsampleAgg, string> = {
  avg: 'avg(r.value) AS value',
  min: 'min(r.value) AS value',
  max: 'max(r.value) AS value',
  sum: 'sum(r.value) AS value',
  count: 'count(*) AS value',
  first: 'r.value AS value, min(r.ts) AS pick',
  last: 'r.value AS value, max(r.ts) AS pick',
};

export interface SeriesLatest {
  device: string;
  metric: string;
  value: number;
  ts: number;
  unit: string | null;
}

export interface DeviceRow {
  id: string;
  source: string;
  firstSeen: number;
  lastSeen: number;
  metrics: SeriesLatest[];
}

interface ReadingRow {
  id: number;
  device: string;
  metric: string;
  unit: string | null;
  ts: number;
  value: number;
  tags: string | null;
}

/** The WHERE fragments (and their parameters) of the device, metric and time filters. */
function seriesAndTime(filter: Pick<ReadingsFilter, 'devices' | 'metrics' | 'from' | 'to'>): {
  where: string[];
  params: (string | number)[];
} {
  const where: string[] = [];
  const params: (string | number)[] = [];
  if (filter.devices?.length) {
    where.push(`s.device IN (${filter.devices.map(() => '?').join(',')})`);
    params.push(...filter.devices);
  }
  if (filter.metrics?.length) {
    where.push(`s.metric IN (${filter.metrics.map(() => '?').join(',')})`);
    params.push(...filter.metrics);
  }
  if (filter.from !== undefined) {
    where.push('r.ts >= ?');
    params.push(filter.from);
  }
  if (filter.to !== undefined) {
    where.push('r.ts < ?');
    params.push(filter.to);
  }
  return { where, params };
}

/**
 * Read-side queries of raw readings and devices. SQL is assembled only from fixed fragments;
 * every value is a bound parameter. Statements are cached by their shape.
 */
export class ReadingsQuery {
  private readonly statements: StatementCache;
  private readonly latestAll: Statement;
  private readonly latestDevice: Statement;
  private readonly devicesAll: Statement;
  private readonly deviceOne: Statement;

  constructor(db: Db) {
    this.statements = new StatementCache(db);
    const latest = `SELECT device, metric, last_value AS value, last_ts AS ts, unit FROM series WHERE last_ts IS NOT NULL`;
    this.latestAll = db.prepare(`${latest} ORDER BY device, metric`);
    this.latestDevice = db.prepare(`${latest} AND device = ? ORDER BY metric`);
    this.devicesAll = db.prepare(
      'SELECT id, source, first_seen AS firstSeen, last_seen AS lastSeen FROM devices ORDER BY id',
    );
    this.deviceOne = db.prepare(
      'SELECT id, source, first_seen AS firstSeen, last_seen AS lastSeen FROM devices WHERE id = ?',
    );
  }

  readings(filter: ReadingsFilter): ReadingsPage {
    const { where, params } = seriesAndTime(filter);
    const cmp = filter.order === 'asc' ? '>' : '<';
    if (filter.after) {
      where.push(`(r.ts, r.id) ${cmp} (?, ?)`);
      params.push(filter.after.ts, filter.after.id);
    }
    const dir = filter.order === 'asc' ? 'ASC' : 'DESC';
    const sql =
      'SELECT r.id, s.device, s.metric, s.unit, r.ts, r.value, r.tags FROM readings r JOIN series s ON s.id = r.series_id' +
      (where.length ? ` WHERE ${where.join(' AND ')}` : '') +
      ` ORDER BY r.ts ${dir}, r.id ${dir} LIMIT ?`;
    params.push(filter.limit + 1);
    const rows = this.statements.get(sql).all(...params) as ReadingRow[];
    const last = trimPage(rows, filter.limit);
    return {
      items: rows.map((r) => ({
        device: r.device,
        metric: r.metric,
        value: r.value,
        ts: r.ts,
        unit: r.unit,
        tags: r.tags ? (JSON.parse(r.tags) as Record<string, string>) : null,
      })),
      next: last ? { ts: last.ts, id: last.id } : null,
    };
  }

  /**
   * Readings aggregated per (series, bucket of `step` ms), computed in SQLite: a day of one metric at
   * 1 reading/s becomes 1,440 one-minute points in one indexed range scan.
   */
  downsample(filter: DownsampleFilter): {
    items: DownsampledPoint[];
    next: { bucket: number; series: number } | null;
  } {
    const filtered = seriesAndTime(filter);
    const where = filtered.where;
    // The bucket expression's three placeholders come first in the statement.
    const params: (string | number)[] = [filter.step, filter.step, filter.step, ...filtered.params];
    const dir = filter.order === 'asc' ? 'ASC' : 'DESC';
    const outer: string[] = [];
    if (filter.after) {
      outer.push(`(bucket, series) ${filter.order === 'asc' ? '>' : '<'} (?, ?)`);
      params.push(filter.after.bucket, filter.after.series);
    }
    // Floor division, so buckets stay aligned to the epoch for negative times too.
    const sql =
      `SELECT * FROM (SELECT r.series_id AS series, s.device, s.metric, s.unit,
         r.ts - (((r.ts % ?) + ?) % ?) AS bucket, ${AGG_SQL[filter.agg]}, count(*) AS n
       FROM readings r JOIN series s ON s.id = r.series_id` +
      (where.length ? ` WHERE ${where.join(' AND ')}` : '') +
      ' GROUP BY r.series_id, bucket)' +
      (outer.length ? ` WHERE ${outer.join(' AND ')}` : '') +
      ` ORDER BY bucket ${dir}, series ${dir} LIMIT ?`;
    params.push(filter.limit + 1);
    const rows = this.statements.get(sql).all(...params) as {
      series: number;
      device: string;
      metric: string;
      unit: string | null;
      bucket: number;
      value: number;
      n: number;
    }[];
    const last = trimPage(rows, filter.limit);
    return {
      items: rows.map((r) => ({
        device: r.device,
        metric: r.metric,
        unit: r.unit,
        ts: r.bucket,
        value: r.value,
        count: r.n,
      })),
      next: last ? { bucket: last.bucket, series: last.series } : null,
    };
  }

  latest(device?: string): SeriesLatest[] {
    return (device === undefined ? this.latestAll.all() : this.latestDevice.all(device)) as SeriesLatest[];
  }

  devices(): DeviceRow[] {
    const byDevice = new Map<string, SeriesLatest[]>();
    for (const s of this.latest()) {
      const list = byDevice.get(s.device);
      if (list) list.push(s);
      else byDevice.set(s.device, [s]);
    }
    return (this.devicesAll.all() as Omit<DeviceRow, 'metrics'>[]).map((d) => ({
      ...d,
      metrics: byDevice.get(d.id) ?? [],
    }));
  }

  device(id: string): DeviceRow | null {
    const row = this.deviceOne.get(id) as Omit<DeviceRow, 'metrics'> | undefined;
    return row ? { ...row, metrics: this.latest(id) } : null;
  }
}
