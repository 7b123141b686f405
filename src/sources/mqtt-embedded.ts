import type { Clock } from '../clock.js';
import type { MqttSourceConfig } from '../config/schema.js';
import { decodePayload } from './decoders.js';
import type { Ingest } from './ingest.js';
import type { EmbeddedBroker } from './mqtt-broker.js';
import { type Source, SourceStats, type SourceStatus } from './source.js';
import { compileTemplate } from './topic-template.js';

/** An `mqtt` source without `url`: messages published to the embedded broker on its topics. */
export class EmbeddedMqttSource implements Source {
  readonly type = 'mqtt';
  private readonly stats: SourceStats;
  private readonly unregister: (() => void)[] = [];

  constructor(
    private readonly config: MqttSourceConfig,
    private readonly deps: {
      broker: EmbeddedBroker;
      ingest: Ingest;
      clock: Clock;
      maxMetricsPerMessage: number;
    },
  ) {
    this.stats = new SourceStats(config.id, 'mqtt');
  }

  get id(): string {
    return this.config.id;
  }

  async start(): Promise<void> {
    for (const topic of this.config.topics) {
      const template = compileTemplate(topic.filter);
      this.unregister.push(
        this.deps.broker.addRoute({
          template,
          onMessage: (topicName, named, payload) => {
            const decoded = decodePayload(payload, topic.payload, {
              device: named.device ?? topic.device,
              metric: named.metric ?? topic.metric,
              maxMetrics: this.deps.maxMetricsPerMessage,
            });
            const outcome = this.deps.ingest.submit(this.config.id, decoded, topicName);
            this.stats.delivered(outcome.accepted, this.deps.clock.now());
            return outcome.durable();
          },
        }),
      );
    }
    this.stats.state = 'connected';
  }

  async stop(): Promise<void> {
    for (const off of this.unregister.splice(0)) off();
    this.stats.state = 'stopped';
  }

  status(): SourceStatus {
    const s = this.stats.snapshot();
    if (s.state === 'connected' && !this.deps.broker.running) s.state = 'offline';
    return s;
  }
}
