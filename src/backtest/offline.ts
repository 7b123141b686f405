import type { CompiledRule } from '../engine/compile.js';
import type { BacktestSummary } from '../model/backtest.js';
import { openHistory } from './history-db.js';
import { PrefetchedHistory } from './prefetch.js';
import { historyFilter, runBacktest } from './run.js';

/**
 * `tidegate backtest`: rules over the readings of a store file (read-only, even while the gateway
 * runs), in process. Each record goes to `emit` as a JSON line, as `tidegate replay` prints it;
 * `ready` is awaited between chunks (the output's back-pressure).
 */
export async function backtestStore(
  path: string,
  rules: readonly CompiledRule[],
  range: { from: number; to: number; devices?: string[] },
  out: { emit: (line: string) => void; ready: () => Promise<void> },
): Promise<BacktestSummary> {
  const planning = openHistory(path);
  let history: PrefetchedHistory;
  try {
    history = new PrefetchedHistory(planning, path, historyFilter(rules, range));
  } finally {
    planning.close();
  }
  try {
    return await runBacktest(rules, history, {
      onRecords: (records) => {
        for (const r of records) out.emit(JSON.stringify(r));
      },
      afterChunk: () => out.ready(),
    });
  } finally {
    await history.close();
  }
}
