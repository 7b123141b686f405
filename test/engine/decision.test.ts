/** Decisions (SPEC §2, fine print 5 and 14): the per-(rule, group) ok/firing state machine. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DecisionStateRecord } from '../../src/engine/decision.js';
import { RuleEngine } from '../../src/engine/engine.js';
import { ManualClock } from '../../src/runtime/clock.js';
import { brief, compile, engine, rd, run } from './helpers.js';

const base = { window: { type: 'tumbling', size: '10s' }, aggregates: { avg: 'avg' } };

describe('decisions', () => {
  it('for: 2 with hysteresis; a period with no readings does not break the streak', () => {
    const e = engine({ ...base, when: 'avg > 10', clear: 'avg < 5', for: 2 });
    const out = run(e, [
      rd('d', 5, 20),
      rd('d', 15, 20),
      rd('d', 25, 7),
      rd('d', 35, 3),
      rd('d', 45, 20),
      rd('d', 65, 20),
    ]);
    assert.deepEqual(brief(out), [
      'R d 0-10 n=1 rev=0',
      'R d 10-20 n=1 rev=0',
      'D d firing 20',
      'R d 20-30 n=1 rev=0', // 7: not clear (hysteresis), stays firing
      'R d 30-40 n=1 rev=0',
      'D d ok 40',
      'R d 40-50 n=1 rev=0',
      'R d 60-70 n=1 rev=0', // [50,60) had no readings: no window, streak continues
      'D d firing 70',
    ]);
  });

  it('a window where when fails breaks the streak; only transitions are emitted; clear defaults to not when', () => {
    const e = engine({ ...base, when: 'avg > 10', for: 2 });
    const out = run(e, [
      rd('d', 5, 20),
      rd('d', 15, 3),
      rd('d', 25, 20),
      rd('d', 35, 20),
      rd('d', 45, 20),
      rd('d', 55, 9),
    ]);
    assert.deepEqual(
      brief(out).filter((x) => x.startsWith('D')),
      ['D d firing 40', 'D d ok 60'],
    );
  });

  it('the decision record carries the SPEC shape, at = end of the window, right after its result', () => {
    const e = engine({ id: 'boiler-overheat', ...base, when: 'avg > 80' });
    const out = run(e, [rd('boiler-1', 3, 81.5)]);
    assert.equal(
      JSON.stringify(out[1]),
      '{"type":"decision","rule":"boiler-overheat","key":{"device":"boiler-1"},"state":"firing","at":"2026-11-24T10:00:10.000Z","values":{"avg":81.5}}',
    );
  });

  it('fine print 5: late revisions and first results whose end is not after the last evaluated are not evaluated', () => {
    const e = engine({ ...base, lateness: '60s', when: 'avg > 10' });
    const out = run(e, [rd('d', 25, 1), rd('d', 35, 1), rd('d', 5, 50), rd('d', 15, 50), rd('d', 26, 90)]);
    assert.deepEqual(brief(out), [
      'R d 20-30 n=1 rev=0',
      'R d 0-10 n=1 rev=0', // closed empty, emitted at once: end 10 ≤ 30, not evaluated
      'R d 10-20 n=1 rev=0',
      'R d 20-30 n=2 rev=1', // a revision: not evaluated
      'R d 30-40 n=1 rev=0',
    ]);
  });

  it('fine print 5: at most one transition per window', () => {
    const e = engine({ ...base, when: 'avg > 10', clear: 'avg > 5' });
    const out = run(e, [rd('d', 5, 20), rd('d', 15, 20), rd('d', 25, 20)]);
    assert.deepEqual(
      brief(out).filter((x) => x.startsWith('D')),
      ['D d firing 10', 'D d ok 20', 'D d firing 30'],
    );
  });

  it('fine print 5: count-window results are evaluated in emission order', () => {
    const e = engine({ window: { type: 'count', size: 1 }, aggregates: { avg: 'avg' }, when: 'avg > 10' });
    const out = run(e, [rd('d', 100, 20), rd('d', 50, 0)]);
    assert.deepEqual(brief(out), [
      'R d 100-100 n=1 rev=0',
      'D d firing 100',
      'R d 50-50 n=1 rev=0',
      'D d ok 50',
    ]);
  });

  it('fine print 14: when sees count; an alias named count wins', () => {
    const total = engine({ ...base, when: 'count >= 2' });
    assert.ok(brief(run(total, [rd('d', 1, 1), rd('d', 2, 1)])).includes('D d firing 10'));
    const alias = engine({ ...base, aggregates: { count: 'count(humidity)' }, when: 'count >= 2' });
    const out = run(alias, [rd('d', 1, 1), rd('d', 2, 1)]);
    assert.deepEqual(brief(out), ['R d 0-10 n=2 rev=0']);
    assert.deepEqual(out[0]?.values, { count: 0 });
  });

  it('fine print 9: null in a comparison is false; division by zero is null', () => {
    const e = engine({
      ...base,
      aggregates: { h: 'avg(humidity)', s: 'spread' },
      when: 'h > 0 or h <= 0 or h != 1 or 1 / s > 0 or 1 / s <= 0',
    });
    assert.deepEqual(
      brief(run(e, [rd('d', 1, 1), rd('d', 2, 1)])).filter((x) => x.startsWith('D')),
      [],
    );
    const negated = engine({ ...base, aggregates: { s: 'spread' }, when: 'not (1 / s > 0)' });
    assert.ok(brief(run(negated, [rd('d', 1, 1)])).includes('D d firing 10'));
  });

  it('decision state survives a restart: export, restore, continue exactly', () => {
    const rule = { ...base, when: 'avg > 10', for: 3 };
    const first = engine(rule);
    run(first, [rd('d', 5, 20), rd('d', 15, 20), rd('d', 25, 1)], false);
    // [0,10) and [10,20) evaluated: streak 2.
    const saved = JSON.parse(JSON.stringify(first.decisionStates())) as DecisionStateRecord[];
    assert.deepEqual(JSON.parse(JSON.stringify(saved)), [
      {
        rule: 'r1',
        key: { device: 'd' },
        state: 'ok',
        streak: 2,
        lastEnd: Date.UTC(2026, 10, 24, 10, 0, 20),
      },
    ]);
    const second = new RuleEngine(compile(rule), { clock: new ManualClock(0), live: false });
    second.restoreDecisionStates(saved);
    // A rebuilt window that was already evaluated is not evaluated twice; the next one completes the streak.
    const out = run(second, [rd('d', 15, 20), rd('d', 25, 20), rd('d', 35, 1)]);
    assert.deepEqual(
      brief(out).filter((x) => x.startsWith('D')),
      ['D d firing 30', 'D d ok 40'],
    );
  });

  it('takeChangedDecisionStates: only the groups that evaluated a window since the last call', () => {
    const e = engine({ ...base, when: 'avg > 10', for: 3 });
    run(e, [rd('a', 5, 20), rd('b', 5, 20), rd('a', 15, 20), rd('b', 15, 20)], false);
    // Each device's reading at 15 s closed its [0,10), which the machine evaluated.
    const first = e.takeChangedDecisionStates().map((s) => `${s.key['device']} ${s.streak} ${s.lastEnd}`);
    assert.deepEqual(first.sort(), [
      `a 1 ${Date.UTC(2026, 10, 24, 10, 0, 10)}`,
      `b 1 ${Date.UTC(2026, 10, 24, 10, 0, 10)}`,
    ]);
    assert.deepEqual(e.takeChangedDecisionStates(), [], 'taken: nothing changed since');
    run(e, [rd('a', 25, 20)], false);
    assert.deepEqual(
      e.takeChangedDecisionStates().map((s) => `${s.key['device']} ${s.streak}`),
      ['a 2'],
      'b did not evaluate a window',
    );
    assert.equal(e.decisionStates().length, 2, 'decisionStates() still lists every group');
  });

  it('fine print 9: a groupBy tag a reading lacks groups as null', () => {
    const e = engine({ ...base, groupBy: ['site', 'device'] });
    const out = run(e, [rd('d', 1, 1), rd('d', 2, 1, 'temperature', { site: 'north' })]);
    assert.deepEqual(
      out.map((r) => r.key),
      [
        { site: null, device: 'd' },
        { site: 'north', device: 'd' },
      ],
    );
  });
});
