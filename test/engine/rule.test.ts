/** Rule validation (SPEC §2): every problem with its path, actionable messages, defaults. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateRule, validateRules } from '../../src/model/rule.js';

function problems(input: unknown) {
  const v = validateRules(input);
  assert.equal(v.ok, false);
  return v.ok ? [] : v.problems;
}

describe('rule validation', () => {
  it('reports several problems with paths at once', () => {
    const ps = problems([
      { id: 'ok-rule', window: { type: 'tumbling', size: '10s' } },
      {
        id: 'Bad Id',
        window: { type: 'hopping', size: '10s' },
        aggregates: { a: 'p101', b: 'mean', c: 'avg(' },
        for: 0,
      },
      {
        id: 'ok-rule',
        window: { type: 'sliding', size: 'ten seconds' },
        where: 'value > limit',
        when: 'avg > 1',
        forward: ['results', 'email'],
        groupBy: ['device', 'device'],
        colour: 'red',
      },
    ]);
    const byPath = new Map(ps.map((p) => [JSON.stringify(p.path), p.message]));
    const expectPath = (path: (string | number)[], re: RegExp) => {
      const m = byPath.get(JSON.stringify(path));
      assert.ok(m !== undefined, `no problem at ${JSON.stringify(path)}; got ${JSON.stringify(ps)}`);
      assert.match(m, re);
    };
    expectPath([1, 'id'], /expected an id .* found "Bad Id"/);
    expectPath([1, 'window', 'type'], /tumbling, sliding, session, count, found "hopping"/);
    expectPath([1, 'aggregates', 'a'], /p0 to p100/);
    expectPath([1, 'aggregates', 'b'], /unknown aggregate function "mean"; expected one of count, sum/);
    expectPath([1, 'aggregates', 'c'], /fn or fn\(metric\)/);
    expectPath([1, 'for'], /whole number ≥ 1\), found 0/);
    expectPath([2, 'id'], /duplicate id "ok-rule"/);
    expectPath([2, 'window', 'size'], /expected a duration like .* found "ten seconds"/);
    expectPath([2, 'window', 'slide'], /found nothing/);
    expectPath([2, 'where'], /unknown name 'limit' \(known: value\)/);
    expectPath([2, 'when'], /unknown name 'avg' \(known: count\)/);
    expectPath([2, 'forward', 1], /results, decisions, late, found "email"/);
    expectPath([2, 'groupBy', 1], /appears twice/);
    expectPath([2], /unknown key "colour"/);
    assert.ok(ps.length >= 14);
  });

  it('checks expression syntax in where/when/clear, and clear without when', () => {
    const ps = problems([
      {
        id: 'r',
        window: { type: 'session', gap: '5s' },
        aggregates: { avg: 'avg' },
        when: 'avg >',
        clear: 'avg <',
      },
      { id: 's', window: { type: 'count', size: 10 }, clear: 'count < 1', where: 'value >> 2' },
    ]);
    assert.deepEqual(
      ps.map((p) => p.path),
      [
        [0, 'when'],
        [0, 'clear'],
        [1, 'where'],
        [1, 'clear'],
      ],
    );
  });

  it('window-specific fields: slide only for sliding/count, gap only for session, count size a whole number', () => {
    const ps = problems([
      { id: 'a', window: { type: 'tumbling', size: '10s', slide: '5s' } },
      { id: 'b', window: { type: 'session', size: '10s' } },
      { id: 'c', window: { type: 'count', size: '10s' } },
      { id: 'd', window: { type: 'tumbling', size: 0 } },
    ]);
    const paths = ps.map((p) => JSON.stringify(p.path));
    assert.ok(paths.includes('[0,"window"]'), paths.join(' '));
    assert.ok(paths.includes('[1,"window","gap"]'));
    assert.ok(paths.includes('[1,"window"]'));
    assert.ok(paths.includes('[2,"window","size"]'));
    assert.ok(paths.includes('[3,"window","size"]'));
  });

  it('applies the SPEC defaults', () => {
    const v = validateRule({ id: 'x', window: { type: 'tumbling', size: '10s' } });
    assert.ok(v.ok);
    const r = v.rule;
    assert.deepEqual(r.groupBy, ['device']);
    assert.deepEqual(r.watermark, { maxOutOfOrder: 0, idleTimeout: 20_000 });
    assert.equal(r.lateness, 0);
    assert.equal(r.for, 1);
    assert.deepEqual(r.forward, ['decisions']);
    const s = validateRule({
      id: 'y',
      window: { type: 'session', gap: '30s' },
      watermark: { maxOutOfOrder: '5s' },
    });
    assert.ok(s.ok);
    assert.deepEqual(s.rule.watermark, { maxOutOfOrder: 5000, idleTimeout: 60_000 });
  });

  it('accepts the SPEC example rule, with pNN.N and fn(metric)', () => {
    const v = validateRule({
      id: 'boiler-overheat',
      description: 'Boiler running hot',
      match: { device: 'boiler-*', metric: 'temperature' },
      where: 'value > -50 and value < 400',
      groupBy: ['device'],
      window: { type: 'tumbling', size: '10s' },
      watermark: { maxOutOfOrder: '5s', idleTimeout: '30s' },
      lateness: '30s',
      aggregates: { avg: 'avg', peak: 'max', p95: 'p95', hum: 'avg(humidity)', p995: 'p99.5', med: 'median' },
      when: 'avg > 80 or peak > 95',
      clear: 'avg < 75',
      for: 3,
      forward: ['results', 'decisions'],
    });
    assert.ok(v.ok, JSON.stringify(v));
    assert.deepEqual(v.rule.aggregates[3], { alias: 'hum', fn: 'avg', metric: 'humidity', q: null });
    assert.deepEqual(v.rule.aggregates[4], { alias: 'p995', fn: 'quantile', metric: null, q: 99.5 });
    assert.deepEqual(v.rule.aggregates[5], { alias: 'med', fn: 'quantile', metric: null, q: 50 });
  });

  it('refuses what is not a list of rules', () => {
    assert.deepEqual(problems({ id: 'x' }), [
      { path: [], message: 'expected a list of rules, found a object' },
    ]);
  });
});
