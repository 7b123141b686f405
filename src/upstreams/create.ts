import type { Logger } from '../runtime/log.js';
import type { Metrics } from '../runtime/metrics.js';
import type { UpstreamConfig } from './config.js';
import { EmbeddedMqttUpstream, type EmbeddedPublish } from './embedded.js';
import { HttpUpstream } from './http.js';
import type { Upstream } from './upstream.js';

export interface UpstreamDeps {
  gatewayId: string;
  /** The embedded broker's publish, for mqtt upstreams without url; absent when it is disabled. */
  embeddedPublish?: EmbeddedPublish;
  log: Logger;
  /** For counters of an upstream's own (nats: duplicates). */
  metrics: Metrics;
}

/**
 * The upstream a configuration entry describes (not started). mqtt.js and the NATS client are
 * loaded only when an upstream needs them: on a small board every module not loaded is memory kept.
 */
export async function createUpstream(config: UpstreamConfig, deps: UpstreamDeps): Promise<Upstream> {
  switch (config.type) {
    case 'http':
      return new HttpUpstream(config, { log: deps.log });
    case 'nats': {
      const { NatsUpstream } = await import('./nats.js');
      return new NatsUpstream(config, deps);
    }
    case 'mqtt': {
      const { url } = config;
      if (url !== undefined) {
        const { MqttUpstream } = await import('./mqtt.js');
        return new MqttUpstream({ ...config, url }, deps);
      }
      // The config refuses this (config/cross-checks.ts); a Gateway built in code can still ask.
      if (!deps.embeddedPublish) {
        throw new Error(
          `upstream "${config.id}" has no url, so it publishes to the embedded broker, but broker.enabled is false`,
        );
      }
      return new EmbeddedMqttUpstream(config, { ...deps, publish: deps.embeddedPublish });
    }
  }
}
