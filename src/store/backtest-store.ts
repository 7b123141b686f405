import type { Statement } from 'better-sqlite3';
import type { BacktestState } from '../model/backtest.js';
import { type Db, openDatabase } from './database.js';
import type { Migration } from './migrations.js';
import { StatementCache, trimPage } from './statements.js';

/** A backtest job as stored (times in epoch ms). */
export interface BacktestRow {
  id: string;
  created: number;
  state: BacktestState;
  /** The rule's spec as it ran, JSON. */
  rule: string;
  /** The running rule it was taken from (`ruleId`), if any. */
  ruleId: string | null;
  from: number;
  to: number;
  /** JSON list of device ids, or null for every device. */
  devices: string | null;
  readings: number;
  fraction: number;
  /** The summary JSON when the job ended; null while it runs. */
  summary: string | null;
  /** Records kept (at most the cap). */
  records: number;
  truncated: boolean;
  finished: number | null;
  error: string | null;
}

/** What a job's end writes. */
export interface BacktestEnd {
  state: Exclude<BacktestState, 'running'>;
  readings: number;
  fraction: number;
  summary: string;
  truncated: boolean;
  finished: number;
  error: string | null;
}

export interface StoredBacktestRecord {
  n: number;
  type: string;
  /** The record's JSON line. */
  record: string;
}

/** The schema of the backtests file (its own `user_version`). */
export const BACKTEST_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'backtest jobs and their records',
    sql: `
      -- A backtest (SPEC §5): a rule run over stored readings as a job. Progress and summary are
      -- written when the job ends (not while it runs: SD-card wear); a job found running at start
      -- was interrupted by a crash and is marked failed.
      CREATE TABLE backtests (
        id TEXT PRIMARY KEY,
        created INTEGER NOT NULL,
        state TEXT NOT NULL,
        rule TEXT NOT NULL,
        rule_id TEXT,
        from_ts INTEGER NOT NULL,
        to_ts INTEGER NOT NULL,
        devices TEXT,
        readings INTEGER NOT NULL DEFAULT 0,
        fraction REAL NOT NULL DEFAULT 0,
        summary TEXT,
        records INTEGER NOT NULL DEFAULT 0,
        truncated INTEGER NOT NULL DEFAULT 0,
        finished INTEGER,
        error TEXT
      ) WITHOUT ROWID;
      CREATE INDEX backtests_created ON backtests (created);
      -- Its records in emission order (n from 0), as tidegate replay prints them.
      CREATE TABLE backtest_records (
        job TEXT NOT NULL,
        n INTEGER NOT NULL,
        type TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (job, n)
      ) WITHOUT ROWID;
    `,
  },
];

/**
 * Where backtests are kept: a SQLite file of their own beside the store (`tidegate.db` →
 * `tidegate-backtests.db`). A job's worker writes its records there on its own connection, so the
 * gateway neither stores them on its event loop nor shares a write lock with the readings' writer.
 */
export function backtestsPath(storePath: string): string {
  return storePath.endsWith('.db') ? `${storePath.slice(0, -3)}-backtests.db` : `${storePath}-backtests.db`;
}

export function openBacktestsDatabase(path: string, synchronous: 'off' | 'normal' | 'full' = 'normal'): Db {
  return openDatabase(path, { synchronous, migrations: BACKTEST_MIGRATIONS });
}

const COLUMNS = `id, created, state, rule, rule_id AS ruleId, from_ts AS "from", to_ts AS "to", devices,
  readings, fraction, summary, records, truncated, finished, error`;

type Raw = Omit<BacktestRow, 'truncated'> & { truncated: number };
const toRow = (r: Raw): BacktestRow => ({ ...r, truncated: r.truncated === 1 });

/**
 * Backtest jobs and their records (SPEC §5) in the backtests file. The gateway creates, ends,
 * lists and deletes jobs; the job's worker, on a connection of its own, appends its records and
 * makes room (keepNewest) before it starts: one job runs at a time, so the two never write at once
 * but for a job's end, which follows the worker's last commit.
 */
export class BacktestStore {
  private readonly insertJob: Statement;
  private readonly insertRecord: Statement;
  private readonly countRecords: Statement;
  private readonly endJob: Statement;
  private readonly one: Statement;
  private readonly all: Statement;
  private readonly deleteJob: Statement;
  private readonly deleteRecords: Statement;
  private readonly interrupt: Statement;
  private readonly deleteSlice: Statement;
  private readonly anyRecord: Statement;
  private readonly statements: StatementCache;
  readonly append: (id: string, first: number, records: readonly { type: string; line: string }[]) => void;
  readonly remove: (id: string) => boolean;

  constructor(db: Db) {
    this.statements = new StatementCache(db, 16);
    this.insertJob = db.prepare(
      `INSERT INTO backtests (id, created, state, rule, rule_id, from_ts, to_ts, devices)
       VALUES (@id, @created, 'running', @rule, @ruleId, @from, @to, @devices)`,
    );
    this.insertRecord = db.prepare('INSERT INTO backtest_records (job, n, type, record) VALUES (?, ?, ?, ?)');
    this.countRecords = db.prepare('UPDATE backtests SET records = records + ? WHERE id = ?');
    this.endJob = db.prepare(
      `UPDATE backtests SET state = @state, readings = @readings, fraction = @fraction, summary = @summary,
       truncated = @truncated, finished = @finished, error = @error WHERE id = @id AND state = 'running'`,
    );
    this.one = db.prepare(`SELECT ${COLUMNS} FROM backtests WHERE id = ?`);
    this.all = db.prepare(`SELECT ${COLUMNS} FROM backtests ORDER BY created DESC, id DESC`);
    this.deleteJob = db.prepare('DELETE FROM backtests WHERE id = ?');
    this.deleteRecords = db.prepare('DELETE FROM backtest_records WHERE job = ?');
    this.deleteSlice = db.prepare('DELETE FROM backtest_records WHERE job = ? AND n < ?');
    this.anyRecord = db.prepare('SELECT 1 FROM backtest_records WHERE job = ? LIMIT 1');
    this.interrupt = db.prepare(
      `UPDATE backtests SET state = 'failed', error = ?, finished = ? WHERE state = 'running'`,
    );
    this.append = db.transaction(
      (id: string, first: number, records: readonly { type: string; line: string }[]) => {
        for (let i = 0; i < records.length; i++) {
          const r = records[i] as { type: string; line: string };
          this.insertRecord.run(id, first + i, r.type, r.line);
        }
        this.countRecords.run(records.length, id);
      },
    );
    this.remove = db.transaction((id: string) => {
      this.deleteRecords.run(id);
      return this.deleteJob.run(id).changes > 0;
    });
  }

  create(job: Pick<BacktestRow, 'id' | 'created' | 'rule' | 'ruleId' | 'from' | 'to' | 'devices'>): void {
    this.insertJob.run(job);
  }

  /** Ends a running job; false if it was not running (ended already). */
  end(id: string, end: BacktestEnd): boolean {
    return this.endJob.run({ ...end, id, truncated: end.truncated ? 1 : 0 }).changes > 0;
  }

  get(id: string): BacktestRow | null {
    const r = this.one.get(id) as Raw | undefined;
    return r ? toRow(r) : null;
  }

  /** Every job, newest first. */
  list(): BacktestRow[] {
    return (this.all.all() as Raw[]).map(toRow);
  }

  /** A page of a job's records in emission order, after record `after`, of the given types. */
  records(
    id: string,
    page: { types?: readonly string[]; after?: number; limit: number },
  ): { items: StoredBacktestRecord[]; next: number | null } {
    const where = ['job = ?'];
    const params: (string | number)[] = [id];
    if (page.after !== undefined) {
      where.push('n > ?');
      params.push(page.after);
    }
    if (page.types?.length) {
      where.push(`type IN (${page.types.map(() => '?').join(',')})`);
      params.push(...page.types);
    }
    params.push(page.limit + 1);
    const rows = this.statements
      .get(`SELECT n, type, record FROM backtest_records WHERE ${where.join(' AND ')} ORDER BY n LIMIT ?`)
      .all(...params) as StoredBacktestRecord[];
    const last = trimPage(rows, page.limit);
    return { items: rows, next: last ? last.n : null };
  }

  /** Marks every job still `running` as failed (they ran in a process that is gone); returns how many. */
  interrupted(reason: string, at: number): number {
    return this.interrupt.run(reason, at).changes;
  }

  /**
   * Deletes a job, then its records a slice at a time, yielding to the event loop between slices
   * (a job keeps up to 100,000 records). False for an unknown job.
   */
  async removeInTurns(id: string, slice = 5000): Promise<boolean> {
    if (this.deleteJob.run(id).changes === 0) return false;
    for (let n = 0; ; n += slice) {
      const left = this.deleteSlice.run(id, n + slice).changes;
      if (left === 0 && this.anyRecord.get(id) === undefined) return true;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** Deletes the oldest ended jobs (with their records) until at most `keep` remain; returns their ids. */
  keepNewest(keep: number): string[] {
    const jobs = this.list();
    const gone: string[] = [];
    for (let i = jobs.length - 1; i >= 0 && jobs.length - gone.length > keep; i--) {
      const job = jobs[i] as BacktestRow;
      if (job.state === 'running') continue;
      this.remove(job.id);
      gone.push(job.id);
    }
    return gone;
  }
}
