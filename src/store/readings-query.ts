import type { Statement } from 'better-sqlite3';
import type { Db } from './database.js';
import { MINUTE, minuteOf } from './minutes.js';
import { type SeriesTimeFilter, seriesAndTime, seriesFilter } from './reading-filters.js';
import { type HistoryFilter, ReadingHistory } from './reading-history.js';
import { StatementCache, trimPage } from './statements.js';

export interface StoredReading {
  device: string;
  metric: string;
  value: number;
  ts: number;
  unit: string | null;
  tags: Record<string, string> | null;
}

export interface ReadingsFilter extends SeriesTimeFilter {
  order: 'asc' | 'desc';
  limit: number;
  /** Continue after this position (from a previous page). */
  after?: ReadingsCursor;
}

/** A position in (ts, arrival) order: pages never skip or repeat a row, even with equal ts. */
export interface ReadingsCursor {
  ts: number;
  seq: number;
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

/** The SQL of each aggregate over a bucket of raw readings; first/last use SQLite's bare column of min()/max(). */
const AGG_SQL: Record<DownsampleAgg, string> = {
  avg: 'avg(r.value) AS value',
  min: 'min(r.value) AS value',
  max: 'max(r.value) AS value',
  sum: 'sum(r.value) AS value',
  count: 'count(*) AS value',
  first: 'r.value AS value, min(r.ts) AS pick',
  last: 'r.value AS value, max(r.ts) AS pick',
};

/**
 * The aggregates that per-minute rollups (`readings_1m`) can answer, over rows (n, total, low, high) that
 * are either a rollup or one raw reading (1, value, value, value).
 */
const ROLLUP_SQL: Partial<Record<DownsampleAgg, string>> = {
  avg: 'sum(total) / sum(n) AS value',
  min: 'min(low) AS value',
  max: 'max(high) AS value',
  sum: 'sum(total) AS value',
  count: 'sum(n) AS value',
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
  seq: number;
  device: string;
  metric: string;
  unit: string | null;
  ts: number;
  value: number;
  tags: string | null;
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

  /**
   * `beforeSummaries` runs before a query that reads the summaries (rollups, latest values,
   * devices): the writer writes those it holds back (ReadingWriter.syncSummaries).
   */
  constructor(
    private readonly db: Db,
    private readonly beforeSummaries: () => void = () => {},
  ) {
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

  /** Every matching reading in (ts, arrival) order, read chunk by chunk (the export). */
  history(filter: HistoryFilter, chunkSize?: number): ReadingHistory {
    return new ReadingHistory(this.db, filter, chunkSize);
  }

  readings(filter: ReadingsFilter): ReadingsPage {
    const asc = filter.order === 'asc';
    const cmp = asc ? '>' : '<';
    const after = filter.after;
    // With a cursor, one bound on ts where the scan starts: the cursor's, or the range's if that is
    // tighter. Given both, SQLite may start at the range's and skip its way to the cursor, every page.
    const { where, params } = seriesAndTime(
      after ? { ...filter, ...(asc ? { from: undefined } : { to: undefined }) } : filter,
    );
    if (after) {
      const edge = asc ? filter.from : filter.to;
      const start =
        edge === undefined ? after.ts : asc ? Math.max(edge, after.ts) : Math.min(edge - 1, after.ts);
      where.push(`r.ts ${cmp}= ?`, `(r.ts, r.seq) ${cmp} (?, ?)`);
      params.push(start, after.ts, after.seq);
    }
    const dir = filter.order === 'asc' ? 'ASC' : 'DESC';
    const sql =
      'SELECT r.seq, s.device, s.metric, s.unit, r.ts, r.value, r.tags FROM readings r JOIN series s ON s.id = r.series_id' +
      (where.length ? ` WHERE ${where.join(' AND ')}` : '') +
      ` ORDER BY r.ts ${dir}, r.seq ${dir} LIMIT ?`;
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
      next: last ? { ts: last.ts, seq: last.seq } : null,
    };
  }

  /**
   * Readings aggregated per (series, bucket of `step` ms), computed in SQLite. With whole-minute
   * steps and avg/min/max/sum/count, whole minutes come from the per-minute rollups and only the
   * partial minutes at the ends of the range from raw readings: a day of one metric becomes 1,440
   * one-minute points however many other series the store holds. first/last and other steps
   * aggregate the raw readings in the range.
   */
  downsample(
    filter: DownsampleFilter,
    /** How the rollups are read; rollupAccess() chooses (given only by tests and benchmarks). */
    access?: 'scan' | 'seek',
  ): {
    items: DownsampledPoint[];
    next: { bucket: number; series: number } | null;
  } {
    const rollup = ROLLUP_SQL[filter.agg];
    const useRollups = rollup !== undefined && filter.step % MINUTE === 0;
    if (useRollups) this.beforeSummaries();
    const inner = useRollups
      ? fromRollups(filter, access ?? this.rollupAccess(filter))
      : fromReadings(filter);
    // The bucket expression's three placeholders come first in the statement.
    const params: (string | number)[] = [filter.step, filter.step, filter.step, ...inner.params];
    const dir = filter.order === 'asc' ? 'ASC' : 'DESC';
    const outer: string[] = [];
    if (filter.after) {
      outer.push(`(bucket, series) ${filter.order === 'asc' ? '>' : '<'} (?, ?)`);
      params.push(filter.after.bucket, filter.after.series);
    }
    const sql =
      `SELECT * FROM (SELECT u.series, s.device, s.metric, s.unit, u.bucket, ${inner.agg}, ${inner.count} AS n
       FROM (SELECT series, ts - (((ts % ?) + ?) % ?) AS bucket, ${inner.columns} FROM (${inner.sql})) u
       JOIN series s ON s.id = u.series GROUP BY u.series, u.bucket)` +
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

  /**
   * How the rollups of a bounded range are read. Their key is (minute, series), so a range is one
   * stretch of the table holding every series: scanning it costs minutes × all series. For a few
   * series of many, looking each (minute, series) up costs minutes × those series instead, at
   * about SEEK_COST scanned rows each: a 7-day chart of one series of 100 takes 52–61 ms by the
   * scan, 16–18 ms so (bench:api). An index by series would do it too, but would write a page per series
   * each minute (SD-card wear).
   */
  rollupAccess(filter: DownsampleFilter): 'scan' | 'seek' {
    if (filter.from === undefined || filter.to === undefined) return 'scan';
    const series = seriesFilter(filter, 'id');
    if (!series) return 'scan';
    const wanted = this.statements
      .get(`SELECT count(*) AS n FROM series WHERE ${series.where}`)
      .get(...series.params) as { n: number };
    const all = this.statements.get('SELECT count(*) AS n FROM series').get() as { n: number };
    return wanted.n * SEEK_COST < all.n ? 'seek' : 'scan';
  }

  latest(device?: string): SeriesLatest[] {
    this.beforeSummaries();
    return (device === undefined ? this.latestAll.all() : this.latestDevice.all(device)) as SeriesLatest[];
  }

  /** Every device without its latest values: what counting, filtering and paging devices need. */
  deviceList(): Omit<DeviceRow, 'metrics'>[] {
    this.beforeSummaries();
    return this.devicesAll.all() as Omit<DeviceRow, 'metrics'>[];
  }

  devices(): DeviceRow[] {
    this.beforeSummaries();
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
    this.beforeSummaries();
    const row = this.deviceOne.get(id) as Omit<DeviceRow, 'metrics'> | undefined;
    return row ? { ...row, metrics: this.latest(id) } : null;
  }
}

/** The rows a downsample aggregates: `sql` yields (series, ts, …columns); `agg` and `count` fold them per bucket. */
interface DownsampleSource {
  sql: string;
  params: (string | number)[];
  columns: string;
  agg: string;
  count: string;
}

/**
 * A rollup looked up by its key costs about this many scanned ones (measured over 7 days of
 * minutes: 10× with 10 series in the table, 40× with 100, where the tree is deeper; 10 keeps the
 * scan wherever the two were close).
 */
const SEEK_COST = 10;

/** Every raw reading in the range. Floor division keeps buckets aligned to the epoch for negative times too. */
function fromReadings(filter: DownsampleFilter): DownsampleSource {
  const { where, params } = seriesAndTime(filter);
  return {
    sql:
      'SELECT r.series_id AS series, r.ts, r.value FROM readings r' +
      (where.length ? ` WHERE ${where.join(' AND ')}` : ''),
    params,
    columns: 'ts, value',
    agg: AGG_SQL[filter.agg].replaceAll('r.', ''),
    count: 'count(*)',
  };
}

/**
 * The rollups of the whole minutes in the range, plus the raw readings of the partial minutes at
 * its ends, each as (n, total, low, high). Exact: a bucket of whole minutes holds exactly their rollups.
 */
function fromRollups(filter: DownsampleFilter, access: 'scan' | 'seek'): DownsampleSource {
  const series = seriesFilter(filter, 'series_id');
  const and = series ? ` AND ${series.where}` : '';
  const sp = series?.params ?? [];
  const parts: string[] = [];
  const params: (string | number)[] = [];
  // Whole minutes: [first, end) where first is the first minute starting at or after `from`.
  const first = filter.from === undefined ? undefined : minuteOf(filter.from + MINUTE - 1);
  const end = filter.to === undefined ? undefined : minuteOf(filter.to);
  if (access === 'seek' && first !== undefined && end !== undefined && series) {
    // Every minute of the range, crossed with the wanted series, each looked up by the key.
    const wanted = seriesFilter(filter, 'id') as NonNullable<typeof series>;
    parts.push(
      `SELECT r.series_id AS series, r.minute AS ts, r.count AS n, r.sum AS total, r.min AS low, r.max AS high
       FROM (WITH RECURSIVE m(minute) AS (SELECT ? WHERE ? < ? UNION ALL SELECT minute + ${MINUTE} FROM m WHERE minute + ${MINUTE} < ?)
         SELECT minute FROM m) mm
       CROSS JOIN (SELECT id FROM series WHERE ${wanted.where}) s
       JOIN readings_1m r ON r.minute = mm.minute AND r.series_id = s.id`,
    );
    params.push(first, first, end, end, ...wanted.params);
  } else {
    const minutes: string[] = [];
    if (first !== undefined) minutes.push('minute >= ?');
    if (end !== undefined) minutes.push('minute < ?');
    parts.push(
      'SELECT series_id AS series, minute AS ts, count AS n, sum AS total, min AS low, max AS high FROM readings_1m' +
        ` WHERE 1${minutes.map((m) => ` AND ${m}`).join('')}${and}`,
    );
    if (first !== undefined) params.push(first);
    if (end !== undefined) params.push(end);
    params.push(...sp);
  }
  const raw = (lo: number, hi: number) => {
    parts.push(
      `SELECT series_id AS series, ts, 1 AS n, value AS total, value AS low, value AS high FROM readings WHERE ts >= ? AND ts < ?${and}`,
    );
    params.push(lo, hi, ...sp);
  };
  // The partial minutes at the ends, from raw readings (when the range does not start or end on a minute).
  if (filter.from !== undefined && first !== undefined && filter.from < first)
    raw(filter.from, end === undefined ? first : Math.min(first, filter.to as number));
  if (
    filter.to !== undefined &&
    end !== undefined &&
    end < filter.to &&
    (first === undefined || end >= first)
  )
    raw(end, filter.to);
  return {
    sql: parts.join(' UNION ALL '),
    params,
    columns: 'n, total, low, high',
    agg: ROLLUP_SQL[filter.agg] as string,
    count: 'sum(n)',
  };
}
