import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type CommitBatch, CommitBatchBuilder } from '../../src/store/commit-core.js';

type Row = [string, string, number, number, string | null, string | null, string, number];

/** Every reading of a batch as it was added, read back through the series table. */
function rowsOf(b: CommitBatch): Row[] {
  return b.series.map((k, i) => [
    b.seriesDevice[k] as string,
    b.seriesMetric[k] as string,
    b.value[i] as number,
    b.ts[i] as number,
    b.seriesUnit[k] ?? null,
    b.tags[i] ?? null,
    b.seriesSource[k] as string,
    b.arrivedAt[i] as number,
  ]);
}

/** The series table's entries, each (device, metric, unit, source) at most once. */
function assertEntriesOnce(b: CommitBatch): void {
  const seen = new Set<string>();
  for (let k = 0; k < b.seriesDevice.length; k++) {
    const key = JSON.stringify([b.seriesDevice[k], b.seriesMetric[k], b.seriesUnit[k], b.seriesSource[k]]);
    assert.ok(!seen.has(key), `entry ${key} twice`);
    seen.add(key);
  }
}

// Few names, so that series repeat; units and sources vary within a series now and then.
const row: fc.Arbitrary<Row> = fc.tuple(
  fc.constantFrom('d1', 'd2', 'd3'),
  fc.constantFrom('t', 'h', 'p'),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer({ min: 0, max: 1e12 }),
  fc.constantFrom(null, 'C', 'F'),
  fc.constantFrom(null, '{"room":"a"}'),
  fc.constantFrom('mqtt', 'modbus'),
  fc.integer({ min: 0, max: 1e12 }),
);

function build(rows: readonly Row[], into = new CommitBatchBuilder()): CommitBatchBuilder {
  for (const r of rows) into.add(...r);
  return into;
}

describe('CommitBatchBuilder', () => {
  it('names each reading’s series by one entry per (device, metric, unit, source), in the order met', () => {
    fc.assert(
      fc.property(fc.array(row, { maxLength: 200 }), (rows) => {
        const b = build(rows);
        assert.equal(b.readings, rows.length);
        assert.deepEqual(rowsOf(b.batch), rows);
        assertEntriesOnce(b.batch);
        const distinct = new Set(rows.map(([d, m, , , u, , s]) => JSON.stringify([d, m, u, s])));
        assert.equal(b.batch.seriesDevice.length, distinct.size);
        // First met, first entry: the worker makes new series in the readings' order.
        const firsts = [...new Set(rows.map((r) => JSON.stringify([r[0], r[1], r[4], r[6]])))];
        const entries = b.batch.seriesDevice.map((d, k) =>
          JSON.stringify([d, b.batch.seriesMetric[k], b.batch.seriesUnit[k], b.batch.seriesSource[k]]),
        );
        assert.deepEqual(entries, firsts);
      }),
    );
  });

  it('puts a failed batch back before the readings queued since, and goes on adding to it', () => {
    fc.assert(
      fc.property(
        fc.array(row, { maxLength: 80 }),
        fc.array(row, { maxLength: 80 }),
        fc.array(row, { maxLength: 80 }),
        (failed, since, later) => {
          const back = build(failed).batch;
          const merged = new CommitBatchBuilder(back);
          merged.append(build(since).batch);
          build(later, merged);
          assert.deepEqual(rowsOf(merged.batch), [...failed, ...since, ...later]);
          assertEntriesOnce(merged.batch);
        },
      ),
    );
  });
});
