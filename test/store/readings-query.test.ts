import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ReadingsFilter, StoredReading } from '../../src/store/readings-query.js';
import { reading, type StoreRig, storeRig, T0 } from './rig.js';

/** Every page of a query, following the cursor. */
function walk(s: StoreRig, filter: Omit<ReadingsFilter, 'after'>): { items: StoredReading[]; pages: number } {
  const items: StoredReading[] = [];
  let pages = 0;
  let page = s.query.readings(filter);
  for (;;) {
    pages++;
    items.push(...page.items);
    if (!page.next) break;
    assert.ok(page.items.length === filter.limit, 'a page before the last one is full');
    page = s.query.readings({ ...filter, after: page.next });
    assert.ok(pages < 10_000, 'pagination does not end');
  }
  return { items, pages };
}

const id = (r: StoredReading) => `${r.device}/${r.metric}@${r.ts}=${r.value}`;

describe('ReadingsQuery.readings', () => {
  let s: StoreRig;
  before(() => {
    s = storeRig();
    // Two devices × two metrics, one reading a second for 10 s.
    for (let i = 0; i < 10; i++) {
      for (const device of ['a', 'b']) {
        for (const metric of ['t', 'h']) s.writer.add(reading(device, metric, i, T0 + i * 1000), 'src');
      }
    }
    s.writer.flush();
  });
  after(() => s.close());

  it('returns everything in ts order, ascending or descending', () => {
    const asc = s.query.readings({ order: 'asc', limit: 1000 }).items;
    assert.equal(asc.length, 40);
    for (let i = 1; i < asc.length; i++) assert.ok((asc[i - 1]?.ts ?? 0) <= (asc[i]?.ts ?? 0));
    const desc = s.query.readings({ order: 'desc', limit: 1000 }).items;
    assert.deepEqual(desc.map(id), asc.map(id).reverse());
  });

  it('filters by devices and metrics', () => {
    const only = s.query.readings({ order: 'asc', limit: 1000, devices: ['a'], metrics: ['t'] }).items;
    assert.equal(only.length, 10);
    assert.ok(only.every((r) => r.device === 'a' && r.metric === 't'));
    const two = s.query.readings({ order: 'asc', limit: 1000, devices: ['a', 'b'], metrics: ['h'] }).items;
    assert.equal(two.length, 20);
    assert.equal(s.query.readings({ order: 'asc', limit: 1000, devices: ['zz'] }).items.length, 0);
  });

  it('treats from as inclusive and to as exclusive', () => {
    const items = s.query.readings({
      order: 'asc',
      limit: 1000,
      devices: ['a'],
      metrics: ['t'],
      from: T0 + 2000,
      to: T0 + 5000,
    }).items;
    assert.deepEqual(
      items.map((r) => r.ts),
      [T0 + 2000, T0 + 3000, T0 + 4000],
    );
    assert.equal(
      s.query.readings({ order: 'asc', limit: 1000, from: T0 + 3000, to: T0 + 3000 }).items.length,
      0,
    );
  });

  it('stops at limit and says where to continue; the last page has no cursor', () => {
    const p = s.query.readings({ order: 'asc', limit: 5, devices: ['a'], metrics: ['t'] });
    assert.equal(p.items.length, 5);
    assert.ok(p.next);
    const rest = s.query.readings({ order: 'asc', limit: 5, devices: ['a'], metrics: ['t'], after: p.next });
    assert.deepEqual(
      rest.items.map((r) => r.value),
      [5, 6, 7, 8, 9],
    );
    assert.equal(rest.next, null, 'exactly limit rows left: no further page');
  });

  it('treats filter values as data, not SQL', () => {
    const items = s.query.readings({ order: 'asc', limit: 10, devices: ["a' OR '1'='1"] }).items;
    assert.equal(items.length, 0);
  });
});

describe('ReadingsQuery pagination over equal timestamps', () => {
  let s: StoreRig;
  let all: StoredReading[];
  before(() => {
    s = storeRig();
    // 300 readings over only 7 distinct timestamps, arriving out of order across many batches.
    let n = 0;
    for (let batch = 0; batch < 6; batch++) {
      for (let i = 0; i < 50; i++) {
        const ts = T0 + ((n * 13) % 7) * 1000;
        s.writer.add(reading(`dev-${n % 4}`, `m${n % 3}`, n, ts), 'src');
        n++;
      }
      s.writer.flush();
    }
    all = s.query.readings({ order: 'asc', limit: 100_000 }).items;
    assert.equal(all.length, 300);
  });
  after(() => s.close());

  for (const order of ['asc', 'desc'] as const) {
    for (const limit of [1, 7, 49, 50, 299, 300, 301]) {
      it(`walks every row exactly once, ${order}, pages of ${limit}`, () => {
        const { items, pages } = walk(s, { order, limit });
        const expected = order === 'asc' ? all : [...all].reverse();
        assert.deepEqual(items.map(id), expected.map(id));
        assert.equal(new Set(items.map(id)).size, 300, 'no row twice');
        assert.equal(pages, Math.max(1, Math.ceil(300 / limit)));
      });
    }
  }

  it('walks a filtered, bounded range exactly once', () => {
    const filter = { devices: ['dev-1', 'dev-2'], metrics: ['m0', 'm2'], from: T0 + 1000, to: T0 + 5000 };
    const expected = all.filter(
      (r) =>
        filter.devices.includes(r.device) &&
        filter.metrics.includes(r.metric) &&
        r.ts >= filter.from &&
        r.ts < filter.to,
    );
    assert.ok(expected.length > 10);
    for (const order of ['asc', 'desc'] as const) {
      const { items } = walk(s, { ...filter, order, limit: 3 });
      assert.deepEqual(items.map(id), (order === 'asc' ? expected : [...expected].reverse()).map(id));
    }
  });

  it('orders equal timestamps by arrival', () => {
    const sameTs = all.filter((r) => r.ts === T0);
    assert.deepEqual(
      sameTs.map((r) => r.value),
      [...sameTs.map((r) => r.value)].sort((a, b) => a - b),
    );
  });
});

describe('ReadingsQuery latest and devices', () => {
  let s: StoreRig;
  before(() => {
    s = storeRig();
    s.writer.add(reading('boiler-1', 'temperature', 80, T0 + 2000, { unit: '°C' }), 'mqtt');
    s.writer.add(reading('boiler-1', 'pressure', 1.2, T0 + 1000), 'mqtt');
    s.writer.add(reading('plug-1', 'power', 5, T0), 'shelly');
    s.writer.flush();
    s.writer.add(reading('boiler-1', 'temperature', 70, T0 + 1000), 'mqtt'); // older, later
    s.writer.flush();
  });
  after(() => s.close());

  it('latest() lists the newest value of each series, ordered by device and metric', () => {
    assert.deepEqual(s.query.latest(), [
      { device: 'boiler-1', metric: 'pressure', value: 1.2, ts: T0 + 1000, unit: null },
      { device: 'boiler-1', metric: 'temperature', value: 80, ts: T0 + 2000, unit: '°C' },
      { device: 'plug-1', metric: 'power', value: 5, ts: T0, unit: null },
    ]);
  });

  it('latest(device) lists only that device', () => {
    assert.deepEqual(
      s.query.latest('plug-1').map((l) => l.metric),
      ['power'],
    );
    assert.deepEqual(s.query.latest('nobody'), []);
  });

  it('devices() lists every device with its source and metrics', () => {
    const ds = s.query.devices();
    assert.deepEqual(
      ds.map((d) => [d.id, d.source, d.metrics.map((m) => m.metric)]),
      [
        ['boiler-1', 'mqtt', ['pressure', 'temperature']],
        ['plug-1', 'shelly', ['power']],
      ],
    );
  });

  it('device(id) gives one device or null', () => {
    const d = s.query.device('boiler-1');
    assert.equal(d?.id, 'boiler-1');
    assert.equal(d?.metrics.find((m) => m.metric === 'temperature')?.value, 80);
    assert.equal(s.query.device('nobody'), null);
  });
});
