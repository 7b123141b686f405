import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BacktestJobs } from '../../src/backtest/jobs.js';
import { validateRule } from '../../src/model/rule.js';
import { systemClock } from '../../src/runtime/clock.js';
import type { BacktestEvent } from '../../src/runtime/events.js';
import { EventBus } from '../../src/runtime/events.js';
import { silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { BacktestStore, backtestsPath, openBacktestsDatabase } from '../../src/store/backtest-store.js';
import { fillStore } from '../helpers/history.js';
import { makeTempDir } from '../helpers/tmp.js';
import { type BacktestRig, backtestRig } from './rig.js';

const HOUR = 3_600_000;
const START = Math.floor((Date.now() - 10 * 24 * HOUR) / HOUR) * HOUR;
const READINGS = 300_000;
const FROM = START;
const TO = START + 24 * HOUR;

const tumbling = {
  id: 'hot',
  match: { metric: 'temp' },
  window: { type: 'tumbling', size: '1m' },
  aggregates: { max: 'max(temp)' },
  when: 'max > 85',
  clear: 'max < 75',
};
/** 360 windows per reading: over 300 k readings, a job of several seconds, long enough to catch running. */
const slow = {
  id: 'slow',
  match: { metric: 'temp' },
  window: { type: 'sliding', size: '1h', slide: '10s' },
  aggregates: { p95: 'p95(temp)' },
};

interface Job {
  id: string;
  state: string;
  rule: unknown;
  ruleId?: string;
  progress: { readings: number; fraction: number };
  summary: { readings: number; windows: number; results: number; decisions: { firing: number; ok: number } };
  records: number;
  truncated: boolean;
  error: string | null;
  finishedAt: string | null;
}
interface ErrorBody {
  error: { code: string; message: string; details: { path?: string; message: string }[] };
}

/** The next backtest event on the bus that satisfies `test` (at most `ms`). */
function nextEvent(bus: EventBus, test: (e: BacktestEvent) => boolean, ms = 30_000): Promise<BacktestEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no such backtest event within ${ms} ms`));
    }, ms);
    const off = bus.on(
      'backtest',
      (e) => {
        if (!test(e)) return;
        clearTimeout(timer);
        off();
        resolve(e);
      },
      'test',
    );
  });
}

describe('backtest jobs over the API', () => {
  const dir = makeTempDir();
  const path = dir.file('store.db');
  let rig: BacktestRig;

  before(async () => {
    fillStore(path, { devices: 20, readings: READINGS, start: START, step: 1000 });
    rig = await backtestRig(path, { rules: { hot: tumbling } });
  });
  after(async () => {
    await rig.close();
    dir.remove();
  });

  it('runs a job: 202 and Location, progress on the bus, then done with a summary', async () => {
    const progressed = nextEvent(rig.bus, (e) => e.state === 'done');
    const posted = await rig.call<Job>('POST', '/api/v1/backtests', {
      rule: tumbling,
      from: new Date(FROM).toISOString(),
      to: TO,
    });
    assert.equal(posted.status, 202);
    assert.equal(posted.body.state, 'running');
    assert.equal(posted.headers.get('location'), `/api/v1/backtests/${posted.body.id}`);
    const done = await rig.finished<Job>(posted.body.id);
    assert.equal(done.state, 'done');
    assert.equal(done.summary.readings, READINGS);
    assert.deepEqual(done.progress, { readings: READINGS, fraction: 1 });
    assert.ok(done.summary.windows > 1000, `${done.summary.windows} windows`);
    assert.ok(done.summary.decisions.firing > 0, 'the threshold would have fired');
    assert.equal(
      done.records,
      done.summary.results + done.summary.decisions.firing + done.summary.decisions.ok,
    );
    assert.ok(done.finishedAt !== null);
    const event = await progressed;
    assert.equal(event.id, done.id);
    assert.deepEqual(event.summary, done.summary);
    const list = await rig.call<{ items: Job[] }>('GET', '/api/v1/backtests');
    assert.equal(list.body.items[0]?.id, done.id);
  });

  it('announces progress and the end on /stream as backtest events', async () => {
    const ac = new AbortController();
    const res = await fetch(`${rig.base}/api/v1/stream?type=backtest`, { signal: ac.signal });
    assert.equal(res.status, 200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    try {
      // The subscription exists once the first frame (retry:) arrived.
      let text = decoder.decode((await reader.read()).value);
      const posted = await rig.call<Job>('POST', '/api/v1/backtests', { rule: tumbling, from: FROM, to: TO });
      const deadline = Date.now() + 30_000;
      while (!text.includes('"state":"done"') && Date.now() < deadline) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value);
      }
      const events = text
        .split('\n\n')
        .filter((f) => f.startsWith('event: backtest'))
        .map((f) => JSON.parse(f.slice(f.indexOf('data: ') + 6)) as { id: string; state: string });
      assert.ok(events.length >= 2, text);
      assert.ok(events.every((e) => e.id === posted.body.id));
      assert.equal(events[0]?.state, 'running');
      assert.equal(events.at(-1)?.state, 'done');
    } finally {
      ac.abort();
    }
  });

  it('pages the records by type and cursor, in emission order', async () => {
    const posted = await rig.call<Job>('POST', '/api/v1/backtests', { ruleId: 'hot', from: FROM, to: TO });
    const job = await rig.finished<Job>(posted.body.id);
    assert.equal(job.ruleId, 'hot');
    assert.deepEqual(job.rule, tumbling);
    const decisions = await rig.call<{ items: { type: string; state: string }[]; next: string | null }>(
      'GET',
      `/api/v1/backtests/${job.id}/records?type=decision&limit=100000`,
    );
    assert.equal(decisions.body.items.length, job.summary.decisions.firing + job.summary.decisions.ok);
    assert.ok(decisions.body.items.every((r) => r.type === 'decision'));
    assert.equal(decisions.body.next, null);
    const seen: unknown[] = [];
    let cursor: string | null = null;
    do {
      const page: { body: { items: unknown[]; next: string | null } } = await rig.call(
        'GET',
        `/api/v1/backtests/${job.id}/records?limit=700${cursor ? `&cursor=${cursor}` : ''}`,
      );
      seen.push(...page.body.items);
      cursor = page.body.next;
    } while (cursor);
    assert.equal(seen.length, job.records);
    const all = await rig.call<{ items: unknown[] }>(
      'GET',
      `/api/v1/backtests/${job.id}/records?limit=100000`,
    );
    assert.deepEqual(seen, all.body.items);
    const bad = await rig.call<ErrorBody>('GET', `/api/v1/backtests/${job.id}/records?cursor=nope`);
    assert.equal(bad.status, 400);
    const badType = await rig.call<ErrorBody>('GET', `/api/v1/backtests/${job.id}/records?type=reading`);
    assert.equal(badType.status, 400);
    assert.equal((await rig.call('GET', '/api/v1/backtests/nope/records')).status, 404);
  });

  it('runs one job at a time: a second POST is 409 with the running id; DELETE cancels within 1 s', async () => {
    const posted = await rig.call<Job>('POST', '/api/v1/backtests', { rule: slow, from: FROM, to: TO });
    assert.equal(posted.status, 202);
    const id = posted.body.id;
    // Running, and past its first chunk.
    const progress = await nextEvent(
      rig.bus,
      (e) => e.id === id && e.state === 'running' && e.progress.readings > 0,
    );
    assert.ok(progress.progress.fraction > 0 && progress.progress.fraction < 1, JSON.stringify(progress));
    const second = await rig.call<ErrorBody>('POST', '/api/v1/backtests', {
      rule: tumbling,
      from: FROM,
      to: TO,
    });
    assert.equal(second.status, 409);
    assert.equal(second.body.error.code, 'conflict');
    assert.match(second.body.error.message, new RegExp(id));
    assert.deepEqual(second.body.error.details, [{ path: 'running', message: `/api/v1/backtests/${id}` }]);
    assert.equal(second.headers.get('location'), `/api/v1/backtests/${id}`);
    const running = await rig.call<Job>('GET', `/api/v1/backtests/${id}`);
    assert.equal(running.body.state, 'running');
    const t0 = performance.now();
    const cancelled = await rig.call<Job>('DELETE', `/api/v1/backtests/${id}`);
    const ms = performance.now() - t0;
    assert.equal(cancelled.status, 200);
    assert.equal(cancelled.body.state, 'cancelled');
    assert.ok(ms < 1000, `the cancel took ${ms.toFixed(0)} ms`);
    assert.ok(cancelled.body.progress.readings < READINGS);
    assert.equal(rig.jobs.runningId(), null);
    // The slot is free again.
    const next = await rig.call<Job>('POST', '/api/v1/backtests', { rule: tumbling, from: FROM, to: TO });
    assert.equal(next.status, 202);
    assert.equal((await rig.finished<Job>(next.body.id)).state, 'done');
    // DELETE of an ended job deletes it and its records.
    assert.equal((await rig.call('DELETE', `/api/v1/backtests/${next.body.id}`)).status, 204);
    assert.equal((await rig.call('GET', `/api/v1/backtests/${next.body.id}`)).status, 404);
    const left = rig.jobsDb
      .prepare('SELECT count(*) FROM backtest_records WHERE job = ?')
      .pluck()
      .get(next.body.id);
    assert.equal(left, 0);
    assert.equal((await rig.call('DELETE', '/api/v1/backtests/nope')).status, 404);
  });

  it('refuses a rule that does not validate with 422 and every problem at its path, as /rules/validate gives', async () => {
    const bad = {
      ...tumbling,
      window: { type: 'tumbling', size: 'soon' },
      aggregates: { x: 'median(temp)' },
    };
    const res = await rig.call<ErrorBody>('POST', '/api/v1/backtests', { rule: bad, from: FROM, to: TO });
    assert.equal(res.status, 422);
    assert.equal(res.body.error.code, 'unprocessable');
    const paths = res.body.error.details.map((d) => d.path);
    assert.ok(paths.includes('window.size'), JSON.stringify(res.body));
    const checked = validateRule(bad);
    assert.ok(!checked.ok);
    assert.deepEqual(
      res.body.error.details,
      checked.problems.map((p) => ({ path: p.path.join('.'), message: p.message })),
    );
    const unknown = await rig.call<ErrorBody>('POST', '/api/v1/backtests', {
      ruleId: 'nope',
      from: FROM,
      to: TO,
    });
    assert.equal(unknown.status, 422);
    assert.equal(unknown.body.error.details[0]?.path, 'ruleId');
    assert.equal(rig.jobs.runningId(), null, 'nothing started');
  });

  it('refuses a malformed request with 400 and its paths', async () => {
    const cases: [unknown, string][] = [
      [{ from: FROM, to: TO }, 'rule'],
      [{ rule: tumbling, ruleId: 'hot', from: FROM, to: TO }, 'rule'],
      [{ rule: tumbling, from: TO, to: FROM }, 'from'],
      [{ rule: tumbling, from: 'yesterday', to: TO }, 'from'],
      [{ rule: tumbling, from: FROM, to: TO, devices: ['a b'] }, 'devices.0'],
      [{ rule: tumbling, from: FROM, to: TO, extra: 1 }, 'extra'],
    ];
    for (const [body, path] of cases) {
      const res = await rig.call<ErrorBody>('POST', '/api/v1/backtests', body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.ok(
        res.body.error.details.some((d) => d.path === path),
        `${JSON.stringify(body)}: ${JSON.stringify(res.body.error.details)}`,
      );
    }
    const text = await fetch(`${rig.base}/api/v1/backtests`, { method: 'POST', body: 'x' });
    assert.equal(text.status, 400);
  });

  it('keeps only the readings of the devices asked for', async () => {
    const posted = await rig.call<Job>('POST', '/api/v1/backtests', {
      rule: tumbling,
      from: FROM,
      to: TO,
      devices: ['dev-03', 'dev-04'],
    });
    const job = await rig.finished<Job>(posted.body.id);
    const stored = rig.db
      .prepare(
        "SELECT count(*) FROM readings WHERE series_id IN (SELECT id FROM series WHERE device IN ('dev-03', 'dev-04'))",
      )
      .pluck()
      .get();
    assert.equal(job.summary.readings, stored);
    assert.ok(job.summary.readings > 0 && job.summary.readings < READINGS / 5);
    const page = await rig.call<{ items: { key: { device: string } }[] }>(
      'GET',
      `/api/v1/backtests/${job.id}/records?limit=100000`,
    );
    assert.deepEqual([...new Set(page.body.items.map((r) => r.key.device))].sort(), ['dev-03', 'dev-04']);
  });
});

describe('backtest caps and crashes', () => {
  const dir = makeTempDir();
  const path = dir.file('store.db');
  before(() => {
    fillStore(path, { devices: 10, readings: 100_000, start: START, step: 1000 });
  });
  after(() => dir.remove());

  it('keeps at most maxRecords records per job (truncated) while the summary counts them all', async () => {
    const rig = await backtestRig(path, { maxRecords: 25 });
    try {
      const posted = await rig.call<Job>('POST', '/api/v1/backtests', { rule: tumbling, from: FROM, to: TO });
      const job = await rig.finished<Job>(posted.body.id);
      assert.equal(job.state, 'done');
      assert.equal(job.truncated, true);
      assert.equal(job.records, 25);
      assert.ok(job.summary.results > 1000);
      const page = await rig.call<{ items: unknown[] }>('GET', `/api/v1/backtests/${job.id}/records`);
      assert.equal(page.body.items.length, 25);
    } finally {
      await rig.close();
    }
  });

  it('keeps at most maxJobs jobs: the oldest ended ones go, with their records', async () => {
    const rig = await backtestRig(path, { maxJobs: 3 });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const posted = await rig.call<Job>('POST', '/api/v1/backtests', {
          rule: tumbling,
          from: FROM,
          to: TO,
        });
        await rig.finished(posted.body.id);
        ids.push(posted.body.id);
      }
      const list = await rig.call<{ items: Job[] }>('GET', '/api/v1/backtests');
      assert.deepEqual(
        list.body.items.map((j) => j.id),
        ids.slice(-3).reverse(),
      );
      const orphans = rig.jobsDb
        .prepare('SELECT count(*) FROM backtest_records WHERE job NOT IN (SELECT id FROM backtests)')
        .pluck()
        .get();
      assert.equal(orphans, 0);
    } finally {
      await rig.close();
    }
  });

  it('marks a job failed, with a reason, when the gateway stops during it and when a start finds it running', async () => {
    const rig = await backtestRig(path);
    let id: string;
    try {
      const posted = await rig.call<Job>('POST', '/api/v1/backtests', { rule: slow, from: FROM, to: TO });
      id = posted.body.id;
      await rig.jobs.stop();
      const job = rig.jobs.get(id);
      assert.equal(job?.state, 'failed');
      assert.match(job?.error ?? '', /gateway stopped/);
    } finally {
      await rig.close();
    }
    // A crash leaves a job `running` in the store: the next start marks it failed.
    const db = openBacktestsDatabase(backtestsPath(path));
    try {
      const store = new BacktestStore(db);
      store.create({
        id: 'crashed',
        created: Date.now(),
        rule: JSON.stringify(tumbling),
        ruleId: null,
        from: FROM,
        to: TO,
        devices: null,
      });
      const jobs = new BacktestJobs(
        store,
        {
          rules: { get: () => null },
          bus: new EventBus(),
          clock: systemClock,
          log: silentLogger(),
          metrics: new Metrics(),
        },
        { database: path, jobsDatabase: backtestsPath(path) },
      );
      const job = jobs.get('crashed');
      assert.equal(job?.state, 'failed');
      assert.match(job?.error ?? '', /crash or a restart/);
      assert.ok(job?.finishedAt);
    } finally {
      db.close();
    }
  });

  it('terminates a worker that does not stop after its chunk in time; the job still ends as asked', async () => {
    const rig = await backtestRig(path);
    try {
      // 30 days of windows a second apart: the first chunk alone takes far longer than the 0.8 s a
      // worker asked to stop is given before it is terminated.
      const posted = await rig.call<Job>('POST', '/api/v1/backtests', {
        rule: {
          id: 'stuck',
          match: { metric: 'temp' },
          window: { type: 'sliding', size: '30d', slide: '1s' },
          aggregates: { n: 'count(temp)' },
        },
        from: FROM,
        to: TO,
      });
      const t0 = performance.now();
      const cancelled = await rig.call<Job>('DELETE', `/api/v1/backtests/${posted.body.id}`);
      const ms = performance.now() - t0;
      assert.equal(cancelled.status, 200);
      assert.equal(cancelled.body.state, 'cancelled', JSON.stringify(cancelled.body));
      assert.equal(cancelled.body.error, null);
      assert.ok(ms < 1000, `the cancel took ${ms.toFixed(0)} ms`);
      const again = await rig.call<Job>('POST', '/api/v1/backtests', { rule: slow, from: FROM, to: TO });
      assert.equal(again.status, 202);
      await rig.jobs.stop();
      const stopped = rig.jobs.get(again.body.id);
      assert.equal(stopped?.state, 'failed');
      assert.match(stopped?.error ?? '', /gateway stopped/);
    } finally {
      await rig.close();
    }
  });

  it('fails a job whose windows outgrow the worker heap, and the gateway goes on', async () => {
    const rig = await backtestRig(path, { maxHeapMb: 24 });
    try {
      // 30 days of windows a second apart: every reading opens windows by the million.
      const posted = await rig.call<Job>('POST', '/api/v1/backtests', {
        rule: {
          id: 'huge',
          match: { metric: 'temp' },
          window: { type: 'sliding', size: '30d', slide: '1s' },
          aggregates: { p: 'p95(temp)' },
        },
        from: FROM,
        to: TO,
      });
      const job = await rig.finished<Job>(posted.body.id, 120_000);
      assert.equal(job.state, 'failed');
      assert.match(job.error ?? '', /memory/);
      const next = await rig.call<Job>('POST', '/api/v1/backtests', { rule: tumbling, from: FROM, to: TO });
      const after = await rig.finished<Job>(next.body.id);
      assert.equal(after.state, 'done', JSON.stringify(after));
    } finally {
      await rig.close();
    }
  });
});
