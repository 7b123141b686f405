import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { type Clock, systemClock } from '../../src/runtime/clock.js';
import { silentLogger } from '../../src/runtime/log.js';
import { DELETE_CHUNK, type MaintenanceOptions, StoreMaintenance } from '../../src/store/maintenance.js';
import { Outbox } from '../../src/store/outbox.js';
import { metricValue, reading, rowCount, type StoreRig, storeRig, T0 } from './rig.js';

const DAY = 86_400_000;

/** A store with `count` readings two days old, 1 ms apart, and one reading now. */
function storeWithOld(count: number): StoreRig {
  const s = storeRig({ batchSize: 100_000 });
  for (let i = 0; i < count; i++) s.writer.add(reading('d', 'm', i, T0 - 2 * DAY + i), 'src');
  s.writer.add(reading('d', 'm', -1, T0), 'src');
  s.writer.flush();
  return s;
}

describe('StoreMaintenance: retention', () => {
  let s: StoreRig;
  let retention: StoreMaintenance | undefined;
  afterEach(() => {
    retention?.stop();
    s.close();
  });

  function make(
    ms: number,
    more: { clock?: Clock; forwardedUpTo?: () => number | null } & Partial<MaintenanceOptions> = {},
  ): StoreMaintenance {
    const { clock = s.clock, forwardedUpTo = () => null, ...options } = more;
    retention = new StoreMaintenance(
      s.db,
      { retention: ms, maxSize: 2 ** 40, maxOutboxRows: 1_000_000, ...options },
      { clock, metrics: s.metrics, log: silentLogger(), outbox: new Outbox(s.db), forwardedUpTo },
    );
    return retention;
  }

  /** A whole pass on the manual clock: its turns run as the clock is advanced. */
  function retainAll(m: StoreMaintenance): Promise<number> {
    const pass = m.retain();
    s.clock.advance(0);
    return pass;
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
    assert.equal(await retainAll(make(7 * DAY)), 2);
    assert.deepEqual(tsLeft(), [-7 * DAY, -7 * DAY + 1, -DAY, 0]);
    assert.equal(await metricValue(s.metrics, 'tidegate_retention_deleted_total'), 2);
  });

  it('deletes nothing when nothing is old enough', async () => {
    s = storeRig();
    s.writer.add(reading('d', 'm', 1, T0 - DAY), 'src');
    s.writer.flush();
    assert.equal(await retainAll(make(7 * DAY)), 0);
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
    s.clock.advance(0);
    assert.deepEqual(tsLeft(), [-12 * 3_600_000, 0], 'the 2-day-old reading goes at start');
    s.clock.advance(13 * 3_600_000);
    assert.deepEqual(tsLeft(), [0], 'the 12-hour-old reading goes once it is older than a day');
    assert.equal(s.clock.pending(), 2, 'maintenance keeps two timers: retention and caps');
    retention?.stop();
    assert.equal(s.clock.pending(), 0, 'stop() cancels it');
  });

  it('deletes more than one chunk in a run', async () => {
    s = storeWithOld(12_000);
    assert.equal(await retainAll(make(DAY)), 12_000);
    assert.equal(rowCount(s.db), 1);
  });

  it('deletes old rule outputs and forwarded outbox rows over several chunks', async () => {
    s = storeRig();
    const count = 2 * DELETE_CHUNK + 10;
    const outbox = new Outbox(s.db);
    const result = s.db.prepare(
      `INSERT INTO results (rule, key, start, "end", count, "values", revision, emitted_at)
       VALUES ('r', '{}', ?, ?, 1, '{}', 0, ?)`,
    );
    const decision = s.db.prepare(
      `INSERT INTO decisions (rule, key, state, at, "values", emitted_at) VALUES ('r', '{}', 'ok', ?, '{}', ?)`,
    );
    const late = s.db.prepare(
      `INSERT INTO late_readings (rule, device, metric, value, ts, emitted_at) VALUES ('r', 'd', 'm', 1, ?, ?)`,
    );
    s.db.transaction(() => {
      for (const t of [...Array.from({ length: count }, (_, i) => T0 - 2 * DAY + i), T0]) {
        result.run(t - 10_000, t, t);
        decision.run(t, t);
        late.run(t, t);
        outbox.append('result', 'r', '{}', t);
      }
    })();
    // Every upstream has the first `count - 5` rows; outbox rows go by that, not by age.
    await retainAll(make(DAY, { forwardedUpTo: () => count - 5 }));
    const left = (sql: string) => s.db.prepare(sql).pluck().all();
    assert.deepEqual(left('SELECT "end" FROM results'), [T0]);
    assert.deepEqual(left('SELECT at FROM decisions'), [T0]);
    assert.deepEqual(left('SELECT ts FROM late_readings'), [T0]);
    assert.deepEqual(
      left('SELECT seq FROM outbox'),
      Array.from({ length: 6 }, (_, i) => count - 4 + i),
    );
  });

  it('leaves latest values and devices alone', async () => {
    s = storeRig();
    s.writer.add(reading('d', 'm', 1, T0 - 9 * DAY), 'src');
    s.writer.flush();
    await retainAll(make(7 * DAY));
    assert.equal(rowCount(s.db), 0);
    assert.equal(s.query.latest('d')[0]?.value, 1);
    assert.ok(s.query.device('d'));
  });
});

describe('StoreMaintenance: a retention pass gives the event loop back between chunks', () => {
  let s: StoreRig;
  let retention: StoreMaintenance | undefined;
  afterEach(() => {
    retention?.stop();
    s.close();
  });

  function make(clock: Clock = s.clock, maxOutboxRows = 1_000_000): StoreMaintenance {
    retention = new StoreMaintenance(
      s.db,
      { retention: DAY, maxSize: 2 ** 40, maxOutboxRows },
      { clock, metrics: s.metrics, log: silentLogger(), outbox: new Outbox(s.db), forwardedUpTo: () => null },
    );
    return retention;
  }

  it('lets other tasks of the event loop run while a large drain is part way', async () => {
    const old = 6 * DELETE_CHUNK;
    s = storeWithOld(old);
    // The event loop's own timers, and the time fixed at T0.
    const m = make({ ...systemClock, now: () => T0 });
    const seen: number[] = [];
    let draining = true;
    const probe = () => {
      if (!draining) return;
      seen.push(rowCount(s.db));
      setImmediate(probe);
    };
    setImmediate(probe);
    const deleted = await m.retain();
    draining = false;
    assert.equal(deleted, old);
    assert.equal(rowCount(s.db), 1);
    const partWay = seen.filter((n) => n > 1 && n < old + 1);
    assert.ok(partWay.length >= 2, `rows left when another task ran: ${seen.join(', ') || 'none ran'}`);
  });

  it('deletes one chunk per turn: a drain of N chunks spans N turns', async () => {
    const old = 3 * DELETE_CHUNK + 10;
    s = storeWithOld(old);
    const pass = make().retain();
    // Scheduled after the pass's first turn: the clock runs it between every two of the pass's turns.
    const left: number[] = [];
    const probe = () => {
      left.push(rowCount(s.db));
      if (left.length < 10) s.clock.setTimeout(probe, 0);
    };
    s.clock.setTimeout(probe, 0);
    s.clock.advance(0);
    assert.equal(await pass, old);
    assert.deepEqual(left.slice(0, 4), [2 * DELETE_CHUNK + 11, DELETE_CHUNK + 11, 11, 1]);
  });

  it('stop() during a drain ends it after the chunk under way; nothing runs after', async () => {
    const old = 3 * DELETE_CHUNK + 10;
    s = storeWithOld(old);
    const m = make();
    m.start();
    const pass = m.retain();
    s.clock.setTimeout(() => m.stop(), 0);
    s.clock.advance(0);
    assert.equal(await pass, DELETE_CHUNK, 'the pass ends with what it deleted');
    assert.equal(rowCount(s.db), old + 1 - DELETE_CHUNK);
    assert.equal(s.clock.pending(), 0, 'no turn of the pass is left, nor a timer');
    s.clock.advance(2 * DAY);
    assert.equal(rowCount(s.db), old + 1 - DELETE_CHUNK, 'nothing ran after stop()');
  });

  it('runs one pass at a time, and the caps wait for it to end', async () => {
    const old = 2 * DELETE_CHUNK + 10;
    s = storeWithOld(old);
    const outbox = new Outbox(s.db);
    for (let i = 0; i < 1000; i++) outbox.append('result', 'r', '{}', T0);
    const m = make(s.clock, 600);
    const first = m.retain();
    assert.equal(m.retain(), first, 'a second call joins the pass under way');
    assert.equal(m.enforceCaps(), 0, 'the caps wait while the pass deletes the oldest rows');
    assert.equal(outbox.bounds().rows, 1000);
    s.clock.advance(0);
    assert.equal(await first, old);
    assert.equal(outbox.bounds().rows, 600, 'the caps run when the pass ends');
    const next = m.retain();
    assert.notEqual(next, first, 'the next call starts a new pass');
    s.clock.advance(0);
    assert.equal(await next, 0);
  });
});
