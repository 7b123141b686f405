import { z } from 'zod';
import { durationSchema } from '../../model/duration.js';
import { NAME_RE } from '../../model/reading.js';
import { identifier, name, num } from '../../schema/fields.js';

/**
 * The `serial` source of the gateway configuration (SPEC §3, §6): a line-oriented sensor on a
 * serial port, one reading line per message, in one of four formats.
 */

/** Column and group names with a meaning of their own; every other name is a metric. */
export const TS_FIELD = 'ts';
export const DEVICE_FIELD = 'device';
/** A csv column that is skipped (an empty name too). */
export const SKIP_COLUMN = '_';

/** YAML `'\n'` (single-quoted) is a backslash and an n: accept the escaped spellings as well. */
function unescapeDelimiter(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  return v.replaceAll('\\r', '\r').replaceAll('\\n', '\n');
}

/**
 * The named groups of a pattern, in order, or the reason it does not compile. An empty
 * alternative makes the pattern match '' so that `groups` lists every name, matched or not.
 */
export function regexGroups(pattern: string): string[] | Error {
  try {
    new RegExp(pattern);
    const probe = new RegExp(`(?:${pattern})|`).exec('');
    return Object.keys(probe?.groups ?? {});
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

export const serialSourceSchema = z
  .strictObject({
    id: identifier,
    type: z.literal('serial'),
    /** The port: /dev/ttyUSB0, or better a stable /dev/serial/by-id/… link. */
    path: z.string().min(1),
    baudRate: num(z.number().int().min(50).max(4_000_000)).default(9600),
    dataBits: num(z.union([z.literal(5), z.literal(6), z.literal(7), z.literal(8)])).default(8),
    parity: z.enum(['none', 'even', 'odd']).default('none'),
    stopBits: num(z.union([z.literal(1), z.literal(2)])).default(1),
    /** What ends a line. With "\n", a trailing "\r" is trimmed anyway. */
    delimiter: z.preprocess(unescapeDelimiter, z.enum(['\n', '\r\n', '\r'])).default('\n'),
    /** utf8 lines with invalid bytes are rejected; latin1 and ascii decode any byte. */
    encoding: z.enum(['utf8', 'ascii', 'latin1']).default('utf8'),
    /** The device readings get unless a line names one; default: the source id. */
    device: name.optional(),
    /** The metric of a line that is a bare value (json format: `21.5` or `{"value": 21.5}`). */
    metric: name.optional(),
    format: z.enum(['json', 'csv', 'kv', 'regex']),
    /** csv: metric names in field order; `_` or "" skips a field, `ts` is the timestamp, `device` the device. */
    columns: z.array(z.string()).optional(),
    /** csv: the field separator. */
    separator: z.string().min(1).max(8).default(','),
    /** regex: named groups; `ts` is the timestamp, `device` the device, every other group a metric. */
    regex: z.string().min(1).optional(),
    /** Longer lines are rejected and reading resynchronises at the next delimiter. */
    maxLineLength: num(z.number().int().min(16).max(1_048_576)).default(4096),
    /** Reopen backoff after an unplug or a failed open: from min, doubling, up to max. */
    reopen: z
      .strictObject({
        min: durationSchema({ min: 10 }).default(1000),
        max: durationSchema({ min: 10 }).default(30_000),
      })
      .prefault({}),
  })
  .superRefine((s, ctx) => {
    if (s.reopen.max < s.reopen.min)
      ctx.addIssue({
        code: 'custom',
        path: ['reopen', 'max'],
        message: `expected at least reopen.min (${s.reopen.min} ms), found ${s.reopen.max} ms`,
      });
    if (s.format !== 'csv' && s.columns !== undefined)
      ctx.addIssue({ code: 'custom', path: ['columns'], message: 'columns apply to format csv only' });
    if (s.format !== 'regex' && s.regex !== undefined)
      ctx.addIssue({ code: 'custom', path: ['regex'], message: 'regex applies to format regex only' });
    if (s.separator.includes('\n') || s.separator.includes('\r'))
      ctx.addIssue({
        code: 'custom',
        path: ['separator'],
        message: 'the separator cannot contain a line end',
      });
    if (s.format === 'csv') checkColumns(s.columns, ctx);
    if (s.format === 'regex') checkRegex(s.regex, ctx);
  });

function checkColumns(columns: string[] | undefined, ctx: z.core.$RefinementCtx): void {
  if (columns === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['columns'],
      message: 'format csv needs columns: the metric names in field order, e.g. [temperature, humidity]',
    });
    return;
  }
  const seen = new Set<string>();
  let metrics = 0;
  columns.forEach((c, i) => {
    if (c === '' || c === SKIP_COLUMN) return;
    if (seen.has(c)) {
      ctx.addIssue({ code: 'custom', path: ['columns', i], message: `duplicate column "${c}"` });
      return;
    }
    seen.add(c);
    if (c === TS_FIELD || c === DEVICE_FIELD) return;
    metrics++;
    if (!NAME_RE.test(c))
      ctx.addIssue({
        code: 'custom',
        path: ['columns', i],
        message: `expected a metric name of 1–128 characters of [A-Za-z0-9_.:-], or _ to skip, found "${c}"`,
      });
  });
  if (metrics === 0)
    ctx.addIssue({ code: 'custom', path: ['columns'], message: 'expected at least one metric column' });
}

function checkRegex(pattern: string | undefined, ctx: z.core.$RefinementCtx): void {
  if (pattern === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['regex'],
      message: 'format regex needs regex: a pattern with named groups, e.g. "T=(?<temperature>\\S+)"',
    });
    return;
  }
  const groups = regexGroups(pattern);
  if (groups instanceof Error) {
    ctx.addIssue({
      code: 'custom',
      path: ['regex'],
      message: `not a valid regular expression: ${groups.message}`,
    });
    return;
  }
  const metrics = groups.filter((g) => g !== TS_FIELD && g !== DEVICE_FIELD);
  if (metrics.length === 0)
    ctx.addIssue({
      code: 'custom',
      path: ['regex'],
      message: 'expected at least one named group for a metric, e.g. (?<temperature>[-0-9.]+)',
    });
  for (const g of metrics)
    if (!NAME_RE.test(g))
      ctx.addIssue({
        code: 'custom',
        path: ['regex'],
        message: `group "${g}" is not a valid metric name (1–128 characters of [A-Za-z0-9_.:-])`,
      });
}

export type SerialSourceConfig = z.output<typeof serialSourceSchema>;
export type SerialSourceInput = z.input<typeof serialSourceSchema>;
export type SerialFormat = SerialSourceConfig['format'];
