import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { Db } from './database.js';

const CHUNK = 5_000;

/**
 * Deletes raw readings older than `retention` (by event time), in small chunks so that no single
 * transaction holds the writer back, and hands freed pages back to the file system.
 */
export class Retention {
  private timer: TimerHandle | null = null;
  private readonly deleteChunk;

  constructor(
    private readonly db: Db,
    private readonly retention: number,
    private readonly deps: { clock: Clock; metrics: Metrics; log: Logger },
  ) {
    this.deleteChunk = db.prepare(
      'DELETE FROM readings WHERE id IN (SELECT id FROM readings WHERE ts < ? LIMIT ?)',
    );
  }

  /** Runs now and then every `min(retention / 10, 1 h)`. */
  start(): void {
    this.run();
    const every = Math.max(60_000, Math.min(this.retention / 10, 3_600_000));
    this.timer = this.deps.clock.setInterval(() => this.run(), every);
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = null;
  }

  /** Deletes what is due; returns how many readings went. */
  run(): number {
    const cutoff = this.deps.clock.now() - this.retention;
    let total = 0;
    try {
      for (;;) {
        const n = this.deleteChunk.run(cutoff, CHUNK).changes;
        total += n;
        if (n < CHUNK) break;
      }
      if (total > 0) {
        this.db.pragma('incremental_vacuum');
        this.deps.metrics.retentionDeleted.inc(total);
        this.deps.log.info(
          { deleted: total, before: new Date(cutoff).toISOString() },
          'retention removed old readings',
        );
      }
    } catch (err) {
      this.deps.log.error({ err }, 'retention failed; will retry');
    }
    return total;
  }
}
