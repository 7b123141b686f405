import { closeSync, fdatasync, openSync, statSync } from 'node:fs';
import { CHECKPOINT_BYTES, type Db } from './database.js';

/** SQLite's own checkpoint, inside a commit, only if these fall this far behind. */
const BACKSTOP_FACTOR = 4;
/** After a checkpoint that readers held back, the next try waits this long. */
const BUSY_RETRY_MS = 1_000;

/** One checkpoint: how long it took in the writer's thread, and whether readers held part of it back. */
export interface CheckpointResult {
  busy: boolean;
  ms: number;
}

export interface WalCheckpointOptions {
  /** The store file's WAL (`<store>-wal`). */
  walPath: string;
  /** Checkpoint once the WAL is this large (default CHECKPOINT_BYTES). */
  bytes?: number | undefined;
  /** The connection's busy_timeout, put back after each checkpoint (which runs without one). */
  busyTimeout: number;
  /**
   * Fsync the WAL before the checkpoint, off this thread (default true). False with
   * `synchronous=off`: SQLite syncs nothing then, and an fsync would write WAL pages that the
   * truncation may otherwise drop before they reach the card.
   */
  presync?: boolean;
  /** For the retry after a busy checkpoint (default Date.now). */
  now?: () => number;
  /** Told of each checkpoint (the gateway's metrics). */
  done?: (result: CheckpointResult) => void;
}

/**
 * The WAL checkpoints of the connection that writes the readings (the writer's worker), kept out of
 * its commits. SQLite's own checkpoint runs inside the commit that takes the WAL past
 * wal_autocheckpoint, so that commit, and everything waiting for it (QoS 1 acknowledgements, rule
 * decisions bound upstream), waits for two fsyncs: the WAL's (8 MiB of frames) and the database
 * file's. On a disk here that is 25–30 ms, on an SD card more. Instead:
 * - after a write is answered, the WAL's size is read (a stat, no lock);
 * - past `bytes`, the WAL is fsynced on libuv's thread pool while commits go on. That is most of
 *   the checkpoint's time: its frames are written already, the fsync waits for the disk;
 * - then the checkpoint runs, between two requests. It now syncs only the frames written since
 *   and the pages it copies into the database file;
 * - TRUNCATE, so that the WAL's size says how much is left to checkpoint;
 * - no busy wait for readers: a reader on an older snapshot leaves the rest of the WAL for the next
 *   try, a second later, instead of blocking the writer for the busy timeout;
 * - SQLite's own checkpoint stays, at BACKSTOP_FACTOR × `bytes`, in case these fall behind.
 *
 * Extra fsyncs only (none with `synchronous=off`, see `presync`): what SQLite syncs, and when, for
 * durability is unchanged. The WAL is opened read-only for its fsync and closed again; SQLite holds
 * no POSIX lock on it (its locks are on the database file and the -shm file), so closing that
 * descriptor releases none of them.
 */
export class WalCheckpoints {
  private readonly bytes: number;
  private readonly now: () => number;
  private syncing = false;
  private retryAt = 0;
  private closed = false;

  constructor(
    private readonly db: Db,
    private readonly options: WalCheckpointOptions,
  ) {
    this.bytes = options.bytes ?? CHECKPOINT_BYTES;
    this.now = options.now ?? Date.now;
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    db.pragma(`wal_autocheckpoint = ${Math.ceil((BACKSTOP_FACTOR * this.bytes) / pageSize)}`);
  }

  /** After a write to the store was answered: starts a checkpoint if the WAL is past its size. */
  afterWrite(): void {
    if (this.syncing || this.closed || this.now() < this.retryAt) return;
    if (this.walSize() < this.bytes) return;
    if (this.options.presync === false) {
      this.checkpoint();
      return;
    }
    let fd: number;
    try {
      fd = openSync(this.options.walPath, 'r');
    } catch {
      this.checkpoint();
      return;
    }
    this.syncing = true;
    fdatasync(fd, () => {
      closeSync(fd);
      this.syncing = false;
      // A failed fsync is SQLite's to report: the checkpoint syncs the WAL again itself.
      this.checkpoint();
    });
  }

  /** No checkpoint after this (the connection is closing). */
  close(): void {
    this.closed = true;
  }

  private walSize(): number {
    try {
      return statSync(this.options.walPath).size;
    } catch {
      return 0;
    }
  }

  private checkpoint(): void {
    if (this.closed) return;
    const started = performance.now();
    let busy = true;
    this.db.pragma('busy_timeout = 0');
    try {
      const [row] = this.db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
      busy = row?.busy !== 0;
    } catch {
      // SQLITE_BUSY and I/O errors: the next commit meets an I/O error itself, and is retried.
    } finally {
      this.db.pragma(`busy_timeout = ${this.options.busyTimeout}`);
    }
    if (busy) this.retryAt = this.now() + BUSY_RETRY_MS;
    this.options.done?.({ busy, ms: performance.now() - started });
  }
}
