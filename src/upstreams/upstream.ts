/**
 * upstreams/ — where results go: mqtt (an external broker, or the embedded one in process), http
 * and nats (a JetStream stream). Each only delivers a batch and reports the acknowledgement; ordering, retries and cursors are
 * forward/'s. May import model/, schema/ and runtime/.
 */
/** One outbox row as the upstream sends it: the SPEC §4 envelope. */
export interface Envelope {
  gateway: string;
  seq: number;
  type: string;
  body: unknown;
}

export interface OutboxItem {
  envelope: Envelope;
  /** The rule that produced the record, for topic templates (`{rule}`); null for raw readings. */
  rule: string | null;
}

export type UpstreamState = 'connected' | 'connecting' | 'offline';

/**
 * Where the outbox goes (SPEC §4). An upstream only knows how to deliver a batch and report the
 * acknowledgement; cursors, retries and backoff belong to the forwarder that drives it.
 */
export interface Upstream {
  readonly id: string;
  readonly type: 'mqtt' | 'http' | 'nats';
  /**
   * Reads TLS files and opens connections. Rejects only on configuration problems (a missing
   * file); an unreachable peer is not an error here, it shows in `state()` and `deliver()`.
   */
  start(): Promise<void>;
  /**
   * How many batches may be in flight at once (`deliver()` called again before the previous one
   * settled). They must reach the peer in call order; 1 where a transport cannot promise that.
   */
  readonly maxInFlight: number;
  /**
   * Delivers the batch in order; resolves only once the upstream confirmed every item (PUBACK,
   * 2xx); rejects on any failure. The caller retries the whole batch later, so delivery is at
   * least once. When one batch fails, those sent after it may fail too: the caller sends nothing
   * more until all of them settled, then resends them all, in order.
   */
  deliver(batch: readonly OutboxItem[]): Promise<void>;
  /** Connection state for /health. */
  state(): UpstreamState;
  lastError(): string | null;
  close(): Promise<void>;
}

/** What an upstream says when it is asked to deliver while it is not connected. */
export class UpstreamUnavailableError extends Error {
  override readonly name = 'UpstreamUnavailableError';
}

/** The message of anything thrown, for `lastError()` and rejections. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
