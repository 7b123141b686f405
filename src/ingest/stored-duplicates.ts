import type { Reading } from '../model/reading.js';
import type { ReadingWriter } from '../store/reading-writer.js';
import type { DuplicateFilter } from './duplicates.js';

/** Event time each series keeps in memory behind its newest reading. */
const RECENT_MS = 1_000;

/** What is known of one series. */
interface SeriesSeen {
  maxTs: number;
  /**
   * Every reading seen with ts ≥ `coveredFrom` is in `recentTs`/`recentValues`, sorted by ts (the
   * same index in both). Plain arrays of doubles: V8 stores them unboxed, 16 B a reading, where a
   * Map took several times that and a boxed number per key.
   */
  coveredFrom: number;
  recentTs: number[];
  recentValues: number[];
  /** Readings older than `coveredFrom` queued since the last commit: (ts, value) pairs, flattened. */
  pending: number[];
  /** Has readings queued since the last cut (not yet in a batch being committed). */
  touched: boolean;
  /** Has readings in the batch being committed; `cutPending` of `pending` are in it. */
  inFlight: boolean;
  cutPending: number;
  /** The sweep period of its last reading: series silent for a whole period are forgotten. */
  epoch: number;
}

/** Commits between two sweeps of silent series (about 13 s at the default 200 ms flush). */
const SWEEP_COMMITS = 64;

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
  /** Series with readings since the last cut. */
  private touched: SeriesSeen[] = [];
  /** Series with readings in the batch being committed. */
  private inFlight: SeriesSeen[] = [];
  private epoch = 0;
  private commits = 0;

  constructor(private readonly writer: ReadingWriter) {
    // What a batch holds is known when it is cut; memory forgets it once that batch committed
    // (readings queued meanwhile are not in it: their series forget at a later commit).
    writer.listen({
      cut: () => {
        for (const s of this.touched) {
          s.touched = false;
          s.inFlight = true;
          s.cutPending = s.pending.length;
        }
        this.inFlight = this.touched;
        this.touched = [];
      },
      committed: () => {
        for (const s of this.inFlight) {
          s.pending.splice(0, s.cutPending);
          s.cutPending = 0;
          s.inFlight = false;
          if (!s.touched) forgetBefore(s, s.maxTs - RECENT_MS);
        }
        this.inFlight = [];
        if (++this.commits % SWEEP_COMMITS === 0) this.forgetSilent();
      },
      rolledBack: () => {
        // The batch is queued again, before what came since.
        for (const s of this.inFlight) {
          s.inFlight = false;
          s.cutPending = 0;
          if (!s.touched) {
            s.touched = true;
            this.touched.push(s);
          }
        }
        this.inFlight = [];
      },
    });
  }

  /** Series remembered now. */
  get size(): number {
    let n = 0;
    for (const m of this.series.values()) n += m.size;
    return n;
  }

  /**
   * Forgets series silent for a whole sweep period: everything they saw is committed, so the store
   * answers for them as exactly as memory did (a series met again starts from its stored newest ts).
   */
  private forgetSilent(): void {
    for (const [device, byMetric] of this.series) {
      for (const [metric, s] of byMetric)
        if (s.epoch < this.epoch && !s.touched && !s.inFlight) byMetric.delete(metric);
      if (byMetric.size === 0) this.series.delete(device);
    }
    this.epoch++;
  }

  isDuplicate(r: Reading): boolean {
    const s = this.seen(r);
    s.epoch = this.epoch;
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
      s = {
        maxTs: stored,
        coveredFrom: stored + 1,
        recentTs: [],
        recentValues: [],
        pending: [],
        touched: false,
        inFlight: false,
        cutPending: 0,
        epoch: this.epoch,
      };
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
  const ts = s.recentTs;
  for (let i = firstAtOrAfter(ts, r.ts); i < ts.length && ts[i] === r.ts; i++)
    if (s.recentValues[i] === r.value) return true;
  return false;
}

function remember(s: SeriesSeen, r: Reading): void {
  const ts = s.recentTs;
  const n = ts.length;
  if (n === 0 || (ts[n - 1] as number) <= r.ts) {
    ts.push(r.ts);
    s.recentValues.push(r.value);
    return;
  }
  // Out of order within the recent past: insert after the readings of the same or earlier ts.
  const at = firstAfter(ts, r.ts);
  ts.splice(at, 0, r.ts);
  s.recentValues.splice(at, 0, r.value);
}

/** The index of the first ts ≥ `ts` in the sorted `list` (its length if none). */
function firstAtOrAfter(list: number[], ts: number): number {
  return search(list, ts, false);
}

/** The index of the first ts > `ts` in the sorted `list` (its length if none). */
function firstAfter(list: number[], ts: number): number {
  return search(list, ts, true);
}

function search(list: number[], ts: number, after: boolean): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const t = list[mid] as number;
    if (t < ts || (after && t === ts)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Drops the (committed) readings older than `cutoff` from memory; from then on, older ones are
 * looked up in the store.
 */
function forgetBefore(s: SeriesSeen, cutoff: number): void {
  if (cutoff <= s.coveredFrom) return;
  const n = firstAtOrAfter(s.recentTs, cutoff);
  if (n > 0) {
    s.recentTs.splice(0, n);
    s.recentValues.splice(0, n);
  }
  s.coveredFrom = cutoff;
}
