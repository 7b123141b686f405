/**
 * Tumbling, sliding, session and count windows, watermarks and lateness: expected outputs are worked
 * out by hand from SPEC §2 and its fine print, not taken from the implementation.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { brief, engine, rd, run } from './helpers.js';

const tumbling10 = { window: { type: 'tumbling', size: '10s' }, aggregates: { avg: 'avg', n: 'count' } };

describe('tumbling windows', () => {
  it('close once a reading reaches end (one device, maxOutOfOrder 0), aligned to the epoch', () => {
    const out = run(engine(tumbling10), [
      rd('b1', 1, 10),
      rd('b1', 5, 20),
      rd('b1', 12, 30),
      rd('b1', 25, 40),
    ]);
    assert.deepEqual(brief(out), ['R b1 0-10 n=2 rev=0', 'R b1 10-20 n=1 rev=0', 'R b1 20-30 n=1 rev=0']);
    assert.deepEqual(out[0]?.values, { avg: 15, n: 2 });
  });

  it('with maxOutOfOrder close only once ts ≥ end + maxOutOfOrder', () => {
    const e = engine({ ...tumbling10, watermark: { maxOutOfOrder: '5s' } });
    assert.deepEqual(brief(run(e, [rd('b1', 1, 1), rd('b1', 12, 1), rd('b1', 14.999, 1)], false)), []);
    assert.deepEqual(brief(run(e, [rd('b1', 15, 1)], false)), ['R b1 0-10 n=1 rev=0']);
    // An out-of-order reading within maxOutOfOrder is simply on time.
    assert.deepEqual(brief(run(e, [rd('b1', 11, 1)])), ['R b1 10-20 n=4 rev=0']);
  });

  it('emit the exact SPEC record shape', () => {
    const out = run(
      engine({
        id: 'boiler-overheat',
        window: { type: 'tumbling', size: '10s' },
        aggregates: { avg: 'avg' },
      }),
      [rd('boiler-1', 3.25, 81.5)],
    );
    assert.equal(
      JSON.stringify(out[0]),
      '{"type":"result","rule":"boiler-overheat","key":{"device":"boiler-1"},"start":"2026-11-24T10:00:00.000Z","end":"2026-11-24T10:00:10.000Z","count":1,"values":{"avg":81.5},"revision":0}',
    );
  });

  it('groupBy [] makes one group with key {}; windows with no readings emit nothing', () => {
    const out = run(engine({ ...tumbling10, groupBy: [] }), [rd('a', 1, 1), rd('b', 2, 1), rd('a', 45, 1)]);
    assert.deepEqual(brief(out), ['R  0-10 n=2 rev=0', 'R  40-50 n=1 rev=0']);
    assert.deepEqual(out[0]?.key, {});
  });
});

describe('watermarks', () => {
  it('two devices with skewed clocks feeding one group: the slower clock holds the group back', () => {
    const e = engine({ ...tumbling10, groupBy: [] });
    // Device a runs 100 s ahead of device b.
    const out = run(
      e,
      [
        rd('b', 5, 1),
        rd('a', 105, 1),
        rd('a', 112, 1),
        rd('b', 9, 1),
        rd('b', 11, 1),
        rd('b', 101, 1),
        rd('b', 115, 1),
      ],
      false,
    );
    assert.deepEqual(brief(out), ['R  0-10 n=2 rev=0', 'R  10-20 n=1 rev=0', 'R  100-110 n=2 rev=0']);
    assert.deepEqual(brief(run(e, [])), ['R  110-120 n=2 rev=0']);
  });

  it('fine print 1: filtered readings neither advance watermarks nor produce late records', () => {
    const e = engine({ ...tumbling10, where: 'value > 0', match: { device: 'b*' } });
    let out = run(e, [rd('b1', 5, 1), rd('b1', 100, -1), rd('x1', 100, 5), rd('b1', 3, 2)], false);
    assert.deepEqual(brief(out), []);
    out = run(e, [rd('b1', 20, 1), rd('b1', 1, -5), rd('b1', 1, 5)]);
    assert.deepEqual(brief(out), ['R b1 0-10 n=2 rev=0', 'L b1 1', 'R b1 20-30 n=1 rev=0']);
  });

  it("fine print 2: a device's watermark is shared by its metrics; a new group's first reading can be late", () => {
    const e = engine({ ...tumbling10, groupBy: ['metric'] });
    const out = run(e, [rd('a', 30, 1, 'temperature'), rd('a', 5, 1, 'humidity')]);
    assert.deepEqual(brief(out), ['L a 5', 'R temperature 30-40 n=1 rev=0']);
    // groupBy device: a humidity reading closes the temperature reading's window.
    const e2 = engine(tumbling10);
    assert.deepEqual(brief(run(e2, [rd('a', 5, 1, 'temperature'), rd('a', 12, 1, 'humidity')], false)), [
      'R a 0-10 n=1 rev=0',
    ]);
  });

  it('fine print 3: a device that first feeds a group later holds it where it is until its clock catches up', () => {
    const e = engine({ ...tumbling10, groupBy: [] });
    let out = run(e, [rd('a', 50, 1), rd('b', 20, 1)], false);
    assert.deepEqual(
      brief(out),
      ['L b 20'],
      'b joins at 20 < watermark 50: late, and the watermark stays at 50',
    );
    out = run(e, [rd('a', 65, 1)], false);
    assert.deepEqual(brief(out), [], 'b (at 20) now holds the group at 50');
    out = run(e, [rd('b', 62, 1)], false);
    assert.deepEqual(brief(out), ['R  50-60 n=1 rev=0']);
  });
});

describe('lateness', () => {
  it('late readings into a closed window re-emit it with revision + 1, cumulatively, until end + lateness', () => {
    const e = engine({ ...tumbling10, lateness: '10s' });
    const out = run(e, [
      rd('b1', 1, 1),
      rd('b1', 12, 1),
      rd('b1', 3, 2),
      rd('b1', 19, 1),
      rd('b1', 5, 3),
      rd('b1', 20, 1),
      rd('b1', 7, 1),
    ]);
    assert.deepEqual(brief(out), [
      'R b1 0-10 n=1 rev=0',
      'R b1 0-10 n=2 rev=1',
      'R b1 0-10 n=3 rev=2',
      'R b1 10-20 n=2 rev=0',
      'L b1 7',
      'R b1 20-30 n=1 rev=0',
    ]);
    assert.deepEqual(out[2]?.values, { avg: 2, n: 3 });
  });

  it('fine print 4: a late reading into a window that closed empty emits it at once as revision 0', () => {
    const e = engine({ ...tumbling10, lateness: '30s' });
    const out = run(e, [rd('b1', 25, 1), rd('b1', 5, 1), rd('b1', 8, 1)], false);
    assert.deepEqual(brief(out), ['R b1 0-10 n=1 rev=0', 'R b1 0-10 n=2 rev=1']);
  });

  it('lateness 0: anything behind the watermark in a closed window is dropped as late, with the SPEC shape', () => {
    const e = engine({ id: 'boiler-overheat', ...tumbling10 });
    const out = run(
      e,
      [
        rd('boiler-1', 10, 1),
        {
          device: 'boiler-1',
          metric: 'temperature',
          value: 80,
          ts: Date.UTC(2026, 10, 24, 9, 58, 1),
          unit: '°C',
        },
      ],
      false,
    );
    assert.equal(
      JSON.stringify(out[0]),
      '{"type":"late","rule":"boiler-overheat","reading":{"device":"boiler-1","metric":"temperature","value":80,"ts":"2026-11-24T09:58:01.000Z","unit":"°C"}}',
    );
  });

  it('fine print 12: late re-emissions come before windows the watermark closed', () => {
    const e = engine({ ...tumbling10, groupBy: ['metric'], lateness: '10s' });
    const out = run(e, [rd('b', 50, 1, 'm2'), rd('a', 5, 1, 'm1'), rd('a', 45, 1, 'm2')], false);
    // a's clock moves to 45: group m1 closes [0,10); in group m2 (held at 50) the reading lands in the
    // closed-but-live window [40,50) which closed empty: revision 0 at once, and first.
    assert.deepEqual(brief(out), ['R m2 40-50 n=1 rev=0', 'R m1 0-10 n=1 rev=0']);
  });

  it('fine print 12: windows closed by one reading come out in (end, start, key) order across groups', () => {
    const e = engine({ ...tumbling10, groupBy: ['metric'] });
    const out = run(
      e,
      [rd('a', 1, 1, 'zeta'), rd('a', 2, 1, 'alpha'), rd('a', 11, 1, 'mid'), rd('a', 35, 1, 'mid')],
      false,
    );
    assert.deepEqual(brief(out), [
      'R alpha 0-10 n=1 rev=0',
      'R zeta 0-10 n=1 rev=0',
      'R mid 10-20 n=1 rev=0',
    ]);
  });
});

describe('sliding windows', () => {
  const sliding = { window: { type: 'sliding', size: '30s', slide: '10s' }, aggregates: { s: 'sum' } };

  it('a reading belongs to every window containing it; windows start at multiples of slide', () => {
    const out = run(engine(sliding), [rd('d', 5, 1), rd('d', 15, 2), rd('d', 25, 4), rd('d', 35, 8)]);
    assert.deepEqual(brief(out), [
      'R d -20-10 n=1 rev=0',
      'R d -10-20 n=2 rev=0',
      'R d 0-30 n=3 rev=0',
      'R d 10-40 n=3 rev=0',
      'R d 20-50 n=2 rev=0',
      'R d 30-60 n=1 rev=0',
    ]);
    assert.deepEqual(
      out.map((r) => (r.values as { s: number }).s),
      [1, 3, 7, 14, 12, 8],
    );
  });

  it('a partly late reading goes into its live windows and is not dropped', () => {
    const e = engine({ ...sliding, lateness: '5s' });
    const out = run(e, [rd('d', 5, 1), rd('d', 31, 10), rd('d', 12, 100), rd('d', -5, 1000)]);
    assert.deepEqual(brief(out), [
      'R d -20-10 n=1 rev=0',
      'R d -10-20 n=1 rev=0',
      'R d 0-30 n=1 rev=0',
      // 12 is in [-10,20) (discarded), [0,30) (closed, live) and [10,40) (open).
      'R d 0-30 n=2 rev=1',
      // -5 is only in discarded windows.
      'L d -5',
      'R d 10-40 n=2 rev=0',
      'R d 20-50 n=1 rev=0',
      'R d 30-60 n=1 rev=0',
    ]);
    assert.deepEqual(out[3]?.values, { s: 101 });
    assert.deepEqual(out[5]?.values, { s: 110 });
  });

  it('fine print 14: slide > size leaves gaps; a reading in a gap fits no window and is not late', () => {
    const e = engine({ window: { type: 'sliding', size: '10s', slide: '30s' }, aggregates: { s: 'sum' } });
    let out = run(e, [rd('d', 5, 1), rd('d', 15, 2)], false);
    // The gap reading still advances the device's watermark (it passed match and where).
    assert.deepEqual(brief(out), ['R d 0-10 n=1 rev=0']);
    out = run(e, [rd('d', 35, 4), rd('d', 100, 8), rd('d', 45, 16), rd('d', 5, 32)]);
    // 45 is in the gap [40,60): nothing, although the watermark (100) is far past it; 5 is late.
    assert.deepEqual(brief(out), ['R d 30-40 n=1 rev=0', 'L d 5']);
  });

  it('size not a multiple of slide (panes of gcd)', () => {
    const e = engine({ window: { type: 'sliding', size: '25s', slide: '10s' }, aggregates: { s: 'sum' } });
    const out = run(e, [rd('d', 3, 1), rd('d', 7, 2), rd('d', 16, 4), rd('d', 24, 8)]);
    // Windows [-20,5) [-10,15) [0,25) [10,35) [20,45)
    assert.deepEqual(brief(out), [
      'R d -20-5 n=1 rev=0',
      'R d -10-15 n=2 rev=0',
      'R d 0-25 n=4 rev=0',
      'R d 10-35 n=2 rev=0',
      'R d 20-45 n=1 rev=0',
    ]);
    assert.deepEqual(
      out.map((r) => (r.values as { s: number }).s),
      [1, 3, 15, 12, 8],
    );
  });
});

describe('session windows', () => {
  const session = { window: { type: 'session', gap: '10s' }, aggregates: { s: 'sum' } };

  it('a reading within gap extends the session; the window is [first, last + gap)', () => {
    const out = run(engine(session), [
      rd('d', 0, 1),
      rd('d', 5, 2),
      rd('d', 12, 4),
      rd('d', 30, 8),
      rd('d', 50, 16),
    ]);
    assert.deepEqual(brief(out), ['R d 0-22 n=3 rev=0', 'R d 30-40 n=1 rev=0', 'R d 50-60 n=1 rev=0']);
  });

  it('fine print 6: the gap is strict', () => {
    const out = run(engine(session), [rd('d', 0, 1), rd('d', 10, 2)]);
    assert.deepEqual(brief(out), ['R d 0-10 n=1 rev=0', 'R d 10-20 n=1 rev=0']);
  });

  it('a bridging reading merges two open sessions', () => {
    const e = engine({ ...session, watermark: { maxOutOfOrder: '30s' } });
    const out = run(e, [rd('d', 0, 1), rd('d', 5, 2), rd('d', 20, 4), rd('d', 12, 8), rd('d', 100, 16)]);
    assert.deepEqual(brief(out), ['R d 0-30 n=4 rev=0', 'R d 100-110 n=1 rev=0']);
    assert.deepEqual(out[0]?.values, { s: 15 });
  });

  it('fine print 6: merged closed sessions take the largest revision + 1 and re-emit at once', () => {
    const e = engine({ ...session, lateness: '100s' });
    const out = run(e, [rd('d', 0, 1), rd('d', 15, 2), rd('d', 40, 4), rd('d', 3, 8), rd('d', 8, 16)]);
    assert.deepEqual(brief(out), [
      'R d 0-10 n=1 rev=0',
      'R d 15-25 n=1 rev=0',
      'R d 0-13 n=2 rev=1',
      'R d 0-25 n=4 rev=2',
      'R d 40-50 n=1 rev=0',
    ]);
    assert.deepEqual(out[3]?.values, { s: 27 });
  });

  it('fine print 6: with lateness 0 a closed session is forgotten', () => {
    const out = run(engine(session), [rd('d', 0, 1), rd('d', 15, 2), rd('d', 5, 4)]);
    assert.deepEqual(brief(out), ['R d 0-10 n=1 rev=0', 'L d 5', 'R d 15-25 n=1 rev=0']);
  });

  it('a late reading starting a new session that is closed but live emits it at once as revision 0', () => {
    const out = run(engine({ ...session, lateness: '20s' }), [rd('d', 0, 1), rd('d', 40, 2), rd('d', 25, 4)]);
    assert.deepEqual(brief(out), ['R d 0-10 n=1 rev=0', 'R d 25-35 n=1 rev=0', 'R d 40-50 n=1 rev=0']);
  });

  it('are per group', () => {
    const out = run(engine(session), [rd('a', 0, 1), rd('b', 5, 1), rd('a', 8, 1)]);
    assert.deepEqual(brief(out), ['R b 5-15 n=1 rev=0', 'R a 0-18 n=2 rev=0']);
  });
});

describe('count windows', () => {
  it('close every size readings in arrival order; start/end are the smallest and largest ts; nothing partial', () => {
    const e = engine({ window: { type: 'count', size: 3 }, aggregates: { f: 'first', l: 'last' } });
    const out = run(e, [
      rd('d', 5, 1),
      rd('d', 1, 2),
      rd('d', 9, 3),
      rd('d', 2, 4),
      rd('d', 7, 5),
      rd('d', 3, 6),
      rd('d', 4, 7),
    ]);
    assert.deepEqual(brief(out), ['R d 1-9 n=3 rev=0', 'R d 2-7 n=3 rev=0']);
    assert.deepEqual(out[0]?.values, { f: 2, l: 3 });
  });

  it('with slide: every slide readings, covering the last size; only complete windows (fine print 8)', () => {
    const e = engine({ window: { type: 'count', size: 3, slide: 2 }, aggregates: { s: 'sum' } });
    const out = run(
      e,
      [1, 2, 3, 4, 5, 6].map((v, i) => rd('d', i, v)),
    );
    assert.deepEqual(
      out.map((r) => (r.values as { s: number }).s),
      [1 + 2 + 3, 3 + 4 + 5],
    );
  });

  it('ignore watermarks: never late', () => {
    const e = engine({ window: { type: 'count', size: 2 }, aggregates: { s: 'sum' } });
    const out = run(e, [rd('d', 1000, 1), rd('d', 0, 2), rd('d', -5000, 4), rd('d', 3000, 8)]);
    assert.deepEqual(brief(out), ['R d 0-1000 n=2 rev=0', 'R d -5000-3000 n=2 rev=0']);
  });
});
