import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  type DecodeContext,
  decodeGeneral,
  decodePayload,
  type PayloadFormat,
} from '../../src/sources/decoders.js';
import { decodeValueFast } from '../../src/sources/value-fast-path.js';

const FORMATS: readonly PayloadFormat[] = ['auto', 'number', 'value', 'json'];
const CONTEXTS: readonly DecodeContext[] = [
  { device: 'boiler-1', metric: 'temperature', maxMetrics: 256 },
  { device: 'plug-1', maxMetrics: 256 },
  { maxMetrics: 256 },
  { device: 'd', metric: 'm', maxMetrics: 2 },
];

/** Number texts JSON takes, and near misses it does not. */
const numberText = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => JSON.stringify(n)),
  fc.integer().map(String),
  fc.bigInt({ min: -(10n ** 22n), max: 10n ** 22n }).map(String),
  fc.constantFrom(
    '0',
    '-0',
    '-0.0',
    '0.5',
    '1e400',
    '-1e-400',
    '1E+2',
    '1e-7',
    '123456789012345',
    '1234567890123456',
    '9007199254740993',
    '1764758400123',
    '01',
    '1.',
    '.5',
    '-',
    '+1',
    '1e',
    '1e+',
    '0x10',
    'NaN',
    'Infinity',
    '1_000',
    '２',
  ),
);
const ws = fc.constantFrom('', '', '', ' ', '\n', '\t', '\r\n', '  ', '\u00a0', '\ufeff');
const key = fc.constantFrom(
  '"value"',
  '"ts"',
  '"time"',
  '"unit"',
  '"device"',
  '"val\\u0075e"',
  '"Value"',
  'value',
);
const scalar = fc.oneof(numberText, fc.constantFrom('"21.5"', 'null', 'true', '{}', '[]', '"x"'));
/** An object of 0–4 members, mostly `value` and `ts` with numbers, spaced and ordered at random. */
const object = fc
  .array(
    fc.tuple(
      fc.oneof({ weight: 4, arbitrary: fc.constantFrom('"value"', '"ts"') }, key),
      ws,
      ws,
      fc.oneof({ weight: 4, arbitrary: numberText }, scalar),
      ws,
    ),
    {
      maxLength: 4,
    },
  )
  .chain((members) =>
    fc
      .tuple(ws, ws)
      .map(
        ([a, b]) => `{${a}${members.map(([k, w1, w2, v, w3]) => `${k}${w1}:${w2}${v}${w3}`).join(',')}${b}}`,
      ),
  );
/** What the fast path takes: `value` and maybe `ts`, JSON numbers, JSON whitespace, lists of 1–3. */
const jsonNumber = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => JSON.stringify(n)),
  fc.integer({ min: 0, max: 2 ** 47 }).map((n) => String(1_700_000_000_000 + n)),
  fc.constantFrom('-0', '0', '1e400', '-1.5E-3', '123456789012345', '1234567890123456', '9007199254740993'),
);
const jsonWs = fc.constantFrom('', '', ' ', '\n', '\t', '\r\n');
const clean = fc
  .tuple(jsonNumber, fc.option(jsonNumber), fc.boolean(), jsonWs, jsonWs, jsonWs)
  .map(([v, t, tsFirst, a, b, c]) => {
    const members = [`"value"${a}:${b}${v}`, ...(t === null ? [] : [`"ts":${c}${t}`])];
    if (tsFirst) members.reverse();
    return `{${a}${members.join(`${c},${b}`)}${c}}`;
  });
const payload = fc.oneof(
  { weight: 3, arbitrary: clean },
  {
    weight: 3,
    arbitrary: fc
      .tuple(jsonWs, fc.array(clean, { minLength: 1, maxLength: 3 }), jsonWs)
      .map(([a, items, b]) => `${a}[${items.join(`${b},${a}`)}]${b}`),
  },
  { weight: 3, arbitrary: fc.tuple(ws, object, ws).map(([a, o, b]) => `${a}${o}${b}`) },
  {
    weight: 3,
    arbitrary: fc
      .tuple(ws, fc.array(fc.tuple(ws, object, ws), { maxLength: 4 }), ws)
      .map(([a, items, b]) => `${a}[${items.map(([x, o, y]) => `${x}${o}${y}`).join(',')}]${b}`),
  },
  { weight: 1, arbitrary: fc.tuple(ws, numberText, ws).map(([a, n, b]) => `${a}${n}${b}`) },
  { weight: 1, arbitrary: fc.string() },
  // Cut short, or one character more.
  {
    weight: 1,
    arbitrary: fc
      .tuple(object, fc.nat(), fc.constantFrom('', ',', '}', ']', 'x'))
      .map(([o, n, extra]) => o.slice(0, n % (o.length + 1)) + extra),
  },
);

describe('decodePayload: the fast path for value objects', () => {
  it('answers every payload exactly as JSON.parse and the general decoder do', () => {
    fc.assert(
      fc.property(payload, fc.constantFrom(...FORMATS), fc.constantFrom(...CONTEXTS), (text, format, ctx) => {
        const bytes = Buffer.from(text, 'utf8');
        assert.deepStrictEqual(decodePayload(bytes, format, ctx), decodeGeneral(bytes, format, ctx));
      }),
      { numRuns: 20_000 },
    );
  });

  it('reads every decimal as JSON.parse does, to the last bit', () => {
    const decimal = fc
      .tuple(
        fc.boolean(),
        fc.stringMatching(/^(0|[1-9][0-9]{0,16})$/),
        fc.option(fc.stringMatching(/^[0-9]{1,17}$/)),
        fc.option(fc.integer({ min: -40, max: 40 })),
      )
      .map(
        ([neg, int, frac, exp]) =>
          `${neg ? '-' : ''}${int}${frac === null ? '' : `.${frac}`}${exp === null ? '' : `e${exp}`}`,
      );
    fc.assert(
      fc.property(decimal, (text) => {
        const fast = decodeValueFast(Buffer.from(`{"value":${text}}`), { maxMetrics: 1 });
        assert.ok(Object.is(fast?.candidates[0]?.value, JSON.parse(text)), text);
      }),
      { numRuns: 50_000 },
    );
  });

  it('takes the shapes sensors send, with the same readings', () => {
    const ctx: DecodeContext = { device: 'boiler-1', metric: 'temperature', maxMetrics: 256 };
    for (const text of [
      '{"value":21.5,"ts":1764758400123}',
      '{"ts":1764758400123,"value":-0}',
      ' [ {"value": 1e-7} , {"value":20.142857142857142,"ts":1764758400124} ]\n',
      '{"value":123456789012345678901234567890}',
    ]) {
      const fast = decodeValueFast(Buffer.from(text), ctx);
      assert.notEqual(fast, null, text);
      assert.deepStrictEqual(fast, decodeGeneral(Buffer.from(text), 'auto', ctx), text);
    }
    const zero = decodeValueFast(Buffer.from('{"value":-0}'), ctx);
    assert.ok(Object.is(zero?.candidates[0]?.value, -0));
  });

  it('leaves to the general decoder what it is not sure of', () => {
    const ctx: DecodeContext = { maxMetrics: 2 };
    for (const text of [
      '{"value":1,"value":2}',
      '{"value":"21.5"}',
      '{"value":1,"unit":"°C"}',
      '{"ts":1}',
      '{}',
      '[]',
      '[{"value":1},{"value":2},{"value":3}]',
      '{"value":01}',
      '{"val\\u0075e":1}',
      '\ufeff{"value":1}',
      '{"value":1}x',
    ]) {
      assert.equal(decodeValueFast(Buffer.from(text), ctx), null, text);
    }
  });
});
