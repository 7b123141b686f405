import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, afterEach, before, describe, it } from 'node:test';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { mqttUpstreamSchema } from '../../src/upstreams/config.js';
import { createUpstream } from '../../src/upstreams/create.js';
import { EmbeddedMqttUpstream } from '../../src/upstreams/embedded.js';
import { MqttUpstream } from '../../src/upstreams/mqtt.js';
import { UpstreamUnavailableError } from '../../src/upstreams/upstream.js';
import { type Mosquitto, startMosquitto } from '../helpers/mosquitto.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';
import { makeCertificates, type TestCertificates } from './certificates.js';
import { outboxItems } from './items.js';
import { timed, waitFor } from './wait.js';

const log = silentLogger();
const TEST = { timeout: 15_000 };

interface Received {
  topic: string;
  payload: string;
}

/** An mqtt.js client subscribed to `tidegate/#` at QoS 1, recording what arrives. */
async function subscriber(url: string, options: IClientOptions = {}) {
  const received: Received[] = [];
  const client = await connectAsync(url, { reconnectPeriod: 0, ...options });
  client.on('message', (topic, payload) => received.push({ topic, payload: payload.toString('utf8') }));
  await client.subscribeAsync('tidegate/#', { qos: 1 });
  return { client, received };
}

function upstream(url: string, extra: Record<string, unknown> = {}, reconnectPeriod = 100): MqttUpstream {
  const config = mqttUpstreamSchema.parse({ id: 'cloud', type: 'mqtt', url, ...extra });
  return new MqttUpstream(
    { ...config, url },
    { gatewayId: 'gw-1', log },
    { reconnectPeriod, startWait: 2000 },
  );
}

describe('MqttUpstream against mosquitto', () => {
  let broker: Mosquitto;
  const clients: MqttClient[] = [];
  const upstreams: MqttUpstream[] = [];

  before(async () => {
    broker = await startMosquitto();
  });
  afterEach(async () => {
    for (const u of upstreams.splice(0)) await u.close();
    for (const c of clients.splice(0)) await c.endAsync(true);
  });
  after(async () => {
    await broker.close();
  });

  async function started(extra: Record<string, unknown> = {}): Promise<MqttUpstream> {
    const up = upstream(broker.url, extra);
    upstreams.push(up);
    await up.start();
    return up;
  }

  async function subscribed() {
    const sub = await subscriber(broker.url);
    clients.push(sub.client);
    return sub;
  }

  it('delivers a batch in order, each envelope as JSON on its templated topic', TEST, async () => {
    const sub = await subscribed();
    const up = await started();
    assert.equal(up.state(), 'connected');
    assert.equal(up.lastError(), null);
    const batch = outboxItems(200);
    await up.deliver(batch);
    // Every PUBACK arrived, so the broker has them all; the subscriber gets them a moment later.
    await waitFor('200 messages', () => sub.received.length >= 200);
    assert.deepEqual(
      sub.received.map((m) => (JSON.parse(m.payload) as { seq: number }).seq),
      batch.map((b) => b.envelope.seq),
    );
    assert.deepEqual(JSON.parse(sub.received[0]?.payload ?? ''), batch[0]?.envelope);
    assert.equal(sub.received[0]?.topic, 'tidegate/gw-1/result/boiler-overheat');
    assert.equal(sub.received[1]?.topic, 'tidegate/gw-1/decision/boiler-overheat');
    // A raw reading has no rule: its {rule} level is `readings`.
    assert.equal(sub.received[4]?.topic, 'tidegate/gw-1/reading/readings');
  });

  it('uses the configured topic template and QoS 0', TEST, async () => {
    const sub = await subscribed();
    const up = await started({ topic: 'tidegate/x/{type}.{rule}@{gateway}', qos: 0 });
    await up.deliver(outboxItems(5));
    await waitFor('5 messages', () => sub.received.length >= 5);
    assert.deepEqual(
      sub.received.map((m) => m.topic),
      [
        'tidegate/x/result.boiler-overheat@gw-1',
        'tidegate/x/decision.boiler-overheat@gw-1',
        'tidegate/x/result.boiler-overheat@gw-1',
        'tidegate/x/decision.boiler-overheat@gw-1',
        'tidegate/x/reading.readings@gw-1',
      ],
    );
  });

  it('an empty batch resolves at once', TEST, async () => {
    const up = await started();
    await up.deliver([]);
  });

  it(
    'fails a batch the broker does not acknowledge within the timeout, then delivers again',
    TEST,
    async () => {
      const sub = await subscribed();
      const up = await started({ timeout: 300 });
      broker.pause();
      let outcome: Awaited<ReturnType<typeof timed>>;
      try {
        outcome = await timed(up.deliver(outboxItems(10)));
      } finally {
        broker.resume();
      }
      assert.match(outcome.error?.message ?? 'resolved', /acknowledged 0 of 10 messages within 300 ms/);
      assert.ok(outcome.ms >= 250 && outcome.ms < 2000, `rejected after ${outcome.ms} ms`);
      // The connection survived the pause: the next batch goes through on it.
      assert.equal(up.state(), 'connected');
      await up.deliver(outboxItems(3, 11));
      await waitFor('the second batch', () =>
        sub.received.some((m) => (JSON.parse(m.payload) as { seq: number }).seq === 13),
      );
    },
  );

  it('rejects at once while the broker is down, and reconnects by itself once it is back', TEST, async () => {
    const up = await started();
    await up.deliver(outboxItems(3));
    await broker.stop();
    await waitFor('the upstream to notice', () => up.state() !== 'connected');

    const outcome = await timed(up.deliver(outboxItems(3, 4)));
    assert.ok(outcome.error instanceof UpstreamUnavailableError, String(outcome.error));
    assert.match(outcome.error.message, new RegExp(`not connected to ${broker.url}`));
    assert.ok(outcome.ms < 200, `rejected after ${outcome.ms} ms`);
    await waitFor('a failed reconnection attempt', () => up.lastError() !== null);
    assert.match(up.lastError() ?? '', /ECONNREFUSED/);
    assert.notEqual(up.state(), 'connected');

    await broker.restart();
    await waitFor('the reconnection', () => up.state() === 'connected');
    assert.equal(up.lastError(), null);
    const sub = await subscribed();
    await up.deliver(outboxItems(3, 4));
    await waitFor('the batch after the restart', () => sub.received.length >= 3);
    assert.deepEqual(
      sub.received.map((m) => (JSON.parse(m.payload) as { seq: number }).seq),
      [4, 5, 6],
    );
  });

  it('rejects a batch in flight when the connection drops', TEST, async () => {
    const up = await started({ timeout: 10_000 });
    // Paused, the broker reads nothing and acknowledges nothing; killed, its connections close.
    broker.pause();
    const delivery = timed(up.deliver(outboxItems(10)));
    await broker.kill();
    const outcome = await delivery;
    assert.match(outcome.error?.message ?? 'resolved', new RegExp(`connection to ${broker.url} closed`));
    assert.ok(outcome.ms < 2000, `rejected after ${outcome.ms} ms`);
    await broker.restart();
    await waitFor('the reconnection', () => up.state() === 'connected');
  });

  it('pipelines up to maxInFlight batches on the connection, in order, each settling', TEST, async () => {
    const sub = await subscribed();
    const up = await started();
    const batches = Array.from({ length: up.maxInFlight }, (_, i) => outboxItems(50, 1 + i * 50));
    const deliveries = batches.map((b) => up.deliver(b));
    await assert.rejects(up.deliver(outboxItems(1, 1000)), /batches in flight already/);
    await Promise.all(deliveries);
    const total = 50 * up.maxInFlight;
    await waitFor('every message', () => sub.received.length >= total);
    assert.deepEqual(
      sub.received.map((m) => (JSON.parse(m.payload) as { seq: number }).seq),
      Array.from({ length: total }, (_, i) => i + 1),
    );
    await up.deliver(outboxItems(1, total + 1));
  });

  it('a dropped connection rejects every batch in flight', TEST, async () => {
    const up = await started({ timeout: 10_000 });
    broker.pause();
    const deliveries = [up.deliver(outboxItems(10)), up.deliver(outboxItems(10, 11))].map((d) =>
      d.then(
        () => 'resolved',
        (err: Error) => err.message,
      ),
    );
    await broker.kill();
    for (const outcome of await Promise.all(deliveries)) {
      assert.match(outcome, new RegExp(`connection to ${broker.url} closed`));
    }
    await broker.restart();
    await waitFor('the reconnection', () => up.state() === 'connected');
  });

  it('starts without a broker, reports it, and connects once one listens', TEST, async () => {
    await broker.stop();
    const up = upstream(broker.url);
    upstreams.push(up);
    const start = await timed(up.start());
    assert.equal(start.error, null);
    assert.ok(start.ms < 1500, `start took ${start.ms} ms`);
    assert.notEqual(up.state(), 'connected');
    await assert.rejects(up.deliver(outboxItems(1)), UpstreamUnavailableError);
    await broker.restart();
    await waitFor('the connection', () => up.state() === 'connected');
    await up.deliver(outboxItems(1));
  });

  it('close() ends the connection and later deliveries reject', TEST, async () => {
    const up = upstream(broker.url);
    await up.start();
    await up.close();
    assert.equal(up.state(), 'offline');
    await assert.rejects(up.deliver(outboxItems(1)), /closed/);
    await up.close();
  });

  it('start() fails with the file name when a TLS file is missing', TEST, async () => {
    const url = broker.url.replace('mqtt:', 'mqtts:');
    const up = upstream(url, { ca: '/nonexistent/ca.pem' });
    await assert.rejects(up.start(), /cannot read ca file \/nonexistent\/ca\.pem: ENOENT/);
    await up.close();
  });
});

describe('MqttUpstream over TLS with a client certificate', () => {
  let dir: TempDir;
  let certs: TestCertificates;
  let broker: Mosquitto;
  const upstreams: MqttUpstream[] = [];

  before(async () => {
    dir = makeTempDir();
    certs = makeCertificates(dir);
    broker = await startMosquitto({
      tls: { ca: certs.ca, cert: certs.serverCert, key: certs.serverKey, requireCertificate: true },
    });
  });
  afterEach(async () => {
    for (const u of upstreams.splice(0)) await u.close();
  });
  after(async () => {
    await broker?.close();
    dir?.remove();
  });

  it('delivers with the configured CA, certificate and key', TEST, async () => {
    const tls = { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey };
    const sub = await subscriber(broker.url, {
      ca: readFileSync(tls.ca),
      cert: readFileSync(tls.cert),
      key: readFileSync(tls.key),
    });
    try {
      const up = upstream(broker.url, tls);
      upstreams.push(up);
      await up.start();
      assert.equal(up.state(), 'connected', up.lastError() ?? '');
      await up.deliver(outboxItems(5));
      await waitFor('5 messages', () => sub.received.length >= 5);
    } finally {
      await sub.client.endAsync(true);
    }
  });

  it('does not trust a broker whose CA it was not given', TEST, async () => {
    const up = upstream(broker.url, { cert: certs.clientCert, key: certs.clientKey });
    upstreams.push(up);
    await up.start();
    await waitFor('a TLS error', () => up.lastError() !== null);
    assert.notEqual(up.state(), 'connected');
    assert.match(up.lastError() ?? '', /certificate/i);
    await assert.rejects(up.deliver(outboxItems(1)), UpstreamUnavailableError);
  });
});

describe('EmbeddedMqttUpstream', () => {
  const config = mqttUpstreamSchema.parse({ id: 'local', type: 'mqtt', timeout: 200 });

  it('publishes each envelope in order through the injected publish', TEST, async () => {
    const calls: { topic: string; payload: string; qos: 0 | 1 }[] = [];
    const up = await createUpstream(config, {
      gatewayId: 'gw-1',
      metrics: new Metrics(),
      log,
      embeddedPublish: async (topic, payload, qos) => {
        await new Promise((resolve) => setImmediate(resolve));
        calls.push({ topic, payload: payload.toString('utf8'), qos });
      },
    });
    assert.ok(up instanceof EmbeddedMqttUpstream);
    await up.start();
    assert.equal(up.state(), 'connected');
    const batch = outboxItems(6);
    await up.deliver(batch);
    assert.deepEqual(
      calls.map((c) => JSON.parse(c.payload) as unknown),
      batch.map((b) => b.envelope),
    );
    assert.deepEqual(
      calls.map((c) => c.topic),
      [
        'tidegate/gw-1/result/boiler-overheat',
        'tidegate/gw-1/decision/boiler-overheat',
        'tidegate/gw-1/result/boiler-overheat',
        'tidegate/gw-1/decision/boiler-overheat',
        'tidegate/gw-1/reading/readings',
        'tidegate/gw-1/decision/boiler-overheat',
      ],
    );
    assert.ok(calls.every((c) => c.qos === 1));
    await up.close();
  });

  it('is offline while publishing fails, and connected again after a success', TEST, async () => {
    let failing = true;
    const up = new EmbeddedMqttUpstream(config, {
      gatewayId: 'gw-1',
      log,
      publish: async () => {
        if (failing) throw new Error('the embedded broker is not running');
      },
    });
    await assert.rejects(
      up.deliver(outboxItems(2)),
      /embedded broker failed: the embedded broker is not running/,
    );
    assert.equal(up.state(), 'offline');
    assert.equal(up.lastError(), 'the embedded broker is not running');
    failing = false;
    await up.deliver(outboxItems(2));
    assert.equal(up.state(), 'connected');
    assert.equal(up.lastError(), null);
  });

  it('fails a batch the broker does not take within the timeout', TEST, async () => {
    let calls = 0;
    const up = new EmbeddedMqttUpstream(config, {
      gatewayId: 'gw-1',
      log,
      publish: () => {
        calls++;
        return calls === 1 ? Promise.resolve() : new Promise<void>(() => {});
      },
    });
    const outcome = await timed(up.deliver(outboxItems(3)));
    assert.match(outcome.error?.message ?? 'resolved', /took 1 of 3 messages within 200 ms/);
    assert.ok(outcome.ms >= 150 && outcome.ms < 1500, `rejected after ${outcome.ms} ms`);
  });

  it('cannot be created without the embedded broker', async () => {
    await assert.rejects(
      createUpstream(config, { gatewayId: 'gw-1', log, metrics: new Metrics() }),
      /upstream "local" has no url, so it publishes to the embedded broker, but broker.enabled is false/,
    );
  });
});
