import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { issuesToProblems } from '../../../src/schema/problems.js';
import { checkModbusProfiles, modbusSourceSchema } from '../../../src/sources/modbus/config.js';
import { planReads } from '../../../src/sources/modbus/plan.js';
import { loadProfiles } from '../../../src/sources/modbus/profile.js';

const profiles = loadProfiles(fileURLToPath(new URL('../../../../devices', import.meta.url)));

const problems = (input: unknown) => {
  const r = modbusSourceSchema.safeParse(input, { reportInput: true });
  return r.success
    ? []
    : issuesToProblems(r.error.issues, 'gw.yaml').map((p) => `${p.path.join('.')}: ${p.message}`);
};

describe('modbus source config', () => {
  it('applies the defaults of a TCP and an RTU source', () => {
    const tcp = modbusSourceSchema.parse({
      id: 'meters',
      type: 'modbus',
      connection: { host: '192.168.1.50' },
      devices: [{ id: 'meter-1', unitId: 1, profile: 'eastron-sdm120' }],
    });
    assert.deepEqual(tcp.connection, { kind: 'tcp', host: '192.168.1.50', port: 502 });
    assert.equal(tcp.interval, 5000);
    assert.equal(tcp.timeout, 1000);
    assert.equal(tcp.retries, 2);
    assert.equal(tcp.interFrameGap, 10);
    assert.equal(tcp.maxGap, 8);
    assert.equal(tcp.maxRegisters, 125);
    const rtu = modbusSourceSchema.parse({
      id: 'bus',
      type: 'modbus',
      connection: { path: '/dev/ttyUSB0', parity: 'even' },
      interval: '2s',
      devices: [{ id: 'th', unitId: '3', profile: 'xy-md02', interval: '10s', timeout: '500ms', retries: 0 }],
    });
    assert.deepEqual(rtu.connection, {
      kind: 'rtu',
      path: '/dev/ttyUSB0',
      baudRate: 9600,
      parity: 'even',
      dataBits: 8,
      stopBits: 1,
    });
    assert.deepEqual(rtu.devices[0], {
      id: 'th',
      unitId: 3,
      profile: 'xy-md02',
      interval: 10000,
      timeout: 500,
      retries: 0,
    });
  });

  it('reports every problem with its path', () => {
    assert.deepEqual(
      problems({
        id: 'm',
        type: 'modbus',
        connection: { host: 'h', baudRate: 9600 },
        maxRegisters: 200,
        devices: [
          { id: 'a', unitId: 248, profile: 'x' },
          { id: 'a', unitId: 1, profile: 'x', colour: 1 },
        ],
      }),
      [
        'connection.baudRate: baudRate applies to serial connections (path), not to host',
        'maxRegisters: expected a value ≤ 125, found number 200',
        'devices.0.unitId: expected a value ≤ 247, found number 248',
        'devices.1.colour: unknown key',
        'devices.1.id: duplicate device id "a"',
      ],
    );
    assert.deepEqual(
      problems({ id: 'm', type: 'modbus', connection: {}, devices: [{ id: 'a', unitId: 1, profile: 'x' }] }),
      ['connection: expected either host (Modbus TCP) or path (Modbus RTU serial port)'],
    );
  });

  it('checkModbusProfiles reports unknown profiles and shared serial ports', () => {
    const found = checkModbusProfiles(
      [
        { id: 'sim', type: 'simulator' },
        {
          id: 'a',
          type: 'modbus',
          connection: { path: '/dev/ttyUSB0' },
          devices: [
            { id: 'm', profile: 'eastron-sdm120' },
            { id: 'n', profile: 'eastron-sdm121' },
          ],
        },
        { id: 'b', type: 'modbus', connection: { path: '/dev/ttyUSB0' }, devices: [] },
      ],
      profiles,
    );
    assert.equal(found.length, 2);
    assert.deepEqual(found[0]?.path, ['devices', 1, 'profile']);
    assert.equal(found[0]?.source, 1);
    assert.match(found[0]?.message ?? '', /unknown device profile "eastron-sdm121"; known: .*eastron-sdm120/);
    assert.deepEqual(found[1]?.path, ['connection', 'path']);
    assert.equal(found[1]?.source, 2);
  });

  it('shipped profiles coalesce as documented', () => {
    const plan = (name: string) =>
      planReads(profiles.get(name)?.registers ?? [], { maxRegisters: 125, maxGap: 8 }).map(
        (r) => `${r.address}+${r.count}`,
      );
    assert.deepEqual(plan('eastron-sdm120'), ['0+38', '70+10', '342+4']);
    assert.deepEqual(plan('eastron-sdm630'), ['0+76', '200+6', '224+2', '342+2']);
    assert.deepEqual(plan('xy-md02'), ['1+2']);
  });
});
