import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { brotliDecompressSync, gunzipSync, gzipSync } from 'node:zlib';
import { ApiServer, createApp } from '../../src/api/server.js';
import { Sessions } from '../../src/api/session.js';
import { parseConfigText } from '../../src/config/load.js';
import { silentLogger } from '../../src/runtime/log.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { type Db, openDatabase } from '../../src/store/database.js';
import { OutputsQuery } from '../../src/store/outputs-query.js';
import { ReadingsQuery } from '../../src/store/readings-query.js';
import { testView } from '../helpers/api-view.js';
import { openApi } from '../helpers/openapi.js';

/** The dashboard as `npm run build` made it (npm test builds before it tests). */
const UI_DIR = fileURLToPath(new URL('../../../dist/ui/', import.meta.url));
const TOKEN = 'dashboard-token-0123456789';

const validRule = {
  id: 'r1',
  match: { metric: 'temp' },
  window: { type: 'tumbling', size: '10s' },
  aggregates: { avg: 'avg' },
};

/**
 * The API on a free port, from a config's YAML, with an empty store's queries and rules that only
 * validate (a rule needs a window); `extra` adds or replaces dependencies.
 */
async function startApp(
  db: Db,
  servers: ApiServer[],
  yaml: string,
  extra: Partial<Parameters<typeof createApp>[1]>,
): Promise<ApiServer> {
  const config = parseConfigText(yaml, 'test.yaml', {});
  const unused = () => {
    throw new Error('not called');
  };
  const log = silentLogger();
  const app = createApp(config.api, {
    query: new ReadingsQuery(db),
    outputs: new OutputsQuery(db),
    metrics: new Metrics(),
    log,
    view: testView(),
    rules: {
      list: () => [],
      get: () => null,
      validate: (input) =>
        (input as { window?: unknown }).window ? [] : [{ path: ['window'], message: 'required' }],
      create: unused,
      put: unused,
      remove: unused,
    },
    ...extra,
  });
  const server = new ApiServer(config.api, app, log);
  await server.start();
  servers.push(server);
  return server;
}

describe('the dashboard: static files, caching, CSP', () => {
  let db: Db;
  const servers: ApiServer[] = [];

  const start = async (yaml: string, options: { dashboardDir?: string } = {}) =>
    `http://127.0.0.1:${(await startApp(db, servers, yaml, { dashboardDir: options.dashboardDir ?? UI_DIR })).port}`;

  before(() => {
    db = openDatabase(':memory:', { synchronous: 'off' });
  });
  after(async () => {
    for (const s of servers) await s.stop();
    db.close();
  });

  const assetsOf = (html: string) =>
    [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1] as string);

  it('serves index.html at every page URL, no-store, with a CSP that allows its own scripts only', async () => {
    const base = await start(`api: { port: 0, token: ${TOKEN} }\n`);
    for (const path of [
      '/',
      '/devices',
      '/devices/boiler-1',
      '/rules',
      '/rules/new',
      '/rules/r1',
      '/alerts',
    ]) {
      const res = await fetch(base + path);
      const body = await res.text();
      assert.equal(res.status, 200, path);
      assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8', path);
      assert.equal(res.headers.get('cache-control'), 'no-store', path);
      assert.match(body, /<div id="app">/, path);
      const csp = res.headers.get('content-security-policy') ?? '';
      assert.match(csp, /(^|; )script-src 'self'(;|$)/, path);
      assert.match(csp, /(^|; )default-src 'none'(;|$)/);
      assert.match(csp, /(^|; )connect-src 'self'(;|$)/);
      assert.match(csp, /(^|; )frame-ancestors 'none'(;|$)/);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
      // Plain HTTP on a LAN: nothing may be upgraded to https, and no HSTS.
      assert.doesNotMatch(csp, /upgrade-insecure-requests/);
      assert.equal(res.headers.get('strict-transport-security'), null);
      // Under no-referrer a browser sends `Origin: null` with the page's own POSTs.
      assert.equal(res.headers.get('referrer-policy'), 'same-origin');
      assert.equal(res.headers.get('x-frame-options'), 'DENY');
    }
    // Not pages: the API's answers (401 here, with a token; 404 without), and its strict CSP.
    const open = await start('api: { port: 0 }\n');
    for (const path of ['/nope', '/devices/a/b', '/assets/missing-123.js']) {
      assert.equal((await fetch(base + path)).status, 401, path);
      const res = await fetch(open + path);
      assert.equal(res.status, 404, path);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'not_found');
      assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    }
    // The API still needs the token.
    assert.equal((await fetch(`${base}/api/v1/devices`)).status, 401);
  });

  it('has no inline script or handler in index.html, and every asset it names exists', async () => {
    const html = readFileSync(join(UI_DIR, 'index.html'), 'utf8');
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'an inline <script>');
    assert.doesNotMatch(html, /\son[a-z]+=/i, 'an inline handler');
    assert.doesNotMatch(html, /https?:\/\//, 'nothing from the network');
    const assets = assetsOf(html);
    assert.equal(assets.filter((a) => a.endsWith('.js')).length, 1);
    assert.equal(assets.filter((a) => a.endsWith('.css')).length, 1);
    for (const a of assets)
      assert.match(a, /^\/assets\/[a-z]+-[A-Za-z0-9]{8}\.(js|css|svg)$/, `hashed: ${a}`);
  });

  it('keeps the JavaScript within 150 KB gzipped', () => {
    const js = readdirSync(join(UI_DIR, 'assets')).filter((f) => f.endsWith('.js'));
    assert.ok(js.length > 0, 'no JavaScript built');
    const gzipped = js.reduce(
      (n, f) => n + gzipSync(readFileSync(join(UI_DIR, 'assets', f)), { level: 9 }).length,
      0,
    );
    assert.ok(gzipped <= 150 * 1024, `${gzipped} bytes gzipped`);
    // And it is a real bundle (Preact, uPlot, the pages), not an empty file.
    assert.ok(gzipped > 20 * 1024, `${gzipped} bytes gzipped`);
  });

  it('sends assets immutable for a year, precompressed as the browser accepts', async () => {
    const base = await start('api: { port: 0 }\n');
    const html = await (await fetch(base)).text();
    for (const asset of assetsOf(html)) {
      const plain = await fetch(base + asset, { headers: { 'accept-encoding': 'identity' } });
      const identity = Buffer.from(await plain.arrayBuffer());
      assert.equal(plain.status, 200, asset);
      assert.equal(plain.headers.get('cache-control'), 'public, max-age=31536000, immutable', asset);
      assert.equal(plain.headers.get('vary'), 'Accept-Encoding');
      assert.equal(plain.headers.get('content-encoding'), null);
      assert.match(
        plain.headers.get('content-type') ?? '',
        asset.endsWith('.js') ? /^text\/javascript/ : /^(text\/css|image\/svg)/,
      );
      assert.deepEqual(identity, readFileSync(join(UI_DIR, asset)));
      // fetch() would decompress: ask node:http-level bytes through the raw body instead.
      for (const [accept, encoding, decode] of [
        ['gzip, deflate, br', 'br', brotliDecompressSync],
        ['gzip', 'gzip', gunzipSync],
        ['br;q=0, gzip;q=0.5', 'gzip', gunzipSync],
      ] as const) {
        const res = await rawGet(base + asset, accept);
        assert.equal(res.headers['content-encoding'], encoding, `${asset} ${accept}`);
        assert.equal(Number(res.headers['content-length']), res.body.length);
        assert.deepEqual(decode(res.body), identity, `${asset} ${accept}`);
        assert.ok(res.body.length < identity.length || identity.length < 1024, 'compressed');
      }
    }
    const head = await fetch(base + (assetsOf(html)[0] as string), { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal((await head.arrayBuffer()).byteLength, 0);
  });

  it('says so when the dashboard was not built, and leaves the API alone', async () => {
    const base = await start('api: { port: 0 }\n', { dashboardDir: '/nonexistent/ui' });
    const res = await fetch(base);
    assert.equal(res.status, 404);
    assert.match(await res.text(), /npm run build/);
    assert.equal((await fetch(`${base}/api/v1/devices`)).status, 200);
  });
});

describe('dashboard sign-in: the token for a session cookie (SPEC §5)', () => {
  let db: Db;
  const servers: ApiServer[] = [];
  let now = Date.parse('2026-11-24T10:00:00.000Z');

  const start = async (yaml: string) => {
    const server = await startApp(db, servers, yaml, { session: { now: () => now, maxAgeMs: 3_600_000 } });
    return { base: `http://127.0.0.1:${server.port}`, host: `127.0.0.1:${server.port}`, server };
  };

  before(() => {
    db = openDatabase(':memory:', { synchronous: 'off' });
  });
  after(async () => {
    for (const s of servers) await s.stop();
    db.close();
  });

  const signIn = (base: string, token: string, headers: Record<string, string> = {}) =>
    fetch(`${base}/api/v1/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ token }),
    });
  const cookieOf = (res: Response) => (res.headers.get('set-cookie') ?? '').split(';')[0] as string;

  it('refuses a wrong token with 401 and no cookie, and sets an HttpOnly SameSite=Strict cookie for the right one', async () => {
    const { base } = await start(`api: { port: 0, token: ${TOKEN} }\n`);
    const state = await fetch(`${base}/api/v1/session`);
    const stateBody = await state.json();
    openApi.check('GET', `${base}/api/v1/session`, state.status, stateBody);
    assert.deepEqual(stateBody, { required: true, signedIn: false });

    const wrong = await signIn(base, 'not-the-token-at-all');
    const wrongBody = (await wrong.json()) as { error: { code: string; details: { path: string }[] } };
    assert.equal(wrong.status, 401);
    openApi.check('POST', `${base}/api/v1/session`, wrong.status, wrongBody);
    assert.equal(wrongBody.error.code, 'unauthorized');
    assert.equal(wrongBody.error.details[0]?.path, 'token');
    assert.equal(wrong.headers.get('set-cookie'), null);

    const right = await signIn(base, TOKEN);
    assert.equal(right.status, 204);
    openApi.check('POST', `${base}/api/v1/session`, right.status, undefined);
    const setCookie = right.headers.get('set-cookie') ?? '';
    assert.match(setCookie, /^tidegate_session=[A-Za-z0-9_-]+\.[a-z0-9]+\.[A-Za-z0-9_-]+; /);
    assert.match(setCookie, /; HttpOnly(;|$)/);
    assert.match(setCookie, /; SameSite=Strict(;|$)/);
    assert.match(setCookie, /; Path=\/(;|$)/);
    assert.match(setCookie, /; Max-Age=3600(;|$)/);
    assert.doesNotMatch(setCookie, /Secure/, 'plain HTTP: a Secure cookie would never come back');
    assert.ok(!setCookie.includes(TOKEN), 'the cookie is not the token');

    const cookie = cookieOf(right);
    const devices = await fetch(`${base}/api/v1/devices`, { headers: { cookie } });
    assert.equal(devices.status, 200);
    const health = (await (await fetch(`${base}/api/v1/health`, { headers: { cookie } })).json()) as object;
    assert.ok('store' in health, 'the full health report, as with the bearer token');
    assert.deepEqual(await (await fetch(`${base}/api/v1/session`, { headers: { cookie } })).json(), {
      required: true,
      signedIn: true,
    });
    assert.equal((await fetch(`${base}/metrics`, { headers: { cookie } })).status, 200);
  });

  it('marks the cookie Secure behind a TLS terminator', async () => {
    const { base } = await start(`api: { port: 0, token: ${TOKEN} }\n`);
    const res = await signIn(base, TOKEN, { 'x-forwarded-proto': 'https' });
    assert.equal(res.status, 204);
    assert.match(res.headers.get('set-cookie') ?? '', /; Secure(;|$)/);
  });

  it('lets a change with the cookie through only from the same origin', async () => {
    const { base, host } = await start(`api: { port: 0, token: ${TOKEN} }\n`);
    const cookie = cookieOf(await signIn(base, TOKEN));
    const validate = (headers: Record<string, string>) =>
      fetch(`${base}/api/v1/rules/validate`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify(validRule),
      });
    for (const origin of [
      undefined,
      'null',
      'http://evil.example',
      `http://${host}.evil.example`,
      `https://127.0.0.1:1`,
    ]) {
      const res = await validate({ cookie, ...(origin ? { origin } : {}) });
      const body = (await res.json()) as { error: { code: string } };
      assert.equal(res.status, 403, `Origin ${origin}`);
      openApi.check('POST', `${base}/api/v1/rules/validate`, res.status, body);
      assert.equal(body.error.code, 'forbidden');
    }
    const same = await validate({ cookie, origin: `http://${host}` });
    assert.equal(same.status, 200);
    assert.deepEqual(await same.json(), { valid: true });
    // Behind a proxy that forwards the browser's host.
    const proxied = await validate({
      cookie,
      origin: 'https://gw.example',
      'x-forwarded-host': 'gw.example',
    });
    assert.equal(proxied.status, 200);
    // Reads need no Origin; the bearer header is judged alone (no cookie, no origin check).
    assert.equal((await fetch(`${base}/api/v1/rules`, { headers: { cookie } })).status, 200);
    const bearer = await validate({ authorization: `Bearer ${TOKEN}`, origin: 'http://evil.example' });
    assert.equal(bearer.status, 200);
    // A wrong bearer token is not rescued by a good cookie.
    assert.equal(
      (await validate({ authorization: 'Bearer wrong', cookie, origin: `http://${host}` })).status,
      401,
    );
    // Signing in from another origin (login CSRF) is refused too.
    const foreign = await signIn(base, TOKEN, { origin: 'http://evil.example' });
    assert.equal(foreign.status, 403);
    assert.equal(foreign.headers.get('set-cookie'), null);
  });

  it('signs out: the cookie is cleared and refused from then on, even if a copy was kept', async () => {
    const { base, host } = await start(`api: { port: 0, token: ${TOKEN} }\n`);
    const cookie = cookieOf(await signIn(base, TOKEN));
    const out = await fetch(`${base}/api/v1/session`, {
      method: 'DELETE',
      headers: { cookie, origin: `http://${host}` },
    });
    assert.equal(out.status, 204);
    openApi.check('DELETE', `${base}/api/v1/session`, out.status, undefined);
    assert.match(
      out.headers.get('set-cookie') ?? '',
      /^tidegate_session=; Path=\/; Max-Age=0; HttpOnly; SameSite=Strict/,
    );
    assert.equal((await fetch(`${base}/api/v1/devices`, { headers: { cookie } })).status, 401);
    assert.deepEqual(await (await fetch(`${base}/api/v1/session`, { headers: { cookie } })).json(), {
      required: true,
      signedIn: false,
    });
  });

  it('refuses forged, tampered and expired cookies; a session outlives a restart but not a new token', async () => {
    const { base } = await start(`api: { port: 0, token: ${TOKEN} }\n`);
    const cookie = cookieOf(await signIn(base, TOKEN));
    const [name, value] = cookie.split('=') as [string, string];
    const [id, exp, mac] = value.split('.') as [string, string, string];
    const later = (Number.parseInt(exp, 36) + 86_400_000).toString(36);
    for (const bad of [
      `${name}=${id}.${later}.${mac}`,
      `${name}=${id.slice(1)}x.${exp}.${mac}`,
      `${name}=${id}.${exp}.${mac.slice(0, -2)}`,
      `${name}=${id}.${exp}`,
      `${name}=`,
      `other=${value}`,
    ]) {
      assert.equal((await fetch(`${base}/api/v1/devices`, { headers: { cookie: bad } })).status, 401, bad);
    }
    // The same token after a restart (a new app): still signed in.
    const restarted = await start(`api: { port: 0, token: ${TOKEN} }\n`);
    assert.equal((await fetch(`${restarted.base}/api/v1/devices`, { headers: { cookie } })).status, 200);
    // A new token ends every session.
    const rotated = await start(`api: { port: 0, token: ${TOKEN}-rotated }\n`);
    assert.equal((await fetch(`${rotated.base}/api/v1/devices`, { headers: { cookie } })).status, 401);
    // An hour later (maxAgeMs) the session has expired.
    now += 3_600_000;
    assert.equal((await fetch(`${base}/api/v1/devices`, { headers: { cookie } })).status, 401);
  });

  it('has no sign-in without api.token (loopback only)', async () => {
    const { base } = await start('api: { port: 0 }\n');
    assert.deepEqual(await (await fetch(`${base}/api/v1/session`)).json(), {
      required: false,
      signedIn: true,
    });
    const res = await signIn(base, 'anything-at-all-here');
    const body = await res.json();
    assert.equal(res.status, 409);
    openApi.check('POST', `${base}/api/v1/session`, res.status, body);
    assert.equal(res.headers.get('set-cookie'), null);
  });

  it('remembers signed-out sessions within a cap, each only until it would have expired', () => {
    let t = 0;
    const sessions = new Sessions(TOKEN, { now: () => t, maxAgeMs: 1000, maxRevoked: 3 });
    const cookies = Array.from({ length: 5 }, () => sessions.issue());
    for (const c of cookies) assert.ok(sessions.verify(c));
    for (const c of cookies) sessions.revoke(c);
    assert.equal(sessions.revokedCount, 3);
    for (const c of cookies.slice(2)) assert.equal(sessions.verify(c), null);
    t = 2000;
    sessions.revoke(sessions.issue());
    assert.equal(sessions.revokedCount, 1, 'expired ones are forgotten');
    assert.equal(new Sessions(undefined).required, false);
  });
});

/** A GET whose body comes as sent (fetch would decode Content-Encoding). */
async function rawGet(url: string, acceptEncoding: string) {
  const { request } = await import('node:http');
  return new Promise<{ headers: Record<string, string | string[] | undefined>; body: Buffer }>(
    (resolve, reject) => {
      const req = request(url, { headers: { 'accept-encoding': acceptEncoding } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    },
  );
}
