/**
 * Output records (SPEC §2 "Output records"). Each is built with its keys in the SPEC's order so that
 * `JSON.stringify` gives exactly the documented shape; times are ISO-8601 UTC with milliseconds.
 */
import { type Reading, type ReadingJson, readingToJson } from './reading.js';
import { formatTimestamp } from './timestamp.js';

/** A group's identity: each groupBy field → its value; null for a tag the reading lacked (fine print 9). */
export type GroupKey = Readonly<Record<string, string | null>>;

/** Aggregate values by alias; null where the aggregate had nothing to work on. */
export type AggregateValues = Record<string, number | null>;

export interface ResultRecord {
  type: 'result';
  rule: string;
  key: GroupKey;
  start: string;
  end: string;
  count: number;
  values: AggregateValues;
  revision: number;
}

export type DecisionState = 'ok' | 'firing';

export interface DecisionRecord {
  type: 'decision';
  rule: string;
  key: GroupKey;
  state: DecisionState;
  /** The end of the window whose result caused the transition. */
  at: string;
  values: AggregateValues;
}

export type LateReading = ReadingJson;

/** A reading that fitted no live window of the rule: the side output of late data. */
export interface LateRecord {
  type: 'late';
  rule: string;
  reading: LateReading;
}

export type OutputRecord = ResultRecord | DecisionRecord | LateRecord;

/** Aggregates as JSON values: NaN (the engine's internal null) becomes null. */
export function valuesObject(aliases: readonly string[], values: readonly number[]): AggregateValues {
  const out: AggregateValues = {};
  for (let j = 0; j < aliases.length; j++) {
    const v = values[j] as number;
    const alias = aliases[j] as string;
    // An alias may legally be spelled `__proto__`; plain assignment would set the prototype instead.
    if (alias === '__proto__') {
      Object.defineProperty(out, alias, {
        value: Number.isNaN(v) ? null : v,
        enumerable: true,
        writable: true,
      });
    } else out[alias] = Number.isNaN(v) ? null : v;
  }
  return out;
}

/*
 * Window bounds repeat: every group of a rule closes the same windows, and a sliding window's end is
 * a later one's start. A small direct-mapped cache of their ISO texts saves most of the formatting.
 */
const TIME_CACHE = 1024;
const cachedMs = new Float64Array(TIME_CACHE).fill(Number.NaN);
const cachedText: string[] = new Array<string>(TIME_CACHE).fill('');

function boundText(ms: number): string {
  const i = (ms / 1000) & (TIME_CACHE - 1);
  if (cachedMs[i] === ms) return cachedText[i] as string;
  const text = formatTimestamp(ms);
  cachedMs[i] = ms;
  cachedText[i] = text;
  return text;
}

export function resultRecord(
  rule: string,
  key: GroupKey,
  start: number,
  end: number,
  count: number,
  values: AggregateValues,
  revision: number,
): ResultRecord {
  return {
    type: 'result',
    rule,
    key,
    start: boundText(start),
    end: boundText(end),
    count,
    values,
    revision,
  };
}

export function decisionRecord(
  rule: string,
  key: GroupKey,
  state: DecisionState,
  at: number,
  values: AggregateValues,
): DecisionRecord {
  return { type: 'decision', rule, key, state, at: boundText(at), values };
}

export function lateRecord(rule: string, r: Reading): LateRecord {
  return { type: 'late', rule, reading: readingToJson(r) };
}
