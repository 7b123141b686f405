import { readFile } from 'node:fs/promises';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { deadline } from '../runtime/deadline.js';
import type { Logger } from '../runtime/log.js';
import type { MqttUpstreamConfig } from './config.js';
import { compileUpstreamTopic, type TopicRenderer } from './topic.js';
import {
  errorMessage,
  type OutboxItem,
  type Upstream,
  type UpstreamState,
  UpstreamUnavailableError,
} from './upstream.js';

/**
 * Batches pipelined at once. Waiting for each batch's last PUBACK before sending the next costs a
 * round trip per batch, and 40 ms where the broker's socket uses Nagle's algorithm (mosquitto's
 * default): its later PUBACKs wait for our delayed ACK. A record committed meanwhile would wait too.
 */
const MAX_IN_FLIGHT = 4;

export interface MqttUpstreamOptions {
  /** Delay between reconnection attempts (mqtt.js retries at a fixed period). */
  reconnectPeriod?: number;
  /** How long `start()` waits for the first connection attempt to settle. */
  startWait?: number;
}

/**
 * An external MQTT broker (mqtt.js): each record is a publish of its envelope's JSON to the topic
 * template, QoS 1 by default. A batch is pipelined (every publish sent at once) and resolves when
 * its last PUBACK arrived; up to MAX_IN_FLIGHT batches are pipelined the same way, in order on the
 * one connection. Nothing is queued while offline: `deliver()` then fails at once, so the
 * forwarder backs off and the outbox stays the only queue.
 */
export class MqttUpstream implements Upstream {
  readonly type = 'mqtt' as const;
  readonly maxInFlight = MAX_IN_FLIGHT;
  readonly id: string;
  private client: MqttClient | null = null;
  private current: UpstreamState = 'connecting';
  private error: string | null = null;
  private wasConnected = false;
  private closing = false;
  private readonly topic: TopicRenderer;
  /** The url without its password, for messages. */
  private readonly where: string;
  /** Fail the batches in flight, each with its own. */
  private readonly inFlight = new Set<(err: Error) => void>();

  constructor(
    private readonly config: MqttUpstreamConfig & { url: string },
    private readonly deps: { gatewayId: string; log: Logger },
    private readonly options: MqttUpstreamOptions = {},
  ) {
    this.id = config.id;
    this.topic = compileUpstreamTopic(config.topic, deps.gatewayId);
    this.where = redact(config.url);
  }

  async start(): Promise<void> {
    if (this.client) return;
    const { config } = this;
    const tls: Pick<IClientOptions, 'ca' | 'cert' | 'key'> = {};
    for (const k of ['ca', 'cert', 'key'] as const) {
      const path = config[k];
      if (path === undefined) continue;
      try {
        tls[k] = await readFile(path);
      } catch (err) {
        throw new Error(`upstream "${this.id}": cannot read ${k} file ${path}: ${errorMessage(err)}`);
      }
    }
    const client = connect(config.url, {
      ...tls,
      clientId: config.clientId ?? `tidegate-${this.deps.gatewayId}-${this.id}`,
      ...(config.username !== undefined ? { username: config.username } : {}),
      ...(config.password !== undefined ? { password: config.password } : {}),
      rejectUnauthorized: config.rejectUnauthorized,
      clean: true,
      // QoS 0 would otherwise wait in memory while offline; QoS 1 publishes are never made then.
      queueQoSZero: false,
      // Else mqtt-packet builds a cache of 65 536 two-byte Buffers on the first write: ~6 MB of heap.
      writeCache: false,
      reconnectPeriod: this.options.reconnectPeriod ?? 2000,
      // A refused CONNECT (bad credentials, broker busy) is retried too and shows in lastError.
      reconnectOnConnackError: true,
      connectTimeout: Math.min(Math.max(config.timeout, 5000), 30_000),
      resubscribe: false,
    });
    this.client = client;
    this.current = 'connecting';
    const log = this.deps.log.child({ upstream: this.id });
    client.on('connect', () => {
      this.current = 'connected';
      this.error = null;
      log.info(
        { url: this.where },
        this.wasConnected ? 'upstream broker reconnected' : 'upstream broker connected',
      );
      this.wasConnected = true;
    });
    client.on('reconnect', () => {
      this.current = 'connecting';
    });
    client.on('error', (err) => {
      const message = errorMessage(err);
      if (message !== this.error) log.warn({ url: this.where, err: message }, 'upstream broker error');
      this.error = message;
    });
    client.on('close', () => {
      if (this.current === 'connected' && !this.closing) {
        log.warn({ url: this.where, err: this.error }, 'upstream broker connection lost');
      }
      this.current = 'offline';
      this.abortAll(new Error(`connection to ${this.where} closed${this.error ? ` (${this.error})` : ''}`));
    });
    await this.firstAttempt(client);
  }

  /** Waits (bounded) for the first attempt to connect or fail, so a reachable broker is ready. */
  private firstAttempt(client: MqttClient): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        client.off('connect', done);
        client.off('close', done);
        resolve();
      };
      const timer = setTimeout(done, this.options.startWait ?? 3000);
      client.on('connect', done);
      client.on('close', done);
    });
  }

  deliver(batch: readonly OutboxItem[]): Promise<void> {
    const client = this.client;
    if (!client || this.closing)
      return Promise.reject(new UpstreamUnavailableError(`upstream ${this.id} is closed`));
    if (!client.connected) {
      return Promise.reject(
        new UpstreamUnavailableError(`not connected to ${this.where}${this.error ? `: ${this.error}` : ''}`),
      );
    }
    if (this.inFlight.size >= MAX_IN_FLIGHT)
      return Promise.reject(new Error(`upstream ${this.id} has ${MAX_IN_FLIGHT} batches in flight already`));
    if (batch.length === 0) return Promise.resolve();
    const { qos, timeout } = this.config;
    let unacked = batch.length;
    let finish: (err: Error | null) => void = () => {};
    const acked = new Promise<void>((resolve, reject) => {
      let settled = false;
      finish = (err) => {
        if (settled) return;
        settled = true;
        this.inFlight.delete(finish);
        if (err) {
          // The forwarder resends from this batch on, so the batches after it fail with it. With
          // clean sessions mqtt.js would resend their messages after a reconnect; the forwarder
          // retries them itself, so drop them rather than deliver them twice more. A late PUBACK
          // for one is ignored: message ids are allocated in sequence, not reused soon.
          this.abortAll(err);
          this.discardInFlight(client);
          reject(err);
        } else {
          resolve();
        }
      };
      this.inFlight.add(finish);
      for (const item of batch) {
        const topic = this.topic(item.envelope.type, item.rule);
        client.publish(topic, JSON.stringify(item.envelope), { qos }, (err) => {
          if (err) finish(new Error(`publish to ${topic} on ${this.where} failed: ${errorMessage(err)}`));
          else if (--unacked === 0) finish(null);
        });
        if (settled) break;
      }
    });
    return deadline(acked, timeout, {
      onTimeout: () => {
        const err = new Error(
          `${this.where} acknowledged ${batch.length - unacked} of ${batch.length} messages within ${timeout} ms`,
        );
        finish(err);
        return err;
      },
    });
  }

  private abortAll(err: Error): void {
    for (const abort of [...this.inFlight]) abort(err);
  }

  private discardInFlight(client: MqttClient): void {
    for (const id of Object.keys(client.outgoing)) client.removeOutgoingMessage(Number(id));
  }

  state(): UpstreamState {
    return this.current;
  }

  lastError(): string | null {
    return this.error;
  }

  async close(): Promise<void> {
    const client = this.client;
    if (!client || this.closing) return;
    this.closing = true;
    this.abortAll(new UpstreamUnavailableError(`upstream ${this.id} is closing`));
    const connected = client.connected;
    // A clean DISCONNECT when we can, bounded: a broker that stopped reading can't hold up a stop.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => client.end(true, () => resolve()), 1000);
      client.end(!connected, () => {
        clearTimeout(timer);
        resolve();
      });
    });
    this.current = 'offline';
  }
}

/** The url without a password, for logs and error messages. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}
