import type { Clock } from '../../runtime/clock.js';

/**
 * Small concurrency helpers of the Modbus bus: the error of a request that timed out (its deadline
 * is runtime/deadline.ts: settled by its response, its timeout or the loss of its link, whichever
 * comes first) and a pause on the clock.
 */

export class RequestTimeoutError extends Error {
  readonly code = 'ETIMEDOUT';
  constructor(what: string, ms: number) {
    super(`${what}: no response within ${ms} ms`);
    this.name = 'RequestTimeoutError';
  }
}

/** Resolves after `ms` on `clock`. */
export function pause(clock: Clock, ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => clock.setTimeout(resolve, ms));
}
