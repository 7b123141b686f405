/** Idleness in live mode (SPEC §2 "Idleness"): wall-clock time from the injected Clock only. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { OutputRecord } from '../../src/model/records.js';
import { ManualClock } from '../../src/runtime/clock.js';
import { brief, engine, rd } from './helpers.js';

const rule = { window: { type: 'tumbling', size: '10s' }, aggregates: { n: 'count' } };
const json = (rs: OutputRecord[]) => JSON.parse(JSON.stringify(rs)) as Record<string, unknown>[];

describe('idleness (live mode)', () => {
  it('the last window of a sensor that stops still closes: idle after idleTimeout (default 2 × size)', () => {
    const clock = new ManualClock(1_000_000);
    const e = engine(rule, true, clock);
    assert.deepEqual(e.process(rd('d', 5, 1)), []);
    clock.advance(19_999);
    assert.deepEqual(e.tick(), []);
    clock.advance(1);
    // Idle: the group's watermark runs on with the wall clock: 5 s + 20 s elapsed ≥ 10 s.
    assert.deepEqual(brief(json(e.tick())), ['R d 0-10 n=1 rev=0']);
  });

  it('an idle device stops holding back its groups; when it speaks again behind the watermark it is late', () => {
    const clock = new ManualClock(0);
    const e = engine({ ...rule, groupBy: [], watermark: { idleTimeout: '20s' } }, true, clock);
    e.process(rd('b', 5, 1));
    const out: OutputRecord[] = [];
    for (let t = 1; t <= 25; t++) {
      clock.advanceTo(t * 1000);
      out.push(...e.process(rd('a', 5 + t, 1)));
      if (t === 19) assert.deepEqual(e.tick(), [], 'b is not idle yet: the group is held at 5');
      if (t === 20) assert.deepEqual(brief(json(e.tick())), ['R  0-10 n=5 rev=0', 'R  10-20 n=10 rev=0']);
    }
    // With b idle, a alone drives the watermark: its reading at 30 s closes [20,30) at once.
    assert.deepEqual(brief(json(out)), ['R  20-30 n=10 rev=0']);
    clock.advanceTo(30_000);
    assert.deepEqual(brief(json(e.process(rd('b', 8, 1)))), ['L b 8']);
  });

  it('replay mode has no idleness: tick does nothing and the clock is never consulted', () => {
    const clock = new ManualClock(0);
    const e = engine(rule, false, clock);
    e.process(rd('d', 5, 1));
    clock.advance(3_600_000);
    assert.deepEqual(e.tick(), []);
    assert.deepEqual(brief(json(e.flush())), ['R d 0-10 n=1 rev=0']);
  });

  it('live and replay agree on the same data when nothing goes idle', () => {
    const readings = [
      rd('a', 1, 1),
      rd('b', 2, 2),
      rd('a', 12, 3),
      rd('b', 3, 4),
      rd('b', 14, 5),
      rd('a', 31, 6),
    ];
    const clock = new ManualClock(0);
    const live = engine({ ...rule, groupBy: [], lateness: '5s' }, true, clock);
    const replay = engine({ ...rule, groupBy: [], lateness: '5s' }, false);
    const a: OutputRecord[] = [];
    const b: OutputRecord[] = [];
    for (const r of readings) {
      clock.advance(1000);
      a.push(...live.process(r), ...live.tick());
      b.push(...replay.process(r));
    }
    a.push(...live.flush());
    b.push(...replay.flush());
    assert.deepEqual(json(a), json(b));
  });
});
