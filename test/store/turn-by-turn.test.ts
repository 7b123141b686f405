import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/runtime/clock.js';
import { TurnByTurn } from '../../src/store/turn-by-turn.js';

describe('TurnByTurn', () => {
  /** Steps that log their number; `throwAt` throws instead. */
  function* steps(log: string[], count: number, throwAt = -1): Generator<void, void> {
    for (let i = 1; i <= count; i++) {
      if (i === throwAt) throw new Error(`step ${i}`);
      log.push(`step ${i}`);
      yield;
    }
  }

  it('runs one step per turn, none in the caller’s, and onEnd right after the last', async () => {
    const clock = new ManualClock();
    const log: string[] = [];
    const task = TurnByTurn.start(clock, steps(log, 3), () => log.push('end'));
    assert.equal(log.length, 0, 'nothing runs in the caller’s turn');
    const other = () => {
      log.push('other');
      if (task.running) clock.setTimeout(other, 0);
    };
    clock.setTimeout(other, 0);
    clock.advance(0);
    await task.finished;
    assert.deepEqual(log, ['step 1', 'other', 'step 2', 'other', 'step 3', 'other', 'end', 'other']);
    assert.equal(task.running, false);
  });

  it('cancel() runs no further step and settles without onEnd', async () => {
    const clock = new ManualClock();
    const log: string[] = [];
    const task = TurnByTurn.start(clock, steps(log, 5), () => log.push('end'));
    clock.setTimeout(() => task.cancel(), 0);
    clock.advance(0);
    await task.finished;
    assert.deepEqual(log, ['step 1']);
    assert.equal(clock.pending(), 0);
  });

  it('a step that throws ends the task, and finished rejects with its error', async () => {
    const clock = new ManualClock();
    const log: string[] = [];
    const task = TurnByTurn.start(clock, steps(log, 5, 2), () => log.push('end'));
    clock.advance(0);
    await assert.rejects(task.finished, /step 2/);
    assert.deepEqual(log, ['step 1']);
    assert.equal(task.running, false);
    assert.equal(clock.pending(), 0);
  });
});
