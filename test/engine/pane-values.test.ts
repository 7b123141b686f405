import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { PaneValues, paneQuantiles } from '../../src/engine/pane-values.js';
import { EXACT_LIMIT, evaluateQuantiles, QuantileState } from '../../src/engine/quantile.js';

/** What an operator does to its panes' values, as the window operator does it. */
type Op =
  | { kind: 'pane'; at: number }
  | { kind: 'add'; pane: number; value: number; times: number }
  | { kind: 'forget'; n: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('pane' as const), at: fc.nat() }), weight: 2 },
  {
    arbitrary: fc.record({
      kind: fc.constant('add' as const),
      pane: fc.nat(),
      value: fc.oneof(fc.constantFrom(0, -0, 1.5), fc.double({ noNaN: true, noDefaultInfinity: true })),
      // Now and then enough at once to pass EXACT_LIMIT (a sketch).
      times: fc.oneof(
        { arbitrary: fc.integer({ min: 1, max: 3 }), weight: 20 },
        { arbitrary: fc.constant(EXACT_LIMIT + 5), weight: 1 },
      ),
    }),
    weight: 6,
  },
  {
    arbitrary: fc.record({ kind: fc.constant('forget' as const), n: fc.integer({ min: 1, max: 3 }) }),
    weight: 1,
  },
);

describe('PaneValues', () => {
  it('holds each live pane’s values in the order they came, and reads quantiles as QuantileStates do', () => {
    let checked = 0;
    let sketched = 0;
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 120 }), (ops) => {
        const pv = new PaneValues();
        // The reference: a QuantileState per pane, as the operator kept them before.
        const ref: QuantileState[] = [];
        let head = 0;
        for (const op of ops) {
          const live = ref.length - head;
          if (op.kind === 'pane') {
            const i = head + (op.at % (live + 1));
            pv.insertPane(i);
            ref.splice(i, 0, new QuantileState());
          } else if (op.kind === 'add' && live > 0) {
            const i = head + (op.pane % live);
            const q = ref[i] as QuantileState;
            for (let t = 0; t < op.times; t++) {
              const v: number = op.value + t;
              q.add(v);
              assert.equal(pv.add(i, v), q.values === null, 'add tells a sketch');
            }
          } else if (op.kind === 'forget' && live > 0) {
            const drop = Math.min(ref.length, head + op.n);
            pv.forget(head, drop);
            head = drop;
            // The operator cuts its arrays now and then: every pane, or a prefix.
            if (head === ref.length) {
              pv.cutPanes(head, true);
              ref.length = 0;
              head = 0;
            } else if (head >= 2) {
              pv.cutPanes(head, false);
              ref.splice(0, head);
              head = 0;
            }
          }
          for (let i = head; i < ref.length; i++) {
            const q = ref[i] as QuantileState;
            assert.equal(pv.count(i), q.count());
            if (q.values === null) {
              assert.notEqual(pv.sketchOf(i), null);
              sketched++;
              continue;
            }
            const got = Array.from(pv.buf.subarray(pv.startOf(i) - pv.origin, pv.endOf(i) - pv.origin));
            assert.deepStrictEqual(got, q.values);
            checked++;
          }
          const sketches = ref.slice(head).filter((q) => q.values === null).length;
          assert.equal(pv.sketchedPanes, sketches, 'sketched panes counted');
          // Every window of up to three live panes: the same quantiles as from the QuantileStates.
          for (let lo = head; lo < ref.length; lo++) {
            for (let hi = lo + 1; hi <= Math.min(ref.length, lo + 3); hi++) {
              const qs = [0, 0.5, 0.95, 1];
              const want: number[] = [];
              const got: number[] = [];
              const parts = ref.slice(lo, hi).filter((q) => q.count() > 0);
              evaluateQuantiles(parts, qs, want, [0, 1, 2, 3]);
              paneQuantiles(pv, lo, hi, qs, got, [0, 1, 2, 3]);
              assert.deepStrictEqual(got, want);
            }
          }
        }
      }),
      { numRuns: 300, seed: 3_12_2026 },
    );
    assert.ok(checked > 1000 && sketched > 0, `checked ${checked} panes, ${sketched} sketched`);
  });
});
