import type { Ingest } from '../ingest/ingest.js';
import type { Clock } from '../runtime/clock.js';
import type { Logger, RateLimitedLog } from '../runtime/log.js';
import type { Metrics } from '../runtime/metrics.js';
import type { SourceConfig } from './config.js';
import type { Profile } from './modbus/profile.js';
import type { EmbeddedBroker } from './mqtt-broker.js';
import { EmbeddedMqttSource } from './mqtt-embedded.js';
import { SimulatorSource } from './simulator.js';
import type { Source } from './source.js';

/** What every source may need; each takes only its part. */
export interface SourceDeps {
  ingest: Ingest;
  clock: Clock;
  metrics: Metrics;
  log: Logger;
  warn: RateLimitedLog;
  gatewayId: string;
  maxMetricsPerMessage: number;
  /** The Modbus device profiles, by name. */
  profiles: Map<string, Profile>;
  /** The embedded broker; null when it is disabled. */
  broker: EmbeddedBroker | null;
}

/**
 * The source a config entry names, one case per driver. Drivers are loaded only when configured
 * (serialport, modbus-serial, mqtt.js weigh 15–20 MB each).
 */
export async function createSource(sc: SourceConfig, deps: SourceDeps): Promise<Source> {
  const { ingest, clock, metrics, log } = deps;
  switch (sc.type) {
    case 'mqtt':
      if (sc.url !== undefined) {
        const { ExternalMqttSource } = await import('./mqtt-client.js');
        return new ExternalMqttSource(
          { ...sc, url: sc.url },
          {
            ingest,
            clock,
            metrics,
            log,
            gatewayId: deps.gatewayId,
            maxMetricsPerMessage: deps.maxMetricsPerMessage,
          },
        );
      }
      // The config refuses this (config/cross-checks.ts); a Gateway built in code can still ask.
      if (!deps.broker) throw new Error(`source ${sc.id}: the embedded broker is disabled`);
      return new EmbeddedMqttSource(sc, {
        broker: deps.broker,
        ingest,
        clock,
        maxMetricsPerMessage: deps.maxMetricsPerMessage,
      });
    case 'simulator':
      return new SimulatorSource(sc, { ingest, clock });
    case 'serial': {
      const { SerialSource } = await import('./serial/source.js');
      return new SerialSource(sc, {
        ingest,
        clock,
        metrics,
        log,
        maxMetricsPerMessage: deps.maxMetricsPerMessage,
      });
    }
    case 'modbus': {
      const { ModbusSource } = await import('./modbus/source.js');
      return new ModbusSource(sc, { ingest, clock, metrics, log, warn: deps.warn, profiles: deps.profiles });
    }
  }
}
