import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import type { StreamOptions } from '../../src/api/routes/stream.js';
import { ApiServer, createApp } from '../../src/api/server.js';
import { parseConfigText } from '../../src/config/load.js';
import { type Reading, readingToJson } from '../../src/model/reading.js';
import { decisionRecord, lateRecord, resultRecord } from '../../src/model/records.js';
import { EventBus } from '../../src/runtime/events.js';
import { silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { type Db, openDatabase } from '../../src/store/database.js';
import { OutputsQuery } from '../../src/store/outputs-query.js';
import { ReadingsQuery } from '../../src/store/readings-query.js';
import { testView } from '../helpers/api-view.js';
import { openApi } from '../helpers/openapi.js';

const T0 = Date.parse('2026-11-24T10:00:00.000Z');

interface SseMessage {
  /** `comment` for `: …` lines, `retry` for the reconnection hint, else the event name. */
  event: string;
  data: string;
  at: number;
}

/** A Server-Sent-Events client over fetch: collects every message with the time it was parsed. */
class SseClient {
  readonly messages: SseMessage[] = [];
  readonly status: number;
  readonly headers: Headers;
  private readonly abort: AbortController;
  private readonly waiters = new Set<() => void>();
  readonly done: Promise<void>;

  private constructor(res: Response, abort: AbortController) {
    this.status = res.status;
    this.headers = res.headers;
    this.abort = abort;
    this.done = this.read(res).catch(() => undefined);
  }

  static async open(url: string): Promise<SseClient> {
    const abort = new AbortController();
    const res = await fetch(url, { signal: abort.signal });
    return new SseClient(res, abort);
  }

  private async read(res: Response): Promise<void> {
    if (!res.body) return;
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of res.body) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true });
      let end = buffer.indexOf('\n\n');
      while (end >= 0) {
        this.parse(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf('\n\n');
      }
    }
  }

  private parse(block: string): void {
    const at = performance.now();
    let event = 'message';
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) this.messages.push({ event: 'comment', data: line.slice(1).trim(), at });
      else if (line.startsWith('retry: ')) this.messages.push({ event: 'retry', data: line.slice(7), at });
      else if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('data: ')) data.push(line.slice(6));
    }
    if (data.length > 0) this.messages.push({ event, data: data.join('\n'), at });
    for (const w of this.waiters) w();
  }

  events(): { event: string; data: unknown }[] {
    return this.messages
      .filter((m) => m.event !== 'comment' && m.event !== 'retry')
      .map((m) => ({ event: m.event, data: JSON.parse(m.data) as unknown }));
  }

  /** Resolves with the first message (from index `from`) that `match` accepts. */
  async next(match: (m: SseMessage) => boolean, timeoutMs = 2000, from = 0): Promise<SseMessage> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const m = this.messages.slice(from).find(match);
      if (m) return m;
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no matching SSE message in ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, left);
        function done() {
          clearTimeout(t);
          resolve();
        }
        this.waiters.add(done);
      }).finally(() => this.waiters.clear());
    }
  }

  close(): Promise<void> {
    this.abort.abort();
    return this.done;
  }
}

async function gaugeValue(metrics: Metrics, name: string): Promise<number> {
  const metric = metrics.registry.getSingleMetric(name);
  assert.ok(metric, `metric ${name}`);
  const v = await metric.get();
  return v.values.reduce((sum, x) => sum + x.value, 0);
}

async function until(check: () => Promise<boolean>, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const reading = (device: string, metric: string, value: number): Reading => ({
  device,
  metric,
  value,
  ts: T0 + value,
});

describe('GET /api/v1/stream (Server-Sent Events)', () => {
  const log = silentLogger();
  let db: Db;
  let bus: EventBus;
  let metrics: Metrics;
  let server: ApiServer;
  let base: string;

  const startApi = async (stream: Partial<StreamOptions>) => {
    bus = new EventBus();
    metrics = new Metrics();
    const config = parseConfigText('api: { port: 0 }\n', 'test.yaml', {});
    const app = createApp(config.api, {
      query: new ReadingsQuery(db),
      outputs: new OutputsQuery(db),
      metrics,
      log,
      bus,
      stream,
      view: testView({ startedAt: T0, now: () => T0 }),
    });
    server = new ApiServer(config.api, app, log);
    await server.start();
    base = `http://127.0.0.1:${server.port}`;
  };

  before(async () => {
    db = openDatabase(':memory:', { synchronous: 'normal' });
    await startApi({ heartbeatMs: 50, maxClients: 3 });
  });

  after(async () => {
    await server.stop();
    db.close();
  });

  it('delivers a reading within 100 ms of its ingest, as readingToJson, with a retry hint', async (t) => {
    const client = await SseClient.open(`${base}/api/v1/stream`);
    try {
      assert.equal(client.status, 200);
      assert.match(client.headers.get('content-type') ?? '', /^text\/event-stream/);
      await client.next((m) => m.event === 'retry');
      const r: Reading = { ...reading('boiler-1', 'temperature', 21.5), unit: '°C', tags: { site: 'a' } };
      const sent = performance.now();
      bus.emit('reading', r, 'mqtt');
      const got = await client.next((m) => m.event === 'reading');
      const latency = got.at - sent;
      assert.ok(latency < 100, `latency ${latency.toFixed(1)} ms`);
      t.diagnostic(`ingest → client latency ${latency.toFixed(2)} ms`);
      assert.deepEqual(JSON.parse(got.data), readingToJson(r));
    } finally {
      await client.close();
    }
  });

  it('filters by device, metric, rule and type; results, decisions and late records are named by type', async () => {
    const byDevice = await SseClient.open(`${base}/api/v1/stream?device=d1,d3&type=reading,late`);
    const byRule = await SseClient.open(`${base}/api/v1/stream?rule=r1&type=result,decision,late`);
    const byMetric = await SseClient.open(`${base}/api/v1/stream?metric=power`);
    const clients = [byDevice, byRule, byMetric];
    try {
      const result1 = resultRecord('r1', { device: 'd1' }, T0, T0 + 10_000, 3, { avg: 1 }, 0);
      const result2 = resultRecord('r2', { site: 'a' }, T0, T0 + 10_000, 3, { avg: 2 }, 0);
      const decision1 = decisionRecord('r1', { device: 'd2' }, 'firing', T0 + 10_000, { avg: 1 });
      const late1 = lateRecord('r1', reading('d1', 'temperature', 1));
      const late2 = lateRecord('r2', reading('d2', 'power', 2));
      bus.emit('reading', reading('d1', 'temperature', 1), 's');
      bus.emit('reading', reading('d2', 'power', 2), 's');
      bus.emit('reading', reading('d3', 'power', 3), 's');
      bus.emit('result', result1);
      bus.emit('result', result2);
      bus.emit('decision', decision1);
      bus.emit('late', late1);
      bus.emit('late', late2);
      // A last reading every client wants (or not): wait until all have seen everything before it.
      bus.emit('late', lateRecord('r1', reading('d3', 'power', 9)));
      for (const c of clients) {
        await c.next((m) => m.event === 'late' && m.data.includes('"value":9'));
      }
      const names = (c: SseClient) => c.events().map((e) => `${e.event}:${label(e.data)}`);
      assert.deepEqual(names(byDevice), ['reading:d1', 'reading:d3', 'late:r1/d1', 'late:r1/d3']);
      assert.deepEqual(names(byRule), ['result:r1', 'decision:r1', 'late:r1/d1', 'late:r1/d3']);
      // result2 and decision1 are not grouped by metric: the metric filter does not constrain them.
      assert.deepEqual(names(byMetric), [
        'reading:d2',
        'reading:d3',
        'result:r1',
        'result:r2',
        'decision:r1',
        'late:r2/d2',
        'late:r1/d3',
      ]);
      assert.deepEqual(byRule.events()[0]?.data, JSON.parse(JSON.stringify(result1)));
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  it('carries rule changes as event: rule, narrowed by type and rule but not by device or metric', async () => {
    const all = await SseClient.open(`${base}/api/v1/stream?type=rule`);
    const one = await SseClient.open(`${base}/api/v1/stream?rule=r2&device=d9`);
    const none = await SseClient.open(`${base}/api/v1/stream?type=reading,result`);
    const clients = [all, one, none];
    try {
      for (const c of clients) await c.next((m) => m.event === 'retry');
      bus.emit('rule', { id: 'r1', change: 'created', origin: 'api' });
      bus.emit('rule', { id: 'r2', change: 'replaced', origin: 'api' });
      bus.emit('rule', { id: 'r2', change: 'deleted', origin: 'api' });
      // A last event for the clients that take readings: once there, they have seen what came before.
      bus.emit('reading', reading('d9', 'm', 7), 's');
      for (const c of [one, none]) await c.next((m) => m.event === 'reading');
      await all.next((m) => m.event === 'rule' && m.data.includes('deleted'));
      assert.deepEqual(
        all
          .events()
          .filter((e) => e.event === 'rule')
          .map((e) => e.data),
        [
          { id: 'r1', change: 'created', origin: 'api' },
          { id: 'r2', change: 'replaced', origin: 'api' },
          { id: 'r2', change: 'deleted', origin: 'api' },
        ],
      );
      assert.deepEqual(
        one.events().map((e) => `${e.event}:${(e.data as { change?: string }).change ?? ''}`),
        ['rule:replaced', 'rule:deleted', 'reading:'],
      );
      assert.deepEqual(
        none.events().map((e) => e.event),
        ['reading'],
      );
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      // The server has let go of them too (at most 3 clients): the next test gets its own.
      await until(async () => (await gaugeValue(metrics, 'tidegate_stream_clients')) === 0);
    }
  });

  it('sends heartbeat comments at the configured interval', async () => {
    const client = await SseClient.open(`${base}/api/v1/stream?type=decision`);
    try {
      const first = await client.next((m) => m.event === 'comment' && m.data === 'heartbeat', 1000);
      const index = client.messages.indexOf(first);
      const second = await client.next((m) => m.event === 'comment', 1000, index + 1);
      assert.ok(second.at - first.at < 500, `${second.at - first.at} ms between heartbeats`);
    } finally {
      await client.close();
    }
  });

  it('refuses unknown or invalid parameters with 400 and the SPEC error body', async () => {
    for (const [query, path] of [
      ['?since=1', 'since'],
      ['?type=reading,nope', 'type'],
      ['?device=bad%20name', 'device'],
      ['?rule=a&rule=b', 'rule'],
    ] as const) {
      const res = await fetch(`${base}/api/v1/stream${query}`);
      assert.equal(res.status, 400, query);
      const body = (await res.json()) as { error: { code: string; details: { path: string }[] } };
      openApi.check('GET', `${base}/api/v1/stream${query}`, res.status, body);
      assert.equal(body.error.code, 'bad_request');
      assert.equal(body.error.details[0]?.path, path, query);
    }
  });

  it('caps concurrent clients (503 with the SPEC error body) and cleans up each client on close', async () => {
    const clients = await Promise.all([1, 2, 3].map(() => SseClient.open(`${base}/api/v1/stream`)));
    assert.deepEqual(
      clients.map((c) => c.status),
      [200, 200, 200],
    );
    assert.equal(await gaugeValue(metrics, 'tidegate_stream_clients'), 3);
    const refused = await fetch(`${base}/api/v1/stream`);
    assert.equal(refused.status, 503);
    assert.ok(refused.headers.get('retry-after'));
    const body = (await refused.json()) as { error: { code: string; message: string; details: unknown[] } };
    openApi.check('GET', `${base}/api/v1/stream`, refused.status, body);
    assert.equal(body.error.code, 'unavailable');
    assert.deepEqual(body.error.details, []);
    await Promise.all(clients.map((c) => c.close()));
    await until(async () => (await gaugeValue(metrics, 'tidegate_stream_clients')) === 0);
    const again = await SseClient.open(`${base}/api/v1/stream`);
    assert.equal(again.status, 200);
    await again.close();
    await until(async () => (await gaugeValue(metrics, 'tidegate_stream_clients')) === 0);
  });

  it('drops a stalled client instead of buffering for it: pending bytes stay under the cap', async (t) => {
    const cap = 1024 * 1024;
    // A client that sends its request and then never reads a byte.
    const socket = connect(server.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.pause();
    socket.write(`GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    await until(async () => (await gaugeValue(metrics, 'tidegate_stream_clients')) === 1);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));

    // ~3.6 kB events, 64 at a time, up to 128 MB: far beyond what kernel buffers absorb.
    const tags: Record<string, string> = {};
    for (let i = 0; i < 16; i++) tags[`tag${i}`] = 'x'.repeat(200);
    const frameBytes =
      Buffer.byteLength(JSON.stringify(readingToJson({ ...reading('d', 'm', 0), tags }))) + 30;
    let pushed = 0;
    let maxPending = 0;
    let n = 0;
    while (pushed < 128 * 1024 * 1024 && (await gaugeValue(metrics, 'tidegate_stream_dropped_total')) === 0) {
      for (let i = 0; i < 64; i++) {
        bus.emit('reading', { ...reading('d', 'm', n++), tags }, 's');
        pushed += frameBytes;
      }
      maxPending = Math.max(maxPending, await gaugeValue(metrics, 'tidegate_stream_pending_bytes'));
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(await gaugeValue(metrics, 'tidegate_stream_dropped_total'), 1, `pushed ${pushed} bytes`);
    assert.ok(maxPending <= cap + frameBytes, `pending reached ${maxPending} bytes`);
    assert.equal(await gaugeValue(metrics, 'tidegate_stream_clients'), 0);
    assert.equal(await gaugeValue(metrics, 'tidegate_stream_pending_bytes'), 0);
    // The server closed the connection: once the client reads again it sees the end.
    socket.resume();
    await closed;
    // Events published afterwards go nowhere and cost nothing.
    bus.emit('reading', { ...reading('d', 'm', n++), tags }, 's');
    assert.equal(await gaugeValue(metrics, 'tidegate_stream_pending_bytes'), 0);
    assert.ok(pushed > cap, `pushed ${pushed} bytes`);
    t.diagnostic(
      `dropped after ${(pushed / 1e6).toFixed(1)} MB pushed; pending peaked at ${maxPending} bytes`,
    );
  });
});

function label(data: unknown): string {
  const d = data as { device?: string; rule?: string; reading?: { device: string } };
  if (d.rule !== undefined && d.reading) return `${d.rule}/${d.reading.device}`;
  return d.rule ?? d.device ?? '?';
}
