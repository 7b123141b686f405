/** The width of the per-minute rollups (`readings_1m`), in ms. */
export const MINUTE = 60_000;

/**
 * The start of the minute holding `ts`: floor division, so that minutes stay aligned to the epoch
 * for negative times too (the same expression as migration 5's SQL).
 */
export function minuteOf(ts: number): number {
  return ts - (((ts % MINUTE) + MINUTE) % MINUTE);
}
