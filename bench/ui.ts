/**
 * `npm run bench:ui`: the dashboard in headless Chromium (Debian's, through playwright-core)
 * against the built gateway.
 *  - the time to the first drawn chart (and to all ten) of a device page over 7 days of 10 metrics
 *    at 1-minute steps (target ≤ 500 ms);
 *  - the devices page with 5,000 devices: time to the table, and a filter's answer (target:
 *    interactive within 1 s);
 *  - the gateway's RSS without and with a dashboard open (target: + ≤ 5 MB).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';
import { stringify } from 'yaml';
import type { Reading } from '../src/model/reading.js';
import { eventually, ROOT, type RunningGateway, startGateway } from '../test/helpers/gateway-process.js';
import { writeReadings } from '../test/helpers/history.js';
import { describeUnitCommand, rssMiB, unitNodeCommand } from './gateway-process.js';
import { machine, quantile } from './machine.js';

const TOKEN = 'bench-ui-token-0123456789';
const MINUTE = 60_000;
const DAYS = 7;
const METRICS = 10;
const DEVICES = 5000;
const RUNS = 5;

/** The readings of a part of the bench's site: one device's 7 days of 10 metrics, or 5,000 devices. */
function* site(now: number, part: 'chart' | 'devices'): Generator<Reading> {
  const start = now - DAYS * 86_400_000;
  for (let t = start; part === 'chart' && t < now; t += MINUTE) {
    for (let m = 0; m < METRICS; m++) {
      yield {
        device: 'chart-1',
        metric: `m${m}`,
        value: Math.round(100 * (20 + 5 * Math.sin(t / 3.6e6 + m))) / 100,
        ts: t,
      };
    }
  }
  for (let d = 0; part === 'devices' && d < DEVICES; d++) {
    const device = `dev-${String(d).padStart(4, '0')}`;
    for (const metric of ['temperature', 'humidity', 'power'])
      yield { device, metric, value: d % 100, ts: now - (d % 600) * 1000 };
  }
}

const seed = (path: string, now: number, part: 'chart' | 'devices') =>
  writeReadings(path, site(now, part), now, 'bench');

/**
 * In the page (as text: the bench is compiled without the DOM's types): resolves, on the first
 * animation frame that finds them, when the first chart and `n` charts have drawn their points.
 */
const DRAWN = (n: number) => `new Promise((resolve) => {
  let firstAt = 0;
  const check = () => {
    const charts = [...document.querySelectorAll('.chart[data-drawn]')].filter((c) => Number(c.dataset.points) > 0);
    if (charts.length > 0 && firstAt === 0) firstAt = performance.now();
    if (charts.length >= ${n}) {
      resolve({ first: firstAt, all: performance.now(), points: charts.reduce((s, c) => s + Number(c.dataset.points), 0) });
    } else requestAnimationFrame(check);
  };
  check();
})`;

const median = (xs: number[]) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );

async function rssSample(pid: number, seconds: number): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < seconds * 2; i++) {
    samples.push(rssMiB(pid));
    await new Promise((r) => setTimeout(r, 500));
  }
  return median(samples);
}

/** The built gateway as systemd/tidegate.service runs it: its node flags (through NODE_OPTIONS) and environment. */
async function gatewayOn(configFile: string) {
  const unit = unitNodeCommand();
  const { NODE_OPTIONS: _, ...unitEnv } = unit.env;
  return startGateway(configFile, {
    cwd: ROOT,
    timeoutMs: 60_000,
    env: { ...unitEnv, NODE_OPTIONS: [unit.env['NODE_OPTIONS'] ?? '', ...unit.flags].join(' ').trim() },
  });
}

const sign = (n: number) => `${n >= 0 ? '+' : ''}${n.toFixed(1)}`;

async function main(): Promise<void> {
  console.log(`bench:ui on ${machine()}`);
  console.log(`gateway: ${describeUnitCommand(unitNodeCommand())}, a simulator of 3 devices at 1 s`);
  const dir = mkdtempSync(join(tmpdir(), 'tidegate-bench-ui-'));
  const store = join(dir, 'tidegate.db');
  const now = Date.now();
  const configFile = join(dir, 'gateway.yaml');
  writeFileSync(
    configFile,
    stringify({
      gateway: { id: 'bench-ui' },
      log: { level: 'info' },
      api: { host: '127.0.0.1', port: 0, token: TOKEN, rateLimit: 0 },
      broker: { enabled: false },
      sources: [{ id: 'sim', type: 'simulator', devices: 3, interval: '1s' }],
      rules: [],
      store: { path: store, retention: '30d' },
    }),
  );
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium' });
  const contexts: BrowserContext[] = [];
  let gateway: RunningGateway | null = null;
  const pid = () => gateway?.proc.pid as number;
  let base = '';
  let cookie = '';
  const context = async () => {
    const c = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await c.addCookies([
      { name: 'tidegate_session', value: cookie, url: base, httpOnly: true, sameSite: 'Strict' },
    ]);
    contexts.push(c);
    return c;
  };
  const start = async () => {
    gateway = await gatewayOn(configFile);
    base = `http://127.0.0.1:${gateway.apiPort}`;
    const signIn = await fetch(`${base}/api/v1/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: TOKEN }),
    });
    cookie = (signIn.headers.get('set-cookie') ?? '').split(';')[0]?.split('=')[1] ?? '';
  };
  /** RSS with no dashboard (settled), then with one open on the overview and on a live device page. */
  const rss = async (what: string) => {
    await new Promise((r) => setTimeout(r, 5000));
    const idle = await rssSample(pid(), 10);
    const page = await (await context()).newPage();
    // The API requests a page makes while it stays open (what api.rateLimit has to allow per tab).
    let requests = 0;
    page.on('request', (r) => {
      if (new URL(r.url()).pathname.match(/^\/(api\/|metrics$)/)) requests++;
    });
    await page.goto(`${base}/`);
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    requests = 0;
    const overview = await rssSample(pid(), 10);
    const overviewRate = requests * 6;
    await page.goto(`${base}/devices/sim-1`);
    await eventually(
      async () => ((await page.locator('.chart[data-drawn]').count()) > 0 ? true : undefined),
      10_000,
    );
    requests = 0;
    const device = await rssSample(pid(), 10);
    const deviceRate = requests * 6;
    console.log(
      `gateway RSS, ${what}: ${idle.toFixed(1)} MiB with no dashboard open; with one open on the overview ${overview.toFixed(1)} MiB (${sign(overview - idle)}), on a live device page ${device.toFixed(1)} MiB (${sign(device - idle)}) (target + ≤ 5 MB)`,
    );
    console.log(
      `API requests of an open tab: overview ${overviewRate}/min, live device page ${deviceRate}/min (api.rateLimit: 600/min per address by default)`,
    );
    for (const c of contexts.splice(0)) await c.close();
  };
  try {
    // 1. A small site: the simulator's 3 devices and one device with 7 days of 10 metrics.
    let started = performance.now();
    let n = seed(store, now, 'chart');
    console.log(
      `seeded ${n.toLocaleString('en-US')} readings in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    await start();
    await rss('4 devices');
    const first: number[] = [];
    const all: number[] = [];
    let points = 0;
    for (let run = 0; run < RUNS; run++) {
      const page = await (await context()).newPage();
      await page.goto(`${base}/devices/chart-1?range=7d`);
      const times = await page.evaluate<{ first: number; all: number; points: number }>(DRAWN(METRICS));
      first.push(times.first);
      all.push(times.all);
      points = times.points;
      await page.close();
    }
    console.log(
      `device page, 7 d of ${METRICS} metrics at 1-min steps (${(DAYS * 1440 * METRICS).toLocaleString('en-US')} readings): first chart drawn ${median(first).toFixed(0)} ms, all ${METRICS} ${median(all).toFixed(0)} ms after navigation (median of ${RUNS}; target ≤ 500 ms), ${points} points in all`,
    );
    for (const c of contexts.splice(0)) await c.close();
    await (gateway as RunningGateway | null)?.stop();

    // 2. A big site: 5,000 more devices.
    started = performance.now();
    n = seed(store, now, 'devices');
    console.log(
      `seeded ${n.toLocaleString('en-US')} readings in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    await start();
    const total = (DEVICES + 4).toLocaleString('en-US');
    const table: number[] = [];
    const filter: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const page = await (await context()).newPage();
      await page.goto(`${base}/devices`);
      await page.getByText(`${total} of ${total} devices`).waitFor({ timeout: 30_000 });
      table.push(await page.evaluate<number>('performance.now()'));
      const t0 = await page.evaluate<number>('performance.now()');
      await page.getByLabel('Filter').fill('dev-4321');
      await page.getByText(`1 of ${total} devices`).waitFor();
      filter.push((await page.evaluate<number>('performance.now()')) - t0);
      await page.close();
    }
    console.log(
      `devices page, ${total} devices: table shown ${median(table).toFixed(0)} ms after navigation, a filter answered in ${median(filter).toFixed(0)} ms (median of ${RUNS}; target interactive ≤ 1000 ms)`,
    );
    for (const c of contexts.splice(0)) await c.close();
    await (gateway as RunningGateway | null)?.stop();
    await start();
    await rss(`${total} devices`);
  } finally {
    for (const c of contexts) await c.close().catch(() => {});
    await browser.close();
    await (gateway as RunningGateway | null)?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
