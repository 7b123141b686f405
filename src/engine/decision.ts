/**
 * The decision state machine of one (rule, group) (SPEC §2, fine print 5): `ok` → `firing` once
 * `when` has held for `for` consecutive evaluated windows; `firing` → `ok` once `clear` holds (by
 * default: `when` does not). Only transitions are reported. The state is plain data so the gateway
 * can persist it and restore it after a restart.
 */

import type { DecisionState, GroupKey } from '../model/records.js';
import type { ConditionFn } from './expression.js';

/** What must be persisted to continue a (rule, group)'s decisions exactly. */
export interface DecisionStateRecord {
  rule: string;
  key: GroupKey;
  state: DecisionState;
  /** Consecutive evaluated windows in which `when` held while `ok`. */
  streak: number;
  /** End (epoch ms) of the last evaluated window; null before the first. */
  lastEnd: number | null;
}

export interface DecisionLogic {
  when: ConditionFn;
  clear: ConditionFn;
  for: number;
}

export class DecisionMachine {
  state: DecisionState = 'ok';
  streak = 0;
  lastEnd = Number.NEGATIVE_INFINITY;

  /**
   * Evaluates one window's first result. `inEndOrder` is false for count windows, which are evaluated
   * in emission order. Returns the new state on a transition, else null.
   */
  evaluate(
    logic: DecisionLogic,
    end: number,
    env: ArrayLike<number>,
    inEndOrder: boolean,
  ): DecisionState | null {
    if (inEndOrder) {
      if (end <= this.lastEnd) return null;
      this.lastEnd = end;
    } else if (end > this.lastEnd) this.lastEnd = end;
    if (this.state === 'ok') {
      if (!logic.when(env)) {
        this.streak = 0;
        return null;
      }
      this.streak++;
      if (this.streak < logic.for) return null;
      this.state = 'firing';
      this.streak = 0;
      return 'firing';
    }
    if (!logic.clear(env)) return null;
    // The window that clears does not count towards the next streak: at most one transition per window.
    this.state = 'ok';
    this.streak = 0;
    return 'ok';
  }

  restore(r: Pick<DecisionStateRecord, 'state' | 'streak' | 'lastEnd'>): void {
    this.state = r.state === 'firing' ? 'firing' : 'ok';
    this.streak = Number.isSafeInteger(r.streak) && r.streak >= 0 ? r.streak : 0;
    this.lastEnd =
      typeof r.lastEnd === 'number' && Number.isFinite(r.lastEnd) ? r.lastEnd : Number.NEGATIVE_INFINITY;
  }
}
