import Database from 'better-sqlite3';

/** The outbox's last seq in a store file (every row ever appended, forwarded or not), read-only. */
export function lastSeq(dbFile: string): number {
  const db = new Database(dbFile, { readonly: true });
  try {
    return (
      (db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").pluck().get() as
        | number
        | undefined) ?? 0
    );
  } finally {
    db.close();
  }
}
