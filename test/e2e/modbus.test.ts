import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ServerTCP } from 'modbus-serial';
import { loadConfig } from '../../src/config/load.js';
import { Gateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/runtime/log.js';
import { eventually, ROOT, runCli } from '../helpers/gateway-process.js';
import { freePort } from '../helpers/net.js';

interface DeviceJson {
  id: string;
  status: string;
  source: string;
  metrics: { metric: string; value: number; unit?: string }[];
}

describe('Modbus in the gateway, with the shipped device profiles', () => {
  let dir: string;
  let server: ServerTCP;
  let gateway: Gateway;
  let port: number;
  /** Unit 2 answers exception 2 (illegal data address) while true. */
  let failUnit2 = true;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tidegate-modbus-'));
    port = await freePort();
    server = new ServerTCP(
      {
        // XY-MD02: input register 1 = temperature, 2 = humidity, tenths.
        getInputRegister: (addr: number, unit: number) => {
          if (unit === 2 && failUnit2) throw { modbusErrorCode: 2 };
          return addr === 1 ? 215 + unit : 455;
        },
        getMultipleInputRegisters: (addr: number, len: number, unit: number) => {
          if (unit === 2 && failUnit2) throw { modbusErrorCode: 2 };
          return Array.from({ length: len }, (_, i) =>
            addr + i === 1 ? 215 + unit : addr + i === 2 ? 455 : 0,
          );
        },
      },
      { host: '127.0.0.1', port, unitID: 255 },
    );
    await new Promise<void>((resolve) => server.once('initialized', () => resolve()));
    writeFileSync(
      join(dir, 'gw.yaml'),
      `
api: { port: 0 }
broker: { enabled: false }
devicesDir: ${join(ROOT, 'devices')}
sources:
  - id: room-sensors
    type: modbus
    connection: { host: 127.0.0.1, port: ${port} }
    interval: 100ms
    timeout: 500ms
    devices:
      - { id: th-1, unitId: 1, profile: xy-md02 }
      - { id: th-2, unitId: 2, profile: xy-md02 }
store: { path: ${join(dir, 'gw.db')}, flushInterval: 20ms }
`,
    );
    gateway = new Gateway(loadConfig(join(dir, 'gw.yaml')), { log: silentLogger() });
    await gateway.start();
  });

  after(async () => {
    await gateway?.stop();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  const devices = async () => {
    const res = await fetch(`http://127.0.0.1:${gateway.apiPort}/api/v1/devices`);
    return ((await res.json()) as { items: DeviceJson[] }).items;
  };

  it('reads the profile, decodes and stores; a device answering exceptions is offline, the other is not', async () => {
    const list = await eventually(async () => {
      const d = await devices();
      return d.some((x) => x.id === 'th-1') ? d : undefined;
    });
    const th1 = list.find((d) => d.id === 'th-1');
    assert.equal(th1?.status, 'online');
    assert.equal(th1?.source, 'room-sensors');
    assert.deepEqual(
      th1?.metrics.map((m) => [m.metric, m.value, m.unit]),
      [
        ['humidity', 45.5, '%RH'],
        ['temperature', 21.6, '°C'],
      ],
    );
    const health = (await (await fetch(`http://127.0.0.1:${gateway.apiPort}/api/v1/health`)).json()) as {
      sources: {
        id: string;
        state: string;
        devices: Record<string, { state: string; lastError: string | null }>;
      }[];
    };
    const src = health.sources.find((s) => s.id === 'room-sensors');
    assert.equal(src?.state, 'connected');
    assert.equal(src?.devices['th-2']?.state, 'offline');
    assert.match(src?.devices['th-2']?.lastError ?? '', /exception 2/);
  });

  it('a device that recovers comes back online and its readings appear', async () => {
    failUnit2 = false;
    const th2 = await eventually(
      async () => (await devices()).find((d) => d.id === 'th-2' && d.status === 'online'),
      10_000,
      'th-2 online',
    );
    assert.equal(th2.metrics.find((m) => m.metric === 'temperature')?.value, 21.7);
  });

  it('tidegate validate names an unknown profile with file, line and path', async () => {
    writeFileSync(
      join(dir, 'bad.yaml'),
      `devicesDir: ${join(ROOT, 'devices')}\nsources:\n  - id: m\n    type: modbus\n    connection: { host: 127.0.0.1 }\n    devices:\n      - { id: x-1, unitId: 1, profile: no-such-meter }\n`,
    );
    const { code, stdout } = await runCli(['validate', '--config', join(dir, 'bad.yaml')]);
    assert.equal(code, 1);
    assert.match(stdout, /bad\.yaml:7:\d+: sources\[0\]\.devices\[0\]\.profile: .*no-such-meter/);
  });
});
