/**
 * Idle groups are forgotten (SPEC §6 `ingest.maxDevices`: memory stays bounded) with no effect on
 * any result: an engine that forgets and one that never does give the same records, in order.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { RuleEngine } from '../../src/engine/engine.js';
import type { Reading } from '../../src/model/reading.js';
import type { OutputRecord } from '../../src/model/records.js';
import { ManualClock } from '../../src/runtime/clock.js';
import { compile, rd, T0 } from './helpers.js';

const RULES = [
  {
    window: { type: 'tumbling', size: '10s' },
    watermark: { maxOutOfOrder: '2s', idleTimeout: '8s' },
    lateness: '5s',
    aggregates: { avg: 'avg' },
    when: 'avg > 50',
    clear: 'avg < 40',
    for: 2,
  },
  {
    window: { type: 'sliding', size: '20s', slide: '5s' },
    watermark: { idleTimeout: '6s' },
    groupBy: ['device', 'metric'],
    aggregates: { hi: 'max' },
    when: 'hi > 90',
  },
  {
    window: { type: 'session', gap: '3s' },
    watermark: { idleTimeout: '5s' },
    lateness: '4s',
    groupBy: ['site'],
    aggregates: { n: 'count' },
  },
  {
    window: { type: 'count', size: 3 },
    watermark: { idleTimeout: '5s' },
    aggregates: { s: 'sum' },
    when: 's > 150',
  },
  {
    window: { type: 'tumbling', size: '5s' },
    watermark: { idleTimeout: '7s' },
    groupBy: [],
    aggregates: { n: 'count' },
  },
];

type Step =
  | { advance: number }
  | { device: number; metric: number; site: number; back: number; value: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ advance: fc.integer({ min: 0, max: 30_000 }) }) },
  {
    weight: 5,
    arbitrary: fc.record({
      device: fc.integer({ min: 0, max: 4 }),
      metric: fc.integer({ min: 0, max: 1 }),
      site: fc.integer({ min: 0, max: 2 }),
      back: fc.integer({ min: -1_000, max: 25_000 }),
      value: fc.integer({ min: 0, max: 100 }),
    }),
  },
);

/** Runs the script on a live engine; ticks after every clock move, as the gateway does each second. */
function play(script: Step[], forgetIdle: boolean) {
  const clock = new ManualClock(T0);
  const e = new RuleEngine(compile(...RULES), { clock, live: true, forgetIdle });
  const out: OutputRecord[] = [];
  let rested = 0;
  for (const s of script) {
    if ('advance' in s) {
      clock.advance(s.advance);
      out.push(...e.tick());
      // As the gateway does at each commit: decision states persisted, so their groups may go.
      e.takeChangedDecisionStates();
      rested = Math.max(rested, e.stats().rested);
      continue;
    }
    const r: Reading = {
      device: `d${s.device}`,
      metric: s.metric === 0 ? 'temperature' : 'humidity',
      value: s.value,
      ts: clock.now() - s.back,
      tags: { site: `s${s.site}` },
    };
    out.push(...e.process(r));
  }
  const states = e.decisionStates().map((x) => JSON.stringify(x));
  return { out: JSON.stringify(out), states: states.sort(), rested };
}

describe('forgetting idle groups', () => {
  it('gives exactly the records and decision states of an engine that never forgets', () => {
    let forgot = 0;
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 120 }), (script) => {
        const a = play(script, true);
        const b = play(script, false);
        assert.equal(a.out, b.out);
        assert.deepEqual(a.states, b.states);
        if (a.rested > 0) forgot++;
      }),
      { numRuns: 400 },
    );
    // The property is only worth something if forgetting happened in many runs.
    assert.ok(forgot > 100, `groups were forgotten in ${forgot} of 400 runs`);
  });

  it('an idle device’s groups leave memory once their windows expired, and come back on its next reading', () => {
    const clock = new ManualClock(T0);
    const e = new RuleEngine(compile(RULES[0] as Record<string, unknown>), { clock, live: true });
    for (let i = 0; i < 100; i++) e.process(rd(`dev-${i}`, 0, 60));
    assert.deepEqual(e.stats(), { devices: 100, groups: 100, rested: 0 });
    // Idle after 8 s; the watermark then runs at wall speed until [0, 10) is past its lateness.
    clock.advance(8_000);
    e.tick();
    clock.advance(20_000);
    const closed = e.tick();
    assert.equal(closed.filter((r) => r.type === 'result').length, 100);
    assert.equal(e.stats().rested, 0, 'not before their decision states are persisted');
    assert.equal(e.takeChangedDecisionStates().length, 100);
    clock.advance(1_000);
    e.tick();
    assert.deepEqual(e.stats(), { devices: 100, groups: 0, rested: 100 });
    // Back: behind the watermark that kept running, as if never forgotten.
    const late = e.process(rd('dev-7', 5, 70));
    assert.deepEqual(
      late.map((r) => r.type),
      ['late'],
    );
    assert.equal(e.stats().groups, 1);
  });
});

describe('forgetting groups restored from persisted decision state', () => {
  it('a count group restored at start and never fed is forgotten and comes back with its state', () => {
    const clock = new ManualClock(T0);
    const rule = { ...(RULES[3] as Record<string, unknown>), for: 2 };
    const e = new RuleEngine(compile(rule), { clock, live: true });
    e.restoreDecisionStates([{ rule: 'r1', key: { device: 'd1' }, state: 'ok', streak: 1, lastEnd: T0 }]);
    clock.advance(10_000);
    assert.doesNotThrow(() => e.tick());
    assert.deepEqual(e.stats(), { devices: 0, groups: 0, rested: 1 });
    // Its streak of 1 survived: two more windows over 150 fire at the second one… the first is enough.
    const out = [60, 60, 60].flatMap((v) => e.process(rd('d1', 1, v)));
    assert.deepEqual(
      out.filter((r) => r.type === 'decision').map((r) => (r.type === 'decision' ? r.state : '')),
      ['firing'],
    );
  });
});
