import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from 'node:worker_threads';
import { type CommitBatch, CommitCore, type CommitCoreOptions } from './commit-core.js';
import type { Db, OpenOptions } from './database.js';
import type { CheckpointResult } from './wal-checkpoints.js';

/**
 * Where the reading writer's group commits run. `commit` and `tick` may finish later (the worker)
 * or before they return (in this thread); the other calls are synchronous either way.
 */
export interface Committer {
  /** Writes the batch; `done` gets the readings stored, or the error (nothing of the batch written). */
  commit(batch: CommitBatch, done: (err: Error | null, stored: number) => void): void;
  /** Writes the held-back summaries if their interval has passed (nothing to commit meanwhile). */
  tick(now: number, done: (err: Error | null) => void): void;
  /** Waits until every commit and tick sent so far has finished (their `done` called). */
  settle(): void;
  syncSummaries(now: number): void;
  storedMaxTs(device: string, metric: string): number | null;
  close(): void;
}

/** The commits in the caller's thread, on the caller's connection (`:memory:` stores, tests). */
export class InlineCommitter implements Committer {
  readonly core: CommitCore;

  constructor(db: Db, options: CommitCoreOptions, now: number) {
    this.core = new CommitCore(db, options, now);
  }

  commit(batch: CommitBatch, done: (err: Error | null, stored: number) => void): void {
    let stored: number;
    try {
      stored = this.core.commit(batch);
    } catch (err) {
      done(err as Error, 0);
      return;
    }
    done(null, stored);
  }

  tick(now: number, done: (err: Error | null) => void): void {
    let err: Error | null = null;
    try {
      if (this.core.summariesDue(now)) this.core.syncSummaries(now);
    } catch (e) {
      err = e as Error;
    }
    done(err);
  }

  settle(): void {}

  syncSummaries(now: number): void {
    this.core.syncSummaries(now);
  }

  storedMaxTs(device: string, metric: string): number | null {
    return this.core.storedMaxTs(device, metric);
  }

  close(): void {}
}

/** What the gateway's thread asks the writer's worker. */
export type WriterRequest = { id: number } & (
  | { kind: 'commit'; batch: CommitBatch }
  | { kind: 'tick'; now: number }
  | { kind: 'sync'; now: number }
  | { kind: 'maxTs'; device: string; metric: string }
  | { kind: 'close' }
);

/** The worker's answer to request `id` (0: it is ready). */
export type WriterReply =
  | { id: number; ok: true; value: number | null }
  | { id: number; ok: false; message: string; code?: string | undefined };

/** The store file the writer's worker opens a connection of its own to. */
export interface WorkerStore {
  path: string;
  synchronous: OpenOptions['synchronous'];
  /** Checkpoint the WAL once it is this large (default CHECKPOINT_BYTES; tests set less). */
  checkpointBytes?: number | undefined;
}

/** Posted by the worker on the reply port unasked: a WAL checkpoint it ran. */
export interface WriterEvent {
  checkpoint: CheckpointResult;
}

export interface WriterWorkerData extends WorkerStore {
  options: CommitCoreOptions;
  now: number;
  /** Counts the replies posted: a synchronous call sleeps on it (Atomics.wait). */
  signal: SharedArrayBuffer;
  replies: MessagePort;
}

/** A synchronous call waits at most this long for the worker (a hung disk, a dead worker). */
const SYNC_TIMEOUT_MS = 60_000;

/**
 * The commits in a worker thread with a connection of its own (a file store): better-sqlite3 is
 * synchronous, so a commit there leaves this thread to MQTT, the engine and the API. Requests are
 * posted in order and answered in order on one port. Commits and ticks are answered to callbacks
 * as messages arrive; a synchronous call (flush, a reader's sync of the summaries, a series' stored
 * maximum) sleeps on a shared counter the worker bumps after each reply and takes the replies off
 * the port itself, answering any commit before it on the way, so that order holds.
 */
export class WorkerCommitter implements Committer {
  private readonly worker: Worker;
  private readonly replies: MessagePort;
  private readonly signal: Int32Array;
  private readonly callbacks = new Map<number, (reply: WriterReply) => void>();
  private nextId = 1;
  private dead: Error | null = null;
  private closed = false;

  constructor(
    store: WorkerStore,
    options: CommitCoreOptions,
    now: number,
    /** The worker stopped unexpectedly: nothing more can be committed. */
    private readonly onDeath: (err: Error) => void,
    /** Told of each WAL checkpoint the worker ran. */
    private readonly onCheckpoint?: (result: CheckpointResult) => void,
  ) {
    const shared = new SharedArrayBuffer(4);
    this.signal = new Int32Array(shared);
    const { port1, port2 } = new MessageChannel();
    this.replies = port1;
    const data: WriterWorkerData = { ...store, options, now, signal: shared, replies: port2 };
    this.worker = new Worker(new URL('./writer-worker.js', import.meta.url), {
      workerData: data,
      transferList: [port2],
    });
    this.worker.on('error', (err) => this.died(err));
    this.worker.on('exit', (code) => {
      if (!this.closed) this.died(new Error(`the store writer's worker exited (code ${code})`));
    });
    this.replies.on('message', (reply: WriterReply | WriterEvent) => this.answer(reply));
    this.idle();
    // The worker opens its connection and reads the store's state (seq, held summaries) first.
    this.waitFor(0);
  }

  commit(batch: CommitBatch, done: (err: Error | null, stored: number) => void): void {
    this.send({ kind: 'commit', batch }, (reply) =>
      reply.ok ? done(null, reply.value ?? 0) : done(replyError(reply), 0),
    );
  }

  tick(now: number, done: (err: Error | null) => void): void {
    this.send({ kind: 'tick', now }, (reply) => done(reply.ok ? null : replyError(reply)));
  }

  settle(): void {
    const last = this.nextId - 1;
    if (this.callbacks.has(last)) this.waitFor(last);
  }

  syncSummaries(now: number): void {
    this.call({ kind: 'sync', now });
  }

  storedMaxTs(device: string, metric: string): number | null {
    return this.call({ kind: 'maxTs', device, metric });
  }

  close(): void {
    if (this.closed) return;
    if (this.dead === null) this.call({ kind: 'close' });
    this.closed = true;
    this.replies.close();
    void this.worker.terminate();
  }

  private send(
    request: DistributiveOmit<WriterRequest, 'id'>,
    callback: (reply: WriterReply) => void,
  ): number {
    const id = this.nextId++;
    if (this.dead !== null || this.closed) {
      const err = this.dead ?? new Error('the store writer is stopped');
      queueMicrotask(() => callback({ id, ok: false, message: err.message }));
      return id;
    }
    this.callbacks.set(id, callback);
    this.replies.ref();
    this.worker.postMessage({ ...request, id } as WriterRequest);
    return id;
  }

  private call(request: DistributiveOmit<WriterRequest, 'id'>): number | null {
    if (this.dead !== null) throw this.dead;
    if (this.closed) throw new Error('the store writer is stopped');
    let result: WriterReply | undefined;
    const id = this.send(request, (reply) => {
      result = reply;
    });
    this.waitFor(id);
    const reply = result as WriterReply;
    if (!reply.ok) throw replyError(reply);
    return reply.value;
  }

  /** Takes replies off the port until request `id` is answered. */
  private waitFor(id: number): void {
    const deadline = Date.now() + SYNC_TIMEOUT_MS;
    while (id === 0 ? !this.ready : this.callbacks.has(id)) {
      if (this.dead !== null && id !== 0) throw this.dead;
      const seen = Atomics.load(this.signal, 0);
      const message = receiveMessageOnPort(this.replies);
      if (message !== undefined) {
        this.answer(message.message as WriterReply | WriterEvent);
        continue;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        const err = new Error(`the store writer's worker did not answer within ${SYNC_TIMEOUT_MS / 1000} s`);
        this.died(err);
        throw err;
      }
      Atomics.wait(this.signal, 0, seen, Math.min(left, 1000));
    }
    if (id === 0 && this.startError !== null) throw this.startError;
    if (id === 0 && this.dead !== null) throw this.dead;
  }

  private ready = false;
  private startError: Error | null = null;

  private answer(reply: WriterReply | WriterEvent): void {
    if ('checkpoint' in reply) {
      this.onCheckpoint?.(reply.checkpoint);
      return;
    }
    if (reply.id === 0) {
      this.ready = true;
      if (!reply.ok) {
        this.startError = replyError(reply);
        this.closed = true;
        void this.worker.terminate();
      }
      return;
    }
    const callback = this.callbacks.get(reply.id);
    if (callback === undefined) return;
    this.callbacks.delete(reply.id);
    if (this.callbacks.size === 0) this.idle();
    callback(reply);
  }

  /** Nothing is waited for: the port does not keep the process alive. */
  private idle(): void {
    this.replies.unref();
  }

  private died(err: Error): void {
    if (this.dead !== null || this.closed) return;
    this.dead = err;
    this.ready = true;
    const waiting = [...this.callbacks];
    this.callbacks.clear();
    this.idle();
    for (const [id, callback] of waiting) callback({ id, ok: false, message: err.message });
    this.onDeath(err);
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

function replyError(reply: { message: string; code?: string | undefined }): Error {
  const err = new Error(reply.message) as Error & { code?: string };
  if (reply.code !== undefined) err.code = reply.code;
  return err;
}
