/** Series remembered at most; beyond, the least recently forwarded are forgotten. */
const MAX_SERIES = 100_000;

/**
 * For `outbox.readingsInterval`: per series, the event-time bucket of the last reading forwarded.
 * What a commit decides is staged and kept only if the commit succeeds, so that a rolled-back batch,
 * retried, forwards the same readings again. A forgotten series forwards at most one reading more in
 * its current bucket: memory stays bounded however many series publishers invent.
 */
export class ForwardedBuckets {
  private readonly kept = new Map<number, number>();
  private readonly staged = new Map<number, number>();

  /** `maxSeries`: series remembered at most (default MAX_SERIES; tests flood a smaller one). */
  constructor(private readonly maxSeries = MAX_SERIES) {}

  /** True (and staged) when `bucket` is new for the series: its reading is forwarded. */
  take(seriesId: number, bucket: number): boolean {
    const last = this.staged.get(seriesId) ?? this.kept.get(seriesId);
    if (last === bucket) return false;
    this.staged.set(seriesId, bucket);
    return true;
  }

  committed(): void {
    for (const [id, bucket] of this.staged) {
      // Re-inserted, so that the Map's order is the order of the last forward.
      this.kept.delete(id);
      this.kept.set(id, bucket);
    }
    this.staged.clear();
    let excess = this.kept.size - this.maxSeries;
    for (const id of this.kept.keys()) {
      if (excess-- <= 0) break;
      this.kept.delete(id);
    }
  }

  rolledBack(): void {
    this.staged.clear();
  }

  get size(): number {
    return this.kept.size;
  }
}
