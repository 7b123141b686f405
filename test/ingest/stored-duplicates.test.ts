/** The live duplicate filter (SPEC §1, fine print 11) against a model that remembers every reading. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { StoredDuplicates } from '../../src/ingest/stored-duplicates.js';
import { reading, storeRig, T0 } from '../store/rig.js';

type ReadingStep = { kind: 'reading'; device: string; value: number; dt: number };
type Step =
  | ReadingStep
  | { kind: 'again'; pick: number }
  | { kind: 'commit' }
  | { kind: 'restart' }
  | { kind: 'others' };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      kind: fc.constant('reading' as const),
      device: fc.constantFrom('a', 'b'),
      value: fc.constantFrom(1, 2, 2.5),
      // Event time in a 3 s span, 50 ms steps: in order, out of order inside and beyond the 1 s
      // kept in memory, and the same ts again with the same or another value.
      dt: fc.integer({ min: 0, max: 60 }).map((i) => i * 50),
    }),
  },
  // A redelivery of an earlier reading (by its index among those sent, modulo their number).
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('again' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'commit' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'restart' as const }) },
  // Other series keep the store busy for a whole sweep period: a and b, silent, are forgotten.
  { weight: 1, arbitrary: fc.constant({ kind: 'others' as const }) },
);

describe('StoredDuplicates', () => {
  it('says duplicate exactly for a (device, metric, ts, value) seen before, across commits and restarts', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 120 }), (steps) => {
        const s = storeRig();
        try {
          let filter = new StoredDuplicates(s.writer);
          const seen = new Set<string>();
          const sent: ReadingStep[] = [];
          for (let x of steps) {
            if (x.kind === 'again') {
              if (sent.length === 0) continue;
              x = sent[x.pick % sent.length] as ReadingStep;
            }
            if (x.kind === 'commit') {
              s.writer.flush();
            } else if (x.kind === 'others') {
              for (let i = 0; i < 64; i++) {
                s.writer.add(reading('z', 't', i, T0 + i), 'test');
                s.writer.flush();
              }
            } else if (x.kind === 'restart') {
              // What was queued is committed (a stop flushes); a new filter starts from the store.
              s.writer.flush();
              filter = new StoredDuplicates(s.writer);
            } else {
              sent.push(x);
              const r = reading(x.device, 't', x.value, T0 + x.dt);
              const key = `${x.device} ${r.ts} ${x.value}`;
              assert.equal(filter.isDuplicate(r), seen.has(key), `${key} after ${seen.size} readings`);
              if (!seen.has(key)) {
                seen.add(key);
                s.writer.add(r, 'test');
              }
            }
          }
          s.writer.flush();
          const stored = s.query.readings({ order: 'asc', limit: 1000 }).items;
          assert.equal(stored.filter((r) => r.device !== 'z').length, seen.size);
        } finally {
          s.close();
        }
      }),
      { numRuns: 300 },
    );
  });

  it('forgets series silent for a sweep period, and memory stays bounded under invented names', () => {
    const s = storeRig();
    try {
      const filter = new StoredDuplicates(s.writer);
      for (let i = 0; i < 5_000; i++) {
        const r = reading(`invented-${i}`, 't', 1, T0 + i);
        assert.equal(filter.isDuplicate(r), false);
        s.writer.add(r, 'test');
        if (i % 25 === 24) s.writer.flush();
      }
      s.writer.flush();
      // 200 commits, three sweeps: the first periods' names are gone, the last ones are still remembered.
      assert.ok(filter.size < 5_000 && filter.size > 0, `${filter.size} series remembered`);
      assert.equal(
        filter.isDuplicate(reading('invented-3', 't', 1, T0 + 3)),
        true,
        'still exact from the store',
      );
    } finally {
      s.close();
    }
  });
});
