import { ipKeyGenerator } from 'express-rate-limit';

export interface LoginThrottleLimits {
  /** Failed logins from one address within `windowMs` that start a backoff. */
  failures: number;
  windowMs: number;
  /** How long the address is then refused, without a password check. */
  backoffMs: number;
  /** Addresses remembered at most, so that a flood from many addresses cannot grow the map. */
  maxAddresses: number;
}

export const DEFAULT_LOGIN_LIMITS: LoginThrottleLimits = {
  failures: 5,
  windowMs: 60_000,
  backoffMs: 60_000,
  maxAddresses: 10_000,
};

interface Failures {
  /** When the current window of failures began. */
  since: number;
  count: number;
  /** Refused until then (0: not throttled). */
  blockedUntil: number;
}

/**
 * Failed logins per client address (IPv6 grouped by /56, as the API's rate limit does): after
 * `failures` within `windowMs`, the address is throttled for `backoffMs`. A successful login
 * clears nothing, so that one valid account cannot reset the count while guessing at others.
 */
export class LoginThrottle {
  private readonly byAddress = new Map<string, Failures>();

  constructor(
    private readonly limits: LoginThrottleLimits,
    private readonly now: () => number,
  ) {}

  throttled(address: string): boolean {
    const key = ipKeyGenerator(address);
    const entry = this.byAddress.get(key);
    if (!entry) return false;
    const now = this.now();
    if (now < entry.blockedUntil) return true;
    if (now - entry.since >= this.limits.windowMs) this.byAddress.delete(key);
    return false;
  }

  /** Records a failed login; true when it starts the address's backoff. */
  failed(address: string): boolean {
    const key = ipKeyGenerator(address);
    const now = this.now();
    const previous = this.byAddress.get(key);
    // Deleted and set again: the map's order is that of the latest failure, oldest first.
    if (previous) this.byAddress.delete(key);
    else this.makeRoom(now);
    const entry =
      previous && now - previous.since < this.limits.windowMs
        ? previous
        : { since: now, count: 0, blockedUntil: previous?.blockedUntil ?? 0 };
    entry.count++;
    this.byAddress.set(key, entry);
    if (entry.count < this.limits.failures) return false;
    entry.blockedUntil = now + this.limits.backoffMs;
    entry.since = now;
    entry.count = 0;
    return true;
  }

  /** Addresses remembered. */
  get size(): number {
    return this.byAddress.size;
  }

  /** Forgets the address that failed longest ago and is not throttled; if every one is, the oldest. */
  private makeRoom(now: number): void {
    if (this.byAddress.size < this.limits.maxAddresses) return;
    let victim: string | undefined;
    for (const [key, entry] of this.byAddress) {
      if (now >= entry.blockedUntil) {
        victim = key;
        break;
      }
    }
    victim ??= this.byAddress.keys().next().value;
    if (victim !== undefined) this.byAddress.delete(victim);
  }
}
