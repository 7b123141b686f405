import type { Statement } from 'better-sqlite3';
import type { BacktestState } from '../model/backtest.js';
import type { Db } from './database.js';
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

const COLUMNS = `id, created, state, rule, rule_id AS ruleId, from_ts AS "from", to_ts AS "to", devices,
  readings, fraction, summary, records, truncated, finished, error`;

type Raw = Omit<BacktestRow, 'truncated'> & { truncated: number };
const toRow = (r: Raw): BacktestRow => ({ ...r, truncated: r.truncated === 1 });

/**
 * Backtest jobs and their records (SPEC §5), on the gateway's connection: the gateway is the only
 * writer of the store; a job's worker only reads readings on a connection of its own and hands its
 * records here in batches.
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
