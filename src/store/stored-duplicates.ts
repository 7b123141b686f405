import type { DuplicateFilter } from '../engine/dedupe.js';
import type { Reading } from '../model/reading.js';
import type { ReadingWriter } from './reading-writer.js';

/** Event time each series keeps in memory behind its newest reading. */
const RECENT_MS = 1_000;

/** What is known of one series. */
interface SeriesSeen {
  maxTs: number;
  /** Every reading seen with ts ≥ `coveredFrom` is in `recent` (ts → value, or values). */
  coveredFrom: number;
  recent: Map<number, number | number[]>;
  /** Readings older than `coveredFrom` queued since the last commit: (ts, value) pairs, flattened. */
  pending: number[];
  /** Has readings since the last commit. */
  touched: boolean;
}

/**
 * The duplicate filter of a live gateway that stores raw readings (SPEC §1, fine print 11): exact for
 * as long as the store keeps readings, in memory proportional to the series and to the last few
 * seconds of readings, not to the readings of an hour.
 *
 * A reading newer than every reading of its series (the usual case) cannot be a duplicate. One at
 * most RECENT_MS older is compared with the series' recent readings in memory. An older one is
 * compared with the series' old readings still waiting for the commit, then looked up in the store
 * by its key. After a start, memory covers only readings newer than the series' newest stored ts,
 * so a redelivery across a restart is looked up in the store too. Memory forgets only after a
 * commit, so that nothing it forgets is missing from the store.
 */
export class StoredDuplicates implements DuplicateFilter {
  private readonly series = new Map<string, Map<string, SeriesSeen>>();
  /** Series with readings since the last commit. */
  private touched: SeriesSeen[] = [];

  constructor(private readonly writer: ReadingWriter) {
    writer.onCommit(() => {
      for (const s of this.touched) {
        s.pending.length = 0;
        forgetBefore(s, s.maxTs - RECENT_MS);
        s.touched = false;
      }
      this.touched = [];
    });
  }

  isDuplicate(r: Reading): boolean {
    const s = this.seen(r);
    if (r.ts > s.maxTs) s.maxTs = r.ts;
    else if (r.ts >= s.coveredFrom ? inRecent(s, r) : this.queuedOld(s, r) || this.writer.isStored(r))
      return true;
    if (r.ts >= s.coveredFrom) remember(s, r);
    else s.pending.push(r.ts, r.value);
    if (!s.touched) {
      s.touched = true;
      this.touched.push(s);
    }
    return false;
  }

  private seen(r: Reading): SeriesSeen {
    let byMetric = this.series.get(r.device);
    if (byMetric === undefined) {
      byMetric = new Map();
      this.series.set(r.device, byMetric);
    }
    let s = byMetric.get(r.metric);
    if (s === undefined) {
      const stored = this.writer.storedMaxTs(r.device, r.metric) ?? Number.NEGATIVE_INFINITY;
      s = { maxTs: stored, coveredFrom: stored + 1, recent: new Map(), pending: [], touched: false };
      byMetric.set(r.metric, s);
    }
    return s;
  }

  private queuedOld(s: SeriesSeen, r: Reading): boolean {
    const p = s.pending;
    for (let i = 0; i < p.length; i += 2) if (p[i] === r.ts && p[i + 1] === r.value) return true;
    return false;
  }
}

function inRecent(s: SeriesSeen, r: Reading): boolean {
  const v = s.recent.get(r.ts);
  if (v === undefined) return false;
  return typeof v === 'number' ? v === r.value : v.includes(r.value);
}

function remember(s: SeriesSeen, r: Reading): void {
  const v = s.recent.get(r.ts);
  if (v === undefined) s.recent.set(r.ts, r.value);
  else if (typeof v === 'number') s.recent.set(r.ts, [v, r.value]);
  else v.push(r.value);
}

/**
 * Drops the (committed) readings older than `cutoff` from memory; from then on, older ones are looked
 * up in the store. Entries come in arrival order, which is ts order for a series in order; an older
 * entry behind a newer one goes on a later pass.
 */
function forgetBefore(s: SeriesSeen, cutoff: number): void {
  if (cutoff <= s.coveredFrom) return;
  for (const ts of s.recent.keys()) {
    if (ts >= cutoff) break;
    s.recent.delete(ts);
  }
  s.coveredFrom = cutoff;
}
