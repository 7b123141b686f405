import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ServerTCP } from 'modbus-serial';
import { freePort } from '../../helpers/net.js';
import { waitFor } from '../../upstreams/wait.js';
import { encode } from './encode.js';
import { counterValue, modbusConfig, modbusRig, profile } from './rig.js';

type Table = 'holding' | 'input' | 'coil' | 'discrete';

/**
 * modbus-serial's ServerTCP on 127.0.0.1 with register tables per unit id that the test sets,
 * counting the read requests it answers and failing units with an exception code on demand.
 */
class TestServer {
  readonly words = new Map<string, number>();
  readonly bits = new Map<string, boolean>();
  /** Register read requests answered (one per request, whatever its length), per unit. */
  readonly registerRequests = new Map<number, number>();
  /** Unit id → exception code to answer with. */
  readonly failing = new Map<number, number>();
  private server: ServerTCP | null = null;

  constructor(readonly port: number) {}

  set(unit: number, table: 'holding' | 'input', address: number, words: number[]): void {
    words.forEach((w, i) => {
      this.words.set(`${unit}:${table}:${address + i}`, w);
    });
  }

  setBit(unit: number, table: 'coil' | 'discrete', address: number, value: boolean): void {
    this.bits.set(`${unit}:${table}:${address}`, value);
  }

  requests(unit: number): number {
    return this.registerRequests.get(unit) ?? 0;
  }

  private read(table: Table, address: number, length: number, unit: number): number[] {
    const code = this.failing.get(unit);
    if (code !== undefined) throw { modbusErrorCode: code };
    this.registerRequests.set(unit, this.requests(unit) + 1);
    return Array.from({ length }, (_, i) => this.words.get(`${unit}:${table}:${address + i}`) ?? 0);
  }

  private bit(table: Table, address: number, unit: number): boolean {
    const code = this.failing.get(unit);
    if (code !== undefined) throw { modbusErrorCode: code };
    return this.bits.get(`${unit}:${table}:${address}`) ?? false;
  }

  async start(): Promise<void> {
    const server = new ServerTCP(
      {
        getMultipleHoldingRegisters: (addr: number, len: number, unit: number) =>
          this.read('holding', addr, len, unit),
        getHoldingRegister: (addr: number, unit: number) => this.read('holding', addr, 1, unit)[0] as number,
        getMultipleInputRegisters: (addr: number, len: number, unit: number) =>
          this.read('input', addr, len, unit),
        getInputRegister: (addr: number, unit: number) => this.read('input', addr, 1, unit)[0] as number,
        getCoil: (addr: number, unit: number) => this.bit('coil', addr, unit),
        getDiscreteInput: (addr: number, unit: number) => this.bit('discrete', addr, unit),
      },
      { host: '127.0.0.1', port: this.port, unitID: 255 },
    );
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('initialized', () => resolve());
      server.once('serverError', reject);
    });
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

const allTypes = profile({
  profile: 'all-types',
  registers: [
    { metric: 'i16', table: 'holding', address: 0, type: 'int16', scale: 0.1, unit: '°C' },
    { metric: 'u16', table: 'holding', address: 1, type: 'uint16' },
    { metric: 'i32', table: 'holding', address: 2, type: 'int32' },
    { metric: 'i32le', table: 'holding', address: 4, type: 'int32', wordOrder: 'little' },
    { metric: 'u32', table: 'holding', address: 6, type: 'uint32' },
    { metric: 'u32le', table: 'holding', address: 8, type: 'uint32', wordOrder: 'little' },
    { metric: 'f32', table: 'holding', address: 10, type: 'float32', unit: 'V' },
    { metric: 'f32le', table: 'holding', address: 12, type: 'float32', wordOrder: 'little' },
    { metric: 'f32badc', table: 'holding', address: 14, type: 'float32', byteOrder: 'little' },
    { metric: 'f64', table: 'holding', address: 16, type: 'float64' },
    {
      metric: 'f64le',
      table: 'holding',
      address: 20,
      type: 'float64',
      wordOrder: 'little',
      byteOrder: 'little',
    },
    { metric: 'scaled', table: 'holding', address: 24, type: 'uint16', scale: 0.5, offset: -40 },
    { metric: 'flag', table: 'holding', address: 25, type: 'bool', bit: 3 },
    { metric: 'temp', table: 'input', address: 0, type: 'int16', scale: 0.1 },
    { metric: 'far', table: 'input', address: 100, type: 'float32' },
    { metric: 'relay', table: 'coil', address: 0, type: 'bool' },
    { metric: 'door', table: 'discrete', address: 5, type: 'bool' },
  ],
});

const simple = profile({
  profile: 'simple',
  registers: [
    { metric: 'voltage', table: 'input', address: 0, type: 'float32', unit: 'V' },
    { metric: 'current', table: 'input', address: 6, type: 'float32', unit: 'A' },
  ],
});

describe('modbus source over TCP against modbus-serial ServerTCP', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('a poll that throws unexpectedly is counted, and the device is polled again', async () => {
    const server = new TestServer(await freePort());
    await server.start();
    cleanups.push(() => server.stop());
    server.set(1, 'input', 0, encode('float32', 230));
    server.set(1, 'input', 6, encode('float32', 1.5));
    const rig = modbusRig(
      modbusConfig({
        connection: { host: '127.0.0.1', port: server.port },
        interval: '50ms',
        devices: [{ id: 'meter-1', unitId: 1, profile: 'simple' }],
      }),
      [simple],
    );
    cleanups.push(() => rig.close());
    const accept = rig.ingest.accept.bind(rig.ingest);
    let calls = 0;
    rig.ingest.accept = (...args) => {
      if (calls++ === 0) throw new Error('a bug below the poll');
      return accept(...args);
    };
    await rig.source.start();
    await waitFor('readings after the failed poll', () => rig.of('meter-1', 'voltage').length > 0);
    assert.equal(
      await counterValue(rig.metrics, 'tidegate_internal_errors_total', { where: 'modbus/poll' }),
      1,
    );
  });

  it('reads every type and order in coalesced requests', async () => {
    const server = new TestServer(await freePort());
    await server.start();
    cleanups.push(() => server.stop());
    const u = 7;
    server.set(u, 'holding', 0, encode('int16', -200));
    server.set(u, 'holding', 1, encode('uint16', 54321));
    server.set(u, 'holding', 2, encode('int32', -123456789));
    server.set(u, 'holding', 4, encode('int32', -1000, 'little'));
    server.set(u, 'holding', 6, encode('uint32', 3_000_000_000));
    server.set(u, 'holding', 8, encode('uint32', 4_000_000_001, 'little'));
    server.set(u, 'holding', 10, encode('float32', 230.1));
    server.set(u, 'holding', 12, encode('float32', -0.95, 'little'));
    server.set(u, 'holding', 14, encode('float32', 10, 'big', 'little'));
    server.set(u, 'holding', 16, encode('float64', 1234.5678));
    server.set(u, 'holding', 20, encode('float64', -9.87654321e-5, 'little', 'little'));
    server.set(u, 'holding', 24, [100]);
    server.set(u, 'holding', 25, [0b1000]);
    server.set(u, 'input', 0, encode('int16', -55));
    server.set(u, 'input', 100, encode('float32', 49.98));
    server.setBit(u, 'coil', 0, true);
    server.setBit(u, 'discrete', 5, false);

    // A long interval: exactly one poll happens during the test.
    const rig = modbusRig(
      modbusConfig({
        connection: { host: '127.0.0.1', port: server.port },
        interval: '60s',
        devices: [{ id: 'plc-1', unitId: u, profile: 'all-types' }],
      }),
      [allTypes],
    );
    cleanups.push(() => rig.close());
    await rig.source.start();
    await waitFor('every metric', () => rig.of('plc-1').length === 17).catch((err) => {
      throw new Error(
        `${err.message}: ${JSON.stringify({ readings: rig.readings, status: rig.source.status() })}`,
      );
    });
    const values = Object.fromEntries(rig.of('plc-1').map((r) => [r.metric, r.value]));
    assert.deepEqual(values, {
      i16: -20,
      u16: 54321,
      i32: -123456789,
      i32le: -1000,
      u32: 3_000_000_000,
      u32le: 4_000_000_001,
      f32: 230.1,
      f32le: -0.95,
      f32badc: 10,
      f64: 1234.5678,
      f64le: -9.87654321e-5,
      scaled: 10,
      flag: 1,
      temp: -5.5,
      far: 49.98,
      relay: 1,
      door: 0,
    });
    assert.equal(rig.of('plc-1', 'f32')[0]?.unit, 'V');
    // holding 0–25 in one request, input 0 and input 100 (too far apart) in two.
    assert.equal(server.requests(u), 3);
    assert.equal(await counterValue(rig.metrics, 'tidegate_modbus_requests_total', { outcome: 'ok' }), 5);
    const status = rig.source.status();
    assert.equal(status.state, 'connected');
    assert.equal(status.devices?.['plc-1']?.state, 'connected');
    assert.equal(status.readings, 17);
  });

  it('an exception response takes only that device offline; it comes back when answered', async () => {
    const server = new TestServer(await freePort());
    await server.start();
    cleanups.push(() => server.stop());
    for (const unit of [1, 2]) {
      server.set(unit, 'input', 0, encode('float32', 230 + unit));
      server.set(unit, 'input', 6, encode('float32', unit));
    }
    server.failing.set(2, 2);
    const rig = modbusRig(
      modbusConfig({
        connection: { host: '127.0.0.1', port: server.port },
        interval: '50ms',
        devices: [
          { id: 'good', unitId: 1, profile: 'simple' },
          { id: 'bad', unitId: 2, profile: 'simple' },
        ],
      }),
      [simple],
    );
    cleanups.push(() => rig.close());
    await rig.source.start();
    await waitFor(
      'bad offline with its exception',
      () => (rig.source.status().devices?.['bad']?.errors ?? 0) >= 2,
    );
    await waitFor('good read repeatedly', () => rig.of('good', 'voltage').length >= 5);
    let status = rig.source.status();
    assert.equal(status.state, 'connected');
    assert.equal(status.devices?.['good']?.state, 'connected');
    assert.equal(status.devices?.['bad']?.state, 'offline');
    assert.match(
      status.devices?.['bad']?.lastError ?? '',
      /exception 2 \(illegal data address\) reading unit 2 input 0\+8/,
    );
    assert.equal(rig.of('bad').length, 0);
    assert.equal(rig.latest('good', 'voltage'), 231);
    assert.ok(
      (await counterValue(rig.metrics, 'tidegate_modbus_requests_total', { outcome: 'exception' })) >= 2,
    );
    assert.ok((await counterValue(rig.metrics, 'tidegate_source_errors_total', { kind: 'exception' })) >= 2);
    assert.equal(await counterValue(rig.metrics, 'tidegate_source_up', { device: 'bad' }), 0);
    assert.equal(await counterValue(rig.metrics, 'tidegate_source_up', { device: 'good' }), 1);

    server.failing.delete(2);
    // Backoff is capped at 10 intervals (500 ms).
    await waitFor('bad back online', () => rig.of('bad', 'voltage').length > 0, 3000);
    status = rig.source.status();
    assert.equal(status.devices?.['bad']?.state, 'connected');
    assert.equal(rig.latest('bad', 'current'), 2);
  });

  it('survives the server stopping and restarting, without a restart of its own', async () => {
    const server = new TestServer(await freePort());
    await server.start();
    cleanups.push(() => server.stop());
    server.set(1, 'input', 0, encode('float32', 229.5));
    const rig = modbusRig(
      modbusConfig({
        connection: { host: '127.0.0.1', port: server.port },
        interval: '50ms',
        timeout: '200ms',
        devices: [{ id: 'meter', unitId: 1, profile: 'simple' }],
      }),
      [simple],
    );
    cleanups.push(() => rig.close());
    await rig.source.start();
    await waitFor('first readings', () => rig.of('meter', 'voltage').length >= 2);

    await server.stop();
    await waitFor('meter offline', () => rig.source.status().devices?.['meter']?.state === 'offline');
    assert.equal(rig.source.status().state, 'offline');
    const before = rig.of('meter').length;

    server.set(1, 'input', 0, encode('float32', 231.25));
    await server.start();
    await waitFor('readings resume', () => rig.latest('meter', 'voltage') === 231.25, 8000);
    assert.ok(rig.of('meter').length > before);
    assert.equal(rig.source.status().devices?.['meter']?.state, 'connected');
    assert.equal(rig.source.status().state, 'connected');
    assert.ok((await counterValue(rig.metrics, 'tidegate_source_errors_total', { kind: 'link' })) >= 1);
  });
});
