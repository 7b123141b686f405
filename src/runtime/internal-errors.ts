import type { Clock } from './clock.js';
import { type Logger, RateLimitedLog } from './log.js';
import type { Metrics } from './metrics.js';

/**
 * Where an unexpected error is caught instead of escaping (a bus listener, a commit hook, a poll or
 * forwarding loop): counted by `where` (a name the code chooses, never a client) and logged,
 * rate-limited, so a bug that throws on every reading neither floods the journal nor stops the rest.
 */
export class InternalErrors {
  constructor(
    private readonly metrics: Metrics,
    private readonly log: RateLimitedLog,
  ) {}

  /** For a part that has the common collaborators: its own rate limit on the gateway's log. */
  static of(deps: { metrics: Metrics; log: Logger; clock: Clock }): InternalErrors {
    return new InternalErrors(deps.metrics, new RateLimitedLog(deps.log, () => deps.clock.now()));
  }

  report(where: string, err: unknown): void {
    this.metrics.internalErrors.inc({ where });
    this.log.error(`internal:${where}`, { where, err }, `unexpected error in ${where}`);
  }
}
