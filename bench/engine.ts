/**
 * Rule engine throughput (issue 3): readings/s, RSS and per-reading latency for the SPEC's three
 * reference workloads. Each scenario runs in its own process so one's heap does not colour the next
 * one's RSS. Run: `npm run bench:engine` (or `node build/bench/engine.js [scenario]`);
 * `--repeat N` runs N rounds of every scenario and reads the medians, and each ratio as the median of
 * the rounds' own (single runs of the same build vary by up to 2× on these shared machines, in spells
 * of minutes). `--groups N` gives the one-rule scenarios N groups instead of 1,000 (10: their state
 * stays in the core's cache).
 */
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { compileRules } from '../src/engine/compile.js';
import { RuleEngine } from '../src/engine/engine.js';
import type { Reading } from '../src/model/reading.js';
import { validateRules } from '../src/model/rule.js';
import { ManualClock } from '../src/runtime/clock.js';

interface Scenario {
  title: string;
  /** readings/s the scenario must reach; null: measured for information. */
  target: number | null;
  readings: number;
  rules: Record<string, unknown>[];
  devices: number;
  metrics: number;
}

const T0 = Date.UTC(2026, 10, 24);

/** The one-rule scenarios' groups (devices): 1,000 unless `--groups N` (10: their state in cache). */
function scenarios(groups: number): Record<string, Scenario> {
  const hundred: Record<string, unknown>[] = [];
  const kinds = [
    { type: 'tumbling', size: '10s' },
    { type: 'tumbling', size: '1m' },
    { type: 'sliding', size: '60s', slide: '10s' },
    { type: 'session', gap: '30s' },
    { type: 'count', size: 100 },
  ];
  const aggs = [
    { avg: 'avg', peak: 'max' },
    { p95: 'p95' },
    { sd: 'stddev', n: 'count' },
    { r: 'rate', d: 'delta' },
  ];
  for (let k = 0; k < 100; k++) {
    hundred.push({
      id: `rule-${k}`,
      match: k % 2 === 0 ? { metric: `m${k % 10}` } : { device: `dev-${k % 10}*`, metric: `m${k % 10}` },
      where: k % 3 === 0 ? 'value > -1000' : undefined,
      window: kinds[k % kinds.length],
      aggregates: aggs[k % aggs.length],
      when: k % 4 === 0 ? 'count > 5' : undefined,
    });
  }
  const everyRule = hundred.map((r, k) => ({ ...r, match: {}, id: `all-${k}` }));
  const g = `${groups.toLocaleString('en')} groups`;
  /** A scenario of one rule over `groups` devices reporting one metric. */
  const single = (
    id: string,
    title: string,
    target: number | null,
    readings: number,
    window: Record<string, unknown>,
    aggregates: Record<string, string>,
  ): Scenario => ({
    title,
    target,
    readings,
    devices: groups,
    metrics: 1,
    rules: [{ id, window, aggregates }],
  });
  return {
    tumbling: single(
      'tumbling',
      `tumbling 10 s, avg+max, ${g}`,
      2_000_000,
      5_000_000,
      { type: 'tumbling', size: '10s' },
      { avg: 'avg', peak: 'max' },
    ),
    sliding: single(
      'sliding',
      `sliding 60 s / 10 s, avg+p95, ${g}`,
      1_500_000,
      3_000_000,
      { type: 'sliding', size: '60s', slide: '10s' },
      { avg: 'avg', p95: 'p95' },
    ),
    sliding1s: single(
      'sliding1s',
      `sliding 60 s / 1 s, avg+p95, ${g} (60 windows overlap each reading)`,
      null,
      3_000_000,
      { type: 'sliding', size: '60s', slide: '1s' },
      { avg: 'avg', p95: 'p95' },
    ),
    tumbling1s: single(
      'tumbling1s',
      `tumbling 1 s, avg+p95, ${g} (as many windows close per reading as sliding 60 s / 1 s, none overlap)`,
      null,
      3_000_000,
      { type: 'tumbling', size: '1s' },
      { avg: 'avg', p95: 'p95' },
    ),
    hundred: {
      title:
        '100 rules on one stream (100 devices × 10 metrics; each rule one metric, ~10 rules per reading)',
      target: 300_000,
      readings: 2_000_000,
      devices: 100,
      metrics: 10,
      rules: hundred,
    },
    hundredAll: {
      title: '100 rules on one stream, every rule sees every reading (worst case)',
      target: null,
      readings: 500_000,
      devices: 100,
      metrics: 10,
      rules: everyRule,
    },
  };
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

function runScenario(name: string, s: Scenario): void {
  const v = validateRules(JSON.parse(JSON.stringify(s.rules)));
  if (!v.ok) throw new Error(JSON.stringify(v.problems));
  const engine = new RuleEngine(compileRules(v.rules), { clock: new ManualClock(0), live: false });
  const deviceNames = Array.from({ length: s.devices }, (_, i) => `dev-${i}`);
  const metricNames = Array.from({ length: s.metrics }, (_, i) => `m${i}`);
  const perRound = s.devices * s.metrics;
  const batch = 1000;
  const batchNs: number[] = [];
  let records = 0;
  let x = 1;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < s.readings; i += batch) {
    const b0 = process.hrtime.bigint();
    for (let j = i; j < i + batch && j < s.readings; j++) {
      const round = Math.floor(j / perRound);
      const k = j % perRound;
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      // Every device reports every metric once a second of event time, a little out of order.
      const r: Reading = {
        device: deviceNames[k % s.devices] as string,
        metric: metricNames[Math.floor(k / s.devices)] as string,
        value: (x % 10_000) / 100,
        ts: T0 + round * 1000 + (x % 400),
      };
      records += engine.process(r).length;
    }
    batchNs.push(Number(process.hrtime.bigint() - b0) / batch);
  }
  records += engine.flush().length;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const rate = s.readings / seconds;
  batchNs.sort((a, b) => a - b);
  const rss = process.memoryUsage().rss / 2 ** 20;
  console.log(
    `${s.title}\n  ${name}: ${Math.round(rate).toLocaleString('en')} readings/s ` +
      (s.target === null
        ? '(no target), '
        : `(target ${s.target.toLocaleString('en')}: ${rate >= s.target ? 'met' : 'NOT met'}), `) +
      `${s.readings.toLocaleString('en')} readings, ${records.toLocaleString('en')} records, RSS ${rss.toFixed(0)} MiB, ` +
      `per-reading latency over batches of ${batch}: p50 ${quantile(batchNs, 0.5).toFixed(0)} ns, ` +
      `p99 ${quantile(batchNs, 0.99).toFixed(0)} ns`,
  );
}

/** The whole number ≥ 1 after `--name`, or `fallback` without one. */
function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  if (at < 0) return fallback;
  const n = Number(process.argv[at + 1]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} takes a whole number ≥ 1`);
  return n;
}

const groups = option('groups', 1000);
const all = scenarios(groups);
const repeat = option('repeat', 1);
const only = process.argv[2]?.startsWith('--') ? undefined : process.argv[2];
if (only !== undefined) {
  const s = all[only];
  if (!s) throw new Error(`unknown scenario ${only}; known: ${Object.keys(all).join(', ')}`);
  runScenario(only, s);
} else {
  const cpu = cpus();
  console.log(`machine: ${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} cores, Node ${process.version}`);
  const self = fileURLToPath(import.meta.url);
  const names = Object.keys(all);
  // With --repeat, runs go in rounds of every scenario, so that a slow spell of this shared machine
  // (they come and go over minutes) falls on all of them alike, and ratios are read per round.
  const texts = new Map<string, string>(names.map((n) => [n, '']));
  const runs = new Map<string, number[]>(names.map((n) => [n, []]));
  for (let k = 0; k < repeat; k++) {
    if (repeat > 1) process.stderr.write(`round ${k + 1} of ${repeat}\n`);
    for (const name of names) {
      const r = spawnSync(process.execPath, [self, name, '--groups', String(groups)], {
        stdio: ['inherit', 'pipe', 'inherit'],
      });
      const text = r.stdout.toString();
      if (r.status !== 0) {
        process.stdout.write(text);
        process.exit(r.status ?? 1);
      }
      texts.set(name, (texts.get(name) as string) + (k === 0 ? text : text.slice(text.indexOf('\n') + 1)));
      const m = new RegExp(`${name}: ([\\d,]+) readings/s`).exec(text);
      (runs.get(name) as number[]).push(m ? Number((m[1] as string).replaceAll(',', '')) : Number.NaN);
    }
  }
  const median = (xs: number[]): number => {
    const sorted = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
    return sorted.length === 0 ? Number.NaN : (sorted[Math.floor((sorted.length - 1) / 2)] as number);
  };
  for (const name of names) {
    process.stdout.write(texts.get(name) as string);
    if (repeat > 1)
      console.log(
        `  ${name}: median of ${repeat} runs ${Math.round(median(runs.get(name) as number[])).toLocaleString('en')} readings/s`,
      );
  }
  /** Median over the rounds of the rate of `a` over that of `b` in the same round. */
  const ratio = (a: string, b: string): number => {
    const ra = runs.get(a) as number[];
    const rb = runs.get(b) as number[];
    return median(ra.map((x, k) => x / (rb[k] as number)));
  };
  const per = repeat > 1 ? ` (median of ${repeat} rounds' ratios)` : '';
  // Stream slicing (issue 19): 60 overlapping windows per reading must cost little more than 6.
  const sixty = ratio('sliding', 'sliding1s');
  console.log(
    `sliding 60 s / 1 s vs 60 s / 10 s: ${sixty.toFixed(2)}× the time per reading${per} ` +
      `(target ≤ 1.5×: ${sixty <= 1.5 ? 'met' : 'NOT met'})`,
  );
  // Of that, what the overlap costs: as many windows closed per reading (one per reading), each of
  // one pane and 1 value instead of 60 panes and 60 values.
  console.log(
    `sliding 60 s / 1 s vs tumbling 1 s (one window closed per reading in both): ` +
      `${ratio('tumbling1s', 'sliding1s').toFixed(2)}× the time per reading${per}`,
  );
}
