import { type Clock, systemClock } from './clock.js';

/**
 * `work`'s outcome if it settles within `ms` (and before `signal` aborts); otherwise rejects with
 * the error `onTimeout()` makes when the time is up (or with the abort reason). A late outcome of
 * `work` is ignored. The one timeout race of the Modbus requests and the upstreams' deliveries.
 */
export function deadline<T>(
  work: Promise<T>,
  ms: number,
  options: { onTimeout: () => Error; clock?: Clock; signal?: AbortSignal | undefined },
): Promise<T> {
  const { signal, onTimeout } = options;
  const clock = options.clock ?? systemClock;
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
      reject(onTimeout());
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
