import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { OutboxItem, Upstream } from '../upstreams/upstream.js';
import type { Outbox } from './outbox.js';

export interface ForwarderOptions {
  gatewayId: string;
  batchSize: number;
  /** First retry delay after a failure; doubles per failure up to maxBackoff, with full jitter. */
  minBackoff?: number;
  maxBackoff?: number;
  /** How often to look for new rows when nobody kicked. */
  pollInterval?: number;
}

export interface ForwarderStatus {
  id: string;
  type: string;
  state: 'connected' | 'connecting' | 'offline' | 'backoff' | 'stopped';
  acked: number;
  backlog: number;
  oldestAgeSeconds: number | null;
  lastError: string | null;
  lastDeliveryAt: string | null;
}

/**
 * Delivers the outbox to one upstream, in order, from its durable cursor: a batch is acknowledged
 * (the cursor saved) only after the upstream confirmed all of it, so delivery is at least once
 * across crashes. While the upstream fails, retries back off exponentially with jitter; other
 * upstreams have their own forwarders and keep going.
 */
export class Forwarder {
  private acked: number;
  private running = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private sleepTimer: TimerHandle | null = null;
  private reconnectWatch: TimerHandle | null = null;
  private failures = 0;
  private lastError: string | null = null;
  private lastDeliveryAt: number | null = null;
  private readonly random: () => number;

  constructor(
    private readonly upstream: Upstream,
    private readonly outbox: Outbox,
    private readonly options: ForwarderOptions,
    private readonly deps: { clock: Clock; metrics: Metrics; log: Logger; random?: () => number },
  ) {
    this.acked = outbox.cursor(upstream.id);
    this.random = deps.random ?? Math.random;
    // Series from the start (at 0), so rates and alerts work before the first send or failure.
    deps.metrics.upstreamSent.inc({ upstream: upstream.id }, 0);
    deps.metrics.upstreamErrors.inc({ upstream: upstream.id }, 0);
  }

  get id(): string {
    return this.upstream.id;
  }

  /** The last seq the upstream acknowledged. */
  get cursor(): number {
    return this.acked;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** New rows were committed: deliver now instead of at the next poll. */
  kick(): void {
    if (this.failures === 0) this.wakeUp();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wakeUp();
    await this.loop;
    this.loop = null;
  }

  status(): ForwarderStatus {
    const now = this.deps.clock.now();
    const backlog = this.outbox.backlog(this.acked, now);
    this.deps.metrics.outboxBacklog.set({ upstream: this.upstream.id }, backlog.rows);
    this.deps.metrics.outboxOldestAge.set(
      { upstream: this.upstream.id },
      backlog.oldestAgeMs === null ? 0 : backlog.oldestAgeMs / 1000,
    );
    return {
      id: this.upstream.id,
      type: this.upstream.type,
      state: !this.running ? 'stopped' : this.failures > 0 ? 'backoff' : this.upstream.state(),
      acked: this.acked,
      backlog: backlog.rows,
      oldestAgeSeconds: backlog.oldestAgeMs === null ? null : Math.round(backlog.oldestAgeMs / 1000),
      lastError: this.lastError ?? this.upstream.lastError(),
      lastDeliveryAt: this.lastDeliveryAt === null ? null : new Date(this.lastDeliveryAt).toISOString(),
    };
  }

  private async run(): Promise<void> {
    const { metrics, log } = this.deps;
    const id = this.upstream.id;
    while (this.running) {
      let rows: ReturnType<Outbox['after']>;
      try {
        rows = this.outbox.after(this.acked, this.options.batchSize);
      } catch (err) {
        log.error({ err, upstream: id }, 'reading the outbox failed');
        await this.sleep(this.options.pollInterval ?? 1000);
        continue;
      }
      if (rows.length === 0) {
        await this.sleep(this.options.pollInterval ?? 1000);
        continue;
      }
      const batch: OutboxItem[] = rows.map((r) => ({
        rule: r.rule,
        envelope: {
          gateway: this.options.gatewayId,
          seq: r.seq,
          type: r.type,
          body: JSON.parse(r.body) as unknown,
        },
      }));
      try {
        await this.upstream.deliver(batch);
      } catch (err) {
        this.failures++;
        this.lastError = (err as Error).message;
        metrics.upstreamErrors.inc({ upstream: id });
        const delay = this.backoff();
        if (this.failures === 1 || this.failures % 10 === 0) {
          log.warn(
            { upstream: id, err: this.lastError, failures: this.failures, retryInMs: delay },
            'upstream delivery failed',
          );
        }
        await this.sleep(delay, true);
        continue;
      }
      const last = (rows[rows.length - 1] as { seq: number }).seq;
      try {
        this.outbox.saveCursor(id, last);
      } catch (err) {
        // Delivered but not recorded: it will be delivered again (at least once), never lost.
        log.error({ err, upstream: id }, 'saving the upstream cursor failed');
      }
      this.acked = last;
      this.lastDeliveryAt = this.deps.clock.now();
      metrics.upstreamSent.inc({ upstream: id }, rows.length);
      if (this.failures > 0) log.info({ upstream: id, after: this.failures }, 'upstream delivering again');
      this.failures = 0;
      this.lastError = null;
    }
  }

  /** Full jitter: a random delay up to min(max, min × 2^(failures−1)). */
  private backoff(): number {
    const min = this.options.minBackoff ?? 500;
    const max = this.options.maxBackoff ?? 30_000;
    const ceiling = Math.min(max, min * 2 ** Math.min(30, this.failures - 1));
    return Math.max(min / 2, Math.round(this.random() * ceiling));
  }

  /**
   * Waits `ms`, or less when kicked. A backoff also ends as soon as an upstream that was not
   * connected reconnects, so a restarted broker gets the backlog at once, not after the backoff.
   */
  private sleep(ms: number, backoff = false): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = resolve;
      this.sleepTimer = this.deps.clock.setTimeout(() => this.wakeUp(), ms);
      if (backoff && this.upstream.state() !== 'connected') {
        this.reconnectWatch = this.deps.clock.setInterval(() => {
          if (this.upstream.state() === 'connected') this.wakeUp();
        }, 200);
      }
    });
  }

  private wakeUp(): void {
    this.sleepTimer?.cancel();
    this.sleepTimer = null;
    this.reconnectWatch?.cancel();
    this.reconnectWatch = null;
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}
