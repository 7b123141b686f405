/**
 * LiveRules across a restart (SPEC §4): no window's revision is emitted twice, and what it
 * remembers of the results stored before the restart drains away instead of staying for good.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { Ingest } from '../../src/ingest/ingest.js';
import { validateRule } from '../../src/model/rule.js';
import { LiveRules } from '../../src/rules/live.js';
import { ManualClock } from '../../src/runtime/clock.js';
import { EventBus } from '../../src/runtime/events.js';
import { RateLimitedLog, silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { type Db, openDatabase } from '../../src/store/database.js';
import { ReadingWriter } from '../../src/store/reading-writer.js';
import { RuleStore } from '../../src/store/rule-store.js';
import { reading, T0 } from '../store/rig.js';

const IDLE = 20_000;
const checked = validateRule({
  id: 'ten',
  window: { type: 'tumbling', size: '10s' },
  watermark: { idleTimeout: IDLE },
  aggregates: { n: 'count' },
});
assert.ok(checked.ok);
const RULE = checked.rule;

/** One run of the gateway's rules over the store `db`: stop() is the restart (or the crash after a commit). */
function run(db: Db, clock: ManualClock) {
  const metrics = new Metrics();
  const log = silentLogger();
  const bus = new EventBus();
  const writer = new ReadingWriter(
    db,
    { batchSize: 1000, flushInterval: 200, maxPending: 10_000, storeReadings: true },
    { clock, metrics, log },
  );
  writer.start();
  const rules = new LiveRules([RULE], { db, writer, bus, clock, metrics, log, store: new RuleStore(db) });
  rules.start();
  const ingest = new Ingest(
    { maxFutureSkew: 300_000 },
    { clock, metrics, warn: new RateLimitedLog(log, () => clock.now()), bus, writer },
  );
  return {
    rules,
    metrics,
    send: (device: string, s: number) => ingest.accept('src', reading(device, 't', 1, T0 + s * 1000)),
    stop() {
      rules.stop();
      writer.stop();
    },
  };
}

/** Stored results as `device start-end rev`, seconds from T0. */
function results(db: Db): string[] {
  const rows = db.prepare('SELECT key, start, "end", revision FROM results ORDER BY id').all() as {
    key: string;
    start: number;
    end: number;
    revision: number;
  }[];
  return rows.map(
    (r) =>
      `${(JSON.parse(r.key) as { device: string }).device} ${(r.start - T0) / 1000}-${(r.end - T0) / 1000} rev=${r.revision}`,
  );
}

describe('LiveRules after a restart', () => {
  let db: Db;
  let stop: (() => void) | undefined;
  afterEach(() => {
    stop?.();
    stop = undefined;
    db.close();
  });

  it('a window idleness closed before the restart and closes again after it: stored once, then forgotten', () => {
    db = openDatabase(':memory:', { synchronous: 'normal' });
    const clock = new ManualClock(T0 + 60_000);
    const first = run(db, clock);
    first.send('a', 5);
    clock.advance(IDLE + 1_000);
    first.stop();
    assert.deepEqual(results(db), ['a 0-10 rev=0'], 'closed by idleness');
    // The rebuild reopens [0, 10) from the stored reading; idleness closes it again.
    const second = run(db, clock);
    stop = second.stop;
    assert.equal(second.rules.restoredWindows, 1);
    clock.advance(IDLE + 1_000);
    second.stop();
    stop = undefined;
    assert.deepEqual(results(db), ['a 0-10 rev=0'], 'not emitted twice');
    assert.equal(second.rules.restoredWindows, 0, 'the engine caught up with the stored revision');
  });

  it('a window closed before the restart that the rebuild cannot reopen is forgotten once it cannot fire again', () => {
    db = openDatabase(':memory:', { synchronous: 'normal' });
    const clock = new ManualClock(T0 + 120_000);
    const first = run(db, clock);
    // The reading at 65 s closes [0, 10); the rebuild (the last minute of event time) starts at 5 s.
    first.send('a', 4);
    first.send('a', 65);
    first.stop();
    const second = run(db, clock);
    stop = second.stop;
    assert.equal(second.rules.restoredWindows, 1);
    second.send('a', 75);
    clock.advance(60_000 + IDLE + 1_000);
    assert.equal(second.rules.restoredWindows, 0);
    assert.deepEqual(results(db), ['a 0-10 rev=0', 'a 60-70 rev=0', 'a 70-80 rev=0']);
  });

  it('the rebuild forgets windows it closes again itself', () => {
    db = openDatabase(':memory:', { synchronous: 'normal' });
    const clock = new ManualClock(T0 + 60_000);
    const first = run(db, clock);
    first.send('a', 5);
    first.send('a', 15);
    first.stop();
    const second = run(db, clock);
    stop = second.stop;
    assert.equal(second.rules.restoredWindows, 0, '[0, 10) closed again by the rebuilt reading at 15 s');
    second.send('a', 25);
    assert.deepEqual(results(db).slice(0, 1), ['a 0-10 rev=0']);
  });

  it('a silent device keeps its stored revision while another device races ahead in event time', () => {
    db = openDatabase(':memory:', { synchronous: 'normal' });
    const clock = new ManualClock(T0 + 60_000);
    const first = run(db, clock);
    first.send('a', 5);
    clock.advance(IDLE + 1_000);
    first.stop();
    // Down for ten minutes; then b speaks, far past a's window in event time.
    clock.advance(600_000);
    const second = run(db, clock);
    stop = second.stop;
    second.send('b', 700);
    clock.advance(5_000);
    assert.equal(second.rules.restoredWindows, 1, 'a has not gone idle yet: its [0, 10) can close again');
    clock.advance(IDLE);
    second.stop();
    stop = undefined;
    assert.deepEqual(
      results(db).filter((r) => r.startsWith('a ')),
      ['a 0-10 rev=0'],
      'closed again by idleness, not emitted twice',
    );
    assert.equal(second.rules.restoredWindows, 0);
  });
});

describe('LiveRules tick', () => {
  it('a tick that throws is counted and the next one runs', async () => {
    const db = openDatabase(':memory:', { synchronous: 'normal' });
    const clock = new ManualClock(T0);
    const gw = run(db, clock);
    try {
      const engine = gw.rules.engine;
      const tick = engine.tick.bind(engine);
      let calls = 0;
      engine.tick = () => {
        if (calls++ === 0) throw new Error('a bug in a tick');
        return tick();
      };
      assert.doesNotThrow(() => clock.advance(2_000));
      assert.equal(calls, 2, 'the tick after the failed one ran');
      const m = gw.metrics.registry.getSingleMetric('tidegate_internal_errors_total');
      const values = (await m?.get())?.values ?? [];
      assert.deepEqual(
        values.map((v) => [v.labels.where, v.value]),
        [['rules/tick', 1]],
      );
    } finally {
      gw.stop();
      db.close();
    }
  });
});
