import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDuration, parseDuration, parseSize } from '../../src/model/duration.js';

describe('parseDuration', () => {
  it('reads every unit of the SPEC', () => {
    assert.equal(parseDuration('200ms'), 200);
    assert.equal(parseDuration('10s'), 10_000);
    assert.equal(parseDuration('5m'), 300_000);
    assert.equal(parseDuration('2h'), 7_200_000);
    assert.equal(parseDuration('7d'), 7 * 86_400_000);
  });

  it('reads decimals and surrounding space', () => {
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('0.5m'), 30_000);
    assert.equal(parseDuration(' 10s '), 10_000);
  });

  it('takes integer milliseconds as a number or digits', () => {
    assert.equal(parseDuration(250), 250);
    assert.equal(parseDuration('250'), 250);
    assert.equal(parseDuration(0), 0);
    assert.equal(parseDuration('0s'), 0);
  });

  it('refuses what is not a duration', () => {
    for (const x of ['', 's', '10x', '10 seconds', '-5s', '5S', '1e3ms', '1.5', '.5s', 'PT5M', '10s5ms']) {
      assert.equal(parseDuration(x), null, JSON.stringify(x));
    }
    for (const x of [
      -1,
      1.5,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      2 ** 60,
      null,
      undefined,
      true,
      {},
      ['5s'],
    ]) {
      assert.equal(parseDuration(x), null, String(x));
    }
  });
});

describe('parseSize', () => {
  it('reads binary and decimal units, case-insensitively', () => {
    assert.equal(parseSize('64KiB'), 64 * 1024);
    assert.equal(parseSize('1GiB'), 1024 ** 3);
    assert.equal(parseSize('2MiB'), 2 * 1024 ** 2);
    assert.equal(parseSize('1kb'), 1000);
    assert.equal(parseSize('3MB'), 3_000_000);
    assert.equal(parseSize('1gb'), 1e9);
    assert.equal(parseSize('512b'), 512);
    assert.equal(parseSize('64kib'), 64 * 1024);
  });

  it('reads decimals and integer bytes', () => {
    assert.equal(parseSize('1.5KiB'), 1536);
    assert.equal(parseSize(4096), 4096);
    assert.equal(parseSize('4096'), 4096);
  });

  it('refuses what is not a size', () => {
    for (const x of ['', 'KiB', '64KB!', '-1KiB', '1TiB', '64 kilobytes', '0x10']) {
      assert.equal(parseSize(x), null, JSON.stringify(x));
    }
    for (const x of [-1, 0.5, Number.NaN, null, undefined, false]) {
      assert.equal(parseSize(x), null, String(x));
    }
  });
});

describe('formatDuration', () => {
  it('writes the largest unit that divides exactly', () => {
    assert.equal(formatDuration(7 * 86_400_000), '7d');
    assert.equal(formatDuration(7_200_000), '2h');
    assert.equal(formatDuration(90 * 60_000), '90m');
    assert.equal(formatDuration(300_000), '5m');
    assert.equal(formatDuration(90_000), '90s');
    assert.equal(formatDuration(1500), '1500ms');
    assert.equal(formatDuration(200), '200ms');
    assert.equal(formatDuration(0), '0ms');
  });

  it('round-trips through parseDuration', () => {
    for (const ms of [0, 1, 999, 1000, 1001, 60_000, 61_000, 3_600_000, 86_400_000, 86_400_001]) {
      assert.equal(parseDuration(formatDuration(ms)), ms, String(ms));
    }
  });
});
