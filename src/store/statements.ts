import type { Statement } from 'better-sqlite3';
import type { Db } from './database.js';

/**
 * Prepared statements by SQL text, for queries assembled from a few fixed fragments (filters
 * present or absent): each shape is prepared once. Bounded, since shapes are few.
 */
export class StatementCache {
  private readonly statements = new Map<string, Statement>();

  constructor(
    private readonly db: Db,
    private readonly max = 256,
  ) {}

  get(sql: string): Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      if (this.statements.size >= this.max) this.statements.clear();
      this.statements.set(sql, s);
    }
    return s;
  }
}

/**
 * A page from rows fetched with `LIMIT limit + 1`: the extra row only says there is more. Returns
 * the last row of the page when there is a next one (the caller's cursor), else null.
 */
export function trimPage<T>(rows: T[], limit: number): T | null {
  if (rows.length <= limit) return null;
  rows.length = limit;
  return rows[limit - 1] as T;
}
