/**
 * `tidegate backtest` (issue 16), the built CLI over a store file: the records of `tidegate replay`
 * over the export of the same range, while a gateway runs (and writes) on that file; one rule of a
 * file; usage errors (exit 2), a missing store (exit 74), the store of a config file.
 */
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { iso, isoWithOffset, recentHour } from '../helpers/event-time.js';
import { type RunningGateway, runCli, startGateway } from '../helpers/gateway-process.js';
import { fillStore } from '../helpers/history.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

const HOUR = 3_600_000;
/** Two days ago: inside the store's default retention (7d), whatever the date. */
const START = recentHour() - 48 * HOUR;
/** Not on window edges: the range cuts the first and last windows. */
const FROM = START + 10 * 60_000 + 500;
const TO = START + 2 * HOUR + 7_250;

const RULES = `# rules on temp; the store also holds humidity, which they must ignore
- id: tumble
  match: { metric: temp }
  window: { type: tumbling, size: 1m }
  aggregates: { avg: avg(temp), max: max(temp) }
  when: "max > 85"
  clear: "max < 75"
- id: slide
  match: { metric: temp }
  groupBy: [zone]
  window: { type: sliding, size: 5m, slide: 1m }
  aggregates: { p95: p95(temp), n: count(temp) }
- id: session
  match: { metric: temp, device: "dev-1?" }
  window: { type: session, gap: 30s }
  aggregates: { n: count(temp), last: last(temp) }
`;

const SUMMARY =
  /^tidegate backtest: (\d+) readings, (\d+) windows, (\d+) results, (\d+) firing, (\d+) ok, (\d+) late$/m;

const lines = (stdout: string) => (stdout === '' ? [] : stdout.replace(/\n$/, '').split('\n'));
const ruleOf = (line: string) => (JSON.parse(line) as { rule: string }).rule;

describe('tidegate backtest (built CLI) over a store file', () => {
  let tmp: TempDir;
  let gw: RunningGateway | undefined;
  let store = '';
  let rules = '';
  let config = '';
  /** The records of the three rules over [FROM, TO), as `tidegate backtest` prints them. */
  let all: string[] = [];
  /** `tidegate backtest` of the rules file over [FROM, TO), then `extra`. */
  const backtestArgs = (...extra: string[]) => [
    'backtest',
    '--rules',
    rules,
    '--from',
    String(FROM),
    '--to',
    String(TO),
    ...extra,
  ];

  before(async () => {
    tmp = makeTempDir('tidegate-backtest-cli-');
    store = tmp.file('gw.db');
    rules = tmp.file('rules.yaml');
    config = tmp.file('gateway.yaml');
    // 20 devices, a temp reading a second each (with pauses), humidity every 10 s besides.
    fillStore(store, { devices: 20, readings: 200_000, start: START, step: 1000, otherEvery: 10 });
    writeFileSync(rules, RULES);
    // The gateway writes beside the backtest: simulated readings, at the time of the clock.
    writeFileSync(
      config,
      `api: { port: 0, rateLimit: 0 }
broker: { enabled: false }
sources: [{ id: sim, type: simulator, devices: 3, interval: 50ms }]
store: { path: ${store}, flushInterval: 50ms }
`,
    );
    gw = await startGateway(config, { timeoutMs: 30_000 });
  });
  after(async () => {
    await gw?.stop();
    tmp?.remove();
  });

  it('prints, while the gateway runs on the store, the records of replay over the export of the range', async () => {
    const g = gw as RunningGateway;
    const res = await g.api(`/api/v1/readings/export?from=${iso(FROM)}&to=${TO}`);
    assert.equal(res.status, 200);
    const exported = tmp.file('export.ndjson');
    writeFileSync(exported, await res.text());
    const replayed = await runCli(['replay', '--rules', rules, '--input', exported]);
    assert.equal(replayed.code, 0, replayed.stderr);
    const replayedCount = /(\d+) readings, 0 rejected/.exec(replayed.stderr);
    assert.ok(replayedCount, replayed.stderr);

    // From as ISO-8601 with an offset, to as epoch ms.
    const backtest = await runCli([
      'backtest',
      '--rules',
      rules,
      '--from',
      isoWithOffset(FROM, 120),
      '--to',
      String(TO),
      '--db',
      store,
    ]);
    assert.equal(backtest.code, 0, backtest.stderr);
    assert.equal(g.proc.exitCode, null, 'the gateway still runs');
    all = lines(backtest.stdout);
    const want = lines(replayed.stdout);
    assert.ok(want.length > 1000, `${want.length} records`);
    for (const id of ['tumble', 'slide', 'session'])
      assert.ok(want.filter((l) => ruleOf(l) === id).length > 20, `rule ${id} has records in the range`);
    assert.equal(all.length, want.length, 'record count');
    for (let i = 0; i < want.length; i++) {
      if (all[i] !== want[i])
        assert.fail(`record ${i} differs:\n  backtest ${all[i]}\n  replay   ${want[i]}`);
    }

    // The summary on stderr, nothing else there; counts that agree with the records.
    const m = SUMMARY.exec(backtest.stderr);
    assert.ok(m, `a summary line on stderr: ${backtest.stderr}`);
    assert.equal(backtest.stderr.trim().split('\n').length, 1, backtest.stderr);
    const [, readings, windows, results, firing, ok, late] = m.map(Number) as number[];
    const records = all.map((l) => JSON.parse(l) as { type: string; state?: string; revision?: number });
    const count = (keep: (r: (typeof records)[number]) => boolean) => records.filter(keep).length;
    assert.equal(
      results,
      count((r) => r.type === 'result'),
    );
    assert.equal(
      windows,
      count((r) => r.type === 'result' && r.revision === 0),
    );
    assert.equal(
      firing,
      count((r) => r.type === 'decision' && r.state === 'firing'),
    );
    assert.equal(
      ok,
      count((r) => r.type === 'decision' && r.state === 'ok'),
    );
    assert.equal(
      late,
      count((r) => r.type === 'late'),
    );
    assert.ok((firing as number) > 0, 'the threshold fired in the range');
    // The backtest reads only temp (what the rules match); the export has humidity too.
    const exportedTemp = lines(
      await (await g.api(`/api/v1/readings/export?from=${FROM}&to=${TO}&metric=temp`)).text(),
    );
    assert.equal(readings, exportedTemp.length);
    assert.ok(Number(replayedCount[1]) > (readings as number), 'the export holds more than temp');
  });

  it('--rule ID runs one rule of the file', async () => {
    const one = await runCli([
      'backtest',
      '--rules',
      rules,
      '--rule',
      'slide',
      '--from',
      String(FROM),
      '--to',
      iso(TO),
      '--db',
      store,
    ]);
    assert.equal(one.code, 0, one.stderr);
    const got = lines(one.stdout);
    assert.ok(got.length > 20);
    assert.ok(got.every((l) => ruleOf(l) === 'slide'));
    assert.ok(all.length > 0, 'the first test ran');
    assert.deepEqual(
      got,
      all.filter((l) => ruleOf(l) === 'slide'),
    );
    assert.match(one.stderr, SUMMARY);
  });

  it('an unknown rule id exits 2 naming the ids of the file', async () => {
    const r = await runCli([
      'backtest',
      '--rules',
      rules,
      '--rule',
      'nope',
      '--from',
      String(FROM),
      '--to',
      String(TO),
      '--db',
      store,
    ]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /no rule nope in .*rules\.yaml \(it has tumble, slide, session\)/);
  });

  it('exits 2 without --from (or --to), on a time it cannot read, and on from ≥ to', async () => {
    const base = ['backtest', '--rules', rules, '--db', store];
    const cases: [string[], RegExp][] = [
      [['--to', String(TO)], /--from and --to are required/],
      [['--from', String(FROM)], /--from and --to are required/],
      [['--from', 'yesterday', '--to', String(TO)], /expected ISO-8601 .*: yesterday/],
      [
        ['--from', String(FROM), '--to', '2026-13-45T99:00:00Z'],
        /expected ISO-8601 .*: 2026-13-45T99:00:00Z/,
      ],
      [['--from', String(TO), '--to', String(FROM)], /--from must be before --to/],
      [['--from', String(FROM), '--to', String(FROM)], /--from must be before --to/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli([...base, ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
      assert.match(r.stderr, /Usage:/, 'with the usage');
      assert.equal(r.stdout, '');
    }
    const noRules = await runCli(['backtest', '--from', String(FROM), '--to', String(TO), '--db', store]);
    assert.equal(noRules.code, 2);
    assert.match(noRules.stderr, /--rules FILE is required/);
  });

  it('a missing store file exits 74 with a message, and creates nothing', async () => {
    const missing = tmp.file('nowhere', 'missing.db');
    const r = await runCli(backtestArgs('--db', missing));
    assert.equal(r.code, 74, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^tidegate backtest: cannot open the store .*missing\.db to read: /m);
    assert.equal(existsSync(missing), false);
    const file = tmp.file('missing.db');
    const there = await runCli(backtestArgs('--db', file));
    assert.equal(there.code, 74, there.stderr);
    assert.equal(existsSync(file), false, 'read-only: no file made');
  });

  it('without --db reads the store of the config (--config FILE)', async () => {
    const r = await runCli(backtestArgs('--config', config));
    assert.equal(r.code, 0, r.stderr);
    assert.ok(all.length > 0, 'the first test ran');
    assert.deepEqual(lines(r.stdout), all);
    // A config naming another (missing) store: that is the one it reads.
    const other = tmp.file('other.yaml');
    writeFileSync(other, `store: { path: ${tmp.file('elsewhere.db')} }\n`);
    const elsewhere = await runCli(backtestArgs('--config', other));
    assert.equal(elsewhere.code, 74, elsewhere.stderr);
    assert.match(elsewhere.stderr, /elsewhere\.db/);
  });
});
