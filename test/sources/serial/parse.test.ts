import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Decoded } from '../../../src/sources/decoders.js';
import { serialSourceSchema } from '../../../src/sources/serial/config.js';
import { createLineParser, type LineParser } from '../../../src/sources/serial/parse.js';

function parser(fields: Record<string, unknown>, maxMetrics?: number): LineParser {
  const config = serialSourceSchema.parse({
    id: 'wx',
    type: 'serial',
    path: '/dev/null',
    device: 'wx-1',
    ...fields,
  });
  return createLineParser(config, maxMetrics === undefined ? {} : { maxMetrics });
}

/** Candidates as [device, metric, value, ts?] and rejections as [reason, message]. */
function outcome(d: Decoded) {
  return {
    readings: d.candidates.map((c) =>
      c.ts === undefined ? [c.device, c.metric, c.value] : [c.device, c.metric, c.value, c.ts],
    ),
    rejected: d.rejections.map((r) => [r.reason, r.message]),
  };
}

function readings(d: Decoded) {
  return outcome(d).readings;
}

function rejectedOnce(d: Decoded, pattern: RegExp): void {
  assert.equal(d.candidates.length, 0, 'no readings');
  assert.equal(d.rejections.length, 1, 'one rejection');
  assert.equal(d.rejections[0]?.reason, 'malformed_payload');
  assert.match(d.rejections[0]?.message ?? '', pattern);
}

const GARBAGE = ['', '   ', '\r', '\u0000\u0001\u0002', 'ÿþ\u0007junk', '\ufffd\ufffd=', '{"t":', 'garbage'];

describe('json lines', () => {
  const p = parser({ format: 'json', metric: 'level' });

  it('takes a bare number, a value object and a flat object of several metrics', () => {
    assert.deepEqual(readings(p('21.5')), [['wx-1', 'level', 21.5]]);
    assert.deepEqual(readings(p('true\r')), [['wx-1', 'level', true]]);
    assert.deepEqual(readings(p('{"value": 3, "ts": 1700000000000}')), [['wx-1', 'level', 3, 1700000000000]]);
    assert.deepEqual(readings(p('{"value": 3, "metric": "depth"}')), [['wx-1', 'depth', 3]]);
    assert.deepEqual(
      readings(p('{"temperature": 21.5, "humidity": 40, "model": "x", "ts": "2026-11-24T10:00:00Z"}')),
      [
        ['wx-1', 'temperature', 21.5, '2026-11-24T10:00:00Z'],
        ['wx-1', 'humidity', 40, '2026-11-24T10:00:00Z'],
      ],
    );
  });

  it('lets the line name its device', () => {
    assert.deepEqual(readings(p('{"device": "wx-2", "t": 1}')), [['wx-2', 't', 1]]);
  });

  it('rejects a bare value without a configured metric, and broken JSON', () => {
    rejectedOnce(parser({ format: 'json' })('21.5'), /names no metric/);
    rejectedOnce(p('{"t": 21.5'), /not JSON/);
    rejectedOnce(p('{"model": "x"}'), /no numeric or boolean field/);
    rejectedOnce(p('21.5 C'), /expected a number/);
  });
});

describe('csv lines', () => {
  const p = parser({ format: 'csv', columns: ['ts', 'temperature', '_', 'humidity', ''] });

  it('maps fields to columns, skipping _ and unnamed columns and empty fields', () => {
    assert.deepEqual(readings(p('1700000000000,21.5,x,40,y')), [
      ['wx-1', 'temperature', 21.5, 1700000000000],
      ['wx-1', 'humidity', 40, 1700000000000],
    ]);
    assert.deepEqual(readings(p(' 2026-11-24T10:00:00Z , -3e1 ,, , ')), [
      ['wx-1', 'temperature', -30, '2026-11-24T10:00:00Z'],
    ]);
    assert.deepEqual(readings(p(',1,,2,')), [
      ['wx-1', 'temperature', 1],
      ['wx-1', 'humidity', 2],
    ]);
  });

  it('takes a device column and another separator', () => {
    const q = parser({ format: 'csv', columns: ['device', 't'], separator: ';' });
    assert.deepEqual(readings(q('wx-9;5')), [['wx-9', 't', 5]]);
    assert.deepEqual(readings(q(';5')), [['wx-1', 't', 5]]);
  });

  it('rejects a wrong field count, non-numbers per field, a header line once', () => {
    rejectedOnce(p('21.5,40'), /expected 5 fields separated by ",", found 2/);
    rejectedOnce(p('1,2,3,4,5,6'), /found 6/);
    const mixed = p(',21.5,,hot,');
    assert.deepEqual(readings(mixed), [['wx-1', 'temperature', 21.5]]);
    assert.equal(mixed.rejections.length, 1);
    assert.match(mixed.rejections[0]?.message ?? '', /humidity: expected a number, found "hot"/);
    rejectedOnce(p('ts,temperature,x,humidity,y'), /no numeric field/);
    rejectedOnce(p(',,,,'), /every metric field is empty/);
  });
});

describe('kv lines', () => {
  const p = parser({ format: 'kv' });

  it('takes key=value and key:value pairs separated by spaces, commas or semicolons', () => {
    assert.deepEqual(readings(p('t=21.5 h=40')), [
      ['wx-1', 't', 21.5],
      ['wx-1', 'h', 40],
    ]);
    assert.deepEqual(readings(p('t:21.5,h:40')), [
      ['wx-1', 't', 21.5],
      ['wx-1', 'h', 40],
    ]);
    assert.deepEqual(readings(p('  t=1;  h=2 ,\tp=3\r')), [
      ['wx-1', 't', 1],
      ['wx-1', 'h', 2],
      ['wx-1', 'p', 3],
    ]);
  });

  it('reads ts and device keys, an ISO ts keeping its colons', () => {
    assert.deepEqual(readings(p('device=wx-3 ts=2026-11-24T10:00:00.250+01:00 t=1')), [
      ['wx-3', 't', 1, '2026-11-24T10:00:00.250+01:00'],
    ]);
    assert.deepEqual(readings(p('ts:1700000000000 t:2')), [['wx-1', 't', 2, 1700000000000]]);
  });

  it('rejects bad fields one by one and keeps the good ones', () => {
    const d = outcome(p('t=21.5 h=wet p= =4 q'));
    assert.deepEqual(d.readings, [['wx-1', 't', 21.5]]);
    assert.equal(d.rejected.length, 4);
    assert.match(String(d.rejected[0]?.[1]), /expected key=value or key:value, found "p="/);
    assert.match(String(d.rejected[3]?.[1]), /h: expected a number, found "wet"/);
  });

  it('rejects a line with nothing usable once', () => {
    rejectedOnce(p('hello world again'), /no numeric field/);
    rejectedOnce(p('hello'), /found "hello"/);
    rejectedOnce(p('ts=1700000000000'), /no metric=value pair/);
  });

  it('rejects a line with more readings than allowed, whole', () => {
    const d = parser({ format: 'kv' }, 2)('a=1 b=2 c=3');
    assert.equal(d.candidates.length, 0);
    assert.equal(d.rejections[0]?.reason, 'too_many_metrics');
  });
});

describe('regex lines', () => {
  const p = parser({
    format: 'regex',
    regex: '^(?<device>[\\w-]+)? ?T=(?<temperature>\\S+) H=(?<humidity>\\S*)(?: @(?<ts>\\d+))?$',
  });

  it('reads metrics, device and ts from named groups', () => {
    assert.deepEqual(readings(p('wx-5 T=21.5 H=40 @1700000000000')), [
      ['wx-5', 'temperature', 21.5, 1700000000000],
      ['wx-5', 'humidity', 40, 1700000000000],
    ]);
    assert.deepEqual(readings(p('T=-1 H=')), [['wx-1', 'temperature', -1]]);
  });

  it('rejects a line that does not match, and a group that is not a number', () => {
    rejectedOnce(p('T=21.5'), /does not match the pattern/);
    const d = p('T=hot H=40');
    assert.deepEqual(readings(d), [['wx-1', 'humidity', 40]]);
    assert.match(d.rejections[0]?.message ?? '', /temperature: expected a number, found "hot"/);
  });
});

describe('garbage', () => {
  for (const format of ['json', 'csv', 'kv', 'regex'] as const) {
    it(`${format}: empty lines, control bytes and partial lines are one precise rejection each`, () => {
      const p = parser({
        format,
        metric: format === 'json' ? 'm' : undefined,
        columns: format === 'csv' ? ['a', 'b'] : undefined,
        regex: format === 'regex' ? '^a=(?<a>[-0-9.]+)$' : undefined,
      });
      for (const line of GARBAGE) {
        const d = p(line);
        assert.equal(d.candidates.length, 0, `no reading from ${JSON.stringify(line)}`);
        assert.equal(d.rejections.length, 1, `one rejection for ${JSON.stringify(line)}`);
        assert.equal(d.rejections[0]?.reason, 'malformed_payload');
      }
      assert.match(
        p('\u0000\u0001')?.rejections[0]?.message ?? '',
        /line noise: character U\+0000 at column 1/,
      );
      assert.match(p('')?.rejections[0]?.message ?? '', /an empty line/);
    });
  }

  it('never throws, whatever the line (property)', () => {
    const parsers = [
      parser({ format: 'json', metric: 'm' }),
      parser({ format: 'csv', columns: ['ts', 'a', '_', 'device', 'b'] }),
      parser({ format: 'kv' }),
      parser({ format: 'regex', regex: '(?<a>[^,]*),(?<b>.*)' }),
    ];
    const line = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.string({ unit: 'binary', maxLength: 200 }),
      fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1')),
      fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('utf8')),
      fc
        .array(
          fc.constantFrom('t', '=', ':', ',', ' ', '1', '.', '-', 'e', '{', '}', '"', 'ts', 'device', '\r'),
          { maxLength: 40 },
        )
        .map((parts) => parts.join('')),
    );
    fc.assert(
      fc.property(line, (text) => {
        for (const p of parsers) {
          const d = p(text);
          assert.ok(Array.isArray(d.candidates) && Array.isArray(d.rejections));
          assert.ok(d.candidates.length + d.rejections.length > 0, 'every line yields something');
          for (const c of d.candidates) assert.notEqual(c.metric, undefined);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
