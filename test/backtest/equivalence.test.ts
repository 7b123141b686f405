import assert from 'node:assert/strict';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { compileRules } from '../../src/engine/compile.js';
import { validateRules } from '../../src/model/rule.js';
import { replay } from '../../src/replay/replay.js';
import { fillStore } from '../helpers/history.js';
import { makeTempDir } from '../helpers/tmp.js';
import { type BacktestRig, backtestRig } from './rig.js';

const HOUR = 3_600_000;
/** Event times relative to the test's clock: an old enough history whatever the date. */
const START = Math.floor((Date.now() - 30 * 24 * HOUR) / HOUR) * HOUR;

const RULES = [
  {
    id: 'tumble',
    match: { metric: 'temp' },
    window: { type: 'tumbling', size: '1m' },
    aggregates: { avg: 'avg(temp)', max: 'max(temp)' },
    when: 'max > 85',
    clear: 'max < 75',
  },
  {
    id: 'slide',
    match: { metric: 'temp' },
    groupBy: ['zone'],
    window: { type: 'sliding', size: '5m', slide: '1m' },
    aggregates: { p95: 'p95(temp)', n: 'count(temp)' },
  },
  {
    id: 'session',
    match: { metric: 'temp', device: 'dev-1?' },
    window: { type: 'session', gap: '30s' },
    aggregates: { n: 'count(temp)', last: 'last(temp)' },
    when: 'n > 2000',
  },
  {
    id: 'count',
    match: { metric: 'temp' },
    window: { type: 'count', size: 1000 },
    aggregates: { s: 'sum(temp)' },
  },
];

interface Job {
  id: string;
  state: string;
  records: number;
  truncated: boolean;
  summary: { readings: number; windows: number; results: number; decisions: { firing: number; ok: number } };
}

describe('backtest ≡ tidegate replay over /readings/export of the same range', () => {
  const dir = makeTempDir();
  const path = dir.file('store.db');
  let rig: BacktestRig;
  let stored = 0;
  // Not on the history's edges: the first and last windows are cut by the range.
  const from = START + 10 * 60_000 + 500;
  let to = 0;

  before(async () => {
    // 50 devices, one temp reading a second each (with pauses), humidity every 10 s besides.
    stored = fillStore(path, { devices: 50, readings: 1_300_000, start: START, step: 1000, otherEvery: 10 });
    to = START + 6 * HOUR + 7_250;
    rig = await backtestRig(path);
  });
  after(async () => {
    await rig.close();
    dir.remove();
  });

  it('gives the same records, record for record, for a tumbling, a sliding (p95), a session and a count rule', async () => {
    assert.ok(stored >= 1_300_000);
    const checked = validateRules(RULES);
    assert.ok(checked.ok);
    // What replay makes of the export.
    const res = await fetch(`${rig.base}/api/v1/readings/export?from=${from}&to=${to}`);
    assert.equal(res.status, 200);
    const lines = createInterface({ input: Readable.fromWeb(res.body as never) });
    const expected = new Map<string, string[]>(RULES.map((r) => [r.id, []]));
    const replayed = await replay(
      lines,
      compileRules(checked.rules),
      (line) => expected.get((JSON.parse(line) as { rule: string }).rule)?.push(line),
      (m) => assert.fail(`replay warned: ${m}`),
    );
    assert.ok(replayed.readings >= 1_000_000, `the range holds ${replayed.readings} readings`);
    assert.equal(replayed.rejected, 0);

    for (const rule of RULES) {
      const posted = await rig.call<Job>('POST', '/api/v1/backtests', { rule, from, to });
      assert.equal(posted.status, 202, JSON.stringify(posted.body));
      const job = await rig.finished<Job>(posted.body.id);
      assert.equal(job.state, 'done', JSON.stringify(job));
      assert.equal(job.truncated, false);
      const got: string[] = [];
      let cursor: string | null = null;
      do {
        const q: string = `limit=100000${cursor ? `&cursor=${cursor}` : ''}`;
        const page = await rig.call<{ items: unknown[]; next: string | null }>(
          'GET',
          `/api/v1/backtests/${job.id}/records?${q}`,
        );
        for (const item of page.body.items) got.push(JSON.stringify(item));
        cursor = page.body.next;
      } while (cursor !== null);
      const want = expected.get(rule.id) as string[];
      assert.ok(want.length > 100, `${rule.id}: ${want.length} records`);
      assert.equal(got.length, want.length, `${rule.id}: record count`);
      for (let i = 0; i < want.length; i++) {
        if (got[i] !== want[i])
          assert.fail(`${rule.id}: record ${i} differs:\n  backtest ${got[i]}\n  replay   ${want[i]}`);
      }
      assert.equal(job.records, want.length);
      const results = want.filter((l) => l.includes('"type":"result"')).length;
      assert.equal(job.summary.results, results, `${rule.id}: summary.results`);
      if (rule.id === 'tumble')
        assert.ok(job.summary.decisions.firing > 10, 'the threshold fired now and then');
    }
  });
});
