import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { CommitBatchBuilder, CommitCore, type CommitCoreOptions } from '../../src/store/commit-core.js';
import { type Db, openDatabase } from '../../src/store/database.js';
import { SizeWatch, T0 } from './rig.js';

const CAP = 100;
/** Longer than the test: devices already written have their last_seen held back. */
const INTERVAL = 60_000;

interface DeviceRow {
  id: string;
  source: string;
  first_seen: number;
  last_seen: number;
}

/** Client-chosen devices, many times the cap. */
function floodDevices(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `dev-${i}`);
}

/** Commits one reading per device, in `order`, in batches of `size`, heard at `at` from `source(i)`. */
function hear(
  core: CommitCore,
  devices: string[],
  order: number[],
  at: number,
  size: number,
  source: (i: number) => string,
  onCommit: (remembered: number) => void = () => {},
): void {
  for (let start = 0; start < order.length; start += size) {
    const builder = new CommitBatchBuilder();
    for (const i of order.slice(start, start + size))
      builder.add(devices[i] as string, 'm', i, at, null, null, source(i), at);
    const batch = builder.batch;
    batch.now = at;
    assert.equal(core.commit(batch), Math.min(size, order.length - start));
    onCommit(core.devicesWritten);
  }
}

function storedDevices(db: Db): DeviceRow[] {
  return db.prepare('SELECT id, source, first_seen, last_seen FROM devices ORDER BY id').all() as DeviceRow[];
}

describe('Summaries: the devices written, under a flood of client-chosen devices', () => {
  const dbs: Db[] = [];
  afterEach(() => {
    for (const db of dbs.splice(0)) db.close();
  });

  function core(options: Partial<CommitCoreOptions> = {}): { db: Db; core: CommitCore } {
    const db = openDatabase(':memory:', { synchronous: 'normal' });
    dbs.push(db);
    const c = new CommitCore(
      db,
      { storeReadings: true, forwardReadingsInterval: null, summaryInterval: INTERVAL, ...options },
      T0,
    );
    return { db, core: c };
  }

  it('stays within its cap, and the store ends as without one', () => {
    const capped = core({ maxDevicesWritten: CAP });
    // The same flood with the default cap, which it never reaches: what the store should hold.
    const reference = core();
    const devices = floodDevices(1_234);
    const n = devices.length;
    assert.ok(n > 10 * CAP);

    const size = new SizeWatch();
    const watch = (remembered: number) => size.see(remembered);
    const forward = devices.map((_, i) => i);
    const both = (order: number[], at: number, size: number, source: (i: number) => string) => {
      hear(capped.core, devices, order, at, size, source, watch);
      hear(reference.core, devices, order, at, size, source);
    };

    // Every device new: written at once, in batches that cross the cap part way.
    both(forward, T0, 37, () => 'flood');
    assert.ok(size.most <= CAP, `at most ${size.most} devices remembered, cap ${CAP}`);
    assert.ok(size.drops >= 10, `the memory started again ${size.drops} times`);
    assert.equal(reference.core.devicesWritten, n);

    // Heard again, backwards: those remembered are held back, those forgotten written at once.
    both(forward.toReversed(), T0 + 1_000, 53, () => 'flood');
    assert.ok(size.most <= CAP, `at most ${size.most} devices remembered, cap ${CAP}`);
    const early = storedDevices(capped.db);
    assert.equal(early.length, n);
    const held = early.filter((d) => d.last_seen === T0).length;
    assert.ok(held > 0 && held <= CAP, `${held} devices held back`);
    for (const d of early) assert.ok(d.last_seen === T0 || d.last_seen === T0 + 1_000, d.id);

    capped.core.syncSummaries(T0 + 2_000);
    reference.core.syncSummaries(T0 + 2_000);
    const synced = storedDevices(capped.db);
    assert.deepEqual(synced, storedDevices(reference.db));
    assert.deepEqual(
      synced,
      devices.toSorted().map((id) => ({ id, source: 'flood', first_seen: T0, last_seen: T0 + 1_000 })),
    );

    // Every third device moves to another source: written at once, remembered or not.
    const moved = (i: number) => (i % 3 === 0 ? 'moved' : 'flood');
    both(forward, T0 + 3_000, 41, moved);
    assert.ok(size.most <= CAP, `at most ${size.most} devices remembered, cap ${CAP}`);
    for (const d of storedDevices(capped.db)) {
      if (moved(Number(d.id.slice(4))) === 'moved')
        assert.deepEqual([d.source, d.last_seen], ['moved', T0 + 3_000]);
    }
    capped.core.syncSummaries(T0 + 4_000);
    reference.core.syncSummaries(T0 + 4_000);
    assert.deepEqual(storedDevices(capped.db), storedDevices(reference.db));
    assert.deepEqual(
      storedDevices(capped.db),
      devices
        .map((id, i) => ({ id, source: moved(i), first_seen: T0, last_seen: T0 + 3_000 }))
        .toSorted((a, b) => (a.id < b.id ? -1 : 1)),
    );
    assert.equal(capped.db.prepare('SELECT count(*) FROM readings').pluck().get(), 3 * n);
  });

  it('caps at 50,000 devices by default', () => {
    const { db, core: c } = core();
    const devices = floodDevices(50_500);
    const size = new SizeWatch();
    hear(
      c,
      devices,
      devices.map((_, i) => i),
      T0,
      5_000,
      () => 'flood',
      (n) => size.see(n),
    );
    assert.equal(size.most, 50_000);
    assert.ok(size.drops > 0, 'the memory started again past 50,000');
    assert.equal(db.prepare('SELECT count(*) FROM devices').pluck().get(), 50_500);
  });
});

describe('Summaries: a device that moves to another source while its last_seen is held back', () => {
  const dbs: Db[] = [];
  afterEach(() => {
    for (const db of dbs.splice(0)) db.close();
  });

  function core(summaryInterval: number): { db: Db; core: CommitCore } {
    const db = openDatabase(':memory:', { synchronous: 'normal' });
    dbs.push(db);
    const c = new CommitCore(db, { storeReadings: true, forwardReadingsInterval: null, summaryInterval }, T0);
    return { db, core: c };
  }

  it('keeps its new source when what was held under the old one is written', () => {
    const held = core(INTERVAL);
    // Summaries written with every commit: what the store should hold after each sync.
    const reference = core(0);
    const devices = floodDevices(12);
    const all = devices.map((_, i) => i);
    const both = (at: number, source: (i: number) => string, order = all) => {
      hear(held.core, devices, order, at, 5, source);
      hear(reference.core, devices, order, at, 5, source);
    };
    const sync = (at: number) => {
      held.core.syncSummaries(at);
      reference.core.syncSummaries(at);
    };
    /** dev-0, 3, 6, 9 stay on a; from round 2 the others move to b; in round 3 dev-2, 5, 8, 11 move back to a; in round 4 to b again. */
    const sourceAt = (round: number) => (i: number) =>
      i % 3 === 0 || round < 2 ? 'a' : i % 3 === 1 || round !== 3 ? 'b' : 'a';

    both(T0, sourceAt(0)); // new: written at once
    both(T0 + 1_000, sourceAt(1)); // written already under a: last_seen held back
    assert.ok(storedDevices(held.db).every((d) => d.source === 'a' && d.last_seen === T0));

    both(T0 + 2_000, sourceAt(2)); // two in three move to b: written at once, the rest held back
    for (const d of storedDevices(held.db)) {
      const i = Number(d.id.slice(4));
      assert.deepEqual(
        [d.source, d.last_seen],
        i % 3 === 0 ? ['a', T0] : ['b', T0 + 2_000],
        `${d.id} before the sync`,
      );
    }
    sync(T0 + 2_500);
    const expected = (round: number, at: number) =>
      devices
        .map((id, i) => ({ id, source: sourceAt(round)(i), first_seen: T0, last_seen: at }))
        .toSorted((a, b) => (a.id < b.id ? -1 : 1));
    assert.deepEqual(storedDevices(held.db), expected(2, T0 + 2_000));
    assert.deepEqual(storedDevices(held.db), storedDevices(reference.db));

    // Again, with no sync between the moves: back on a (written at once), held under a, moved to b
    // (written at once), heard again on b (held back), and one in three moved back to a (at once).
    both(T0 + 3_000, sourceAt(1));
    both(T0 + 3_500, sourceAt(1));
    both(T0 + 4_000, sourceAt(2));
    both(T0 + 5_000, sourceAt(2));
    both(T0 + 6_000, sourceAt(3));
    sync(T0 + 6_500);
    assert.deepEqual(storedDevices(held.db), expected(3, T0 + 6_000));
    assert.deepEqual(storedDevices(held.db), storedDevices(reference.db));

    // Heard again on the source it ended on: held back and then written, the source unchanged.
    both(T0 + 7_000, sourceAt(3));
    sync(T0 + 7_500);
    assert.deepEqual(storedDevices(held.db), expected(3, T0 + 7_000));
    assert.deepEqual(storedDevices(held.db), storedDevices(reference.db));

    // The clock stepped back between the held entry and the move: the held last_seen, the larger,
    // is still written, now with the source moved to.
    const back = all.filter((i) => i % 3 === 2);
    both(T0 + 9_000, sourceAt(3), back);
    both(T0 + 8_000, sourceAt(4), back);
    sync(T0 + 9_500);
    assert.deepEqual(
      storedDevices(held.db),
      expected(4, T0 + 7_000).map((d) =>
        Number(d.id.slice(4)) % 3 === 2 ? { ...d, last_seen: T0 + 9_000 } : d,
      ),
    );
    assert.deepEqual(storedDevices(held.db), storedDevices(reference.db));
    assert.equal(
      held.db.prepare('SELECT count(*) FROM readings').pluck().get(),
      9 * devices.length + 2 * back.length,
    );
  });
});
