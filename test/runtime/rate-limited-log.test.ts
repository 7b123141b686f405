import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import type { pino } from 'pino';
import { createLogger, RateLimitedLog } from '../../src/runtime/log.js';

/** A pino logger writing into an array of parsed JSON lines. */
function capture(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { log: createLogger('info', sink), lines };
}

describe('RateLimitedLog', () => {
  it('writes the first warning of a key at warn level with its fields', () => {
    const { log, lines } = capture();
    const rl = new RateLimitedLog(log, () => 0, 10_000);
    rl.warn('k', { source: 'mqtt' }, 'rejected: bad');
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.['level'], 'warn');
    assert.equal(lines[0]?.['msg'], 'rejected: bad');
    assert.equal(lines[0]?.['source'], 'mqtt');
    assert.equal('suppressed' in (lines[0] ?? {}), false);
  });

  it('writes at most one line per key per interval and reports the suppressed count on the next', () => {
    const { log, lines } = capture();
    let now = 1_000_000;
    const rl = new RateLimitedLog(log, () => now, 10_000);
    rl.warn('k', {}, 'first');
    for (let i = 0; i < 5; i++) {
      now += 1000;
      rl.warn('k', {}, `held back ${i}`);
    }
    assert.equal(lines.length, 1);
    now = 1_000_000 + 9_999;
    rl.warn('k', {}, 'still held back');
    assert.equal(lines.length, 1, 'one ms before the interval is still inside it');
    now = 1_000_000 + 10_000;
    rl.warn('k', { a: 1 }, 'second');
    assert.equal(lines.length, 2);
    assert.equal(lines[1]?.['msg'], 'second');
    assert.equal(lines[1]?.['suppressed'], 6);
    assert.equal(lines[1]?.['a'], 1);
    // The count starts again after it was reported.
    now += 10_000;
    rl.warn('k', {}, 'third');
    assert.equal(lines.length, 3);
    assert.equal('suppressed' in (lines[2] ?? {}), false);
  });

  it('limits each key on its own', () => {
    const { log, lines } = capture();
    const rl = new RateLimitedLog(log, () => 0, 10_000);
    rl.warn('a', {}, 'a1');
    rl.warn('b', {}, 'b1');
    rl.warn('a', {}, 'a2');
    rl.warn('b', {}, 'b2');
    assert.deepEqual(
      lines.map((l) => l['msg']),
      ['a1', 'b1'],
    );
  });

  it('does not lose a suppressed count when many other keys come and go', () => {
    const { log, lines } = capture();
    let now = 0;
    const rl = new RateLimitedLog(log, () => now, 10_000);
    rl.warn('flood', {}, 'first');
    for (let i = 0; i < 3; i++) rl.warn('flood', {}, 'held back');
    now = 20_000;
    for (let i = 0; i < 1_100; i++) rl.warn(`other-${i}`, {}, 'other');
    rl.warn('flood', {}, 'again');
    const last = lines.at(-1);
    assert.equal(last?.['msg'], 'again');
    assert.equal(last?.['suppressed'], 3, 'three warnings were held back and must be reported');
  });
});
