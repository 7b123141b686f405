/**
 * forward/ — store-and-forward (SPEC §4): one Forwarder per upstream follows the outbox from its
 * cursor, batches, retries with backoff and delivers in order, at least once. May import store/
 * (outbox), upstreams/upstream.ts (the interface) and runtime/.
 */
import type { Clock, TimerHandle } from '../runtime/clock.js';
import { InternalErrors } from '../runtime/internal-errors.js';
import type { Logger } from '../runtime/log.js';
import type { Metrics } from '../runtime/metrics.js';
import type { Outbox } from '../store/outbox.js';
import type { OutboxItem, Upstream } from '../upstreams/upstream.js';

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

/** A batch handed to the upstream and not yet confirmed in order. */
interface InFlight {
  /** The batch's last seq: the cursor once it and every batch before it are confirmed. */
  last: number;
  rows: number;
  /** Undefined while the upstream has not answered; then null (confirmed) or the failure. */
  outcome: Error | null | undefined;
  /** Resolves when the outcome is known. */
  done: Promise<void>;
}

/**
 * Delivers the outbox to one upstream, in order, from its durable cursor: a batch is acknowledged
 * (the cursor saved) only after the upstream confirmed all of it and every batch before it, so
 * delivery is at least once across crashes. Up to `upstream.maxInFlight` batches are on their way
 * at once: a new record goes out as soon as it is committed instead of waiting for the previous
 * batch's confirmations (an MQTT broker with Nagle's algorithm holds PUBACKs back for a delayed
 * ACK, 40 ms on Linux). While the upstream fails, retries back off exponentially with jitter;
 * other upstreams have their own forwarders and keep going.
 */
export class Forwarder {
  private acked: number;
  /** The last seq handed to the upstream: `acked` plus what is in flight. */
  private sent: number;
  /** Sent and not yet confirmed, in order; some may have settled behind a pending one. */
  private readonly inFlight: InFlight[] = [];
  /** How many of them the upstream has not answered yet: at most `upstream.maxInFlight`. */
  private unanswered = 0;
  /**
   * A batch in flight failed, maybe behind one still pending: nothing more is sent until the
   * failure reaches the head and everything in flight has settled. A batch sent after a failed one
   * could reach the peer while the failed one is resent later, out of order.
   */
  private halted = false;
  /**
   * After a failure, the resend goes one batch at a time until one is confirmed: a whole window
   * sent at once to a peer that is just coming back (a new stream leader elected) could have its
   * first batches refused and its last ones stored.
   */
  private probing = false;
  private running = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  /** A wake-up that came while the loop was not asleep: the next sleep returns at once. */
  private woken = false;
  private sleepTimer: TimerHandle | null = null;
  private reconnectWatch: TimerHandle | null = null;
  private failures = 0;
  private lastError: string | null = null;
  private lastDeliveryAt: number | null = null;
  private readonly random: () => number;
  private readonly errors: InternalErrors;

  constructor(
    private readonly upstream: Upstream,
    private readonly outbox: Outbox,
    private readonly options: ForwarderOptions,
    private readonly deps: { clock: Clock; metrics: Metrics; log: Logger; random?: () => number },
  ) {
    this.acked = outbox.cursor(upstream.id);
    this.sent = this.acked;
    this.random = deps.random ?? Math.random;
    this.errors = InternalErrors.of(deps);
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
    const poll = this.options.pollInterval ?? 1000;
    let errors = 0;
    while (this.running) {
      try {
        await this.step(poll);
        errors = 0;
      } catch (err) {
        // A bug must not end forwarding: counted, logged, tried again after a growing pause.
        this.errors.report('forwarder', err);
        await this.sleep(Math.min(poll * 2 ** errors++, 30_000));
      }
    }
    // Stopping: what is in flight settles (bounded by the upstream's timeout); confirm what can be.
    await Promise.all(this.inFlight.map((f) => f.done));
    this.confirmSettled();
  }

  /** One turn of the loop: settle the oldest batch, send the next one, or wait. */
  private async step(poll: number): Promise<void> {
    const head = this.inFlight[0];
    if (head !== undefined && head.outcome !== undefined) {
      if (head.outcome === null) this.confirmSettled();
      else await this.failed(head.outcome);
      return;
    }
    const room = this.probing ? 1 : Math.max(1, this.upstream.maxInFlight);
    if (!this.halted && this.unanswered < room) {
      const rows = this.read();
      if (rows === null) {
        await this.sleep(poll);
        return;
      }
      if (rows.length > 0) {
        this.send(rows);
        return;
      }
    }
    // Nothing to send (or no room): until a batch settles, new rows are committed, or the poll.
    await this.sleep(poll);
  }

  /** The next rows after what was sent; null (logged) when the outbox cannot be read. */
  private read(): ReturnType<Outbox['after']> | null {
    try {
      return this.outbox.after(this.sent, this.options.batchSize);
    } catch (err) {
      this.deps.log.error({ err, upstream: this.upstream.id }, 'reading the outbox failed');
      return null;
    }
  }

  /** A row's body; one the store gives back unparsable (a corrupted file) goes as its raw text, counted. */
  private parseBody(row: { seq: number; body: string }): unknown {
    try {
      return JSON.parse(row.body) as unknown;
    } catch (err) {
      this.errors.report('forwarder/corrupt-row', err);
      return row.body;
    }
  }

  private send(rows: ReturnType<Outbox['after']>): void {
    const batch: OutboxItem[] = rows.map((r) => ({
      rule: r.rule,
      envelope: {
        gateway: this.options.gatewayId,
        seq: r.seq,
        type: r.type,
        body: this.parseBody(r),
      },
    }));
    const last = (rows[rows.length - 1] as { seq: number }).seq;
    const entry: InFlight = { last, rows: rows.length, outcome: undefined, done: Promise.resolve() };
    let delivery: Promise<void>;
    try {
      delivery = this.upstream.deliver(batch);
    } catch (err) {
      delivery = Promise.reject(err);
    }
    entry.done = delivery.then(
      () => {
        entry.outcome = null;
        this.unanswered--;
        this.wakeUp();
      },
      (err: unknown) => {
        entry.outcome = err instanceof Error ? err : new Error(String(err));
        this.halted = true;
        this.unanswered--;
        this.wakeUp();
      },
    );
    this.unanswered++;
    this.inFlight.push(entry);
    this.sent = last;
  }

  /**
   * The oldest batches in flight were confirmed: one cursor write past all of them (each is a
   * commit of its own, so not one per batch).
   */
  private confirmSettled(): void {
    const { metrics, log } = this.deps;
    const id = this.upstream.id;
    let last = this.acked;
    let rows = 0;
    for (let f = this.inFlight[0]; f?.outcome === null; f = this.inFlight[0]) {
      this.inFlight.shift();
      last = f.last;
      rows += f.rows;
    }
    if (rows === 0) return;
    try {
      this.outbox.saveCursor(id, last);
    } catch (err) {
      // Delivered but not recorded: it will be delivered again (at least once), never lost.
      log.error({ err, upstream: id }, 'saving the upstream cursor failed');
    }
    this.acked = last;
    this.probing = false;
    this.lastDeliveryAt = this.deps.clock.now();
    metrics.upstreamSent.inc({ upstream: id }, rows);
    if (this.failures > 0) log.info({ upstream: id, after: this.failures }, 'upstream delivering again');
    this.failures = 0;
    this.lastError = null;
  }

  /**
   * The oldest batch in flight failed: the batches after it are not confirmed either (the cursor
   * cannot skip), so once all have settled, everything after the cursor is sent again after a
   * backoff, in order, the first batch alone.
   */
  private async failed(err: Error): Promise<void> {
    const { metrics, log } = this.deps;
    const id = this.upstream.id;
    await Promise.all(this.inFlight.map((f) => f.done));
    this.inFlight.length = 0;
    this.sent = this.acked;
    this.halted = false;
    this.probing = true;
    this.failures++;
    this.lastError = err.message;
    metrics.upstreamErrors.inc({ upstream: id });
    const delay = this.backoff();
    if (this.failures === 1 || this.failures % 10 === 0) {
      log.warn(
        { upstream: id, err: this.lastError, failures: this.failures, retryInMs: delay },
        'upstream delivery failed',
      );
    }
    this.woken = false; // settlements of the failed batches are not a reason to retry early
    await this.sleep(delay, true);
  }

  /** Full jitter: a random delay up to min(max, min × 2^(failures−1)). */
  private backoff(): number {
    const min = this.options.minBackoff ?? 500;
    const max = this.options.maxBackoff ?? 30_000;
    const ceiling = Math.min(max, min * 2 ** Math.min(30, this.failures - 1));
    return Math.max(min / 2, Math.round(this.random() * ceiling));
  }

  /**
   * Waits `ms`, or less when woken: kicked, a batch settled, or stopping. A backoff also ends as
   * soon as an upstream that was not connected reconnects, so a restarted broker gets the backlog
   * at once, not after the backoff.
   */
  private sleep(ms: number, backoff = false): Promise<void> {
    if (!this.running) return Promise.resolve();
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
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
    if (wake) wake();
    else this.woken = true;
  }
}
