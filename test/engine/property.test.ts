/**
 * Property test: for random streams (devices with skewed, disordered clocks), the engine's output
 * equals a brute-force reference that follows SPEC §2 literally — it keeps every accepted reading and
 * recomputes each window from them, checks every group's watermark after every reading, and applies
 * the closing, lateness, revision, late-drop, decision and ordering rules as the SPEC states them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileRules } from '../../src/engine/compile.js';
import { RuleEngine } from '../../src/engine/engine.js';
import type { Reading } from '../../src/model/reading.js';
import { validateRules } from '../../src/model/rule.js';
import { ManualClock } from '../../src/runtime/clock.js';

interface Params {
  size: number;
  slide: number;
  maxOutOfOrder: number;
  lateness: number;
  byDevice: boolean;
  forN: number;
}

interface Accepted {
  r: Reading;
  seq: number;
  /** Starts of the windows it went into (those live when it arrived). */
  windows: Set<number>;
}

interface RefGroup {
  key: string;
  feeders: Set<string>;
  wm: number;
  accepted: Accepted[];
  emitted: Map<number, number>;
  state: 'ok' | 'firing';
  streak: number;
  lastEnd: number;
}

type Rec = Record<string, unknown>;

/** The reference: no panes, no indexes; everything recomputed from the kept readings. */
function reference(p: Params, readings: Reading[]): Rec[] {
  const out: Rec[] = [];
  const deviceMax = new Map<string, number>();
  const groups = new Map<string, RefGroup>();
  const iso = (t: number) => new Date(t).toISOString();
  const startsContaining = (ts: number): number[] => {
    const starts: number[] = [];
    // Every multiple of slide s with s ≤ ts < s + size.
    for (let s = Math.floor((ts - p.size) / p.slide) * p.slide; s <= ts; s += p.slide) {
      if (s <= ts && ts < s + p.size) starts.push(s);
    }
    return starts;
  };
  const result = (g: RefGroup, start: number, revision: number): Rec[] => {
    const end = start + p.size;
    const inside = g.accepted.filter((a) => a.windows.has(start));
    const vs = inside.map((a) => a.r.value);
    const byTime = [...inside].sort((a, b) => a.r.ts - b.r.ts || a.seq - b.seq);
    const values = {
      s: vs.reduce((x, y) => x + y, 0),
      lo: Math.min(...vs),
      hi: Math.max(...vs),
      f: (byTime[0] as Accepted).r.value,
      l: (byTime[byTime.length - 1] as Accepted).r.value,
    };
    const key = p.byDevice ? { device: g.key } : {};
    const recs: Rec[] = [
      {
        type: 'result',
        rule: 'p',
        key,
        start: iso(start),
        end: iso(end),
        count: inside.length,
        values,
        revision,
      },
    ];
    // Decisions: first results only, in window-end order (fine print 5).
    if (revision === 0 && end > g.lastEnd) {
      g.lastEnd = end;
      let next: 'ok' | 'firing' | null = null;
      if (g.state === 'ok') {
        if (values.hi > 5) {
          g.streak++;
          if (g.streak >= p.forN) next = 'firing';
        } else g.streak = 0;
      } else if (values.hi < 3) next = 'ok';
      if (next !== null) {
        g.state = next;
        g.streak = 0;
        recs.push({ type: 'decision', rule: 'p', key, state: next, at: iso(end), values });
      }
    }
    return recs;
  };
  const closeAll = (candidates: RefGroup[]): void => {
    const closing: { g: RefGroup; start: number }[] = [];
    for (const g of candidates) {
      const starts = new Set<number>();
      for (const a of g.accepted) for (const s of a.windows) starts.add(s);
      for (const s of starts) if (!g.emitted.has(s) && s + p.size <= g.wm) closing.push({ g, start: s });
    }
    closing.sort((a, b) => a.start - b.start || (a.g.key < b.g.key ? -1 : a.g.key > b.g.key ? 1 : 0));
    for (const c of closing) {
      c.g.emitted.set(c.start, 0);
      out.push(...result(c.g, c.start, 0));
    }
  };
  let seq = 0;
  for (const r of readings) {
    seq++;
    deviceMax.set(r.device, Math.max(deviceMax.get(r.device) ?? Number.NEGATIVE_INFINITY, r.ts));
    const key = p.byDevice ? r.device : '';
    let g = groups.get(key);
    if (!g) {
      g = {
        key,
        feeders: new Set(),
        wm: Number.NEGATIVE_INFINITY,
        accepted: [],
        emitted: new Map(),
        state: 'ok',
        streak: 0,
        lastEnd: Number.NEGATIVE_INFINITY,
      };
      groups.set(key, g);
    }
    g.feeders.add(r.device);
    const moved: RefGroup[] = [];
    for (const grp of groups.values()) {
      const min = Math.min(...[...grp.feeders].map((d) => deviceMax.get(d) as number));
      if (min - p.maxOutOfOrder > grp.wm) {
        grp.wm = min - p.maxOutOfOrder;
        moved.push(grp);
      }
    }
    const starts = startsContaining(r.ts);
    const live = starts.filter((s) => g.wm < s + p.size + p.lateness);
    if (starts.length > 0 && live.length === 0) {
      out.push({
        type: 'late',
        rule: 'p',
        reading: { device: r.device, metric: r.metric, value: r.value, ts: iso(r.ts) },
      });
    } else if (live.length > 0) {
      g.accepted.push({ r, seq, windows: new Set(live) });
      for (const s of live) {
        if (s + p.size <= g.wm) {
          const rev = (g.emitted.get(s) ?? -1) + 1;
          g.emitted.set(s, rev);
          out.push(...result(g, s, rev));
        }
      }
    }
    closeAll(moved);
  }
  for (const g of groups.values()) g.wm = Number.POSITIVE_INFINITY;
  closeAll([...groups.values()]);
  return out;
}

function engineOutput(p: Params, readings: Reading[]): Rec[] {
  const v = validateRules([
    {
      id: 'p',
      groupBy: p.byDevice ? ['device'] : [],
      window:
        p.slide === p.size
          ? { type: 'tumbling', size: p.size }
          : { type: 'sliding', size: p.size, slide: p.slide },
      watermark: { maxOutOfOrder: p.maxOutOfOrder },
      lateness: p.lateness,
      aggregates: { s: 'sum', lo: 'min', hi: 'max', f: 'first', l: 'last' },
      when: 'hi > 5',
      clear: 'hi < 3',
      for: p.forN,
    },
  ]);
  assert.ok(v.ok, JSON.stringify(v));
  const e = new RuleEngine(compileRules(v.rules), { clock: new ManualClock(0), live: false });
  const out: Rec[] = [];
  for (const r of readings) out.push(...(e.process(r) as unknown as Rec[]));
  out.push(...(e.flush() as unknown as Rec[]));
  return JSON.parse(JSON.stringify(out)) as Rec[];
}

const readingArb = fc.record({
  device: fc.constantFrom('a', 'b', 'c'),
  ts: fc.integer({ min: 0, max: 150 }),
  value: fc.integer({ min: 0, max: 9 }),
});

/** Devices with their own clock skew, so groups of several devices see a lagging one. */
const streamArb = fc
  .tuple(fc.array(readingArb, { maxLength: 40 }), fc.integer({ min: 0, max: 60 }))
  .map(([rs, skew]) =>
    rs.map<Reading>((r) => ({
      device: r.device,
      metric: 'm',
      value: r.value,
      ts: r.ts + (r.device === 'b' ? skew : 0),
    })),
  );

function check(paramsArb: fc.Arbitrary<Params>): void {
  fc.assert(
    fc.property(paramsArb, streamArb, (p, readings) => {
      assert.deepEqual(engineOutput(p, readings), reference(p, readings));
    }),
    { numRuns: 300, seed: 20261124 },
  );
}

describe('engine vs brute-force reference (fast-check)', () => {
  it('tumbling windows', () => {
    check(
      fc
        .record({
          size: fc.integer({ min: 1, max: 40 }),
          maxOutOfOrder: fc.integer({ min: 0, max: 15 }),
          lateness: fc.integer({ min: 0, max: 40 }),
          byDevice: fc.boolean(),
          forN: fc.integer({ min: 1, max: 2 }),
        })
        .map((x) => ({ ...x, slide: x.size })),
    );
  });

  it('sliding windows (including slide > size gaps and size not a multiple of slide)', () => {
    check(
      fc.record({
        size: fc.integer({ min: 2, max: 40 }),
        slide: fc.integer({ min: 1, max: 45 }),
        maxOutOfOrder: fc.integer({ min: 0, max: 15 }),
        lateness: fc.integer({ min: 0, max: 40 }),
        byDevice: fc.boolean(),
        forN: fc.integer({ min: 1, max: 2 }),
      }),
    );
  });
});
