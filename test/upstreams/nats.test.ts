/**
 * NatsUpstream against a real 3-node JetStream cluster on loopback (Debian's nats-server 2.9):
 * message ids, PubAcks and duplicates, the skip of rows the stream's last message shows stored,
 * "wrong last sequence", the stream's creation, and a leader election.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, afterEach, before, describe, it } from 'node:test';
import { jetstream } from '@nats-io/jetstream';
import { pino } from 'pino';
import { Forwarder } from '../../src/forward/forwarder.js';
import { systemClock } from '../../src/runtime/clock.js';
import type { Logger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { openDatabase } from '../../src/store/database.js';
import { Outbox } from '../../src/store/outbox.js';
import { natsUpstreamSchema } from '../../src/upstreams/config.js';
import { createUpstream } from '../../src/upstreams/create.js';
import { NatsUpstream } from '../../src/upstreams/nats.js';
import { UpstreamUnavailableError } from '../../src/upstreams/upstream.js';
import { type NatsCluster, startNatsCluster } from '../helpers/nats-cluster.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';
import { makeCertificates } from './certificates.js';
import { outboxItems } from './items.js';
import { waitFor } from './wait.js';

const TEST = { timeout: 60_000 };

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

/** A logger that keeps its lines, for assertions on what was said. */
function memoryLogger(lines: LogLine[]): Logger {
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return pino({ level: 'info' }, sink);
}

async function duplicates(metrics: Metrics): Promise<number> {
  const m = metrics.registry.getSingleMetric('tidegate_upstream_duplicates_total');
  const { values } = (await m?.get()) ?? { values: [] };
  return values.reduce((sum, v) => sum + v.value, 0);
}

describe('NatsUpstream against a 3-node JetStream cluster', () => {
  let cluster: NatsCluster;
  const upstreams: NatsUpstream[] = [];

  before(async () => {
    cluster = await startNatsCluster();
    await cluster.createStream({ name: 'FLEET', subjects: ['tidegate.>'], duplicate_window: 120e9 });
  });
  afterEach(async () => {
    for (const u of upstreams.splice(0)) await u.close();
  });
  after(async () => {
    await cluster?.close();
  });

  function upstream(extra: Record<string, unknown> = {}, gatewayId = 'gw-1') {
    const config = natsUpstreamSchema.parse({
      id: 'fleet',
      type: 'nats',
      servers: cluster.servers,
      stream: 'FLEET',
      ...extra,
    });
    const metrics = new Metrics();
    const logs: LogLine[] = [];
    const up = new NatsUpstream(
      config,
      { gatewayId, log: memoryLogger(logs), metrics },
      { reconnect: { min: 50, max: 500 }, startWait: 10_000 },
    );
    upstreams.push(up);
    return { up, metrics, logs };
  }

  it(
    'publishes each row on its subject with the id {gateway}:{seq}, in order, confirmed by PubAcks',
    TEST,
    async () => {
      const { up, metrics } = upstream({}, 'gw-a');
      await up.start();
      assert.equal(up.state(), 'connected');
      assert.equal(up.lastError(), null);
      const batch = outboxItems(300, 1, 'gw-a');
      await up.deliver(batch);
      const stored = await cluster.read('FLEET', 'tidegate.gw-a.>');
      assert.deepEqual(
        stored.map((m) => m.seq),
        batch.map((b) => b.envelope.seq),
      );
      assert.deepEqual(
        stored.slice(0, 5).map((m) => [m.subject, m.msgId]),
        [
          ['tidegate.gw-a.result.boiler-overheat', 'gw-a:1'],
          ['tidegate.gw-a.decision.boiler-overheat', 'gw-a:2'],
          ['tidegate.gw-a.result.boiler-overheat', 'gw-a:3'],
          ['tidegate.gw-a.decision.boiler-overheat', 'gw-a:4'],
          // A raw reading has no rule: its {rule} token is `readings`.
          ['tidegate.gw-a.reading.readings', 'gw-a:5'],
        ],
      );
      assert.deepEqual(stored[0]?.body, batch[0]?.envelope.body);
      assert.equal(await duplicates(metrics), 0);
    },
  );

  it(
    'a row published again is acknowledged as a duplicate: delivered, counted, stored once',
    TEST,
    async () => {
      const { up, metrics } = upstream({}, 'gw-b');
      await up.start();
      await up.deliver(outboxItems(50, 1, 'gw-b'));
      await up.deliver(outboxItems(60, 1, 'gw-b'));
      assert.equal(await duplicates(metrics), 50);
      const stored = await cluster.read('FLEET', 'tidegate.gw-b.>');
      assert.deepEqual(
        stored.map((m) => m.seq),
        Array.from({ length: 60 }, (_, i) => i + 1),
      );
    },
  );

  it(
    'outside the duplicate window, an upstream from an older cursor skips what the stream has (last_by_subj)',
    TEST,
    async () => {
      await cluster.createStream({ name: 'SHORT', subjects: ['short.>'], duplicate_window: 1e9 });
      const options = { stream: 'SHORT', subject: 'short.{gateway}.{type}.{rule}' };
      const first = upstream(options, 'gw-c');
      await first.up.start();
      await first.up.deliver(outboxItems(40, 1, 'gw-c'));
      await first.up.close();
      await cluster.outsideDuplicateWindow('short.probe.x');
      const again = upstream(options, 'gw-c');
      await again.up.start();
      // From an older cursor: rows 11–40 are stored, only 41–45 are published.
      await again.up.deliver(outboxItems(35, 11, 'gw-c'));
      assert.equal(await duplicates(again.metrics), 30);
      assert.ok(
        again.logs.some((l) => l.msg === 'nats stream already has rows after the cursor: skipping them'),
      );
      const stored = await cluster.read('SHORT', 'short.gw-c.>');
      assert.deepEqual(
        stored.map((m) => m.seq),
        Array.from({ length: 45 }, (_, i) => i + 1),
      );
    },
  );

  it(
    '"wrong last sequence" (10071) on the first row after a check: reads the stream again',
    TEST,
    async () => {
      const { up, logs } = upstream({}, 'gw-d');
      await up.start();
      await up.deliver(outboxItems(10, 1, 'gw-d'));
      // Force a new check, and have a message land on the first row's subject between the read of
      // its last sequence and the conditional publish: as a stale publish of ours could.
      (up as unknown as { checked: boolean }).checked = false;
      const inner = up as unknown as { lastStored(subject: string): Promise<unknown> };
      const lastStored = inner.lastStored.bind(up);
      const js = jetstream(await cluster.connection());
      let interfered = false;
      inner.lastStored = async (subject: string) => {
        const found = await lastStored(subject);
        if (!interfered && !subject.endsWith('>')) {
          interfered = true;
          await js.publish(subject, JSON.stringify({ gateway: 'gw-d', seq: 0, type: 'stale', body: null }));
        }
        return found;
      };
      await up.deliver(outboxItems(5, 11, 'gw-d'));
      assert.ok(interfered);
      assert.ok(
        logs.some((l) => l.msg === 'nats stream moved on: reading it again'),
        JSON.stringify(logs.map((l) => l.msg)),
      );
      const seqs = (await cluster.read('FLEET', 'tidegate.gw-d.>')).map((m) => m.seq);
      assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 11, 12, 13, 14, 15]);
    },
  );

  it('a stream that does not exist: retried, said in lastError, never a crash', TEST, async () => {
    const { up } = upstream({ stream: 'MISSING', subject: 'missing.{gateway}.{type}.{rule}', timeout: 1000 });
    await up.start();
    await waitFor('the error', () => /stream MISSING does not exist/.test(up.lastError() ?? ''), 10_000);
    assert.notEqual(up.state(), 'connected');
    await assert.rejects(up.deliver(outboxItems(1)), UpstreamUnavailableError);
  });

  it(
    'createStream creates the stream: replicas, maxAge, duplicate window, the template prefix',
    TEST,
    async () => {
      const { up } = upstream({
        stream: 'CREATED',
        subject: 'made.{gateway}.{type}.{rule}',
        createStream: { replicas: 3, maxAge: '1h', duplicateWindow: '30s' },
      });
      await up.start();
      await waitFor('connected', () => up.state() === 'connected', 30_000);
      await up.deliver(outboxItems(3));
      const { jetstreamManager } = await import('@nats-io/jetstream');
      const info = await (await jetstreamManager(await cluster.connection())).streams.info('CREATED');
      assert.equal(info.config.num_replicas, 3);
      assert.equal(info.config.max_age, 3600e9);
      assert.equal(info.config.duplicate_window, 30e9);
      assert.deepEqual(info.config.subjects, ['made.>']);
      assert.equal(info.state.messages, 3);
    },
  );

  it('a subject the stream does not take: said in lastError', TEST, async () => {
    const { up } = upstream({ subject: 'elsewhere.{gateway}.{type}.{rule}', timeout: 1000 });
    await up.start();
    await waitFor(
      'the error',
      () => /no stream takes subject elsewhere\.gw-1/.test(up.lastError() ?? ''),
      10_000,
    );
  });

  it('is what createUpstream makes of a nats entry (the client loaded on demand)', TEST, async () => {
    const config = natsUpstreamSchema.parse({
      id: 'x',
      type: 'nats',
      servers: cluster.servers,
      stream: 'FLEET',
    });
    const up = await createUpstream(config, {
      gatewayId: 'gw-1',
      log: memoryLogger([]),
      metrics: new Metrics(),
    });
    assert.ok(up instanceof NatsUpstream);
    assert.equal(up.type, 'nats');
    assert.equal(up.maxInFlight, 4, '1024 in flight / batches of 256');
    await up.close();
  });

  it(
    'the server it is connected to is killed mid-stream: a new connection, each row once, in order',
    TEST,
    async () => {
      const { up, logs } = upstream({ timeout: 2000, maxInFlight: 512, batchSize: 64 }, 'gw-f');
      await up.start();
      const connected = logs.find((l) => l.msg === 'nats upstream connected')?.['server'] as string;
      const node = cluster.nodes.find((n) => connected.endsWith(`:${n.port}`));
      assert.ok(node, `connected to ${connected}`);
      const db = openDatabase(':memory:', { synchronous: 'normal' });
      const outbox = new Outbox(db);
      const append = (n: number) => {
        for (let i = 0; i < n; i++) outbox.append('result', 'rule', JSON.stringify({ i }), Date.now());
      };
      append(2000);
      const forwarder = new Forwarder(
        up,
        outbox,
        { gatewayId: 'gw-f', batchSize: 64, minBackoff: 100, maxBackoff: 1000, pollInterval: 20 },
        { clock: systemClock, metrics: new Metrics(), log: memoryLogger([]) },
      );
      forwarder.start();
      try {
        await waitFor('some rows delivered', () => forwarder.cursor >= 500, 20_000);
        await node.kill();
        append(2000);
        await waitFor('every row delivered', () => forwarder.cursor === 4000, 40_000);
      } finally {
        await forwarder.stop();
        await node.start();
        db.close();
      }
      assert.ok(
        logs.some((l) => l.msg === 'nats upstream connection lost'),
        'the connection was lost',
      );
      assert.ok(logs.some((l) => l.msg === 'nats upstream reconnected'));
      const seqs = (await cluster.read('FLEET', 'tidegate.gw-f.>')).map((m) => m.seq);
      assert.deepEqual(
        seqs,
        Array.from({ length: 4000 }, (_, i) => i + 1),
      );
    },
  );

  // Last: it kills a node (and starts it again).
  it(
    'a leader election: deliveries fail (no responders, time-outs) and are retried until a new leader stores them',
    TEST,
    async () => {
      const { up } = upstream({ timeout: 2000 }, 'gw-e');
      await up.start();
      await up.deliver(outboxItems(20, 1, 'gw-e'));
      const leader = await cluster.leaderOf('FLEET');
      await leader.kill();
      const errors: string[] = [];
      let next = 21;
      const deadline = Date.now() + 40_000;
      // What a forwarder does: the same rows again (with a pause) until they are confirmed.
      for (let delivered = 0; delivered < 5 && Date.now() < deadline; ) {
        try {
          await up.deliver(outboxItems(10, next, 'gw-e'));
          next += 10;
          delivered++;
        } catch (err) {
          errors.push((err as Error).message);
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      assert.equal(next, 71, `not delivered after the election: ${errors.slice(-3).join(' | ')}`);
      assert.ok(errors.length > 0, 'no delivery failed while the leader was gone');
      assert.ok(
        errors.every((e) =>
          /no responders|no leader|no answer within|acknowledged \d+ of|connection/.test(e),
        ),
        errors.join('\n'),
      );
      assert.doesNotMatch(up.lastError() ?? '', /does not exist|no stream takes/);
      await leader.start();
      const seqs = (await cluster.read('FLEET', 'tidegate.gw-e.>')).map((m) => m.seq);
      assert.deepEqual(
        seqs,
        Array.from({ length: 70 }, (_, i) => i + 1),
      );
    },
  );
});

describe('NatsUpstream logins and TLS (single-node JetStream servers)', () => {
  const dirs: TempDir[] = [];
  const servers: NatsCluster[] = [];
  const upstreams: NatsUpstream[] = [];
  afterEach(async () => {
    for (const u of upstreams.splice(0)) await u.close();
    for (const s of servers.splice(0)) await s.close();
    for (const d of dirs.splice(0)) d.remove();
  });

  async function server(options: Parameters<typeof startNatsCluster>[0]): Promise<NatsCluster> {
    const s = await startNatsCluster({ size: 1, ...options });
    servers.push(s);
    await s.createStream({ name: 'LOGIN', subjects: ['tidegate.>'] });
    return s;
  }

  function upstream(s: NatsCluster, extra: Record<string, unknown>): NatsUpstream {
    const config = natsUpstreamSchema.parse({
      id: 'fleet',
      type: 'nats',
      servers: s.servers,
      stream: 'LOGIN',
      timeout: 2000,
      ...extra,
    });
    const up = new NatsUpstream(
      config,
      { gatewayId: 'gw-1', log: memoryLogger([]), metrics: new Metrics() },
      { reconnect: { min: 50, max: 500 }, startWait: 5000 },
    );
    upstreams.push(up);
    return up;
  }

  async function delivers(up: NatsUpstream, s: NatsCluster): Promise<void> {
    await up.start();
    assert.equal(up.state(), 'connected', String(up.lastError()));
    await up.deliver(outboxItems(5));
    assert.equal((await s.read('LOGIN')).length, 5);
  }

  it('user and password: the right ones deliver, wrong ones show in lastError', TEST, async () => {
    const s = await server({ auth: { user: 'gw', password: 'open sesame' } });
    const wrong = upstream(s, { user: 'gw', password: 'nope' });
    await wrong.start();
    assert.notEqual(wrong.state(), 'connected');
    assert.match(wrong.lastError() ?? '', /authorization/i);
    await delivers(upstream(s, { user: 'gw', password: 'open sesame' }), s);
  });

  it('a token', TEST, async () => {
    const s = await server({ auth: { token: 's3cret-token' } });
    const none = upstream(s, {});
    await none.start();
    assert.match(none.lastError() ?? '', /authorization/i);
    await delivers(upstream(s, { token: 's3cret-token' }), s);
  });

  it('TLS with a CA of its own and a client certificate', TEST, async () => {
    const dir = makeTempDir();
    dirs.push(dir);
    const c = makeCertificates(dir, { forPeersOnTheRealClock: true });
    const s = await server({
      tls: {
        ca: c.ca,
        cert: c.serverCert,
        key: c.serverKey,
        client: { cert: c.clientCert, key: c.clientKey },
      },
    });
    const tlsServers = s.servers.map((u) => u.replace('nats://', 'tls://'));
    const noCert = upstream(s, { servers: tlsServers, ca: c.ca });
    await noCert.start();
    assert.notEqual(noCert.state(), 'connected');
    assert.ok(noCert.lastError(), 'a refused handshake is said');
    await delivers(upstream(s, { servers: tlsServers, ca: c.ca, cert: c.clientCert, key: c.clientKey }), s);
  });

  it('a TLS or creds file that cannot be read fails start() (a configuration problem)', TEST, async () => {
    const s = await server({});
    await assert.rejects(
      upstream(s, { creds: '/nonexistent/gw.creds' }).start(),
      /upstream "fleet": cannot read creds file \/nonexistent\/gw\.creds: ENOENT/,
    );
    await assert.rejects(upstream(s, { ca: '/nonexistent/ca.pem' }).start(), /cannot read ca file/);
  });
});
