import { type ChildProcess, fork } from 'node:child_process';
import { closeSync, fsyncSync, mkdtempSync, openSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ManualClock } from '../src/runtime/clock.js';
import { silentLogger } from '../src/runtime/log.js';
import { Metrics } from '../src/runtime/metrics.js';
import { openDatabase } from '../src/store/database.js';
import { ReadingWriter } from '../src/store/reading-writer.js';
import { freePort } from '../test/helpers/net.js';
import { peakRssMiB, rssMiB } from './gateway-process.js';
import { machine, quantile } from './machine.js';
import type { ServerMessage } from './retention-server.js';

/**
 * A retention pass over 5 M expired readings while the REST API serves. GET /readings/latest is
 * sent at a fixed rate (open loop: no request waits for the one before, so a blocked event loop
 * shows as the delay of every request it held up), without a pass and during one; besides the
 * latencies, the pass's duration and rows/s, the server's event-loop delay, RSS and file size.
 * The store and API run in a process of their own (retention-server.ts).
 */
const SERVER = fileURLToPath(new URL('./retention-server.js', import.meta.url));
const DAY = 86_400_000;
const SERIES = 200;
const EVERY = 10_000;
const flag = process.argv.indexOf('--expired');
/** Expired readings; `--expired N` for a quick run. */
const EXPIRED = flag > 0 ? Number(process.argv[flag + 1]) : 5_000_000;
/** A day within store.retention (the default 7 d): the vacuum moves these pages. */
const KEPT = SERIES * (DAY / EVERY);
const RATE = 100;
const MiB = 2 ** 20;

/** 40 devices × 5 metrics, one reading per 10 s each: the expired ones end 8 days ago. */
function buildStore(path: string, now: number): void {
  const db = openDatabase(path, { synchronous: 'off' });
  const writer = new ReadingWriter(
    db,
    {
      batchSize: Number.MAX_SAFE_INTEGER,
      flushInterval: 1000,
      maxPending: Number.MAX_SAFE_INTEGER,
      storeReadings: true,
    },
    { clock: new ManualClock(now), metrics: new Metrics(), log: silentLogger() },
  );
  const expiredFrom = now - 8 * DAY - (EXPIRED / SERIES) * EVERY;
  const keptFrom = now - DAY;
  const add = (from: number, count: number) => {
    for (let i = 0; i < count; i++) {
      const s = i % SERIES;
      const ts = from + Math.floor(i / SERIES) * EVERY;
      writer.add(
        { device: `dev-${Math.floor(s / 5)}`, metric: `m${s % 5}`, value: (ts / 1000 + s) % 97, ts },
        'bench',
      );
      if ((i + 1) % 100_000 === 0) writer.flush();
    }
    writer.flush();
  };
  add(expiredFrom, EXPIRED);
  add(keptFrom, KEPT);
  writer.stop();
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  // Built without fsync: the server's first checkpoint would otherwise flush the whole file.
  const fd = openSync(path, 'r+');
  fsyncSync(fd);
  closeSync(fd);
}

function fileMiB(path: string): number {
  let bytes = 0;
  for (const suffix of ['', '-wal']) {
    try {
      bytes += statSync(path + suffix).size;
    } catch {
      // no WAL
    }
  }
  return bytes / MiB;
}

/** Requests `url` RATE times a second until `done()` (and at least `minMs`); latencies in ms. */
async function load(
  url: string,
  minMs: number,
  done: () => boolean,
): Promise<{ ms: number[]; failed: number }> {
  const ms: number[] = [];
  let failed = 0;
  const inFlight = new Set<Promise<void>>();
  const started = performance.now();
  for (let i = 0; performance.now() - started < minMs || !done(); i++) {
    const sent = performance.now();
    const request: Promise<void> = fetch(url)
      .then(async (res) => {
        await res.arrayBuffer();
        if (res.ok) ms.push(performance.now() - sent);
        else failed++;
      })
      .catch(() => {
        failed++;
      })
      .finally(() => inFlight.delete(request));
    inFlight.add(request);
    const next = started + ((i + 1) * 1000) / RATE;
    await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
  }
  await Promise.all(inFlight);
  return { ms: ms.sort((a, b) => a - b), failed };
}

function latencies(label: string, { ms, failed }: { ms: number[]; failed: number }): string {
  const f = (q: number) => quantile(ms, q).toFixed(1);
  return `${label.padEnd(34)} p50 ${f(0.5)} ms  p99 ${f(0.99)} ms  max ${(ms.at(-1) ?? Number.NaN).toFixed(1)} ms  (${ms.length} requests${failed ? `, ${failed} failed` : ''})`;
}

const dir = mkdtempSync(join(tmpdir(), 'tidegate-bench-retention-'));
const dbPath = join(dir, 'retention.db');
const built = performance.now();
buildStore(dbPath, Date.now());
const before = fileMiB(dbPath);
console.log(`bench:retention — ${machine()}`);
console.log(
  `${EXPIRED.toLocaleString('en-US')} readings older than store.retention (7 d) and ${KEPT.toLocaleString('en-US')} within it (${SERIES} series, one reading per 10 s each), ${before.toFixed(0)} MiB on disk, built in ${((performance.now() - built) / 1000).toFixed(1)} s`,
);

const port = await freePort();
const server: ChildProcess = fork(SERVER, [dbPath, String(port)], { stdio: 'inherit' });
/** The server's next message of this type. */
function message<T extends ServerMessage['type']>(type: T): Promise<Extract<ServerMessage, { type: T }>> {
  return new Promise((resolve) => {
    const on = (m: ServerMessage) => {
      if (m.type !== type) return;
      server.off('message', on);
      resolve(m as Extract<ServerMessage, { type: T }>);
    };
    server.on('message', on);
  });
}
await message('ready');
const url = `http://127.0.0.1:${port}/api/v1/readings/latest`;
const pid = server.pid as number;

console.log(`GET /readings/latest (${SERIES} series) at ${RATE} requests/s, open loop:`);
await load(url, 1000, () => true);
console.log(latencies('  no retention pass (10 s)', await load(url, 10_000, () => true)));
const rssBefore = rssMiB(pid);
let passDone = false;
const retained = message('retained').then((m) => {
  passDone = true;
  return m;
});
server.send({ type: 'retain' });
const during = await load(url, 0, () => passDone);
const pass = await retained;
console.log(latencies('  during the retention pass', during));
console.log(
  `retention pass: ${pass.readings.toLocaleString('en-US')} readings in ${(pass.ms / 1000).toFixed(1)} s (${Math.round(pass.readings / (pass.ms / 1000)).toLocaleString('en-US')} rows/s); server event-loop delay p99 ${pass.loopDelayP99Ms.toFixed(0)} ms, max ${pass.loopDelayMaxMs.toFixed(0)} ms`,
);
console.log(
  `server RSS ${rssBefore.toFixed(0)} MiB before, ${rssMiB(pid).toFixed(0)} MiB after (peak ${peakRssMiB(pid).toFixed(0)} MiB); file ${before.toFixed(0)} → ${fileMiB(dbPath).toFixed(0)} MiB`,
);
const p99 = quantile(during.ms, 0.99);
console.log(
  `target: API p99 during a 5 M-row pass ≤ 50 ms — ${p99 <= 50 ? 'met' : 'not met'} (${p99.toFixed(1)} ms)`,
);
server.send({ type: 'stop' });
await new Promise((r) => server.once('exit', r));
rmSync(dir, { recursive: true, force: true });
