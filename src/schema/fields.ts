/** The zod fields the config schemas share: sizes, names, identifiers, numbers and booleans as text. */
import { z } from 'zod';
import { parseSize } from '../model/duration.js';
import { NAME_RE } from '../model/reading.js';

/** A size as text (`64KiB`, `1GiB`) or integer bytes; parses to bytes. */
export function size(options: { min?: number } = {}) {
  const min = options.min ?? 0;
  return z.union([z.string(), z.number()]).transform((input, ctx) => {
    const bytes = parseSize(input);
    if (bytes === null) {
      ctx.issues.push({
        code: 'custom',
        input,
        message: `expected a size such as 64KiB, 1MiB, 1GiB or integer bytes, found ${JSON.stringify(input)}`,
      });
      return z.NEVER;
    }
    if (bytes < min) {
      ctx.issues.push({
        code: 'custom',
        input,
        message: `expected at least ${min} bytes, found ${JSON.stringify(input)}`,
      });
      return z.NEVER;
    }
    return bytes;
  });
}

/** A device or metric name (SPEC §1). */
export const name = z.string().regex(NAME_RE, { message: 'expected 1–128 characters of [A-Za-z0-9_.:-]' });

/** An identifier of a source, upstream or gateway. */
export const identifier = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, { message: 'expected 1–64 characters of [A-Za-z0-9_.-]' });

/**
 * Numbers and booleans also accept their text form, because `\${VAR}` substitution and
 * `TIDEGATE_*` overrides always produce text: `port: \${API_PORT}` with API_PORT=9000 is 9000.
 */
function numberText(v: unknown): unknown {
  return typeof v === 'string' && /^\s*-?\d+(?:\.\d+)?\s*$/.test(v) ? Number(v) : v;
}

function booleanText(v: unknown): unknown {
  return v === 'true' ? true : v === 'false' ? false : v;
}

export function num<T extends z.ZodType<number>>(schema: T) {
  return z.preprocess(numberText, schema);
}

export function bool() {
  return z.preprocess(booleanText, z.boolean());
}

export function boolOr<T extends z.ZodType>(other: T) {
  return z.preprocess(booleanText, z.union([z.boolean(), other]));
}

export const port = num(z.number().int().min(0).max(65535));
