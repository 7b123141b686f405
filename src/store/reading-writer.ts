import type { Statement } from 'better-sqlite3';
import type { Reading } from '../model/reading.js';
import type { Clock, TimerHandle } from '../runtime/clock.js';
import { InternalErrors } from '../runtime/internal-errors.js';
import type { Logger } from '../runtime/log.js';
import type { Metrics } from '../runtime/metrics.js';
import { type CommitBatch, CommitBatchBuilder, StatementSink } from './commit-core.js';
import { type Committer, InlineCommitter, WorkerCommitter, type WorkerStore } from './committer.js';
import type { Db } from './database.js';
import type { Outbox } from './outbox.js';

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
  /**
   * Commit in a worker thread, on a connection of its own to this store file (which `db` opened and
   * migrated): the commits leave this thread's event loop. Absent: in this thread, on `db`.
   */
  worker?: WorkerStore | undefined;
}

/**
 * Something else written in the same group commit as the readings (rule outputs, the outbox):
 * `write()` puts its statements into the batch as it is cut, and keeps its buffer until
 * `committed()`, so a failed commit loses nothing.
 */
export interface BatchPart {
  readonly pendingCount: number;
  write(sink: StatementSink): void;
  committed(): void;
  rolledBack(): void;
}

/** Told when a batch is cut (what was queued so far goes to the commit), committed or rolled back. */
export interface CommitListener {
  cut?(): void;
  committed?(): void;
  rolledBack?(): void;
}

/**
 * The group-committing writer: readings wait in memory and are written in one transaction when
 * `batchSize` of them wait or `flushInterval` has passed, so that the SD card sees few, large
 * writes. Callers that must know a reading is durable (QoS 1 acknowledgements) wait on
 * `afterCommit()`.
 *
 * With `worker`, the transaction runs in the writer's worker thread (see WorkerCommitter), one
 * batch at a time: readings queue here while it commits, and go in the next batch. Everything is in
 * arrival order either way, and a waiter is answered only after the commit that holds its readings.
 */
export class ReadingWriter {
  private pending = new CommitBatchBuilder();
  private waiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  /** The batch being committed, and who waits for it. */
  private inFlight: { batch: CommitBatch; waiters: ReadingWriter['waiters'] } | null = null;
  /** A commit was asked for while one was in flight: it starts when that one ends. */
  private again = false;
  /** Readings stored by the commits that ended, for flush() to count. */
  private storedSinceFlush = 0;
  private timer: TimerHandle | null = null;
  private commitTimer: TimerHandle | null = null;
  private failing: Error | null = null;
  private stopped = false;
  private readonly parts: BatchPart[] = [];
  private readonly commitListeners: (() => void)[] = [];
  private readonly listeners: CommitListener[] = [];
  private readonly errors: InternalErrors;
  private readonly committer: Committer;
  private readonly stmt: { selectSeries: Statement; isStored: Statement };

  constructor(
    db: Db,
    private readonly options: ReadingWriterOptions,
    private readonly deps: {
      clock: Clock;
      metrics: Metrics;
      log: Logger;
      /** The worker stopped unexpectedly: nothing more can be stored (the gateway stops). */
      onFatal?: (err: Error) => void;
    },
  ) {
    this.stmt = {
      selectSeries: db.prepare('SELECT id FROM series WHERE device = ? AND metric = ?').pluck(),
      isStored: db.prepare('SELECT 1 FROM readings WHERE ts = ? AND series_id = ? AND value = ?').pluck(),
    };
    const core = {
      storeReadings: options.storeReadings,
      forwardReadingsInterval: options.forwardReadings ? options.forwardReadings.interval : null,
      summaryInterval: options.summaryInterval ?? 0,
    };
    const now = deps.clock.now();
    this.committer = options.worker
      ? new WorkerCommitter(
          options.worker,
          core,
          now,
          (err) => {
            this.failing = err;
            deps.log.fatal({ err }, "the store writer's worker stopped; nothing more can be stored");
            deps.onFatal?.(err);
          },
          ({ busy, ms }) =>
            deps.metrics.storeCheckpoints.observe({ result: busy ? 'busy' : 'complete' }, ms / 1000),
        )
      : new InlineCommitter(db, core, now);
    this.errors = InternalErrors.of(deps);
    // Set when scraped, not for every reading.
    deps.metrics.onCollect(() => deps.metrics.storePending.set(this.pendingCount));
  }

  start(): void {
    if (this.timer) return;
    this.timer = this.deps.clock.setInterval(() => this.startCommit(), this.options.flushInterval);
  }

  /** Calls `fn` after every successful commit (the forwarders wake up). */
  onCommit(fn: () => void): void {
    this.commitListeners.push(fn);
  }

  /** Tells `listener` of every cut, commit and rollback from now on. */
  listen(listener: CommitListener): void {
    this.listeners.push(listener);
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
    const queued = this.queued();
    if (queued < this.options.batchSize || this.failing) return;
    this.startCommit();
    // The worker is the bottleneck (readings come faster than it commits): rather than let the
    // queue grow to maxPending and refuse readings, this thread waits for the commit in flight,
    // which slows the sockets it reads as a commit in this thread would.
    if (this.inFlight !== null && queued >= this.highWater) this.committer.settle();
  }

  /** Queued readings past which commitIfFull() waits for the commit in flight. */
  private get highWater(): number {
    return Math.min(this.options.batchSize * 4, this.options.maxPending / 2);
  }

  /** Readings and part records queued for the next batch (not the one in flight). */
  private queued(): number {
    let n = this.pending.readings;
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
      this.startCommit();
    }, this.options.outputFlushInterval ?? 2);
  }

  /** False while the queue is full (the disk is failing): add() would refuse. */
  hasRoom(): boolean {
    return this.pending.readings < this.options.maxPending;
  }

  /**
   * Queues a reading for the next commit; false when the queue is full (the disk is failing). It
   * never commits by itself: the caller runs the rules on the reading first and then calls
   * `commitIfFull()`, so that a reading and the records it caused always share a commit.
   * `arrivedAt`: when it arrived (default: now).
   */
  add(reading: Reading, source: string, arrivedAt = this.deps.clock.now()): boolean {
    const p = this.pending;
    if (p.readings >= this.options.maxPending) return false;
    p.add(
      reading.device,
      reading.metric,
      reading.value,
      reading.ts,
      reading.unit ?? null,
      reading.tags ? JSON.stringify(reading.tags) : null,
      source,
      arrivedAt,
    );
    return true;
  }

  /** Whether this exact reading (device, metric, ts, value) is committed to the store. */
  isStored(r: Reading): boolean {
    const id = this.stmt.selectSeries.get(r.device, r.metric) as number | undefined;
    return id !== undefined && this.stmt.isStored.get(r.ts, id, r.value) !== undefined;
  }

  /**
   * The newest ts committed for a series (kept even without raw readings), or null. A series with
   * no committed row is answered here, from this thread's connection, without a call to the writer
   * (which would wait for the commit in flight): a gateway meeting a thousand new series at once
   * would otherwise stall for one round trip each.
   */
  storedMaxTs(device: string, metric: string): number | null {
    if (this.stmt.selectSeries.get(device, metric) === undefined) return null;
    return this.committer.storedMaxTs(device, metric);
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
      this.committer.syncSummaries(this.deps.clock.now());
    } catch (err) {
      this.summariesFailed(err);
    }
  }

  private summariesFailed(err: unknown): void {
    this.deps.metrics.storeErrors.inc();
    this.deps.log.error({ err }, 'writing the held-back summaries failed; will retry');
  }

  /** Resolves once everything queued so far is committed; rejects if that commit fails. */
  afterCommit(): Promise<void> {
    if (this.queued() === 0) {
      if (this.inFlight === null) return Promise.resolve();
      const waiters = this.inFlight.waiters;
      return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Readings and records not yet committed (queued or being committed). */
  get pendingCount(): number {
    return this.queued() + (this.inFlight?.batch.series.length ?? 0);
  }

  /** The last commit's error while commits keep failing, else null. */
  get lastError(): Error | null {
    return this.failing;
  }

  /** Commits everything queued and waits for it; returns how many new raw readings were stored. */
  flush(): number {
    this.storedSinceFlush = 0;
    this.startCommit();
    this.committer.settle();
    // A commit asked for meanwhile started when the one in flight ended: wait for it too.
    while (this.inFlight !== null) this.committer.settle();
    return this.storedSinceFlush;
  }

  /** Flushes, writes the held-back summaries and stops (the worker too); once. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
    this.commitTimer?.cancel();
    this.commitTimer = null;
    this.flush();
    this.syncSummaries();
    this.committer.close();
  }

  /** Cuts a batch of everything queued and commits it, unless one is in flight (then after it). */
  private startCommit(): void {
    this.commitTimer?.cancel();
    this.commitTimer = null;
    if (this.inFlight !== null) {
      this.again = true;
      return;
    }
    this.again = false;
    const now = this.deps.clock.now();
    if (this.queued() === 0) {
      // No readings: summaries held back still go once their interval has passed.
      if (!this.failing)
        this.committer.tick(now, (err) => {
          if (err) this.summariesFailed(err);
        });
      return;
    }
    const batch = this.pending.batch;
    batch.now = now;
    const sink = new StatementSink(batch);
    for (const p of this.parts) if (p.pendingCount > 0) p.write(sink);
    const flight = { batch, waiters: this.waiters };
    this.inFlight = flight;
    this.pending = new CommitBatchBuilder();
    this.waiters = [];
    for (const l of this.listeners) l.cut?.();
    this.committer.commit(batch, (err, stored) => this.ended(flight, err, stored));
  }

  private ended(flight: NonNullable<ReadingWriter['inFlight']>, err: Error | null, stored: number): void {
    this.inFlight = null;
    if (err !== null) this.rolledBack(flight, err);
    else this.committed(flight, stored);
    if (this.again || (this.queued() >= this.options.batchSize && !this.failing)) this.startCommit();
  }

  private rolledBack(flight: NonNullable<ReadingWriter['inFlight']>, err: Error): void {
    // Keep the batch (before what was queued since) for the next attempt.
    const back = flight.batch;
    back.sql.length = 0;
    back.opSql.length = 0;
    back.opParams.length = 0;
    const merged = new CommitBatchBuilder(back);
    merged.append(this.pending.batch);
    this.pending = merged;
    this.waiters = flight.waiters.concat(this.waiters);
    for (const p of this.parts) p.rolledBack();
    for (const l of this.listeners) l.rolledBack?.();
    this.failing = err;
    this.deps.metrics.storeErrors.inc();
    this.deps.log.error({ err, pending: this.pending.readings }, 'store commit failed; will retry');
    if (this.pending.readings >= this.options.maxPending) {
      for (const w of this.waiters) w.reject(err);
      this.waiters = [];
    }
  }

  private committed(flight: NonNullable<ReadingWriter['inFlight']>, stored: number): void {
    this.failing = null;
    this.storedSinceFlush += stored;
    for (const p of this.parts) p.committed();
    for (const l of this.listeners) l.committed?.();
    this.deps.metrics.storeCommits.inc();
    this.deps.metrics.readingsStored.inc(stored);
    for (const w of flight.waiters) w.resolve();
    for (const fn of this.commitListeners) {
      try {
        fn();
      } catch (e) {
        this.errors.report('writer/commit', e);
      }
    }
  }
}
