import { type Decoded, type ReadingCandidate, ReadingRejection } from '../model/reading.js';
import { decodeValueFast } from './value-fast-path.js';

export type { Decoded };

/**
 * Payload decoders shared by every MQTT source (SPEC §3). They turn one message into reading
 * candidates (validated later, in one place) or rejections; they never throw.
 *
 * - `number`: a bare number (`21.5`, `true`/`false` map to 1/0); the topic names device and metric.
 * - `value`: `{"value": …, "ts": …, "unit": …, "tags": {…}}`, or a list of such objects; `device`
 *   and `metric` fields are used where the topic doesn't name them.
 * - `json`: a flat object of several metrics (Zigbee2MQTT, Tasmota, Shelly style) with an optional
 *   `ts` or `time`; numeric and boolean fields become readings named by their key, others are skipped.
 *   Where the topic names a metric, a `value` field is that metric (with the object's `unit`).
 * - `auto`: `value` for objects with a `value` key and for lists, `json` for other objects, else `number`.
 */
export type PayloadFormat = 'auto' | 'number' | 'value' | 'json';

export interface DecodeContext {
  /** Named by the topic (or fixed by the topic's config). */
  device?: string | undefined;
  metric?: string | undefined;
  /** More candidates than this reject the whole message. */
  maxMetrics: number;
}

const NUMBER_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
/** Fields of a flat object that are about the message, not metrics. */
const RESERVED = new Set(['ts', 'time', 'device', 'unit', 'tags']);

function rejected(reason: ReadingRejection['reason'], message: string): Decoded {
  return { candidates: [], rejections: [new ReadingRejection(reason, message)] };
}

/**
 * One message's candidates and rejections. `{"value": n, "ts": n}` and lists of it, the common
 * case, are read from the bytes directly (value-fast-path.ts), with the same answer.
 */
export function decodePayload(payload: Buffer | string, format: PayloadFormat, ctx: DecodeContext): Decoded {
  if (typeof payload !== 'string' && (format === 'auto' || format === 'value')) {
    const fast = decodeValueFast(payload, ctx);
    if (fast !== null) return fast;
  }
  return decodeGeneral(payload, format, ctx);
}

/** Every payload, through JSON.parse: what `decodePayload` answers where its fast path does not. */
export function decodeGeneral(payload: Buffer | string, format: PayloadFormat, ctx: DecodeContext): Decoded {
  const text = (typeof payload === 'string' ? payload : payload.toString('utf8')).trim();
  if (text.length === 0) return rejected('malformed_payload', 'empty payload');
  const first = text[0];
  if (format === 'number' || (format === 'auto' && first !== '{' && first !== '['))
    return decodeNumber(text, ctx);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return rejected('malformed_payload', `not JSON: ${(err as Error).message}`);
  }
  if (Array.isArray(parsed)) {
    if (format === 'json') return rejected('malformed_payload', 'expected a JSON object, found a list');
    return decodeValueList(parsed, ctx);
  }
  if (typeof parsed !== 'object' || parsed === null) {
    return rejected(
      'malformed_payload',
      `expected a JSON object, found ${parsed === null ? 'null' : typeof parsed}`,
    );
  }
  const obj = parsed as Record<string, unknown>;
  if (format === 'value' || (format === 'auto' && 'value' in obj)) {
    return { candidates: [valueObject(obj, ctx)], rejections: [] };
  }
  return decodeFlat(obj, ctx);
}

function decodeNumber(text: string, ctx: DecodeContext): Decoded {
  let value: number | boolean;
  if (text === 'true' || text === 'false') value = text === 'true';
  else if (NUMBER_RE.test(text)) value = Number(text);
  else {
    const shown = text.length > 40 ? `${text.slice(0, 40)}…` : text;
    return rejected(
      'malformed_payload',
      `expected a number, true/false or JSON, found ${JSON.stringify(shown)}`,
    );
  }
  return { candidates: [{ device: ctx.device, metric: ctx.metric, value }], rejections: [] };
}

function valueObject(obj: Record<string, unknown>, ctx: DecodeContext): ReadingCandidate {
  return {
    device: ctx.device ?? obj['device'],
    metric: ctx.metric ?? obj['metric'],
    value: obj['value'],
    ts: obj['ts'] ?? obj['time'],
    unit: obj['unit'],
    tags: obj['tags'],
  };
}

function decodeValueList(list: unknown[], ctx: DecodeContext): Decoded {
  if (list.length === 0) return rejected('malformed_payload', 'an empty list');
  if (list.length > ctx.maxMetrics) {
    return rejected(
      'too_many_metrics',
      `${list.length} readings in one message, more than ${ctx.maxMetrics}`,
    );
  }
  const out: Decoded = { candidates: [], rejections: [] };
  for (const item of list) {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      out.rejections.push(new ReadingRejection('malformed_payload', 'a list item is not an object'));
    } else {
      out.candidates.push(valueObject(item as Record<string, unknown>, ctx));
    }
  }
  return out;
}

function decodeFlat(obj: Record<string, unknown>, ctx: DecodeContext): Decoded {
  const ts = obj['ts'] ?? obj['time'];
  const device = ctx.device ?? obj['device'];
  const tags = obj['tags'];
  const out: Decoded = { candidates: [], rejections: [] };
  for (const key in obj) {
    if (RESERVED.has(key)) continue;
    const v = obj[key];
    if (typeof v !== 'number' && typeof v !== 'boolean') continue;
    // `{"value": 60}` on sensors/{device}/{metric} is that metric: the template says what the topic carries.
    if (key === 'value' && ctx.metric !== undefined) {
      out.candidates.push({ device, metric: ctx.metric, value: v, ts, unit: obj['unit'], tags });
    } else out.candidates.push({ device, metric: key, value: v, ts, tags });
  }
  if (out.candidates.length > ctx.maxMetrics) {
    return rejected(
      'too_many_metrics',
      `${out.candidates.length} metrics in one message, more than ${ctx.maxMetrics}`,
    );
  }
  if (out.candidates.length === 0)
    return rejected('malformed_payload', 'the object has no numeric or boolean field');
  return out;
}
