import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type express from 'express';
import { apiRoutes, openApiDocument } from '../../src/api/openapi.js';
import { BACKTESTS_ROUTE_DOCS } from '../../src/api/routes/backtests.js';
import { RULES_ROUTE_DOCS } from '../../src/api/routes/rules.js';
import { STREAM_ROUTE_DOCS } from '../../src/api/routes/stream.js';
import { ApiServer, createApp } from '../../src/api/server.js';
import { SESSION_ROUTE_DOCS } from '../../src/api/session.js';
import { parseConfigText } from '../../src/config/load.js';
import { ManualClock } from '../../src/runtime/clock.js';
import { silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { type Db, openDatabase } from '../../src/store/database.js';
import { OutputsQuery } from '../../src/store/outputs-query.js';
import { ReadingsQuery } from '../../src/store/readings-query.js';
import { testView } from '../helpers/api-view.js';
import { openApi } from '../helpers/openapi.js';

interface Layer {
  name: string;
  rawPath?: string;
  route?: { path: string; methods: Record<string, boolean> };
  handle: { stack?: Layer[] };
}

/** Every (method, path) the express app routes, in OpenAPI path style. */
function routerRoutes(app: express.Express): string[] {
  const out: string[] = [];
  const walk = (stack: Layer[], prefix: string) => {
    for (const layer of stack) {
      if (layer.route) {
        for (const method of Object.keys(layer.route.methods)) {
          out.push(
            `${method.toUpperCase()} ${(prefix + layer.route.path).replace(/:([A-Za-z_]+)/g, '{$1}')}`,
          );
        }
      } else if (layer.name === 'router' && layer.handle.stack) {
        walk(layer.handle.stack, prefix + (layer.rawPath ?? ''));
      }
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack, '');
  return out.sort();
}

describe('the OpenAPI document', () => {
  let db: Db;
  let app: express.Express;
  let server: ApiServer;
  let base: string;

  before(async () => {
    db = openDatabase(':memory:', { synchronous: 'off' });
    const config = parseConfigText('api: { port: 0 }\n', 'test.yaml', {});
    const clock = new ManualClock(0);
    app = createApp(config.api, {
      query: new ReadingsQuery(db),
      outputs: new OutputsQuery(db),
      metrics: new Metrics(),
      log: silentLogger(),
      view: testView({ gatewayId: 'gw', version: '1.2.3', staleAfter: 1, now: () => clock.now() }),
    });
    server = new ApiServer(config.api, app, silentLogger());
    await server.start();
    base = `http://127.0.0.1:${server.port}`;
  });

  after(async () => {
    await server.stop();
    db.close();
  });

  it('documents every route of the router, and nothing the router lacks', async () => {
    const doc = (await (await fetch(`${base}/api/v1/openapi.json`)).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    const documented = Object.entries(doc.paths)
      .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`))
      .sort();
    assert.deepEqual(routerRoutes(app), documented);
    // The base routes are all there (the rules routes appear when the gateway mounts them).
    for (const r of apiRoutes())
      assert.ok(documented.includes(`${r.method.toUpperCase()} ${r.path}`), r.path);
  });

  it('gives every operation a unique operationId, and the document a license', () => {
    const doc = openApiDocument('1', [
      ...RULES_ROUTE_DOCS,
      ...BACKTESTS_ROUTE_DOCS,
      ...STREAM_ROUTE_DOCS,
    ]) as {
      info: { license?: { name: string; identifier?: string } };
      paths: Record<string, Record<string, { operationId?: string }>>;
    };
    const ids = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops).map(([method, op]) => {
        assert.match(op.operationId ?? '', /^[a-z][A-Za-z]+$/, `${method} ${path} has no operationId`);
        return op.operationId;
      }),
    );
    assert.equal(ids.length, 24, `${ids.length} operations`);
    assert.equal(new Set(ids).size, ids.length, `duplicate operationIds: ${ids.join(', ')}`);
    assert.deepEqual(doc.info.license, { name: 'MIT', identifier: 'MIT' });
  });

  it('with rules and backtests mounted, documents their routes too, and again nothing more or less', () => {
    const config = parseConfigText('api: { port: 0 }\n', 'test.yaml', {});
    const unused = () => {
      throw new Error('not called');
    };
    const withRules = createApp(config.api, {
      query: new ReadingsQuery(db),
      outputs: new OutputsQuery(db),
      metrics: new Metrics(),
      log: silentLogger(),
      rules: {
        list: () => [],
        get: () => null,
        validate: () => [],
        create: unused,
        put: unused,
        remove: unused,
      },
      backtests: {
        create: unused,
        list: () => [],
        get: () => null,
        records: () => null,
        cancel: unused,
        isRefusal: (_err: unknown): _err is never => false,
      },
      view: testView({ gatewayId: 'gw', version: '1', staleAfter: 1 }),
    });
    const documented = apiRoutes([
      ...RULES_ROUTE_DOCS,
      ...BACKTESTS_ROUTE_DOCS,
      ...STREAM_ROUTE_DOCS,
      ...SESSION_ROUTE_DOCS,
    ])
      .map((r) => `${r.method.toUpperCase()} ${r.path}`)
      .sort();
    assert.deepEqual(routerRoutes(withRules), documented);
    assert.ok(documented.includes('PUT /api/v1/rules/{id}'));
    assert.ok(documented.includes('DELETE /api/v1/backtests/{id}'));
  });

  it('is served at /api/v1/openapi.json as OpenAPI 3.1 with every path', async () => {
    const res = await fetch(`${base}/api/v1/openapi.json`);
    assert.equal(res.status, 200);
    const doc = (await res.json()) as {
      openapi: string;
      info: { version: string };
      paths: Record<string, unknown>;
    };
    openApi.check('GET', `${base}/api/v1/openapi.json`, 200, doc);
    assert.equal(doc.openapi, '3.1.0');
    assert.equal(doc.info.version, '1.2.3');
    const readings = doc.paths['/api/v1/readings'] as {
      get: { parameters: { name: string; in: string }[] };
    };
    assert.deepEqual(readings.get.parameters.map((p) => p.name).sort(), [
      'agg',
      'cursor',
      'device',
      'from',
      'limit',
      'metric',
      'order',
      'step',
      'to',
    ]);
  });

  it('the checker refuses what the document does not describe', () => {
    assert.throws(
      () => openApi.check('GET', `${base}/api/v1/nowhere`, 200, {}),
      /not in the OpenAPI document/,
    );
    assert.throws(
      () => openApi.check('GET', `${base}/api/v1/alerts`, 200, { items: [{ rule: 1 }] }),
      /does not match/,
    );
    assert.throws(
      () => openApi.check('GET', `${base}/api/v1/alerts`, 418, {}),
      /status 418 is not documented/,
    );
  });
});
