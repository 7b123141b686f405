import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { CommitCore, type CommitCoreOptions, emptyCommitBatch } from '../../src/store/commit-core.js';
import { type Db, openDatabase } from '../../src/store/database.js';
import { T0 } from './rig.js';

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
    const batch = emptyCommitBatch();
    for (const i of order.slice(start, start + size)) {
      batch.device.push(devices[i] as string);
      batch.metric.push('m');
      batch.value.push(i);
      batch.ts.push(at);
      batch.unit.push(null);
      batch.tags.push(null);
      batch.source.push(source(i));
      batch.arrivedAt.push(at);
    }
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

    let most = 0;
    let clears = 0;
    let previous = 0;
    const watch = (remembered: number) => {
      most = Math.max(most, remembered);
      if (remembered < previous) clears++;
      previous = remembered;
    };
    const forward = devices.map((_, i) => i);
    const both = (order: number[], at: number, size: number, source: (i: number) => string) => {
      hear(capped.core, devices, order, at, size, source, watch);
      hear(reference.core, devices, order, at, size, source);
    };

    // Every device new: written at once, in batches that cross the cap part way.
    both(forward, T0, 37, () => 'flood');
    assert.ok(most <= CAP, `at most ${most} devices remembered, cap ${CAP}`);
    assert.ok(clears >= 10, `the memory started again ${clears} times`);
    assert.equal(reference.core.devicesWritten, n);

    // Heard again, backwards: those remembered are held back, those forgotten written at once.
    both(forward.toReversed(), T0 + 1_000, 53, () => 'flood');
    assert.ok(most <= CAP, `at most ${most} devices remembered, cap ${CAP}`);
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
    assert.ok(most <= CAP, `at most ${most} devices remembered, cap ${CAP}`);
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
    let most = 0;
    let dropped = false;
    hear(
      c,
      devices,
      devices.map((_, i) => i),
      T0,
      5_000,
      () => 'flood',
      (remembered) => {
        if (remembered < most) dropped = true;
        most = Math.max(most, remembered);
      },
    );
    assert.equal(most, 50_000);
    assert.ok(dropped, 'the memory started again past 50,000');
    assert.equal(db.prepare('SELECT count(*) FROM devices').pluck().get(), 50_500);
  });
});
