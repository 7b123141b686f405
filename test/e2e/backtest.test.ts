/**
 * Backtests in the built gateway: a job survives nothing, but a SIGKILL during one leaves it
 * `failed` with a reason after the restart, never `running` forever.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { eventually, startGateway } from '../helpers/gateway-process.js';
import { fillStore } from '../helpers/history.js';
import { makeTempDir } from '../helpers/tmp.js';

const HOUR = 3_600_000;
const START = Math.floor((Date.now() - 2 * 24 * HOUR) / HOUR) * HOUR;

interface Job {
  id: string;
  state: string;
  progress: { readings: number };
  error: string | null;
}

describe('a backtest in the gateway process', () => {
  const dir = makeTempDir();
  const db = dir.file('store.db');
  const config = dir.file('gateway.yaml');
  before(() => {
    fillStore(db, { devices: 20, readings: 300_000, start: START, step: 1000 });
    writeFileSync(
      config,
      `api: { port: 0, rateLimit: 0 }\nbroker: { enabled: false }\nsources: []\nstore: { path: ${db} }\nrules: []\n`,
    );
  });
  after(() => dir.remove());

  it('is marked failed, with a reason, after a SIGKILL during the job and a restart', async () => {
    const first = await startGateway(config);
    let id: string;
    try {
      const res = await first.api('/api/v1/backtests', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          rule: {
            id: 'slow',
            match: { metric: 'temp' },
            window: { type: 'sliding', size: '1h', slide: '10s' },
            aggregates: { p95: 'p95(temp)' },
          },
          from: START,
          to: START + 24 * HOUR,
        }),
      });
      assert.equal(res.status, 202);
      id = ((await res.json()) as Job).id;
      // Well inside the job: readings done, not all.
      await eventually(
        async () => {
          const job = (await (await first.api(`/api/v1/backtests/${id}`)).json()) as Job;
          assert.equal(job.state, 'running');
          return job.progress.readings > 0 ? job : undefined;
        },
        30_000,
        'progress',
      );
    } finally {
      await first.stop('SIGKILL');
    }
    const second = await startGateway(config);
    try {
      const job = (await (await second.api(`/api/v1/backtests/${id}`)).json()) as Job;
      assert.equal(job.state, 'failed');
      assert.match(job.error ?? '', /crash or a restart/);
      assert.ok(second.logs.some((l) => l.msg === 'backtests interrupted by the last stop marked failed'));
      // And the gateway runs jobs again.
      const res = await second.api('/api/v1/backtests', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          rule: {
            id: 't',
            match: { metric: 'temp' },
            window: { type: 'tumbling', size: '1m' },
            aggregates: { n: 'count(temp)' },
          },
          from: START,
          to: START + 24 * HOUR,
        }),
      });
      assert.equal(res.status, 202);
      const next = (await res.json()) as Job;
      const done = await eventually(
        async () => {
          const j = (await (await second.api(`/api/v1/backtests/${next.id}`)).json()) as Job;
          return j.state === 'running' ? undefined : j;
        },
        30_000,
        'the next job',
      );
      assert.equal(done.state, 'done');
      assert.equal(done.progress.readings, 300_000);
    } finally {
      await second.stop('SIGTERM');
    }
  });
});
