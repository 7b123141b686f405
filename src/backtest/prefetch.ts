import { Worker } from 'node:worker_threads';
import type { Reading } from '../model/reading.js';
import type { HistoryFilter, PackedReadings } from '../store/reading-history.js';
import type { ReaderData, ReaderMessage } from './reader.js';

interface SeriesNames {
  device: string;
  metric: string;
  unit: string | null;
}

/**
 * The stored history read a few chunks ahead by a reader thread (`reader.ts`), in order: SQLite
 * reads on one core while the engine runs on another. `next()` resolves with the next chunk as
 * readings, empty at the end; memory holds `ahead` chunks in transit.
 */
export class PrefetchedHistory {
  private readonly worker: Worker;
  private readonly queue: PackedReadings[] = [];
  private waiting: { resolve: (c: PackedReadings) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;
  private readonly names = new Map<number, SeriesNames>();
  private ended = false;
  /** The reader sent its last (empty) chunk: its exit is expected. */
  private lastSent = false;
  /** How many readings the range held when the reader started. */
  readonly total: Promise<number>;

  constructor(database: string, filter: HistoryFilter, options: { chunkSize?: number; ahead?: number } = {}) {
    const data: ReaderData = {
      database,
      filter,
      chunkSize: options.chunkSize ?? 4096,
      ahead: options.ahead ?? 4,
    };
    this.worker = new Worker(new URL('./reader.js', import.meta.url), {
      workerData: data,
      stdout: false,
      stderr: false,
    });
    let counted: (n: number) => void = () => {};
    this.total = new Promise((resolve) => {
      counted = resolve;
    });
    this.worker.on('message', (m: ReaderMessage) => {
      if (m.kind === 'count') {
        counted(m.total);
        return;
      }
      if (m.chunk.n === 0) this.lastSent = true;
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = null;
        w.resolve(m.chunk);
      } else this.queue.push(m.chunk);
    });
    const fail = (err: Error) => {
      this.failure ??= err;
      counted(0);
      this.waiting?.reject(this.failure);
      this.waiting = null;
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => {
      if (!this.lastSent && !this.ended) fail(new Error(`the history's reader stopped (exit code ${code})`));
    });
  }

  async next(): Promise<Reading[]> {
    if (this.ended) return [];
    const chunk = await this.take();
    if (chunk.n === 0) {
      this.ended = true;
      return [];
    }
    this.worker.postMessage('more');
    return this.unpack(chunk);
  }

  private take(): Promise<PackedReadings> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
    });
  }

  private unpack(c: PackedReadings): Reading[] {
    for (const [id, device, metric, unit] of c.names) this.names.set(id, { device, metric, unit });
    const out: Reading[] = new Array(c.n);
    for (let i = 0; i < c.n; i++) {
      const s = this.names.get(c.series[i] as number) as SeriesNames;
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

  /** Stops the reader (at the end, or when the job stops early). */
  async close(): Promise<void> {
    this.ended = true;
    await this.worker.terminate();
  }
}
