import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import type { Reading } from '../../src/model/reading.js';
import { ReadingHistory } from '../../src/store/reading-history.js';
import { floodReadings, reading, SizeWatch, type StoreRig, storeRig, T0 } from './rig.js';

const CAP = 100;

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

    const size = new SizeWatch();
    const history = new ReadingHistory(s.db, {}, 37, CAP);
    assert.deepEqual(
      readAll(history, (n) => size.see(n)),
      expected,
    );
    assert.ok(size.most <= CAP, `at most ${size.most} series cached, cap ${CAP}`);
    assert.ok(size.drops >= 20, `the cache started over ${size.drops} times`);

    // Packed, names travel once per series (not per cache fill) and resolve every reading.
    const packed = new ReadingHistory(s.db, {}, 41, CAP);
    const names = new Map<number, [string, string, string | null]>();
    const unpacked: Reading[] = [];
    const packedSize = new SizeWatch();
    while (!packed.exhausted) {
      const chunk = packed.nextPacked();
      packedSize.see(packed.cachedSeries);
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
    assert.ok(packedSize.most <= CAP, `at most ${packedSize.most} series cached, cap ${CAP}`);
    assert.equal(names.size, 1_234);
    assert.deepEqual(unpacked, expected);
  });

  it('caps at 100,000 series by default', () => {
    s = storeRig({ batchSize: 10_000 });
    const readings = Array.from({ length: 100_500 }, (_, i) =>
      reading(`dev-${i % 1000}`, `m-${Math.floor(i / 1000)}`, i, T0 + i),
    );
    store(s, readings);
    const size = new SizeWatch();
    let n = 0;
    const history = new ReadingHistory(s.db, {}, 5_000);
    while (!history.exhausted) {
      const chunk = history.next();
      for (const r of chunk) assert.equal(r.value, n++);
      size.see(history.cachedSeries);
    }
    assert.equal(n, 100_500);
    assert.equal(size.most, 100_000);
    assert.ok(size.drops > 0, 'the cache started over past 100,000');
  });
});
