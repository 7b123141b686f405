/**
 * Event-time watermarks (SPEC §2, fine print 1–3).
 *
 * Per rule, each source device has a clock: the largest event time it has shown the rule. A group's
 * watermark is the smallest of those clocks over the devices feeding the group (in live mode: the
 * non-idle ones) minus `maxOutOfOrder`, and it never goes back. When every device of a group is idle
 * (live mode), each device's clock is extrapolated by the wall-clock time since it was last heard
 * from, and the group follows the most advanced of them: an event-time clock that keeps running at
 * wall speed, so the last window of a sensor that stops still closes.
 */

/** One device's event-time clock within one rule. */
export class DeviceClock {
  maxTs = Number.NEGATIVE_INFINITY;
  /** Wall-clock time (clock.now()) of its last reading; live mode only. */
  lastArrival = 0;
  /** The groups this device feeds in the rule (a new, empty array once they are all forgotten). */
  feeds: GroupWatermark[] = [];
  /** With groupBy [device]: the device's own group, found without computing a key. */
  ownGroup: GroupWatermark | null = null;
  /** Groups it alone fed, forgotten while it was idle (RuleRunner): revived when it is heard again. */
  rested: unknown[] | null = null;
  /** With groupBy [device]: what is kept of its own group while forgotten. */
  ownRest: unknown = null;

  constructor(readonly name: string) {}
}

export interface IdlePolicy {
  maxOutOfOrder: number;
  /** null in replay (no idleness); else idleTimeout and the wall-clock now. */
  idleTimeout: number | null;
  now: number;
}

/** The watermark of one group, over the devices that feed it. */
export class GroupWatermark {
  /** Current watermark; −∞ until a device feeds the group. */
  watermark = Number.NEGATIVE_INFINITY;
  readonly devices: DeviceClock[] = [];
  /** Smallest clock over the (non-idle) feeding devices, before subtracting maxOutOfOrder. */
  minTs = Number.POSITIVE_INFINITY;

  /** Makes `d` feed this group (idempotent). */
  addDevice(d: DeviceClock): void {
    if (this.devices.length === 1 && this.devices[0] === d) return;
    if (this.devices.includes(d)) return;
    this.devices.push(d);
    d.feeds.push(this);
    if (d.maxTs < this.minTs) this.minTs = d.maxTs;
  }

  /**
   * Recomputes from the devices' clocks; returns true when the watermark moved forward. A device that
   * first feeds the group later can only lower `minTs`, never the watermark itself (fine print 3).
   */
  recompute(p: IdlePolicy): boolean {
    if (p.idleTimeout === null && this.devices.length === 1) {
      // The common case in replay: one device, no idleness.
      const only = (this.devices[0] as DeviceClock).maxTs;
      this.minTs = only;
      return this.raiseTo(only - p.maxOutOfOrder);
    }
    let min = Number.POSITIVE_INFINITY;
    let extrapolated = Number.NEGATIVE_INFINITY;
    let active = 0;
    const idle = p.idleTimeout;
    for (let i = 0; i < this.devices.length; i++) {
      const d = this.devices[i] as DeviceClock;
      if (idle !== null && p.now - d.lastArrival >= idle) {
        const x = d.maxTs + (p.now - d.lastArrival);
        if (x > extrapolated) extrapolated = x;
        continue;
      }
      active++;
      if (d.maxTs < min) min = d.maxTs;
    }
    this.minTs = min;
    const base = active > 0 ? min : extrapolated;
    if (this.devices.length === 0 || base === Number.POSITIVE_INFINITY) return false;
    return this.raiseTo(base - p.maxOutOfOrder);
  }

  /** Moves the watermark to `w` if that is forward; true when it moved. */
  raiseTo(w: number): boolean {
    if (w > this.watermark) {
      this.watermark = w;
      return true;
    }
    return false;
  }
}
