import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  NAME_RE,
  type Reading,
  type ReadingCandidate,
  ReadingRejection,
  validateReading,
} from '../../src/model/reading.js';
import {
  type DecodeContext,
  type Decoded,
  decodePayload,
  type PayloadFormat,
} from '../../src/sources/decoders.js';
import { MqttTopicRoute } from '../../src/sources/mqtt-route.js';

const NOW = Date.parse('2026-11-24T10:00:00.000Z');
const LIMITS = { now: NOW, maxFutureSkew: 5 * 60_000 };
const FORMATS: readonly PayloadFormat[] = ['auto', 'number', 'value', 'json'];
const topic: DecodeContext = { device: 'boiler-1', metric: 'temperature', maxMetrics: 256 };
const deviceOnly: DecodeContext = { device: 'plug-1', maxMetrics: 256 };
const nothing: DecodeContext = { maxMetrics: 256 };

function readings(d: Decoded): Reading[] {
  return d.candidates.map((c) => {
    const r = validateReading(c, LIMITS);
    if (r instanceof ReadingRejection) assert.fail(`candidate ${JSON.stringify(c)} rejected: ${r.message}`);
    return r;
  });
}

function onlyRejection(d: Decoded): ReadingRejection {
  assert.equal(d.candidates.length, 0, `expected no candidates, got ${JSON.stringify(d.candidates)}`);
  assert.equal(d.rejections.length, 1);
  const r = d.rejections[0];
  assert.ok(r instanceof ReadingRejection);
  return r;
}

describe('decodePayload: a bare number', () => {
  it('reads numbers in the usual notations; device and metric come from the topic', () => {
    for (const [text, value] of [
      ['21.5', 21.5],
      ['-3', -3],
      ['+4', 4],
      ['0', 0],
      ['1e3', 1000],
      ['2.5E-2', 0.025],
      ['.5', 0.5],
      ['7.', 7],
      ['  42\n', 42],
    ] as const) {
      const [r] = readings(decodePayload(text, 'auto', topic));
      assert.deepEqual(r, { device: 'boiler-1', metric: 'temperature', value, ts: NOW }, text);
    }
  });

  it('maps true/false to 1/0', () => {
    assert.equal(readings(decodePayload('true', 'number', topic))[0]?.value, 1);
    assert.equal(readings(decodePayload('false', 'auto', topic))[0]?.value, 0);
  });

  it('reads a Buffer as UTF-8', () => {
    assert.equal(readings(decodePayload(Buffer.from('12.25'), 'number', topic))[0]?.value, 12.25);
  });

  it('refuses text that is not a number with malformed_payload', () => {
    for (const text of [
      'NaN',
      'Infinity',
      '-Infinity',
      'abc',
      '12abc',
      '0x10',
      '1,5',
      '"21.5"',
      'null',
      '1 2',
    ]) {
      assert.equal(onlyRejection(decodePayload(text, 'number', topic)).reason, 'malformed_payload', text);
      assert.equal(onlyRejection(decodePayload(text, 'auto', topic)).reason, 'malformed_payload', text);
    }
  });

  it('refuses an empty payload in every format', () => {
    for (const format of FORMATS) {
      for (const payload of ['', '   ', Buffer.alloc(0)]) {
        assert.equal(
          onlyRejection(decodePayload(payload, format, topic)).reason,
          'malformed_payload',
          format,
        );
      }
    }
  });

  it('leaves an overflowing number to validation (invalid_value), never a crash', () => {
    const d = decodePayload('1e999', 'number', topic);
    assert.equal(d.candidates.length, 1);
    const r = validateReading(d.candidates[0] as ReadingCandidate, LIMITS);
    assert.ok(r instanceof ReadingRejection);
    assert.equal(r.reason, 'invalid_value');
  });
});

describe('decodePayload: {"value", "ts"}', () => {
  it('reads value, ts, unit and tags', () => {
    const d = decodePayload(
      '{"value": 81.5, "ts": "2026-11-24T09:59:00.000Z", "unit": "°C", "tags": {"room": "cellar"}}',
      'auto',
      topic,
    );
    assert.deepEqual(readings(d), [
      {
        device: 'boiler-1',
        metric: 'temperature',
        value: 81.5,
        ts: Date.parse('2026-11-24T09:59:00.000Z'),
        unit: '°C',
        tags: { room: 'cellar' },
      },
    ]);
  });

  it('accepts epoch ms and `time` for ts; without ts it is the receive time', () => {
    assert.equal(readings(decodePayload(`{"value": 1, "ts": ${NOW - 5}}`, 'value', topic))[0]?.ts, NOW - 5);
    assert.equal(readings(decodePayload(`{"value": 1, "time": ${NOW - 7}}`, 'value', topic))[0]?.ts, NOW - 7);
    assert.equal(readings(decodePayload('{"value": 1}', 'value', topic))[0]?.ts, NOW);
  });

  it('takes device and metric from the object where the topic does not name them', () => {
    const d = decodePayload('{"device": "d9", "metric": "rpm", "value": 1200}', 'auto', nothing);
    assert.deepEqual(readings(d), [{ device: 'd9', metric: 'rpm', value: 1200, ts: NOW }]);
  });

  it('prefers the names from the topic over those in the object', () => {
    const d = decodePayload('{"device": "other", "metric": "other", "value": 1}', 'value', topic);
    const [r] = readings(d);
    assert.equal(r?.device, 'boiler-1');
    assert.equal(r?.metric, 'temperature');
  });

  it('reads a list of them, one candidate per item', () => {
    const d = decodePayload(
      JSON.stringify([{ value: 1, ts: NOW - 2000 }, { value: 2, ts: NOW - 1000 }, { value: 3 }]),
      'auto',
      topic,
    );
    assert.deepEqual(
      readings(d).map((r) => [r.value, r.ts]),
      [
        [1, NOW - 2000],
        [2, NOW - 1000],
        [3, NOW],
      ],
    );
  });

  it('rejects list items that are not objects and keeps the others', () => {
    const d = decodePayload('[{"value": 1}, 5, null, [2], {"value": 2}]', 'value', topic);
    assert.equal(d.candidates.length, 2);
    assert.equal(d.rejections.length, 3);
    assert.ok(d.rejections.every((r) => r.reason === 'malformed_payload'));
  });

  it('passes a bad value on to validation instead of dropping it', () => {
    for (const v of ['"hot"', 'null', '{}']) {
      const d = decodePayload(`{"value": ${v}}`, 'value', topic);
      assert.equal(d.candidates.length, 1);
      const r = validateReading(d.candidates[0] as ReadingCandidate, LIMITS);
      assert.ok(r instanceof ReadingRejection && r.reason === 'invalid_value', v);
    }
  });

  it('refuses JSON that is not an object or list in the value format', () => {
    for (const text of ['21.5', '"x"', 'null', 'true']) {
      assert.equal(onlyRejection(decodePayload(text, 'value', topic)).reason, 'malformed_payload', text);
    }
  });
});

describe('decodePayload: a flat object of several metrics', () => {
  const z2m = JSON.stringify({
    temperature: 21.5,
    humidity: 40,
    battery: 97,
    occupancy: true,
    state: 'ON',
    linkquality: 120,
    update: { state: 'idle' },
    color: null,
    list: [1, 2],
  });

  it('turns numeric and boolean fields into readings and skips the rest', () => {
    const d = decodePayload(z2m, 'auto', deviceOnly);
    assert.deepEqual(d.rejections, []);
    const got = readings(d)
      .map((r) => `${r.device}/${r.metric}=${r.value}`)
      .sort();
    assert.deepEqual(got, [
      'plug-1/battery=97',
      'plug-1/humidity=40',
      'plug-1/linkquality=120',
      'plug-1/occupancy=1',
      'plug-1/temperature=21.5',
    ]);
  });

  it('uses ts or time of the object for every reading', () => {
    const ts = '2026-11-24T09:58:00.000Z';
    for (const field of ['ts', 'time']) {
      const d = decodePayload(JSON.stringify({ [field]: ts, power: 10, voltage: 230 }), 'json', deviceOnly);
      const rs = readings(d);
      assert.equal(rs.length, 2, field);
      assert.ok(
        rs.every((r) => r.ts === Date.parse(ts)),
        field,
      );
    }
  });

  it('does not turn a numeric ts, time or device field into a metric', () => {
    const d = decodePayload(JSON.stringify({ ts: NOW - 1, time: NOW - 2, power: 1 }), 'json', deviceOnly);
    assert.deepEqual(
      readings(d).map((r) => r.metric),
      ['power'],
    );
  });

  it('takes the device from the object when the topic does not name one', () => {
    const d = decodePayload('{"device": "shelly-1", "power": 12.5}', 'json', nothing);
    assert.deepEqual(readings(d), [{ device: 'shelly-1', metric: 'power', value: 12.5, ts: NOW }]);
  });

  it('applies tags of the object to every reading', () => {
    const d = decodePayload('{"tags": {"site": "n"}, "a": 1, "b": 2}', 'json', deviceOnly);
    assert.ok(readings(d).every((r) => r.tags?.['site'] === 'n'));
  });

  it('refuses an object without any numeric field', () => {
    const r = onlyRejection(decodePayload('{"state": "ON", "ts": 5}', 'json', deviceOnly));
    assert.equal(r.reason, 'malformed_payload');
    assert.equal(onlyRejection(decodePayload('{}', 'auto', deviceOnly)).reason, 'malformed_payload');
  });

  it('refuses a list in the json format', () => {
    assert.equal(onlyRejection(decodePayload('[{"a": 1}]', 'json', deviceOnly)).reason, 'malformed_payload');
  });

  it('chooses the value shape in auto mode when the object has a value key', () => {
    const d = decodePayload('{"value": 3, "other": 4}', 'auto', topic);
    assert.deepEqual(
      readings(d).map((r) => [r.metric, r.value]),
      [['temperature', 3]],
    );
  });
});

describe('decodePayload: json where the topic names the metric', () => {
  it("reads a lone value field as the topic's metric, not as a metric called value", () => {
    assert.deepEqual(readings(decodePayload('{"value": 60}', 'json', topic)), [
      { device: 'boiler-1', metric: 'temperature', value: 60, ts: NOW },
    ]);
  });

  it('reads {"value", "ts", "unit", "tags"} as the value shape does', () => {
    const text =
      '{"value": 81.5, "ts": "2026-11-24T09:59:00.000Z", "unit": "°C", "tags": {"room": "cellar"}}';
    assert.deepEqual(
      readings(decodePayload(text, 'json', topic)),
      readings(decodePayload(text, 'value', topic)),
    );
  });

  it("names the other fields by their keys, beside value as the topic's metric", () => {
    const d = decodePayload('{"value": 21, "unit": "°C", "battery": 90, "ts": 1764000000000}', 'json', topic);
    assert.deepEqual(
      readings(d).map((r) => [r.metric, r.value, r.ts, r.unit]),
      [
        ['temperature', 21, 1764000000000, '°C'],
        ['battery', 90, 1764000000000, undefined],
      ],
    );
  });

  it('takes the fixed metric of a topic entry too', () => {
    const route = new MqttTopicRoute(
      { filter: 'home/boiler/flow', device: 'boiler-1', metric: 'flow', payload: 'json', qos: 0 },
      256,
    );
    const named = route.template.match('home/boiler/flow') ?? assert.fail('the topic matches');
    assert.deepEqual(
      readings(route.decode(named, '{"value": 7.5}')).map((r) => [r.metric, r.value]),
      [['flow', 7.5]],
    );
  });

  it('leaves objects without a value field, and topics without a metric, as they were', () => {
    assert.deepEqual(
      readings(decodePayload('{"temp": 21, "hum": 40}', 'json', topic)).map((r) => [r.metric, r.value]),
      [
        ['temp', 21],
        ['hum', 40],
      ],
    );
    assert.deepEqual(
      readings(decodePayload('{"value": 60}', 'json', deviceOnly)).map((r) => [r.metric, r.value]),
      [['value', 60]],
    );
  });
});

describe('decodePayload: maxMetrics', () => {
  function flat(n: number): string {
    const o: Record<string, number> = {};
    for (let i = 0; i < n; i++) o[`m${i}`] = i;
    return JSON.stringify(o);
  }

  it('accepts exactly maxMetrics readings', () => {
    assert.equal(decodePayload(flat(4), 'json', { ...deviceOnly, maxMetrics: 4 }).candidates.length, 4);
    const list = JSON.stringify([{ value: 1 }, { value: 2 }, { value: 3 }, { value: 4 }]);
    assert.equal(decodePayload(list, 'value', { ...topic, maxMetrics: 4 }).candidates.length, 4);
  });

  it('rejects the whole message with too_many_metrics beyond it', () => {
    const r = onlyRejection(decodePayload(flat(5), 'json', { ...deviceOnly, maxMetrics: 4 }));
    assert.equal(r.reason, 'too_many_metrics');
    const list = JSON.stringify([{ value: 1 }, { value: 2 }, { value: 3 }, { value: 4 }, { value: 5 }]);
    assert.equal(
      onlyRejection(decodePayload(list, 'auto', { ...topic, maxMetrics: 4 })).reason,
      'too_many_metrics',
    );
  });

  it('counts only the fields that would become readings', () => {
    const text = JSON.stringify({ a: 1, b: 2, state: 'ON', label: 'x', ts: NOW });
    assert.equal(decodePayload(text, 'json', { ...deviceOnly, maxMetrics: 2 }).candidates.length, 2);
  });
});

describe('decodePayload: malformed JSON', () => {
  it('refuses broken JSON with malformed_payload in every JSON-reading format', () => {
    for (const text of ['{', '{"value": }', '[1, 2', '{value: 1}', "{'a': 1}", '{"a": 1} x', '{"a": NaN}']) {
      for (const format of ['auto', 'value', 'json'] as const) {
        assert.equal(
          onlyRejection(decodePayload(text, format, topic)).reason,
          'malformed_payload',
          `${format} ${text}`,
        );
      }
    }
  });

  it('refuses JSON in the number format', () => {
    assert.equal(onlyRejection(decodePayload('{"value": 1}', 'number', topic)).reason, 'malformed_payload');
  });

  it('survives deeply nested JSON', () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    assert.equal(onlyRejection(decodePayload(deep, 'auto', topic)).reason, 'malformed_payload');
    const nested = `${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}`;
    assert.equal(onlyRejection(decodePayload(nested, 'json', deviceOnly)).reason, 'malformed_payload');
  });
});

describe('decodePayload: properties', () => {
  const validName = fc.stringMatching(/^[A-Za-z0-9_.:-]{1,20}$/);
  const ctxArb = fc.record({
    device: fc.option(validName, { nil: undefined }),
    metric: fc.option(validName, { nil: undefined }),
    maxMetrics: fc.integer({ min: 1, max: 8 }),
  });
  const objectOfMetrics = fc.dictionary(
    fc.oneof(
      validName,
      fc.string(),
      fc.constantFrom('ts', 'time', 'value', 'device', 'unit', 'tags', '__proto__'),
    ),
    fc.oneof(
      fc.double(),
      fc.boolean(),
      fc.string(),
      fc.constant(null),
      fc.integer({ min: NOW - 1e9, max: NOW + 1e9 }),
      fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
      fc.jsonValue(),
    ),
    { maxKeys: 12 },
  );
  const payloadArb: fc.Arbitrary<string | Buffer> = fc.oneof(
    fc.string(),
    fc.string({ unit: 'binary' }),
    fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc.double().map((n) => String(n)),
    objectOfMetrics.map((o) => JSON.stringify(o)),
    fc.array(objectOfMetrics, { maxLength: 10 }).map((l) => JSON.stringify(l)),
  );

  it('never throws, and every candidate validates to a Reading or a ReadingRejection', () => {
    fc.assert(
      fc.property(payloadArb, fc.constantFrom(...FORMATS), ctxArb, (payload, format, ctx) => {
        const d = decodePayload(payload, format, ctx);
        assert.ok(Array.isArray(d.candidates) && Array.isArray(d.rejections));
        for (const r of d.rejections) assert.ok(r instanceof ReadingRejection);
        assert.ok(d.candidates.length <= ctx.maxMetrics, 'never more than maxMetrics candidates');
        if (d.rejections.some((r) => r.reason === 'too_many_metrics')) assert.equal(d.candidates.length, 0);
        for (const c of d.candidates) {
          const r = validateReading(c, LIMITS);
          if (r instanceof ReadingRejection) {
            assert.equal(typeof r.reason, 'string');
            assert.equal(typeof r.message, 'string');
            continue;
          }
          assert.ok(Number.isFinite(r.value), `value ${r.value}`);
          assert.ok(NAME_RE.test(r.device), `device ${r.device}`);
          assert.ok(NAME_RE.test(r.metric), `metric ${r.metric}`);
          assert.ok(Number.isInteger(r.ts), `ts ${r.ts}`);
          assert.ok(r.ts <= NOW + LIMITS.maxFutureSkew);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('answers every non-empty-list message with at least one candidate or rejection', () => {
    fc.assert(
      fc.property(payloadArb, fc.constantFrom(...FORMATS), ctxArb, (payload, format, ctx) => {
        const text = payload.toString().trim();
        fc.pre(text !== '[]' && !/^\[\s*\]$/.test(text));
        const d = decodePayload(payload, format, ctx);
        assert.ok(d.candidates.length + d.rejections.length > 0, `nothing for ${JSON.stringify(text)}`);
      }),
      { numRuns: 1000 },
    );
  });

  it('decodes String(n) of any finite number n to exactly one reading of value n', () => {
    fc.assert(
      fc.property(
        fc.double({ noNaN: true, noDefaultInfinity: true }),
        validName,
        validName,
        (n, device, metric) => {
          const d = decodePayload(String(n), 'auto', { device, metric, maxMetrics: 1 });
          assert.equal(d.rejections.length, 0);
          assert.equal(d.candidates.length, 1);
          const r = validateReading(d.candidates[0] as ReadingCandidate, LIMITS);
          assert.ok(!(r instanceof ReadingRejection), `rejected ${String(n)}`);
          assert.ok(r.value === n, `${String(n)} decoded to ${r.value}`);
          assert.equal(r.device, device);
          assert.equal(r.metric, metric);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
