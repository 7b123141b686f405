/**
 * What every window operator (tumbling/sliding, session, count) offers the rule runner: place a
 * reading, and fire what a watermark closed. Firing produces FiredWindow values that the runner turns
 * into result records and feeds to the decision state machine.
 */

export interface FiredWindow {
  start: number;
  end: number;
  count: number;
  /** One per alias, NaN for null; plus a last slot for `count` (the decision environment). */
  values: number[];
  revision: number;
}

/** Where a reading went. */
export enum Placement {
  /** Into at least one live window. */
  Placed = 0,
  /** Fits windows, but none is live any more: dropped as late (side output). */
  Late = 1,
  /** Fits no window at all (a gap of a sliding window with slide > size): not late, fine print 14. */
  NoWindow = 2,
}

export interface WindowOperator {
  /**
   * Adds a reading given the group's watermark. Windows that must be (re-)emitted at once — late
   * readings into closed but live windows, merges into closed sessions — are pushed to `fired`, in
   * (end, start) order.
   */
  place(
    metric: string,
    value: number,
    ts: number,
    seq: number,
    watermark: number,
    fired: FiredWindow[],
  ): Placement;
  /** Fires windows the watermark has closed, in (end, start) order, and forgets expired ones. */
  advance(watermark: number, fired: FiredWindow[]): void;
  /** Holds nothing a new operator would not: the group can be forgotten (see RuleRunner). */
  isEmpty(): boolean;
}
