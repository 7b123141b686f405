import type { CompiledRule } from '../engine/compile.js';
import type { BacktestSummary } from '../model/backtest.js';
import { ReadingHistory, withoutIdleSeriesFilter } from '../store/reading-history.js';
import { openHistory } from './history-db.js';
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
  const db = openHistory(path);
  try {
    const history = new ReadingHistory(db, withoutIdleSeriesFilter(db, historyFilter(rules, range)));
    return await runBacktest(rules, history, {
      onRecords: (records) => {
        for (const r of records) out.emit(JSON.stringify(r));
      },
      afterChunk: () => out.ready(),
    });
  } finally {
    db.close();
  }
}
