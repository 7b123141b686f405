/**
 * The fleet path end to end: built gateways (`node dist/cli.js run`) forward their outbox into an
 * R3 stream of a real 3-node JetStream cluster on loopback (Debian's nats-server). Each test reads
 * the stream back and checks, per gateway, that every outbox seq is stored exactly once and in
 * increasing order, across a leader killed, gateways killed, and a cursor set back.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import Database from 'better-sqlite3';
import { connectAsync, type MqttClient } from 'mqtt';
import { recentHour } from '../helpers/event-time.js';
import { eventually, type RunningGateway, startGateway } from '../helpers/gateway-process.js';
import { type NatsCluster, type StoredEnvelope, startNatsCluster } from '../helpers/nats-cluster.js';
import { freePort } from '../helpers/net.js';
import { lastSeq } from '../helpers/outbox.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

const T0 = recentHour();
const TEST = { timeout: 180_000 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every seq 1..last of `gateway` exactly once, in increasing order of the stream. */
function assertExactlyOnceInOrder(stored: StoredEnvelope[], gateway: string, last: number): void {
  const seqs = stored.filter((m) => m.gateway === gateway).map((m) => m.seq);
  const seen = new Map<number, number>();
  for (const s of seqs) seen.set(s, (seen.get(s) ?? 0) + 1);
  const twice = [...seen].filter(([, n]) => n > 1).map(([s]) => s);
  assert.deepEqual(twice.slice(0, 10), [], `${gateway}: ${twice.length} seqs stored more than once`);
  const missing: number[] = [];
  for (let s = 1; s <= last; s++) if (!seen.has(s)) missing.push(s);
  assert.deepEqual(missing.slice(0, 10), [], `${gateway}: ${missing.length} of ${last} seqs missing`);
  const disorder = seqs.findIndex((s, i) => i > 0 && s <= (seqs[i - 1] as number));
  assert.equal(
    disorder,
    -1,
    `${gateway}: seq ${seqs[disorder]} stored after ${seqs[disorder - 1]} (stream position ${disorder})`,
  );
  assert.equal(seqs.length, last);
  for (const m of stored.filter((x) => x.gateway === gateway)) assert.equal(m.msgId, `${gateway}:${m.seq}`);
}

/**
 * Readings into a gateway's embedded broker, 200 to a message (QoS 1), each device's ts increasing:
 * raw readings and per-second results all become outbox rows.
 */
class Feeder {
  private client: MqttClient | null = null;
  private n = 0;
  acked = 0;

  async connect(port: number): Promise<void> {
    await this.client?.endAsync(true).catch(() => {});
    this.client = await connectAsync(`mqtt://127.0.0.1:${port}`, {
      reconnectPeriod: 0,
      connectTimeout: 2000,
    });
    this.client.on('error', () => {});
  }

  /** One message of `size` readings over `devices`; resolves false if the gateway did not take it. */
  async burst(devices: readonly string[], size = 200): Promise<boolean> {
    const client = this.client;
    if (!client) return false;
    const readings = Array.from({ length: size }, () => {
      const i = this.n++;
      return {
        device: devices[i % devices.length],
        metric: 'temperature',
        value: i % 97,
        ts: T0 + Math.floor(i / devices.length) * 10,
      };
    });
    try {
      await client.publishAsync(`sensors/${devices[0]}/batch`, JSON.stringify(readings), { qos: 1 });
      this.acked += size;
      return true;
    } catch {
      return false;
    }
  }

  async end(): Promise<void> {
    await this.client?.endAsync(true).catch(() => {});
    this.client = null;
  }
}

describe('nats upstream end to end: built gateways into an R3 stream of a 3-node cluster', () => {
  let cluster: NatsCluster;
  let dir: TempDir;
  const running: RunningGateway[] = [];

  before(async () => {
    dir = makeTempDir('tidegate-e2e-nats-');
    cluster = await startNatsCluster();
  });
  after(async () => {
    for (const gw of running) await gw.stop('SIGKILL');
    await cluster?.close();
    dir?.remove();
  });

  /** A gateway config forwarding readings and per-second results to `stream` on `prefix.{gateway}…`. */
  async function gatewayConfig(name: string, gateway: string, prefix: string, stream: string) {
    const port = await freePort();
    const file = dir.file(`${name}.yaml`);
    const db = dir.file(`${name}.db`);
    writeFileSync(
      file,
      `
gateway: { id: ${gateway} }
api: { port: 0, rateLimit: 0 }
broker: { host: 127.0.0.1, port: ${port}, allowAnonymous: loopback }
sources: [{ id: local, type: mqtt, topics: [{ filter: "sensors/{device}/{metric}" }] }]
rules:
  - id: per-second
    match: { metric: temperature }
    window: { type: tumbling, size: 1s }
    watermark: { idleTimeout: 1h }
    lateness: 1h
    aggregates: { n: count, total: sum }
    forward: [results]
outbox: { readings: true }
ingest: { maxMetricsPerMessage: 256 }
store: { path: ${db}, flushInterval: 20ms }
upstreams:
  - id: fleet
    type: nats
    servers: [${cluster.servers.map((s) => `"${s}"`).join(', ')}]
    stream: ${stream}
    subject: "${prefix}.{gateway}.{type}.{rule}"
    timeout: 2s
`,
    );
    return { file, db, port };
  }

  async function started(file: string): Promise<RunningGateway> {
    const gw = await startGateway(file);
    running.push(gw);
    return gw;
  }

  /** Waits until the stream holds `last` rows of `gateway` (its last message says so), then reads them. */
  async function storedThrough(stream: string, filter: string, gateway: string, last: number, ms = 60_000) {
    const jsm = await jetstreamManager(await cluster.connection());
    await eventually(
      async () => {
        const m = await jsm.streams.getMessage(stream, { last_by_subj: filter });
        return m?.header?.get('Nats-Msg-Id') === `${gateway}:${last}` ? true : undefined;
      },
      ms,
      `${gateway}:${last} in ${stream}`,
    );
    return cluster.read(stream, filter);
  }

  it(
    '20 k rows while the stream leader is SIGKILLed and restarted: each seq once, in order; the node catches up',
    TEST,
    async () => {
      await cluster.createStream({ name: 'E2E_LEADER', subjects: ['leader.>'] });
      const { file, db, port } = await gatewayConfig('leader', 'gw-l', 'leader', 'E2E_LEADER');
      const gw = await started(file);
      const feeder = new Feeder();
      await feeder.connect(port);
      const devices = ['l-1', 'l-2', 'l-3', 'l-4'];
      const leader = await cluster.leaderOf('E2E_LEADER');
      let newLeader = '';
      for (let burst = 0; burst < 100; burst++) {
        assert.ok(await feeder.burst(devices), 'the gateway took the readings');
        if (burst === 25) await leader.kill();
        if (burst === 60) {
          newLeader = (await cluster.leaderOf('E2E_LEADER', 30_000)).name;
          await leader.start();
        }
        await sleep(40);
      }
      await feeder.end();
      assert.notEqual(newLeader, leader.name, 'another node took over');
      const last = lastSeq(db);
      assert.ok(last >= 20_000, `only ${last} outbox rows`);
      const stored = await storedThrough('E2E_LEADER', 'leader.gw-l.>', 'gw-l', last);
      assertExactlyOnceInOrder(stored, 'gw-l', last);
      const metrics = await (await gw.api('/metrics')).text();
      assert.match(
        metrics,
        /tidegate_upstream_errors_total\{upstream="fleet"\} [1-9]/,
        'the election was felt',
      );
      const health = await eventually(async () => {
        const h = (await (await gw.api('/api/v1/health')).json()) as {
          upstreams: { id: string; type: string; state: string; acked: number; backlog: number }[];
        };
        return h.upstreams[0]?.backlog === 0 && h.upstreams[0].state === 'connected' ? h : undefined;
      });
      assert.deepEqual(
        health.upstreams.map((u) => [u.id, u.type, u.acked]),
        [['fleet', 'nats', last]],
      );
      // The restarted node has every message in its own store.
      await cluster.replicasCurrent('E2E_LEADER', 60_000);
      await eventually(
        async () => {
          const state = await leader.streamState('E2E_LEADER');
          return state?.messages === stored.length ? true : undefined;
        },
        60_000,
        `node ${leader.name} to catch up`,
      );
      await gw.stop();
    },
  );

  it(
    'the gateway SIGKILLed 5 times mid-stream: every seq in the stream once, none missing',
    TEST,
    async () => {
      await cluster.createStream({ name: 'E2E_CRASH', subjects: ['crash.>'] });
      const { file, db, port } = await gatewayConfig('crash', 'gw-k', 'crash', 'E2E_CRASH');
      const feeder = new Feeder();
      const devices = ['k-1', 'k-2', 'k-3'];
      let gw = await started(file);
      for (let kill = 0; kill < 5; kill++) {
        await feeder.connect(port);
        const bursts = 10 + Math.floor(Math.random() * 15);
        for (let i = 0; i < bursts; i++) {
          await feeder.burst(devices);
          await sleep(10);
        }
        // Mid-stream: the forwarder is still behind the readings just taken.
        const { code } = await gw.stop('SIGKILL');
        assert.equal(code, null);
        gw = await started(file);
      }
      await feeder.connect(port);
      for (let i = 0; i < 5; i++) await feeder.burst(devices);
      await feeder.end();
      const last = lastSeq(db);
      assert.ok(last >= 5 * 10 * 200, `only ${last} outbox rows`);
      const stored = await storedThrough('E2E_CRASH', 'crash.gw-k.>', 'gw-k', last);
      assertExactlyOnceInOrder(stored, 'gw-k', last);
      await gw.stop();
    },
  );

  it(
    'three gateways feed one stream: a consumer reads everything, complete for each gateway',
    TEST,
    async () => {
      await cluster.createStream({ name: 'E2E_FLEET', subjects: ['fleet.>'] });
      const names = ['gw-1', 'gw-2', 'gw-3'];
      const gateways = await Promise.all(
        names.map(async (g) => {
          const c = await gatewayConfig(`fleet-${g}`, g, 'fleet', 'E2E_FLEET');
          const gw = await started(c.file);
          const feeder = new Feeder();
          await feeder.connect(c.port);
          return { g, ...c, gw, feeder };
        }),
      );
      for (let burst = 0; burst < 20; burst++) {
        await Promise.all(gateways.map((x) => x.feeder.burst([`${x.g}-a`, `${x.g}-b`])));
        await sleep(20);
      }
      for (const x of gateways) await x.feeder.end();
      for (const x of gateways) await storedThrough('E2E_FLEET', `fleet.${x.g}.>`, x.g, lastSeq(x.db));
      // One consumer of the whole stream, as a fleet's back end reads it.
      const all = await cluster.read('E2E_FLEET', 'fleet.>');
      for (const x of gateways) assertExactlyOnceInOrder(all, x.g, lastSeq(x.db));
      assert.deepEqual(
        [...new Set(all.map((m) => m.gateway))].sort(),
        names,
        'nothing but the three gateways in the stream',
      );
      for (const x of gateways) await x.gw.stop();
    },
  );

  it('the cursor set back further than the duplicate window: no seq stored twice', TEST, async () => {
    // A 1 s duplicate window, so that being outside it needs no long wait.
    await cluster.createStream({ name: 'E2E_WINDOW', subjects: ['window.>'], duplicate_window: 1e9 });
    const { file, db, port } = await gatewayConfig('window', 'gw-w', 'window', 'E2E_WINDOW');
    const feeder = new Feeder();
    let gw = await started(file);
    await feeder.connect(port);
    for (let i = 0; i < 10; i++) await feeder.burst(['w-1', 'w-2']);
    const first = lastSeq(db);
    await storedThrough('E2E_WINDOW', 'window.gw-w.>', 'gw-w', first);
    await feeder.end();
    await gw.stop();
    // Outside the window: the stream forgot every id published before this probe.
    await cluster.outsideDuplicateWindow('window.probe.x');
    // An old database: every row is unacknowledged again.
    const sql = new Database(db);
    sql.prepare("UPDATE upstream_cursors SET acked = 0 WHERE upstream = 'fleet'").run();
    assert.equal(sql.prepare('SELECT count(*) FROM outbox WHERE seq <= ?').pluck().get(first), first);
    sql.close();
    gw = await started(file);
    await feeder.connect(port);
    for (let i = 0; i < 5; i++) await feeder.burst(['w-1', 'w-2']);
    await feeder.end();
    const last = lastSeq(db);
    assert.ok(last > first);
    const stored = await storedThrough('E2E_WINDOW', 'window.gw-w.>', 'gw-w', last);
    assertExactlyOnceInOrder(stored, 'gw-w', last);
    const metrics = await (await gw.api('/metrics')).text();
    assert.match(
      metrics,
      new RegExp(`tidegate_upstream_duplicates_total\\{upstream="fleet"\\} ${first}\\b`),
      'the rows the stream had are counted as duplicates, not sent',
    );
    await gw.stop();
  });
});
