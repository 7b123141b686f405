import type { ManualClock } from '../../src/runtime/clock.js';
import type { LoopTimes } from '../../src/runtime/kept-up-clock.js';

/** A loop meter on the manual clock: wall time goes to `active` while saturated, else half idle. */
export function loopMeter(wall: ManualClock) {
  const times: LoopTimes = { idle: 0, active: 0 };
  let last = wall.now();
  const meter = {
    saturated: false,
    read(): LoopTimes {
      const dt = wall.now() - last;
      last = wall.now();
      if (meter.saturated) times.active += dt;
      else {
        times.idle += dt / 2;
        times.active += dt / 2;
      }
      return { ...times };
    },
  };
  return meter;
}
