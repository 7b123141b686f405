/** Durations and sizes as the SPEC writes them: `250ms`, `10s`, `5m`, `2h`, `1d` or integer ms; `64KiB`, `1GiB`. */
import { z } from 'zod';
import { describeFound } from './found.js';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_RE = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/;

/** Milliseconds for a duration, or null when the text is not one. */
export function parseDuration(input: unknown): number | null {
  if (typeof input === 'number') return Number.isSafeInteger(input) && input >= 0 ? input : null;
  if (typeof input !== 'string') return null;
  const text = input.trim();
  if (/^\d+$/.test(text)) return parseDuration(Number(text));
  const m = DURATION_RE.exec(text);
  if (!m) return null;
  const ms = Number(m[1]) * (DURATION_UNITS[m[2] as string] as number);
  return Number.isSafeInteger(Math.round(ms)) ? Math.round(ms) : null;
}

const DURATION_HELP = 'a duration like 250ms, 10s, 5m, 2h, 1d or integer milliseconds';

/** The schema of a duration field (config and rules): text or integer ms in, ms out, at least `min`. */
export function durationSchema(options: { min?: number; max?: number } = {}) {
  const min = options.min ?? 0;
  const max = options.max ?? Number.POSITIVE_INFINITY;
  return z.unknown().transform((input, ctx): number => {
    const ms = parseDuration(input);
    if (ms === null) {
      ctx.addIssue({ code: 'custom', message: `expected ${DURATION_HELP}, found ${describeFound(input)}` });
      return z.NEVER;
    }
    if (ms < min) {
      ctx.addIssue({
        code: 'custom',
        message: `expected a duration of at least ${min} ms, found ${describeFound(input)}`,
      });
      return z.NEVER;
    }
    if (ms > max) {
      ctx.addIssue({
        code: 'custom',
        message: `expected a duration of at most ${max} ms, found ${describeFound(input)}`,
      });
      return z.NEVER;
    }
    return ms;
  });
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};
const SIZE_RE = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)$/i;

/** Bytes for a size, or null when the text is not one. */
export function parseSize(input: unknown): number | null {
  if (typeof input === 'number') return Number.isSafeInteger(input) && input >= 0 ? input : null;
  if (typeof input !== 'string') return null;
  const text = input.trim();
  if (/^\d+$/.test(text)) return parseSize(Number(text));
  const m = SIZE_RE.exec(text);
  if (!m) return null;
  const bytes = Math.round(Number(m[1]) * (SIZE_UNITS[(m[2] as string).toLowerCase()] as number));
  return Number.isSafeInteger(bytes) ? bytes : null;
}

/** The shortest exact spelling of a duration, for messages and the API. */
export function formatDuration(ms: number): string {
  for (const [unit, factor] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1_000],
  ] as const) {
    if (ms >= factor && ms % factor === 0) return `${ms / factor}${unit}`;
  }
  return `${ms}ms`;
}
