/**
 * The sorted values of a run of consecutive panes, kept from one sliding window to the next so that
 * an exact quantile at close costs one linear merge (drop the panes that left, add the panes that
 * came) instead of sorting every value of the window again.
 *
 * The order is Float64Array's sort order (−0 before +0), the one the exact quantile has always read
 * from, so the values at every rank are the same, bit for bit. Readings are finite: no NaN.
 *
 * When every quantile read is high (p75 and above: p95, p99, max), only the window's upper tail is
 * kept sorted: its `t` greatest values, at least as many as the quantiles interpolate from and at
 * most three times as many. A value that leaves or comes in below the tail costs one comparison;
 * when values left from the tail until it is short, it is found again, twice as long as needed, by
 * one sweep over the window's values. A window of 60 one-reading panes read at p95 needs 4 values.
 */
import type { PaneValues } from './pane-values.js';
import { writeQuantiles } from './quantile.js';

/** a strictly before b in Float64Array sort order. */
function before(a: number, b: number): boolean {
  return a < b || (a === 0 && b === 0 && 1 / a < 1 / b);
}

/** a and b are the same value (Object.is, for finite numbers). */
function same(a: number, b: number): boolean {
  return a === b && (a !== 0 || 1 / a === 1 / b);
}

type Values = Float64Array<ArrayBufferLike>;

/**
 * The first index in ascending values[lo..hi) whose value v is before: where insert() puts v. For
 * v ≠ 0, "v before x" is v < x, and the search halves the range without a branch on the values
 * (a mispredicted branch per step costs more than the step); zeros tell −0 from +0 the slow way.
 */
function placeOf(values: Values, v: number, lo: number, hi: number): number {
  if (v !== 0) {
    let len = hi - lo;
    while (len > 1) {
      const half = len >>> 1;
      lo += +((values[lo + half - 1] as number) <= v) * half;
      len -= half;
    }
    return lo + +(len === 1 && (values[lo] as number) <= v);
  }
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (before(v, values[mid] as number)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** The first index in ascending values[0..n) not before v: v itself when it is present. */
function indexOf(values: Values, v: number, n: number): number {
  let lo = 0;
  if (v !== 0) {
    // As in placeOf: "x before v" is x < v when v ≠ 0.
    let len = n;
    while (len > 1) {
      const half = len >>> 1;
      lo += +((values[lo + half - 1] as number) < v) * half;
      len -= half;
    }
    return lo + +(len === 1 && (values[lo] as number) < v);
  }
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (before(values[mid] as number, v)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Sorts a[0..n) in Float64Array sort order: by insertion when n is small (no subarray to make, no
 * call into the runtime), else by the typed array's sort. The order is the same either way: values
 * that compare equal there are the same bits.
 */
function sortFirst(a: Values, n: number): void {
  if (n > 32) {
    a.subarray(0, n).sort();
    return;
  }
  for (let i = 1; i < n; i++) insertInto(a, i, a[i] as number);
}

/**
 * Puts v into ascending a[0..n), which becomes a[0..n + 1) (a has room): the values it is before
 * move up one, from the end. For short runs, where a search and a call into the runtime cost more.
 */
function insertInto(a: Values, n: number, v: number): void {
  let k = n;
  while (k > 0 && before(v, a[k - 1] as number)) {
    a[k] = a[k - 1] as number;
    k--;
  }
  a[k] = v;
}

/** Up to this many values out and in, a move is done in place rather than by a merge. */
const FEW = 8;

let removedScratch: Values = new Float64Array(256);
let addedScratch: Values = new Float64Array(256);
/**
 * The buffer a merge writes into; the merged window's old buffer takes its place. One spare for all
 * windows instead of one each: half the memory per window, and the merge writes into a buffer that
 * was just read, not a cold one of its own.
 */
let mergeSpare: Values = new Float64Array(64);

function grown(buf: Values, need: number): Values {
  if (buf.length >= need) return buf;
  const next = new Float64Array(Math.max(need, buf.length * 2));
  next.set(buf);
  return next;
}

/** A slot whose lowest quantile is at least this keeps only its windows' upper tail sorted. */
export const TAIL_FROM = 0.75;

export class SlidingSortedValues {
  /**
   * While valid: the ascending values of the panes with start in [start, end), plus `leaving`; of
   * them only the greatest t, values[0..t), when the tail alone is kept (`tailQ` ≥ 0).
   */
  values: Values = new Float64Array(64);
  /** How many values the window holds (the tail's too). */
  n = 0;
  private t = 0;
  /** The lowest quantile read, when only the tail is kept; −1 when every value is kept sorted. */
  private readonly tailQ: number;
  private valid = false;
  private start = 0;
  private end = 0;
  /** Values of panes already forgotten (expired) that are still in `values`: leaving[0..leavingN). */
  private leaving: Values = new Float64Array(8);
  private leavingN = 0;

  /** `lowestQ`: the lowest quantile (0–1) the slot reads. */
  constructor(lowestQ = 0) {
    this.tailQ = lowestQ >= TAIL_FROM ? lowestQ : -1;
  }

  /** A value was added to the pane starting at `paneStart`. */
  added(paneStart: number, v: number): void {
    if (!this.valid || paneStart < this.start || paneStart >= this.end) return;
    if (this.tailQ < 0) this.insert(v);
    else {
      this.n++;
      this.tailAdd(v);
    }
  }

  /** The quantiles `qs` of the values into `out[offsets[j]]` (null, NaN, when there are none). */
  write(qs: readonly number[], out: number[], offsets: readonly number[]): void {
    // The tail holds the values from index n − t on.
    writeQuantiles(this.values, this.n, qs, out, offsets, this.tailQ < 0 ? 0 : this.n - this.t);
  }

  /**
   * How many of the greatest values the quantiles read from n: those from the lowest index any of
   * them interpolates from, ⌊(n − 1)·q⌋ for the lowest q (interpolateSorted's).
   */
  private tailNeed(n: number): number {
    return n === 0 ? 0 : n - Math.floor((n - 1) * this.tailQ);
  }

  /** v came in: it joins the tail unless it is below the tail's least value (or the tail is empty). */
  private tailAdd(v: number): void {
    const t = this.t;
    if (t === 0 || before(v, this.values[0] as number)) return;
    const values = grown(this.values, t + 1);
    this.values = values;
    insertInto(values, t, v);
    this.t = t + 1;
  }

  /**
   * r left: from the tail unless it is below the tail's least value. A value after the least is in
   * the tail (every copy of it: the values outside are at most the least); one the same as the least
   * may be outside too, and taking the tail's copy leaves the same values.
   */
  private tailRemove(r: number): void {
    const t = this.t;
    const values = this.values;
    if (t === 0 || before(r, values[0] as number)) return;
    const k = indexOf(values, r, t);
    for (let j = k; j < t - 1; j++) values[j] = values[j + 1] as number;
    this.t = t - 1;
  }

  /**
   * The tail at least as long as the quantiles of n values need: short, it is found again among
   * the values of panes [lo, hi), twice as long as needed, so that the next values to leave from it
   * do not each cost a sweep; past three times as long, its least values are dropped (they stay in
   * the window, below it).
   */
  private fitTail(pv: PaneValues, lo: number, hi: number): void {
    const need = this.tailNeed(this.n);
    const t = this.t;
    if (t < need) {
      this.sweepTail(pv, lo, hi, Math.min(this.n, 2 * need));
      return;
    }
    if (t <= 3 * need) return;
    const keep = 2 * need;
    const values = this.values;
    const drop = t - keep;
    for (let j = 0; j < keep; j++) values[j] = values[j + drop] as number;
    this.t = keep;
  }

  /** The `need` greatest values of panes [lo, hi), ascending (all of them, if fewer), in one sweep. */
  private sweepTail(pv: PaneValues, lo: number, hi: number, need: number): void {
    if (need === 0) {
      this.t = 0;
      return;
    }
    const from = hi > lo ? pv.startOf(lo) - pv.origin : 0;
    const to = hi > lo ? pv.endOf(hi - 1) - pv.origin : 0;
    const buf = pv.buf;
    const values = grown(this.values, need);
    this.values = values;
    let t = 0;
    for (let i = from; i < to; i++) {
      const v = buf[i] as number;
      if (t < need) insertInto(values, t++, v);
      else if (before(values[0] as number, v)) {
        // After the least: the least leaves, v goes in its place among the rest.
        let k = 1;
        while (k < t && !before(v, values[k] as number)) {
          values[k - 1] = values[k] as number;
          k++;
        }
        values[k - 1] = v;
      }
    }
    this.t = t;
  }

  private insert(v: number): void {
    const values = grown(this.values, this.n + 1);
    this.values = values;
    const lo = placeOf(values, v, 0, this.n);
    values.copyWithin(lo + 1, lo, this.n);
    values[lo] = v;
    this.n++;
  }

  /** Removes one occurrence of v (which is present). */
  private remove(v: number): void {
    const values = this.values;
    const lo = indexOf(values, v, this.n);
    values.copyWithin(lo, lo + 1, this.n);
    this.n--;
  }

  /** Removes one occurrence of r (which is present) and inserts a: remove(r) then insert(a). */
  private replace(r: number, a: number): void {
    const values = this.values;
    let k = indexOf(values, r, this.n);
    const last = this.n - 1;
    // The values between r's place and a's move by one, toward r's, compared as they move: the
    // distance is short (about a third of the window on average), and one search is saved. For
    // a ≠ 0, "a before x" is a < x: the loops compare numbers only.
    if (a !== 0) {
      if (a < r)
        while (k > 0 && a < (values[k - 1] as number)) {
          values[k] = values[k - 1] as number;
          k--;
        }
      else
        while (k < last && a >= (values[k + 1] as number)) {
          values[k] = values[k + 1] as number;
          k++;
        }
    } else if (before(a, r)) {
      // a goes before r's place: the values before r that a is before move up one.
      while (k > 0 && before(a, values[k - 1] as number)) {
        values[k] = values[k - 1] as number;
        k--;
      }
    } else {
      // a goes after r's place: the values after r that a is not before move down one.
      while (k < last && !before(a, values[k + 1] as number)) {
        values[k] = values[k + 1] as number;
        k++;
      }
    }
    values[k] = a;
  }

  /** The pane starting at `paneStart` left raw values for a sketch: it cannot be followed. */
  sketched(paneStart: number): void {
    if (paneStart >= this.start && paneStart < this.end) this.invalidate();
  }

  /** The pane is forgotten; its values stay counted until the next move. */
  forgotten(paneStart: number, pv: PaneValues, i: number): void {
    if (!this.valid || paneStart < this.start || paneStart >= this.end) return;
    if (pv.sketchOf(i) !== null) {
      this.invalidate();
      return;
    }
    const buf = pv.buf;
    const from = pv.startOf(i) - pv.origin;
    const to = pv.endOf(i) - pv.origin;
    let n = this.leavingN;
    const leaving = grown(this.leaving, n + to - from);
    this.leaving = leaving;
    for (let k = from; k < to; k++) leaving[n++] = buf[k] as number;
    this.leavingN = n;
  }

  invalidate(): void {
    this.valid = false;
    this.leavingN = 0;
  }

  /**
   * Makes this the sorted values of panes [lo, hi) (every one raw), the window [start, end).
   * `starts` and `pv` (their values) are the operator's panes, ascending, from index `head` on.
   */
  moveTo(
    starts: readonly number[],
    pv: PaneValues,
    head: number,
    lo: number,
    hi: number,
    start: number,
    end: number,
  ): void {
    if (!this.valid || start < this.start || end < this.end || start >= this.end) {
      this.rebuild(pv, lo, hi, start, end);
      return;
    }
    // Panes that left: [this.start, start), those forgotten already in `leaving`, the others from
    // index `left` to lo; panes that came: [this.end, end), from index `came` to hi. Consecutive
    // panes' values are consecutive in pv.buf.
    let left = lo;
    while (left > head && (starts[left - 1] as number) >= this.start) left--;
    let came = hi;
    while (came > lo && (starts[came - 1] as number) >= this.end) came--;
    this.start = start;
    this.end = end;
    const o = pv.origin;
    const leftFrom = left < lo ? pv.startOf(left) - o : 0;
    const leftTo = left < lo ? pv.endOf(lo - 1) - o : 0;
    const cameFrom = came < hi ? pv.startOf(came) - o : 0;
    const cameTo = came < hi ? pv.endOf(hi - 1) - o : 0;
    const ln = this.leavingN;
    this.leavingN = 0;
    const rn = ln + leftTo - leftFrom;
    const an = cameTo - cameFrom;
    const buf = pv.buf;
    if (this.tailQ >= 0) {
      const leaving = this.leaving;
      for (let k = 0; k < ln; k++) this.tailRemove(leaving[k] as number);
      for (let k = leftFrom; k < leftTo; k++) this.tailRemove(buf[k] as number);
      for (let k = cameFrom; k < cameTo; k++) this.tailAdd(buf[k] as number);
      this.n += an - rn;
      // Also when nothing moved: a value added since may have left the tail short.
      this.fitTail(pv, lo, hi);
      return;
    }
    if (rn === 0 && an === 0) return;
    if (rn === 1 && an === 1) {
      // One value out, one in (panes of one reading each): one shift between their places.
      this.replace(
        ln === 1 ? (this.leaving[0] as number) : (buf[leftFrom] as number),
        buf[cameFrom] as number,
      );
      return;
    }
    // Copied by loops: a subarray to set() from is an object made per move.
    const removed = grown(removedScratch, rn);
    const leaving = this.leaving;
    for (let k = 0; k < ln; k++) removed[k] = leaving[k] as number;
    for (let k = leftFrom; k < leftTo; k++) removed[ln + k - leftFrom] = buf[k] as number;
    const added = grown(addedScratch, an);
    for (let k = cameFrom; k < cameTo; k++) added[k - cameFrom] = buf[k] as number;
    removedScratch = removed;
    addedScratch = added;
    if (rn + an <= FEW) {
      // A few values out and in (a pane or two of sparse readings): moved in place.
      for (let k = 0; k < rn; k++) this.remove(removed[k] as number);
      for (let k = 0; k < an; k++) this.insert(added[k] as number);
      return;
    }
    sortFirst(removed, rn);
    sortFirst(added, an);
    this.merge(removed, rn, added, an);
  }

  private rebuild(pv: PaneValues, lo: number, hi: number, start: number, end: number): void {
    // Consecutive panes' values are consecutive in pv.buf.
    const from = hi > lo ? pv.startOf(lo) - pv.origin : 0;
    const n = hi > lo ? pv.endOf(hi - 1) - pv.origin - from : 0;
    if (this.tailQ >= 0) this.sweepTail(pv, lo, hi, Math.min(n, 2 * this.tailNeed(n)));
    else {
      const values = grown(this.values, n);
      this.values = values;
      values.set(pv.buf.subarray(from, from + n));
      values.subarray(0, n).sort();
    }
    this.n = n;
    this.start = start;
    this.end = end;
    this.valid = true;
    this.leavingN = 0;
  }

  /** values := (values − R) ∪ A, all ascending; R ⊆ values. */
  private merge(R: Values, rn: number, A: Values, an: number): void {
    const src = this.values;
    const n = this.n;
    const out = grown(mergeSpare, n - rn + an);
    let o = 0;
    let r = 0;
    let a = 0;
    for (let i = 0; i < n; i++) {
      const x = src[i] as number;
      if (r < rn && same(x, R[r] as number)) {
        r++;
        continue;
      }
      while (a < an && before(A[a] as number, x)) out[o++] = A[a++] as number;
      out[o++] = x;
    }
    while (a < an) out[o++] = A[a++] as number;
    mergeSpare = src;
    this.values = out;
    this.n = o;
  }
}
