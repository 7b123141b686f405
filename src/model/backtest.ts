/**
 * Backtests (SPEC §5): a rule run over stored readings as a job. The shapes the API answers and
 * `/stream` announces.
 */

export type BacktestState = 'running' | 'done' | 'failed' | 'cancelled';

/** What a backtest found: `windows` closed (first results), `results` with revisions, decision transitions, late readings. */
export interface BacktestSummary {
  readings: number;
  windows: number;
  results: number;
  decisions: { firing: number; ok: number };
  late: number;
}

export interface BacktestProgress {
  readings: number;
  /** Readings done over those in the range when the job started, 0–1. */
  fraction: number;
}

/** A job as `GET /backtests/{id}` answers it; times ISO-8601 UTC. */
export interface BacktestJob {
  id: string;
  state: BacktestState;
  rule: unknown;
  /** The running rule it was taken from, when posted with `ruleId`. */
  ruleId?: string;
  from: string;
  to: string;
  devices?: string[];
  progress: BacktestProgress;
  /** So far while it runs. */
  summary: BacktestSummary;
  /** Records kept (at most the cap); `truncated` when more were made (the summary counts them all). */
  records: number;
  truncated: boolean;
  startedAt: string;
  finishedAt: string | null;
  error: string | null;
}

export function emptySummary(): BacktestSummary {
  return { readings: 0, windows: 0, results: 0, decisions: { firing: 0, ok: 0 }, late: 0 };
}
