/**
 * The window operator of count windows for one group (SPEC §2, fine print 8): in arrival order, every
 * `slide` readings (default `size`) a window of the last `size` readings fires; watermarks play no
 * part, so nothing is ever late. Only complete windows are emitted, never a partial one, not even at
 * the end of input. `start`/`end` are the smallest and largest ts in the window; revision is 0.
 */
import type { AggregationPlan } from './aggregates.js';
import { type FiredWindow, Placement, type WindowOperator } from './window-operator.js';

export class CountWindowOperator implements WindowOperator {
  private readonly metrics: string[];
  private readonly values: Float64Array;
  private readonly ts: Float64Array;
  private readonly seqs: Float64Array;
  private seen = 0;

  constructor(
    private readonly size: number,
    private readonly slide: number,
    private readonly plan: AggregationPlan,
  ) {
    this.metrics = new Array<string>(size);
    this.values = new Float64Array(size);
    this.ts = new Float64Array(size);
    this.seqs = new Float64Array(size);
  }

  place(
    metric: string,
    value: number,
    ts: number,
    seq: number,
    _watermark: number,
    fired: FiredWindow[],
  ): Placement {
    const at = this.seen % this.size;
    this.metrics[at] = metric;
    this.values[at] = value;
    this.ts[at] = ts;
    this.seqs[at] = seq;
    this.seen++;
    if (this.seen >= this.size && (this.seen - this.size) % this.slide === 0) fired.push(this.fire());
    return Placement.Placed;
  }

  advance(_watermark: number, _fired: FiredWindow[]): void {}

  /** No reading that a later window would include: none yet, or tumbling and just fired. */
  isEmpty(): boolean {
    return this.seen === 0 || (this.slide === this.size && this.seen % this.size === 0);
  }

  private fire(): FiredWindow {
    const state = this.plan.newState();
    let start = Number.POSITIVE_INFINITY;
    let end = Number.NEGATIVE_INFINITY;
    // Oldest first, so ties on ts keep their arrival order for first/last.
    for (let k = 0; k < this.size; k++) {
      const i = (this.seen + k) % this.size;
      const t = this.ts[i] as number;
      if (t < start) start = t;
      if (t > end) end = t;
      this.plan.add(state, this.metrics[i] as string, this.values[i] as number, t, this.seqs[i] as number);
    }
    const values = new Array<number>(this.plan.aliases.length + 1);
    const count = this.plan.evaluate([state], values);
    values[this.plan.aliases.length] = count;
    return { start, end, count, values, revision: 0 };
  }
}
