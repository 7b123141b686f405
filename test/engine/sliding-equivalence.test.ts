/**
 * Stream slicing (issue 19) changes how tumbling and sliding windows are computed, not what they
 * emit: for random rules (every aggregate, quantiles included, sizes and slides up to 60:1, allowed
 * lateness, groupBy) and random streams (out of order, late, ties and duplicates of ts, −0 and +0,
 * idle devices in live mode), the engine with the sliced operator emits exactly the records of the
 * engine with the operator it replaced (test/engine/reference-aligned-windows.ts): same order, same
 * revisions, values bit for bit (deepStrictEqual tells −0 from +0), same decision states and groups.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileRules } from '../../src/engine/compile.js';
import { RuleEngine } from '../../src/engine/engine.js';
import type { AlignedOperatorFactory } from '../../src/engine/rule-runner.js';
import type { Reading } from '../../src/model/reading.js';
import type { OutputRecord } from '../../src/model/records.js';
import { validateRules } from '../../src/model/rule.js';
import { ManualClock } from '../../src/runtime/clock.js';
import { AGGREGATES, T0 } from './helpers.js';
import { ReferenceAlignedWindowOperator } from './reference-aligned-windows.js';

const reference: AlignedOperatorFactory = (assigner, plan, lateness) =>
  new ReferenceAlignedWindowOperator(assigner, plan, lateness);

/** One step of a script: a reading, or (live mode) wall time passing, with a tick or without. */
type Step = { reading: Reading } | { tick: number } | { wait: number };

/** [size, slide] in ms: tumbling when slide is null; 60:1 and 60:10 among them, gaps too. */
const WINDOWS: [number, number | null][] = [
  [1000, null],
  [5000, null],
  [10_000, null],
  [60_000, 1000],
  [60_000, 10_000],
  [6000, 1000],
  [10_000, 2000],
  [10_000, 3000],
  [3000, 2000],
  [2000, 5000],
  [1500, 500],
];

const GROUP_BY = [undefined, [], ['metric'], ['site'], ['device', 'metric']];

const ruleArb = fc.record({
  window: fc.constantFrom(...WINDOWS),
  aliases: fc.subarray(Object.keys(AGGREGATES), { minLength: 1 }),
  lateness: fc.constantFrom(0, 0, 700, 3000, 30_000),
  maxOutOfOrder: fc.constantFrom(0, 0, 400, 2000),
  idleTimeout: fc.constantFrom(undefined, 1500, 5000),
  groupBy: fc.constantFrom(...GROUP_BY),
  decide: fc.constantFrom(null, 'count > 2', 'hi > 5'),
  forN: fc.integer({ min: 1, max: 2 }),
});

type RuleParams = typeof ruleArb extends fc.Arbitrary<infer T> ? T : never;

function ruleOf(p: RuleParams, i: number): Record<string, unknown> {
  const [size, slide] = p.window;
  const aggregates: Record<string, string> = {};
  for (const a of p.aliases) aggregates[a] = AGGREGATES[a] as string;
  const rule: Record<string, unknown> = {
    id: `r${i}`,
    window: slide === null ? { type: 'tumbling', size } : { type: 'sliding', size, slide },
    aggregates,
    lateness: p.lateness,
    watermark: { maxOutOfOrder: p.maxOutOfOrder, ...(p.idleTimeout ? { idleTimeout: p.idleTimeout } : {}) },
  };
  if (p.groupBy !== undefined) rule.groupBy = p.groupBy;
  if (p.decide !== null && (p.decide !== 'hi > 5' || p.aliases.includes('hi'))) {
    rule.when = p.decide;
    rule.for = p.forN;
  }
  return rule;
}

const valueArb = fc.oneof(
  fc.integer({ min: -5, max: 9 }),
  fc.constantFrom(0, -0, 0.1, 0.2, 0.3, 1e-9, 1e12, -2.5),
  fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }),
);

/**
 * A reading `dt` ms after the previous one's base time, or `back` ms behind it (late, out of order);
 * same ts as the previous reading (a tie) with probability tied.
 */
const readingStepArb = (values: fc.Arbitrary<number>) =>
  fc.record({
    device: fc.constantFrom('a', 'b', 'c'),
    metric: fc.constantFrom('temperature', 'temperature', 'humidity'),
    site: fc.constantFrom(undefined, 'x', 'y'),
    value: values,
    dt: fc.constantFrom(0, 0, 1, 250, 400, 999, 1000, 1500, 3000),
    back: fc.constantFrom(0, 0, 0, 0, 300, 1200, 4000, 20_000, 70_000),
    tie: fc.boolean(),
  });

const scriptArb = (values: fc.Arbitrary<number>) =>
  fc.record({
    rules: fc.array(ruleArb, { minLength: 1, maxLength: 3 }),
    steps: fc.array(
      fc.oneof({ weight: 6, arbitrary: readingStepArb(values) }, { weight: 1, arbitrary: fc.nat(8000) }),
      { maxLength: 120 },
    ),
    live: fc.boolean(),
  });

type ReadingStep = ReturnType<typeof readingStepArb> extends fc.Arbitrary<infer T> ? T : never;

function stepsOf(raw: (ReadingStep | number)[]): Step[] {
  const steps: Step[] = [];
  let base = T0 + 12_345;
  let prev: Reading | null = null;
  for (const s of raw) {
    if (typeof s === 'number') {
      steps.push({ tick: s });
      continue;
    }
    base += s.dt;
    const ts = s.tie && prev !== null ? prev.ts : base - s.back;
    const r: Reading = { device: s.device, metric: s.metric, value: s.value, ts };
    if (s.site !== undefined) r.tags = { site: s.site };
    steps.push({ reading: r });
    prev = r;
  }
  return steps;
}

function engines(rules: Record<string, unknown>[], live: boolean): [RuleEngine, RuleEngine, ManualClock] {
  const v = validateRules(rules);
  if (!v.ok) assert.fail(`rules invalid: ${JSON.stringify(v.problems)}`);
  const clock = new ManualClock(1_000_000);
  const sliced = new RuleEngine(compileRules(v.rules), { clock, live });
  const old = new RuleEngine(compileRules(v.rules), { clock, live, alignedWindows: reference });
  return [sliced, old, clock];
}

/** Runs both engines step by step, comparing every step's records; returns how many there were. */
function compare(rules: Record<string, unknown>[], steps: Step[], live: boolean): number {
  const [sliced, old, clock] = engines(rules, live);
  let records = 0;
  const same = (a: OutputRecord[], b: OutputRecord[], what: string) => {
    assert.deepStrictEqual(a, b, what);
    records += a.length;
  };
  steps.forEach((step, i) => {
    if ('reading' in step) same(sliced.process(step.reading), old.process(step.reading), `step ${i}`);
    else if ('wait' in step) clock.advance(step.wait);
    else if (live) {
      clock.advance(step.tick);
      same(sliced.tick(), old.tick(), `tick at step ${i}`);
      assert.deepStrictEqual(sliced.stats(), old.stats(), `stats after tick ${i}`);
    }
  });
  assert.deepStrictEqual(sliced.decisionStates(), old.decisionStates());
  same(sliced.flush(), old.flush(), 'flush');
  assert.deepStrictEqual(sliced.stats(), old.stats());
  return records;
}

describe('sliced tumbling and sliding windows', () => {
  it('emit exactly what the per-window operator emitted, on random rules and streams', () => {
    let total = 0;
    fc.assert(
      fc.property(scriptArb(valueArb), ({ rules, steps, live }) => {
        total += compare(rules.map(ruleOf), stepsOf(steps), live);
      }),
      { numRuns: 400, seed: 19_2026 },
    );
    // Not vacuous: the scripts made windows fire, re-fire and drop readings as late.
    assert.ok(total > 10_000, `only ${total} records compared`);
  });

  it('order −0 before +0 in quantiles as the sort did', () => {
    const zeros = fc.constantFrom(0, -0);
    const quantiles = { med: 'median', p60: 'p60', p75: 'p75', p95: 'p95', p995: 'p99.5' };
    fc.assert(
      fc.property(scriptArb(zeros), ({ rules, steps, live }) => {
        const specs = rules.map((r, i) => ({ ...ruleOf({ ...r, decide: null }, i), aggregates: quantiles }));
        compare(specs, stepsOf(steps), live);
      }),
      { numRuns: 200, seed: 190 },
    );
  });

  it('stay exact (and sketch alike) when a pane holds more than 1,000 values', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<[number, number | null]>([60_000, 2000], [10_000, 2000], [4000, null], [6000, 4000]),
        fc.integer({ min: 1500, max: 3200 }),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.constantFrom(0, 5000),
        ([size, slide], n, seed, lateness) => {
          const window = slide === null ? { type: 'tumbling', size } : { type: 'sliding', size, slide };
          const rule = {
            id: 'dense',
            window,
            lateness,
            aggregates: { p50: 'p50', p95: 'p95', p999: 'p99.9', a: 'avg', sd: 'stddev', l: 'last' },
          };
          let x = seed;
          const steps: Step[] = [];
          for (let i = 0; i < n; i++) {
            x = (Math.imul(x, 1103515245) + 12345) >>> 0;
            // Most readings in two panes of 2 s (so that one passes 1,000), some late into earlier ones.
            const ts = T0 + 4000 + Math.floor((i / n) * 4000) - (x % 7 === 0 ? x % 5000 : 0);
            steps.push({ reading: { device: 'a', metric: 'temperature', value: (x % 100_000) / 7, ts } });
          }
          steps.push({ reading: { device: 'a', metric: 'temperature', value: 1, ts: T0 + 200_000 } });
          assert.ok(compare([rule], steps, false) > 0);
        },
      ),
      { numRuns: 12, seed: 19 },
    );
  });

  it('re-emit a window that had readings and closed under the reading that lands in it', () => {
    // Live: a and b fall idle (no tick has noticed); c, whose clock is at 60 s from a humidity reading, then sends a
    // temperature at 5 s. Joining the temperature group lifts its watermark to 60 s before the
    // reading is placed, so [0, 10 s) closes under it: it is emitted at once with the reading
    // (revision 0, count 2) and [50 s, 60 s) follows as the watermark's window.
    const rule = {
      id: 'late-join',
      groupBy: ['metric'],
      window: { type: 'tumbling', size: 10_000 },
      lateness: 60_000,
      watermark: { idleTimeout: 1000 },
      aggregates: { a: 'avg', p: 'p95' },
    };
    const r = (device: string, sec: number, value: number, metric = 'temperature'): Step => ({
      reading: { device, metric, value, ts: T0 + sec * 1000 },
    });
    const steps: Step[] = [
      r('a', 1, 1),
      r('b', 50, 2),
      { wait: 2000 },
      r('c', 60, 3, 'humidity'),
      r('c', 5, 4),
    ];
    const [sliced, , clock] = engines([rule], true);
    const out: OutputRecord[] = [];
    for (const step of steps) {
      if ('reading' in step) out.push(...sliced.process(step.reading));
      else if ('wait' in step) clock.advance(step.wait);
    }
    const results = out.filter((x) => x.type === 'result');
    assert.deepStrictEqual(
      results.map((x) => [x.key.metric, x.start, x.count, x.revision]),
      [
        ['temperature', new Date(T0).toISOString(), 2, 0],
        ['temperature', new Date(T0 + 50_000).toISOString(), 1, 0],
      ],
    );
    assert.ok(compare([rule], steps, true) >= 2);
  });
});
