import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../src/runtime/clock.js';
import { silentLogger } from '../src/runtime/log.js';
import { Metrics } from '../src/runtime/metrics.js';
import { openDatabase } from '../src/store/database.js';
import { ReadingWriter } from '../src/store/reading-writer.js';
import { machine, quantile, rssMiB } from './machine.js';

/**
 * The group-committing store writer: readings/s into a WAL database on disk, commit latency
 * percentiles, RSS, and bytes on disk per stored reading. In this thread, each batch flushed (the
 * figure is the commit); and with the writer's worker thread, as the gateway runs it, batches cut by
 * commitIfFull (the figure is the time this thread spent in it: its wait for the worker once four
 * batches queue behind the one in flight).
 */
function run(
  label: string,
  devices: number,
  metricsPerDevice: number,
  total: number,
  batchSize: number,
  inWorker = false,
): void {
  const dir = mkdtempSync(join(tmpdir(), 'tidegate-bench-'));
  const path = join(dir, 'bench.db');
  const db = openDatabase(path, { synchronous: 'normal' });
  const clock = new ManualClock(Date.parse('2026-11-24T00:00:00Z'));
  const writer = new ReadingWriter(
    db,
    {
      batchSize: inWorker ? batchSize : Number.MAX_SAFE_INTEGER,
      flushInterval: 200,
      maxPending: inWorker ? 200_000 : Number.MAX_SAFE_INTEGER,
      storeReadings: true,
      worker: inWorker ? { path, synchronous: 'normal' } : undefined,
    },
    { clock, metrics: new Metrics(), log: silentLogger() },
  );
  const commits: number[] = [];
  const series = devices * metricsPerDevice;
  const started = process.hrtime.bigint();
  for (let i = 0; i < total; i++) {
    const s = i % series;
    writer.add(
      {
        device: `dev-${Math.floor(s / metricsPerDevice)}`,
        metric: `m${s % metricsPerDevice}`,
        value: Math.sin(i) * 100,
        ts: clock.now() + Math.floor(i / series) * 1000,
      },
      'bench',
    );
    if ((i + 1) % batchSize === 0) {
      const t = process.hrtime.bigint();
      if (inWorker) writer.commitIfFull();
      else writer.flush();
      commits.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  }
  writer.stop();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  const bytes = statSync(path).size;
  commits.sort((a, b) => a - b);
  console.log(
    `${label.padEnd(34)} ${Math.round(total / seconds)
      .toLocaleString('en-US')
      .padStart(
        10,
      )} readings/s  ${inWorker ? 'commitIfFull' : 'commit'} p50 ${quantile(commits, 0.5).toFixed(1)} ms  p99 ${quantile(commits, 0.99).toFixed(1)} ms  ${(bytes / total).toFixed(0)} B/reading on disk  RSS ${rssMiB()} MiB`,
  );
  rmSync(dir, { recursive: true, force: true });
}

console.log(`bench:store — ${machine()}`);
run('100 series, batches of 1,000', 20, 5, 300_000, 1000);
run('1,000 series, batches of 5,000', 200, 5, 500_000, 5000);
run('10,000 series, batches of 5,000', 2000, 5, 500_000, 5000);
run('1,000 series, 5,000, worker thread', 200, 5, 500_000, 5000, true);
run('10,000 series, 5,000, worker thread', 2000, 5, 500_000, 5000, true);
