import { z } from 'zod';
import { NAME_RE } from '../model/reading.js';
import { parseTimeText } from '../model/timestamp.js';
import { issueMessage } from '../schema/problems.js';
import { ApiError } from './errors.js';

/** Listings are bounded: 1,000 rows by default, 100,000 at most (SPEC §5). */
export const DEFAULT_LIMIT = 1000;
export const MAX_LIMIT = 100_000;

/** A query parameter given once (a repeated one arrives as a list and is refused). */
export const single = z.string({ error: 'expected one value' });

/** ISO-8601 with offset, or epoch milliseconds. */
export const timeParam = single.transform((text, ctx) => {
  const t = parseTimeText(text);
  if (t === null) {
    ctx.issues.push({
      code: 'custom',
      input: text,
      message: 'expected ISO-8601 with Z or ±HH:MM, or epoch milliseconds',
    });
    return z.NEVER;
  }
  return t;
});

/** One name or a comma-separated list of names. */
export const namesParam = single.transform((text, ctx) => {
  const names = text.split(',').map((s) => s.trim());
  const bad = names.find((n) => !NAME_RE.test(n));
  if (bad !== undefined) {
    ctx.issues.push({
      code: 'custom',
      input: text,
      message: `expected names of [A-Za-z0-9_.:-], found ${JSON.stringify(bad)}`,
    });
    return z.NEVER;
  }
  return names;
});

export const nameParam = single.regex(NAME_RE, { message: 'expected 1–128 characters of [A-Za-z0-9_.:-]' });

export const limitParam = single
  .regex(/^\d+$/, { message: `expected an integer from 1 to ${MAX_LIMIT}` })
  .transform(Number)
  .pipe(z.number().int().min(1).max(MAX_LIMIT))
  .default(DEFAULT_LIMIT);

export const orderParam = z.enum(['asc', 'desc']).default('asc');

/** Validates a query string against a strict schema; every problem comes back as a 400 detail. */
export function parseQuery<S extends z.ZodType>(schema: S, query: unknown): z.output<S> {
  const result = schema.safeParse(query ?? {}, { reportInput: true });
  if (result.success) return result.data;
  const details = result.error.issues.map((issue) => {
    const path = issue.code === 'unrecognized_keys' ? issue.keys.join(',') : issue.path.map(String).join('.');
    const message = issue.code === 'unrecognized_keys' ? 'unknown query parameter' : issueMessage(issue);
    return { path, message };
  });
  throw new ApiError('bad_request', 'invalid query parameters', details);
}

/**
 * Opaque pagination cursors: a position (integers: e.g. ts and row id) and the order it belongs to,
 * so that a cursor of one order is refused in the other rather than misread.
 */
export function encodeCursor(position: readonly number[], order: 'asc' | 'desc'): string {
  return Buffer.from(JSON.stringify([...position, order])).toString('base64url');
}

export function decodeCursor(cursor: string, order: 'asc' | 'desc', arity: number): number[] {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (
      Array.isArray(v) &&
      v.length === arity + 1 &&
      v[arity] === order &&
      v.slice(0, arity).every((x) => Number.isSafeInteger(x))
    ) {
      return v.slice(0, arity) as number[];
    }
  } catch {
    // fall through
  }
  throw new ApiError(
    'bad_request',
    'invalid cursor: pass back the `next` value of the previous page with the same order',
    [{ path: 'cursor', message: 'not a cursor of this listing' }],
  );
}
