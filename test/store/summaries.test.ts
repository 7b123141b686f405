/** Summaries (rollups, latest values, device last_seen) held back between commits, and their recovery. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import fc from 'fast-check';
import { silentLogger } from '../../src/runtime/log.js';
import { type Db, openDatabase } from '../../src/store/database.js';
import { StoreMaintenance } from '../../src/store/maintenance.js';
import { MINUTE } from '../../src/store/minutes.js';
import { Outbox } from '../../src/store/outbox.js';
import { ReadingsQuery } from '../../src/store/readings-query.js';
import { HOLD_BACK_HORIZON } from '../../src/store/summaries.js';
import { reading, type StoreRig, storeRig, T0 } from './rig.js';

const INTERVAL = 10_000;

interface RollupRow {
  minute: number;
  series_id: number;
  count: number;
  sum: number;
  min: number;
  max: number;
}

interface LatestRow {
  device: string;
  metric: string;
  last_value: number | null;
  last_ts: number | null;
  last_seq: number;
}

/** What the store says of the summaries, straight from its tables. */
function stored(db: Db): { rollups: RollupRow[]; latest: LatestRow[] } {
  return {
    rollups: db
      .prepare('SELECT minute, series_id, count, sum, min, max FROM readings_1m ORDER BY minute, series_id')
      .all() as RollupRow[],
    latest: db
      .prepare('SELECT device, metric, last_value, last_ts, last_seq FROM series ORDER BY device, metric')
      .all() as LatestRow[],
  };
}

function marker(db: Db): number | undefined {
  return db.prepare("SELECT value FROM store_state WHERE key = 'summaries_behind_from'").pluck().get() as
    | number
    | undefined;
}

function lastSeen(db: Db, device: string): number | undefined {
  return db.prepare('SELECT last_seen FROM devices WHERE id = ?').pluck().get(device) as number | undefined;
}

describe('Summaries', () => {
  let s: StoreRig;
  let dir: string | undefined;
  afterEach(() => {
    s.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('holds rollups, latest values and last_seen back until the interval has passed', () => {
    s = storeRig({ summaryInterval: INTERVAL });
    s.writer.add(reading('d', 'm', 1, T0), 'src');
    s.writer.flush();
    // A new device and series are written at once; what the readings say of them waits.
    assert.equal(lastSeen(s.db, 'd'), T0);
    s.clock.advance(1_000);
    s.writer.add(reading('d', 'm', 5, T0 + 1_000), 'src');
    s.writer.flush();
    assert.deepEqual(stored(s.db).rollups, []);
    assert.deepEqual(stored(s.db).latest, [
      { device: 'd', metric: 'm', last_value: null, last_ts: null, last_seq: 0 },
    ]);
    assert.equal(lastSeen(s.db, 'd'), T0);
    assert.equal(marker(s.db), T0 - (T0 % MINUTE), 'the marker names the minute they lag from');
    assert.equal(s.writer.storedMaxTs('d', 'm'), T0 + 1_000, 'the duplicate filter sees held values');

    s.clock.advance(INTERVAL - 1_000);
    s.writer.add(reading('d', 'm', 3, T0 + 500), 'src');
    s.writer.flush();
    assert.deepEqual(stored(s.db).rollups, [
      { minute: T0 - (T0 % MINUTE), series_id: 1, count: 3, sum: 9, min: 1, max: 5 },
    ]);
    assert.deepEqual(stored(s.db).latest, [
      { device: 'd', metric: 'm', last_value: 5, last_ts: T0 + 1_000, last_seq: 3 },
    ]);
    assert.equal(lastSeen(s.db, 'd'), T0 + INTERVAL);
    assert.equal(marker(s.db), undefined);
  });

  it('writes them once the interval has passed even when no reading comes', () => {
    s = storeRig({ summaryInterval: INTERVAL });
    s.writer.start();
    s.writer.add(reading('d', 'm', 1, T0), 'src');
    s.clock.advance(200);
    assert.deepEqual(stored(s.db).rollups, []);
    s.clock.advance(INTERVAL);
    assert.equal(stored(s.db).rollups.length, 1);
    assert.equal(marker(s.db), undefined);
  });

  it('writes them before a query reads them, and at stop', () => {
    s = storeRig({ summaryInterval: INTERVAL });
    const query = new ReadingsQuery(s.db, () => s.writer.syncSummaries());
    s.writer.add(reading('d', 'm', 1, T0), 'src');
    s.writer.add(reading('d', 'm', 2, T0 + 1), 'src');
    s.writer.flush();
    assert.equal(s.query.latest()[0]?.value ?? null, null, 'a query without the hook sees the store');
    assert.equal(query.latest()[0]?.value, 2);
    assert.equal(marker(s.db), undefined);
    s.writer.add(reading('e', 'm', 7, T0 + 2), 'src');
    s.writer.flush();
    assert.equal(query.device('e')?.metrics[0]?.value, 7);
    s.writer.add(reading('e', 'm', 8, T0 + 3), 'src');
    s.writer.stop();
    assert.equal(s.query.latest('e')[0]?.value, 8);
    assert.equal(marker(s.db), undefined);
  });

  it('writes the summaries of readings far behind the newest in their own commit', () => {
    s = storeRig({ summaryInterval: INTERVAL });
    s.writer.add(reading('d', 'm', 1, T0), 'src');
    s.writer.flush();
    const late = T0 - HOLD_BACK_HORIZON - MINUTE;
    s.writer.add(reading('d', 'm', 4, late), 'src');
    s.writer.add(reading('old', 'm', 9, late), 'src');
    s.writer.flush();
    assert.deepEqual(
      stored(s.db).rollups.map((r) => [r.minute, r.count]),
      [
        [late - (late % MINUTE), 1],
        [late - (late % MINUTE), 1],
      ],
      'the late minute is written, the current one held',
    );
    assert.equal(marker(s.db), T0 - (T0 % MINUTE), 'the marker stays at the held minute');
    const latest = stored(s.db).latest;
    assert.deepEqual(
      latest.map((l) => [l.device, l.last_value]),
      [
        ['d', 1],
        ['old', 9],
      ],
      "d's held value is written first, then the late one, which does not replace it",
    );
  });

  it('keeps what is held when a commit fails, and writes it with the next', () => {
    s = storeRig({ summaryInterval: INTERVAL });
    s.writer.add(reading('d', 'm', 1, T0), 'src');
    s.writer.flush();
    s.db.exec(
      `CREATE TRIGGER fail BEFORE INSERT ON readings BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`,
    );
    s.clock.advance(INTERVAL);
    s.writer.add(reading('d', 'm', 2, T0 + 1), 'src');
    assert.equal(s.writer.flush(), 0);
    assert.deepEqual(stored(s.db).rollups, [], 'the failed commit wrote nothing');
    s.db.exec('DROP TRIGGER fail');
    assert.equal(s.writer.flush(), 1);
    assert.deepEqual(
      stored(s.db).rollups.map((r) => [r.count, r.sum]),
      [[2, 3]],
    );
  });

  it('after a crash, recomputes what was held from the readings', () => {
    dir = mkdtempSync(join(tmpdir(), 'tidegate-summaries-'));
    const path = join(dir, 'store.db');
    const crashed = storeRig({ summaryInterval: INTERVAL }, openDatabase(path, { synchronous: 'normal' }));
    crashed.writer.add(reading('d', 'm', 1, T0), 'src');
    crashed.writer.add(reading('d', 'm', 2, T0 + MINUTE), 'src');
    crashed.writer.add(reading('e', 'm', 3, T0), 'src');
    crashed.writer.flush();
    assert.notEqual(marker(crashed.db), undefined);
    // No stop(): the process dies with the summaries held.
    crashed.db.close();

    s = storeRig({ summaryInterval: INTERVAL }, openDatabase(path, { synchronous: 'normal' }));
    assert.equal(marker(s.db), undefined);
    assert.deepEqual(
      stored(s.db).rollups.map((r) => [r.minute - (T0 - (T0 % MINUTE)), r.series_id, r.count, r.sum]),
      [
        [0, 1, 1, 1],
        [0, 2, 1, 3],
        [MINUTE, 1, 1, 2],
      ],
    );
    assert.deepEqual(
      stored(s.db).latest.map((l) => [l.device, l.last_value, l.last_ts, l.last_seq]),
      [
        ['d', 2, T0 + MINUTE, 2],
        ['e', 3, T0, 3],
      ],
    );
    s.writer.add(reading('d', 'm', 4, T0 + 2 * MINUTE), 'src');
    s.writer.stop();
    assert.equal(
      s.db
        .prepare('SELECT seq FROM readings WHERE ts = ?')
        .pluck()
        .get(T0 + 2 * MINUTE),
      4,
      'seq continues after the recovered latest',
    );
  });

  it('maintenance writes held rollups before it trims them', async () => {
    s = storeRig({ summaryInterval: INTERVAL });
    s.writer.add(reading('d', 'm', 1, T0 - 10 * MINUTE), 'src');
    s.writer.flush();
    s.writer.add(reading('d', 'm', 2, T0), 'src');
    s.writer.add(reading('d', 'm', 3, T0 + 1), 'src');
    s.writer.flush();
    const maintenance = new StoreMaintenance(
      s.db,
      { retention: MINUTE, maxSize: 2 ** 40, maxOutboxRows: 1_000_000 },
      {
        clock: s.clock,
        metrics: s.metrics,
        log: silentLogger(),
        outbox: new Outbox(s.db),
        forwardedUpTo: () => null,
        syncSummaries: () => s.writer.syncSummaries(),
      },
    );
    const pass = maintenance.retain();
    s.clock.advance(0);
    assert.equal(await pass, 1);
    s.writer.stop();
    assert.deepEqual(
      stored(s.db).rollups.map((r) => [r.count, r.sum]),
      [[2, 5]],
      'the minute recomputed from its readings, not counted twice',
    );
  });
});

/** A step of the property test: a reading, a group commit, a clock tick, a query or a crash. */
type Step =
  | { kind: 'reading'; device: 'a' | 'b' | 'c'; value: number; dt: number }
  | { kind: 'commit' }
  | { kind: 'tick'; ms: number }
  | { kind: 'sync' }
  | { kind: 'crash' };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({
      kind: fc.constant('reading' as const),
      device: fc.constantFrom('a' as const, 'b' as const, 'c' as const),
      value: fc.integer({ min: -5, max: 5 }),
      // Event time over 6 minutes in 30 s steps: in order, late within and beyond the horizon,
      // and the same ts again (a tie, which the later arrival wins).
      dt: fc.integer({ min: 0, max: 12 }).map((i) => i * 30_000),
    }),
  },
  { weight: 3, arbitrary: fc.constant({ kind: 'commit' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('tick' as const), ms: fc.constantFrom(200, 4_000) }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'sync' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'crash' as const }) },
);

describe('Summaries against summaries written in every commit', () => {
  it('end equal to them through held-back commits, late readings, queries and crashes', () => {
    const base = mkdtempSync(join(tmpdir(), 'tidegate-summaries-'));
    let n = 0;
    try {
      fc.assert(
        fc.property(fc.array(step, { minLength: 1, maxLength: 80 }), (steps) => {
          const path = join(base, `held-${n++}.db`);
          const reference = storeRig({ summaryInterval: 0 });
          let held = storeRig({ summaryInterval: INTERVAL }, openDatabase(path, { synchronous: 'normal' }));
          try {
            for (const x of steps) {
              if (x.kind === 'reading') {
                const r = reading(x.device, 'm', x.value, T0 + x.dt);
                reference.writer.add(r, 'src');
                held.writer.add(r, 'src');
              } else if (x.kind === 'commit') {
                reference.writer.flush();
                held.writer.flush();
              } else if (x.kind === 'tick') {
                reference.clock.advance(x.ms);
                held.clock.advance(x.ms);
              } else if (x.kind === 'sync') {
                held.writer.syncSummaries();
                assert.deepEqual(stored(held.db), stored(reference.db), 'after a sync');
              } else {
                // What both committed survives; what waited for a commit is lost by both.
                reference.writer.flush();
                held.writer.flush();
                held.db.close();
                const now = held.clock.now();
                held = storeRig({ summaryInterval: INTERVAL }, openDatabase(path, { synchronous: 'normal' }));
                held.clock.advanceTo(now);
                assert.deepEqual(stored(held.db), stored(reference.db), 'after a crash');
              }
            }
            reference.writer.stop();
            held.writer.stop();
            assert.deepEqual(stored(held.db), stored(reference.db), 'at stop');
          } finally {
            reference.close();
            held.close();
            rmSync(path, { force: true });
            rmSync(`${path}-wal`, { force: true });
            rmSync(`${path}-shm`, { force: true });
          }
        }),
        { numRuns: 150 },
      );
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});
