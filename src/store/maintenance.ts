import type { Clock, TimerHandle } from '../runtime/clock.js';
import type { Logger } from '../runtime/log.js';
import type { Metrics } from '../runtime/metrics.js';
import type { Db } from './database.js';
import { MINUTE, minuteOf } from './minutes.js';
import type { Outbox } from './outbox.js';
import { TurnByTurn } from './turn-by-turn.js';

/** Rows per DELETE: a few ms each (bench:retention); a retention pass deletes one per turn. */
export const DELETE_CHUNK = 5_000;
/**
 * Free pages a retention pass returns to the file system per turn: a few ms; 1,000 took 20–50 ms
 * with the WAL checkpoints their moves set off (bench:retention).
 */
const VACUUM_CHUNK = 256;

export interface MaintenanceOptions {
  /** Raw readings and rule outputs older than this (event time) are deleted. */
  retention: number;
  /** Cap on the bytes the database holds (used pages). */
  maxSize: number;
  /** Cap on outbox rows. */
  maxOutboxRows: number;
  /** How often the caps are checked. */
  capInterval?: number;
}

/**
 * Keeps the store bounded (SPEC §4): retention by age (hourly), and the caps (every few seconds):
 * over `store.maxSize` the oldest raw readings go first, then old rule outputs, then outbox rows
 * every upstream has acknowledged; only when the outbox alone is over the cap are its oldest
 * unforwarded rows dropped, and counted. Freed pages are returned to the file system. A retention
 * pass deletes one chunk per turn of the event loop; the caps wait for it.
 */
export class StoreMaintenance {
  private timers: TimerHandle[] = [];
  /** The retention pass under way, or the last one; `readings` resolves with how many it deleted. */
  private pass: { task: TurnByTurn; readings: Promise<number> } | null = null;
  /** The caps were due while a pass ran: they run when it ends. */
  private capsWaiting = false;
  private readonly stmt;

  constructor(
    private readonly db: Db,
    private readonly options: MaintenanceOptions,
    private readonly deps: {
      clock: Clock;
      metrics: Metrics;
      log: Logger;
      outbox: Outbox;
      /** The smallest cursor over all upstreams (rows up to it are forwarded); null: no upstreams. */
      forwardedUpTo: () => number | null;
      /** Writes the rollups the writer holds back, before they are trimmed (ReadingWriter.syncSummaries). */
      syncSummaries?: () => void;
    },
  ) {
    this.stmt = {
      oldReadings: db.prepare(
        `DELETE FROM readings WHERE (ts, series_id, value) IN
           (SELECT ts, series_id, value FROM readings WHERE ts < ? ORDER BY ts LIMIT ?)`,
      ),
      oldResults: db.prepare(
        'DELETE FROM results WHERE id IN (SELECT id FROM results WHERE "end" < ? LIMIT ?)',
      ),
      oldDecisions: db.prepare(
        'DELETE FROM decisions WHERE id IN (SELECT id FROM decisions WHERE at < ? LIMIT ?)',
      ),
      oldLate: db.prepare(
        'DELETE FROM late_readings WHERE id IN (SELECT id FROM late_readings WHERE ts < ? LIMIT ?)',
      ),
      oldestReadings: db.prepare(
        `DELETE FROM readings WHERE (ts, series_id, value) IN
           (SELECT ts, series_id, value FROM readings ORDER BY ts LIMIT ?)`,
      ),
      oldestReading: db.prepare('SELECT min(ts) FROM readings').pluck(),
      rollupsBefore: db.prepare('DELETE FROM readings_1m WHERE minute < ?'),
      rollupsOf: db.prepare('DELETE FROM readings_1m WHERE minute = ?'),
      recomputeRollups: db.prepare(
        `INSERT INTO readings_1m (minute, series_id, count, sum, min, max)
         SELECT @minute, series_id, count(*), sum(value), min(value), max(value) FROM readings
         WHERE ts >= @minute AND ts < @minute + ${MINUTE} GROUP BY series_id`,
      ),
      oldestResults: db.prepare(
        'DELETE FROM results WHERE id IN (SELECT id FROM results ORDER BY "end" LIMIT ?)',
      ),
      oldestLate: db.prepare(
        'DELETE FROM late_readings WHERE id IN (SELECT id FROM late_readings ORDER BY ts LIMIT ?)',
      ),
    };
  }

  start(): void {
    this.retain();
    this.enforceCaps();
    const every = Math.max(60_000, Math.min(this.options.retention / 10, 3_600_000));
    this.timers.push(this.deps.clock.setInterval(() => this.retain(), every));
    this.timers.push(
      this.deps.clock.setInterval(() => this.enforceCaps(), this.options.capInterval ?? 5_000),
    );
  }

  /** Cancels the timers and a pass under way, which ends after the chunk it deleted last. */
  stop(): void {
    for (const t of this.timers) t.cancel();
    this.timers = [];
    this.capsWaiting = false;
    this.pass?.task.cancel();
  }

  /** Bytes in use: pages minus free pages (the file shrinks back after incremental vacuum). */
  usedBytes(): number {
    const pageSize = this.db.pragma('page_size', { simple: true }) as number;
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    const free = this.db.pragma('freelist_count', { simple: true }) as number;
    return (pages - free) * pageSize;
  }

  /**
   * Starts a pass that deletes what is older than the retention, one chunk per turn of the event
   * loop (deleting millions of rows at once blocks the API and the watchdog's ping for seconds);
   * resolves with how many raw readings went. A call while a pass runs joins it.
   */
  retain(): Promise<number> {
    if (this.pass?.task.running) return this.pass.readings;
    const cutoff = this.deps.clock.now() - this.options.retention;
    const deleted = { readings: 0 };
    const task = TurnByTurn.start(this.deps.clock, this.retention(cutoff, deleted), () =>
      this.capsAfterPass(),
    );
    this.pass = { task, readings: task.finished.then(() => deleted.readings) };
    return this.pass.readings;
  }

  /** Brings the store under its caps; returns how many rows went. */
  enforceCaps(): number {
    // Both delete the oldest rows: one at a time keeps what each deletes, and counts, as it was.
    if (this.pass?.task.running) {
      this.capsWaiting = true;
      return 0;
    }
    let deleted = 0;
    try {
      deleted += this.capOutboxRows();
      if (this.usedBytes() <= this.options.maxSize) return deleted;
      const target = this.options.maxSize * 0.9;
      const steps: [string, () => number][] = [
        ['readings', () => this.stmt.oldestReadings.run(DELETE_CHUNK).changes],
        ['results', () => this.stmt.oldestResults.run(DELETE_CHUNK).changes],
        ['late_readings', () => this.stmt.oldestLate.run(DELETE_CHUNK).changes],
        [
          'outbox_forwarded',
          () => {
            const upTo = this.deps.forwardedUpTo();
            return upTo === null ? 0 : this.deps.outbox.deleteForwarded(upTo, DELETE_CHUNK);
          },
        ],
        ['outbox', () => this.dropOutbox(DELETE_CHUNK)],
      ];
      for (const [table, step] of steps) {
        while (this.usedBytes() > target) {
          const n = step();
          if (n === 0) break;
          deleted += n;
          this.deps.metrics.capDeleted.inc({ table }, n);
        }
        if (table === 'readings') this.trimRollups();
        if (this.usedBytes() <= target) break;
      }
      this.reclaim();
      this.deps.log.warn(
        { deleted, maxSize: this.options.maxSize },
        'store over store.maxSize: oldest rows deleted',
      );
    } catch (err) {
      this.deps.log.error({ err }, 'enforcing the store cap failed; will retry');
    }
    return deleted;
  }

  /**
   * The retention pass: the same deletes in the same order as ever, cut into turns; each `yield`
   * hands the event loop back.
   */
  private *retention(cutoff: number, deleted: { readings: number }): Generator<void, void> {
    try {
      yield* this.drain(() => this.deleteOldReadings(cutoff, deleted));
      if (deleted.readings > 0) {
        this.trimRollups();
        yield;
      }
      let outputs = 0;
      for (const stmt of [this.stmt.oldResults, this.stmt.oldDecisions, this.stmt.oldLate]) {
        outputs += yield* this.drain(() => stmt.run(cutoff, DELETE_CHUNK).changes);
      }
      // Rows every upstream acknowledged have served their purpose.
      const upTo = this.deps.forwardedUpTo();
      const forwarded =
        upTo === null ? 0 : yield* this.drain(() => this.deps.outbox.deleteForwarded(upTo, DELETE_CHUNK));
      if (deleted.readings + outputs + forwarded > 0) {
        yield* this.reclaimInTurns();
        this.deps.log.info(
          { readings: deleted.readings, outputs, before: new Date(cutoff).toISOString() },
          'retention removed old data',
        );
      }
    } catch (err) {
      this.deps.log.error({ err }, 'retention failed; will retry');
    }
  }

  /**
   * One chunk of the oldest readings before `cutoff`, with the rollups of the minutes it emptied,
   * so that a long pass deletes those a chunk at a time too (trimRollups finishes the job).
   */
  private deleteOldReadings(cutoff: number, deleted: { readings: number }): number {
    const n = this.db.transaction(() => {
      const changes = this.stmt.oldReadings.run(cutoff, DELETE_CHUNK).changes;
      const oldest = changes > 0 ? (this.stmt.oldestReading.get() as number | null) : null;
      if (oldest !== null) this.stmt.rollupsBefore.run(minuteOf(oldest));
      return changes;
    })();
    deleted.readings += n;
    this.deps.metrics.retentionDeleted.inc(n);
    return n;
  }

  /** Runs `chunk` until it deletes less than a full chunk, yielding after each; returns the total. */
  private *drain(chunk: () => number): Generator<void, number> {
    let total = 0;
    for (;;) {
      const n = chunk();
      total += n;
      yield;
      if (n < DELETE_CHUNK) return total;
    }
  }

  private capsAfterPass(): void {
    if (!this.capsWaiting) return;
    this.capsWaiting = false;
    this.enforceCaps();
  }

  private capOutboxRows(): number {
    const { first, last } = this.deps.outbox.bounds();
    if (first === null || last === null || last - first + 1 <= this.options.maxOutboxRows) return 0;
    let excess = this.deps.outbox.bounds().rows - this.options.maxOutboxRows;
    let deleted = 0;
    const upTo = this.deps.forwardedUpTo();
    while (excess > 0 && upTo !== null) {
      const n = this.deps.outbox.deleteForwarded(upTo, Math.min(DELETE_CHUNK, excess));
      if (n === 0) break;
      excess -= n;
      deleted += n;
      this.deps.metrics.capDeleted.inc({ table: 'outbox_forwarded' }, n);
    }
    while (excess > 0) {
      const n = this.dropOutbox(Math.min(DELETE_CHUNK, excess));
      if (n === 0) break;
      excess -= n;
      deleted += n;
      this.deps.metrics.capDeleted.inc({ table: 'outbox' }, n);
    }
    if (deleted > 0)
      this.deps.log.warn({ deleted, maxRows: this.options.maxOutboxRows }, 'outbox over outbox.maxRows');
    return deleted;
  }

  /** Drops the oldest outbox rows, forwarded or not; the unforwarded ones are counted as lost. */
  private dropOutbox(limit: number): number {
    const upTo = this.deps.forwardedUpTo() ?? 0;
    const { dropped, unforwarded } = this.deps.outbox.dropOldest(limit, upTo);
    if (unforwarded > 0) {
      this.deps.metrics.outboxDropped.inc(unforwarded);
      this.deps.log.error(
        { dropped: unforwarded },
        'outbox rows dropped unforwarded: the store is over its cap',
      );
    }
    return dropped;
  }

  /**
   * Keeps the per-minute rollups equal to the readings after the oldest readings went: the minutes
   * before the oldest remaining reading go, and that reading's minute, perhaps partly deleted, is
   * computed again from what is left of it.
   */
  private trimRollups(): void {
    this.deps.syncSummaries?.();
    const oldest = this.stmt.oldestReading.get() as number | null;
    this.db.transaction(() => {
      if (oldest === null) {
        this.db.exec('DELETE FROM readings_1m');
        return;
      }
      const minute = minuteOf(oldest);
      this.stmt.rollupsBefore.run(minute);
      this.stmt.rollupsOf.run(minute);
      this.stmt.recomputeRollups.run({ minute });
    })();
  }

  private reclaim(): void {
    this.db.pragma('incremental_vacuum');
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }

  /** As reclaim(), a few pages per turn; stops if a turn frees none (a file without auto_vacuum). */
  private *reclaimInTurns(): Generator<void, void> {
    const freePages = () => this.db.pragma('freelist_count', { simple: true }) as number;
    for (let free = freePages(), before = Number.POSITIVE_INFINITY; free > 0 && free < before; ) {
      this.db.pragma(`incremental_vacuum(${VACUUM_CHUNK})`);
      yield;
      before = free;
      free = freePages();
    }
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }
}
