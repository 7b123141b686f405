import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { metricValue, reading, rowCount, type StoreRig, storeRig, T0 } from './rig.js';

describe('ReadingWriter', () => {
  let s: StoreRig;
  afterEach(() => s.close());

  describe('group commit', () => {
    it('commits as soon as batchSize readings wait, not before', async () => {
      s = storeRig({ batchSize: 3 });
      for (const [v, ts] of [
        [1, T0],
        [2, T0 + 1],
      ] as const) {
        s.writer.add(reading('d', 'm', v, ts), 'src');
        s.writer.commitIfFull();
      }
      assert.equal(rowCount(s.db), 0);
      assert.equal(s.writer.pendingCount, 2);
      s.writer.add(reading('d', 'm', 3, T0 + 2), 'src');
      assert.equal(rowCount(s.db), 0, 'add() alone never commits: what the reading causes must join it');
      s.writer.commitIfFull();
      assert.equal(rowCount(s.db), 3);
      assert.equal(s.writer.pendingCount, 0);
      assert.equal(await metricValue(s.metrics, 'tidegate_store_commits_total'), 1);
      assert.equal(await metricValue(s.metrics, 'tidegate_readings_stored_total'), 3);
    });

    it('commits every flushInterval while readings wait', async () => {
      s = storeRig({ flushInterval: 200 });
      s.writer.start();
      s.writer.add(reading('d', 'm', 1, T0), 'src');
      s.clock.advance(199);
      assert.equal(rowCount(s.db), 0, 'nothing before the interval');
      s.clock.advance(1);
      assert.equal(rowCount(s.db), 1);
      s.writer.add(reading('d', 'm', 2, T0 + 1), 'src');
      s.writer.add(reading('d', 'm', 3, T0 + 2), 'src');
      s.clock.advance(200);
      assert.equal(rowCount(s.db), 3);
      assert.equal(
        await metricValue(s.metrics, 'tidegate_store_commits_total'),
        2,
        'one commit per interval',
      );
    });

    it('commitSoon() commits within outputFlushInterval, once for every request made meanwhile', async () => {
      s = storeRig({ flushInterval: 200, outputFlushInterval: 10 });
      s.writer.start();
      s.writer.add(reading('d', 'm', 1, T0), 'src');
      s.writer.commitSoon();
      s.clock.advance(5);
      s.writer.add(reading('d', 'm', 2, T0 + 1), 'src');
      s.writer.commitSoon();
      s.clock.advance(4);
      assert.equal(rowCount(s.db), 0, 'not before outputFlushInterval');
      s.clock.advance(1);
      assert.equal(rowCount(s.db), 2, 'both readings, in one commit, 10 ms after the first request');
      s.clock.advance(190);
      assert.equal(await metricValue(s.metrics, 'tidegate_store_commits_total'), 1);
      // A regular commit first cancels the pending request: no empty commit follows.
      s.writer.add(reading('d', 'm', 3, T0 + 2), 'src');
      s.writer.commitSoon();
      s.writer.flush();
      s.clock.advance(20);
      assert.equal(await metricValue(s.metrics, 'tidegate_store_commits_total'), 2);
    });

    it('does not commit when nothing waits', async () => {
      s = storeRig({ flushInterval: 200 });
      s.writer.start();
      s.clock.advance(2000);
      assert.equal(await metricValue(s.metrics, 'tidegate_store_commits_total'), 0);
    });

    it('afterCommit() resolves after the commit that holds the readings', async () => {
      s = storeRig({ flushInterval: 200 });
      s.writer.start();
      s.writer.add(reading('d', 'm', 1, T0), 'src');
      let committed = false;
      const waiting = s.writer.afterCommit().then(() => {
        committed = true;
        assert.equal(rowCount(s.db), 1, 'the reading is in the database when afterCommit resolves');
      });
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(committed, false);
      s.clock.advance(200);
      await waiting;
      assert.equal(committed, true);
    });

    it('afterCommit() resolves at once when nothing waits', async () => {
      s = storeRig();
      await s.writer.afterCommit();
    });

    it('stop() commits what waits and cancels the timer', () => {
      s = storeRig({ flushInterval: 200 });
      s.writer.start();
      s.writer.add(reading('d', 'm', 1, T0), 'src');
      s.writer.stop();
      assert.equal(rowCount(s.db), 1);
      assert.equal(s.clock.pending(), 0);
    });

    it('refuses readings beyond maxPending', () => {
      s = storeRig({ maxPending: 2, batchSize: 10 });
      assert.equal(s.writer.add(reading('d', 'm', 1, T0), 'src'), true);
      assert.equal(s.writer.add(reading('d', 'm', 2, T0), 'src'), true);
      assert.equal(s.writer.add(reading('d', 'm', 3, T0), 'src'), false);
      s.writer.flush();
      assert.equal(rowCount(s.db), 2);
      assert.equal(s.writer.add(reading('d', 'm', 3, T0), 'src'), true, 'room again after the commit');
    });
  });

  describe('duplicates', () => {
    it('stores the same device, metric, ts and value once, in one batch or across batches', async () => {
      s = storeRig();
      s.writer.add(reading('d', 'm', 5, T0), 'src');
      s.writer.add(reading('d', 'm', 5, T0), 'src');
      assert.equal(s.writer.flush(), 1);
      s.writer.add(reading('d', 'm', 5, T0), 'src');
      assert.equal(s.writer.flush(), 0);
      assert.equal(rowCount(s.db), 1);
      assert.equal(await metricValue(s.metrics, 'tidegate_readings_stored_total'), 1);
    });

    it('stores a different value at the same ts, and the same value for another series or ts', () => {
      s = storeRig();
      s.writer.add(reading('d', 'm', 5, T0), 'src');
      s.writer.add(reading('d', 'm', 6, T0), 'src');
      s.writer.add(reading('d', 'm2', 5, T0), 'src');
      s.writer.add(reading('d2', 'm', 5, T0), 'src');
      s.writer.add(reading('d', 'm', 5, T0 + 1), 'src');
      assert.equal(s.writer.flush(), 5);
      assert.equal(rowCount(s.db), 5);
    });
  });

  describe('latest values and devices', () => {
    it('keeps the newest by ts even when an older reading arrives later', () => {
      s = storeRig();
      s.writer.add(reading('d', 'm', 2, T0 + 1000), 'src');
      s.writer.add(reading('d', 'm', 1, T0), 'src'); // older, same batch
      s.writer.flush();
      s.writer.add(reading('d', 'm', 0, T0 - 5000), 'src'); // older, later batch
      s.writer.flush();
      assert.deepEqual(s.query.latest('d'), [
        { device: 'd', metric: 'm', value: 2, ts: T0 + 1000, unit: null },
      ]);
      s.writer.add(reading('d', 'm', 3, T0 + 2000, { unit: 'K' }), 'src');
      s.writer.flush();
      assert.deepEqual(s.query.latest('d'), [
        { device: 'd', metric: 'm', value: 3, ts: T0 + 2000, unit: 'K' },
      ]);
    });

    it('with storeReadings: false stores no raw readings but keeps latest values and devices', () => {
      s = storeRig({ storeReadings: false });
      s.writer.add(reading('d', 'm', 1, T0), 'src');
      s.writer.add(reading('d', 'm', 2, T0 + 1), 'src');
      assert.equal(s.writer.flush(), 0);
      assert.equal(rowCount(s.db), 0);
      assert.deepEqual(
        s.query.latest().map((l) => [l.device, l.metric, l.value, l.ts]),
        [['d', 'm', 2, T0 + 1]],
      );
      assert.equal(s.query.device('d')?.source, 'src');
    });

    it('records each device’s source and first and last arrival', () => {
      s = storeRig();
      s.writer.add(reading('d', 'm', 1, T0 - 60_000), 'mqtt');
      s.writer.flush();
      s.clock.advance(5000);
      s.writer.add(reading('d', 'm2', 2, T0 - 59_000), 'serial');
      s.writer.flush();
      const d = s.query.device('d');
      assert.ok(d);
      assert.equal(d.source, 'serial');
      assert.equal(d.firstSeen, T0);
      assert.equal(d.lastSeen, T0 + 5000);
      assert.deepEqual(
        d.metrics.map((m) => m.metric),
        ['m', 'm2'],
      );
    });

    it('keeps tags and units with the raw readings', () => {
      s = storeRig();
      s.writer.add(reading('d', 'm', 1, T0, { unit: '°C', tags: { room: 'cellar' } }), 'src');
      s.writer.flush();
      const [r] = s.query.readings({ order: 'asc', limit: 10 }).items;
      assert.deepEqual(r, {
        device: 'd',
        metric: 'm',
        value: 1,
        ts: T0,
        unit: '°C',
        tags: { room: 'cellar' },
      });
    });
  });

  describe('a failing disk', () => {
    it('keeps the batch, stores nothing half, and commits it on the next attempt', async () => {
      s = storeRig();
      s.db.exec(
        `CREATE TRIGGER fail BEFORE INSERT ON readings BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`,
      );
      s.writer.add(reading('new-device', 'm', 1, T0), 'src');
      s.writer.add(reading('new-device', 'm', 2, T0 + 1), 'src');
      let resolved = false;
      const waiting = s.writer.afterCommit().then(() => {
        resolved = true;
      });
      assert.equal(s.writer.flush(), 0);
      assert.match(s.writer.lastError?.message ?? '', /disk I\/O error/);
      assert.equal(s.writer.pendingCount, 2);
      assert.equal(await metricValue(s.metrics, 'tidegate_store_errors_total'), 1);
      assert.equal(s.query.device('new-device'), null, 'no device row without its readings');
      assert.deepEqual(s.query.latest(), []);
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(resolved, false, 'afterCommit waits while the commit fails');

      s.db.exec('DROP TRIGGER fail');
      assert.equal(s.writer.flush(), 2);
      await waiting;
      assert.equal(s.writer.lastError, null);
      assert.equal(rowCount(s.db), 2);
      assert.equal(s.query.device('new-device')?.metrics[0]?.value, 2);
    });

    it('rejects afterCommit waiters once the queue is full of unwritable readings', async () => {
      s = storeRig({ maxPending: 2, batchSize: 100 });
      s.db.exec(`CREATE TRIGGER fail BEFORE INSERT ON readings BEGIN SELECT RAISE(ABORT, 'disk full'); END`);
      s.writer.add(reading('d', 'm', 1, T0), 'src');
      s.writer.add(reading('d', 'm', 2, T0 + 1), 'src');
      const waiting = s.writer.afterCommit();
      s.writer.flush();
      await assert.rejects(waiting, /disk full/);
      s.db.exec('DROP TRIGGER fail');
    });
  });
});
