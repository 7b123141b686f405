import { readFileSync } from 'node:fs';
import { connect, type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type { Ingest } from '../ingest/ingest.js';
import type { Clock } from '../runtime/clock.js';
import type { Logger } from '../runtime/log.js';
import type { Metrics } from '../runtime/metrics.js';
import type { MqttSourceConfig } from './config.js';
import { MqttTopicRoute } from './mqtt-route.js';
import { type Source, SourceStats, type SourceStatus } from './source.js';

/**
 * An `mqtt` source with `url`: subscribes to an external broker (mqtt.js). After every connection
 * whose session the broker did not keep, it subscribes again itself — a broker restarted without
 * persistence forgets subscriptions, and a client that only trusts its session (Telegraf's known
 * failure) then stays connected and silent. Reconnects back off from `reconnect.min` to `.max`. A
 * QoS 1 message is acknowledged only once its readings are committed.
 */
export class ExternalMqttSource implements Source {
  readonly type = 'mqtt';
  private readonly stats: SourceStats;
  private client: MqttClient | null = null;
  private readonly routes: MqttTopicRoute[];
  private reconnectDelay: number;

  constructor(
    private readonly config: MqttSourceConfig & { url: string },
    private readonly deps: {
      ingest: Ingest;
      clock: Clock;
      metrics: Metrics;
      log: Logger;
      gatewayId: string;
      maxMetricsPerMessage: number;
    },
  ) {
    this.stats = new SourceStats(config.id, 'mqtt');
    this.routes = config.topics.map((topic) => new MqttTopicRoute(topic, deps.maxMetricsPerMessage));
    this.reconnectDelay = config.reconnect.min;
  }

  get id(): string {
    return this.config.id;
  }

  async start(): Promise<void> {
    const c = this.config;
    const options: IClientOptions = {
      clientId: c.clientId ?? `tidegate-${this.deps.gatewayId}-${c.id}`,
      clean: c.clean,
      keepalive: Math.round(c.keepalive / 1000),
      reconnectPeriod: c.reconnect.min,
      connectTimeout: 10_000,
      // Subscriptions are renewed by hand on every connect without a session (see the class comment).
      resubscribe: false,
      // Else mqtt-packet builds a cache of 65 536 two-byte Buffers on the first write: ~6 MB of heap.
      writeCache: false,
      ...(c.username ? { username: c.username } : {}),
      ...(c.password ? { password: c.password } : {}),
      ...(c.ca ? { ca: readFileSync(c.ca) } : {}),
      ...(c.cert ? { cert: readFileSync(c.cert) } : {}),
      ...(c.key ? { key: readFileSync(c.key) } : {}),
      rejectUnauthorized: c.rejectUnauthorized,
    };
    this.stats.state = 'starting';
    const client = connect(c.url, options);
    this.client = client;
    // Acknowledge (PUBACK) only after the readings are stored.
    client.handleMessage = (packet: IPublishPacket, done: (err?: Error) => void) => {
      this.onMessage(packet).then(
        () => done(),
        (err: Error) => done(err),
      );
    };
    client.on('connect', (connack) => {
      this.stats.state = 'connected';
      this.reconnectDelay = c.reconnect.min;
      client.options.reconnectPeriod = c.reconnect.min;
      this.deps.metrics.sourceUp.set({ source: c.id, device: '' }, 1);
      this.deps.log.info(
        { source: c.id, url: c.url, sessionPresent: connack.sessionPresent },
        'mqtt source connected',
      );
      if (!connack.sessionPresent) this.subscribe(client);
    });
    client.on('close', () => {
      if (this.client !== client) return;
      if (this.stats.state === 'connected') this.deps.log.warn({ source: c.id }, 'mqtt source disconnected');
      this.stats.state = 'offline';
      this.deps.metrics.sourceUp.set({ source: c.id, device: '' }, 0);
      // Exponential backoff for the next attempt.
      client.options.reconnectPeriod = this.reconnectDelay;
      this.reconnectDelay = Math.min(c.reconnect.max, this.reconnectDelay * 2);
    });
    client.on('error', (err) => this.fail('connection', err.message));
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = null;
    this.stats.state = 'stopped';
    if (client) await client.endAsync(true).catch(() => {});
  }

  status(): SourceStatus {
    return this.stats.snapshot();
  }

  private subscribe(client: MqttClient): void {
    const subs = Object.fromEntries(this.routes.map((r) => [r.template.filter, { qos: r.topic.qos }]));
    client.subscribe(subs, (err, granted) => {
      if (err) return this.fail('subscribe', err.message);
      const refused = (granted ?? []).filter((g) => g.qos === 128).map((g) => g.topic);
      if (refused.length > 0) this.fail('subscribe', `the broker refused ${refused.join(', ')}`);
    });
  }

  private async onMessage(packet: IPublishPacket): Promise<void> {
    const topic = packet.topic;
    for (const route of this.routes) {
      const named = route.template.match(topic);
      if (!named) continue;
      const payload = typeof packet.payload === 'string' ? packet.payload : Buffer.from(packet.payload);
      const outcome = this.deps.ingest.submit(this.config.id, route.decode(named, payload), topic);
      this.stats.delivered(outcome.accepted, this.deps.clock.now());
      if (packet.qos > 0) await outcome.durable();
      return;
    }
  }

  private fail(kind: string, message: string): void {
    this.stats.failed(message);
    this.deps.metrics.sourceErrors.inc({ source: this.config.id, kind });
    this.deps.log.warn({ source: this.config.id, kind, err: message }, 'mqtt source error');
  }
}
