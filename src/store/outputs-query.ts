import type { Db } from './database.js';
import { StatementCache, trimPage } from './statements.js';

export interface OutputsFilter {
  rules?: string[];
  /** Group key fields that must match (e.g. { device: 'boiler-1' }). */
  key?: Record<string, string | null>;
  /** Inclusive, epoch ms: window end for results, `at` for decisions. */
  from?: number;
  /** Exclusive. */
  to?: number;
  order: 'asc' | 'desc';
  limit: number;
  /** Continue after this row id (from a previous page). */
  after?: number;
}

export interface StoredResult {
  id: number;
  rule: string;
  key: Record<string, string | null>;
  start: number;
  end: number;
  count: number;
  values: Record<string, number | null>;
  revision: number;
}

export interface StoredDecision {
  id: number;
  rule: string;
  key: Record<string, string | null>;
  state: string;
  at: number;
  values: Record<string, number | null>;
}

export interface LateFilter {
  rules?: string[];
  devices?: string[];
  metrics?: string[];
  /** Inclusive, epoch ms, of the reading's `ts`. */
  from?: number;
  /** Exclusive. */
  to?: number;
  order: 'asc' | 'desc';
  limit: number;
  /** Continue after this row id (from a previous page). */
  after?: number;
}

/** A stored late reading: one that fitted no live window of the rule. */
export interface StoredLate {
  id: number;
  rule: string;
  device: string;
  metric: string;
  value: number;
  ts: number;
  /** When the rule set it aside. */
  emittedAt: number;
}

export interface Alert {
  rule: string;
  key: Record<string, string | null>;
  since: number | null;
  values: Record<string, number | null> | null;
}

interface Row {
  id: number;
  rule: string;
  key: string;
  start: number;
  end: number;
  count: number;
  values: string;
  revision: number;
  state: string;
  at: number;
}

/**
 * Read-side queries of rule outputs. SQL comes only from fixed fragments; values (and JSON paths
 * of key fields) are bound parameters.
 */
export class OutputsQuery {
  private readonly statements: StatementCache;

  constructor(db: Db) {
    this.statements = new StatementCache(db);
  }

  results(filter: OutputsFilter): { items: StoredResult[]; next: number | null } {
    const page = this.page('results', '"end"', filter);
    return {
      items: page.rows.map((r) => ({
        id: r.id,
        rule: r.rule,
        key: JSON.parse(r.key) as StoredResult['key'],
        start: r.start,
        end: r.end,
        count: r.count,
        values: JSON.parse(r.values) as StoredResult['values'],
        revision: r.revision,
      })),
      next: page.next,
    };
  }

  decisions(filter: OutputsFilter): { items: StoredDecision[]; next: number | null } {
    const page = this.page('decisions', 'at', filter);
    return {
      items: page.rows.map((r) => ({
        id: r.id,
        rule: r.rule,
        key: JSON.parse(r.key) as StoredDecision['key'],
        state: r.state,
        at: r.at,
        values: JSON.parse(r.values) as StoredDecision['values'],
      })),
      next: page.next,
    };
  }

  /** Stored late readings, in the order they were set aside (row id). */
  late(f: LateFilter): { items: StoredLate[]; next: number | null } {
    const where: string[] = [];
    const params: (string | number)[] = [];
    for (const [column, values] of [
      ['rule', f.rules],
      ['device', f.devices],
      ['metric', f.metrics],
    ] as const) {
      if (!values?.length) continue;
      where.push(`${column} IN (${values.map(() => '?').join(',')})`);
      params.push(...values);
    }
    if (f.from !== undefined) {
      where.push('ts >= ?');
      params.push(f.from);
    }
    if (f.to !== undefined) {
      where.push('ts < ?');
      params.push(f.to);
    }
    if (f.after !== undefined) {
      where.push(f.order === 'asc' ? 'id > ?' : 'id < ?');
      params.push(f.after);
    }
    const sql =
      'SELECT id, rule, device, metric, value, ts, emitted_at AS emittedAt FROM late_readings' +
      (where.length ? ` WHERE ${where.join(' AND ')}` : '') +
      ` ORDER BY id ${f.order === 'asc' ? 'ASC' : 'DESC'} LIMIT ?`;
    params.push(f.limit + 1);
    const rows = this.statements.get(sql).all(...params) as StoredLate[];
    const last = trimPage(rows, f.limit);
    return { items: rows, next: last ? last.id : null };
  }

  /** (rule, group) pairs whose decision state is `firing` now, with the transition that started it. */
  alerts(rules?: string[]): Alert[] {
    const rows = this.statements
      .get(
        `SELECT s.rule, s.key,
         (SELECT d.at FROM decisions d WHERE d.rule = s.rule AND d.key = s.key AND d.state = 'firing' ORDER BY d.id DESC LIMIT 1) AS since,
         (SELECT d."values" FROM decisions d WHERE d.rule = s.rule AND d.key = s.key AND d.state = 'firing' ORDER BY d.id DESC LIMIT 1) AS vals
       FROM decision_state s WHERE json_extract(s.state, '$.state') = 'firing' ORDER BY s.rule, s.key`,
      )
      .all() as { rule: string; key: string; since: number | null; vals: string | null }[];
    return rows
      .filter((r) => !rules || rules.includes(r.rule))
      .map((r) => ({
        rule: r.rule,
        key: JSON.parse(r.key) as Alert['key'],
        since: r.since,
        values: r.vals ? (JSON.parse(r.vals) as Alert['values']) : null,
      }));
  }

  private page(
    table: 'results' | 'decisions',
    time: string,
    f: OutputsFilter,
  ): { rows: Row[]; next: number | null } {
    const where: string[] = [];
    const params: (string | number | null)[] = [];
    if (f.rules?.length) {
      where.push(`rule IN (${f.rules.map(() => '?').join(',')})`);
      params.push(...f.rules);
    }
    for (const [field, value] of Object.entries(f.key ?? {})) {
      where.push(value === null ? 'json_extract(key, ?) IS NULL' : 'json_extract(key, ?) = ?');
      params.push(`$."${field}"`);
      if (value !== null) params.push(value);
    }
    if (f.from !== undefined) {
      where.push(`${time} >= ?`);
      params.push(f.from);
    }
    if (f.to !== undefined) {
      where.push(`${time} < ?`);
      params.push(f.to);
    }
    if (f.after !== undefined) {
      where.push(f.order === 'asc' ? 'id > ?' : 'id < ?');
      params.push(f.after);
    }
    const sql =
      `SELECT * FROM ${table}` +
      (where.length ? ` WHERE ${where.join(' AND ')}` : '') +
      ` ORDER BY id ${f.order === 'asc' ? 'ASC' : 'DESC'} LIMIT ?`;
    params.push(f.limit + 1);
    const rows = this.statements.get(sql).all(...params) as Row[];
    const last = trimPage(rows, f.limit);
    return { rows, next: last ? last.id : null };
  }
}
