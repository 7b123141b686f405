import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { silentLogger } from '../../src/runtime/log.js';
import { openDatabase } from '../../src/store/database.js';
import { StoreMaintenance } from '../../src/store/maintenance.js';
import { MIGRATIONS, migrate, schemaVersion } from '../../src/store/migrations.js';
import { Outbox } from '../../src/store/outbox.js';
import type { DownsampleAgg } from '../../src/store/readings-query.js';
import { makeTempDir } from '../helpers/tmp.js';
import { reading, rowCount, type StoreRig, storeRig, T0 } from './rig.js';

const MINUTE = 60_000;
const DAY = 86_400_000;

/** The rollups as stored, and as they should be: recomputed from the raw readings. */
function rollupsVsReadings(s: StoreRig): { stored: unknown[]; expected: unknown[] } {
  const stored = s.db
    .prepare('SELECT minute, series_id, count, sum, min, max FROM readings_1m ORDER BY minute, series_id')
    .all();
  const expected = s.db
    .prepare(
      `SELECT ts - (((ts % 60000) + 60000) % 60000) AS minute, series_id, count(*) AS count, sum(value) AS sum,
         min(value) AS min, max(value) AS max
       FROM readings GROUP BY minute, series_id ORDER BY minute, series_id`,
    )
    .all();
  return { stored, expected };
}

function assertRollupsMatch(s: StoreRig): void {
  const { stored, expected } = rollupsVsReadings(s);
  assert.deepEqual(stored, expected);
}

/** Brute force: the downsampled points from every stored reading, as the API defines them. */
function bruteForce(
  s: StoreRig,
  filter: { from?: number; to?: number; step: number; agg: DownsampleAgg; devices?: string[] },
): { device: string; metric: string; ts: number; value: number; count: number }[] {
  const all = s.query.readings({ order: 'asc', limit: 1_000_000 }).items;
  const buckets = new Map<string, { device: string; metric: string; ts: number; values: number[] }>();
  for (const r of all) {
    if (filter.from !== undefined && r.ts < filter.from) continue;
    if (filter.to !== undefined && r.ts >= filter.to) continue;
    if (filter.devices && !filter.devices.includes(r.device)) continue;
    const ts = r.ts - (((r.ts % filter.step) + filter.step) % filter.step);
    const key = `${ts}|${r.device}|${r.metric}`;
    let b = buckets.get(key);
    if (!b) {
      b = { device: r.device, metric: r.metric, ts, values: [] };
      buckets.set(key, b);
    }
    b.values.push(r.value);
  }
  const fold: Record<string, (v: number[]) => number> = {
    avg: (v) => v.reduce((a, b) => a + b, 0) / v.length,
    sum: (v) => v.reduce((a, b) => a + b, 0),
    min: (v) => Math.min(...v),
    max: (v) => Math.max(...v),
    count: (v) => v.length,
  };
  return [...buckets.values()]
    .map((b) => ({
      device: b.device,
      metric: b.metric,
      ts: b.ts,
      value: (fold[filter.agg] as (v: number[]) => number)(b.values),
      count: b.values.length,
    }))
    .sort((a, b) => a.ts - b.ts || a.device.localeCompare(b.device));
}

describe('readings clustered by time, with per-minute rollups', () => {
  let s: StoreRig;
  afterEach(() => s.close());

  it('rollups count only readings actually stored: a redelivery adds nothing', () => {
    s = storeRig();
    for (let i = 0; i < 3; i++) {
      s.writer.add(reading('d', 'm', 5, T0 + 1000), 'src');
      s.writer.add(reading('d', 'm', 7, T0 + 2000), 'src');
      s.writer.flush();
    }
    assert.equal(rowCount(s.db), 2);
    assert.deepEqual(s.db.prepare('SELECT count, sum, min, max FROM readings_1m').all(), [
      { count: 2, sum: 12, min: 5, max: 7 },
    ]);
  });

  it('a late reading into an old minute updates that minute; batches spanning minutes split', () => {
    s = storeRig();
    for (let i = 0; i < 300; i++) s.writer.add(reading(`d${i % 3}`, 'm', i, T0 + i * 1000), 'src');
    s.writer.flush();
    s.writer.add(reading('d1', 'm', -50, T0 + 30_500), 'src');
    s.writer.flush();
    assertRollupsMatch(s);
    assert.equal(s.db.prepare('SELECT count(*) FROM readings_1m').pluck().get(), 15);
  });

  it('seq continues after a restart: arrival order and cursors never reuse a position', () => {
    const tmp = makeTempDir();
    const path = tmp.file('seq.db');
    try {
      s = storeRig({}, openDatabase(path, { synchronous: 'normal' }));
      for (let i = 0; i < 10; i++) s.writer.add(reading('a', 'm', i, T0 + i), 'src');
      s.writer.flush();
      s.close();
      s = storeRig({}, openDatabase(path, { synchronous: 'normal' }));
      // Older event time, later arrival.
      s.writer.add(reading('b', 'm', 99, T0 - 5), 'src');
      s.writer.flush();
      const seqs = s.db.prepare('SELECT seq FROM readings ORDER BY seq').pluck().all() as number[];
      assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      const last = s.db.prepare('SELECT ts FROM readings WHERE seq = 11').pluck().get();
      assert.equal(last, T0 - 5);
    } finally {
      s.close();
      tmp.remove();
      s = storeRig();
    }
  });

  it('retention and the size cap keep the rollups equal to the readings left', async () => {
    s = storeRig({ batchSize: 100_000 });
    // 3 days at one reading per 7 s for 4 series: minute boundaries fall inside the deletions.
    for (let t = T0 - 3 * DAY; t < T0; t += 7_000)
      for (let k = 0; k < 4; k++) s.writer.add(reading(`d${k}`, 'm', (t / 1000 + k) % 97, t + k), 'src');
    s.writer.flush();
    assertRollupsMatch(s);
    const m = (retention: number, maxSize: number) =>
      new StoreMaintenance(
        s.db,
        { retention, maxSize, maxOutboxRows: 1_000_000 },
        {
          clock: s.clock,
          metrics: s.metrics,
          log: silentLogger(),
          outbox: new Outbox(s.db),
          forwardedUpTo: () => null,
        },
      );
    // A cutoff in the middle of a minute.
    const pass = m(2 * DAY + 12_345, 2 ** 40).retain();
    s.clock.advance(0);
    assert.ok((await pass) > 0);
    assertRollupsMatch(s);
    const cap = m(365 * DAY, 2 ** 40);
    const used = cap.usedBytes();
    assert.ok(m(365 * DAY, Math.floor(used * 0.6)).enforceCaps() > 0);
    assertRollupsMatch(s);
    assert.ok(rowCount(s.db) > 0);
  });

  it('a retention pass deletes the rollups of the minutes it empties as it goes', async () => {
    s = storeRig({ batchSize: 100_000 });
    // 12 h of readings two days old, 4 series at one a second: 35 chunks to delete.
    for (let t = T0 - 2 * DAY; t < T0 - DAY - DAY / 2; t += 1000)
      for (let k = 0; k < 4; k++) s.writer.add(reading(`d${k}`, 'm', k, t), 'src');
    s.writer.add(reading('d0', 'm', 1, T0), 'src');
    s.writer.flush();
    const m = new StoreMaintenance(
      s.db,
      { retention: DAY, maxSize: 2 ** 40, maxOutboxRows: 1_000_000 },
      {
        clock: s.clock,
        metrics: s.metrics,
        log: silentLogger(),
        outbox: new Outbox(s.db),
        forwardedUpTo: () => null,
      },
    );
    const pass = m.retain();
    const stale: { left: number; rollups: number }[] = [];
    const probe = () => {
      const oldest = s.db.prepare('SELECT min(ts) FROM readings').pluck().get() as number;
      const rollups = s.db
        .prepare('SELECT count(*) FROM readings_1m WHERE minute < ?')
        .pluck()
        .get(oldest - (oldest % MINUTE)) as number;
      stale.push({ left: rowCount(s.db), rollups });
      if (stale.length < 10) s.clock.setTimeout(probe, 0);
    };
    s.clock.setTimeout(probe, 0);
    s.clock.advance(0);
    assert.ok((await pass) > 0);
    assert.ok(
      stale.every(({ left }) => left > 1),
      'the probes ran part way through the pass',
    );
    assert.deepEqual(
      stale.map((p) => p.rollups),
      stale.map(() => 0),
      'no rollup of a minute whose readings are gone',
    );
    assertRollupsMatch(s);
  });

  it('downsampling from rollups (scanned, or looked up by key) plus partial end minutes equals aggregating every reading', () => {
    s = storeRig({ batchSize: 100_000 });
    // Twelve series, irregular times over 3 hours, integer values (sums exact in any order).
    for (let i = 0; i < 12_000; i++) {
      const t = T0 + ((i * 7919) % (3 * 3_600_000)) + (i % 13);
      s.writer.add(reading(`d${String(i % 12).padStart(2, '0')}`, 'm', (i * 31) % 200, t), 'src');
    }
    s.writer.flush();
    const span = 3 * 3_600_000;
    // One series of twelve, in a bounded range, is read by looking its minutes up; the rest by a scan.
    const bounded = {
      from: T0,
      to: T0 + span,
      step: MINUTE,
      agg: 'avg' as const,
      order: 'asc' as const,
      limit: 1,
    };
    assert.equal(s.query.rollupAccess({ ...bounded, devices: ['d02'] }), 'seek');
    assert.equal(s.query.rollupAccess({ ...bounded, devices: ['d01', 'd02'] }), 'scan');
    assert.equal(
      s.query.rollupAccess({ step: MINUTE, agg: 'avg', order: 'asc', limit: 1, devices: ['d02'] }),
      'scan',
    );
    fc.assert(
      fc.property(
        fc.option(fc.integer({ min: -MINUTE, max: span }), { nil: undefined }),
        fc.option(fc.integer({ min: 1, max: span + MINUTE }), { nil: undefined }),
        fc.constantFrom(1, 2, 5, 60),
        fc.constantFrom<DownsampleAgg>('avg', 'min', 'max', 'sum', 'count'),
        fc.boolean(),
        (fromOffset, length, minutes, agg, oneDevice) => {
          const from = fromOffset === undefined ? undefined : T0 + fromOffset;
          const to = length === undefined ? undefined : (from ?? T0) + length;
          const step = minutes * MINUTE;
          const filter = {
            ...(from !== undefined ? { from } : {}),
            ...(to !== undefined ? { to } : {}),
            step,
            agg,
            ...(oneDevice ? { devices: ['d02'] } : {}),
          };
          const got = s.query
            .downsample({ ...filter, order: 'asc', limit: 100_000 })
            .items.map(({ device, metric, ts, value, count }) => ({ device, metric, ts, value, count }));
          const want = bruteForce(s, filter);
          // The other way of reading the rollups gives the very same points.
          const other =
            s.query.rollupAccess({ ...filter, order: 'asc', limit: 1 }) === 'seek' ? 'scan' : 'seek';
          assert.deepEqual(
            s.query.downsample({ ...filter, order: 'asc', limit: 100_000 }, other).items,
            s.query.downsample({ ...filter, order: 'asc', limit: 100_000 }).items,
          );
          if (agg === 'avg') {
            assert.equal(got.length, want.length);
            got.forEach((g, i) => {
              const w = want[i] as (typeof want)[number];
              assert.deepEqual({ ...g, value: 0 }, { ...w, value: 0 });
              assert.ok(Math.abs(g.value - w.value) < 1e-9, `${g.value} vs ${w.value}`);
            });
          } else assert.deepEqual(got, want);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('migration 5: readings move to the time-ordered table', () => {
  it('keeps every reading with its arrival order, and builds the rollups', () => {
    const tmp = makeTempDir();
    const path = tmp.file('v4.db');
    try {
      const old = new Database(path);
      migrate(old, MIGRATIONS.slice(0, 4));
      old.exec(`INSERT INTO series (id, device, metric, last_ts, last_value) VALUES (1, 'a', 'm', ${T0 + 2}, 3), (2, 'b', 'm', ${T0}, 1);
        INSERT INTO readings (id, series_id, ts, value) VALUES (1, 1, ${T0 + 1}, 2), (2, 2, ${T0}, 1), (3, 1, ${T0 + 2}, 3), (4, 1, ${T0 - MINUTE}, 9);`);
      old.close();
      const s = storeRig({}, openDatabase(path, { synchronous: 'normal' }));
      try {
        assert.equal(schemaVersion(s.db), MIGRATIONS.at(-1)?.version);
        assert.deepEqual(s.db.prepare('SELECT seq, series_id, ts, value FROM readings ORDER BY seq').all(), [
          { seq: 1, series_id: 1, ts: T0 + 1, value: 2 },
          { seq: 2, series_id: 2, ts: T0, value: 1 },
          { seq: 3, series_id: 1, ts: T0 + 2, value: 3 },
          { seq: 4, series_id: 1, ts: T0 - MINUTE, value: 9 },
        ]);
        assertRollupsMatch(s);
        s.writer.add(reading('b', 'm', 5, T0 + 10), 'src');
        s.writer.flush();
        assert.equal(s.db.prepare('SELECT max(seq) FROM readings').pluck().get(), 5);
      } finally {
        s.close();
      }
    } finally {
      tmp.remove();
    }
  });
});
