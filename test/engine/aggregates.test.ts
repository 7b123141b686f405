/** Aggregate functions (SPEC §2, fine print 7 and 13) and quantiles: exact ≤ 1,000, sketch above. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EXACT_LIMIT, KllSketch } from '../../src/engine/quantile.js';
import { engine, rd, run } from './helpers.js';

function values(aggregates: Record<string, string>, readings: ReturnType<typeof rd>[]) {
  const out = run(engine({ window: { type: 'tumbling', size: '1h' }, aggregates }), readings);
  assert.equal(out.length, 1);
  return out[0]?.values as Record<string, number | null>;
}

/** numpy.quantile(x, q) with the default 'linear' method, written out plainly. */
function numpyQuantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = (s.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, s.length - 1);
  return (s[lo] as number) + (h - lo) * ((s[hi] as number) - (s[lo] as number));
}

/** A deterministic pseudo-random sequence, so failures reproduce. */
function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

describe('aggregates', () => {
  it('count, sum, avg, min, max, spread, first, last, delta, rate, stddev over one window', () => {
    const v = values(
      {
        n: 'count',
        sum: 'sum',
        avg: 'avg',
        lo: 'min',
        hi: 'max',
        spread: 'spread',
        first: 'first',
        last: 'last',
        delta: 'delta',
        rate: 'rate',
        sd: 'stddev',
      },
      // Arrival order differs from event-time order: first/last go by event time.
      [rd('d', 20, 4), rd('d', 10, 2), rd('d', 30, 9), rd('d', 25, 5)],
    );
    assert.equal(v.n, 4);
    assert.equal(v.sum, 20);
    assert.equal(v.avg, 5);
    assert.equal(v.lo, 2);
    assert.equal(v.hi, 9);
    assert.equal(v.spread, 7);
    assert.equal(v.first, 2);
    assert.equal(v.last, 9);
    assert.equal(v.delta, 7);
    assert.equal(v.rate, 7 / 20);
    // sample stddev of 4, 2, 9, 5: mean 5, squares 1+9+16+0 = 26, /3
    assert.ok(Math.abs((v.sd as number) - Math.sqrt(26 / 3)) < 1e-12);
  });

  it('fine print 13: first/last ties on ts go to the earlier / later arrival; rate null on equal ts; stddev null below 2', () => {
    const v = values({ f: 'first', l: 'last', rate: 'rate', sd: 'stddev', d: 'delta' }, [
      rd('d', 10, 1),
      rd('d', 10, 2),
      rd('d', 10, 3),
    ]);
    assert.deepEqual(v, { f: 1, l: 3, rate: null, sd: 1, d: 2 });
    const one = values({ sd: 'stddev', rate: 'rate', spread: 'spread' }, [rd('d', 10, 1)]);
    assert.deepEqual(one, { sd: null, rate: null, spread: 0 });
  });

  it('fine print 7: count(metric) over no readings is 0, every other aggregate null; fn(metric) reads only that metric', () => {
    const v = values(
      {
        n: 'count(humidity)',
        h: 'avg(humidity)',
        s: 'sum(humidity)',
        p: 'p95(humidity)',
        t: 'avg(temperature)',
        all: 'count',
      },
      [rd('d', 1, 10), rd('d', 2, 20)],
    );
    assert.deepEqual(v, { n: 0, h: null, s: null, p: null, t: 15, all: 2 });
    const mixed = values({ h: 'max(humidity)', t: 'max(temperature)', n: 'count(humidity)' }, [
      rd('d', 1, 10),
      rd('d', 2, 55, 'humidity'),
      rd('d', 3, 20),
    ]);
    assert.deepEqual(mixed, { h: 55, t: 20, n: 1 });
  });

  it('median is p50; pNN.N takes decimals; p0 and p100 are min and max', () => {
    const xs = [3, 1, 4, 1, 5, 9, 2, 6];
    const v = values(
      { med: 'median', p50: 'p50', p995: 'p99.5', p0: 'p0', p100: 'p100', p25: 'p25' },
      xs.map((x, i) => rd('d', i, x)),
    );
    assert.equal(v.med, numpyQuantile(xs, 0.5));
    assert.equal(v.p50, v.med);
    assert.ok(Math.abs((v.p995 as number) - numpyQuantile(xs, 0.995)) < 1e-12);
    assert.equal(v.p0, 1);
    assert.equal(v.p100, 9);
    assert.equal(v.p25, numpyQuantile(xs, 0.25));
  });

  it('quantiles are exact (numpy linear) for windows of up to 1,000 values', () => {
    const rand = lcg(7);
    for (const n of [1, 2, 3, 10, 999, EXACT_LIMIT]) {
      const xs = Array.from({ length: n }, () => Math.round(rand() * 1e6) / 100 - 2000);
      const qs: Record<string, string> = {
        p1: 'p1',
        p5: 'p5',
        p33: 'p33.3',
        p50: 'p50',
        p95: 'p95',
        p99: 'p99',
        p999: 'p99.9',
      };
      const v = values(
        qs,
        xs.map((x, i) => rd('d', i / 1000, x)),
      );
      for (const [alias, fn] of Object.entries(qs)) {
        const expected = numpyQuantile(xs, Number(fn.slice(1)) / 100);
        const got = v[alias] as number;
        assert.ok(
          Math.abs(got - expected) <= 1e-9 * Math.max(1, Math.abs(expected)),
          `n=${n} ${fn}: ${got} vs ${expected}`,
        );
      }
    }
  });

  it('sliding windows built from panes give the same exact quantiles', () => {
    const rand = lcg(11);
    const xs = Array.from({ length: 600 }, () => Math.floor(rand() * 1000));
    const e = engine({
      window: { type: 'sliding', size: '60s', slide: '10s' },
      aggregates: { p95: 'p95', p50: 'median' },
    });
    const out = run(
      e,
      xs.map((x, i) => rd('d', i / 10, x)),
    );
    // Window [0,60) holds readings 0..599 (ts = i/10 s).
    const w = out.find((r) => r.start === new Date(Date.UTC(2026, 10, 24, 10, 0, 0)).toISOString());
    assert.ok(w);
    assert.equal((w.values as { p95: number }).p95, numpyQuantile(xs, 0.95));
    assert.equal((w.values as { p50: number }).p50, numpyQuantile(xs, 0.5));
  });

  it('above 1,000 values the sketch keeps rank error ≤ 1% at 10⁶ values with bounded memory', () => {
    const rand = lcg(42);
    const n = 1_000_000;
    const xs = new Float64Array(n);
    const sketch = new KllSketch();
    let maxRetained = 0;
    for (let i = 0; i < n; i++) {
      // A skewed distribution with many ties makes it harder.
      const x = Math.floor(rand() ** 3 * 50_000);
      xs[i] = x;
      sketch.add(x);
      if (i % 1000 === 0) maxRetained = Math.max(maxRetained, sketch.retained());
    }
    const sorted = xs.slice().sort();
    const lowerRank = (x: number) => {
      let lo = 0;
      let hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if ((sorted[mid] as number) < x) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    };
    const upperRank = (x: number) => {
      let lo = 0;
      let hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if ((sorted[mid] as number) <= x) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    };
    for (const q of [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999]) {
      const x = sketch.quantile(q);
      // The value's rank range [lower, upper] must come within 1% of q·n.
      const target = q * n;
      const err =
        target < lowerRank(x) ? lowerRank(x) - target : target > upperRank(x) ? target - upperRank(x) : 0;
      assert.ok(err / n <= 0.01, `q=${q}: rank error ${((100 * err) / n).toFixed(3)}%`);
    }
    assert.ok(maxRetained <= 3000, `retained ${maxRetained} values`);
  });

  it('merged sketches keep the error bound (sliding windows of large panes)', () => {
    const rand = lcg(3);
    const parts = Array.from({ length: 6 }, () => new KllSketch());
    const all: number[] = [];
    for (let i = 0; i < 300_000; i++) {
      const x = rand() * 1000;
      all.push(x);
      (parts[i % 6] as KllSketch).add(x);
    }
    const merged = new KllSketch();
    for (const p of parts) merged.merge(p);
    all.sort((a, b) => a - b);
    for (const q of [0.05, 0.5, 0.95, 0.99]) {
      const x = merged.quantile(q);
      const rank = all.findIndex((v) => v >= x);
      assert.ok(Math.abs(rank - q * all.length) / all.length <= 0.01, `q=${q}`);
    }
  });

  it('a window of 10⁶ readings through the engine: approximate p95 within 1% rank', () => {
    const e = engine({ window: { type: 'tumbling', size: '1d' }, aggregates: { p95: 'p95', n: 'count' } });
    const rand = lcg(5);
    const xs: number[] = [];
    for (let i = 0; i < 1_000_000; i++) {
      const x = rand() * 100;
      xs.push(x);
      e.process(rd('d', i / 1000, x));
    }
    const [r] = e.flush();
    const v = (r as unknown as { values: { p95: number; n: number } }).values;
    assert.equal(v.n, 1_000_000);
    xs.sort((a, b) => a - b);
    const rank = xs.findIndex((x) => x >= v.p95);
    assert.ok(Math.abs(rank / xs.length - 0.95) <= 0.01, `rank ${rank / xs.length}`);
  });
});
