/**
 * The window operator of tumbling and sliding windows for one group, by stream slicing: a reading
 * updates one partial aggregate, its pane (gcd(size, slide) wide), and a window is the merge of its
 * panes when it fires. No window is visited per reading unless the reading is late into it, so the
 * per-reading cost does not grow with size/slide.
 *
 * Windows are only remembered while they must be: `pending` are closed windows that had a reading
 * while open and await the firing (revision 0), `closed` are closed windows still live
 * (`watermark < end + lateness`, fine print 4) with the last revision they emitted; a late reading
 * re-emits those it falls in with the next revision, cumulatively (revision 0 for one that closed
 * empty). A window that is still open is nothing but its panes.
 */
import { type AggregationPlan, addMoments, type PaneMoments, type WindowState } from './aggregates.js';
import { clear } from './arrays.js';
import { PaneValues, paneQuantiles } from './pane-values.js';
import { EXACT_LIMIT, writeQuantiles } from './quantile.js';
import { SlidingSortedValues } from './sliding-sorted.js';
import type { AlignedAssigner } from './window-assigner.js';
import { type FiredWindow, Placement, type WindowOperator } from './window-operator.js';

interface WindowRecord {
  start: number;
  end: number;
  /** Last revision emitted; −1 while never emitted. */
  revision: number;
}

interface QuantileSlot {
  slot: number;
  metric: string | null;
  qs: readonly number[];
  offsets: readonly number[];
  /** Each pane's values for this slot (or its sketch), indexed as the panes. */
  values: PaneValues;
  /** Windows of several panes: the sorted values of the last one fired, moved to the next. */
  sorted: SlidingSortedValues | null;
}

/** Index of the first element of ascending `a[from..]` that is ≥ x. */
function lowerBound(a: readonly number[], x: number, from: number): number {
  let lo = from;
  let hi = a.length;
  // Windows fire in order, so the bound is most often at an end: the first pane kept, or the last
  // one or two (the pane still open). Probing them touches one or two cache lines, not a search's.
  if (lo >= hi || (a[lo] as number) >= x) return lo;
  if ((a[hi - 1] as number) < x) return hi;
  if ((a[hi - 2] as number) < x) return hi - 1;
  lo++;
  hi -= 2;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((a[mid] as number) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const NO_QUANTILES: QuantileSlot[] = [];
/** Forgotten pane states kept for new panes, at most this many per group. */
const POOL = 8;

export class AlignedWindowOperator implements WindowOperator {
  private readonly size: number;
  private readonly slide: number;
  /**
   * Panes, ascending by start, from index `head` on: their starts, and side by side with them their
   * moments, their quantile states (in `quantiles`) and, only when the plan needsStates, their
   * SlotStates. A pane of a plan that reads none of first/last/stddev is two or four numbers per
   * slot and its quantile values.
   */
  private readonly paneStarts: number[] = [];
  private readonly paneStates: WindowState[] | null;
  private head = 0;
  /** Per slot: each pane's count, sum (and min, max: width 4), indexed as the panes. */
  private readonly moments: PaneMoments[] = [];
  private readonly width: 2 | 4;
  private readonly pool: WindowState[] = [];
  /** Some quantile slot keeps sorted values (windows of several panes). */
  private readonly followsSorted: boolean;
  /** Above every end the sorted values ever had: a pane from here on is in none of them. */
  private sortedEnd = Number.NEGATIVE_INFINITY;
  /** The largest watermark seen: every window ending at or before it is closed and accounted for. */
  private closedUpTo = Number.NEGATIVE_INFINITY;
  /** The first window end after closedUpTo. */
  private nextEnd = Number.NEGATIVE_INFINITY;
  /** Starts of the closed windows awaiting their first firing, ascending. */
  private readonly pending: number[] = [];
  /** Closed, live windows ascending by start; each is in `pending` or here, never both. */
  private readonly closed: WindowRecord[] = [];
  private readonly quantiles: QuantileSlot[];

  constructor(
    private readonly assigner: AlignedAssigner,
    private readonly plan: AggregationPlan,
    private readonly lateness: number,
  ) {
    this.size = assigner.size;
    this.slide = assigner.slide;
    this.paneStates = plan.needsStates ? [] : null;
    this.width = plan.paneWidth;
    for (let k = 0; k < plan.slotCount; k++) this.moments.push([]);
    const slots = plan.quantileSlots;
    this.quantiles =
      slots.length === 0
        ? NO_QUANTILES
        : // Written out, not spread from q: a spread's objects get maps of their own, and a load of
          // a field read at every firing then misses in every group (megamorphic).
          slots.map((q) => ({
            slot: q.slot,
            metric: plan.slotMetric[q.slot] ?? null,
            qs: q.qs,
            offsets: q.offsets,
            values: new PaneValues(),
            sorted: assigner.size > assigner.pane ? new SlidingSortedValues(Math.min(...q.qs)) : null,
          }));
    this.followsSorted = this.quantiles.some((q) => q.sorted !== null);
  }

  place(
    metric: string,
    value: number,
    ts: number,
    seq: number,
    watermark: number,
    fired: FiredWindow[],
  ): Placement {
    // What closed up to this watermark is settled before the reading counts anywhere.
    if (watermark > this.closedUpTo) this.closeUpTo(watermark);
    const { size, slide, lateness } = this;
    // Windows containing ts: starts s at multiples of slide with ts − size < s ≤ ts.
    const last = Math.floor(ts / slide) * slide;
    if (last <= ts - size) return Placement.NoWindow;
    // Earlier windows end earlier: when the latest is discarded, so are the rest.
    if (watermark >= last + size + lateness) return Placement.Late;
    this.add(metric, value, ts, seq);
    const first = Math.floor((ts - size) / slide) * slide + slide;
    if (watermark < first + size) return Placement.Placed;
    // Closed but live windows of ts, earliest first: re-emitted at once (fine print 4).
    const liveAfter = watermark - lateness - size;
    let s = first > liveAfter ? first : (Math.floor(liveAfter / slide) + 1) * slide;
    for (; s <= last && s + size <= watermark; s += slide) {
      const rec = this.closedRecord(s);
      rec.revision++;
      fired.push(this.fire(rec.start, rec.end, rec.revision));
    }
    return Placement.Placed;
  }

  advance(watermark: number, fired: FiredWindow[]): void {
    if (watermark > this.closedUpTo) this.closeUpTo(watermark);
    const pending = this.pending;
    const size = this.size;
    for (let i = 0; i < pending.length; i++) {
      const start = pending[i] as number;
      fired.push(this.fire(start, start + size, 0));
      if (start + size + this.lateness > watermark)
        this.insertClosed({ start, end: start + size, revision: 0 });
    }
    clear(pending);
    const closed = this.closed;
    let discard = 0;
    while (discard < closed.length && (closed[discard] as WindowRecord).end + this.lateness <= watermark)
      discard++;
    if (discard > 0) closed.splice(0, discard);
    this.forgetPanes(watermark);
  }

  isEmpty(): boolean {
    return this.head === this.paneStarts.length && this.closed.length === 0 && this.pending.length === 0;
  }

  /**
   * Every window ending in (closedUpTo, watermark] that has a pane with readings goes to `pending`:
   * all readings so far came while it was open. Windows without panes are skipped in one step.
   */
  private closeUpTo(watermark: number): void {
    const prev = this.closedUpTo;
    this.closedUpTo = watermark;
    if (watermark < this.nextEnd) return;
    const { size, slide } = this;
    const starts = this.paneStarts;
    let e = Math.floor((prev - size) / slide) * slide + slide + size;
    let i = lowerBound(starts, e - size, this.head);
    while (i < starts.length) {
      const ps = starts[i] as number;
      if (ps >= e) {
        // The next window with a pane is the first one ending after that pane's start.
        e = Math.floor((ps - size) / slide) * slide + slide + size;
        if (e > watermark) break;
        while (i < starts.length && (starts[i] as number) < e - size) i++;
        continue;
      }
      if (e > watermark) break;
      this.pending.push(e - size);
      e += slide;
      while (i < starts.length && (starts[i] as number) < e - size) i++;
    }
    this.nextEnd = Math.floor((watermark - size) / slide) * slide + slide + size;
  }

  /** The record of closed, live window [s, s + size): pending, already emitted, or closed empty. */
  private closedRecord(s: number): WindowRecord {
    const closed = this.closed;
    let i = closed.length - 1;
    while (i >= 0 && (closed[i] as WindowRecord).start > s) i--;
    if (i >= 0 && (closed[i] as WindowRecord).start === s) return closed[i] as WindowRecord;
    // Pending: it had readings while open but was never emitted (revision −1, like one closed empty).
    const pending = this.pending;
    const j = pending.indexOf(s);
    if (j >= 0) pending.splice(j, 1);
    const rec: WindowRecord = { start: s, end: s + this.size, revision: -1 };
    closed.splice(i + 1, 0, rec);
    return rec;
  }

  private insertClosed(rec: WindowRecord): void {
    const closed = this.closed;
    let i = closed.length - 1;
    while (i >= 0 && (closed[i] as WindowRecord).start > rec.start) i--;
    closed.splice(i + 1, 0, rec);
  }

  /** Adds the reading to its pane (made if new), and to the sorted values that follow the pane. */
  private add(metric: string, value: number, ts: number, seq: number): void {
    const start = this.assigner.paneStart(ts);
    const starts = this.paneStarts;
    let i = starts.length - 1;
    while (i >= this.head && (starts[i] as number) > start) i--;
    if (i < this.head || starts[i] !== start) this.insertPane(++i, start);
    const w = this.width;
    const at = w * i;
    const moments = this.moments;
    addMoments(moments[0] as PaneMoments, at, w, value);
    const k = this.plan.slotOf(metric);
    if (k !== undefined) addMoments(moments[k] as PaneMoments, at, w, value);
    const states = this.paneStates;
    if (states !== null) this.plan.add(states[i] as WindowState, metric, value, ts, seq);
    const quantiles = this.quantiles;
    if (quantiles.length === 0) return;
    // Most readings land after every window fired so far and in a pane far below a sketch: the
    // sorted values have nothing to do.
    const follow =
      this.followsSorted &&
      (start < this.sortedEnd || ((moments[0] as PaneMoments)[at] as number) > EXACT_LIMIT);
    for (let j = 0; j < quantiles.length; j++) {
      const q = quantiles[j] as QuantileSlot;
      if (q.metric !== null && q.metric !== metric) continue;
      const sketched = q.values.add(i, value);
      if (!follow || q.sorted === null) continue;
      if (sketched) q.sorted.sketched(start);
      else q.sorted.added(start, value);
    }
  }

  /** Makes pane `start` at index i, shifting those after it. */
  private insertPane(i: number, start: number): void {
    const starts = this.paneStarts;
    const atEnd = i === starts.length;
    const states = this.paneStates;
    const state = states === null ? null : (this.pool.pop() ?? this.plan.newState(false));
    if (atEnd) starts.push(start);
    else starts.splice(i, 0, start);
    if (states !== null) {
      if (atEnd) states.push(state as WindowState);
      else states.splice(i, 0, state as WindowState);
    }
    const moments = this.moments;
    const wide = this.width === 4;
    for (let k = 0; k < moments.length; k++) {
      const m = moments[k] as PaneMoments;
      if (atEnd) {
        if (wide) m.push(0, 0, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY);
        else m.push(0, 0);
      } else if (wide) m.splice(4 * i, 0, 0, 0, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY);
      else m.splice(2 * i, 0, 0, 0);
    }
    const quantiles = this.quantiles;
    for (let j = 0; j < quantiles.length; j++) (quantiles[j] as QuantileSlot).values.insertPane(i);
  }

  /** Forgets the panes whose last window is discarded. */
  private forgetPanes(watermark: number): void {
    const starts = this.paneStarts;
    const states = this.paneStates;
    const head = this.head;
    let drop = head;
    while (
      drop < starts.length &&
      this.assigner.lastEndOfPane(starts[drop] as number) + this.lateness <= watermark
    )
      drop++;
    if (drop === head) return;
    const quantiles = this.quantiles;
    for (let j = 0; j < quantiles.length; j++) {
      const q = quantiles[j] as QuantileSlot;
      const sorted = q.sorted;
      if (sorted !== null)
        for (let i = head; i < drop; i++) sorted.forgotten(starts[i] as number, q.values, i);
      q.values.forget(head, drop);
    }
    if (states !== null) {
      const pool = this.pool;
      for (let i = head; i < drop && pool.length < POOL; i++) {
        const state = states[i] as WindowState;
        this.plan.renew(state);
        pool.push(state);
      }
    }
    this.head = drop;
    // Forgotten panes are cut off the arrays in batches, not one splice per pane.
    if (drop === starts.length) this.cutPanes(drop, true);
    else if (drop >= 64 && drop * 2 >= starts.length) this.cutPanes(drop, false);
  }

  /** Removes the first `n` panes (all of them: `all`) from every array, which start at 0 again. */
  private cutPanes(n: number, all: boolean): void {
    const cut = (a: unknown[], per: number) => {
      if (all) clear(a);
      else a.splice(0, per * n);
    };
    cut(this.paneStarts, 1);
    if (this.paneStates !== null) cut(this.paneStates, 1);
    for (const m of this.moments) cut(m, this.width);
    for (const q of this.quantiles) q.values.cutPanes(n, all);
    this.head = 0;
  }

  private fire(start: number, end: number, revision: number): FiredWindow {
    const starts = this.paneStarts;
    const lo = lowerBound(starts, start, this.head);
    const hi = lowerBound(starts, end, lo);
    const plan = this.plan;
    const values = new Array<number>(plan.aliases.length + 1);
    const count = plan.evaluatePanes(this.moments, this.paneStates, lo, hi, values);
    values[plan.aliases.length] = count;
    const quantiles = this.quantiles;
    for (let k = 0; k < quantiles.length; k++)
      this.fireQuantiles(quantiles[k] as QuantileSlot, lo, hi, start, end, values);
    return { start, end, count, values, revision };
  }

  /** Exact over raw panes (from the sorted values moved to this window), else as merged sketches. */
  private fireQuantiles(
    q: QuantileSlot,
    lo: number,
    hi: number,
    start: number,
    end: number,
    out: number[],
  ): void {
    const pv = q.values;
    const sorted = q.sorted;
    // Windows of one pane (tumbling): read from it.
    if (sorted === null) {
      paneQuantiles(pv, lo, hi, q.qs, out, q.offsets);
      return;
    }
    if (pv.sketchedPanes === 0) {
      // Every pane raw: exact, without visiting the panes that stay (evaluatePanes counted them).
      const total = this.plan.mergedCount(q.slot);
      if (total === 0) writeQuantiles(sorted.values, 0, q.qs, out, q.offsets);
      else this.fromSorted(sorted, q, lo, hi, start, end, out);
      return;
    }
    let total = 0;
    let parts = 0;
    let allRaw = true;
    for (let i = lo; i < hi; i++) {
      const c = pv.count(i);
      if (c === 0) continue;
      parts++;
      total += c;
      if (pv.sketchOf(i) !== null) allRaw = false;
    }
    if (!allRaw || total === 0 || parts === 1) {
      paneQuantiles(pv, lo, hi, q.qs, out, q.offsets);
      return;
    }
    this.fromSorted(sorted, q, lo, hi, start, end, out);
  }

  /** The sorted values moved to window [start, end) (panes [lo, hi), every one raw), read. */
  private fromSorted(
    sorted: SlidingSortedValues,
    q: QuantileSlot,
    lo: number,
    hi: number,
    start: number,
    end: number,
    out: number[],
  ): void {
    sorted.moveTo(this.paneStarts, q.values, this.head, lo, hi, start, end);
    if (end > this.sortedEnd) this.sortedEnd = end;
    sorted.write(q.qs, out, q.offsets);
  }
}
