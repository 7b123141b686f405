import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { httpUpstreamSchema, mqttUpstreamSchema, upstreamSchema } from '../../src/upstreams/config.js';
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
