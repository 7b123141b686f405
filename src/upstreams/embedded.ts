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

/** The embedded broker's publish (`EmbeddedBroker.publish`). */
export type EmbeddedPublish = (topic: string, payload: Buffer, qos: 0 | 1) => Promise<void>;

/**
 * An mqtt upstream without `url`: publishes to the gateway's own embedded broker, in process. It
 * is connected while its publishes succeed.
 */
export class EmbeddedMqttUpstream implements Upstream {
  readonly type = 'mqtt' as const;
  /** One batch at a time: its messages are published one after another, awaited. */
  readonly maxInFlight = 1;
  readonly id: string;
  private error: string | null = null;
  private closed = false;
  private readonly topic: TopicRenderer;

  constructor(
    private readonly config: MqttUpstreamConfig,
    private readonly deps: { gatewayId: string; publish: EmbeddedPublish; log: Logger },
  ) {
    this.id = config.id;
    this.topic = compileUpstreamTopic(config.topic, deps.gatewayId);
  }

  async start(): Promise<void> {}

  async deliver(batch: readonly OutboxItem[]): Promise<void> {
    if (this.closed) throw new UpstreamUnavailableError(`upstream ${this.id} is closed`);
    const { qos, timeout } = this.config;
    let done = 0;
    let expired = false;
    // One at a time, so the order holds whatever the broker's persistence does.
    const publishAll = async () => {
      for (const item of batch) {
        if (expired) return;
        const topic = this.topic(item.envelope.type, item.rule);
        await this.deps.publish(topic, Buffer.from(JSON.stringify(item.envelope)), qos);
        done++;
      }
    };
    try {
      await deadline(publishAll(), timeout, {
        onTimeout: () => {
          expired = true;
          return new Error(
            `the embedded broker took ${done} of ${batch.length} messages within ${timeout} ms`,
          );
        },
      });
      this.error = null;
    } catch (err) {
      this.error = errorMessage(err);
      throw new Error(`publishing to the embedded broker failed: ${this.error}`);
    }
  }

  state(): UpstreamState {
    return this.closed || this.error !== null ? 'offline' : 'connected';
  }

  lastError(): string | null {
    return this.error;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
