import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { parseConfigText } from '../../src/config/load.js';
import { Gateway } from '../../src/gateway.js';
import type { Reading } from '../../src/model/reading.js';
import { createLogger } from '../../src/runtime/log.js';
import { iso, recentHour } from '../helpers/event-time.js';
import { openApi } from '../helpers/openapi.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

// From the clock: the gateway runs on it, and its retention would delete readings from a fixed date.
const T0 = recentHour();

interface ErrorBody {
  error: { code: string; message: string; details: { path?: string; message: string }[] };
}
interface RuleView {
  id: string;
  origin: 'config' | 'api';
  spec: Record<string, unknown>;
  createdAt?: string;
  updatedAt?: string;
  windows?: string;
  discardedGroups?: number;
}

const CONFIG_RULE = { id: 'cfg', window: { type: 'tumbling', size: '10s' }, aggregates: { avg: 'avg' } };

/** A rule that fires when a 10 s window's average is over `threshold`. */
const hot = (id: string, threshold = 80, metric = 'temperature') => ({
  id,
  match: { metric },
  window: { type: 'tumbling', size: '10s' },
  watermark: { idleTimeout: '1h' },
  aggregates: { avg: 'avg' },
  when: `avg > ${threshold}`,
  forward: ['results', 'decisions'],
});

describe('REST API: /rules over real HTTP, with the rules running in a gateway', () => {
  let tmp: TempDir;
  let gw: Gateway;
  let base: string;
  const logLines: string[] = [];

  const config = () =>
    parseConfigText(
      `api: { port: 0 }
broker: { enabled: false }
sources: []
store: { path: ${tmp.file('gw.db')}, flushInterval: 20ms }
rules:
  - ${JSON.stringify(CONFIG_RULE)}
`,
      'test.yaml',
      {},
    );

  const startGateway = async () => {
    const out = new PassThrough();
    out.on('data', (d: Buffer) => logLines.push(...d.toString().split('\n').filter(Boolean)));
    gw = new Gateway(config(), { log: createLogger('info', out) });
    await gw.start();
    base = `http://127.0.0.1:${gw.apiPort}/api/v1`;
  };

  before(async () => {
    tmp = makeTempDir('tidegate-rules-api-');
    await startGateway();
  });
  after(async () => {
    await gw.stop();
    tmp.remove();
  });

  const call = async <T>(method: string, path: string, body?: unknown, status?: number): Promise<T> => {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'content-type': 'application/json' };
    }
    const res = await fetch(base + path, init);
    const text = await res.text();
    const parsed = text === '' ? undefined : (JSON.parse(text) as unknown);
    if (status !== undefined) assert.equal(res.status, status, `${method} ${path}: ${text}`);
    openApi.check(method, base + path, res.status, parsed);
    return parsed as T;
  };

  /** Readings straight onto the bus, as the sources announce them; then one group commit. */
  const publish = (readings: Reading[]) => {
    for (const r of readings) gw.bus.emit('reading', r, 'test');
    gw.flush();
  };
  const reading = (device: string, value: number, s: number, metric = 'temperature'): Reading => ({
    device,
    metric,
    value,
    ts: T0 + s * 1000,
  });
  const decisions = async (rule: string) =>
    (await call<{ items: { state: string; at: string }[] }>('GET', `/decisions?rule=${rule}`, undefined, 200))
      .items;

  it('lists the config-file rules with their origin and their spec as written', async () => {
    const { items } = await call<{ items: RuleView[] }>('GET', '/rules', undefined, 200);
    assert.deepEqual(items, [{ id: 'cfg', origin: 'config', spec: CONFIG_RULE }]);
    assert.deepEqual(await call('GET', '/rules/cfg', undefined, 200), items[0]);
  });

  it('creates a rule (201) that runs at once and fires on the readings that follow', async () => {
    const created = await call<RuleView>('POST', '/rules', hot('boiler-hot'), 201);
    assert.equal(created.id, 'boiler-hot');
    assert.equal(created.origin, 'api');
    assert.deepEqual(created.spec, hot('boiler-hot'));
    assert.equal(created.windows, 'empty');
    assert.equal(created.discardedGroups, 0);
    assert.ok(created.createdAt && created.createdAt === created.updatedAt);
    const { items } = await call<{ items: RuleView[] }>('GET', '/rules', undefined, 200);
    assert.deepEqual(
      items.map((r) => [r.id, r.origin]),
      [
        ['cfg', 'config'],
        ['boiler-hot', 'api'],
      ],
    );
    publish([reading('b-1', 90, 1), reading('b-1', 91, 5), reading('b-1', 70, 11)]);
    assert.deepEqual(
      (await decisions('boiler-hot')).map((d) => [d.state, d.at]),
      [['firing', iso(T0 + 10_000)]],
    );
  });

  it('announces each applied change on the bus (what /stream sends as event: rule), and no refused one', async () => {
    const seen: unknown[] = [];
    const off = gw.bus.on('rule', (e) => seen.push(e));
    try {
      await call('POST', '/rules', hot('announced'), 201);
      await call('POST', '/rules', hot('announced'), 409);
      await call('PUT', '/rules/announced', hot('announced', 70), 200);
      await call('PUT', '/rules/cfg', hot('cfg'), 409);
      await call('PUT', '/rules/fresh', hot('fresh'), 201);
      await call('DELETE', '/rules/announced', undefined, 204);
      await call('DELETE', '/rules/fresh', undefined, 204);
      await call('DELETE', '/rules/announced', undefined, 404);
    } finally {
      off();
    }
    assert.deepEqual(seen, [
      { id: 'announced', change: 'created', origin: 'api' },
      { id: 'announced', change: 'replaced', origin: 'api' },
      { id: 'fresh', change: 'created', origin: 'api' },
      { id: 'announced', change: 'deleted', origin: 'api' },
      { id: 'fresh', change: 'deleted', origin: 'api' },
    ]);
  });

  it('refuses an existing id with 409, whether an API or a config rule', async () => {
    const a = await call<ErrorBody>('POST', '/rules', hot('boiler-hot'), 409);
    assert.equal(a.error.code, 'conflict');
    await call('POST', '/rules', { ...hot('cfg') }, 409);
  });

  it('refuses an invalid rule with 422 and every problem with its path; nothing is created', async () => {
    const bad = {
      id: 'bad',
      window: { type: 'tumbling', size: 'soon' },
      aggregates: { avg: 'mean' },
      when: 'x > 1',
    };
    const body = await call<ErrorBody>('POST', '/rules', bad, 422);
    assert.equal(body.error.code, 'unprocessable');
    const paths = body.error.details.map((d) => d.path).sort();
    assert.deepEqual(paths, ['aggregates.avg', 'when', 'window.size']);
    assert.ok(body.error.details.every((d) => d.message.length > 0));
    await call('GET', '/rules/bad', undefined, 404);
    const notObject = await call<ErrorBody>('POST', '/rules', [1, 2], 422);
    assert.ok(notObject.error.details.length > 0);
  });

  it('refuses other content types and malformed JSON with 400, bodies over 1 MiB with 413', async () => {
    for (const [path, method] of [
      ['/rules', 'POST'],
      ['/rules/validate', 'POST'],
      ['/rules/x', 'PUT'],
    ] as const) {
      const text = await fetch(base + path, {
        method,
        body: JSON.stringify(hot('x')),
        headers: { 'content-type': 'text/plain' },
      });
      assert.equal(text.status, 400, `${method} ${path}`);
      const err = (await text.json()) as ErrorBody;
      assert.equal(err.error.code, 'bad_request');
      assert.match(err.error.message, /application\/json/);
      const none = await fetch(base + path, { method });
      assert.equal(none.status, 400);
    }
    const malformed = await fetch(`${base}/rules`, {
      method: 'POST',
      body: '{"id": "x",',
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(malformed.status, 400);
    const big = { ...hot('big'), description: 'x'.repeat(1024 * 1024 + 1) };
    const tooBig = await fetch(`${base}/rules`, {
      method: 'POST',
      body: JSON.stringify(big),
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(tooBig.status, 413);
    assert.equal(((await tooBig.json()) as ErrorBody).error.code, 'payload_too_large');
    await call('GET', '/rules/big', undefined, 404);
    await call('GET', '/rules/x', undefined, 404);
  });

  it('validates without changing anything: 200 { valid: true } or 422 with every problem', async () => {
    assert.deepEqual(await call('POST', '/rules/validate', hot('maybe'), 200), { valid: true });
    const body = await call<ErrorBody>(
      'POST',
      '/rules/validate',
      { id: 'Maybe!', window: { type: 'hopping' }, clear: 'count < 1' },
      422,
    );
    assert.deepEqual(body.error.details.map((d) => d.path).sort(), ['clear', 'id', 'window.type']);
    await call('GET', '/rules/maybe', undefined, 404);
    // Validation knows nothing of ids in use: a valid rule is valid.
    assert.deepEqual(await call('POST', '/rules/validate', hot('cfg'), 200), { valid: true });
  });

  it('GET of an unknown rule is 404', async () => {
    const body = await call<ErrorBody>('GET', '/rules/nope', undefined, 404);
    assert.equal(body.error.code, 'not_found');
  });

  it('PUT: 409 for a config rule, 422 for an id that is not the path, 201 to create', async () => {
    await call('PUT', '/rules/cfg', { ...CONFIG_RULE, id: undefined }, 409);
    const mismatch = await call<ErrorBody>('PUT', '/rules/other', hot('boiler-hot'), 422);
    assert.deepEqual(
      mismatch.error.details.map((d) => d.path),
      ['id'],
    );
    const { id: _id, ...withoutId } = hot('humid', 50, 'humidity');
    const created = await call<RuleView>('PUT', '/rules/humid', withoutId, 201);
    assert.equal(created.windows, 'empty');
    assert.equal(created.spec.id, 'humid');
  });

  it('a PUT with an invalid rule changes nothing: the old rule keeps running', async () => {
    const before = await call<RuleView>('GET', '/rules/boiler-hot', undefined, 200);
    const body = await call<ErrorBody>(
      'PUT',
      '/rules/boiler-hot',
      { ...hot('boiler-hot'), when: 'avg >' },
      422,
    );
    assert.deepEqual(
      body.error.details.map((d) => d.path),
      ['when'],
    );
    assert.deepEqual(await call('GET', '/rules/boiler-hot', undefined, 200), before);
    // The old rule's open window [10 s, 20 s) still gets readings and closes: back to ok (clear = not when).
    publish([reading('b-1', 70, 15), reading('b-1', 70, 21)]);
    assert.deepEqual(
      (await decisions('boiler-hot')).map((d) => d.state),
      ['firing', 'ok'],
    );
  });

  it('a replaced rule keeps its place and starts fresh: windows and decision state discarded', async () => {
    publish([reading('b-2', 99, 22)]); // b-1 and b-2 now both have an open window in boiler-hot
    const replaced = await call<RuleView>('PUT', '/rules/boiler-hot', hot('boiler-hot', 95), 200);
    assert.equal(replaced.windows, 'discarded');
    assert.equal(replaced.discardedGroups, 2);
    assert.notEqual(replaced.updatedAt, undefined);
    const { items } = await call<{ items: RuleView[] }>('GET', '/rules', undefined, 200);
    assert.deepEqual(
      items.map((r) => r.id),
      ['cfg', 'boiler-hot', 'humid'],
    );
    const db = new Database(tmp.file('gw.db'), { readonly: true });
    const states = db.prepare("SELECT count(*) FROM decision_state WHERE rule = 'boiler-hot'").pluck().get();
    db.close();
    assert.equal(states, 0);
    // Fresh: the window [20 s, 30 s) starts empty with the new rule: only the 97 counts, 97 > 95 fires.
    publish([reading('b-1', 97, 25), reading('b-1', 60, 31)]);
    const results = await call<{ items: { values: { avg: number }; start: string }[] }>(
      'GET',
      '/results?rule=boiler-hot&key=%7B%22device%22%3A%22b-1%22%7D',
      undefined,
      200,
    );
    assert.deepEqual(results.items.at(-1)?.values, { avg: 97 });
    assert.deepEqual(
      (await decisions('boiler-hot')).map((d) => d.state),
      ['firing', 'ok', 'firing'],
    );
  });

  it('DELETE: 409 for a config rule, 404 for an unknown one, 204 and the rule stops', async () => {
    await call('DELETE', '/rules/cfg', undefined, 409);
    await call('DELETE', '/rules/nope', undefined, 404);
    const res = await fetch(`${base}/rules/humid`, { method: 'DELETE' });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('tidegate-windows'), 'discarded; groups=0');
    await call('GET', '/rules/humid', undefined, 404);
    publish([reading('h-1', 90, 1, 'humidity'), reading('h-1', 90, 11, 'humidity')]);
    assert.deepEqual(await decisions('humid'), []);
  });

  it('API rules persist: after a restart they are listed and run; a config id wins over a stored one', async () => {
    await call('POST', '/rules', hot('later', 10), 201);
    await gw.stop();
    // A stored rule with a config rule's id: the config wins, with a warning; the row stays.
    const db = new Database(tmp.file('gw.db'));
    db.prepare('INSERT INTO rules (id, spec, created_at, updated_at) VALUES (?, ?, 0, 0)').run(
      'cfg',
      JSON.stringify(hot('cfg')),
    );
    db.close();
    await startGateway();
    const { items } = await call<{ items: RuleView[] }>('GET', '/rules', undefined, 200);
    assert.deepEqual(
      items.map((r) => [r.id, r.origin]),
      [
        ['cfg', 'config'],
        ['boiler-hot', 'api'],
        ['later', 'api'],
      ],
    );
    assert.deepEqual(items[1]?.spec, hot('boiler-hot', 95));
    assert.ok(logLines.some((l) => l.includes('"rule":"cfg"') && l.includes('"level":"warn"')));
    publish([reading('b-9', 20, 101), reading('b-9', 20, 111)]);
    assert.deepEqual(
      (await decisions('later')).map((d) => [d.state, d.at]),
      [['firing', iso(T0 + 110_000)]],
    );
  });
});
