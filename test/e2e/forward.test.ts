import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { connectAsync, type MqttClient } from 'mqtt';
import { recentHour } from '../helpers/event-time.js';
import { eventually, runCli, startGateway } from '../helpers/gateway-process.js';
import { type HttpSink, startHttpSink } from '../helpers/http-sink.js';
import { type Mosquitto, startMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/net.js';
import { lastSeq } from '../helpers/outbox.js';

const T0 = recentHour();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Envelope {
  gateway: string;
  seq: number;
  type: string;
  body: unknown;
}

/** A subscriber on the upstream broker with a persistent session: it misses nothing across restarts. */
async function receiver(url: string, clientId: string): Promise<{ seqs: number[]; client: MqttClient }> {
  const seqs: number[] = [];
  const client = await connectAsync(url, { clientId, clean: false, reconnectPeriod: 100 });
  client.on('message', (_topic, payload) => seqs.push((JSON.parse(payload.toString()) as Envelope).seq));
  await client.subscribeAsync('tidegate/#', { qos: 1 });
  return { seqs, client };
}

interface Sent {
  device: string;
  metric: string;
  value: number;
  ts: number;
}

/**
 * Publishes readings (QoS 1) to the gateway's broker, one device after another in ts order, and
 * remembers which ones the broker acknowledged. After a lost connection it opens a new client and
 * resends what was not acknowledged itself: a fresh client per connection, because mqtt.js's own
 * resend reuses message ids, and a PUBACK for a resent message could then be taken as the PUBACK
 * of a new message with the same id (a client-side confusion, not what the test is about).
 */
class Publisher {
  readonly acked: Sent[] = [];
  private client: MqttClient | null = null;
  private port = 0;
  private n = 0;
  private readonly queue: Sent[] = [];
  /** Messages sent on the current client and not yet acknowledged. */
  private inflight = new Set<Sent>();
  private ended = false;

  async connect(port: number): Promise<void> {
    this.port = port;
    await this.open();
  }

  private async open(): Promise<void> {
    for (let attempt = 0; !this.ended && attempt < 600; attempt++) {
      try {
        const client = await connectAsync(`mqtt://127.0.0.1:${this.port}`, {
          reconnectPeriod: 0,
          connectTimeout: 2000,
        });
        client.on('close', () => {
          if (this.client !== client) return;
          this.client = null;
          // Whatever this connection did not acknowledge goes again, on the next one.
          this.queue.unshift(...this.inflight);
          this.inflight = new Set();
          if (!this.ended) setTimeout(() => void this.open(), 50);
        });
        this.client = client;
        this.pump();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  private pump(): void {
    const client = this.client;
    while (client && this.queue.length > 0) {
      const r = this.queue.shift() as Sent;
      const inflight = this.inflight;
      inflight.add(r);
      client.publish(
        `sensors/${r.device}/temperature`,
        JSON.stringify({ value: r.value, ts: r.ts }),
        { qos: 1 },
        (err) => {
          // Only an acknowledgement on the client that sent it counts; a failure waits for the close.
          if (!err && inflight.delete(r)) this.acked.push(r);
        },
      );
    }
  }

  /** One reading per device, each `stepMs` of event time after the previous round. */
  round(devices: string[], stepMs: number): void {
    const ts = T0 + this.n * stepMs;
    const value = this.n % 97;
    this.n++;
    for (const device of devices) this.queue.push({ device, metric: 'temperature', value, ts });
    this.pump();
  }

  async drained(timeoutMs = 20_000): Promise<void> {
    await eventually(
      async () => (this.queue.length === 0 && this.inflight.size === 0 && this.client ? true : undefined),
      timeoutMs,
      'every publish acknowledged',
    );
  }

  async end(): Promise<void> {
    this.ended = true;
    await this.client?.endAsync(true);
  }
}

/** Every seq from 1 to `last` is there; the first arrivals are in increasing order (at least once, in order). */
function assertComplete(seqs: number[], last: number, what: string): void {
  const firsts: number[] = [];
  const seen = new Set<number>();
  for (const s of seqs) {
    if (!seen.has(s)) firsts.push(s);
    seen.add(s);
  }
  const missing: number[] = [];
  for (let s = 1; s <= last; s++) if (!seen.has(s)) missing.push(s);
  assert.deepEqual(missing.slice(0, 10), [], `${what}: ${missing.length} seqs missing of ${last}`);
  for (let i = 1; i < firsts.length; i++) {
    assert.ok(
      (firsts[i] as number) > (firsts[i - 1] as number),
      `${what}: ${firsts[i]} arrived after ${firsts[i - 1]}`,
    );
  }
}

function sinkSeqs(sink: HttpSink): number[] {
  return (sink.accepted() as Envelope[][]).flat().map((e) => e.seq);
}

describe('store and forward, end to end (built gateway, Debian mosquitto, an HTTP ingest)', () => {
  let dir: string;
  let mosquitto: Mosquitto;
  let sink: HttpSink;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tidegate-forward-'));
    mosquitto = await startMosquitto({ persistence: true });
    sink = await startHttpSink();
  });

  after(async () => {
    await mosquitto?.close();
    await sink?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const config = (name: string, brokerPort: number, extra = '', storeExtra = '') => {
    const file = join(dir, `${name}.yaml`);
    writeFileSync(
      file,
      `
gateway: { id: ${name} }
api: { port: 0 }
broker: { host: 127.0.0.1, port: ${brokerPort}, allowAnonymous: loopback }
sources: [{ id: local, type: mqtt, topics: [{ filter: "sensors/{device}/{metric}" }] }]
rules:
  - id: per-second
    match: { metric: temperature }
    window: { type: tumbling, size: 1s }
    watermark: { idleTimeout: 1h }
    lateness: 1h
    aggregates: { n: count, total: sum, low: min, high: max }
    forward: [results]
outbox: { readings: true }
store: { path: ${join(dir, `${name}.db`)}, flushInterval: 20ms, maintenanceInterval: 200ms${storeExtra} }
${extra}
`,
    );
    return file;
  };

  it('an upstream outage: every seq arrives, in order, none missing, and the backlog drains', async () => {
    const rx = await receiver(mosquitto.url, 'rx-outage');
    const port = await freePort();
    const file = config(
      'outage',
      port,
      `upstreams:\n  - { id: cloud, type: mqtt, url: "${mosquitto.url}", clientId: gw-outage }\n  - { id: ingest, type: http, url: "${sink.url}", timeout: 1s }`,
    );
    const gw = await startGateway(file);
    const pub = new Publisher();
    try {
      await pub.connect(port);
      for (let i = 0; i < 150; i++) {
        pub.round(['a-1', 'a-2'], 100);
        if (i === 40) await mosquitto.stop();
        if (i === 100) await mosquitto.restart();
        await sleep(10);
      }
      await pub.drained();
      const last = lastSeq(join(dir, 'outage.db'));
      assert.ok(last >= 300, `only ${last} outbox rows`);
      await eventually(
        async () => (new Set(rx.seqs).size >= last ? true : undefined),
        20_000,
        'the receiver to catch up',
      );
      assertComplete(rx.seqs, last, 'mqtt upstream');
      await eventually(
        async () => (new Set(sinkSeqs(sink)).size >= last ? true : undefined),
        10_000,
        'the http sink',
      );
      assertComplete(sinkSeqs(sink), last, 'http upstream');
      const health = (await (await gw.api('/api/v1/health')).json()) as {
        upstreams: { id: string; backlog: number }[];
      };
      await eventually(async () => {
        const h = (await (await gw.api('/api/v1/health')).json()) as { upstreams: { backlog: number }[] };
        return h.upstreams.every((u) => u.backlog === 0) ? true : undefined;
      });
      assert.deepEqual(health.upstreams.map((u) => u.id).sort(), ['cloud', 'ingest']);
      const metrics = await (await gw.api('/metrics')).text();
      assert.match(metrics, /tidegate_upstream_errors_total\{upstream="cloud"\} [1-9]/);
    } finally {
      await pub.end();
      await rx.client.endAsync(true);
      await gw.stop();
    }
  });

  it('crashes: SIGKILLed 20 times mid-stream, it loses no acknowledged reading, no seq, and no window result', async () => {
    const rx = await receiver(mosquitto.url, 'rx-crash');
    sink.behave('ok');
    const sinkBefore = sink.accepted().length;
    const port = await freePort();
    const dbFile = join(dir, 'crash.db');
    const file = config(
      'crash',
      port,
      `upstreams:\n  - { id: cloud, type: mqtt, url: "${mosquitto.url}", clientId: gw-crash }\n  - { id: ingest, type: http, url: "${sink.url}", timeout: 1s }`,
    );
    const pub = new Publisher();
    const devices = ['c-1', 'c-2', 'c-3'];
    let gw = await startGateway(file);
    await pub.connect(port);
    for (let kill = 0; kill < 20; kill++) {
      // Killed at a random moment: after 5–24 rounds of readings.
      const rounds = 5 + Math.floor(Math.random() * 20);
      for (let i = 0; i < rounds; i++) {
        pub.round(devices, 50);
        await sleep(5 + Math.random() * 10);
      }
      const { code } = await gw.stop('SIGKILL');
      assert.equal(code, null);
      gw = await startGateway(file);
    }
    // A last round far ahead closes every window; then everything must be acknowledged.
    for (let i = 0; i < 3; i++) pub.round(devices, 50);
    pub.round(devices, 5_000);
    await pub.drained();
    try {
      const db = new Database(dbFile, { readonly: true });
      const stored = new Set(
        (
          db
            .prepare('SELECT s.device, r.ts, r.value FROM readings r JOIN series s ON s.id = r.series_id')
            .all() as { device: string; ts: number; value: number }[]
        ).map((r) => `${r.device}@${r.ts}=${r.value}`),
      );
      const missing = pub.acked.filter((r) => !stored.has(`${r.device}@${r.ts}=${r.value}`));
      assert.deepEqual(missing, [], 'every acknowledged reading is stored');
      // The final revision of every window equals the result computed from the acknowledged readings.
      const live = new Map<string, string>();
      for (const r of db
        .prepare(
          `SELECT key, start, "end", count, "values", revision FROM results WHERE rule = 'per-second' ORDER BY revision`,
        )
        .all() as { key: string; start: number; end: number; count: number; values: string }[]) {
        live.set(`${r.key}|${r.start}`, `${r.count} ${r.values}`);
      }
      db.close();
      const input = [...pub.acked]
        .sort((a, b) => a.ts - b.ts || a.device.localeCompare(b.device))
        .map((r) => JSON.stringify(r))
        .join('\n');
      writeFileSync(
        join(dir, 'crash-rules.yaml'),
        `- id: per-second\n  match: { metric: temperature }\n  window: { type: tumbling, size: 1s }\n  lateness: 1h\n  aggregates: { n: count, total: sum, low: min, high: max }\n`,
      );
      const replayed = await runCli(['replay', '--rules', join(dir, 'crash-rules.yaml')], { input });
      const expected = new Map<string, string>();
      for (const line of replayed.stdout.trim().split('\n')) {
        const r = JSON.parse(line) as { key: unknown; start: string; count: number; values: unknown };
        expected.set(
          `${JSON.stringify(r.key)}|${Date.parse(r.start)}`,
          `${r.count} ${JSON.stringify(r.values)}`,
        );
      }
      let compared = 0;
      for (const [window, result] of live) {
        assert.equal(result, expected.get(window), `window ${window}`);
        compared++;
      }
      assert.ok(compared >= devices.length * 10, `only ${compared} windows compared`);
      // Every seq from 1 to the last one stored reached both upstreams at least once, in order.
      const last = lastSeq(dbFile);
      await eventually(
        async () => (new Set(rx.seqs).size >= last ? true : undefined),
        30_000,
        'mqtt receiver',
      );
      assertComplete(rx.seqs, last, 'mqtt upstream');
      const httpSeqs = () => (sink.accepted().slice(sinkBefore) as Envelope[][]).flat().map((e) => e.seq);
      await eventually(
        async () => (new Set(httpSeqs()).size >= last ? true : undefined),
        30_000,
        'http sink',
      );
      assertComplete(httpSeqs(), last, 'http upstream');
    } finally {
      await pub.end();
      await rx.client.endAsync(true);
      await gw.stop();
    }
  });

  it('over a tiny store.maxSize with the upstream down: drops the oldest, counts them, keeps running', async () => {
    sink.behave({ status: 503 });
    const before = sink.accepted().length;
    const port = await freePort();
    const file = config(
      'cap',
      port,
      `upstreams:\n  - { id: ingest, type: http, url: "${sink.url}", timeout: 1s, batchSize: 1000 }`,
      ', maxSize: 1MiB',
    );
    const gw = await startGateway(file);
    const client = await connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
    const dropped = async () => {
      const text = await (await gw.api('/metrics')).text();
      return Number(/^tidegate_outbox_dropped_total (\d+)/m.exec(text)?.[1] ?? 0);
    };
    try {
      let n = 0;
      // 200 readings a message (under ingest.maxMetricsPerMessage), until the cap drops outbox rows.
      for (let burst = 0; burst < 200 && (await dropped()) === 0; burst++) {
        const batch = Array.from({ length: 200 }, () => {
          n++;
          return { device: `cap-${n % 10}`, metric: 'temperature', value: n, ts: T0 + n };
        });
        await client.publishAsync('sensors/cap-0/batch', JSON.stringify(batch), { qos: 1 });
        await sleep(50);
      }
      const lost = await eventually(
        async () => ((await dropped()) > 0 ? dropped() : undefined),
        10_000,
        'drops',
      );
      assert.equal((await gw.api('/api/v1/health')).status, 200);
      sink.behave('ok');
      const last = lastSeq(join(dir, 'cap.db'));
      const delivered = () =>
        new Set((sink.accepted().slice(before) as Envelope[][]).flat().map((e) => e.seq));
      await eventually(
        async () => {
          const h = (await (await gw.api('/api/v1/health')).json()) as { upstreams: { backlog: number }[] };
          return h.upstreams[0]?.backlog === 0 ? true : undefined;
        },
        20_000,
        'the backlog to drain',
      );
      const got = delivered();
      // No gap other than the counted drops: all of the last seqs after the dropped prefix arrived.
      const finalLost = await dropped();
      assert.ok(finalLost >= lost);
      assert.equal(got.size + finalLost, last, `delivered ${got.size} + dropped ${finalLost} ≠ ${last}`);
      const firstDelivered = Math.min(...got);
      for (let s = firstDelivered; s <= last; s++) assert.ok(got.has(s), `seq ${s} missing`);
    } finally {
      await client.endAsync(true);
      await gw.stop();
      sink.behave('ok');
    }
  });

  it('an HTTP upstream that answers 500, times out, or closes the connection: retried, nothing lost', async () => {
    sink.behave({ status: 500 });
    const before = sink.accepted().length;
    const port = await freePort();
    const file = config(
      'flaky',
      port,
      `upstreams:\n  - { id: ingest, type: http, url: "${sink.url}", timeout: 300ms, batchSize: 20 }`,
    );
    const gw = await startGateway(file);
    const pub = new Publisher();
    try {
      await pub.connect(port);
      // Each failure mode holds until the gateway has met it, while readings keep coming.
      const behaviours: Parameters<HttpSink['behave']>[0][] = [
        { status: 500 },
        'hang',
        'close',
        'ok',
        { status: 502 },
      ];
      for (const b of behaviours) {
        sink.behave(b);
        const seen = sink.requests.length;
        for (let i = 0; i < 400 && !sink.requests.slice(seen).some((r) => r.behaviour === b); i++) {
          pub.round(['h-1'], 100);
          await sleep(15);
        }
      }
      sink.behave('ok');
      await pub.drained();
      const last = lastSeq(join(dir, 'flaky.db'));
      const seqs = () => (sink.accepted().slice(before) as Envelope[][]).flat().map((e) => e.seq);
      await eventually(
        async () => (new Set(seqs()).size >= last ? true : undefined),
        30_000,
        'the sink to catch up',
      );
      assertComplete(seqs(), last, 'http upstream');
      const kinds = new Set<string | number>(
        sink.requests.map((r) => (typeof r.behaviour === 'string' ? r.behaviour : r.behaviour.status)),
      );
      for (const k of [500, 'hang', 'close', 'ok']) assert.ok(kinds.has(k), `the sink never answered ${k}`);
    } finally {
      await pub.end();
      await gw.stop();
    }
  });
});
