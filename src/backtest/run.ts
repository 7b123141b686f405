/**
 * backtest/ — a rule run over stored readings (SPEC §5): the engine of replay over the store's
 * history, in a worker thread for the gateway's jobs and in process for `tidegate backtest`. May
 * import model/, engine/, replay/replay.ts (the offline engine), store/ (reading the history,
 * keeping jobs) and runtime/.
 */
import type { CompiledRule } from '../engine/compile.js';
import { exactNames } from '../engine/glob.js';
import { type BacktestSummary, emptySummary } from '../model/backtest.js';
import type { Reading } from '../model/reading.js';
import type { OutputRecord } from '../model/records.js';
import { offlineEngine } from '../replay/replay.js';
import type { HistoryFilter } from '../store/reading-history.js';

/** Counts records into a summary. */
export function countRecords(summary: BacktestSummary, records: readonly OutputRecord[]): void {
  for (const r of records) {
    if (r.type === 'result') {
      summary.results++;
      if (r.revision === 0) summary.windows++;
    } else if (r.type === 'decision') summary.decisions[r.state]++;
    else summary.late++;
  }
}

/** Where readings come from: chunks in (ts, arrival) order, empty at the end (`PrefetchedHistory`, `ReadingHistory`). */
export interface ReadingChunks {
  next(): Reading[] | Promise<Reading[]>;
}

/**
 * The history a backtest reads: the range and devices asked for, narrowed in SQL to the metrics
 * (and devices) the rules name exactly. A reading of a metric no rule matches is invisible to the
 * engine (fine print 1), so narrowing changes no record; it only spares reading it.
 */
export function historyFilter(
  rules: readonly CompiledRule[],
  range: { from: number; to: number; devices?: readonly string[] | undefined },
): HistoryFilter {
  const filter: HistoryFilter = { from: range.from, to: range.to };
  const metrics = rules.map((r) => r.exactMetrics);
  if (metrics.every((m) => m !== null)) filter.metrics = [...new Set(metrics.flat() as string[])];
  if (range.devices !== undefined) filter.devices = [...range.devices];
  else {
    const devices = rules.map((r) => exactNames(r.spec.match.device ?? undefined));
    if (devices.every((d) => d !== null)) filter.devices = [...new Set(devices.flat() as string[])];
  }
  return filter;
}

/**
 * Runs the rules over the readings with replay semantics (bounded input: the end flushes every
 * window), chunk by chunk: `onRecords` gets each chunk's records in order, `afterChunk` runs between
 * chunks (progress, back-pressure). Memory is the engine's open windows plus one chunk.
 */
export async function runBacktest(
  rules: readonly CompiledRule[],
  readings: ReadingChunks,
  hooks: {
    onRecords: (records: readonly OutputRecord[]) => void;
    afterChunk?: (summary: BacktestSummary) => void | Promise<void>;
  },
): Promise<BacktestSummary> {
  const engine = offlineEngine(rules);
  const summary = emptySummary();
  const out: OutputRecord[] = [];
  for (let chunk = await readings.next(); chunk.length > 0; chunk = await readings.next()) {
    for (let i = 0; i < chunk.length; i++) {
      const records = engine.process(chunk[i] as Reading);
      for (let j = 0; j < records.length; j++) out.push(records[j] as OutputRecord);
    }
    summary.readings += chunk.length;
    if (out.length > 0) {
      countRecords(summary, out);
      hooks.onRecords(out);
      out.length = 0;
    }
    await hooks.afterChunk?.(summary);
  }
  const last = engine.flush();
  countRecords(summary, last);
  if (last.length > 0) hooks.onRecords(last);
  return summary;
}
