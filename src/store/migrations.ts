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
  {
    version: 2,
    description: 'rule outputs: results, decisions, late readings, decision state',
    sql: `
      -- Every revision of every window result, as emitted (SPEC §2 output records).
      CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        rule TEXT NOT NULL,
        key TEXT NOT NULL,
        start INTEGER NOT NULL,
        "end" INTEGER NOT NULL,
        count INTEGER NOT NULL,
        "values" TEXT NOT NULL,
        revision INTEGER NOT NULL,
        emitted_at INTEGER NOT NULL
      );
      CREATE INDEX results_rule_end ON results (rule, "end");
      CREATE TABLE decisions (
        id INTEGER PRIMARY KEY,
        rule TEXT NOT NULL,
        key TEXT NOT NULL,
        state TEXT NOT NULL,
        at INTEGER NOT NULL,
        "values" TEXT NOT NULL,
        emitted_at INTEGER NOT NULL
      );
      CREATE INDEX decisions_rule_at ON decisions (rule, at);
      -- The late side output: readings that fitted no live window of a rule.
      CREATE TABLE late_readings (
        id INTEGER PRIMARY KEY,
        rule TEXT NOT NULL,
        device TEXT NOT NULL,
        metric TEXT NOT NULL,
        value REAL NOT NULL,
        ts INTEGER NOT NULL,
        emitted_at INTEGER NOT NULL
      );
      CREATE INDEX late_readings_rule_ts ON late_readings (rule, ts);
      -- The decision state machine of each (rule, group), restored at start.
      CREATE TABLE decision_state (
        rule TEXT NOT NULL,
        key TEXT NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (rule, key)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 3,
    description: 'the outbox and upstream cursors',
    sql: `
      -- AUTOINCREMENT: seq is never reused, even after the newest rows are deleted (SPEC §4).
      CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        type TEXT NOT NULL,
        rule TEXT,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL
      );
      CREATE TABLE upstream_cursors (
        upstream TEXT PRIMARY KEY,
        acked INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX results_end ON results ("end");
      CREATE INDEX decisions_at ON decisions (at);
      CREATE INDEX late_readings_ts ON late_readings (ts);
    `,
  },
  {
    version: 4,
    description: 'rules created through the API',
    sql: `
      -- The spec is stored as the user wrote it (JSON). A rowid table: rowid is creation order,
      -- which an upsert (PUT replacing a rule) keeps.
      CREATE TABLE rules (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 5,
    description: 'readings clustered by time, with per-minute rollups (SD-card wear)',
    sql: `
      -- One b-tree in time order: a group commit appends to the last few pages instead of touching
      -- one page per series in two indexes (about 70 bytes written per reading instead of 370).
      -- The key de-duplicates redeliveries as before; seq is the arrival order (it was the rowid).
      CREATE TABLE readings_v5 (
        ts INTEGER NOT NULL,
        series_id INTEGER NOT NULL,
        value REAL NOT NULL,
        seq INTEGER NOT NULL,
        tags TEXT,
        PRIMARY KEY (ts, series_id, value)
      ) WITHOUT ROWID;
      INSERT INTO readings_v5 (ts, series_id, value, seq, tags)
        SELECT ts, series_id, value, id, tags FROM readings;
      -- The newest seq of each series: the writer continues after the largest at start.
      ALTER TABLE series ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
      UPDATE series SET last_seq = coalesce((SELECT max(id) FROM readings WHERE series_id = series.id), 0);
      DROP TABLE readings;
      ALTER TABLE readings_v5 RENAME TO readings;
      -- count/sum/min/max of each series per minute, kept with the readings in the same commit, so
      -- that a downsampled query over a day reads 1,440 rows per series, not every reading of every
      -- series in that day.
      CREATE TABLE readings_1m (
        minute INTEGER NOT NULL,
        series_id INTEGER NOT NULL,
        count INTEGER NOT NULL,
        sum REAL NOT NULL,
        min REAL NOT NULL,
        max REAL NOT NULL,
        PRIMARY KEY (minute, series_id)
      ) WITHOUT ROWID;
      INSERT INTO readings_1m (minute, series_id, count, sum, min, max)
        SELECT ts - (((ts % 60000) + 60000) % 60000) AS minute, series_id, count(*), sum(value), min(value), max(value)
        FROM readings GROUP BY minute, series_id;
    `,
  },
  {
    version: 6,
    description: 'a marker for summaries written behind the readings (SD-card wear)',
    sql: `
      -- Small durable state of the store's own. 'summaries_behind_from': the minute from which
      -- readings_1m and series.last_* may lag the readings (written every store.summaryInterval,
      -- not in every commit); a start after a crash recomputes them from the readings after it.
      CREATE TABLE store_state (
        key TEXT PRIMARY KEY,
        value INTEGER
      ) WITHOUT ROWID;
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
