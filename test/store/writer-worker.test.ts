import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { StoredDuplicates } from '../../src/ingest/stored-duplicates.js';
import { ManualClock } from '../../src/runtime/clock.js';
import { silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { type Db, openDatabase } from '../../src/store/database.js';
import { ReadingWriter, type ReadingWriterOptions } from '../../src/store/reading-writer.js';
import { ReadingsQuery } from '../../src/store/readings-query.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';
import { metricValue, reading, rowCount, T0 } from './rig.js';

/** A file store whose writer commits in its worker thread. */
function workerRig(options: Partial<ReadingWriterOptions> = {}, checkpointBytes?: number) {
  const dir = makeTempDir('tidegate-writer-worker-');
  const path = dir.file('store.db');
  const db = openDatabase(path, { synchronous: 'normal' });
  const clock = new ManualClock(T0);
  const metrics = new Metrics();
  const writer = new ReadingWriter(
    db,
    {
      batchSize: 1000,
      flushInterval: 200,
      maxPending: 100_000,
      storeReadings: true,
      worker: { path, synchronous: 'normal', checkpointBytes },
      ...options,
    },
    { clock, metrics, log: silentLogger() },
  );
  return { dir, db, clock, metrics, writer, query: new ReadingsQuery(db) };
}

describe('ReadingWriter with its worker thread', () => {
  let rig: ReturnType<typeof workerRig> | null = null;
  let dir: TempDir | null = null;
  afterEach(() => {
    rig?.writer.stop();
    rig?.db.close();
    rig?.dir.remove();
    dir?.remove();
    rig = null;
    dir = null;
  });

  it('commits on a connection of its own: a trigger of this connection never fires', async () => {
    rig = workerRig();
    // A TEMP trigger exists for the connection that made it only.
    rig.db.exec(
      `CREATE TEMP TRIGGER here AFTER INSERT ON readings BEGIN SELECT RAISE(ABORT, 'on the main connection'); END`,
    );
    rig.writer.add(reading('d', 'm', 1, T0), 'src');
    rig.writer.add(reading('d', 'm', 2, T0 + 1), 'src');
    const durable = rig.writer.afterCommit();
    assert.equal(rig.writer.flush(), 2);
    await durable;
    assert.equal(rig.writer.lastError, null);
    assert.equal(rowCount(rig.db), 2);
    assert.equal(await metricValue(rig.metrics, 'tidegate_store_commits_total'), 1);
  });

  it('checkpoints the WAL between its commits, counts each checkpoint, and keeps every reading', async () => {
    rig = workerRig({}, 64 * 1024);
    for (let batch = 0; batch < 20; batch++) {
      for (let i = 0; i < 500; i++)
        rig.writer.add(reading(`d${i % 50}`, 'm', i, T0 + batch * 1000 + i), 'src');
      rig.writer.flush();
    }
    // The worker tells of its checkpoints on the reply port, after the commits' replies.
    const checkpoints = async () => {
      const text = (await rig?.metrics.registry.metrics()) ?? '';
      const m = /^tidegate_store_checkpoint_seconds_count\{result="complete"\} (\d+)$/m.exec(text);
      return m ? Number(m[1]) : 0;
    };
    for (let i = 0; i < 500 && (await checkpoints()) === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok((await checkpoints()) >= 1, 'no checkpoint was counted');
    assert.equal(rowCount(rig.db), 10_000);
    assert.equal(await metricValue(rig.metrics, 'tidegate_readings_stored_total'), 10_000);
  });

  it('keeps arrival order and seq across batches queued while one commits, and refuses none', async () => {
    // Far faster than the worker commits: past 200 queued, commitIfFull() waits for the commit in
    // flight instead of letting the queue reach maxPending.
    rig = workerRig({ batchSize: 50, maxPending: 400 });
    const waits: Promise<void>[] = [];
    let most = 0;
    for (let i = 0; i < 1000; i++) {
      assert.equal(rig.writer.add(reading(`d${i % 7}`, 'm', i, T0 + i), 'src'), true, `reading ${i} refused`);
      rig.writer.commitIfFull();
      most = Math.max(most, rig.writer.pendingCount);
      if (i % 100 === 99) waits.push(rig.writer.afterCommit());
    }
    assert.ok(most <= 400, `at most ${most} waiting`);
    assert.ok(rig.writer.pendingCount > 0, 'batches still in flight or queued');
    await Promise.all(waits);
    const values = rig.db.prepare('SELECT value FROM readings ORDER BY seq').pluck().all() as number[];
    assert.deepEqual(
      values,
      Array.from({ length: 1000 }, (_, i) => i),
    );
    const commits = await metricValue(rig.metrics, 'tidegate_store_commits_total');
    assert.ok(commits >= 2 && commits <= 20, `${commits} commits of at least 50 readings`);
  });

  it('answers afterCommit() only once the batch in flight and the one after it committed', async () => {
    rig = workerRig({ batchSize: 1 });
    rig.writer.add(reading('d', 'm', 1, T0), 'src');
    rig.writer.commitIfFull();
    const first = rig.writer.afterCommit();
    rig.writer.add(reading('d', 'm', 2, T0 + 1), 'src');
    const both = rig.writer.afterCommit();
    await first;
    await both;
    assert.equal(rowCount(rig.db), 2);
    assert.equal(rig.writer.pendingCount, 0);
  });

  it('keeps a batch the disk refused and commits it once the disk takes it', async () => {
    rig = workerRig();
    rig.db.exec(
      `CREATE TRIGGER fail BEFORE INSERT ON readings BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`,
    );
    rig.writer.add(reading('new-device', 'm', 1, T0), 'src');
    const waiting = rig.writer.afterCommit();
    assert.equal(rig.writer.flush(), 0);
    assert.match(rig.writer.lastError?.message ?? '', /disk I\/O error/);
    assert.equal(rig.writer.pendingCount, 1);
    assert.equal(rig.query.device('new-device'), null, 'nothing of the batch');
    rig.writer.add(reading('new-device', 'm', 2, T0 + 1), 'src');
    rig.db.exec('DROP TRIGGER fail');
    assert.equal(rig.writer.flush(), 2);
    await waiting;
    assert.equal(rig.writer.lastError, null);
    assert.deepEqual(rig.db.prepare('SELECT value FROM readings ORDER BY seq').pluck().all(), [1, 2]);
  });

  it('answers a reader from the held-back summaries (synchronous calls into the worker)', () => {
    rig = workerRig({ summaryInterval: 60_000 });
    rig.writer.add(reading('d', 'm', 7, T0), 'src');
    rig.writer.flush();
    assert.equal(rig.writer.storedMaxTs('d', 'm'), T0, 'held back in the worker, not yet in the series row');
    assert.equal(rig.writer.storedMaxTs('d', 'other'), null);
    rig.writer.syncSummaries();
    assert.equal(rig.query.device('d')?.metrics[0]?.value, 7);
  });

  it('continues the seq of the store after a restart', () => {
    rig = workerRig();
    rig.writer.add(reading('d', 'm', 1, T0), 'src');
    rig.writer.stop();
    const path = rig.dir.file('store.db');
    const again = new ReadingWriter(
      rig.db,
      {
        batchSize: 10,
        flushInterval: 200,
        maxPending: 10,
        storeReadings: true,
        worker: { path, synchronous: 'normal' },
      },
      { clock: rig.clock, metrics: rig.metrics, log: silentLogger() },
    );
    again.add(reading('d', 'm', 2, T0 + 1), 'src');
    again.stop();
    assert.deepEqual(rig.db.prepare('SELECT seq FROM readings ORDER BY ts').pluck().all(), [1, 2]);
    rig.writer = again;
  });

  it('fails at once, with the reason, when the worker cannot open the store', () => {
    dir = makeTempDir('tidegate-writer-worker-');
    const db: Db = openDatabase(':memory:', { synchronous: 'off' });
    try {
      assert.throws(
        () =>
          new ReadingWriter(
            db,
            {
              batchSize: 10,
              flushInterval: 200,
              maxPending: 10,
              storeReadings: true,
              worker: { path: dir?.file('missing.db') ?? '', synchronous: 'normal' },
            },
            { clock: new ManualClock(T0), metrics: new Metrics(), log: silentLogger() },
          ),
        /unable to open database file|does not exist/,
      );
    } finally {
      db.close();
    }
  });

  it('the duplicate filter: readings queued while a batch commits are not forgotten with it', async () => {
    rig = workerRig({ batchSize: 1_000_000 });
    const duplicates = new StoredDuplicates(rig.writer);
    const r = (value: number, ts: number) => reading('d', 'm', value, ts);
    assert.equal(duplicates.isDuplicate(r(1, T0 + 10_000)), false);
    rig.writer.add(r(1, T0 + 10_000), 'src');
    // An older reading, queued with it.
    assert.equal(duplicates.isDuplicate(r(5, T0)), false);
    rig.writer.add(r(5, T0), 'src');
    const durable = rig.writer.afterCommit();
    rig.writer.commitSoon();
    rig.clock.advance(2);
    // The first batch is in flight (or done); this one waits for the next.
    assert.equal(duplicates.isDuplicate(r(6, T0 + 1)), false);
    rig.writer.add(r(6, T0 + 1), 'src');
    await durable;
    assert.equal(duplicates.isDuplicate(r(6, T0 + 1)), true, 'queued after the cut: still remembered');
    assert.equal(duplicates.isDuplicate(r(5, T0)), true, 'committed: found in the store');
    assert.equal(duplicates.isDuplicate(r(1, T0 + 10_000)), true);
    rig.writer.flush();
    assert.equal(duplicates.isDuplicate(r(6, T0 + 1)), true, 'committed too');
    assert.equal(duplicates.isDuplicate(r(7, T0 + 1)), false, 'another value at the same ts');
  });
});
