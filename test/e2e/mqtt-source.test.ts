import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectAsync, type MqttClient } from 'mqtt';
import { parseConfigText } from '../../src/config/load.js';
import { Gateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/runtime/log.js';
import { eventually } from '../helpers/gateway-process.js';
import { type Mosquitto, startMosquitto } from '../helpers/mosquitto.js';

interface Page {
  items: { device: string; metric: string; value: number }[];
}

describe("an external MQTT broker as a source (Debian's mosquitto)", () => {
  let dir: string;
  let mosquitto: Mosquitto;
  let gateway: Gateway;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tidegate-mqtt-source-'));
    mosquitto = await startMosquitto();
    const config = parseConfigText(
      `
api: { port: 0 }
broker: { enabled: false }
sources:
  - id: plant
    type: mqtt
    url: ${mosquitto.url}
    reconnect: { min: 100ms, max: 500ms }
    topics:
      - { filter: "plant/{device}/{metric}", qos: 1 }
      - { filter: "z2m/{device}", payload: json }
store: { path: ${join(dir, 'gw.db')}, flushInterval: 20ms }
`,
      'test.yaml',
      {},
    );
    gateway = new Gateway(config, { log: silentLogger() });
    await gateway.start();
  });

  after(async () => {
    await gateway?.stop();
    await mosquitto?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const readings = async (device: string) => {
    const res = await fetch(
      `http://127.0.0.1:${gateway.apiPort}/api/v1/readings?device=${device}&limit=10000`,
    );
    return ((await res.json()) as Page).items;
  };
  const state = async () => {
    const res = await fetch(`http://127.0.0.1:${gateway.apiPort}/api/v1/health`);
    return ((await res.json()) as { sources: { state: string }[] }).sources[0]?.state;
  };

  it('subscribes, decodes with the shared templates and decoders, and stores', async () => {
    await eventually(async () => ((await state()) === 'connected' ? true : undefined));
    const pub = await connectAsync(mosquitto.url);
    await pub.publishAsync('plant/pump-1/flow', '12.5', { qos: 1 });
    await pub.publishAsync(
      'z2m/sensor-1',
      JSON.stringify({ temperature: 21.5, battery: 90, linkquality: 120, name: 'x' }),
    );
    await pub.endAsync();
    const pump = await eventually(async () => {
      const r = await readings('pump-1');
      return r.length === 1 ? r : undefined;
    });
    assert.deepEqual(
      pump.map((r) => [r.metric, r.value]),
      [['flow', 12.5]],
    );
    const sensor = await eventually(async () => {
      const r = await readings('sensor-1');
      return r.length === 3 ? r : undefined;
    });
    assert.deepEqual(sensor.map((r) => r.metric).sort(), ['battery', 'linkquality', 'temperature']);
  });

  it('comes back after the broker is killed and restarted mid-stream: subscriptions renewed, no process restart', async () => {
    let pub: MqttClient | null = await connectAsync(mosquitto.url, { reconnectPeriod: 100 });
    let sent = 0;
    const publishSome = async (n: number) => {
      for (let i = 0; i < n; i++) {
        await pub?.publishAsync('plant/pump-2/flow', String(sent++), { qos: 1 });
      }
    };
    await publishSome(20);
    await eventually(async () => ((await readings('pump-2')).length === 20 ? true : undefined));
    // A broker without persistence: after the restart it knows no subscriptions at all.
    await pub.endAsync(true);
    pub = null;
    await mosquitto.kill();
    await eventually(async () => ((await state()) === 'offline' ? true : undefined), 5_000, 'offline');
    await mosquitto.restart();
    await eventually(async () => ((await state()) === 'connected' ? true : undefined), 10_000, 'reconnected');
    // Give the renewed SUBSCRIBE a moment to be acknowledged, then publish from a fresh client.
    await new Promise((r) => setTimeout(r, 200));
    pub = await connectAsync(mosquitto.url);
    await publishSome(20);
    await pub.endAsync();
    const after = await eventually(async () => {
      const r = await readings('pump-2');
      return r.length === 40 ? r : undefined;
    }, 10_000);
    assert.deepEqual(
      after.map((r) => r.value).sort((a, b) => a - b),
      Array.from({ length: 40 }, (_, i) => i),
    );
  });
});
