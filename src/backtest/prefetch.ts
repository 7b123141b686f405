import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Reading } from '../model/reading.js';
import type { Db } from '../store/database.js';
import {
  type HistoryFilter,
  type PackedReadings,
  ReadingHistory,
  withoutIdleSeriesFilter,
} from '../store/reading-history.js';
import type { BucketPlan, ReaderData, ReaderMessage } from './reader.js';

/** A reader's young generation (MB): its garbage is row arrays, dead before the next chunk. */
const READER_YOUNG_MB = 8;

interface SeriesNames {
  device: string;
  metric: string;
  unit: string | null;
}

/** One reader thread and the chunks it sent that the engine has not taken yet. */
interface Reader {
  worker: Worker;
  queue: ReaderMessage[];
  waiting: ((m: ReaderMessage) => void) | null;
  /** It sent the last chunk of its last bucket: its exit is expected. */
  finished: boolean;
}

export interface PrefetchOptions {
  chunkSize?: number;
  /** Chunks each reader sends ahead of the engine. */
  ahead?: number;
  /** Reader threads (default: one per core beyond the first, at most 2, at least 1). */
  readers?: number;
  /** Series names a reader, and so this side, remembers (default: ReadingHistory's; tests flood a smaller one). */
  maxNamedSeries?: number;
}

/**
 * Cuts the range into buckets of time of about `perBucket` readings each (by the range's count and
 * span: exact for steady sensors, and a bucket may hold more when they burst; it is read in chunks).
 */
export function planBuckets(
  span: { count: number; first: number | null; last: number | null },
  perBucket: number,
): BucketPlan {
  if (span.first === null || span.last === null || span.count <= perBucket) {
    return { start: span.first ?? 0, width: Number.MAX_SAFE_INTEGER, buckets: span.first === null ? 0 : 1 };
  }
  const length = span.last - span.first + 1;
  const buckets = Math.min(100_000, Math.ceil(span.count / perBucket));
  return { start: span.first, width: Math.ceil(length / buckets), buckets };
}

/**
 * The stored history in (ts, arrival) order, read ahead by reader threads (`reader.ts`) while the
 * engine runs: the range is cut into buckets of time, reader i reads buckets i, i+R, i+2R, …, and
 * `next()` hands out their chunks bucket by bucket — a ts belongs to one bucket, so the order is
 * exactly the single query's (`/readings/export`). Memory: `ahead` chunks per reader in transit.
 */
export class PrefetchedHistory {
  private readonly readers: Reader[] = [];
  private readonly plan: BucketPlan;
  private bucket = 0;
  private failure: Error | null = null;
  private readonly names = new PackedNames();
  /** How many readings the range held when the job started. */
  readonly total: number;

  /** `db`: a read-only connection to plan on (count and span of the range), closed by the caller. */
  constructor(db: Db, database: string, filter: HistoryFilter, options: PrefetchOptions = {}) {
    const chunkSize = options.chunkSize ?? 4096;
    // The engine tests every reading against its rules again: a filter that keeps nothing out goes.
    const narrowed = withoutIdleSeriesFilter(db, filter);
    const span = new ReadingHistory(db, narrowed).span();
    this.total = span.count;
    const readers = Math.max(1, options.readers ?? Math.min(2, availableParallelism() - 1));
    this.plan = planBuckets(span, chunkSize * 2);
    const stride = Math.min(readers, Math.max(1, this.plan.buckets));
    for (let index = 0; index < stride; index++) {
      const data: ReaderData = {
        database,
        filter: narrowed,
        plan: this.plan,
        index,
        stride,
        chunkSize,
        ahead: options.ahead ?? 16,
        maxNamedSeries: options.maxNamedSeries,
      };
      const worker = new Worker(new URL('./reader.js', import.meta.url), {
        workerData: data,
        // A reader holds a few chunks: a small heap keeps each thread's RSS small.
        resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: READER_YOUNG_MB },
        stdout: false,
        stderr: false,
      });
      const reader: Reader = { worker, queue: [], waiting: null, finished: false };
      worker.on('message', (m: ReaderMessage) => {
        if (m.last && m.bucket + stride >= this.plan.buckets) reader.finished = true;
        if (reader.waiting) {
          const resolve = reader.waiting;
          reader.waiting = null;
          resolve(m);
        } else reader.queue.push(m);
      });
      worker.on('error', (err) => this.fail(err));
      worker.on('exit', (code) => {
        if (!reader.finished) this.fail(new Error(`a reader of the history stopped (exit code ${code})`));
      });
      this.readers.push(reader);
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const r of this.readers) {
      const w = r.waiting;
      r.waiting = null;
      // Resolved with a poison message: take() sees the failure and throws.
      w?.({ bucket: -1, last: true, chunk: emptyChunk() });
    }
  }

  /** The next chunk of readings in order; empty at the end. */
  async next(): Promise<Reading[]> {
    while (this.bucket < this.plan.buckets) {
      const reader = this.readers[this.bucket % this.readers.length] as Reader;
      const m = await this.take(reader);
      reader.worker.postMessage('more');
      if (m.last) this.bucket++;
      // Every chunk, empty or not, in order: the names follow the reader's memory of them exactly.
      const readings = this.names.unpack(m.chunk);
      if (readings.length > 0) return readings;
    }
    return [];
  }

  /** Series names held now (the flood test's view of the cap). */
  get namedSeries(): number {
    return this.names.size;
  }

  private async take(reader: Reader): Promise<ReaderMessage> {
    if (this.failure) throw this.failure;
    const m =
      reader.queue.shift() ??
      (await new Promise<ReaderMessage>((resolve) => {
        reader.waiting = resolve;
      }));
    if (this.failure) throw this.failure;
    return m;
  }

  /** Stops the readers (at the end, or when the job stops early). */
  async close(): Promise<void> {
    for (const r of this.readers) r.finished = true;
    await Promise.all(this.readers.map((r) => r.worker.terminate()));
  }
}

/**
 * The receiving side of packed chunks: the names of the series their sender named, forgotten when
 * a chunk says it starts over. Fed the chunks of one history after another, each in order, it holds
 * exactly the series the current history remembers as named: never more than that history's cap,
 * and never fewer than a chunk needs.
 */
export class PackedNames {
  private readonly names = new Map<number, SeriesNames>();

  get size(): number {
    return this.names.size;
  }

  /** The chunk's readings, whole. */
  unpack(c: PackedReadings): Reading[] {
    if (c.restart) this.names.clear();
    for (const [id, device, metric, unit] of c.names) this.names.set(id, { device, metric, unit });
    const out: Reading[] = new Array(c.n);
    for (let i = 0; i < c.n; i++) {
      const id = c.series[i] as number;
      const s = this.names.get(id);
      if (s === undefined) throw new Error(`a chunk of the history holds series ${id}, never named`);
      const r: Reading = {
        device: s.device,
        metric: s.metric,
        value: c.value[i] as number,
        ts: c.ts[i] as number,
      };
      if (s.unit !== null) r.unit = s.unit;
      out[i] = r;
    }
    for (const [i, tags] of c.tags) (out[i] as Reading).tags = JSON.parse(tags) as Record<string, string>;
    return out;
  }
}

function emptyChunk(): PackedReadings {
  return {
    n: 0,
    ts: new Float64Array(0),
    value: new Float64Array(0),
    series: new Int32Array(0),
    tags: [],
    names: [],
    restart: false,
  };
}
