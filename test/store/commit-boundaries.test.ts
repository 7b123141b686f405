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
import { Outbox } from '../../src/store/outbox.js';
import { ReadingWriter, type ReadingWriterOptions } from '../../src/store/reading-writer.js';
import { RuleStore } from '../../src/store/rule-store.js';
import { metricValue, reading, rowCount, T0 } from './rig.js';

const count = (db: Db, table: string) => db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;

/** The live composition of the gateway's store path: ingest → writer, bus → rules → same commit. */
function pipeline(writerOptions: Partial<ReadingWriterOptions> = {}) {
  const db = openDatabase(':memory:', { synchronous: 'normal' });
  const clock = new ManualClock(T0 + 60_000);
  const metrics = new Metrics();
  const log = silentLogger();
  const bus = new EventBus();
  const writer = new ReadingWriter(
    db,
    { batchSize: 1000, flushInterval: 200, maxPending: 10_000, storeReadings: true, ...writerOptions },
    { clock, metrics, log },
  );
  const checked = validateRule({
    id: 'ten',
    window: { type: 'tumbling', size: '10s' },
    watermark: { idleTimeout: '1h' },
    aggregates: { avg: 'avg' },
  });
  assert.ok(checked.ok);
  const rules = new LiveRules([checked.rule], {
    db,
    writer,
    bus,
    clock,
    metrics,
    log,
    store: new RuleStore(db),
  });
  rules.start();
  const ingest = new Ingest(
    { maxFutureSkew: 300_000 },
    { clock, metrics, warn: new RateLimitedLog(log, () => clock.now()), bus, writer },
  );
  return {
    db,
    writer,
    ingest,
    close() {
      rules.stop();
      writer.stop();
      db.close();
    },
  };
}

describe('commit boundaries a crash could break', () => {
  let close: (() => void) | undefined;
  afterEach(() => close?.());

  it('a reading that fills the batch commits together with the result it causes', () => {
    const p = pipeline({ batchSize: 3 });
    close = p.close;
    p.ingest.accept('src', reading('d', 't', 1, T0 + 1_000));
    p.ingest.accept('src', reading('d', 't', 2, T0 + 2_000));
    assert.equal(rowCount(p.db), 0, 'two readings wait for the batch');
    // Fills the batch and closes the window [T0, T0 + 10 s).
    p.ingest.accept('src', reading('d', 't', 3, T0 + 11_000));
    // A crash now keeps what is committed: the readings must come with their result.
    assert.equal(rowCount(p.db), 3);
    assert.equal(count(p.db, 'results'), 1, 'the result is in the readings’ commit');
  });

  it('a rolled-back commit forwards, on its retry, the readings it had chosen to forward', () => {
    const db = openDatabase(':memory:', { synchronous: 'normal' });
    const outbox = new Outbox(db);
    const clock = new ManualClock(T0);
    const writer = new ReadingWriter(
      db,
      {
        batchSize: 1000,
        flushInterval: 200,
        maxPending: 1000,
        storeReadings: true,
        forwardReadings: { outbox, interval: 10_000 },
      },
      { clock, metrics: new Metrics(), log: silentLogger() },
    );
    close = () => {
      writer.stop();
      db.close();
    };
    db.exec(`CREATE TRIGGER fail BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`);
    writer.add(reading('d', 't', 1, T0), 'src');
    assert.equal(writer.flush(), 0);
    assert.match(writer.lastError?.message ?? '', /disk I\/O error/);
    db.exec('DROP TRIGGER fail');
    assert.equal(writer.flush(), 1);
    assert.equal(count(db, 'outbox'), 1, 'the reading is forwarded once the commit succeeds');
  });

  it('a commit hook that throws is counted and stops neither the commit nor the other hooks', async () => {
    const p = pipeline();
    close = p.close;
    let woken = 0;
    p.writer.onCommit(() => {
      throw new Error('a bug in a hook');
    });
    p.writer.onCommit(() => woken++);
    p.ingest.accept('src', reading('d', 't', 1, T0));
    assert.equal(p.writer.flush(), 1);
    assert.equal(woken, 1);
    assert.equal(rowCount(p.db), 1);
    assert.equal(p.writer.lastError, null);
    const metrics = (p.writer as unknown as { deps: { metrics: Metrics } }).deps.metrics;
    assert.equal(await metricValue(metrics, 'tidegate_internal_errors_total'), 1);
  });
});
