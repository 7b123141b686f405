import type Database from 'better-sqlite3';

/**
 * Versioned schema changes, applied in order inside one transaction each; `PRAGMA user_version`
 * records the last one applied. Never edit a released migration: add the next one.
 */
export interface Migration {
  version: number;
  description: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'devices, series and raw readings',
    sql: `
      CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL
      ) WITHOUT ROWID;
      -- One row per (device, metric): readings refer to it by a small integer, and it holds the
      -- latest value so that /readings/latest and /devices never scan readings.
      CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        device TEXT NOT NULL,
        metric TEXT NOT NULL,
        unit TEXT,
        last_ts INTEGER,
        last_value REAL,
        UNIQUE (device, metric)
      );
      -- id is the arrival order. The unique index de-duplicates redeliveries (same series, ts and
      -- value) and serves per-series time ranges; readings_ts serves time ranges over all series
      -- and retention.
      CREATE TABLE readings (
        id INTEGER PRIMARY KEY,
        series_id INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        value REAL NOT NULL,
        tags TEXT
      );
      CREATE UNIQUE INDEX readings_series_ts ON readings (series_id, ts, value);
      CREATE INDEX readings_ts ON readings (ts);
    `,
  },
];

export function schemaVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

export function migrate(db: Database.Database, migrations: readonly Migration[] = MIGRATIONS): number {
  const current = schemaVersion(db);
  const latest = migrations.at(-1)?.version ?? 0;
  if (current > latest) {
    throw new Error(
      `the database has schema version ${current}, newer than this tidegate knows (${latest}); upgrade tidegate`,
    );
  }
  for (const m of migrations) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
  return schemaVersion(db);
}
