/**
 * store/ — SQLite: schema and migrations, the group-committing reading writer, rule outputs and
 * decision state, the outbox, queries, summaries, retention and caps, what the rebuild reads. May
 * import model/, engine/ (record types) and runtime/.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { MIGRATIONS, type Migration, migrate } from './migrations.js';

export type Db = Database.Database;

export interface OpenOptions {
  synchronous: 'off' | 'normal' | 'full';
  /** The schema to bring the file to (default: the store's). */
  migrations?: readonly Migration[];
}

export class StoreOpenError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
    this.name = 'StoreOpenError';
  }
}

/**
 * Opens (creating if needed) the SQLite database in WAL mode and brings its schema up to date.
 * WAL plus `synchronous=normal` loses at most the last commits on power loss and never corrupts;
 * `full` survives that too at the cost of one more fsync per commit (SD-card wear).
 */
export function openDatabase(path: string, options: OpenOptions): Db {
  let db: Db;
  try {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    db = new Database(path);
  } catch (err) {
    throw new StoreOpenError(path, `cannot open the database ${path}: ${(err as Error).message}`);
  }
  try {
    // Must precede the first table so that freed pages can be returned to the file system.
    db.pragma('auto_vacuum = INCREMENTAL');
    db.pragma('journal_mode = WAL');
    connectionPragmas(db, options.synchronous);
    const check = db.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw new Error(`integrity check failed: ${String(check)}`);
    migrate(db, options.migrations ?? MIGRATIONS);
  } catch (err) {
    db.close();
    throw new StoreOpenError(path, `the database ${path} is not usable: ${(err as Error).message}`);
  }
  return db;
}

/** SQLite checkpoints the WAL once it holds this much (the writer's worker: see WalCheckpoints). */
export const CHECKPOINT_BYTES = 8 * 1024 * 1024;

/** How long a connection waits for another's lock before SQLITE_BUSY. */
export const BUSY_TIMEOUT_MS = 5000;

/** The settings each connection to the store sets for itself (the WAL mode is the file's). */
function connectionPragmas(db: Db, synchronous: OpenOptions['synchronous']): void {
  db.pragma(`synchronous = ${synchronous.toUpperCase()}`);
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  db.pragma('temp_store = MEMORY');
  // The page cache: better-sqlite3 builds SQLite with 16 MB per connection, which fills as the
  // database grows (+10 MB of RSS after a minute at 10 k readings/s). The pages a group commit
  // touches are a few hundred KB: 2 MB writes just as little and as fast (bench:store).
  db.pragma('cache_size = -2000');
  // Checkpoint once the WAL holds 8 MiB of pages rather than SQLite's 4 MiB: a page rewritten by
  // many commits (the newest readings' pages, the summaries) is copied into the database once per
  // checkpoint, so half as many checkpoints write fewer bytes to the card (bench:footprint). The
  // writer's worker checkpoints outside its commits instead (WalCheckpoints).
  db.pragma(
    `wal_autocheckpoint = ${Math.round(CHECKPOINT_BYTES / (db.pragma('page_size', { simple: true }) as number))}`,
  );
  // The WAL is truncated back to this after checkpoints instead of staying at its high-water mark.
  db.pragma('journal_size_limit = 16777216');
}

/**
 * A second connection to a store `openDatabase` opened (and migrated) before: the writer's worker
 * thread writes the readings through it. Its own page cache, busy timeout and checkpoints.
 */
export function openWriteConnection(path: string, synchronous: OpenOptions['synchronous']): Db {
  const db = new Database(path, { fileMustExist: true });
  try {
    connectionPragmas(db, synchronous);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}
