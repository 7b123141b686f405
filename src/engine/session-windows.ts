/**
 * The window operator of session windows for one group (SPEC §2, fine print 6).
 *
 * A reading joins every live session with `first − gap < t < last + gap` (strict); a reading that
 * joins several bridges them and they merge. A session's window is `[first, last + gap)`; it closes
 * once the watermark reaches its end and stays live while `watermark < end + lateness` (with lateness
 * 0 a closed session is forgotten at once). A merged session takes the largest revision among its
 * parts + 1 and, if it is already closed, is re-emitted at once. A reading that starts a new session
 * that is already closed but live is emitted at once as revision 0, like a tumbling window that
 * closed empty; one whose new session would already be expired is dropped as late.
 */
import type { AggregationPlan, WindowState } from './aggregates.js';
import { type FiredWindow, Placement, type WindowOperator } from './window-operator.js';

interface Session {
  first: number;
  last: number;
  state: WindowState;
  /** Last revision emitted; −1 while never emitted. */
  revision: number;
  /** Changed since it was last emitted. */
  pending: boolean;
}

export class SessionWindowOperator implements WindowOperator {
  /** Live sessions, ordered by `first`; they never overlap, so `last` is ordered too. */
  private sessions: Session[] = [];

  constructor(
    private readonly gap: number,
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
    const gap = this.gap;
    const sessions = this.sessions;
    let lo = -1;
    let hi = -1;
    for (let i = 0; i < sessions.length; i++) {
      const s = sessions[i] as Session;
      if (s.first - gap < ts && ts < s.last + gap) {
        if (lo < 0) lo = i;
        hi = i;
      } else if (s.first - gap >= ts) break;
    }
    let target: Session;
    if (lo < 0) {
      if (watermark >= ts + gap + this.lateness) return Placement.Late;
      target = { first: ts, last: ts, state: this.plan.newState(), revision: -1, pending: true };
      let at = sessions.length;
      while (at > 0 && (sessions[at - 1] as Session).first > ts) at--;
      sessions.splice(at, 0, target);
    } else {
      target = sessions[lo] as Session;
      for (let i = lo + 1; i <= hi; i++) {
        const other = sessions[i] as Session;
        this.plan.merge(target.state, other.state);
        if (other.first < target.first) target.first = other.first;
        if (other.last > target.last) target.last = other.last;
        if (other.revision > target.revision) target.revision = other.revision;
      }
      if (hi > lo) sessions.splice(lo + 1, hi - lo);
      if (ts < target.first) target.first = ts;
      if (ts > target.last) target.last = ts;
      target.pending = true;
    }
    this.plan.add(target.state, metric, value, ts, seq);
    if (watermark >= target.last + gap) {
      // Already closed: a late reading or a merge re-emits at once.
      target.revision++;
      target.pending = false;
      fired.push(this.fire(target));
    }
    return Placement.Placed;
  }

  isEmpty(): boolean {
    return this.sessions.length === 0;
  }

  advance(watermark: number, fired: FiredWindow[]): void {
    const gap = this.gap;
    const sessions = this.sessions;
    let keep = 0;
    for (let i = 0; i < sessions.length; i++) {
      const s = sessions[i] as Session;
      const end = s.last + gap;
      if (end <= watermark && s.pending) {
        s.revision++;
        s.pending = false;
        fired.push(this.fire(s));
      }
      if (end + this.lateness > watermark) sessions[keep++] = s;
    }
    sessions.length = keep;
  }

  private fire(s: Session): FiredWindow {
    const values = new Array<number>(this.plan.aliases.length + 1);
    const count = this.plan.evaluate([s.state], values);
    values[this.plan.aliases.length] = count;
    return { start: s.first, end: s.last + this.gap, count, values, revision: s.revision };
  }
}
