/**
 * Time as an injected service. The engine and every timer-driven part take a Clock, so live mode,
 * replay and tests share one code path and tests advance time instead of sleeping.
 */
export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Runs `fn` once after `ms`. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Runs `fn` every `ms` until cancelled. */
  setInterval(fn: () => void, ms: number): TimerHandle;
}

/** The wall clock, for live mode. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
  setInterval(fn, ms) {
    const t = setInterval(fn, ms);
    return { cancel: () => clearInterval(t) };
  },
};

interface ScheduledTimer {
  at: number;
  seq: number;
  every: number | null;
  fn: () => void;
  cancelled: boolean;
}

/** A clock that moves only when told to: for tests and deterministic replays. */
export class ManualClock implements Clock {
  private current: number;
  private timers: ScheduledTimer[] = [];
  private seq = 0;

  constructor(start = 0) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.schedule(fn, ms, null);
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    return this.schedule(fn, ms, Math.max(1, ms));
  }

  /** Moves time forward by `ms`, running every timer that falls due, in time order. */
  advance(ms: number): void {
    this.advanceTo(this.current + ms);
  }

  /**
   * Moves time forward by `ms` without running any timer, as a blocked event loop lets time pass:
   * what fell due runs at the next advance, late (an interval timer once per missed period).
   */
  jump(ms: number): void {
    this.current += ms;
  }

  advanceTo(target: number): void {
    for (;;) {
      const next = this.nextDue(target);
      if (!next) break;
      this.current = Math.max(this.current, next.at);
      if (next.every !== null) next.at += next.every;
      else next.cancelled = true;
      next.fn();
    }
    this.timers = this.timers.filter((t) => !t.cancelled);
    this.current = Math.max(this.current, target);
  }

  /** Timers still waiting to run. */
  pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  private nextDue(target: number): ScheduledTimer | undefined {
    let best: ScheduledTimer | undefined;
    for (const t of this.timers) {
      if (t.cancelled || t.at > target) continue;
      if (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    }
    return best;
  }

  private schedule(fn: () => void, ms: number, every: number | null): TimerHandle {
    const timer: ScheduledTimer = {
      at: this.current + Math.max(0, ms),
      seq: this.seq++,
      every,
      fn,
      cancelled: false,
    };
    this.timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }
}
