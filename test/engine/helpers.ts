/** Shared fixtures for the engine tests: rules from plain objects, readings, and record shorthands. */
import assert from 'node:assert/strict';
import { compileRules } from '../../src/engine/compile.js';
import { RuleEngine } from '../../src/engine/engine.js';
import type { Reading } from '../../src/model/reading.js';
import type { OutputRecord } from '../../src/model/records.js';
import { validateRules } from '../../src/model/rule.js';
import { ManualClock } from '../../src/runtime/clock.js';

export const T0 = Date.UTC(2026, 10, 24, 10, 0, 0);

/**
 * Aggregates by alias, for property tests that build rules of random aggregates: every function,
 * quantiles among them, and some over a second metric (humidity).
 */
export const AGGREGATES: Record<string, string> = {
  n: 'count',
  s: 'sum',
  a: 'avg',
  lo: 'min',
  hi: 'max',
  f: 'first',
  l: 'last',
  sd: 'stddev',
  sp: 'spread',
  d: 'delta',
  r: 'rate',
  med: 'median',
  p0: 'p0',
  p95: 'p95',
  p995: 'p99.5',
  p100: 'p100',
  hn: 'count(humidity)',
  ha: 'avg(humidity)',
  hl: 'last(humidity)',
  hp: 'p50(humidity)',
  hsd: 'stddev(humidity)',
};

export function compile(...inputs: Record<string, unknown>[]) {
  const v = validateRules(inputs.map((r, i) => ({ id: `r${i + 1}`, ...r })));
  if (!v.ok) assert.fail(`rules invalid: ${JSON.stringify(v.problems)}`);
  return compileRules(v.rules);
}

export function engine(
  rules: Record<string, unknown> | Record<string, unknown>[],
  live = false,
  clock = new ManualClock(0),
) {
  const list = Array.isArray(rules) ? rules : [rules];
  return new RuleEngine(compile(...list), { clock, live });
}

/** A reading at T0 + `sec` seconds. */
export function rd(
  device: string,
  sec: number,
  value: number,
  metric = 'temperature',
  tags?: Record<string, string>,
): Reading {
  const r: Reading = { device, metric, value, ts: T0 + Math.round(sec * 1000) };
  if (tags) r.tags = tags;
  return r;
}

export function iso(sec: number): string {
  return new Date(T0 + Math.round(sec * 1000)).toISOString();
}

/** Feeds readings, returning all records (as parsed JSON) including the final flush when asked. */
export function run(e: RuleEngine, readings: Reading[], flush = true): Record<string, unknown>[] {
  const out: OutputRecord[] = [];
  for (const r of readings) out.push(...e.process(r));
  if (flush) out.push(...e.flush());
  return out.map((r) => JSON.parse(JSON.stringify(r)) as Record<string, unknown>);
}

/** Compact view of records: result → "R start-end count rev", decision → "D state at", late → "L ts". */
export function brief(records: Record<string, unknown>[], t0 = T0): string[] {
  const s = (x: unknown) => (Date.parse(x as string) - t0) / 1000;
  return records.map((r) => {
    const k = Object.values((r.key as object) ?? {}).join(',');
    if (r.type === 'result') return `R ${k} ${s(r.start)}-${s(r.end)} n=${r.count} rev=${r.revision}`;
    if (r.type === 'decision') return `D ${k} ${r.state} ${s(r.at)}`;
    const reading = r.reading as { device: string; ts: string };
    return `L ${reading.device} ${s(reading.ts)}`;
  });
}
