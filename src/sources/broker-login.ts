import { isLoopbackHost } from '../runtime/hosts.js';
import type { BrokerConfig, BrokerUser } from './broker-config.js';
import { LoginThrottle, type LoginThrottleLimits } from './login-throttle.js';
import { decoyHash } from './password.js';

export interface Acl {
  publish: readonly string[];
  subscribe: readonly string[];
}

export type LoginVerdict =
  | { accepted: true; acl: Acl }
  | {
      accepted: false;
      /** CONNACK return code: 4 bad username or password, 5 not authorized. */
      returnCode: 4 | 5;
      reason: 'auth' | 'anonymous' | 'throttled';
      message: string;
      /** Set when this failure throttled the address. */
      throttledNow?: boolean;
    };

export type PasswordVerifier = (password: Buffer, passwordHash: string) => Promise<boolean>;

const NO_PASSWORD = Buffer.alloc(0);

/**
 * Who may connect to the embedded broker, and with which ACL. Every refusal of a username costs
 * one scrypt check, known user or not, so that timing doesn't tell which usernames exist; an
 * address with repeated failures is refused for a while without any check.
 */
export class BrokerLogins {
  private readonly users: Map<string, BrokerUser>;
  /** Stands in for the hash of a username that doesn't exist, or of a login without password. */
  private readonly decoy: string;
  private readonly throttle: LoginThrottle;

  constructor(
    private readonly config: BrokerConfig,
    private readonly deps: { verify: PasswordVerifier; limits: LoginThrottleLimits; now(): number },
  ) {
    this.users = new Map(config.users.map((u) => [u.username, u]));
    this.decoy = decoyHash(config.users[0]?.passwordHash);
    this.throttle = new LoginThrottle(deps.limits, deps.now);
  }

  async check(
    address: string,
    username: string | undefined,
    password: Buffer | undefined,
  ): Promise<LoginVerdict> {
    if (username === undefined || username === '') return this.anonymous(address);
    if (this.throttle.throttled(address)) {
      return {
        accepted: false,
        returnCode: 5,
        reason: 'throttled',
        message: `login as "${username}" refused: too many failed logins from this address`,
      };
    }
    const user = this.users.get(username);
    const hash = user && password ? user.passwordHash : this.decoy;
    let ok = false;
    let failure = 'bad username or password';
    try {
      ok = await this.deps.verify(password ?? NO_PASSWORD, hash);
    } catch (err) {
      failure = `password check failed: ${(err as Error).message}`;
    }
    if (ok && user && password) return { accepted: true, acl: user };
    return {
      accepted: false,
      returnCode: 4,
      reason: 'auth',
      message: `${failure} for "${username}"`,
      throttledNow: this.throttle.failed(address),
    };
  }

  private anonymous(address: string): LoginVerdict {
    const allowed =
      this.config.allowAnonymous === true ||
      (this.config.allowAnonymous === 'loopback' && isLoopbackHost(address));
    if (allowed) return { accepted: true, acl: this.config.anonymous };
    return { accepted: false, returnCode: 5, reason: 'anonymous', message: 'anonymous connection refused' };
  }
}
