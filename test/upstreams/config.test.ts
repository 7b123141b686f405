import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  httpUpstreamSchema,
  mqttUpstreamSchema,
  natsUpstreamSchema,
  upstreamSchema,
} from '../../src/upstreams/config.js';
import { compileNatsSubject, natsSubjectProblem, streamSubjectsOf } from '../../src/upstreams/subject.js';
import { compileUpstreamTopic, isValidUpstreamTopic } from '../../src/upstreams/topic.js';

/** Each problem as `path: message`. */
function problems(input: unknown): string[] {
  const r = upstreamSchema.safeParse(input);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

describe('upstream configuration', () => {
  it('fills the defaults of an mqtt upstream', () => {
    assert.deepEqual(mqttUpstreamSchema.parse({ id: 'cloud', type: 'mqtt', url: 'mqtt://127.0.0.1:1884' }), {
      id: 'cloud',
      type: 'mqtt',
      url: 'mqtt://127.0.0.1:1884',
      topic: 'tidegate/{gateway}/{type}/{rule}',
      qos: 1,
      rejectUnauthorized: true,
      batchSize: 500,
      timeout: 10_000,
    });
  });

  it('fills the defaults of an http upstream', () => {
    assert.deepEqual(
      httpUpstreamSchema.parse({ id: 'ingest', type: 'http', url: 'http://127.0.0.1:9000/ingest' }),
      {
        id: 'ingest',
        type: 'http',
        url: 'http://127.0.0.1:9000/ingest',
        batchSize: 500,
        timeout: 5000,
        headers: {},
      },
    );
  });

  it('parses the SPEC §6 examples, durations and text numbers', () => {
    const mqtt = upstreamSchema.parse({
      id: 'cloud',
      type: 'mqtt',
      url: 'mqtts://broker.local:8883',
      qos: '0',
      timeout: '2s',
      batchSize: '100',
      rejectUnauthorized: 'false',
    });
    assert.equal(mqtt.type, 'mqtt');
    assert.deepEqual([mqtt.qos, mqtt.timeout, mqtt.batchSize], [0, 2000, 100]);
    assert.equal(mqtt.type === 'mqtt' && mqtt.rejectUnauthorized, false);
    const http = upstreamSchema.parse({
      id: 'ingest',
      type: 'http',
      url: 'http://127.0.0.1:9000/ingest',
      batchSize: 500,
      timeout: '5s',
      headers: {},
    });
    assert.equal(http.timeout, 5000);
  });

  it('an mqtt upstream without url is the embedded broker; empty credentials are unset', () => {
    const c = mqttUpstreamSchema.parse({
      id: 'local',
      type: 'mqtt',
      url: 'mqtt://h',
      username: '',
      password: '',
    });
    assert.equal(c.username, undefined);
    assert.equal(c.password, undefined);
    assert.equal(mqttUpstreamSchema.parse({ id: 'local', type: 'mqtt' }).url, undefined);
  });

  it('reports each problem with its path', () => {
    const strict = problems({ id: 'x', type: 'mqtt', url: 'mqtt://h', qos: 2, extra: 1 });
    assert.ok(
      strict.some((p) => p.includes('extra')),
      strict.join('\n'),
    );
    assert.ok(
      strict.some((p) => p.startsWith('qos: ')),
      strict.join('\n'),
    );
    const mqtt = problems({ id: 'x', type: 'mqtt', url: 'http://h', topic: 'a/#', timeout: 'soon' });
    assert.ok(
      mqtt.some((p) => p.startsWith('url: expected an mqtt:// or mqtts://')),
      mqtt.join('\n'),
    );
    assert.ok(
      mqtt.some((p) => p.startsWith('topic: expected an MQTT topic without wildcards')),
      mqtt.join('\n'),
    );
    assert.ok(
      mqtt.some((p) => p.startsWith('timeout: expected a duration')),
      mqtt.join('\n'),
    );
    const http = problems({ id: 'y', type: 'http', url: 'https://u:p@h/x', headers: { 'bad header': 'v' } });
    assert.ok(
      http.some((p) => p.startsWith('url: expected a URL without credentials')),
      http.join('\n'),
    );
    assert.ok(
      http.some((p) => p.startsWith('headers.bad header: ')),
      http.join('\n'),
    );
    assert.ok(problems({ id: 'z', type: 'kafka' }).length > 0);
  });

  it('checks TLS options against the url', () => {
    assert.deepEqual(problems({ id: 'x', type: 'mqtt', url: 'mqtt://h', ca: 'ca.pem' }), [
      'ca: ca is for TLS: expected an mqtts:// url',
    ]);
    assert.deepEqual(problems({ id: 'x', type: 'mqtt', url: 'mqtts://h', cert: 'c.pem' }), [
      'key: expected cert and key together (a client certificate and its private key)',
    ]);
    assert.deepEqual(problems({ id: 'x', type: 'mqtt', password: 'p' }), [
      'password: an mqtt upstream without url publishes to the embedded broker in-process: password needs a url',
    ]);
    assert.deepEqual(problems({ id: 'x', type: 'http', url: 'http://h', ca: 'ca.pem' }), [
      'ca: ca is for TLS: expected an https:// url',
    ]);
    assert.deepEqual(problems({ id: 'x', type: 'mqtt', url: 'MQTTS://h', ca: 'ca.pem' }), []);
  });
});

describe('nats upstream configuration', () => {
  const base = { id: 'fleet', type: 'nats', servers: ['nats://10.0.0.5:4222'], stream: 'TIDEGATE' };

  it('fills the defaults; parses the SPEC §6 example', () => {
    assert.deepEqual(natsUpstreamSchema.parse(base), {
      ...base,
      subject: 'tidegate.{gateway}.{type}.{rule}',
      maxInFlight: 1024,
      batchSize: 256,
      timeout: 5000,
    });
    const spec = upstreamSchema.parse({
      ...base,
      servers: ['nats://10.0.0.5:4222', 'nats://10.0.0.6:4222'],
      subject: 'tidegate.{gateway}.{type}.{rule}',
      user: 'gw-1',
      password: 'secret',
      createStream: { replicas: '3', maxAge: '7d', duplicateWindow: '10m' },
      maxInFlight: '2048',
      timeout: '2s',
    });
    assert.equal(spec.type, 'nats');
    assert.deepEqual(spec.type === 'nats' && spec.createStream, {
      replicas: 3,
      maxAge: 7 * 86_400_000,
      duplicateWindow: 600_000,
    });
    assert.deepEqual(natsUpstreamSchema.parse({ ...base, createStream: {} }).createStream, {
      replicas: 3,
      maxAge: 0,
      duplicateWindow: 120_000,
    });
  });

  it('reports each problem with its path', () => {
    assert.deepEqual(problems({ ...base, servers: [] }), ['servers: expected at least one server URL']);
    assert.deepEqual(problems({ ...base, servers: ['http://h:4222', 'nats://u:p@h:4222'] }), [
      'servers.0: expected a nats:// or tls:// URL such as nats://10.0.0.5:4222',
      'servers.1: expected a URL without credentials: put them in user/password, token or creds',
    ]);
    assert.deepEqual(problems({ ...base, stream: 'a.b' }), [
      'stream: expected a stream name of 1–255 characters of [A-Za-z0-9_-]',
    ]);
    assert.deepEqual(problems({ ...base, user: 'gw' }), ['password: expected user and password together']);
    assert.deepEqual(problems({ ...base, token: 't', creds: 'gw.creds' }), [
      'creds: expected one way to authenticate, found token and creds',
    ]);
    assert.deepEqual(problems({ ...base, cert: 'c.pem' }), [
      'key: expected cert and key together (a client certificate and its private key)',
    ]);
    assert.deepEqual(problems({ ...base, maxInFlight: 100, batchSize: 200 }), [
      'batchSize: expected at most maxInFlight (100) rows in a batch, found 200',
    ]);
    assert.deepEqual(problems({ ...base, createStream: { maxAge: '1m', duplicateWindow: '2m' } }), [
      'createStream.duplicateWindow: expected a duplicate window no longer than maxAge',
    ]);
    assert.deepEqual(problems({ ...base, createStream: { replicas: 7 } }).length, 1);
    assert.match(problems({ ...base, createStream: { replicas: 7 } })[0] ?? '', /^createStream\.replicas: /);
    assert.deepEqual(problems({ ...base, subject: '{gateway}.{type}.{rule}', createStream: {} }), [
      'subject: createStream needs a subject that starts with a literal token (the stream then takes prefix.>), e.g. tidegate.{gateway}.{type}.{rule}',
    ]);
    assert.match(
      problems({ ...base, subject: 'tidegate.*.{gateway}.{rule}' })[0] ?? '',
      /^subject: expected no whitespace, wildcards/,
    );
    assert.match(problems({ ...base, extra: 1 })[0] ?? '', /extra/);
  });

  it('subject templates: one gateway, one filter', () => {
    assert.equal(natsSubjectProblem('tidegate.{gateway}.{type}.{rule}'), null);
    assert.equal(natsSubjectProblem('fleet.gw-{gateway}.{type}-{rule}'), null);
    assert.match(natsSubjectProblem('tidegate.{type}.{rule}') ?? '', /expected \{gateway\}/);
    assert.match(
      natsSubjectProblem('tidegate.{rule}.{gateway}.x') ?? '',
      /only after the token with \{gateway\}/,
    );
    assert.match(
      natsSubjectProblem('tidegate.{gateway}-{type}.x') ?? '',
      /only after the token with \{gateway\}/,
    );
    assert.match(natsSubjectProblem('tidegate.{gateway}') ?? '', /at least one token after/);
    assert.match(natsSubjectProblem('tidegate..{gateway}.x') ?? '', /none empty/);
    const s = compileNatsSubject('fleet.gw-{gateway}.{type}.{rule}', 'pi-7');
    assert.equal(s.render('result', 'hot'), 'fleet.gw-pi-7.result.hot');
    assert.equal(s.render('reading', null), 'fleet.gw-pi-7.reading.readings');
    assert.equal(s.gatewayFilter, 'fleet.gw-pi-7.>');
    assert.equal(streamSubjectsOf('fleet.gw-{gateway}.{type}.{rule}'), 'fleet.>');
    assert.equal(streamSubjectsOf('{gateway}.{type}.{rule}'), null);
    assert.throws(() => compileNatsSubject('tidegate.{gateway}.{type}.{rule}', 'site.a'), /has a dot/);
  });
});

describe('upstream topic templates', () => {
  it('fills {gateway}, {type} and {rule}; a record without rule gets `readings`', () => {
    const topic = compileUpstreamTopic('tidegate/{gateway}/{type}/{rule}', 'gw-1');
    assert.equal(topic('result', 'boiler-overheat'), 'tidegate/gw-1/result/boiler-overheat');
    assert.equal(topic('reading', null), 'tidegate/gw-1/reading/readings');
    assert.equal(compileUpstreamTopic('fixed/topic', 'gw')('result', 'r'), 'fixed/topic');
    assert.equal(compileUpstreamTopic('{rule}-{type}/{gateway}{gateway}', 'g')('late', 'r'), 'r-late/gg');
  });

  it('refuses wildcards, unknown placeholders and $ topics', () => {
    for (const bad of ['', 'a/+/b', 'a/#', '{device}/x', 'a/{rule', '$SYS/x']) {
      assert.equal(isValidUpstreamTopic(bad), false, bad);
    }
    assert.equal(isValidUpstreamTopic('tidegate/{gateway}/{type}/{rule}'), true);
  });
});
