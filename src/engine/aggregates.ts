/**
 * Aggregate state (SPEC §2 "Aggregate functions"). A rule's aggregates are planned into *slots*: slot
 * 0 accumulates every reading of the window, and one more slot per metric named in `fn(metric)`.
 * A slot's state is O(1) for the moments (count, sum, min, max, first, last, Welford mean/M2) plus a
 * QuantileState when a quantile reads it. States merge, so sliding windows are built from panes and
 * sessions can merge.
 */
import type { AggregateSpec } from '../model/rule.js';
import { clear } from './arrays.js';
import { evaluateQuantiles, QuantileState } from './quantile.js';

/**
 * Per slot, the count, sum, min and max of each pane of a window operator, side by side: pane i's
 * at [wi, wi + w) with w the plan's paneWidth (a window's are read in one sweep of a few cache
 * lines). w is 2, count and sum only, when no output reads min or max. A pane's are accumulated as a
 * SlotState's are (addMoments), so they are the same bits.
 */
export type PaneMoments = number[];

/** The running state of one slot of one window or pane. */
export class SlotState {
  n = 0;
  sum = 0;
  min = Number.POSITIVE_INFINITY;
  max = Number.NEGATIVE_INFINITY;
  // first/last by event time; ties broken by arrival sequence (fine print 13).
  firstTs = 0;
  firstSeq = 0;
  firstV = 0;
  lastTs = 0;
  lastSeq = 0;
  lastV = 0;
  // Welford's running mean and sum of squared deviations, for the sample standard deviation.
  mean = 0;
  m2 = 0;
  q: QuantileState | null;

  constructor(withQuantiles: boolean) {
    this.q = withQuantiles ? new QuantileState() : null;
  }

  reset(): void {
    this.n = 0;
    this.sum = 0;
    this.min = Number.POSITIVE_INFINITY;
    this.max = Number.NEGATIVE_INFINITY;
    this.mean = 0;
    this.m2 = 0;
    if (this.q !== null) this.q = new QuantileState();
  }
}

/** A window's (or pane's) state: one SlotState per slot of the plan. */
export type WindowState = SlotState[];

interface Output {
  fn: AggregateSpec['fn'];
  slot: number;
  /** Index into the slot's quantile list, for quantiles. */
  qIndex: number;
}

/** The compiled form of a rule's `aggregates`: what to accumulate and how to read it out. */
export class AggregationPlan {
  /** slotMetric[k]: the metric slot k accumulates; null for slot 0 (every reading). */
  readonly slotMetric: (string | null)[] = [null];
  readonly slotFirstLast: boolean[] = [false];
  readonly slotMoments: boolean[] = [false];
  /** The quantiles (0–1) read from each slot; empty when none. */
  readonly slotQuantiles: number[][] = [[]];
  readonly aliases: string[];
  private readonly outputs: Output[];
  private readonly metricSlot = new Map<string, number>();
  private readonly singleSlot: boolean;
  /** Per slot: which outputs are quantiles, and of which q. */
  private readonly quantileOffsets: number[][] = [];
  private readonly quantileWanted: number[][] = [];
  /** evaluateMoments()' scratch, one per slot (a merge into n = 0 overwrites every moment). */
  private readonly accumulators: SlotState[] = [];
  /** Per slot: which moments an output reads (READS_* bits), the only ones evaluateMoments merges. */
  private readonly slotReads: number[] = [];
  private readonly width: 2 | 4;

  constructor(specs: readonly AggregateSpec[]) {
    this.aliases = specs.map((s) => s.alias);
    this.outputs = specs.map((s) => {
      let slot = 0;
      if (s.metric !== null) {
        const known = this.metricSlot.get(s.metric);
        if (known !== undefined) slot = known;
        else {
          slot = this.slotMetric.length;
          this.metricSlot.set(s.metric, slot);
          this.slotMetric.push(s.metric);
          this.slotFirstLast.push(false);
          this.slotMoments.push(false);
          this.slotQuantiles.push([]);
        }
      }
      let qIndex = -1;
      if (s.fn === 'first' || s.fn === 'last' || s.fn === 'delta' || s.fn === 'rate')
        this.slotFirstLast[slot] = true;
      if (s.fn === 'stddev') this.slotMoments[slot] = true;
      if (s.fn === 'quantile') {
        const qs = this.slotQuantiles[slot] as number[];
        const q = (s.q as number) / 100;
        qIndex = qs.indexOf(q);
        if (qIndex < 0) {
          qIndex = qs.length;
          qs.push(q);
        }
      }
      return { fn: s.fn, slot, qIndex };
    });
    this.singleSlot = this.slotMetric.length === 1;
    let minMax = false;
    for (let k = 0; k < this.slotMetric.length; k++) {
      const offsets: number[] = [];
      const wanted: number[] = [];
      this.outputs.forEach((o, j) => {
        if (o.fn === 'quantile' && o.slot === k) {
          offsets.push(j);
          wanted.push((this.slotQuantiles[k] as number[])[o.qIndex] as number);
        }
      });
      this.quantileOffsets.push(offsets);
      this.quantileWanted.push(wanted);
      this.accumulators.push(new SlotState(false));
      let reads = 0;
      for (const o of this.outputs) if (o.slot === k) reads |= READS[o.fn] ?? 0;
      if (this.slotFirstLast[k]) reads |= READS_FIRST_LAST;
      if (this.slotMoments[k]) reads |= READS_MOMENTS;
      this.slotReads.push(reads);
      if ((reads & READS_MIN_MAX) !== 0) minMax = true;
    }
    this.width = minMax ? 4 : 2;
  }

  /** The slots quantiles read, each with its quantiles (0–1) and their places in the output. */
  get quantileSlots(): { slot: number; qs: readonly number[]; offsets: readonly number[] }[] {
    const slots: { slot: number; qs: readonly number[]; offsets: readonly number[] }[] = [];
    for (let k = 0; k < this.slotMetric.length; k++) {
      const qs = this.quantileWanted[k] as number[];
      if (qs.length > 0) slots.push({ slot: k, qs, offsets: this.quantileOffsets[k] as number[] });
    }
    return slots;
  }

  /**
   * What evaluate() reads but the quantiles, of the union of panes [from..to) merged in that order
   * (the same merges, so the same bits): writes `out` (NaN where the outputs are quantiles) and
   * returns the reading count. Count, sum, min and max come from `moments`, the rest from the panes'
   * `states`, which only a plan that needsStates reads (null otherwise).
   */
  evaluatePanes(
    moments: readonly PaneMoments[],
    states: readonly WindowState[] | null,
    from: number,
    to: number,
    out: number[],
  ): number {
    const acc = this.accumulators;
    const w = this.width;
    for (let k = 0; k < acc.length; k++) {
      const a = acc[k] as SlotState;
      if (to - from === 0) a.n = 0;
      else mergeRead(a, moments[k] as PaneMoments, w, states, from, to, k, this.slotReads[k] as number);
    }
    for (let j = 0; j < this.outputs.length; j++) {
      const o = this.outputs[j] as Output;
      out[j] = readSlot(o.fn, acc[o.slot] as SlotState);
    }
    return (acc[0] as SlotState).n;
  }

  /** After evaluatePanes(): the readings of slot k in the panes it merged. */
  mergedCount(k: number): number {
    return (this.accumulators[k] as SlotState).n;
  }

  get slotCount(): number {
    return this.slotMetric.length;
  }

  /** Numbers per pane in PaneMoments: 4 (count, sum, min, max), or 2 when min and max are not read. */
  get paneWidth(): 2 | 4 {
    return this.width;
  }

  /** The slot of `fn(metric)`'s metric; undefined when no aggregate names it (slot 0 takes all). */
  slotOf(metric: string): number | undefined {
    return this.singleSlot ? undefined : this.metricSlot.get(metric);
  }

  /**
   * An output reads first/last or Welford's moments: panes need their SlotStates. Otherwise count,
   * sum, min and max (PaneMoments) and the quantile states are all a pane is.
   */
  get needsStates(): boolean {
    return this.slotReads.some((r) => (r & (READS_FIRST_LAST | READS_MOMENTS)) !== 0);
  }

  /** A new state; `withQuantiles` false: without quantile states (a window operator keeps its own). */
  newState(withQuantiles = true): WindowState {
    const state: WindowState = new Array(this.slotMetric.length);
    for (let k = 0; k < state.length; k++)
      state[k] = new SlotState(withQuantiles && (this.slotQuantiles[k] as number[]).length > 0);
    return state;
  }

  /** Makes a state from newState() new again for reuse; its quantile values' array is kept. */
  renew(state: WindowState): void {
    for (let k = 0; k < state.length; k++) {
      const s = state[k] as SlotState;
      const q = s.q;
      const values = q?.values ?? null;
      if (q !== null && values !== null) {
        clear(values);
        s.q = null;
        s.reset();
        s.q = q;
      } else s.reset();
    }
  }

  /** Adds one reading to a window's state. `seq` is the engine-wide arrival number. */
  add(state: WindowState, metric: string, value: number, ts: number, seq: number): void {
    this.addToSlot(state[0] as SlotState, 0, value, ts, seq);
    if (this.singleSlot) return;
    const k = this.metricSlot.get(metric);
    if (k !== undefined) this.addToSlot(state[k] as SlotState, k, value, ts, seq);
  }

  private addToSlot(s: SlotState, k: number, v: number, ts: number, seq: number): void {
    const n = ++s.n;
    s.sum += v;
    if (v < s.min) s.min = v;
    if (v > s.max) s.max = v;
    if (this.slotFirstLast[k]) {
      if (n === 1 || ts < s.firstTs) {
        s.firstTs = ts;
        s.firstSeq = seq;
        s.firstV = v;
      }
      if (n === 1 || ts >= s.lastTs) {
        s.lastTs = ts;
        s.lastSeq = seq;
        s.lastV = v;
      }
    }
    if (this.slotMoments[k]) {
      const d = v - s.mean;
      s.mean += d / n;
      s.m2 += d * (v - s.mean);
    }
    if (s.q !== null) s.q.add(v);
  }

  /** Merges `src` into `dst` (a session absorbing another, a pane into a window). */
  merge(dst: WindowState, src: WindowState): void {
    for (let k = 0; k < dst.length; k++) mergeSlot(dst[k] as SlotState, src[k] as SlotState, true);
  }

  /**
   * Reads the aggregates of the union of `parts` into `out` (one number per alias, NaN for null) and
   * returns the window's reading count.
   */
  evaluate(parts: readonly WindowState[], out: number[]): number {
    const slots: SlotState[] = new Array(this.slotMetric.length);
    for (let k = 0; k < slots.length; k++) {
      if (parts.length === 1) slots[k] = (parts[0] as WindowState)[k] as SlotState;
      else {
        const acc = new SlotState(false);
        // Quantiles are read from the parts directly below, not copied into the union.
        for (const p of parts) mergeSlot(acc, p[k] as SlotState, false);
        slots[k] = acc;
      }
    }
    for (let j = 0; j < this.outputs.length; j++) {
      const o = this.outputs[j] as Output;
      out[j] = readSlot(o.fn, slots[o.slot] as SlotState);
    }
    for (let k = 0; k < slots.length; k++) {
      const qs = this.slotQuantiles[k] as number[];
      if (qs.length === 0) continue;
      const qStates: QuantileState[] = [];
      for (const p of parts) {
        const q = (p[k] as SlotState).q;
        if (q !== null && q.count() > 0) qStates.push(q);
      }
      evaluateQuantiles(
        qStates,
        this.quantileWanted[k] as number[],
        out,
        this.quantileOffsets[k] as number[],
      );
    }
    return (slots[0] as SlotState).n;
  }
}

const READS_SUM = 1;
const READS_MIN_MAX = 2;
const READS_FIRST_LAST = 4;
const READS_MOMENTS = 8;
const READS: Partial<Record<AggregateSpec['fn'], number>> = {
  sum: READS_SUM,
  avg: READS_SUM,
  min: READS_MIN_MAX,
  max: READS_MIN_MAX,
  spread: READS_MIN_MAX,
};

const fullMerge = new SlotState(false);

/** Adds value v to pane moments `m` of width w at index `at`, as addToSlot() adds it to a SlotState. */
export function addMoments(m: PaneMoments, at: number, w: 2 | 4, v: number): void {
  m[at] = (m[at] as number) + 1;
  m[at + 1] = (m[at + 1] as number) + v;
  if (w === 2) return;
  if (v < (m[at + 2] as number)) m[at + 2] = v;
  if (v > (m[at + 3] as number)) m[at + 3] = v;
}

/**
 * mergeSlot() of states[from..to)[k] into `dst` (n = 0 first) in that order, for the moments in
 * `reads` only: the same operations on each of those, so the same bits, in one pass without the rest
 * (count, sum, min and max read from their copies in `moments`).
 */
function mergeRead(
  dst: SlotState,
  moments: PaneMoments,
  w: 2 | 4,
  states: readonly WindowState[] | null,
  from: number,
  to: number,
  k: number,
  reads: number,
): void {
  let n = 0;
  let sum = 0;
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  const sums = (reads & READS_SUM) !== 0;
  const minMax = (reads & READS_MIN_MAX) !== 0;
  // Every pane adds to the count, the sum and the bounds, its first one included: starting from
  // 0, +∞ and −∞ gives that pane's own numbers (a pane's sum starts at +0, so it is never −0 and
  // 0 + sum is sum, bit for bit), and an empty pane adds 0, +0, +∞ and −∞, which change nothing.
  // So these are mergeSlot()'s operations in its order, without a branch per pane: the loop is as
  // long as the sum's chain of additions.
  // minMax only with width 4 (a plan is 2 wide when no output reads min or max).
  if (minMax) {
    for (let i = 4 * from; i < 4 * to; i += 4) {
      n += moments[i] as number;
      sum += moments[i + 1] as number;
      const lo = moments[i + 2] as number;
      const hi = moments[i + 3] as number;
      if (lo < min) min = lo;
      if (hi > max) max = hi;
    }
  } else if (sums) {
    for (let i = w * from; i < w * to; i += w) {
      n += moments[i] as number;
      sum += moments[i + 1] as number;
    }
  } else for (let i = w * from; i < w * to; i += w) n += moments[i] as number;
  dst.n = n;
  dst.sum = sum;
  dst.min = min;
  dst.max = max;
  if ((reads & (READS_FIRST_LAST | READS_MOMENTS)) === 0) return;
  // first/last and Welford's moments: the full merge (rarer aggregates).
  const a = fullMerge;
  a.n = 0;
  const full = states as readonly WindowState[];
  for (let i = from; i < to; i++) mergeSlot(a, (full[i] as WindowState)[k] as SlotState, false);
  dst.firstTs = a.firstTs;
  dst.firstSeq = a.firstSeq;
  dst.firstV = a.firstV;
  dst.lastTs = a.lastTs;
  dst.lastSeq = a.lastSeq;
  dst.lastV = a.lastV;
  dst.mean = a.mean;
  dst.m2 = a.m2;
}

function mergeSlot(dst: SlotState, src: SlotState, withQuantiles: boolean): void {
  if (src.n === 0) return;
  if (dst.n === 0) {
    dst.n = src.n;
    dst.sum = src.sum;
    dst.min = src.min;
    dst.max = src.max;
    dst.firstTs = src.firstTs;
    dst.firstSeq = src.firstSeq;
    dst.firstV = src.firstV;
    dst.lastTs = src.lastTs;
    dst.lastSeq = src.lastSeq;
    dst.lastV = src.lastV;
    dst.mean = src.mean;
    dst.m2 = src.m2;
  } else {
    const n = dst.n + src.n;
    // Chan et al.'s parallel update of mean and M2.
    const delta = src.mean - dst.mean;
    dst.m2 = dst.m2 + src.m2 + (delta * delta * dst.n * src.n) / n;
    dst.mean = dst.mean + (delta * src.n) / n;
    dst.n = n;
    dst.sum += src.sum;
    if (src.min < dst.min) dst.min = src.min;
    if (src.max > dst.max) dst.max = src.max;
    if (src.firstTs < dst.firstTs || (src.firstTs === dst.firstTs && src.firstSeq < dst.firstSeq)) {
      dst.firstTs = src.firstTs;
      dst.firstSeq = src.firstSeq;
      dst.firstV = src.firstV;
    }
    if (src.lastTs > dst.lastTs || (src.lastTs === dst.lastTs && src.lastSeq > dst.lastSeq)) {
      dst.lastTs = src.lastTs;
      dst.lastSeq = src.lastSeq;
      dst.lastV = src.lastV;
    }
  }
  if (withQuantiles && src.q !== null) {
    if (dst.q === null) dst.q = new QuantileState();
    dst.q.merge(src.q);
  }
}

function readSlot(fn: AggregateSpec['fn'], s: SlotState): number {
  const n = s.n;
  // count(metric) over no readings is 0; everything else over no readings is null (fine print 7).
  if (fn === 'count') return n;
  if (n === 0) return Number.NaN;
  switch (fn) {
    case 'sum':
      return s.sum;
    case 'avg':
      return s.sum / n;
    case 'min':
      return s.min;
    case 'max':
      return s.max;
    case 'spread':
      return s.max - s.min;
    case 'first':
      return s.firstV;
    case 'last':
      return s.lastV;
    case 'delta':
      return s.lastV - s.firstV;
    case 'rate':
      return s.lastTs === s.firstTs ? Number.NaN : (s.lastV - s.firstV) / ((s.lastTs - s.firstTs) / 1000);
    case 'stddev':
      return n < 2 ? Number.NaN : Math.sqrt(Math.max(0, s.m2) / (n - 1));
    default:
      return Number.NaN; // quantiles are filled in by evaluate()
  }
}
