/**
 * Quantiles (SPEC §2): exact, with numpy's default linear interpolation, while a window holds at most
 * EXACT_LIMIT values; above that a KLL sketch (Karnin, Lang, Liberty 2016) whose memory does not grow
 * with the number of values and whose rank error stays well under 1% (see docs/engine.md).
 *
 * Both forms are mergeable, because sliding windows are assembled from panes and sessions merge.
 */

/** Windows with at most this many values get exact quantiles. */
export const EXACT_LIMIT = 1000;

/**
 * The q-quantile (0 ≤ q ≤ 1) of ascending `sorted[0..n)`, as numpy.quantile(method='linear'):
 * virtual index (n−1)·q, then numpy's `_lerp`, which interpolates from the upper neighbour when the
 * fraction is ≥ 0.5 so that results are monotone and exact at the ends. Index i is read at
 * `sorted[i − base]`.
 */
export function interpolateSorted(sorted: ArrayLike<number>, n: number, q: number, base = 0): number {
  if (n === 0) return Number.NaN;
  const virtual = (n - 1) * q;
  const lo = Math.floor(virtual);
  const gamma = virtual - lo;
  const a = sorted[Math.min(Math.max(lo, 0), n - 1) - base] as number;
  const b = sorted[Math.min(Math.max(lo + 1, 0), n - 1) - base] as number;
  const diff = b - a;
  return gamma >= 0.5 ? b - diff * (1 - gamma) : a + diff * gamma;
}

/** xorshift32: the sketch's coin, seeded the same way every time so replays are byte-identical. */
function nextRandom(state: number): number {
  let x = state | 0;
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return x | 0;
}

const KLL_K = 512;
const KLL_C = 2 / 3;
const KLL_MIN_CAPACITY = 8;

/**
 * A KLL sketch. Level h holds items of weight 2^h; when the sketch is over its total capacity the
 * lowest over-full level is sorted and every other item (random offset) is promoted one level up.
 * Capacity of level h with H levels: max(8, ⌈k·c^(H−1−h)⌉), so total memory is about k/(1−c) = 3k
 * values however many are added.
 */
export class KllSketch {
  private levels: number[][] = [[]];
  private size = 0;
  private totalCapacity = KLL_K;
  private coin = 0x2545f491;
  n = 0;
  min = Number.POSITIVE_INFINITY;
  max = Number.NEGATIVE_INFINITY;

  add(x: number): void {
    this.n++;
    if (x < this.min) this.min = x;
    if (x > this.max) this.max = x;
    (this.levels[0] as number[]).push(x);
    this.size++;
    if (this.size >= this.totalCapacity) this.compress();
  }

  merge(other: KllSketch): void {
    for (let h = 0; h < other.levels.length; h++) {
      while (this.levels.length <= h) {
        this.levels.push([]);
        this.totalCapacity = this.capacityTotal();
      }
      const src = other.levels[h] as number[];
      const dst = this.levels[h] as number[];
      for (let i = 0; i < src.length; i++) dst.push(src[i] as number);
      this.size += src.length;
    }
    this.n += other.n;
    if (other.min < this.min) this.min = other.min;
    if (other.max > this.max) this.max = other.max;
    while (this.size >= this.totalCapacity) this.compress();
  }

  /** Retained items, for tests of the memory bound. */
  retained(): number {
    return this.size;
  }

  private capacity(h: number): number {
    const depth = this.levels.length - 1 - h;
    return Math.max(KLL_MIN_CAPACITY, Math.ceil(KLL_K * KLL_C ** depth));
  }

  private capacityTotal(): number {
    let total = 0;
    for (let h = 0; h < this.levels.length; h++) total += this.capacity(h);
    return total;
  }

  private compress(): void {
    for (let h = 0; h < this.levels.length; h++) {
      const level = this.levels[h] as number[];
      if (level.length < this.capacity(h)) continue;
      if (h + 1 >= this.levels.length) {
        this.levels.push([]);
        this.totalCapacity = this.capacityTotal();
      }
      level.sort((a, b) => a - b);
      // An odd item stays behind so the promoted half is exactly half the rest.
      const keepOne = level.length % 2 === 1 ? (level.shift() as number) : undefined;
      this.coin = nextRandom(this.coin);
      const offset = this.coin & 1;
      const up = this.levels[h + 1] as number[];
      for (let i = offset; i < level.length; i += 2) up.push(level[i] as number);
      this.size -= level.length - Math.ceil((level.length - offset) / 2);
      level.length = 0;
      if (keepOne !== undefined) level.push(keepOne);
      return;
    }
  }

  /** The value whose estimated rank is q·n (0 ≤ q ≤ 1); the exact min and max at the ends. */
  quantile(q: number): number {
    if (this.n === 0) return Number.NaN;
    if (q <= 0) return this.min;
    if (q >= 1) return this.max;
    const items: { v: number; w: number }[] = [];
    let total = 0;
    for (let h = 0; h < this.levels.length; h++) {
      const w = 2 ** h;
      for (const v of this.levels[h] as number[]) {
        items.push({ v, w });
        total += w;
      }
    }
    items.sort((a, b) => a.v - b.v);
    const target = q * total;
    let cum = 0;
    for (const it of items) {
      cum += it.w;
      if (cum >= target) return Math.min(Math.max(it.v, this.min), this.max);
    }
    return this.max;
  }
}

/**
 * The quantile state of one window or pane: raw values while there are at most EXACT_LIMIT of them,
 * then a sketch. Panes keep their raw values so a window made of small panes stays exact.
 */
export class QuantileState {
  values: number[] | null = [];
  sketch: KllSketch | null = null;

  add(x: number): void {
    const values = this.values;
    if (values !== null) {
      values.push(x);
      if (values.length > EXACT_LIMIT) this.toSketch();
      return;
    }
    (this.sketch as KllSketch).add(x);
  }

  count(): number {
    return this.values !== null ? this.values.length : (this.sketch as KllSketch).n;
  }

  private toSketch(): void {
    const sketch = new KllSketch();
    for (const v of this.values as number[]) sketch.add(v);
    this.values = null;
    this.sketch = sketch;
  }

  /** Adds `other` into this state (sessions merging, count windows). */
  merge(other: QuantileState): void {
    if (other.values !== null) {
      for (const v of other.values) this.add(v);
      return;
    }
    if (this.values !== null) this.toSketch();
    (this.sketch as KllSketch).merge(other.sketch as KllSketch);
  }
}

let scratch = new Float64Array(1024);

/** A shared buffer of at least n numbers, to gather a window's raw values in before sorting them. */
export function quantileScratch(n: number): Float64Array {
  if (scratch.length < n) scratch = new Float64Array(Math.max(n, scratch.length * 2));
  return scratch;
}

/**
 * Quantiles `qs` of ascending values [0..n) into `out[offsets[j]]`: null (NaN) each when n = 0. The
 * values from index `base` on are `sorted[0..n − base)` (the rest are not read: `base` is at most
 * the lowest index the quantiles interpolate from).
 */
export function writeQuantiles(
  sorted: ArrayLike<number>,
  n: number,
  qs: readonly number[],
  out: number[],
  offsets: readonly number[],
  base = 0,
): void {
  for (let j = 0; j < qs.length; j++)
    out[offsets[j] as number] = interpolateSorted(sorted, n, qs[j] as number, base);
}

/**
 * Evaluates quantiles `qs` (0–1) over the union of `parts`, writing them to `out[offsets[j]]`.
 * Exact when every part still holds raw values (at most EXACT_LIMIT each), else from a merged sketch.
 */
export function evaluateQuantiles(
  parts: readonly QuantileState[],
  qs: readonly number[],
  out: number[],
  offsets: readonly number[],
): void {
  let total = 0;
  let allRaw = true;
  for (const p of parts) {
    total += p.count();
    if (p.values === null) allRaw = false;
  }
  if (total === 0 || allRaw) {
    const buf = quantileScratch(total);
    let i = 0;
    for (const p of parts) {
      const vs = p.values as number[];
      for (let k = 0; k < vs.length; k++) buf[i++] = vs[k] as number;
    }
    writeQuantiles(total > 1 ? buf.subarray(0, total).sort() : buf, total, qs, out, offsets);
    return;
  }
  const sketch = new KllSketch();
  for (const p of parts) {
    if (p.values !== null) for (const v of p.values) sketch.add(v);
    else sketch.merge(p.sketch as KllSketch);
  }
  for (let j = 0; j < qs.length; j++) out[offsets[j] as number] = sketch.quantile(qs[j] as number);
}
