/**
 * A backtest job's worker thread: reads the stored readings on a read-only connection of its own
 * (under WAL it never blocks the gateway's writer), runs the rule with replay semantics, writes its
 * records to the backtests file on a second connection of its own, and posts its progress a few
 * times a second and its summary at the end. The gateway's event loop does none of this work.
 */
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { compileRule } from '../engine/compile.js';
import { type BacktestSummary, emptySummary } from '../model/backtest.js';
import { validateRule } from '../model/rule.js';
import { BacktestStore, openBacktestsDatabase } from '../store/backtest-store.js';
import { openHistory } from './history-db.js';
import { PrefetchedHistory } from './prefetch.js';
import { yieldToTheGateway } from './priority.js';
import { historyFilter, runBacktest } from './run.js';

/** What the gateway gives a job's worker. */
export interface BacktestWorkerData {
  database: string;
  /** The backtests file, and the job's id in it. */
  jobs: string;
  id: string;
  /** Jobs kept: the worker deletes the oldest ended ones before it starts. */
  maxJobs: number;
  /** Set to 1 by the gateway to cancel: the worker stops after the chunk it is in. */
  cancel: SharedArrayBuffer;
  /** The rule's spec (validated by the gateway before; validated again here, as it ran). */
  rule: unknown;
  from: number;
  to: number;
  devices?: string[];
  maxRecords: number;
  /** Records per transaction in the backtests file. */
  batch: number;
  /** At most this often, a progress message (ms). */
  progressEvery: number;
}

/** What the worker tells the gateway. */
export type BacktestMessage =
  | { kind: 'started'; total: number }
  | { kind: 'progress'; readings: number; summary: BacktestSummary; records: number }
  | { kind: 'done'; summary: BacktestSummary; truncated: boolean; records: number }
  | { kind: 'cancelled'; readings: number; summary: BacktestSummary; records: number }
  | { kind: 'failed'; error: string };

/** Thrown between chunks once the gateway asked to cancel. */
class Cancelled extends Error {}

async function main(port: NonNullable<typeof parentPort>, data: BacktestWorkerData): Promise<void> {
  const post = (m: BacktestMessage) => port.postMessage(m);
  yieldToTheGateway();
  const checked = validateRule(data.rule);
  if (!checked.ok)
    throw new Error(`the rule is not valid: ${checked.problems.map((p) => p.message).join('; ')}`);
  const rule = compileRule(checked.rule);
  const jobsDb = openBacktestsDatabase(data.jobs);
  const cancel = new Int32Array(data.cancel);
  const range = { from: data.from, to: data.to, devices: data.devices };
  const planning = openHistory(data.database);
  let history: PrefetchedHistory;
  try {
    history = new PrefetchedHistory(planning, data.database, historyFilter([rule], range));
  } finally {
    planning.close();
  }
  try {
    const jobs = new BacktestStore(jobsDb);
    jobs.keepNewest(data.maxJobs);
    post({ kind: 'started', total: history.total });
    let kept = 0;
    let truncated = false;
    let batch: { type: string; line: string }[] = [];
    let first = 0;
    const flushRecords = () => {
      if (batch.length === 0) return;
      jobs.append(data.id, first, batch);
      first += batch.length;
      batch = [];
    };
    let lastProgress = performance.now();
    let sofar = emptySummary();
    try {
      const summary = await runBacktest([rule], history, {
        onRecords: (records) => {
          for (const r of records) {
            if (kept >= data.maxRecords) {
              truncated = true;
              return;
            }
            batch.push({ type: r.type, line: JSON.stringify(r) });
            kept++;
            if (batch.length >= data.batch) flushRecords();
          }
        },
        afterChunk: (s) => {
          sofar = s;
          if (Atomics.load(cancel, 0) !== 0) throw new Cancelled();
          const now = performance.now();
          if (now - lastProgress < data.progressEvery) return;
          lastProgress = now;
          flushRecords();
          post({ kind: 'progress', readings: s.readings, summary: s, records: first });
        },
      });
      flushRecords();
      post({ kind: 'done', summary, truncated, records: first });
    } catch (err) {
      if (!(err instanceof Cancelled)) throw err;
      flushRecords();
      post({ kind: 'cancelled', readings: sofar.readings, summary: sofar, records: first });
    }
  } finally {
    await history.close();
    jobsDb.close();
  }
}

if (parentPort) {
  const port = parentPort;
  main(port, workerData as BacktestWorkerData).catch((err: unknown) => {
    port.postMessage({
      kind: 'failed',
      error: err instanceof Error ? err.message : String(err),
    } satisfies BacktestMessage);
  });
}
