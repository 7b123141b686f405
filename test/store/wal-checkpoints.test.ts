import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { afterEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { type Db, openDatabase, openWriteConnection } from '../../src/store/database.js';
import { type CheckpointResult, WalCheckpoints } from '../../src/store/wal-checkpoints.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

const BYTES = 256 * 1024;
/** Large, so that a checkpoint waiting for a reader would show in its time. */
const BUSY_TIMEOUT = 20_000;

/** A file store, the writer's own connection to it and its checkpoints, on a settable clock. */
function rig(presync = true) {
  const dir = makeTempDir('tidegate-wal-checkpoints-');
  const path = dir.file('store.db');
  const main = openDatabase(path, { synchronous: 'normal' });
  const writer = openWriteConnection(path, 'normal');
  writer.exec('CREATE TABLE IF NOT EXISTS filler (id INTEGER PRIMARY KEY, data BLOB)');
  const results: CheckpointResult[] = [];
  let waiting: (() => void) | null = null;
  const clock = { now: 1_000_000 };
  const checkpoints = new WalCheckpoints(writer, {
    walPath: `${path}-wal`,
    bytes: BYTES,
    busyTimeout: BUSY_TIMEOUT,
    presync,
    now: () => clock.now,
    done: (r) => {
      results.push(r);
      waiting?.();
    },
  });
  let next = 0;
  return {
    dir,
    path,
    main,
    writer,
    checkpoints,
    results,
    clock,
    walSize: () => statSync(`${path}-wal`).size,
    /** Commits `bytes` of rows through the writer's connection, 4 KiB a row. */
    write(bytes: number): void {
      const insert = writer.prepare('INSERT INTO filler (id, data) VALUES (?, randomblob(4096))');
      writer.transaction(() => {
        for (let i = 0; i < bytes / 4096; i++) insert.run(next++);
      })();
    },
    /** The next checkpoint's result (it ends on a later turn of the event loop: after an fsync). */
    nextResult(): Promise<CheckpointResult> {
      const seen = results.length;
      return new Promise((resolve) => {
        waiting = () => {
          if (results.length > seen) resolve(results[seen] as CheckpointResult);
        };
      });
    },
    rows: (db: Db) => db.prepare('SELECT count(*) FROM filler').pluck().get() as number,
  };
}

describe('WalCheckpoints', () => {
  let r: ReturnType<typeof rig> | null = null;
  let dir: TempDir | null = null;
  afterEach(() => {
    r?.checkpoints.close();
    r?.writer.close();
    r?.main.close();
    r?.dir.remove();
    dir?.remove();
    r = null;
    dir = null;
  });

  it("moves SQLite's own checkpoint to four times the size, out of the commits' way", () => {
    r = rig();
    const pageSize = r.writer.pragma('page_size', { simple: true }) as number;
    assert.equal(r.writer.pragma('wal_autocheckpoint', { simple: true }), (4 * BYTES) / pageSize);
    // The other connections keep SQLite's checkpoint at the store's size.
    assert.equal(r.main.pragma('wal_autocheckpoint', { simple: true }), (8 * 1024 * 1024) / pageSize);
  });

  it('does nothing while the WAL is under its size', () => {
    r = rig();
    r.write(BYTES / 4);
    const before = r.walSize();
    r.checkpoints.afterWrite();
    assert.equal(r.results.length, 0);
    assert.equal(r.walSize(), before);
  });

  it('past its size, checkpoints after the write, empties the WAL and loses no row', async () => {
    r = rig();
    r.write(BYTES + 4096);
    const result = r.nextResult();
    r.checkpoints.afterWrite();
    // The fsync runs on the thread pool: nothing is checkpointed before this call returns.
    assert.equal(r.results.length, 0);
    assert.equal((await result).busy, false);
    assert.equal(r.walSize(), 0);
    assert.equal(r.writer.pragma('busy_timeout', { simple: true }), BUSY_TIMEOUT);
    // An empty WAL: every row is in the database file itself.
    assert.equal(r.rows(r.main), (BYTES + 4096) / 4096);
    // And the writer goes on: the next rows start a new WAL.
    r.write(4096);
    assert.equal(r.rows(r.main), (BYTES + 8192) / 4096);
  });

  it('without the fsync first (synchronous=off), checkpoints at once', () => {
    r = rig(false);
    r.write(BYTES + 4096);
    r.checkpoints.afterWrite();
    assert.equal(r.results.length, 1);
    assert.equal(r.results[0]?.busy, false);
    assert.equal(r.walSize(), 0);
  });

  it('does not wait for a reader on an older snapshot: busy, retried a second later', async () => {
    r = rig();
    r.write(4096);
    // A reader holds its snapshot across the writes that follow.
    const reader = new Database(r.path, { readonly: true });
    try {
      reader.exec('BEGIN');
      assert.equal(r.rows(reader), 1);
      r.write(BYTES + 4096);
      const held = r.nextResult();
      r.checkpoints.afterWrite();
      const first = await held;
      assert.equal(first.busy, true);
      assert.ok(first.ms < BUSY_TIMEOUT / 2, `${first.ms} ms: it waited for the reader`);
      assert.ok(r.walSize() > BYTES, 'the WAL stays while the reader holds it');
      assert.equal(r.writer.pragma('busy_timeout', { simple: true }), BUSY_TIMEOUT);
      // Within the retry delay a write does not start another.
      r.clock.now += 999;
      r.checkpoints.afterWrite();
      assert.equal(r.results.length, 1);
      reader.exec('COMMIT');
    } finally {
      reader.close();
    }
    r.clock.now += 1;
    const retried = r.nextResult();
    r.checkpoints.afterWrite();
    assert.equal((await retried).busy, false);
    assert.equal(r.walSize(), 0);
    assert.equal(r.rows(r.main), 1 + (BYTES + 4096) / 4096);
  });

  it('starts one checkpoint at a time, and none once closed', async () => {
    r = rig();
    r.write(BYTES + 4096);
    const result = r.nextResult();
    r.checkpoints.afterWrite();
    r.checkpoints.afterWrite();
    await result;
    assert.equal(r.results.length, 1);
    r.write(BYTES + 4096);
    r.checkpoints.close();
    r.checkpoints.afterWrite();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(r.results.length, 1);
    assert.ok(r.walSize() > BYTES);
  });
});
