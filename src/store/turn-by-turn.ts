import type { Clock, TimerHandle } from '../runtime/clock.js';

/**
 * Work cut into steps by a generator (each `yield` ends one), run one step per timer turn of the
 * clock: a long job such as a retention pass over millions of rows leaves the event loop to API
 * requests, commits and the watchdog's ping between its steps. On a ManualClock the steps run as a
 * test advances it, in order with the test's own timers.
 */
export class TurnByTurn {
  private turn: TimerHandle | null = null;
  private done = false;
  private resolve: () => void = () => {};
  private reject: (err: unknown) => void = () => {};
  /** Settles after the last step, or on cancel(); rejects with the error of a step that threw. */
  readonly finished: Promise<void>;

  private constructor(
    private readonly clock: Clock,
    private readonly steps: Iterator<unknown>,
    private readonly onEnd: () => void,
  ) {
    this.finished = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** Schedules the first step on the next turn; `onEnd` runs right after the last one (not on cancel). */
  static start(clock: Clock, steps: Iterator<unknown>, onEnd: () => void = () => {}): TurnByTurn {
    const task = new TurnByTurn(clock, steps, onEnd);
    task.next();
    return task;
  }

  get running(): boolean {
    return !this.done;
  }

  /** No further step runs (steps are synchronous: none is ever half done). */
  cancel(): void {
    if (this.done) return;
    this.turn?.cancel();
    this.steps.return?.();
    this.end();
  }

  private next(): void {
    this.turn = this.clock.setTimeout(() => this.step(), 0);
  }

  private step(): void {
    this.turn = null;
    let last: IteratorResult<unknown>;
    try {
      last = this.steps.next();
    } catch (err) {
      this.end(err);
      return;
    }
    if (!last.done) {
      this.next();
      return;
    }
    this.end();
    this.onEnd();
  }

  private end(err?: unknown): void {
    this.done = true;
    if (err === undefined) this.resolve();
    else this.reject(err);
  }
}
