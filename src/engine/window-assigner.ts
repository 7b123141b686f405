/**
 * Window assigners: which windows a reading belongs to (SPEC §2). Tumbling and sliding windows are
 * `[start, end)` with starts at every multiple of `slide` (tumbling: `size`) since the Unix epoch.
 * Sliding windows are assembled from *panes* of gcd(size, slide) so that each reading is added to one
 * pane only, and a window is the merge of its panes when it fires.
 */
import type { WindowSpec } from '../model/rule.js';

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

export class AlignedAssigner {
  readonly size: number;
  readonly slide: number;
  readonly pane: number;

  constructor(window: Extract<WindowSpec, { type: 'tumbling' | 'sliding' }>) {
    this.size = window.size;
    this.slide = window.type === 'sliding' ? window.slide : window.size;
    this.pane = gcd(this.size, this.slide);
  }

  /** Start of the latest window that may contain `ts` (it does unless `ts` is in a gap). */
  lastStart(ts: number): number {
    return Math.floor(ts / this.slide) * this.slide;
  }

  /** Start of the pane containing `ts`. */
  paneStart(ts: number): number {
    return Math.floor(ts / this.pane) * this.pane;
  }

  /** End of the last window containing the pane that starts at `paneStart`. */
  lastEndOfPane(paneStart: number): number {
    return this.lastStart(paneStart) + this.size;
  }
}
