/**
 * Event times (SPEC §1, fine print 10): ISO-8601 with `Z` or `±HH:MM`, digits beyond milliseconds
 * truncated, or epoch milliseconds. Output is always ISO UTC with milliseconds.
 */

const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$/;

/** The largest instant a JavaScript Date can hold. */
export const MAX_EPOCH_MS = 8.64e15;

/**
 * Epoch ms for a time written as text by a person (a query parameter, a command-line flag):
 * ISO-8601 with an offset, or epoch milliseconds as digits; null otherwise.
 */
export function parseTimeText(text: string): number | null {
  const t = /^-?\d+$/.test(text) ? Number(text) : parseIsoTimestamp(text);
  return t !== null && Number.isSafeInteger(t) ? t : null;
}

/** Epoch ms for an ISO-8601 string with offset, or null. */
export function parseIsoTimestamp(text: string): number | null {
  const m = ISO_RE.exec(text);
  if (!m) return null;
  const [, ys, mos, ds, hs, mis, ss, frac, zone] = m as unknown as string[];
  const y = Number(ys);
  const mo = Number(mos);
  const d = Number(ds);
  const h = Number(hs);
  const mi = Number(mis);
  const s = Number(ss);
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59) return null;
  const ms = frac ? Number((frac + '00').slice(0, 3)) : 0;
  let offset = 0;
  if (zone && zone !== 'Z') {
    const oh = Number(zone.slice(1, 3));
    const om = Number(zone.slice(4, 6));
    if (oh > 23 || om > 59) return null;
    offset = (zone[0] === '-' ? -1 : 1) * (oh * 60 + om) * 60_000;
  }
  // Date.UTC maps years 0–99 to 1900–1999; setUTCFullYear does not.
  const base = new Date(0);
  base.setUTCFullYear(y, mo - 1, d);
  if (base.getUTCFullYear() !== y || base.getUTCMonth() !== mo - 1 || base.getUTCDate() !== d) return null;
  const t = base.getTime() + ((h * 60 + mi) * 60 + s) * 1000 + ms - offset;
  return Math.abs(t) <= MAX_EPOCH_MS ? t : null;
}

/**
 * Epoch ms for a timestamp field: a number is epoch milliseconds (fractions floored), a string is
 * ISO-8601 with an offset. Null for anything else or out of range.
 */
export function parseTimestamp(input: unknown): number | null {
  if (typeof input === 'number') {
    if (!Number.isFinite(input)) return null;
    const t = Math.floor(input);
    return Math.abs(t) <= MAX_EPOCH_MS ? t : null;
  }
  if (typeof input === 'string') return parseIsoTimestamp(input.trim());
  return null;
}

/** ISO-8601 UTC with milliseconds. */
export function formatTimestamp(ms: number): string {
  return new Date(ms).toISOString();
}
