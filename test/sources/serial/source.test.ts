import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { Ingest } from '../../../src/ingest/ingest.js';
import type { Reading, RejectReason } from '../../../src/model/reading.js';
import { systemClock } from '../../../src/runtime/clock.js';
import { EventBus } from '../../../src/runtime/events.js';
import { RateLimitedLog, silentLogger } from '../../../src/runtime/log.js';
import { Metrics } from '../../../src/runtime/metrics.js';
import { type SerialSourceInput, serialSourceSchema } from '../../../src/sources/serial/config.js';
import { SerialSource } from '../../../src/sources/serial/source.js';
import { type Db, openDatabase } from '../../../src/store/database.js';
import { ReadingWriter } from '../../../src/store/reading-writer.js';
import { ReadingsQuery } from '../../../src/store/readings-query.js';
import { type SocatPty, startSocatPty } from '../../helpers/socat-pty.js';

/** The real ingest path on an in-memory store; the writer is flushed by hand. */
interface Rig {
  db: Db;
  metrics: Metrics;
  writer: ReadingWriter;
  ingest: Ingest;
  query: ReadingsQuery;
  readings: Reading[];
  rejected: { reason: RejectReason; message: string }[];
  close(): void;
}

function rig(): Rig {
  const db = openDatabase(':memory:', { synchronous: 'normal' });
  const metrics = new Metrics();
  const bus = new EventBus();
  const log = silentLogger();
  const writer = new ReadingWriter(
    db,
    { batchSize: 1000, flushInterval: 200, maxPending: 10_000, storeReadings: true },
    { clock: systemClock, metrics, log },
  );
  const ingest = new Ingest(
    { maxFutureSkew: 5 * 60_000 },
    { clock: systemClock, metrics, warn: new RateLimitedLog(log, () => Date.now()), bus, writer },
  );
  const r: Rig = {
    db,
    metrics,
    writer,
    ingest,
    query: new ReadingsQuery(db),
    readings: [],
    rejected: [],
    close() {
      writer.stop();
      db.close();
    },
  };
  bus.on('reading', (reading) => r.readings.push(reading));
  bus.on('rejected', (reason, _source, message) => r.rejected.push({ reason, message }));
  return r;
}

async function metricValue(
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

/** Polls until `check` holds, at most `ms`: a bounded wait, never a fixed sleep. */
async function until(what: string, check: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const brief = (rs: Reading[]) => rs.map((r) => [r.device, r.metric, r.value]);

describe('SerialSource over a socat pty pair', () => {
  let pty: SocatPty;
  let r: Rig;
  let source: SerialSource | null = null;

  before(async () => {
    pty = await startSocatPty();
  });
  after(async () => {
    await pty.close();
  });
  afterEach(async () => {
    await source?.stop();
    source = null;
    r.close();
    if (!pty.running) await pty.restart();
  });

  async function startSource(
    fields: Partial<SerialSourceInput>,
    expected: 'connected' | 'offline' = 'connected',
  ): Promise<SerialSource> {
    r = rig();
    const config = serialSourceSchema.parse({
      id: 'wx',
      type: 'serial',
      path: pty.a,
      baudRate: 115200,
      device: 'wx-1',
      format: 'kv',
      reopen: { min: '50ms', max: '400ms' },
      ...fields,
    });
    source = new SerialSource(config, {
      ingest: r.ingest,
      clock: systemClock,
      metrics: r.metrics,
      log: silentLogger(),
    });
    await source.start();
    assert.equal(source.status().state, expected);
    return source;
  }

  it('json: bare numbers, value objects and flat objects become readings, stored', async () => {
    await startSource({ format: 'json', metric: 'level' });
    await pty.write('12.5\n{"value": 13, "ts": 1700000000000}\n{"device":"wx-2","t":21.5,"h":40}\n');
    await until('4 readings', () => r.readings.length === 4);
    assert.deepEqual(brief(r.readings), [
      ['wx-1', 'level', 12.5],
      ['wx-1', 'level', 13],
      ['wx-2', 't', 21.5],
      ['wx-2', 'h', 40],
    ]);
    assert.equal(r.readings[1]?.ts, 1700000000000);
    r.writer.flush();
    assert.equal(r.query.readings({ order: 'asc', limit: 10 }).items.length, 4);
    const status = source!.status();
    assert.equal(status.readings, 4);
    assert.ok(status.lastReadingAt !== null);
    assert.equal(await metricValue(r.metrics, 'tidegate_readings_ingested_total', { source: 'wx' }), 4);
    assert.equal(await metricValue(r.metrics, 'tidegate_source_up', { source: 'wx' }), 1);
  });

  it('csv with \\r\\n line ends: named columns become readings', async () => {
    await startSource({ format: 'csv', delimiter: '\r\n', columns: ['temperature', '_', 'humidity'] });
    await pty.write('21.5,x,40\r\n22,y,41\r\n');
    await until('4 readings', () => r.readings.length === 4);
    assert.deepEqual(brief(r.readings), [
      ['wx-1', 'temperature', 21.5],
      ['wx-1', 'humidity', 40],
      ['wx-1', 'temperature', 22],
      ['wx-1', 'humidity', 41],
    ]);
  });

  it('kv: lines split over several writes come together', async () => {
    await startSource({ format: 'kv' });
    await pty.write('t=21');
    await pty.write('.5 h:');
    await pty.write('40\nt:22,h=41\n');
    await until('4 readings', () => r.readings.length === 4);
    assert.deepEqual(brief(r.readings), [
      ['wx-1', 't', 21.5],
      ['wx-1', 'h', 40],
      ['wx-1', 't', 22],
      ['wx-1', 'h', 41],
    ]);
  });

  it('regex: named groups become readings', async () => {
    await startSource({
      format: 'regex',
      regex: '^(?<device>\\S+) T=(?<temperature>\\S+) H=(?<humidity>\\S+)$',
    });
    await pty.write('wx-7 T=19.5 H=55\n');
    await until('2 readings', () => r.readings.length === 2);
    assert.deepEqual(brief(r.readings), [
      ['wx-7', 'temperature', 19.5],
      ['wx-7', 'humidity', 55],
    ]);
  });

  it('rejects and counts garbage, partial, non-UTF-8 and overlong lines; the good lines around them come through', async () => {
    await startSource({ format: 'kv', maxLineLength: 64 });
    const noise = Buffer.from([0xff, 0xfe, 0x00, 0x13, 0x80, 0x0a]); // not UTF-8, ends in \n
    await pty.write('t=1\n');
    await pty.write(noise);
    await pty.write('\x01\x02\x7f\n'); // control bytes
    await pty.write('\n'); // a line that is only a delimiter
    await pty.write('=21.5 h\n'); // the tail of a line
    await pty.write('t=2\n');
    await pty.write(`t=${'9'.repeat(200)}\n`); // longer than maxLineLength
    await pty.write('t=3\n');
    await until('3 readings', () => r.readings.length === 3);
    await until('5 rejections', () => r.rejected.length === 5);
    assert.deepEqual(brief(r.readings), [
      ['wx-1', 't', 1],
      ['wx-1', 't', 2],
      ['wx-1', 't', 3],
    ]);
    assert.deepEqual(
      r.rejected.map((x) => x.reason),
      ['malformed_payload', 'malformed_payload', 'malformed_payload', 'malformed_payload', 'oversized'],
    );
    assert.match(r.rejected[0]?.message ?? '', /not valid UTF-8/);
    assert.match(r.rejected[1]?.message ?? '', /line noise/);
    assert.match(r.rejected[2]?.message ?? '', /an empty line/);
    assert.match(r.rejected[4]?.message ?? '', /longer than maxLineLength \(64\)/);
    assert.equal(
      await metricValue(r.metrics, 'tidegate_readings_rejected_total', { reason: 'malformed_payload' }),
      4,
    );
    assert.equal(
      await metricValue(r.metrics, 'tidegate_source_errors_total', { source: 'wx', kind: 'parse' }),
      5,
    );
    const status = source!.status();
    assert.equal(status.state, 'connected');
    assert.equal(status.readings, 3);
    assert.equal(status.errors, 5);
  });

  it('goes offline when the pty disappears, reopens by itself when it is back, and reading resumes', async () => {
    const s = await startSource({ format: 'kv' });
    await pty.write('t=1\n');
    await until('the first reading', () => r.readings.length === 1);

    // A line, then the start of one the adapter is unplugged in the middle of: once t=2 is
    // read, so is the unfinished rest of the same write.
    await pty.write('t=2\nt=');
    await until('the second reading', () => r.readings.length === 2);
    await pty.stop();
    await until('offline', () => s.status().state === 'offline');
    assert.equal(await metricValue(r.metrics, 'tidegate_source_up', { source: 'wx' }), 0);
    // Let a few reopen attempts fail against the missing path.
    await until('a failed reopen', () => /cannot open/.test(s.status().lastError ?? ''), 2000);

    await pty.restart();
    await until('reconnected', () => s.status().state === 'connected', 3000);
    await pty.write('t=3\n');
    await until('reading resumed', () => r.readings.length === 3);
    assert.deepEqual(brief(r.readings), [
      ['wx-1', 't', 1],
      ['wx-1', 't', 2],
      ['wx-1', 't', 3],
    ]);
    assert.equal(await metricValue(r.metrics, 'tidegate_source_up', { source: 'wx' }), 1);
    assert.ok(
      (await metricValue(r.metrics, 'tidegate_source_errors_total', { source: 'wx', kind: 'io' })) >= 1,
    );
    assert.ok(
      (await metricValue(r.metrics, 'tidegate_source_errors_total', { source: 'wx', kind: 'open' })) >= 1,
    );
    assert.ok(
      r.rejected.some((x) => /partial line of 2 bytes/.test(x.message)),
      'the unfinished line is counted',
    );
  });

  it('starts with the port missing, stays offline without failing, and stop() cancels the retries', async () => {
    await pty.stop();
    const s = await startSource({ format: 'kv', reopen: { min: '20ms', max: '40ms' } }, 'offline');
    assert.match(s.status().lastError ?? '', /cannot open .*\/a/);
    await until('a few retries', () => s.status().errors >= 3);
    assert.equal(await metricValue(r.metrics, 'tidegate_source_up', { source: 'wx' }), 0);
    await s.stop();
    assert.equal(s.status().state, 'stopped');
    const errors = s.status().errors;
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(s.status().errors, errors, 'no reopen attempts after stop()');
  });
});
