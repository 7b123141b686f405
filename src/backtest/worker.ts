/**
 * A backtest job's worker thread: reads the stored readings on a read-only connection of its own
 * (under WAL it never blocks the gateway's writer), runs the rule with replay semantics and posts
 * its records in batches, its progress a few times a second, and its summary at the end. The
 * gateway's event loop does none of this work; it only stores the records it is sent.
 */
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { compileRule } from '../engine/compile.js';
import type { BacktestSummary } from '../model/backtest.js';
import { validateRule } from '../model/rule.js';
import { ReadingHistory, withoutIdleSeriesFilter } from '../store/reading-history.js';
import { openHistory } from './history-db.js';
import { historyFilter, runBacktest } from './run.js';

/** What the gateway gives a job's worker. */
export interface BacktestWorkerData {
  database: string;
  /** The rule's spec (validated by the gateway before; validated again here, as it ran). */
  rule: unknown;
  from: number;
  to: number;
  devices?: string[];
  maxRecords: number;
  /** Records per message to the gateway. */
  batch: number;
  /** At most this often, a progress message (ms). */
  progressEvery: number;
}

/** What the worker tells the gateway. */
export type BacktestMessage =
  | { kind: 'started'; total: number }
  | { kind: 'records'; first: number; records: { type: string; line: string }[] }
  | { kind: 'progress'; readings: number; summary: BacktestSummary }
  | { kind: 'done'; summary: BacktestSummary; truncated: boolean }
  | { kind: 'failed'; error: string };

/**
 * Lowers this thread's scheduling priority (nice 10) on Linux, where a thread's id works as a
 * process id for setpriority(2): a backtest takes an idle core at full speed and yields a busy one
 * to the gateway's ingest. Elsewhere the job simply runs at normal priority.
 */
function yieldToTheGateway(): void {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isSafeInteger(tid) && tid > 0) setPriority(tid, 10);
  } catch {
    // Not Linux, or not allowed: run at normal priority.
  }
}

async function main(port: NonNullable<typeof parentPort>, data: BacktestWorkerData): Promise<void> {
  const post = (m: BacktestMessage) => port.postMessage(m);
  yieldToTheGateway();
  const checked = validateRule(data.rule);
  if (!checked.ok)
    throw new Error(`the rule is not valid: ${checked.problems.map((p) => p.message).join('; ')}`);
  const rule = compileRule(checked.rule);
  const db = openHistory(data.database);
  try {
    const range = { from: data.from, to: data.to, devices: data.devices };
    const history = new ReadingHistory(db, withoutIdleSeriesFilter(db, historyFilter([rule], range)));
    post({ kind: 'started', total: history.count() });
    let kept = 0;
    let truncated = false;
    let batch: { type: string; line: string }[] = [];
    let first = 0;
    const flushRecords = () => {
      if (batch.length === 0) return;
      post({ kind: 'records', first, records: batch });
      first += batch.length;
      batch = [];
    };
    let lastProgress = performance.now();
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
        const now = performance.now();
        if (now - lastProgress < data.progressEvery) return;
        lastProgress = now;
        flushRecords();
        post({ kind: 'progress', readings: s.readings, summary: s });
      },
    });
    flushRecords();
    post({ kind: 'done', summary, truncated });
  } finally {
    db.close();
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
