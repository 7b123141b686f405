import type { Statement } from 'better-sqlite3';
import type { Db } from './database.js';
import { MINUTE, minuteOf } from './minutes.js';

/** count/sum/min/max of one series in one minute (the readings_1m rollup). */
export interface Rollup {
  count: number;
  sum: number;
  min: number;
  max: number;
}

/** The newest reading of a series in a batch, and the batch's largest seq of that series. */
export interface Latest {
  ts: number;
  value: number;
  unit: string | null;
  seq: number;
}

/** What one group commit adds to the summaries. */
export interface BatchSummaries {
  /** minute → series → rollup of the readings stored in the batch. */
  rollups: Map<number, Map<number, Rollup>>;
  latest: Map<number, Latest>;
  /** device → the source it came from and when it was last heard, in the batch. */
  devices: Map<string, { source: string; at: number }>;
}

export function emptyBatch(): BatchSummaries {
  return { rollups: new Map(), latest: new Map(), devices: new Map() };
}

/**
 * Readings older than this (event time, behind the newest reading) have their summaries written
 * in the commit that stores them: after a crash, the summaries are recomputed from the readings
 * newer than the oldest summary that was held back, so that bound keeps the recomputation to the
 * last few minutes of readings.
 */
export const HOLD_BACK_HORIZON = 2 * MINUTE;

const MARKER = 'summaries_behind_from';

/** Devices remembered as written (the devices a publisher can invent are unbounded). */
const MAX_DEVICES_WRITTEN = 50_000;

/**
 * The summaries of the raw readings — per-minute rollups (`readings_1m`), each series' latest value
 * (`series.last_*`) and each device's `last_seen` — written every `interval` ms rather than in
 * every group commit.
 *
 * Written with every commit they rewrite the current minute's rollup row and the latest value of
 * every series heard, and with a thousand series that is as many bytes as the readings themselves
 * (SD-card wear, docs/raspberry-pi.md). Held back, the rows are written once per interval.
 *
 * Nothing is lost in a crash: while summaries are held back, a marker row in the same transaction
 * as the readings names the minute from which they may lag, and the next start recomputes the
 * rollups and latest values from the raw readings after it (device last_seen, which the readings
 * do not record, may be up to one interval old). Readers call `sync()` first, which writes what is
 * held back, so queries see every committed reading.
 *
 * Without raw readings (`store.readings: false`) there is nothing to recompute from, and the
 * summaries go with every commit.
 */
export class Summaries {
  private readonly stmt: {
    upsertRollup: Statement;
    updateLatest: Statement;
    upsertDevice: Statement;
    getMarker: Statement;
    setMarker: Statement;
    clearMarker: Statement;
  };
  /** Committed, not yet written. */
  private held: BatchSummaries = emptyBatch();
  /** The marker's value in the store: the minute from which the summaries may lag, or null. */
  private behindFrom: number | null;
  /** Devices whose row exists → the source written with it: a cache, capped (see writeDevice). */
  private readonly devicesWritten = new Map<string, string>();
  private readonly maxDevicesWritten: number;
  private lastWritten: number;
  /** The outcome of `write()` inside the open transaction, applied by `committed()`. */
  private staged: {
    /** Held back by this batch. */
    held: BatchSummaries;
    /** Series whose held latest value the batch wrote. */
    consumed: number[];
    /** Devices the batch wrote at once, with the source written. */
    writtenNow: [string, string][];
    behindFrom: number | null;
    /** Everything was written at this time. */
    at: number | null;
  } | null = null;

  constructor(
    private readonly db: Db,
    private readonly options: {
      /** Write the summaries at most this often (ms); 0: with every commit. */
      interval: number;
      /** Hold back rollups and latest values too (only with raw readings to recompute them from). */
      holdBack: boolean;
      /** Devices remembered as written, at most (default MAX_DEVICES_WRITTEN; tests flood a smaller cap). */
      maxDevicesWritten?: number;
    },
    now: number,
  ) {
    this.maxDevicesWritten = options.maxDevicesWritten ?? MAX_DEVICES_WRITTEN;
    this.stmt = {
      upsertRollup: db.prepare(
        `INSERT INTO readings_1m (minute, series_id, count, sum, min, max) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT DO UPDATE SET count = count + excluded.count, sum = sum + excluded.sum,
           min = min(min, excluded.min), max = max(max, excluded.max)`,
      ),
      // Assignments all see the old row: the latest value moves only forward in event time, and a
      // later arrival wins a tie (updates are applied in arrival order).
      updateLatest: db.prepare(
        `UPDATE series SET
           last_value = CASE WHEN last_ts IS NULL OR last_ts <= @ts THEN @value ELSE last_value END,
           unit = CASE WHEN last_ts IS NULL OR last_ts <= @ts THEN coalesce(@unit, unit) ELSE unit END,
           last_ts = CASE WHEN last_ts IS NULL OR last_ts <= @ts THEN @ts ELSE last_ts END,
           last_seq = max(last_seq, @seq)
         WHERE id = @id`,
      ),
      upsertDevice: db.prepare(
        `INSERT INTO devices (id, source, first_seen, last_seen) VALUES (?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET source = excluded.source, last_seen = max(last_seen, excluded.last_seen)`,
      ),
      getMarker: db.prepare('SELECT value FROM store_state WHERE key = ?').pluck(),
      setMarker: db.prepare(
        'INSERT INTO store_state (key, value) VALUES (?, ?) ON CONFLICT DO UPDATE SET value = excluded.value',
      ),
      clearMarker: db.prepare('DELETE FROM store_state WHERE key = ?'),
    };
    this.behindFrom = (this.stmt.getMarker.get(MARKER) as number | undefined) ?? null;
    if (this.behindFrom !== null) this.recover(this.behindFrom);
    this.lastWritten = now;
  }

  /** Devices remembered as written, counted in the map itself (the flood test's view of the cap). */
  get devicesRemembered(): number {
    return this.devicesWritten.size;
  }

  /** The newest ts of a series committed but not yet in the series table, if any. */
  heldTs(seriesId: number): number | undefined {
    return this.held.latest.get(seriesId)?.ts;
  }

  /**
   * Inside the commit's transaction: writes the batch's summaries, or holds them back until the
   * interval has passed (then writes them with everything held so far). Only those of readings
   * at most HOLD_BACK_HORIZON older than `newest` (event time) are held back.
   */
  write(batch: BatchSummaries, now: number, newest: number): void {
    if (now - this.lastWritten >= this.options.interval) {
      this.writeAll(batch);
      this.staged = { held: emptyBatch(), consumed: [], writtenNow: [], behindFrom: null, at: now };
      return;
    }
    const held = emptyBatch();
    const consumed: number[] = [];
    const writtenNow: [string, string][] = [];
    // Without raw readings to recompute them from, only devices' last_seen is held back.
    const holdBack = this.options.holdBack && Number.isFinite(newest);
    const horizon = holdBack ? newest - HOLD_BACK_HORIZON : Number.POSITIVE_INFINITY;
    const oldMinutes = holdBack ? minuteOf(horizon) : Number.POSITIVE_INFINITY;
    let from = this.behindFrom;
    for (const [minute, bySeries] of batch.rollups) {
      if (minute < oldMinutes) for (const [id, r] of bySeries) this.writeRollup(minute, id, r);
      else {
        addRollups(held.rollups, minute, bySeries);
        if (from === null || minute < from) from = minute;
      }
    }
    for (const [id, l] of batch.latest) {
      if (l.ts < horizon) {
        // Written now, after what is held for the series: updates go in arrival order.
        const before = this.held.latest.get(id);
        if (before) {
          this.writeLatest(id, before);
          consumed.push(id);
        }
        this.writeLatest(id, l);
      } else {
        held.latest.set(id, l);
        const minute = minuteOf(l.ts);
        if (from === null || minute < from) from = minute;
      }
    }
    for (const [device, d] of batch.devices) {
      // A new device, or one that moved to another source, is written at once.
      if (this.devicesWritten.get(device) !== d.source) {
        this.writeDevice(device, d);
        if (this.held.devices.has(device)) writtenNow.push([device, d.source]);
      } else held.devices.set(device, d);
    }
    if (from !== this.behindFrom) this.stmt.setMarker.run(MARKER, from);
    this.staged = { held, consumed, writtenNow, behindFrom: from, at: null };
  }

  /** The transaction that ran `write()` committed. */
  committed(): void {
    const s = this.staged;
    if (!s) return;
    this.staged = null;
    this.behindFrom = s.behindFrom;
    if (s.at !== null) {
      this.held = emptyBatch();
      this.lastWritten = s.at;
      return;
    }
    for (const id of s.consumed) this.held.latest.delete(id);
    // What is held for a device written at once is written later with the source just written:
    // held under its old source, it would bring that back (and its last_seen stays as it was).
    for (const [device, source] of s.writtenNow) {
      const h = this.held.devices.get(device);
      if (h !== undefined && h.source !== source) this.held.devices.set(device, { source, at: h.at });
    }
    mergeInto(this.held, s.held);
  }

  /** The transaction that ran `write()` rolled back: what was held stays held. */
  rolledBack(): void {
    this.staged = null;
    // Devices first written in the rolled-back transaction are not in the store.
    this.devicesWritten.clear();
  }

  /** Something is held back and its interval has passed. */
  due(now: number): boolean {
    return (
      (this.behindFrom !== null || this.held.devices.size > 0) &&
      now - this.lastWritten >= this.options.interval
    );
  }

  /** Writes everything held back, in its own transaction; false when nothing was held. */
  sync(now: number): boolean {
    if (this.behindFrom === null && this.held.devices.size === 0) return false;
    try {
      this.db.transaction(() => {
        this.writeAll(emptyBatch());
        this.staged = { held: emptyBatch(), consumed: [], writtenNow: [], behindFrom: null, at: now };
      })();
    } catch (err) {
      this.rolledBack();
      throw err;
    }
    this.committed();
    return true;
  }

  /** Everything held and the batch; the marker goes. */
  private writeAll(batch: BatchSummaries): void {
    const all = merged(this.held, batch);
    for (const [minute, bySeries] of all.rollups)
      for (const [id, r] of bySeries) this.writeRollup(minute, id, r);
    for (const [id, l] of all.latest) this.writeLatest(id, l);
    for (const [device, d] of all.devices) this.writeDevice(device, d);
    if (this.behindFrom !== null) this.stmt.clearMarker.run(MARKER);
  }

  private writeRollup(minute: number, id: number, r: Rollup): void {
    this.stmt.upsertRollup.run(minute, id, r.count, r.sum, r.min, r.max);
  }

  private writeLatest(id: number, l: Latest): void {
    this.stmt.updateLatest.run({ ...l, id });
  }

  private writeDevice(device: string, d: { source: string; at: number }): void {
    this.stmt.upsertDevice.run(device, d.source, d.at, d.at);
    // A cache, not the truth: past its cap it starts again, and a device it forgot is written at
    // once the next time (the upsert keeps first_seen and the larger last_seen).
    if (this.devicesWritten.size >= this.maxDevicesWritten && !this.devicesWritten.has(device)) {
      this.devicesWritten.clear();
    }
    this.devicesWritten.set(device, d.source);
  }

  /**
   * After a crash while summaries were held back: the rollups of every minute from `from` on and
   * the latest values of the series with readings since then, computed again from the readings.
   */
  private recover(from: number): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM readings_1m WHERE minute >= ?').run(from);
      this.db
        .prepare(
          `INSERT INTO readings_1m (minute, series_id, count, sum, min, max)
           SELECT ts - (((ts % ${MINUTE}) + ${MINUTE}) % ${MINUTE}) AS minute, series_id,
             count(*), sum(value), min(value), max(value)
           FROM readings WHERE ts >= ? GROUP BY minute, series_id`,
        )
        .run(from);
      const newest = this.db
        .prepare(
          `SELECT series_id AS id, ts, value, max_seq AS seq FROM (
             SELECT series_id, ts, value,
               row_number() OVER (PARTITION BY series_id ORDER BY ts DESC, seq DESC) AS n,
               max(seq) OVER (PARTITION BY series_id) AS max_seq
             FROM readings WHERE ts >= ?)
           WHERE n = 1`,
        )
        .all(from) as { id: number; ts: number; value: number; seq: number }[];
      for (const l of newest) this.writeLatest(l.id, { ...l, unit: null });
      this.stmt.clearMarker.run(MARKER);
    })();
    this.behindFrom = null;
  }
}

function merged(a: BatchSummaries, b: BatchSummaries): BatchSummaries {
  const out = emptyBatch();
  mergeInto(out, a);
  mergeInto(out, b);
  return out;
}

/** Adds `later` (which arrived after what `into` holds) to `into`. */
function mergeInto(into: BatchSummaries, later: BatchSummaries): void {
  for (const [minute, bySeries] of later.rollups) addRollups(into.rollups, minute, bySeries);
  for (const [id, l] of later.latest) mergeLatest(into.latest, id, l);
  for (const [device, d] of later.devices) into.devices.set(device, d);
}

function addRollups(into: Map<number, Map<number, Rollup>>, minute: number, add: Map<number, Rollup>): void {
  let bySeries = into.get(minute);
  if (bySeries === undefined) {
    bySeries = new Map();
    into.set(minute, bySeries);
  }
  for (const [id, r] of add) {
    const agg = bySeries.get(id);
    if (agg === undefined) bySeries.set(id, { ...r });
    else {
      agg.count += r.count;
      agg.sum += r.sum;
      if (r.min < agg.min) agg.min = r.min;
      if (r.max > agg.max) agg.max = r.max;
    }
  }
}

/** `l` arrived after what `into` holds for the series: it wins ties, and its seq is the larger. */
function mergeLatest(into: Map<number, Latest>, id: number, l: Latest): void {
  const before = into.get(id);
  if (!before || before.ts <= l.ts) into.set(id, { ...l, unit: l.unit ?? before?.unit ?? null });
  else into.set(id, { ...before, seq: l.seq });
}
