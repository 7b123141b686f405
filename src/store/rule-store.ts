import type { Statement } from 'better-sqlite3';
import type { Db } from './database.js';

/** A rule created through the API, as stored: its spec exactly as the user wrote it. */
export interface StoredRule {
  id: string;
  spec: unknown;
  createdAt: number;
  updatedAt: number;
}

interface Row {
  id: string;
  spec: string;
  created_at: number;
  updated_at: number;
}

function fromRow(row: Row): StoredRule {
  return {
    id: row.id,
    spec: JSON.parse(row.spec) as unknown,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/**
 * The `rules` table (migration 4): rules created through the REST API. Changing a rule also drops
 * its persisted decision state, in the same transaction: a replaced or deleted rule starts fresh.
 */
export class RuleStore {
  private readonly stmt: Record<'list' | 'get' | 'upsert' | 'delete' | 'dropState', Statement>;

  constructor(private readonly db: Db) {
    this.stmt = {
      list: db.prepare('SELECT id, spec, created_at, updated_at FROM rules ORDER BY created_at, rowid'),
      get: db.prepare('SELECT id, spec, created_at, updated_at FROM rules WHERE id = ?'),
      // created_at is kept on replace: the rule keeps its place in creation order.
      upsert: db.prepare(
        `INSERT INTO rules (id, spec, created_at, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at`,
      ),
      delete: db.prepare('DELETE FROM rules WHERE id = ?'),
      dropState: db.prepare('DELETE FROM decision_state WHERE rule = ?'),
    };
  }

  /** Every API rule in creation order. */
  list(): StoredRule[] {
    return (this.stmt.list.all() as Row[]).map(fromRow);
  }

  get(id: string): StoredRule | null {
    const row = this.stmt.get.get(id) as Row | undefined;
    return row ? fromRow(row) : null;
  }

  /** Creates or replaces the rule and forgets its decision state, in one transaction. */
  save(id: string, spec: unknown, now: number): StoredRule {
    return this.db.transaction(() => {
      this.stmt.upsert.run(id, JSON.stringify(spec), now, now);
      this.stmt.dropState.run(id);
      return this.get(id) as StoredRule;
    })();
  }

  /** Deletes the rule and its decision state; false if there was no such rule. */
  delete(id: string): boolean {
    return this.db.transaction(() => {
      if (this.stmt.delete.run(id).changes === 0) return false;
      this.stmt.dropState.run(id);
      return true;
    })();
  }
}
