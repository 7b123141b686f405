import type { Clock } from '../../clock.js';

/**
 * Small concurrency helpers of the Modbus bus: a deadline on a pending request (settled by its
 * response, its timeout or the loss of its link, whichever comes first) and a pause on the clock.
 */

export class RequestTimeoutError extends Error {
  readonly code = 'ETIMEDOUT';
  constructor(what: string, ms: number) {
    super(`${what}: no response within ${ms} ms`);
    this.name = 'RequestTimeoutError';
  }
}

/**
 * `work`'s outcome if it settles within `ms` (and before `signal` aborts); otherwise rejects with
 * RequestTimeoutError (or the abort reason). A late outcome of `work` is ignored.
 */
export function deadline<T>(
  work: Promise<T>,
  ms: number,
  clock: Clock,
  options: { what: string; signal?: AbortSignal },
): Promise<T> {
  const { signal, what } = options;
  if (signal?.aborted) {
    work.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const finish = () => {
      settled = true;
      timer.cancel();
      signal?.removeEventListener('abort', onAbort);
    };
    const onAbort = () => {
      if (settled) return;
      finish();
      reject(signal?.reason);
    };
    const timer = clock.setTimeout(() => {
      if (settled) return;
      finish();
      reject(new RequestTimeoutError(what, ms));
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        if (settled) return;
        finish();
        resolve(value);
      },
      (err: unknown) => {
        if (settled) return;
        finish();
        reject(err);
      },
    );
  });
}

/** Resolves after `ms` on `clock`. */
export function pause(clock: Clock, ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => clock.setTimeout(resolve, ms));
}
