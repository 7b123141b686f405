import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { PaneValues } from '../../src/engine/pane-values.js';
import { interpolateSorted } from '../../src/engine/quantile.js';
import { SlidingSortedValues, TAIL_FROM } from '../../src/engine/sliding-sorted.js';

/** Panes of 1 s holding the given raw values, filled in a shuffled order (readings out of order). */
function panesOf(values: number[][], order: number[]): { starts: number[]; panes: PaneValues } {
  const panes = new PaneValues();
  for (let i = 0; i < values.length; i++) panes.insertPane(i);
  const at = values.map(() => 0);
  for (const o of order) {
    const i = o % values.length;
    const vs = values[i] as number[];
    if ((at[i] as number) < vs.length) panes.add(i, vs[(at[i] as number)++] as number);
  }
  // The rest in pane order.
  values.forEach((vs, i) => {
    while ((at[i] as number) < vs.length) panes.add(i, vs[(at[i] as number)++] as number);
  });
  return { starts: values.map((_, i) => i * 1000), panes };
}

/** What the window [lo, hi) of panes must hold: every value, in Float64Array sort order. */
function expected(values: number[][], lo: number, hi: number): number[] {
  return Array.from(Float64Array.from(values.slice(lo, hi).flat()).sort());
}

const value = fc.oneof(
  fc.constantFrom(0, -0, 1, 1, -1, 2.5),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);

/**
 * Panes of one value (one out, one in), of 0–3 (moved in place) or of up to 40 (merged, sorted by
 * insertion or past 32 by the typed array).
 */
const panesArb = fc.array(
  fc.oneof(
    fc.array(value, { minLength: 1, maxLength: 1 }),
    fc.array(value, { maxLength: 3 }),
    fc.array(value, { maxLength: 40 }),
  ),
  { minLength: 2, maxLength: 40 },
);

/** Panes filled in a shuffled order (`order`), read by windows of 1–8 panes moved by 1–3. */
const movesArb = fc.record({
  values: panesArb,
  width: fc.integer({ min: 1, max: 8 }),
  order: fc.array(fc.nat(), { maxLength: 60 }),
  step: fc.integer({ min: 1, max: 3 }),
});

describe('SlidingSortedValues', () => {
  it('moved window by window holds exactly the sorted values of each, ±0 and ties included', () => {
    let moves = 0;
    fc.assert(
      fc.property(movesArb, ({ values, width, order, step }) => {
        const { starts, panes } = panesOf(values, order);
        const sorted = new SlidingSortedValues();
        for (let lo = 0; lo + width <= values.length; lo += step) {
          const hi = lo + width;
          sorted.moveTo(starts, panes, 0, lo, hi, lo * 1000, hi * 1000);
          const got = Array.from(sorted.values.subarray(0, sorted.n));
          // Object.is tells −0 from +0: deepStrictEqual does.
          assert.deepStrictEqual(got, expected(values, lo, hi), `window [${lo}, ${hi})`);
          moves++;
        }
      }),
      { numRuns: 500, seed: 3_12_2026 },
    );
    assert.ok(moves > 1000, `only ${moves} moves checked`);
  });

  it('with only high quantiles read, keeps the tail they read: the same quantiles, late values included', () => {
    const QS = [[TAIL_FROM], [0.95], [0.9, 0.95], [0.995, 1], [1], [0.8, 0.99, 1]];
    let moves = 0;
    let late = 0;
    fc.assert(
      fc.property(
        movesArb,
        fc.constantFrom(...QS),
        // Values that come late, each into some pane of the window just read.
        fc.array(fc.tuple(fc.nat(), value), { maxLength: 20 }),
        ({ values, width, order, step }, qs, lateValues) => {
          const { starts, panes } = panesOf(values, order);
          const sorted = new SlidingSortedValues(Math.min(...qs));
          const offsets = qs.map((_, j) => j);
          const check = (lo: number, hi: number) => {
            const got: number[] = [];
            sorted.write(qs, got, offsets);
            const all = expected(values, lo, hi);
            const want = qs.map((q) => interpolateSorted(all, all.length, q));
            assert.deepStrictEqual(got, want, `window [${lo}, ${hi}), qs ${qs}`);
            assert.equal(sorted.n, all.length);
          };
          let next = 0;
          for (let lo = 0; lo + width <= values.length; lo += step) {
            const hi = lo + width;
            sorted.moveTo(starts, panes, 0, lo, hi, lo * 1000, hi * 1000);
            check(lo, hi);
            moves++;
            // A late value into one of the window's panes, then the window read again.
            const lv = lateValues[next++];
            if (lv === undefined) continue;
            const i = lo + (lv[0] % width);
            panes.add(i, lv[1]);
            (values[i] as number[]).push(lv[1]);
            sorted.added(i * 1000, lv[1]);
            sorted.moveTo(starts, panes, 0, lo, hi, lo * 1000, hi * 1000);
            check(lo, hi);
            late++;
          }
        },
      ),
      { numRuns: 800, seed: 4_12_2026 },
    );
    assert.ok(moves > 2000 && late > 500, `only ${moves} moves and ${late} late values checked`);
  });
});
