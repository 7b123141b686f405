import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { connectAsync, type MqttClient } from 'mqtt';
import { hashPassword } from '../../src/sources/password.js';
import { iso, isoWithOffset, recentHour } from '../helpers/event-time.js';
import { eventually, type RunningGateway, startGateway } from '../helpers/gateway-process.js';

const exec = promisify(execFile);
const T0 = recentHour();

interface ApiReading {
  device: string;
  metric: string;
  value: number;
  ts: string;
  unit?: string;
}

async function readings(gw: RunningGateway, query: string): Promise<ApiReading[]> {
  const res = await gw.api(`/api/v1/readings?${query}`);
  assert.equal(res.status, 200);
  return ((await res.json()) as { items: ApiReading[] }).items;
}

/** Waits until the API lists exactly `count` readings for the query. */
function readingsEventually(gw: RunningGateway, query: string, count: number): Promise<ApiReading[]> {
  return eventually(
    async () => {
      const items = await readings(gw, query);
      return items.length >= count ? items : undefined;
    },
    5_000,
    `${count} readings for ${query}`,
  );
}

async function metricValue(gw: RunningGateway, name: string, labels: string): Promise<number> {
  const text = await (await gw.api('/metrics')).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`${name}{${labels}}`) || (labels === '' && l.startsWith(`${name} `)));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

describe('ingest over real MQTT, end to end (built gateway as a child process)', () => {
  let dir: string;
  let gw: RunningGateway;
  const password = 'correct horse battery staple';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tidegate-e2e-'));
    const hash = await hashPassword(password);
    writeFileSync(
      join(dir, 'gateway.yaml'),
      `
gateway: { id: e2e }
log: { level: info }
api: { host: 127.0.0.1, port: 0 }
broker:
  host: 127.0.0.1
  port: 0
  maxPayload: 2KiB
  allowAnonymous: loopback
  users:
    - { username: alice, passwordHash: "${hash}", publish: ["sensors/alice-1/#"], subscribe: ["tidegate/#"] }
ingest: { maxFutureSkew: 5m, maxMetricsPerMessage: 4 }
sources:
  - id: local
    type: mqtt
    topics:
      - { filter: "sensors/{device}/{metric}" }
      - { filter: "sensors/{device}", payload: json }
      - { filter: "json/{device}/{metric}", payload: json }
store: { path: ${join(dir, 'gw.db')}, flushInterval: 50ms }
`,
    );
    gw = await startGateway(join(dir, 'gateway.yaml'));
  });

  after(async () => {
    await gw?.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores the three payload shapes published with mqtt.js and serves them back', async () => {
    const client = await connectAsync(`mqtt://127.0.0.1:${gw.brokerPort}`, { reconnectPeriod: 0 });
    try {
      await client.publishAsync('sensors/js-1/temperature', '21.5', { qos: 1 });
      await client.publishAsync(
        'sensors/js-1/humidity',
        JSON.stringify({ value: 40, ts: isoWithOffset(T0 + 3250, 60) }),
        {
          qos: 1,
        },
      );
      await client.publishAsync(
        'sensors/js-2',
        JSON.stringify({ temperature: 19.25, on: true, name: 'x', ts: T0 }),
        {
          qos: 1,
        },
      );
    } finally {
      await client.endAsync();
    }
    // QoS 1 is acknowledged only after the commit: the readings are queryable at once.
    const one = await readings(gw, 'device=js-1&order=asc');
    assert.equal(one.length, 2);
    const humidity = one.find((r) => r.metric === 'humidity');
    assert.deepEqual(humidity, {
      device: 'js-1',
      metric: 'humidity',
      value: 40,
      ts: iso(T0 + 3250),
    });
    const temperature = one.find((r) => r.metric === 'temperature');
    assert.equal(temperature?.value, 21.5);
    // No ts in the payload: the receive time, which is now.
    assert.ok(Math.abs(Date.parse(temperature?.ts ?? '') - Date.now()) < 10_000);
    const two = await readings(gw, 'device=js-2');
    assert.deepEqual(two.map((r) => [r.metric, r.value, r.ts]).sort(), [
      ['on', 1, iso(T0)],
      ['temperature', 19.25, iso(T0)],
    ]);
  });

  it("stores the three payload shapes published with Debian's mosquitto_pub", async () => {
    const pub = (topic: string, message: string, extra: string[] = []) =>
      exec('mosquitto_pub', [
        '-h',
        '127.0.0.1',
        '-p',
        String(gw.brokerPort),
        '-q',
        '1',
        '-t',
        topic,
        '-m',
        message,
        ...extra,
      ]);
    await pub('sensors/cli-1/pressure', '1013.25');
    await pub('sensors/cli-1/level', `{"value": -3.5, "ts": ${T0 + 1000}, "unit": "cm"}`);
    await pub(
      'sensors/cli-2',
      `{"voltage": 230.1, "current": 0.42, "time": "${iso(T0 + 2000).replace('.000Z', 'Z')}"}`,
    );
    // A user with a password, inside its ACL.
    await pub('sensors/alice-1/temperature', '22', ['-u', 'alice', '-P', password]);
    const cli1 = await readingsEventually(gw, 'device=cli-1', 2);
    assert.deepEqual(
      cli1.find((r) => r.metric === 'level'),
      {
        device: 'cli-1',
        metric: 'level',
        value: -3.5,
        ts: iso(T0 + 1000),
        unit: 'cm',
      },
    );
    assert.equal(cli1.find((r) => r.metric === 'pressure')?.value, 1013.25);
    const cli2 = await readingsEventually(gw, 'device=cli-2&order=asc', 2);
    assert.deepEqual(cli2.map((r) => [r.metric, r.value, r.ts]).sort(), [
      ['current', 0.42, iso(T0 + 2000)],
      ['voltage', 230.1, iso(T0 + 2000)],
    ]);
    assert.equal((await readingsEventually(gw, 'device=alice-1', 1))[0]?.value, 22);
  });

  it('stores {"value": …} in the json format under the metric its topic names', async () => {
    const client = await connectAsync(`mqtt://127.0.0.1:${gw.brokerPort}`, { reconnectPeriod: 0 });
    try {
      await client.publishAsync('json/js-3/temp', JSON.stringify({ value: 60, unit: '°C' }), { qos: 1 });
      await client.publishAsync('json/js-3/env', JSON.stringify({ hum: 40, ts: 1764000000000 }), { qos: 1 });
    } finally {
      await client.endAsync();
    }
    const stored = await readings(gw, 'device=js-3');
    assert.deepEqual(stored.map((r) => [r.metric, r.value, r.unit]).sort(), [
      ['hum', 40, undefined],
      ['temp', 60, '°C'],
    ]);
  });

  it('rejects and counts bad input, stores none of it, and keeps running', async () => {
    const before = Object.fromEntries(
      await Promise.all(
        [
          'malformed_payload',
          'invalid_value',
          'future_ts',
          'unknown_topic',
          'too_many_metrics',
          'oversized',
          'invalid_ts',
        ].map(
          async (r) =>
            [r, await metricValue(gw, 'tidegate_readings_rejected_total', `reason="${r}"`)] as const,
        ),
      ),
    );
    const client = await connectAsync(`mqtt://127.0.0.1:${gw.brokerPort}`, { reconnectPeriod: 0 });
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const bad: [string, string][] = [
      ['sensors/bad-1/t', '{"value": 1,'], // malformed JSON
      ['sensors/bad-1/t', 'NaN'], // not a number
      ['sensors/bad-1/t', 'Infinity'],
      ['sensors/bad-1/t', 'warm'], // a string
      ['sensors/bad-1/t', '{"value": "21.5"}'], // a string value
      ['sensors/bad-1/t', '{"value": null}'], // missing value
      ['sensors/bad-1', '{"name": "no numbers here"}'], // flat object without metrics
      ['sensors/bad-1/t', JSON.stringify({ value: 1, ts: future })], // far future
      ['sensors/bad-1/t', JSON.stringify({ value: 1, ts: iso(T0).slice(0, -1) })], // no offset
      ['sensors/bad-1', JSON.stringify({ a: 1, b: 2, c: 3, d: 4, e: 5 })], // over maxMetricsPerMessage
      ['elsewhere/bad-1/t', '1'], // unknown topic
    ];
    for (const [topic, payload] of bad) await client.publishAsync(topic, payload, { qos: 1 });
    // One good reading in a flat object with one bad field name: the good one survives.
    await client.publishAsync('sensors/mixed-1', JSON.stringify({ ok: 5, 'bad name': 6 }), { qos: 1 });
    await client.endAsync();

    // An oversized payload closes that client's connection (MQTT 3.1.1 has no negative PUBACK).
    const big = await connectAsync(`mqtt://127.0.0.1:${gw.brokerPort}`, { reconnectPeriod: 0 });
    const closed = new Promise<void>((resolve) => big.once('close', () => resolve()));
    big.publish('sensors/bad-1/t', 'x'.repeat(4096), { qos: 0 });
    await closed;
    big.end(true);

    const delta = async (reason: string) =>
      (await metricValue(gw, 'tidegate_readings_rejected_total', `reason="${reason}"`)) -
      (before[reason] ?? 0);
    await eventually(
      async () => ((await delta('oversized')) >= 1 ? true : undefined),
      3_000,
      'oversized counted',
    );
    assert.equal(await delta('malformed_payload'), 5);
    assert.equal(await delta('invalid_value'), 2);
    assert.equal(await delta('future_ts'), 1);
    assert.equal(await delta('invalid_ts'), 1);
    assert.equal(await delta('too_many_metrics'), 1);
    assert.equal(await delta('unknown_topic'), 1);
    // The field named "bad name" of the mixed message.
    assert.equal(await metricValue(gw, 'tidegate_readings_rejected_total', 'reason="invalid_metric"'), 1);
    assert.deepEqual(await readings(gw, 'device=bad-1'), []);
    const mixed = await readings(gw, 'device=mixed-1');
    assert.deepEqual(
      mixed.map((r) => [r.metric, r.value]),
      [['ok', 5]],
    );
    const health = await gw.api('/api/v1/health');
    assert.equal(health.status, 200);
  });

  it('closes a connection whose packet announces more than maxPayload allows, before its body arrives', async () => {
    const oversized = async () => metricValue(gw, 'tidegate_readings_rejected_total', 'reason="oversized"');
    const before = await oversized();
    const client = await connectAsync(`mqtt://127.0.0.1:${gw.brokerPort}`, { reconnectPeriod: 0 });
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    // A PUBLISH header announcing 200 MB, then 1 KiB of it: buffering the rest would wait forever.
    let length = 200 * 1024 * 1024;
    const header = [0x30];
    do {
      header.push((length % 128) | (length >= 128 ? 0x80 : 0));
      length = Math.floor(length / 128);
    } while (length > 0);
    client.stream.write(Buffer.concat([Buffer.from(header), Buffer.alloc(1024, 0x61)]));
    await closed;
    client.end(true);
    await eventually(async () => ((await oversized()) > before ? true : undefined), 3_000, 'counted');
    // The broker goes on for everyone else.
    const other = await connectAsync(`mqtt://127.0.0.1:${gw.brokerPort}`, { reconnectPeriod: 0 });
    await other.publishAsync('sensors/after-big/t', '21.5', { qos: 1 });
    await other.endAsync();
    await readingsEventually(gw, 'device=after-big', 1);
  });

  it('refuses a wrong password and a publish outside the ACL, counting both', async () => {
    await assert.rejects(
      connectAsync(`mqtt://127.0.0.1:${gw.brokerPort}`, {
        username: 'alice',
        password: 'wrong',
        reconnectPeriod: 0,
      }),
      /Bad username or password/i,
    );
    await assert.rejects(
      exec('mosquitto_pub', [
        '-h',
        '127.0.0.1',
        '-p',
        String(gw.brokerPort),
        '-u',
        'nobody',
        '-P',
        'x',
        '-t',
        'sensors/a/b',
        '-m',
        '1',
      ]),
    );
    assert.equal(await metricValue(gw, 'tidegate_broker_denied_total', 'reason="auth"'), 2);

    const alice = await connectAsync(`mqtt://127.0.0.1:${gw.brokerPort}`, {
      username: 'alice',
      password,
      reconnectPeriod: 0,
    });
    const closed = new Promise<void>((resolve) => alice.once('close', () => resolve()));
    alice.publish('sensors/mallory-1/temperature', '99', { qos: 0 });
    await closed;
    alice.end(true);
    assert.equal(await metricValue(gw, 'tidegate_broker_denied_total', 'reason="acl_publish"'), 1);
    assert.deepEqual(await readings(gw, 'device=mallory-1'), []);
  });

  it('protects $SYS: no publishing there, no subscribing without an explicit grant', async () => {
    const client: MqttClient = await connectAsync(`mqtt://127.0.0.1:${gw.brokerPort}`, {
      reconnectPeriod: 0,
    });
    // SUBACK 0x80: refused, and the connection stays up.
    await assert.rejects(client.subscribeAsync('$SYS/#'), (err: { packet?: { granted?: number[] } }) => {
      assert.deepEqual(err.packet?.granted, [128]);
      return true;
    });
    assert.ok(client.connected);
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    client.publish('$SYS/tidegate/fake', '1');
    await closed;
    client.end(true);
    assert.ok((await metricValue(gw, 'tidegate_broker_denied_total', 'reason="acl_subscribe"')) >= 1);
  });

  it('flushes the store and exits 0 within 5 s on SIGTERM', async () => {
    const client = await connectAsync(`mqtt://127.0.0.1:${gw.brokerPort}`, { reconnectPeriod: 0 });
    for (let i = 0; i < 200; i++) client.publish('sensors/burst-1/n', String(i), { qos: 0 });
    await client.endAsync(); // all 200 written to the socket
    await new Promise((r) => setTimeout(r, 200)); // let the broker read them (not a window wait)
    const { code, ms } = await gw.stop('SIGTERM');
    assert.equal(code, 0);
    assert.ok(ms < 5_000, `exit took ${ms} ms`);
    const db = new Database(join(dir, 'gw.db'), { readonly: true });
    const n = db
      .prepare(
        "SELECT count(*) FROM readings r JOIN series s ON s.id = r.series_id WHERE s.device = 'burst-1'",
      )
      .pluck()
      .get();
    db.close();
    assert.equal(n, 200);
  });
});
