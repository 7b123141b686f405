/**
 * The sorted values of a run of consecutive panes, kept from one sliding window to the next so that
 * an exact quantile at close costs one linear merge (drop the panes that left, add the panes that
 * came) instead of sorting every value of the window again.
 *
 * The order is Float64Array's sort order (−0 before +0), the one the exact quantile has always read
 * from, so the values at every rank are the same, bit for bit. Readings are finite: no NaN.
 */
import { clear } from './arrays.js';
import type { QuantileState } from './quantile.js';

/** a strictly before b in Float64Array sort order. */
function before(a: number, b: number): boolean {
  return a < b || (a === 0 && b === 0 && 1 / a < 1 / b);
}

/** a and b are the same value (Object.is, for finite numbers). */
function same(a: number, b: number): boolean {
  return a === b && (a !== 0 || 1 / a === 1 / b);
}

type Values = Float64Array<ArrayBufferLike>;

/** Up to this many values out and in, a move is done in place rather than by a merge. */
const FEW = 8;

const NONE: readonly number[] = [];

function rawOf(pane: QuantileState): readonly number[] {
  return pane.values ?? NONE;
}

let removedScratch: Values = new Float64Array(256);
let addedScratch: Values = new Float64Array(256);

function grown(buf: Values, need: number): Values {
  if (buf.length >= need) return buf;
  const next = new Float64Array(Math.max(need, buf.length * 2));
  next.set(buf);
  return next;
}

export class SlidingSortedValues {
  /** Ascending values of the panes with start in [start, end), plus `leaving`, while valid. */
  values: Values = new Float64Array(64);
  n = 0;
  private spare: Values = new Float64Array(64);
  private valid = false;
  private start = 0;
  private end = 0;
  /** Values of panes already forgotten (expired) that are still in `values`. */
  private leaving: number[] = [];

  /** A value was added to the pane starting at `paneStart`. */
  added(paneStart: number, v: number): void {
    if (!this.valid || paneStart < this.start || paneStart >= this.end) return;
    this.insert(v);
  }

  private insert(v: number): void {
    const values = grown(this.values, this.n + 1);
    this.values = values;
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (before(v, values[mid] as number)) hi = mid;
      else lo = mid + 1;
    }
    values.copyWithin(lo + 1, lo, this.n);
    values[lo] = v;
    this.n++;
  }

  /** Removes one occurrence of v (which is present). */
  private remove(v: number): void {
    const values = this.values;
    let lo = 0;
    let hi = this.n;
    // The first position not before v: v itself, since it is present.
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (before(values[mid] as number, v)) lo = mid + 1;
      else hi = mid;
    }
    values.copyWithin(lo, lo + 1, this.n);
    this.n--;
  }

  /** Removes one occurrence of r (which is present) and inserts a: remove(r) then insert(a). */
  private replace(r: number, a: number): void {
    const values = this.values;
    const n = this.n;
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (before(values[mid] as number, r)) lo = mid + 1;
      else hi = mid;
    }
    const p = lo;
    if (before(a, r)) {
      // a goes before r's place: after the values in [0, p) it is not before, as insert() puts it.
      lo = 0;
      hi = p;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (before(a, values[mid] as number)) hi = mid;
        else lo = mid + 1;
      }
      values.copyWithin(lo + 1, lo, p);
      values[lo] = a;
      return;
    }
    lo = p + 1;
    hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (before(a, values[mid] as number)) hi = mid;
      else lo = mid + 1;
    }
    values.copyWithin(p, p + 1, lo);
    values[lo - 1] = a;
  }

  /** The pane starting at `paneStart` left raw values for a sketch: it cannot be followed. */
  sketched(paneStart: number): void {
    if (paneStart >= this.start && paneStart < this.end) this.invalidate();
  }

  /** The pane is forgotten; its values stay counted until the next move. */
  forgotten(paneStart: number, pane: QuantileState): void {
    if (!this.valid || paneStart < this.start || paneStart >= this.end) return;
    const vs = pane.values;
    if (vs === null) {
      this.invalidate();
      return;
    }
    for (let i = 0; i < vs.length; i++) this.leaving.push(vs[i] as number);
  }

  invalidate(): void {
    this.valid = false;
    clear(this.leaving);
  }

  /**
   * Makes this the sorted values of panes [lo, hi) (every one raw), the window [start, end).
   * `starts` and `panes` (their quantile states) are the operator's panes, ascending, from index
   * `head` on.
   */
  moveTo(
    starts: readonly number[],
    panes: readonly QuantileState[],
    head: number,
    lo: number,
    hi: number,
    start: number,
    end: number,
  ): void {
    if (!this.valid || start < this.start || end < this.end || start >= this.end) {
      this.rebuild(panes, lo, hi, start, end);
      return;
    }
    let rn = 0;
    let removed = removedScratch;
    const leaving = this.leaving;
    removed = grown(removed, leaving.length);
    for (let i = 0; i < leaving.length; i++) removed[rn++] = leaving[i] as number;
    clear(leaving);
    // Panes that left: [this.start, start); panes that came: [this.end, end).
    let i = lo;
    while (i > head && (starts[i - 1] as number) >= this.start) i--;
    for (; i < lo; i++) {
      const vs = rawOf(panes[i] as QuantileState);
      removed = grown(removed, rn + vs.length);
      for (let k = 0; k < vs.length; k++) removed[rn++] = vs[k] as number;
    }
    let an = 0;
    let added = addedScratch;
    for (let j = hi - 1; j >= lo && (starts[j] as number) >= this.end; j--) {
      const vs = rawOf(panes[j] as QuantileState);
      added = grown(added, an + vs.length);
      for (let k = 0; k < vs.length; k++) added[an++] = vs[k] as number;
    }
    removedScratch = removed;
    addedScratch = added;
    this.start = start;
    this.end = end;
    if (rn === 0 && an === 0) return;
    if (rn === 1 && an === 1) {
      // One value out, one in (panes of one reading each): one shift between their places.
      this.replace(removed[0] as number, added[0] as number);
      return;
    }
    if (rn + an <= FEW) {
      // A few values out and in (a pane or two of sparse readings): moved in place.
      for (let k = 0; k < rn; k++) this.remove(removed[k] as number);
      for (let k = 0; k < an; k++) this.insert(added[k] as number);
      return;
    }
    const R = rn > 1 ? removed.subarray(0, rn).sort() : removed;
    const A = an > 1 ? added.subarray(0, an).sort() : added;
    this.merge(R, rn, A, an);
  }

  private rebuild(panes: readonly QuantileState[], lo: number, hi: number, start: number, end: number): void {
    let n = 0;
    for (let i = lo; i < hi; i++) n += rawOf(panes[i] as QuantileState).length;
    const values = grown(this.values, n);
    this.values = values;
    let o = 0;
    for (let i = lo; i < hi; i++) {
      const vs = rawOf(panes[i] as QuantileState);
      for (let k = 0; k < vs.length; k++) values[o++] = vs[k] as number;
    }
    values.subarray(0, n).sort();
    this.n = n;
    this.start = start;
    this.end = end;
    this.valid = true;
    clear(this.leaving);
  }

  /** values := (values − R) ∪ A, all ascending; R ⊆ values. */
  private merge(R: Values, rn: number, A: Values, an: number): void {
    const src = this.values;
    const n = this.n;
    const out = grown(this.spare, n - rn + an);
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
    this.spare = src;
    this.values = out;
    this.n = o;
  }
}
