/**
 * The store writer's worker thread: the one connection that writes readings, their summaries and
 * the other batch parts' statements, one group commit per request (see WorkerCommitter). It answers
 * every request in order on the reply port and then bumps the shared counter, which a synchronous
 * call in the gateway's thread sleeps on. It checkpoints the WAL itself, after the replies
 * (WalCheckpoints), and tells of each checkpoint on the same port.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { CommitCore } from './commit-core.js';
import type { WriterEvent, WriterReply, WriterRequest, WriterWorkerData } from './committer.js';
import { BUSY_TIMEOUT_MS, type Db, openWriteConnection } from './database.js';
import { WalCheckpoints } from './wal-checkpoints.js';

const data = workerData as WriterWorkerData;
const signal = new Int32Array(data.signal);

function reply(message: WriterReply): void {
  data.replies.postMessage(message);
  Atomics.add(signal, 0, 1);
  Atomics.notify(signal, 0);
}

function failure(id: number, err: unknown): WriterReply {
  const e = err as Error & { code?: unknown };
  return {
    id,
    ok: false,
    message: e.message ?? String(err),
    code: typeof e.code === 'string' ? e.code : undefined,
  };
}

let db: Db | null = null;
let core: CommitCore | null = null;
let checkpoints: WalCheckpoints | null = null;
try {
  db = openWriteConnection(data.path, data.synchronous);
  core = new CommitCore(db, data.options, data.now);
  checkpoints = new WalCheckpoints(db, {
    walPath: `${data.path}-wal`,
    bytes: data.checkpointBytes,
    busyTimeout: BUSY_TIMEOUT_MS,
    presync: data.synchronous !== 'off',
    done: (result) => data.replies.postMessage({ checkpoint: result } satisfies WriterEvent),
  });
  reply({ id: 0, ok: true, value: null });
} catch (err) {
  db?.close();
  reply(failure(0, err));
}

function handle(request: WriterRequest, c: CommitCore): number | null {
  switch (request.kind) {
    case 'commit':
      return c.commit(request.batch);
    case 'tick':
      if (c.summariesDue(request.now)) c.syncSummaries(request.now);
      return null;
    case 'sync':
      c.syncSummaries(request.now);
      return null;
    case 'maxTs':
      return c.storedMaxTs(request.device, request.metric);
    case 'close':
      checkpoints?.close();
      db?.close();
      db = null;
      core = null;
      parentPort?.close();
      return null;
  }
}

parentPort?.on('message', (request: WriterRequest) => {
  const c = core;
  if (c === null) {
    reply(failure(request.id, new Error('the store writer is closed')));
    return;
  }
  try {
    reply({ id: request.id, ok: true, value: handle(request, c) });
  } catch (err) {
    reply(failure(request.id, err));
  }
  // After the reply: what waited for this write goes on while the WAL is checkpointed.
  if (request.kind === 'commit' || request.kind === 'tick' || request.kind === 'sync')
    checkpoints?.afterWrite();
});
