import type { Statement } from 'better-sqlite3';
import type { Db } from './database.js';

/** Appends a row (type, rule, body, created_at); the seq is the rowid. */
export const OUTBOX_APPEND_SQL = 'INSERT INTO outbox (type, rule, body, created_at) VALUES (?, ?, ?, ?)';

/** One outbox row, as upstreams read it. */
export interface OutboxRow {
  seq: number;
  type: string;
  rule: string | null;
  body: string;
  createdAt: number;
}

/**
 * The outbox (SPEC §4): every record that goes upstream gets the next `seq`, in the same
 * transaction as the record itself. AUTOINCREMENT keeps `seq` strictly increasing and never reused,
 * even after the newest rows were deleted or the process crashed. Each upstream keeps its own
 * durable cursor: the last seq it acknowledged.
 */
export class Outbox {
  private readonly stmt: Record<
    'append' | 'batch' | 'cursor' | 'saveCursor' | 'bounds' | 'oldestAfter' | 'countAfter',
    Statement
  >;

  constructor(private readonly db: Db) {
    this.stmt = {
      append: db.prepare(OUTBOX_APPEND_SQL),
      batch: db.prepare(
        'SELECT seq, type, rule, body, created_at AS createdAt FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?',
      ),
      cursor: db.prepare('SELECT acked FROM upstream_cursors WHERE upstream = ?').pluck(),
      saveCursor: db.prepare(
        `INSERT INTO upstream_cursors (upstream, acked) VALUES (?, ?)
         ON CONFLICT (upstream) DO UPDATE SET acked = max(acked, excluded.acked)`,
      ),
      bounds: db.prepare('SELECT min(seq) AS first, max(seq) AS last, count(*) AS rows FROM outbox'),
      oldestAfter: db.prepare('SELECT created_at FROM outbox WHERE seq > ? ORDER BY seq LIMIT 1').pluck(),
      countAfter: db.prepare('SELECT count(*) FROM outbox WHERE seq > ?').pluck(),
    };
  }

  /** Appends inside the caller's transaction; returns the seq. */
  append(type: string, rule: string | null, body: string, at: number): number {
    return Number(this.stmt.append.run(type, rule, body, at).lastInsertRowid);
  }

  /** Up to `limit` rows after `seq`, in order. */
  after(seq: number, limit: number): OutboxRow[] {
    return this.stmt.batch.all(seq, limit) as OutboxRow[];
  }

  cursor(upstream: string): number {
    return (this.stmt.cursor.get(upstream) as number | undefined) ?? 0;
  }

  saveCursor(upstream: string, acked: number): void {
    this.stmt.saveCursor.run(upstream, acked);
  }

  /** Rows not yet acknowledged by an upstream whose cursor is `acked`, and the age of the oldest. */
  backlog(acked: number, now: number): { rows: number; oldestAgeMs: number | null } {
    const oldest = this.stmt.oldestAfter.get(acked) as number | undefined;
    if (oldest === undefined) return { rows: 0, oldestAgeMs: null };
    return { rows: this.stmt.countAfter.get(acked) as number, oldestAgeMs: Math.max(0, now - oldest) };
  }

  bounds(): { first: number | null; last: number | null; rows: number } {
    return this.stmt.bounds.get() as { first: number | null; last: number | null; rows: number };
  }

  /** Deletes rows every upstream has acknowledged (seq ≤ `upTo`), at most `limit`; returns how many. */
  deleteForwarded(upTo: number, limit: number): number {
    return this.db
      .prepare('DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE seq <= ? ORDER BY seq LIMIT ?)')
      .run(upTo, limit).changes;
  }

  /**
   * Drops the oldest rows whatever their state (the cap's last resort): how many went, and how many
   * of them no upstream had acknowledged (`forwardedUpTo`: the smallest cursor).
   */
  dropOldest(limit: number, forwardedUpTo: number): { dropped: number; unforwarded: number } {
    return this.db.transaction(() => {
      const unforwarded = this.db
        .prepare('SELECT count(*) FROM (SELECT seq FROM outbox ORDER BY seq LIMIT ?) WHERE seq > ?')
        .pluck()
        .get(limit, forwardedUpTo) as number;
      const dropped = this.db
        .prepare('DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)')
        .run(limit).changes;
      return { dropped, unforwarded };
    })();
  }
}
