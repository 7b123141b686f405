/**
 * replay/ — `tidegate replay`: readings from JSON lines through validation, duplicates and the
 * engine, off line, without store or wall clock. May import model/, ingest/duplicates.ts, engine/
 * and runtime/clock.ts.
 */
/**
 * Replay (SPEC §7 `tidegate replay`, fine print 10–11): JSON-lines readings in, output records out,
 * with no wall clock. Streaming: memory depends on the open windows, not on the input length.
 * Deterministic: the same input gives byte-identical output.
 */

import type { CompiledRule } from '../engine/compile.js';
import { RuleEngine } from '../engine/engine.js';
import { dedupeHorizon, RecentDuplicates } from '../ingest/duplicates.js';
import { type ReadingCandidate, ReadingRejection, validateReading } from '../model/reading.js';
import type { OutputRecord } from '../model/records.js';
import { ManualClock } from '../runtime/clock.js';

export interface ReplaySummary {
  readings: number;
  rejected: number;
  duplicates: number;
  records: number;
}

/**
 * The engine of bounded input (fine print 10): no wall clock (it is never read with live: false; it
 * is there because the engine takes one), no idleness, and flush() at the end of input. Replay and
 * backtests run on this one, so that they give the same records.
 */
export function offlineEngine(rules: readonly CompiledRule[]): RuleEngine {
  return new RuleEngine([...rules], { clock: new ManualClock(0), live: false });
}

export async function replay(
  lines: AsyncIterable<string>,
  rules: CompiledRule[],
  emit: (line: string) => void,
  warn: (message: string) => void,
): Promise<ReplaySummary> {
  const engine = offlineEngine(rules);
  const duplicates = new RecentDuplicates(dedupeHorizon(rules));
  const summary: ReplaySummary = { readings: 0, rejected: 0, duplicates: 0, records: 0 };
  const write = (records: OutputRecord[]): void => {
    for (const r of records) emit(JSON.stringify(r));
    summary.records += records.length;
  };
  let lineNo = 0;
  for await (const line of lines) {
    lineNo++;
    if (line.trim() === '') continue;
    let candidate: unknown;
    try {
      candidate = JSON.parse(line);
    } catch (e) {
      summary.rejected++;
      warn(`line ${lineNo}: not JSON (${e instanceof Error ? e.message : String(e)})`);
      continue;
    }
    if (typeof candidate !== 'object' || candidate === null || Array.isArray(candidate)) {
      summary.rejected++;
      warn(`line ${lineNo}: expected a JSON object reading`);
      continue;
    }
    const reading = validateReading(candidate as ReadingCandidate, {
      now: 0,
      maxFutureSkew: Number.POSITIVE_INFINITY,
      requireTs: true,
    });
    if (reading instanceof ReadingRejection) {
      summary.rejected++;
      warn(`line ${lineNo}: ${reading.reason}: ${reading.message}`);
      continue;
    }
    if (duplicates.isDuplicate(reading)) {
      summary.duplicates++;
      continue;
    }
    summary.readings++;
    write(engine.process(reading));
  }
  write(engine.flush());
  return summary;
}
