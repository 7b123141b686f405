import Database from 'better-sqlite3';
import type { Db } from '../store/database.js';
import { schemaVersion } from '../store/migrations.js';

/** The first schema whose readings a backtest can read (clustered by time, with `seq`). */
const FIRST_READABLE_SCHEMA = 5;

/** Why the store cannot be read: missing, not SQLite, or from an older tidegate. */
export class HistoryOpenError extends Error {
  override readonly name = 'HistoryOpenError';
}

/**
 * The store opened read-only for a backtest, beside a gateway that may be running: under WAL a
 * reader never blocks the writer, and nothing here can change the file.
 */
export function openHistory(path: string): Db {
  let db: Db;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new HistoryOpenError(`cannot open the store ${path} to read: ${(err as Error).message}`);
  }
  try {
    const version = schemaVersion(db);
    if (version < FIRST_READABLE_SCHEMA) {
      throw new Error(
        version === 0
          ? 'it is not a tidegate store'
          : `its schema (version ${version}) is older than backtests read: start the gateway on it once to upgrade it`,
      );
    }
    db.pragma('busy_timeout = 5000');
    db.pragma('cache_size = -4000');
  } catch (err) {
    db.close();
    throw new HistoryOpenError(`cannot read the store ${path}: ${(err as Error).message}`);
  }
  return db;
}
