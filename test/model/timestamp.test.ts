import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  formatTimestamp,
  MAX_EPOCH_MS,
  parseIsoTimestamp,
  parseTimestamp,
} from '../../src/model/timestamp.js';

const T = Date.UTC(2026, 10, 24, 10, 0, 3, 250); // 2026-11-24T10:00:03.250Z

describe('parseTimestamp: ISO-8601 strings', () => {
  it('reads UTC with Z and milliseconds', () => {
    assert.equal(parseTimestamp('2026-11-24T10:00:03.250Z'), T);
  });

  it('reads a time without fraction as whole seconds', () => {
    assert.equal(parseTimestamp('2026-11-24T10:00:03Z'), T - 250);
  });

  it('pads short fractions: .2 is 200 ms, .25 is 250 ms', () => {
    assert.equal(parseTimestamp('2026-11-24T10:00:03.2Z'), T - 50);
    assert.equal(parseTimestamp('2026-11-24T10:00:03.25Z'), T);
  });

  it('truncates digits beyond milliseconds instead of rounding', () => {
    assert.equal(parseTimestamp('2026-11-24T10:00:03.250999Z'), T);
    assert.equal(parseTimestamp('2026-11-24T10:00:03.123999Z'), T - 250 + 123);
    assert.equal(parseTimestamp('2026-11-24T10:00:03.999999999Z'), T - 250 + 999);
  });

  it('applies positive and negative offsets', () => {
    assert.equal(parseTimestamp('2026-11-24T11:00:03.250+01:00'), T);
    assert.equal(parseTimestamp('2026-11-24T05:30:03.250-04:30'), T);
    assert.equal(parseTimestamp('2026-11-24T10:00:03.250+00:00'), T);
    assert.equal(parseTimestamp('2026-11-24T10:00:03.250-00:00'), T);
  });

  it('crosses a date boundary with an offset', () => {
    assert.equal(parseTimestamp('2026-11-25T00:30:00.000+14:00'), Date.UTC(2026, 10, 24, 10, 30));
    assert.equal(parseTimestamp('2026-12-31T23:00:00.000-02:00'), Date.UTC(2027, 0, 1, 1, 0));
  });

  it('refuses a time without an offset (local time is ambiguous)', () => {
    assert.equal(parseTimestamp('2026-11-24T10:00:03.250'), null);
    assert.equal(parseTimestamp('2026-11-24T10:00:03'), null);
  });

  it('refuses offsets not written ±HH:MM', () => {
    assert.equal(parseTimestamp('2026-11-24T10:00:03+0100'), null);
    assert.equal(parseTimestamp('2026-11-24T10:00:03+01'), null);
    assert.equal(parseTimestamp('2026-11-24T10:00:03 UTC'), null);
    assert.equal(parseTimestamp('2026-11-24T10:00:03z'), null);
  });

  it('refuses offsets out of range', () => {
    assert.equal(parseTimestamp('2026-11-24T10:00:03+24:00'), null);
    assert.equal(parseTimestamp('2026-11-24T10:00:03+01:60'), null);
  });

  it('refuses dates that do not exist', () => {
    assert.equal(parseTimestamp('2026-02-30T00:00:00Z'), null, 'Feb 30');
    assert.equal(parseTimestamp('2026-02-29T00:00:00Z'), null, 'Feb 29 of a common year');
    assert.equal(parseTimestamp('2026-04-31T00:00:00Z'), null, 'Apr 31');
    assert.equal(parseTimestamp('2026-13-01T00:00:00Z'), null, 'month 13');
    assert.equal(parseTimestamp('2026-00-10T00:00:00Z'), null, 'month 0');
    assert.equal(parseTimestamp('2026-01-00T00:00:00Z'), null, 'day 0');
    assert.equal(parseTimestamp('2026-01-32T00:00:00Z'), null, 'day 32');
  });

  it('accepts Feb 29 of a leap year', () => {
    assert.equal(parseTimestamp('2028-02-29T12:00:00Z'), Date.UTC(2028, 1, 29, 12));
  });

  it('refuses times that do not exist', () => {
    assert.equal(parseTimestamp('2026-11-24T24:00:00Z'), null, 'hour 24');
    assert.equal(parseTimestamp('2026-11-24T10:60:00Z'), null, 'minute 60');
    assert.equal(parseTimestamp('2026-11-24T10:00:60Z'), null, 'second 60');
  });

  it('refuses other notations and garbage', () => {
    for (const text of [
      '',
      'now',
      '2026-11-24',
      '2026-11-24 10:00:03Z',
      '20261124T100003Z',
      'Tue, 24 Nov 2026 10:00:03 GMT',
      '2026-11-24T10:00:03.Z',
      '+02026-11-24T10:00:03Z',
      '1764000000000',
    ]) {
      assert.equal(parseTimestamp(text), null, JSON.stringify(text));
    }
  });

  it('does not map two-digit years to the 1900s', () => {
    assert.equal(parseTimestamp('0050-01-01T00:00:00Z'), new Date('0050-01-01T00:00:00Z').getTime());
  });

  it('parseIsoTimestamp agrees with Date.parse on valid UTC strings', () => {
    for (const text of ['1970-01-01T00:00:00.000Z', '1999-12-31T23:59:59.999Z', '2038-01-19T03:14:08.000Z']) {
      assert.equal(parseIsoTimestamp(text), Date.parse(text), text);
    }
  });
});

describe('parseTimestamp: epoch milliseconds', () => {
  it('takes integers as they are', () => {
    assert.equal(parseTimestamp(T), T);
    assert.equal(parseTimestamp(0), 0);
    assert.equal(parseTimestamp(-1000), -1000);
  });

  it('floors fractions', () => {
    assert.equal(parseTimestamp(T + 0.9), T);
    assert.equal(parseTimestamp(-0.5), -1);
  });

  it('refuses non-finite numbers and the out-of-range', () => {
    assert.equal(parseTimestamp(Number.NaN), null);
    assert.equal(parseTimestamp(Number.POSITIVE_INFINITY), null);
    assert.equal(parseTimestamp(Number.NEGATIVE_INFINITY), null);
    assert.equal(parseTimestamp(MAX_EPOCH_MS), MAX_EPOCH_MS);
    assert.equal(parseTimestamp(MAX_EPOCH_MS + 1), null);
    assert.equal(parseTimestamp(-MAX_EPOCH_MS - 1), null);
  });

  it('refuses an ISO date beyond what a Date can hold', () => {
    assert.equal(parseTimestamp('9999-12-31T23:59:59Z'), Date.UTC(9999, 11, 31, 23, 59, 59));
    // +275760-09-13 is the limit; a 4-digit year is always inside, so check the number path.
    assert.equal(parseTimestamp(1e20), null);
  });

  it('refuses other types', () => {
    for (const x of [null, undefined, true, {}, [T], BigInt(T)]) {
      assert.equal(parseTimestamp(x), null, String(x));
    }
  });
});

describe('formatTimestamp', () => {
  it('writes ISO-8601 UTC with milliseconds', () => {
    assert.equal(formatTimestamp(T), '2026-11-24T10:00:03.250Z');
    assert.equal(formatTimestamp(0), '1970-01-01T00:00:00.000Z');
  });

  it('writes every instant exactly as Date#toISOString does', () => {
    const edges = [
      -62_167_219_200_001, // the last millisecond of year −1: a six-digit year
      -62_167_219_200_000, // 0000-01-01T00:00:00.000Z
      -62_162_035_200_000, // 0000-03-01 (year 0 is a leap year)
      Date.UTC(1600, 1, 29, 23, 59, 59, 999),
      Date.UTC(1900, 1, 28, 12),
      Date.UTC(1900, 2, 1),
      Date.UTC(1969, 11, 31, 23, 59, 59, 999),
      Date.UTC(2000, 1, 29),
      Date.UTC(2100, 2, 1),
      253_402_300_799_999, // 9999-12-31T23:59:59.999Z
      253_402_300_800_000, // +010000-01-01
      MAX_EPOCH_MS,
      -MAX_EPOCH_MS,
      T + 0.5,
      -0.5,
    ];
    for (const ms of edges) assert.equal(formatTimestamp(ms), new Date(ms).toISOString(), String(ms));
    fc.assert(
      fc.property(fc.integer({ min: -MAX_EPOCH_MS, max: MAX_EPOCH_MS }), (ms) => {
        assert.equal(formatTimestamp(ms), new Date(ms).toISOString());
      }),
      { numRuns: 20_000, seed: 20261204 },
    );
    fc.assert(
      fc.property(fc.integer({ min: -62_167_219_200_000, max: 253_402_300_799_999 }), (ms) => {
        assert.equal(formatTimestamp(ms), new Date(ms).toISOString());
      }),
      { numRuns: 20_000, seed: 20261205 },
    );
  });

  it('round-trips through parseTimestamp', () => {
    for (const ms of [0, 1, T, T + 1, -1, 253402300799999]) {
      assert.equal(parseTimestamp(formatTimestamp(ms)), ms);
    }
  });
});
