import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { CommitCore, type CommitCoreOptions } from '../../src/store/commit-core.js';
import { type Db, openDatabase } from '../../src/store/database.js';
import { commitEach, manySeries, SizeWatch, T0 } from './rig.js';

const CAP = 100;
/** Event-time bucket of the forwarding (ms); T0 starts one. */
const INTERVAL = 1_000;

/** Client-chosen series, many times the cap. */
function floodSeries(n: number): { device: string; metric: string }[] {
  return Array.from({ length: n }, (_, i) => ({
    device: `dev-${i % 97}`,
    metric: `m-${Math.floor(i / 97)}`,
  }));
}

/** The readings forwarded since outbox row `after`, as [index in `series`, ts]; each checked against its series. */
function forwarded(db: Db, series: { device: string; metric: string }[], after: number): [number, number][] {
  const rows = db
    .prepare("SELECT seq, body FROM outbox WHERE type = 'reading' AND seq > ? ORDER BY seq")
    .all(after) as { seq: number; body: string }[];
  return rows.map((r) => {
    const body = JSON.parse(r.body) as { device: string; metric: string; value: number; ts: string };
    const s = series[body.value] as { device: string; metric: string };
    assert.deepEqual([body.device, body.metric], [s.device, s.metric], `outbox row ${r.seq}`);
    return [body.value, Date.parse(body.ts)];
  });
}

function lastOutboxSeq(db: Db): number {
  return db.prepare('SELECT coalesce(max(seq), 0) FROM outbox').pluck().get() as number;
}

const ascending = (a: number, b: number) => a - b;

describe('ForwardedBuckets: the series remembered under a flood of client-chosen series', () => {
  let db: Db;
  afterEach(() => db.close());

  const options: CommitCoreOptions = {
    storeReadings: true,
    forwardReadingsInterval: INTERVAL,
    summaryInterval: 0,
    maxForwardedSeries: CAP,
  };

  it('stays within its cap; a forgotten series forwards one reading more in its bucket, no other does', () => {
    db = openDatabase(':memory:', { synchronous: 'normal' });
    const core = new CommitCore(db, options, T0);
    const series = floodSeries(1_234);
    const n = series.length;
    assert.ok(n > 10 * CAP);
    const size = new SizeWatch();
    const watch = () => size.see(core.forwardedSeries);
    const forward = series.map((_, i) => i);

    // Every series new in the bucket: each forwards its reading.
    commitEach(core, series, forward, T0, 37, watch);
    assert.ok(size.most <= CAP, `at most ${size.most} series remembered, cap ${CAP}`);
    assert.equal(core.forwardedSeries, CAP);
    assert.deepEqual(
      forwarded(db, series, 0),
      forward.map((i) => [i, T0]),
    );

    // Again in the same bucket, backwards: the last CAP forwarded are remembered and forward
    // nothing; the others were forgotten and forward once more (the flood's own re-forwards
    // evict only series this pass has met already).
    let mark = lastOutboxSeq(db);
    commitEach(core, series, forward.toReversed(), T0 + 1, 53, watch);
    assert.ok(size.most <= CAP, `at most ${size.most} series remembered, cap ${CAP}`);
    const again = forwarded(db, series, mark);
    assert.ok(again.every(([, ts]) => ts === T0 + 1));
    assert.deepEqual(again.map(([i]) => i).toSorted(ascending), forward.slice(0, n - CAP));

    // The next bucket: every series forwards its first reading there, remembered or not; a second
    // reading there goes again only when the series was forgotten meanwhile, as above.
    mark = lastOutboxSeq(db);
    commitEach(core, series, forward, T0 + INTERVAL, 41, watch);
    commitEach(core, series, forward.toReversed(), T0 + INTERVAL + 1, 59, watch);
    assert.ok(size.most <= CAP, `at most ${size.most} series remembered, cap ${CAP}`);
    const next = forwarded(db, series, mark);
    const at = (ts: number) => next.filter(([, t]) => t === ts).map(([i]) => i);
    assert.equal(next.length, 2 * n - CAP);
    assert.deepEqual(at(T0 + INTERVAL), forward);
    assert.deepEqual(at(T0 + INTERVAL + 1).toSorted(ascending), forward.slice(0, n - CAP));
    assert.equal(db.prepare('SELECT count(*) FROM readings').pluck().get(), 4 * n);
  });

  it('caps at 100,000 series by default', () => {
    db = openDatabase(':memory:', { synchronous: 'normal' });
    const { maxForwardedSeries: _, ...defaults } = options;
    const core = new CommitCore(db, defaults, T0);
    const series = manySeries(100_500);
    const size = new SizeWatch();
    commitEach(
      core,
      series,
      series.map((_, i) => i),
      T0,
      5_000,
      () => size.see(core.forwardedSeries),
    );
    assert.equal(size.most, 100_000);
    assert.equal(lastOutboxSeq(db), 100_500);
  });
});
