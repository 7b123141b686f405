import { performance } from 'node:perf_hooks';
import type { Clock, TimerHandle } from './clock.js';

/** Cumulative event-loop time in ms: waiting for input (`idle`) and running callbacks (`active`). */
export interface LoopTimes {
  idle: number;
  active: number;
}

export interface KeptUpOptions {
  /** How often the loop is sampled (ms). */
  every: number;
  /** A sample this much later than due (ms) means the loop was stuck: only `every + lateBound` counts. */
  lateBound: number;
  /** A sample whose share of busy loop time is at least this found the gateway behind: it counts nothing. */
  saturated: number;
}

const DEFAULTS: KeptUpOptions = { every: 50, lateBound: 100, saturated: 0.95 };

/**
 * The time during which the gateway kept up with its input (SPEC §2 idleness, fine print 16): wall
 * time, sampled every `every` ms, except the samples in which readings may have waited unprocessed
 * in socket buffers. Those are samples in which the event loop never waited for input (it was
 * saturated: input came faster than it was processed) and the part of a sample beyond `lateBound`
 * late (one long callback held everything up: a large commit, a GC pause, a stopped process).
 *
 * The engine is handed this clock for idleness only, so that a device is declared idle after
 * `idleTimeout` of time in which its readings could not have been waiting; it never measures the
 * loop itself. `now()` moves only at samples: a tick right after a stall sees none of the stall.
 */
export class KeptUpClock implements Clock {
  private kept: number;
  private lastWall: number;
  private lastLoop: LoopTimes;
  private probe: TimerHandle | null = null;
  private readonly options: KeptUpOptions;

  constructor(
    private readonly wall: Clock,
    options: Partial<KeptUpOptions> = {},
    private readonly loop: () => LoopTimes = () => performance.eventLoopUtilization(),
  ) {
    this.options = { ...DEFAULTS, ...options };
    this.kept = wall.now();
    this.lastWall = this.kept;
    this.lastLoop = loop();
  }

  start(): void {
    if (this.probe) return;
    // Not sampled while stopped: that time counts as kept up (nothing was read meanwhile).
    const now = this.wall.now();
    this.kept += Math.max(0, now - this.lastWall);
    this.lastWall = now;
    this.lastLoop = this.loop();
    this.probe = this.wall.setInterval(() => this.sample(), this.options.every);
  }

  stop(): void {
    this.probe?.cancel();
    this.probe = null;
  }

  /** Kept-up time, in ms on the scale of the wall clock it started from. */
  now(): number {
    return this.kept;
  }

  /** Wall time the gateway has not kept up since the start (for the metric). */
  get behindMs(): number {
    return this.wall.now() - this.kept;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.wall.setTimeout(fn, ms);
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    return this.wall.setInterval(fn, ms);
  }

  private sample(): void {
    const t = this.wall.now();
    const loop = this.loop();
    const elapsed = t - this.lastWall;
    const idle = loop.idle - this.lastLoop.idle;
    const active = loop.active - this.lastLoop.active;
    this.lastWall = t;
    this.lastLoop = loop;
    if (elapsed <= 0) return;
    const busy = idle + active > 0 ? active / (idle + active) : 0;
    if (busy >= this.options.saturated) return;
    this.kept += Math.min(elapsed, this.options.every + this.options.lateBound);
  }
}
