import type { Clock } from '../../runtime/clock.js';
import { pause } from './waitress.js';

interface Job {
  run: () => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (reason: unknown) => void;
}

/**
 * Runs jobs one at a time in arrival order, with at least `gap` ms of quiet between the end of one
 * job and the start of the next: a Modbus bus carries one request at a time, and RTU needs a
 * silent interval between frames. A job that fails does not stop the queue.
 */
export class SerialQueue {
  private readonly jobs: Job[] = [];
  private running = false;
  private lastEnd = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly clock: Clock,
    private readonly gap: number,
  ) {}

  /** Jobs waiting (not counting the one running). */
  get waiting(): number {
    return this.jobs.length;
  }

  get busy(): boolean {
    return this.running;
  }

  push<T>(run: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.jobs.push({ run, resolve: resolve as (value: unknown) => void, reject });
      if (!this.running) void this.pump();
    });
  }

  /** Rejects every waiting job with `reason` (the running one finishes on its own). */
  clear(reason: Error): void {
    for (const job of this.jobs.splice(0)) job.reject(reason);
  }

  private async pump(): Promise<void> {
    this.running = true;
    try {
      for (let job = this.jobs.shift(); job; job = this.jobs.shift()) {
        await pause(this.clock, this.lastEnd + this.gap - this.clock.now());
        try {
          job.resolve(await job.run());
        } catch (err) {
          job.reject(err);
        } finally {
          this.lastEnd = this.clock.now();
        }
      }
    } finally {
      this.running = false;
    }
  }
}
