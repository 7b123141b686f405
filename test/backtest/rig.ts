import { ApiServer, createApp } from '../../src/api/server.js';
import { BacktestJobs, type BacktestJobsOptions } from '../../src/backtest/jobs.js';
import { parseConfigText } from '../../src/config/load.js';
import { systemClock } from '../../src/runtime/clock.js';
import { EventBus } from '../../src/runtime/events.js';
import { silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { BacktestStore, backtestsPath, openBacktestsDatabase } from '../../src/store/backtest-store.js';
import { type Db, openDatabase } from '../../src/store/database.js';
import { OutputsQuery } from '../../src/store/outputs-query.js';
import { ReadingsQuery } from '../../src/store/readings-query.js';
import { testView } from '../helpers/api-view.js';
import { openApi } from '../helpers/openapi.js';

/** The API over a store file with backtest jobs, on real HTTP; rules by id from `rules`. */
export interface BacktestRig {
  db: Db;
  /** The backtests file's connection. */
  jobsDb: Db;
  jobs: BacktestJobs;
  metrics: Metrics;
  bus: EventBus;
  base: string;
  /** JSON request; checks the answer against the OpenAPI document. */
  call<T>(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: T; headers: Headers }>;
  /** Polls GET /backtests/{id} (every 20 ms, at most `ms`) until it is no longer running. */
  finished<T extends { state: string }>(id: string, ms?: number): Promise<T>;
  close(): Promise<void>;
}

export async function backtestRig(
  path: string,
  options: Partial<BacktestJobsOptions> & { rules?: Record<string, unknown> } = {},
): Promise<BacktestRig> {
  const db = openDatabase(path, { synchronous: 'normal' });
  const jobsDatabase = backtestsPath(path);
  const jobsDb = openBacktestsDatabase(jobsDatabase);
  const metrics = new Metrics();
  const log = silentLogger();
  const bus = new EventBus();
  const rules = options.rules ?? {};
  const jobs = new BacktestJobs(
    new BacktestStore(jobsDb),
    {
      rules: { get: (id) => (id in rules ? { spec: rules[id] } : null) },
      bus,
      clock: systemClock,
      log,
      metrics,
    },
    { database: path, jobsDatabase, ...options },
  );
  const config = parseConfigText('api: { port: 0 }\n', 'test.yaml', {});
  const app = createApp(config.api, {
    rateLimit: { requestsPerMinute: 0 },
    query: new ReadingsQuery(db),
    outputs: new OutputsQuery(db),
    metrics,
    log,
    bus,
    view: testView(),
    backtests: jobs,
  });
  const server = new ApiServer(config.api, app, log);
  await server.start();
  const base = `http://127.0.0.1:${server.port}`;
  const call = async <T>(method: string, p: string, body?: unknown) => {
    const res = await fetch(base + p, {
      method,
      ...(body !== undefined
        ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }
        : {}),
    });
    const text = await res.text();
    const parsed = (text === '' ? null : JSON.parse(text)) as T;
    openApi.check(method, base + p, res.status, parsed);
    return { status: res.status, body: parsed, headers: res.headers };
  };
  return {
    db,
    jobsDb,
    jobs,
    metrics,
    bus,
    base,
    call,
    async finished<T extends { state: string }>(id: string, ms = 60_000): Promise<T> {
      const until = Date.now() + ms;
      for (;;) {
        const { body } = await call<T>('GET', `/api/v1/backtests/${id}`);
        if (body.state !== 'running') return body;
        if (Date.now() > until) throw new Error(`backtest ${id} still running after ${ms} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async close() {
      await jobs.stop();
      await server.stop();
      jobsDb.close();
      db.close();
    },
  };
}
