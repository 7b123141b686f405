import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { PackedNames, PrefetchedHistory } from '../../src/backtest/prefetch.js';
import type { Reading } from '../../src/model/reading.js';
import { openDatabase } from '../../src/store/database.js';
import { ReadingHistory } from '../../src/store/reading-history.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';
import { floodReadings, reading, SizeWatch, type StoreRig, storeRig, T0 } from '../store/rig.js';

const CAP = 100;
const SERIES = 1_234;
/** Readings per ms of event time: bursts, so that one bucket of a backtest holds many series. */
const BURST = 500;

/** Writes the readings; the store keeps them in this order (ts, then arrival). */
function store(s: StoreRig, readings: Reading[]): void {
  for (const r of readings) {
    assert.ok(s.writer.add(r, 'flood'));
    s.writer.commitIfFull();
  }
  s.writer.flush();
}

describe('packed chunks: the series named, sent and received, under a flood of client-chosen series', () => {
  let s: StoreRig | undefined;
  let dir: TempDir | undefined;
  afterEach(() => {
    s?.close();
    s = undefined;
    dir?.remove();
    dir = undefined;
  });

  it('both sides start over together, within the cap, and every reading arrives whole, in order', () => {
    s = storeRig();
    const expected = floodReadings(SERIES, BURST);
    assert.ok(expected.length > 20 * CAP);
    store(s, expected);

    // As a backtest's readers do: a history per bucket of time, its chunks in order, one receiver.
    const receiver = new PackedNames();
    const sender = new SizeWatch();
    const received = new SizeWatch();
    const out: Reading[] = [];
    let restarts = 0;
    const last = T0 + Math.floor((expected.length - 1) / BURST);
    for (const [from, to] of [
      [T0, T0 + 2],
      [T0 + 2, T0 + 3],
      [T0 + 3, last + 1],
    ] as const) {
      const history: ReadingHistory = new ReadingHistory(s.db, { from, to }, 37, undefined, CAP);
      while (!history.exhausted) {
        const chunk = history.nextPacked();
        if (chunk.restart) restarts++;
        out.push(...receiver.unpack(chunk));
        sender.see(history.namedSeries);
        received.see(receiver.size);
        // The receiver holds exactly what the sender thinks it sent.
        assert.equal(receiver.size, history.namedSeries);
      }
    }
    assert.ok(sender.most <= CAP, `the sender remembered at most ${sender.most} series, cap ${CAP}`);
    assert.ok(received.most <= CAP, `the receiver held at most ${received.most} series, cap ${CAP}`);
    assert.ok(received.drops >= 20, `the receiver started over ${received.drops} times`);
    assert.ok(restarts >= 20, `${restarts} chunks started over`);
    assert.deepEqual(out, expected);
  });

  it('through reader threads, the engine side stays within the cap and every reading arrives whole', async () => {
    dir = makeTempDir();
    const path = dir.file('store.db');
    s = storeRig({}, openDatabase(path, { synchronous: 'normal' }));
    const expected = floodReadings(SERIES, BURST);
    store(s, expected);

    const history = new PrefetchedHistory(s.db, path, {}, { chunkSize: 37, readers: 2, maxNamedSeries: CAP });
    const received = new SizeWatch();
    const out: Reading[] = [];
    try {
      for (let chunk = await history.next(); chunk.length > 0; chunk = await history.next()) {
        out.push(...chunk);
        received.see(history.namedSeries);
      }
    } finally {
      await history.close();
    }
    assert.equal(history.total, expected.length);
    assert.ok(received.most <= CAP, `the receiver held at most ${received.most} series, cap ${CAP}`);
    assert.ok(received.drops >= 20, `the receiver started over ${received.drops} times`);
    assert.deepEqual(out, expected);
  });

  it('caps at 100,000 series by default', () => {
    s = storeRig({ batchSize: 10_000 });
    const readings = Array.from({ length: 100_500 }, (_, i) =>
      reading(`dev-${i % 1000}`, `m-${Math.floor(i / 1000)}`, i, T0 + i),
    );
    store(s, readings);
    const history = new ReadingHistory(s.db, {}, 5_000);
    const receiver = new PackedNames();
    const received = new SizeWatch();
    let n = 0;
    while (!history.exhausted) {
      for (const r of receiver.unpack(history.nextPacked())) {
        assert.equal(r.value, n);
        assert.deepEqual([r.device, r.metric], [`dev-${n % 1000}`, `m-${Math.floor(n / 1000)}`]);
        n++;
      }
      assert.equal(receiver.size, history.namedSeries);
      received.see(receiver.size);
    }
    assert.equal(n, 100_500);
    assert.equal(received.most, 100_000);
    assert.equal(received.drops, 1, 'the memory started over past 100,000');
  });
});
