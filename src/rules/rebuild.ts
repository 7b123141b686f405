import { type CompiledRule, liveSpan } from '../engine/compile.js';
import type { RuleEngine } from '../engine/engine.js';
import type { DuplicateFilter } from '../ingest/duplicates.js';
import type { Clock } from '../runtime/clock.js';
import type { Db } from '../store/database.js';
import { newestReadingTs, readingsInArrivalOrder, storedResultsEndingFrom } from '../store/rebuild-reads.js';
import { RevisionsBeforeRestart } from './revisions-before-restart.js';

/** What a rebuild did. */
export interface Rebuilt {
  /** Stored readings fed to the engine. */
  readings: number;
  /** The newest stored event time; -Infinity when nothing was rebuilt. */
  newestTs: number;
  /** Results stored before the restart that the engine may emit again; null when there are none. */
  restored: RevisionsBeforeRestart | null;
}

/**
 * Rebuilds the windows open when the gateway last stopped (or crashed): feeds `engine` the stored
 * readings of the last `rebuildHorizon` of event time, in arrival order, discarding what it emits
 * (those records were stored with the readings that caused them). Results stored before the restart
 * are remembered, so that a window closed again (e.g. by idleness before the crash, now by a
 * reading) is not emitted twice (SPEC §4); those the rebuild itself emits again need no remembering.
 * `duplicates` learns the rebuilt readings, so a QoS 1 redelivery after a crash is not counted twice.
 */
export function rebuildWindows(
  engine: RuleEngine,
  rules: readonly CompiledRule[],
  deps: { db: Db; clock: Clock },
  duplicates?: DuplicateFilter,
): Rebuilt {
  const { db } = deps;
  const maxTs = newestReadingTs(db);
  if (maxTs === null || rules.length === 0) {
    return { readings: 0, newestTs: Number.NEGATIVE_INFINITY, restored: null };
  }
  const horizon = rebuildHorizon(rules);
  const from = maxTs - horizon;
  const idleTimeout = Math.max(...rules.map((r) => r.idleTimeout));
  const restored = new RevisionsBeforeRestart(horizon, deps.clock.now() + idleTimeout + horizon);
  for (const r of storedResultsEndingFrom(db, from)) {
    restored.remember(r.rule, r.key, r.start, r.end, r.revision);
  }
  let n = 0;
  for (const reading of readingsInArrivalOrder(db, from)) {
    duplicates?.isDuplicate(reading);
    // Discarded (stored with their readings), but they show how far the rebuild caught up.
    for (const r of engine.process(reading)) restored.repeats(r);
    n++;
  }
  return { readings: n, newestTs: maxTs, restored: restored.size > 0 ? restored : null };
}

/**
 * How far back (event time, from the newest stored reading) windows can still be open: twice the
 * longest window, gap, out-of-orderness and lateness of any rule, at least a minute. Count windows
 * have no time extent; the same horizon bounds what they can rebuild.
 */
export function rebuildHorizon(rules: readonly CompiledRule[]): number {
  let span = 60_000;
  for (const r of rules) span = Math.max(span, 2 * liveSpan(r));
  return span;
}
