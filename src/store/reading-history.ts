import type { Statement } from 'better-sqlite3';
import type { Reading } from '../model/reading.js';
import type { Db } from './database.js';
import { type SeriesTimeFilter, seriesAndTime, seriesFilter } from './reading-filters.js';

/** Which stored readings a history holds: the filters of `/readings`, without order or paging. */
export type HistoryFilter = SeriesTimeFilter;

/**
 * The filter without its device and metric part when that part matches every series the store
 * has: testing each reading against the series set then costs a fifth of the read and keeps none
 * out. Only for readers that test each reading themselves (a backtest's engine ignores readings
 * its rules do not match): a series created meanwhile is not kept out either.
 */
export function withoutIdleSeriesFilter(db: Db, filter: HistoryFilter): HistoryFilter {
  if (!filter.devices?.length && !filter.metrics?.length) return filter;
  const series = seriesFilter(filter, 'id');
  if (series === null) return filter;
  const all = db.prepare('SELECT count(*) FROM series').pluck().get() as number;
  const kept = db
    .prepare(`SELECT count(*) FROM series WHERE ${series.where}`)
    .pluck()
    .get(...series.params) as number;
  if (kept < all) return filter;
  const { devices: _d, metrics: _m, ...rest } = filter;
  return rest;
}

/** A row as read: ts, seq, series id, value, tags JSON. */
type Row = [number, number, number, number, string | null];

/**
 * A chunk of readings as columns: `ts`, `value` and `series` (ids) of `n` readings; the tags JSON
 * of those that have tags, by index; and [id, device, metric, unit] of the series named for the first time.
 */
export interface PackedReadings {
  n: number;
  ts: Float64Array;
  value: Float64Array;
  series: Int32Array;
  tags: [number, string][];
  names: [number, string, string, string | null][];
  /**
   * The receiver forgets every name it was sent before this chunk's: the sender's memory of the
   * series it named starts over here (in its history's first chunk, and when that memory is full).
   * Every series of the chunk is named in the chunk or, without `restart`, in an earlier chunk of
   * the same history.
   */
  restart: boolean;
}

function packed(n: number, restart = false): PackedReadings {
  return {
    n,
    ts: new Float64Array(n),
    value: new Float64Array(n),
    series: new Int32Array(n),
    tags: [],
    names: [],
    restart,
  };
}

/** Series ids remembered before the cache starts over (a store may hold many series). */
const MAX_SERIES_CACHED = 100_000;

/**
 * Series remembered as named before packed chunks start over (and their receiver with them: it
 * holds the names of as many series).
 */
const MAX_SERIES_NAMED = 100_000;

interface SeriesNames {
  device: string;
  metric: string;
  unit: string | undefined;
}

/**
 * Every stored reading that matches a filter, in (ts, arrival) order — the order of `/readings` and
 * `/readings/export` — read in chunks by keyset: each chunk is its own short query, so no read
 * transaction stays open between chunks (a WAL checkpoint is never held back for long) and memory
 * holds one chunk whatever the range. Readings stored meanwhile after the position are included.
 * Used by the export (on the gateway's connection) and by backtests (on a connection of their own).
 */
export class ReadingHistory {
  private readonly first: Statement;
  private readonly rest: Statement;
  private readonly countStatement: Statement;
  private readonly seriesStatement: Statement;
  private readonly params: (string | number)[];
  private readonly restParams: (string | number)[];
  private readonly series = new Map<number, SeriesNames>();
  private after: { ts: number; seq: number } | null = null;
  private done = false;
  /** A chunk and the names of its series are read in one snapshot (retention may delete both meanwhile). */
  private readonly readChunk: () => Reading[];
  private readonly readPacked: () => PackedReadings;
  /** Series whose names a packed chunk has carried already (since the last `restart`). */
  private readonly named = new Set<number>();

  constructor(
    db: Db,
    filter: HistoryFilter,
    private readonly chunkSize = 4096,
    /** Series names cached before the cache starts over (tests flood a smaller one). */
    private readonly maxCachedSeries = MAX_SERIES_CACHED,
    /**
     * Series remembered as named before packed chunks start over (tests flood a smaller one); a
     * chunk's series are named together, so below the chunk size it is one chunk's series.
     */
    private readonly maxNamedSeries = MAX_SERIES_NAMED,
  ) {
    const { where, params } = seriesAndTime(filter);
    this.params = params;
    // After the first chunk, the position is the range's lower bound: one bound on ts, so that
    // SQLite starts the scan there (given two, it may start at `from` and skip its way up, every chunk).
    const rest = seriesAndTime({ ...filter, from: undefined });
    this.restParams = rest.params;
    const base = 'SELECT r.ts, r.seq, r.series_id, r.value, r.tags FROM readings r';
    const order = ' ORDER BY r.ts, r.seq LIMIT ?';
    const clause = (all: string[]) => (all.length ? ` WHERE ${all.join(' AND ')}` : '');
    this.first = db.prepare(`${base}${clause(where)}${order}`).raw(true);
    this.rest = db
      .prepare(`${base}${clause([...rest.where, 'r.ts >= ?', '(r.ts, r.seq) > (?, ?)'])}${order}`)
      .raw(true);
    this.countStatement = db.prepare(
      `SELECT count(*) AS count, min(r.ts) AS first, max(r.ts) AS last FROM readings r${clause(where)}`,
    );
    this.seriesStatement = db.prepare('SELECT device, metric, unit FROM series WHERE id = ?');
    this.readChunk = db.transaction(() => this.read());
    this.readPacked = db.transaction(() => this.pack());
  }

  /**
   * How many readings match now, and the first and last ts among them (null when none): a full
   * count of the range, so call it once, off the event loop if large.
   */
  span(): { count: number; first: number | null; last: number | null } {
    return this.countStatement.get(...this.params) as {
      count: number;
      first: number | null;
      last: number | null;
    };
  }

  /** Series names cached now (the flood test's view of the cap). */
  get cachedSeries(): number {
    return this.series.size;
  }

  /** Series remembered as named by packed chunks now (the flood test's view of the cap). */
  get namedSeries(): number {
    return this.named.size;
  }

  /** True once the last chunk was read. */
  get exhausted(): boolean {
    return this.done;
  }

  /** The next chunk, in order; empty once every reading was read. */
  next(): Reading[] {
    return this.done ? [] : this.readChunk();
  }

  /**
   * The next chunk as columns, for another thread (the buffers can be transferred): each series'
   * names travel once, with the first chunk that holds it (once again after a chunk that says
   * `restart`, every maxNamedSeries series or so). Empty (n = 0) once every reading was read.
   */
  nextPacked(): PackedReadings {
    return this.done ? packed(0) : this.readPacked();
  }

  private rows(): Row[] {
    const rows = (
      this.after === null
        ? this.first.all(...this.params, this.chunkSize)
        : this.rest.all(...this.restParams, this.after.ts, this.after.ts, this.after.seq, this.chunkSize)
    ) as Row[];
    if (rows.length < this.chunkSize) this.done = true;
    const last = rows.at(-1);
    if (last) this.after = { ts: last[0], seq: last[1] };
    return rows;
  }

  private pack(): PackedReadings {
    const rows = this.rows();
    // Starts over before the chunk, never within it: the receiver forgets before it reads the
    // chunk, so the series the chunk holds are then all named in it.
    const restart = this.named.size === 0 || this.named.size + rows.length > this.maxNamedSeries;
    if (restart) this.named.clear();
    const out = packed(rows.length, restart);
    for (let i = 0; i < rows.length; i++) {
      const [ts, , seriesId, value, tags] = rows[i] as Row;
      out.ts[i] = ts;
      out.value[i] = value;
      out.series[i] = seriesId;
      if (tags !== null) out.tags.push([i, tags]);
      if (!this.named.has(seriesId)) {
        const s = this.names(seriesId);
        out.names.push([seriesId, s.device, s.metric, s.unit ?? null]);
        this.named.add(seriesId);
      }
    }
    return out;
  }

  private read(): Reading[] {
    const rows = this.rows();
    const out: Reading[] = new Array(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const [ts, , seriesId, value, tags] = rows[i] as Row;
      const s = this.names(seriesId);
      const r: Reading = { device: s.device, metric: s.metric, value, ts };
      if (s.unit !== undefined) r.unit = s.unit;
      if (tags !== null) r.tags = JSON.parse(tags) as Record<string, string>;
      out[i] = r;
    }
    return out;
  }

  private names(id: number): SeriesNames {
    let s = this.series.get(id);
    if (s === undefined) {
      const row = this.seriesStatement.get(id) as
        | { device: string; metric: string; unit: string | null }
        | undefined;
      // Read in the chunk's snapshot, a series is there while it has readings.
      if (row === undefined) throw new Error(`the store's readings refer to series ${id}, which is missing`);
      s = { device: row.device, metric: row.metric, unit: row.unit || undefined };
      if (this.series.size >= this.maxCachedSeries) this.series.clear();
      this.series.set(id, s);
    }
    return s;
  }
}
