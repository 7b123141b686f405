import type { Statement } from 'better-sqlite3';
import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { type Reading, readingToJson } from '../model/reading.js';
import type { Db } from './database.js';
import type { Outbox } from './outbox.js';

export interface ReadingWriterOptions {
  /** Commit as soon as this many readings wait. */
  batchSize: number;
  /** Commit at least this often while readings wait. */
  flushInterval: number;
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
  private readonly seriesIds = new Map<string, number>();
  /** Per series, the event-time bucket of the last reading forwarded (downsampling). */
  private readonly forwardedBucket = new Map<number, number>();
  private failing: Error | null = null;
  private readonly parts: BatchPart[] = [];
  private readonly commitListeners: (() => void)[] = [];
  private readonly stmt: {
    insertSeries: Statement;
    selectSeries: Statement;
    insertReading: Statement;
    updateLatest: Statement;
    upsertDevice: Statement;
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
        'INSERT OR IGNORE INTO readings (series_id, ts, value, tags) VALUES (?, ?, ?, ?)',
      ),
      updateLatest: db.prepare(
        `UPDATE series SET last_ts = ?, last_value = ?, unit = coalesce(?, unit)
         WHERE id = ? AND (last_ts IS NULL OR last_ts <= ?)`,
      ),
      upsertDevice: db.prepare(
        `INSERT INTO devices (id, source, first_seen, last_seen) VALUES (?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET source = excluded.source, last_seen = max(last_seen, excluded.last_seen)`,
      ),
    };
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
    this.flush();
  }

  private commit(batch: Pending[]): number {
    const latest = new Map<number, { ts: number; value: number; unit: string | null }>();
    const devices = new Map<string, { source: string; at: number }>();
    let stored = 0;
    this.db.transaction(() => {
      for (const { reading, source, arrivedAt } of batch) {
        const id = this.seriesId(reading);
        let isNew = true;
        if (this.options.storeReadings) {
          const tags = reading.tags ? JSON.stringify(reading.tags) : null;
          const changes = this.stmt.insertReading.run(id, reading.ts, reading.value, tags).changes;
          stored += changes;
          isNew = changes === 1;
        }
        if (isNew && this.options.forwardReadings)
          this.forward(id, reading, arrivedAt, this.options.forwardReadings);
        const l = latest.get(id);
        if (!l || l.ts <= reading.ts)
          latest.set(id, { ts: reading.ts, value: reading.value, unit: reading.unit ?? null });
        devices.set(reading.device, { source, at: arrivedAt });
      }
      for (const [id, l] of latest) this.stmt.updateLatest.run(l.ts, l.value, l.unit, id, l.ts);
      for (const [device, d] of devices) this.stmt.upsertDevice.run(device, d.source, d.at, d.at);
      for (const p of this.parts) if (p.pendingCount > 0) p.write();
    })();
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
    const key = `${r.device}\u0000${r.metric}`;
    let id = this.seriesIds.get(key);
    if (id === undefined) {
      this.stmt.insertSeries.run(r.device, r.metric, r.unit ?? null);
      id = this.stmt.selectSeries.get(r.device, r.metric) as number;
      this.seriesIds.set(key, id);
    }
    return id;
  }
}
