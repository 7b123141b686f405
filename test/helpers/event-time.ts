/**
 * Event times for tests that run the built gateway on the real clock: derived from it, so that the
 * store's retention never ages them out and maxFutureSkew never refuses them, whatever the date.
 */

const HOUR = 3_600_000;

/** The start of the hour before the current one: a round origin, a little in the past. */
export function recentHour(now = Date.now()): number {
  return Math.floor(now / HOUR) * HOUR - HOUR;
}

/** ISO-8601 UTC with milliseconds, as the gateway writes times. */
export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** The same instant written in local time at `offsetMinutes` from UTC, e.g. `…T11:00:03.250+01:00`. */
export function isoWithOffset(ms: number, offsetMinutes: number): string {
  const local = new Date(ms + offsetMinutes * 60_000).toISOString().slice(0, -1);
  const a = Math.abs(offsetMinutes);
  const hh = String(Math.floor(a / 60)).padStart(2, '0');
  const mm = String(a % 60).padStart(2, '0');
  return `${local}${offsetMinutes < 0 ? '-' : '+'}${hh}:${mm}`;
}
