import type { Statement } from 'better-sqlite3';
import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { type Reading, readingToJson } from '../model/reading.js';
import type { Db } from './database.js';
import { minuteOf } from './minutes.js';
import type { Outbox } from './outbox.js';

export interface ReadingWriterOptions {
  /** Commit as soon as this many readings wait. */
  batchSize: number;
  /** Commit at least this often while readings wait. */
  flushInterval: number;
  /** After soon(), commit within this many ms (rule outputs bound for the upstreams); default 2. */
  outputFlushInterval?: number;
  /** Readings held in memory while the disk fails; beyond this add() refuses. */
  maxPending: number;
  /** Store raw readings; false keeps only devices and latest values. */
  storeReadings: boolean;
  /** Forward raw readings through the outbox: at most one per series per `interval` ms of event time (0: all). */
  forwardReadings?: { outbox: Outbox; interval: number } | undefined;
}

/**
 * Something else written in the same group commit as the readings (rule outputs, the outbox):
 * `write()` runs inside the transaction and keeps its buffer until `committed()`, so a failed
 * commit loses nothing.
 */
export interface BatchPart {
  readonly pendingCount: number;
  write(): void;
  committed(): void;
  rolledBack(): void;
}

/** count/sum/min/max of one series in one minute (the readings_1m rollup). */
interface Rollup {
  count: number;
  sum: number;
  min: number;
  max: number;
}

/** devices.last_seen is written at most this often per device (ms). */
const DEVICE_SEEN_RESOLUTION = 1000;

interface Pending {
  reading: Reading;
  source: string;
  arrivedAt: number;
}

/**
 * The group-committing writer: readings wait in memory and are written in one transaction when
 * `batchSize` of them wait or `flushInterval` has passed, so that the SD card sees few, large
 * writes. Callers that must know a reading is durable (QoS 1 acknowledgements) wait on
 * `afterCommit()`.
 */
export class ReadingWriter {
  private pending: Pending[] = [];
  private waiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  private timer: TimerHandle | null = null;
  private soonTimer: TimerHandle | null = null;
  private readonly seriesIds = new Map<string, number>();
  /** Per series, the event-time bucket of the last reading forwarded (downsampling). */
  private readonly forwardedBucket = new Map<number, number>();
  /** Per device, the source and last_seen last written to the devices table. */
  private readonly deviceSeen = new Map<string, { source: string; at: number }>();
  private failing: Error | null = null;
  /** The arrival order of stored readings: continues after the largest seq in the store. */
  private seq: number;
  private readonly parts: BatchPart[] = [];
  private readonly commitListeners: (() => void)[] = [];
  private readonly stmt: {
    insertSeries: Statement;
    selectSeries: Statement;
    insertReading: Statement;
    upsertRollup: Statement;
    updateLatest: Statement;
    upsertDevice: Statement;
    isStored: Statement;
    maxTs: Statement;
  };

  constructor(
    private readonly db: Db,
    private readonly options: ReadingWriterOptions,
    private readonly deps: { clock: Clock; metrics: Metrics; log: Logger },
  ) {
    this.stmt = {
      insertSeries: db.prepare(
        'INSERT INTO series (device, metric, unit) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
      ),
      selectSeries: db.prepare('SELECT id FROM series WHERE device = ? AND metric = ?').pluck(),
      insertReading: db.prepare(
        'INSERT OR IGNORE INTO readings (ts, series_id, value, seq, tags) VALUES (?, ?, ?, ?, ?)',
      ),
      upsertRollup: db.prepare(
        `INSERT INTO readings_1m (minute, series_id, count, sum, min, max) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT DO UPDATE SET count = count + excluded.count, sum = sum + excluded.sum,
           min = min(min, excluded.min), max = max(max, excluded.max)`,
      ),
      // Assignments all see the old row: the latest value moves only forward in event time.
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
      isStored: db.prepare('SELECT 1 FROM readings WHERE ts = ? AND series_id = ? AND value = ?').pluck(),
      maxTs: db.prepare('SELECT last_ts FROM series WHERE device = ? AND metric = ?').pluck(),
    };
    this.seq = db.prepare('SELECT coalesce(max(last_seq), 0) FROM series').pluck().get() as number;
  }

  start(): void {
    if (this.timer) return;
    this.timer = this.deps.clock.setInterval(() => this.flush(), this.options.flushInterval);
  }

  /** Calls `fn` after every successful commit (the forwarders wake up). */
  onCommit(fn: () => void): void {
    this.commitListeners.push(fn);
  }

  /** Writes `part` in every group commit from now on. */
  attach(part: BatchPart): void {
    this.parts.push(part);
  }

  /** Called by a part when it has queued something: commits early once a batch is full. */
  queued(): void {
    if (this.totalPending() >= this.options.batchSize && !this.failing) this.flush();
  }

  private totalPending(): number {
    let n = this.pending.length;
    for (const p of this.parts) n += p.pendingCount;
    return n;
  }

  /**
   * Asks for a commit within `outputFlushInterval` rather than at the next `flushInterval`: a rule
   * output waits whose latency matters (it goes upstream once committed). Outputs made meanwhile
   * share that commit.
   */
  soon(): void {
    if (this.soonTimer || this.failing) return;
    this.soonTimer = this.deps.clock.setTimeout(() => {
      this.soonTimer = null;
      this.flush();
    }, this.options.outputFlushInterval ?? 2);
  }

  /** False while the queue is full (the disk is failing): add() would refuse. */
  hasRoom(): boolean {
    return this.pending.length < this.options.maxPending;
  }

  /** Queues a reading for the next commit; false when the queue is full (the disk is failing). */
  add(reading: Reading, source: string): boolean {
    if (this.pending.length >= this.options.maxPending) return false;
    this.pending.push({ reading, source, arrivedAt: this.deps.clock.now() });
    this.deps.metrics.storePending.set(this.pending.length);
    // While commits fail, retry only on the timer, not on every reading.
    if (this.pending.length >= this.options.batchSize && !this.failing) this.flush();
    return true;
  }

  /** Whether this exact reading (device, metric, ts, value) is committed to the store. */
  isStored(r: Reading): boolean {
    const id = this.knownSeriesId(r);
    return id !== undefined && this.stmt.isStored.get(r.ts, id, r.value) !== undefined;
  }

  /** The newest ts committed for a series (kept even without raw readings), or null. */
  storedMaxTs(device: string, metric: string): number | null {
    return (this.stmt.maxTs.get(device, metric) as number | null | undefined) ?? null;
  }

  /** Resolves once everything queued so far is committed; rejects if that commit fails. */
  afterCommit(): Promise<void> {
    if (this.totalPending() === 0) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  get pendingCount(): number {
    return this.totalPending();
  }

  /** The last commit's error while commits keep failing, else null. */
  get lastError(): Error | null {
    return this.failing;
  }

  /** Commits everything queued; returns how many new raw readings were stored. */
  flush(): number {
    this.soonTimer?.cancel();
    this.soonTimer = null;
    if (this.totalPending() === 0) return 0;
    const batch = this.pending;
    const waiters = this.waiters;
    this.pending = [];
    this.waiters = [];
    let stored: number;
    try {
      stored = this.commit(batch);
    } catch (err) {
      // Keep the batch for the next attempt; the series cache may name rows the rollback removed.
      this.seriesIds.clear();
      for (const p of this.parts) p.rolledBack();
      this.pending = batch.concat(this.pending);
      this.waiters = waiters.concat(this.waiters);
      this.failing = err as Error;
      this.deps.metrics.storeErrors.inc();
      this.deps.log.error({ err, pending: this.pending.length }, 'store commit failed; will retry');
      if (this.pending.length >= this.options.maxPending) {
        for (const w of this.waiters) w.reject(err as Error);
        this.waiters = [];
      }
      return 0;
    }
    this.failing = null;
    for (const p of this.parts) p.committed();
    this.deps.metrics.storeCommits.inc();
    this.deps.metrics.readingsStored.inc(stored);
    this.deps.metrics.storePending.set(this.pending.length);
    for (const w of waiters) w.resolve();
    for (const fn of this.commitListeners) fn();
    return stored;
  }

  /** Flushes and stops the timer. */
  stop(): void {
    this.timer?.cancel();
    this.timer = null;
    this.soonTimer?.cancel();
    this.soonTimer = null;
    this.flush();
  }

  private commit(batch: Pending[]): number {
    const latest = new Map<number, { ts: number; value: number; unit: string | null; seq: number }>();
    const devices = new Map<string, { source: string; at: number }>();
    const seen: [string, { source: string; at: number }][] = [];
    /** minute → series → rollup of the readings stored in this batch. */
    const rollups = new Map<number, Map<number, Rollup>>();
    let stored = 0;
    let seq = this.seq;
    this.db.transaction(() => {
      for (const { reading, source, arrivedAt } of batch) {
        const id = this.seriesId(reading);
        let isNew = true;
        if (this.options.storeReadings) {
          const tags = reading.tags ? JSON.stringify(reading.tags) : null;
          isNew = this.stmt.insertReading.run(reading.ts, id, reading.value, seq + 1, tags).changes === 1;
          if (isNew) {
            seq++;
            stored++;
            addToRollup(rollups, id, reading);
          }
        }
        if (isNew && this.options.forwardReadings)
          this.forward(id, reading, arrivedAt, this.options.forwardReadings);
        const l = latest.get(id);
        if (!l || l.ts <= reading.ts)
          latest.set(id, { ts: reading.ts, value: reading.value, unit: reading.unit ?? null, seq });
        else l.seq = seq;
        devices.set(reading.device, { source, at: arrivedAt });
      }
      for (const [minute, bySeries] of rollups)
        for (const [id, r] of bySeries) this.stmt.upsertRollup.run(minute, id, r.count, r.sum, r.min, r.max);
      for (const [id, l] of latest) this.stmt.updateLatest.run({ ...l, id });
      for (const [device, d] of devices) {
        // last_seen to the second: a device heard in every commit does not rewrite its page each time.
        const written = this.deviceSeen.get(device);
        if (written && written.source === d.source && d.at - written.at < DEVICE_SEEN_RESOLUTION) continue;
        this.stmt.upsertDevice.run(device, d.source, d.at, d.at);
        seen.push([device, d]);
      }
      for (const p of this.parts) if (p.pendingCount > 0) p.write();
    })();
    this.seq = seq;
    for (const [device, d] of seen) this.deviceSeen.set(device, d);
    return stored;
  }

  private forward(seriesId: number, r: Reading, at: number, how: { outbox: Outbox; interval: number }): void {
    if (how.interval > 0) {
      const bucket = Math.floor(r.ts / how.interval);
      if (this.forwardedBucket.get(seriesId) === bucket) return;
      this.forwardedBucket.set(seriesId, bucket);
    }
    how.outbox.append('reading', null, JSON.stringify(readingToJson(r)), at);
  }

  private seriesId(r: Reading): number {
    let id = this.knownSeriesId(r);
    if (id === undefined) {
      const inserted = this.stmt.insertSeries.run(r.device, r.metric, r.unit ?? null);
      id =
        inserted.changes === 1
          ? Number(inserted.lastInsertRowid)
          : (this.stmt.selectSeries.get(r.device, r.metric) as number);
      this.seriesIds.set(`${r.device}\u0000${r.metric}`, id);
    }
    return id;
  }

  /** The id of a series already in the store, or undefined. */
  private knownSeriesId(r: Reading): number | undefined {
    const key = `${r.device}\u0000${r.metric}`;
    let id = this.seriesIds.get(key);
    if (id === undefined) {
      id = this.stmt.selectSeries.get(r.device, r.metric) as number | undefined;
      if (id !== undefined) this.seriesIds.set(key, id);
    }
    return id;
  }
}

function addToRollup(rollups: Map<number, Map<number, Rollup>>, seriesId: number, r: Reading): void {
  const minute = minuteOf(r.ts);
  let bySeries = rollups.get(minute);
  if (bySeries === undefined) {
    bySeries = new Map();
    rollups.set(minute, bySeries);
  }
  const agg = bySeries.get(seriesId);
  if (agg === undefined) bySeries.set(seriesId, { count: 1, sum: r.value, min: r.value, max: r.value });
  else {
    agg.count++;
    agg.sum += r.value;
    if (r.value < agg.min) agg.min = r.value;
    if (r.value > agg.max) agg.max = r.value;
  }
}
