/** Replay (fine print 10, 11): JSON lines in, records out, deterministic; duplicates and bad lines. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RecentDuplicates } from '../../src/ingest/duplicates.js';
import { replay } from '../../src/replay/replay.js';
import { compile } from '../engine/helpers.js';

async function* linesOf(text: string): AsyncIterable<string> {
  for (const line of text.split('\n')) yield line;
}

async function runReplay(
  input: string,
  rules = compile({
    window: { type: 'tumbling', size: '10s' },
    aggregates: { s: 'sum', p: 'p95' },
    lateness: '5s',
    when: 's > 10',
  }),
) {
  const out: string[] = [];
  const warnings: string[] = [];
  const summary = await replay(
    linesOf(input),
    rules,
    (l) => out.push(l),
    (w) => warnings.push(w),
  );
  return { out, warnings, summary };
}

describe('replay', () => {
  it('fine print 10: rejects lines without ts, bad JSON, bad readings — with line numbers — and goes on', async () => {
    const input = [
      '{"device":"d","metric":"t","value":1,"ts":"2026-11-24T10:00:01Z"}',
      '{"device":"d","metric":"t","value":2}',
      'not json',
      '',
      '{"device":"d","metric":"t","value":"x","ts":0}',
      '{"device":"d","metric":"t","value":3,"ts":"2026-11-24T10:00:02"}',
      '[1]',
      '{"device":"d","metric":"t","value":4,"ts":"2026-11-24T12:00:03.123999+02:00"}',
    ].join('\n');
    const { out, warnings, summary } = await runReplay(input);
    assert.deepEqual(summary, { readings: 2, rejected: 5, duplicates: 0, records: out.length });
    assert.deepEqual(
      warnings.map((w) => w.split(':')[0]),
      ['line 2', 'line 3', 'line 5', 'line 6', 'line 7'],
    );
    assert.match(warnings[0] as string, /missing_ts/);
    // Digits beyond milliseconds are truncated; output times are ISO UTC with milliseconds.
    const result = JSON.parse(out[0] as string) as { start: string; end: string; count: number };
    assert.equal(result.start, '2026-11-24T10:00:00.000Z');
    assert.equal(result.count, 2);
  });

  it('fine print 11: duplicates (same device, metric, instant in any notation, value) are dropped; a new value is not', async () => {
    const input = [
      '{"device":"d","metric":"t","value":1,"ts":"2026-11-24T10:00:01.000Z"}',
      '{"device":"d","metric":"t","value":1,"ts":1795514401000}',
      '{"device":"d","metric":"t","value":1,"ts":"2026-11-24T11:00:01+01:00"}',
      '{"device":"d","metric":"t","value":2,"ts":"2026-11-24T10:00:01Z"}',
      '{"device":"d","metric":"u","value":1,"ts":"2026-11-24T10:00:01Z"}',
    ].join('\n');
    const { out, summary } = await runReplay(input);
    assert.equal(Date.parse('2026-11-24T10:00:01Z'), 1795514401000);
    assert.equal(summary.duplicates, 2);
    assert.equal((JSON.parse(out[0] as string) as { count: number }).count, 3);
  });

  it('the same input twice gives byte-identical output', async () => {
    const lines: string[] = [];
    let x = 12345;
    for (let i = 0; i < 5000; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      const ts = Date.UTC(2026, 10, 24) + i * 700 - (x % 9000);
      lines.push(
        JSON.stringify({ device: `d${x % 7}`, metric: x % 3 ? 't' : 'h', value: (x % 1000) / 10, ts }),
      );
      if (x % 17 === 0) lines.push(lines[lines.length - 1] as string);
    }
    const rules = compile(
      {
        window: { type: 'sliding', size: '60s', slide: '10s' },
        aggregates: { a: 'avg', p: 'p95', sd: 'stddev' },
        lateness: '5s',
      },
      { window: { type: 'session', gap: '3s' }, aggregates: { n: 'count', r: 'rate' }, groupBy: ['metric'] },
      { window: { type: 'count', size: 50, slide: 20 }, aggregates: { m: 'median' }, when: 'm > 50' },
    );
    const a = await runReplay(lines.join('\n'), rules);
    const b = await runReplay(lines.join('\n'), rules);
    assert.ok(a.out.length > 100);
    assert.equal(a.out.join('\n'), b.out.join('\n'));
    assert.ok(a.summary.duplicates > 0);
  });
});

describe('DuplicateFilter', () => {
  it('forgets readings older than the horizon behind the largest ts, keeping memory bounded', () => {
    const f = new RecentDuplicates(1000);
    for (let i = 0; i < 100_000; i++)
      assert.equal(f.isDuplicate({ device: 'd', metric: 'm', value: 1, ts: i * 10 }), false);
    assert.ok(f.size < 10_000, `size ${f.size}`);
    assert.equal(f.isDuplicate({ device: 'd', metric: 'm', value: 1, ts: 999_990 }), true);
  });

  it('keeps at most maxEntries readings, the latest arrivals, whatever their ts', () => {
    const f = new RecentDuplicates(3_600_000, 5_000);
    for (let i = 0; i < 100_000; i++)
      assert.equal(f.isDuplicate({ device: 'd', metric: 'm', value: i, ts: 1000 }), false);
    assert.ok(f.size <= 10_000, `size ${f.size}`);
    assert.equal(f.isDuplicate({ device: 'd', metric: 'm', value: 99_999, ts: 1000 }), true);
    assert.equal(f.isDuplicate({ device: 'd', metric: 'm', value: 5, ts: 1000 }), false, 'forgotten');
  });
});
