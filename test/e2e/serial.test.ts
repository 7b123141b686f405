import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually, type RunningGateway, startGateway } from '../helpers/gateway-process.js';
import { type SocatPty, startSocatPty } from '../helpers/socat-pty.js';

describe('a serial sensor in the built gateway (socat pseudo-terminal)', () => {
  let dir: string;
  let pty: SocatPty;
  let gw: RunningGateway;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tidegate-serial-e2e-'));
    pty = await startSocatPty();
    writeFileSync(
      join(dir, 'gw.yaml'),
      `
api: { port: 0 }
broker: { enabled: false }
sources:
  - id: weather
    type: serial
    path: ${pty.a}
    baudRate: 115200
    device: weather-1
    format: csv
    columns: [temperature, humidity]
    reopen: { min: 100ms, max: 500ms }
store: { path: ${join(dir, 'gw.db')}, flushInterval: 20ms }
`,
    );
    gw = await startGateway(join(dir, 'gw.yaml'));
  });

  after(async () => {
    await gw?.stop();
    await pty?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores csv lines, counts garbage, and reads on after the port is unplugged and back', async () => {
    await pty.write('21.5,40\n\u0001\u0002garbage\n22.0,41\n');
    const readings = async () => {
      const res = await gw.api('/api/v1/readings?device=weather-1&metric=temperature');
      return ((await res.json()) as { items: { value: number }[] }).items.map((r) => r.value);
    };
    assert.deepEqual(
      await eventually(async () => {
        const v = await readings();
        return v.length === 2 ? v : undefined;
      }),
      [21.5, 22],
    );
    const metrics = await (await gw.api('/metrics')).text();
    assert.match(metrics, /tidegate_readings_rejected_total\{reason="malformed_payload"\} 1/);
    await pty.stop();
    await eventually(async () => {
      const h = (await (await gw.api('/api/v1/health')).json()) as { sources: { state: string }[] };
      return h.sources[0]?.state === 'offline' ? true : undefined;
    });
    await pty.restart();
    await eventually(async () => {
      const h = (await (await gw.api('/api/v1/health')).json()) as { sources: { state: string }[] };
      return h.sources[0]?.state === 'connected' ? true : undefined;
    }, 10_000);
    await pty.write('23.5,42\n');
    assert.deepEqual(
      await eventually(async () => {
        const v = await readings();
        return v.length === 3 ? v : undefined;
      }),
      [21.5, 22, 23.5],
    );
  });
});
