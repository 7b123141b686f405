import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApiServer, createApp } from '../../src/api/server.js';
import { parseConfigText } from '../../src/config/load.js';
import { ManualClock } from '../../src/runtime/clock.js';
import { silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { type Db, openDatabase } from '../../src/store/database.js';
import { OutputsQuery } from '../../src/store/outputs-query.js';
import { ReadingWriter } from '../../src/store/reading-writer.js';
import { ReadingsQuery } from '../../src/store/readings-query.js';
import { testView } from '../helpers/api-view.js';
import { openApi } from '../helpers/openapi.js';

const DAY0 = Date.parse('2026-11-23T00:00:00.000Z');

interface Point {
  device: string;
  metric: string;
  ts: string;
  value: number;
  count: number;
  unit?: string;
}

describe('GET /readings with step and agg: downsampling in SQLite', () => {
  let db: Db;
  let server: ApiServer;
  let base: string;

  before(async () => {
    const clock = new ManualClock(DAY0 + 86_400_000);
    db = openDatabase(':memory:', { synchronous: 'off' });
    const metrics = new Metrics();
    const writer = new ReadingWriter(
      db,
      { batchSize: 1_000_000, flushInterval: 1000, maxPending: 1_000_000, storeReadings: true },
      { clock, metrics, log: silentLogger() },
    );
    // One day of one metric at 1 reading/s: value = seconds into the minute; plus a second series.
    for (let i = 0; i < 86_400; i++) {
      writer.add(
        { device: 'pump-1', metric: 'flow', value: i % 60, ts: DAY0 + i * 1000, unit: 'l/min' },
        'src',
      );
    }
    for (let i = 0; i < 120; i++)
      writer.add({ device: 'pump-2', metric: 'flow', value: 1, ts: DAY0 + i * 1000 }, 'src');
    writer.flush();
    const config = parseConfigText('api: { port: 0 }\n', 'test.yaml', {});
    const app = createApp(config.api, {
      query: new ReadingsQuery(db),
      outputs: new OutputsQuery(db),
      metrics,
      log: silentLogger(),
      view: testView({ gatewayId: 'gw', version: '0', staleAfter: 1, now: () => clock.now() }),
    });
    server = new ApiServer(config.api, app, silentLogger());
    await server.start();
    base = `http://127.0.0.1:${server.port}/api/v1/readings`;
  });

  after(async () => {
    await server.stop();
    db.close();
  });

  const get = async <T>(query: string, status = 200): Promise<T> => {
    const res = await fetch(`${base}?${query}`);
    assert.equal(res.status, status, query);
    const body = (await res.json()) as T;
    openApi.check('GET', `${base}?${query}`, res.status, body);
    return body;
  };

  it('one device, 24 h at 1 reading/s, to 1-minute averages: 1,440 points', async () => {
    const body = await get<{ step: string; agg: string; items: Point[]; next: string | null }>(
      `device=pump-1&metric=flow&from=${DAY0}&to=${DAY0 + 86_400_000}&step=1m&agg=avg&limit=2000`,
    );
    assert.equal(body.step, '1m');
    assert.equal(body.agg, 'avg');
    assert.equal(body.items.length, 1440);
    assert.equal(body.next, null);
    assert.deepEqual(body.items[0], {
      device: 'pump-1',
      metric: 'flow',
      ts: '2026-11-23T00:00:00.000Z',
      value: 29.5,
      count: 60,
      unit: 'l/min',
    });
    assert.equal(body.items[1439]?.ts, '2026-11-23T23:59:00.000Z');
  });

  it('min, max, sum, count, first and last per bucket', async () => {
    const one = async (agg: string) =>
      (
        await get<{ items: Point[] }>(
          `device=pump-1&from=${DAY0 + 60_000}&to=${DAY0 + 120_000}&step=1m&agg=${agg}`,
        )
      ).items[0]?.value;
    assert.equal(await one('min'), 0);
    assert.equal(await one('max'), 59);
    assert.equal(await one('sum'), 1770);
    assert.equal(await one('count'), 60);
    assert.equal(await one('first'), 0);
    assert.equal(await one('last'), 59);
  });

  it('buckets are aligned to the epoch and pages walk every (bucket, series) once', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `metric=flow&to=${DAY0 + 300_000}&step=1m&limit=3${cursor ? `&cursor=${cursor}` : ''}`;
      const page: { items: Point[]; next: string | null } = await get(q);
      seen.push(...page.items.map((p) => `${p.device}@${p.ts}`));
      cursor = page.next;
      pages++;
    } while (cursor && pages < 20);
    // pump-1: 5 buckets; pump-2: 2 buckets (its 120 readings).
    assert.deepEqual(seen, [
      'pump-1@2026-11-23T00:00:00.000Z',
      'pump-2@2026-11-23T00:00:00.000Z',
      'pump-1@2026-11-23T00:01:00.000Z',
      'pump-2@2026-11-23T00:01:00.000Z',
      'pump-1@2026-11-23T00:02:00.000Z',
      'pump-1@2026-11-23T00:03:00.000Z',
      'pump-1@2026-11-23T00:04:00.000Z',
    ]);
  });

  it('refuses agg without step, a bad step and a bad agg', async () => {
    for (const q of ['agg=avg', 'step=10ms', 'step=soon', 'step=1m&agg=median']) {
      const body = await get<{ error: { code: string; details: { path: string }[] } }>(q, 400);
      assert.equal(body.error.code, 'bad_request', q);
    }
  });
});
