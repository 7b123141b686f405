import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { Db } from './database.js';
import { MINUTE, minuteOf } from './minutes.js';
import type { Outbox } from './outbox.js';

const CHUNK = 5_000;

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
 * unforwarded rows dropped, and counted. Freed pages are returned to the file system.
 */
export class StoreMaintenance {
  private timers: TimerHandle[] = [];
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

  stop(): void {
    for (const t of this.timers) t.cancel();
    this.timers = [];
  }

  /** Bytes in use: pages minus free pages (the file shrinks back after incremental vacuum). */
  usedBytes(): number {
    const pageSize = this.db.pragma('page_size', { simple: true }) as number;
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    const free = this.db.pragma('freelist_count', { simple: true }) as number;
    return (pages - free) * pageSize;
  }

  /** Deletes what is older than the retention; returns how many raw readings went. */
  retain(): number {
    const cutoff = this.deps.clock.now() - this.options.retention;
    let readings = 0;
    try {
      readings = this.drain(this.stmt.oldReadings, cutoff);
      if (readings > 0) this.trimRollups();
      const outputs =
        this.drain(this.stmt.oldResults, cutoff) +
        this.drain(this.stmt.oldDecisions, cutoff) +
        this.drain(this.stmt.oldLate, cutoff);
      // Rows every upstream acknowledged have served their purpose.
      const upTo = this.deps.forwardedUpTo();
      let forwarded = 0;
      if (upTo !== null) {
        for (let n = CHUNK; n === CHUNK; forwarded += n) n = this.deps.outbox.deleteForwarded(upTo, CHUNK);
      }
      if (readings > 0) this.deps.metrics.retentionDeleted.inc(readings);
      if (readings + outputs + forwarded > 0) {
        this.reclaim();
        this.deps.log.info(
          { readings, outputs, before: new Date(cutoff).toISOString() },
          'retention removed old data',
        );
      }
    } catch (err) {
      this.deps.log.error({ err }, 'retention failed; will retry');
    }
    return readings;
  }

  /** Brings the store under its caps; returns how many rows went. */
  enforceCaps(): number {
    let deleted = 0;
    try {
      deleted += this.capOutboxRows();
      if (this.usedBytes() <= this.options.maxSize) return deleted;
      const target = this.options.maxSize * 0.9;
      const steps: [string, () => number][] = [
        ['readings', () => this.stmt.oldestReadings.run(CHUNK).changes],
        ['results', () => this.stmt.oldestResults.run(CHUNK).changes],
        ['late_readings', () => this.stmt.oldestLate.run(CHUNK).changes],
        [
          'outbox_forwarded',
          () => {
            const upTo = this.deps.forwardedUpTo();
            return upTo === null ? 0 : this.deps.outbox.deleteForwarded(upTo, CHUNK);
          },
        ],
        ['outbox', () => this.dropOutbox(CHUNK)],
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

  private capOutboxRows(): number {
    const { first, last } = this.deps.outbox.bounds();
    if (first === null || last === null || last - first + 1 <= this.options.maxOutboxRows) return 0;
    let excess = this.deps.outbox.bounds().rows - this.options.maxOutboxRows;
    let deleted = 0;
    const upTo = this.deps.forwardedUpTo();
    while (excess > 0 && upTo !== null) {
      const n = this.deps.outbox.deleteForwarded(upTo, Math.min(CHUNK, excess));
      if (n === 0) break;
      excess -= n;
      deleted += n;
      this.deps.metrics.capDeleted.inc({ table: 'outbox_forwarded' }, n);
    }
    while (excess > 0) {
      const n = this.dropOutbox(Math.min(CHUNK, excess));
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

  private drain(stmt: { run(...args: unknown[]): { changes: number } }, cutoff: number): number {
    let total = 0;
    for (;;) {
      const n = stmt.run(cutoff, CHUNK).changes;
      total += n;
      if (n < CHUNK) return total;
    }
  }

  private reclaim(): void {
    this.db.pragma('incremental_vacuum');
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }
}
