/**
 * Idleness under load (SPEC §2, fine print 16): time counts toward idleTimeout only while the gateway
 * keeps up. The engine is handed the KeptUpClock; the gateway's tick runs every second of wall time.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RuleEngine } from '../../src/engine/engine.js';
import type { OutputRecord } from '../../src/model/records.js';
import { type Clock, ManualClock } from '../../src/runtime/clock.js';
import { KeptUpClock } from '../../src/runtime/kept-up-clock.js';
import { loopMeter } from '../helpers/loop-meter.js';
import { compile } from './helpers.js';

const RULE = { window: { type: 'tumbling', size: '1s' }, aggregates: { n: 'count' } }; // idleTimeout 2 s

/** A live engine whose idleness runs on `idle` (the kept-up clock, or the wall itself as before). */
function live(kind: 'kept-up' | 'wall') {
  const wall = new ManualClock(1_800_000_000_000);
  const meter = loopMeter(wall);
  let idle: Clock = wall;
  if (kind === 'kept-up') {
    const kept = new KeptUpClock(wall, {}, meter.read);
    kept.start();
    idle = kept;
  }
  const engine = new RuleEngine(compile({ ...RULE, groupBy: ['device'] }), { clock: idle, live: true });
  const out: OutputRecord[] = [];
  wall.setInterval(() => out.push(...engine.tick()), 1_000);
  /** Readings of `device` every 100 ms of event time from `from` to `to` (ms after the start). */
  const send = (device: string, from: number, to: number, start = wall.now()) => {
    const sent: { device: string; metric: string; value: number; ts: number }[] = [];
    for (let t = from; t < to; t += 100) sent.push({ device, metric: 'm', value: 1, ts: start + t });
    return sent;
  };
  return { wall, meter, engine, out, send };
}

const late = (out: OutputRecord[]) => out.filter((r) => r.type === 'late').length;
const counts = (out: OutputRecord[], device: string) =>
  out
    .filter((r) => r.type === 'result' && r.key.device === device)
    .map((r) => (r.type === 'result' ? r.count : 0));

/** 3 s of readings that wait unprocessed while the loop is saturated, then are processed. */
function stall(kind: 'kept-up' | 'wall') {
  const g = live(kind);
  const start = g.wall.now();
  for (const r of g.send('d', 0, 1_000, start)) {
    g.wall.advanceTo(r.ts);
    g.out.push(...g.engine.process(r));
  }
  g.meter.saturated = true;
  g.wall.advanceTo(start + 4_000); // the readings of 1–4 s queue; the ticks run
  g.meter.saturated = false;
  for (const r of g.send('d', 1_000, 4_000, start)) g.out.push(...g.engine.process(r));
  for (const r of g.send('d', 4_000, 5_000, start)) {
    g.wall.advanceTo(r.ts);
    g.out.push(...g.engine.process(r));
  }
  return g;
}

describe('idleness counts only the time the gateway kept up', () => {
  it('a stall while readings queue: no late drops, every window counts its readings', () => {
    const g = stall('kept-up');
    assert.equal(late(g.out), 0);
    assert.deepEqual(counts(g.out, 'd'), [10, 10, 10, 10]);
    // The contrast: on the wall clock the tick declared the device idle during the stall.
    assert.ok(late(stall('wall').out) > 0, 'the wall clock drops queued readings as late');
  });

  it('a device that stops while others keep sending: its window closes after idleTimeout', () => {
    const g = live('kept-up');
    const start = g.wall.now();
    const a = g.send('a', 0, 500, start);
    const b = g.send('b', 0, 10_000, start);
    for (const r of [...a, ...b].sort((x, y) => x.ts - y.ts)) {
      g.wall.advanceTo(r.ts);
      g.out.push(...g.engine.process(r));
      const closed = counts(g.out, 'a');
      // a's last reading came at 0.4 s: idle at 2.4 s, its window [0, 1 s) closes at the next tick.
      if (r.ts - start < 2_400) assert.deepEqual(closed, [], `${r.ts - start} ms`);
      if (r.ts - start >= 3_000) assert.deepEqual(closed, [5], `${r.ts - start} ms`);
    }
  });

  it('a sensor that stops alone: its window closes after idleTimeout', () => {
    const g = live('kept-up');
    const start = g.wall.now();
    for (const r of g.send('s', 0, 1_500, start)) {
      g.wall.advanceTo(r.ts);
      g.out.push(...g.engine.process(r));
    }
    assert.deepEqual(counts(g.out, 's'), [10]);
    g.wall.advanceTo(start + 3_399);
    assert.deepEqual(counts(g.out, 's'), [10], 'not idle before 2 s after its last reading');
    g.wall.advanceTo(start + 4_000);
    assert.deepEqual(counts(g.out, 's'), [10, 5]);
  });
});
