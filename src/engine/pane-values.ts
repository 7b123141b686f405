/**
 * The raw values one quantile slot keeps for the panes of a window operator, in one Float64Array:
 * pane i's values, in the order they came, are at [startOf(i), endOf(i)) of `buf` (read through
 * `origin`). A pane costs its values and one offset, not a QuantileState and an array of its own
 * (about 200 bytes each for panes of one reading, and a cache miss at every firing).
 *
 * Indices are the operator's pane indices, `head` included; `insertPane` and `cutPanes` follow the
 * operator's own arrays. A pane that would pass EXACT_LIMIT values takes a KLL sketch instead, built
 * from its values in the order they came, as QuantileState does, so every quantile is the same.
 */
import { EXACT_LIMIT, KllSketch, quantileScratch, writeQuantiles } from './quantile.js';

export class PaneValues {
  /** Values of the live panes, from `buf[liveFrom − origin]` to `buf[end − origin]`. */
  buf: Float64Array<ArrayBuffer> = new Float64Array(64);
  /** Where buf[0] is in the offsets' coordinates (they never move; the buffer does). */
  origin = 0;
  private end = 0;
  /** The first value of the first pane not forgotten. */
  private liveFrom = 0;
  /** Per pane, where its values start. */
  private readonly offsets: number[] = [];
  /**
   * Per pane, its sketch once it passed EXACT_LIMIT values (then none of them are in `buf`); null
   * while no pane not forgotten has one (most slots never do: no array to grow per pane).
   */
  private sketches: (KllSketch | null)[] | null = null;
  /** Panes with a sketch, among those not forgotten. */
  sketchedPanes = 0;

  startOf(i: number): number {
    return this.offsets[i] as number;
  }

  endOf(i: number): number {
    return i + 1 < this.offsets.length ? (this.offsets[i + 1] as number) : this.end;
  }

  /** Pane i's sketch, or null while its values are raw. */
  sketchOf(i: number): KllSketch | null {
    const sketches = this.sketches;
    return sketches === null ? null : (sketches[i] as KllSketch | null);
  }

  count(i: number): number {
    const sketch = this.sketchOf(i);
    return sketch !== null ? sketch.n : this.endOf(i) - (this.offsets[i] as number);
  }

  /** A new, empty pane at index i. */
  insertPane(i: number): void {
    const at = i < this.offsets.length ? (this.offsets[i] as number) : this.end;
    const sketches = this.sketches;
    if (i === this.offsets.length) {
      this.offsets.push(at);
      sketches?.push(null);
    } else {
      this.offsets.splice(i, 0, at);
      sketches?.splice(i, 0, null);
    }
  }

  /** Adds v to pane i; returns true when the pane holds a sketch (now or before). */
  add(i: number, v: number): boolean {
    const sketch = this.sketchOf(i);
    if (sketch !== null) {
      sketch.add(v);
      return true;
    }
    const at = this.endOf(i);
    if (at - (this.offsets[i] as number) === EXACT_LIMIT) {
      this.toSketch(i, v);
      return true;
    }
    if (this.end - this.origin === this.buf.length) this.makeRoom();
    const buf = this.buf;
    const o = this.origin;
    // A pane before the last (a reading out of order): the later panes' values move up one.
    if (at < this.end) buf.copyWithin(at - o + 1, at - o, this.end - o);
    const offsets = this.offsets;
    for (let j = i + 1; j < offsets.length; j++) offsets[j] = (offsets[j] as number) + 1;
    buf[at - o] = v;
    this.end++;
    return false;
  }

  /** Pane i's values and then v go into a sketch, in the order they came; they leave `buf`. */
  private toSketch(i: number, v: number): void {
    const sketch = new KllSketch();
    const from = this.offsets[i] as number;
    const to = this.endOf(i);
    const o = this.origin;
    for (let k = from; k < to; k++) sketch.add(this.buf[k - o] as number);
    sketch.add(v);
    const n = to - from;
    this.buf.copyWithin(from - o, to - o, this.end - o);
    this.end -= n;
    const offsets = this.offsets;
    for (let j = i + 1; j < offsets.length; j++) offsets[j] = (offsets[j] as number) - n;
    this.sketches ??= new Array<KllSketch | null>(offsets.length).fill(null);
    this.sketches[i] = sketch;
    this.sketchedPanes++;
  }

  /** The buffer is full: the live values move to its start, into a larger one if they fill half. */
  private makeRoom(): void {
    const live = this.end - this.liveFrom;
    const from = this.liveFrom - this.origin;
    if (live * 2 <= this.buf.length) this.buf.copyWithin(0, from, from + live);
    else {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf.subarray(from, from + live));
      this.buf = next;
    }
    this.origin = this.liveFrom;
  }

  /** Panes [head, drop) are forgotten: their values are no longer needed. */
  forget(head: number, drop: number): void {
    const sketches = this.sketches;
    if (sketches !== null) {
      for (let i = head; i < drop; i++) {
        if (sketches[i] !== null) {
          sketches[i] = null;
          this.sketchedPanes--;
        }
      }
      // The last sketch forgotten: no array to keep in step with the panes until the next one.
      if (this.sketchedPanes === 0) this.sketches = null;
    }
    this.liveFrom = drop < this.offsets.length ? (this.offsets[drop] as number) : this.end;
  }

  /** The first n panes leave the arrays (every pane: `all`), as the operator's do. */
  cutPanes(n: number, all: boolean): void {
    if (all) {
      this.offsets.length = 0;
      this.sketches = null;
      this.sketchedPanes = 0;
      this.origin = this.end;
      this.liveFrom = this.end;
    } else {
      this.offsets.splice(0, n);
      this.sketches?.splice(0, n);
    }
  }
}

/**
 * Quantiles `qs` of the union of panes [lo, hi) into `out[offsets[j]]`, as evaluateQuantiles does
 * over their QuantileStates: exact when every pane is raw (all values sorted), else from a sketch
 * that takes the panes in time order (raw values added in the order they came, sketches merged).
 */
export function paneQuantiles(
  pv: PaneValues,
  lo: number,
  hi: number,
  qs: readonly number[],
  out: number[],
  offsets: readonly number[],
): void {
  let total = 0;
  let allRaw = true;
  for (let i = lo; i < hi; i++) {
    total += pv.count(i);
    if (pv.sketchOf(i) !== null) allRaw = false;
  }
  const buf = pv.buf;
  const o = pv.origin;
  if (allRaw) {
    const scratch = quantileScratch(total);
    let n = 0;
    for (let i = lo; i < hi; i++) {
      const to = pv.endOf(i);
      for (let k = pv.startOf(i); k < to; k++) scratch[n++] = buf[k - o] as number;
    }
    writeQuantiles(total > 1 ? scratch.subarray(0, total).sort() : scratch, total, qs, out, offsets);
    return;
  }
  const sketch = new KllSketch();
  for (let i = lo; i < hi; i++) {
    const own = pv.sketchOf(i);
    if (own !== null) {
      if (own.n > 0) sketch.merge(own);
      continue;
    }
    const to = pv.endOf(i);
    for (let k = pv.startOf(i); k < to; k++) sketch.add(buf[k - o] as number);
  }
  for (let j = 0; j < qs.length; j++) out[offsets[j] as number] = sketch.quantile(qs[j] as number);
}
