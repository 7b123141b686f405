import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ApiView } from '../../src/api/server.js';
import { ApiServer, createApp } from '../../src/api/server.js';
import { parseConfigText } from '../../src/config/load.js';
import { silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { type Db, openDatabase } from '../../src/store/database.js';
import { OutputsQuery } from '../../src/store/outputs-query.js';
import { ReadingsQuery } from '../../src/store/readings-query.js';
import { testView } from '../helpers/api-view.js';
import { openApi } from '../helpers/openapi.js';

const T0 = Date.parse('2026-11-24T10:00:00.000Z');
const TOKEN = 'a-very-secret-token-1234';

interface ErrorBody {
  error: { code: string; message: string; details: unknown[] };
}

describe('API security: rate limiting per client and security headers', () => {
  const log = silentLogger();
  let db: Db;
  const servers: ApiServer[] = [];

  const startApi = async (
    yaml: string,
    requestsPerMinute: number,
    view: Partial<ApiView> = {},
  ): Promise<string> => {
    const config = parseConfigText(yaml, 'test.yaml', {});
    const app = createApp(config.api, {
      query: new ReadingsQuery(db),
      outputs: new OutputsQuery(db),
      metrics: new Metrics(),
      log,
      rateLimit: { requestsPerMinute },
      view: testView({ startedAt: T0, now: () => T0, ...view }),
    });
    const server = new ApiServer(config.api, app, log);
    await server.start();
    servers.push(server);
    return `http://127.0.0.1:${server.port}`;
  };

  before(() => {
    db = openDatabase(':memory:', { synchronous: 'normal' });
  });

  after(async () => {
    for (const s of servers) await s.stop();
    db.close();
  });

  it('answers 429 with the SPEC error body and RateLimit headers once a client is over its limit', async () => {
    const base = await startApi('api: { port: 0 }\n', 5);
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${base}/api/v1/devices`);
      assert.equal(res.status, 200, `request ${i + 1}`);
      assert.ok(res.headers.get('ratelimit'), 'RateLimit header');
      openApi.check('GET', `${base}/api/v1/devices`, res.status, await res.json());
    }
    for (const path of ['/api/v1/devices', '/api/v1/health', '/metrics', '/api/v1/stream']) {
      const res = await fetch(base + path);
      assert.equal(res.status, 429, path);
      assert.match(res.headers.get('content-type') ?? '', /application\/json/);
      assert.ok(res.headers.get('retry-after'), 'Retry-After');
      const body = (await res.json()) as ErrorBody;
      openApi.check('GET', base + path, res.status, body);
      assert.equal(body.error.code, 'rate_limited');
      assert.match(body.error.message, /more than 5 requests per 60 s/);
      assert.deepEqual(body.error.details, []);
    }
  });

  it('limits requests before the token check, so tokens cannot be guessed at full speed', async () => {
    const base = await startApi(`api: { port: 0, token: ${TOKEN} }\n`, 3);
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${base}/api/v1/devices`, { headers: { authorization: `Bearer guess-${i}` } });
      statuses.push(res.status);
      await res.arrayBuffer();
    }
    assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
  });

  it('sets security headers suited to a JSON API on answers and errors alike', async () => {
    const base = await startApi('api: { port: 0 }\n', 0);
    for (const [path, status] of [
      ['/api/v1/health', 200],
      ['/api/v1/nope', 404],
      ['/api/v1/readings?bogus=1', 400],
      ['/metrics', 200],
    ] as const) {
      const res = await fetch(base + path);
      await res.arrayBuffer();
      assert.equal(res.status, status, path);
      const h = res.headers;
      const csp = h.get('content-security-policy') ?? '';
      assert.match(csp, /default-src 'none'/, path);
      assert.match(csp, /frame-ancestors 'none'/, path);
      assert.equal(h.get('x-content-type-options'), 'nosniff');
      assert.equal(h.get('x-frame-options'), 'DENY');
      assert.equal(h.get('referrer-policy'), 'no-referrer');
      assert.equal(h.get('cross-origin-resource-policy'), 'same-origin');
      assert.equal(h.get('cross-origin-opener-policy'), 'same-origin');
      assert.equal(h.get('cache-control'), 'no-store');
      assert.equal(h.get('x-powered-by'), null);
      assert.equal(h.get('strict-transport-security'), null, 'no HSTS on a plain-HTTP API');
      // Limit 0 turns rate limiting off.
      assert.equal(h.get('ratelimit'), null);
    }
  });

  /** A gateway whose health tells where its store is and what its upstream's error says. */
  const revealingView: Partial<ApiView> = {
    store: () => ({ path: '/var/lib/tidegate/site-7.db', bytes: 4096, pendingWrites: 0, lastError: null }),
    upstreams: () => [
      {
        id: 'cloud',
        type: 'mqtt',
        state: 'backoff',
        acked: 0,
        backlog: 3,
        oldestAgeSeconds: 12,
        lastError: 'connect ECONNREFUSED 10.20.30.40:8883',
        lastDeliveryAt: null,
      },
    ],
  };

  it('answers /health without the token with only status and version when api.token is set, and in full with it', async () => {
    const base = await startApi(`api: { port: 0, token: ${TOKEN} }\n`, 0, revealingView);
    for (const authorization of [undefined, 'Bearer not-the-token', `Basic ${TOKEN}`]) {
      const res = await fetch(`${base}/api/v1/health`, authorization ? { headers: { authorization } } : {});
      assert.equal(res.status, 200, `${authorization}`);
      const body = await res.json();
      openApi.check('GET', `${base}/api/v1/health`, res.status, body);
      assert.deepEqual(body, { status: 'degraded', version: '9.9.9' }, `${authorization}`);
    }
    const res = await fetch(`${base}/api/v1/health`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200);
    const full = (await res.json()) as { store: { path: string }; upstreams: { lastError: string }[] };
    openApi.check('GET', `${base}/api/v1/health`, res.status, full);
    assert.equal(full.store.path, '/var/lib/tidegate/site-7.db');
    assert.equal(full.upstreams[0]?.lastError, 'connect ECONNREFUSED 10.20.30.40:8883');
  });

  it('answers /health in full, without a token, when no api.token is set', async () => {
    const base = await startApi('api: { port: 0 }\n', 0, revealingView);
    const res = await fetch(`${base}/api/v1/health`);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { gateway: string; store: { path: string } };
    openApi.check('GET', `${base}/api/v1/health`, res.status, body);
    assert.equal(body.gateway, 'gw-test');
    assert.equal(body.store.path, '/var/lib/tidegate/site-7.db');
  });
});
