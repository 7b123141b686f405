import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApiServer, createApp } from '../../src/api/server.js';
import { parseConfigText } from '../../src/config/load.js';
import type { DecisionStateRecord } from '../../src/engine/decision.js';
import type { OutputRecord } from '../../src/model/records.js';
import { ManualClock } from '../../src/runtime/clock.js';
import { silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { emptyCommitBatch, StatementSink } from '../../src/store/commit-core.js';
import { type Db, openDatabase } from '../../src/store/database.js';
import { Outbox } from '../../src/store/outbox.js';
import { OutputWriter } from '../../src/store/output-writer.js';
import { OutputsQuery } from '../../src/store/outputs-query.js';
import { ReadingWriter } from '../../src/store/reading-writer.js';
import { ReadingsQuery } from '../../src/store/readings-query.js';
import { testView } from '../helpers/api-view.js';
import { openApi } from '../helpers/openapi.js';

const iso = (s: number) => new Date(Date.parse('2026-11-24T10:00:00.000Z') + s * 1000).toISOString();

function result(rule: string, device: string, startS: number, avg: number, revision = 0): OutputRecord {
  return {
    type: 'result',
    rule,
    key: { device },
    start: iso(startS),
    end: iso(startS + 10),
    count: 2,
    values: { avg },
    revision,
  };
}

function decision(rule: string, device: string, atS: number, state: 'ok' | 'firing'): OutputRecord {
  return { type: 'decision', rule, key: { device }, state, at: iso(atS), values: { avg: 90 } };
}

function late(rule: string, device: string, metric: string, value: number, tsS: number): OutputRecord {
  return { type: 'late', rule, reading: { device, metric, value, ts: iso(tsS) } };
}

interface Page<T> {
  items: T[];
  next: string | null;
}

describe('OutputWriter.add', () => {
  it('says whether a record goes upstream (the writer then commits promptly), per rule and type', () => {
    const db = openDatabase(':memory:', { synchronous: 'off' });
    try {
      const forward = new Map([['hot', new Set(['decision'])]]);
      const clock = new ManualClock(0);
      const out = new OutputWriter({
        clock,
        changedDecisionStates: () => [],
        outbox: { outbox: new Outbox(db), forward },
      });
      assert.equal(out.add([result('hot', 'b-1', 0, 70), result('cold', 'b-1', 0, 5)]), false);
      assert.equal(out.add([result('cold', 'b-1', 10, 5), decision('hot', 'b-1', 20, 'firing')]), true);
      assert.equal(out.add([decision('cold', 'b-1', 20, 'firing')]), false);
    } finally {
      db.close();
    }
  });
});

describe('OutputWriter: decision states', () => {
  const stateRows = (db: Db) =>
    (
      db.prepare('SELECT rule, key, state FROM decision_state ORDER BY rule, key').all() as {
        rule: string;
        key: string;
        state: string;
      }[]
    ).map((r) => `${r.rule} ${r.key} ${JSON.parse(r.state).streak}`);
  const state = (rule: string, device: string, streak: number): DecisionStateRecord => ({
    rule,
    key: { device },
    state: 'ok',
    streak,
    lastEnd: 1000 * streak,
  });

  it('writes the changed states only, again after a rollback, and not those of a discarded rule', () => {
    const db = openDatabase(':memory:', { synchronous: 'off' });
    try {
      let changed: DecisionStateRecord[] = [state('hot', 'b-1', 1), state('cold', 'b-1', 1)];
      const out = new OutputWriter({
        clock: new ManualClock(0),
        changedDecisionStates: () => {
          const taken = changed;
          changed = [];
          return taken;
        },
      });
      // The statements the part puts into a batch, run as the writer's commit runs them.
      const written = () => {
        const batch = emptyCommitBatch();
        out.write(new StatementSink(batch));
        for (const [n, i] of batch.opSql.entries())
          db.prepare(batch.sql[i] as string).run(...(batch.opParams[n] ?? []));
      };
      const commit = () => {
        db.transaction(written)();
        out.committed();
      };
      commit();
      assert.deepEqual(stateRows(db), ['cold {"device":"b-1"} 1', 'hot {"device":"b-1"} 1']);
      // A failed commit: what was taken for it is written with the next one, a newer state winning;
      // except the states of a rule deleted or replaced meanwhile.
      changed = [state('hot', 'b-1', 2), state('hot', 'b-2', 1), state('cold', 'b-2', 1)];
      assert.throws(() =>
        db.transaction(() => {
          written();
          throw new Error('disk full');
        })(),
      );
      out.rolledBack();
      assert.deepEqual(stateRows(db), ['cold {"device":"b-1"} 1', 'hot {"device":"b-1"} 1']);
      out.discardStates('cold');
      changed = [state('hot', 'b-1', 3)];
      commit();
      assert.deepEqual(stateRows(db), [
        'cold {"device":"b-1"} 1',
        'hot {"device":"b-1"} 3',
        'hot {"device":"b-2"} 1',
      ]);
      // Groups that did not change are not written again: a row changed behind the writer's back stays.
      db.prepare(
        `UPDATE decision_state SET state = '{"streak":9}' WHERE rule = 'hot' AND key LIKE '%b-1%'`,
      ).run();
      changed = [state('hot', 'b-2', 2)];
      commit();
      assert.deepEqual(stateRows(db), [
        'cold {"device":"b-1"} 1',
        'hot {"device":"b-1"} 9',
        'hot {"device":"b-2"} 2',
      ]);
    } finally {
      db.close();
    }
  });
});

describe('REST API: /results, /decisions, /late, /alerts over real HTTP', () => {
  let db: Db;
  let server: ApiServer;
  let base: string;

  before(async () => {
    const clock = new ManualClock(Date.parse('2026-11-24T11:00:00.000Z'));
    db = openDatabase(':memory:', { synchronous: 'normal' });
    const metrics = new Metrics();
    const writer = new ReadingWriter(
      db,
      { batchSize: 100_000, flushInterval: 1000, maxPending: 100_000, storeReadings: true },
      { clock, metrics, log: silentLogger() },
    );
    const states = [
      { rule: 'hot', key: { device: 'b-1' }, state: 'firing' as const, streak: 0, lastEnd: 30_000 },
      { rule: 'hot', key: { device: 'b-2' }, state: 'ok' as const, streak: 1, lastEnd: 30_000 },
    ];
    const out = new OutputWriter({ clock, changedDecisionStates: () => states });
    writer.attach(out);
    out.add([
      result('hot', 'b-1', 0, 70),
      result('hot', 'b-2', 0, 71),
      result('hot', 'b-1', 10, 90),
      decision('hot', 'b-1', 20, 'firing'),
      result('hot', 'b-1', 10, 91, 1),
      result('cold', 'b-1', 0, 5),
      decision('hot', 'b-2', 20, 'firing'),
      decision('hot', 'b-2', 30, 'ok'),
      late('hot', 'b-1', 'temperature', 1, 1),
      late('hot', 'b-2', 'temperature', 2, 2),
      late('cold', 'b-1', 'power', 3, 3),
      late('hot', 'b-1', 'power', 4, 40),
      late('cold', 'b-2', 'temperature', 5, 50),
    ]);
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
    base = `http://127.0.0.1:${server.port}/api/v1`;
  });

  after(async () => {
    await server.stop();
    db.close();
  });

  const get = async <T>(path: string, status = 200): Promise<T> => {
    const res = await fetch(base + path);
    assert.equal(res.status, status, path);
    const body = (await res.json()) as T;
    openApi.check('GET', base + path, res.status, body);
    return body;
  };

  it('lists results as SPEC records, in emission order, filtered by rule, key and window end', async () => {
    const all = await get<Page<OutputRecord>>('/results');
    assert.equal(all.items.length, 5);
    assert.deepEqual(all.items[0], result('hot', 'b-1', 0, 70));
    const hot = await get<Page<{ values: { avg: number }; revision: number }>>(
      `/results?rule=hot&key=${encodeURIComponent('{"device":"b-1"}')}`,
    );
    assert.deepEqual(
      hot.items.map((r) => [r.values.avg, r.revision]),
      [
        [70, 0],
        [90, 0],
        [91, 1],
      ],
    );
    const late = await get<Page<unknown>>(`/results?rule=hot,cold&from=${encodeURIComponent(iso(20))}`);
    assert.equal(late.items.length, 2, 'windows ending at or after 10:00:20');
  });

  it('paginates with a cursor, both orders', async () => {
    for (const order of ['asc', 'desc']) {
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const page: Page<{ rule: string; key: unknown; start: string; revision: number }> = await get(
          `/results?limit=2&order=${order}${cursor ? `&cursor=${cursor}` : ''}`,
        );
        seen.push(...page.items.map((r) => `${r.rule} ${JSON.stringify(r.key)} ${r.start} ${r.revision}`));
        cursor = page.next;
      } while (cursor);
      assert.equal(new Set(seen).size, 5, order);
    }
  });

  it('lists decisions and what is firing now', async () => {
    const d = await get<Page<{ state: string; at: string }>>(
      `/decisions?key=${encodeURIComponent('{"device":"b-2"}')}`,
    );
    assert.deepEqual(
      d.items.map((x) => [x.state, x.at]),
      [
        ['firing', iso(20)],
        ['ok', iso(30)],
      ],
    );
    const alerts = await get<{ items: unknown[] }>('/alerts');
    assert.deepEqual(alerts.items, [
      { rule: 'hot', key: { device: 'b-1' }, state: 'firing', since: iso(20), values: { avg: 90 } },
    ]);
    assert.deepEqual((await get<{ items: unknown[] }>('/alerts?rule=cold')).items, []);
  });

  it('lists stored late readings, filtered by rule, device, metric and reading time, paged both ways', async () => {
    interface Late {
      type: string;
      rule: string;
      reading: { device: string; metric: string; value: number; ts: string };
      emittedAt: string;
    }
    const all = await get<Page<Late>>('/late');
    assert.deepEqual(
      all.items.map((l) => l.reading.value),
      [1, 2, 3, 4, 5],
    );
    assert.deepEqual(all.items[0], {
      type: 'late',
      rule: 'hot',
      reading: { device: 'b-1', metric: 'temperature', value: 1, ts: iso(1) },
      emittedAt: '2026-11-24T11:00:00.000Z',
    });
    assert.equal(all.next, null);
    const values = async (q: string) =>
      (await get<Page<Late>>(`/late?${q}`)).items.map((l) => l.reading.value);
    assert.deepEqual(await values('rule=hot'), [1, 2, 4]);
    assert.deepEqual(await values('device=b-1'), [1, 3, 4]);
    assert.deepEqual(await values('metric=temperature&device=b-2'), [2, 5]);
    assert.deepEqual(await values('rule=cold,hot&metric=power'), [3, 4]);
    assert.deepEqual(
      await values(`from=${encodeURIComponent(iso(3))}&to=${encodeURIComponent(iso(50))}`),
      [3, 4],
    );
    assert.deepEqual(await values('order=desc&limit=2'), [5, 4]);
    for (const order of ['asc', 'desc']) {
      const seen: number[] = [];
      let cursor: string | null = null;
      do {
        const page: Page<Late> = await get(
          `/late?limit=2&order=${order}${cursor ? `&cursor=${cursor}` : ''}`,
        );
        assert.ok(page.items.length <= 2);
        seen.push(...page.items.map((l) => l.reading.value));
        cursor = page.next;
      } while (cursor);
      assert.deepEqual(seen, order === 'asc' ? [1, 2, 3, 4, 5] : [5, 4, 3, 2, 1]);
    }
    for (const q of [
      'key={}',
      'device=bad%20name',
      'rule=Bad!',
      'limit=0',
      'cursor=zzz',
      'since=1',
      'from=2026-11-24T10:01:00Z&to=2026-11-24T10:00:00Z',
    ]) {
      const body = await get<{ error: { code: string; details: unknown[] } }>(`/late?${q}`, 400);
      assert.equal(body.error.code, 'bad_request', q);
      assert.ok(body.error.details.length > 0, q);
    }
  });

  it('refuses bad filters with 400 and details', async () => {
    for (const q of [
      'key=notjson',
      'key=[1]',
      'rule=Bad!',
      'limit=0',
      'to=yesterday',
      'cursor=zzz',
      'extra=1',
    ]) {
      const body = await get<{ error: { code: string; details: unknown[] } }>(`/results?${q}`, 400);
      assert.equal(body.error.code, 'bad_request', q);
      assert.ok(body.error.details.length > 0, q);
    }
  });
});
