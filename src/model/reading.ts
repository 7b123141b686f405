/**
 * model/ — what the gateway talks about: readings, rules, output records, timestamps, durations, and their
 * validation (types come from the schemas). The base layer: imports nothing of the gateway but
 * engine/expression.ts, a leaf the rule schema checks expressions with.
 */
import { describeFound } from './found.js';
import { formatTimestamp, parseTimestamp } from './timestamp.js';

/** One numeric sample (SPEC §1). `ts` is event time in epoch milliseconds. */
export interface Reading {
  device: string;
  metric: string;
  value: number;
  ts: number;
  unit?: string;
  tags?: Record<string, string>;
}

/** Why a reading was refused; the label of `tidegate_readings_rejected_total{reason}`. */
export type RejectReason =
  | 'malformed_payload'
  | 'invalid_device'
  | 'invalid_metric'
  | 'invalid_value'
  | 'invalid_ts'
  | 'missing_ts'
  | 'future_ts'
  | 'invalid_unit'
  | 'invalid_tags'
  | 'too_many_metrics'
  | 'oversized'
  | 'unknown_topic'
  | 'store_overflow'
  | 'device_limit';

export class ReadingRejection {
  constructor(
    readonly reason: RejectReason,
    readonly message: string,
  ) {}
}

export const NAME_RE = /^[A-Za-z0-9_.:-]{1,128}$/;
export const MAX_TAGS = 16;
export const MAX_TAG_VALUE_LENGTH = 256;
export const MAX_UNIT_LENGTH = 32;

export interface ReadingLimits {
  /** The receive time, used when a reading has no ts. */
  now: number;
  /** Readings further than this in the future are rejected. */
  maxFutureSkew: number;
  /** Replay requires a ts (fine print 10). */
  requireTs?: boolean;
}

/** A reading as a decoder or a JSON line delivers it: fields not yet checked. */
export interface ReadingCandidate {
  device?: unknown;
  metric?: unknown;
  value?: unknown;
  ts?: unknown;
  unit?: unknown;
  tags?: unknown;
}

/** What a source made of one message: the reading candidates it found, and what it refused. */
export interface Decoded {
  candidates: ReadingCandidate[];
  rejections: ReadingRejection[];
}

/** A finite number; booleans map to 0/1. */
export function toReadingValue(x: unknown): number | null {
  if (typeof x === 'boolean') return x ? 1 : 0;
  if (typeof x === 'number' && Number.isFinite(x)) return x;
  return null;
}

/**
 * The device and the metric name last found valid: the readings of one message mostly share both,
 * and a comparison costs less than the regular expression. Only names that passed are kept.
 */
const lastValid: { device: string | undefined; metric: string | undefined } = {
  device: undefined,
  metric: undefined,
};

/** Is `name` (a string) a valid device or metric name (NAME_RE)? */
function validName(name: string, kind: 'device' | 'metric'): boolean {
  if (name === lastValid[kind]) return true;
  if (!NAME_RE.test(name)) return false;
  lastValid[kind] = name;
  return true;
}

/** Checks a candidate against SPEC §1 and returns the reading or why it was refused. */
export function validateReading(c: ReadingCandidate, limits: ReadingLimits): Reading | ReadingRejection {
  if (typeof c.device !== 'string' || !validName(c.device, 'device')) {
    return new ReadingRejection(
      'invalid_device',
      `device must be 1–128 of [A-Za-z0-9_.:-], found ${describeFound(c.device)}`,
    );
  }
  if (typeof c.metric !== 'string' || !validName(c.metric, 'metric')) {
    return new ReadingRejection(
      'invalid_metric',
      `metric must be 1–128 of [A-Za-z0-9_.:-], found ${describeFound(c.metric)}`,
    );
  }
  const value = toReadingValue(c.value);
  if (value === null) {
    return new ReadingRejection(
      'invalid_value',
      `value must be a finite number or boolean, found ${describeFound(c.value)}`,
    );
  }
  let ts: number;
  if (c.ts === undefined || c.ts === null) {
    if (limits.requireTs) return new ReadingRejection('missing_ts', 'ts is required');
    ts = limits.now;
  } else {
    const parsed = parseTimestamp(c.ts);
    if (parsed === null) {
      return new ReadingRejection(
        'invalid_ts',
        `ts must be epoch milliseconds or ISO-8601 with Z or ±HH:MM, found ${describeFound(c.ts)}`,
      );
    }
    if (parsed > limits.now + limits.maxFutureSkew) {
      return new ReadingRejection(
        'future_ts',
        `ts ${new Date(parsed).toISOString()} is more than ${limits.maxFutureSkew} ms in the future`,
      );
    }
    ts = parsed;
  }
  const reading: Reading = { device: c.device, metric: c.metric, value, ts };
  if (c.unit !== undefined && c.unit !== null) {
    if (typeof c.unit !== 'string' || c.unit.length > MAX_UNIT_LENGTH) {
      return new ReadingRejection(
        'invalid_unit',
        `unit must be a string of at most ${MAX_UNIT_LENGTH} characters`,
      );
    }
    if (c.unit !== '') reading.unit = c.unit;
  }
  if (c.tags !== undefined && c.tags !== null) {
    const tags = validateTags(c.tags);
    if (tags instanceof ReadingRejection) return tags;
    if (tags) reading.tags = tags;
  }
  return reading;
}

function validateTags(input: unknown): Record<string, string> | undefined | ReadingRejection {
  if (typeof input !== 'object' || Array.isArray(input) || input === null) {
    return new ReadingRejection('invalid_tags', 'tags must be an object of strings');
  }
  const entries = Object.entries(input);
  if (entries.length > MAX_TAGS) return new ReadingRejection('invalid_tags', `at most ${MAX_TAGS} tags`);
  if (entries.length === 0) return undefined;
  for (const [k, v] of entries) {
    if (!NAME_RE.test(k))
      return new ReadingRejection('invalid_tags', `tag name ${describeFound(k)} is not a valid name`);
    if (typeof v !== 'string' || v.length > MAX_TAG_VALUE_LENGTH) {
      return new ReadingRejection(
        'invalid_tags',
        `tag ${k} must be a string of at most ${MAX_TAG_VALUE_LENGTH} characters`,
      );
    }
  }
  // fromEntries defines each key as an own property, even `__proto__`.
  return Object.fromEntries(entries) as Record<string, string>;
}

/** The identity of a reading for duplicate detection (SPEC §1, fine print 11). */
export function readingKey(r: Reading): string {
  return `${r.device}\u0000${r.metric}\u0000${r.ts}\u0000${r.value}`;
}

/** A reading as JSON goes out (API, upstreams, `late` records): ts as ISO UTC with milliseconds. */
export interface ReadingJson {
  device: string;
  metric: string;
  value: number;
  ts: string;
  unit?: string;
  tags?: Record<string, string>;
}

/** The JSON form of a reading, keys in the SPEC's order; absent (or null) unit and tags are left out. */
export function readingToJson(r: {
  device: string;
  metric: string;
  value: number;
  ts: number;
  unit?: string | null | undefined;
  tags?: Record<string, string> | null | undefined;
}): ReadingJson {
  const out: ReadingJson = { device: r.device, metric: r.metric, value: r.value, ts: formatTimestamp(r.ts) };
  if (r.unit) out.unit = r.unit;
  if (r.tags) out.tags = r.tags;
  return out;
}
