import type { TopicConfig } from './config.js';
import { type Decoded, decodePayload } from './decoders.js';
import { compileTemplate, type TopicTemplate } from './topic-template.js';

/**
 * One configured topic of an MQTT source (embedded or external): its template, and how a message
 * on it becomes reading candidates — names from the topic, else the topic's fixed names, else the
 * payload's own fields.
 */
export class MqttTopicRoute {
  readonly template: TopicTemplate;

  constructor(
    readonly topic: TopicConfig,
    private readonly maxMetrics: number,
  ) {
    this.template = compileTemplate(topic.filter);
  }

  decode(named: { device?: string; metric?: string }, payload: Buffer | string): Decoded {
    return decodePayload(payload, this.topic.payload, {
      device: named.device ?? this.topic.device,
      metric: named.metric ?? this.topic.metric,
      maxMetrics: this.maxMetrics,
    });
  }
}
