import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { ManualClock } from '../src/runtime/clock.js';
import { silentLogger } from '../src/runtime/log.js';
import { Metrics } from '../src/runtime/metrics.js';
import { openDatabase } from '../src/store/database.js';
import { ReadingWriter } from '../src/store/reading-writer.js';
import { ReadingsQuery } from '../src/store/readings-query.js';
import { writeReadings } from '../test/helpers/history.js';
import { freePort } from '../test/helpers/net.js';
import { machine, quantile } from './machine.js';

/**
 * The REST API under load (autocannon, loopback, 10 connections): `/readings/latest`, and the
 * common dashboard query — one device's metric over 24 h at 1 reading/s, downsampled to 1 minute;
 * and, in process, a 7-day chart of one series of 100 read from the rollups both ways.
 * The gateway runs as a child process (dist/cli.js), as in production.
 */
const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
const DAY = 86_400_000;
const T0 = Date.parse('2026-11-23T00:00:00.000Z');

const dir = mkdtempSync(join(tmpdir(), 'tidegate-bench-api-'));
const dbPath = join(dir, 'api.db');
{
  // 24 h at 1 reading/s for 5 devices × 2 metrics (864,000 readings).
  const db = openDatabase(dbPath, { synchronous: 'off' });
  const writer = new ReadingWriter(
    db,
    { batchSize: 50_000, flushInterval: 1000, maxPending: 1_000_000, storeReadings: true },
    { clock: new ManualClock(T0 + DAY), metrics: new Metrics(), log: silentLogger() },
  );
  for (let s = 0; s < 86_400; s++) {
    for (let d = 1; d <= 5; d++) {
      writer.add({ device: `pump-${d}`, metric: 'flow', value: (s % 60) + d, ts: T0 + s * 1000 }, 'bench');
      writer.add(
        { device: `pump-${d}`, metric: 'pressure', value: 2 + (s % 7) / 10, ts: T0 + s * 1000 },
        'bench',
      );
    }
  }
  writer.stop();
  db.close();
}
const port = await freePort();
writeFileSync(
  join(dir, 'gw.yaml'),
  `api: { port: ${port}, rateLimit: 0 }\nbroker: { enabled: false }\nstore: { path: ${dbPath}, retention: 3650d }\nlog: { level: warn }\n`,
);
const child: ChildProcess = spawn(process.execPath, [CLI, 'run', '--config', join(dir, 'gw.yaml')], {
  stdio: 'inherit',
});
const base = `http://127.0.0.1:${port}`;
for (let i = 0; i < 100; i++) {
  try {
    if ((await fetch(`${base}/api/v1/health`)).ok) break;
  } catch {
    // not up yet
  }
  await new Promise((r) => setTimeout(r, 100));
}

async function load(label: string, path: string): Promise<void> {
  const result = await autocannon({ url: base + path, connections: 10, duration: 8 });
  const non2xx = result.non2xx + result.errors;
  console.log(
    `${label.padEnd(48)} ${Math.round(result.requests.average).toString().padStart(6)} req/s  p50 ${result.latency.p50} ms  p99 ${result.latency.p99} ms${non2xx ? `  (${non2xx} failed)` : ''}`,
  );
}

console.log(`bench:api — ${machine()}`);
console.log(
  '864,000 readings stored (5 devices × 2 metrics, 24 h at 1 reading/s); autocannon, 10 connections, 8 s each',
);
const single = await fetch(
  `${base}/api/v1/readings?device=pump-1&metric=flow&from=${T0}&to=${T0 + DAY}&step=1m&agg=avg&limit=2000`,
);
const t = performance.now();
await (
  await fetch(
    `${base}/api/v1/readings?device=pump-1&metric=flow&from=${T0}&to=${T0 + DAY}&step=1m&agg=avg&limit=2000`,
  )
).json();
console.log(`one 24 h → 1 min query, alone: ${(performance.now() - t).toFixed(1)} ms (${single.status})`);
await load('GET /readings/latest', '/api/v1/readings/latest');
await load(
  'GET /readings 24 h of one metric, step=1m agg=avg',
  `/api/v1/readings?device=pump-1&metric=flow&from=${T0}&to=${T0 + DAY}&step=1m&agg=avg&limit=2000`,
);
child.kill('SIGTERM');
await new Promise((r) => child.once('exit', r));

{
  // A week's chart on a bigger site: one series of 100 over 7 days at 1 reading/min, downsampled to
  // 9 min (what a 1,120-pixel chart asks for), from the minute rollups, read either way.
  const WEEK = 7 * DAY;
  function* week() {
    for (let t = T0; t < T0 + WEEK; t += 60_000)
      for (let d = 0; d < 100; d++) yield { device: `dev-${d}`, metric: 'temp', value: d + (t % 7), ts: t };
  }
  writeReadings(join(dir, 'week.db'), week(), T0 + WEEK, 'bench');
  const db = openDatabase(join(dir, 'week.db'), { synchronous: 'off' });
  const query = new ReadingsQuery(db);
  const filter = {
    devices: ['dev-42'],
    metrics: ['temp'],
    from: T0,
    to: T0 + WEEK,
    step: 540_000,
    agg: 'avg' as const,
    order: 'asc' as const,
    limit: 100_000,
  };
  const time = (access: 'scan' | 'seek') => {
    const ms: number[] = [];
    for (let i = 0; i < 7; i++) {
      const t0 = performance.now();
      query.downsample(filter, access);
      ms.push(performance.now() - t0);
    }
    return quantile(
      ms.sort((a, b) => a - b),
      0.5,
    ).toFixed(1);
  };
  console.log(
    `7 d of one series of 100 → 9 min (1,120 points), from the rollups: ${time('seek')} ms looked up by key (chosen: ${query.rollupAccess(filter)}), ${time('scan')} ms by scanning every series' minutes (median of 7)`,
  );
  db.close();
}
rmSync(dir, { recursive: true, force: true });
