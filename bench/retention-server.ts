import { monitorEventLoopDelay } from 'node:perf_hooks';
import { ApiServer, createApp } from '../src/api/server.js';
import { parseConfigText } from '../src/config/load.js';
import { systemClock } from '../src/runtime/clock.js';
import { silentLogger } from '../src/runtime/log.js';
import { Metrics } from '../src/runtime/metrics.js';
import { openDatabase } from '../src/store/database.js';
import { StoreMaintenance } from '../src/store/maintenance.js';
import { Outbox } from '../src/store/outbox.js';
import { OutputsQuery } from '../src/store/outputs-query.js';
import { ReadingWriter } from '../src/store/reading-writer.js';
import { ReadingsQuery } from '../src/store/readings-query.js';
import { testView } from '../test/helpers/api-view.js';

/**
 * bench:retention's server, in a process of its own: the store (writer, maintenance) and the REST
 * API wired as the gateway wires them, from the default configuration. A retention pass runs when
 * the parent says so, rather than on the maintenance timer, so that it starts while the API serves.
 * Usage (by bench/retention.ts): node retention-server.js <database> <port>
 */

/** What the server reports to bench/retention.ts. */
export type ServerMessage =
  | { type: 'ready' }
  | { type: 'retained'; readings: number; ms: number; loopDelayMaxMs: number; loopDelayP99Ms: number };

const [dbPath, port] = process.argv.slice(2);
const config = parseConfigText(
  `api: { port: ${port}, rateLimit: 0 }\nstore: { path: ${dbPath} }\n`,
  'bench.yaml',
  {},
);
const { store } = config;
const db = openDatabase(store.path, { synchronous: store.synchronous });
const parts = { clock: systemClock, metrics: new Metrics(), log: silentLogger() };
const writer = new ReadingWriter(
  db,
  {
    batchSize: store.batchSize,
    flushInterval: store.flushInterval,
    summaryInterval: store.summaryInterval,
    maxPending: store.maxPending,
    storeReadings: store.readings,
  },
  parts,
);
writer.start();
const maintenance = new StoreMaintenance(
  db,
  { retention: store.retention, maxSize: store.maxSize, maxOutboxRows: config.outbox.maxRows },
  {
    ...parts,
    outbox: new Outbox(db),
    forwardedUpTo: () => null,
    syncSummaries: () => writer.syncSummaries(),
  },
);
const api = new ApiServer(
  config.api,
  createApp(config.api, {
    query: new ReadingsQuery(db, () => writer.syncSummaries()),
    outputs: new OutputsQuery(db),
    metrics: parts.metrics,
    log: parts.log,
    view: testView({
      now: () => Date.now(),
      store: () => ({ path: store.path, bytes: 0, pendingWrites: 0, lastError: null }),
    }),
  }),
  parts.log,
);
await api.start();

function send(message: ServerMessage): void {
  process.send?.(message);
}

process.on('message', async (message: { type: 'retain' | 'stop' }) => {
  if (message.type === 'retain') {
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    const started = performance.now();
    // Awaiting also takes the number that retain() returned before it ran in turns.
    const readings = await maintenance.retain();
    const ms = performance.now() - started;
    // The histogram's timer records how late it ran: let it run once after a pass that blocked.
    await new Promise((resolve) => setTimeout(resolve, 20));
    delay.disable();
    send({
      type: 'retained',
      readings,
      ms,
      loopDelayMaxMs: delay.max / 1e6,
      loopDelayP99Ms: delay.percentile(99) / 1e6,
    });
    return;
  }
  maintenance.stop();
  await api.stop();
  writer.stop();
  db.close();
  process.disconnect();
});
send({ type: 'ready' });
