import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { CommitCore, type CommitCoreOptions } from '../../src/store/commit-core.js';
import { type Db, openDatabase } from '../../src/store/database.js';
import { commitEach, manySeries, SizeWatch, T0 } from './rig.js';

const CAP = 100;

/** Client-chosen series, many times the cap; two pairs would collide if device and metric were joined by '|'. */
function floodSeries(): { device: string; metric: string }[] {
  const series: { device: string; metric: string }[] = [];
  for (let d = 0; d < 40; d++) {
    for (let m = 0; m < 30; m++) series.push({ device: `dev-${d}`, metric: `m-${m}` });
  }
  series.push({ device: 'a|b', metric: 'c' }, { device: 'a', metric: 'b|c' });
  return series;
}

function storedIds(db: Db): Map<string, number> {
  const rows = db.prepare('SELECT id, device, metric FROM series').all() as {
    id: number;
    device: string;
    metric: string;
  }[];
  return new Map(rows.map((r) => [JSON.stringify([r.device, r.metric]), r.id]));
}

describe('CommitCore: the series-id cache under a flood of client-chosen series', () => {
  let db: Db;
  afterEach(() => db.close());

  const options: CommitCoreOptions = {
    storeReadings: true,
    forwardReadingsInterval: null,
    summaryInterval: 0,
    maxCachedSeries: CAP,
  };

  it('stays within its cap, and after each clear keeps every series on its one id', () => {
    db = openDatabase(':memory:', { synchronous: 'normal' });
    const core = new CommitCore(db, options, T0);
    const series = floodSeries();
    const n = series.length;
    assert.ok(n > 10 * CAP);

    const size = new SizeWatch();
    const watch = () => size.see(core.cachedSeriesIds);

    // First pass: every series new, in batches that cross the cap part way.
    const forward = series.map((_, i) => i);
    commitEach(core, series, forward, T0, 37, watch);
    assert.ok(size.most <= CAP, `at most ${size.most} series ids cached, cap ${CAP}`);
    assert.ok(size.drops >= 10, `the cache started again ${size.drops} times`);
    const first = storedIds(db);
    assert.equal(first.size, n, 'one series row per distinct (device, metric)');

    // Second pass, backwards: the series met first were cleared long ago and come back.
    commitEach(core, series, forward.toReversed(), T0 + 1000, 53, watch);
    assert.ok(size.most <= CAP, `at most ${size.most} series ids cached, cap ${CAP}`);
    assert.deepEqual(storedIds(db), first, 'no new series row, no series on another id');

    // Every reading on the series it was written for, once per pass.
    const rows = db
      .prepare(
        'SELECT s.id, s.device, s.metric, r.value, r.ts FROM readings r JOIN series s ON s.id = r.series_id',
      )
      .all() as { id: number; device: string; metric: string; value: number; ts: number }[];
    assert.equal(rows.length, 2 * n);
    const seen = new Set<string>();
    for (const r of rows) {
      const s = series[r.value] as { device: string; metric: string };
      assert.deepEqual([r.device, r.metric], [s.device, s.metric], `reading ${r.value} at ${r.ts}`);
      assert.equal(r.id, first.get(JSON.stringify([s.device, s.metric])));
      seen.add(`${r.value}@${r.ts}`);
    }
    assert.equal(seen.size, 2 * n, 'no reading stored twice or lost');
  });

  it('caps at 50,000 series ids by default', () => {
    db = openDatabase(':memory:', { synchronous: 'normal' });
    const { maxCachedSeries: _, ...defaults } = options;
    const core = new CommitCore(db, defaults, T0);
    const series = manySeries(50_500);
    const size = new SizeWatch();
    commitEach(
      core,
      series,
      series.map((_, i) => i),
      T0,
      5_000,
      () => size.see(core.cachedSeriesIds),
    );
    assert.equal(size.most, 50_000);
    assert.ok(size.drops > 0, 'the cache started again past 50,000');
    assert.equal(db.prepare('SELECT count(*) FROM series').pluck().get(), 50_500);
  });
});
