import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { openDatabase, StoreOpenError } from '../../src/store/database.js';
import { MIGRATIONS, type Migration, migrate, schemaVersion } from '../../src/store/migrations.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

const LATEST = MIGRATIONS.at(-1)?.version ?? 0;

describe('migrations', () => {
  it('bring a new database to the latest schema version', () => {
    const db = new Database(':memory:');
    try {
      assert.equal(schemaVersion(db), 0);
      assert.equal(migrate(db), LATEST);
      assert.equal(db.pragma('user_version', { simple: true }), LATEST);
      const tables = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .pluck()
        .all();
      for (const t of ['devices', 'readings', 'series']) assert.ok(tables.includes(t), t);
    } finally {
      db.close();
    }
  });

  it('are idempotent', () => {
    const db = new Database(':memory:');
    try {
      migrate(db);
      assert.equal(migrate(db), LATEST);
    } finally {
      db.close();
    }
  });

  it('apply only the steps not yet applied, in order', () => {
    const steps: Migration[] = [
      { version: 1, description: 'a', sql: 'CREATE TABLE a (x)' },
      { version: 2, description: 'b', sql: 'CREATE TABLE b (x)' },
    ];
    const db = new Database(':memory:');
    try {
      assert.equal(migrate(db, steps.slice(0, 1)), 1);
      assert.equal(migrate(db, steps), 2);
      assert.equal(db.prepare("SELECT count(*) FROM sqlite_master WHERE name IN ('a','b')").pluck().get(), 2);
    } finally {
      db.close();
    }
  });

  it('roll a failing step back whole, leaving the version where it was', () => {
    const steps: Migration[] = [
      { version: 1, description: 'a', sql: 'CREATE TABLE a (x)' },
      { version: 2, description: 'broken', sql: 'CREATE TABLE b (x); CREATE TABLE a (x)' },
    ];
    const db = new Database(':memory:');
    try {
      assert.throws(() => migrate(db, steps), /already exists/);
      assert.equal(schemaVersion(db), 1);
      assert.equal(db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'b'").pluck().get(), 0);
    } finally {
      db.close();
    }
  });

  it('refuse a schema newer than this tidegate knows', () => {
    const db = new Database(':memory:');
    try {
      db.pragma(`user_version = ${LATEST + 1}`);
      assert.throws(() => migrate(db), new RegExp(`schema version ${LATEST + 1}.*newer.*upgrade tidegate`));
      assert.equal(schemaVersion(db), LATEST + 1, 'left untouched');
    } finally {
      db.close();
    }
  });
});

describe('openDatabase', () => {
  let dir: TempDir;
  before(() => {
    dir = makeTempDir();
  });
  after(() => dir.remove());

  it('creates the file and its directories, in WAL mode, migrated', () => {
    const path = dir.file('nested', 'deeper', 'tidegate.db');
    const db = openDatabase(path, { synchronous: 'full' });
    try {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      assert.equal(db.pragma('synchronous', { simple: true }), 2);
      assert.equal(schemaVersion(db), LATEST);
      db.prepare("INSERT INTO devices VALUES ('d', 's', 1, 2)").run();
    } finally {
      db.close();
    }
    const again = openDatabase(path, { synchronous: 'normal' });
    try {
      assert.equal(again.prepare('SELECT count(*) FROM devices').pluck().get(), 1, 'data survives a reopen');
      assert.equal(again.pragma('synchronous', { simple: true }), 1);
    } finally {
      again.close();
    }
  });

  it('throws StoreOpenError naming the file when it is not a database', () => {
    const path = dir.file('not-a-db.db');
    writeFileSync(path, 'this is a text file, not SQLite\n'.repeat(200));
    assert.throws(
      () => openDatabase(path, { synchronous: 'normal' }),
      (err: unknown) =>
        err instanceof StoreOpenError &&
        err.path === path &&
        err.message.includes(path) &&
        /not a database/.test(err.message),
    );
  });

  it('throws StoreOpenError when the directory cannot be created', () => {
    const blocker = dir.file('a-file');
    writeFileSync(blocker, 'x');
    const path = dir.file('a-file', 'sub', 'tidegate.db');
    assert.throws(
      () => openDatabase(path, { synchronous: 'normal' }),
      (err: unknown) =>
        err instanceof StoreOpenError && err.message.includes(path) && /cannot open/.test(err.message),
    );
  });

  it('throws StoreOpenError when the path is a directory', () => {
    const path = dir.file('a-directory.db');
    mkdirSync(path);
    assert.throws(
      () => openDatabase(path, { synchronous: 'normal' }),
      (err: unknown) => err instanceof StoreOpenError && err.message.includes(path),
    );
  });

  it('throws StoreOpenError for a database from a newer tidegate', () => {
    const path = dir.file('newer.db');
    const raw = new Database(path);
    raw.pragma(`user_version = ${LATEST + 5}`);
    raw.close();
    assert.throws(
      () => openDatabase(path, { synchronous: 'normal' }),
      (err: unknown) => err instanceof StoreOpenError && /newer than this tidegate knows/.test(err.message),
    );
  });
});
