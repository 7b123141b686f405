import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { parseConfigText } from '../../src/config/load.js';
import { ManualClock } from '../../src/runtime/clock.js';
import { RateLimitedLog, silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { EmbeddedBroker } from '../../src/sources/mqtt-broker.js';
import { compileTemplate } from '../../src/sources/topic-template.js';

interface Call {
  topic: string;
  named: { device?: string; metric?: string };
  payload: string;
  durable: boolean;
}

/** A promise and the function that resolves it. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Resolves after `ms`, to tell "not yet" from "never". */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('embedded broker routes over real TCP (mqtt.js client)', () => {
  let broker: EmbeddedBroker;
  let client: mqtt.MqttClient;
  const unknown: string[] = [];

  beforeEach(async () => {
    unknown.length = 0;
    const config = parseConfigText(
      'broker: { host: 127.0.0.1, port: 0, allowAnonymous: loopback, users: [] }\n',
      'test.yaml',
      {},
    );
    const clock = new ManualClock(0);
    const log = silentLogger();
    broker = new EmbeddedBroker(config.broker, {
      metrics: new Metrics(),
      log,
      warn: new RateLimitedLog(log, () => clock.now()),
      clock,
      onUnknownTopic: (topic) => unknown.push(topic),
    });
    await broker.start();
    client = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.port}`, { reconnectPeriod: 0 });
  });

  afterEach(async () => {
    await client.endAsync(true);
    await broker.stop();
  });

  /** Registers a route on `template` that records its calls and returns what `reply` says. */
  const route = (template: string, reply: (call: Call) => Promise<void> | undefined) => {
    const calls: Call[] = [];
    broker.addRoute({
      template: compileTemplate(template),
      onMessage: (topic, named, payload, durable) => {
        const call = { topic, named, payload: payload.toString(), durable };
        calls.push(call);
        return reply(call);
      },
    });
    return calls;
  };

  it('asks for no durable promise at QoS 0, and one at QoS 1', async () => {
    const calls = route('sensors/{device}/{metric}', (c) => (c.durable ? Promise.resolve() : undefined));
    await client.publishAsync('sensors/b1/temp', '21.5', { qos: 0 });
    await client.publishAsync('sensors/b1/temp', '22.5', { qos: 1 });
    assert.deepEqual(calls, [
      { topic: 'sensors/b1/temp', named: { device: 'b1', metric: 'temp' }, payload: '21.5', durable: false },
      { topic: 'sensors/b1/temp', named: { device: 'b1', metric: 'temp' }, payload: '22.5', durable: true },
    ]);
    assert.deepEqual(unknown, []);
  });

  it('holds the PUBACK of a QoS 1 publish until every matching route is durable', async () => {
    const first = deferred();
    const second = deferred();
    route('sensors/{device}/{metric}', () => first.promise);
    route('sensors/+/{metric}', () => second.promise);
    let acked = false;
    const publish = client.publishAsync('sensors/b1/temp', '1', { qos: 1 }).then(() => {
      acked = true;
    });
    await sleep(100);
    first.resolve();
    await sleep(100);
    assert.equal(acked, false, 'acknowledged before the second route was durable');
    second.resolve();
    await publish;
    assert.equal(acked, true);
  });

  it('closes the connection when a QoS 1 message cannot be made durable', async () => {
    route('sensors/{device}/{metric}', () => Promise.reject(new Error('disk full')));
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    client.publish('sensors/b1/temp', '1', { qos: 1 });
    await closed;
  });

  it('tells of a topic no route matches, at either QoS', async () => {
    route('sensors/{device}/{metric}', () => undefined);
    await client.publishAsync('other/b1', '1', { qos: 0 });
    await client.publishAsync('other/b2', '1', { qos: 1 });
    assert.deepEqual(unknown, ['other/b1', 'other/b2']);
  });
});
