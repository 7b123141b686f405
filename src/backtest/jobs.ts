import { randomUUID } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { compileRule } from '../engine/compile.js';
import type { BacktestJob, BacktestState, BacktestSummary } from '../model/backtest.js';
import { emptySummary } from '../model/backtest.js';
import { type RuleProblem, validateRule } from '../model/rule.js';
import { formatTimestamp } from '../model/timestamp.js';
import type { Clock } from '../runtime/clock.js';
import type { EventBus } from '../runtime/events.js';
import { InternalErrors } from '../runtime/internal-errors.js';
import type { Logger } from '../runtime/log.js';
import type { Metrics } from '../runtime/metrics.js';
import type { BacktestEnd, BacktestRow, BacktestStore } from '../store/backtest-store.js';
import type { BacktestMessage, BacktestWorkerData } from './worker.js';

/** How long a worker asked to stop may take to finish its chunk before it is terminated. */
const STOP_WAIT_MS = 800;

/** A backtest as posted (SPEC §5): a rule spec or the id of a running rule, and the range. */
export interface BacktestRequest {
  rule?: unknown;
  ruleId?: string;
  /** Epoch ms, from inclusive, to exclusive. */
  from: number;
  to: number;
  devices?: string[];
}

export type BacktestFailure = 'invalid' | 'busy' | 'unknown_rule' | 'unavailable';

/** A job refused before it started. */
export class BacktestError extends Error {
  constructor(
    readonly reason: BacktestFailure,
    message: string,
    readonly problems: RuleProblem[] = [],
    /** `busy`: the job that runs. */
    readonly runningId: string | null = null,
  ) {
    super(message);
    this.name = 'BacktestError';
  }
}

export interface BacktestJobsOptions {
  /** The store's file, which each job's worker opens read-only. ':memory:' cannot be shared: no backtests. */
  database: string;
  /** The backtests file (`backtestsPath(database)`), which the worker writes its records to. */
  jobsDatabase: string;
  /** Jobs kept (the oldest ended ones are deleted beyond). */
  maxJobs?: number;
  /** Records kept per job; beyond, the job is `truncated` and its summary keeps counting. */
  maxRecords?: number;
  /** A worker's V8 heap limit (MB): a rule whose open windows outgrow it fails the job, not the gateway. */
  maxHeapMb?: number;
  /** Records per transaction of the worker, and progress at most this often (ms). */
  batch?: number;
  progressEvery?: number;
  /** The worker's module (tests may point elsewhere). */
  workerUrl?: URL;
}

interface Running {
  id: string;
  worker: Worker;
  /** Set to 1 to ask the worker to stop after its chunk. */
  cancel: Int32Array;
  /** How the job ends when the worker stops on request: a cancel, or the gateway stopping. */
  stopping: { state: 'cancelled' | 'failed'; error: string | null } | null;
  total: number;
  readings: number;
  records: number;
  summary: BacktestSummary;
  /** Set once the job ended (by the worker, a cancel or a stop): later messages are ignored. */
  ended: boolean;
  exited: Promise<void>;
}

/** What a job needs of the running rules: a rule's spec by id. */
export interface RuleSource {
  get(id: string): { spec: unknown } | null;
}

/**
 * The gateway's backtest jobs: at most one runs at a time, in a worker thread with its own
 * read-only connection; jobs and their records are kept in the store, capped. A job found running
 * at start was interrupted (crash, restart) and is marked failed.
 */
export class BacktestJobs {
  private running: Running | null = null;
  private readonly options: Required<BacktestJobsOptions>;
  private readonly errors: InternalErrors;

  constructor(
    private readonly store: BacktestStore,
    private readonly deps: { rules: RuleSource; bus: EventBus; clock: Clock; log: Logger; metrics: Metrics },
    options: BacktestJobsOptions,
  ) {
    this.options = {
      maxJobs: 20,
      maxRecords: 100_000,
      maxHeapMb: 256,
      batch: 1000,
      progressEvery: 250,
      workerUrl: new URL('./worker.js', import.meta.url),
      ...options,
    };
    this.errors = InternalErrors.of(deps);
    const n = store.interrupted(
      'the gateway stopped while the backtest ran (a crash or a restart)',
      deps.clock.now(),
    );
    if (n > 0) deps.log.warn({ jobs: n }, 'backtests interrupted by the last stop marked failed');
  }

  /** Starts a job; throws BacktestError when the rule is not valid, unknown, or a job runs. */
  create(request: BacktestRequest): BacktestJob {
    let spec: unknown;
    if (request.ruleId !== undefined) {
      const rule = this.deps.rules.get(request.ruleId);
      if (rule === null) throw new BacktestError('unknown_rule', `no rule ${request.ruleId}`);
      spec = rule.spec;
    } else spec = request.rule;
    const checked = validateRule(spec);
    if (!checked.ok) {
      const n = checked.problems.length;
      throw new BacktestError(
        'invalid',
        `the rule is not valid: ${n} problem${n === 1 ? '' : 's'}`,
        checked.problems,
      );
    }
    compileRule(checked.rule);
    if (this.running) {
      throw new BacktestError(
        'busy',
        `a backtest is running: ${this.running.id} (one at a time; DELETE it to cancel)`,
        [],
        this.running.id,
      );
    }
    if (this.options.database === ':memory:') {
      throw new BacktestError('unavailable', 'backtests need the store in a file (store.path is :memory:)');
    }
    const id = randomUUID();
    const row = {
      id,
      created: this.deps.clock.now(),
      rule: JSON.stringify(spec),
      ruleId: request.ruleId ?? null,
      from: request.from,
      to: request.to,
      devices: request.devices ? JSON.stringify(request.devices) : null,
    };
    this.store.create(row);
    const cancel = new SharedArrayBuffer(4);
    const data: BacktestWorkerData = {
      database: this.options.database,
      jobs: this.options.jobsDatabase,
      id,
      maxJobs: this.options.maxJobs,
      cancel,
      rule: spec,
      from: request.from,
      to: request.to,
      ...(request.devices ? { devices: request.devices } : {}),
      maxRecords: this.options.maxRecords,
      batch: this.options.batch,
      progressEvery: this.options.progressEvery,
    };
    const worker = new Worker(this.options.workerUrl, {
      workerData: data,
      resourceLimits: { maxOldGenerationSizeMb: this.options.maxHeapMb },
      stdout: false,
      stderr: false,
    });
    const run: Running = {
      id,
      worker,
      cancel: new Int32Array(cancel),
      stopping: null,
      total: 0,
      readings: 0,
      records: 0,
      summary: emptySummary(),
      ended: false,
      exited: new Promise((resolve) => worker.once('exit', () => resolve())),
    };
    this.running = run;
    worker.on('message', (m: BacktestMessage) => {
      try {
        this.onMessage(run, m);
      } catch (err) {
        this.errors.report('backtest/message', err);
        this.end(run, 'failed', `ending the backtest failed: ${(err as Error).message}`);
      }
    });
    worker.on('error', (err: Error & { code?: string }) => {
      const reason =
        err.code === 'ERR_WORKER_OUT_OF_MEMORY'
          ? `the backtest's open windows outgrew its memory (${this.options.maxHeapMb} MB)`
          : `the backtest failed: ${err.message}`;
      this.end(run, 'failed', reason);
    });
    worker.on('exit', (code) => {
      if (run.ended) return;
      // Asked to stop and terminated before it could say so: it ends as asked.
      if (run.stopping) this.end(run, run.stopping.state, run.stopping.error);
      else this.end(run, 'failed', `the backtest's worker stopped (exit code ${code})`);
    });
    this.deps.log.info({ backtest: id, from: request.from, to: request.to }, 'backtest started');
    this.announce(run, 'running');
    return this.view(this.store.get(id) as BacktestRow);
  }

  private onMessage(run: Running, m: BacktestMessage): void {
    if (run.ended) return;
    switch (m.kind) {
      case 'started':
        run.total = m.total;
        return;
      case 'progress':
        this.advance(run, m.readings, m.summary, m.records);
        this.announce(run, 'running');
        return;
      case 'done':
        this.advance(run, m.summary.readings, m.summary, m.records);
        this.end(run, 'done', null, m.truncated);
        return;
      case 'cancelled':
        this.advance(run, m.readings, m.summary, m.records);
        this.end(run, run.stopping?.state ?? 'cancelled', run.stopping?.error ?? null);
        return;
      case 'failed':
        this.end(run, 'failed', m.error);
        return;
    }
  }

  private advance(run: Running, readings: number, summary: BacktestSummary, records: number): void {
    this.deps.metrics.backtestReadings.inc(readings - run.readings);
    run.readings = readings;
    run.summary = summary;
    run.records = records;
  }

  private fraction(run: Running): number {
    return run.total > 0 ? Math.min(1, run.readings / run.total) : 0;
  }

  private end(run: Running, state: BacktestEnd['state'], error: string | null, truncated = false): void {
    if (run.ended) return;
    run.ended = true;
    if (this.running === run) this.running = null;
    const fraction = state === 'done' ? 1 : this.fraction(run);
    this.store.end(run.id, {
      state,
      readings: run.readings,
      fraction,
      summary: JSON.stringify(run.summary),
      truncated,
      finished: this.deps.clock.now(),
      error,
    });
    this.deps.metrics.backtests.inc({ state });
    const log = { backtest: run.id, state, readings: run.readings, ...(error ? { error } : {}) };
    if (state === 'failed') this.deps.log.warn(log, 'backtest failed');
    else this.deps.log.info(log, `backtest ${state}`);
    this.announce(run, state, fraction);
    // The worker stops by itself after `done` or a requested stop; a failed one may be stuck.
    if (state === 'failed' && run.stopping === null) void run.worker.terminate();
  }

  /**
   * Asks the worker to stop after the chunk it is in (its last records committed, its connections
   * closed); if it has not stopped within `STOP_WAIT_MS` (a long count or query), it is terminated.
   */
  private async halt(run: Running, state: 'cancelled' | 'failed', error: string | null): Promise<void> {
    run.stopping = { state, error };
    Atomics.store(run.cancel, 0, 1);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), STOP_WAIT_MS);
    });
    if ((await Promise.race([run.exited, late])) === 'late') await run.worker.terminate();
    clearTimeout(timer);
    await run.exited;
    this.end(run, state, error);
  }

  private announce(run: Running, state: BacktestState, fraction = this.fraction(run)): void {
    this.deps.bus.emit('backtest', {
      id: run.id,
      state,
      progress: { readings: run.readings, fraction },
      summary: run.summary,
    });
  }

  list(): BacktestJob[] {
    return this.store.list().map((r) => this.view(r));
  }

  get(id: string): BacktestJob | null {
    const row = this.store.get(id);
    return row ? this.view(row) : null;
  }

  /** A page of a job's records (parsed, as `tidegate replay` prints them); null for an unknown job. */
  records(
    id: string,
    page: { types?: readonly string[]; after?: number; limit: number },
  ): { items: unknown[]; next: number | null } | null {
    if (this.store.get(id) === null) return null;
    const p = this.store.records(id, page);
    return { items: p.items.map((r) => JSON.parse(r.record) as unknown), next: p.next };
  }

  /**
   * DELETE: a running job is cancelled (its worker stopped; the job stays, `cancelled`); an ended
   * one is deleted with its records. Null for an unknown job.
   */
  async cancel(id: string): Promise<'cancelled' | 'deleted' | null> {
    const run = this.running;
    if (run?.id === id) {
      await this.halt(run, 'cancelled', null);
      return 'cancelled';
    }
    return (await this.store.removeInTurns(id)) ? 'deleted' : null;
  }

  isRefusal(err: unknown): err is BacktestError {
    return err instanceof BacktestError;
  }

  /** The id of the job that runs, if any. */
  runningId(): string | null {
    return this.running?.id ?? null;
  }

  /** The gateway stops: a running job is stopped and marked failed. */
  async stop(): Promise<void> {
    const run = this.running;
    if (!run) return;
    await this.halt(run, 'failed', 'the gateway stopped while the backtest ran');
  }

  private view(row: BacktestRow): BacktestJob {
    const run = this.running?.id === row.id ? this.running : null;
    const summary = run
      ? run.summary
      : row.summary
        ? (JSON.parse(row.summary) as BacktestSummary)
        : emptySummary();
    const job: BacktestJob = {
      id: row.id,
      state: row.state,
      rule: JSON.parse(row.rule) as unknown,
      ...(row.ruleId !== null ? { ruleId: row.ruleId } : {}),
      from: formatTimestamp(row.from),
      to: formatTimestamp(row.to),
      ...(row.devices !== null ? { devices: JSON.parse(row.devices) as string[] } : {}),
      progress: run
        ? { readings: run.readings, fraction: this.fraction(run) }
        : { readings: row.readings, fraction: row.fraction },
      summary,
      records: run ? run.records : row.records,
      truncated: row.truncated,
      startedAt: formatTimestamp(row.created),
      finishedAt: row.finished !== null ? formatTimestamp(row.finished) : null,
      error: row.error,
    };
    return job;
  }
}
