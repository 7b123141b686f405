/**
 * Duplicate readings (SPEC §1, fine print 11): the same device, metric, instant and value is one
 * reading, however often it arrives. The live gateway that stores raw readings asks the store
 * (`stored-duplicates.ts` beside this file); replay and a gateway without raw readings remember recent
 * readings here.
 */

import { type CompiledRule, liveSpan } from '../engine/compile.js';
import type { Reading } from '../model/reading.js';
import { readingKey } from '../model/reading.js';

const HOUR = 3_600_000;

/**
 * A generous horizon for a set of rules: twice the longest span any window stays open and live
 * (size or gap + maxOutOfOrder + lateness), at least one hour.
 */
export function dedupeHorizon(rules: readonly CompiledRule[]): number {
  let span = 0;
  for (const r of rules) span = Math.max(span, liveSpan(r));
  return Math.max(HOUR, 2 * span);
}

export interface DuplicateFilter {
  /** True when this reading was seen before; otherwise remembers it and returns false. */
  isDuplicate(r: Reading): boolean;
}

/**
 * Remembers the readings of the last `horizon` of event time (from the largest ts seen), and at
 * most `maxEntries` of them, the most recent arrivals: a duplicate older than that passes (the
 * engine will almost always drop it as late anyway, since the horizon is far beyond any rule's
 * windows and lateness).
 */
export class RecentDuplicates implements DuplicateFilter {
  private seen = new Map<string, number>();
  private maxTs = Number.NEGATIVE_INFINITY;
  private nextSweep = 4096;

  constructor(
    /** A function is asked at every sweep: the live gateway's rules change at run time. */
    private readonly horizon: number | (() => number) = HOUR,
    readonly maxEntries = 1_000_000,
  ) {}

  /** True when this reading was seen before; otherwise remembers it and returns false. */
  isDuplicate(r: Reading): boolean {
    const key = readingKey(r);
    if (this.seen.has(key)) return true;
    this.seen.set(key, r.ts);
    if (r.ts > this.maxTs) this.maxTs = r.ts;
    if (this.seen.size >= this.nextSweep) this.sweep();
    return false;
  }

  /** Readings remembered now. */
  get size(): number {
    return this.seen.size;
  }

  private sweep(): void {
    const cutoff = this.maxTs - (typeof this.horizon === 'function' ? this.horizon() : this.horizon);
    for (const [key, ts] of this.seen) if (ts < cutoff) this.seen.delete(key);
    // Over the cap, the earliest arrivals go (a Map iterates in insertion order).
    let excess = this.seen.size - this.maxEntries;
    for (const key of this.seen.keys()) {
      if (excess-- <= 0) break;
      this.seen.delete(key);
    }
    // Amortised O(1) per reading: the next sweep waits until the map has doubled.
    this.nextSweep = Math.max(4096, 2 * this.seen.size);
  }
}
