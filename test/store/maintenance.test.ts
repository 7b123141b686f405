import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { silentLogger } from '../../src/log.js';
import { StoreMaintenance } from '../../src/store/maintenance.js';
import { Outbox } from '../../src/store/outbox.js';
import { metricValue, reading, rowCount, type StoreRig, storeRig, T0 } from './rig.js';

const DAY = 86_400_000;

describe('StoreMaintenance: retention', () => {
  let s: StoreRig;
  let retention: StoreMaintenance | undefined;
  afterEach(() => {
    retention?.stop();
    s.close();
  });

  function make(ms: number): StoreMaintenance {
    retention = new StoreMaintenance(
      s.db,
      { retention: ms, maxSize: 2 ** 40, maxOutboxRows: 1_000_000 },
      {
        clock: s.clock,
        metrics: s.metrics,
        log: silentLogger(),
        outbox: new Outbox(s.db),
        forwardedUpTo: () => null,
      },
    );
    return retention;
  }

  function tsLeft(): number[] {
    return s.query.readings({ order: 'asc', limit: 1000 }).items.map((r) => r.ts - T0);
  }

  it('deletes only readings older than the retention, by event time', async () => {
    s = storeRig();
    for (const age of [8 * DAY, 7 * DAY + 1, 7 * DAY, 7 * DAY - 1, DAY, 0]) {
      s.writer.add(reading('d', 'm', age, T0 - age), 'src');
    }
    s.writer.flush();
    assert.equal(make(7 * DAY).retain(), 2);
    assert.deepEqual(tsLeft(), [-7 * DAY, -7 * DAY + 1, -DAY, 0]);
    assert.equal(await metricValue(s.metrics, 'tidegate_retention_deleted_total'), 2);
  });

  it('deletes nothing when nothing is old enough', async () => {
    s = storeRig();
    s.writer.add(reading('d', 'm', 1, T0 - DAY), 'src');
    s.writer.flush();
    assert.equal(make(7 * DAY).retain(), 0);
    assert.equal(rowCount(s.db), 1);
    assert.equal(await metricValue(s.metrics, 'tidegate_retention_deleted_total'), 0);
  });

  it('runs at start and again as the clock moves on', () => {
    s = storeRig();
    s.writer.add(reading('d', 'm', 1, T0 - 2 * DAY), 'src');
    s.writer.add(reading('d', 'm', 2, T0 - 12 * 3_600_000), 'src');
    s.writer.add(reading('d', 'm', 3, T0), 'src');
    s.writer.flush();
    make(DAY).start();
    assert.deepEqual(tsLeft(), [-12 * 3_600_000, 0], 'the 2-day-old reading goes at start');
    s.clock.advance(13 * 3_600_000);
    assert.deepEqual(tsLeft(), [0], 'the 12-hour-old reading goes once it is older than a day');
    assert.equal(s.clock.pending(), 2, 'maintenance keeps two timers: retention and caps');
    retention?.stop();
    assert.equal(s.clock.pending(), 0, 'stop() cancels it');
  });

  it('deletes more than one chunk in a run', () => {
    s = storeRig({ batchSize: 100_000 });
    for (let i = 0; i < 12_000; i++) s.writer.add(reading('d', 'm', i, T0 - 2 * DAY + i), 'src');
    s.writer.add(reading('d', 'm', -1, T0), 'src');
    s.writer.flush();
    assert.equal(make(DAY).retain(), 12_000);
    assert.equal(rowCount(s.db), 1);
  });

  it('leaves latest values and devices alone', () => {
    s = storeRig();
    s.writer.add(reading('d', 'm', 1, T0 - 9 * DAY), 'src');
    s.writer.flush();
    make(7 * DAY).retain();
    assert.equal(rowCount(s.db), 0);
    assert.equal(s.query.latest('d')[0]?.value, 1);
    assert.ok(s.query.device('d'));
  });
});
