import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { ApiServer, createApp } from '../../src/api/server.js';
import { parseConfigText } from '../../src/config/load.js';
import type { Reading } from '../../src/model/reading.js';
import { ManualClock } from '../../src/runtime/clock.js';
import { silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import type { SourceStatus } from '../../src/sources/source.js';
import { type Db, openDatabase } from '../../src/store/database.js';
import { OutputsQuery } from '../../src/store/outputs-query.js';
import { ReadingWriter } from '../../src/store/reading-writer.js';
import { ReadingsQuery } from '../../src/store/readings-query.js';
import { testView } from '../helpers/api-view.js';
import { openApi } from '../helpers/openapi.js';

const T0 = Date.parse('2026-11-24T10:00:00.000Z');

interface Page {
  items: { device: string; metric: string; value: number; ts: string; unit?: string }[];
  next: string | null;
}
interface ErrorBody {
  error: { code: string; message: string; details: { path?: string; message: string }[] };
}

describe('REST API over real HTTP', () => {
  const clock = new ManualClock(T0 + 60_000);
  const metrics = new Metrics();
  const log = silentLogger();
  let db: Db;
  let server: ApiServer;
  let base: string;
  const sourceStates: SourceStatus[] = [
    {
      id: 'mqtt',
      type: 'mqtt',
      state: 'connected',
      lastReadingAt: null,
      readings: 0,
      errors: 0,
      lastError: null,
    },
    {
      id: 'bus',
      type: 'mqtt',
      state: 'offline',
      lastReadingAt: null,
      readings: 0,
      errors: 3,
      lastError: 'timeout',
    },
  ];

  before(async () => {
    db = openDatabase(':memory:', { synchronous: 'normal' });
    const writer = new ReadingWriter(
      db,
      { batchSize: 100_000, flushInterval: 1000, maxPending: 1_000_000, storeReadings: true },
      { clock, metrics, log },
    );
    const add = (r: Reading, source = 'mqtt') => writer.add(r, source);
    // boiler-1: temperature every second for 10 minutes, plus humidity with equal timestamps.
    for (let i = 0; i < 600; i++) {
      add({ device: 'boiler-1', metric: 'temperature', value: 20 + i / 10, ts: T0 + i * 1000, unit: '°C' });
      add({ device: 'boiler-1', metric: 'humidity', value: 40, ts: T0 + i * 1000 });
    }
    add({ device: 'meter-1', metric: 'power', value: 5, ts: T0 }, 'bus');
    writer.flush();
    const config = parseConfigText('api: { port: 0 }\n', 'test.yaml', {});
    const app = createApp(config.api, {
      // The property test below sends more than a minute's worth of the default rate limit.
      rateLimit: { requestsPerMinute: 0 },
      query: new ReadingsQuery(db),
      outputs: new OutputsQuery(db),
      metrics,
      log,
      view: testView({
        startedAt: T0,
        staleAfter: 5 * 60_000,
        now: () => clock.now(),
        sources: () => sourceStates,
        store: () => ({ path: ':memory:', bytes: 0, pendingWrites: writer.pendingCount, lastError: null }),
      }),
    });
    server = new ApiServer(config.api, app, log);
    await server.start();
    base = `http://127.0.0.1:${server.port}`;
  });

  after(async () => {
    await server.stop();
    db.close();
  });

  const get = async <T>(path: string, status = 200): Promise<T> => {
    const res = await fetch(base + path);
    const body = (await res.json()) as T;
    assert.equal(res.status, status, `${path}: ${JSON.stringify(body)}`);
    openApi.check('GET', base + path, res.status, body);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    return body;
  };

  it('GET /health reports sources and status', async () => {
    const h = await get<{
      status: string;
      gateway: string;
      version: string;
      uptime: number;
      sources: SourceStatus[];
    }>('/api/v1/health');
    assert.equal(h.gateway, 'gw-test');
    assert.equal(h.version, '9.9.9');
    assert.equal(h.uptime, 60);
    assert.equal(h.status, 'degraded'); // the "bus" source is offline
    assert.deepEqual(
      h.sources.map((s) => [s.id, s.state, s.errors]),
      [
        ['mqtt', 'connected', 0],
        ['bus', 'offline', 3],
      ],
    );
  });

  it('GET /readings filters by device, metric and a half-open time range (ISO or epoch ms)', async () => {
    const from = '2026-11-24T10:01:00Z';
    const to = T0 + 70_000;
    const page = await get<Page>(`/api/v1/readings?device=boiler-1&metric=temperature&from=${from}&to=${to}`);
    assert.equal(page.items.length, 10);
    assert.equal(page.items[0]?.ts, '2026-11-24T10:01:00.000Z');
    assert.equal(page.items.at(-1)?.ts, '2026-11-24T10:01:09.000Z');
    assert.deepEqual(page.items[0], {
      device: 'boiler-1',
      metric: 'temperature',
      value: 26,
      ts: '2026-11-24T10:01:00.000Z',
      unit: '°C',
    });
    assert.equal(page.next, null);
    const both = await get<Page>(
      `/api/v1/readings?device=boiler-1,meter-1&metric=power,humidity&to=${T0 + 1}`,
    );
    assert.deepEqual(both.items.map((r) => [r.device, r.metric]).sort(), [
      ['boiler-1', 'humidity'],
      ['meter-1', 'power'],
    ]);
  });

  it('GET /readings orders desc and limits', async () => {
    const page = await get<Page>('/api/v1/readings?metric=temperature&order=desc&limit=3');
    assert.deepEqual(
      page.items.map((r) => r.value),
      [79.9, 79.8, 79.7],
    );
    assert.equal(typeof page.next, 'string');
  });

  it('cursor pagination walks every row once, including rows with equal timestamps', async () => {
    for (const order of ['asc', 'desc'] as const) {
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const q: string = `/api/v1/readings?device=boiler-1&limit=77&order=${order}${cursor ? `&cursor=${cursor}` : ''}`;
        const page: Page = await get<Page>(q);
        seen.push(...page.items.map((r) => `${r.metric}@${r.ts}`));
        cursor = page.next;
        pages++;
      } while (cursor && pages < 100);
      assert.equal(seen.length, 1200);
      assert.equal(new Set(seen).size, 1200);
      const times = seen.map((s) => Date.parse(s.split('@')[1] as string));
      const sorted = [...times].sort((a, b) => (order === 'asc' ? a - b : b - a));
      assert.deepEqual(times, sorted);
    }
  });

  it('GET /readings/latest gives the newest value per (device, metric)', async () => {
    const all = await get<Page>('/api/v1/readings/latest');
    assert.deepEqual(
      all.items.map((r) => [r.device, r.metric, r.value, r.ts]),
      [
        ['boiler-1', 'humidity', 40, '2026-11-24T10:09:59.000Z'],
        ['boiler-1', 'temperature', 79.9, '2026-11-24T10:09:59.000Z'],
        ['meter-1', 'power', 5, '2026-11-24T10:00:00.000Z'],
      ],
    );
    const one = await get<Page>('/api/v1/readings/latest?device=meter-1');
    assert.equal(one.items.length, 1);
  });

  it('GET /devices and /devices/{id} list metrics, source and status', async () => {
    const list = await get<{
      items: { id: string; source: string; status: string; metrics: { metric: string }[] }[];
    }>('/api/v1/devices');
    assert.deepEqual(
      list.items.map((d) => [d.id, d.source, d.status, d.metrics.map((m) => m.metric)]),
      [
        ['boiler-1', 'mqtt', 'online', ['humidity', 'temperature']],
        ['meter-1', 'bus', 'offline', ['power']],
      ],
    );
    const one = await get<{ id: string; lastSeen: string }>('/api/v1/devices/boiler-1');
    assert.equal(one.id, 'boiler-1');
    assert.equal(one.lastSeen, '2026-11-24T10:01:00.000Z');
    clock.advance(10 * 60_000);
    const later = await get<{ status: string }>('/api/v1/devices/boiler-1');
    assert.equal(later.status, 'stale');
    const missing = await get<ErrorBody>('/api/v1/devices/nope', 404);
    assert.equal(missing.error.code, 'not_found');
  });

  it('GET /devices pages and filters on request (q, status, sort, limit, offset) with counts; without them, every device', async () => {
    interface DevicePage {
      items: { id: string; status: string }[];
      total?: number;
      known?: number;
      byStatus?: Record<string, number>;
    }
    const ids = (p: DevicePage) => p.items.map((d) => d.id);
    const plain = await get<DevicePage>('/api/v1/devices');
    assert.deepEqual(Object.keys(plain), ['items'], 'the answer of old without a parameter');
    assert.deepEqual(ids(plain), ['boiler-1', 'meter-1']);
    const first = await get<DevicePage>('/api/v1/devices?limit=1');
    assert.deepEqual(ids(first), ['boiler-1']);
    assert.equal(first.total, 2);
    assert.equal(first.known, 2);
    assert.deepEqual(first.byStatus, { stale: 1, offline: 1 });
    assert.deepEqual(ids(await get<DevicePage>('/api/v1/devices?limit=1&offset=1')), ['meter-1']);
    assert.deepEqual(ids(await get<DevicePage>('/api/v1/devices?offset=5')), []);
    const bus = await get<DevicePage>('/api/v1/devices?q=BUS');
    assert.deepEqual([ids(bus), bus.total, bus.known], [['meter-1'], 1, 2]);
    assert.deepEqual(ids(await get<DevicePage>('/api/v1/devices?q=oiler')), ['boiler-1']);
    assert.deepEqual(ids(await get<DevicePage>('/api/v1/devices?status=offline')), ['meter-1']);
    assert.deepEqual(ids(await get<DevicePage>('/api/v1/devices?status=online')), []);
    assert.deepEqual(ids(await get<DevicePage>('/api/v1/devices?sort=attention&limit=5')), [
      'boiler-1',
      'meter-1',
    ]);
    for (const q of ['status=nope', 'limit=0', 'offset=-1', 'sort=age', 'extra=1']) {
      const body = await get<ErrorBody>(`/api/v1/devices?${q}`, 400);
      assert.equal(body.error.code, 'bad_request', q);
    }
  });

  it('answers bad queries with 400 and every problem in details', async () => {
    const cases: [string, string][] = [
      ['limit=0', 'limit'],
      ['limit=100001', 'limit'],
      ['limit=ten', 'limit'],
      ['from=yesterday', 'from'],
      ['from=2026-11-24T10:00:00', 'from'],
      ['order=sideways', 'order'],
      ['device=bad name', 'device'],
      ['device=a&device=b', 'device'],
      ['devcie=boiler-1', 'devcie'],
      ['cursor=garbage', 'cursor'],
      [`from=${T0 + 10}&to=${T0}`, 'from'],
    ];
    for (const [q, path] of cases) {
      const body = await get<ErrorBody>(`/api/v1/readings?${q}`, 400);
      assert.equal(body.error.code, 'bad_request', q);
      assert.ok(
        body.error.details.some((d) => d.path === path),
        `${q}: ${JSON.stringify(body.error.details)}`,
      );
    }
    const several = await get<ErrorBody>('/api/v1/readings?limit=0&order=up', 400);
    assert.equal(several.error.details.length, 2);
    // A cursor of the other order is refused rather than misread.
    const asc = await get<Page>('/api/v1/readings?limit=1');
    await get<ErrorBody>(`/api/v1/readings?limit=1&order=desc&cursor=${asc.next}`, 400);
  });

  it('unknown routes are 404, oversized bodies 413, malformed JSON 400, all in the SPEC error shape', async () => {
    // Not a documented route, so not checked against the OpenAPI document: only the error shape.
    const missing = await fetch(`${base}/api/v1/nothing-here`);
    assert.equal(missing.status, 404);
    const nf = (await missing.json()) as ErrorBody;
    assert.deepEqual(Object.keys(nf.error).sort(), ['code', 'details', 'message']);
    const big = await fetch(`${base}/api/v1/readings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ x: 'y'.repeat(2 * 1024 * 1024) }),
    });
    assert.equal(big.status, 413);
    assert.equal(((await big.json()) as ErrorBody).error.code, 'payload_too_large');
    const bad = await fetch(`${base}/api/v1/readings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"x":',
    });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as ErrorBody).error.code, 'bad_request');
  });

  it('GET /metrics serves Prometheus text', async () => {
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(text, /^tidegate_readings_stored_total 1201$/m);
    assert.match(text, /# TYPE tidegate_readings_rejected_total counter/);
  });

  it('random query strings never produce a 500', async () => {
    const keys = [
      'device',
      'metric',
      'from',
      'to',
      'limit',
      'order',
      'cursor',
      'step',
      'agg',
      'rule',
      'key',
      'x',
      '',
    ];
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.tuple(
            fc.constantFrom(...keys),
            fc.oneof(fc.string(), fc.integer().map(String), fc.constant('')),
          ),
          {
            maxLength: 5,
          },
        ),
        async (pairs) => {
          const qs = pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
          for (const path of [
            '/api/v1/readings',
            '/api/v1/readings/latest',
            '/api/v1/devices',
            '/api/v1/results',
            '/api/v1/decisions',
            '/api/v1/alerts',
          ]) {
            const res = await fetch(`${base}${path}?${qs}`);
            assert.ok(res.status === 200 || res.status === 400, `${path}?${qs} → ${res.status}`);
            openApi.check('GET', `${base}${path}?${qs}`, res.status, await res.json());
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});
