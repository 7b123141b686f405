import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type Reading,
  type ReadingCandidate,
  type ReadingLimits,
  ReadingRejection,
  readingKey,
  validateReading,
} from '../../src/model/reading.js';

const NOW = Date.parse('2026-11-24T10:00:00.000Z');
const LIMITS: ReadingLimits = { now: NOW, maxFutureSkew: 5 * 60_000 };

function valid(c: ReadingCandidate, limits = LIMITS): Reading {
  const r = validateReading(c, limits);
  if (r instanceof ReadingRejection) assert.fail(`expected a reading, got ${r.reason}: ${r.message}`);
  return r;
}

function rejected(c: ReadingCandidate, limits = LIMITS): ReadingRejection {
  const r = validateReading(c, limits);
  assert.ok(r instanceof ReadingRejection, `expected a rejection, got ${JSON.stringify(r)}`);
  return r;
}

const base = { device: 'boiler-1', metric: 'temperature', value: 81.5, ts: '2026-11-24T09:59:03.250Z' };

describe('validateReading', () => {
  it('checks every name, whatever was valid just before (the last valid names are remembered)', () => {
    // Names by the field they are valid or invalid in, in an order that reuses each one.
    const sequence: [device: string, metric: string, verdict: 'ok' | 'invalid_device' | 'invalid_metric'][] =
      [
        ['b1', 't', 'ok'],
        ['b1', 't', 'ok'],
        ['b 1', 't', 'invalid_device'],
        ['b1', 't x', 'invalid_metric'],
        ['b1', 'b 1', 'invalid_metric'],
        ['t', 'b1', 'ok'], // each valid as the other field, too
        ['b 1', 'b1', 'invalid_device'],
        ['', 't', 'invalid_device'],
        ['b1', '', 'invalid_metric'],
        ['x'.repeat(129), 't', 'invalid_device'],
        ['b1', 't', 'ok'],
      ];
    for (const [device, metric, verdict] of sequence) {
      const r = validateReading({ device, metric, value: 1, ts: NOW }, LIMITS);
      const got = r instanceof ReadingRejection ? r.reason : 'ok';
      assert.equal(got, verdict, `${JSON.stringify(device)} / ${JSON.stringify(metric)}`);
    }
  });

  it('accepts the SPEC example and converts ts to epoch ms', () => {
    const r = valid({ ...base, unit: '°C' });
    assert.deepEqual(r, {
      device: 'boiler-1',
      metric: 'temperature',
      value: 81.5,
      ts: Date.parse('2026-11-24T09:59:03.250Z'),
      unit: '°C',
    });
  });

  describe('names', () => {
    it('accepts the whole charset [A-Za-z0-9_.:-]', () => {
      const r = valid({ ...base, device: 'aZ09_.:-', metric: 'm.x:y-z_1' });
      assert.equal(r.device, 'aZ09_.:-');
      assert.equal(r.metric, 'm.x:y-z_1');
    });

    it('accepts 1 and 128 characters, refuses 0 and 129', () => {
      valid({ ...base, device: 'd', metric: 'm' });
      valid({ ...base, device: 'd'.repeat(128), metric: 'm'.repeat(128) });
      assert.equal(rejected({ ...base, device: '' }).reason, 'invalid_device');
      assert.equal(rejected({ ...base, device: 'd'.repeat(129) }).reason, 'invalid_device');
      assert.equal(rejected({ ...base, metric: '' }).reason, 'invalid_metric');
      assert.equal(rejected({ ...base, metric: 'm'.repeat(129) }).reason, 'invalid_metric');
    });

    it('refuses characters outside the charset', () => {
      for (const name of ['boiler 1', 'a/b', 'a+b', 'a#b', 'température', 'a\nb', 'a$b', 'a{b}']) {
        assert.equal(rejected({ ...base, device: name }).reason, 'invalid_device', name);
        assert.equal(rejected({ ...base, metric: name }).reason, 'invalid_metric', name);
      }
    });

    it('refuses names that are not strings', () => {
      for (const x of [undefined, null, 1, true, {}, ['d']]) {
        assert.equal(rejected({ ...base, device: x }).reason, 'invalid_device');
        assert.equal(rejected({ ...base, metric: x }).reason, 'invalid_metric');
      }
    });

    it('says what was found', () => {
      assert.match(rejected({ ...base, device: 'bad name' }).message, /"bad name"/);
    });
  });

  describe('value', () => {
    it('accepts finite numbers, including 0, negatives and extremes', () => {
      for (const v of [0, -0.5, 1e300, -1e300, Number.MIN_VALUE, Number.MAX_SAFE_INTEGER]) {
        assert.equal(valid({ ...base, value: v }).value, v);
      }
    });

    it('maps booleans to 0/1', () => {
      assert.equal(valid({ ...base, value: true }).value, 1);
      assert.equal(valid({ ...base, value: false }).value, 0);
    });

    it('refuses NaN, infinities, strings, null, missing and objects with invalid_value', () => {
      for (const v of [
        Number.NaN,
        Number.POSITIVE_INFINITY,
        Number.NEGATIVE_INFINITY,
        '21.5',
        '',
        null,
        undefined,
        {},
        [1],
      ]) {
        const r = rejected({ ...base, value: v });
        assert.equal(r.reason, 'invalid_value', String(v));
      }
    });
  });

  describe('ts', () => {
    it('uses the receive time when ts is missing', () => {
      const { ts: _ts, ...noTs } = base;
      assert.equal(valid(noTs).ts, NOW);
      assert.equal(valid({ ...noTs, ts: null }).ts, NOW);
    });

    it('refuses a missing ts with missing_ts when ts is required (replay)', () => {
      const { ts: _ts, ...noTs } = base;
      assert.equal(rejected(noTs, { ...LIMITS, requireTs: true }).reason, 'missing_ts');
      assert.equal(valid(base, { ...LIMITS, requireTs: true }).ts, Date.parse(base.ts));
    });

    it('accepts epoch ms and ISO with offset', () => {
      assert.equal(valid({ ...base, ts: NOW - 1000 }).ts, NOW - 1000);
      assert.equal(valid({ ...base, ts: '2026-11-24T11:00:00+01:00' }).ts, NOW);
    });

    it('refuses unreadable timestamps with invalid_ts', () => {
      for (const ts of ['yesterday', '2026-11-24T10:00:00', '2026-02-30T00:00:00Z', Number.NaN, true, {}]) {
        assert.equal(rejected({ ...base, ts }).reason, 'invalid_ts', String(ts));
      }
    });

    it('accepts exactly maxFutureSkew in the future and refuses 1 ms more with future_ts', () => {
      const skew = LIMITS.maxFutureSkew;
      assert.equal(valid({ ...base, ts: NOW + skew }).ts, NOW + skew);
      assert.equal(valid({ ...base, ts: new Date(NOW + skew).toISOString() }).ts, NOW + skew);
      assert.equal(rejected({ ...base, ts: NOW + skew + 1 }).reason, 'future_ts');
      assert.equal(rejected({ ...base, ts: '2026-11-24T10:05:00.001Z' }).reason, 'future_ts');
    });

    it('honours the configured skew', () => {
      assert.equal(rejected({ ...base, ts: NOW + 1 }, { now: NOW, maxFutureSkew: 0 }).reason, 'future_ts');
      assert.equal(valid({ ...base, ts: NOW }, { now: NOW, maxFutureSkew: 0 }).ts, NOW);
    });

    it('accepts readings from long ago (lateness is the rules’ business)', () => {
      assert.equal(valid({ ...base, ts: 0 }).ts, 0);
    });
  });

  describe('unit and tags', () => {
    it('keeps a unit, drops an empty one, refuses non-strings and overlong ones', () => {
      assert.equal(valid({ ...base, unit: 'kWh' }).unit, 'kWh');
      assert.equal('unit' in valid({ ...base, unit: '' }), false);
      assert.equal('unit' in valid(base), false);
      assert.equal(rejected({ ...base, unit: 5 }).reason, 'invalid_unit');
      assert.equal(rejected({ ...base, unit: 'u'.repeat(33) }).reason, 'invalid_unit');
      assert.equal(valid({ ...base, unit: 'u'.repeat(32) }).unit, 'u'.repeat(32));
    });

    it('keeps string tags, up to 16', () => {
      const tags: Record<string, string> = {};
      for (let i = 0; i < 16; i++) tags[`t${i}`] = `v${i}`;
      assert.deepEqual(valid({ ...base, tags }).tags, tags);
      assert.equal('tags' in valid({ ...base, tags: {} }), false);
    });

    it('refuses a 17th tag, non-string values and non-objects with invalid_tags', () => {
      const tags: Record<string, string> = {};
      for (let i = 0; i < 17; i++) tags[`t${i}`] = 'v';
      assert.equal(rejected({ ...base, tags }).reason, 'invalid_tags');
      assert.equal(rejected({ ...base, tags: { room: 5 } }).reason, 'invalid_tags');
      assert.equal(rejected({ ...base, tags: { room: null } }).reason, 'invalid_tags');
      assert.equal(rejected({ ...base, tags: { 'bad name': 'x' } }).reason, 'invalid_tags');
      assert.equal(rejected({ ...base, tags: ['a'] }).reason, 'invalid_tags');
      assert.equal(rejected({ ...base, tags: 'room=1' }).reason, 'invalid_tags');
    });

    it('does not let a tag named __proto__ vanish or change the prototype', () => {
      const tags = JSON.parse('{"__proto__": "x", "room": "1"}') as Record<string, string>;
      const r = validateReading({ ...base, tags }, LIMITS);
      if (r instanceof ReadingRejection) return; // refusing it is fine too
      assert.deepEqual(Object.entries(r.tags ?? {}), [
        ['__proto__', 'x'],
        ['room', '1'],
      ]);
    });
  });

  it('checks in a fixed order: device before metric before value', () => {
    assert.equal(rejected({ device: '', metric: '', value: 'x' }).reason, 'invalid_device');
    assert.equal(rejected({ device: 'd', metric: '', value: 'x' }).reason, 'invalid_metric');
  });
});

describe('readingKey', () => {
  const v = (c: ReadingCandidate) => valid(c);

  it('is equal for the same instant in different notations', () => {
    const a = v({ ...base, ts: '2026-11-24T09:59:03.250Z' });
    const b = v({ ...base, ts: '2026-11-24T10:59:03.250+01:00' });
    const c = v({ ...base, ts: Date.parse('2026-11-24T09:59:03.250Z') });
    const d = v({ ...base, ts: '2026-11-24T09:59:03.250999Z' });
    assert.equal(readingKey(a), readingKey(b));
    assert.equal(readingKey(a), readingKey(c));
    assert.equal(readingKey(a), readingKey(d));
  });

  it('differs when device, metric, ts or value differs', () => {
    const a = readingKey(v(base));
    assert.notEqual(readingKey(v({ ...base, device: 'boiler-2' })), a);
    assert.notEqual(readingKey(v({ ...base, metric: 'pressure' })), a);
    assert.notEqual(readingKey(v({ ...base, ts: '2026-11-24T09:59:03.251Z' })), a);
    assert.notEqual(readingKey(v({ ...base, value: 81.6 })), a);
  });

  it('cannot be confused by names that share characters across fields', () => {
    const a = readingKey(v({ ...base, device: 'a.b', metric: 'c' }));
    const b = readingKey(v({ ...base, device: 'a', metric: 'b.c' }));
    assert.notEqual(a, b);
  });

  it('ignores unit and tags (a redelivery is the same reading)', () => {
    assert.equal(readingKey(v({ ...base, unit: 'K', tags: { a: 'b' } })), readingKey(v(base)));
  });
});
