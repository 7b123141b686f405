import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { parse, stringify } from 'yaml';
import { eventually, ROOT, type RunningGateway, startGateway } from '../helpers/gateway-process.js';
import { fillStore, type HistorySpec, historyReadings } from '../helpers/history.js';

/**
 * The dashboard in Debian's Chromium (playwright-core, never a downloaded browser), against the
 * built gateway running the shipped config/gateway.yaml (simulator, broker, rules) with a token,
 * random ports and a store that already holds two hours of `dev-00` history. Screenshots go to
 * build/artifacts/dashboard.
 */
const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'browser-test-token-0123456789';
const ARTIFACTS = join(ROOT, 'build', 'artifacts', 'dashboard');
const HOUR = 3_600_000;

describe('the dashboard in a browser', { timeout: 240_000 }, () => {
  let dir: string;
  let configFile: string;
  let gateway: RunningGateway;
  let browser: Browser;
  let base: string;
  let history: HistorySpec;
  const contexts: BrowserContext[] = [];
  const cspViolations: string[] = [];

  const writeConfig = (port: number) => {
    const config = parse(readFileSync(join(ROOT, 'config', 'gateway.yaml'), 'utf8')) as Record<
      string,
      unknown
    >;
    config['api'] = { ...(config['api'] as object), port, token: TOKEN, rateLimit: 0 };
    config['broker'] = { ...(config['broker'] as object), host: '127.0.0.1', port: 0 };
    config['store'] = { ...(config['store'] as object), path: join(dir, 'tidegate.db') };
    config['rules'] = join(ROOT, 'config', 'rules.yaml');
    // In order and on time: a chart over a past range keeps its points while the test reads them.
    config['sources'] = (config['sources'] as Record<string, unknown>[]).map((s) =>
      s['type'] === 'simulator' ? { ...s, late: 0, outOfOrder: 0 } : s,
    );
    writeFileSync(configFile, stringify(config));
  };

  const api = async <T>(path: string, init: RequestInit = {}): Promise<T> => {
    const res = await fetch(base + path, {
      ...init,
      headers: { authorization: `Bearer ${TOKEN}`, ...(init.headers as Record<string, string>) },
    });
    assert.ok(res.ok, `${path}: ${res.status}`);
    return (await res.json()) as T;
  };

  const newPage = async (viewport = { width: 1200, height: 900 }): Promise<Page> => {
    const context = await browser.newContext({ viewport });
    contexts.push(context);
    const page = await context.newPage();
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    page.on('pageerror', (e) => cspViolations.push(`page error: ${e.message}`));
    return page;
  };

  /** Opens `path` and signs in through the form. */
  const signedIn = async (path: string, viewport?: { width: number; height: number }): Promise<Page> => {
    const page = await newPage(viewport);
    await page.goto(base + path);
    await page.getByLabel('Token').fill(TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('navigation', { name: 'Main' }).waitFor();
    return page;
  };

  const shot = (page: Page, name: string) =>
    page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (.ci/run does)`);
    mkdirSync(ARTIFACTS, { recursive: true });
    dir = mkdtempSync(join(tmpdir(), 'tidegate-ui-'));
    configFile = join(dir, 'gateway.yaml');
    // Two hours of one reading each 10 s, ending a minute ago: the device page's 24 h chart.
    history = {
      devices: 1,
      readings: 720,
      start: Date.now() - 2 * HOUR - 60_000,
      step: 10_000,
      metric: 'temp',
    };
    fillStore(join(dir, 'tidegate.db'), history);
    // Two late readings stored before the start: the Alerts page lists them from /late.
    const db = new Database(join(dir, 'tidegate.db'));
    const insert = db.prepare(
      'INSERT INTO late_readings (rule, device, metric, value, ts, emitted_at) VALUES (?, ?, ?, ?, ?, ?)',
    );
    insert.run('sim-temperature', 'dev-00', 'temp', 41.5, Date.now() - HOUR, Date.now() - 60_000);
    insert.run('sim-humidity', 'dev-01', 'humidity', 77.25, Date.now() - HOUR / 2, Date.now() - 30_000);
    db.close();
    writeConfig(0);
    gateway = await startGateway(configFile, { cwd: ROOT });
    base = `http://127.0.0.1:${gateway.apiPort}`;
    browser = await chromium.launch({ executablePath: CHROMIUM });
  });

  afterEach(async () => {
    for (const c of contexts.splice(0)) await c.close();
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    await gateway?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a wrong token on the sign-in page, signs in with the right one, and signs out', async () => {
    const page = await newPage();
    await page.goto(`${base}/devices`);
    await page.getByLabel('Token').fill('not-the-right-token-at-all');
    await page.getByRole('button', { name: 'Sign in' }).click();
    const error = page.getByRole('alert');
    await error.waitFor();
    assert.match((await error.textContent()) ?? '', /Wrong token/);
    assert.equal(await page.getByRole('navigation', { name: 'Main' }).count(), 0, 'still signed out');
    assert.deepEqual(await page.context().cookies(), []);
    await shot(page, 'sign-in-refused');

    await page.getByLabel('Token').fill(TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Devices' }).waitFor();
    assert.equal(new URL(page.url()).pathname, '/devices', 'the page asked for, after the sign-in');
    const [cookie, ...others] = await page.context().cookies();
    assert.equal(others.length, 0);
    assert.equal(cookie?.name, 'tidegate_session');
    assert.equal(cookie?.httpOnly, true);
    assert.equal(cookie?.sameSite, 'Strict');
    assert.ok(!cookie?.value.includes(TOKEN));
    // The token is nowhere the page can read it back from.
    const stored = await page.evaluate<string>(
      'JSON.stringify([{ ...localStorage }, { ...sessionStorage }, document.cookie])',
    );
    assert.ok(!stored.includes(TOKEN), stored);
    assert.equal(stored, '[{},{},""]');
    assert.ok(!page.url().includes(TOKEN));

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Token').waitFor();
    assert.deepEqual(await page.context().cookies(), []);
    assert.equal((await page.request.get(`${base}/api/v1/devices`)).status(), 401);
  });

  it('lists the simulated devices as online on the overview', async () => {
    const page = await signedIn('/');
    const devices = page.getByRole('region', { name: 'Devices needing attention first' });
    for (const id of ['sim-1', 'sim-2', 'sim-3']) {
      const row = devices.getByRole('row').filter({ has: page.getByRole('cell', { name: id, exact: true }) });
      await row.getByText('online', { exact: true }).waitFor();
    }
    const sources = page.getByRole('region', { name: 'Sources' });
    await sources.getByRole('row').filter({ hasText: 'simulator' }).getByText('connected').waitFor();
    // The ingest rate is live: three devices, three metrics each, every second.
    const rate = await eventually(
      async () => {
        const text = (await page.getByTestId('ingest-rate').textContent()) ?? '';
        const v = Number(text);
        return Number.isFinite(v) && v > 0 ? v : undefined;
      },
      10_000,
      'an ingest rate',
    );
    assert.ok(rate > 3 && rate < 30, `rate ${rate}`);
    await shot(page, 'overview');
  });

  it('draws a device chart with as many points as the downsampled history has, at most one per pixel', async () => {
    const page = await signedIn('/devices/dev-00?range=24h');
    const chart = page.getByRole('img', { name: 'dev-00 temp' });
    await chart.waitFor();
    const charts = page.locator('.charts');
    const from = Number(await charts.getAttribute('data-from'));
    const to = Number(await charts.getAttribute('data-to'));
    const step = Number(await charts.getAttribute('data-step'));
    const width = (await chart.boundingBox())?.width ?? 0;
    await eventually(async () => ((await chart.getAttribute('data-points')) !== '0' ? true : undefined));
    const points = Number(await chart.getAttribute('data-points'));
    // The readings of the history in the window, bucketed by the step the page chose.
    const buckets = new Set<number>();
    for (const r of historyReadings(history)) {
      const ts = r.ts as number;
      if (ts >= from && ts < to) buckets.add(ts - (ts % step));
    }
    assert.equal(points, buckets.size, `step ${step} ms over ${to - from} ms`);
    assert.ok(points > 20, `${points} points`);
    assert.ok(points <= width, `${points} points on ${width} px`);
    assert.ok(points < history.readings, 'downsampled');
    assert.equal(step % 1000, 0);
    // And the API gives the same for that query.
    const page2 = await api<{ items: unknown[] }>(
      `/api/v1/readings?device=dev-00&metric=temp&from=${from}&to=${to}&step=${step / 1000}s&agg=avg&limit=100000`,
    );
    assert.equal(page2.items.length, points);
    assert.equal(await page.getByRole('link', { name: 'CSV' }).count(), 1);
    const csv = await page.getByRole('link', { name: 'CSV' }).getAttribute('href');
    assert.match(csv ?? '', /^\/api\/v1\/readings\/export\?device=dev-00&from=.+&to=.+&format=csv$/);
    const exported = await page.request.get(base + csv);
    assert.equal(exported.status(), 200, 'the export link works with the session cookie');
    assert.match(await exported.text(), /^device,metric,ts,value,unit,tags\r\n/);
    await shot(page, 'device-history');
  });

  it('shows a live value from the stream within 2 s, over one stream connection', async () => {
    const page = await signedIn('/devices/sim-1');
    const temperature = page.locator('.latest [data-metric="temperature"] small');
    await temperature.waitFor();
    const first = await temperature.textContent();
    const started = Date.now();
    await eventually(
      async () => ((await temperature.textContent()) !== first ? true : undefined),
      2000,
      'a new live temperature',
    );
    assert.ok(Date.now() - started <= 2100);
    const chart = page.getByRole('img', { name: 'sim-1 temperature' });
    await chart.waitFor();
    // This tab is the only one open: the gateway counts one stream client.
    const metrics = await (
      await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
    ).text();
    assert.match(metrics, /^tidegate_stream_clients 1$/m);
    await shot(page, 'device-live');
  });

  it('shows a bad window as a problem at window.size', async () => {
    const page = await signedIn('/rules/new');
    const rule = page.getByRole('textbox', { name: 'Rule' });
    await rule.fill(
      'id: bad-window\nmatch: { metric: temperature }\nwindow: { type: tumbling, size: soon }\naggregates: { avg: avg }\n',
    );
    await page.getByRole('button', { name: 'Validate' }).click();
    const problem = page.locator('[data-path="window.size"]');
    await problem.waitFor();
    assert.match((await problem.textContent()) ?? '', /window\.size \(line 3\): expected a duration/);
    await shot(page, 'rule-problem');
  });

  it('backtests a rule over the stored history and says how often it would have fired', async () => {
    const page = await signedIn('/rules/new');
    await page
      .getByRole('textbox', { name: 'Rule' })
      .fill(
        'id: dev-hot\nmatch: { device: "dev-*", metric: temp }\nwindow: { type: tumbling, size: 5m }\naggregates: { avg: avg }\nwhen: "avg > 60"\nclear: "avg < 55"\n',
      );
    await page.getByRole('button', { name: 'Backtest' }).click();
    const summary = page.locator('.summary');
    await summary.waitFor({ timeout: 30_000 });
    const fired = /Would have fired (\d+) times?/.exec((await summary.textContent()) ?? '');
    assert.ok(fired, (await summary.textContent()) ?? '');
    const jobs = await api<{ items: { summary: { decisions: { firing: number } }; state: string }[] }>(
      '/api/v1/backtests',
    );
    assert.equal(jobs.items[0]?.state, 'done');
    assert.equal(Number(fired[1]), jobs.items[0]?.summary.decisions.firing);
    assert.ok(Number(fired[1]) > 0, 'the history crosses 60 now and then');
    const chart = page.getByRole('img', { name: 'Backtest of dev-hot: avg' });
    assert.ok(Number(await chart.getAttribute('data-points')) >= 20, 'a 5-minute window over 2 h');
    assert.ok(Number(await chart.getAttribute('data-marks')) >= Number(fired[1]), 'the transitions marked');
    await shot(page, 'rule-backtest');
  });

  it('saves a rule that then runs in /api/v1/rules and fires on the Alerts page', async () => {
    const page = await signedIn('/rules/new');
    await page
      .getByRole('textbox', { name: 'Rule' })
      .fill(
        'id: ui-saved\nmatch: { device: "sim-*", metric: temperature }\nwindow: { type: tumbling, size: 1s }\naggregates: { avg: avg }\nwhen: "count > 0"\n',
      );
    await page.getByRole('button', { name: 'Save' }).click();
    await page.waitForURL(`${base}/rules/ui-saved`);
    const rules = await api<{ items: { id: string; origin: string }[] }>('/api/v1/rules');
    assert.equal(rules.items.find((r) => r.id === 'ui-saved')?.origin, 'api');
    await page.getByRole('link', { name: 'Alerts', exact: true }).click();
    const firing = page.getByRole('region', { name: 'Firing now' }).locator('tr[data-rule="ui-saved"]');
    await firing.first().waitFor({ timeout: 15_000 });
    assert.match((await firing.first().textContent()) ?? '', /device=sim-\d/);
    await shot(page, 'alerts');

    // A rule changed through the API shows in the editor without a reload.
    await page.goto(`${base}/rules/ui-saved`);
    const rule = page.getByRole('textbox', { name: 'Rule' });
    await eventually(async () => ((await rule.inputValue()).includes('count > 0') ? true : undefined));
    await api('/api/v1/rules/ui-saved', {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        id: 'ui-saved',
        description: 'changed through the API',
        match: { device: 'sim-*', metric: 'temperature' },
        window: { type: 'tumbling', size: '1s' },
        aggregates: { avg: 'avg' },
        when: 'count > 0',
      }),
    });
    await eventually(
      async () => ((await rule.inputValue()).includes('changed through the API') ? true : undefined),
      2000,
      'the API change in the editor (over the stream)',
    );
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: 'Delete' }).click();
    await page.waitForURL(`${base}/rules`);
    const after = await api<{ items: { id: string }[] }>('/api/v1/rules');
    assert.ok(!after.items.some((r) => r.id === 'ui-saved'));
  });

  it('shows a rule created, then deleted, through the API on the open Rules page without a reload', async () => {
    const page = await signedIn('/rules');
    await page.locator('tr[data-rule="sim-power-high"]').waitFor();
    // The stream is open and the list read after it opened (that read is not what this test counts).
    await page.locator('section[data-synced="true"]').waitFor();
    // Gone if the page reloaded.
    await page.evaluate('window.tidegateTestMark = 1');
    // The list is not polled: from here on the page asks for the one rule the stream named.
    const asked: string[] = [];
    page.on('request', (r) => {
      const path = new URL(r.url()).pathname;
      if (path.startsWith('/api/v1/rules')) asked.push(path);
    });
    const row = page.locator('tr[data-rule="ui-from-api"]');
    assert.equal(await row.count(), 0);
    const spec = {
      id: 'ui-from-api',
      description: 'made with fetch',
      match: { device: 'sim-*', metric: 'temperature' },
      window: { type: 'tumbling', size: '1m' },
      aggregates: { avg: 'avg' },
    };
    const created = Date.now();
    await api('/api/v1/rules', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(spec),
    });
    // Well within the 3 s the page used to poll at: it comes over the stream.
    await row.waitFor({ timeout: 2000 });
    assert.ok(Date.now() - created < 2000);
    assert.match((await row.textContent()) ?? '', /made with fetch/);
    await fetch(`${base}/api/v1/rules/ui-from-api`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    await row.waitFor({ state: 'detached', timeout: 2000 });
    assert.equal(await page.evaluate('window.tidegateTestMark'), 1, 'no reload');
    assert.deepEqual(asked, ['/api/v1/rules/ui-from-api']);
  });

  it('lists the stored late readings on the Alerts page, filtered by device', async () => {
    const page = await signedIn('/alerts');
    const table = page.getByRole('region', { name: 'Late readings' });
    const rows = table.locator('tbody tr[data-late-rule]');
    await eventually(async () => ((await rows.count()) === 2 ? true : undefined), 5000, 'two late rows');
    // Newest first, as /late?order=desc answers.
    assert.match((await rows.nth(0).textContent()) ?? '', /sim-humidity.*dev-01.*humidity.*77\.25/);
    assert.match((await rows.nth(1).textContent()) ?? '', /sim-temperature.*dev-00.*temp.*41\.5/);
    const filter = page.getByRole('form', { name: 'Filter late readings' });
    await filter.getByLabel('Device').fill('dev-00');
    await filter.getByLabel('Device').press('Enter');
    await eventually(async () => ((await rows.count()) === 1 ? true : undefined), 5000, 'one late row');
    assert.match((await rows.nth(0).textContent()) ?? '', /dev-00/);
    await filter.getByLabel('Rule').selectOption('sim-humidity');
    await table.getByText('No late readings stored.').waitFor();
  });

  it('filters and pages the devices through the gateway: it fetches one page, not every device', async () => {
    const page = await newPage();
    const asked: string[] = [];
    page.on('request', (r) => {
      const url = new URL(r.url());
      if (url.pathname === '/api/v1/devices') asked.push(url.search);
    });
    await page.goto(`${base}/devices?q=sim-2`);
    await page.getByLabel('Token').fill(TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const count = page.getByTestId('device-count');
    await eventually(async () =>
      /^1 of \d+ devices/.test(((await count.textContent()) ?? '').trim()) ? true : undefined,
    );
    const rows = page.getByRole('region', { name: 'Devices' }).locator('tbody tr');
    assert.equal(await rows.count(), 1);
    assert.match((await rows.first().textContent()) ?? '', /sim-2/);
    assert.ok(asked.length > 0);
    for (const search of asked) {
      const p = new URLSearchParams(search);
      assert.equal(p.get('limit'), '100', search);
      assert.equal(p.get('q'), 'sim-2', search);
    }
    await page.getByRole('searchbox').fill('');
    await page.getByRole('combobox', { name: 'Status' }).selectOption('online');
    await eventually(async () =>
      /^(\d+) of \1 devices/.test(((await count.textContent()) ?? '').trim()) ? undefined : true,
    );
    assert.ok(asked.some((q) => new URLSearchParams(q).get('status') === 'online'));
  });

  it('is usable 390 px wide on every page', async () => {
    const viewport = { width: 390, height: 844 };
    const page = await signedIn('/', viewport);
    for (const [path, heading, control] of [
      ['/', 'Overview', null],
      ['/devices', 'Devices', 'Filter'],
      ['/devices/sim-1', 'Device sim-1', 'Show range'],
      ['/rules', 'Rules', 'New rule'],
      ['/rules/new', 'New rule', 'Backtest'],
      ['/rules/sim-power-high', 'Rule sim-power-high', 'Validate'],
      ['/alerts', 'Alerts', 'Older'],
    ] as const) {
      await page.goto(base + path);
      await page.getByRole('heading', { name: heading, level: 1 }).waitFor();
      await page.waitForTimeout(0);
      const overflow = await page.evaluate<number>('document.documentElement.scrollWidth');
      assert.ok(overflow <= viewport.width, `${path}: the page is ${overflow} px wide`);
      for (const name of ['Overview', 'Devices', 'Rules', 'Alerts']) {
        const box = await page
          .getByRole('navigation', { name: 'Main' })
          .getByRole('link', { name })
          .boundingBox();
        assert.ok(box && box.x >= 0 && box.x + box.width <= viewport.width, `${path}: nav ${name} on screen`);
      }
      if (control) {
        const target = page
          .getByRole('button', { name: control })
          .or(page.getByRole('link', { name: control }))
          .or(page.getByLabel(control));
        const box = await target.first().boundingBox();
        assert.ok(box && box.x >= 0 && box.x + box.width <= viewport.width, `${path}: ${control} on screen`);
      }
      await shot(page, `narrow${path.replaceAll('/', '-') || '-overview'}`);
    }
    const charts = page.getByRole('img');
    assert.equal(await charts.count(), 0, 'the alerts page has no chart');
  });

  it('shows the offline banner while the gateway is down and recovers when it is back', async () => {
    const page = await signedIn('/devices');
    const count = page.getByTestId('device-count');
    await eventually(async () =>
      /of \d+ devices/.test((await count.textContent()) ?? '') ? true : undefined,
    );
    const port = gateway.apiPort;
    await gateway.stop();
    const banner = page.getByRole('alert').filter({ hasText: 'cannot be reached' });
    await banner.waitFor({ timeout: 5000 });
    await shot(page, 'offline');
    writeConfig(port);
    gateway = await startGateway(configFile, { cwd: ROOT });
    assert.equal(gateway.apiPort, port);
    await banner.waitFor({ state: 'detached', timeout: 10_000 });
    // Resynced over REST, still signed in (the session outlives the restart), streaming again.
    await eventually(async () =>
      /of \d+ devices/.test((await count.textContent()) ?? '') ? true : undefined,
    );
    assert.equal(await page.getByLabel('Token').count(), 0);
    await page.goto(`${base}/devices/sim-2`);
    const live = page.locator('.latest [data-metric="power"] small');
    await live.waitFor();
    const first = await live.textContent();
    await eventually(
      async () => ((await live.textContent()) !== first ? true : undefined),
      3000,
      'live again',
    );
  });

  it('ran without a CSP violation or a page error', () => {
    assert.deepEqual(cspViolations, []);
  });
});
