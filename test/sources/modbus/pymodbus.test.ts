import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type PymodbusServer, startPymodbus } from '../../helpers/pymodbus.js';
import { waitFor } from '../../upstreams/wait.js';
import { encode } from './encode.js';
import { counterValue, modbusConfig, modbusRig, profile } from './rig.js';

const words = (address: number, ws: number[]) => Object.fromEntries(ws.map((w, i) => [address + i, w]));

const meter = profile({
  profile: 'py-meter',
  registers: [
    { metric: 'voltage', table: 'input', address: 0, type: 'float32', unit: 'V' },
    {
      metric: 'energy',
      table: 'input',
      address: 2,
      type: 'uint32',
      wordOrder: 'little',
      scale: 0.1,
      unit: 'kWh',
    },
    { metric: 'temperature', table: 'input', address: 4, type: 'int16', scale: 0.1, unit: '°C' },
    { metric: 'setpoint', table: 'holding', address: 10, type: 'int32', offset: 1000 },
    { metric: 'ratio', table: 'holding', address: 12, type: 'float64', byteOrder: 'little' },
    { metric: 'counter', table: 'holding', address: 16, type: 'uint16' },
    { metric: 'running', table: 'coil', address: 3, type: 'bool' },
  ],
});

describe('modbus source over TCP against pymodbus', () => {
  let server: PymodbusServer;
  before(async () => {
    server = await startPymodbus({
      3: {
        input: {
          ...words(0, encode('float32', 231.7)),
          ...words(2, encode('uint32', 1234567, 'little')),
          ...words(4, encode('int16', -123)),
        },
        holding: {
          ...words(10, encode('int32', -2000)),
          ...words(12, encode('float64', 0.125, 'big', 'little')),
          16: 65535,
        },
        coils: { 3: true },
      },
    });
  });
  after(async () => {
    await server?.stop();
  });

  it('reads a profile with several types', async () => {
    const rig = modbusRig(
      modbusConfig({
        connection: { host: '127.0.0.1', port: server.port },
        interval: '60s',
        devices: [{ id: 'py-1', unitId: 3, profile: 'py-meter' }],
      }),
      [meter],
    );
    try {
      await rig.source.start();
      await waitFor('every metric', () => rig.of('py-1').length === 7, 8000);
      assert.deepEqual(Object.fromEntries(rig.of('py-1').map((r) => [r.metric, r.value])), {
        voltage: 231.7,
        energy: 123456.7,
        temperature: -12.3,
        setpoint: -1000,
        ratio: 0.125,
        counter: 65535,
        running: 1,
      });
      assert.equal(rig.of('py-1', 'energy')[0]?.unit, 'kWh');
      // input 0–5, holding 10–16, coil 3.
      assert.equal(await counterValue(rig.metrics, 'tidegate_modbus_requests_total', { outcome: 'ok' }), 3);
      assert.equal(rig.source.status().devices?.['py-1']?.state, 'connected');
    } finally {
      await rig.close();
    }
  });
});
