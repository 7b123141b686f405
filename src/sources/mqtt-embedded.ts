import type { Ingest } from '../ingest/ingest.js';
import type { Clock } from '../runtime/clock.js';
import type { MqttSourceConfig } from './config.js';
import type { EmbeddedBroker } from './mqtt-broker.js';
import { MqttTopicRoute } from './mqtt-route.js';
import { type Source, SourceStats, type SourceStatus } from './source.js';

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
      const route = new MqttTopicRoute(topic, this.deps.maxMetricsPerMessage);
      this.unregister.push(
        this.deps.broker.addRoute({
          template: route.template,
          onMessage: (topicName, named, payload, durable) => {
            const outcome = this.deps.ingest.submit(this.config.id, route.decode(named, payload), topicName);
            this.stats.delivered(outcome.accepted, this.deps.clock.now());
            return durable ? outcome.durable() : undefined;
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
