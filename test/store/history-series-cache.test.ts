import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import type { Reading } from '../../src/model/reading.js';
import { ReadingHistory } from '../../src/store/reading-history.js';
import { reading, type StoreRig, storeRig, T0 } from './rig.js';

const CAP = 100;

/** Client-chosen series, many times the cap: a unit on two of three, tags on every fifth reading. */
function floodReadings(n: number): Reading[] {
  const series = Array.from({ length: n }, (_, i) => ({
    device: `dev-${i % 97}`,
    metric: `m-${Math.floor(i / 97)}`,
    ...(i % 3 === 0 ? {} : { unit: `u-${i % 3}` }),
  }));
  // Two readings per series, the second pass backwards: a series comes back long after the cache forgot it.
  const order = [...series.keys(), ...[...series.keys()].reverse()];
  return order.map((i, k) => {
    const s = series[i] as (typeof series)[number];
    const extra: Partial<Reading> = s.unit === undefined ? {} : { unit: s.unit };
    if (k % 5 === 0) extra.tags = { k: String(k) };
    return reading(s.device, s.metric, k, T0 + k, extra);
  });
}

/** Writes the readings; the store keeps them in this order (one ts each). */
function store(s: StoreRig, readings: Reading[]): void {
  for (const r of readings) {
    assert.ok(s.writer.add(r, 'flood'));
    s.writer.commitIfFull();
  }
  s.writer.flush();
}

/** Every chunk of `history`, with the cache's size after each. */
function readAll(history: ReadingHistory, onChunk: (cached: number) => void): Reading[] {
  const out: Reading[] = [];
  while (!history.exhausted) {
    out.push(...history.next());
    onChunk(history.cachedSeries);
  }
  return out;
}

describe('ReadingHistory: the series-name cache under a flood of client-chosen series', () => {
  let s: StoreRig;
  afterEach(() => s.close());

  it('stays within its cap, and every reading reads back whole, in order, once', () => {
    s = storeRig();
    const expected = floodReadings(1_234);
    assert.ok(expected.length > 20 * CAP);
    store(s, expected);

    let most = 0;
    let clears = 0;
    let previous = 0;
    const watch = (cached: number) => {
      most = Math.max(most, cached);
      if (cached < previous) clears++;
      previous = cached;
    };
    const history = new ReadingHistory(s.db, {}, 37, CAP);
    assert.deepEqual(readAll(history, watch), expected);
    assert.ok(most <= CAP, `at most ${most} series cached, cap ${CAP}`);
    assert.ok(clears >= 20, `the cache started over ${clears} times`);

    // Packed, names travel once per series (not per cache fill) and resolve every reading.
    const packed = new ReadingHistory(s.db, {}, 41, CAP);
    const names = new Map<number, [string, string, string | null]>();
    const unpacked: Reading[] = [];
    most = 0;
    while (!packed.exhausted) {
      const chunk = packed.nextPacked();
      watch(packed.cachedSeries);
      for (const [id, device, metric, unit] of chunk.names) {
        assert.ok(!names.has(id), `series ${id} named twice`);
        names.set(id, [device, metric, unit]);
      }
      const tags = new Map(chunk.tags);
      for (let i = 0; i < chunk.n; i++) {
        const [device, metric, unit] = names.get(chunk.series[i] as number) ?? assert.fail('unnamed series');
        const r: Reading = { device, metric, value: chunk.value[i] as number, ts: chunk.ts[i] as number };
        if (unit !== null) r.unit = unit;
        const t = tags.get(i);
        if (t !== undefined) r.tags = JSON.parse(t) as Record<string, string>;
        unpacked.push(r);
      }
    }
    assert.ok(most <= CAP, `at most ${most} series cached, cap ${CAP}`);
    assert.equal(names.size, 1_234);
    assert.deepEqual(unpacked, expected);
  });

  it('caps at 100,000 series by default', () => {
    s = storeRig({ batchSize: 10_000 });
    const readings = Array.from({ length: 100_500 }, (_, i) =>
      reading(`dev-${i % 1000}`, `m-${Math.floor(i / 1000)}`, i, T0 + i),
    );
    store(s, readings);
    let most = 0;
    let dropped = false;
    let n = 0;
    const history = new ReadingHistory(s.db, {}, 5_000);
    while (!history.exhausted) {
      const chunk = history.next();
      for (const r of chunk) assert.equal(r.value, n++);
      const cached = history.cachedSeries;
      if (cached < most) dropped = true;
      most = Math.max(most, cached);
    }
    assert.equal(n, 100_500);
    assert.equal(most, 100_000);
    assert.ok(dropped, 'the cache started over past 100,000');
  });
});
