import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/runtime/clock.js';
import { KeptUpClock } from '../../src/runtime/kept-up-clock.js';
import { loopMeter } from '../helpers/loop-meter.js';

describe('KeptUpClock', () => {
  it('follows the wall clock while the gateway keeps up', () => {
    const wall = new ManualClock(1_000_000);
    const meter = loopMeter(wall);
    const kept = new KeptUpClock(wall, {}, meter.read);
    kept.start();
    wall.advance(10_000);
    assert.equal(kept.now(), 1_010_000);
    assert.equal(kept.behindMs, 0);
  });

  it('does not count samples in which the loop never waited for input (readings queued)', () => {
    const wall = new ManualClock(0);
    const meter = loopMeter(wall);
    const kept = new KeptUpClock(wall, {}, meter.read);
    kept.start();
    wall.advance(1_000);
    meter.saturated = true;
    wall.advance(5_000);
    assert.equal(kept.now(), 1_000, 'five saturated seconds count nothing');
    meter.saturated = false;
    wall.advance(1_000);
    assert.equal(kept.now(), 2_000);
    assert.equal(kept.behindMs, 5_000);
  });

  it('counts a blocked loop only up to the bound, and moves only at samples', () => {
    const wall = new ManualClock(0);
    const meter = loopMeter(wall);
    const kept = new KeptUpClock(wall, { every: 50, lateBound: 100 }, meter.read);
    kept.start();
    wall.advance(1_000);
    // One 3 s callback: no timer runs meanwhile; what reads the clock right after sees none of it.
    wall.jump(3_000);
    assert.equal(kept.now(), 1_000);
    wall.advance(0);
    assert.equal(kept.now(), 1_150, 'the late sample counts its period and the bound');
    wall.advance(1_000);
    assert.equal(kept.now(), 2_150);
  });
});
