import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';
import { Aedes } from 'aedes';
import Database from 'better-sqlite3';

/**
 * The two ceilings bench/e2e.ts compares the gateway with, each in a child process of its own so
 * that its CPU is measured as the gateway's is:
 *
 * - `aedes`: a bare aedes broker (constructed as src/sources/mqtt-broker.ts does) on a free
 *   127.0.0.1 port that only counts the messages published to it (in `authorizePublish`, where
 *   the gateway ingests), nothing else: no subscribers, no decoding, no store. It sends
 *   `{port}` over IPC once listening and answers every `count` message with `{messages}`.
 * - `sqlite`: raw better-sqlite3 inserts as the gateway's group commit makes them: WAL,
 *   synchronous NORMAL, `INSERT OR IGNORE`, `--batch` rows per transaction, for `--seconds`;
 *   1000 series, each in runs of `--per-message` readings 1 ms apart, as messages bring them
 *   (runs decide how many index pages a commit touches). Tables made here, representative of the
 *   gateway's (whose migrations are changing), in one of two `--layout`s:
 *     `rowid`: (id, series_id, ts, value, tags) with a unique (series_id, ts, value) index and a ts
 *              index (the readings table of migrations 1–4);
 *     `time`:  WITHOUT ROWID, primary key (ts, series_id, value), plus seq and tags (migration 5).
 *   No series/devices upserts, rollups, rule outputs or outbox. Prints one JSON line.
 */
const { positionals, values: args } = parseArgs({
  allowPositionals: true,
  options: {
    seconds: { type: 'string', default: '10' },
    path: { type: 'string' },
    batch: { type: 'string', default: '5000' },
    'per-message': { type: 'string', default: '50' },
    layout: { type: 'string', default: 'time' },
  },
});

const LAYOUTS = {
  rowid: {
    schema: `CREATE TABLE readings (id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL, ts INTEGER NOT NULL,
                                    value REAL NOT NULL, tags TEXT);
             CREATE UNIQUE INDEX readings_series_ts ON readings (series_id, ts, value);
             CREATE INDEX readings_ts ON readings (ts);`,
    insert: 'INSERT OR IGNORE INTO readings (series_id, ts, value, tags, id) VALUES (?, ?, ?, ?, ?)',
  },
  time: {
    schema: `CREATE TABLE readings (ts INTEGER NOT NULL, series_id INTEGER NOT NULL, value REAL NOT NULL,
                                    seq INTEGER NOT NULL, tags TEXT, PRIMARY KEY (ts, series_id, value))
             WITHOUT ROWID;`,
    insert: 'INSERT OR IGNORE INTO readings (series_id, ts, value, tags, seq) VALUES (?, ?, ?, ?, ?)',
  },
} as const;

async function bareAedes(): Promise<void> {
  let messages = 0;
  const broker = await Aedes.createBroker({
    id: 'bare',
    authorizePublish: (client, _packet, done) => {
      if (client) messages++;
      done(null);
    },
  });
  const server = createServer((socket) => broker.handle(socket));
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    process.send?.({ port: typeof address === 'object' && address ? address.port : 0 });
  });
  process.on('message', (m) => {
    if (m === 'count') process.send?.({ messages });
  });
  // The parent going away (or SIGTERM) ends the broker.
  process.on('disconnect', () => process.exit(0));
}

function writeBytes(): number {
  const m = /^write_bytes:\s+(\d+)/m.exec(readFileSync('/proc/self/io', 'utf8'));
  return m ? Number(m[1]) : Number.NaN;
}

function sqliteInserts(
  path: string,
  layout: (typeof LAYOUTS)[keyof typeof LAYOUTS],
  seconds: number,
  batch: number,
  perMessage: number,
): void {
  const SERIES = 1000;
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('journal_size_limit = 16777216');
  db.exec(layout.schema);
  const insert = db.prepare(layout.insert);
  // Each series gets readings 1 ms apart ending near now, as the load generator sends them.
  const lastTs = new Float64Array(SERIES).fill(Date.now() - 60_000);
  let series = 0;
  let inRun = 0;
  let seq = 0;
  const commit = db.transaction((n: number) => {
    for (let i = 0; i < n; i++) {
      const ts = (lastTs[series] as number) + 1;
      lastTs[series] = ts;
      insert.run(series + 1, ts, Math.round(Math.sin(ts / 60_000) * 1000) / 10, null, ++seq);
      if (++inRun === perMessage) {
        inRun = 0;
        series = (series + 1) % SERIES;
      }
    }
  });
  const written0 = writeBytes();
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const end = Date.now() + seconds * 1000;
  let readings = 0;
  while (Date.now() < end) {
    commit(batch);
    readings += batch;
  }
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  db.close();
  process.stdout.write(
    `${JSON.stringify({
      event: 'done',
      readings,
      seconds: elapsed,
      writeBytes: writeBytes() - written0,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
    })}\n`,
  );
}

const mode = positionals[0];
const layout = LAYOUTS[args.layout as keyof typeof LAYOUTS];
if (mode === 'aedes') {
  await bareAedes();
} else if (mode === 'sqlite' && args.path && layout) {
  sqliteInserts(args.path, layout, Number(args.seconds), Number(args.batch), Number(args['per-message']));
} else {
  console.error(
    'usage: e2e-limits.js aedes | sqlite --path FILE [--layout time|rowid] [--seconds N] [--batch N] [--per-message N]',
  );
  process.exit(2);
}
