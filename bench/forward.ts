import { parseArgs } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { Forwarder } from '../src/forward/forwarder.js';
import { systemClock } from '../src/runtime/clock.js';
import { silentLogger } from '../src/runtime/log.js';
import { Metrics } from '../src/runtime/metrics.js';
import { openDatabase } from '../src/store/database.js';
import { Outbox } from '../src/store/outbox.js';
import { mqttUpstreamSchema, natsUpstreamSchema } from '../src/upstreams/config.js';
import { MqttUpstream } from '../src/upstreams/mqtt.js';
import { NatsUpstream } from '../src/upstreams/nats.js';
import type { OutboxItem, Upstream } from '../src/upstreams/upstream.js';
import { startMosquitto } from '../test/helpers/mosquitto.js';
import { startNatsCluster } from '../test/helpers/nats-cluster.js';
import { makeTempDir } from '../test/helpers/tmp.js';
import { machine, quantile, rssMiB } from './machine.js';

/**
 * The forwarder's drain rate: an outbox of N rows (results of ~200 bytes) on disk, drained by the
 * real Forwarder into (a) an R3 stream of a 3-node JetStream cluster on loopback (Debian's
 * nats-server, file storage) at a few maxInFlight/batchSize settings, and (b) Debian's mosquitto
 * at QoS 1, for comparison, in one run. Reports rows/s (one message per row), the round trip of a
 * batch (deliver() called → every row acknowledged) p50/p99, and this process's RSS after each
 * run (one process for all runs, so it only grows). Each nats run checks the stream holds every row.
 *
 *   node build/bench/forward.js [--rows 50000]
 *
 * Bounded, 127.0.0.1 only; the cluster, mosquitto and the temp dirs are removed at the end.
 */
const { values: args } = parseArgs({ options: { rows: { type: 'string', default: '50000' } } });
const ROWS = Number(args.rows);

/** Each batch's round trip, measured around the upstream's deliver(). */
class Timed implements Upstream {
  readonly rounds: number[] = [];
  constructor(private readonly inner: Upstream) {}
  get id() {
    return this.inner.id;
  }
  get type() {
    return this.inner.type;
  }
  get maxInFlight() {
    return this.inner.maxInFlight;
  }
  start() {
    return this.inner.start();
  }
  async deliver(batch: readonly OutboxItem[]): Promise<void> {
    const t = performance.now();
    await this.inner.deliver(batch);
    this.rounds.push(performance.now() - t);
  }
  state() {
    return this.inner.state();
  }
  lastError() {
    return this.inner.lastError();
  }
  close() {
    return this.inner.close();
  }
}

interface Figures {
  label: string;
  rate: number;
  p50: number;
  p99: number;
  rss: string;
  errors: number;
}

async function drain(
  label: string,
  upstream: Upstream,
  batchSize: number,
  stored?: () => Promise<number>,
): Promise<Figures> {
  const dir = makeTempDir('tidegate-bench-forward-');
  const db = openDatabase(dir.file('bench.db'), { synchronous: 'normal' });
  const outbox = new Outbox(db);
  const now = Date.now();
  db.transaction(() => {
    for (let i = 0; i < ROWS; i++) {
      const body = {
        type: 'result',
        rule: 'boiler-hourly',
        key: { device: `boiler-${i % 50}` },
        start: new Date(now - 3_600_000).toISOString(),
        end: new Date(now).toISOString(),
        revision: 0,
        values: { mean: 71.25 + (i % 7), max: 80.5, n: 3600 },
      };
      outbox.append('result', 'boiler-hourly', JSON.stringify(body), now);
    }
  })();
  const timed = new Timed(upstream);
  await timed.start();
  const metrics = new Metrics();
  const forwarder = new Forwarder(
    timed,
    outbox,
    { gatewayId: 'bench', batchSize, pollInterval: 50 },
    { clock: systemClock, metrics, log: silentLogger() },
  );
  const t0 = performance.now();
  forwarder.start();
  const deadline = Date.now() + 300_000;
  while (forwarder.cursor < ROWS) {
    if (Date.now() > deadline) throw new Error(`${label}: ${forwarder.cursor} of ${ROWS} after 300 s`);
    await new Promise((r) => setTimeout(r, 5));
  }
  const seconds = (performance.now() - t0) / 1000;
  const rss = rssMiB();
  if (stored) {
    const n = await stored();
    if (n !== ROWS) throw new Error(`${label}: the stream holds ${n} messages, not ${ROWS}`);
  }
  await forwarder.stop();
  await timed.close();
  db.close();
  dir.remove();
  const errors = (await metrics.upstreamErrors.get()).values.reduce((s, v) => s + v.value, 0);
  const sorted = [...timed.rounds].sort((a, b) => a - b);
  return {
    label,
    rate: ROWS / seconds,
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    rss,
    errors,
  };
}

console.log(`forward: draining ${ROWS} outbox rows — ${machine()}`);
const results: Figures[] = [];
const cluster = await startNatsCluster();
const mosquitto = await startMosquitto();
try {
  const settings = [
    { maxInFlight: 128, batchSize: 128 },
    { maxInFlight: 1024, batchSize: 256 },
    { maxInFlight: 4096, batchSize: 512 },
  ];
  for (const [i, s] of settings.entries()) {
    const stream = `BENCH${i}`;
    await cluster.createStream({ name: stream, subjects: [`bench${i}.>`], num_replicas: 3 });
    const config = natsUpstreamSchema.parse({
      id: 'fleet',
      type: 'nats',
      servers: cluster.servers,
      stream,
      subject: `bench${i}.{gateway}.{type}.{rule}`,
      ...s,
    });
    const up = new NatsUpstream(config, { gatewayId: 'bench', log: silentLogger(), metrics: new Metrics() });
    const jsm = await jetstreamManager(await cluster.connection());
    const count = async () => (await jsm.streams.info(stream)).state.messages;
    results.push(
      await drain(`nats R3, maxInFlight ${s.maxInFlight}, batchSize ${s.batchSize}`, up, s.batchSize, count),
    );
  }
  const mqttConfig = mqttUpstreamSchema.parse({ id: 'cloud', type: 'mqtt', url: mosquitto.url });
  const mqtt = new MqttUpstream(
    { ...mqttConfig, url: mosquitto.url },
    { gatewayId: 'bench', log: silentLogger() },
  );
  results.push(await drain('mosquitto QoS 1, 4 × 500 in flight', mqtt, mqttConfig.batchSize));
} finally {
  await mosquitto.close();
  await cluster.close();
}
for (const r of results) {
  console.log(
    `  ${r.label.padEnd(44)} ${Math.round(r.rate).toString().padStart(7)} rows/s  batch round trip p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms  RSS ${r.rss} MiB${r.errors ? `  (${r.errors} failed deliveries)` : ''}`,
  );
}
