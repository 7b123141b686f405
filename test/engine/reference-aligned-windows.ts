/**
 * The tumbling/sliding window operator as it was before stream slicing (issue 19), kept verbatim as
 * the reference that test/engine/sliding-equivalence.test.ts compares the sliced operator with.
 * Each reading walks every window that contains it (size/slide of them) and keeps a record per
 * window; a window's result is the merge of its panes.
 *
 * State: panes (partial aggregates of gcd(size, slide) each) and window records (start, end and the
 * last revision emitted) for the windows that have readings and are still live. The trigger fires a
 * window once the watermark reaches its end; allowed lateness keeps it live while
 * `watermark < end + lateness` (fine print 4), during which each late reading re-emits it with the
 * next revision, cumulatively.
 */
import type { AggregationPlan, WindowState } from '../../src/engine/aggregates.js';
import type { AlignedAssigner } from '../../src/engine/window-assigner.js';
import { type FiredWindow, Placement, type WindowOperator } from '../../src/engine/window-operator.js';

interface Pane {
  start: number;
  /** The pane can be forgotten once the watermark reaches this: its last window is discarded. */
  expiry: number;
  state: WindowState;
}

interface WindowRecord {
  start: number;
  end: number;
  /** Last revision emitted; −1 while never emitted. */
  revision: number;
}

export class ReferenceAlignedWindowOperator implements WindowOperator {
  private panes: Pane[] = [];
  private windows: WindowRecord[] = [];
  private readonly late: WindowRecord[] = [];
  private readonly parts: WindowState[] = [];

  constructor(
    private readonly assigner: AlignedAssigner,
    private readonly plan: AggregationPlan,
    private readonly lateness: number,
  ) {}

  place(
    metric: string,
    value: number,
    ts: number,
    seq: number,
    watermark: number,
    fired: FiredWindow[],
  ): Placement {
    const { size, slide } = this.assigner;
    const windows = this.windows;
    let fits = false;
    let live = false;
    let wi = windows.length - 1;
    // Windows containing ts, latest first: starts s with ts − size < s ≤ ts, at multiples of slide.
    for (let s = this.assigner.lastStart(ts); s > ts - size; s -= slide) {
      fits = true;
      const end = s + size;
      // Earlier windows end earlier still: once one is discarded, so are the rest.
      if (watermark >= end + this.lateness) break;
      live = true;
      while (wi >= 0 && (windows[wi] as WindowRecord).start > s) wi--;
      let rec: WindowRecord;
      if (wi >= 0 && (windows[wi] as WindowRecord).start === s) rec = windows[wi] as WindowRecord;
      else {
        rec = { start: s, end, revision: -1 };
        windows.splice(wi + 1, 0, rec);
      }
      // Closed but live: re-emitted at once (revision 0 if it closed empty), fine print 4.
      if (watermark >= end) this.late.push(rec);
    }
    if (!live) {
      this.late.length = 0;
      return fits ? Placement.Late : Placement.NoWindow;
    }
    this.plan.add(this.paneFor(ts), metric, value, ts, seq);
    for (let i = this.late.length - 1; i >= 0; i--) {
      const rec = this.late[i] as WindowRecord;
      rec.revision++;
      fired.push(this.fire(rec));
    }
    this.late.length = 0;
    return Placement.Placed;
  }

  advance(watermark: number, fired: FiredWindow[]): void {
    const windows = this.windows;
    let discard = 0;
    for (let i = 0; i < windows.length; i++) {
      const rec = windows[i] as WindowRecord;
      if (rec.end > watermark) break;
      if (rec.revision < 0) {
        rec.revision = 0;
        fired.push(this.fire(rec));
      }
      if (rec.end + this.lateness <= watermark && discard === i) discard = i + 1;
    }
    if (discard > 0) this.windows.splice(0, discard);
    let drop = 0;
    while (drop < this.panes.length && (this.panes[drop] as Pane).expiry <= watermark) drop++;
    if (drop > 0) this.panes.splice(0, drop);
  }

  isEmpty(): boolean {
    return this.panes.length === 0 && this.windows.length === 0;
  }

  private paneFor(ts: number): WindowState {
    const start = this.assigner.paneStart(ts);
    const panes = this.panes;
    let i = panes.length - 1;
    while (i >= 0 && (panes[i] as Pane).start > start) i--;
    if (i >= 0 && (panes[i] as Pane).start === start) return (panes[i] as Pane).state;
    const pane: Pane = {
      start,
      expiry: this.assigner.lastEndOfPane(start) + this.lateness,
      state: this.plan.newState(),
    };
    panes.splice(i + 1, 0, pane);
    return pane.state;
  }

  private fire(rec: WindowRecord): FiredWindow {
    const parts = this.parts;
    parts.length = 0;
    for (const p of this.panes) {
      if (p.start >= rec.end) break;
      if (p.start >= rec.start) parts.push(p.state);
    }
    const values = new Array<number>(this.plan.aliases.length + 1);
    const count = this.plan.evaluate(parts, values);
    values[this.plan.aliases.length] = count;
    return { start: rec.start, end: rec.end, count, values, revision: rec.revision };
  }
}
