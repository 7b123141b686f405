import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pino } from 'pino';
import { type DuplicateFilter, RecentDuplicates } from '../../src/ingest/duplicates.js';
import { Ingest } from '../../src/ingest/ingest.js';
import { StoredDuplicates } from '../../src/ingest/stored-duplicates.js';
import type { Reading, RejectReason } from '../../src/model/reading.js';
import { ManualClock } from '../../src/runtime/clock.js';
import { EventBus } from '../../src/runtime/events.js';
import { RateLimitedLog, silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { decodePayload } from '../../src/sources/decoders.js';
import { type Db, openDatabase } from '../../src/store/database.js';
import { ReadingWriter, type ReadingWriterOptions } from '../../src/store/reading-writer.js';
import { ReadingsQuery } from '../../src/store/readings-query.js';
import { makeTempDir } from '../helpers/tmp.js';

const NOW = Date.parse('2026-11-24T10:00:00.000Z');

async function counterValue(
  metrics: Metrics,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const metric = metrics.registry.getSingleMetric(name);
  assert.ok(metric, `no metric ${name}`);
  const { values } = await metric.get();
  const match = values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return match?.value ?? 0;
}

interface Rig {
  db: Db;
  clock: ManualClock;
  metrics: Metrics;
  bus: EventBus;
  writer: ReadingWriter;
  ingest: Ingest;
  query: ReadingsQuery;
  events: { readings: [Reading, string][]; rejected: [RejectReason, string, string][] };
  logLines: Record<string, unknown>[];
}

function rig(
  writerOptions: Partial<ReadingWriterOptions> = {},
  makeDuplicates?: (writer: ReadingWriter) => DuplicateFilter,
  database?: Db,
  devices?: { max?: number; known: string[] },
): Rig {
  const db = database ?? openDatabase(':memory:', { synchronous: 'normal' });
  const clock = new ManualClock(NOW);
  const metrics = new Metrics();
  const bus = new EventBus();
  const logLines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) logLines.push(JSON.parse(line));
      done();
    },
  });
  const log = pino({ level: 'warn' }, sink);
  const writer = new ReadingWriter(
    db,
    { batchSize: 1000, flushInterval: 200, maxPending: 10_000, storeReadings: true, ...writerOptions },
    { clock, metrics, log: silentLogger() },
  );
  const duplicates = makeDuplicates?.(writer);
  const ingest = new Ingest(
    { maxFutureSkew: 5 * 60_000, ...(devices?.max !== undefined ? { maxDevices: devices.max } : {}) },
    {
      clock,
      metrics,
      warn: new RateLimitedLog(log, () => clock.now(), 10_000),
      bus,
      writer,
      ...(duplicates ? { duplicates } : {}),
      ...(devices ? { knownDevices: devices.known } : {}),
    },
  );
  const events: Rig['events'] = { readings: [], rejected: [] };
  bus.on('reading', (r, s) => events.readings.push([r, s]));
  bus.on('rejected', (reason, s, m) => events.rejected.push([reason, s, m]));
  return { db, clock, metrics, bus, writer, ingest, query: new ReadingsQuery(db), events, logLines };
}

describe('Ingest', () => {
  let r: Rig;
  beforeEach(() => {
    r = rig();
  });
  afterEach(() => {
    r.writer.stop();
    r.db.close();
  });

  it('stores the good readings of a message and rejects the bad ones, counted by reason', async () => {
    const payload = JSON.stringify([
      { value: 1, ts: NOW - 1000 },
      { value: 'hot', ts: NOW - 900 },
      { value: 2, ts: NOW + 10 * 60_000 },
      { value: 3, ts: 'yesterday' },
      { value: 4 },
    ]);
    const outcome = r.ingest.submit(
      'mqtt',
      decodePayload(payload, 'auto', { device: 'b1', metric: 't', maxMetrics: 256 }),
    );
    assert.equal(outcome.accepted, 2);
    assert.equal(outcome.rejected, 3);
    r.writer.flush();

    const stored = r.query.readings({ order: 'asc', limit: 100 }).items.map((x) => [x.value, x.ts]);
    assert.deepEqual(stored, [
      [1, NOW - 1000],
      [4, NOW],
    ]);
    assert.equal(
      await counterValue(r.metrics, 'tidegate_readings_rejected_total', { reason: 'invalid_value' }),
      1,
    );
    assert.equal(
      await counterValue(r.metrics, 'tidegate_readings_rejected_total', { reason: 'future_ts' }),
      1,
    );
    assert.equal(
      await counterValue(r.metrics, 'tidegate_readings_rejected_total', { reason: 'invalid_ts' }),
      1,
    );
    assert.equal(await counterValue(r.metrics, 'tidegate_readings_ingested_total', { source: 'mqtt' }), 2);
    assert.equal(await counterValue(r.metrics, 'tidegate_readings_stored_total'), 2);
  });

  it('refuses a new device beyond ingest.maxDevices, counted; known devices keep working', async () => {
    r.writer.stop();
    r.db.close();
    r = rig({}, undefined, undefined, { max: 3, known: ['known-1'] });
    // known-1 comes from the store; with two more, the limit of 3 is reached.
    assert.equal(r.ingest.accept('mqtt', { device: 'a', metric: 't', value: 1 }), 'accepted');
    assert.equal(r.ingest.accept('mqtt', { device: 'b', metric: 't', value: 1 }), 'accepted');
    assert.equal(r.ingest.accept('mqtt', { device: 'c', metric: 't', value: 1 }), 'rejected');
    assert.equal(r.ingest.accept('mqtt', { device: 'd', metric: 't', value: 1 }), 'rejected');
    assert.equal(r.ingest.accept('mqtt', { device: 'a', metric: 'u', value: 2 }), 'accepted');
    assert.equal(r.ingest.accept('mqtt', { device: 'known-1', metric: 't', value: 3 }), 'accepted');
    assert.equal(
      await counterValue(r.metrics, 'tidegate_readings_rejected_total', { reason: 'device_limit' }),
      2,
    );
    assert.deepEqual(
      r.events.rejected.map(([reason]) => reason),
      ['device_limit', 'device_limit'],
    );
    // Logged once: the second refusal within the interval is counted, not logged.
    assert.equal(r.logLines.filter((l) => String(l.msg).includes('ingest.maxDevices')).length, 1);
  });

  it('keeps at most 4,096 metric names for readings to share; a flood of names is stored whole', () => {
    // Each accepted reading carries the first string seen of its names (so that the message's own
    // copies die young); the table of metric names is a cache, bounded whatever the names.
    const names = Array.from({ length: 6000 }, (_, i) => `m${i}`);
    for (const [i, metric] of names.entries())
      assert.equal(
        r.ingest.accept('mqtt', { device: 'd1', metric, value: i, ts: NOW - 10_000 + i }),
        'accepted',
      );
    // Names past the cap, and names within it, met again.
    assert.equal(r.ingest.accept('mqtt', { device: 'd1', metric: 'm5999', value: -1, ts: NOW }), 'accepted');
    assert.equal(r.ingest.accept('mqtt', { device: 'd1', metric: 'm7', value: -2, ts: NOW }), 'accepted');
    assert.equal(r.ingest.internedMetrics, 4096);
    r.writer.flush();
    const stored = r.query.readings({ order: 'asc', limit: 10_000 }).items;
    assert.equal(stored.length, 6002);
    assert.deepEqual(
      r.events.readings.map(([x]) => `${x.device}/${x.metric}=${x.value}`),
      [...names.map((m, i) => `d1/${m}=${i}`), 'd1/m5999=-1', 'd1/m7=-2'],
    );
    assert.deepEqual(
      stored.filter((x) => x.value < 0).map((x) => [x.metric, x.value]),
      [
        ['m5999', -1],
        ['m7', -2],
      ],
    );
  });

  it('keeps its own copy of a name cut from a long topic, not the topic with it', () => {
    // V8 makes a slice of 13 characters or more a view of the string it was cut from: a device
    // name cut from a 100 KB topic, kept as is, would keep the topic alive with it.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const accept = (i: number) => {
      const topic = `${'x'.repeat(100_000)}/dev-${String(i).padStart(12, '0')}/metric-${String(i).padStart(9, '0')}`;
      const [, device, metric] = topic.split('/') as [string, string, string];
      assert.equal(r.ingest.accept('mqtt', { device, metric, value: i, ts: NOW }), 'accepted');
    };
    for (let i = 0; i < 10; i++) accept(i); // the code paths warm
    r.writer.flush();
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 10; i < 210; i++) accept(i);
    r.writer.flush();
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    // 200 topics of 100 KB would be 20 MB; 200 devices and metrics of their own, a few hundred KB.
    assert.ok(grown < 4 * 2 ** 20, `the heap grew by ${(grown / 2 ** 20).toFixed(1)} MiB for 200 devices`);
    assert.equal(r.ingest.knownDevices, 210);
    assert.equal(r.events.readings.at(-1)?.[0].device, 'dev-000000000209');
  });

  it('counts the decoder’s own rejections', async () => {
    const outcome = r.ingest.submit(
      'mqtt',
      decodePayload('not a number', 'auto', { device: 'b1', metric: 't', maxMetrics: 8 }),
    );
    assert.equal(outcome.accepted, 0);
    assert.equal(outcome.rejected, 1);
    assert.equal(
      await counterValue(r.metrics, 'tidegate_readings_rejected_total', { reason: 'malformed_payload' }),
      1,
    );
    assert.deepEqual(
      r.events.rejected.map(([reason, source]) => [reason, source]),
      [['malformed_payload', 'mqtt']],
    );
    assert.equal(r.writer.pendingCount, 0);
  });

  it('emits a reading event for each accepted reading and a rejected event with the message for each refusal', () => {
    const d = decodePayload('{"ts": "2026-11-24T09:59:00Z", "power": 5, "bad name": 1}', 'json', {
      device: 'plug-1',
      maxMetrics: 8,
    });
    r.ingest.submit('shelly', d);
    assert.deepEqual(r.events.readings, [
      [{ device: 'plug-1', metric: 'power', value: 5, ts: Date.parse('2026-11-24T09:59:00Z') }, 'shelly'],
    ]);
    assert.equal(r.events.rejected.length, 1);
    const [reason, source, message] = r.events.rejected[0] ?? [];
    assert.equal(reason, 'invalid_metric');
    assert.equal(source, 'shelly');
    assert.match(message ?? '', /bad name/);
  });

  it('durable() resolves only after the accepted readings are committed', async () => {
    r.writer.start();
    const outcome = r.ingest.submit(
      'mqtt',
      decodePayload('21.5', 'number', { device: 'b1', metric: 't', maxMetrics: 1 }),
    );
    let done = false;
    const durable = outcome.durable().then(() => {
      done = true;
    });
    await Promise.resolve();
    assert.equal(done, false, 'not durable before the commit');
    assert.equal(r.query.readings({ order: 'asc', limit: 10 }).items.length, 0);
    r.clock.advance(200);
    await durable;
    assert.equal(r.query.readings({ order: 'asc', limit: 10 }).items.length, 1);
  });

  it('durable() resolves at once when nothing was accepted', async () => {
    const outcome = r.ingest.submit('mqtt', decodePayload('', 'auto', { maxMetrics: 1 }));
    await outcome.durable();
  });

  it('logs rejections at warn, rate-limited per source and reason', () => {
    const ctx = { device: 'b1', metric: 't', maxMetrics: 1 };
    for (let i = 0; i < 50; i++) r.ingest.submit('mqtt', decodePayload('junk', 'auto', ctx));
    r.ingest.submit('mqtt', decodePayload('5', 'auto', { ...ctx, device: 'bad device' }));
    r.ingest.submit('serial', decodePayload('junk', 'auto', ctx));
    assert.deepEqual(
      r.logLines.map((l) => [l['level'], l['source'], l['reason']]),
      [
        [40, 'mqtt', 'malformed_payload'],
        [40, 'mqtt', 'invalid_device'],
        [40, 'serial', 'malformed_payload'],
      ],
    );
    // Ten seconds later the next one gets through and reports how many were held back.
    r.clock.advance(10_000);
    r.ingest.submit('mqtt', decodePayload('junk', 'auto', ctx));
    assert.equal(r.logLines.length, 4);
    assert.equal(r.logLines[3]?.['suppressed'], 49);
  });

  it('refuses with store_overflow when the writer is full, and keeps counting', async () => {
    const small = rig({ maxPending: 2, batchSize: 100 });
    try {
      const ctx = { device: 'b1', metric: 't', maxMetrics: 10 };
      const outcome = small.ingest.submit(
        'mqtt',
        decodePayload(JSON.stringify([{ value: 1 }, { value: 2 }, { value: 3 }]), 'value', ctx),
      );
      assert.equal(outcome.accepted, 2);
      assert.equal(outcome.rejected, 1);
      assert.equal(
        await counterValue(small.metrics, 'tidegate_readings_rejected_total', { reason: 'store_overflow' }),
        1,
      );
      assert.equal(small.events.readings.length, 2, 'a refused reading is not announced');
    } finally {
      small.writer.stop();
      small.db.close();
    }
  });

  it('without a duplicate filter, the store still keeps a redelivered reading once', () => {
    const ctx = { device: 'b1', metric: 't', maxMetrics: 1 };
    const payload = JSON.stringify({ value: 7, ts: NOW - 500 });
    r.ingest.submit('mqtt', decodePayload(payload, 'value', ctx));
    r.ingest.submit('mqtt', decodePayload(payload, 'value', ctx));
    r.writer.flush();
    assert.equal(r.query.readings({ order: 'asc', limit: 10 }).items.length, 1);
  });
});

const filters: [string, (writer: ReadingWriter) => DuplicateFilter][] = [
  ['remembering recent readings', () => new RecentDuplicates(3_600_000)],
  ['asking the store', (writer) => new StoredDuplicates(writer)],
];

for (const [name, makeDuplicates] of filters)
  describe(`Ingest with a duplicate filter ${name}`, () => {
    let r: Rig;
    const ctx = { device: 'b1', metric: 't', maxMetrics: 1 };
    beforeEach(() => {
      r = rig({}, makeDuplicates);
    });
    afterEach(() => {
      r.writer.stop();
      r.db.close();
    });

    it('stores and announces a redelivery once, counted as a duplicate, not a rejection', async () => {
      const first = r.ingest.submit(
        'mqtt',
        decodePayload('{"value": 7, "ts": "2026-11-24T09:59:59.500Z"}', 'value', ctx),
      );
      // The same instant in another notation: a QoS 1 redelivery after a reconnect.
      const again = r.ingest.submit(
        'mqtt',
        decodePayload(JSON.stringify({ value: 7, ts: NOW - 500 }), 'value', ctx),
      );
      r.writer.flush();
      assert.equal(first.accepted, 1);
      assert.equal(again.accepted, 0);
      assert.equal(again.rejected, 0, 'a duplicate is ignored (SPEC §1), not rejected');
      assert.equal(r.query.readings({ order: 'asc', limit: 10 }).items.length, 1);
      assert.equal(r.events.readings.length, 1, 'rules see it once');
      assert.equal(r.events.rejected.length, 0);
      assert.equal(await counterValue(r.metrics, 'tidegate_readings_duplicate_total'), 1);
      assert.equal(await counterValue(r.metrics, 'tidegate_readings_rejected_total'), 0);
      assert.equal(await counterValue(r.metrics, 'tidegate_readings_ingested_total', { source: 'mqtt' }), 1);
    });

    it('counts a message of many readings by source, and its duplicates, whether by submit or accept', async () => {
      const many = { device: 'b1', metric: 't', maxMetrics: 256 };
      const list = (from: number, n: number) =>
        JSON.stringify(
          Array.from({ length: n }, (_, i) => ({ value: from + i, ts: NOW - 10_000 + from + i })),
        );
      assert.equal(r.ingest.submit('mqtt', decodePayload(list(0, 50), 'auto', many)).accepted, 50);
      // 30 again (duplicates) and 20 new in one message.
      const mixed = r.ingest.submit('mqtt', decodePayload(list(20, 50), 'auto', many));
      assert.deepEqual([mixed.accepted, mixed.duplicates], [20, 30]);
      assert.equal(r.ingest.submit('serial', decodePayload(list(1000, 7), 'auto', many)).accepted, 7);
      assert.equal(
        r.ingest.accept('modbus', { device: 'm1', metric: 'p', value: 1, ts: NOW - 1 }),
        'accepted',
      );
      assert.equal(
        r.ingest.accept('modbus', { device: 'm1', metric: 'p', value: 1, ts: NOW - 1 }),
        'duplicate',
      );
      assert.equal(r.ingest.accept('modbus', { device: 'm1', metric: 'p', value: 2, ts: NOW }), 'accepted');
      const ingested = (source: string) =>
        counterValue(r.metrics, 'tidegate_readings_ingested_total', { source });
      assert.equal(await ingested('mqtt'), 70);
      assert.equal(await ingested('serial'), 7);
      assert.equal(await ingested('modbus'), 2);
      assert.equal(await counterValue(r.metrics, 'tidegate_readings_duplicate_total'), 31);
      assert.equal(r.events.readings.length, 79);
    });

    it('takes a different value at the same ts as a new reading', () => {
      r.ingest.submit('mqtt', decodePayload(JSON.stringify({ value: 7, ts: NOW - 500 }), 'value', ctx));
      r.ingest.submit('mqtt', decodePayload(JSON.stringify({ value: 8, ts: NOW - 500 }), 'value', ctx));
      r.writer.flush();
      assert.equal(r.events.readings.length, 2);
      assert.equal(r.query.readings({ order: 'asc', limit: 10 }).items.length, 2);
    });

    it('does not report a redelivery durable before the original is committed', async () => {
      r.writer.start();
      const payload = JSON.stringify({ value: 7, ts: NOW - 500 });
      r.ingest.submit('mqtt', decodePayload(payload, 'value', ctx));
      const again = r.ingest.submit('mqtt', decodePayload(payload, 'value', ctx));
      let acked = false;
      const durable = again.durable().then(() => {
        acked = true;
      });
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(acked, false, 'acknowledging the redelivery now would lose the reading on a power cut');
      r.clock.advance(200);
      await durable;
      assert.equal(r.query.readings({ order: 'asc', limit: 10 }).items.length, 1);
    });

    it('catches redeliveries before and after the commit, out of order, among many series', () => {
      const payload = (device: string, value: number, ts: number) =>
        decodePayload(JSON.stringify({ value, ts }), 'value', { ...ctx, device });
      // 20 series, each in order over 40 s; then every reading again, in reverse: half before the
      // commit (found in memory), half after it (the older ones found in the store).
      const sent: [string, number, number][] = [];
      for (let i = 0; i < 400; i++) sent.push([`d${i % 20}`, i % 7, NOW - 100_000 + i * 100]);
      for (const [d, v, ts] of sent) assert.equal(r.ingest.submit('mqtt', payload(d, v, ts)).accepted, 1);
      const again = [...sent].reverse();
      for (const [d, v, ts] of again.slice(0, 200))
        assert.equal(r.ingest.submit('mqtt', payload(d, v, ts)).duplicates, 1);
      r.writer.flush();
      for (const [d, v, ts] of again.slice(200))
        assert.equal(r.ingest.submit('mqtt', payload(d, v, ts)).duplicates, 1);
      // An older reading that was never sent is new; so is one with another value at a known ts.
      assert.equal(r.ingest.submit('mqtt', payload('d3', 1, NOW - 200_000)).accepted, 1);
      assert.equal(
        r.ingest.submit('mqtt', payload('d3', 1, NOW - 200_000)).duplicates,
        1,
        'queued, not yet stored',
      );
      assert.equal(r.ingest.submit('mqtt', payload('d3', 99, NOW - 100_000 + 3 * 100)).accepted, 1);
      r.writer.flush();
      assert.equal(r.events.readings.length, 402);
      assert.equal(r.query.readings({ order: 'asc', limit: 1000 }).items.length, 402);
    });
  });

describe('Ingest with the duplicate filter asking the store, across a restart', () => {
  it('a redelivery of a reading stored before the restart is a duplicate; memory grows with series only', () => {
    const tmp = makeTempDir();
    try {
      const path = tmp.file('dup.db');
      const ctx = { device: 'b1', metric: 't', maxMetrics: 1 };
      const message = (value: number, ts: number) =>
        decodePayload(JSON.stringify({ value, ts }), 'value', ctx);
      const first = rig({}, (w) => new StoredDuplicates(w), openDatabase(path, { synchronous: 'normal' }));
      for (let i = 0; i < 50; i++) first.ingest.submit('mqtt', message(i, NOW - 60_000 + i * 1000));
      first.writer.stop();
      first.db.close();
      const second = rig({}, (w) => new StoredDuplicates(w), openDatabase(path, { synchronous: 'normal' }));
      try {
        assert.equal(second.ingest.submit('mqtt', message(49, NOW - 60_000 + 49 * 1000)).duplicates, 1);
        assert.equal(second.ingest.submit('mqtt', message(10, NOW - 60_000 + 10 * 1000)).duplicates, 1);
        assert.equal(second.ingest.submit('mqtt', message(7, NOW - 60_000 + 49 * 1000)).accepted, 1);
        assert.equal(second.ingest.submit('mqtt', message(50, NOW)).accepted, 1);
        second.writer.flush();
        assert.equal(second.query.readings({ order: 'asc', limit: 100 }).items.length, 52);
      } finally {
        second.writer.stop();
        second.db.close();
      }
    } finally {
      tmp.remove();
    }
  });
});
