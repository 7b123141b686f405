/**
 * A backtest's reader thread: reads its share of the stored history — every `stride`-th bucket of
 * time, from bucket `index` — in chunks on a read-only connection of its own, and hands them, as
 * transferable columns, to the thread that runs the engine, at most `ahead` chunks ahead of it.
 * SQLite reading so runs beside the engine, on other cores.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { type HistoryFilter, type PackedReadings, ReadingHistory } from '../store/reading-history.js';
import { openHistory } from './history-db.js';
import { yieldToTheGateway } from './priority.js';

/** The range cut into buckets of time: bucket k is [start + k·width, start + (k+1)·width) within [from, to). */
export interface BucketPlan {
  start: number;
  width: number;
  buckets: number;
}

export interface ReaderData {
  database: string;
  /** Devices and metrics, with the whole range's from and to. */
  filter: HistoryFilter;
  plan: BucketPlan;
  index: number;
  stride: number;
  chunkSize: number;
  ahead: number;
  /** Series a history remembers as named (default: ReadingHistory's; tests flood a smaller one). */
  maxNamedSeries?: number | undefined;
}

/** Reader → engine: chunks of its buckets in order, `last` on the final chunk of each. Engine → reader: 'more'. */
export interface ReaderMessage {
  bucket: number;
  last: boolean;
  chunk: PackedReadings;
}

/** The bounds of bucket k, clamped to the range. */
export function bucketRange(
  filter: HistoryFilter,
  plan: BucketPlan,
  k: number,
): { from: number; to: number } {
  const lo = plan.start + k * plan.width;
  const hi = k === plan.buckets - 1 ? Number.MAX_SAFE_INTEGER : lo + plan.width;
  return {
    from: filter.from === undefined ? lo : Math.max(lo, filter.from),
    to: filter.to === undefined ? hi : Math.min(hi, filter.to),
  };
}

if (parentPort) {
  const port = parentPort;
  const data = workerData as ReaderData;
  yieldToTheGateway();
  const db = openHistory(data.database);
  let credits = data.ahead;
  let bucket = data.index;
  let history: ReadingHistory | null = null;
  const pump = () => {
    while (credits > 0 && bucket < data.plan.buckets) {
      history ??= new ReadingHistory(
        db,
        { ...data.filter, ...bucketRange(data.filter, data.plan, bucket) },
        data.chunkSize,
        undefined,
        data.maxNamedSeries,
      );
      const chunk = history.nextPacked();
      const last = history.exhausted;
      credits--;
      port.postMessage({ bucket, last, chunk } satisfies ReaderMessage, [
        chunk.ts.buffer as ArrayBuffer,
        chunk.value.buffer as ArrayBuffer,
        chunk.series.buffer as ArrayBuffer,
      ]);
      if (last) {
        history = null;
        bucket += data.stride;
      }
    }
    if (bucket >= data.plan.buckets) {
      db.close();
      port.close();
    }
  };
  port.on('message', () => {
    credits++;
    pump();
  });
  pump();
}
