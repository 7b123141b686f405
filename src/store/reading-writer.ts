import type { Statement } from 'better-sqlite3';
import { type Reading, readingToJson } from '../model/reading.js';
import type { Clock, TimerHandle } from '../runtime/clock.js';
import { InternalErrors } from '../runtime/internal-errors.js';
import type { Logger } from '../runtime/log.js';
import type { Metrics } from '../runtime/metrics.js';
import type { Db } from './database.js';
import { ForwardedBuckets } from './forwarded-buckets.js';
import { minuteOf } from './minutes.js';
import type { Outbox } from './outbox.js';
import { type BatchSummaries, emptyBatch, type Rollup, Summaries } from './summaries.js';

export interface ReadingWriterOptions {
  /** Commit as soon as this many readings wait. */
  batchSize: number;
  /** Commit at least this often while readings wait. */
  flushInterval: number;
  /** After commitSoon(), commit within this many ms (rule outputs bound for the upstreams); default 2. */
  outputFlushInterval?: number;
  /** Readings held in memory while the disk fails; beyond this add() refuses. */
  maxPending: number;
  /** Store raw readings; false keeps only devices and latest values. */
  storeReadings: boolean;
  /** Forward raw readings through the outbox: at most one per series per `interval` ms of event time (0: all). */
  forwardReadings?: { outbox: Outbox; interval: number } | undefined;
  /**
   * Write rollups, latest values and device last_seen at most this often (ms) rather than in every
   * commit (SD-card wear; see Summaries); 0 or absent: in every commit.
   */
  summaryInterval?: number;
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

/** Series ids kept in memory (the series a publisher can invent are unbounded). */
const MAX_CACHED_SERIES = 50_000;

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
  private commitTimer: TimerHandle | null = null;
  private readonly seriesIds = new Map<string, number>();
  /** Per series, the event-time bucket of the last reading forwarded (downsampling). */
  private readonly forwardedBucket = new ForwardedBuckets();
  private readonly summaries: Summaries;
  /** The newest event time stored since start: summaries of readings near it are held back. */
  private newestTs = Number.NEGATIVE_INFINITY;
  private failing: Error | null = null;
  /** The arrival order of stored readings: continues after the largest seq in the store. */
  private seq: number;
  private readonly parts: BatchPart[] = [];
  private readonly commitListeners: (() => void)[] = [];
  private readonly errors: InternalErrors;
  private readonly stmt: {
    insertSeries: Statement;
    selectSeries: Statement;
    insertReading: Statement;
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
      isStored: db.prepare('SELECT 1 FROM readings WHERE ts = ? AND series_id = ? AND value = ?').pluck(),
      maxTs: db.prepare('SELECT last_ts FROM series WHERE device = ? AND metric = ?').pluck(),
    };
    // Before the largest seq is read: after a crash it recomputes the latest values.
    this.summaries = new Summaries(
      db,
      { interval: options.summaryInterval ?? 0, holdBack: options.storeReadings },
      deps.clock.now(),
    );
    this.seq = db.prepare('SELECT coalesce(max(last_seq), 0) FROM series').pluck().get() as number;
    this.errors = InternalErrors.of(deps);
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

  /**
   * Called once something was queued and everything it caused too: commits early once a batch is
   * full. While commits fail, retries are left to the timer, not made on every reading.
   */
  commitIfFull(): void {
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
  commitSoon(): void {
    if (this.commitTimer || this.failing) return;
    this.commitTimer = this.deps.clock.setTimeout(() => {
      this.commitTimer = null;
      this.flush();
    }, this.options.outputFlushInterval ?? 2);
  }

  /** False while the queue is full (the disk is failing): add() would refuse. */
  hasRoom(): boolean {
    return this.pending.length < this.options.maxPending;
  }

  /**
   * Queues a reading for the next commit; false when the queue is full (the disk is failing). It
   * never commits by itself: the caller runs the rules on the reading first and then calls
   * `commitIfFull()`, so that a reading and the records it caused always share a commit.
   */
  add(reading: Reading, source: string): boolean {
    if (this.pending.length >= this.options.maxPending) return false;
    this.pending.push({ reading, source, arrivedAt: this.deps.clock.now() });
    this.deps.metrics.storePending.set(this.pending.length);
    return true;
  }

  /** Whether this exact reading (device, metric, ts, value) is committed to the store. */
  isStored(r: Reading): boolean {
    const id = this.knownSeriesId(r);
    return id !== undefined && this.stmt.isStored.get(r.ts, id, r.value) !== undefined;
  }

  /** The newest ts committed for a series (kept even without raw readings), or null. */
  storedMaxTs(device: string, metric: string): number | null {
    const stored = (this.stmt.maxTs.get(device, metric) as number | null | undefined) ?? null;
    const id = this.seriesIds.get(`${device}\u0000${metric}`);
    const held = id === undefined ? undefined : this.summaries.heldTs(id);
    return held !== undefined && (stored === null || held > stored) ? held : stored;
  }

  /**
   * Writes the summaries held back (rollups, latest values, device last_seen) so that a query sees
   * every committed reading in them; readers call it first. While the disk fails, or if this write
   * fails (logged), the query answers from what is written.
   */
  syncSummaries(): void {
    // While commits fail, the next one that succeeds writes them.
    if (this.failing) return;
    try {
      this.summaries.sync(this.deps.clock.now());
    } catch (err) {
      this.deps.metrics.storeErrors.inc();
      this.deps.log.error({ err }, 'writing the held-back summaries failed; will retry');
    }
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
    this.commitTimer?.cancel();
    this.commitTimer = null;
    if (this.totalPending() === 0) {
      // No readings: summaries held back still go once their interval has passed.
      if (this.summaries.due(this.deps.clock.now())) this.syncSummaries();
      return 0;
    }
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
      this.forwardedBucket.rolledBack();
      this.summaries.rolledBack();
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
    this.forwardedBucket.committed();
    this.summaries.committed();
    for (const p of this.parts) p.committed();
    this.deps.metrics.storeCommits.inc();
    this.deps.metrics.readingsStored.inc(stored);
    this.deps.metrics.storePending.set(this.pending.length);
    for (const w of waiters) w.resolve();
    for (const fn of this.commitListeners) {
      try {
        fn();
      } catch (err) {
        this.errors.report('writer/commit', err);
      }
    }
    return stored;
  }

  /** Flushes and stops the timer. */
  stop(): void {
    this.timer?.cancel();
    this.timer = null;
    this.commitTimer?.cancel();
    this.commitTimer = null;
    this.flush();
    this.syncSummaries();
  }

  private commit(batch: Pending[]): number {
    const summary: BatchSummaries = emptyBatch();
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
            if (reading.ts > this.newestTs) this.newestTs = reading.ts;
            addToRollup(summary.rollups, id, reading);
          }
        }
        summary.devices.set(reading.device, { source, at: arrivedAt });
        // A duplicate changes nothing but the device's last_seen.
        if (!isNew) continue;
        if (this.options.forwardReadings) this.forward(id, reading, arrivedAt, this.options.forwardReadings);
        const l = summary.latest.get(id);
        if (!l || l.ts <= reading.ts)
          summary.latest.set(id, { ts: reading.ts, value: reading.value, unit: reading.unit ?? null, seq });
        else l.seq = seq;
      }
      // Near the newest reading, and never ahead of the clock (a device whose clock runs ahead).
      const now = this.deps.clock.now();
      this.summaries.write(summary, now, Math.min(now, this.newestTs));
      for (const p of this.parts) if (p.pendingCount > 0) p.write();
    })();
    this.seq = seq;
    return stored;
  }

  private forward(seriesId: number, r: Reading, at: number, how: { outbox: Outbox; interval: number }): void {
    if (how.interval > 0 && !this.forwardedBucket.take(seriesId, Math.floor(r.ts / how.interval))) return;
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
      this.cacheSeriesId(`${r.device}\u0000${r.metric}`, id);
    }
    return id;
  }

  /** The id of a series already in the store, or undefined. */
  private knownSeriesId(r: Reading): number | undefined {
    const key = `${r.device}\u0000${r.metric}`;
    let id = this.seriesIds.get(key);
    if (id === undefined) {
      id = this.stmt.selectSeries.get(r.device, r.metric) as number | undefined;
      if (id !== undefined) this.cacheSeriesId(key, id);
    }
    return id;
  }

  /** A cache, not the truth: past its cap it starts again, and misses are looked up in the store. */
  private cacheSeriesId(key: string, id: number): void {
    if (this.seriesIds.size >= MAX_CACHED_SERIES) this.seriesIds.clear();
    this.seriesIds.set(key, id);
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
