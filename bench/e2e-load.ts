import { parseArgs } from 'node:util';
import mqtt from 'mqtt';

/**
 * The load generator of bench/e2e.ts, in a process of its own so that its CPU is not the
 * gateway's: MQTT publishes (mqtt.js) to one broker over several connections, for a fixed time,
 * at a target rate or as fast as the broker takes them, then one JSON line on stdout.
 *
 * Each message is a JSON array of `{value, ts}` readings of one series (`PREFIX/{device}/{metric}`);
 * a device's series all go over the same connection. Event times end at the publish time and are
 * strictly increasing per series, so windows close and decisions fire as on a live site. A probe
 * device on a connection of its own publishes one reading every `probe-ms`, alternating 100 and 0,
 * with ts = the publish time: a count window of size 1 turns each into a decision whose `at` is
 * that time, which is how the orchestrator measures publish → decision latency.
 *
 * "As fast as possible" stays flow-controlled: a connection publishes while its socket takes data
 * (QoS 0) and fewer than `window` messages wait for a PUBACK (QoS 1), so nothing piles up here.
 * The last message of every connection is QoS 1 whatever the run's QoS: once all of them are
 * acknowledged, the broker has handled everything before them (aedes handles a connection's
 * packets in order; tidegate acknowledges QoS 1 only after committing what it queued), so
 * `seconds` runs to the moment the last reading was taken in, not to the last socket write.
 *
 *   node build/bench/e2e-load.js --url mqtt://127.0.0.1:1883 --seconds 10 --rate 0 --qos 0
 *
 * stdout: `{"event":"started","at":EPOCH_MS}` when connected, then `{"event":"done",…}`.
 */
const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    seconds: { type: 'string', default: '10' },
    rate: { type: 'string', default: '0' }, // readings/s over all connections; 0 = as fast as possible
    qos: { type: 'string', default: '0' },
    connections: { type: 'string', default: '4' },
    'per-message': { type: 'string', default: '50' },
    devices: { type: 'string', default: '200' },
    window: { type: 'string', default: '64' }, // QoS 1 messages awaiting PUBACK per connection
    'probe-ms': { type: 'string', default: '100' }, // 0 = no probe
    prefix: { type: 'string', default: 'bench' },
    'drain-seconds': { type: 'string', default: '60' }, // at most this long for the final PUBACKs
    metrics: { type: 'string', default: '' }, // comma-separated names of METRICS; empty: all of them
  },
});

const URL_ = args.url ?? '';
const SECONDS = Number(args.seconds);
const RATE = Number(args.rate);
const QOS = Number(args.qos) === 1 ? 1 : 0;
const CONNECTIONS = Number(args.connections);
const PER_MESSAGE = Number(args['per-message']);
const DEVICES = Number(args.devices);
const WINDOW = Number(args.window);
const PROBE_MS = Number(args['probe-ms']);
const PREFIX = args.prefix;
const DRAIN_MS = Number(args['drain-seconds']) * 1000;
const TICK_MS = 10;

/** Metrics of every device and the value each follows (a slow sine per device, so thresholds trip now and then). */
const ALL_METRICS = [
  { name: 'temperature', base: 70, amplitude: 15 },
  { name: 'humidity', base: 40, amplitude: 20 },
  { name: 'power', base: 1000, amplitude: 500 },
  { name: 'pressure', base: 1013, amplitude: 5 },
  { name: 'vibration', base: 5, amplitude: 5 },
] as const;
const METRICS =
  args.metrics === ''
    ? ALL_METRICS
    : args.metrics.split(',').map((name) => {
        const m = ALL_METRICS.find((x) => x.name === name.trim());
        if (m === undefined)
          throw new Error(
            `--metrics: unknown metric "${name}"; known: ${ALL_METRICS.map((x) => x.name).join(', ')}`,
          );
        return m;
      });
const PERIOD_MS = 60_000;

/** Errors seen (the first few are reported); a run with any is not a clean run. */
const failures: string[] = [];
/** Set before the connections are closed on purpose, so that closing is not reported as a failure. */
let stopping = false;
/** Resolves when the broker closes a connection: the final PUBACKs are then not worth waiting for. */
let connectionLost: () => void = () => {};
const lost = new Promise<void>((resolve) => {
  connectionLost = resolve;
});

interface Series {
  topic: string;
  base: number;
  amplitude: number;
  phase: number;
  lastTs: number;
}

/** The payload of one message of `s`: PER_MESSAGE readings 1 ms apart, the last at `now` (or just after the series' last ts). */
function payload(s: Series, now: number): string {
  const end = Math.max(now, s.lastTs + PER_MESSAGE);
  let text = '[';
  for (let i = 0; i < PER_MESSAGE; i++) {
    const ts = end - PER_MESSAGE + 1 + i;
    const noise = ((ts * 7919) % 100) / 100 - 0.5;
    const value = Math.round((s.base + s.amplitude * Math.sin(ts / PERIOD_MS + s.phase) + noise) * 10) / 10;
    text += `${i === 0 ? '' : ','}{"value":${value},"ts":${ts}}`;
  }
  s.lastTs = end;
  return `${text}]`;
}

/** One load connection: its devices' series in turn, flow-controlled. */
class LoadConnection {
  readonly series: Series[] = [];
  private cursor = 0;
  published = 0; // readings
  messages = 0;
  inflight = 0;
  private pumping = false;

  constructor(
    readonly client: mqtt.MqttClient,
    /** Readings this connection should have published by now (Infinity: as fast as possible). */
    private readonly due: () => number,
    private readonly running: () => boolean,
  ) {
    client.stream.on('drain', () => this.pump());
  }

  /** Publishes while the rate, the socket and (QoS 1) the PUBACK window allow. */
  pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    const { client } = this;
    while (
      this.running() &&
      this.published < this.due() &&
      this.inflight < WINDOW &&
      !client.stream.writableNeedDrain
    ) {
      this.publish(QOS, () => {
        // QoS 0 completes synchronously unless the socket is full; only reschedule when async.
        if (!this.pumping) setImmediate(() => this.pump());
      });
    }
    this.pumping = false;
  }

  publish(qos: 0 | 1, done: () => void): void {
    const s = this.series[this.cursor] as Series;
    this.cursor = (this.cursor + 1) % this.series.length;
    this.inflight++;
    this.published += PER_MESSAGE;
    this.messages++;
    this.client.publish(s.topic, payload(s, Date.now()), { qos }, (err) => {
      this.inflight--;
      if (err) failures.push(err.message);
      done();
    });
  }

  /** Waits for every outstanding publish, then sends one QoS 1 message and waits for its PUBACK. */
  finish(): Promise<void> {
    return new Promise((resolve) => {
      const waitIdle = () => {
        if (stopping) {
          resolve(); // given up on: the connection was lost or the drain timed out
          return;
        }
        if (this.inflight > 0) {
          setTimeout(waitIdle, 1);
          return;
        }
        this.publish(1, resolve);
      };
      waitIdle();
    });
  }
}

function emit(line: object): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

async function connect(id: string): Promise<mqtt.MqttClient> {
  const client = await mqtt.connectAsync(URL_, {
    clientId: `e2e-load-${process.pid}-${id}`,
    reconnectPeriod: 0, // a dropped connection is a failure of the run, not something to hide
    keepalive: 60,
  });
  client.on('error', (err) => failures.push(err.message));
  client.on('close', () => {
    if (stopping) return;
    failures.push(`connection ${id} closed by the broker`);
    connectionLost();
  });
  return client;
}

async function main(): Promise<void> {
  if (!URL_) throw new Error('--url is required');
  const clients = await Promise.all(Array.from({ length: CONNECTIONS }, (_, i) => connect(String(i))));
  const probeClient = PROBE_MS > 0 ? await connect('probe') : null;

  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  const endAt = t0 + SECONDS * 1000;
  const running = () => Date.now() < endAt;
  const perConnectionRate = RATE / CONNECTIONS;
  const due = RATE > 0 ? () => ((Date.now() - t0) / 1000) * perConnectionRate : () => Infinity;
  const conns = clients.map((c) => new LoadConnection(c, due, running));
  for (let d = 0; d < DEVICES; d++) {
    const conn = conns[d % CONNECTIONS] as LoadConnection;
    const device = `dev-${String(d).padStart(3, '0')}`;
    for (const m of METRICS) {
      conn.series.push({
        topic: `${PREFIX}/${device}/${m.name}`,
        base: m.base,
        amplitude: m.amplitude,
        phase: d / 7,
        lastTs: 0,
      });
    }
  }

  let probes = 0;
  let probeTs = 0;
  const probe = (qos: 0 | 1): Promise<void> =>
    new Promise((resolve) => {
      const ts = Math.max(Date.now(), probeTs + 1);
      probeTs = ts;
      probes++;
      const value = probes % 2 === 1 ? 100 : 0;
      probeClient?.publish(`${PREFIX}/probe/level`, `{"value":${value},"ts":${ts}}`, { qos }, (err) => {
        if (err) failures.push(err.message);
        resolve();
      });
    });

  emit({ event: 'started', at: t0 });
  const probeTimer = probeClient ? setInterval(() => void probe(QOS), PROBE_MS) : null;
  // Rate mode publishes on a timer; as-fast-as-possible mode is driven by drains and PUBACKs alone.
  const ticker = setInterval(() => {
    for (const c of conns) c.pump();
  }, TICK_MS);
  for (const c of conns) c.pump();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  clearInterval(ticker);
  if (probeTimer) clearInterval(probeTimer);
  const loadSeconds = (Date.now() - t0) / 1000;

  const finals = [...conns.map((c) => c.finish()), ...(probeClient ? [probe(1)] : [])];
  let drainTimer: NodeJS.Timeout | undefined;
  const complete = await Promise.race([
    Promise.all(finals).then(() => true),
    lost.then(() => false),
    new Promise<boolean>((r) => {
      drainTimer = setTimeout(() => r(false), DRAIN_MS);
    }),
  ]);
  clearTimeout(drainTimer);
  const seconds = (Date.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  stopping = true;
  await Promise.all([...clients, ...(probeClient ? [probeClient] : [])].map((c) => c.endAsync(!complete)));

  const published = conns.reduce((n, c) => n + c.published, 0) + probes;
  emit({
    event: 'done',
    published,
    messages: conns.reduce((n, c) => n + c.messages, 0) + probes,
    probes,
    loadSeconds,
    seconds,
    complete,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    failures: failures.slice(0, 5),
  });
}

main().catch((err: unknown) => {
  emit({ event: 'error', message: (err as Error).message });
  process.exit(1);
});
