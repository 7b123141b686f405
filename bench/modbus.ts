import { ServerTCP } from 'modbus-serial';
import { Ingest } from '../src/ingest/ingest.js';
import { systemClock } from '../src/runtime/clock.js';
import { EventBus } from '../src/runtime/events.js';
import { RateLimitedLog, silentLogger } from '../src/runtime/log.js';
import { Metrics } from '../src/runtime/metrics.js';
import { modbusSourceSchema } from '../src/sources/modbus/config.js';
import { type Profile, parseProfileText } from '../src/sources/modbus/profile.js';
import { ModbusSource } from '../src/sources/modbus/source.js';
import { openDatabase } from '../src/store/database.js';
import { ReadingWriter } from '../src/store/reading-writer.js';
import { freePort } from '../test/helpers/net.js';
import { machine, rssMiB } from './machine.js';

/**
 * Modbus TCP polling throughput against a local modbus-serial ServerTCP: 50 devices (unit ids on
 * one connection, one request at a time) × 20 registers each, polled as fast as the bus allows,
 * with coalescing (one request per device) and without (one request per register).
 */
const DEVICES = 50;
const REGISTERS = 20;
const SECONDS = 5;

function profileText(name: string, stride: number): string {
  const regs = Array.from(
    { length: REGISTERS },
    (_, i) => `  - { metric: r${i}, table: holding, address: ${i * stride}, type: uint16 }`,
  );
  return `profile: ${name}\ndescription: benchmark\nregisters:\n${regs.join('\n')}\n`;
}

async function run(label: string, profile: Profile, port: number, requests: { n: number }): Promise<void> {
  const db = openDatabase(':memory:', { synchronous: 'off' });
  const metrics = new Metrics();
  const log = silentLogger();
  const clock = systemClock;
  const writer = new ReadingWriter(
    db,
    { batchSize: 5000, flushInterval: 200, maxPending: 1_000_000, storeReadings: true },
    { clock, metrics, log },
  );
  writer.start();
  const warn = new RateLimitedLog(log, () => clock.now());
  const ingest = new Ingest(
    { maxFutureSkew: 300_000 },
    { clock, metrics, warn, bus: new EventBus(), writer },
  );
  const config = modbusSourceSchema.parse({
    id: 'bench',
    type: 'modbus',
    connection: { host: '127.0.0.1', port },
    interval: 1,
    timeout: '1s',
    interFrameGap: 0,
    maxGap: 0,
    devices: Array.from({ length: DEVICES }, (_, i) => ({
      id: `dev-${i + 1}`,
      unitId: i + 1,
      profile: profile.profile,
    })),
  });
  const source = new ModbusSource(config, {
    ingest,
    clock,
    metrics,
    log,
    warn,
    profiles: new Map([[profile.profile, profile]]),
  });
  const before = requests.n;
  await source.start();
  const started = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  await source.stop();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  writer.stop();
  const readings = (await metrics.readingsIngested.get()).values.reduce((a, v) => a + v.value, 0);
  const polls = readings / REGISTERS;
  const sent = requests.n - before;
  console.log(
    `${label.padEnd(30)} ${(polls / seconds).toFixed(0).padStart(6)} polls/s  ${(readings / seconds).toFixed(0).padStart(7)} readings/s  ${(sent / Math.max(1, polls)).toFixed(1)} requests/poll  RSS ${rssMiB()} MiB`,
  );
  db.close();
}

const port = await freePort();
const requests = { n: 0 };
const server = new ServerTCP(
  {
    getMultipleHoldingRegisters: (addr: number, len: number) => {
      requests.n++;
      return Array.from({ length: len }, (_, i) => (addr + i) % 65536);
    },
    getHoldingRegister: (addr: number) => {
      requests.n++;
      return addr;
    },
  },
  { host: '127.0.0.1', port, unitID: 255 },
);
await new Promise<void>((resolve) => server.once('initialized', () => resolve()));
console.log(`bench:modbus — ${machine()}`);
console.log(
  `${DEVICES} devices × ${REGISTERS} uint16 registers over one Modbus TCP connection, ${SECONDS} s each`,
);
await run(
  'coalesced (adjacent registers)',
  parseProfileText(profileText('adjacent', 1), 'adjacent.yaml'),
  port,
  requests,
);
await run(
  'not coalesced (gaps > maxGap)',
  parseProfileText(profileText('spread', 2), 'spread.yaml'),
  port,
  requests,
);
await new Promise<void>((resolve) => server.close(() => resolve()));
