import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Frame, LineFramer } from '../../../src/sources/serial/framer.js';

function run(framer: LineFramer, ...chunks: string[]): string[] {
  const out: string[] = [];
  const emit = (f: Frame) =>
    out.push(f.kind === 'line' ? f.bytes.toString('latin1') : `<overflow ${f.length}>`);
  for (const c of chunks) framer.push(Buffer.from(c, 'latin1'), emit);
  return out;
}

describe('LineFramer', () => {
  it('cuts lines at the delimiter across chunk boundaries', () => {
    assert.deepEqual(run(new LineFramer('\n', 64), 't=1\nt=', '2\n\nt=3', '\n'), ['t=1', 't=2', '', 't=3']);
  });

  it('finds a two-byte delimiter split between chunks', () => {
    assert.deepEqual(run(new LineFramer('\r\n', 64), 'a=1\r', '\nb=2\r\n', 'c\rd\r\n'), [
      'a=1',
      'b=2',
      'c\rd',
    ]);
  });

  it('drops an overlong line and resynchronises at the next delimiter, within one chunk and across many', () => {
    const f = new LineFramer('\n', 8);
    assert.deepEqual(run(f, '12345678\n123456789\nok\n'), ['12345678', '<overflow 9>', 'ok']);
    const g = new LineFramer('\r\n', 8);
    assert.deepEqual(run(g, 'x'.repeat(5), 'x'.repeat(20), 'x'.repeat(5) + '\r', '\nnext\r\n'), [
      '<overflow 30>',
      'next',
    ]);
  });

  it('keeps bounded memory on an endless line', () => {
    const f = new LineFramer('\n', 16);
    for (let i = 0; i < 1000; i++) run(f, 'y'.repeat(1000));
    assert.deepEqual(run(f, '\nfine\n'), ['<overflow 1000000>', 'fine']);
  });

  it('reset() reports and forgets an unfinished line', () => {
    const f = new LineFramer('\n', 64);
    assert.deepEqual(run(f, 'a=1\na=2'), ['a=1']);
    assert.equal(f.reset(), 3);
    assert.equal(f.reset(), 0);
    assert.deepEqual(run(f, '3\n'), ['3']);
  });
});
